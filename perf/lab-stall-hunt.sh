#!/usr/bin/env bash
# Hunts rare stalls of both directions at once through the lab: TRIES transfers of
# BOTH_MB each way (default 20) over DSL 40 Mbit/s 10 ms + LTE 20 Mbit/s 40 ms, a
# fresh lab (prefix LAB_PREFIX=hachu) for every try, the real Linux MPTCP client
# with its Convert request in the SYN, the plain TCP test server (CUBIC). A try
# still running after STALL_S seconds (default 15; a transfer takes ~5 s) is a
# stall: the client's and server's `ss -tinmHM` and `nstat`, hacd's metrics and
# sessions, its log and 8 s of capture (perf/lab_sniff.py) on dsl0, lte0 and the
# server's link go to OUTDIR/stallN (default /tmp/lab-stall-hunt), and the
# snapshots are taken again 9 s later.
# Usage (root): perf/lab-stall-hunt.sh [TRIES]   (default 30; HACD=path to test a build;
# LOSS=percent on both access links, each direction, default 0)
# Session 13: 2 stalls in 19 tries with 83fb569, 0 in 30 after its fix.
set -uo pipefail
cd "$(dirname "$0")/.."
TRIES=${1:-30}
[[ $TRIES =~ ^[1-9][0-9]{0,2}$ ]] || { echo "TRIES must be 1..999" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "lab-stall-hunt.sh: needs root" >&2; exit 1; }
export LAB_PREFIX=${LAB_PREFIX:-hachu}
export LAB_RUN=/run/$LAB_PREFIX-lab
export HACD=${HACD:-$(pwd)/target/release/hacd}
[[ -x $HACD ]] || { echo "lab-stall-hunt.sh: $HACD missing (cargo build --release -p hac-hacd)" >&2; exit 1; }
BOTH_MB=${BOTH_MB:-20}
STALL_S=${STALL_S:-15}
LOSS=${LOSS:-0}
[[ $LOSS =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "LOSS must be a percentage" >&2; exit 2; }
OUTDIR=${OUTDIR:-/tmp/lab-stall-hunt}
mkdir -p "$OUTDIR"
S=dataplane/harness/scripts
convert=010622630a051f9000000000000000000000ffffc6336402 # 198.51.100.2:8080
cli=$LAB_PREFIX-client srv=$LAB_PREFIX-server
cleanup() { bash deploy/lab.sh down >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 143' TERM INT
stalls=0
for i in $(seq 1 "$TRIES"); do
    export LAB_SCHEDULER=aggregate LAB_MULTIPATH=auto
    bash deploy/lab.sh down >/dev/null 2>&1
    bash deploy/lab.sh up >/dev/null 2>&1 || { echo "try $i: lab.sh up failed"; continue; }
    bash deploy/lab.sh shape dsl 40 10 "$LOSS" >/dev/null
    bash deploy/lab.sh shape lte 20 40 "$LOSS" >/dev/null
    # server.py exits at EOF on stdin: give it one that lasts.
    ip netns exec "$srv" python3 -u $S/server.py --bind 198.51.100.2 --port 8080 --cc cubic \
        --lifetime 120 < <(sleep 130) >"$OUTDIR/server.log" 2>&1 &
    sp=$!
    for _ in $(seq 50); do grep -q '"ready"' "$OUTDIR/server.log" 2>/dev/null && break; sleep 0.1; done
    ip netns exec "$cli" python3 $S/client.py --mptcp --id "h$i" --up $((BOTH_MB << 20)) \
        --down $((BOTH_MB << 20)) --timeout 60 --target 192.0.2.1 --port 5124 \
        --convert-hex $convert --request-in-syn >"$OUTDIR/client.out" 2>&1 &
    cp=$!
    for _ in $(seq 1 $((STALL_S * 10))); do sleep 0.1; kill -0 $cp 2>/dev/null || break; done
    if kill -0 $cp 2>/dev/null; then
        stalls=$((stalls + 1))
        d=$OUTDIR/stall$i
        rm -rf "$d"; mkdir -p "$d"
        echo "try $i: STALL, diagnostics in $d"
        for ifc in $(ip -n "$srv" -o link | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -v '^lo$'); do
            ip netns exec "$srv" python3 perf/lab_sniff.py "$ifc" 8 >"$d/srv-$ifc.txt" 2>&1 &
        done
        for ifc in dsl0 lte0; do
            ip netns exec "$cli" python3 perf/lab_sniff.py $ifc 8 >"$d/cli-$ifc.txt" 2>&1 &
        done
        snap() {
            ip netns exec "$cli" ss -tinmHM >"$d/ss-client$1.txt" 2>&1
            ip netns exec "$srv" ss -tinm >"$d/ss-server$1.txt" 2>&1
            ip netns exec "$cli" nstat -az >"$d/nstat-client$1.txt" 2>&1
            ip netns exec "$srv" nstat -az >"$d/nstat-server$1.txt" 2>&1
            bash deploy/lab.sh metrics >"$d/metrics$1.txt" 2>&1
            bash deploy/lab.sh ctl session list >"$d/sessions$1.txt" 2>&1
        }
        snap ""
        sleep 9
        snap 2
        cp "$LAB_RUN/hacd.log" "$d/" 2>/dev/null
        kill $cp 2>/dev/null
        wait $cp 2>/dev/null
    else
        wait $cp
        sleep 0.5 # the server's record follows its close
        echo "try $i: $(python3 -c 'import json,sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
s = [json.loads(l) for l in open(sys.argv[2]) if "\"conn\"" in l]
up = s[-1].get("up_done") if s else None
print("%.2f s (up done %s s, down done %s s), error %s" % (
    r["elapsed"], up, r.get("down_done"), r.get("error")))' "$OUTDIR/client.out" "$OUTDIR/server.log")"
    fi
    kill $sp 2>/dev/null
    wait $sp 2>/dev/null
done
echo "stalls: $stalls of $TRIES"
