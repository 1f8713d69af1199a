//! AliasOS userland runtime: raw Linux x86-64 system calls without libc.
//!
//! The same static binaries run on a Linux host and on AliasOS, because AliasOS
//! implements the Linux x86-64 syscall ABI (numbers, arguments, errno values and
//! structure layouts). This crate provides:
//!
//! * [`raw`]: the `syscall` instruction with 0..6 arguments,
//! * typed wrappers returning `Result<usize, Errno>` (this module),
//! * [`Errno`] with the glibc `strerror` texts,
//! * [`rt`]: the process entry (`_start`, via [`entry!`]), argv/envp access,
//!   the panic handler and `memcpy`/`memset`/... that `core` needs,
//! * [`alloc_impl`]: a global allocator over `mmap`ed chunks,
//! * [`io`]: a buffered stdout, stderr, `print!`/`println!`/`eprintln!`.
// No std test harness: the crate provides the runtime (panic handler, allocator).
#![cfg(not(test))]
#![no_std]

extern crate alloc;

pub mod alloc_impl;
pub mod errno;
pub mod io;
pub mod raw;
pub mod rt;

use core::ffi::CStr;

pub use errno::Errno;
pub use raw::nr;

/// Result of a system call: the non-negative return value or the errno.
pub type SysResult = Result<usize, Errno>;

#[inline]
fn check(ret: isize) -> SysResult {
    if (-4095..0).contains(&ret) {
        Err(Errno(-ret as i32))
    } else {
        Ok(ret as usize)
    }
}

/// System call `n` with arguments `a`, its result checked: the value, or the errno.
///
/// # Safety
/// The caller must uphold the kernel's contract for system call `n` (pointer arguments
/// point to memory of this program that lives across the call).
pub unsafe fn syscall(n: usize, a: [usize; 6]) -> SysResult {
    // SAFETY: the caller upholds the contract of call `n` (`# Safety` above).
    check(unsafe { raw::syscall6(n, a[0], a[1], a[2], a[3], a[4], a[5]) })
}

/// `AT_FDCWD`: resolve relative paths against the current directory.
pub const AT_FDCWD: i32 = -100;
/// `unlinkat` flag: remove a directory.
pub const AT_REMOVEDIR: usize = 0x200;
/// `newfstatat` flag: do not follow a final symlink.
pub const AT_SYMLINK_NOFOLLOW: usize = 0x100;

pub const O_RDONLY: usize = 0;
pub const O_WRONLY: usize = 1;
pub const O_RDWR: usize = 2;
pub const O_CREAT: usize = 0o100;
pub const O_EXCL: usize = 0o200;
pub const O_TRUNC: usize = 0o1000;
pub const O_APPEND: usize = 0o2000;
pub const O_NONBLOCK: usize = 0o4000;
pub const O_DIRECT: usize = 0o40000;
pub const O_DIRECTORY: usize = 0o200000;
pub const F_GETFL: usize = 3;
pub const F_SETFL: usize = 4;
pub const O_NOFOLLOW: usize = 0o400000;
pub const O_CLOEXEC: usize = 0o2000000;

pub const SEEK_SET: usize = 0;
pub const SEEK_CUR: usize = 1;
pub const SEEK_END: usize = 2;

pub const S_IFMT: u32 = 0o170000;
pub const S_IFSOCK: u32 = 0o140000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFBLK: u32 = 0o060000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFIFO: u32 = 0o010000;

pub const PROT_READ: usize = 1;
pub const PROT_WRITE: usize = 2;
pub const MAP_PRIVATE: usize = 0x02;
pub const MAP_ANONYMOUS: usize = 0x20;

pub const CLOCK_REALTIME: usize = 0;
pub const CLOCK_MONOTONIC: usize = 1;

pub const MNT_FORCE: usize = 1;
pub const MNT_DETACH: usize = 2;
pub const MS_RDONLY: usize = 1;

pub const LINUX_REBOOT_MAGIC1: usize = 0xfee1_dead;
pub const LINUX_REBOOT_MAGIC2: usize = 672_274_793;
pub const LINUX_REBOOT_CMD_POWER_OFF: usize = 0x4321_fedc;
pub const LINUX_REBOOT_CMD_RESTART: usize = 0x0123_4567;

pub const SIGCHLD: usize = 17;
pub const CLONE_VM: usize = 0x100;
pub const CLONE_VFORK: usize = 0x4000;

/// Linux x86-64 `struct stat` (144 bytes), as filled by `fstat`/`newfstatat`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct Stat {
    pub st_dev: u64,
    pub st_ino: u64,
    pub st_nlink: u64,
    pub st_mode: u32,
    pub st_uid: u32,
    pub st_gid: u32,
    pub __pad0: i32,
    pub st_rdev: u64,
    pub st_size: i64,
    pub st_blksize: i64,
    pub st_blocks: i64,
    pub st_atime: i64,
    pub st_atime_nsec: i64,
    pub st_mtime: i64,
    pub st_mtime_nsec: i64,
    pub st_ctime: i64,
    pub st_ctime_nsec: i64,
    pub __unused: [i64; 3],
}
const _: () = assert!(core::mem::size_of::<Stat>() == 144);

impl Stat {
    pub fn file_type(&self) -> u32 {
        self.st_mode & S_IFMT
    }
    pub fn is_dir(&self) -> bool {
        self.file_type() == S_IFDIR
    }
    pub fn is_reg(&self) -> bool {
        self.file_type() == S_IFREG
    }
    pub fn is_lnk(&self) -> bool {
        self.file_type() == S_IFLNK
    }
}

/// `struct timespec`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timespec {
    pub tv_sec: i64,
    pub tv_nsec: i64,
}

impl Timespec {
    /// Seconds as floating point.
    pub fn as_secs_f64(&self) -> f64 {
        self.tv_sec as f64 + self.tv_nsec as f64 / 1e9
    }
    /// `self - earlier` in seconds.
    pub fn since(&self, earlier: &Timespec) -> f64 {
        (self.tv_sec - earlier.tv_sec) as f64 + (self.tv_nsec - earlier.tv_nsec) as f64 / 1e9
    }
}

/// `struct utsname`: six 65-byte NUL-terminated fields.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Utsname {
    pub sysname: [u8; 65],
    pub nodename: [u8; 65],
    pub release: [u8; 65],
    pub version: [u8; 65],
    pub machine: [u8; 65],
    pub domainname: [u8; 65],
}

impl Default for Utsname {
    fn default() -> Self {
        Utsname {
            sysname: [0; 65],
            nodename: [0; 65],
            release: [0; 65],
            version: [0; 65],
            machine: [0; 65],
            domainname: [0; 65],
        }
    }
}

// ---------------------------------------------------------------------------
// Typed wrappers. Paths are `&CStr` (argv strings already are; build others
// with `alloc::ffi::CString`).

use raw::{syscall0, syscall1, syscall2, syscall3, syscall4, syscall5, syscall6};

fn p(s: &CStr) -> usize {
    s.as_ptr() as usize
}

pub fn read(fd: i32, buf: &mut [u8]) -> SysResult {
    // SAFETY: the kernel writes only `buf`, which is valid for `buf.len()` bytes for the call.
    check(unsafe { syscall3(nr::READ, fd as usize, buf.as_mut_ptr() as usize, buf.len()) })
}

pub fn write(fd: i32, buf: &[u8]) -> SysResult {
    // SAFETY: the kernel reads only `buf`, which is valid for `buf.len()` bytes for the call.
    check(unsafe { syscall3(nr::WRITE, fd as usize, buf.as_ptr() as usize, buf.len()) })
}

/// `sendfile(out, in, NULL, count)`: up to `count` bytes from `in_fd`'s offset to
/// `out_fd` inside the kernel.
pub fn sendfile(out_fd: i32, in_fd: i32, count: usize) -> SysResult {
    // SAFETY: no user memory is passed (a NULL offset pointer).
    check(unsafe { syscall4(nr::SENDFILE, out_fd as usize, in_fd as usize, 0, count) })
}

/// `copy_file_range(in, NULL, out, NULL, len, 0)`: up to `len` bytes between the file
/// offsets inside the kernel.
pub fn copy_file_range(fd_in: i32, fd_out: i32, len: usize) -> SysResult {
    // SAFETY: no user memory is passed (NULL offset pointers).
    check(unsafe {
        syscall6(
            nr::COPY_FILE_RANGE,
            fd_in as usize,
            0,
            fd_out as usize,
            0,
            len,
            0,
        )
    })
}

/// Write the whole buffer, retrying short writes and `EINTR`.
pub fn write_all(fd: i32, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(0) => return Err(errno::EIO),
            Ok(n) => buf = &buf[n..],
            Err(errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read until `buf` is full or end of file; returns the bytes read.
pub fn read_full(fd: i32, buf: &mut [u8]) -> SysResult {
    let mut got = 0;
    while got < buf.len() {
        match read(fd, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

pub fn openat(dirfd: i32, path: &CStr, flags: usize, mode: u32) -> Result<i32, Errno> {
    // SAFETY: the kernel only reads `path`, a NUL-terminated `CStr` alive for the call.
    check(unsafe {
        syscall4(
            nr::OPENAT,
            dirfd as usize,
            p(path),
            flags | O_CLOEXEC,
            mode as usize,
        )
    })
    .map(|fd| fd as i32)
}

/// `openat(AT_FDCWD, ...)` with `O_CLOEXEC`.
pub fn open(path: &CStr, flags: usize, mode: u32) -> Result<i32, Errno> {
    openat(AT_FDCWD, path, flags, mode)
}

pub fn close(fd: i32) -> SysResult {
    // SAFETY: no pointer arguments.
    check(unsafe { syscall1(nr::CLOSE, fd as usize) })
}

pub fn lseek(fd: i32, offset: i64, whence: usize) -> Result<u64, Errno> {
    // SAFETY: no pointer arguments.
    check(unsafe { syscall3(nr::LSEEK, fd as usize, offset as usize, whence) }).map(|o| o as u64)
}

/// `fcntl(fd, cmd, arg)` for the commands whose argument is a number (F_GETFL, F_SETFL...).
pub fn fcntl(fd: i32, cmd: usize, arg: usize) -> Result<usize, Errno> {
    // SAFETY: the commands taking a number have no pointer arguments.
    check(unsafe { syscall3(nr::FCNTL, fd as usize, cmd, arg) })
}

pub fn ftruncate(fd: i32, len: u64) -> SysResult {
    // SAFETY: no pointer arguments.
    check(unsafe { syscall2(nr::FTRUNCATE, fd as usize, len as usize) })
}

pub fn fstat(fd: i32) -> Result<Stat, Errno> {
    let mut st = Stat::default();
    // SAFETY: the kernel writes one 144-byte `struct stat` into `st`, a local `Stat` of that
    // size and layout.
    check(unsafe { syscall2(nr::FSTAT, fd as usize, &mut st as *mut Stat as usize) })?;
    Ok(st)
}

pub fn newfstatat(dirfd: i32, path: &CStr, flags: usize) -> Result<Stat, Errno> {
    let mut st = Stat::default();
    // SAFETY: the kernel only reads `path` (a NUL-terminated `CStr`) and writes one 144-byte
    // `struct stat` into `st`, a local `Stat` of that size and layout.
    check(unsafe {
        syscall4(
            nr::NEWFSTATAT,
            dirfd as usize,
            p(path),
            &mut st as *mut Stat as usize,
            flags,
        )
    })?;
    Ok(st)
}

/// `stat(2)`: follows symlinks.
pub fn stat(path: &CStr) -> Result<Stat, Errno> {
    newfstatat(AT_FDCWD, path, 0)
}

/// `lstat(2)`: does not follow a final symlink.
pub fn lstat(path: &CStr) -> Result<Stat, Errno> {
    newfstatat(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW)
}

pub fn readlinkat(dirfd: i32, path: &CStr, buf: &mut [u8]) -> SysResult {
    // SAFETY: the kernel only reads `path` (a NUL-terminated `CStr`) and writes at most
    // `buf.len()` bytes into `buf`, which is valid for the call.
    check(unsafe {
        syscall4(
            nr::READLINKAT,
            dirfd as usize,
            p(path),
            buf.as_mut_ptr() as usize,
            buf.len(),
        )
    })
}

pub fn getdents64(fd: i32, buf: &mut [u8]) -> SysResult {
    // SAFETY: the kernel writes only `buf`, which is valid for `buf.len()` bytes for the call.
    check(unsafe {
        syscall3(
            nr::GETDENTS64,
            fd as usize,
            buf.as_mut_ptr() as usize,
            buf.len(),
        )
    })
}

/// One parsed `struct linux_dirent64`.
#[derive(Clone, Copy, Debug)]
pub struct Dirent<'a> {
    pub ino: u64,
    pub off: i64,
    /// `DT_*` type (0 = unknown).
    pub d_type: u8,
    pub name: &'a [u8],
}

pub const DT_UNKNOWN: u8 = 0;
pub const DT_DIR: u8 = 4;
pub const DT_REG: u8 = 8;
pub const DT_LNK: u8 = 10;

/// Iterator over the records `getdents64` placed in a buffer.
///
/// Layout: `u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]` (NUL-terminated).
pub struct DirentIter<'a> {
    buf: &'a [u8],
}

impl<'a> DirentIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        DirentIter { buf }
    }
}

impl<'a> Iterator for DirentIter<'a> {
    type Item = Dirent<'a>;
    fn next(&mut self) -> Option<Dirent<'a>> {
        if self.buf.len() < 19 {
            return None;
        }
        let ino = u64::from_ne_bytes(self.buf[0..8].try_into().unwrap());
        let off = i64::from_ne_bytes(self.buf[8..16].try_into().unwrap());
        let reclen = u16::from_ne_bytes(self.buf[16..18].try_into().unwrap()) as usize;
        if reclen < 19 || reclen > self.buf.len() {
            return None;
        }
        let d_type = self.buf[18];
        let raw = &self.buf[19..reclen];
        let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let name = &raw[..len];
        self.buf = &self.buf[reclen..];
        Some(Dirent {
            ino,
            off,
            d_type,
            name,
        })
    }
}

/// Read all entries of a directory (including `.` and `..`) as owned names.
pub fn read_dir(path: &CStr) -> Result<alloc::vec::Vec<(alloc::vec::Vec<u8>, u8)>, Errno> {
    let fd = open(path, O_RDONLY | O_DIRECTORY, 0)?;
    let mut out = alloc::vec::Vec::new();
    let mut buf = alloc::vec![0u8; 32 * 1024];
    loop {
        let n = match getdents64(fd, &mut buf) {
            Ok(n) => n,
            Err(e) => {
                let _ = close(fd);
                return Err(e);
            }
        };
        if n == 0 {
            break;
        }
        for d in DirentIter::new(&buf[..n]) {
            out.push((d.name.to_vec(), d.d_type));
        }
    }
    let _ = close(fd);
    Ok(out)
}

pub fn mkdirat(dirfd: i32, path: &CStr, mode: u32) -> SysResult {
    // SAFETY: the kernel only reads `path`, a NUL-terminated `CStr` alive for the call.
    check(unsafe { syscall3(nr::MKDIRAT, dirfd as usize, p(path), mode as usize) })
}

pub fn mkdir(path: &CStr, mode: u32) -> SysResult {
    mkdirat(AT_FDCWD, path, mode)
}

pub fn unlinkat(dirfd: i32, path: &CStr, flags: usize) -> SysResult {
    // SAFETY: the kernel only reads `path`, a NUL-terminated `CStr` alive for the call.
    check(unsafe { syscall3(nr::UNLINKAT, dirfd as usize, p(path), flags) })
}

pub fn unlink(path: &CStr) -> SysResult {
    unlinkat(AT_FDCWD, path, 0)
}

pub fn rmdir(path: &CStr) -> SysResult {
    unlinkat(AT_FDCWD, path, AT_REMOVEDIR)
}

pub fn renameat(olddir: i32, old: &CStr, newdir: i32, new: &CStr) -> SysResult {
    // SAFETY: the kernel only reads `old` and `new`, NUL-terminated `CStr`s alive for the call.
    check(unsafe {
        syscall4(
            nr::RENAMEAT,
            olddir as usize,
            p(old),
            newdir as usize,
            p(new),
        )
    })
}

pub fn rename(old: &CStr, new: &CStr) -> SysResult {
    renameat(AT_FDCWD, old, AT_FDCWD, new)
}

pub fn fsync(fd: i32) -> SysResult {
    // SAFETY: no pointer arguments.
    check(unsafe { syscall1(nr::FSYNC, fd as usize) })
}

pub fn sync() {
    // SAFETY: no pointer arguments.
    unsafe { syscall0(nr::SYNC) };
}

pub fn exit_group(code: i32) -> ! {
    // SAFETY: no pointer arguments; the call ends the process.
    unsafe { syscall1(nr::EXIT_GROUP, code as usize) };
    // exit_group never returns; be defensive anyway.
    loop {
        // SAFETY: no pointer arguments; the call ends the thread.
        unsafe { syscall1(nr::EXIT, code as usize) };
    }
}

/// `_exit`: flushes nothing.
pub fn exit(code: i32) -> ! {
    exit_group(code)
}

pub fn getcwd(buf: &mut [u8]) -> SysResult {
    // SAFETY: the kernel writes only `buf`, which is valid for `buf.len()` bytes for the call.
    check(unsafe { syscall2(nr::GETCWD, buf.as_mut_ptr() as usize, buf.len()) })
}

pub fn chdir(path: &CStr) -> SysResult {
    // SAFETY: the kernel only reads `path`, a NUL-terminated `CStr` alive for the call.
    check(unsafe { syscall1(nr::CHDIR, p(path)) })
}

pub fn nanosleep(req: &Timespec) -> Result<(), (Errno, Timespec)> {
    let mut rem = Timespec::default();
    // SAFETY: the kernel reads `*req` and writes `rem`, both live `#[repr(C)]` `Timespec`s.
    let r = check(unsafe {
        syscall2(
            nr::NANOSLEEP,
            req as *const Timespec as usize,
            &mut rem as *mut Timespec as usize,
        )
    });
    r.map(|_| ()).map_err(|e| (e, rem))
}

/// Sleep the full duration, resuming after `EINTR`.
pub fn sleep(mut req: Timespec) -> Result<(), Errno> {
    loop {
        match nanosleep(&req) {
            Ok(()) => return Ok(()),
            Err((errno::EINTR, rem)) => req = rem,
            Err((e, _)) => return Err(e),
        }
    }
}

pub fn clock_gettime(clock: usize) -> Result<Timespec, Errno> {
    let mut ts = Timespec::default();
    // SAFETY: the kernel writes one `struct timespec` into `ts`, a local `#[repr(C)]` `Timespec`.
    check(unsafe { syscall2(nr::CLOCK_GETTIME, clock, &mut ts as *mut Timespec as usize) })?;
    Ok(ts)
}

pub fn uname() -> Result<Utsname, Errno> {
    let mut u = Utsname::default();
    // SAFETY: the kernel writes one `struct utsname` (6 x 65 bytes) into `u`, a local `Utsname`
    // of that layout.
    check(unsafe { syscall1(nr::UNAME, &mut u as *mut Utsname as usize) })?;
    Ok(u)
}

pub fn mount(
    source: &CStr,
    target: &CStr,
    fstype: &CStr,
    flags: usize,
    data: Option<&CStr>,
) -> SysResult {
    // SAFETY: the kernel only reads `source`, `target`, `fstype` and `data` (NUL-terminated
    // `CStr`s alive for the call, or 0 for no data); it writes no user memory.
    check(unsafe {
        syscall5(
            nr::MOUNT,
            p(source),
            p(target),
            p(fstype),
            flags,
            data.map_or(0, p),
        )
    })
}

pub fn umount2(target: &CStr, flags: usize) -> SysResult {
    // SAFETY: the kernel only reads `target`, a NUL-terminated `CStr` alive for the call.
    check(unsafe { syscall2(nr::UMOUNT2, p(target), flags) })
}

/// `reboot(2)` with the magic numbers; `cmd` is e.g. [`LINUX_REBOOT_CMD_POWER_OFF`].
pub fn reboot(cmd: usize) -> SysResult {
    // SAFETY: no pointer arguments (the fourth, used only by RESTART2, is 0).
    check(unsafe { syscall4(nr::REBOOT, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, cmd, 0) })
}

/// `pipe2`: returns `[read_end, write_end]`.
pub fn pipe2(flags: usize) -> Result<[i32; 2], Errno> {
    let mut fds = [0i32; 2];
    // SAFETY: the kernel writes two `i32` fds into `fds`, a local `[i32; 2]`.
    check(unsafe { syscall2(nr::PIPE2, fds.as_mut_ptr() as usize, flags) })?;
    Ok(fds)
}

pub fn dup(fd: i32) -> Result<i32, Errno> {
    // SAFETY: no pointer arguments.
    check(unsafe { syscall1(nr::DUP, fd as usize) }).map(|f| f as i32)
}

pub fn dup2(old: i32, new: i32) -> Result<i32, Errno> {
    // SAFETY: no pointer arguments.
    check(unsafe { syscall2(nr::DUP2, old as usize, new as usize) }).map(|f| f as i32)
}

pub fn dup3(old: i32, new: i32, flags: usize) -> Result<i32, Errno> {
    // SAFETY: no pointer arguments.
    check(unsafe { syscall3(nr::DUP3, old as usize, new as usize, flags) }).map(|f| f as i32)
}

/// `fork(2)`: 0 in the child, the child's pid in the parent.
///
/// # Safety
/// The child gets a copy of the address space; callers must only do
/// async-signal-safe work (no allocator lock is held: the allocator is
/// single-threaded) before `execve`/`exit`.
pub unsafe fn fork() -> Result<i32, Errno> {
    // SAFETY: no pointer arguments; the caller upholds this function's contract for the
    // child (`# Safety` above).
    check(unsafe { syscall0(nr::FORK) }).map(|p| p as i32)
}

/// Minimal `clone(flags, NULL stack, ...)`: behaves like `fork` with the given flags
/// (use `SIGCHLD` for fork semantics). A new stack is not supported.
///
/// # Safety
/// As for [`fork`]; with `CLONE_VM` the child shares memory with the parent.
pub unsafe fn clone(flags: usize) -> Result<i32, Errno> {
    // SAFETY: the stack, tid and tls pointers are 0, so the kernel writes no user memory;
    // the caller upholds this function's contract for `flags` (`# Safety` above).
    check(unsafe { syscall5(nr::CLONE, flags, 0, 0, 0, 0) }).map(|p| p as i32)
}

pub fn execve(path: &CStr, argv: &[*const u8], envp: &[*const u8]) -> Errno {
    // Both arrays must be NULL-terminated; callers pass them that way.
    debug_assert!(argv.last().is_some_and(|p| p.is_null()));
    debug_assert!(envp.last().is_some_and(|p| p.is_null()));
    // SAFETY: the kernel only reads `path`, the `argv`/`envp` arrays (NULL-terminated by the
    // callers, checked in debug builds) and the strings they point to, all alive for the call.
    let r = unsafe {
        syscall3(
            nr::EXECVE,
            p(path),
            argv.as_ptr() as usize,
            envp.as_ptr() as usize,
        )
    };
    match check(r) {
        Err(e) => e,
        Ok(_) => errno::EIO,
    }
}

/// `wait4(pid, &status, options, NULL)`: returns `(pid, raw status)`.
pub fn wait4(pid: i32, options: usize) -> Result<(i32, i32), Errno> {
    let mut status = 0i32;
    // SAFETY: the kernel writes one `i32` into `status`, a local; the rusage pointer is 0.
    let r = check(unsafe {
        syscall4(
            nr::WAIT4,
            pid as isize as usize,
            &mut status as *mut i32 as usize,
            options,
            0,
        )
    })?;
    Ok((r as i32, status))
}

/// Decode a wait status like the shell's `$?`: exit code, or 128 + signal.
pub fn wait_status_code(status: i32) -> i32 {
    let sig = status & 0x7f;
    if sig == 0 {
        (status >> 8) & 0xff
    } else {
        128 + sig
    }
}

/// True if `fd` is a terminal (`ioctl(TCGETS)` succeeds).
pub fn isatty(fd: i32) -> bool {
    let mut termios = [0u8; 64];
    // SAFETY: TCGETS writes one kernel `struct termios` (36 bytes) into `termios`, a 64-byte
    // local.
    check(unsafe {
        syscall3(
            nr::IOCTL,
            fd as usize,
            0x5401,
            termios.as_mut_ptr() as usize,
        )
    })
    .is_ok()
}

pub fn getpid() -> i32 {
    // SAFETY: no pointer arguments.
    unsafe { syscall0(nr::GETPID) as i32 }
}

pub fn getppid() -> i32 {
    // SAFETY: no pointer arguments.
    unsafe { syscall0(nr::GETPPID) as i32 }
}

/// `brk(addr)`: returns the new (or current, for 0) program break.
pub fn brk(addr: usize) -> usize {
    // SAFETY: no pointer arguments; no Rust data lives in the brk area (the allocator uses
    // mmap), so moving the break invalidates no reference.
    unsafe { syscall1(nr::BRK, addr) as usize }
}

/// Anonymous private read/write mapping.
pub fn mmap_anon(len: usize) -> Result<*mut u8, Errno> {
    // SAFETY: no pointer arguments; without MAP_FIXED the kernel picks a free address, so
    // no existing mapping is touched.
    check(unsafe {
        syscall6(
            nr::MMAP,
            0,
            len,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            usize::MAX,
            0,
        )
    })
    .map(|a| a as *mut u8)
}

/// # Safety
/// `addr..addr+len` must be a mapping no live reference points into.
pub unsafe fn munmap(addr: *mut u8, len: usize) -> SysResult {
    // SAFETY: the caller guarantees that nothing live points into `addr..addr+len`
    // (`# Safety` above).
    check(unsafe { syscall2(nr::MUNMAP, addr as usize, len) })
}

/// Open `path` and read it completely.
pub fn read_file(path: &CStr) -> Result<alloc::vec::Vec<u8>, Errno> {
    let fd = open(path, O_RDONLY, 0)?;
    let mut out = alloc::vec::Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(errno::EINTR) => {}
            Err(e) => {
                let _ = close(fd);
                return Err(e);
            }
        }
    }
    let _ = close(fd);
    Ok(out)
}

/// Build a NUL-terminated path from bytes (a NUL inside truncates it).
pub fn cpath(bytes: &[u8]) -> alloc::ffi::CString {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    alloc::ffi::CString::new(&bytes[..end]).unwrap_or_default()
}

/// `dir/name` as a C path (no doubled slash).
pub fn join(dir: &[u8], name: &[u8]) -> alloc::ffi::CString {
    let mut v = alloc::vec::Vec::with_capacity(dir.len() + name.len() + 1);
    v.extend_from_slice(dir);
    if !dir.is_empty() && !dir.ends_with(b"/") {
        v.push(b'/');
    }
    v.extend_from_slice(name);
    cpath(&v)
}

/// The last path component (`basename`), ignoring trailing slashes.
pub fn basename(path: &[u8]) -> &[u8] {
    let mut end = path.len();
    while end > 1 && path[end - 1] == b'/' {
        end -= 1;
    }
    let p = &path[..end];
    match p.iter().rposition(|&b| b == b'/') {
        Some(i) if p.len() > 1 => &p[i + 1..],
        _ => p,
    }
}

/// `ls -l` style mode string, e.g. `drwxr-xr-x`.
pub fn mode_string(mode: u32) -> [u8; 10] {
    let mut s = *b"----------";
    s[0] = match mode & S_IFMT {
        S_IFDIR => b'd',
        S_IFLNK => b'l',
        S_IFCHR => b'c',
        S_IFBLK => b'b',
        S_IFIFO => b'p',
        S_IFSOCK => b's',
        _ => b'-',
    };
    let bits = b"rwxrwxrwx";
    for (i, &c) in bits.iter().enumerate() {
        if mode & (0o400 >> i) != 0 {
            s[1 + i] = c;
        }
    }
    if mode & 0o4000 != 0 {
        s[3] = if s[3] == b'x' { b's' } else { b'S' };
    }
    if mode & 0o2000 != 0 {
        s[6] = if s[6] == b'x' { b's' } else { b'S' };
    }
    if mode & 0o1000 != 0 {
        s[9] = if s[9] == b'x' { b't' } else { b'T' };
    }
    s
}

/// GNU `stat`'s `%F` file type text.
pub fn file_type_name(mode: u32) -> &'static str {
    match mode & S_IFMT {
        S_IFDIR => "directory",
        S_IFLNK => "symbolic link",
        S_IFCHR => "character special file",
        S_IFBLK => "block special file",
        S_IFIFO => "fifo",
        S_IFSOCK => "socket",
        S_IFREG => "regular file",
        _ => "weird file",
    }
}
