#!/usr/bin/env bash
# Cluster benchmark: a 3-server meshgate cluster against a 3-member etcd
# cluster, in one run, on loopback, under the same load generator (wrk).
# Both sides are durable: every acknowledged write is fsynced on a quorum
# (meshgate's raft log in redb, etcd's WAL), both data dirs on the same disk.
#
# Prints KV PUT throughput at 1 and 64 connections and the commit latency
# p50/p99 (wrk's latency distribution; at 1 connection it is the commit
# latency of a single write), with ratios meshgate/etcd. Writes go to each
# cluster's leader (a follower would add a forwarding hop on both sides).
#
# Needs: wrk, etcd, curl, jq (Debian: apt-get install wrk etcd-server curl jq).
# Usage (NO_BUILD=1 skips the release build):
#   bench/cluster.sh              # 10 s per cell
#   DURATION=30s bench/cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/kv-lua.sh

DURATION=${DURATION:-10s}
MG_IPS=(127.0.0.201 127.0.0.202 127.0.0.203)
ETCD_IPS=(127.0.0.211 127.0.0.212 127.0.0.213)

for tool in wrk etcd curl jq; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y wrk etcd-server curl jq" >&2; exit 1; }
done

[ -n "${NO_BUILD:-}" ] || cargo build --release -q
MESHGATE=target/release/meshgate

# On disk, not tmpfs: both sides pay for fsync.
work=$(mktemp -d -p /var/tmp meshgate-bench-cluster.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

join_args=()
for ip in "${MG_IPS[@]}"; do join_args+=("-retry-join=$ip"); done
for i in 0 1 2; do
  ip=${MG_IPS[$i]}
  "$MESHGATE" agent -server -bootstrap-expect=3 -node "server-$((i + 1))" \
    -bind "$ip" -client "$ip" -dns-port -1 -data-dir "$work/mg$i" "${join_args[@]}" \
    -log-level warn >"$work/meshgate$i.log" 2>&1 &
  pids+=($!)
done
cluster=""
for i in 0 1 2; do
  cluster+="${cluster:+,}e$i=http://${ETCD_IPS[$i]}:2380"
done
for i in 0 1 2; do
  ip=${ETCD_IPS[$i]}
  etcd --name "e$i" --data-dir "$work/etcd$i" \
    --listen-client-urls "http://$ip:2379" --advertise-client-urls "http://$ip:2379" \
    --listen-peer-urls "http://$ip:2380" --initial-advertise-peer-urls "http://$ip:2380" \
    --initial-cluster "$cluster" --initial-cluster-state new \
    --log-level warn --logger zap >"$work/etcd$i.log" 2>&1 &
  pids+=($!)
done

# The leaders: meshgate names its leader's server port; etcd's status says
# which member leads.
mg_leader=""
for _ in $(seq 200); do
  l=$(curl -sf "http://${MG_IPS[0]}:8500/v1/status/leader" | tr -d '"' || true)
  if [ -n "$l" ] && curl -sf -X PUT -d x "http://${l%:*}:8500/v1/kv/warmup" >/dev/null; then
    mg_leader=${l%:*}
    break
  fi
  sleep 0.1
done
[ -n "$mg_leader" ] || { echo "meshgate cluster did not form" >&2; tail "$work"/meshgate*.log >&2; exit 1; }
etcd_leader=""
for _ in $(seq 200); do
  for ip in "${ETCD_IPS[@]}"; do
    s=$(curl -sf -X POST -d '{}' "http://$ip:2379/v3/maintenance/status" || true)
    if [ -n "$s" ] && [ "$(jq -r '.header.member_id' <<<"$s")" = "$(jq -r '.leader' <<<"$s")" ]; then
      etcd_leader=$ip
    fi
  done
  [ -n "$etcd_leader" ] && break
  sleep 0.1
done
[ -n "$etcd_leader" ] || { echo "etcd cluster did not form" >&2; tail "$work"/etcd*.log >&2; exit 1; }

# The same wrk scripts as bench/kv.sh: every PUT writes a new value to one of
# 1000 keys, the etcd bodies carry the same bytes in base64.
write_kv_lua "$work"

# wrk with its latency distribution: "req/s p50 p99" (latencies in ms).
run() { # url script connections
  local threads=1
  [ "$3" -gt 1 ] && threads=2
  wrk -t"$threads" -c"$3" -d"$DURATION" --latency -s "$2" "$1" 2>/dev/null | awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
      return v
    }
    /Requests\/sec/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    END { printf "%s %.2f %.2f\n", rps, p50, p99 }'
}

declare -A R
for c in 1 64; do
  R[mg_$c]=$(run "http://$mg_leader:8500" "$work/mg_put.lua" "$c")
  R[etcd_$c]=$(run "http://$etcd_leader:2379" "$work/etcd_put.lua" "$c")
done

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(lscpu | awk -F: '/Model name/{gsub(/^ +/, "", $2); print $2}'); $(date -u +%Y-%m-%d)"
echo "meshgate $("$MESHGATE" version | head -1 | awk '{print $2}') (3 servers), etcd $(etcd --version | awk '/etcd Version/{print $3}') (3 members), wrk --latency, ${DURATION} per cell; data on $(df --output=source "$work" | tail -1)"
echo
printf '%-10s %12s %12s %7s   %18s %18s %9s\n' "PUT" "meshgate r/s" "etcd r/s" "ratio" "meshgate p50/p99" "etcd p50/p99" "p99 ratio"
for c in 1 64; do
  read -r mr m50 m99 <<<"${R[mg_$c]}"
  read -r er e50 e99 <<<"${R[etcd_$c]}"
  printf '%-10s %12s %12s %7s   %8s/%-6s ms %8s/%-6s ms %9s\n' "c=$c" "$mr" "$er" \
    "$(awk -v m="$mr" -v e="$er" 'BEGIN{printf "%.2fx", m/e}')" "$m50" "$m99" "$e50" "$e99" \
    "$(awk -v m="$m99" -v e="$e99" 'BEGIN{printf "%.2fx", m/e}')"
done
echo
echo "Goal (issue 7): meshgate r/s >= 1.0x etcd, and meshgate p99 <= etcd p99 (p99 ratio <= 1.00x)."
