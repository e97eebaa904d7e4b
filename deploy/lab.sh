#!/usr/bin/env bash
# deploy/lab.sh — the hybrid-access lab in network namespaces (see deploy/README.md).
#
#   deploy/lab.sh up [--dual-proxy]       build the topology, start the link emulators
#                                         and hacd; return once hacd forwards.
#                                         --dual-proxy (or LAB_DUAL_PROXY=1): also a LAN
#                                         namespace $LAB_PREFIX-lan (plain TCP host
#                                         198.18.100.2) behind the client namespace, which
#                                         runs hac-cpe as its gateway (198.18.100.1); hacd
#                                         in dual-proxy mode with the CPE as subscriber
#   deploy/lab.sh down                    stop everything, remove every namespace
#   deploy/lab.sh status                  namespaces, processes, link parameters, counters
#   deploy/lab.sh shape dsl|lte RATE_MBIT DELAY_MS [LOSS_PCT]
#                                         shape an access link (both directions)
#   deploy/lab.sh link dsl|lte down|up    cut or restore an access link
#   deploy/lab.sh demo                    end-to-end demo (needs hacd)
#   deploy/lab.sh metrics                 print one scrape of hacd's /metrics (Prometheus
#                                         text format, fetched inside hac-conc)
#   deploy/lab.sh ctl ARGS...             hacctl ARGS... against the lab's hacd (its
#                                         management socket, from inside hac-conc)
#
# Environment:
#   HACD=PATH            hacd binary (default $CARGO_TARGET_DIR/release/hacd, else
#                        target/release/hacd; relative paths are taken from the repo)
#   HACCTL=PATH          hacctl binary (default $CARGO_TARGET_DIR/release/hacctl, else
#                        …/debug/hacctl, else target/…)
#   LINKEMU=PATH         link emulator (default $CARGO_TARGET_DIR/release/hac-linkemu,
#                        else target/release/hac-linkemu; built with cargo when missing)
#   LAB_SCHEDULER=POLICY hacd's downstream scheduler: aggregate | overflow | failover.
#                        Setting it renders the [multipath] section of deploy/lab.toml
#                        (primary_access = the DSL side) into hacd's configuration
#   LAB_MULTIPATH=MODE   auto (default when LAB_SCHEDULER is unset): render [multipath]
#                        (scheduler aggregate) only when `hacd --check` accepts it;
#                        on (default when LAB_SCHEDULER is set): always, and `up` fails
#                        at once if hacd rejects it; off: never
#   LAB_MAX_SUBFLOWS=8   [multipath] max_subflows;  LAB_REPAIR_CACHE=true|false
#   LAB_ANNOUNCE=1       hacd also serves 192.0.2.2 / 2001:db8:ffff::2, announces them
#                        with ADD_ADDR and sets flag C (no joins to the address a
#                        connection was opened to): [multipath] announce and
#                        no_joins_to_initial_address (implies LAB_MULTIPATH=on)
#   LAB_HANDSHAKE_HOLD=1 [multipath] handshake_hold = true (implies LAB_MULTIPATH=on)
#   LAB_KERNEL_ROUTER=1  no hacd: the Linux kernel in hac-conc routes (addresses on the
#                        hac-conc veths, forwarding on) — validates topology and shaping
#   LAB_KERNEL_PROXY=1   kernel router plus a kernel MPTCP proxy baseline in hac-conc:
#                        `mptcpize run socat` listening on 192.0.2.1 / 2001:db8:ffff::1
#                        port 5124, relaying from pool addresses 203.0.113.1 /
#                        2001:db8:200::1 to LAB_PROXY_TARGET_PORT (default 5201) on
#                        198.51.100.2 / 2001:db8:100::2
#   LAB_KERNEL_E2E=1     kernel router (as LAB_KERNEL_ROUTER) and MPTCP end to end:
#                        MPTCP on in hac-server (`ip mptcp limits set subflow 2`), so
#                        a server started there with IPPROTO_MPTCP (server.py --mptcp,
#                        or `mptcpize run`) takes the client's joins over lte directly
#   LAB_PREFIX=hac       namespace prefix (the contract is `hac`; tests may use another)
#   LAB_RUN=DIR          state directory (default /run/$LAB_PREFIX-lab)
#   LAB_QUEUE_MS=100     queue cap of the emulated links, in ms at the link rate
#   LAB_EMU_RT=20        SCHED_FIFO priority of the link emulators (0: normal scheduling)
#   LAB_UP_TIMEOUT=30    seconds `up` waits for forwarding
#   HAC_CPE=PATH         hac-cpe binary for --dual-proxy (default
#                        $CARGO_TARGET_DIR/release/hac-cpe, else …/debug/hac-cpe)
#   LAB_CPE_METRICS=127.0.0.1:9470
#                        where hac-cpe serves /metrics, inside the client namespace
#   LAB_METRICS=127.0.0.1:9469
#                        where hacd serves /metrics, inside hac-conc (its loopback by
#                        default); hacd's allocation log is $LAB_RUN/allocations.log
set -euo pipefail

P=${LAB_PREFIX:-hac}
if [[ ! $P =~ ^[a-z][a-z0-9-]{0,15}$ ]]; then
    echo "lab.sh: LAB_PREFIX must match [a-z][a-z0-9-]{0,15}" >&2
    exit 2
fi
NS_CLIENT=$P-client
NS_DSL=$P-dsl
NS_LTE=$P-lte
NS_CONC=$P-conc
NS_SERVER=$P-server
ALL_NS=("$NS_CLIENT" "$NS_DSL" "$NS_LTE" "$NS_CONC" "$NS_SERVER")
NS_LAN=$P-lan # dual-proxy only (up --dual-proxy)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN=${LAB_RUN:-/run/$P-lab}
QUEUE_MS=${LAB_QUEUE_MS:-100}
UP_TIMEOUT=${LAB_UP_TIMEOUT:-30}
PROXY_PORT=${LAB_PROXY_TARGET_PORT:-5201}
EMU_RT=${LAB_EMU_RT:-20}
METRICS_LISTEN=${LAB_METRICS:-127.0.0.1:9469}
[[ $METRICS_LISTEN =~ ^[][0-9a-fA-F.:]+$ ]] || {
    echo "lab.sh: LAB_METRICS must be ADDRESS:PORT" >&2
    exit 2
}

abspath() { # relative paths are taken from the repository root
    case $1 in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$ROOT/$1" ;;
    esac
}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
HACD=$(abspath "${HACD:-$TARGET_DIR/release/hacd}")
LINKEMU=$(abspath "${LINKEMU:-$TARGET_DIR/release/hac-linkemu}")
HACCTL=${HACCTL:-}
HAC_CPE=${HAC_CPE:-}
CPE_METRICS=${LAB_CPE_METRICS:-127.0.0.1:9470}

log() { printf 'lab.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

need() {
    local cmd
    for cmd in "$@"; do
        command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' not found (Debian 12: apt-get install iproute2 ethtool iputils-ping util-linux procps)"
    done
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces, AF_PACKET)"
}

nsx() { # nsx NS CMD... — run CMD inside namespace NS
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

ns_exists() { [[ -e /run/netns/$1 ]]; }

lock() { # lock [force] — serialize commands that change the lab (once per process)
    [[ ${LAB_LOCKED:-0} == 1 ]] && return 0
    LAB_LOCKED=1
    mkdir -p "$(dirname "$RUN")"
    exec 9>"$RUN.lock"
    if ! flock -w "${LAB_LOCK_WAIT:-60}" 9; then
        [[ ${1:-} == force ]] || die "another lab.sh holds $RUN.lock"
        log "warning: $RUN.lock still held; going on (down)"
    fi
}

# ---------------------------------------------------------------------------
# processes started by the lab: $RUN/NAME.pid, checked against /proc before a kill

start_bg() { # start_bg NAME NS CMD... — background process in NS, logs in $RUN/NAME.log
    local name=$1 ns=$2
    shift 2
    # `ip netns exec` execs the command, so $! is the command's own pid.
    # fd 9 (the lock) must not leak into long-running processes.
    ip netns exec "$ns" "$@" </dev/null >"$RUN/$name.log" 2>&1 9>&- &
    echo $! >"$RUN/$name.pid"
}

pid_of() { # pid_of NAME — the pid if that process still runs in one of our namespaces
    local f=$RUN/$1.pid pid
    [[ -f $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    printf '%s\n' "$pid"
}

stop_pid() { # stop_pid PID — SIGTERM, up to 5 s, then SIGKILL
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "pid $pid ignored SIGTERM; killing"
    kill -KILL "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------------------
# link emulators: one per access link, in its own namespace

link_ns() {
    case $1 in
        dsl) echo "$NS_DSL" ;;
        lte) echo "$NS_LTE" ;;
        *) die "unknown link '$1' (dsl or lte)" ;;
    esac
}

ctl_get() { # ctl_get LINK KEY DEFAULT — current value in the link's control file
    local v
    v=$(sed -n "s/^$2[[:space:]]*=[[:space:]]*//p" "$RUN/$1.ctl" 2>/dev/null | tail -n1)
    printf '%s\n' "${v:-$3}"
}

write_ctl() { # write_ctl LINK RATE DELAY LOSS QUEUE STATE — atomically, then SIGHUP
    local link=$1 tmp pid
    tmp=$RUN/$link.ctl.tmp
    {
        echo "# hac-linkemu control file for the $link link, written by lab.sh"
        echo "# ab = client -> concentrator, ba = concentrator -> client"
        echo "rate = $2"
        echo "delay = $3"
        echo "loss = $4"
        echo "queue = $5"
        echo "link = $6"
    } >"$tmp"
    mv -f "$tmp" "$RUN/$link.ctl"
    # The emulator also polls the file; SIGHUP makes the change immediate.
    if pid=$(pid_of "emu-$link"); then
        kill -HUP "$pid" 2>/dev/null || true
        sleep 0.05
    fi
}

ensure_linkemu() {
    if [[ ! -x $LINKEMU ]]; then
        command -v cargo >/dev/null 2>&1 || die "$LINKEMU missing and no cargo to build it"
        log "building hac-linkemu (cargo build --release -p hac-linkemu)"
        (cd "$ROOT" && cargo build --release -q -p hac-linkemu) || die "building hac-linkemu failed"
        [[ -x $LINKEMU ]] || die "built hac-linkemu, but $LINKEMU is still missing (set LINKEMU=...)"
    fi
}

start_linkemu() { # start_linkemu LINK
    local link=$1 ns i
    ns=$(link_ns "$link")
    write_ctl "$link" 0 0 0 "$QUEUE_MS" up
    # Real-time priority keeps the emulated link precise when the CPUs are busy
    # (builds, a busy-polling hacd); its threads sleep between frames.
    local rt=()
    if [[ $EMU_RT != 0 ]] && chrt -f "$EMU_RT" true 2>/dev/null; then
        rt=(chrt -f "$EMU_RT")
    fi
    start_bg "emu-$link" "$ns" "${rt[@]}" "$LINKEMU" --a "$link-cli" --b "$link-conc" --name "$link" \
        --queue "$QUEUE_MS" --control "$RUN/$link.ctl" --stats "$RUN/$link.stats"
    for ((i = 0; i < 50; i++)); do
        grep -q 'bridging' "$RUN/emu-$link.log" 2>/dev/null && return 0
        pid_of "emu-$link" >/dev/null || break
        sleep 0.1
    done
    cat "$RUN/emu-$link.log" >&2 || true
    die "hac-linkemu for $link did not start"
}

# ---------------------------------------------------------------------------
# hacd

render_config() { # render_config [OUT [MULTIPATH]] — deploy/lab.toml -> OUT
    # (default $RUN/hacd.toml); LAB_WORKERS=N: N worker lcores; MULTIPATH (default
    # $MP_RENDER) 1 keeps the [multipath] block, 0 drops it.
    local out=${1:-$RUN/hacd.toml} mp=${2:-${MP_RENDER:-0}}
    local workers=${LAB_WORKERS:-1} lcores=1 i mp_sed mgmt_sed
    [[ $workers =~ ^[1-8]$ ]] || die "LAB_WORKERS must be 1..8"
    for ((i = 2; i <= workers; i++)); do lcores+=", $i"; done
    if [[ $mp == 1 ]]; then
        mp_sed="/@MULTIPATH_\(BEGIN\|END\)@/d"
    else
        mp_sed="/@MULTIPATH_BEGIN@/,/@MULTIPATH_END@/d"
    fi
    if [[ ${MGMT_RENDER:-1} == 1 ]]; then
        mgmt_sed="/@MANAGEMENT_\(BEGIN\|END\)@/d"
    else
        mgmt_sed="/@MANAGEMENT_BEGIN@/,/@MANAGEMENT_END@/d"
    fi
    local ann_sed="/@ANNOUNCE_BEGIN@/,/@ANNOUNCE_END@/d"
    if [[ ${LAB_ANNOUNCE:-0} == 1 ]]; then
        ann_sed="/@ANNOUNCE_\(BEGIN\|END\)@/d;s/^addresses = \[\"192.0.2.1\", \"2001:db8:ffff::1\"\]/addresses = [\"192.0.2.1\", \"2001:db8:ffff::1\", \"192.0.2.2\", \"2001:db8:ffff::2\"]/"
    fi
    local hs_sed="/@HSHOLD_BEGIN@/,/@HSHOLD_END@/d"
    if [[ ${LAB_HANDSHAKE_HOLD:-0} == 1 ]]; then
        hs_sed="/@HSHOLD_\(BEGIN\|END\)@/d"
    fi
    sed -e "s/@FILE_PREFIX@/$P-lab/g" -e "s/^lcores = \[1\]/lcores = [$lcores]/" \
        -e "$ann_sed" -e "$hs_sed" -e "$mp_sed" -e "s/@SCHEDULER@/$MP_SCHEDULER/" -e "s/@MAX_SUBFLOWS@/$MP_MAX_SUBFLOWS/" \
        -e "s/@REPAIR_CACHE@/$MP_REPAIR_CACHE/" -e "s|@METRICS@|$METRICS_LISTEN|" \
        -e "$mgmt_sed" -e "s|@RUN@|$RUN|g" "$ROOT/deploy/lab.toml" >"$out"
}

# The [management] section: on when this hacd accepts it (`hacd --check`). Sets
# MGMT_RENDER before the [multipath] probe (which renders with it).
MGMT_RENDER=1
decide_management() {
    local mp_saved=${MP_RENDER:-0}
    MGMT_RENDER=1
    if ! hacd_accepts 0; then
        MGMT_RENDER=0
        log "warning: hacd does not accept [management]; running without the API (lab.sh ctl will not work)"
    fi
    MP_RENDER=$mp_saved
}

# The [multipath] section: what LAB_SCHEDULER / LAB_MULTIPATH ask for, checked against
# what this hacd accepts (`hacd --check`, which only parses the file). Sets MP_RENDER.
MP_SCHEDULER=${LAB_SCHEDULER:-aggregate}
MP_MAX_SUBFLOWS=${LAB_MAX_SUBFLOWS:-8}
MP_REPAIR_CACHE=${LAB_REPAIR_CACHE:-true}
MP_RENDER=0
MP_NOTE=

hacd_accepts() { # hacd_accepts MULTIPATH(0|1) — does `hacd --check` take the rendered file?
    local tmp out rc=0
    tmp=$(mktemp "${TMPDIR:-/tmp}/$P-hacd-probe.XXXXXX.toml")
    render_config "$tmp" "$1"
    out=$(RUST_BACKTRACE=0 timeout 20 "$HACD" --check --config "$tmp" 2>&1) || rc=$?
    rm -f "$tmp"
    ((rc == 0)) || MP_PROBE_ERR=$(printf '%s\n' "$out" | head -n 2)
    return $rc
}

decide_multipath() {
    local want=${LAB_MULTIPATH:-}
    case $MP_SCHEDULER in
        aggregate | overflow | failover) ;;
        *) die "LAB_SCHEDULER must be aggregate, overflow or failover (not '$MP_SCHEDULER')" ;;
    esac
    [[ $MP_MAX_SUBFLOWS =~ ^[0-9]+$ ]] || die "LAB_MAX_SUBFLOWS must be a number"
    [[ $MP_REPAIR_CACHE == true || $MP_REPAIR_CACHE == false ]] ||
        die "LAB_REPAIR_CACHE must be true or false"
    if [[ -z $want ]]; then
        if [[ -n ${LAB_SCHEDULER:-} || ${LAB_ANNOUNCE:-0} == 1 || ${LAB_HANDSHAKE_HOLD:-0} == 1 ]]; then
            want=on
        else
            want=auto
        fi
    fi
    case $want in
        off | 0)
            MP_RENDER=0
            MP_NOTE="off (LAB_MULTIPATH=off)"
            ;;
        on | 1)
            MP_PROBE_ERR=
            if ! hacd_accepts 1; then
                log "hacd rejects the [multipath] section: ${MP_PROBE_ERR:-?}"
                die "$HACD does not accept [multipath] (LAB_SCHEDULER=${LAB_SCHEDULER:-}); LAB_MULTIPATH=auto runs without it"
            fi
            MP_RENDER=1
            MP_NOTE="scheduler=$MP_SCHEDULER max_subflows=$MP_MAX_SUBFLOWS repair_cache=$MP_REPAIR_CACHE"
            ;;
        auto)
            if hacd_accepts 1; then
                MP_RENDER=1
                MP_NOTE="scheduler=$MP_SCHEDULER max_subflows=$MP_MAX_SUBFLOWS repair_cache=$MP_REPAIR_CACHE"
            else
                MP_RENDER=0
                MP_NOTE="absent (this hacd does not accept [multipath])"
                [[ -z ${LAB_SCHEDULER:-} ]] ||
                    log "warning: hacd does not accept [multipath]; running without (LAB_SCHEDULER=$LAB_SCHEDULER ignored)"
            fi
            ;;
        *) die "LAB_MULTIPATH must be auto, on or off" ;;
    esac
}

# start_hacd: the launch step of the real concentrator. hacd runs in $NS_CONC on the
# three veth ends (conc-dsl, conc-lte, conc-core) as DPDK net_af_packet vdevs, with
# the configuration rendered from deploy/lab.toml; lab.sh stops it with SIGTERM.
start_hacd() {
    if [[ ! -x $HACD ]]; then
        log "hacd not built yet: $HACD (cargo build --release -p hac-hacd, or set HACD=...;"
        log "LAB_KERNEL_ROUTER=1 runs the lab with the kernel routing instead)"
        return 1
    fi
    render_config
    echo "$MP_NOTE" >"$RUN/multipath"
    start_bg hacd "$NS_CONC" "$HACD" --config "$RUN/hacd.toml"
    log "hacd started (pid $(<"$RUN/hacd.pid"), log $RUN/hacd.log; multipath: $MP_NOTE)"
}

# ---------------------------------------------------------------------------
# topology

veth() { # veth NS_A IF_A NS_B IF_B — a veth pair created directly inside the namespaces
    ip -n "$1" link add "$2" type veth peer name "$4" netns "$3"
    # veth hands out partial checksums unless tx offload is off (field notes §6):
    # AF_PACKET readers (the emulator, DPDK net_af_packet) would see bad checksums.
    nsx "$1" ethtool -K "$2" tx off >/dev/null
    nsx "$3" ethtool -K "$4" tx off >/dev/null
    ip -n "$1" link set "$2" up
    ip -n "$3" link set "$4" up
}

sysctl_ns() { # sysctl_ns NS KEY=VALUE...
    local ns=$1
    shift
    nsx "$ns" sysctl -qw "$@" >/dev/null
}

setup_conc_kernel() {
    local proxy=$1
    sysctl_ns "$NS_CONC" net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
        net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
    ip -n "$NS_CONC" addr add 198.18.1.1/24 dev conc-dsl
    ip -n "$NS_CONC" addr add 2001:db8:1::1/64 dev conc-dsl nodad
    ip -n "$NS_CONC" addr add 198.18.2.1/24 dev conc-lte
    ip -n "$NS_CONC" addr add 2001:db8:2::1/64 dev conc-lte nodad
    ip -n "$NS_CONC" addr add 198.51.100.1/24 dev conc-core
    ip -n "$NS_CONC" addr add 2001:db8:100::1/64 dev conc-core nodad
    ip -n "$NS_CONC" addr add 192.0.2.1/32 dev lo
    ip -n "$NS_CONC" addr add 2001:db8:ffff::1/128 dev lo nodad
    # The server routes back to the clients' access prefixes (no NAT in this mode).
    ip -n "$NS_SERVER" route add 198.18.0.0/15 via 198.51.100.1
    ip -n "$NS_SERVER" -6 route add 2001:db8:1::/64 via 2001:db8:100::1
    ip -n "$NS_SERVER" -6 route add 2001:db8:2::/64 via 2001:db8:100::1
    if [[ $proxy == 1 ]]; then
        need socat mptcpize
        ip -n "$NS_CONC" addr add 203.0.113.1/32 dev lo
        ip -n "$NS_CONC" addr add 2001:db8:200::1/128 dev lo nodad
        ip -n "$NS_CONC" mptcp limits set subflow 2 add_addr_accepted 0
        start_bg proxy4 "$NS_CONC" mptcpize run socat \
            "TCP4-LISTEN:5124,bind=192.0.2.1,reuseaddr,fork" \
            "TCP4:198.51.100.2:$PROXY_PORT,bind=203.0.113.1"
        start_bg proxy6 "$NS_CONC" mptcpize run socat \
            "TCP6-LISTEN:5124,bind=[2001:db8:ffff::1],reuseaddr,fork" \
            "TCP6:[2001:db8:100::2]:$PROXY_PORT,bind=[2001:db8:200::1]"
    fi
}

setup_conc_hacd() {
    local ifc
    # hacd owns every address; the kernel in hac-conc must stay silent on these links.
    for ifc in conc-dsl conc-lte conc-core; do
        sysctl_ns "$NS_CONC" "net.ipv6.conf.$ifc.disable_ipv6=1"
        ip -n "$NS_CONC" link set "$ifc" arp off
    done
}

setup_client() {
    local ns=$NS_CLIENT
    sysctl_ns "$ns" net.mptcp.enabled=1 net.ipv4.conf.all.rp_filter=0 \
        net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.dsl0.rp_filter=0 \
        net.ipv4.conf.lte0.rp_filter=0
    ip -n "$ns" addr add 198.18.1.2/24 dev dsl0
    ip -n "$ns" addr add 2001:db8:1::2/64 dev dsl0 nodad
    ip -n "$ns" addr add 198.18.2.2/24 dev lte0
    ip -n "$ns" addr add 2001:db8:2::2/64 dev lte0 nodad
    ip -n "$ns" route add default via 198.18.1.1 dev dsl0
    ip -n "$ns" -6 route add default via 2001:db8:1::1 dev dsl0
    # lte0 is source-routed: traffic from its addresses uses table 102.
    ip -n "$ns" route add 198.18.2.0/24 dev lte0 src 198.18.2.2 table 102
    ip -n "$ns" route add default via 198.18.2.1 dev lte0 table 102
    ip -n "$ns" rule add from 198.18.2.2 table 102 pref 1000
    ip -n "$ns" -6 route add 2001:db8:2::/64 dev lte0 table 102
    ip -n "$ns" -6 route add default via 2001:db8:2::1 dev lte0 table 102
    ip -n "$ns" -6 rule add from 2001:db8:2::2 table 102 pref 1000
    ip -n "$ns" mptcp endpoint add 198.18.2.2 dev lte0 subflow
    ip -n "$ns" mptcp endpoint add 2001:db8:2::2 dev lte0 subflow
    ip -n "$ns" mptcp limits set subflow 2
}

setup_server() {
    local ns=$NS_SERVER
    ip -n "$ns" addr add 198.51.100.2/24 dev core0
    ip -n "$ns" addr add 2001:db8:100::2/64 dev core0 nodad
    ip -n "$ns" route add 203.0.113.0/28 via 198.51.100.1
    ip -n "$ns" -6 route add 2001:db8:200::/120 via 2001:db8:100::1
}

setup_server_mptcp() { # LAB_KERNEL_E2E: the server end speaks MPTCP itself
    sysctl_ns "$NS_SERVER" net.mptcp.enabled=1
    # One join per connection (the client's lte endpoint); the server announces nothing.
    ip -n "$NS_SERVER" mptcp limits set subflow 2 add_addr_accepted 0
}

wait_forwarding() { # ping the gateway and the service address over dsl until they answer
    local deadline=$((SECONDS + UP_TIMEOUT)) target
    for target in 198.18.1.1 192.0.2.1; do
        until nsx "$NS_CLIENT" ping -n -q -c 1 -W 1 "$target" >/dev/null 2>&1; do
            if ((SECONDS >= deadline)); then
                log "no answer from $target after ${UP_TIMEOUT}s"
                return 1
            fi
            if [[ -f $RUN/hacd.pid ]] && ! pid_of hacd >/dev/null; then
                log "hacd exited; its log:"
                tail -n 30 "$RUN/hacd.log" >&2 || true
                return 1
            fi
            sleep 0.2
        done
    done
}

# ---------------------------------------------------------------------------
# dual-proxy (up --dual-proxy): a LAN behind the client namespace, hac-cpe as its
# gateway, hacd in dual-proxy mode with the CPE as one subscriber (docs/dual-proxy.md)

find_bin() { # find_bin NAME — $TARGET_DIR/release/NAME, else …/debug/NAME
    local c
    for c in "$TARGET_DIR/release/$1" "$TARGET_DIR/debug/$1"; do
        c=$(abspath "$c")
        if [[ -x $c ]]; then
            printf '%s\n' "$c"
            return 0
        fi
    done
    return 1
}

check_dual_proxy() { # before anything is created: binaries present, hacd mode
    [[ $(mode) == hacd ]] || die "--dual-proxy needs hacd (not LAB_KERNEL_*)"
    if [[ -z $HAC_CPE ]]; then
        HAC_CPE=$(find_bin hac-cpe) || die "hac-cpe not built yet (cargo build --release -p hac-cpe, or set HAC_CPE=...)"
    fi
    HAC_CPE=$(abspath "$HAC_CPE")
    [[ -x $HAC_CPE ]] || die "HAC_CPE=$HAC_CPE is not executable"
    if [[ -z $HACCTL ]]; then
        HACCTL=$(find_bin hacctl) || die "hacctl not built yet (cargo build --release -p hacctl, or set HACCTL=...)"
    fi
    need nft
}

setup_lan() {
    ip netns add "$NS_LAN"
    ip -n "$NS_LAN" link set lo up
    sysctl_ns "$NS_LAN" net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0 \
        net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.all.accept_ra=0
    veth "$NS_CLIENT" lan0 "$NS_LAN" eth0
    ip -n "$NS_CLIENT" addr add 198.18.100.1/24 dev lan0
    ip -n "$NS_CLIENT" addr add 2001:db8:64::1/64 dev lan0 nodad
    ip -n "$NS_LAN" addr add 198.18.100.2/24 dev eth0
    ip -n "$NS_LAN" addr add 2001:db8:64::2/64 dev eth0 nodad
    ip -n "$NS_LAN" route add default via 198.18.100.1
    ip -n "$NS_LAN" -6 route add default via 2001:db8:64::1
}

start_cpe() {
    cat >"$RUN/cpe.toml" <<EOF_CPE
# hac-cpe configuration written by lab.sh up --dual-proxy (format: cpe/src/config.rs)
listen = ["0.0.0.0:5125", "[::]:5125"]

[concentrator]
addresses = ["192.0.2.1", "2001:db8:ffff::1"]
port = 5124

[intercept]
lan_prefixes = ["198.18.100.0/24", "2001:db8:64::/64"]
lan_interface = "lan0"

[[uplink]]
name = "dsl"
interface = "dsl0"
addresses = ["198.18.1.2", "2001:db8:1::2"]

[[uplink]]
name = "lte"
interface = "lte0"
addresses = ["198.18.2.2", "2001:db8:2::2"]

[mptcp]
max_subflows = 2

[metrics]
listen = "$CPE_METRICS"
EOF_CPE
    start_bg cpe "$NS_CLIENT" "$HAC_CPE" --config "$RUN/cpe.toml"
    local i
    for ((i = 0; i < 100; i++)); do
        grep -q 'hac-cpe running' "$RUN/cpe.log" 2>/dev/null && break
        if ! pid_of cpe >/dev/null; then
            tail -n 20 "$RUN/cpe.log" >&2 || true
            die "hac-cpe exited"
        fi
        sleep 0.1
    done
    grep -q 'hac-cpe running' "$RUN/cpe.log" || die "hac-cpe did not start (log $RUN/cpe.log)"
    log "hac-cpe started in $NS_CLIENT (pid $(<"$RUN/cpe.pid"), log $RUN/cpe.log)"
}

provision_dual_proxy() { # hacd: dual-proxy mode, the CPE as one subscriber on both accesses
    cmd_ctl mode set dual-proxy >/dev/null
    cmd_ctl subscriber add cpe --prefix 198.18.1.2 --prefix 198.18.2.2 \
        --prefix 2001:db8:1::2 --prefix 2001:db8:2::2 --max-connections 4096 >/dev/null
    cmd_ctl policy set --unlisted-clients deny >/dev/null
    log "hacd: mode dual-proxy, subscriber cpe (198.18.1.2, 198.18.2.2, 2001:db8:1::2, 2001:db8:2::2), unlisted clients denied"
}

mode() {
    if [[ ${LAB_KERNEL_PROXY:-0} == 1 ]]; then
        echo kernel-proxy
    elif [[ ${LAB_KERNEL_E2E:-0} == 1 ]]; then
        echo kernel-e2e
    elif [[ ${LAB_KERNEL_ROUTER:-0} == 1 ]]; then
        echo kernel-router
    else
        echo hacd
    fi
}

cmd_up() {
    local dual=${LAB_DUAL_PROXY:-0}
    case ${1:-} in
        --dual-proxy) dual=1 ;;
        "") ;;
        *) die "usage: lab.sh up [--dual-proxy]" ;;
    esac
    need_root
    need ip ethtool ping flock sysctl
    lock
    local ns m link
    m=$(mode)
    for ns in "${ALL_NS[@]}" "$NS_LAN"; do
        ! ns_exists "$ns" || die "namespace $ns exists: the lab is up (deploy/lab.sh down first)"
    done
    [[ $dual != 1 ]] || check_dual_proxy
    if [[ $m == hacd && ! -x $HACD ]]; then
        start_hacd || die "hacd not built yet"
    fi
    if [[ $m == hacd ]]; then
        decide_management
        decide_multipath
    fi
    ensure_linkemu
    rm -rf "$RUN"
    mkdir -p "$RUN"
    echo "$m" >"$RUN/mode"
    # Whatever makes `up` fail from here on (set -e, die), nothing is left behind.
    UP_DONE=0
    trap 'if [[ $UP_DONE != 1 ]]; then log "up failed; tearing down"; teardown; fi' EXIT

    for ns in "${ALL_NS[@]}"; do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        # Defaults for the interfaces created next: no DAD delay, no router adverts.
        sysctl_ns "$ns" net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0 \
            net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.all.accept_ra=0
    done
    # The emulators' namespaces only bridge frames: no IPv6 there, no kernel chatter.
    for ns in "$NS_DSL" "$NS_LTE"; do
        sysctl_ns "$ns" net.ipv6.conf.default.disable_ipv6=1 net.ipv6.conf.all.disable_ipv6=1
    done

    veth "$NS_CLIENT" dsl0 "$NS_DSL" dsl-cli
    veth "$NS_DSL" dsl-conc "$NS_CONC" conc-dsl
    veth "$NS_CLIENT" lte0 "$NS_LTE" lte-cli
    veth "$NS_LTE" lte-conc "$NS_CONC" conc-lte
    veth "$NS_CONC" conc-core "$NS_SERVER" core0
    for link in dsl lte; do
        ip -n "$P-$link" link set "$link-cli" promisc on
        ip -n "$P-$link" link set "$link-conc" promisc on
    done

    setup_client
    setup_server
    start_linkemu dsl
    start_linkemu lte
    case $m in
        kernel-router) setup_conc_kernel 0 ;;
        kernel-proxy) setup_conc_kernel 1 ;;
        kernel-e2e)
            setup_conc_kernel 0
            setup_server_mptcp
            ;;
        hacd)
            setup_conc_hacd
            start_hacd
            ;;
    esac
    wait_forwarding
    if [[ $dual == 1 ]]; then
        echo dual-proxy >"$RUN/dual-proxy"
        setup_lan
        provision_dual_proxy
        start_cpe
    fi
    UP_DONE=1
    log "lab up ($m$([[ $dual == 1 ]] && echo ", dual-proxy")); state in $RUN"
}

teardown() {
    local f name pid ns
    set +e
    # Our own processes first (pid files), then anything left in our namespaces.
    for f in "$RUN"/*.pid; do
        [[ -f $f ]] || continue
        name=$(basename "$f" .pid)
        if pid=$(pid_of "$name"); then
            stop_pid "$pid"
        fi
        rm -f "$f"
    done
    for ns in "${ALL_NS[@]}" "$NS_LAN"; do
        ns_exists "$ns" || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            stop_pid "$pid"
        done
    done
    for ns in "${ALL_NS[@]}" "$NS_LAN"; do
        if ns_exists "$ns"; then
            ip netns del "$ns" || log "could not delete namespace $ns"
        fi
    done
    rm -rf "$RUN"
    set -e
}

cmd_down() {
    need_root
    LAB_LOCK_WAIT=${LAB_LOCK_WAIT:-20} lock force
    teardown
    log "lab down"
}

cmd_status() {
    local ns state=down link pid n=0
    for ns in "${ALL_NS[@]}"; do
        if ns_exists "$ns"; then
            n=$((n + 1))
        fi
    done
    if ((n == ${#ALL_NS[@]})); then
        state=up
    elif ((n > 0)); then
        state=partial
    fi
    echo "lab: $state (mode $(cat "$RUN/mode" 2>/dev/null || echo -), state dir $RUN)"
    if [[ -f $RUN/multipath ]]; then
        echo "  hacd multipath: $(<"$RUN/multipath")"
    fi
    for ns in "${ALL_NS[@]}"; do
        if ns_exists "$ns"; then
            echo "  netns $ns: $(ip -n "$ns" -br link show 2>/dev/null | awk '$1 != "lo" {printf "%s ", $1}')"
        else
            echo "  netns $ns: absent"
        fi
    done
    if ns_exists "$NS_LAN"; then
        echo "  netns $NS_LAN: $(ip -n "$NS_LAN" -br link show 2>/dev/null | awk '$1 != "lo" {printf "%s ", $1}')(dual-proxy LAN)"
    fi
    for f in "$RUN"/*.pid; do
        [[ -f $f ]] || continue
        link=$(basename "$f" .pid)
        if pid=$(pid_of "$link"); then
            echo "  process $link: running (pid $pid)"
        else
            echo "  process $link: NOT running (log $RUN/$link.log)"
        fi
    done
    for link in dsl lte; do
        if [[ -f $RUN/$link.stats ]]; then
            echo "  $link link:"
            sed 's/^/    /' "$RUN/$link.stats"
        fi
    done
    [[ $state == up ]]
}

cmd_metrics() { # one scrape of hacd's /metrics, fetched from inside $NS_CONC
    need_root
    ns_exists "$NS_CONC" || die "the lab is not up ($NS_CONC is absent)"
    pid_of hacd >/dev/null || die "hacd is not running (log $RUN/hacd.log)"
    nsx "$NS_CONC" timeout 15 python3 -c '
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    sys.stdout.write(r.read().decode())
' "http://$METRICS_LISTEN/metrics" || die "no answer from http://$METRICS_LISTEN/metrics in $NS_CONC"
}

is_number() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }

cmd_shape() {
    [[ $# -ge 3 && $# -le 4 ]] || die "usage: lab.sh shape dsl|lte RATE_MBIT DELAY_MS [LOSS_PCT]"
    local link=$1 rate=$2 delay=$3 loss=${4:-0}
    link_ns "$link" >/dev/null
    is_number "$rate" || die "RATE_MBIT '$rate' is not a number (0 = unlimited)"
    is_number "$delay" || die "DELAY_MS '$delay' is not a number"
    is_number "$loss" || die "LOSS_PCT '$loss' is not a number"
    awk -v l="$loss" 'BEGIN { exit !(l <= 100) }' || die "LOSS_PCT must be <= 100"
    need_root
    lock
    pid_of "emu-$link" >/dev/null || die "the $link emulator is not running (lab.sh up first)"
    write_ctl "$link" "$rate" "$delay" "$loss" "$(ctl_get "$link" queue "$QUEUE_MS")" \
        "$(ctl_get "$link" link up)"
    log "$link: ${rate} Mbit/s, ${delay} ms one way, ${loss}% loss, queue $(ctl_get "$link" queue "$QUEUE_MS") ms"
}

cmd_link() {
    [[ $# -eq 2 ]] || die "usage: lab.sh link dsl|lte down|up"
    local link=$1 state=$2
    link_ns "$link" >/dev/null
    [[ $state == up || $state == down ]] || die "state must be up or down"
    need_root
    lock
    pid_of "emu-$link" >/dev/null || die "the $link emulator is not running (lab.sh up first)"
    write_ctl "$link" "$(ctl_get "$link" rate 0)" "$(ctl_get "$link" delay 0)" \
        "$(ctl_get "$link" loss 0)" "$(ctl_get "$link" queue "$QUEUE_MS")" "$state"
    log "$link link $state"
}

cmd_demo() {
    # The main job: bring the lab up with hacd on DPDK, run a real transfer from a Linux
    # MPTCP client (TFO, Convert request in the SYN) through the concentrator to a plain
    # TCP server, print what happened, tear down.
    local down_mb=${DEMO_DOWN_MB:-40} up_mb=${DEMO_UP_MB:-10}
    if [[ ! -x $HACD || ! -x $LINKEMU ]]; then
        command -v cargo >/dev/null 2>&1 || die "hacd not built and no cargo: run deploy/setup.sh"
        log "building hacd and hac-linkemu (release)"
        (cd "$ROOT" && cargo build --release -q -p hac-hacd -p hac-linkemu) || die "build failed"
    fi
    cmd_down >/dev/null 2>&1 || true
    cmd_up
    local scripts=$ROOT/dataplane/harness/scripts srv_log
    # The test server exits when its stdin closes: its stdin is a fifo this shell holds
    # open (fd 8) until the demo ends; cmd_down stops it in any case.
    rm -f "$RUN/demo-server.in"
    mkfifo "$RUN/demo-server.in"
    exec 8<>"$RUN/demo-server.in"
    start_bg demo-server "$NS_SERVER" sh -c "exec python3 -u '$scripts/server.py' --bind 198.51.100.2 \
        --bind 2001:db8:100::2 --port 8080 --io-timeout 30 --lifetime 300 <'$RUN/demo-server.in'"
    srv_log=$RUN/demo-server.log
    for ((i = 0; i < 50; i++)); do
        grep -q '"ready"' "$srv_log" 2>/dev/null && break
        sleep 0.1
    done
    cmd_shape dsl 40 10 >/dev/null
    cmd_shape lte 20 40 >/dev/null
    # Convert request (RFC 8803 §6): header 01 06 22 63, Connect TLV to [::ffff:198.51.100.2]:8080.
    local convert=010622630a051f9000000000000000000000ffffc6336402
    log "client 198.18.1.2 (dsl 40 Mbit/s 10 ms, lte 20 Mbit/s 40 ms) -> converter 192.0.2.1:5124 -> server 198.51.100.2:8080"
    local out
    out=$(nsx "$NS_CLIENT" python3 "$scripts/client.py" --target 192.0.2.1 --port 5124 --mptcp \
        --convert-hex "$convert" --request-in-syn --id demo --up $((up_mb << 20)) \
        --down $((down_mb << 20)) --timeout 60)
    local joins
    joins=$(nsx "$NS_CLIENT" nstat -az MPTcpExtMPJoinSynAckRx 2>/dev/null | awk '/MPJoinSynAckRx/ {print $2}')
    python3 - "$out" "${joins:-0}" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); joins = int(sys.argv[2])
ok = r["convert"] == "ok"
print("Convert result   : %s" % ("ok (no Error TLV)" if ok else r["convert"]))
print("MPTCP            : %s" % ("kept (no fallback)" if r["fallback"] is False else "fell back to TCP" if r["fallback"] else "n/a"))
print("subflows         : %d (initial%s)" % (1 + joins, ", + %d joined" % joins if joins else "; joins arrive with the multipath issue"))
print("Convert reply    : %.1f ms after the SYN; first response byte %.1f ms after the SYN" % (1000 * r.get("reply_after", 0), 1000 * r.get("first_byte_after", 0)))
mb = lambda n: n / 1e6
print("bytes up / down  : %d / %d (SHA-256 %s… / %s…)" % (r["bytes_sent"], r["bytes_recv"], r["sent_sha256"][:12], r["recv_sha256"][:12]))
if r["elapsed"] > 0:
    print("throughput       : %.1f Mbit/s down, %.1f Mbit/s up (both at once, %.2f s)" % (8 * mb(r["bytes_recv"]) / r["elapsed"], 8 * mb(r["bytes_sent"]) / r["elapsed"], r["elapsed"]))
if r.get("error"):
    print("error            : %s" % r["error"])
sys.exit(0 if ok and r["eof"] and not r.get("error") else 1)
PY
    local rc=$?
    local srv
    srv=$(grep '"conn"' "$srv_log" | grep '"demo"' | tail -1 || true)
    if [[ -n $srv ]]; then
        python3 - "$srv" "$out" <<'PY'
import json, sys
s = json.loads(sys.argv[1]); c = json.loads(sys.argv[2])
same = s["recv_sha256"] == c["sent_sha256"] and s["sent_sha256"] == c["recv_sha256"]
print("server saw       : %s:%d (pool address), byte-exact both ways: %s" % (s["peer"][0], s["peer"][1], "yes" if same else "NO"))
PY
    fi
    exec 8>&-
    cmd_down >/dev/null 2>&1 || true
    return $rc
}

cmd_ctl() { # ctl ARGS... — hacctl ARGS... against the lab's hacd
    local bin=$HACCTL c
    if [[ -z $bin ]]; then
        for c in "$TARGET_DIR/release/hacctl" "$TARGET_DIR/debug/hacctl"; do
            c=$(abspath "$c")
            if [[ -x $c ]]; then
                bin=$c
                break
            fi
        done
    fi
    [[ -n $bin && -x $(abspath "$bin") ]] ||
        die "hacctl not built yet (cargo build --release -p hacctl, or set HACCTL=...)"
    [[ -S $RUN/hacd.sock ]] ||
        die "no management socket $RUN/hacd.sock (is the lab up, with an hacd that accepts [management]?)"
    nsx "$NS_CONC" "$(abspath "$bin")" --socket "$RUN/hacd.sock" "$@"
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    case $cmd in
        up) cmd_up "$@" ;;
        down) cmd_down "$@" ;;
        status) cmd_status "$@" ;;
        shape) cmd_shape "$@" ;;
        link) cmd_link "$@" ;;
        demo) cmd_demo "$@" ;;
        metrics) cmd_metrics "$@" ;;
        ctl) cmd_ctl "$@" ;;
        -h | --help | help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
