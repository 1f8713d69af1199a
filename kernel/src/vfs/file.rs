//! Open file descriptions ([`File`]: node, offset, status flags, per-open state; shared
//! by dup'ed descriptors and across fork) and a process's descriptor table and working
//! directory ([`ProcessFiles`]).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use mm::sync::Mutex;

use drivers::block::Op;

use super::aio::AioContext;
use super::direct::{self, DirectIo};
use super::node::*;
use super::path::Loc;
use crate::errno::Errno;

pub const O_ACCMODE: u32 = 3;
pub const O_RDONLY: u32 = 0;
pub const O_WRONLY: u32 = 1;
pub const O_RDWR: u32 = 2;
pub const O_CREAT: u32 = 0o100;
pub const O_EXCL: u32 = 0o200;
pub const O_NOCTTY: u32 = 0o400;
pub const O_TRUNC: u32 = 0o1000;
pub const O_APPEND: u32 = 0o2000;
pub const O_NONBLOCK: u32 = 0o4000;
pub const O_DSYNC: u32 = 0o10000;
pub const O_DIRECT: u32 = 0o40000;
pub const O_LARGEFILE: u32 = 0o100000;
pub const O_DIRECTORY: u32 = 0o200000;
pub const O_NOFOLLOW: u32 = 0o400000;
pub const O_NOATIME: u32 = 0o1000000;
pub const O_CLOEXEC: u32 = 0o2000000;
pub const O_SYNC: u32 = 0o4010000;
pub const O_PATH: u32 = 0o10000000;
pub const O_TMPFILE: u32 = 0o20000000;

/// Status flags `F_SETFL` may change.
pub const SETFL_MASK: u32 = O_APPEND | O_NONBLOCK | O_DIRECT | O_NOATIME;
/// Flags an open file description remembers (what `F_GETFL` shows).
const KEPT: u32 =
    O_ACCMODE | O_APPEND | O_NONBLOCK | O_DSYNC | O_DIRECT | O_LARGEFILE | O_NOATIME | O_SYNC;

pub const SEEK_SET: u32 = 0;
pub const SEEK_CUR: u32 = 1;
pub const SEEK_END: u32 = 2;
pub const SEEK_DATA: u32 = 3;
pub const SEEK_HOLE: u32 = 4;

/// An open file description.
pub struct File {
    pub node: NodeRef,
    /// Where it was opened (none for pipes).
    pub loc: Option<Loc>,
    ops: Box<dyn FileOps>,
    /// The offset (for directories: the readdir cursor). Held during a read or write so
    /// concurrent users of one description do not interleave their offsets.
    pos: Mutex<u64>,
    flags: AtomicU32,
}

impl File {
    pub fn new(node: NodeRef, loc: Option<Loc>, ops: Box<dyn FileOps>, flags: u32) -> Arc<File> {
        Arc::new(File {
            node,
            loc,
            ops,
            pos: Mutex::new(0),
            flags: AtomicU32::new(flags & KEPT),
        })
    }

    /// Access mode and status flags (`F_GETFL`).
    pub fn flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    /// `F_SETFL`: only the changeable status flags are taken from `f`.
    pub fn set_status_flags(&self, f: u32) {
        let old = self.flags();
        self.flags
            .store((old & !SETFL_MASK) | (f & SETFL_MASK), Ordering::Relaxed);
    }

    pub fn readable(&self) -> bool {
        matches!(self.flags() & O_ACCMODE, O_RDONLY | O_RDWR)
    }

    pub fn writable(&self) -> bool {
        matches!(self.flags() & O_ACCMODE, O_WRONLY | O_RDWR)
    }

    fn nonblock(&self) -> bool {
        self.flags() & O_NONBLOCK != 0
    }

    pub fn kind(&self) -> FileKind {
        self.node.kind()
    }

    /// Bytes of data (what `SEEK_END` and `O_APPEND` use).
    pub fn size(&self) -> u64 {
        self.ops.size()
    }

    /// A stream (pipe, terminal): no offset.
    pub fn is_stream(&self) -> bool {
        self.ops.stream()
    }

    /// `read(2)`: at the offset, which advances.
    pub fn read(&self, buf: &mut ReadBuf) -> Result<usize, Errno> {
        if !self.readable() {
            return Err(Errno::EBADF);
        }
        if self.kind() == FileKind::Directory {
            return Err(Errno::EISDIR);
        }
        if self.ops.stream() {
            return self.ops.read(0, buf, self.nonblock());
        }
        let mut pos = self.pos.lock();
        let n = self.read_at(*pos, buf)?;
        *pos += n as u64;
        Ok(n)
    }

    /// `read(2)` that does not block, whatever the status flags say (EAGAIN instead).
    pub fn read_nonblocking(&self, buf: &mut ReadBuf) -> Result<usize, Errno> {
        if !self.readable() {
            return Err(Errno::EBADF);
        }
        if self.ops.stream() {
            return self.ops.read(0, buf, true);
        }
        self.read(buf)
    }

    /// `write(2)`: at the offset (or the end with `O_APPEND`), which advances.
    pub fn write(&self, buf: &mut WriteBuf) -> Result<usize, Errno> {
        self.write_advancing(buf, self.flags() & O_APPEND != 0)
    }

    /// `pwritev2(fd, .., -1, RWF_APPEND)`: at the end, whatever the status flags say;
    /// the offset then points past the data, as with `O_APPEND`.
    pub fn append(&self, buf: &mut WriteBuf) -> Result<usize, Errno> {
        self.write_advancing(buf, true)
    }

    fn write_advancing(&self, buf: &mut WriteBuf, at_end: bool) -> Result<usize, Errno> {
        if !self.writable() {
            return Err(Errno::EBADF);
        }
        if self.ops.stream() {
            return self.ops.write(0, buf, self.nonblock());
        }
        let mut pos = self.pos.lock();
        let at = if at_end { self.ops.size() } else { *pos };
        check_end(at, buf.len())?;
        let n = self.write_at(at, buf)?;
        *pos = at + n as u64;
        Ok(n)
    }

    /// `pread64(2)`: at `offset`, the file offset unchanged.
    pub fn pread(&self, offset: u64, buf: &mut ReadBuf) -> Result<usize, Errno> {
        if !self.readable() {
            return Err(Errno::EBADF);
        }
        if self.kind() == FileKind::Directory {
            return Err(Errno::EISDIR);
        }
        if self.ops.stream() {
            return Err(Errno::ESPIPE);
        }
        if offset > i64::MAX as u64 {
            return Err(Errno::EINVAL);
        }
        self.read_at(offset, buf)
    }

    /// Read at `pos`: by DMA with `O_DIRECT` where the node can, else as the node reads.
    fn read_at(&self, pos: u64, buf: &mut ReadBuf) -> Result<usize, Errno> {
        match self.direct(Op::Read, pos, buf.user()) {
            Some(r) => r,
            None => self.ops.read(pos, buf, self.nonblock()),
        }
    }

    /// Write at `pos`, as [`File::read_at`] reads.
    fn write_at(&self, pos: u64, buf: &mut WriteBuf) -> Result<usize, Errno> {
        match self.direct(Op::Write, pos, buf.user()) {
            Some(r) => r,
            None => self.ops.write(pos, buf, self.nonblock()),
        }
    }

    /// `pwrite64(2)` (with `O_APPEND` it appends, as on Linux).
    pub fn pwrite(&self, offset: u64, buf: &mut WriteBuf) -> Result<usize, Errno> {
        if !self.writable() {
            return Err(Errno::EBADF);
        }
        if self.ops.stream() {
            return Err(Errno::ESPIPE);
        }
        if offset > i64::MAX as u64 {
            return Err(Errno::EINVAL);
        }
        let at = if self.flags() & O_APPEND != 0 {
            self.ops.size()
        } else {
            offset
        };
        check_end(at, buf.len())?;
        self.write_at(at, buf)
    }

    /// The direct transfer `op` at `pos` to or from user memory `[va, va + len)`, started
    /// by the caller (AIO): None where the file is not open `O_DIRECT`, has no direct
    /// path, or the transfer is longer than one [`DirectIo`] takes (the caller then does
    /// the transfer synchronously). The caller checked the access mode.
    pub fn plan_direct(
        &self,
        op: Op,
        pos: u64,
        va: u64,
        len: usize,
    ) -> Option<Result<DirectIo, Errno>> {
        if self.flags() & O_DIRECT == 0 || len > direct::MAX_DIRECT_BYTES {
            return None;
        }
        let pos = if op == Op::Write && self.flags() & O_APPEND != 0 {
            self.ops.size()
        } else {
            pos
        };
        if let Err(e) = check_end(pos, len) {
            return Some(Err(e));
        }
        match self.ops.direct(op, pos, va, len) {
            Err(Errno::EOPNOTSUPP) => None,
            r => Some(r),
        }
    }

    /// With `O_DIRECT`, `op` at `pos` between the file and user memory `user` by DMA
    /// to or from the pinned pages, a piece of at most [`direct::MAX_DIRECT_BYTES`] at a
    /// time; None where there is no direct path (kernel buffers, nodes without one), and
    /// the caller goes through the page cache.
    fn direct(&self, op: Op, pos: u64, user: Option<(u64, usize)>) -> Option<Result<usize, Errno>> {
        if self.flags() & O_DIRECT == 0 {
            return None;
        }
        let (va, len) = user?;
        let mut done = 0usize;
        loop {
            let n = (len - done).min(direct::MAX_DIRECT_BYTES);
            let io = match self.ops.direct(op, pos + done as u64, va + done as u64, n) {
                Ok(io) => io,
                Err(Errno::EOPNOTSUPP) if done == 0 => return None,
                Err(Errno::EOPNOTSUPP) => {
                    // The rest has no direct path (a hole, a mapped page): the page cache.
                    let (at, va, left) = (pos + done as u64, va + done as u64, len - done);
                    let rest = if op == Op::Read {
                        self.ops
                            .read(at, &mut ReadBuf::User { va, len: left }, false)
                    } else {
                        self.ops
                            .write(at, &mut WriteBuf::User { va, len: left }, false)
                    };
                    done += rest.unwrap_or(0);
                    break;
                }
                Err(e) if done == 0 => return Some(Err(e)),
                Err(_) => break,
            };
            let planned = io.bytes();
            match io.run() {
                Ok(k) => {
                    done += k;
                    if k < n || planned < n || done == len {
                        break;
                    }
                }
                Err(e) if done == 0 => return Some(Err(e)),
                Err(_) => break,
            }
        }
        Some(Ok(done))
    }

    /// The data movement of `sendfile` and `copy_file_range`: `len` bytes of `src` from
    /// `src_at` (None: `src`'s offset, which advances) into this file at `at` (None: the
    /// offset, which advances; streams take the bytes as a `write`). Between page-cache
    /// files the pages are shared, not copied (`FileOps::copy_range_from`); otherwise
    /// the bytes go through a kernel buffer. Stops at the source's end. For one file,
    /// overlapping ranges are EINVAL. The caller has checked the descriptors' kinds.
    pub fn copy_range_in(
        &self,
        at: Option<u64>,
        src: &File,
        src_at: Option<u64>,
        len: usize,
    ) -> Result<usize, Errno> {
        if !src.readable() || !self.writable() {
            return Err(Errno::EBADF);
        }
        if src.ops.stream() {
            return Err(Errno::EINVAL);
        }
        let same = core::ptr::eq(self, src);
        if same && at.is_none() && src_at.is_none() {
            // One offset as both ends: the ranges overlap unless nothing is to be copied
            // (nothing asked, or the offset at the end), which is 0 as on Linux.
            let pos = *self.pos.lock();
            return if len == 0 || pos >= self.ops.size() {
                Ok(0)
            } else {
                Err(Errno::EINVAL)
            };
        }
        // Offsets in use are locked (two descriptions in address order, like any two
        // locks of one class).
        let dst_pos = at.is_none() && !self.ops.stream();
        let (mut dst_guard, mut src_guard) = match (dst_pos, src_at.is_none()) {
            (true, true) if (self as *const File) < (src as *const File) => {
                let d = self.pos.lock();
                (Some(d), Some(src.pos.lock()))
            }
            (true, true) => {
                let s = src.pos.lock();
                (Some(self.pos.lock()), Some(s))
            }
            (true, false) => (Some(self.pos.lock()), None),
            (false, true) => (None, Some(src.pos.lock())),
            (false, false) => (None, None),
        };
        let from = src_at.or(src_guard.as_deref().copied()).unwrap_or(0);
        let to = at.or(dst_guard.as_deref().copied()).unwrap_or(0);
        if from > i64::MAX as u64 || to > i64::MAX as u64 {
            return Err(Errno::EINVAL);
        }
        let len = (len as u64).min(src.ops.size().saturating_sub(from)) as usize;
        if len == 0 {
            return Ok(0);
        }
        // One file's data, through one description or two.
        let same_data = match (self.ops.cached_inode(), src.ops.cached_inode()) {
            (Some(a), Some(b)) => Arc::ptr_eq(&a, &b),
            _ => same || Arc::ptr_eq(&self.node, &src.node),
        };
        if same_data && to < from + len as u64 && from < to + len as u64 {
            return Err(Errno::EINVAL);
        }
        if !self.ops.stream() {
            check_end(to, len)?;
        }
        let moved = match (self.ops.stream(), src.ops.cached_inode()) {
            // From a page-cache file: to another, the pages are shared; to a raw device,
            // it DMAs from the source's frames.
            (false, Some(inode)) => match self.ops.copy_range_from(to, &inode, from, len) {
                Err(Errno::EOPNOTSUPP) => self.copy_through_buffer(to, src, from, len)?,
                r => r?,
            },
            // From a raw block device (it fills frames by DMA) into a page-cache file:
            // the frames become the target's pages. Other sources use a buffer.
            (false, None) if src.kind() == FileKind::BlockDevice => {
                self.copy_from_disk(to, src, from, len)?
            }
            _ => self.copy_through_buffer(to, src, from, len)?,
        };
        if let Some(p) = dst_guard.as_deref_mut() {
            *p = to + moved as u64;
        }
        if let Some(p) = src_guard.as_deref_mut() {
            *p = from + moved as u64;
        }
        Ok(moved)
    }

    /// [`File::copy_range_in`] from a raw block device: to another raw device past the
    /// page cache where it can ([`Node::copy_from_disk`]: whole sectors, the rest
    /// through a buffer), else as [`File::copy_from_device`].
    fn copy_from_disk(&self, to: u64, src: &File, from: u64, len: usize) -> Result<usize, Errno> {
        let Some(disk) = super::devfs::disk_of(&src.node) else {
            return self.copy_from_device(to, src, from, len);
        };
        let done = match self.node.copy_from_disk(to, &disk, from, len) {
            Err(Errno::EOPNOTSUPP) => return self.copy_from_device(to, src, from, len),
            r => r?,
        };
        // A tail under a sector goes through a buffer; a short copy stops there.
        if done > 0 && done == len / 512 * 512 && done < len {
            let tail =
                self.copy_through_buffer(to + done as u64, src, from + done as u64, len - done);
            return Ok(done + tail.unwrap_or(0));
        }
        Ok(done)
    }

    /// [`File::copy_range_in`] from a source without a page cache: the target's whole
    /// pages are filled by the source's DMA (a raw block device) where both allow it,
    /// the partial head and tail (and everything else) go through a kernel buffer.
    fn copy_from_device(&self, to: u64, src: &File, from: u64, len: usize) -> Result<usize, Errno> {
        const PAGE: u64 = mm::FRAME_SIZE as u64;
        let head = (((PAGE - to % PAGE) % PAGE) as usize).min(len);
        let mut done = 0usize;
        if head > 0 {
            done = self.copy_through_buffer(to, src, from, head)?;
            if done < head {
                return Ok(done);
            }
        }
        let base = from + done as u64;
        let filled = self
            .ops
            .fill_from(to + done as u64, len - done, &mut |off, frames| {
                src.ops.fill_frames(base + off, frames)
            });
        match filled {
            Ok(n) => done += n,
            Err(Errno::EOPNOTSUPP) => {}
            Err(e) if done == 0 => return Err(e),
            Err(_) => return Ok(done),
        }
        if done < len {
            match self.copy_through_buffer(to + done as u64, src, from + done as u64, len - done) {
                Ok(n) => done += n,
                Err(e) if done == 0 => return Err(e),
                Err(_) => {}
            }
        }
        Ok(done)
    }

    /// [`File::copy_range_in`] for files whose data is not in the page cache (or a
    /// stream as the target): read into a kernel buffer, write from it. The source
    /// advances by what was written.
    fn copy_through_buffer(
        &self,
        to: u64,
        src: &File,
        from: u64,
        len: usize,
    ) -> Result<usize, Errno> {
        const BOUNCE: usize = 64 << 10;
        let mut buf = alloc::vec![0u8; BOUNCE.min(len)];
        let mut done = 0usize;
        while done < len {
            let want = (len - done).min(buf.len());
            let r = src.ops.read(
                from + done as u64,
                &mut ReadBuf::Kernel(&mut buf[..want]),
                false,
            );
            let got = match r {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            };
            let w = self.ops.write(
                to + done as u64,
                &mut WriteBuf::Kernel(&buf[..got]),
                self.nonblock(),
            );
            match w {
                Ok(n) => {
                    done += n;
                    if n < got {
                        break;
                    }
                }
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            }
        }
        // (The copies are counted where they happen: the page cache, devices.)
        Ok(done)
    }

    /// `lseek(2)`.
    pub fn seek(&self, offset: i64, whence: u32) -> Result<u64, Errno> {
        if self.ops.stream() {
            return Err(Errno::ESPIPE);
        }
        let dir = self.kind() == FileKind::Directory;
        let mut pos = self.pos.lock();
        let base: i64 = match whence {
            SEEK_SET => 0,
            SEEK_CUR => *pos as i64,
            SEEK_END if !dir => self.ops.size() as i64,
            SEEK_DATA | SEEK_HOLE if !dir => {
                let size = self.ops.size() as i64;
                if offset < 0 || offset >= size {
                    return Err(Errno::ENXIO);
                }
                // No holes are reported: data everywhere, the one hole at the end.
                let at = if whence == SEEK_DATA { offset } else { size };
                *pos = at as u64;
                return Ok(at as u64);
            }
            _ => return Err(Errno::EINVAL),
        };
        let new = base.checked_add(offset).ok_or(Errno::EOVERFLOW)?;
        if new < 0 {
            return Err(Errno::EINVAL);
        }
        *pos = new as u64;
        Ok(new as u64)
    }

    /// The current offset.
    pub fn offset(&self) -> u64 {
        *self.pos.lock()
    }

    pub fn stat(&self) -> Result<Stat, Errno> {
        self.node.stat()
    }

    /// `ftruncate(2)`.
    pub fn truncate(&self, len: u64) -> Result<(), Errno> {
        if !self.writable() {
            return Err(Errno::EINVAL);
        }
        if self.kind() != FileKind::Regular {
            return Err(Errno::EINVAL);
        }
        if let Some(l) = &self.loc
            && l.mount().read_only
        {
            return Err(Errno::EROFS);
        }
        self.node.truncate(len)
    }

    pub fn fsync(&self, data_only: bool) -> Result<(), Errno> {
        self.ops.fsync(data_only)
    }

    pub fn ioctl(&self, cmd: u32, arg: u64) -> Result<u64, Errno> {
        if cmd == super::devfs::BLKDISCARD && !self.writable() {
            return Err(Errno::EBADF);
        }
        self.ops.ioctl(cmd, arg)
    }

    /// The page-cache inode of an ext2 regular file (its `cache()` and `size()`), for
    /// `mmap`; None for files whose data is not in the page cache.
    pub fn cached_inode(&self) -> Option<Arc<super::ext2::Inode>> {
        self.ops.cached_inode()
    }

    /// Directory entries from the cursor: `emit` takes each until it returns false (the
    /// entry it refused is returned again next time). Returns how many it took.
    pub fn read_dir(&self, mut emit: impl FnMut(&DirEntry) -> bool) -> Result<usize, Errno> {
        if self.kind() != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        let mut pos = self.pos.lock();
        let mut taken = 0;
        loop {
            let batch = self.node.readdir(*pos)?;
            if batch.is_empty() {
                return Ok(taken);
            }
            for e in &batch {
                if !emit(e) {
                    return Ok(taken);
                }
                taken += 1;
                *pos = e.next;
            }
        }
    }
}

/// EFBIG/EINVAL for a write that would end past the largest offset.
fn check_end(at: u64, len: usize) -> Result<(), Errno> {
    if at > i64::MAX as u64 {
        return Err(Errno::EINVAL);
    }
    if at
        .checked_add(len as u64)
        .is_none_or(|e| e > i64::MAX as u64)
    {
        return Err(Errno::EFBIG);
    }
    Ok(())
}

/// Most descriptors per process (`RLIMIT_NOFILE`).
pub const MAX_FDS: usize = 1024;

#[derive(Clone)]
struct FdEntry {
    file: Arc<File>,
    cloexec: bool,
}

/// A process's descriptor table (fd -> open file description + `FD_CLOEXEC`), working
/// directory and umask.
pub struct ProcessFiles {
    fds: Vec<Option<FdEntry>>,
    /// None: `/`.
    cwd: Option<Loc>,
    umask: u32,
    /// AIO contexts (`io_setup`); not inherited by `fork`, gone at `exec` and `exit`.
    aio: Vec<Arc<AioContext>>,
}

impl ProcessFiles {
    /// No descriptors, working directory `/`, umask 022.
    pub fn new_empty() -> ProcessFiles {
        ProcessFiles {
            fds: Vec::new(),
            cwd: None,
            umask: 0o022,
            aio: Vec::new(),
        }
    }

    /// Descriptors 0, 1 and 2 on one open description of `/dev/console`; working
    /// directory `/`.
    pub fn new_console() -> Result<ProcessFiles, Errno> {
        let mut pf = ProcessFiles::new_empty();
        let console = super::ops::open(&Loc::root(), b"/dev/console", O_RDWR, 0)?;
        for _ in 0..3 {
            pf.insert(console.clone(), false)?;
        }
        Ok(pf)
    }

    /// A copy for a child: the same open descriptions (shared offsets), same directory.
    pub fn fork(&self) -> ProcessFiles {
        ProcessFiles {
            fds: self.fds.clone(),
            cwd: self.cwd.clone(),
            umask: self.umask,
            aio: Vec::new(),
        }
    }

    /// Add an AIO context.
    pub fn add_aio(&mut self, ctx: Arc<AioContext>) {
        self.aio.push(ctx);
    }

    /// The AIO context `id` (EINVAL if there is none).
    pub fn aio(&self, id: u64) -> Result<Arc<AioContext>, Errno> {
        self.aio
            .iter()
            .find(|c| c.id == id)
            .cloned()
            .ok_or(Errno::EINVAL)
    }

    /// Remove the AIO context `id` (EINVAL if there is none).
    pub fn remove_aio(&mut self, id: u64) -> Result<Arc<AioContext>, Errno> {
        let i = self
            .aio
            .iter()
            .position(|c| c.id == id)
            .ok_or(Errno::EINVAL)?;
        Ok(self.aio.swap_remove(i))
    }

    /// Close the `FD_CLOEXEC` descriptors (at exec).
    pub fn exec_cleanup(&mut self) {
        for slot in self.fds.iter_mut() {
            if slot.as_ref().is_some_and(|e| e.cloexec) {
                *slot = None;
            }
        }
        self.trim();
        self.aio.clear();
    }

    /// Close everything (at exit). Requests in flight keep their AIO context and pins
    /// until they complete.
    pub fn close_all(&mut self) {
        self.fds.clear();
        self.aio.clear();
    }

    fn trim(&mut self) {
        while matches!(self.fds.last(), Some(None)) {
            self.fds.pop();
        }
    }

    /// The open description of `fd`.
    pub fn get(&self, fd: i32) -> Result<Arc<File>, Errno> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.fds.get(i))
            .and_then(|s| s.as_ref())
            .map(|e| e.file.clone())
            .ok_or(Errno::EBADF)
    }

    /// Install `file` at the lowest free descriptor `>= min`.
    pub fn insert_from(
        &mut self,
        min: usize,
        file: Arc<File>,
        cloexec: bool,
    ) -> Result<i32, Errno> {
        if min >= MAX_FDS {
            return Err(Errno::EINVAL);
        }
        let free = (min..MAX_FDS).find(|&i| self.fds.get(i).is_none_or(|s| s.is_none()));
        let i = free.ok_or(Errno::EMFILE)?;
        if i >= self.fds.len() {
            self.fds.resize(i + 1, None);
        }
        self.fds[i] = Some(FdEntry { file, cloexec });
        Ok(i as i32)
    }

    /// Install `file` at the lowest free descriptor.
    pub fn insert(&mut self, file: Arc<File>, cloexec: bool) -> Result<i32, Errno> {
        self.insert_from(0, file, cloexec)
    }

    /// Put `file` at `fd`, returning what was there (for the caller to drop after
    /// letting go of the table).
    pub fn set(
        &mut self,
        fd: i32,
        file: Arc<File>,
        cloexec: bool,
    ) -> Result<Option<Arc<File>>, Errno> {
        let i = usize::try_from(fd)
            .ok()
            .filter(|&i| i < MAX_FDS)
            .ok_or(Errno::EBADF)?;
        if i >= self.fds.len() {
            self.fds.resize(i + 1, None);
        }
        Ok(self.fds[i]
            .replace(FdEntry { file, cloexec })
            .map(|e| e.file))
    }

    /// Remove `fd`, returning its description (drop it after letting go of the table).
    pub fn close(&mut self, fd: i32) -> Result<Arc<File>, Errno> {
        let i = usize::try_from(fd).map_err(|_| Errno::EBADF)?;
        let e = self
            .fds
            .get_mut(i)
            .and_then(|s| s.take())
            .ok_or(Errno::EBADF)?;
        self.trim();
        Ok(e.file)
    }

    /// `FD_CLOEXEC` of `fd`.
    pub fn cloexec(&self, fd: i32) -> Result<bool, Errno> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.fds.get(i))
            .and_then(|s| s.as_ref())
            .map(|e| e.cloexec)
            .ok_or(Errno::EBADF)
    }

    pub fn set_cloexec(&mut self, fd: i32, on: bool) -> Result<(), Errno> {
        let e = usize::try_from(fd)
            .ok()
            .and_then(|i| self.fds.get_mut(i))
            .and_then(|s| s.as_mut())
            .ok_or(Errno::EBADF)?;
        e.cloexec = on;
        Ok(())
    }

    /// Open descriptors.
    pub fn count(&self) -> usize {
        self.fds.iter().filter(|s| s.is_some()).count()
    }

    /// The working directory.
    pub fn cwd(&self) -> Loc {
        self.cwd.clone().unwrap_or_else(Loc::root)
    }

    /// Change the working directory (must be a directory).
    pub fn set_cwd(&mut self, loc: Loc) -> Result<(), Errno> {
        if loc.node().kind() != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        self.cwd = Some(loc);
        Ok(())
    }

    pub fn umask(&self) -> u32 {
        self.umask
    }

    /// Set the umask, returning the old one.
    pub fn set_umask(&mut self, m: u32) -> u32 {
        core::mem::replace(&mut self.umask, m & 0o777)
    }

    /// Where a `*at` call with `dirfd` starts: the working directory for `AT_FDCWD`,
    /// else the directory open at `dirfd`.
    pub fn start(&self, dirfd: i32) -> Result<Loc, Errno> {
        if dirfd == AT_FDCWD {
            return Ok(self.cwd());
        }
        let f = self.get(dirfd)?;
        match &f.loc {
            Some(l) if l.node().kind() == FileKind::Directory => Ok(l.clone()),
            _ => Err(Errno::ENOTDIR),
        }
    }
}

/// `AT_FDCWD`.
pub const AT_FDCWD: i32 = -100;
