//! ext2 on a kernel disk: the metadata path (the file system's block cache reads and
//! writes through [`DiskBlocks`]), the data path ([`FilePages`], which the page cache
//! calls to DMA file pages straight into and out of their frames), the in-memory inodes
//! of regular files ([`Inode`]: page-cache index and size), open files with their own
//! writeback-error cursor ([`OpenFile`]) and the VFS node ([`Ext2Node`]).
//!
//! Locks: the file system (`Mount::fs`) is an `mm::sync::Mutex`, held across metadata
//! disk I/O; the page cache is never called with it held (its misses and writeback
//! take it through [`FilePages`]).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use drivers::block::{BlockDevice, BlockError, Op, Request, Segment};
use fs::blockdev::BlockDev;
use fs::error::FsError;
use fs::ext2::{Ext2, MountOptions, ROOT_INO};
use mm::counters::{self, Counter};
use mm::frame::{FRAME_SIZE, Pfn};
use mm::frame_table::Owner;
use mm::page_cache::{CachedFile, EIO, ENOMEM, IoError, PageIo, ReadDone};
use mm::sync::Mutex;

use super::node::*;
use super::page_cache;
use crate::block::Disk;
use crate::errno::Errno;
use crate::memory::frames;
use crate::time;

fn fs_err(e: BlockError) -> FsError {
    match e {
        BlockError::OutOfRange
        | BlockError::ZeroLength
        | BlockError::Misaligned
        | BlockError::TooLarge => FsError::Invalid,
        BlockError::ReadOnly => FsError::ReadOnly,
        _ => FsError::Io,
    }
}

/// The file system's metadata I/O on a disk. Its buffers are heap memory, which is not
/// physically contiguous, so each 4 KiB piece goes through a frame of its own (one
/// request, one segment per frame) and is copied; the copies are counted in
/// `metadata_copy_bytes`. File data never takes this path.
pub struct DiskBlocks {
    pub disk: Arc<Disk>,
}

impl DiskBlocks {
    fn transfer(
        &self,
        op: Op,
        sector: u64,
        len: usize,
        mut each: impl FnMut(usize, Pfn, usize),
    ) -> Result<(), FsError> {
        if len == 0 || !len.is_multiple_of(512) {
            return Err(FsError::Invalid);
        }
        let n = len.div_ceil(FRAME_SIZE);
        let mut pfns = Vec::with_capacity(n);
        for _ in 0..n {
            // Kernel class: metadata I/O must make progress under memory pressure (it is
            // how dirty pages get written back), so it may use half of the reserve.
            match crate::memory::alloc_frame(Owner::Kernel, crate::memory::Gfp::Kernel) {
                Ok(p) => pfns.push(p),
                Err(_) => {
                    for p in pfns {
                        let _ = frames().put(p);
                    }
                    return Err(FsError::Io);
                }
            }
        }
        let segs: Vec<Segment> = pfns
            .iter()
            .enumerate()
            .map(|(i, p)| Segment {
                phys: p.addr(),
                len: (len - i * FRAME_SIZE).min(FRAME_SIZE) as u32,
            })
            .collect();
        if op == Op::Write {
            for (i, &p) in pfns.iter().enumerate() {
                each(i * FRAME_SIZE, p, segs[i].len as usize);
            }
        }
        let result = self.disk.io(op, sector, segs.clone());
        if op == Op::Read && result.is_ok() {
            for (i, &p) in pfns.iter().enumerate() {
                each(i * FRAME_SIZE, p, segs[i].len as usize);
            }
        }
        for p in pfns {
            let _ = frames().put(p);
        }
        counters::add(Counter::MetadataCopyBytes, len as u64);
        result.map(|_| ()).map_err(fs_err)
    }
}

impl BlockDev for DiskBlocks {
    fn sector_count(&self) -> u64 {
        self.disk.info().sectors
    }

    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), FsError> {
        let len = buf.len();
        self.transfer(Op::Read, sector, len, |off, p, n| {
            mm::phys::read(p, 0, &mut buf[off..off + n])
        })
    }

    fn write(&self, sector: u64, buf: &[u8]) -> Result<(), FsError> {
        self.transfer(Op::Write, sector, buf.len(), |off, p, n| {
            mm::phys::write(p, 0, &buf[off..off + n])
        })
    }

    fn flush(&self) -> Result<(), FsError> {
        match self.disk.flush() {
            Ok(_) | Err(BlockError::Unsupported) => Ok(()),
            Err(e) => Err(fs_err(e)),
        }
    }
}

/// One file's pages on disk: maps file blocks with ext2's block map and moves whole runs
/// of frames in block requests whose segments are the page-cache frames themselves.
pub struct FilePages {
    pub fs: Arc<Mutex<Ext2>>,
    pub disk: Arc<Disk>,
    pub ino: u32,
}

/// A piece of a transfer: `sectors` on disk starting at `sector`, to or from the frame
/// ranges in `segs`.
struct Extent {
    sector: u64,
    segs: Vec<Segment>,
}

impl FilePages {
    /// Map every block of pages `first..first + frames.len()` and group them into
    /// extents of consecutive disk blocks. Holes (when not allocating) are zero-filled
    /// in the frame and left out. The whole range is mapped with one walk of the inode
    /// (`map_range`), not one per block.
    fn extents(&self, first: u64, frames: &[Pfn], alloc: bool) -> Result<Vec<Extent>, IoError> {
        let mut fs = self.fs.lock();
        let bs = fs.block_size() as u64;
        let spb = fs.sectors_per_block() as u64;
        let per_page = FRAME_SIZE as u64 / bs;
        // Blocks wholly past the end of the file are neither allocated nor written (ext2
        // must not own blocks beyond i_size); on reads they are zeros.
        let size = fs.stat(self.ino).map_err(|e| IoError(e.errno()))?.size;
        let first_block = first * per_page;
        let blocks = frames.len() as u64 * per_page;
        let inside = size.div_ceil(bs).saturating_sub(first_block).min(blocks);
        let mut map: Vec<Option<u64>> = alloc::vec![None; blocks as usize];
        fs.map_range(self.ino, first_block, inside, alloc, |fb, b| {
            map[(fb - first_block) as usize] = b;
        })
        .map_err(|e| IoError(e.errno()))?;
        drop(fs);
        let max_segments = self.disk.info().max_segments;
        let mut out: Vec<Extent> = Vec::new();
        let mut next_sector = u64::MAX;
        for (i, block) in map.into_iter().enumerate() {
            let pfn = frames[i / per_page as usize];
            let b = i as u64 % per_page;
            let Some(block) = block else {
                // A read of a hole or of blocks past the end finds zeros; a write zeroes
                // blocks past the end in the frame too (stores through a mapping may
                // have reached them, and a later extension must read zeros), unless
                // the frame is shared with another file's page, whose bytes these are
                // (an aliased page is always whole inside both files: truncating either
                // side to inside it breaks the share first).
                let shared = crate::memory::frames()
                    .table()
                    .get(pfn)
                    .is_some_and(|d| d.sharers() > 1);
                if !alloc || !shared {
                    mm::phys::zero(pfn, (b * bs) as usize, bs as usize);
                }
                next_sector = u64::MAX;
                continue;
            };
            let seg = Segment {
                phys: pfn.addr() + b * bs,
                len: bs as u32,
            };
            let sector = block * spb;
            match out.last_mut() {
                Some(e) if sector == next_sector && e.segs.len() < max_segments => {
                    // Merge with the previous segment when the frame range continues.
                    let last = e.segs.last_mut().expect("extent has a segment");
                    if last.phys + last.len as u64 == seg.phys {
                        last.len += seg.len;
                    } else {
                        e.segs.push(seg);
                    }
                }
                _ => out.push(Extent {
                    sector,
                    segs: alloc::vec![seg],
                }),
            }
            next_sector = sector + spb;
        }
        Ok(out)
    }

    /// Submit every extent at once and wait for all of them.
    fn run(&self, op: Op, extents: Vec<Extent>) -> Result<(), IoError> {
        let left = Arc::new(AtomicUsize::new(extents.len()));
        let failed = Arc::new(AtomicUsize::new(0));
        for e in extents {
            let (l, f) = (left.clone(), failed.clone());
            let req = Request::new(
                op,
                e.sector,
                e.segs,
                Box::new(move |c| {
                    if c.result.is_err() {
                        f.fetch_add(1, Ordering::SeqCst);
                    }
                    l.fetch_sub(1, Ordering::SeqCst);
                }),
            );
            if self.disk.submit(req).is_err() {
                failed.fetch_add(1, Ordering::SeqCst);
                left.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.disk.wait_until(&|| left.load(Ordering::SeqCst) == 0);
        if failed.load(Ordering::SeqCst) == 0 {
            Ok(())
        } else {
            Err(IoError(EIO))
        }
    }
}

impl PageIo for FilePages {
    fn read_pages(&self, first: u64, frames: &[Pfn]) -> Result<(), IoError> {
        let extents = self.extents(first, frames, false)?;
        self.run(Op::Read, extents)
    }

    /// Readahead: every extent goes to the disk at once and this returns; the last
    /// completion (in the disk interrupt) reports the result.
    fn start_read(&self, first: u64, frames: &[Pfn], done: ReadDone) {
        let extents = match self.extents(first, frames, false) {
            Ok(e) => e,
            Err(e) => return done(Err(e)),
        };
        if extents.is_empty() {
            return done(Ok(())); // all holes, already zeroed
        }
        struct Pending {
            left: AtomicUsize,
            failed: AtomicBool,
            done: spin::Mutex<Option<ReadDone>>,
        }
        let p = Arc::new(Pending {
            left: AtomicUsize::new(extents.len()),
            failed: AtomicBool::new(false),
            done: spin::Mutex::new(Some(done)),
        });
        // Called once per extent, from the interrupt handler or (a refused submit) here,
        // always with interrupts off: the last one runs `done`.
        let finish = |p: &Pending, ok: bool| {
            if !ok {
                p.failed.store(true, Ordering::SeqCst);
            }
            if p.left.fetch_sub(1, Ordering::SeqCst) == 1
                && let Some(d) = p.done.lock().take()
            {
                d(if p.failed.load(Ordering::SeqCst) {
                    Err(IoError(EIO))
                } else {
                    Ok(())
                });
            }
        };
        for e in extents {
            let pc = p.clone();
            let req = Request::new(
                Op::Read,
                e.sector,
                e.segs,
                Box::new(move |c| finish(&pc, c.result.is_ok())),
            );
            if self.disk.submit(req).is_err() {
                crate::arch::cpu::without_interrupts(|| finish(&p, false));
            }
        }
    }

    fn write_pages(&self, first: u64, frames: &[Pfn]) -> Result<(), IoError> {
        let extents = self
            .extents(first, frames, true)
            .map_err(|e| if e.0 == 0 { IoError(ENOMEM) } else { e })?;
        self.run(Op::Write, extents)
    }
}

// ---- mounts, inodes, open files -------------------------------------------------

fn now_secs() -> u64 {
    time::now_ns() / 1_000_000_000
}

/// Keep the page cache's clock (seconds since boot) current, for the age of dirty pages.
fn touch_clock() {
    page_cache().set_now(now_secs());
}

/// A page-cache error as a file-system error.
pub fn io_err(e: IoError) -> FsError {
    match e.0 {
        28 => FsError::NoSpace,
        27 => FsError::FileTooBig,
        _ => FsError::Io,
    }
}

fn io_errno(e: IoError) -> Errno {
    Errno::from(io_err(e))
}

/// A regular file's in-memory side: its page-cache index and its size. The mount keeps
/// one per file that has been opened; an open file keeps its own reference, so a file
/// unlinked while open lives on (as an orphan) until its last user goes.
pub struct Inode {
    pub ino: u32,
    cache: Arc<CachedFile>,
    size: AtomicU64,
    fs: Arc<Mutex<Ext2>>,
    /// Serialises writers and truncation (the size bookkeeping around the page cache).
    write_lock: Mutex<()>,
    /// Unlinked: the last reference frees the pages and the inode.
    orphan: AtomicBool,
}

impl Inode {
    /// Current size in bytes.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// The file's page-cache index.
    pub fn cache(&self) -> &Arc<CachedFile> {
        &self.cache
    }

    /// Read at `offset` through the page cache into `buf` (page-cache frames straight
    /// to the destination; the page cache counts the copy).
    pub fn read(&self, offset: u64, buf: &mut ReadBuf) -> Result<usize, Errno> {
        let size = self.size();
        if offset >= size {
            return Ok(0);
        }
        let mut pos = offset;
        buf.fill(|piece| {
            let n = self.cache.read(pos, piece, size).map_err(io_errno)?;
            pos += n as u64;
            Ok(n)
        })
    }

    /// Write `data` at `offset` through the page cache; the size grows as needed
    /// (blocks are allocated at writeback). The caller holds `write_lock`.
    fn write_locked(&self, offset: u64, data: &[u8]) -> Result<usize, FsError> {
        // The size grows *before* the pages are dirtied: writeback triggered by memory
        // pressure in the middle of this write only writes blocks inside the size, so the
        // new pages must already be inside it.
        let old = self.size();
        let end = offset + data.len() as u64;
        if end > old {
            self.fs.lock().set_size(self.ino, end)?;
            self.size.store(end, Ordering::Release);
        }
        touch_clock();
        let result = self.cache.write(offset, data, old).map_err(io_err);
        let done = offset + *result.as_ref().unwrap_or(&0) as u64;
        if end > old && done < end {
            // Short or failed write: the file ends where the data does.
            let keep = done.max(old);
            self.size.store(keep, Ordering::Release);
            self.fs.lock().set_size(self.ino, keep)?;
        }
        result
    }

    /// Write from `buf` at `offset`.
    pub fn write(&self, offset: u64, buf: &mut WriteBuf) -> Result<usize, Errno> {
        let max = self.fs.lock().max_file_size();
        if offset >= max {
            return Err(Errno::EFBIG);
        }
        let len = (buf.len() as u64).min(max - offset) as usize;
        let _w = self.write_lock.lock();
        let mut pos = offset;
        let mut left = len;
        buf.drain(|piece| {
            let piece = &piece[..piece.len().min(left)];
            if piece.is_empty() {
                return Ok(0);
            }
            let n = self.write_locked(pos, piece)?;
            pos += n as u64;
            left -= n;
            // Dirty throttling: past the hard limit, wait for writeback here.
            super::writeback::balance_dirty_pages();
            Ok(n)
        })
    }

    /// Set the size: pages past it leave the cache first, then ext2 frees the blocks.
    pub fn truncate(&self, size: u64) -> Result<(), FsError> {
        let _w = self.write_lock.lock();
        if size > self.fs.lock().max_file_size() {
            return Err(FsError::FileTooBig);
        }
        self.cache.truncate(size).map_err(io_err)?;
        self.fs.lock().truncate(self.ino, size)?;
        self.size.store(size, Ordering::Release);
        Ok(())
    }
}

impl Drop for Inode {
    fn drop(&mut self) {
        if self.orphan.load(Ordering::Acquire) {
            // The data has nowhere to go: drop the pages, then let ext2 free the blocks.
            let _ = self.cache.truncate(0);
            if let Err(e) = self.fs.lock().release(self.ino) {
                log::error!("ext2: freeing unlinked inode {}: {e:?}", self.ino);
            }
        }
    }
}

/// A mounted ext2 file system.
pub struct Mount {
    pub disk: Arc<Disk>,
    pub fs: Arc<Mutex<Ext2>>,
    /// `st_dev` of its files.
    pub dev: u64,
    pub read_only: bool,
    inodes: spin::Mutex<BTreeMap<u32, Arc<Inode>>>,
    /// Unlinked inodes still open somewhere: an operation through a node or descriptor of
    /// such a file must find this inode again, not make a second one (whose hold would
    /// keep the inode from ever being freed).
    orphans: spin::Mutex<BTreeMap<u32, Weak<Inode>>>,
}

/// An open regular file: an inode plus the writeback errors this description has seen.
pub struct OpenFile {
    pub inode: Arc<Inode>,
    mount: Arc<Mount>,
    seen_errors: spin::Mutex<u64>,
}

fn split(path: &str) -> (&str, &str) {
    let p = path.trim_end_matches('/');
    match p.rfind('/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => ("", p),
    }
}

/// The inode of `path` relative to the root ("" is the root itself).
fn lookup_path(fs: &mut Ext2, path: &str) -> Result<u32, FsError> {
    if path.trim_matches('/').is_empty() {
        Ok(ROOT_INO)
    } else {
        fs.resolve(path.as_bytes())
    }
}

/// `st_dev` of a disk: Linux's numbers for virtio (254), SCSI/SATA (8) and NVMe (259).
fn disk_dev(disk: &Disk) -> u64 {
    super::devfs::disk_rdev(disk)
}

impl Mount {
    /// Mount the ext2 file system on `disk`.
    pub fn new(disk: Arc<Disk>, read_only: bool) -> Result<Arc<Mount>, FsError> {
        let dev = Arc::new(DiskBlocks { disk: disk.clone() });
        let mut fs = Ext2::mount(dev, MountOptions { read_only })?;
        fs.set_clock(Arc::new(|| super::node::now() as u32));
        Ok(Arc::new(Mount {
            dev: disk_dev(&disk),
            disk,
            fs: Arc::new(Mutex::new(fs)),
            read_only,
            inodes: spin::Mutex::new(BTreeMap::new()),
            orphans: spin::Mutex::new(BTreeMap::new()),
        }))
    }

    fn resolve(&self, path: &str) -> Result<u32, FsError> {
        lookup_path(&mut self.fs.lock(), path)
    }

    /// The in-memory inode of regular file `ino`.
    pub fn inode(self: &Arc<Self>, ino: u32) -> Result<Arc<Inode>, FsError> {
        if let Some(i) = self.inodes.lock().get(&ino) {
            return Ok(i.clone());
        }
        {
            let mut orphans = self.orphans.lock();
            orphans.retain(|_, w| w.strong_count() > 0);
            if let Some(i) = orphans.get(&ino).and_then(Weak::upgrade) {
                return Ok(i);
            }
        }
        let size = self.fs.lock().stat(ino)?.size;
        let io = FilePages {
            fs: self.fs.clone(),
            disk: self.disk.clone(),
            ino,
        };
        let inode = Arc::new(Inode {
            ino,
            cache: page_cache().open(Box::new(io)),
            size: AtomicU64::new(size),
            fs: self.fs.clone(),
            write_lock: Mutex::new(()),
            orphan: AtomicBool::new(false),
        });
        {
            let mut map = self.inodes.lock();
            if let Some(i) = map.get(&ino) {
                return Ok(i.clone());
            }
            map.insert(ino, inode.clone());
        }
        // Held while cached: an unlink keeps the blocks until the inode is dropped.
        self.fs.lock().hold(ino);
        Ok(inode)
    }

    /// After a name of `ino` went away: if that was its last link, the inode becomes an
    /// orphan, freed (pages, then blocks) when its last user drops it.
    fn forget_if_unlinked(&self, ino: u32) {
        let gone = self
            .fs
            .lock()
            .stat(ino)
            .map(|s| s.nlink == 0)
            .unwrap_or(true);
        if !gone {
            return;
        }
        let inode = self.inodes.lock().remove(&ino);
        if let Some(i) = inode {
            i.orphan.store(true, Ordering::Release);
            self.orphans.lock().insert(ino, Arc::downgrade(&i));
            drop(i);
        }
    }

    /// Open `path` (relative to the mount's root), creating a regular file if asked.
    pub fn open(self: &Arc<Self>, path: &str, create: bool) -> Result<OpenFile, FsError> {
        let ino = match self.resolve(path) {
            Ok(ino) => ino,
            Err(FsError::NotFound) if create => {
                let (dir, name) = split(path);
                let mut fs = self.fs.lock();
                let parent = lookup_path(&mut fs, dir)?;
                fs.create(parent, name.as_bytes(), 0o100644)?
            }
            Err(e) => return Err(e),
        };
        self.open_ino(ino)
    }

    fn open_ino(self: &Arc<Self>, ino: u32) -> Result<OpenFile, FsError> {
        let inode = self.inode(ino)?;
        let seen_errors = inode.cache.error_cursor();
        Ok(OpenFile {
            inode,
            mount: self.clone(),
            seen_errors: spin::Mutex::new(seen_errors),
        })
    }

    /// Make a directory.
    pub fn mkdir(&self, path: &str) -> Result<u32, FsError> {
        let (dir, name) = split(path);
        let mut fs = self.fs.lock();
        let parent = lookup_path(&mut fs, dir)?;
        fs.mkdir(parent, name.as_bytes(), 0o40755)
    }

    /// Rename `from` to `to`.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        let ((fd, fname), (td, tname)) = (split(from), split(to));
        let replaced = {
            let mut fs = self.fs.lock();
            let (a, b) = (lookup_path(&mut fs, fd)?, lookup_path(&mut fs, td)?);
            let replaced = fs.lookup(b, tname.as_bytes()).ok();
            fs.rename(a, fname.as_bytes(), b, tname.as_bytes())?;
            replaced
        };
        if let Some(r) = replaced {
            self.forget_if_unlinked(r);
        }
        Ok(())
    }

    /// Remove the name `path`; when it was the last link, the cached pages go too (once
    /// the file is closed everywhere).
    pub fn unlink(&self, path: &str) -> Result<(), FsError> {
        let (dir, name) = split(path);
        let ino = {
            let mut fs = self.fs.lock();
            let parent = lookup_path(&mut fs, dir)?;
            let ino = fs.lookup(parent, name.as_bytes())?;
            fs.unlink(parent, name.as_bytes())?;
            ino
        };
        self.forget_if_unlinked(ino);
        Ok(())
    }

    /// Write back every file's pages, then the metadata, then flush the disk.
    pub fn sync(&self) -> Result<(), FsError> {
        let inodes: Vec<Arc<Inode>> = self.inodes.lock().values().cloned().collect();
        let mut data = Ok(());
        for i in inodes {
            if let Err(e) = i.cache.writeback() {
                data = Err(io_err(e));
            }
        }
        let meta = self.fs.lock().sync();
        data.and(meta)
    }

    /// Sync and let go of every cached inode (unmount).
    pub fn shutdown(&self) -> Result<(), FsError> {
        let r = self.sync();
        let inodes = core::mem::take(&mut *self.inodes.lock());
        for (_, i) in inodes {
            if i.cache.dirty_pages() > 0 {
                log::warn!(
                    "ext2 {}: inode {} still dirty at unmount",
                    self.disk.name(),
                    i.ino
                );
            }
            drop(i);
        }
        r
    }
}

impl OpenFile {
    /// Current size in bytes.
    pub fn size(&self) -> u64 {
        self.inode.size()
    }

    /// Read at `offset` through the page cache.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        self.inode
            .read(offset, &mut ReadBuf::Kernel(buf))
            .map_err(errno_fs)
    }

    /// Write at `offset` through the page cache; the size grows as needed (blocks are
    /// allocated at writeback).
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<usize, FsError> {
        let max = self.mount.fs.lock().max_file_size();
        if offset.saturating_add(data.len() as u64) > max {
            return Err(FsError::FileTooBig);
        }
        self.inode
            .write(offset, &mut WriteBuf::Kernel(data))
            .map_err(errno_fs)
    }

    /// Set the size: pages past it leave the cache first, then ext2 frees the blocks.
    pub fn truncate(&self, size: u64) -> Result<(), FsError> {
        self.inode.truncate(size)
    }

    /// Data, then metadata, then the disk's cache; reports a writeback error since this
    /// description last looked, even one from background writeback.
    pub fn fsync(&self) -> Result<(), FsError> {
        let data = {
            let mut seen = *self.seen_errors.lock();
            let r = self.inode.cache.fsync(&mut seen).map_err(io_err);
            *self.seen_errors.lock() = seen;
            r
        };
        let meta = self.mount.fs.lock().fsync_inode(self.inode.ino);
        data.and(meta)
    }
}

/// An errno from the VFS layer back as a file-system error (for the kernel-slice API).
fn errno_fs(e: Errno) -> FsError {
    match e {
        Errno::ENOENT => FsError::NotFound,
        Errno::EEXIST => FsError::Exists,
        Errno::ENOTDIR => FsError::NotDir,
        Errno::EISDIR => FsError::IsDir,
        Errno::ENOSPC => FsError::NoSpace,
        Errno::EFBIG => FsError::FileTooBig,
        Errno::EROFS => FsError::ReadOnly,
        Errno::EINVAL => FsError::Invalid,
        _ => FsError::Io,
    }
}

impl FileOps for OpenFile {
    fn read(&self, pos: u64, buf: &mut ReadBuf, _nonblock: bool) -> Result<usize, Errno> {
        self.inode.read(pos, buf)
    }

    fn write(&self, pos: u64, buf: &mut WriteBuf, _nonblock: bool) -> Result<usize, Errno> {
        if self.mount.read_only {
            return Err(Errno::EROFS);
        }
        self.inode.write(pos, buf)
    }

    fn size(&self) -> u64 {
        self.inode.size()
    }

    fn fsync(&self, _data_only: bool) -> Result<(), Errno> {
        OpenFile::fsync(self).map_err(Errno::from)
    }

    fn cached_inode(&self) -> Option<Arc<Inode>> {
        Some(self.inode.clone())
    }
}

// ---- the VFS node -----------------------------------------------------------------

/// A file, directory or symbolic link of a mounted ext2 file system.
pub struct Ext2Node {
    m: Arc<Mount>,
    ino: u32,
    kind: FileKind,
}

fn kind_of(mode: u16) -> FileKind {
    FileKind::from_mode(mode as u32).unwrap_or(FileKind::Regular)
}

impl Ext2Node {
    /// The root directory of `m`.
    pub fn root(m: &Arc<Mount>) -> Result<NodeRef, Errno> {
        let st = m.fs.lock().stat(ROOT_INO)?;
        if kind_of(st.mode) != FileKind::Directory {
            log::error!("ext2 {}: the root inode is not a directory", m.disk.name());
            return Err(Errno::EINVAL);
        }
        Ok(Arc::new(Ext2Node {
            m: m.clone(),
            ino: ROOT_INO,
            kind: FileKind::Directory,
        }))
    }

    fn node(&self, ino: u32) -> Result<NodeRef, Errno> {
        let st = self.m.fs.lock().stat(ino)?;
        Ok(Arc::new(Ext2Node {
            m: self.m.clone(),
            ino,
            kind: kind_of(st.mode),
        }))
    }

    /// Its page-cache side (regular files only).
    pub fn inode(&self) -> Result<Arc<Inode>, Errno> {
        if self.kind != FileKind::Regular {
            return Err(if self.kind == FileKind::Directory {
                Errno::EISDIR
            } else {
                Errno::EINVAL
            });
        }
        Ok(self.m.inode(self.ino)?)
    }

    fn dir(&self) -> Result<(), Errno> {
        if self.kind != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        Ok(())
    }

    fn writable(&self) -> Result<(), Errno> {
        self.dir()?;
        if self.m.read_only {
            return Err(Errno::EROFS);
        }
        Ok(())
    }

    fn same_fs<'a>(&self, other: &'a NodeRef) -> Result<&'a Ext2Node, Errno> {
        match downcast::<Ext2Node>(other) {
            Some(o) if Arc::ptr_eq(&o.m, &self.m) => Ok(o),
            _ => Err(Errno::EXDEV),
        }
    }

    /// The mount it belongs to.
    pub fn mount(&self) -> &Arc<Mount> {
        &self.m
    }

    /// Its inode number.
    pub fn ino(&self) -> u32 {
        self.ino
    }
}

impl Node for Ext2Node {
    fn kind(&self) -> FileKind {
        self.kind
    }

    fn stat(&self) -> Result<Stat, Errno> {
        let st = self.m.fs.lock().stat(self.ino)?;
        let cached = match self.kind {
            FileKind::Regular => self.m.inodes.lock().get(&self.ino).cloned(),
            _ => None,
        };
        let size = cached.as_ref().map_or(st.size, |i| i.size());
        // Blocks are allocated at writeback: while pages are dirty, count the blocks the
        // data will take (as ext4 counts its delayed-allocation reservations).
        let mut blocks = st.blocks;
        if let Some(i) = &cached
            && i.cache.dirty_pages() > 0
        {
            let bs = st.blksize.max(512) as u64;
            blocks = blocks.max(size.div_ceil(bs) * (bs / 512));
        }
        Ok(Stat {
            dev: self.m.dev,
            ino: self.ino as u64,
            mode: st.mode as u32,
            nlink: st.nlink as u32,
            uid: st.uid,
            gid: st.gid,
            rdev: 0,
            size,
            blksize: st.blksize,
            blocks,
            atime: st.atime as i64,
            mtime: st.mtime as i64,
            ctime: st.ctime as i64,
        })
    }

    fn size(&self) -> u64 {
        match self.inode() {
            Ok(i) => i.size(),
            Err(_) => self.stat().map(|s| s.size).unwrap_or(0),
        }
    }

    fn lookup(&self, name: &[u8]) -> Result<NodeRef, Errno> {
        self.dir()?;
        let ino = self.m.fs.lock().lookup(self.ino, name)?;
        self.node(ino)
    }

    fn create(&self, name: &[u8], mode: u32) -> Result<NodeRef, Errno> {
        self.writable()?;
        let ino = self
            .m
            .fs
            .lock()
            .create(self.ino, name, (S_IFREG | (mode & 0o7777)) as u16)?;
        Ok(Arc::new(Ext2Node {
            m: self.m.clone(),
            ino,
            kind: FileKind::Regular,
        }))
    }

    fn mkdir(&self, name: &[u8], mode: u32) -> Result<(), Errno> {
        self.writable()?;
        self.m
            .fs
            .lock()
            .mkdir(self.ino, name, (S_IFDIR | (mode & 0o7777)) as u16)?;
        Ok(())
    }

    fn symlink(&self, name: &[u8], target: &[u8]) -> Result<(), Errno> {
        self.writable()?;
        self.m.fs.lock().symlink(self.ino, name, target)?;
        Ok(())
    }

    fn link(&self, name: &[u8], target: &NodeRef) -> Result<(), Errno> {
        self.writable()?;
        let t = self.same_fs(target)?;
        self.m.fs.lock().link(t.ino, self.ino, name)?;
        Ok(())
    }

    fn unlink(&self, name: &[u8]) -> Result<(), Errno> {
        self.writable()?;
        let ino = {
            let mut fs = self.m.fs.lock();
            let ino = fs.lookup(self.ino, name)?;
            fs.unlink(self.ino, name)?;
            ino
        };
        self.m.forget_if_unlinked(ino);
        Ok(())
    }

    fn rmdir(&self, name: &[u8]) -> Result<(), Errno> {
        self.writable()?;
        self.m.fs.lock().rmdir(self.ino, name)?;
        Ok(())
    }

    fn rename(&self, old: &[u8], new_dir: &NodeRef, new: &[u8]) -> Result<(), Errno> {
        self.writable()?;
        let nd = self.same_fs(new_dir)?;
        nd.dir()?;
        let replaced = {
            let mut fs = self.m.fs.lock();
            let src = fs.lookup(self.ino, old)?;
            let replaced = fs.lookup(nd.ino, new).ok().filter(|&r| r != src);
            fs.rename(self.ino, old, nd.ino, new)?;
            replaced
        };
        if let Some(r) = replaced {
            self.m.forget_if_unlinked(r);
        }
        Ok(())
    }

    fn readdir(&self, cursor: u64) -> Result<Vec<DirEntry>, Errno> {
        self.dir()?;
        let entries = self.m.fs.lock().readdir(self.ino, cursor)?;
        Ok(entries
            .into_iter()
            .map(|e| DirEntry {
                name: e.name,
                ino: e.ino as u64,
                dtype: e.file_type.dt(),
                next: e.next,
            })
            .collect())
    }

    fn readlink(&self) -> Result<Vec<u8>, Errno> {
        if self.kind != FileKind::Symlink {
            return Err(Errno::EINVAL);
        }
        Ok(self.m.fs.lock().readlink(self.ino)?)
    }

    fn read_at(&self, offset: u64, buf: &mut ReadBuf) -> Result<usize, Errno> {
        self.inode()?.read(offset, buf)
    }

    fn write_at(&self, offset: u64, buf: &mut WriteBuf) -> Result<usize, Errno> {
        if self.m.read_only {
            return Err(Errno::EROFS);
        }
        self.inode()?.write(offset, buf)
    }

    fn truncate(&self, size: u64) -> Result<(), Errno> {
        let inode = self.inode()?;
        if self.m.read_only {
            return Err(Errno::EROFS);
        }
        Ok(inode.truncate(size)?)
    }

    fn fsync(&self, _data_only: bool) -> Result<(), Errno> {
        if let Ok(i) = self.inode() {
            i.cache.writeback().map_err(io_errno)?;
        }
        Ok(self.m.fs.lock().fsync_inode(self.ino)?)
    }

    fn chmod(&self, mode: u32) -> Result<(), Errno> {
        if self.m.read_only {
            return Err(Errno::EROFS);
        }
        Ok(self
            .m
            .fs
            .lock()
            .set_mode(self.ino, (mode & 0o7777) as u16)?)
    }

    fn open(&self, me: &NodeRef, _flags: u32) -> Result<Box<dyn FileOps>, Errno> {
        if self.kind == FileKind::Regular {
            Ok(Box::new(self.m.open_ino(self.ino)?))
        } else {
            Ok(Box::new(NodeFile(me.clone())))
        }
    }
}
