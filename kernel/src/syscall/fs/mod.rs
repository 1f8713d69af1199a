//! File-system system calls (open, read, write, stat, getdents64, mount, ...), with the
//! Linux x86-64 numbers, argument order, errno values and structure layouts.
//!
//! Every user pointer goes through `proc::user`; data moves between file pages and user
//! pages piece by piece ([`ReadBuf::User`]/[`WriteBuf::User`]), never through a kernel
//! buffer sized by the caller. The process's descriptor table is locked only to look
//! things up or install them, never across I/O.

pub mod abi;

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::errno::{Errno, SysResult};
use crate::proc;
use crate::uaccess;
use crate::vfs::file::*;
use crate::vfs::mount::{MNT_DETACH, MNT_FORCE, UMOUNT_NOFOLLOW};
use crate::vfs::node::{FileKind, ReadBuf, WriteBuf};
use crate::vfs::path::{self, Loc, PATH_MAX};
use crate::vfs::{self, ops, pipe};

/// Largest count one read or write moves (Linux's MAX_RW_COUNT).
const MAX_RW: usize = 0x7fff_f000;
/// Largest directory listing built per getdents64 call.
const GETDENTS_MAX: usize = 32 * 1024;

pub const AT_SYMLINK_NOFOLLOW: u32 = 0x100;
pub const AT_REMOVEDIR: u32 = 0x200;
pub const AT_SYMLINK_FOLLOW: u32 = 0x400;
pub const AT_NO_AUTOMOUNT: u32 = 0x800;
pub const AT_EMPTY_PATH: u32 = 0x1000;
pub const AT_EACCESS: u32 = 0x200;

pub const F_DUPFD: u64 = 0;
pub const F_GETFD: u64 = 1;
pub const F_SETFD: u64 = 2;
pub const F_GETFL: u64 = 3;
pub const F_SETFL: u64 = 4;
pub const F_GETLK: u64 = 5;
pub const F_SETLK: u64 = 6;
pub const F_SETLKW: u64 = 7;
pub const F_DUPFD_CLOEXEC: u64 = 1030;
pub const F_GETPIPE_SZ: u64 = 1032;
pub const FD_CLOEXEC: u64 = 1;

const FIONCLEX: u32 = 0x5450;
const FIOCLEX: u32 = 0x5451;
const FIONBIO: u32 = 0x5421;

const RENAME_NOREPLACE: u64 = 1;

/// Run file syscall `nr` with arguments `a`, or `None` if `nr` is not a file syscall.
pub fn dispatch(nr: u64, a: &[u64; 6]) -> Option<SysResult> {
    let fd = a[0] as i32;
    Some(match nr {
        0 => read(fd, a[1], a[2]),
        1 => write(fd, a[1], a[2]),
        2 => open(AT_FDCWD, a[0], a[1] as u32, a[2] as u32),
        3 => close(fd),
        4 => stat_at(AT_FDCWD, a[0], a[1], 0),
        5 => fstat(fd, a[1]),
        6 => stat_at(AT_FDCWD, a[0], a[1], AT_SYMLINK_NOFOLLOW),
        8 => lseek(fd, a[1], a[2]),
        16 => ioctl(fd, a[1] as u32, a[2]),
        17 => pread(fd, a[1], a[2], a[3]),
        18 => pwrite(fd, a[1], a[2], a[3]),
        19 => readv(fd, a[1], a[2], None),
        20 => writev(fd, a[1], a[2], None, 0),
        21 => access(AT_FDCWD, a[0], a[1] as u32, 0),
        40 => sendfile(fd, a[1] as i32, a[2], a[3]),
        22 => pipe2(a[0], 0),
        32 => dup(fd),
        33 => dup2(fd, a[1] as i32),
        72 => fcntl(fd, a[1], a[2]),
        74 => fsync(fd, false),
        75 => fsync(fd, true),
        76 => truncate(a[0], a[1]),
        77 => ftruncate(fd, a[1]),
        79 => getcwd(a[0], a[1]),
        80 => chdir(a[0]),
        81 => fchdir(fd),
        82 => rename(AT_FDCWD, a[0], AT_FDCWD, a[1], 0),
        83 => mkdir(AT_FDCWD, a[0], a[1] as u32),
        84 => rmdir(AT_FDCWD, a[0]),
        85 => open(AT_FDCWD, a[0], O_CREAT | O_WRONLY | O_TRUNC, a[1] as u32),
        86 => link(AT_FDCWD, a[0], AT_FDCWD, a[1], 0),
        87 => unlink(AT_FDCWD, a[0], 0),
        88 => symlink(a[0], AT_FDCWD, a[1]),
        89 => readlink(AT_FDCWD, a[0], a[1], a[2]),
        90 => chmod(AT_FDCWD, a[0], a[1] as u32),
        91 => fchmod(fd, a[1] as u32),
        162 => sync(),
        165 => mount(a[0], a[1], a[2], a[3]),
        166 => umount2(a[0], a[1]),
        217 => getdents64(fd, a[1], a[2]),
        257 => open(a[0] as i32, a[1], a[2] as u32, a[3] as u32),
        258 => mkdir(a[0] as i32, a[1], a[2] as u32),
        262 => stat_at(a[0] as i32, a[1], a[2], a[3] as u32),
        263 => unlink(a[0] as i32, a[1], a[2] as u32),
        264 => rename(a[0] as i32, a[1], a[2] as i32, a[3], 0),
        265 => link(a[0] as i32, a[1], a[2] as i32, a[3], a[4] as u32),
        266 => symlink(a[0], a[1] as i32, a[2]),
        267 => readlink(a[0] as i32, a[1], a[2], a[3]),
        268 => chmod(a[0] as i32, a[1], a[2] as u32),
        269 => access(a[0] as i32, a[1], a[2] as u32, 0),
        292 => dup3(fd, a[1] as i32, a[2]),
        293 => pipe2(a[0], a[1]),
        295 => explicit_offset(a[3]).and_then(|p| readv(fd, a[1], a[2], Some(p))),
        296 => explicit_offset(a[3]).and_then(|p| writev(fd, a[1], a[2], Some(p), 0)),
        306 => syncfs(fd),
        316 => rename(a[0] as i32, a[1], a[2] as i32, a[3], a[4]),
        326 => copy_file_range(fd, a[1], a[2] as i32, a[3], a[4], a[5]),
        327 => preadv2(fd, a[1], a[2], a[3], a[5]),
        328 => pwritev2(fd, a[1], a[2], a[3], a[5]),
        439 => access(a[0] as i32, a[1], a[2] as u32, a[3] as u32),
        _ => return None,
    })
}

// ---- helpers ----------------------------------------------------------------------

fn files_get(fd: i32) -> Result<Arc<File>, Errno> {
    proc::current().files.lock().get(fd)
}

/// A path argument: NUL-terminated, at most PATH_MAX - 1 bytes (ENAMETOOLONG), not
/// empty (ENOENT).
fn path_arg(va: u64) -> Result<Vec<u8>, Errno> {
    let p = path_arg_maybe_empty(va)?;
    if p.is_empty() {
        return Err(Errno::ENOENT);
    }
    Ok(p)
}

fn path_arg_maybe_empty(va: u64) -> Result<Vec<u8>, Errno> {
    if va == 0 {
        return Err(Errno::EFAULT);
    }
    uaccess::read_cstr(va, PATH_MAX - 1)
}

/// Where a walk of `path` relative to `dirfd` starts (an absolute path ignores
/// `dirfd`).
fn start(dirfd: i32, path: &[u8]) -> Result<Loc, Errno> {
    if path.first() == Some(&b'/') {
        return Ok(Loc::root());
    }
    proc::current().files.lock().start(dirfd)
}

fn umask() -> u32 {
    proc::current().files.lock().umask()
}

fn install(file: Arc<File>, cloexec: bool) -> SysResult {
    let fd = proc::current().files.lock().insert(file, cloexec)?;
    Ok(fd as u64)
}

fn count_arg(count: u64) -> usize {
    (count.min(MAX_RW as u64)) as usize
}

/// A user buffer for a read: the whole range must be user memory (EFAULT up front, as
/// Linux's `access_ok`, even when nothing would be transferred).
fn user_read_buf(va: u64, len: usize) -> Result<ReadBuf<'static>, Errno> {
    uaccess::check_range(va, len)?;
    Ok(ReadBuf::User { va, len })
}

fn user_write_buf(va: u64, len: usize) -> Result<WriteBuf<'static>, Errno> {
    uaccess::check_range(va, len)?;
    Ok(WriteBuf::User { va, len })
}

/// SIGPIPE signal number.
const SIGPIPE: u32 = 13;

/// A write found no reader: SIGPIPE, whose default action ends the process. Ignored,
/// blocked or caught (handlers are not run yet) it leaves the EPIPE to the caller.
/// The caller has dropped every reference it held (this may not return).
fn raise_sigpipe() {
    let p = proc::current();
    let (handler, blocked) = {
        let s = p.signals.lock();
        let act = s.actions[SIGPIPE as usize - 1];
        let mut h = [0u8; 8];
        h.copy_from_slice(&act[..8]);
        (u64::from_le_bytes(h), s.mask & (1 << (SIGPIPE - 1)) != 0)
    };
    const SIG_DFL: u64 = 0;
    if handler == SIG_DFL && !blocked {
        log::debug!("pid {}: SIGPIPE", p.pid);
        drop(p);
        proc::exit(proc::killed_by(SIGPIPE));
    }
}

/// The result of a write, with SIGPIPE raised for EPIPE.
fn write_result(f: Arc<File>, r: Result<usize, Errno>) -> SysResult {
    drop(f);
    if r == Err(Errno::EPIPE) {
        raise_sigpipe();
    }
    r.map(|n| n as u64)
}

// ---- descriptors ------------------------------------------------------------------

fn open(dirfd: i32, path_va: u64, flags: u32, mode: u32) -> SysResult {
    let path = path_arg(path_va)?;
    let start = start(dirfd, &path)?;
    let mode = mode & 0o7777 & !umask();
    let file = ops::open(&start, &path, flags | O_LARGEFILE, mode)?;
    install(file, flags & O_CLOEXEC != 0)
}

fn close(fd: i32) -> SysResult {
    let file = proc::current().files.lock().close(fd)?;
    // The last reference may flush or free things: outside the table's lock.
    drop(file);
    Ok(0)
}

fn dup(fd: i32) -> SysResult {
    let p = proc::current();
    let mut files = p.files.lock();
    let f = files.get(fd)?;
    Ok(files.insert(f, false)? as u64)
}

fn dup2(old: i32, new: i32) -> SysResult {
    let p = proc::current();
    let replaced = {
        let mut files = p.files.lock();
        let f = files.get(old)?;
        if old == new {
            return Ok(new as u64);
        }
        files.set(new, f, false)?
    };
    drop(replaced);
    Ok(new as u64)
}

fn dup3(old: i32, new: i32, flags: u64) -> SysResult {
    if flags & !(O_CLOEXEC as u64) != 0 || old == new {
        return Err(Errno::EINVAL);
    }
    let p = proc::current();
    let replaced = {
        let mut files = p.files.lock();
        let f = files.get(old)?;
        files.set(new, f, flags != 0)?
    };
    drop(replaced);
    Ok(new as u64)
}

fn fcntl(fd: i32, cmd: u64, arg: u64) -> SysResult {
    let p = proc::current();
    let mut files = p.files.lock();
    let f = files.get(fd)?;
    match cmd {
        F_DUPFD | F_DUPFD_CLOEXEC => {
            let min = usize::try_from(arg as i32).map_err(|_| Errno::EINVAL)?;
            Ok(files.insert_from(min, f, cmd == F_DUPFD_CLOEXEC)? as u64)
        }
        F_GETFD => Ok(files.cloexec(fd)? as u64),
        F_SETFD => {
            files.set_cloexec(fd, arg & FD_CLOEXEC != 0)?;
            Ok(0)
        }
        F_GETFL => Ok(f.flags() as u64),
        F_SETFL => {
            f.set_status_flags(arg as u32);
            Ok(0)
        }
        F_GETLK => {
            // No locks are ever held: report the range unlocked (l_type = F_UNLCK).
            drop(files);
            uaccess::copy_to_user(arg, &2u16.to_le_bytes())?;
            Ok(0)
        }
        F_SETLK | F_SETLKW => Ok(0),
        F_GETPIPE_SZ if f.kind() == FileKind::Fifo => Ok(pipe::PIPE_SIZE as u64),
        _ => Err(Errno::EINVAL),
    }
}

fn pipe2(fds_va: u64, flags: u64) -> SysResult {
    if flags & !((O_CLOEXEC | O_NONBLOCK | O_DIRECT) as u64) != 0 {
        return Err(Errno::EINVAL);
    }
    uaccess::check_range(fds_va, 8)?;
    let (r, w) = pipe::new_pipe(flags as u32);
    let cloexec = flags & O_CLOEXEC as u64 != 0;
    let p = proc::current();
    let (rfd, wfd) = {
        let mut files = p.files.lock();
        let rfd = files.insert(r, cloexec)?;
        match files.insert(w, cloexec) {
            Ok(wfd) => (rfd, wfd),
            Err(e) => {
                let _ = files.close(rfd);
                return Err(e);
            }
        }
    };
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&rfd.to_le_bytes());
    b[4..].copy_from_slice(&wfd.to_le_bytes());
    if let Err(e) = uaccess::copy_to_user(fds_va, &b) {
        let mut files = p.files.lock();
        let _ = files.close(rfd);
        let _ = files.close(wfd);
        return Err(e);
    }
    Ok(0)
}

// ---- data -------------------------------------------------------------------------

fn read(fd: i32, buf: u64, count: u64) -> SysResult {
    let f = files_get(fd)?;
    let n = f.read(&mut user_read_buf(buf, count_arg(count))?)?;
    Ok(n as u64)
}

fn write(fd: i32, buf: u64, count: u64) -> SysResult {
    let f = files_get(fd)?;
    let r = f.write(&mut user_write_buf(buf, count_arg(count))?);
    write_result(f, r)
}

fn pread(fd: i32, buf: u64, count: u64, pos: u64) -> SysResult {
    let f = files_get(fd)?;
    if (pos as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let n = f.pread(pos, &mut user_read_buf(buf, count_arg(count))?)?;
    Ok(n as u64)
}

fn pwrite(fd: i32, buf: u64, count: u64, pos: u64) -> SysResult {
    let f = files_get(fd)?;
    if (pos as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let r = f.pwrite(pos, &mut user_write_buf(buf, count_arg(count))?);
    write_result(f, r)
}

/// An offset argument that must not be negative (pread-like calls).
fn explicit_offset(pos: u64) -> Result<u64, Errno> {
    if (pos as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(pos)
}

/// `readv(2)`; with `at`, `preadv(2)` (the offset unchanged).
fn readv(fd: i32, iov: u64, iovcnt: u64, at: Option<u64>) -> SysResult {
    let f = files_get(fd)?;
    if !f.readable() {
        return Err(Errno::EBADF);
    }
    let iovs = abi::read_iovecs(iov, iovcnt)?;
    read_iovs(&f, &iovs, at).map(|n| n as u64)
}

/// The data movement of `readv`/`preadv` (and of AIO's vectored reads done at once):
/// every range checked first, then read in order until one comes up short.
pub(super) fn read_iovs(f: &File, iovs: &[(u64, usize)], at: Option<u64>) -> Result<usize, Errno> {
    for &(base, len) in iovs {
        uaccess::check_range(base, len)?;
    }
    let mut total = 0usize;
    for &(base, len) in iovs {
        if len == 0 {
            continue;
        }
        let len = len.min(MAX_RW - total);
        let mut buf = ReadBuf::User { va: base, len };
        // After some data, a stream must not block for more.
        let r = if let Some(pos) = at {
            f.pread(pos + total as u64, &mut buf)
        } else if total > 0 && f.is_stream() {
            f.read_nonblocking(&mut buf)
        } else {
            f.read(&mut buf)
        };
        match r {
            Ok(n) => {
                total += n;
                if n < len || total >= MAX_RW {
                    break;
                }
            }
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(total)
}

/// `writev(2)`; with `at`, `pwritev(2)`; `flags` are pwritev2's `RWF_*` (checked by
/// the caller).
fn writev(fd: i32, iov: u64, iovcnt: u64, at: Option<u64>, flags: u64) -> SysResult {
    let f = files_get(fd)?;
    if !f.writable() {
        return Err(Errno::EBADF);
    }
    let iovs = abi::read_iovecs(iov, iovcnt)?;
    let mut result = write_iovs(&f, &iovs, at, flags);
    if matches!(result, Ok(n) if n > 0) && flags & (RWF_DSYNC | RWF_SYNC) != 0 {
        // Per-write O_DSYNC / O_SYNC: the data reaches the device before the return.
        if let Err(e) = f.fsync(flags & RWF_SYNC == 0) {
            result = Err(e);
        }
    }
    write_result(f, result)
}

/// The data movement of `writev`/`pwritev`/`pwritev2` (`flags`: `RWF_APPEND` matters
/// here) and of AIO's vectored writes: every range checked first, then written in
/// order until one comes up short.
pub(super) fn write_iovs(
    f: &File,
    iovs: &[(u64, usize)],
    at: Option<u64>,
    flags: u64,
) -> Result<usize, Errno> {
    for &(base, len) in iovs {
        uaccess::check_range(base, len)?;
    }
    let mut total = 0usize;
    for &(base, len) in iovs {
        if len == 0 {
            continue;
        }
        let len = len.min(MAX_RW - total);
        let mut buf = WriteBuf::User { va: base, len };
        let r = match at {
            // RWF_APPEND: at the end whatever the offset says.
            Some(_) if flags & RWF_APPEND != 0 => f.pwrite(f.size(), &mut buf),
            Some(pos) => f.pwrite(pos + total as u64, &mut buf),
            None if flags & RWF_APPEND != 0 => f.append(&mut buf),
            None => f.write(&mut buf),
        };
        match r {
            Ok(n) => {
                total += n;
                if n < len || total >= MAX_RW {
                    break;
                }
            }
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(total)
}

/// `RWF_*` flags of preadv2/pwritev2.
const RWF_HIPRI: u64 = 0x1;
const RWF_DSYNC: u64 = 0x2;
const RWF_SYNC: u64 = 0x4;
const RWF_NOWAIT: u64 = 0x8;
const RWF_APPEND: u64 = 0x10;

/// `preadv2(2)`: offset -1 reads at (and advances) the file offset. `RWF_HIPRI` is a
/// hint; `RWF_NOWAIT` gives EAGAIN instead of waiting on a stream (file reads are
/// served as usual); the write flags are accepted and mean nothing for a read, and
/// unknown flags are EOPNOTSUPP, all as on Linux.
fn preadv2(fd: i32, iov: u64, iovcnt: u64, pos: u64, flags: u64) -> SysResult {
    if flags & !(RWF_HIPRI | RWF_DSYNC | RWF_SYNC | RWF_NOWAIT | RWF_APPEND) != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    let at = rw2_offset(pos)?;
    if flags & RWF_NOWAIT != 0 && at.is_none() {
        let f = files_get(fd)?;
        if f.is_stream() {
            let iovs = abi::read_iovecs(iov, iovcnt)?;
            let Some(&(base, len)) = iovs.iter().find(|v| v.1 > 0) else {
                return Ok(0);
            };
            uaccess::check_range(base, len)?;
            return f
                .read_nonblocking(&mut ReadBuf::User { va: base, len })
                .map(|n| n as u64);
        }
    }
    readv(fd, iov, iovcnt, at)
}

/// `pwritev2(2)`: offset -1 writes at (and advances) the file offset; `RWF_DSYNC` and
/// `RWF_SYNC` make this one write synchronous, `RWF_APPEND` appends, `RWF_HIPRI` and
/// `RWF_NOWAIT` are accepted (buffered writes here do not wait for the disk, except in
/// dirty throttling); unknown flags are EOPNOTSUPP.
fn pwritev2(fd: i32, iov: u64, iovcnt: u64, pos: u64, flags: u64) -> SysResult {
    if flags & !(RWF_HIPRI | RWF_DSYNC | RWF_SYNC | RWF_NOWAIT | RWF_APPEND) != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    let at = rw2_offset(pos)?;
    writev(fd, iov, iovcnt, at, flags)
}

/// preadv2/pwritev2's offset: -1 for the file offset (None), another negative one is
/// EINVAL.
fn rw2_offset(pos: u64) -> Result<Option<u64>, Errno> {
    match pos as i64 {
        -1 => Ok(None),
        p if p < 0 => Err(Errno::EINVAL),
        p => Ok(Some(p as u64)),
    }
}

/// Read a user `loff_t` (NULL: none).
fn user_offset(va: u64) -> Result<Option<u64>, Errno> {
    if va == 0 {
        return Ok(None);
    }
    let v = uaccess::read_u64(va)?;
    if (v as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(Some(v))
}

/// `sendfile(2)`: `count` bytes of `in_fd` (from `*offset`, which is updated, or from
/// its file offset, which advances) to `out_fd` at its offset. Between page-cache files
/// the target's pages alias the source's frames (no copy); to anything else (a pipe,
/// the terminal, a device) the bytes are copied through a kernel buffer.
fn sendfile(out_fd: i32, in_fd: i32, offset: u64, count: u64) -> SysResult {
    let out = files_get(out_fd)?;
    let inp = files_get(in_fd)?;
    if !inp.readable() || !out.writable() {
        return Err(Errno::EBADF);
    }
    if inp.is_stream() || inp.kind() == FileKind::Directory || out.kind() == FileKind::Directory {
        return Err(Errno::EINVAL);
    }
    if out.flags() & O_APPEND != 0 {
        return Err(Errno::EINVAL);
    }
    let at = user_offset(offset)?;
    let r = out.copy_range_in(None, &inp, at, count_arg(count));
    if let (Some(start), Ok(n)) = (at, &r) {
        uaccess::write_u64(offset, start + *n as u64)?;
    }
    drop(inp);
    write_result(out, r)
}

/// `copy_file_range(2)` between regular files (flags must be 0). The offsets are used
/// and updated when given, else the file offsets advance. Whole pages alias the
/// source's frames; overlapping ranges in one file are EINVAL.
fn copy_file_range(
    fd_in: i32,
    off_in: u64,
    fd_out: i32,
    off_out: u64,
    len: u64,
    flags: u64,
) -> SysResult {
    if flags != 0 {
        return Err(Errno::EINVAL);
    }
    let inp = files_get(fd_in)?;
    let out = files_get(fd_out)?;
    // In Linux's order: directories, then other non-regular files, then access.
    if inp.kind() == FileKind::Directory || out.kind() == FileKind::Directory {
        return Err(Errno::EISDIR);
    }
    if inp.kind() != FileKind::Regular || out.kind() != FileKind::Regular {
        return Err(Errno::EINVAL);
    }
    if !inp.readable() || !out.writable() || out.flags() & O_APPEND != 0 {
        return Err(Errno::EBADF);
    }
    let (from, to) = (user_offset(off_in)?, user_offset(off_out)?);
    let n = out.copy_range_in(to, &inp, from, count_arg(len))?;
    if let Some(p) = from {
        uaccess::write_u64(off_in, p + n as u64)?;
    }
    if let Some(p) = to {
        uaccess::write_u64(off_out, p + n as u64)?;
    }
    Ok(n as u64)
}

fn lseek(fd: i32, offset: u64, whence: u64) -> SysResult {
    let f = files_get(fd)?;
    let whence = u32::try_from(whence).map_err(|_| Errno::EINVAL)?;
    f.seek(offset as i64, whence)
}

fn getdents64(fd: i32, dirp: u64, count: u64) -> SysResult {
    let f = files_get(fd)?;
    let room = count_arg(count).min(GETDENTS_MAX);
    uaccess::check_range(dirp, room)?;
    let mut out: Vec<u8> = Vec::new();
    let mut too_small = false;
    f.read_dir(|e| {
        let need = abi::dirent_reclen(e.name.len());
        if out.len() + need > room {
            too_small = out.is_empty();
            return false;
        }
        abi::push_dirent(&mut out, e);
        true
    })?;
    if too_small {
        return Err(Errno::EINVAL);
    }
    uaccess::copy_to_user(dirp, &out)?;
    Ok(out.len() as u64)
}

fn ioctl(fd: i32, cmd: u32, arg: u64) -> SysResult {
    let p = proc::current();
    match cmd {
        FIOCLEX | FIONCLEX => {
            p.files.lock().set_cloexec(fd, cmd == FIOCLEX)?;
            Ok(0)
        }
        FIONBIO => {
            let f = p.files.lock().get(fd)?;
            let mut b = [0u8; 4];
            uaccess::copy_from_user(arg, &mut b)?;
            let on = i32::from_le_bytes(b) != 0;
            let fl = f.flags();
            f.set_status_flags(if on {
                fl | O_NONBLOCK
            } else {
                fl & !O_NONBLOCK
            });
            Ok(0)
        }
        _ => {
            let f = p.files.lock().get(fd)?;
            drop(p);
            f.ioctl(cmd, arg)
        }
    }
}

fn fsync(fd: i32, data_only: bool) -> SysResult {
    let f = files_get(fd)?;
    if f.is_stream() {
        return Err(Errno::EINVAL);
    }
    f.fsync(data_only)?;
    Ok(0)
}

fn ftruncate(fd: i32, len: u64) -> SysResult {
    let f = files_get(fd)?;
    if (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    f.truncate(len)?;
    Ok(0)
}

fn fstat(fd: i32, statbuf: u64) -> SysResult {
    let f = files_get(fd)?;
    let s = f.stat()?;
    abi::put_stat(statbuf, &s)?;
    Ok(0)
}

fn fchmod(fd: i32, mode: u32) -> SysResult {
    let f = files_get(fd)?;
    if let Some(l) = &f.loc
        && l.mount().read_only
        && matches!(f.kind(), FileKind::Regular | FileKind::Directory)
    {
        return Err(Errno::EROFS);
    }
    f.node.chmod(mode)?;
    Ok(0)
}

// ---- paths ------------------------------------------------------------------------

fn stat_at(dirfd: i32, path_va: u64, statbuf: u64, flags: u32) -> SysResult {
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT) != 0 {
        return Err(Errno::EINVAL);
    }
    let path = path_arg_maybe_empty(path_va)?;
    let s = if path.is_empty() {
        if flags & AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        if dirfd == AT_FDCWD {
            proc::current().files.lock().cwd().node().stat()?
        } else {
            files_get(dirfd)?.stat()?
        }
    } else {
        let start = start(dirfd, &path)?;
        ops::stat(&start, &path, flags & AT_SYMLINK_NOFOLLOW == 0)?
    };
    abi::put_stat(statbuf, &s)?;
    Ok(0)
}

fn access(dirfd: i32, path_va: u64, mode: u32, flags: u32) -> SysResult {
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EACCESS | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let path = path_arg(path_va)?;
    let start = start(dirfd, &path)?;
    ops::access(&start, &path, mode, flags & AT_SYMLINK_NOFOLLOW == 0)?;
    Ok(0)
}

fn mkdir(dirfd: i32, path_va: u64, mode: u32) -> SysResult {
    let path = path_arg(path_va)?;
    let start = start(dirfd, &path)?;
    ops::mkdir(&start, &path, mode & 0o7777 & !umask())?;
    Ok(0)
}

fn rmdir(dirfd: i32, path_va: u64) -> SysResult {
    let path = path_arg(path_va)?;
    let start = start(dirfd, &path)?;
    ops::rmdir(&start, &path)?;
    Ok(0)
}

fn unlink(dirfd: i32, path_va: u64, flags: u32) -> SysResult {
    if flags & !AT_REMOVEDIR != 0 {
        return Err(Errno::EINVAL);
    }
    let path = path_arg(path_va)?;
    let start = start(dirfd, &path)?;
    if flags & AT_REMOVEDIR != 0 {
        ops::rmdir(&start, &path)?;
    } else {
        ops::unlink(&start, &path)?;
    }
    Ok(0)
}

fn rename(olddirfd: i32, old_va: u64, newdirfd: i32, new_va: u64, flags: u64) -> SysResult {
    if flags & !RENAME_NOREPLACE != 0 {
        return Err(Errno::EINVAL);
    }
    let old = path_arg(old_va)?;
    let new = path_arg(new_va)?;
    let os = start(olddirfd, &old)?;
    let ns = start(newdirfd, &new)?;
    if flags & RENAME_NOREPLACE != 0 && path::resolve(&ns, &new, false).is_ok() {
        return Err(Errno::EEXIST);
    }
    ops::rename(&os, &old, &ns, &new)?;
    Ok(0)
}

fn link(olddirfd: i32, old_va: u64, newdirfd: i32, new_va: u64, flags: u32) -> SysResult {
    if flags & !(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let old = path_arg(old_va)?;
    let new = path_arg(new_va)?;
    let os = start(olddirfd, &old)?;
    let ns = start(newdirfd, &new)?;
    ops::link(&os, &old, &ns, &new, flags & AT_SYMLINK_FOLLOW != 0)?;
    Ok(0)
}

fn symlink(target_va: u64, newdirfd: i32, link_va: u64) -> SysResult {
    let target = path_arg(target_va)?;
    let linkpath = path_arg(link_va)?;
    let s = start(newdirfd, &linkpath)?;
    ops::symlink(&target, &s, &linkpath)?;
    Ok(0)
}

fn readlink(dirfd: i32, path_va: u64, buf: u64, size: u64) -> SysResult {
    let size = size as i64;
    if size <= 0 {
        return Err(Errno::EINVAL);
    }
    let path = path_arg(path_va)?;
    let s = start(dirfd, &path)?;
    let target = ops::readlink(&s, &path)?;
    let n = target.len().min(size as usize);
    uaccess::copy_to_user(buf, &target[..n])?;
    Ok(n as u64)
}

fn chmod(dirfd: i32, path_va: u64, mode: u32) -> SysResult {
    let path = path_arg(path_va)?;
    let s = start(dirfd, &path)?;
    ops::chmod(&s, &path, mode, true)?;
    Ok(0)
}

fn truncate(path_va: u64, len: u64) -> SysResult {
    if (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let path = path_arg(path_va)?;
    let s = start(AT_FDCWD, &path)?;
    ops::truncate(&s, &path, len)?;
    Ok(0)
}

fn getcwd(buf: u64, size: u64) -> SysResult {
    let path = proc::current().files.lock().cwd().path();
    if (size as usize) < path.len() + 1 {
        return Err(Errno::ERANGE);
    }
    let mut out = path;
    out.push(0);
    uaccess::copy_to_user(buf, &out)?;
    Ok(out.len() as u64)
}

fn chdir(path_va: u64) -> SysResult {
    let path = path_arg(path_va)?;
    let s = start(AT_FDCWD, &path)?;
    let l = path::resolve(&s, &path, true)?;
    proc::current().files.lock().set_cwd(l)?;
    Ok(0)
}

fn fchdir(fd: i32) -> SysResult {
    let f = files_get(fd)?;
    let l = f.loc.clone().ok_or(Errno::ENOTDIR)?;
    proc::current().files.lock().set_cwd(l)?;
    Ok(0)
}

fn sync() -> SysResult {
    if let Err(e) = vfs::sync_all() {
        log::warn!("sync: {e:?}");
    }
    Ok(0)
}

fn syncfs(fd: i32) -> SysResult {
    files_get(fd)?;
    vfs::sync_all()?;
    Ok(0)
}

fn mount(source_va: u64, target_va: u64, fstype_va: u64, flags: u64) -> SysResult {
    let target = path_arg(target_va)?;
    if fstype_va == 0 {
        return Err(Errno::EINVAL);
    }
    let fstype = uaccess::read_cstr(fstype_va, 255).map_err(|e| match e {
        Errno::ENAMETOOLONG => Errno::ENODEV,
        e => e,
    })?;
    let source = if source_va == 0 {
        Vec::new()
    } else {
        path_arg_maybe_empty(source_va)?
    };
    let ts = start(AT_FDCWD, &target)?;
    let target_loc = path::resolve(&ts, &target, true)?;
    let source_loc = if fstype == b"ext2" {
        if source.is_empty() {
            return Err(Errno::ENOENT);
        }
        let ss = start(AT_FDCWD, &source)?;
        Some(path::resolve(&ss, &source, true)?)
    } else {
        None
    };
    let name = if source.is_empty() {
        b"none".to_vec()
    } else {
        source
    };
    vfs::mount::mount(source_loc.as_ref(), &name, &target_loc, &fstype, flags)?;
    Ok(0)
}

fn umount2(target_va: u64, flags: u64) -> SysResult {
    if flags & !(MNT_FORCE | MNT_DETACH | UMOUNT_NOFOLLOW) != 0 {
        return Err(Errno::EINVAL);
    }
    let target = path_arg(target_va)?;
    let s = start(AT_FDCWD, &target)?;
    let l = path::resolve(&s, &target, flags & UMOUNT_NOFOLLOW == 0)?;
    vfs::mount::umount(l, flags)?;
    Ok(0)
}
