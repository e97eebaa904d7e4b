#!/usr/bin/env bash
# Memory per active bonded connection in the lab (deploy/lab.sh), issue 5: CONNS
# (1000) concurrent MPTCP downloads from the lab client over both access links, each
# joining its LTE subflow and paced by the server at RATE bytes/s so that all of them
# are active at once, through hacd (aggregate policy) and, in the same run, through
# the kernel MPTCP proxy (LAB_KERNEL_PROXY=1, `mptcpize run socat`). Measures the
# concentrator's memory before and while the connections run (hacd: anonymous RSS +
# repair-cache mbufs; kernel proxy: sockets, their buffers and the socat processes)
# and prints bytes per connection; every download is checked byte for byte at the end.
# Driver and details: perf/lab_multipath_mem.py.
#
# Usage (root): perf/lab-multipath-mem.sh [RUNS]      (default 1; medians over runs)
#
# Environment (defaults): CONNS=1000, STAGES=2 (measure at CONNS/2 and CONNS: the
# marginal cost per connection), RATE=4000 (B/s per download: 1000 × 32 kbit/s, below
# the DSL rate), LIFE=60 (s per download), OPEN_RATE=100 (connections/s), SAMPLES=3,
# MODES="aggregate kernel-proxy",
# DSL="40 10 0", LTE="20 40 0" (Mbit/s, one-way ms, loss %), LAB_PREFIX=hacmm (its own
# namespaces: never the `hac` lab), LAB_RUN=/run/<prefix>-lab,
# CSV=docs/perf-multipath-mem.csv, RAW=/tmp/lab-multipath-mem-<prefix>.jsonl,
# HACD / LINKEMU (default $CARGO_TARGET_DIR or target, /release/…; built here unless
# NO_BUILD=1). One run of both modes takes about 4 minutes.
#
# Re-print the table from a CSV without the lab: python3 perf/lab_multipath_mem.py report CSV
set -euo pipefail
cd "$(dirname "$0")/.."
export RUNS=${1:-${RUNS:-1}}
[[ $RUNS =~ ^[1-9][0-9]?$ ]] || { echo "RUNS must be 1..99" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "lab-multipath-mem.sh: run as root (network namespaces)" >&2; exit 1; }
export LAB_PREFIX=${LAB_PREFIX:-hacmm}
export LAB_RUN=${LAB_RUN:-/run/$LAB_PREFIX-lab}
target=${CARGO_TARGET_DIR:-target}
export HACD=${HACD:-$target/release/hacd} LINKEMU=${LINKEMU:-$target/release/hac-linkemu}
if [[ ${NO_BUILD:-0} != 1 ]]; then
    cargo build --release -q -p hac-hacd -p hac-linkemu
fi
for b in "$HACD" "$LINKEMU"; do
    [[ -x $b ]] || { echo "lab-multipath-mem.sh: $b missing (build it or set HACD / LINKEMU)" >&2; exit 1; }
done
if ! command -v mptcpize >/dev/null || ! command -v socat >/dev/null; then
    echo "lab-multipath-mem.sh: the kernel-proxy baseline needs socat and mptcpize (mptcpd)" >&2
    exit 1
fi
# Backstop for the whole run (each step has its own bounds); the lab goes down in any case.
rc=0
timeout -k 30 "${LAB_MULTIPATH_MEM_LIMIT:-3600}" python3 -u perf/lab_multipath_mem.py run || rc=$?
bash deploy/lab.sh down >/dev/null 2>&1 || true
exit $rc
