#!/usr/bin/env bash
# Prepares a fresh Debian 12 machine for hac: installs what the build, the lab and the
# tests need (apt-get; nothing is installed when everything is there) and, unless
# --packages-only, builds the release hacd and link emulator that deploy/lab.sh uses.
# Run as root. Used by .ci/run (with --packages-only) and by the README's demo command.
set -euo pipefail
cd "$(dirname "$0")/.."

# build-essential/pkg-config/clang/libclang-dev: the DPDK bindings (bindgen + C shim);
# libdpdk-dev/dpdk: DPDK 22.11; iproute2/ethtool/iputils-ping/util-linux/procps/kmod:
# the network-namespace labs; python3: the Linux client/server test scripts;
# socat/mptcpize: the kernel MPTCP proxy baseline (`mptcpize run socat`); prometheus: the server that
# scrapes hacd in the metrics lab test (its service is not needed: the test runs its own);
# protobuf-compiler: protoc for the hac.v1 gRPC API (proto/build.rs);
# nftables/curl: hac-cpe's REDIRECT rules and the unmodified LAN client of the dual-proxy lab.
PKGS=(build-essential pkg-config python3 iproute2 ethtool iputils-ping util-linux procps kmod
    libdpdk-dev dpdk libclang-dev clang socat mptcpize prometheus protobuf-compiler nftables curl)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# rust-toolchain.toml pins 1.95.0. The machine's stable toolchain is 1.95; if the pinned
# name is not installed, link it to stable rather than downloading.
if command -v rustup >/dev/null 2>&1 && ! rustup toolchain list | grep -q '^1\.95\.0'; then
    sysroot=$(rustup run stable rustc --print sysroot)
    case "$(rustup run stable rustc --version)" in
        "rustc 1.95."*) rustup toolchain link 1.95.0 "$sysroot" ;;
    esac
fi

[[ ${1:-} == --packages-only ]] && exit 0
cargo build --release --locked -p hac-hacd -p hac-linkemu
echo "setup: done (target/release/hacd, target/release/hac-linkemu)"
