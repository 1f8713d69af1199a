# File-system differential script: run with the AliasOS `sh` and tools on PATH, in an
# empty writable directory, on the Linux host and inside AliasOS (on the ext2 data
# disk); the two outputs must be identical (tests/tests/userland.rs compares them, and
# user/tools/tests/host.rs compares the host run with bash and GNU tools). It prints
# only what does not depend on the file system or the machine: names, sizes of regular
# files, contents, hashes, exit statuses and error messages (no inode numbers, times,
# block counts or directory sizes).
echo fs start
mkdir -p top/a/b/c top/empty
dd if=/dev/zero of=top/zero.bin bs=64K count=40 status=none
dd if=top/zero.bin of=top/a/part.bin bs=1000 skip=7 count=33 status=none
echo line one > top/a/b/text
echo line two >> top/a/b/text
cat top/a/b/text top/a/b/text > top/a/b/c/twice
cp top/zero.bin top/a/b/c/zero.copy
dd if=top/a/b/text of=top/holes bs=1 seek=100000 status=none
dd if=top/a/b/text of=top/holes bs=1 seek=5000 conv=notrunc status=none
dd if=top/a/b/text of=top/notrunc bs=4 count=2 status=none
dd if=top/a/b/c/twice of=top/notrunc bs=2 seek=1 count=3 conv=notrunc,fsync status=none
sha256sum top/zero.bin top/a/part.bin top/a/b/text top/a/b/c/twice top/a/b/c/zero.copy top/holes top/notrunc
cmp top/zero.bin top/a/b/c/zero.copy && echo copy same
cmp top/holes top/zero.bin; echo cmp status $?
cat top/notrunc; echo
ls top top/a top/a/b top/a/b/c top/empty
mv top/a/b/c top/moved
mv top/holes top/moved/holes2
ls top top/moved
cat top/moved/twice | sha256sum
rm top/moved/zero.copy
rm top/empty; echo rm dir status $?
rm -r top/a
ls top top/moved
cat top/a/b/text; echo cat status $?
mkdir top/moved; echo mkdir status $?
sh -c 'cd top/moved && pwd >/dev/null && ls'
echo fs done
