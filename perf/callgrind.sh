#!/usr/bin/env bash
# Instructions per operation for the hac-wire hot paths, measured with callgrind:
# (Ir(N) - Ir(0)) / N, so start-up (pcap loading, runtime init) cancels out.
# Usage: perf/callgrind.sh [N]   (default N = 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
cargo build --release -q -p hac-perf --bin wire_instr
bin=target/release/wire_instr
ir() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
printf '%-16s %12s\n' operation instr/op
for op in parse headers rewrite full-checksum; do
    a=$(ir "$op" 0)
    b=$(ir "$op" "$N")
    awk -v o="$op" -v a="$a" -v b="$b" -v n="$N" 'BEGIN { printf "%-16s %12.1f\n", o, (b - a) / n }'
done
