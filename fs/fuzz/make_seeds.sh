#!/bin/bash
# Build a seed corpus of small mke2fs images for both fuzz targets.
# Usage: fs/fuzz/make_seeds.sh  (from anywhere; writes fs/fuzz/corpus/*)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src="$tmp/src"
mkdir -p "$src/dir/sub" "$src/empty"
printf 'hello\n' > "$src/small"
head -c 20000 /dev/urandom > "$src/indirect"
head -c 3000 /dev/urandom > "$src/dir/sub/file"
for i in 1 2 3 4 5 6 7 8; do printf '%s' "$i" > "$src/dir/f$i"; done
ln -s small "$src/fast"
ln -s "$(printf 'x%.0s' $(seq 1 80))" "$src/slow"
mkdir -p "$here/corpus/mount_and_walk" "$here/corpus/mount_and_modify"
n=0
mk() { # size-in-KiB label mke2fs-args...
    size=$1; label=$2; shift 2
    img="$tmp/$label.img"
    rm -f "$img"; truncate -s "${size}K" "$img"
    mke2fs -q -F -t ext2 "$@" -d "$src" "$img"
    cp "$img" "$here/corpus/mount_and_walk/$label"
    # The modify target reads trailing op bytes; append a few sequences.
    for ops in "00 01 01 08 05 30 06 10 02 00 0a 00" "01 05 00 04 05 ff 0b 03 04 11 03 05" "0c 00 09 20 07 01 08 40"; do
        n=$((n + 1))
        { cat "$img"; printf "$(echo $ops | sed 's/\([0-9a-f][0-9a-f]\) */\\x\1/g')"; printf "\\x$(printf %02x $(echo $ops | wc -w))"; } \
            > "$here/corpus/mount_and_modify/$label-$n"
    done
}
mk 160 1k-default -b 1024 -N 32
mk 160 1k-rev0 -b 1024 -r 0 -N 32
mk 160 1k-none -b 1024 -O none -N 32 -I 128
mk 256 2k-ft -b 2048 -O none,filetype,sparse_super -N 32 -I 128
mk 512 4k-default -b 4096 -N 32
echo "seeds in $here/corpus"
