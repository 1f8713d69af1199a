#!/usr/bin/env bash
# Make the default data disk for `make run`: a 256 MiB ext2 image built by mke2fs from a
# small sample tree (a README, some text, a 32 MiB random file and its SHA-256).
# It deliberately has no /etc/rc, so `make run` ends in the interactive shell.
set -euo pipefail
out=${1:-target/data.img}
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/docs"
cat > "$tree/README" <<'TXT'
This is the AliasOS sample data disk, made by tools/data-disk.sh with mke2fs.
AliasOS mounts it at /mnt. What is on it:
  README          this file
  docs/lines.txt  a small text file
  random.bin      32 MiB of random bytes
  random.sha256   their SHA-256, made on the host by sha256sum
Try:
  ls /mnt /mnt/docs
  cat /mnt/docs/lines.txt
  sha256sum /mnt/random.bin        (compare with: cat /mnt/random.sha256)
  cp /mnt/random.bin /mnt/copy.bin; cmp /mnt/random.bin /mnt/copy.bin
  sync; poweroff
A disk holding /etc/rc (seen as /mnt/etc/rc) has its commands run at boot.
TXT
for i in $(seq 1 20); do echo "line $i of a small text file" ; done > "$tree/docs/lines.txt"
head -c $((32 << 20)) /dev/urandom > "$tree/random.bin"
(cd "$tree" && sha256sum random.bin > random.sha256)
mkdir -p "$(dirname "$out")"
rm -f "$out"
truncate -s 256M "$out"
mke2fs -q -t ext2 -b 4096 -L aliasos-data -d "$tree" "$out"
echo "made $out (ext2, 256 MiB)"
