#!/usr/bin/env bash
# Download throughput through the lab (deploy/lab.sh): hacd on DPDK (one worker)
# against the Linux-kernel MPTCP proxy baseline (`mptcpize run socat`, same topology),
# in the same run. Real Linux MPTCP client in hac-client, plain TCP server in
# hac-server, every transfer byte-exact (SHA-256 checked by the test scripts).
#
# Usage (root): perf/lab-throughput.sh [RUNS]   (default 3; medians are printed)
# Cases: unshaped links; DSL shaped to 40 Mbit/s 10 ms (single path).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
SCRIPTS=dataplane/harness/scripts
CONVERT=010622630a051f9000000000000000000000ffffc6336402   # Connect [::ffff:198.51.100.2]:8080
LAB=deploy/lab.sh
cargo build --release -q -p hac-hacd -p hac-linkemu

server_fifo=/run/hac-perf-server.in
start_servers() { # test servers on 8080 (hacd) and 5201 (kernel proxy target)
    rm -f "$server_fifo"; mkfifo "$server_fifo"
    exec 8<>"$server_fifo"
    for port in 8080 5201; do
        (ip netns exec hac-server python3 -u "$SCRIPTS/server.py" --bind 198.51.100.2 --port "$port" \
            --io-timeout 30 --lifetime 600 <"$server_fifo" >/dev/null 2>&1 8>&- &) 8>&-
    done
    sleep 1
}
stop_servers() { exec 8>&- || true; rm -f "$server_fifo"; }

one() { # one MODE MBYTES -> Mbit/s (empty on failure)
    local mode=$1 mb=$2 out
    if [[ $mode == hacd ]]; then
        out=$(ip netns exec hac-client python3 "$SCRIPTS/client.py" --target 192.0.2.1 --port 5124 --mptcp \
            --convert-hex "$CONVERT" --request-in-syn --id "p$RANDOM" --down $((mb << 20)) --timeout 120)
    else
        out=$(ip netns exec hac-client python3 "$SCRIPTS/client.py" --target 192.0.2.1 --port 5124 --mptcp \
            --id "p$RANDOM" --down $((mb << 20)) --timeout 120)
    fi
    python3 -c '
import json, sys
r = json.loads(sys.argv[1]); n = int(sys.argv[2])
ok = r["bytes_recv"] == n and r["eof"] and not r.get("error")
print("%.1f" % (8 * n / r["elapsed"] / 1e6) if ok else "FAIL(%s)" % (r.get("error") or r["bytes_recv"]))' "$out" $((mb << 20))
}

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

declare -A result
for mode in hacd kernel-proxy; do
    bash $LAB down >/dev/null 2>&1 || true
    if [[ $mode == hacd ]]; then bash $LAB up >/dev/null; else LAB_KERNEL_PROXY=1 bash $LAB up >/dev/null; fi
    start_servers
    for c in unshaped dsl40; do
        if [[ $c == dsl40 ]]; then bash $LAB shape dsl 40 10 >/dev/null; mb=20; else mb=100; fi
        vals=""
        for ((i = 0; i < RUNS; i++)); do vals+="$(one "$mode" "$mb") "; done
        result[$mode,$c]="$vals"
        echo "$mode $c: $vals(Mbit/s)" >&2
    done
    stop_servers
    if [[ $mode == hacd ]]; then
        # hacd logs per-worker frames, bytes and busy time (polling rounds that handled
        # packets) when it stops: CPU cost per GB of frames it received.
        kill "$(cat /run/hac-lab/hacd.pid)" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do grep -q "worker stopped" /run/hac-lab/hacd.log 2>/dev/null && break; sleep 0.1; done
        cpu_per_gb=$(grep "worker stopped" /run/hac-lab/hacd.log | python3 -c '
import re, sys
b = ms = 0
for l in sys.stdin:
    b += int(re.search(r"rx_bytes=(\d+)", l).group(1)); ms += int(re.search(r"busy_ms=(\d+)", l).group(1))
print("%.2f CPU-s per GB of frames (%d ms busy, %.2f GB)" % (ms / 1000 / (b / 1e9), ms, b / 1e9) if b else "n/a")')
        echo "hacd worker: $cpu_per_gb" >&2
    fi
    bash $LAB down >/dev/null
done
printf '\n%-10s %-22s %-22s %s\n' case hacd kernel-proxy 'ratio (medians)'
for c in unshaped dsl40; do
    h=$(echo "${result[hacd,$c]}" | median); k=$(echo "${result[kernel-proxy,$c]}" | median)
    printf '%-10s %-22s %-22s %s\n' "$c" "$h" "$k" "$(awk -v h="$h" -v k="$k" 'BEGIN { if (k > 0) printf "%.2f", h / k }')"
done
echo "hacd worker CPU: ${cpu_per_gb:-n/a}"
