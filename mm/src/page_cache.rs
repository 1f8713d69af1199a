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
use crate::frame_table::{FrameFlags, Owner};
use crate::phys;

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
pub trait PageIo: Send + Sync {
    /// Fill `frames[i]` with file page `first + i`; holes and the tail past the end of the
    /// file read as zeros. Returns once the data is in the frames.
    fn read_pages(&self, first: u64, frames: &[Pfn]) -> Result<(), IoError>;
    /// Write file pages `first..` from `frames` to the file's blocks (allocating them).
    /// Returns once the device has completed the writes.
    fn write_pages(&self, first: u64, frames: &[Pfn]) -> Result<(), IoError>;

    /// Start filling `frames[i]` with file page `first + i`, as [`PageIo::read_pages`],
    /// and return without waiting: `done` runs once with the result when the data is in
    /// the frames (possibly from an interrupt handler, so it only touches atomics and
    /// irq-safe state). The default reads synchronously and calls `done` before it
    /// returns.
    fn start_read(&self, first: u64, frames: &[Pfn], done: ReadDone) {
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
    source: spin::Once<fn() -> Result<Pfn, IoError>>,
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
    pub fn set_frame_source(&self, source: fn() -> Result<Pfn, IoError>) {
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

    fn alloc_frame(&self) -> Result<Pfn, IoError> {
        if let Some(source) = self.source.get() {
            return source();
        }
        if self.frames.free_frames() < self.low_watermark.load(Ordering::Relaxed) {
            self.reclaim(64);
        }
        match self.frames.alloc(Owner::PageCache) {
            Ok(p) => Ok(p),
            Err(_) => {
                self.reclaim(64);
                self.frames
                    .alloc(Owner::PageCache)
                    .map_err(|_| IoError(ENOMEM))
            }
        }
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

    /// Evict up to `want` clean pages (CLOCK: a page used since the last pass gets a
    /// second chance). If that is not enough, write some dirty pages back (waiting for
    /// them) and try again. Returns the number of frames freed.
    pub fn reclaim(&self, want: usize) -> usize {
        let mut freed = self.evict_clean(want);
        if freed < want {
            self.writeback_some((want - freed).max(WRITEBACK_BATCH));
            freed += self.evict_clean(want - freed);
        }
        freed
    }

    /// Pages cached right now, in every file.
    pub fn pages(&self) -> u64 {
        counters::get(Counter::PagecachePages)
    }

    /// Evict up to `want` clean, unused pages (CLOCK order). Pages that are dirty, under
    /// writeback or being read, and pages whose frames are mapped or pinned, are skipped
    /// and not counted as freed. Never waits. Returns the number of frames freed.
    pub fn evict_clean(&self, want: usize) -> usize {
        // Every lock here is only tried: this may run from inside an allocation made
        // with one of them held (the kernel heap reclaims for a big allocation), and on
        // one CPU a lock found taken is held by the caller itself.
        let mut freed = 0;
        let Some(len) = self.lru.try_lock().map(|l| l.len()) else {
            return 0;
        };
        let mut budget = 2 * len;
        while freed < want && budget > 0 {
            budget -= 1;
            let Some((id, index)) = self.lru.try_lock().and_then(|mut l| l.pop_front()) else {
                break;
            };
            let Some(file) = self
                .files
                .try_lock()
                .and_then(|f| f.get(&id).and_then(Weak::upgrade))
            else {
                continue;
            };
            let Some(mut st) = file.state.try_lock() else {
                if let Some(mut l) = self.lru.try_lock() {
                    l.push_back((id, index));
                }
                continue;
            };
            let Some(page) = st.pages.get_mut(&index) else {
                continue;
            };
            counters::add(Counter::Pgscan, 1);
            if self.busy(page) || page.referenced {
                page.referenced = false;
                drop(st);
                if let Some(mut l) = self.lru.try_lock() {
                    l.push_back((id, index));
                }
                continue;
            }
            let Some(page) = st.pages.remove(&index) else {
                continue;
            };
            drop(st);
            counters::add(Counter::PagecacheEvictions, 1);
            // An aliased frame stays with its other sharers: nothing freed yet.
            if self.drop_page(page, &file.dirty) {
                counters::add(Counter::Pgsteal, 1);
                freed += 1;
            }
        }
        self.compact_lru();
        freed
    }

    /// Whether a page must stay: dirty, under writeback, being read, or its frame is
    /// held by someone besides the cache pages sharing it (a mapping, an I/O, a pin). An
    /// aliased page is not busy for being aliased: dropping it leaves the frame to its
    /// other sharers.
    fn busy(&self, page: &Page) -> bool {
        let desc = self.frames.table().get(page.pfn);
        page.dirty
            || page.writeback
            || desc.is_none_or(|d| {
                d.other_references() > 0
                    || d.mappings() > 0
                    || d.pincount() > 0
                    || d.flags().contains(FrameFlags::LOCKED)
            })
    }

    /// The eviction clock holds stale entries of pages that left the cache by other
    /// paths (truncate, unlink); rebuild it when they outnumber the live ones, so it
    /// never grows without bound.
    fn compact_lru(&self) {
        let live = self.pages() as usize;
        if self
            .lru
            .try_lock()
            .is_none_or(|l| l.len() <= 2 * live + 4096)
        {
            return;
        }
        let Some(files) = self
            .files
            .try_lock()
            .map(|f| f.values().filter_map(Weak::upgrade).collect::<Vec<_>>())
        else {
            return;
        };
        let mut fresh = VecDeque::new();
        for f in files {
            let Some(st) = f.state.try_lock() else {
                return; // held by whoever called us: try another time
            };
            let keys: Vec<u64> = st.pages.keys().copied().collect();
            drop(st);
            fresh.extend(keys.into_iter().map(|i| (f.id, i)));
        }
        if let Some(mut l) = self.lru.try_lock() {
            *l = fresh;
        }
    }

    /// Drop every clean page that nothing else uses (`drop_caches`). Dirty pages, pages
    /// under I/O and mapped or pinned pages stay. Returns the number of frames freed.
    pub fn drop_clean(&self) -> usize {
        let mut freed = 0;
        for f in self.live_files() {
            let mut st = f.state.lock();
            let victims: Vec<u64> = st
                .pages
                .iter()
                .filter(|(_, p)| !self.busy(p))
                .map(|(&i, _)| i)
                .collect();
            let mut pages = Vec::with_capacity(victims.len());
            for i in victims {
                if let Some(p) = st.pages.remove(&i) {
                    pages.push(p);
                }
            }
            drop(st);
            counters::add(Counter::PagecacheEvictions, pages.len() as u64);
            for p in pages {
                if self.drop_page(p, &f.dirty) {
                    freed += 1;
                }
            }
        }
        self.compact_lru();
        freed
    }

    /// Write back up to about `max_pages` dirty pages, file by file (round robin, so
    /// no file starves), waiting for the I/O. Returns the pages written successfully
    /// (pages whose write failed stay dirty and do not count).
    pub fn writeback_some(&self, max_pages: usize) -> usize {
        let files = self.live_files();
        if files.is_empty() {
            return 0;
        }
        let start = self.wb_cursor.fetch_add(1, Ordering::Relaxed) as usize % files.len();
        let mut done = 0;
        for f in files[start..].iter().chain(files[..start].iter()) {
            if done >= max_pages {
                break;
            }
            if f.dirty_pages() == 0 {
                continue;
            }
            let (n, _) = f.writeback_range(0, u64::MAX, max_pages - done);
            done += n;
        }
        done
    }

    /// Pages dirty or under writeback right now, in every file.
    pub fn dirty_and_writeback(&self) -> u64 {
        counters::get(Counter::NrDirty) + counters::get(Counter::NrWriteback)
    }

    /// Write back every file's pages that have been dirty for at least `max_age`
    /// (background writeback). Returns the number of files written.
    pub fn writeback_older_than(&self, max_age: u64) -> usize {
        let now = self.now.load(Ordering::Relaxed);
        let mut written = 0;
        for f in self.live_files() {
            let oldest = f
                .state
                .lock()
                .pages
                .values()
                .filter(|p| p.dirty)
                .map(|p| p.dirtied_at)
                .min();
            if oldest.is_some_and(|t| now.saturating_sub(t) >= max_age) {
                let _ = f.writeback();
                written += 1;
            }
        }
        written
    }

    /// Write back every dirty page of every file (`sync`). Returns the first error.
    pub fn sync_all(&self) -> Result<(), IoError> {
        let mut result = Ok(());
        for f in self.live_files() {
            if let Err(e) = f.writeback() {
                result = result.and(Err(e));
            }
        }
        result
    }
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

    /// Insert fresh, `LOCKED` pages for up to `count` pages from `first` (stopping at a
    /// page already cached or when frames run out) and start reading them; returns
    /// without waiting. The completion (from the disk interrupt) sets `UPTODATE`, or
    /// `ERROR` on failure, clears `LOCKED` and wakes the waiters of each frame. Returns
    /// the number of pages started; an error only if not even one frame was available.
    fn start_fill(&self, first: u64, count: u64) -> Result<u64, IoError> {
        let mut frames = Vec::with_capacity(count as usize);
        for _ in 0..count {
            match self.cache.alloc_frame() {
                Ok(p) => frames.push(p),
                Err(e) if frames.is_empty() => return Err(e),
                Err(_) => break, // read what we could get frames for
            }
        }
        // Insert, stopping at the first page someone else inserted meanwhile.
        let mut st = self.state.lock();
        let mut inserted = 0;
        for (i, &pfn) in frames.iter().enumerate() {
            let index = first + i as u64;
            if st.pages.contains_key(&index) {
                break;
            }
            self.set_frame_flags(
                pfn,
                FrameFlags::LOCKED,
                FrameFlags::UPTODATE | FrameFlags::ERROR,
            );
            // The read holds a reference of its own until it completes: truncate may take
            // the page out of the index meanwhile, and the DMA must not land in a frame
            // that went back to the allocator.
            if self.cache.frames.get(pfn).is_err() {
                break;
            }
            self.cache.share(pfn);
            st.pages.insert(index, Page::fresh(pfn));
            inserted += 1;
        }
        drop(st);
        for &pfn in &frames[inserted..] {
            self.cache.release(pfn);
        }
        frames.truncate(inserted);
        if frames.is_empty() {
            return Ok(0);
        }
        counters::add(Counter::PagecachePages, frames.len() as u64);
        {
            let mut lru = self.cache.lru.lock();
            for i in 0..frames.len() as u64 {
                lru.push_back((self.id, first + i));
            }
        }
        let n = frames.len() as u64;
        let table = self.cache.frames.table();
        let allocator = self.cache.frames;
        let pfns = frames.clone();
        self.io.start_read(
            first,
            &frames,
            Box::new(move |result| {
                for &pfn in &pfns {
                    if let Some(d) = table.get(pfn) {
                        match result {
                            Ok(()) => d.set_flags(FrameFlags::UPTODATE),
                            Err(_) => d.set_flags(FrameFlags::ERROR),
                        };
                        d.clear_flags(FrameFlags::LOCKED);
                    }
                    crate::sync::wake(wait_key(pfn));
                    // The read's own reference (see above).
                    if let Err(e) = allocator.put(pfn) {
                        log::error!("page cache: releasing {pfn:?} after a read: {e}");
                    }
                }
            }),
        );
        Ok(n)
    }

    /// Pages from `from` (up to `want`, before `last_page`) not cached yet.
    fn uncached_run(st: &FileState, from: u64, want: u64, last_page: u64) -> u64 {
        let mut count = 0;
        while count < want && from + count < last_page && !st.pages.contains_key(&(from + count)) {
            count += 1;
        }
        count
    }

    /// A reference to the up-to-date frame of page `index` (reading it, with readahead,
    /// on a miss). The caller puts the reference.
    ///
    /// Readahead: a miss reads a window of pages (growing to [`READAHEAD_MAX`] while the
    /// reader is sequential, [`READAHEAD_MIN`] otherwise); a sequential reader that
    /// reaches the first page of the window requested last triggers the next window
    /// asynchronously, so the device reads ahead while the reader copies.
    fn get_page(&self, index: u64, file_size: u64) -> Result<Pfn, IoError> {
        let last_page = file_size.div_ceil(PAGE);
        let mut counted = false;
        loop {
            let mut st = self.state.lock();
            // A page read again (small reads) keeps the reader sequential.
            let sequential = index == st.ra_next || index + 1 == st.ra_next;
            st.ra_next = index + 1;
            if sequential && index >= st.ra_trigger && st.ra_end < last_page {
                let start = st.ra_end.max(index + 1);
                st.ra_window = (st.ra_window * 2).min(READAHEAD_MAX);
                let n = Self::uncached_run(&st, start, st.ra_window, last_page);
                st.ra_end = start + n.max(1);
                st.ra_trigger = start;
                if n > 0 {
                    drop(st);
                    let _ = self.start_fill(start, n);
                    continue;
                }
            }
            if let Some(p) = st.pages.get_mut(&index) {
                let pfn = p.pfn;
                let flags = self.frame_flags(pfn);
                if flags.contains(FrameFlags::UPTODATE) {
                    p.referenced = true;
                    self.cache.frames.get(pfn).map_err(|_| IoError(EIO))?;
                    if !counted {
                        counters::add(Counter::PagecacheHits, 1);
                    }
                    return Ok(pfn);
                }
                if flags.contains(FrameFlags::LOCKED) {
                    // A read into it is in flight: sleep until its completion.
                    drop(st);
                    let table = self.cache.frames.table();
                    crate::sync::wait_on(wait_key(pfn), || {
                        table
                            .get(pfn)
                            .is_none_or(|d| !d.flags().contains(FrameFlags::LOCKED))
                    });
                    continue;
                }
                if flags.contains(FrameFlags::ERROR) {
                    // Its read failed: drop it, and the failed pages read with it, so a
                    // later read retries; report EIO.
                    let failed: Vec<u64> = st
                        .pages
                        .range(index..index.saturating_add(READAHEAD_MAX))
                        .filter(|(_, p)| {
                            let f = self.frame_flags(p.pfn);
                            f.contains(FrameFlags::ERROR) && !f.contains(FrameFlags::LOCKED)
                        })
                        .map(|(&i, _)| i)
                        .collect();
                    for i in failed {
                        if let Some(p) = st.pages.remove(&i) {
                            self.cache.drop_page(p, &self.dirty);
                        }
                    }
                    st.ra_trigger = u64::MAX;
                    return Err(IoError(EIO));
                }
                drop(st);
                crate::sync::relax();
                continue;
            }
            counters::add(Counter::PagecacheMisses, 1);
            counted = true;
            st.ra_window = if sequential {
                (st.ra_window * 2).min(READAHEAD_MAX)
            } else {
                READAHEAD_MIN
            };
            let count = Self::uncached_run(&st, index, st.ra_window, last_page).max(1);
            st.ra_end = index + count;
            // A sequential reader gets the next window started right away.
            st.ra_trigger = if sequential { index } else { u64::MAX };
            drop(st);
            self.start_fill(index, count)?;
        }
    }

    /// Copy file bytes at `offset` into `buf`, stopping at `file_size`. Returns the bytes
    /// copied.
    pub fn read(&self, offset: u64, buf: &mut [u8], file_size: u64) -> Result<usize, IoError> {
        let end = file_size.min(offset.saturating_add(buf.len() as u64));
        let mut pos = offset;
        while pos < end {
            let index = pos / PAGE;
            let in_page = (pos % PAGE) as usize;
            let n = ((PAGE - pos % PAGE).min(end - pos)) as usize;
            let pfn = match self.get_page(index, file_size) {
                Ok(p) => p,
                Err(e) if pos == offset => return Err(e),
                Err(_) => break, // short read: return what we have
            };
            let at = (pos - offset) as usize;
            phys::read(pfn, in_page, &mut buf[at..at + n]);
            counters::add(Counter::DataCopyBytes, n as u64);
            self.cache.release(pfn);
            pos += n as u64;
        }
        Ok((pos - offset) as usize)
    }

    /// Make page `index` present, up to date (unless the caller overwrites all of
    /// `[in_page, in_page + len)` of a page past the old end) and safe to modify: not
    /// under writeback (stable pages). Returns the frame with a reference held, and
    /// whether it is a *fresh* page: not cached before and about to be overwritten whole,
    /// so it was neither read nor zeroed; it stays `LOCKED` (readers wait) until the
    /// caller has filled it and called [`CachedFile::publish_fresh`].
    fn prepare_write(
        &self,
        index: u64,
        in_page: usize,
        len: usize,
        file_size: u64,
    ) -> Result<(Pfn, bool), IoError> {
        loop {
            let st = self.state.lock();
            let Some(p) = st.pages.get(&index).copied() else {
                drop(st);
                let whole = in_page == 0 && len == FRAME_SIZE;
                let beyond_eof = index * PAGE >= file_size;
                if whole {
                    let pfn = self.cache.alloc_frame()?;
                    self.set_frame_flags(
                        pfn,
                        FrameFlags::LOCKED,
                        FrameFlags::UPTODATE | FrameFlags::ERROR,
                    );
                    // The caller's reference, besides the page's.
                    if self.cache.frames.get(pfn).is_err() {
                        self.cache.release(pfn);
                        continue;
                    }
                    if !self.insert_new(index, pfn) {
                        self.cache.release(pfn);
                        continue;
                    }
                    return Ok((pfn, true));
                }
                if beyond_eof {
                    // Nothing on disk worth reading: start from a zeroed frame.
                    let pfn = self.cache.alloc_frame()?;
                    phys::zero(pfn, 0, FRAME_SIZE);
                    self.set_frame_flags(pfn, FrameFlags::UPTODATE, FrameFlags::LOCKED);
                    self.insert_new(index, pfn);
                } else {
                    self.start_fill(index, 1)?;
                }
                continue;
            };
            if !self.frame_flags(p.pfn).contains(FrameFlags::UPTODATE) {
                drop(st);
                // Being read (wait for it) or failed (get_page reports the error).
                if self.frame_flags(p.pfn).contains(FrameFlags::ERROR) {
                    self.cache.release(self.get_page(index, file_size)?);
                } else {
                    let table = self.cache.frames.table();
                    let pfn = p.pfn;
                    crate::sync::wait_on(wait_key(pfn), || {
                        table
                            .get(pfn)
                            .is_none_or(|d| !d.flags().contains(FrameFlags::LOCKED))
                    });
                }
                continue;
            }
            if p.writeback {
                // Stable pages: the device is reading this frame. A frame that is also
                // mapped into a process must stay the page's frame, or later stores
                // through the mapping would land in a frame the cache no longer knows:
                // wait for the I/O instead. (Host tests, which have no page tables, count
                // a mapping's reference among the others.)
                let mapped = self
                    .cache
                    .frames
                    .table()
                    .get(p.pfn)
                    .is_some_and(|d| d.mappings() > 0 || d.other_references() > 1);
                if mapped {
                    drop(st);
                    crate::sync::relax();
                    continue;
                }
                // Otherwise move the page to a copy (writeback keeps its reference to the
                // old frame until the I/O completes).
                drop(st);
                self.move_to_copy(index, p.pfn)?;
                continue;
            }
            if self.cache.sharers(p.pfn) > 1 {
                // Aliased: this file's bytes are about to change, the other sharers'
                // must not. Break the share (copy-on-write).
                drop(st);
                self.move_to_copy(index, p.pfn)?;
                continue;
            }
            self.cache.frames.get(p.pfn).map_err(|_| IoError(EIO))?;
            return Ok((p.pfn, false));
        }
    }

    /// Make `pfn` (one reference, which the page takes) page `index`, unless someone
    /// inserted that page meanwhile: then the frame is released and false returned.
    fn insert_new(&self, index: u64, pfn: Pfn) -> bool {
        let mut st = self.state.lock();
        if st.pages.contains_key(&index) {
            drop(st);
            self.cache.release(pfn);
            return false;
        }
        self.cache.share(pfn);
        st.pages.insert(index, Page::fresh(pfn));
        drop(st);
        counters::add(Counter::PagecachePages, 1);
        self.cache.lru.lock().push_back((self.id, index));
        true
    }

    /// Give page `index` (backed by `old`) a private copy of its frame: for a write to a
    /// page under writeback (stable pages) or to an aliased frame (copy-on-write; counted
    /// in `cow_breaks`). Nothing happens if the page changed meanwhile. The old frame
    /// keeps its other holders: the I/O in flight, the other files' pages.
    fn move_to_copy(&self, index: u64, old: Pfn) -> Result<(), IoError> {
        let copy = self.cache.alloc_frame()?;
        phys::copy_frame(old, copy);
        self.set_frame_flags(copy, FrameFlags::UPTODATE, FrameFlags::LOCKED);
        let mut st = self.state.lock();
        match st.pages.get_mut(&index) {
            Some(q) if q.pfn == old => {
                let shared = self.cache.sharers(old) > 1;
                self.cache.share(copy);
                q.pfn = copy;
                // The write in flight finishes on the old frame; the copy holds the same
                // bytes, so the page is exactly as clean or dirty as it was.
                q.set_writeback(false);
                drop(st);
                counters::add(Counter::DataCopyBytes, PAGE);
                if shared {
                    counters::add(Counter::CowBreaks, 1);
                }
                if let Err(e) = self.cache.frames.remove_sharer(old) {
                    log::error!("page cache: unsharing {old:?}: {e}");
                }
                // Mappings of this page that still map the old frame must refault.
                // (Counted mappings; in host tests, references besides the sharers left
                // and the one this page still owns, which is released below.)
                let mapped = self
                    .cache
                    .frames
                    .table()
                    .get(old)
                    .is_some_and(|d| d.mappings() > 0 || d.other_references() > 1);
                if mapped && let Some(hook) = self.cache.moved.get() {
                    hook(self.id, index, old);
                }
                self.cache.release(old);
            }
            _ => {
                drop(st);
                self.cache.release(copy);
            }
        }
        Ok(())
    }

    /// Make page `index` of this file an alias of page `src_index` of `src` (which is
    /// `src_size` bytes long): the two pages share one frame, read-only in effect (the
    /// first write to either side breaks the share), and this file's page is dirty, so
    /// its own blocks get written from the shared frame. The source page is read in
    /// first if needed. Whatever this file cached at `index` is dropped (it must be clean
    /// and unused: a dirty, busy or mapped target page gives `EBUSY`, and so does a
    /// source frame that is mapped, pinned or otherwise in use, which must not be shared
    /// because it can change without the cache knowing). Counted in `alias_pages`.
    ///
    /// The caller keeps writes to the source page out meanwhile (the file's write lock).
    pub fn alias_page(
        &self,
        index: u64,
        src: &CachedFile,
        src_index: u64,
        src_size: u64,
    ) -> Result<(), IoError> {
        let pfn = src.get_page(src_index, src_size)?;
        // Besides our reference: only the pages sharing it may hold the frame.
        let in_use = self
            .cache
            .frames
            .table()
            .get(pfn)
            .is_none_or(|d| d.mappings() > 0 || d.other_references() > 1 || d.pincount() > 0);
        if in_use || (core::ptr::eq(self, src) && index == src_index) {
            self.cache.release(pfn);
            return Err(IoError(EBUSY));
        }
        let mut st = self.state.lock();
        let old = match st.pages.get(&index) {
            Some(p) if p.pfn == pfn => {
                drop(st);
                self.cache.release(pfn);
                return Ok(()); // already an alias of it
            }
            Some(p) if self.cache.busy(p) => {
                drop(st);
                self.cache.release(pfn);
                return Err(IoError(EBUSY));
            }
            Some(_) => st.pages.remove(&index),
            None => None,
        };
        self.cache.share(pfn);
        let mut page = Page::fresh(pfn);
        page.dirtied_at = self.cache.now.load(Ordering::Relaxed);
        page.set_dirty(true, &self.dirty);
        st.pages.insert(index, page);
        drop(st);
        counters::add(Counter::PagecachePages, 1);
        match old {
            // The replaced page's place in the eviction clock serves the alias.
            Some(old) => {
                self.cache.drop_page(old, &self.dirty);
            }
            None => self.cache.lru.lock().push_back((self.id, index)),
        }
        counters::add(Counter::AliasPages, 1);
        Ok(())
    }

    /// A fresh page from [`CachedFile::prepare_write`] has been filled: make it up to
    /// date and let its waiters in.
    fn publish_fresh(&self, pfn: Pfn) {
        self.set_frame_flags(pfn, FrameFlags::UPTODATE, FrameFlags::LOCKED);
        crate::sync::wake(wait_key(pfn));
    }

    /// Copy `data` into the file at `offset` (the caller records any new size). Returns
    /// the bytes written.
    pub fn write(&self, offset: u64, data: &[u8], file_size: u64) -> Result<usize, IoError> {
        let mut done = 0usize;
        while done < data.len() {
            let pos = offset + done as u64;
            let index = pos / PAGE;
            let in_page = (pos % PAGE) as usize;
            let n = (FRAME_SIZE - in_page).min(data.len() - done);
            let (pfn, fresh) = match self.prepare_write(index, in_page, n, file_size) {
                Ok(p) => p,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            };
            phys::write(pfn, in_page, &data[done..done + n]);
            if fresh {
                self.publish_fresh(pfn);
            }
            counters::add(Counter::DataCopyBytes, n as u64);
            self.mark_dirty(index, pfn);
            self.cache.release(pfn);
            done += n;
        }
        Ok(done)
    }

    /// The frame of page `index` for a user mapping (`mmap`): read in if needed, with a
    /// frame reference the mapping owns (the caller puts it when it unmaps the page). While
    /// mapped, the extra reference keeps the page from being evicted. A page mapped
    /// `writable` (a writable shared mapping, whose stores reach the file) gets a frame of
    /// its own first if it was aliased: stores must not reach the other sharers.
    pub fn map_page(&self, index: u64, file_size: u64, writable: bool) -> Result<Pfn, IoError> {
        loop {
            let pfn = self.get_page(index, file_size)?;
            if !writable || self.cache.sharers(pfn) < 2 {
                return Ok(pfn);
            }
            self.cache.release(pfn);
            self.move_to_copy(index, pfn)?;
        }
    }

    /// A store through a shared mapping changed page `index` (still backed by `pfn`): it
    /// must be written back like a page dirtied by `write`.
    pub fn mapped_page_dirtied(&self, index: u64, pfn: Pfn) {
        self.mark_dirty(index, pfn);
    }

    fn mark_dirty(&self, index: u64, pfn: Pfn) {
        let now = self.cache.now.load(Ordering::Relaxed);
        let mut st = self.state.lock();
        if let Some(p) = st.pages.get_mut(&index)
            && p.pfn == pfn
        {
            if !p.dirty {
                p.dirtied_at = now;
            }
            p.set_dirty(true, &self.dirty);
            p.referenced = true;
        }
    }

    /// Write every dirty page back, in contiguous runs. On error the pages stay dirty,
    /// the error sequence advances, and the error is returned.
    pub fn writeback(&self) -> Result<(), IoError> {
        self.writeback_range(0, u64::MAX, usize::MAX).1
    }

    /// Write back the dirty pages with indexes in `[first, last]`, at most `max_pages`
    /// of them, in batches of at most [`WRITEBACK_BATCH`] pages (so the bookkeeping
    /// never needs a large allocation) made of contiguous runs. Pages dirtied again
    /// behind the cursor are left for the next pass, so this always ends. Returns the
    /// pages written successfully and the first error.
    pub fn writeback_range(
        &self,
        first: u64,
        last: u64,
        max_pages: usize,
    ) -> (usize, Result<(), IoError>) {
        let mut result = Ok(());
        let mut cursor = first;
        let mut done = 0usize;
        let mut attempted = 0usize;
        while attempted < max_pages && cursor <= last {
            let want = (max_pages - attempted).min(WRITEBACK_BATCH);
            let mut batch: Vec<(u64, Pfn)> = Vec::with_capacity(want.min(64));
            {
                let mut st = self.state.lock();
                for (&index, p) in st.pages.range_mut(cursor..=last) {
                    if batch.len() >= want {
                        break;
                    }
                    cursor = index.saturating_add(1);
                    if p.dirty && !p.writeback {
                        if self.cache.frames.get(p.pfn).is_err() {
                            continue;
                        }
                        p.set_dirty(false, &self.dirty);
                        p.set_writeback(true);
                        batch.push((index, p.pfn));
                    }
                }
            }
            if batch.is_empty() {
                break;
            }
            attempted += batch.len();
            let (ok, r) = self.write_batch(&batch);
            done += ok;
            if let Err(e) = r {
                result = result.and(Err(e));
            }
            if cursor == 0 {
                break; // wrapped past u64::MAX
            }
        }
        (done, result)
    }

    /// Write `batch` (pages marked writeback, each with a frame reference held for the
    /// I/O) in contiguous runs; then clean them (or leave them dirty on error). Returns
    /// the pages settled (written, or given up after [`WRITE_ATTEMPTS`]) and the first
    /// error.
    fn write_batch(&self, batch: &[(u64, Pfn)]) -> (usize, Result<(), IoError>) {
        let mut written = 0;
        let mut result = Ok(());
        let mut start = 0;
        while start < batch.len() {
            let mut end = start + 1;
            while end < batch.len() && batch[end].0 == batch[end - 1].0 + 1 {
                end += 1;
            }
            let run = &batch[start..end];
            let frames: Vec<Pfn> = run.iter().map(|&(_, p)| p).collect();
            let r = self.io.write_pages(run[0].0, &frames);
            let mut st = self.state.lock();
            let mut given_up = 0;
            for &(index, pfn) in run {
                if let Some(p) = st.pages.get_mut(&index)
                    && p.pfn == pfn
                {
                    p.set_writeback(false);
                    if r.is_err() {
                        p.failures = p.failures.saturating_add(1);
                        if p.failures < WRITE_ATTEMPTS {
                            p.set_dirty(true, &self.dirty);
                        } else {
                            given_up += 1;
                        }
                    } else {
                        p.failures = 0;
                    }
                }
            }
            drop(st);
            if given_up > 0 {
                // The page stays cached with its data (clean, so it can be reclaimed);
                // the error reaches every open description's next fsync.
                log::error!(
                    "page cache: file {}: {given_up} pages at index {} not written after {WRITE_ATTEMPTS} failed attempts; giving up on them",
                    self.id,
                    run[0].0
                );
                written += given_up;
            }
            for &pfn in &frames {
                self.cache.release(pfn);
            }
            match r {
                Ok(()) => written += run.len(),
                Err(e) => {
                    self.last_errno.store(e.0, Ordering::Relaxed);
                    self.wb_errors.fetch_add(1, Ordering::Release);
                    result = result.and(Err(e));
                }
            }
            start = end;
        }
        (written, result)
    }

    /// `fsync` for an open file description that has seen errors up to `*cursor`:
    /// writes everything back, then reports a writeback error that happened since (once
    /// per description), even if it happened in an earlier background writeback.
    pub fn fsync(&self, cursor: &mut u64) -> Result<(), IoError> {
        let now = self.writeback();
        let seq = self.wb_errors.load(Ordering::Acquire);
        if seq != *cursor {
            *cursor = seq;
            return Err(IoError(self.last_errno.load(Ordering::Relaxed)));
        }
        now
    }

    /// The file is now `new_size` bytes: drop pages past the end, zero the tail of the
    /// last partial page (so a later extension reads zeros).
    pub fn truncate(&self, new_size: u64) -> Result<(), IoError> {
        let keep = new_size.div_ceil(PAGE);
        let removed = {
            let mut st = self.state.lock();
            st.pages.split_off(&keep)
        };
        for (_, p) in removed {
            self.cache.drop_page(p, &self.dirty);
        }
        let in_page = (new_size % PAGE) as usize;
        if in_page != 0 && self.state.lock().pages.contains_key(&(new_size / PAGE)) {
            let pfn = self
                .prepare_write(new_size / PAGE, in_page, FRAME_SIZE - in_page, new_size)?
                .0;
            phys::zero(pfn, in_page, FRAME_SIZE - in_page);
            self.mark_dirty(new_size / PAGE, pfn);
            self.cache.release(pfn);
        }
        Ok(())
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

#[cfg(test)]
mod tests;
