#!/usr/bin/env bash
# Multipath in the lab (deploy/lab.sh), issue 5: goodput of a DURATION-second download
# over two shaped access links, as a fraction of the sum of the link rates, for hacd
# with each scheduler policy (aggregate, overflow, failover) and, in the same run, the
# two Linux baselines — MPTCP end to end (LAB_KERNEL_E2E=1, server.py --mptcp) and the
# kernel MPTCP proxy (LAB_KERNEL_PROXY=1, `mptcpize run socat`); then the failover gap
# (DSL cut GAP_CUT s into a download, restored GAP_RESTORE s later; the client reports
# the longest time without received bytes). Every transfer is checked byte for byte
# against the server's record. Prints the table, writes a CSV and an SVG plot.
#
# Usage (root): perf/lab-multipath.sh [RUNS]        (default 1; medians over runs)
#
# Cases (perf/lab_multipath.py, CASES): 10+10 Mbit/s; 30+10 Mbit/s; 10+10 Mbit/s with
# 1 ms vs 50 ms one-way delay; DSL 40 Mbit/s 10 ms + LTE 20 Mbit/s 40 ms, 0.5 % loss
# on LTE. Environment (defaults): DURATION=30 (s per transfer: the byte count is
# DURATION at the link sum), WARMUP=0 (s: an unmeasured transfer before each measured
# one, every mode alike; hacd learns the subscriber's paths from it, docs/multipath.md
# "Path memory"), MODES="aggregate overflow failover kernel-e2e
# kernel-proxy", CASES="10+10 30+10 10+10-delay dsl-lte", GAP=1, GAP_CUT=10,
# GAP_RESTORE=8, SERVER_CC (the test server's congestion control, e.g. cubic or bbr;
# default the namespace's, bbr on these machines), LAB_PREFIX=hacmp (its own namespaces: never the `hac` lab),
# CSV=docs/perf-multipath.csv, SVG=docs/perf-multipath.svg, RAW=/tmp/lab-multipath-<prefix>.jsonl,
# HACD / LINKEMU (default $CARGO_TARGET_DIR or target, /release/…; built here unless
# NO_BUILD=1). A full run (5 modes × 4 cases × 30 s + failover) takes about 15 min.
#
# Re-plot from a CSV without the lab: python3 perf/lab_multipath.py report CSV [SVG]
set -euo pipefail
cd "$(dirname "$0")/.."
export RUNS=${1:-${RUNS:-1}}
[[ $RUNS =~ ^[1-9][0-9]?$ ]] || { echo "RUNS must be 1..99" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "lab-multipath.sh: run as root (network namespaces)" >&2; exit 1; }
target=${CARGO_TARGET_DIR:-target}
export HACD=${HACD:-$target/release/hacd} LINKEMU=${LINKEMU:-$target/release/hac-linkemu}
if [[ ${NO_BUILD:-0} != 1 ]]; then
    cargo build --release -q -p hac-hacd -p hac-linkemu
fi
for b in "$HACD" "$LINKEMU"; do
    [[ -x $b ]] || { echo "lab-multipath.sh: $b missing (build it or set HACD / LINKEMU)" >&2; exit 1; }
done
if ! command -v mptcpize >/dev/null || ! command -v socat >/dev/null; then
    echo "lab-multipath.sh: the kernel-proxy baseline needs socat and mptcpize (mptcpd)" >&2
    exit 1
fi
# A whole run is bounded: every transfer has its own timeout; this is the backstop
# (SIGTERM makes the driver take its lab down; `down` again in any case).
rc=0
timeout -k 30 "${LAB_MULTIPATH_LIMIT:-7200}" python3 -u perf/lab_multipath.py run || rc=$?
LAB_PREFIX=${LAB_PREFIX:-hacmp} bash deploy/lab.sh down >/dev/null 2>&1 || true
exit $rc
