//! The page cache: per-file indexes of 4 KiB pages over frame descriptors.
//!
//! A file's pages live in a [`CachedFile`]: a map from page index to [`Page`]. A page owns
//! one reference to its frame. The frame's `LOCKED` flag means a read into it is in flight;
//! `UPTODATE` means its contents are valid. Whether a page must be written (`dirty`) and
//! whether its writeback is in flight (`writeback`) are kept per *page*, not per frame:
//! once sendfile makes pages of two files share one frame (aliases), the target may be
//! dirty (its blocks still need writing) while the source is clean, so a per-frame dirty
//! bit would let one file's writeback clear the other's.
//!
//! File I/O goes through [`PageIo`], which the kernel implements per file with the file
//! system's block map and block requests whose segments are the page frames themselves:
//! read misses and writeback DMA straight into and out of these frames, never through a
//! copy. The only copies are the ones a `read`/`write` system call must make to and from
//! user memory (counted in `data_copy_bytes`) and the stable-page copy below.
//!
//! Transitions:
//! - read miss: frames allocated for a readahead window, marked `LOCKED`, inserted, and a
//!   read started (`PageIo::start_read`); its completion, from the disk interrupt, sets
//!   `UPTODATE` (or `ERROR`), clears `LOCKED` and wakes the frame's waiters, who sleep
//!   meanwhile. A reader finding `ERROR` drops the failed pages and returns EIO, so a later
//!   read retries. A sequential reader reaching the window requested last starts the next
//!   one without waiting (asynchronous readahead, windows growing to 1 MiB);
//! - write: the page is made present and up to date (read first only for a partial write
//!   inside the file), the bytes copied in, the page marked dirty;
//! - write to a page under writeback: the DMA must keep reading stable data, so the page
//!   moves to a copy of the frame and the I/O finishes on the old one, which writeback
//!   holds a reference to ("stable pages");
//! - writeback: dirty pages are marked `writeback`, written in contiguous runs (batches of
//!   at most [`WRITEBACK_BATCH`] pages), then clean; on error they stay dirty and are
//!   retried, up to [`WRITE_ATTEMPTS`] times, then given up (clean, data still cached); the
//!   file's error sequence advances, so the next `fsync` of *every* open file description
//!   reports it once. `nr_dirty` and `nr_writeback` follow every transition;
//! - eviction (CLOCK over all files): clean, unmapped, unpinned pages whose frames nobody
//!   but the cache's pages holds; under memory pressure dirty pages are written back
//!   first (by the kernel's policy). An aliased page may be evicted: its frame stays with
//!   the other sharers and is freed (and counted as freed) with the last of them;
//! - alias ([`CachedFile::alias_page`], for sendfile): page `i` of file B takes page `j`
//!   of file A's frame (read in first if needed) and is marked dirty, so B's writeback
//!   DMAs A's bytes to B's blocks straight from the shared frame. The frame descriptor
//!   counts the pages sharing it (`sharers`); every page owns one frame reference;
//! - copy-on-write: any change to a page's bytes (write, truncate's tail zeroing, a
//!   writable shared mapping) first gives the page a private copy if its frame is shared
//!   (counted in `cow_breaks`); the other sharers keep the frame and their bytes.
//!
//! ## Locking
//!
//! | pair of operations | serialised by |
//! |---|---|
//! | read / read, read / write, write / write on one file | the file's `state` lock (page lookup and insertion); copies run with a frame reference held |
//! | read or write / writeback | `state` lock to flip `dirty`/`writeback`; the I/O runs unlocked on frames writeback holds references to; a write meanwhile copies the page (stable pages) |
//! | any / truncate | `state` lock; pages past the end leave the index, frames in flight stay alive through their I/O references |
//! | any / fsync | fsync is writeback plus the error sequence (atomic) |
//! | any / eviction | eviction takes the `lru` lock, drops it, then takes the file's `state` lock; nothing takes `lru` while holding `state` except to append. Eviction only *tries* its locks: it may run inside a heap allocation made with one of them held |
//! | read completion / any | the completion runs in the disk interrupt and takes no lock: it changes frame flags (atomics), drops the read's frame references and wakes waiters |
//! | frame allocation / eviction | no `state` lock is held while allocating (allocation may evict) |
//! | page fault (mmap) / any | `map_page` looks the page up under `state` and gives the mapping its own frame reference (so eviction skips it); stores through a shared mapping reach the cache as `mapped_page_dirtied` (from the PTE dirty bits at msync, munmap, fsync, sync, exit) |
//! | write / writeback of a mapped page | a write to a page under writeback whose frame is also mapped waits for the I/O instead of moving the page to a copy (the mapping must keep seeing the cache's frame) |
//! | read miss / truncate | the read holds its own frame references until the I/O completes, so truncate may drop the pages meanwhile without freeing frames under DMA |
//! | write / alias of the same source page | the caller of `alias_page` keeps writes to the source page out (the file's write lock); a write that comes after sees two sharers and breaks the share |
//! | "is this frame shared?" | decided from the frame's sharer count under the changing file's `state` lock; a share is only ever added under the source's and target's `state` locks in turn with the source frame held by a reference, so two files breaking at once each copy (one copy too many at worst, never a lost break) |
//! | direct I/O | not yet implemented; it will take the `state` lock like write |

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use crate::sync::SpinMutex as Mutex;

use crate::counters::{self, Counter};
use crate::frame::{FRAME_SIZE, Pfn};
use crate::frame_alloc::FrameAllocator;
use crate::frame_ref::FrameRef;
use crate::frame_table::{FrameFlags, Owner};
use crate::phys::{self, FramePiece};

const PAGE: u64 = FRAME_SIZE as u64;
/// Linux errno values returned by the page cache.
pub const EIO: i32 = 5;
/// Out of memory.
pub const ENOMEM: i32 = 12;
/// In use (a page that cannot be aliased now).
pub const EBUSY: i32 = 16;

/// A failed page-cache operation, as a Linux errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoError(pub i32);

/// How the page cache reaches a file's blocks. Implementations put each frame in its own
/// block-request segment: no bounce, no copy.
///
/// Each call owns a reference to every frame it is given ([`FrameRef`]): the I/O keeps
/// them until the device is done with the frames (a block request owns them until its
/// completion), so a page truncated or evicted meanwhile never has its frame reused
/// under DMA.
pub trait PageIo: Send + Sync {
    /// Fill `frames[i]` with file page `first + i`; holes and the tail past the end of the
    /// file read as zeros. Returns once the data is in the frames.
    fn read_pages(&self, first: u64, frames: Vec<FrameRef>) -> Result<(), IoError>;
    /// Write file pages `first..` from `frames` to the file's blocks (allocating them).
    /// Returns once the device has completed the writes.
    fn write_pages(&self, first: u64, frames: Vec<FrameRef>) -> Result<(), IoError>;

    /// Start filling `frames[i]` with file page `first + i`, as [`PageIo::read_pages`],
    /// and return without waiting: `done` runs once with the result when the data is in
    /// the frames (possibly from an interrupt handler, so it only touches atomics and
    /// irq-safe state). The default reads synchronously and calls `done` before it
    /// returns.
    fn start_read(&self, first: u64, frames: Vec<FrameRef>, done: ReadDone) {
        done(self.read_pages(first, frames));
    }
}

/// The completion of [`PageIo::start_read`].
pub type ReadDone = Box<dyn FnOnce(Result<(), IoError>) + Send>;

/// One cached page of a file.
#[derive(Clone, Copy, Debug)]
struct Page {
    pfn: Pfn,
    /// Must be written back before it can be dropped.
    dirty: bool,
    /// Being written now (writeback holds its own frame reference).
    writeback: bool,
    /// Used since the eviction clock last passed (second chance).
    referenced: bool,
    /// When it became dirty (caller's clock), for background writeback.
    dirtied_at: u64,
    /// Writebacks of this page that failed in a row.
    failures: u8,
}

impl Page {
    /// A clean page just brought in, counted as recently used.
    fn fresh(pfn: Pfn) -> Page {
        Page {
            pfn,
            dirty: false,
            writeback: false,
            referenced: true,
            dirtied_at: 0,
            failures: 0,
        }
    }

    /// Set or clear `dirty`, keeping the `nr_dirty` gauge and the file's count of
    /// dirty pages (`file_dirty`) exact.
    fn set_dirty(&mut self, dirty: bool, file_dirty: &AtomicU64) {
        if self.dirty != dirty {
            self.dirty = dirty;
            if dirty {
                counters::add(Counter::NrDirty, 1);
                file_dirty.fetch_add(1, Ordering::Relaxed);
            } else {
                counters::sub(Counter::NrDirty, 1);
                file_dirty.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Set or clear `writeback`, keeping the `nr_writeback` gauge exact.
    fn set_writeback(&mut self, writeback: bool) {
        if self.writeback != writeback {
            self.writeback = writeback;
            if writeback {
                counters::add(Counter::NrWriteback, 1);
            } else {
                counters::sub(Counter::NrWriteback, 1);
            }
        }
    }

    /// The page leaves its file's index: it no longer counts as dirty or under
    /// writeback (an I/O still in flight on its frame holds its own reference).
    fn forget(mut self, file_dirty: &AtomicU64) -> Pfn {
        self.set_dirty(false, file_dirty);
        self.set_writeback(false);
        counters::sub(Counter::PagecachePages, 1);
        self.pfn
    }
}

struct FileState {
    pages: BTreeMap<u64, Page>,
    /// The page a sequential reader would ask for next, and the current readahead window.
    ra_next: u64,
    ra_window: u64,
    /// First page not yet requested by readahead.
    ra_end: u64,
    /// When a sequential reader reaches this page, the next window is requested
    /// (asynchronously: the reader only waits for a page it needs now).
    ra_trigger: u64,
}

/// A file's page index (Linux's `address_space`).
pub struct CachedFile {
    id: u64,
    cache: &'static PageCache,
    io: Box<dyn PageIo>,
    state: Mutex<FileState>,
    /// Writeback errors so far (an error sequence: open file descriptions remember the
    /// value they have seen).
    wb_errors: AtomicU64,
    last_errno: AtomicI32,
    /// Pages of this file that are dirty (kept with the pages' flags, under `state`).
    dirty: AtomicU64,
}

/// The page cache of the whole system: the file registry, the eviction clock and the
/// frame allocator it takes frames from.
pub struct PageCache {
    frames: &'static FrameAllocator,
    files: Mutex<BTreeMap<u64, Weak<CachedFile>>>,
    lru: Mutex<VecDeque<(u64, u64)>>,
    next_id: AtomicU64,
    now: AtomicU64,
    /// Keep at least this many frames free for the rest of the kernel (used when no
    /// frame source is installed).
    low_watermark: AtomicU64,
    /// Where page frames come from once the kernel installs its allocation policy
    /// (reclaim, dirty throttling, the OOM killer); without it, the allocator directly,
    /// reclaiming from this cache first when frames run low.
    source: spin::Once<fn() -> Result<FrameRef, IoError>>,
    /// Where the next [`PageCache::writeback_some`] pass starts (round robin over files).
    wb_cursor: AtomicU64,
    /// Told when a page moves to another frame while its old frame may still be mapped
    /// (see [`PageCache::set_moved_hook`]).
    moved: spin::Once<MovedHook>,
}

/// `moved(file id, page index, old frame)`: page `index` of the file no longer lives in
/// `old`; user mappings of it that still map `old` are stale and must go (the kernel's
/// reverse map finds them). Called with no page-cache lock held; must not block.
pub type MovedHook = fn(u64, u64, Pfn);

/// The key the waiters of a frame's I/O sleep on (see [`crate::sync::wait_on`]).
fn wait_key(pfn: Pfn) -> usize {
    pfn.addr() as usize
}

/// Failed writebacks of a page after which it is no longer retried: it becomes clean
/// (reclaimable) and the error stays recorded for `fsync`, as Linux does, so that a disk
/// that keeps failing cannot fill memory with pages nobody can write.
pub const WRITE_ATTEMPTS: u8 = 3;

/// Most pages one writeback batch takes (its bookkeeping is one small allocation).
pub const WRITEBACK_BATCH: usize = 256;

/// Largest readahead window, in pages (1 MiB).
pub const READAHEAD_MAX: u64 = 256;
const READAHEAD_MIN: u64 = 4;

impl PageCache {
    /// A page cache taking frames from `frames`.
    pub const fn new(frames: &'static FrameAllocator) -> PageCache {
        PageCache {
            frames,
            files: Mutex::new(BTreeMap::new()),
            lru: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(1),
            now: AtomicU64::new(0),
            low_watermark: AtomicU64::new(256),
            source: spin::Once::new(),
            wb_cursor: AtomicU64::new(0),
            moved: spin::Once::new(),
        }
    }

    /// Install the hook told about pages that moved to another frame (copy-on-write
    /// breaks and stable-page copies); only the first call takes effect.
    pub fn set_moved_hook(&self, hook: MovedHook) {
        self.moved.call_once(|| hook);
    }

    /// Take page frames from `source` from now on (the kernel's allocation policy). Only
    /// the first call takes effect.
    pub fn set_frame_source(&self, source: fn() -> Result<FrameRef, IoError>) {
        self.source.call_once(|| source);
    }

    /// The frame allocator the cache returns frames to.
    pub fn frames(&self) -> &'static FrameAllocator {
        self.frames
    }

    /// Set the caller's clock (any monotonic unit; used for the age of dirty pages).
    pub fn set_now(&self, now: u64) {
        self.now.store(now, Ordering::Relaxed);
    }

    /// Keep at least `frames` frames free: allocations below it evict first.
    pub fn set_low_watermark(&self, frames: u64) {
        self.low_watermark.store(frames, Ordering::Relaxed);
    }

    /// Start caching a file whose blocks are reached through `io`.
    pub fn open(&'static self, io: Box<dyn PageIo>) -> Arc<CachedFile> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let file = Arc::new(CachedFile {
            id,
            cache: self,
            io,
            state: Mutex::new(FileState {
                pages: BTreeMap::new(),
                ra_next: u64::MAX,
                ra_window: READAHEAD_MIN,
                ra_end: 0,
                ra_trigger: u64::MAX,
            }),
            wb_errors: AtomicU64::new(0),
            last_errno: AtomicI32::new(0),
            dirty: AtomicU64::new(0),
        });
        self.files.lock().insert(id, Arc::downgrade(&file));
        file
    }

    /// A new frame for a page, with its one reference in the handle.
    fn alloc_frame(&self) -> Result<FrameRef, IoError> {
        if let Some(source) = self.source.get() {
            return source();
        }
        if self.frames.free_frames() < self.low_watermark.load(Ordering::Relaxed) {
            self.reclaim(64);
        }
        match FrameRef::alloc(self.frames, Owner::PageCache) {
            Ok(f) => Ok(f),
            Err(_) => {
                self.reclaim(64);
                FrameRef::alloc(self.frames, Owner::PageCache).map_err(|_| IoError(ENOMEM))
            }
        }
    }

    /// A reference of its own to `pfn`, a frame some page of this cache holds.
    fn hold(&self, pfn: Pfn) -> Result<FrameRef, IoError> {
        FrameRef::new(self.frames, pfn).map_err(|_| IoError(EIO))
    }

    /// Drop a reference to `pfn`; whether that freed the frame.
    fn release(&self, pfn: Pfn) -> bool {
        match self.frames.put(pfn) {
            Ok(freed) => freed,
            Err(e) => {
                log::error!("page cache: releasing {pfn:?}: {e}");
                false
            }
        }
    }

    /// `pfn` becomes the frame of a page (the page owns one of its references already).
    fn share(&self, pfn: Pfn) {
        if let Err(e) = self.frames.add_sharer(pfn) {
            log::error!("page cache: sharing {pfn:?}: {e}");
        }
    }

    /// A page that left its file's index lets go of its frame. Returns whether the frame
    /// was freed (an aliased frame lives on in its other sharers).
    fn drop_page(&self, page: Page, file_dirty: &AtomicU64) -> bool {
        let pfn = page.forget(file_dirty);
        if let Err(e) = self.frames.remove_sharer(pfn) {
            log::error!("page cache: unsharing {pfn:?}: {e}");
        }
        self.release(pfn)
    }

    /// Page-cache pages holding `pfn` (2 or more: aliased).
    fn sharers(&self, pfn: Pfn) -> u32 {
        self.frames.table().get(pfn).map_or(0, |d| d.sharers())
    }

    fn live_files(&self) -> Vec<Arc<CachedFile>> {
        let mut files = self.files.lock();
        files.retain(|_, w| w.strong_count() > 0);
        files.values().filter_map(Weak::upgrade).collect()
    }

    /// Pages cached right now, in every file.
    pub fn pages(&self) -> u64 {
        counters::get(Counter::PagecachePages)
    }
}

/// The pages `[first, last]` holding bytes `[offset, offset + len)` (one page for an
/// empty range).
pub fn pages_of(offset: u64, len: usize) -> (u64, u64) {
    let page = FRAME_SIZE as u64;
    (offset / page, (offset + len.max(1) as u64 - 1) / page)
}

impl CachedFile {
    /// This file's id in the cache.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The error sequence an open file description starts from (pass it to [`fsync`]).
    ///
    /// [`fsync`]: CachedFile::fsync
    pub fn error_cursor(&self) -> u64 {
        self.wb_errors.load(Ordering::Acquire)
    }

    /// Pages currently cached.
    pub fn cached_pages(&self) -> usize {
        self.state.lock().pages.len()
    }

    /// Pages waiting for writeback.
    pub fn dirty_pages(&self) -> usize {
        self.dirty.load(Ordering::Relaxed) as usize
    }

    /// The frame caching page `index`, if any (for tests and diagnostics).
    pub fn frame_of(&self, index: u64) -> Option<Pfn> {
        self.state.lock().pages.get(&index).map(|p| p.pfn)
    }

    fn frame_flags(&self, pfn: Pfn) -> FrameFlags {
        self.cache
            .frames
            .table()
            .get(pfn)
            .map(|d| d.flags())
            .unwrap_or(FrameFlags::empty())
    }

    fn set_frame_flags(&self, pfn: Pfn, set: FrameFlags, clear: FrameFlags) {
        if let Some(d) = self.cache.frames.table().get(pfn) {
            d.clear_flags(clear);
            d.set_flags(set);
        }
    }
}

impl Drop for CachedFile {
    /// The last user is gone (file closed and unlinked, or unmounted): release every
    /// frame. Dirty data must have been written back by the caller before.
    fn drop(&mut self) {
        let st = self.state.get_mut();
        let dirty = st.pages.values().filter(|p| p.dirty).count();
        if dirty > 0 {
            log::warn!(
                "page cache: file {} dropped with {dirty} dirty pages",
                self.id
            );
        }
        for (_, p) in core::mem::take(&mut st.pages) {
            self.cache.drop_page(p, &self.dirty);
        }
    }
}

mod alias;
mod direct;
mod readahead;
mod reclaim;
mod write;
mod writeback;

#[cfg(test)]
mod tests;
