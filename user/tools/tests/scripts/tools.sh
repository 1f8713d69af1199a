# Differential tool script: run with the AliasOS `sh` and tools on PATH, in an
# empty writable directory. Output must equal tools.expected both on the Linux
# host and inside AliasOS. Only deterministic facts (no inodes, no times).
echo start
mkdir -p a/b/c
echo hello > a/hello.txt
echo -n abc > a/b/abc
dd if=/dev/zero of=a/zero bs=1K count=64 status=none
dd if=a/hello.txt of=a/b/c/hello2 bs=1 skip=1 count=3 status=none
cat a/hello.txt a/b/abc a/b/c/hello2
echo
ls a
sha256sum a/hello.txt a/zero a/b/abc
cp a/zero a/zero2
cmp a/zero a/zero2 && echo same
cmp a/hello.txt a/b/abc; echo cmp=$?
mv a/zero2 a/b/c
ls a/b/c
rm a/b/c/zero2
rm a/nope; echo rm=$?
rm -r a/b
ls a
cat a/hello.txt | sha256sum
sh -c 'exit 7'; echo status=$?
echo done
