/*
 * filetest DIR: file I/O through an ordinary C library (musl, static), for AliasOS.
 *
 * Built by the userland tests with `musl-gcc -static -O2`, run once on the Linux
 * host and once inside AliasOS (from the data disk's /etc/rc); both runs must
 * print exactly the same lines. So the output holds no addresses, times, inode
 * numbers or device numbers: only sizes, contents, hashes and error numbers.
 *
 * It works in DIR (which must exist): open/write/read/lseek/pread/pwrite/
 * readv/writev/fstat/ftruncate/fsync, O_APPEND and O_EXCL, a sparse file,
 * mmap MAP_SHARED of a file (stores through the mapping, msync, read back with
 * read()), MAP_PRIVATE of a file (stores stay private), MAP_PRIVATE|MAP_ANONYMOUS
 * memory, rename/unlink/mkdir/rmdir, a sorted directory listing, sendfile and
 * copy_file_range between files, and SHA-256 (the
 * small implementation below) of what it wrote. It leaves DIR/keep.bin behind
 * (KEEP_LEN bytes of pattern 7) for the host to check on the disk image.
 * Exit status 0 when every check passed, 1 otherwise.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define KEEP_LEN 300001

static int failures;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            printf("FAIL line %d: ", __LINE__);                                \
            printf(__VA_ARGS__);                                               \
            printf(" (errno %d)\n", errno);                                    \
            failures++;                                                        \
        }                                                                      \
    } while (0)

/* ---- SHA-256 (FIPS 180-4) ------------------------------------------------ */

struct sha256 {
    uint32_t h[8];
    uint8_t buf[64];
    size_t fill;
    uint64_t total;
};

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
};

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_init(struct sha256 *s) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv);
    s->fill = 0;
    s->total = 0;
}

static void sha256_block(struct sha256 *s, const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3];
    uint32_t e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    s->h[0] += a;
    s->h[1] += b;
    s->h[2] += c;
    s->h[3] += d;
    s->h[4] += e;
    s->h[5] += f;
    s->h[6] += g;
    s->h[7] += h;
}

static void sha256_update(struct sha256 *s, const void *data, size_t len) {
    const uint8_t *p = data;
    s->total += len;
    while (len > 0) {
        size_t n = 64 - s->fill;
        if (n > len)
            n = len;
        memcpy(s->buf + s->fill, p, n);
        s->fill += n;
        p += n;
        len -= n;
        if (s->fill == 64) {
            sha256_block(s, s->buf);
            s->fill = 0;
        }
    }
}

/* Finish and write the digest as 64 hex digits plus NUL into out. */
static void sha256_hex(struct sha256 *s, char out[65]) {
    uint64_t bits = s->total * 8;
    uint8_t pad = 0x80;
    sha256_update(s, &pad, 1);
    pad = 0;
    while (s->fill != 56)
        sha256_update(s, &pad, 1);
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(s, len, 8);
    for (int i = 0; i < 8; i++)
        sprintf(out + 8 * i, "%08x", s->h[i]);
}

static void sha256_of(const void *data, size_t len, char out[65]) {
    struct sha256 s;
    sha256_init(&s);
    sha256_update(&s, data, len);
    sha256_hex(&s, out);
}

/* ---- helpers ------------------------------------------------------------- */

/* Deterministic bytes: byte i of pattern seed. */
static uint8_t pat(uint64_t i, unsigned seed) {
    uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull ^ (uint64_t)seed * 0xbf58476d1ce4e5b9ull;
    x ^= x >> 31;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 29;
    return (uint8_t)x;
}

static void fill(uint8_t *p, size_t len, uint64_t off, unsigned seed) {
    for (size_t i = 0; i < len; i++)
        p[i] = pat(off + i, seed);
}

static char path_buf[4][4096];

/* DIR/name (four rotating buffers). */
static const char *in_dir(const char *dir, const char *name) {
    static int n;
    char *b = path_buf[n++ % 4];
    snprintf(b, sizeof path_buf[0], "%s/%s", dir, name);
    return b;
}

static int write_all(int fd, const void *p, size_t len) {
    const uint8_t *b = p;
    while (len > 0) {
        ssize_t n = write(fd, b, len);
        if (n <= 0)
            return -1;
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

static ssize_t read_full(int fd, void *p, size_t len) {
    uint8_t *b = p;
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, b + got, len - got);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* SHA-256 of a whole file, read in odd-sized pieces. */
static int hash_file(const char *path, char out[65], long *size) {
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    struct sha256 s;
    sha256_init(&s);
    static uint8_t buf[12345];
    long total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        sha256_update(&s, buf, (size_t)n);
        total += n;
    }
    close(fd);
    sha256_hex(&s, out);
    *size = total;
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Print the sorted entries of dir (without . and ..) with their types and sizes. */
static void list_dir(const char *dir) {
    DIR *d = opendir(dir);
    CHECK(d != NULL, "opendir %s", dir);
    if (!d)
        return;
    char *names[64];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 64) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    printf("ls:");
    for (int i = 0; i < n; i++) {
        struct stat st;
        const char *p = in_dir(dir, names[i]);
        if (lstat(p, &st) == 0)
            printf(" %s%s(%lld)", names[i], S_ISDIR(st.st_mode) ? "/" : "",
                   S_ISDIR(st.st_mode) ? 0LL : (long long)st.st_size);
        else
            printf(" %s(?)", names[i]);
        free(names[i]);
    }
    printf("\n");
}

/* ---- the tests ----------------------------------------------------------- */

static void test_write_read(const char *dir) {
    const size_t len = 100000;
    uint8_t *data = malloc(len), *back = malloc(len);
    fill(data, len, 0, 1);
    const char *p = in_dir(dir, "data.bin");
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0, "open %s", p);
    /* Odd-sized writes crossing page boundaries. */
    size_t off = 0, step = 777;
    while (off < len) {
        size_t n = len - off < step ? len - off : step;
        CHECK(write_all(fd, data + off, n) == 0, "write at %zu", off);
        off += n;
        step = step * 3 % 9001 + 1;
    }
    CHECK(lseek(fd, 0, SEEK_CUR) == (off_t)len, "position after writes");
    CHECK(lseek(fd, 0, SEEK_SET) == 0, "lseek set");
    memset(back, 0, len);
    CHECK(read_full(fd, back, len) == (ssize_t)len, "read back");
    CHECK(memcmp(data, back, len) == 0, "read back differs");
    CHECK(read(fd, back, 10) == 0, "read at end of file is 0");
    off_t end = lseek(fd, 0, SEEK_END);
    printf("write/read: %zu bytes, end at %lld\n", len, (long long)end);

    /* pread/pwrite do not move the position. */
    CHECK(lseek(fd, 5, SEEK_SET) == 5, "lseek 5");
    uint8_t small[100];
    CHECK(pread(fd, small, 100, 4090) == 100, "pread");
    CHECK(memcmp(small, data + 4090, 100) == 0, "pread data");
    uint8_t patch[300];
    fill(patch, sizeof patch, 0, 2);
    CHECK(pwrite(fd, patch, sizeof patch, 8000) == (ssize_t)sizeof patch, "pwrite");
    memcpy(data + 8000, patch, sizeof patch);
    CHECK(lseek(fd, 0, SEEK_CUR) == 5, "position kept by pread/pwrite");
    CHECK(lseek(fd, -10, SEEK_END) == (off_t)len - 10, "lseek from end");
    CHECK(lseek(fd, -1, SEEK_SET) == -1 && errno == EINVAL, "negative lseek is EINVAL");

    /* readv/writev. */
    uint8_t a[10], b[5000], c[1];
    struct iovec iov[3] = {{a, sizeof a}, {b, sizeof b}, {c, sizeof c}};
    CHECK(lseek(fd, 3000, SEEK_SET) == 3000, "lseek 3000");
    CHECK(readv(fd, iov, 3) == 5011, "readv");
    CHECK(memcmp(a, data + 3000, 10) == 0 && memcmp(b, data + 3010, 5000) == 0 &&
              c[0] == data[8010],
          "readv data");
    fill(a, sizeof a, 100, 3);
    fill(b, sizeof b, 200, 3);
    c[0] = 0x5a;
    CHECK(lseek(fd, 20000, SEEK_SET) == 20000, "lseek 20000");
    CHECK(writev(fd, iov, 3) == 5011, "writev");
    memcpy(data + 20000, a, 10);
    memcpy(data + 20010, b, 5000);
    data[25010] = 0x5a;
    CHECK(fsync(fd) == 0, "fsync");

    struct stat st;
    CHECK(fstat(fd, &st) == 0, "fstat");
    printf("fstat: size %lld, regular %d, mode %o\n", (long long)st.st_size,
           S_ISREG(st.st_mode), st.st_mode & 0777);
    close(fd);

    char h1[65], h2[65];
    long size;
    sha256_of(data, len, h1);
    CHECK(hash_file(p, h2, &size) == 0, "hash data.bin");
    CHECK(strcmp(h1, h2) == 0, "file hash %s != memory hash %s", h2, h1);
    printf("sha256 data.bin: %s (%ld bytes)\n", h2, size);

    /* ftruncate down and up: the regrown part reads as zeros. */
    fd = open(p, O_RDWR);
    CHECK(ftruncate(fd, 50000) == 0, "ftruncate down");
    CHECK(ftruncate(fd, 60000) == 0, "ftruncate up");
    CHECK(fstat(fd, &st) == 0 && st.st_size == 60000, "size after ftruncate");
    CHECK(pread(fd, back, 10000, 50000) == 10000, "read regrown part");
    int zeros = 1;
    for (int i = 0; i < 10000; i++)
        zeros &= back[i] == 0;
    CHECK(zeros, "regrown part is zero");
    CHECK(pread(fd, back, 100, 49950) == 100 && memcmp(back, data + 49950, 50) == 0,
          "data before the cut kept");
    close(fd);
    CHECK(hash_file(p, h2, &size) == 0, "hash truncated");
    printf("ftruncate: %ld bytes, sha256 %s\n", size, h2);
    free(data);
    free(back);
}

static void test_append_excl_sparse(const char *dir) {
    const char *p = in_dir(dir, "log.txt");
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0, "O_EXCL create");
    CHECK(write(fd, "one\n", 4) == 4, "write one");
    close(fd);
    errno = 0;
    CHECK(open(p, O_WRONLY | O_CREAT | O_EXCL, 0600) == -1 && errno == EEXIST,
          "O_EXCL on an existing file is EEXIST");
    fd = open(p, O_WRONLY | O_APPEND);
    CHECK(lseek(fd, 0, SEEK_SET) == 0, "lseek on append fd");
    CHECK(write(fd, "two\n", 4) == 4, "append two");
    close(fd);
    char buf[64] = {0};
    fd = open(p, O_RDONLY);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    CHECK(n == 8 && strcmp(buf, "one\ntwo\n") == 0, "append result");
    printf("append: %zd bytes\n", n);

    errno = 0;
    CHECK(open(in_dir(dir, "missing/x"), O_RDONLY) == -1 && errno == ENOENT,
          "missing path is ENOENT");
    errno = 0;
    CHECK(open(dir, O_WRONLY) == -1 && errno == EISDIR, "directory for writing is EISDIR");
    errno = 0;
    CHECK(read(-1, buf, 1) == -1 && errno == EBADF, "bad fd is EBADF");

    /* A sparse file: 5 bytes at 3 MiB + 7. */
    p = in_dir(dir, "sparse.bin");
    fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(lseek(fd, 3 * 1024 * 1024 + 7, SEEK_SET) == 3 * 1024 * 1024 + 7, "lseek past end");
    CHECK(write(fd, "hello", 5) == 5, "write after hole");
    struct stat st;
    CHECK(fstat(fd, &st) == 0, "fstat sparse");
    CHECK(pread(fd, buf, 16, 1024 * 1024) == 16, "read hole");
    int zeros = 1;
    for (int i = 0; i < 16; i++)
        zeros &= buf[i] == 0;
    CHECK(zeros, "hole reads as zeros");
    close(fd);
    char h[65];
    long size;
    CHECK(hash_file(p, h, &size) == 0, "hash sparse");
    printf("sparse: size %lld, sha256 %s\n", (long long)st.st_size, h);
}

static void test_mmap(const char *dir) {
    const long page = sysconf(_SC_PAGESIZE);
    const size_t len = 5 * 4096 + 123;
    const char *p = in_dir(dir, "mapped.bin");
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0, "open mapped.bin");
    uint8_t *data = malloc(len);
    fill(data, len, 0, 4);
    CHECK(write_all(fd, data, len) == 0, "write mapped.bin");

    /* MAP_SHARED: stores reach the file. */
    uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(m != MAP_FAILED, "mmap shared");
    if (m != MAP_FAILED) {
        CHECK(memcmp(m, data, len) == 0, "mapping shows the file");
        for (size_t i = 0; i < len; i += 1000) {
            m[i] = (uint8_t)(i / 1000);
            data[i] = (uint8_t)(i / 1000);
        }
        m[len - 1] = 0xee;
        data[len - 1] = 0xee;
        CHECK(msync(m, len, MS_SYNC) == 0, "msync");
        uint8_t *back = malloc(len);
        CHECK(pread(fd, back, len, 0) == (ssize_t)len, "read after msync");
        CHECK(memcmp(back, data, len) == 0, "read() sees the stores through the mapping");
        /* And the other way: a write() shows in the mapping. */
        CHECK(pwrite(fd, "WXYZ", 4, 4096 + 10) == 4, "pwrite under mapping");
        CHECK(memcmp(m + 4096 + 10, "WXYZ", 4) == 0, "mapping sees write()");
        memcpy(data + 4096 + 10, "WXYZ", 4);
        free(back);
        CHECK(munmap(m, len) == 0, "munmap shared");
    }
    close(fd);
    char h1[65], h2[65];
    long size;
    sha256_of(data, len, h1);
    CHECK(hash_file(p, h2, &size) == 0, "hash mapped.bin");
    CHECK(strcmp(h1, h2) == 0, "mapped.bin hash");
    printf("mmap shared: %ld bytes, sha256 %s\n", size, h2);

    /* MAP_PRIVATE of the file at an offset: stores stay in this process. */
    fd = open(p, O_RDWR);
    uint8_t *q = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 4096);
    CHECK(q != MAP_FAILED, "mmap private file");
    if (q != MAP_FAILED) {
        CHECK(memcmp(q, data + 4096, 2 * 4096) == 0, "private mapping at offset");
        memset(q, 0x11, 4096);
        uint8_t chk[16];
        CHECK(pread(fd, chk, 16, 4096) == 16 && memcmp(chk, data + 4096, 16) == 0,
              "private stores do not reach the file");
        CHECK(munmap(q, 2 * 4096) == 0, "munmap private");
    }
    errno = 0;
    CHECK(mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 1) == MAP_FAILED && errno == EINVAL,
          "unaligned offset is EINVAL");
    close(fd);
    CHECK(hash_file(p, h2, &size) == 0 && strcmp(h1, h2) == 0, "file unchanged by private map");

    /* Anonymous private memory: zero-filled, usable, and gone after munmap. */
    const size_t alen = 3 * 1024 * 1024 + 100;
    uint8_t *an = mmap(NULL, alen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(an != MAP_FAILED, "mmap anonymous");
    if (an != MAP_FAILED) {
        int zeros = 1;
        for (size_t i = 0; i < alen; i += 4093)
            zeros &= an[i] == 0;
        CHECK(zeros, "anonymous memory is zero");
        fill(an, alen, 0, 5);
        char h[65];
        sha256_of(an, alen, h);
        printf("mmap anonymous: %zu bytes, sha256 %s\n", alen, h);
        CHECK(mprotect(an, 4096, PROT_READ) == 0, "mprotect");
        CHECK(munmap(an, alen) == 0, "munmap anonymous");
    }
    printf("page size: %ld\n", page);
    free(data);
}

static void test_dirs(const char *dir) {
    const char *d = in_dir(dir, "sub");
    CHECK(mkdir(d, 0755) == 0, "mkdir");
    errno = 0;
    CHECK(mkdir(d, 0755) == -1 && errno == EEXIST, "mkdir twice is EEXIST");
    const char *from = in_dir(dir, "log.txt");
    const char *to = in_dir(dir, "sub/renamed.txt");
    CHECK(rename(from, to) == 0, "rename into sub");
    errno = 0;
    CHECK(access(from, F_OK) == -1 && errno == ENOENT, "old name gone");
    errno = 0;
    CHECK(rmdir(d) == -1 && errno == ENOTEMPTY, "rmdir of a non-empty dir is ENOTEMPTY");
    CHECK(unlink(to) == 0, "unlink");
    CHECK(rmdir(d) == 0, "rmdir");
    CHECK(unlink(in_dir(dir, "sparse.bin")) == 0, "unlink sparse");

    /* keep.bin stays for the host to check on the disk image. */
    const char *k = in_dir(dir, "keep.bin");
    int fd = open(k, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    uint8_t *buf = malloc(KEEP_LEN);
    fill(buf, KEEP_LEN, 0, 7);
    CHECK(fd >= 0 && write_all(fd, buf, KEEP_LEN) == 0, "write keep.bin");
    CHECK(fsync(fd) == 0, "fsync keep.bin");
    close(fd);
    char h[65];
    sha256_of(buf, KEEP_LEN, h);
    printf("keep.bin: %d bytes, sha256 %s\n", KEEP_LEN, h);
    free(buf);
    list_dir(dir);
}

/* In-kernel copies through the C library's wrappers: sendfile (with an offset and with
 * the file offset) and copy_file_range, whole pages and a partial tail. */
static void test_copies(const char *dir) {
    char src[512], dst[512], dst2[512], h1[65], h2[65];
    snprintf(src, sizeof src, "%s/copy-src.bin", dir);
    snprintf(dst, sizeof dst, "%s/copy-sendfile.bin", dir);
    snprintf(dst2, sizeof dst2, "%s/copy-cfr.bin", dir);
    size_t len = 5 * 4096 + 123;
    uint8_t *buf = malloc(len), *back = malloc(len);
    fill(buf, len, 0, 11);
    int fd = open(src, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0 && write(fd, buf, len) == (ssize_t)len, "write %s", src);
    close(fd);
    int in = open(src, O_RDONLY), out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    off_t off = 4096;
    ssize_t n = sendfile(out, in, &off, len);
    CHECK(n == (ssize_t)(len - 4096) && off == (off_t)len, "sendfile with an offset: %zd",
          n);
    CHECK(lseek(in, 0, SEEK_CUR) == 0, "sendfile moved the input offset");
    n = sendfile(out, in, NULL, 4096);
    CHECK(n == 4096 && lseek(in, 0, SEEK_CUR) == 4096, "sendfile at the offset: %zd", n);
    close(out);
    int out2 = open(dst2, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    lseek(in, 0, SEEK_SET);
    size_t total = 0;
    while ((n = copy_file_range(in, NULL, out2, NULL, 1 << 20, 0)) > 0)
        total += (size_t)n;
    CHECK(n == 0 && total == len, "copy_file_range copied %zu", total);
    close(out2);
    close(in);
    fd = open(dst, O_RDONLY);
    CHECK(read(fd, back, len) == (ssize_t)len, "read %s", dst);
    close(fd);
    /* sendfile wrote source bytes 4096.. first, then 0..4096 */
    CHECK(memcmp(back, buf + 4096, len - 4096) == 0 &&
              memcmp(back + len - 4096, buf, 4096) == 0,
          "the sendfile copy differs");
    fd = open(dst2, O_RDONLY);
    CHECK(read(fd, back, len) == (ssize_t)len && memcmp(back, buf, len) == 0,
          "the copy_file_range copy differs");
    close(fd);
    sha256_of(buf, len, h1);
    sha256_of(back, len, h2);
    printf("filetest: copies %zu bytes, sha256 %s %s\n", len, h1, h2);
    free(buf);
    free(back);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: filetest DIR\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *dir = argv[1];
    char h[65];
    sha256_of("abc", 3, h);
    printf("filetest: sha256(abc) = %s\n", h);
    test_write_read(dir);
    test_append_excl_sparse(dir);
    test_mmap(dir);
    test_dirs(dir);
    test_copies(dir);
    printf("filetest: %s\n", failures ? "FAILED" : "OK");
    return failures ? 1 : 0;
}
