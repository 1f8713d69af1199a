/*
 * unlinked DIR: files unlinked while open must stay usable until their last close, and
 * then be freed (tests/tests/userland.rs runs this in AliasOS and requires e2fsck to find
 * the disk clean afterwards: no "deleted inode has zero dtime", no leaked blocks).
 *
 * Found by sysfuzz (seed 1): an ftruncate on a file unlinked while open left the inode
 * allocated for ever. Each case below opens DIR/NAME, writes to it, unlinks it, does one
 * more thing through the open descriptor, and closes it. Output is deterministic;
 * exit status 0 when every check passed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures;
static char dir[4000];

#define CHECK(cond, what)                                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            printf("FAIL %s: %s (errno %d)\n", name, what, errno);             \
            failures++;                                                        \
        }                                                                      \
    } while (0)

/* Create DIR/name holding len bytes of 'a'+i%26, unlink it, return the open fd. */
static int unlinked(const char *name, int len) {
    char path[4096], buf[8192];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0, "open");
    for (int i = 0; i < len && i < (int)sizeof buf; i++)
        buf[i] = (char)('a' + i % 26);
    for (int done = 0; done < len;) {
        int n = len - done < (int)sizeof buf ? len - done : (int)sizeof buf;
        CHECK(write(fd, buf, (size_t)n) == n, "write");
        done += n;
    }
    CHECK(unlink(path) == 0, "unlink");
    CHECK(access(path, F_OK) == -1 && errno == ENOENT, "name gone");
    return fd;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: unlinked DIR\n");
        return 2;
    }
    snprintf(dir, sizeof dir, "%s", argv[1]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct stat st;
    char buf[64];
    const char *name;

    name = "close";
    int fd = unlinked(name, 10000);
    CHECK(close(fd) == 0, "close");

    name = "read";
    fd = unlinked(name, 10000);
    CHECK(pread(fd, buf, 4, 26) == 4 && memcmp(buf, "abcd", 4) == 0, "read after unlink");
    close(fd);

    name = "write";
    fd = unlinked(name, 100);
    CHECK(pwrite(fd, "XYZ", 3, 50000) == 3, "write after unlink");
    CHECK(fstat(fd, &st) == 0 && st.st_size == 50003, "size after write");
    CHECK(st.st_nlink == 0, "no links");
    close(fd);

    name = "ftruncate";
    fd = unlinked(name, 10000);
    CHECK(ftruncate(fd, 3) == 0, "ftruncate down");
    CHECK(ftruncate(fd, 70000) == 0, "ftruncate up");
    CHECK(fstat(fd, &st) == 0 && st.st_size == 70000, "size after ftruncate");
    close(fd);

    name = "ftruncate-efbig";
    fd = unlinked(name, 5);
    CHECK(ftruncate(fd, 0x7effffeee800L) == -1 && errno == EFBIG, "huge ftruncate is EFBIG");
    close(fd);

    name = "fsync";
    fd = unlinked(name, 20000);
    CHECK(fsync(fd) == 0, "fsync after unlink");
    close(fd);

    name = "mmap";
    fd = unlinked(name, 8192);
    char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(m != MAP_FAILED, "mmap after unlink");
    close(fd);
    if (m != MAP_FAILED) {
        CHECK(m[27] == 'b', "mapping still reads the file after close");
        if (m[27] != 'b')
            printf("  (byte 27 of the mapping is %d, not %d)\n", m[27], 'b');
        m[0] = '!';
        CHECK(munmap(m, 8192) == 0, "munmap");
    }

    name = "two-fds";
    fd = unlinked(name, 3000);
    int fd2 = dup(fd);
    CHECK(fd2 >= 0, "dup");
    close(fd);
    CHECK(pread(fd2, buf, 1, 0) == 1 && buf[0] == 'a', "read through the other fd");
    CHECK(ftruncate(fd2, 1) == 0, "ftruncate through the other fd");
    close(fd2);

    printf("unlinked: %s\n", failures ? "FAILED" : "OK");
    return failures ? 1 : 0;
}
