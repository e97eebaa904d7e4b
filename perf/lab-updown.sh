#!/usr/bin/env bash
# Uploads and both directions at once through the lab (deploy/lab.sh), hacd against
# the Linux-kernel MPTCP proxy in the same run: the real Linux MPTCP client
# (client.py --mptcp, Convert request in the SYN for hacd) over DSL 40 Mbit/s 10 ms +
# LTE 20 Mbit/s 40 ms, no loss, to the plain TCP test server. Each transfer is
# checked byte for byte (SHA-256 both ways against the server's record).
#
# Cases: `up` (UP_MB up, nothing down), `both` (BOTH_MB each way at once),
# `demo` (the lab demo's transfer: 10 MB up and 40 MB down at once).
# Prints one line per transfer (elapsed, Mbit/s each way, the client's TCP
# retransmissions and timeouts from nstat) and the median elapsed per mode and case.
#
# Usage (root): perf/lab-updown.sh [RUNS]     (default 3; modes interleaved per run)
# Environment (defaults): CASES="up both demo", MODES="aggregate kernel-proxy" (add
# `base` with HACD_BASE=PATH: another hacd build, aggregate, as a baseline in the same run),
# SERVER_CC=cubic (the test server's congestion control), UP_MB=40, BOTH_MB=20,
# LAB_PREFIX=hacud (its own namespaces), HACD / LINKEMU / HACCTL (default
# $CARGO_TARGET_DIR or target, /release/…; built here unless NO_BUILD=1),
# OUT=/tmp/lab-updown-<prefix>.txt (the per-transfer lines). Each transfer is
# bounded by a 120 s client timeout; the whole run by LAB_UPDOWN_LIMIT (3600 s).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z ${LAB_UPDOWN_INNER:-} ]]; then
    # The whole run is bounded; the inner run takes its lab down on SIGTERM.
    LAB_UPDOWN_INNER=1 exec timeout -k 30 "${LAB_UPDOWN_LIMIT:-3600}" bash "$0" "$@"
fi
RUNS=${1:-${RUNS:-3}}
[[ $RUNS =~ ^[1-9][0-9]?$ ]] || { echo "RUNS must be 1..99" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "lab-updown.sh: run as root (network namespaces)" >&2; exit 1; }
target=${CARGO_TARGET_DIR:-target}
export HACD=${HACD:-$target/release/hacd} LINKEMU=${LINKEMU:-$target/release/hac-linkemu}
export HACCTL=${HACCTL:-$target/release/hacctl}
if [[ ${NO_BUILD:-0} != 1 ]]; then
    cargo build --release -q -p hac-hacd -p hac-linkemu -p hacctl
fi
for b in "$HACD" "$LINKEMU"; do
    [[ -x $b ]] || { echo "lab-updown.sh: $b missing (build it or set HACD / LINKEMU)" >&2; exit 1; }
done
export LAB_PREFIX=${LAB_PREFIX:-hacud}
export LAB_RUN=/run/$LAB_PREFIX-lab
CASES=${CASES:-up both demo}
MODES=${MODES:-aggregate kernel-proxy}
CC=${SERVER_CC:-cubic}
UP_MB=${UP_MB:-40}
BOTH_MB=${BOTH_MB:-20}
OUT=${OUT:-/tmp/lab-updown-$LAB_PREFIX.txt}
scripts=dataplane/harness/scripts
convert=010622630a051f9000000000000000000000ffffc6336402
: >"$OUT"
srv_pid=
cleanup() {
    exec 9>&- 2>/dev/null || true
    [[ -n $srv_pid ]] && kill "$srv_pid" 2>/dev/null || true
    bash deploy/lab.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 143' TERM INT

one() { # one MODE CASE RUN
    local mode=$1 case=$2 run=$3 args port cargs
    case $case in
        up) args="--up $((UP_MB << 20))" ;;
        both) args="--up $((BOTH_MB << 20)) --down $((BOTH_MB << 20))" ;;
        demo) args="--up $((10 << 20)) --down $((40 << 20))" ;;
        *) echo "unknown case $case" >&2; return 2 ;;
    esac
    unset LAB_KERNEL_PROXY LAB_SCHEDULER LAB_MULTIPATH
    local hacd=$HACD
    if [[ $mode == base ]]; then
        [[ -x ${HACD_BASE:-} ]] || { echo "mode base needs HACD_BASE" >&2; return 2; }
        hacd=$HACD_BASE
    fi
    if [[ $mode == kernel-proxy ]]; then
        export LAB_KERNEL_PROXY=1
        port=5201
        cargs="--target 192.0.2.1 --port 5124"
    else
        export LAB_SCHEDULER=${mode/base/aggregate} LAB_MULTIPATH=auto
        port=8080
        cargs="--target 192.0.2.1 --port 5124 --convert-hex $convert --request-in-syn"
    fi
    bash deploy/lab.sh down >/dev/null 2>&1 || true
    HACD=$hacd bash deploy/lab.sh up >/dev/null
    bash deploy/lab.sh shape dsl 40 10 0 >/dev/null
    bash deploy/lab.sh shape lte 20 40 0 >/dev/null
    # The server exits when its stdin (a fifo only this shell holds open, fd 9)
    # closes, or after its lifetime.
    rm -f "$LAB_RUN/ud-server.in"
    mkfifo "$LAB_RUN/ud-server.in"
    exec 9<>"$LAB_RUN/ud-server.in"
    ip netns exec "$LAB_PREFIX-server" python3 -u "$scripts/server.py" --bind 198.51.100.2 \
        --port "$port" --cc "$CC" --lifetime 600 <"$LAB_RUN/ud-server.in" >"$LAB_RUN/ud-server.log" 2>&1 9>&- &
    srv_pid=$!
    for _ in $(seq 50); do grep -q '"ready"' "$LAB_RUN/ud-server.log" 2>/dev/null && break; sleep 0.1; done
    ip netns exec "$LAB_PREFIX-client" nstat -n >/dev/null 2>&1 || true
    local res
    # shellcheck disable=SC2086
    res=$(ip netns exec "$LAB_PREFIX-client" python3 "$scripts/client.py" --mptcp --id "ud$run$case" \
        $args --timeout 120 $cargs 9>&- || true)
    local ns
    ns=$(ip netns exec "$LAB_PREFIX-client" nstat -az TcpRetransSegs TcpExtTCPTimeouts 2>/dev/null |
        awk '/TcpRetransSegs/ {r=$2} /TCPTimeouts/ {t=$2} END {printf "%d %d", r, t}')
    # The server writes its record once its side has closed: wait for it.
    local srv= _
    for _ in $(seq 150); do
        srv=$(grep '"conn"' "$LAB_RUN/ud-server.log" | grep "\"ud$run$case\"" | tail -1 || true)
        [[ -n $srv ]] && break
        sleep 0.1
    done
    python3 - "$mode" "$case" "$run" "$res" "$srv" "$ns" <<'PY' | tee -a "$OUT"
import json, sys
mode, case, run, res, srv, ns = sys.argv[1:7]
try:
    c = json.loads(res.strip().splitlines()[-1])
except Exception:
    print("%-12s %-5s run %s FAILED: no client result" % (mode, case, run)); sys.exit(0)
s = json.loads(srv) if srv else {}
exact = bool(s) and s.get("recv_sha256") == c["sent_sha256"] and s.get("sent_sha256") == c["recv_sha256"]
verdict = "byte-exact" if exact else "NOT byte-exact" if s else "no server record"
e = c["elapsed"] or 1e-9
retrans, timeouts = ns.split()
print("%-12s %-5s run %s elapsed %7.2f s  up %5.1f  down %5.1f Mbit/s  retrans %5s timeouts %3s  %s%s" % (
    mode, case, run, e, 8 * c["bytes_sent"] / e / 1e6, 8 * c["bytes_recv"] / e / 1e6,
    retrans, timeouts, verdict,
    (" error: " + c["error"]) if c.get("error") else ""))
if s.get("up_done") is not None and c.get("down_done") is not None:
    # When each direction finished (the server's clock starts at its accept,
    # about half a round trip after the client's).
    print("%-12s %-5s run %s   up done %6.2f s  down done %6.2f s" % (
        mode, case, run, s["up_done"], c["down_done"]))
PY
    exec 9>&-
    kill "$srv_pid" 2>/dev/null || true
    wait "$srv_pid" 2>/dev/null || true
    srv_pid=
}

run_all() {
    for ((r = 1; r <= RUNS; r++)); do
        for case in $CASES; do
            for mode in $MODES; do
                one "$mode" "$case" "$r"
            done
        done
    done
}
rc=0
run_all || rc=$?
echo
echo "Median elapsed (s) over $RUNS run(s), server $CC; DSL 40/10 + LTE 20/40, no loss:"
python3 - "$OUT" <<'PY'
import re, statistics, sys
rows = {}
for l in open(sys.argv[1]):
    m = re.match(r"(\S+)\s+(\S+)\s+run \d+ elapsed\s+([\d.]+)", l)
    if m:
        rows.setdefault((m.group(2), m.group(1)), []).append(float(m.group(3)))
done = {}
for l in open(sys.argv[1]):
    m = re.match(r"(\S+)\s+(\S+)\s+run \d+\s+up done\s+([\d.]+) s\s+down done\s+([\d.]+)", l)
    if m:
        done.setdefault((m.group(2), m.group(1)), []).append((float(m.group(3)), float(m.group(4))))
for (case, mode), v in sorted(rows.items()):
    d = done.get((case, mode))
    each = ("; up done %.2f, down done %.2f" % (
        statistics.median(x[0] for x in d), statistics.median(x[1] for x in d))) if d else ""
    print("  %-5s %-12s %6.2f  (%s)%s" % (case, mode, statistics.median(v), " ".join("%.2f" % x for x in v), each))
PY
exit $rc
