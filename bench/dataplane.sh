#!/usr/bin/env bash
# Data plane benchmark (issue 6): the same PostgreSQL, in one run, through
#
#   direct        pgbench → PostgreSQL
#   meshgate      pgbench → meshgate sidecar ══mTLS══ meshgate terminating gateway → PostgreSQL
#   haproxy-tls   pgbench → haproxy (TCP mode, ssl + client cert) ══TLS 1.3══ haproxy
#                 (TLS termination, client cert verified) → PostgreSQL
#   stunnel       pgbench → stunnel client ══TLS 1.3══ stunnel server → PostgreSQL (same TLS settings)
#   haproxy-tcp   pgbench → haproxy → haproxy → PostgreSQL, plain TCP (no TLS at all)
#
# TLS peers use ECDSA P-256 certificates from a CA made here with openssl, TLS 1.3
# only, client certificates verified, server name checked. meshgate uses its own
# mesh CA (the dev agent's, also ECDSA P-256); the gateway speaks plain TCP to
# PostgreSQL like the peers' server sides.
#
# For each path it prints pgbench -S -M prepared TPS at -c 1, -c 8, -c 32 and
# -C -c 8 (a new connection per transaction, with pgbench's average connection
# time), iperf3 throughput (an iperf3 server behind the same proxies: a second
# linked service / upstream), the proxies' CPU seconds per GB and CPU µs per
# transaction (utime+stime from /proc/<pid>/stat), their RSS idle, idle after the
# traffic and with $CONNS open connections (a third service: an echo sink), the
# ratio meshgate / best TLS peer and meshgate / plain-TCP HAProxy for each figure,
# and which goals of issue 6 are met.
#
# All paths are started first and stay up; each cell then runs on every path in
# turn, for $ROUNDS rounds with the order rotated, and the best of the rounds is
# kept (with that run's CPU figures): on a shared machine whatever else runs falls
# on every path alike, and a path that carries no traffic costs nothing.
#
# Layout (2 cores): the load generators and the servers (pgbench, iperf3,
# PostgreSQL, the sink, meshgate's agent) are pinned to CPU $LOAD_CPU, both proxies
# of a pair to CPU $PROXY_CPU, so the proxies' CPU per transaction is what moves
# the figures. Every proxy picks its thread count from its affinity (1 here):
# haproxy's nbthread, meshgate's runtime workers; stunnel runs a thread per
# connection. Everything is on loopback (127.0.0.x). PostgreSQL trusts loopback
# clients (no SCRAM: the figures measure the paths, not PBKDF2); fsync is off.
#
# Run (as root, from anywhere; ~15 minutes with the defaults; installs haproxy,
# stunnel4, iperf3 with apt-get when missing; needs PostgreSQL's server programs
# and pgbench; builds meshgate unless NO_BUILD=1):
#   bench/dataplane.sh
#   DURATION=15 ROUNDS=5 bench/dataplane.sh   # seconds per pgbench cell (10), rounds (3)
#   PATHS="direct meshgate" bench/dataplane.sh
#   CELLS="c8 c32" bench/dataplane.sh         # some of: c1 c8 c32 C8 iperf (all)
#   CONNS=0 bench/dataplane.sh                # skip the open-connections memory figure
#   LOAD_CPU=0 PROXY_CPU=1 CONNS=1000 IPERF_TIME=10 SCALE=10 PG_BIN=/usr/lib/postgresql/15/bin
#   LOAD_CPU=0-1 PROXY_CPU=0-1 bench/dataplane.sh  # unpinned: the layout of issue 6's
#                                             # own reference figures (HAProxy TLS ≈ 0.39× direct)
#   KEEP=1 bench/dataplane.sh                 # keep the work directory (logs, configs)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
IPERF_TIME=${IPERF_TIME:-10}
CONNS=${CONNS:-1000}
SCALE=${SCALE:-10}
LOAD_CPU=${LOAD_CPU:-0}
PROXY_CPU=${PROXY_CPU:-1}
PATHS=${PATHS:-"direct meshgate haproxy-tls stunnel haproxy-tcp"}
ROUNDS=${ROUNDS:-3}
CELLS=${CELLS:-"c1 c8 c32 C8 iperf"}
for cell in $CELLS; do
  case $cell in
    c1 | c8 | c32 | C8 | iperf) ;;
    *) echo "unknown cell $cell in CELLS (c1 c8 c32 C8 iperf)" >&2; exit 1 ;;
  esac
done
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
BASE_PORT=${BASE_PORT:-26400}
MESHGATE=${MESHGATE:-target/release/meshgate}

need=()
command -v haproxy >/dev/null || need+=(haproxy)
command -v stunnel4 >/dev/null || need+=(stunnel4)
command -v iperf3 >/dev/null || need+=(iperf3)
if ((${#need[@]})); then
  echo "installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >&2 ||
    { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >&2; }
fi
for tool in pgbench openssl python3 curl taskset jq "$PG_BIN/initdb" "$PG_BIN/pg_ctl"; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"

if [ -z "${NO_BUILD:-}" ]; then cargo build --release -q; fi

# --- ports and addresses -----------------------------------------------------
DB_HOST=127.0.0.2 # PostgreSQL, iperf3 server, sink
p=$BASE_PORT
port() { p=$((p + 1)); printf -v "$1" %s "$p"; } # not $(…): p must advance here
port PG_PORT; port IPERF_PORT; port SINK_PORT
port AGENT_PORT; port GW_PORT; port GW_ADMIN; port SC_ADMIN; port SC_PUBLIC
declare -A CLIENT_PORT # path:service → the port the client connects to on 127.0.0.1
declare -A SERVER_PORT # path:service → the server-side proxy's port
for path in meshgate haproxy-tls stunnel haproxy-tcp; do
  for svc in db iperf sink; do
    port "CLIENT_PORT[$path:$svc]"
    port "SERVER_PORT[$path:$svc]"
  done
done
CLIENT_PORT[direct:db]=$PG_PORT; CLIENT_PORT[direct:iperf]=$IPERF_PORT; CLIENT_PORT[direct:sink]=$SINK_PORT
taken=$(ss -ltnH | awk '{n = split($4, a, ":"); print a[n]}' |
  awk -v lo="$BASE_PORT" -v hi="$p" '$1 > lo && $1 <= hi' | head -1)
[ -z "$taken" ] || { echo "port $taken is taken: set BASE_PORT (now $BASE_PORT)" >&2; exit 1; }
declare -A SERVER_HOST=([haproxy-tls]=127.0.0.4 [haproxy-tcp]=127.0.0.4 [stunnel]=127.0.0.5)

work=$(mktemp -d /tmp/meshgate-bench-dataplane.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  local rc=$? f
  set +e
  if [ "$rc" != 0 ]; then
    for f in $(find "$work" -name '*.log' -o -name log 2>/dev/null); do
      echo "--- ${f#"$work"/} (last lines)" >&2
      tail -n 15 "$f" >&2
    done
  fi
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
    else
      wait "$pid"
      echo "process $pid had exited with status $? (> 128: killed by signal status - 128)" >&2
    fi
  done
  [ -f "$work/pg/data/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1
  wait 2>/dev/null
  if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
# Arrays, not functions: `func cmd &` would leave $! naming a subshell, not the
# program (whose CPU and RSS are measured and which must be killed).
on_load=(taskset -c "$LOAD_CPU")
on_proxy=(taskset -c "$PROXY_CPU")
PYTHON=$(python3 -c 'import sys; print(sys.executable)') # not a pyenv shim
# meshgate sets SIGPIPE back to its default action for every command
# (crates/cli, `sigpipe::reset()`, meant for `meshgate kv get … | head`), so a
# proxy that writes to a TLS peer which has already reset the connection
# (rustls writes with writev, which has no MSG_NOSIGNAL) is killed (exit 141) —
# it happens now and then when iperf3 ends a test. Until that is fixed, the
# proxies start with SIGPIPE blocked (the mask survives exec and the reset does
# not touch it), so that EPIPE is an ordinary write error as in any server;
# BLOCK_SIGPIPE=0 runs them as they are.
nopipe=()
if [ "${BLOCK_SIGPIPE:-1}" = 1 ]; then
  nopipe=("$PYTHON" -c 'import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})
os.execv(sys.argv[1], sys.argv[1:])')
fi
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}

# --- PostgreSQL, iperf3 server, sink ------------------------------------------
mkdir -p "$work/pg/sock"
[ "$(id -u)" = 0 ] && chown -R postgres: "$work/pg"
as_pg "$PG_BIN/initdb" -D "$work/pg/data" -U postgres -E UTF8 --auth=trust >/dev/null
cat >>"$work/pg/data/postgresql.conf" <<EOF
listen_addresses = '$DB_HOST'
port = $PG_PORT
unix_socket_directories = '$work/pg/sock'
max_connections = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
as_pg taskset -c "$LOAD_CPU" "$PG_BIN/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w start >/dev/null
export PGUSER=postgres PGDATABASE=postgres PGSSLMODE=disable PGCONNECT_TIMEOUT=5
pgbench -i -q -s "$SCALE" -h $DB_HOST -p "$PG_PORT" >/dev/null 2>&1

"${on_load[@]}" iperf3 -s -B $DB_HOST -p "$IPERF_PORT" >"$work/iperf3-server.log" 2>&1 &
pids+=($!)

cat >"$work/sink.py" <<'PY'
# Echoes what it reads; holds every connection until the peer closes it.
import asyncio, sys
async def handle(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except OSError:
        pass
    w.close()
async def main():
    srv = await asyncio.start_server(handle, sys.argv[1], int(sys.argv[2]), backlog=4096)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
PY
cat >"$work/hold.py" <<'PY'
# Opens N connections, checks each one reaches the sink (a byte comes back),
# says "open N", then holds them until killed.
import asyncio, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
async def one(sem):
    async with sem:
        r, w = await asyncio.open_connection(host, port)
        w.write(b"x")
        await w.drain()
        await asyncio.wait_for(r.readexactly(1), 30)
        return r, w
async def main():
    sem = asyncio.Semaphore(50)
    conns = await asyncio.gather(*[one(sem) for _ in range(n)])
    print(f"open {len(conns)}", flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
PY
"${on_load[@]}" "$PYTHON" "$work/sink.py" $DB_HOST "$SINK_PORT" >"$work/sink.log" 2>&1 &
pids+=($!)

# --- certificates for the TLS peers (ECDSA P-256) -------------------------------
pki=$work/pki
mkdir -p "$pki"
(
  cd "$pki"
  ec() { openssl ecparam -name prime256v1 -genkey -noout -out "$1.key" 2>/dev/null; }
  ec ca
  openssl req -x509 -new -key ca.key -subj "/CN=bench CA" -days 2 -sha256 -out ca.pem 2>/dev/null
  for who in server client; do
    ec "$who"
    openssl req -new -key "$who.key" -subj "/CN=$who.bench" -out "$who.csr" 2>/dev/null
    if [ "$who" = server ]; then
      printf 'subjectAltName=DNS:server.bench\nextendedKeyUsage=serverAuth\n' >"$who.ext"
    else
      printf 'subjectAltName=DNS:client.bench\nextendedKeyUsage=clientAuth\n' >"$who.ext"
    fi
    openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -sha256 \
      -extfile "$who.ext" -out "$who.crt" 2>/dev/null
    cat "$who.crt" "$who.key" >"$who.pem"
  done
)

# --- helpers ---------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # pids… → utime+stime of all their threads, in ticks
  local t=0 pid
  for pid in "$@"; do
    [ -r "/proc/$pid/stat" ] || { echo "process $pid has exited" >&2; return 1; }
    t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$t"
}
rss_kib() {
  [ -r "/proc/$1/status" ] || { echo "process $1 has exited" >&2; return 1; }
  awk '/^VmRSS/{print $2}' "/proc/$1/status"
}
wait_port() { # host port
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1:$2" >&2; return 1
}
declare -A R     # path:figure → value
declare -A PPIDS # path → the proxies' pids, client side first ("" for direct)
declare -A HOST  # path → the address pgbench and iperf3 connect to

# --- the paths: each start_* starts a path's proxies and leaves them running ----
start_direct() { PPIDS[direct]=""; HOST[direct]=$DB_HOST; }

start_meshgate() {
  local A=http://127.0.0.1:$AGENT_PORT
  "${on_load[@]}" "$MESHGATE" agent -dev -node bench -client 127.0.0.1 -bind 127.0.0.1 \
    -http-port "$AGENT_PORT" -dns-port -1 -log-level warn >"$work/agent.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do curl -sf "$A/v1/status/leader" >/dev/null && break; sleep 0.05; done
  local svc ups=()
  declare -A backend=([db]=$PG_PORT [iperf]=$IPERF_PORT [sink]=$SINK_PORT)
  for svc in db iperf sink; do
    curl -sf -X PUT "$A/v1/catalog/register" -d "{\"Node\":\"bench-external\",\"Address\":\"$DB_HOST\",
      \"NodeMeta\":{\"external-node\":\"true\"},
      \"Service\":{\"ID\":\"bench-$svc\",\"Service\":\"bench-$svc\",\"Port\":${backend[$svc]}}}" >/dev/null
    curl -sf -X PUT "$A/v1/connect/intentions/exact?source=bench-client&destination=bench-$svc" \
      -d '{"Action":"allow"}' >/dev/null
    ups+=("{\"DestinationName\":\"bench-$svc\",\"LocalBindAddress\":\"127.0.0.1\",\"LocalBindPort\":${CLIENT_PORT[meshgate:$svc]}}")
  done
  curl -sf -X PUT "$A/v1/config" -d '{"Kind":"terminating-gateway","Name":"bench-gateway",
    "Services":[{"Name":"bench-db"},{"Name":"bench-iperf"},{"Name":"bench-sink"}]}' >/dev/null
  curl -sf -X PUT "$A/v1/agent/service/register" -d "{\"Name\":\"bench-client\",\"Port\":10000,
    \"Connect\":{\"SidecarService\":{\"Port\":$SC_PUBLIC,\"Address\":\"127.0.0.1\",
      \"Proxy\":{\"Upstreams\":[$(IFS=,; echo "${ups[*]}")]}}}}" >/dev/null
  CONSUL_HTTP_ADDR=$A "${on_proxy[@]}" "${nopipe[@]}" "$MESHGATE" connect envoy -gateway=terminating -register \
    -service bench-gateway -address "127.0.0.3:$GW_PORT" -admin-bind "127.0.0.1:$GW_ADMIN" \
    -log-level warn >"$work/gateway.log" 2>&1 &
  local gw=$!
  pids+=($gw)
  CONSUL_HTTP_ADDR=$A "${on_proxy[@]}" "${nopipe[@]}" "$MESHGATE" connect proxy -sidecar-for bench-client \
    -admin-bind "127.0.0.1:$SC_ADMIN" -log-level warn >"$work/sidecar.log" 2>&1 &
  local sc=$!
  pids+=($sc)
  local admin
  for admin in $GW_ADMIN $SC_ADMIN; do
    for _ in $(seq 600); do curl -sf "http://127.0.0.1:$admin/ready" >/dev/null && break; sleep 0.05; done
    curl -sf "http://127.0.0.1:$admin/ready" >/dev/null ||
      { echo "meshgate proxy on admin port $admin is not ready" >&2; return 1; }
  done
  PPIDS[meshgate]="$sc $gw"
  HOST[meshgate]=127.0.0.1
}

haproxy_cfgs() { # path → writes client.cfg and server.cfg
  local path=$1 d=$work/$1 svc
  mkdir -p "$d"
  local client_ssl="" server_ssl=""
  if [ "$path" = haproxy-tls ]; then
    client_ssl="ssl crt $pki/client.pem ca-file $pki/ca.pem verify required verifyhost server.bench sni str(server.bench) ssl-min-ver TLSv1.3"
    server_ssl="ssl crt $pki/server.pem ca-file $pki/ca.pem verify required ssl-min-ver TLSv1.3"
  fi
  local head="global
  maxconn $((CONNS + 1000))
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
"
  {
    echo "$head"
    for svc in db iperf sink; do
      printf 'listen %s\n  bind 127.0.0.1:%s\n  server s %s:%s %s\n' \
        "$svc" "${CLIENT_PORT[$path:$svc]}" "${SERVER_HOST[$path]}" "${SERVER_PORT[$path:$svc]}" "$client_ssl"
    done
  } >"$d/client.cfg"
  declare -A backend=([db]=$PG_PORT [iperf]=$IPERF_PORT [sink]=$SINK_PORT)
  {
    echo "$head"
    for svc in db iperf sink; do
      printf 'listen %s\n  bind %s:%s %s\n  server s %s:%s\n' \
        "$svc" "${SERVER_HOST[$path]}" "${SERVER_PORT[$path:$svc]}" "$server_ssl" "$DB_HOST" "${backend[$svc]}"
    done
  } >"$d/server.cfg"
}

start_haproxy() { # haproxy-tls | haproxy-tcp
  local path=$1
  haproxy_cfgs "$path"
  "${on_proxy[@]}" haproxy -db -f "$work/$path/server.cfg" >"$work/$path/server.log" 2>&1 &
  local s=$!
  pids+=($s)
  "${on_proxy[@]}" haproxy -db -f "$work/$path/client.cfg" >"$work/$path/client.log" 2>&1 &
  local c=$!
  pids+=($c)
  wait_port 127.0.0.1 "${CLIENT_PORT[$path:db]}"
  wait_port "${SERVER_HOST[$path]}" "${SERVER_PORT[$path:db]}"
  PPIDS[$path]="$c $s"
  HOST[$path]=127.0.0.1
}

start_stunnel() {
  local d=$work/stunnel svc
  mkdir -p "$d"
  local head="foreground = yes
pid =
debug = 3
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
"
  declare -A backend=([db]=$PG_PORT [iperf]=$IPERF_PORT [sink]=$SINK_PORT)
  {
    echo "$head"
    for svc in db iperf sink; do
      printf '[%s]\nclient = yes\naccept = 127.0.0.1:%s\nconnect = %s:%s\n' \
        "$svc" "${CLIENT_PORT[stunnel:$svc]}" "${SERVER_HOST[stunnel]}" "${SERVER_PORT[stunnel:$svc]}"
      printf 'cert = %s\nkey = %s\nCAfile = %s\nverifyChain = yes\ncheckHost = server.bench\nsni = server.bench\nsslVersionMin = TLSv1.3\n\n' \
        "$pki/client.crt" "$pki/client.key" "$pki/ca.pem"
    done
  } >"$d/client.conf"
  {
    echo "$head"
    for svc in db iperf sink; do
      printf '[%s]\naccept = %s:%s\nconnect = %s:%s\n' \
        "$svc" "${SERVER_HOST[stunnel]}" "${SERVER_PORT[stunnel:$svc]}" "$DB_HOST" "${backend[$svc]}"
      printf 'cert = %s\nkey = %s\nCAfile = %s\nverifyChain = yes\nrequireCert = yes\nsslVersionMin = TLSv1.3\n\n' \
        "$pki/server.crt" "$pki/server.key" "$pki/ca.pem"
    done
  } >"$d/server.conf"
  "${on_proxy[@]}" stunnel4 "$d/server.conf" >"$d/server.log" 2>&1 &
  local s=$!
  pids+=($s)
  "${on_proxy[@]}" stunnel4 "$d/client.conf" >"$d/client.log" 2>&1 &
  local c=$!
  pids+=($c)
  wait_port 127.0.0.1 "${CLIENT_PORT[stunnel:db]}"
  wait_port "${SERVER_HOST[stunnel]}" "${SERVER_PORT[stunnel:db]}"
  PPIDS[stunnel]="$c $s"
  HOST[stunnel]=127.0.0.1
}

# --- the measurements ----------------------------------------------------------
pgbench_cell() { # path cell → keeps the best TPS of the rounds (and that run's CPU figures)
  local path=$1 cell=$2 c flags out t0=0 t1=0 tps n
  local pp=(${PPIDS[$path]})
  case $cell in
    c1) c=1 flags= ;; c8) c=8 flags= ;; c32) c=32 flags= ;; C8) c=8 flags=-C ;;
  esac
  ((${#pp[@]})) && t0=$(cpu_ticks "${pp[@]}")
  out=$("${on_load[@]}" pgbench -n -S -M prepared $flags -c "$c" -j 1 -T "$DURATION" \
    -h "${HOST[$path]}" -p "${CLIENT_PORT[$path:db]}" 2>&1) || { echo "$path $cell: $out" >&2; return 1; }
  ((${#pp[@]})) && t1=$(cpu_ticks "${pp[@]}")
  tps=$(awk '/^tps = /{printf "%.0f", $3}' <<<"$out")
  n=$(awk '/actually processed/{print $NF}' <<<"$out")
  echo "  $path $cell: $tps tps" >&2
  if [ -z "${R[$path:tps_$cell]:-}" ] || ((tps > ${R[$path:tps_$cell]})); then
    R[$path:tps_$cell]=$tps
    if [ "$cell" = C8 ]; then
      R[$path:connect_ms]=$(awk '/^average connection time = /{printf "%.2f", $5}' <<<"$out")
    fi
    if ((${#pp[@]})); then
      R[$path:us_$cell]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN{printf "%.1f", t / hz * 1e6 / n}')
    fi
  fi
}

iperf_cell() { # path → keeps the best throughput of the rounds (and that run's CPU s/GB)
  local path=$1 out t0=0 t1=0 gbps bytes
  local pp=(${PPIDS[$path]})
  ((${#pp[@]})) && t0=$(cpu_ticks "${pp[@]}")
  out=$("${on_load[@]}" iperf3 -c "${HOST[$path]}" -p "${CLIENT_PORT[$path:iperf]}" -t "$IPERF_TIME" -J) || true
  ((${#pp[@]})) && t1=$(cpu_ticks "${pp[@]}")
  bytes=$(jq '.end.sum_received.bytes // 0' <<<"$out" 2>/dev/null || echo 0)
  if [ "$bytes" = 0 ]; then
    echo "$path: iperf3 failed: $(jq -r '.error // empty' <<<"$out" 2>/dev/null)" >&2
    return 1
  fi
  gbps=$(jq '.end.sum_received.bits_per_second / 1e9 * 100 | round / 100' <<<"$out")
  echo "  $path iperf3: $gbps Gbit/s" >&2
  if [ -z "${R[$path:gbps]:-}" ] || awk -v a="$gbps" -v b="${R[$path:gbps]}" 'BEGIN{exit !(a > b)}'; then
    R[$path:gbps]=$gbps
    if ((${#pp[@]})); then
      R[$path:cpu_gb]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v b="$bytes" 'BEGIN{printf "%.2f", t / hz / (b / 1e9)}')
    fi
  fi
}

hold_cell() { # path → the proxies' RSS with $CONNS connections open through them
  local path=$1 pid hold
  local pp=(${PPIDS[$path]})
  R[$path:rss_used]=$(for pid in "${pp[@]}"; do rss_kib "$pid"; done | paste -sd/)
  "${on_load[@]}" "$PYTHON" "$work/hold.py" "${HOST[$path]}" "${CLIENT_PORT[$path:sink]}" "$CONNS" >"$work/hold.out" 2>&1 &
  hold=$!
  for _ in $(seq 1200); do
    grep -q '^open' "$work/hold.out" && break
    kill -0 $hold 2>/dev/null || break
    sleep 0.05
  done
  grep -q '^open' "$work/hold.out" || { echo "$path: could not open $CONNS connections:" >&2; cat "$work/hold.out" >&2; return 1; }
  sleep 1
  R[$path:rss_conns]=$(for pid in "${pp[@]}"; do rss_kib "$pid"; done | paste -sd/)
  kill $hold
  wait $hold 2>/dev/null || true
  echo "  $path RSS KiB: idle ${R[$path:rss_idle]}, idle after the traffic ${R[$path:rss_used]}, with $CONNS connections ${R[$path:rss_conns]}" >&2
  sleep 2 # let the proxies close their side
}

# Every path is started first and stays up; then each cell runs on every path in
# turn, round after round (rotating the order), so that whatever else the machine
# does at the time falls on all paths alike. A path that carries no traffic costs
# nothing (its proxies sleep in epoll).
paths=($PATHS)
for path in "${paths[@]}"; do
  case $path in
    direct) start_direct ;;
    meshgate) start_meshgate ;;
    haproxy-tls | haproxy-tcp) start_haproxy "$path" ;;
    stunnel) start_stunnel ;;
    *) echo "unknown path $path" >&2; exit 1 ;;
  esac
done
for path in "${paths[@]}"; do
  for _ in $(seq 600); do
    psql -X -q -h "${HOST[$path]}" -p "${CLIENT_PORT[$path:db]}" -c 'select 1' >/dev/null 2>&1 && break
    sleep 0.05
  done
  psql -X -q -h "${HOST[$path]}" -p "${CLIENT_PORT[$path:db]}" -c 'select 1' >/dev/null ||
    { echo "$path: PostgreSQL does not answer" >&2; exit 1; }
  for pid in ${PPIDS[$path]}; do
    case $(cat "/proc/$pid/comm") in
      bash | taskset | python*) echo "$path: pid $pid is not the proxy" >&2; exit 1 ;;
    esac
  done
done
sleep 2
for path in "${paths[@]}"; do
  [ -n "${PPIDS[$path]}" ] || continue
  R[$path:rss_idle]=$(for pid in ${PPIDS[$path]}; do rss_kib "$pid"; done | paste -sd/)
done
loads=()
for round in $(seq "$ROUNDS"); do
  loads+=("$(cut -d' ' -f1 /proc/loadavg)")
  echo "== round $round of $ROUNDS (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  k=$(((round - 1) % ${#paths[@]}))
  order=("${paths[@]:k}" "${paths[@]:0:k}")
  for cell in $CELLS; do
    case $cell in
      c1 | c8 | c32 | C8) for path in "${order[@]}"; do pgbench_cell "$path" "$cell"; done ;;
      iperf) for path in "${order[@]}"; do iperf_cell "$path"; done ;;
    esac
  done
done
loads+=("$(cut -d' ' -f1 /proc/loadavg)")
if ((CONNS > 0)); then
  echo "== $CONNS open connections" >&2
  for path in "${paths[@]}"; do
    [ -n "${PPIDS[$path]}" ] || continue
    hold_cell "$path"
  done
fi

# --- report ------------------------------------------------------------------
peers=()
for path in haproxy-tls stunnel; do [[ " $PATHS " == *" $path "* ]] && peers+=("$path"); done
cols=()
for path in direct meshgate haproxy-tls stunnel haproxy-tcp; do [[ " $PATHS " == *" $path "* ]] && cols+=("$path"); done
mib() { # "a/b" KiB → "a/b" MiB
  tr '/' '\n' <<<"$1" | awk '{printf "%s%.1f", (NR > 1 ? "/" : ""), $1 / 1024}'
}
per_conn() { # idle conns → KiB per connection, per proxy
  paste -d' ' <(tr '/' '\n' <<<"$1") <(tr '/' '\n' <<<"$2") |
    awk -v n="$CONNS" '{printf "%s%.0f", (NR > 1 ? "/" : ""), ($2 - $1) / n}'
}
maxof() { tr '/' '\n' <<<"$1" | sort -g | tail -1; }
# ratio meshgate / best peer; $2 = max (higher is better) or min (lower is better)
ratio() { # figure max|min [mode: sum|max of a/b values]
  local fig=$1 best="" v m
  m=${R[meshgate:$fig]:-}
  [ -n "$m" ] || { echo "–"; return; }
  m=$(maxof "$m")
  for path in "${peers[@]}"; do
    v=${R[$path:$fig]:-}
    [ -n "$v" ] || continue
    v=$(maxof "$v")
    if [ -z "$best" ] || awk -v a="$v" -v b="$best" -v d="$2" 'BEGIN{exit !(d == "max" ? a > b : a < b)}'; then best=$v; fi
  done
  [ -n "$best" ] || { echo "–"; return; }
  awk -v m="$m" -v b="$best" 'BEGIN{if (b == 0) print "–"; else printf "%.2f×", m / b}'
}
vs_tcp() { # figure → meshgate / haproxy-tcp
  local m=${R[meshgate:$1]:-} h=${R[haproxy-tcp:$1]:-}
  [ -n "$m" ] && [ -n "$h" ] || { echo "–"; return; }
  awk -v m="$(maxof "$m")" -v h="$(maxof "$h")" 'BEGIN{if (h == 0) print "–"; else printf "%.2f×", m / h}'
}
for path in "${cols[@]}"; do
  [ -n "${R[$path:rss_idle]:-}" ] && R[$path:rss_idle_mib]=$(mib "${R[$path:rss_idle]}")
  if [ -n "${R[$path:rss_conns]:-}" ]; then
    R[$path:kib_conn]=$(per_conn "${R[$path:rss_used]}" "${R[$path:rss_conns]}")
    R[$path:rss_used_mib]=$(mib "${R[$path:rss_used]}")
    R[$path:rss_conns_mib]=$(mib "${R[$path:rss_conns]}")
  fi
done

echo
echo "machine: $(nproc) cores ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "meshgate $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates src || echo +dirty), $(haproxy -v | head -1 | awk '{print "HAProxy", $3}'), $(stunnel4 -version 2>&1 | awk '/^stunnel/{print "stunnel", $2; exit}'), $("$PG_BIN/postgres" --version | awk '{print "PostgreSQL", $3}'), $(iperf3 --version | head -1 | awk '{print "iperf3", $2}')"
echo "pgbench -S -M prepared -j 1, scale $SCALE, ${DURATION} s per cell; iperf3 ${IPERF_TIME} s (1 stream); best of $ROUNDS rounds, paths interleaved; load+servers on CPU $LOAD_CPU, proxies on CPU $PROXY_CPU"
[ "${BLOCK_SIGPIPE:-1}" = 1 ] && echo "meshgate's proxies ran with SIGPIPE blocked (see BLOCK_SIGPIPE in the script: a proxy is killed by SIGPIPE otherwise)"
echo "1-minute load average at the start of each round and at the end: ${loads[*]} (anything above ~2 means something else ran on the machine)"
echo
header="| figure | $(IFS='|'; echo "${cols[*]}" | sed 's/|/ | /g') | meshgate / best TLS peer | meshgate / haproxy-tcp |"
echo "$header"
echo "|---|$(for _ in "${cols[@]}"; do printf -- '---:|'; done)---:|---:|"
row() { # label figure max|min
  local line="| $1 |" path
  for path in "${cols[@]}"; do line+=" ${R[$path:$2]:-–} |"; done
  echo "$line $(ratio "$2" "$3") | $(vs_tcp "$2") |"
}
row "TPS -c 1" tps_c1 max
row "TPS -c 8" tps_c8 max
row "TPS -c 32" tps_c32 max
row "TPS -C -c 8 (connect per txn)" tps_C8 max
row "pgbench connection time ms (-C -c 8)" connect_ms min
row "iperf3 Gbit/s" gbps max
row "proxy CPU s/GB (pair)" cpu_gb min
row "proxy CPU µs/txn -c 1 (pair)" us_c1 min
row "proxy CPU µs/txn -c 8 (pair)" us_c8 min
row "proxy CPU µs/txn -c 32 (pair)" us_c32 min
row "proxy CPU µs/txn -C -c 8 (pair)" us_C8 min
row "RSS idle MiB (client/server)" rss_idle_mib min
row "RSS idle after the traffic MiB" rss_used_mib min
row "RSS with $CONNS conns MiB (client/server)" rss_conns_mib min
row "KiB per open conn (client/server)" kib_conn min
echo
echo "Ratios: higher-is-better rows (TPS, Gbit/s) want ≥ 1.10×; lower-is-better rows (CPU, RSS) want ≤ 1; for client/server pairs the larger of the two is compared."
# --- the goals of issue 6 --------------------------------------------------------
verdict() { # description, awk condition on m (meshgate) and b (other) → met / NOT met
  local what=$1 cond=$2 m=${3:-} b=${4:-}
  if [ -z "$m" ] || [ -z "$b" ]; then echo "- $what: not measured"; return; fi
  if awk -v m="$m" -v b="$b" "BEGIN{exit !($cond)}"; then echo "- $what: met"; else echo "- $what: NOT met"; fi
}
best_peer() { # figure → the best TLS peer's value
  local v best="" path
  for path in "${peers[@]}"; do
    v=${R[$path:$1]:-}
    [ -n "$v" ] || continue
    if [ -z "$best" ] || awk -v a="$v" -v b="$best" 'BEGIN{exit !(a > b)}'; then best=$v; fi
  done
  echo "$best"
}
if [[ " $PATHS " == *" meshgate "* ]]; then
  echo
  echo "Goals:"
  for fig in tps_c1 tps_c8 tps_c32 tps_C8 gbps; do
    verdict "meshgate ≥ 1.1× the best TLS peer, $fig (${R[meshgate:$fig]:-–} vs $(best_peer $fig))" \
      "m >= 1.1 * b" "${R[meshgate:$fig]:-}" "$(best_peer $fig)"
  done
  verdict "meshgate faster than the plain-TCP HAProxy pair at -c 8 (${R[meshgate:tps_c8]:-–} vs ${R[haproxy-tcp:tps_c8]:-–})" \
    "m > b" "${R[meshgate:tps_c8]:-}" "${R[haproxy-tcp:tps_c8]:-}"
  verdict "RSS idle < 20 MiB per proxy (${R[meshgate:rss_idle_mib]:-–} MiB)" "m < b" "$(maxof "${R[meshgate:rss_idle_mib]:-}")" 20
  verdict "< 64 KiB per open connection (${R[meshgate:kib_conn]:-–} KiB)" "m < b" "$(maxof "${R[meshgate:kib_conn]:-}")" 64
fi
