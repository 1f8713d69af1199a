//! ext2 on a kernel disk, one concept per file: the metadata path ([`DiskBlocks`]: the
//! file system's block cache reads and writes through it), the data path ([`FilePages`],
//! which the page cache calls to DMA file pages straight into and out of their frames),
//! open files with their own writeback-error cursor ([`OpenFile`]), the VFS node
//! ([`Ext2Node`]); here, the mounted file system ([`Mount`]) and the in-memory inodes of
//! regular files ([`Inode`]: page-cache index, size, write lock).
//!
//! Locks: the file system (`Mount::fs`) is an `mm::sync::Mutex`, held across metadata
//! disk I/O; the page cache is never called with it held (its misses and writeback
//! take it through [`FilePages`]). The kernel-wide order is in `mm::lock_order`.

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
use mm::frame::FRAME_SIZE;
use mm::frame_ref::FrameRef;
use mm::frame_table::Owner;
use mm::page_cache::{CachedFile, EIO, ENOMEM, IoError, PageIo, ReadDone};
use mm::sync::Mutex;

use super::node::*;
use super::page_cache;
use crate::block::Disk;
use crate::errno::Errno;
use crate::time;

mod direct;
mod disk_blocks;
mod file_pages;
mod node;
mod offload;
mod open_file;

pub use disk_blocks::DiskBlocks;
pub use file_pages::FilePages;
pub use node::Ext2Node;
pub use open_file::OpenFile;

/// Bytes a copy between files moves per step through the page cache (dirty throttling
/// runs between steps).
const COPY_CHUNK: usize = 4 << 20;
/// Bytes a copy between files asks the disk to copy per step (nothing is dirtied: the
/// step only bounds the blocks allocated ahead and the requests in flight).
const DEVICE_COPY_CHUNK: usize = 64 << 20;
/// A frame, and the bytes `[offset, offset + len)` of it a transfer covers.
pub type DmaPiece = (FrameRef, usize, usize);

/// Bytes per page-cache page.
const PAGE: u64 = FRAME_SIZE as u64;
/// Pages a copy from a device fills per step.
const FILL_PAGES: u64 = 64;

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

/// A regular file's in-memory side: its page-cache index and its size. The mount keeps
/// one per file that has been opened; an open file keeps its own reference, so a file
/// unlinked while open lives on (as an orphan) until its last user goes.
pub struct Inode {
    pub ino: u32,
    cache: Arc<CachedFile>,
    size: AtomicU64,
    fs: Arc<Mutex<Ext2>>,
    /// The disk the file system is on.
    disk: Arc<Disk>,
    /// Serialises writers and truncation (the size bookkeeping around the page cache).
    write_lock: Mutex<()>,
    /// Unlinked: the last reference frees the pages and the inode.
    orphan: AtomicBool,
    /// Direct reads in flight (their DMA targets this file's blocks): truncation waits
    /// for them, as Linux's `inode_dio_wait`, so no block is freed under a read.
    dio_reads: Arc<AtomicUsize>,
    /// Truncations waiting for `dio_reads` to drain: while one does, new direct reads
    /// take the page cache instead, so the count only falls.
    truncations: AtomicUsize,
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
        buf.fill_from_cache(&self.cache, offset, self.size())
    }

    /// Write `data` at `offset` through the page cache; the size grows as needed
    /// (blocks are allocated at writeback). The caller holds `write_lock`.
    fn write_locked(&self, offset: u64, data: SourcePiece) -> Result<usize, FsError> {
        // The size grows *before* the pages are dirtied: writeback triggered by memory
        // pressure in the middle of this write only writes blocks inside the size, so the
        // new pages must already be inside it.
        let end = offset + data.len() as u64;
        let old = self.grow_to(end)?;
        touch_clock();
        let result = match data {
            SourcePiece::Kernel(d) => self.cache.write(offset, d, old),
            SourcePiece::User(p) => self.cache.write_from_frame(offset, p, old),
        }
        .map_err(io_err);
        let done = offset + *result.as_ref().unwrap_or(&0) as u64;
        self.shrink_after(old, end, done)?;
        result
    }

    /// Make the file at least `end` bytes long, before pages past its old end are
    /// dirtied: writeback triggered by memory pressure meanwhile writes only blocks
    /// inside the size, so the new pages must already be inside it. Returns the old size.
    fn grow_to(&self, end: u64) -> Result<u64, FsError> {
        let old = self.size();
        if end > old {
            self.fs.lock().set_size(self.ino, end)?;
            self.size.store(end, Ordering::Release);
        }
        Ok(old)
    }

    /// After a transfer that grew the file from `old` to `end` but reached only `done`
    /// (short or failed): the file ends where the data does, never below `old`.
    fn shrink_after(&self, old: u64, end: u64, done: u64) -> Result<(), FsError> {
        if end > old && done < end {
            let keep = done.max(old);
            self.size.store(keep, Ordering::Release);
            self.fs.lock().set_size(self.ino, keep)?;
        }
        Ok(())
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
        buf.drain_pieces(|piece| {
            let piece = piece.truncate(left);
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

    /// Copy `len` bytes of `src` from `src_off` to `dst_off` in this file without the CPU
    /// touching whole pages. Whole blocks bypass the page cache where they can
    /// (`offload`): on one disk that copies inside itself they go from block to block on
    /// the device, no frame involved; between two disks, by DMA through transit frames.
    /// Otherwise (and for what is left) the target's pages become aliases of the
    /// source's frames, written to this file's own blocks by DMA from the shared frame at
    /// writeback ([`CachedFile::copy_from`]).
    /// Stops at the source's end. Both files' writers are kept out meanwhile (their
    /// write locks, taken in address order; one lock for a copy within a file, whose
    /// ranges the caller has checked don't overlap).
    pub fn copy_range_from(
        &self,
        dst_off: u64,
        src: &Inode,
        src_off: u64,
        len: usize,
    ) -> Result<usize, Errno> {
        let max = self.fs.lock().max_file_size();
        if dst_off >= max {
            return Err(Errno::EFBIG);
        }
        let same = core::ptr::eq(self, src);
        let (_w1, _w2) = if same {
            (self.write_lock.lock(), None)
        } else if (self as *const Inode) < (src as *const Inode) {
            let w = self.write_lock.lock();
            (w, Some(src.write_lock.lock()))
        } else {
            let w = src.write_lock.lock();
            (self.write_lock.lock(), Some(w))
        };
        let src_size = src.size();
        let len = (len as u64)
            .min(max - dst_off)
            .min(src_size.saturating_sub(src_off)) as usize;
        let mut done = 0usize;
        // Past the page cache while it goes (see `offload`).
        let mut bypass = true;
        while done < len {
            // In chunks, with dirty throttling between them as for writes.
            let at = dst_off + done as u64;
            let mut n = (len - done).min(COPY_CHUNK);
            if bypass {
                let want = (len - done).min(DEVICE_COPY_CHUNK);
                let dev = self.copy_past_cache(at, src, src_off + done as u64, want, src_size);
                done += dev.copied;
                bypass = !dev.refused;
                match dev.failed {
                    Some(e) if done == 0 => return Err(e),
                    Some(_) => break,
                    None if dev.copied > 0 => continue,
                    // Holes first: the page cache copies them, then the device goes on.
                    None if dev.holes > 0 => n = n.min(dev.holes),
                    None => {}
                }
            }
            let end = at + n as u64;
            let old = self.grow_to(end).map_err(Errno::from)?;
            touch_clock();
            let r = self
                .cache
                .copy_from(at, &src.cache, src_off + done as u64, n, src_size, old);
            let k = *r.as_ref().unwrap_or(&0);
            // Nothing copied at all: the file keeps its old size (no hole up to `at`).
            let data_end = if done == 0 && k == 0 {
                old
            } else {
                at + k as u64
            };
            self.shrink_after(old, end, data_end).map_err(Errno::from)?;
            match r {
                Ok(k) => done += k,
                Err(e) if done == 0 => return Err(Errno::from(e)),
                Err(_) => break,
            }
            if k < n {
                break;
            }
            super::writeback::balance_dirty_pages();
        }
        Ok(done)
    }

    /// The frames holding bytes `[off, off + len)` of the file (clipped at its end), each
    /// with the piece of it the range covers, for a device to DMA from (a copy to a raw
    /// block device: no CPU copy). The guard keeps writers and truncation out until it
    /// is dropped, so the bytes stay put while the device reads them.
    pub fn frames_for_dma(
        &self,
        off: u64,
        len: usize,
    ) -> Result<(mm::sync::MutexGuard<'_, ()>, Vec<DmaPiece>), Errno> {
        let w = self.write_lock.lock();
        let size = self.size();
        let end = size.min(off.saturating_add(len as u64));
        let mut out = Vec::new();
        let mut pos = off;
        while pos < end {
            let in_page = (pos % PAGE) as usize;
            let n = ((PAGE - pos % PAGE).min(end - pos)) as usize;
            match self.cache.frame_for_io(pos / PAGE, size) {
                Ok(f) => out.push((f, in_page, n)),
                Err(e) if out.is_empty() => return Err(Errno::from(e)),
                Err(_) => break,
            }
            pos += n as u64;
        }
        Ok((w, out))
    }

    /// Whole pages of this file from `dst_off` (page-aligned), up to `len` bytes, filled
    /// by a device and taken into the page cache as dirty pages: no CPU copy (a copy
    /// from a raw block device). `fill(offset, frames)` DMAs the copy's bytes from
    /// `offset` on into fresh frames and hands them back. A page the cache cannot give
    /// up (busy) is copied in from the filled frame instead. Returns the bytes done
    /// (whole pages; 0 when `dst_off` is not page-aligned or `len` is under a page).
    pub fn fill_from(
        &self,
        dst_off: u64,
        len: usize,
        fill: &mut dyn FnMut(u64, Vec<FrameRef>) -> Result<Vec<FrameRef>, Errno>,
    ) -> Result<usize, Errno> {
        let pages = len as u64 / PAGE;
        if !dst_off.is_multiple_of(PAGE) || pages == 0 {
            return Ok(0);
        }
        let max = self.fs.lock().max_file_size();
        if dst_off >= max {
            return Err(Errno::EFBIG);
        }
        let pages = pages.min((max - dst_off) / PAGE);
        let _w = self.write_lock.lock();
        let mut done = 0u64; // pages
        while done < pages {
            let want = (pages - done).min(FILL_PAGES);
            let at = dst_off + done * PAGE;
            let mut frames = Vec::new();
            for _ in 0..want {
                match page_cache().new_frame() {
                    Ok(f) => frames.push(f),
                    Err(_) => break,
                }
            }
            if frames.is_empty() {
                if done == 0 {
                    return Err(Errno::ENOMEM);
                }
                break;
            }
            let got = frames.len() as u64;
            let end = at + got * PAGE;
            let old = self.grow_to(end).map_err(Errno::from)?;
            touch_clock();
            let filled = match fill(done * PAGE, frames) {
                Ok(f) => f,
                Err(e) => {
                    let data_end = if done == 0 { old } else { at };
                    self.shrink_after(old, end, data_end).map_err(Errno::from)?;
                    if done == 0 {
                        return Err(e);
                    }
                    break;
                }
            };
            for (i, f) in filled.into_iter().enumerate() {
                let index = at / PAGE + i as u64;
                if self.cache.adopt_page(index, f).is_err() {
                    // Busy (or gone): the frame went with the refusal, and the caller's
                    // buffered path takes over from this page on.
                    let data_end = if done == 0 && i == 0 {
                        old
                    } else {
                        index * PAGE
                    };
                    self.shrink_after(old, end, data_end).map_err(Errno::from)?;
                    return Ok(((done + i as u64) * PAGE) as usize);
                }
            }
            done += got;
            if got < want {
                break;
            }
            super::writeback::balance_dirty_pages();
        }
        Ok((done * PAGE) as usize)
    }

    /// Set the size: pages past it leave the cache first, then ext2 frees the blocks.
    pub fn truncate(&self, size: u64) -> Result<(), FsError> {
        if size > self.fs.lock().max_file_size() {
            return Err(FsError::FileTooBig);
        }
        let _w = self.lock_without_direct_reads();
        self.cache.truncate(size).map_err(io_err)?;
        self.fs.lock().truncate(self.ino, size)?;
        self.size.store(size, Ordering::Release);
        Ok(())
    }
}

impl Inode {
    /// The write lock, taken once no direct read is in flight (none can start while it
    /// is held). The reads in flight are waited for without the lock (not interruptibly:
    /// no block may be freed under a DMA): a read `io_submit` has planned starts with its
    /// batch (`START_BATCH` reads), or before any request `io_submit` does itself, and
    /// planning the next one takes the lock.
    fn lock_without_direct_reads(&self) -> mm::sync::MutexGuard<'_, ()> {
        self.truncations.fetch_add(1, Ordering::AcqRel);
        let reads = self.dio_reads.clone();
        let guard = loop {
            crate::block::wait_completions(&|| reads.load(Ordering::Acquire) == 0, None, false);
            let w = self.write_lock.lock();
            if reads.load(Ordering::Acquire) == 0 {
                break w;
            }
        };
        self.truncations.fetch_sub(1, Ordering::AcqRel);
        guard
    }

    /// Whether a truncation is waiting for the direct reads in flight (see
    /// [`Inode::lock_without_direct_reads`]).
    pub(super) fn truncation_pending(&self) -> bool {
        self.truncations.load(Ordering::Acquire) > 0
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
            disk: self.disk.clone(),
            write_lock: Mutex::new(()),
            orphan: AtomicBool::new(false),
            dio_reads: Arc::new(AtomicUsize::new(0)),
            truncations: AtomicUsize::new(0),
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
