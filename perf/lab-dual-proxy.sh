#!/usr/bin/env bash
# Dual-proxy figures in the lab (deploy/lab.sh up --dual-proxy), issue 7:
#
# 1. Time to first byte of a small HTTP GET, in round trips of the DSL path:
#    - from the LAN host through hac-cpe and hacd (unmodified curl), and
#    - from the client namespace through hacd with the Convert request and the HTTP
#      request in one TFO SYN (dataplane/harness/scripts/client.py --request-in-syn),
#      the best the converter path can do, and
#    - the RTT itself (ping from the client namespace to the DSL gateway), so a
#      direct plain TCP connection would show 2 RTT (handshake, then request).
#    DSL shaped to 20 Mbit/s with DELAY ms one way, LTE 20 Mbit/s, 20 ms.
# 2. hac-cpe CPU per GB relayed: an unshaped download of GB_MB MiB from the LAN host,
#    hac-cpe's utime+stime (/proc/PID/stat) before and after.
# 3. Aggregation through the dual-proxy path on the multipath benchmark's cases
#    (perf/lab_multipath.py CASES: 10+10; 30+10; 10+10 with 1 vs 50 ms; DSL 40 Mbit/s
#    10 ms + LTE 20 Mbit/s 40 ms 0.5 % loss): goodput of a DURATION-second download
#    by curl on the LAN host through hac-cpe + hacd, as a fraction of the link sum,
#    next to the direct MPTCP client's figure (client.py through hacd) from the same
#    lab and case; byte-exact (perf/lab_dual_proxy_agg.py, a fresh lab).
#
# Usage (root): perf/lab-dual-proxy.sh
# Environment (defaults): PARTS="ttfb cpu agg" (which of 1, 2, 3), N=20 (requests per
# TTFB figure), DELAY=10, GB_MB=1024, DURATION=20, RUNS=1 and CASES (all) for part 3,
# LAB_PREFIX=haccp (its own namespaces), HACD / HACCTL / HAC_CPE / LINKEMU (default
# $CARGO_TARGET_DIR or target, /release/…; built here unless NO_BUILD=1).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "lab-dual-proxy.sh: run as root" >&2; exit 1; }
target=${CARGO_TARGET_DIR:-target}
export HACD=${HACD:-$target/release/hacd} HACCTL=${HACCTL:-$target/release/hacctl}
export HAC_CPE=${HAC_CPE:-$target/release/hac-cpe} LINKEMU=${LINKEMU:-$target/release/hac-linkemu}
if [[ ${NO_BUILD:-0} != 1 ]]; then
    cargo build --release -q -p hac-hacd -p hacctl -p hac-cpe -p hac-linkemu
fi
export LAB_PREFIX=${LAB_PREFIX:-haccp}
export LAB_RUN=${LAB_RUN:-/run/$LAB_PREFIX-lab}
N=${N:-20} DELAY=${DELAY:-10} GB_MB=${GB_MB:-1024} PARTS=${PARTS:-ttfb cpu agg}
has() { [[ " $PARTS " == *" $1 "* ]]; }
P=$LAB_PREFIX
www=$(mktemp -d /tmp/$P-www.XXXXXX)
srv_pid= harness_pid=
cleanup() {
    [[ -n $srv_pid ]] && kill "$srv_pid" 2>/dev/null || true
    [[ -n $harness_pid ]] && kill "$harness_pid" 2>/dev/null || true
    deploy/lab.sh down >/dev/null 2>&1 || true
    rm -rf "$www"
}
trap cleanup EXIT
head -c 1024 /dev/urandom >"$www/small.bin"
truncate -s $((GB_MB << 20)) "$www/big.bin"

if has ttfb || has cpu; then
deploy/lab.sh down >/dev/null 2>&1 || true
deploy/lab.sh up --dual-proxy
# The HTTP server (cpe/tests/scripts/http_server.py) for curl; the harness server
# (port 8081) for client.py.
exec 7> >(ip netns exec "$P-server" python3 -u cpe/tests/scripts/http_server.py --dir "$www" \
    --port 8080 --lifetime 900 >/dev/null)
srv_pid=$!
# (server.py exits when its stdin ends: fd 8 holds it open until the end.)
exec 8> >(ip netns exec "$P-server" python3 -u dataplane/harness/scripts/server.py \
    --bind 198.51.100.2 --port 8081 --io-timeout 30 --lifetime 900 >/dev/null 2>&1)
harness_pid=$!
sleep 1
deploy/lab.sh shape dsl 20 "$DELAY" >/dev/null
deploy/lab.sh shape lte 20 20 >/dev/null

if has ttfb; then
rtt=$(ip netns exec "$P-client" ping -n -q -c 10 -i 0.2 198.18.1.1 | awk -F/ '/rtt/ {print $5}')
echo "DSL RTT (ping, client namespace): ${rtt} ms"

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

lan=$(for ((i = 0; i < N; i++)); do
    ip netns exec "$P-lan" curl -sS -o /dev/null -w '%{time_starttransfer}\n' \
        --max-time 10 http://198.51.100.2:8080/small.bin
done | awk '{print $1 * 1000}' | median)
# Convert request to [::ffff:198.51.100.2]:8081, then the harness command line in the SYN.
convert=010622630a051f9100000000000000000000ffffc6336402
cli=$(for ((i = 0; i < N; i++)); do
    ip netns exec "$P-client" python3 dataplane/harness/scripts/client.py --target 192.0.2.1 \
        --port 5124 --mptcp --convert-hex "$convert" --request-in-syn --id ttfb$i --down 1024 \
        --timeout 10 | python3 -c 'import json,sys; print(1000 * json.load(sys.stdin)["first_byte_after"])'
done | median)
python3 - "$rtt" "$lan" "$cli" <<'PY'
import sys
rtt, lan, cli = map(float, sys.argv[1:])
print("time to first byte, median of N requests:")
print("  LAN host via hac-cpe + hacd (curl) : %6.1f ms = %.2f RTT" % (lan, lan / rtt))
print("  client.py, request in the SYN      : %6.1f ms = %.2f RTT" % (cli, cli / rtt))
print("  direct plain TCP (handshake + GET) : %6.1f ms = 2.00 RTT (by construction)" % (2 * rtt))
PY
fi

if has cpu; then
deploy/lab.sh shape dsl 0 0 >/dev/null
deploy/lab.sh shape lte 0 0 >/dev/null
pid=$(<"$LAB_RUN/cpe.pid")
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
t0=$(ticks)
s0=$(date +%s.%N)
ip netns exec "$P-lan" curl -sS -o /dev/null --max-time 600 http://198.51.100.2:8080/big.bin
s1=$(date +%s.%N)
t1=$(ticks)
python3 - "$t0" "$t1" "$hz" "$GB_MB" "$s0" "$s1" <<'PY'
import sys
t0, t1, hz, mb, s0, s1 = map(float, sys.argv[1:])
cpu = (t1 - t0) / hz
gb = mb / 1024
print("hac-cpe CPU per GB relayed: %.2f s (%.0f MiB in %.1f s, %.0f Mbit/s, hac-cpe %.0f %% of a core)"
      % (cpu / gb, mb, s1 - s0, mb * 8 * 1.048576 / (s1 - s0), 100 * cpu / (s1 - s0)))
PY
fi
exec 7>&- 8>&-
kill "$srv_pid" "$harness_pid" 2>/dev/null || true
srv_pid= harness_pid=
deploy/lab.sh down >/dev/null 2>&1 || true
fi

if has agg; then
    timeout -k 30 "${LAB_AGG_LIMIT:-3600}" python3 -u perf/lab_dual_proxy_agg.py
fi
