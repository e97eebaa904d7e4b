#!/usr/bin/env bash
# Instructions per operation for the hac-core engine, measured with callgrind:
# (Ir(N) - Ir(0)) / N, so start-up (fixture handshakes, runtime init) cancels out,
# minus the same figure for the input-preparation baseline (packet copy for the
# per-packet ops, the recording engine for handshakes).
# Usage: perf/callgrind-engine.sh [N] [N_HANDSHAKE]   (defaults 100000, 20000)
# With PROFILE=1, also writes callgrind profiles of up64/down64/handshake to
# target/callgrind/ and prints the top functions (inclusive) of each.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
NH=${2:-20000}
cargo build --release -q -p hac-perf --bin engine_instr
bin=target/release/engine_instr
ir() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
per_op() { # op n -> instructions per op
    local a b
    a=$(ir "$1" 0)
    b=$(ir "$1" "$2")
    awk -v a="$a" -v b="$b" -v n="$2" 'BEGIN { printf "%.1f", (b - a) / n }'
}
printf '%-12s %12s %12s %12s\n' operation raw/op baseline/op engine/op
copy=$(per_op copy "$N")
printf '%-12s %12s %12s %12s\n' copy "$copy" - -
for op in up64 up1448 down64 down1448 nobinding; do
    r=$(per_op "$op" "$N")
    awk -v o="$op" -v r="$r" -v c="$copy" 'BEGIN { printf "%-12s %12.1f %12.1f %12.1f\n", o, r, c, r - c }'
done
p=$(per_op parse "$N")
printf '%-12s %12s %12s %12s\n' parse "$p" 0 "$p"
hb=$(per_op hs-inputs "$NH")
h=$(per_op handshake "$NH")
awk -v r="$h" -v c="$hb" 'BEGIN { printf "%-12s %12.1f %12.1f %12.1f\n", "handshake", r, c, r - c }'

if [ "${PROFILE:-0}" = 1 ]; then
    # Profiles of the engine only (--toggle-collect): inside handle_packet for the
    # per-packet ops, inside the replay of the three packets (handle_packet and
    # every poll_transmit, which may be inlined) for handshakes. Self cost per
    # source file:function (inlined code is listed under its source file), per op.
    mkdir -p target/callgrind
    for op in up64 down64 handshake; do
        n=$N toggle='*Engine*handle_packet*'
        [ "$op" = handshake ] && n=$NH toggle='*replay_handshake*'
        out=target/callgrind/engine-$op.out
        valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect="$toggle" \
            "$bin" "$op" "$n" >/dev/null 2>&1
        echo
        echo "== $op: self instructions per op by function (callgrind_annotate $out) =="
        callgrind_annotate --inclusive=no "$out" 2>/dev/null |
            awk -v n="$n" '/^-+$/ { d++; next } d >= 3 && $1 ~ /^[0-9,]+$/ {
                    ir = $1; gsub(",", "", ir); line = $0;
                    sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", line);
                    sub(/ \[.*\]$/, "", line);
                    sub(/^[^:]*\//, "", line);   # source file: basename only
                    printf "%10.1f  %s\n", ir / n, line }' | head -30 || true
    done
fi
