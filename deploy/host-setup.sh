#!/usr/bin/env bash
# deploy/host-setup.sh — prepares a host for hacd on physical NICs: reserves
# hugepages (dpdk-hugepages.py) and binds NICs to a DPDK-capable driver
# (dpdk-devbind.py). Run as root, before hacd starts (docs/operations.md).
#
#   deploy/host-setup.sh [--dry-run] [--hugepages SIZE] [--pagesize SIZE] [--node N]
#                        [--bind PCI[,PCI...]] [--driver DRIVER]
#   deploy/host-setup.sh --status
#   deploy/host-setup.sh --help
#
#   --hugepages SIZE   reserve SIZE of hugepages (bytes with K, M or G: 4G) and mount
#                      hugetlbfs on /dev/hugepages if it is not mounted
#   --pagesize SIZE    hugepage size (2M, 1G; default: the kernel's default size)
#   --node N           reserve on NUMA node N (default: every node, as the kernel does)
#   --bind PCI,...     bind these NICs (PCI addresses: 0000:3b:00.0 or 3b:00.0); the
#                      kernel driver lets go of them, so they vanish from `ip link`
#   --driver DRIVER    vfio-pci (default, needs the IOMMU on: intel_iommu=on or
#                      amd_iommu=on), or uio_pci_generic
#   --status           show hugepages and NIC bindings, change nothing
#   --dry-run          print the commands instead of running them (no root needed)
#
# A NIC that carries a route or an address that is up is refused by dpdk-devbind.py
# (this script never passes --force): take it down first, on purpose.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

die() {
    printf 'host-setup.sh: error: %s\n' "$*" >&2
    exit 2
}

DRY=0
HUGE=
PAGESIZE=
NODE=
BIND=
DRIVER=vfio-pci
STATUS=0

while [[ $# -gt 0 ]]; do
    case $1 in
        -h | --help)
            usage
            exit 0
            ;;
        --dry-run) DRY=1 ;;
        --status) STATUS=1 ;;
        --hugepages | --pagesize | --node | --bind | --driver)
            [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"
            case $1 in
                --hugepages) HUGE=$2 ;;
                --pagesize) PAGESIZE=$2 ;;
                --node) NODE=$2 ;;
                --bind) BIND=$2 ;;
                --driver) DRIVER=$2 ;;
            esac
            shift
            ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done

SIZE_RE='^[0-9]+[KMG]$'
[[ -z $HUGE || $HUGE =~ $SIZE_RE ]] || die "--hugepages '$HUGE': expected a size like 512M or 4G"
[[ -z $PAGESIZE || $PAGESIZE =~ $SIZE_RE ]] || die "--pagesize '$PAGESIZE': expected 2M or 1G"
[[ -z $NODE || $NODE =~ ^[0-9]+$ ]] || die "--node '$NODE': expected a NUMA node number"
case $DRIVER in
    vfio-pci | uio_pci_generic) ;;
    *) die "--driver '$DRIVER': expected vfio-pci or uio_pci_generic" ;;
esac
PCI_RE='^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$'
DEVICES=()
if [[ -n $BIND ]]; then
    IFS=, read -r -a DEVICES <<<"$BIND"
    for d in "${DEVICES[@]}"; do
        [[ $d =~ $PCI_RE ]] || die "--bind: '$d' is not a PCI address (DDDD:BB:DD.F)"
    done
fi

run() { # run CMD... — or print it with --dry-run
    if ((DRY)); then
        printf '+ %s\n' "$*"
    else
        "$@"
    fi
}

tool() { # tool NAME — the DPDK helper script, from PATH (Debian: package dpdk)
    if command -v "$1" >/dev/null 2>&1; then
        command -v "$1"
    elif ((DRY)); then
        echo "$1"
    else
        die "$1 not found (Debian 12: apt-get install dpdk)"
    fi
}
HUGEPAGES=$(tool dpdk-hugepages.py)
DEVBIND=$(tool dpdk-devbind.py)

if ((STATUS)); then
    run "$HUGEPAGES" --show
    run "$DEVBIND" --status-dev net
    exit 0
fi
[[ -n $HUGE || ${#DEVICES[@]} -gt 0 ]] || die "nothing to do: give --hugepages and/or --bind (or --status, --help)"
((DRY)) || [[ $(id -u) -eq 0 ]] || die "must run as root (or use --dry-run)"

if [[ -n $HUGE ]]; then
    args=(--reserve "$HUGE")
    [[ -z $PAGESIZE ]] || args=(--pagesize "$PAGESIZE" "${args[@]}")
    [[ -z $NODE ]] || args=(--node "$NODE" "${args[@]}")
    run "$HUGEPAGES" "${args[@]}"
    if ! grep -qs ' /dev/hugepages hugetlbfs ' /proc/mounts; then
        if [[ -n $PAGESIZE ]]; then
            run "$HUGEPAGES" --pagesize "$PAGESIZE" --mount
        else
            run "$HUGEPAGES" --mount
        fi
    fi
fi

if [[ ${#DEVICES[@]} -gt 0 ]]; then
    if [[ $DRIVER == vfio-pci ]] && ! ((DRY)) && [[ -z $(ls -A /sys/kernel/iommu_groups 2>/dev/null) ]]; then
        die "vfio-pci needs the IOMMU (boot with intel_iommu=on or amd_iommu=on), or use --driver uio_pci_generic"
    fi
    run modprobe "$DRIVER"
    for d in "${DEVICES[@]}"; do
        [[ $d == *:*:* ]] || d=0000:$d
        if ! ((DRY)) && [[ ! -e /sys/bus/pci/devices/$d ]]; then
            die "no PCI device $d (see: $DEVBIND --status-dev net)"
        fi
        run "$DEVBIND" --bind="$DRIVER" "$d"
    done
fi
((DRY)) || "$DEVBIND" --status-dev net
