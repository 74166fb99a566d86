#!/usr/bin/env bash
# KV benchmark: meshgate `agent -dev` against a single-member etcd, in one run,
# under the same load generator (wrk), on loopback. Neither side pays for fsync:
# meshgate -dev keeps state in memory, etcd keeps its data dir on tmpfs.
#
# Prints requests/s for PUT and GET at 1 and 64 connections with the ratio
# meshgate/etcd, the wake-up latency of 10,000 watchers of one key written once
# (measured with both ways of the client to wait, `poll` and `epoll`: see
# bench/wakeup/src/main.rs), and meshgate's idle RSS.
#
# Needs: wrk, etcd (Debian: apt-get install wrk etcd-server). Usage:
#   bench/kv.sh            # 10 s per cell
#   DURATION=30s bench/kv.sh
#   WAKE_MODES=poll WAKE_RUNS=5 bench/kv.sh   # one client mode, more runs
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/kv-lua.sh

DURATION=${DURATION:-10s}
WATCHERS=${WATCHERS:-10000}
MG_PORT=18500
ETCD_PORT=12379

for tool in wrk etcd curl ss; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y wrk etcd-server curl" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"  # 10,000 watchers need 10,000 sockets on each side

cargo build --release -q
(cd bench/wakeup && cargo build --release -q)
MESHGATE=target/release/meshgate
WAKEUP=bench/wakeup/target/release/meshgate-bench-wakeup

work=$(mktemp -d)
etcd_dir=$(mktemp -d /dev/shm/meshgate-bench-etcd.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work" "$etcd_dir"
}
trap cleanup EXIT

"$MESHGATE" agent -dev -node bench -http-port "$MG_PORT" -dns-port -1 -log-level warn >"$work/meshgate.log" 2>&1 &
pids+=($!)
mg_pid=$!
etcd --name bench --data-dir "$etcd_dir" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:12380" --initial-advertise-peer-urls "http://127.0.0.1:12380" \
  --initial-cluster "bench=http://127.0.0.1:12380" --log-level warn --logger zap >"$work/etcd.log" 2>&1 &
pids+=($!)
etcd_pid=$!

for i in $(seq 100); do
  curl -sf "http://127.0.0.1:$MG_PORT/v1/status/leader" >/dev/null && \
  curl -sf "http://127.0.0.1:$ETCD_PORT/health" >/dev/null && break
  sleep 0.1
done

sleep 2
rss_idle_kib=$(awk '/VmRSS/{print $2}' "/proc/$mg_pid/status")
etcd_rss_idle_kib=$(awk '/VmRSS/{print $2}' "/proc/$etcd_pid/status")

write_kv_lua "$work"

rps() { # url script connections
  local threads=1
  [ "$3" -gt 1 ] && threads=2
  wrk -t"$threads" -c"$3" -d"$DURATION" -s "$2" "$1" 2>/dev/null | awk '/Requests\/sec/{print $2}'
}

declare -A R
for op in put get; do
  for c in 1 64; do
    R[mg_${op}_$c]=$(rps "http://127.0.0.1:$MG_PORT" "$work/mg_${op}.lua" "$c")
    R[etcd_${op}_$c]=$(rps "http://127.0.0.1:$ETCD_PORT" "$work/etcd_${op}.lua" "$c")
  done
done

# Wake-up runs open 10,000 connections each; wait for the TIME_WAIT sockets of
# the previous run to drain so no run pays for another's, and alternate the
# targets. The median of $WAKE_RUNS runs is reported.
WAKE_RUNS=${WAKE_RUNS:-3}
drain() {
  for _ in $(seq 90); do
    [ "$(ss -tan state time-wait | wc -l)" -lt 500 ] && return
    sleep 1
  done
}
# Both ways of the measuring client to wait (see bench/wakeup/src/main.rs):
# `poll` keeps the server from paying for waking the client on every answer
# (as watchers on other hosts would not make it pay); `epoll` is the plain way.
WAKE_MODES=${WAKE_MODES:-poll epoll}
for mode in $WAKE_MODES; do
  : >"$work/wake_meshgate_$mode"; : >"$work/wake_etcd_$mode"
done
for _ in $(seq "$WAKE_RUNS"); do
  for mode in $WAKE_MODES; do
    drain; "$WAKEUP" meshgate "127.0.0.1:$MG_PORT" "$WATCHERS" "$mode" | tee -a "$work/wake_meshgate_$mode" >&2
    drain; "$WAKEUP" etcd "127.0.0.1:$ETCD_PORT" "$WATCHERS" "$mode" | tee -a "$work/wake_etcd_$mode" >&2
  done
done
median() { # file field
  grep -o "$2=[0-9.]*" "$1" | cut -d= -f2 | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'
}
wake_lines=()
for mode in $WAKE_MODES; do
  for t in meshgate etcd; do
    f="$work/wake_${t}_$mode"
    wake_lines+=("$(printf '%-8s client=%-5s p50 %s ms, p99 %s ms (median of %s runs)' "$t:" "$mode" "$(median "$f" p50_ms)" "$(median "$f" p99_ms)" "$WAKE_RUNS")")
  done
done
rss_after_kib=$(awk '/VmRSS/{print $2}' "/proc/$mg_pid/status")

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); $(date -u +%Y-%m-%d)"
echo "meshgate $("$MESHGATE" version | head -1 | awk '{print $2}'), etcd $(etcd --version | awk '/etcd Version/{print $3}'), wrk, ${DURATION} per cell"
echo
printf '%-12s %14s %14s %8s\n' "cell" "meshgate r/s" "etcd r/s" "ratio"
for op in put get; do
  for c in 1 64; do
    m=${R[mg_${op}_$c]}; e=${R[etcd_${op}_$c]}
    printf '%-12s %14s %14s %8s\n' "${op^^} c=$c" "$m" "$e" "$(awk -v m="$m" -v e="$e" 'BEGIN{printf "%.2fx", m/e}')"
  done
done
echo
echo "wake-up of $WATCHERS blocking queries on one key, written once:"
printf '  %s\n' "${wake_lines[@]}"
echo
echo "RSS idle: meshgate $((rss_idle_kib / 1024)) MiB, etcd $((etcd_rss_idle_kib / 1024)) MiB; meshgate after the run (peak of $WATCHERS open watchers) $((rss_after_kib / 1024)) MiB"
