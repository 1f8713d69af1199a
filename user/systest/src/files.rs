//! Files: open flags, read/write family, lseek, the stat family, getdents64, directory and
//! link operations, truncation, syncing, dup, pipes, fcntl, cwd, ioctl, devices, /proc,
//! file mappings. Everything is written under `/mnt/systest/`; tests/tests/syscalls.rs
//! checks the files named here (`write.txt`, `append.txt`, ...) in the image afterwards.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use sys::errno::*;
use sys::{
    O_APPEND, O_CLOEXEC, O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_RDONLY, O_RDWR, O_TRUNC,
    O_WRONLY,
};

use crate::process::{SELF, execve};
use crate::util::*;

use crate::{ensure, say};

/// The work directory.
const D: &str = "/mnt/systest";

#[rustfmt::skip]
pub const CASES: &[Case] = &[
    ("files: mkdir /mnt/systest (the work directory)", workdir),
    ("files: open O_CREAT|O_EXCL (EEXIST), ENOENT, ENOTDIR, EISDIR, ENAMETOOLONG", open_errors),
    ("files: open O_TRUNC empties the file", open_trunc),
    ("files: open O_APPEND writes at the end", open_append),
    ("files: open O_DIRECTORY on a file gives ENOTDIR", open_directory),
    ("files: read/write round trip; EBADF and EISDIR cases", read_write),
    ("files: a 300000-byte file written in odd pieces reads back", big_file),
    ("files: pread/pwrite leave the offset alone", pread_pwrite),
    ("files: readv/writev", readv_writev),
    ("files: lseek SEEK_SET/CUR/END, EINVAL, holes read zero", lseek_cases),
    ("files: stat/fstat/lstat/newfstatat fields", stat_fields),
    ("files: getdents64 lists entries with d_type", getdents),
    ("files: mkdir/rmdir (EEXIST, ENOENT, ENOTEMPTY, ENOTDIR, EINVAL)", mkdir_rmdir),
    ("files: unlink (EISDIR, ENOENT); an open unlinked file stays readable", unlink_cases),
    ("files: rename within and across directories, onto existing, errors", rename_cases),
    ("files: link gives nlink 2 (EEXIST, EPERM on a directory)", link_cases),
    ("files: symlink/readlink, O_NOFOLLOW ELOOP, dangling ENOENT", symlink_cases),
    ("files: ftruncate grows with zeros and shrinks", ftruncate_cases),
    ("files: fsync/fdatasync/sync", fsync_cases),
    ("files: dup/dup2/dup3 share the offset", dup_cases),
    ("files: pipe and fork: data, then EOF after the last writer closes", pipe_fork),
    ("files: 100 KiB through a pipe (both sides block)", pipe_big),
    ("files: write to a pipe without readers gives EPIPE (SIGPIPE ignored)", pipe_epipe),
    ("files: write to a pipe without readers kills with SIGPIPE by default", pipe_sigpipe),
    ("files: fcntl F_GETFD/F_SETFD/F_GETFL/F_DUPFD; exec closes FD_CLOEXEC fds", fcntl_cases),
    ("files: close of a bad fd gives EBADF", close_bad),
    ("files: getcwd/chdir (ENOTDIR, ENOENT, ERANGE)", cwd_cases),
    ("files: ioctl TCGETS/TIOCGWINSZ on /dev/console, ENOTTY on a file", ioctl_cases),
    ("files: /dev/null reads EOF, /dev/zero zeros, /dev/urandom bytes", devices),
    ("files: /proc/meminfo, /proc/vmstat (DESIGN counters), /proc/mounts, /proc/interrupts", proc_files),
    ("files: /proc/vmstat cow_breaks counts a COW break", vmstat_cow),
    ("files: fd shared across fork shares the offset", fork_shared_offset),
    ("files: umask applies to O_CREAT and mkdir", umask_cases),
    ("files: mount/umount2 errors", mount_errors),
    ("files: mmap MAP_SHARED of a file: stores reach the file", mmap_shared),
    ("files: mmap MAP_PRIVATE of a file: stores stay private", mmap_private),
    ("files: MAP_PRIVATE read-only file page made writable copies (alone and after fork)", mmap_private_mprotect),
    ("files: access past EOF of a file mapping gives SIGBUS", mmap_sigbus),
    ("files: MAP_SHARED store survives mprotect(PROT_NONE) and munmap", mmap_shared_prot_none),
    ("files: read() into a MAP_SHARED file mapping reaches the file on disk", mmap_shared_kernel_store),
    ("files: pread/pwrite whose buffer maps the same file page", mmap_same_page_io),
    ("files: mmap of files: EACCES, ENODEV, EINVAL", mmap_file_errors),
];

const F_DUPFD: usize = 0;
const F_GETFD: usize = 1;
const F_SETFD: usize = 2;
const F_GETFL: usize = 3;
const F_SETFL: usize = 4;
const F_DUPFD_CLOEXEC: usize = 1030;
const AT_EMPTY_PATH: usize = 0x1000;

fn p(name: &str) -> String {
    format!("{D}/{name}")
}

/// Remove `path` and everything under it (best effort; for re-runs on the same image).
fn rm_rf(path: &str) {
    match path1(nr::UNLINK, path, &[]) {
        Ok(_) | Err(ENOENT) => return,
        Err(_) => {}
    }
    if let Ok(fd) = open_s(path, O_RDONLY | O_DIRECTORY, 0) {
        let mut names = Vec::new();
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = sc(
            nr::GETDENTS64,
            &[fd as usize, buf.as_mut_ptr() as usize, buf.len()],
        ) {
            if n == 0 {
                break;
            }
            for d in sys::DirentIter::new(&buf[..n]) {
                if d.name != b"." && d.name != b".." {
                    names.push(String::from_utf8_lossy(d.name).into_owned());
                }
            }
        }
        let _ = close(fd);
        for n in names {
            rm_rf(&format!("{path}/{n}"));
        }
    }
    let _ = path1(nr::RMDIR, path, &[]);
}

/// The work directory exists.
fn ensure_dir() -> Res {
    match path1(nr::MKDIR, D, &[0o755]) {
        Ok(_) | Err(EEXIST) => Ok(()),
        Err(e) => Err(format!("mkdir {D}: {}", ename(e))),
    }
}

/// A fresh subdirectory of the work directory.
fn fresh_dir(name: &str) -> Result<String, String> {
    ensure_dir()?;
    let d = p(name);
    rm_rf(&d);
    ok(&format!("mkdir {d}"), path1(nr::MKDIR, &d, &[0o755]))?;
    Ok(d)
}

fn workdir() -> Res {
    match path1(nr::MKDIR, D, &[0o755]) {
        Ok(_) => {}
        Err(EEXIST) => say!("#   {D} already exists (re-run on the same image)\n"),
        Err(e) => return Err(format!("mkdir {D}: {}", ename(e))),
    }
    let st = ok(&format!("stat {D}"), stat_s(D))?;
    ensure!(
        st.is_dir(),
        "{D} has mode {:#o}, not a directory",
        st.st_mode
    );
    Ok(())
}

fn open_errors() -> Res {
    ensure_dir()?;
    let f = p("excl");
    let _ = path1(nr::UNLINK, &f, &[]);
    let fd = ok(
        "open O_CREAT|O_EXCL",
        open_s(&f, O_CREAT | O_EXCL | O_RDWR, 0o644),
    )?;
    ensure!(fd >= 3, "new fd {fd} collides with stdin/stdout/stderr");
    want(
        "open O_CREAT|O_EXCL again",
        open_s(&f, O_CREAT | O_EXCL | O_RDWR, 0o644).map(|x| x as usize),
        EEXIST,
    )?;
    ok("close", close(fd))?;
    // The lowest free descriptor is reused.
    let fd2 = ok("reopen", open_s(&f, O_RDONLY, 0))?;
    ensure!(
        fd2 == fd,
        "reopen got fd {fd2}, expected the lowest free {fd}"
    );
    let _ = close(fd2);
    let cases: [(String, usize, Errno); 7] = [
        (p("missing"), O_RDONLY, ENOENT),
        (p("nodir/x"), O_CREAT | O_WRONLY, ENOENT),
        (p("excl/x"), O_RDONLY, ENOTDIR),
        (String::from(D), O_WRONLY, EISDIR),
        (String::from(D), O_RDWR, EISDIR),
        (String::from(D), O_CREAT | O_RDONLY, EISDIR),
        (p(&"a".repeat(256)), O_CREAT | O_RDWR, ENAMETOOLONG),
    ];
    for (path, flags, e) in cases {
        let shown = if path.len() > 40 {
            format!("{}...", &path[..40])
        } else {
            path.clone()
        };
        want(
            &format!("open({shown}, {flags:#o})"),
            open_s(&path, flags, 0o644).map(|x| x as usize),
            e,
        )?;
    }
    Ok(())
}

fn open_trunc() -> Res {
    ensure_dir()?;
    let f = p("trunc_me");
    write_path(&f, &[7u8; 100])?;
    let fd = ok("open O_TRUNC", open_s(&f, O_WRONLY | O_TRUNC, 0))?;
    let st = ok("fstat", fstat(fd))?;
    let _ = close(fd);
    ensure!(st.st_size == 0, "size {} after O_TRUNC", st.st_size);
    ensure!(read_path(&f)?.is_empty(), "contents left after O_TRUNC");
    Ok(())
}

fn open_append() -> Res {
    ensure_dir()?;
    let f = p("append.txt");
    write_path(&f, b"abc")?;
    let fd = ok("open O_APPEND", open_s(&f, O_WRONLY | O_APPEND, 0))?;
    ok("lseek 0", lseek(fd, 0, sys::SEEK_SET))?;
    write_all("write def", fd, b"def")?;
    let off = ok("lseek CUR", lseek(fd, 0, sys::SEEK_CUR))?;
    let _ = close(fd);
    ensure!(
        off == 6,
        "offset {off} after an appending write, expected 6"
    );
    let got = read_path(&f)?;
    ensure!(
        got == b"abcdef",
        "contents {:?}, expected \"abcdef\"",
        String::from_utf8_lossy(&got)
    );
    Ok(())
}

fn open_directory() -> Res {
    ensure_dir()?;
    let f = p("plain.txt");
    write_path(&f, b"plain\n")?;
    want(
        "open(file, O_DIRECTORY)",
        open_s(&f, O_RDONLY | O_DIRECTORY, 0).map(|x| x as usize),
        ENOTDIR,
    )?;
    let fd = ok(
        "open(dir, O_DIRECTORY)",
        open_s(D, O_RDONLY | O_DIRECTORY, 0),
    )?;
    let _ = close(fd);
    Ok(())
}

fn read_write() -> Res {
    ensure_dir()?;
    let f = p("write.txt");
    let msg = b"hello, AliasOS\n";
    let fd = ok(
        "create write.txt",
        open_s(&f, O_RDWR | O_CREAT | O_TRUNC, 0o644),
    )?;
    write_all("write", fd, msg)?;
    let n = ok("write of 0 bytes", write(fd, b""))?;
    ensure!(n == 0, "write of 0 bytes returned {n}");
    ok("lseek 0", lseek(fd, 0, sys::SEEK_SET))?;
    let mut buf = [0u8; 100];
    let n = ok("read", read(fd, &mut buf))?;
    ensure!(
        &buf[..n] == msg,
        "read back {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let n = ok("read at EOF", read(fd, &mut buf))?;
    ensure!(n == 0, "read at EOF returned {n}");
    let _ = close(fd);
    let ro = ok("open O_RDONLY", open_s(&f, O_RDONLY, 0))?;
    want("write to an O_RDONLY fd", write(ro, b"x"), EBADF)?;
    let _ = close(ro);
    let wo = ok("open O_WRONLY", open_s(&f, O_WRONLY, 0))?;
    want("read from an O_WRONLY fd", read(wo, &mut buf), EBADF)?;
    let _ = close(wo);
    want("write(999)", write(999, b"x"), EBADF)?;
    want("read(-1)", read(-1, &mut buf), EBADF)?;
    let dfd = ok("open dir", open_s(D, O_RDONLY | O_DIRECTORY, 0))?;
    want("read from a directory fd", read(dfd, &mut buf), EISDIR)?;
    let _ = close(dfd);
    Ok(())
}

/// Byte `i` of `pattern.bin` (tests/tests/syscalls.rs has the same formula).
fn pat(i: usize) -> u8 {
    (i % 251) as u8 ^ (i / 4096) as u8
}

fn big_file() -> Res {
    ensure_dir()?;
    let f = p("pattern.bin");
    let len = 300_000;
    let data: Vec<u8> = (0..len).map(pat).collect();
    let fd = ok(
        "create pattern.bin",
        open_s(&f, O_RDWR | O_CREAT | O_TRUNC, 0o644),
    )?;
    for chunk in data.chunks(4113) {
        write_all("write chunk", fd, chunk)?;
    }
    ok("fsync", sc(nr::FSYNC, &[fd as usize]))?;
    ok("lseek 0", lseek(fd, 0, sys::SEEK_SET))?;
    let mut back = Vec::new();
    let mut buf = vec![0u8; 7777];
    loop {
        let n = ok("read", read(fd, &mut buf))?;
        if n == 0 {
            break;
        }
        back.extend_from_slice(&buf[..n]);
    }
    let _ = close(fd);
    ensure!(
        back.len() == len,
        "read back {} bytes, wrote {len}",
        back.len()
    );
    if let Some(i) = (0..len).find(|&i| back[i] != data[i]) {
        return Err(format!(
            "byte {i} reads {:#x}, wrote {:#x}",
            back[i], data[i]
        ));
    }
    Ok(())
}

fn pread_pwrite() -> Res {
    ensure_dir()?;
    let f = p("pp.bin");
    let fd = ok("create", open_s(&f, O_RDWR | O_CREAT | O_TRUNC, 0o644))?;
    write_all("write", fd, b"0123456789")?;
    let n = ok(
        "pwrite AB at 3",
        sc(nr::PWRITE64, &[fd as usize, b"AB".as_ptr() as usize, 2, 3]),
    )?;
    ensure!(n == 2, "pwrite returned {n}");
    let off = ok("lseek CUR", lseek(fd, 0, sys::SEEK_CUR))?;
    ensure!(off == 10, "offset {off} after pwrite, expected 10");
    let mut b = [0u8; 4];
    let n = ok(
        "pread 4 at 2",
        sc(nr::PREAD64, &[fd as usize, b.as_mut_ptr() as usize, 4, 2]),
    )?;
    ensure!(
        n == 4 && &b == b"2AB5",
        "pread gave {:?}",
        String::from_utf8_lossy(&b[..n])
    );
    let n = ok(
        "pread past EOF",
        sc(nr::PREAD64, &[fd as usize, b.as_mut_ptr() as usize, 4, 100]),
    )?;
    ensure!(n == 0, "pread past EOF returned {n}");
    want(
        "pread at -1",
        sc(
            nr::PREAD64,
            &[fd as usize, b.as_mut_ptr() as usize, 4, usize::MAX],
        ),
        EINVAL,
    )?;
    want(
        "pwrite at -1",
        sc(
            nr::PWRITE64,
            &[fd as usize, b.as_ptr() as usize, 4, usize::MAX],
        ),
        EINVAL,
    )?;
    ok(
        "pwrite at 20",
        sc(nr::PWRITE64, &[fd as usize, b"zz".as_ptr() as usize, 2, 20]),
    )?;
    let st = ok("fstat", fstat(fd))?;
    ensure!(
        st.st_size == 22,
        "size {} after pwrite at 20, expected 22",
        st.st_size
    );
    let off = ok("lseek CUR", lseek(fd, 0, sys::SEEK_CUR))?;
    ensure!(off == 10, "offset {off} after pwrite at 20, expected 10");
    let _ = close(fd);
    let got = read_path(&f)?;
    ensure!(
        got == b"012AB56789\0\0\0\0\0\0\0\0\0\0zz",
        "contents {got:?}"
    );
    Ok(())
}

#[repr(C)]
struct Iovec {
    base: usize,
    len: usize,
}

fn readv_writev() -> Res {
    ensure_dir()?;
    let f = p("iov.bin");
    let fd = ok("create", open_s(&f, O_RDWR | O_CREAT | O_TRUNC, 0o644))?;
    let parts: [&[u8]; 3] = [b"ab", b"", b"cdef"];
    let iov: Vec<Iovec> = parts
        .iter()
        .map(|s| Iovec {
            base: s.as_ptr() as usize,
            len: s.len(),
        })
        .collect();
    let n = ok(
        "writev",
        sc(nr::WRITEV, &[fd as usize, iov.as_ptr() as usize, 3]),
    )?;
    ensure!(n == 6, "writev returned {n}, expected 6");
    ok("lseek 0", lseek(fd, 0, sys::SEEK_SET))?;
    let (mut x, mut y) = ([0u8; 3], [0u8; 10]);
    let riov = [
        Iovec {
            base: x.as_mut_ptr() as usize,
            len: 3,
        },
        Iovec {
            base: y.as_mut_ptr() as usize,
            len: 10,
        },
    ];
    let n = ok(
        "readv",
        sc(nr::READV, &[fd as usize, riov.as_ptr() as usize, 2]),
    )?;
    ensure!(
        n == 6 && &x == b"abc" && &y[..3] == b"def",
        "readv gave {n} bytes: {x:?} {y:?}"
    );
    let n = ok(
        "readv iovcnt 0",
        sc(nr::READV, &[fd as usize, riov.as_ptr() as usize, 0]),
    )?;
    ensure!(n == 0, "readv with iovcnt 0 returned {n}");
    want(
        "readv iovcnt -1",
        sc(
            nr::READV,
            &[fd as usize, riov.as_ptr() as usize, usize::MAX],
        ),
        EINVAL,
    )?;
    want(
        "writev iovcnt 1025",
        sc(nr::WRITEV, &[fd as usize, iov.as_ptr() as usize, 1025]),
        EINVAL,
    )?;
    want(
        "writev with iov in the kernel",
        sc(nr::WRITEV, &[fd as usize, KERNEL_BASE, 1]),
        EFAULT,
    )?;
    let bad = [Iovec {
        base: KERNEL_BASE,
        len: 4,
    }];
    want(
        "writev with iov_base in the kernel",
        sc(nr::WRITEV, &[fd as usize, bad.as_ptr() as usize, 1]),
        EFAULT,
    )?;
    // With data to read (offset 0), so nothing but the pointer check can stop the copy.
    ok("lseek 0", lseek(fd, 0, sys::SEEK_SET))?;
    want(
        "readv with iov_base in the kernel",
        sc(nr::READV, &[fd as usize, bad.as_ptr() as usize, 1]),
        EFAULT,
    )?;
    let _ = close(fd);
    Ok(())
}

fn lseek_cases() -> Res {
    ensure_dir()?;
    let f = p("seek.bin");
    write_path(&f, &[b's'; 100])?;
    let fd = ok("open", open_s(&f, O_RDWR, 0))?;
    let steps: [(i64, usize, usize); 4] = [
        (10, sys::SEEK_SET, 10),
        (5, sys::SEEK_CUR, 15),
        (-10, sys::SEEK_END, 90),
        (1000, sys::SEEK_END, 1100),
    ];
    for (off, whence, expect) in steps {
        let r = ok(&format!("lseek({off}, {whence})"), lseek(fd, off, whence))?;
        ensure!(
            r == expect,
            "lseek({off}, {whence}) = {r}, expected {expect}"
        );
    }
    want("lseek(-1, SEEK_SET)", lseek(fd, -1, sys::SEEK_SET), EINVAL)?;
    want(
        "lseek(-2000, SEEK_CUR)",
        lseek(fd, -2000, sys::SEEK_CUR),
        EINVAL,
    )?;
    want("lseek whence 7", lseek(fd, 0, 7), EINVAL)?;
    want("lseek(999)", lseek(999, 0, sys::SEEK_SET), EBADF)?;
    let r = ok("offset after errors", lseek(fd, 0, sys::SEEK_CUR))?;
    ensure!(r == 1100, "failed lseeks moved the offset to {r}");
    write_all("write past EOF", fd, b"B")?;
    let _ = close(fd);
    let got = read_path(&f)?;
    ensure!(
        got.len() == 1101,
        "size {} after writing at 1100",
        got.len()
    );
    ensure!(
        got[..100].iter().all(|&c| c == b's')
            && got[100..1100].iter().all(|&c| c == 0)
            && got[1100] == b'B',
        "hole not zero-filled"
    );
    // hole.bin for the host check: "A", 9999 zero bytes, "B".
    let h = p("hole.bin");
    let fd = ok(
        "create hole.bin",
        open_s(&h, O_WRONLY | O_CREAT | O_TRUNC, 0o644),
    )?;
    write_all("write A", fd, b"A")?;
    ok("lseek 10000", lseek(fd, 10000, sys::SEEK_SET))?;
    write_all("write B", fd, b"B")?;
    let _ = close(fd);
    Ok(())
}

fn newfstatat(dirfd: i32, path: &str, flags: usize) -> Result<sys::Stat, Errno> {
    let c = cstr(path);
    let mut st = sys::Stat::default();
    sc(
        nr::NEWFSTATAT,
        &[
            dirfd as isize as usize,
            c.as_ptr() as usize,
            &mut st as *mut sys::Stat as usize,
            flags,
        ],
    )?;
    Ok(st)
}

fn stat_fields() -> Res {
    ensure_dir()?;
    let f = p("st.txt");
    let l = p("st.lnk");
    write_path(&f, &[b'q'; 1234])?;
    let st = ok("stat st.txt", stat_s(&f))?;
    ensure!(st.is_reg(), "mode {:#o} is not S_IFREG", st.st_mode);
    ensure!(st.st_size == 1234, "size {}", st.st_size);
    ensure!(st.st_nlink == 1, "nlink {}", st.st_nlink);
    ensure!(st.st_ino != 0, "ino 0");
    ensure!(st.st_blksize > 0, "blksize {}", st.st_blksize);
    ensure!(
        st.st_blocks * 512 >= 1234,
        "blocks {} too few for 1234 bytes",
        st.st_blocks
    );
    let fd = ok("open", open_s(&f, O_RDONLY, 0))?;
    let fst = ok("fstat", fstat(fd))?;
    ensure!(
        fst.st_ino == st.st_ino && fst.st_size == 1234 && fst.st_mode == st.st_mode,
        "fstat differs from stat"
    );
    let e = ok(
        "newfstatat(fd, \"\", AT_EMPTY_PATH)",
        newfstatat(fd, "", AT_EMPTY_PATH),
    )?;
    ensure!(e.st_ino == st.st_ino, "AT_EMPTY_PATH gave ino {}", e.st_ino);
    want(
        "newfstatat(file fd, \"x\")",
        newfstatat(fd, "x", 0).map(|_| 0),
        ENOTDIR,
    )?;
    let _ = close(fd);
    let d = ok("stat dir", stat_s(D))?;
    ensure!(d.is_dir(), "{D} mode {:#o}", d.st_mode);
    ensure!(d.st_nlink >= 2, "{D} nlink {}", d.st_nlink);
    let dfd = ok("open dir", open_s(D, O_RDONLY | O_DIRECTORY, 0))?;
    let r = ok(
        "newfstatat(dirfd, \"st.txt\")",
        newfstatat(dfd, "st.txt", 0),
    )?;
    ensure!(
        r.st_ino == st.st_ino,
        "newfstatat relative to a dirfd found ino {}",
        r.st_ino
    );
    let _ = close(dfd);
    let _ = path1(nr::UNLINK, &l, &[]);
    ok("symlink", path2(nr::SYMLINK, "st.txt", &l))?;
    let ls = ok("lstat link", lstat_s(&l))?;
    ensure!(ls.is_lnk(), "lstat mode {:#o} is not S_IFLNK", ls.st_mode);
    ensure!(
        ls.st_size == 6,
        "symlink size {} != 6 (length of \"st.txt\")",
        ls.st_size
    );
    let fs = ok("stat link", stat_s(&l))?;
    ensure!(
        fs.is_reg() && fs.st_ino == st.st_ino,
        "stat did not follow the symlink"
    );
    let nf = ok(
        "newfstatat NOFOLLOW",
        newfstatat(sys::AT_FDCWD, &l, sys::AT_SYMLINK_NOFOLLOW),
    )?;
    ensure!(
        nf.is_lnk(),
        "newfstatat(AT_SYMLINK_NOFOLLOW) mode {:#o}",
        nf.st_mode
    );
    let exe = ok("stat /mnt/bin/systest", stat_s("/mnt/bin/systest"))?;
    ensure!(
        exe.is_reg() && exe.st_size > 0 && exe.st_mode & 0o111 != 0,
        "systest: mode {:#o} size {}",
        exe.st_mode,
        exe.st_size
    );
    want("stat missing", stat_s(&p("missing")).map(|_| 0), ENOENT)?;
    want("stat \"\"", stat_s("").map(|_| 0), ENOENT)?;
    want("stat st.txt/x", stat_s(&p("st.txt/x")).map(|_| 0), ENOTDIR)?;
    want("fstat(999)", fstat(999).map(|_| 0), EBADF)?;
    Ok(())
}

fn list_dir(path: &str, bufsize: usize) -> Result<Vec<(String, u8, u64)>, String> {
    let fd = ok(
        &format!("open {path}"),
        open_s(path, O_RDONLY | O_DIRECTORY, 0),
    )?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; bufsize];
    loop {
        let n = match sc(
            nr::GETDENTS64,
            &[fd as usize, buf.as_mut_ptr() as usize, buf.len()],
        ) {
            Ok(n) => n,
            Err(e) => {
                let _ = close(fd);
                return Err(format!("getdents64: {}", ename(e)));
            }
        };
        if n == 0 {
            break;
        }
        for d in sys::DirentIter::new(&buf[..n]) {
            out.push((
                String::from_utf8_lossy(d.name).into_owned(),
                d.d_type,
                d.ino,
            ));
        }
    }
    let _ = close(fd);
    out.sort();
    Ok(out)
}

fn getdents() -> Res {
    let d = fresh_dir("dents")?;
    write_path(&format!("{d}/a"), b"a")?;
    ok("mkdir b", path1(nr::MKDIR, &format!("{d}/b"), &[0o755]))?;
    ok("symlink c", path2(nr::SYMLINK, "a", &format!("{d}/c")))?;
    for bufsize in [4096, 64] {
        let list = list_dir(&d, bufsize)?;
        let names: Vec<(&str, u8)> = list.iter().map(|(n, t, _)| (n.as_str(), *t)).collect();
        ensure!(
            names
                == [
                    (".", sys::DT_DIR),
                    ("..", sys::DT_DIR),
                    ("a", sys::DT_REG),
                    ("b", sys::DT_DIR),
                    ("c", sys::DT_LNK)
                ],
            "getdents64 (buffer {bufsize}) listed {names:?}"
        );
        let ino_a = ok("stat a", stat_s(&format!("{d}/a")))?.st_ino;
        ensure!(
            list[2].2 == ino_a,
            "d_ino of a is {}, stat says {ino_a}",
            list[2].2
        );
    }
    let f = ok("open a", open_s(&format!("{d}/a"), O_RDONLY, 0))?;
    let mut buf = [0u8; 512];
    want(
        "getdents64 on a file",
        sc(
            nr::GETDENTS64,
            &[f as usize, buf.as_mut_ptr() as usize, 512],
        ),
        ENOTDIR,
    )?;
    let _ = close(f);
    let dfd = ok("open dir", open_s(&d, O_RDONLY | O_DIRECTORY, 0))?;
    want(
        "getdents64 with an 8-byte buffer",
        sc(
            nr::GETDENTS64,
            &[dfd as usize, buf.as_mut_ptr() as usize, 8],
        ),
        EINVAL,
    )?;
    let _ = close(dfd);
    want(
        "getdents64(999)",
        sc(nr::GETDENTS64, &[999, buf.as_mut_ptr() as usize, 512]),
        EBADF,
    )?;
    Ok(())
}

fn mkdir_rmdir() -> Res {
    ensure_dir()?;
    let x = p("mkx");
    rm_rf(&x);
    let before = ok("stat parent", stat_s(D))?.st_nlink;
    ok("mkdir", path1(nr::MKDIR, &x, &[0o755]))?;
    let st = ok("stat new dir", stat_s(&x))?;
    ensure!(
        st.is_dir() && st.st_nlink == 2,
        "new dir: mode {:#o} nlink {}",
        st.st_mode,
        st.st_nlink
    );
    let after = ok("stat parent", stat_s(D))?.st_nlink;
    ensure!(
        after == before + 1,
        "parent nlink {before} -> {after} after mkdir, expected +1"
    );
    want("mkdir existing", path1(nr::MKDIR, &x, &[0o755]), EEXIST)?;
    want(
        "mkdir in a missing parent",
        path1(nr::MKDIR, &p("nope/x"), &[0o755]),
        ENOENT,
    )?;
    let f = p("mkfile");
    write_path(&f, b"")?;
    want("mkdir over a file", path1(nr::MKDIR, &f, &[0o755]), EEXIST)?;
    write_path(&format!("{x}/f"), b"f")?;
    want("rmdir non-empty", path1(nr::RMDIR, &x, &[]), ENOTEMPTY)?;
    want(
        "rmdir missing",
        path1(nr::RMDIR, &p("missing"), &[]),
        ENOENT,
    )?;
    want("rmdir a file", path1(nr::RMDIR, &f, &[]), ENOTDIR)?;
    want(
        "rmdir dir/.",
        path1(nr::RMDIR, &format!("{x}/."), &[]),
        EINVAL,
    )?;
    ok("unlink f", path1(nr::UNLINK, &format!("{x}/f"), &[]))?;
    ok("rmdir", path1(nr::RMDIR, &x, &[]))?;
    want("stat removed dir", stat_s(&x).map(|_| 0), ENOENT)?;
    let back = ok("stat parent", stat_s(D))?.st_nlink;
    ensure!(
        back == before,
        "parent nlink {back} after rmdir, expected {before}"
    );
    // rmdir_me: made and removed (the host checks it is gone).
    let r = p("rmdir_me");
    let _ = path1(nr::MKDIR, &r, &[0o755]);
    ok("rmdir rmdir_me", path1(nr::RMDIR, &r, &[]))?;
    Ok(())
}

fn unlink_cases() -> Res {
    ensure_dir()?;
    let d = p("unl_dir");
    let _ = path1(nr::MKDIR, &d, &[0o755]);
    want("unlink a directory", path1(nr::UNLINK, &d, &[]), EISDIR)?;
    want(
        "unlink missing",
        path1(nr::UNLINK, &p("missing"), &[]),
        ENOENT,
    )?;
    let g = p("gone.txt");
    write_path(&g, b"this file is unlinked while open\n")?;
    want(
        "unlink gone.txt/x",
        path1(nr::UNLINK, &format!("{g}/x"), &[]),
        ENOTDIR,
    )?;
    let fd = ok("open gone.txt", open_s(&g, O_RDONLY, 0))?;
    ok("unlink gone.txt", path1(nr::UNLINK, &g, &[]))?;
    want(
        "open after unlink",
        open_s(&g, O_RDONLY, 0).map(|x| x as usize),
        ENOENT,
    )?;
    let data = ok("read the unlinked file", read_to_end(fd))?;
    let _ = close(fd);
    ensure!(
        data == b"this file is unlinked while open\n",
        "unlinked file read {:?}",
        String::from_utf8_lossy(&data)
    );
    Ok(())
}

fn rename_cases() -> Res {
    ensure_dir()?;
    let (r1, r2) = (p("r1.txt"), p("r2.txt"));
    let rd = p("renamed");
    rm_rf(&rd);
    write_path(&r1, b"rename me\n")?;
    ok("rename r1 -> r2", path2(nr::RENAME, &r1, &r2))?;
    want(
        "open r1 after rename",
        open_s(&r1, O_RDONLY, 0).map(|x| x as usize),
        ENOENT,
    )?;
    ensure!(read_path(&r2)? == b"rename me\n", "r2.txt contents wrong");
    ok("mkdir renamed", path1(nr::MKDIR, &rd, &[0o755]))?;
    let moved = format!("{rd}/moved.txt");
    ok("rename across directories", path2(nr::RENAME, &r2, &moved))?;
    want("stat r2 after the move", stat_s(&r2).map(|_| 0), ENOENT)?;
    ensure!(
        read_path(&moved)? == b"rename me\n",
        "moved.txt contents wrong"
    );
    let (a, over) = (p("over_src.txt"), p("over.txt"));
    write_path(&a, b"new\n")?;
    write_path(&over, b"old contents\n")?;
    let old_ino = ok("stat a", stat_s(&a))?.st_ino;
    ok("rename onto an existing file", path2(nr::RENAME, &a, &over))?;
    let st = ok("stat over.txt", stat_s(&over))?;
    ensure!(st.st_ino == old_ino, "over.txt is not the renamed inode");
    ensure!(
        read_path(&over)? == b"new\n",
        "over.txt still holds the old contents"
    );
    want(
        "rename missing",
        path2(nr::RENAME, &p("missing"), &p("x")),
        ENOENT,
    )?;
    let sub = format!("{rd}/sub");
    ok("mkdir renamed/sub", path1(nr::MKDIR, &sub, &[0o755]))?;
    want(
        "rename a directory into itself",
        path2(nr::RENAME, &rd, &format!("{sub}/x")),
        EINVAL,
    )?;
    want(
        "rename a file onto a directory",
        path2(nr::RENAME, &moved, &sub),
        EISDIR,
    )?;
    want(
        "rename a directory onto a file",
        path2(nr::RENAME, &sub, &over),
        ENOTDIR,
    )?;
    let full = p("rn_full");
    rm_rf(&full);
    ok("mkdir rn_full", path1(nr::MKDIR, &full, &[0o755]))?;
    write_path(&format!("{full}/f"), b"")?;
    want(
        "rename a directory onto a non-empty one",
        path2(nr::RENAME, &sub, &full),
        ENOTEMPTY,
    )?;
    let empty = p("rn_empty");
    rm_rf(&empty);
    ok("mkdir rn_empty", path1(nr::MKDIR, &empty, &[0o755]))?;
    ok(
        "rename a directory onto an empty one",
        path2(nr::RENAME, &sub, &empty),
    )?;
    ok("rename onto itself", path2(nr::RENAME, &over, &over))?;
    ensure!(
        read_path(&over)? == b"new\n",
        "rename onto itself changed the file"
    );
    Ok(())
}

fn link_cases() -> Res {
    ensure_dir()?;
    let (a, b) = (p("link_a"), p("link_b"));
    let _ = path1(nr::UNLINK, &b, &[]);
    write_path(&a, b"linked\n")?;
    ok("link", path2(nr::LINK, &a, &b))?;
    let (sa, sb) = (ok("stat a", stat_s(&a))?, ok("stat b", stat_s(&b))?);
    ensure!(
        sa.st_ino == sb.st_ino,
        "link has ino {}, original {}",
        sb.st_ino,
        sa.st_ino
    );
    ensure!(
        sa.st_nlink == 2 && sb.st_nlink == 2,
        "nlink {} / {}, expected 2",
        sa.st_nlink,
        sb.st_nlink
    );
    ensure!(read_path(&b)? == b"linked\n", "link_b contents wrong");
    want(
        "link onto an existing name",
        path2(nr::LINK, &a, &b),
        EEXIST,
    )?;
    want("link a directory", path2(nr::LINK, D, &p("dirlink")), EPERM)?;
    want(
        "link missing",
        path2(nr::LINK, &p("missing"), &p("x")),
        ENOENT,
    )?;
    // A third name, removed again: nlink goes 3 -> 2.
    let c = p("link_c");
    let _ = path1(nr::UNLINK, &c, &[]);
    ok("link c", path2(nr::LINK, &a, &c))?;
    ensure!(
        ok("stat", stat_s(&a))?.st_nlink == 3,
        "nlink not 3 with three names"
    );
    ok("unlink c", path1(nr::UNLINK, &c, &[]))?;
    ensure!(ok("stat", stat_s(&a))?.st_nlink == 2, "nlink not back to 2");
    Ok(())
}

fn readlink(path: &str, buf: &mut [u8]) -> Result<usize, Errno> {
    path1(nr::READLINK, path, &[buf.as_mut_ptr() as usize, buf.len()])
}

fn symlink_cases() -> Res {
    ensure_dir()?;
    let (t, s, dl) = (p("sym_target.txt"), p("sym"), p("dangling"));
    let _ = path1(nr::UNLINK, &s, &[]);
    let _ = path1(nr::UNLINK, &dl, &[]);
    write_path(&t, b"target\n")?;
    ok("symlink", path2(nr::SYMLINK, "sym_target.txt", &s))?;
    let mut buf = [0xffu8; 64];
    let n = ok("readlink", readlink(&s, &mut buf))?;
    ensure!(
        &buf[..n] == b"sym_target.txt",
        "readlink gave {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    ensure!(
        buf[n] == 0xff,
        "readlink wrote a NUL (or more) after the target"
    );
    let mut small = [0u8; 4];
    let n = ok("readlink into 4 bytes", readlink(&s, &mut small))?;
    ensure!(
        n == 4 && &small == b"sym_",
        "truncated readlink gave {n} bytes {small:?}"
    );
    want(
        "readlink bufsiz 0",
        path1(nr::READLINK, &s, &[buf.as_mut_ptr() as usize, 0]),
        EINVAL,
    )?;
    want("readlink a regular file", readlink(&t, &mut buf), EINVAL)?;
    want(
        "readlink missing",
        readlink(&p("missing"), &mut buf),
        ENOENT,
    )?;
    ensure!(read_path(&s)? == b"target\n", "reading through the symlink");
    want(
        "open O_NOFOLLOW on a symlink",
        open_s(&s, O_RDONLY | O_NOFOLLOW, 0).map(|x| x as usize),
        ELOOP,
    )?;
    ok("dangling symlink", path2(nr::SYMLINK, "nowhere", &dl))?;
    want(
        "open a dangling symlink",
        open_s(&dl, O_RDONLY, 0).map(|x| x as usize),
        ENOENT,
    )?;
    ok("lstat a dangling symlink", lstat_s(&dl))?;
    want(
        "symlink onto an existing name",
        path2(nr::SYMLINK, "x", &s),
        EEXIST,
    )?;
    want(
        "symlink with an empty target",
        path2(nr::SYMLINK, "", &p("empty_target")),
        ENOENT,
    )?;
    Ok(())
}

fn ftruncate_cases() -> Res {
    ensure_dir()?;
    let f = p("trunc.bin");
    let fd = ok("create", open_s(&f, O_RDWR | O_CREAT | O_TRUNC, 0o644))?;
    write_all("write", fd, b"0123456789")?;
    ok("ftruncate 10000", sc(nr::FTRUNCATE, &[fd as usize, 10000]))?;
    let st = ok("fstat", fstat(fd))?;
    ensure!(
        st.st_size == 10000,
        "size {} after growing to 10000",
        st.st_size
    );
    let mut b = vec![0xffu8; 10000];
    let n = ok(
        "pread",
        sc(
            nr::PREAD64,
            &[fd as usize, b.as_mut_ptr() as usize, 10000, 0],
        ),
    )?;
    ensure!(
        n == 10000 && &b[..10] == b"0123456789" && b[10..].iter().all(|&c| c == 0),
        "grown file is not data + zeros"
    );
    ok("ftruncate 5", sc(nr::FTRUNCATE, &[fd as usize, 5]))?;
    ensure!(
        ok("fstat", fstat(fd))?.st_size == 5,
        "size after shrinking to 5"
    );
    // Growing again must not bring the cut bytes back.
    ok("ftruncate 10", sc(nr::FTRUNCATE, &[fd as usize, 10]))?;
    let mut c = [0xffu8; 10];
    ok(
        "pread",
        sc(nr::PREAD64, &[fd as usize, c.as_mut_ptr() as usize, 10, 0]),
    )?;
    ensure!(
        &c == b"01234\0\0\0\0\0",
        "after shrink to 5 and grow to 10: {c:?}"
    );
    ok("ftruncate 5 again", sc(nr::FTRUNCATE, &[fd as usize, 5]))?;
    want(
        "ftruncate -1",
        sc(nr::FTRUNCATE, &[fd as usize, usize::MAX]),
        EINVAL,
    )?;
    want("ftruncate(999)", sc(nr::FTRUNCATE, &[999, 0]), EBADF)?;
    let _ = close(fd);
    let ro = ok("open O_RDONLY", open_s(&f, O_RDONLY, 0))?;
    want(
        "ftruncate on an O_RDONLY fd",
        sc(nr::FTRUNCATE, &[ro as usize, 0]),
        EINVAL,
    )?;
    let _ = close(ro);
    ensure!(read_path(&f)? == b"01234", "final contents");
    Ok(())
}

fn fsync_cases() -> Res {
    ensure_dir()?;
    let f = p("sync.txt");
    let fd = ok("create", open_s(&f, O_RDWR | O_CREAT | O_TRUNC, 0o644))?;
    write_all("write", fd, b"synced\n")?;
    ok("fsync", sc(nr::FSYNC, &[fd as usize]))?;
    ok("fdatasync", sc(nr::FDATASYNC, &[fd as usize]))?;
    ok("sync", sc(nr::SYNC, &[]))?;
    let dfd = ok("open dir", open_s(D, O_RDONLY | O_DIRECTORY, 0))?;
    ok("fsync of a directory", sc(nr::FSYNC, &[dfd as usize]))?;
    let _ = close(dfd);
    let _ = close(fd);
    want("fsync(999)", sc(nr::FSYNC, &[999]), EBADF)?;
    want("fdatasync(999)", sc(nr::FDATASYNC, &[999]), EBADF)?;
    let fds = pipe2(0)?;
    want("fsync of a pipe", sc(nr::FSYNC, &[fds[0] as usize]), EINVAL)?;
    Ok(())
}

fn fcntl(fd: i32, cmd: usize, arg: usize) -> Result<usize, Errno> {
    sc(nr::FCNTL, &[fd as isize as usize, cmd, arg])
}

fn dup_cases() -> Res {
    ensure_dir()?;
    let f = p("dup.txt");
    let fd = ok("create", open_s(&f, O_RDWR | O_CREAT | O_TRUNC, 0o644))?;
    write_all("write hello", fd, b"hello")?;
    let d = ok("dup", sc(nr::DUP, &[fd as usize]))? as i32;
    ensure!(
        d == fd + 1,
        "dup returned {d}, expected the lowest free fd {}",
        fd + 1
    );
    let off = ok("lseek(dup, CUR)", lseek(d, 0, sys::SEEK_CUR))?;
    ensure!(off == 5, "dup's offset {off}, expected the shared 5");
    write_all("write world via dup", d, b"world")?;
    let off = ok("lseek(fd, CUR)", lseek(fd, 0, sys::SEEK_CUR))?;
    ensure!(
        off == 10,
        "original's offset {off} after writing through the dup, expected 10"
    );
    let r = ok("dup2(fd, 100)", sc(nr::DUP2, &[fd as usize, 100]))?;
    ensure!(r == 100, "dup2 returned {r}");
    ok("lseek(100, 0)", lseek(100, 0, sys::SEEK_SET))?;
    let mut b = [0u8; 20];
    let n = ok("read via fd", read(fd, &mut b))?;
    ensure!(
        &b[..n] == b"helloworld",
        "read {:?} after seeking the dup2 copy",
        String::from_utf8_lossy(&b[..n])
    );
    let r = ok("dup2(fd, fd)", sc(nr::DUP2, &[fd as usize, fd as usize]))?;
    ensure!(r == fd as usize, "dup2(fd, fd) returned {r}");
    want(
        "dup3(fd, fd, 0)",
        sc(nr::DUP3, &[fd as usize, fd as usize, 0]),
        EINVAL,
    )?;
    want(
        "dup3 with flags 1",
        sc(nr::DUP3, &[fd as usize, 102, 1]),
        EINVAL,
    )?;
    ok(
        "dup3(fd, 101, O_CLOEXEC)",
        sc(nr::DUP3, &[fd as usize, 101, O_CLOEXEC]),
    )?;
    ensure!(
        ok("F_GETFD 101", fcntl(101, F_GETFD, 0))? == 1,
        "dup3(O_CLOEXEC) did not set FD_CLOEXEC"
    );
    ok("F_SETFD 100 cloexec", fcntl(100, F_SETFD, 1))?;
    ok(
        "dup2(fd, 100) onto an open fd",
        sc(nr::DUP2, &[fd as usize, 100]),
    )?;
    ensure!(
        ok("F_GETFD 100", fcntl(100, F_GETFD, 0))? == 0,
        "dup2 kept FD_CLOEXEC on the new fd"
    );
    want("dup(999)", sc(nr::DUP, &[999]), EBADF)?;
    want("dup2(999, 5)", sc(nr::DUP2, &[999, 5]), EBADF)?;
    want(
        "dup2(fd, -1)",
        sc(nr::DUP2, &[fd as usize, usize::MAX]),
        EBADF,
    )?;
    want(
        "dup2(fd, 1 << 20)",
        sc(nr::DUP2, &[fd as usize, 1 << 20]),
        EBADF,
    )?;
    Ok(())
}

fn pipe2(flags: usize) -> Result<[i32; 2], String> {
    let mut fds = [-1i32; 2];
    ok("pipe2", sc(nr::PIPE2, &[fds.as_mut_ptr() as usize, flags]))?;
    Ok(fds)
}

fn pipe_fork() -> Res {
    let mut p1 = [-1i32; 2];
    ok("pipe", sc(nr::PIPE, &[p1.as_mut_ptr() as usize]))?;
    ensure!(
        p1[0] >= 0 && p1[1] >= 0 && p1[0] != p1[1],
        "pipe gave fds {p1:?}"
    );
    let st = ok("fstat pipe", fstat(p1[0]))?;
    ensure!(
        st.file_type() == sys::S_IFIFO,
        "pipe mode {:#o} is not S_IFIFO",
        st.st_mode
    );
    let _ = (close(p1[0]), close(p1[1]));
    want(
        "pipe2 with flags 1",
        sc(nr::PIPE2, &[p1.as_mut_ptr() as usize, 1]),
        EINVAL,
    )?;
    want("pipe into the kernel", sc(nr::PIPE, &[KERNEL_BASE]), EFAULT)?;
    let [r, w] = pipe2(0)?;
    let msg = b"ping from the parent";
    let pid = fork()?;
    if pid == 0 {
        let _ = close(w);
        let got = read_to_end(r);
        exit(match got {
            Ok(v) if v == msg => 0,
            Ok(_) => 1,
            Err(_) => 2,
        });
    }
    let _ = close(r);
    write_all("write to the pipe", w, msg)?;
    let _ = close(w);
    expect_exit(
        "reader child (1: wrong data, 2: read error; a hang means no EOF)",
        wait_pid(pid)?,
        0,
    )
}

fn pipe_big() -> Res {
    let [r, w] = pipe2(0)?;
    let len = 100 * 1024;
    let pid = fork()?;
    if pid == 0 {
        let _ = close(r);
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
        for c in data.chunks(1000) {
            let mut c = c;
            while !c.is_empty() {
                match write(w, c) {
                    Ok(n) => c = &c[n..],
                    Err(_) => exit(1),
                }
            }
        }
        exit(0);
    }
    let _ = close(w);
    let got = ok("read the pipe", read_to_end(r))?;
    expect_exit("writer child", wait_pid(pid)?, 0)?;
    ensure!(got.len() == len, "read {} bytes, expected {len}", got.len());
    if let Some(i) = (0..len).find(|&i| got[i] != (i * 7 % 256) as u8) {
        return Err(format!("byte {i} is {:#x}", got[i]));
    }
    Ok(())
}

fn pipe_epipe() -> Res {
    let ign = [1u64, 0, 0, 0];
    ok(
        "ignore SIGPIPE",
        sc(
            nr::RT_SIGACTION,
            &[SIGPIPE as usize, ign.as_ptr() as usize, 0, 8],
        ),
    )?;
    let [r, w] = pipe2(0)?;
    ok("close the read end", close(r))?;
    want("write without readers", write(w, b"x"), EPIPE)
}

fn pipe_sigpipe() -> Res {
    let st = in_child(|| {
        let Ok([r, w]) = pipe2(0) else { return 3 };
        let _ = close(r);
        match write(w, b"x") {
            Err(EPIPE) => 1,
            _ => 2,
        }
    })?;
    // 1: EPIPE returned but no SIGPIPE delivered.
    expect_signal("writer to a pipe without readers", st, SIGPIPE)
}

fn fcntl_cases() -> Res {
    ensure_dir()?;
    let f = p("fcntl.txt");
    write_path(&f, b"fcntl\n")?;
    let fd = ok("open", open_s(&f, O_RDWR | O_APPEND, 0))?;
    ensure!(
        ok("F_GETFD", fcntl(fd, F_GETFD, 0))? == 0,
        "FD_CLOEXEC set without O_CLOEXEC"
    );
    ok("F_SETFD FD_CLOEXEC", fcntl(fd, F_SETFD, 1))?;
    ensure!(
        ok("F_GETFD", fcntl(fd, F_GETFD, 0))? == 1,
        "F_SETFD FD_CLOEXEC did not stick"
    );
    let fl = ok("F_GETFL", fcntl(fd, F_GETFL, 0))?;
    ensure!(
        fl & 3 == O_RDWR && fl & O_APPEND != 0,
        "F_GETFL {fl:#o}, expected O_RDWR|O_APPEND"
    );
    ok("F_SETFL 0", fcntl(fd, F_SETFL, 0))?;
    let fl = ok("F_GETFL", fcntl(fd, F_GETFL, 0))?;
    ensure!(
        fl & O_APPEND == 0 && fl & 3 == O_RDWR,
        "F_GETFL {fl:#o} after clearing O_APPEND"
    );
    let c = ok("open O_CLOEXEC", open_s(&f, O_RDONLY | O_CLOEXEC, 0))?;
    ensure!(
        ok("F_GETFD", fcntl(c, F_GETFD, 0))? == 1,
        "O_CLOEXEC did not set FD_CLOEXEC"
    );
    let d = ok("F_DUPFD 50", fcntl(fd, F_DUPFD, 50))?;
    ensure!(d >= 50, "F_DUPFD 50 returned {d}");
    ensure!(
        ok("F_GETFD dup", fcntl(d as i32, F_GETFD, 0))? == 0,
        "F_DUPFD copy has FD_CLOEXEC"
    );
    let e = ok("F_DUPFD_CLOEXEC 60", fcntl(fd, F_DUPFD_CLOEXEC, 60))?;
    ensure!(
        e >= 60 && ok("F_GETFD", fcntl(e as i32, F_GETFD, 0))? == 1,
        "F_DUPFD_CLOEXEC gave {e} without FD_CLOEXEC"
    );
    want("fcntl cmd 9999", fcntl(fd, 9999, 0), EINVAL)?;
    want("fcntl(999, F_GETFD)", fcntl(999, F_GETFD, 0), EBADF)?;
    // exec closes FD_CLOEXEC descriptors and keeps the others.
    let kept = ok("open (kept across exec)", open_s(&f, O_RDONLY, 0))?;
    let (a, b) = (format!("{fd}\0"), format!("{kept}\0"));
    let a = core::ffi::CStr::from_bytes_with_nul(a.as_bytes()).map_err(|_| "cstr")?;
    let b = core::ffi::CStr::from_bytes_with_nul(b.as_bytes()).map_err(|_| "cstr")?;
    let st = in_child(|| {
        let e = execve(SELF, &[c"systest", c"--child-fd", a, b], &[]);
        say!("#   execve failed: {}\n", ename(e));
        120
    })?;
    // 1: the FD_CLOEXEC fd survived exec; 3/4: the plain fd did not.
    expect_exit(&format!("exec'd `systest --child-fd {fd} {kept}`"), st, 0)
}

fn close_bad() -> Res {
    want("close(999)", close(999), EBADF)?;
    want("close(-1)", close(-1), EBADF)?;
    want("close(1 << 20)", close(1 << 20), EBADF)?;
    ensure_dir()?;
    let f = p("close.txt");
    write_path(&f, b"")?;
    let fd = ok("open", open_s(&f, O_RDONLY, 0))?;
    ok("close", close(fd))?;
    want("second close", close(fd), EBADF)
}

fn getcwd(buf: &mut [u8]) -> Result<usize, Errno> {
    sc(nr::GETCWD, &[buf.as_mut_ptr() as usize, buf.len()])
}

fn cwd_cases() -> Res {
    ensure_dir()?;
    let mut buf = [0u8; 256];
    let n = ok("getcwd", getcwd(&mut buf))?;
    ensure!(
        n == 2 && &buf[..2] == b"/\0",
        "initial cwd {:?} (return {n})",
        String::from_utf8_lossy(&buf[..n.min(256)])
    );
    ok("chdir /mnt/systest", path1(nr::CHDIR, D, &[]))?;
    let n = ok("getcwd", getcwd(&mut buf))?;
    ensure!(
        n == D.len() + 1 && &buf[..n] == format!("{D}\0").as_bytes(),
        "cwd {:?} (return {n})",
        String::from_utf8_lossy(&buf[..n.min(256)])
    );
    let fd = ok(
        "open relative cwd.txt",
        open(c"cwd.txt", O_WRONLY | O_CREAT | O_TRUNC, 0o644),
    )?;
    let _ = close(fd);
    ok("stat cwd.txt by absolute path", stat_s(&p("cwd.txt")))?;
    want("getcwd into 2 bytes", getcwd(&mut buf[..2]), ERANGE)?;
    want(
        "getcwd into the kernel",
        sc(nr::GETCWD, &[KERNEL_BASE, 100]),
        EFAULT,
    )?;
    ok("chdir ..", path1(nr::CHDIR, "..", &[]))?;
    let n = ok("getcwd", getcwd(&mut buf))?;
    ensure!(
        &buf[..n] == b"/mnt\0",
        "cwd after chdir .. is {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    want(
        "chdir to a file",
        path1(nr::CHDIR, &p("cwd.txt"), &[]),
        ENOTDIR,
    )?;
    want(
        "chdir to a missing dir",
        path1(nr::CHDIR, &p("missing"), &[]),
        ENOENT,
    )?;
    Ok(())
}

fn ioctl_cases() -> Res {
    let con = ok("open /dev/console", open(c"/dev/console", O_RDWR, 0))?;
    let mut termios = [0u8; 60];
    ok(
        "ioctl(console, TCGETS)",
        sc(
            nr::IOCTL,
            &[con as usize, 0x5401, termios.as_mut_ptr() as usize],
        ),
    )?;
    let mut ws = [0u16; 4];
    ok(
        "ioctl(console, TIOCGWINSZ)",
        sc(nr::IOCTL, &[con as usize, 0x5413, ws.as_mut_ptr() as usize]),
    )?;
    ok(
        "ioctl(1, TCGETS)",
        sc(nr::IOCTL, &[1, 0x5401, termios.as_mut_ptr() as usize]),
    )?;
    ensure_dir()?;
    let f = p("plain.txt");
    write_path(&f, b"plain\n")?;
    let fd = ok("open a file", open_s(&f, O_RDONLY, 0))?;
    want(
        "ioctl(file, TCGETS)",
        sc(
            nr::IOCTL,
            &[fd as usize, 0x5401, termios.as_mut_ptr() as usize],
        ),
        ENOTTY,
    )?;
    want(
        "ioctl(999, TCGETS)",
        sc(nr::IOCTL, &[999, 0x5401, termios.as_mut_ptr() as usize]),
        EBADF,
    )?;
    want(
        "ioctl(console, TCGETS, kernel)",
        sc(nr::IOCTL, &[con as usize, 0x5401, KERNEL_BASE]),
        EFAULT,
    )?;
    Ok(())
}

fn devices() -> Res {
    let null = ok("open /dev/null", open(c"/dev/null", O_RDWR, 0))?;
    let mut b = [0xffu8; 4096];
    ensure!(
        ok("read /dev/null", read(null, &mut b))? == 0,
        "/dev/null read returned data"
    );
    ensure!(
        ok("write /dev/null", write(null, &[1u8; 100]))? == 100,
        "/dev/null took less than 100 bytes"
    );
    let st = ok("fstat /dev/null", fstat(null))?;
    ensure!(
        st.file_type() == sys::S_IFCHR,
        "/dev/null mode {:#o} is not S_IFCHR",
        st.st_mode
    );
    let zero = ok("open /dev/zero", open(c"/dev/zero", O_RDWR, 0))?;
    let n = ok("read /dev/zero", read(zero, &mut b))?;
    ensure!(
        n == 4096 && b.iter().all(|&c| c == 0),
        "/dev/zero gave {n} bytes, not all zero"
    );
    ensure!(
        ok("write /dev/zero", write(zero, &[1u8; 10]))? == 10,
        "/dev/zero write count"
    );
    let ur = ok("open /dev/urandom", open(c"/dev/urandom", O_RDONLY, 0))?;
    let mut r = [0u8; 64];
    let n = ok("read /dev/urandom", read(ur, &mut r))?;
    ensure!(
        n == 64 && r.iter().any(|&c| c != 0),
        "/dev/urandom gave {n} bytes, all zero"
    );
    Ok(())
}

/// The counter names DESIGN.md promises in /proc/vmstat.
const VMSTAT: [&str; 15] = [
    "data_copy_bytes",
    "alias_pages",
    "cow_breaks",
    "dma_pinned_bytes",
    "bounce_bytes",
    "blk_read_bytes",
    "blk_write_bytes",
    "blk_requests",
    "blk_notifies",
    "blk_interrupts",
    "pagecache_pages",
    "pagecache_hits",
    "pagecache_misses",
    "pagecache_evictions",
    "pinned_pages",
];

fn proc_files() -> Res {
    let mi = read_path("/proc/meminfo")?;
    let total = proc_field(&mi, "MemTotal").ok_or("no MemTotal in /proc/meminfo")?;
    let free = proc_field(&mi, "MemFree").ok_or("no MemFree in /proc/meminfo")?;
    ensure!(
        total > 0 && free > 0 && free <= total,
        "MemTotal {total} kB, MemFree {free} kB"
    );
    let vm = read_path("/proc/vmstat")?;
    let missing: Vec<&str> = VMSTAT
        .iter()
        .copied()
        .filter(|n| proc_field(&vm, n).is_none())
        .collect();
    ensure!(missing.is_empty(), "/proc/vmstat lacks {missing:?}");
    let mounts = read_path("/proc/mounts")?;
    let text = String::from_utf8_lossy(&mounts);
    ensure!(
        text.lines()
            .any(|l| l.split(' ').nth(1) == Some("/mnt") && l.split(' ').nth(2) == Some("ext2")),
        "/proc/mounts has no ext2 line for /mnt:\n{text}"
    );
    // Per-CPU columns after a header line, as on Linux. AliasOS lists each disk that
    // completes by interrupt by name; `vda` (virtio-blk, MSI-X, under /mnt in the tests)
    // has had interrupts by now.
    let irqs = read_path("/proc/interrupts")?;
    let text = String::from_utf8_lossy(&irqs);
    ensure!(
        text.lines().next().is_some_and(|l| l.contains("CPU0")),
        "/proc/interrupts has no CPU0 header:\n{text}"
    );
    // The data disk's line: vda, or nvme0n1 where the disks are NVMe namespaces.
    let disk = mnt_disk(&["/dev/nvme0n1"]).map_or("vda", |_| "nvme0n1");
    let mut seen = false;
    for l in text.lines().skip(1) {
        let count = l
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u64>().ok());
        if l.split_whitespace().last() == Some(disk) {
            ensure!(
                count.is_some_and(|c| c > 0),
                "{disk} without interrupts: {l}"
            );
            seen = true;
        }
    }
    // Linux names its lines after the driver's queues, not the disk: there (no
    // `alias_pages` in /proc/vmstat) the disk's line is not looked for.
    let aliasos = proc_field(&read_path("/proc/vmstat")?, "alias_pages").is_some();
    ensure!(
        !aliasos || seen,
        "/proc/interrupts has no {disk} line:\n{text}"
    );
    Ok(())
}

fn vmstat_cow() -> Res {
    let before = proc_field(&read_path("/proc/vmstat")?, "cow_breaks").ok_or("no cow_breaks")?;
    let a = anon(4 * PAGE)?;
    fill64(a, 4 * PAGE, |i| i as u64);
    let st = in_child(|| {
        for i in 0..4 {
            poke(a + i * PAGE, 1);
        }
        0
    })?;
    expect_exit("child", st, 0)?;
    let after = proc_field(&read_path("/proc/vmstat")?, "cow_breaks").ok_or("no cow_breaks")?;
    ensure!(
        after >= before + 4,
        "cow_breaks {before} -> {after} after the child broke 4 shares"
    );
    Ok(())
}

fn fork_shared_offset() -> Res {
    ensure_dir()?;
    let f = p("fork_fd.txt");
    let fd = ok("create", open_s(&f, O_WRONLY | O_CREAT | O_TRUNC, 0o644))?;
    write_all("write P", fd, b"P")?;
    let st = in_child(|| if write(fd, b"C") == Ok(1) { 0 } else { 1 })?;
    expect_exit("child writing C", st, 0)?;
    write_all("write Q", fd, b"Q")?;
    let _ = close(fd);
    let got = read_path(&f)?;
    ensure!(
        got == b"PCQ",
        "contents {:?}, expected \"PCQ\" (one shared offset)",
        String::from_utf8_lossy(&got)
    );
    Ok(())
}

fn umask_cases() -> Res {
    ensure_dir()?;
    ok("umask(022)", sc(95, &[0o022]))?;
    let (f, d) = (p("umask_file"), p("umask_dir"));
    let _ = path1(nr::UNLINK, &f, &[]);
    let _ = path1(nr::RMDIR, &d, &[]);
    let fd = ok(
        "create 0666",
        open_s(&f, O_WRONLY | O_CREAT | O_EXCL, 0o666),
    )?;
    let _ = close(fd);
    let m = ok("stat", stat_s(&f))?.st_mode & 0o7777;
    ensure!(
        m == 0o644,
        "file created 0666 under umask 022 has mode {m:#o}, expected 0644"
    );
    ok("mkdir 0777", path1(nr::MKDIR, &d, &[0o777]))?;
    let m = ok("stat", stat_s(&d))?.st_mode & 0o7777;
    ensure!(
        m == 0o755,
        "dir created 0777 under umask 022 has mode {m:#o}, expected 0755"
    );
    ok("umask(0)", sc(95, &[0]))?;
    let g = p("umask0_file");
    let _ = path1(nr::UNLINK, &g, &[]);
    let fd = ok(
        "create 0666 under umask 0",
        open_s(&g, O_WRONLY | O_CREAT | O_EXCL, 0o666),
    )?;
    let _ = close(fd);
    let m = ok("stat", stat_s(&g))?.st_mode & 0o7777;
    ensure!(
        m == 0o666,
        "file created 0666 under umask 0 has mode {m:#o}"
    );
    Ok(())
}

fn mount_errors() -> Res {
    ensure_dir()?;
    want(
        "umount2 of a non-mount-point",
        path1(nr::UMOUNT2, D, &[0]),
        EINVAL,
    )?;
    want(
        "umount2 with flags 0x100",
        path1(nr::UMOUNT2, D, &[0x100]),
        EINVAL,
    )?;
    want(
        "umount2 of a missing path",
        path1(nr::UMOUNT2, &p("missing"), &[0]),
        ENOENT,
    )?;
    let (src, dst) = (cstr("/dev/no-such-disk"), cstr(D));
    want(
        "mount of a missing device",
        sc(
            nr::MOUNT,
            &[
                src.as_ptr() as usize,
                dst.as_ptr() as usize,
                cs(c"ext2"),
                0,
                0,
            ],
        ),
        ENOENT,
    )?;
    want(
        "mount with an unknown fstype",
        sc(
            nr::MOUNT,
            &[
                cs(c"/dev/vda"),
                dst.as_ptr() as usize,
                cs(c"nosuchfs"),
                0,
                0,
            ],
        ),
        ENODEV,
    )?;
    Ok(())
}

/// The bytes `mmap_shared.bin` must hold afterwards (tests/tests/syscalls.rs has the
/// same list): three pages of '.', with stores at these offsets.
pub const SHARED_STORES: [(usize, &[u8]); 5] = [
    (0, b"SHARED-0"),
    (2000, b"CHILD"),
    (4196, b"SHARED-1"),
    (6000, b"WRITE"),
    (12192, b"SHARED-2"),
];

fn mmap_shared() -> Res {
    ensure_dir()?;
    let f = p("mmap_shared.bin");
    let len = 3 * PAGE;
    write_path(&f, &vec![b'.'; len])?;
    let fd = ok("open O_RDWR", open_s(&f, O_RDWR, 0))?;
    // Clean before it is mapped: only the mapping can make it dirty again.
    ok("fsync before mapping", sc(nr::FSYNC, &[fd as usize]))?;
    let a = ok(
        "mmap MAP_SHARED",
        mmap(0, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd as usize, 0),
    )?;
    ensure!(
        (0..len).step_by(997).all(|i| peek(a + i) == b'.'),
        "mapping does not show the file"
    );
    let put = |off: usize, s: &[u8]| {
        s.iter()
            .enumerate()
            .for_each(|(i, &c)| poke(a + off + i, c))
    };
    for &(off, s) in &SHARED_STORES {
        match s {
            b"CHILD" | b"WRITE" => {}
            _ => put(off, s),
        }
    }
    let st = in_child(|| {
        put(2000, b"CHILD");
        0
    })?;
    expect_exit("child storing through the shared mapping", st, 0)?;
    // write() to the file shows in the mapping.
    ok(
        "pwrite WRITE at 6000",
        sc(
            nr::PWRITE64,
            &[fd as usize, b"WRITE".as_ptr() as usize, 5, 6000],
        ),
    )?;
    let mut file = vec![0u8; len];
    let n = ok(
        "pread",
        sc(
            nr::PREAD64,
            &[fd as usize, file.as_mut_ptr() as usize, len, 0],
        ),
    )?;
    ensure!(n == len, "pread got {n} bytes");
    let mut want_bytes = vec![b'.'; len];
    for &(off, s) in &SHARED_STORES {
        want_bytes[off..off + s.len()].copy_from_slice(s);
    }
    if let Some(i) = (0..len).find(|&i| file[i] != want_bytes[i]) {
        return Err(format!(
            "read() sees {:#x} at {i}, expected {:#x} (the mapping's stores)",
            file[i], want_bytes[i]
        ));
    }
    if let Some(i) = (0..len).find(|&i| peek(a + i) != want_bytes[i]) {
        return Err(format!(
            "the mapping holds {:#x} at {i}, expected {:#x}",
            peek(a + i),
            want_bytes[i]
        ));
    }
    ok("msync MS_SYNC", sc(nr::MSYNC, &[a, len, 4]))?;
    ok("munmap", munmap(a, len))?;
    let _ = close(fd);
    Ok(())
}

fn mmap_private() -> Res {
    let f = "/mnt/data/private.bin";
    let orig = read_path(f)?;
    ensure!(
        orig.len() == 8192,
        "{f} has {} bytes, expected 8192",
        orig.len()
    );
    let fd = ok("open O_RDONLY", open_s(f, O_RDONLY, 0))?;
    let a = ok(
        "mmap MAP_PRIVATE RW of an O_RDONLY fd",
        mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd as usize, 0),
    )?;
    if let Some(i) = (0..8192).find(|&i| peek(a + i) != orig[i]) {
        return Err(format!(
            "mapping byte {i} is {:#x}, file has {:#x}",
            peek(a + i),
            orig[i]
        ));
    }
    poke(a + 10, !orig[10]);
    poke(a + 5000, !orig[5000]);
    ensure!(
        peek(a + 10) == !orig[10] && peek(a + 5000) == !orig[5000],
        "stores to the private mapping lost"
    );
    let mut b = [0u8; 1];
    ok(
        "pread",
        sc(nr::PREAD64, &[fd as usize, b.as_mut_ptr() as usize, 1, 10]),
    )?;
    ensure!(b[0] == orig[10], "read() sees the private store");
    // A second private mapping of the same file sees the file, not the first one's store.
    let c = ok(
        "second mmap MAP_PRIVATE",
        mmap(0, 8192, PROT_READ, MAP_PRIVATE, fd as usize, 0),
    )?;
    ensure!(
        peek(c + 10) == orig[10],
        "a second private mapping sees the first one's store"
    );
    ok("munmap", munmap(a, 8192))?;
    ok("munmap", munmap(c, 8192))?;
    let _ = close(fd);
    ensure!(read_path(f)? == orig, "{f} changed");
    Ok(())
}

fn mmap_sigbus() -> Res {
    ensure_dir()?;
    let f = p("short.bin");
    write_path(&f, &[b'x'; 100])?;
    let fd = ok("open", open_s(&f, O_RDONLY, 0))?;
    let a = ok(
        "mmap 2 pages of a 100-byte file",
        mmap(0, 2 * PAGE, PROT_READ, MAP_SHARED, fd as usize, 0),
    )?;
    ensure!(peek(a + 50) == b'x', "byte 50 is {:#x}", peek(a + 50));
    ensure!(
        peek(a + 200) == 0 && peek(a + PAGE - 1) == 0,
        "the rest of the last page is not zero"
    );
    dies_by("load from the page past EOF", SIGBUS, || {
        peek(a + PAGE);
    })
}

fn mmap_file_errors() -> Res {
    ensure_dir()?;
    let f = p("mapme.bin");
    write_path(&f, &[1u8; 8192])?;
    let ro = ok("open O_RDONLY", open_s(&f, O_RDONLY, 0))?;
    want(
        "MAP_SHARED|PROT_WRITE of an O_RDONLY fd",
        mmap(0, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, ro as usize, 0),
        EACCES,
    )?;
    want(
        "mmap at offset 100",
        mmap(0, PAGE, PROT_READ, MAP_PRIVATE, ro as usize, 100),
        EINVAL,
    )?;
    let wo = ok("open O_WRONLY", open_s(&f, O_WRONLY, 0))?;
    want(
        "mmap of an O_WRONLY fd",
        mmap(0, PAGE, PROT_READ, MAP_PRIVATE, wo as usize, 0),
        EACCES,
    )?;
    let dfd = ok("open dir", open_s(D, O_RDONLY | O_DIRECTORY, 0))?;
    want(
        "mmap of a directory",
        mmap(0, PAGE, PROT_READ, MAP_PRIVATE, dfd as usize, 0),
        ENODEV,
    )?;
    let fds = pipe2(0)?;
    want(
        "mmap of a pipe",
        mmap(0, PAGE, PROT_READ, MAP_PRIVATE, fds[0] as usize, 0),
        ENODEV,
    )?;
    Ok(())
}

fn mmap_private_mprotect() -> Res {
    // A read-only MAP_PRIVATE mapping of a file opened O_RDONLY may map the page-cache
    // page itself; making it writable must still copy on the first store, alone and after
    // a fork. Otherwise the store lands in the page cache: a read-only opener rewrites the
    // file for everyone (the Dirty COW failure). /mnt/data/readonly.bin is the host's.
    let f = "/mnt/data/readonly.bin";
    let orig = read_path(f)?;
    ensure!(orig.len() == 8192, "{f} has {} bytes", orig.len());
    let fd = ok("open O_RDONLY", open_s(f, O_RDONLY, 0))?;
    let a = ok(
        "mmap MAP_PRIVATE PROT_READ",
        mmap(0, 8192, PROT_READ, MAP_PRIVATE, fd as usize, 0),
    )?;
    ensure!(
        peek(a) == orig[0] && peek(a + 4096) == orig[4096],
        "mapping does not show the file"
    );
    let file_byte = |off: usize| -> Result<u8, String> {
        let mut b = [0u8; 1];
        ok(
            "pread",
            sc(nr::PREAD64, &[fd as usize, b.as_mut_ptr() as usize, 1, off]),
        )?;
        Ok(b[0])
    };
    // Alone: page 0, already mapped read-only, made writable and stored to.
    ok(
        "mprotect(page 0, PROT_READ|PROT_WRITE)",
        mprotect(a, 4096, PROT_READ | PROT_WRITE),
    )?;
    poke(a, !orig[0]);
    ensure!(peek(a) == !orig[0], "store to page 0 lost");
    ensure!(
        file_byte(0)? == orig[0],
        "after mprotect(RW) and a store to the private mapping, read() of the O_RDONLY file \
         sees the store: it went into the page cache"
    );
    // After fork: the child makes page 1 writable and stores.
    let st = in_child(|| {
        if mprotect(a + 4096, 4096, PROT_READ | PROT_WRITE).is_err() {
            return 2;
        }
        poke(a + 4096, !orig[4096]);
        0
    })?;
    expect_exit("child making page 1 writable and storing", st, 0)?;
    ensure!(
        file_byte(4096)? == orig[4096],
        "a forked child's store through its MAP_PRIVATE mapping (after mprotect RW) reached \
         the page cache: read() sees it"
    );
    ensure!(
        peek(a + 4096) == orig[4096],
        "the child's store shows in the parent's private mapping"
    );
    ok("munmap", munmap(a, 8192))?;
    let _ = close(fd);
    ensure!(read_path(f)? == orig, "{f} changed");
    Ok(())
}

fn mmap_shared_prot_none() -> Res {
    // A store through a shared mapping, then PROT_NONE and munmap: the store still
    // reaches the disk (the host checks mmap_none.bin).
    ensure_dir()?;
    let f = p("mmap_none.bin");
    write_path(&f, &vec![b'-'; PAGE])?;
    let fd = ok("open O_RDWR", open_s(&f, O_RDWR, 0))?;
    // Clean before it is mapped: only the mapping can make it dirty again.
    ok("fsync before mapping", sc(nr::FSYNC, &[fd as usize]))?;
    let a = ok(
        "mmap MAP_SHARED",
        mmap(0, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd as usize, 0),
    )?;
    for (i, &c) in b"NONE".iter().enumerate() {
        poke(a + i, c);
    }
    ok("mprotect(PROT_NONE)", mprotect(a, PAGE, PROT_NONE))?;
    ok("munmap", munmap(a, PAGE))?;
    ok("fsync", sc(nr::FSYNC, &[fd as usize]))?;
    let _ = close(fd);
    let got = read_path(&f)?;
    ensure!(
        got.starts_with(b"NONE") && got.len() == PAGE,
        "file starts {:?}",
        String::from_utf8_lossy(&got[..got.len().min(8)])
    );
    Ok(())
}

fn mmap_same_page_io() -> Res {
    // The buffer of a pread/pwrite is a MAP_SHARED mapping of the very page the call reads
    // or writes: the kernel copies between two ranges of one frame.
    ensure_dir()?;
    let f = p("mmap_self.bin");
    let data: Vec<u8> = (0..PAGE).map(|i| (i % 251) as u8).collect();
    write_path(&f, &data)?;
    let fd = ok("open O_RDWR", open_s(&f, O_RDWR, 0))?;
    let a = ok(
        "mmap MAP_SHARED",
        mmap(0, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd as usize, 0),
    )?;
    let mut want = data.clone();
    // File bytes 10..110 into the page's own bytes 2000..2100.
    let n = ok(
        "pread into its own page",
        sc(nr::PREAD64, &[fd as usize, a + 2000, 100, 10]),
    )?;
    ensure!(n == 100, "pread returned {n}");
    want.copy_within(10..110, 2000);
    // The page's bytes 3000..3100 written to file bytes 500..600.
    let n = ok(
        "pwrite from its own page",
        sc(nr::PWRITE64, &[fd as usize, a + 3000, 100, 500]),
    )?;
    ensure!(n == 100, "pwrite returned {n}");
    want.copy_within(3000..3100, 500);
    for (i, &w) in want.iter().enumerate() {
        let got = peek(a + i);
        ensure!(got == w, "byte {i} of the mapping is {got}, want {w}");
    }
    ok("munmap", munmap(a, PAGE))?;
    let mut back = vec![0u8; PAGE];
    let n = ok(
        "pread the file",
        sc(
            nr::PREAD64,
            &[fd as usize, back.as_mut_ptr() as usize, PAGE, 0],
        ),
    )?;
    ensure!(
        n == PAGE && back == want,
        "the file does not hold what the mapping showed"
    );
    let _ = close(fd);
    Ok(())
}

fn mmap_shared_kernel_store() -> Res {
    // The kernel stores into a shared file mapping on the process's behalf (read() into
    // it). Those stores must reach the disk like the process's own: checked here with an
    // O_DIRECT read after fsync, and by the host in mmap_read.bin ("FROM-READ" at 0 and
    // at 5000).
    ensure_dir()?;
    let f = p("mmap_read.bin");
    write_path(&f, &vec![b'.'; 2 * PAGE])?;
    let src = p("mmap_read_src.txt");
    write_path(&src, b"FROM-READFROM-READ")?;
    let fd = ok("open O_RDWR", open_s(&f, O_RDWR, 0))?;
    ok(
        "fsync (the file starts clean)",
        sc(nr::FSYNC, &[fd as usize]),
    )?;
    let a = ok(
        "mmap MAP_SHARED",
        mmap(
            0,
            2 * PAGE,
            PROT_READ | PROT_WRITE,
            MAP_SHARED,
            fd as usize,
            0,
        ),
    )?;
    // Page 0 faulted in by a load first; page 1 never touched by the process.
    ensure!(peek(a) == b'.', "mapping does not show the file");
    let s = ok("open source", open_s(&src, O_RDONLY, 0))?;
    let n = ok(
        "read() into page 0 of the mapping",
        sc(nr::READ, &[s as usize, a, 9]),
    )?;
    ensure!(n == 9, "read returned {n}");
    let n = ok(
        "read() into page 1 of the mapping",
        sc(nr::READ, &[s as usize, a + 5000, 9]),
    )?;
    ensure!(n == 9, "read returned {n}");
    let _ = close(s);
    let mut b = [0u8; 9];
    ok(
        "pread",
        sc(
            nr::PREAD64,
            &[fd as usize, b.as_mut_ptr() as usize, 9, 5000],
        ),
    )?;
    ensure!(
        &b == b"FROM-READ",
        "read() of the file does not see the data read into the mapping"
    );
    ok("msync MS_SYNC", sc(nr::MSYNC, &[a, 2 * PAGE, 4]))?;
    ok("munmap", munmap(a, 2 * PAGE))?;
    ok("fsync", sc(nr::FSYNC, &[fd as usize]))?;
    let _ = close(fd);
    // What is on the disk now (O_DIRECT bypasses the page cache).
    const O_DIRECT: usize = 0o40000;
    let dfd = match open_s(&f, O_RDONLY | O_DIRECT, 0) {
        Ok(d) => d,
        Err(e) => {
            say!(
                "#   O_DIRECT open: {}; only the host checks the disk\n",
                ename(e)
            );
            return Ok(());
        }
    };
    let buf = anon(2 * PAGE)?;
    let n = sc(nr::PREAD64, &[dfd as usize, buf, 2 * PAGE, 0]);
    let _ = close(dfd);
    match n {
        Ok(n) if n == 2 * PAGE => {
            let on_disk = |off: usize| (0..9).map(|i| peek(buf + off + i)).collect::<Vec<u8>>();
            ensure!(
                on_disk(0) == b"FROM-READ" && on_disk(5000) == b"FROM-READ",
                "after msync, munmap and fsync the disk holds {:?} / {:?} where read() put \
                 \"FROM-READ\" into the shared mapping: the kernel's stores were never marked dirty",
                String::from_utf8_lossy(&on_disk(0)),
                String::from_utf8_lossy(&on_disk(5000))
            );
        }
        Ok(n) => return Err(format!("O_DIRECT pread returned {n}")),
        Err(e) => say!(
            "#   O_DIRECT pread: {}; only the host checks the disk\n",
            ename(e)
        ),
    }
    Ok(())
}
