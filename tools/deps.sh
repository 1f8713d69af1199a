#!/usr/bin/env bash
# Install what a fresh Debian machine lacks for AliasOS: QEMU, OVMF, e2fsprogs, musl-tools and the
# Rust toolchain pinned in rust-toolchain.toml. Quiet and quick when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -f /usr/share/ovmf/OVMF.fd ] || need+=(ovmf)
command -v mke2fs >/dev/null && command -v e2fsck >/dev/null && command -v debugfs >/dev/null || need+=(e2fsprogs)
# musl-gcc: the userland tests build tests/c/*.c as static musl binaries.
command -v musl-gcc >/dev/null || need+=(musl-tools)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "deps: installing ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# RUSTUP_AUTO_INSTALL=0 is set on these machines: install the pinned toolchain explicitly.
channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
if ! rustup run "$channel" rustc --version >/dev/null 2>&1 \
   || ! rustup component list --toolchain "$channel" --installed 2>/dev/null | grep -q rust-src \
   || ! rustup target list --toolchain "$channel" --installed 2>/dev/null | grep -q x86_64-unknown-none; then
    echo "deps: installing Rust $channel"
    rustup toolchain install
fi
