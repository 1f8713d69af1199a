#!/usr/bin/env bash
# The Linux peer of the benchmarks: Debian bookworm's current kernel and an initramfs with
# busybox-static, fio and the shared libraries fio needs, all from `apt-get download`.
#
#   bench/linux-peer/build.sh          build what is missing (quick no-op when cached)
#   REFRESH=1 bench/linux-peer/build.sh   re-resolve the kernel package, rebuild everything
#
# Output (git-ignored): bench/linux-peer/cache/vmlinuz and cache/initramfs.cpio.gz.
# The guest's /init is bench/linux-peer/init; see it for the kernel command line it reads.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=$here/cache
debs=$cache/debs
stage=$cache/stage
root=$cache/rootfs
stamp=$cache/stamp

# Everything the result depends on besides the packages: this script and the guest's /init.
inputs=$(cat "$0" "$here/init" | sha256sum | cut -d' ' -f1)
if [ "${REFRESH:-0}" != 1 ] && [ -f "$stamp" ] && [ -f "$cache/vmlinuz" ] \
   && [ -f "$cache/initramfs.cpio.gz" ] && [ "$(sed -n 1p "$stamp")" = "$inputs" ]; then
    exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
say() { echo "linux-peer: $*"; }
die() { echo "linux-peer: error: $*" >&2; exit 1; }
command -v readelf >/dev/null || {
    say "installing binutils (readelf)"
    $sudo apt-get install -y -qq --no-install-recommends binutils >/dev/null
}

updated=0
apt_update() {
    [ $updated = 1 ] && return 0
    say "apt-get update"
    $sudo apt-get update -qq
    updated=1
}

# The kernel package linux-image-amd64 currently points at, e.g. linux-image-6.1.0-56-amd64.
resolve_kernel() {
    apt-cache depends linux-image-amd64 2>/dev/null \
        | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1
}
kpkg=$(resolve_kernel)
if [ -z "$kpkg" ]; then
    apt_update
    kpkg=$(resolve_kernel)
fi
[ -n "$kpkg" ] || die "cannot resolve linux-image-amd64 to a kernel package (is this Debian bookworm?)"

# fio's library packages: its dependencies, recursively, that are shared-library packages
# (lib*, zlib1g). Only the .so files fio really loads go into the initramfs (see below).
lib_pkgs() {
    apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
        --no-replaces --no-enhances fio 2>/dev/null \
        | grep -v '^[ <]' | grep -E '^(lib|zlib)' | sort -u
}
pkgs="$kpkg busybox-static fio $(lib_pkgs | tr '\n' ' ')"

# Download what is not cached yet (one .deb per package, any version).
mkdir -p "$debs"
missing=()
for p in $pkgs; do
    compgen -G "$debs/${p}_*.deb" >/dev/null || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "downloading ${#missing[@]} packages (${missing[0]} ...)"
    # -o APT::Sandbox::User=root: the _apt user may not be able to write into the cache.
    if ! (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root "${missing[@]}" >/dev/null); then
        apt_update
        (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root "${missing[@]}" >/dev/null) \
            || die "apt-get download failed"
    fi
fi

# Extract every package into the staging tree.
say "extracting packages"
rm -rf "$stage" "$root"
mkdir -p "$stage"
for p in $pkgs; do
    deb=$(ls -t "$debs/${p}"_*.deb | head -n1)
    dpkg-deb -x "$deb" "$stage"
done
kver=${kpkg#linux-image-}
vmlinuz=$stage/boot/vmlinuz-$kver
[ -f "$vmlinuz" ] || die "no kernel in $kpkg"
busybox=$stage/bin/busybox
[ -x "$busybox" ] || die "no busybox in busybox-static"

# The root file system.
mkdir -p "$root"/{bin,sbin,usr/bin,dev,proc,sys,tmp,etc,lib/modules,lib/x86_64-linux-gnu,lib64}
cp "$busybox" "$root/bin/busybox"
cp "$stage/usr/bin/fio" "$root/usr/bin/fio"
cp "$here/init" "$root/init"
chmod 755 "$root/init" "$root/bin/busybox" "$root/usr/bin/fio"
echo "$kver" > "$root/etc/kernel-version"

# Shared libraries: follow DT_NEEDED from fio, taking each soname from the staging tree.
find_lib() {
    local d
    for d in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu; do
        [ -e "$stage/$d/$1" ] && { echo "$stage/$d/$1"; return; }
    done
    find "$stage" -name "$1" \( -type f -o -type l \) 2>/dev/null | head -n1
}
queue=("$root/usr/bin/fio")
declare -A seen=()
unresolved=()
while [ ${#queue[@]} -gt 0 ]; do
    f=${queue[0]}
    queue=("${queue[@]:1}")
    for so in $(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        [ -n "${seen[$so]:-}" ] && continue
        seen[$so]=1
        src=$(find_lib "$so")
        if [ -z "$src" ]; then
            unresolved+=("$so")
            continue
        fi
        cp -L "$src" "$root/lib/x86_64-linux-gnu/$so"
        queue+=("$root/lib/x86_64-linux-gnu/$so")
    done
done
[ ${#unresolved[@]} -eq 0 ] || die "fio needs libraries no downloaded package has: ${unresolved[*]}"
interp=$(readelf -l "$root/usr/bin/fio" | sed -n 's/.*interpreter: \(.*\)\]/\1/p')
[ -n "$interp" ] || die "fio has no ELF interpreter"
mkdir -p "$root/$(dirname "$interp")"
[ -e "$root/$interp" ] || cp -L "$(find_lib "$(basename "$interp")")" "$root/$interp"
say "fio needs ${#seen[@]} shared libraries ($(du -sh "$root/lib/x86_64-linux-gnu" | cut -f1))"

# Kernel modules for the disks (Debian builds virtio-blk, AHCI and sd as modules), with
# their dependencies, in load order. Names in `depends=` may use '-' or '_'.
moddir=$stage/lib/modules/$kver
find_mod() {
    local alt=${1//-/_} alt2=${1//_/-}
    find "$moddir" \( -name "$1.ko" -o -name "$alt.ko" -o -name "$alt2.ko" \) | head -n1
}
declare -A modseen=()
order=()
add_mod() {
    local name=$1 path dep
    [ -n "${modseen[$name]:-}" ] && return 0
    modseen[$name]=1
    path=$(find_mod "$name")
    [ -n "$path" ] || die "kernel module $name not found in $kpkg"
    for dep in $(tr '\0' '\n' < "$path" | sed -n 's/^depends=//p' | tr ',' ' '); do
        add_mod "$dep"
    done
    cp "$path" "$root/lib/modules/"
    order+=("$(basename "$path" .ko)")
}
# virtio-pci + virtio-blk, AHCI + SCSI disk, NVMe; crc-t10dif's generic backend for sd;
# ext4 (which serves ext2 mounts, for make bench-files) with jbd2, mbcache, crc16.
for m in virtio_pci virtio_blk ahci sd_mod nvme crct10dif_generic crc32c_generic ext4; do
    add_mod "$m"
done
printf '%s\n' "${order[@]}" > "$root/etc/modules"

# Check that fio starts with exactly these files (needs root for chroot).
if [ "$(id -u)" -eq 0 ]; then
    chroot "$root" /usr/bin/fio --version >/dev/null 2>&1 \
        || die "fio does not start inside the initramfs tree: $(chroot "$root" /usr/bin/fio --version 2>&1 | head -n3)"
fi

# Pack: newc cpio (busybox's, run on the host: it is static) with root ownership, gzip.
say "packing initramfs"
(cd "$root" && find . | sort | "$busybox" cpio -o -H newc -R 0:0 2>/dev/null) \
    | gzip -6 > "$cache/initramfs.cpio.gz.tmp"
mv "$cache/initramfs.cpio.gz.tmp" "$cache/initramfs.cpio.gz"
cp "$vmlinuz" "$cache/vmlinuz"
printf '%s\n%s\n' "$inputs" "$kpkg" > "$stamp"
rm -rf "$stage"   # 0.5 GiB; everything needed is in rootfs/ (kept for inspection) and the outputs
say "ready: $kpkg, busybox-static, fio; initramfs $(du -h "$cache/initramfs.cpio.gz" | cut -f1)"
