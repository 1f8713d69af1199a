//! Page-cache transitions against an in-memory "disk" implementing `PageIo`.

use std::boxed::Box;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};
use std::vec::Vec;

use super::*;
use crate::phys::testing;

/// Page-cache tests share the test frame arena and the global counters: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: StdMutex<()> = StdMutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn cache() -> &'static PageCache {
    Box::leak(Box::new(PageCache::new(testing::allocator())))
}

type Hook = Box<dyn Fn(u64) + Send + Sync>;

#[derive(Default)]
struct DiskState {
    pages: BTreeMap<u64, Vec<u8>>,
    reads: Vec<(u64, usize)>,
    writes: Vec<(u64, usize)>,
    fail_reads: bool,
    fail_writes: u32,
}

/// A file's blocks in memory; records every call.
#[derive(Clone, Default)]
struct MemDisk {
    s: Arc<StdMutex<DiskState>>,
    hook: Arc<StdMutex<Option<Hook>>>,
}

impl MemDisk {
    fn with_pattern(pages: u64) -> MemDisk {
        let d = MemDisk::default();
        for i in 0..pages {
            d.s.lock().unwrap().pages.insert(i, pattern(i, 0));
        }
        d
    }
    fn page(&self, i: u64) -> Vec<u8> {
        self.s
            .lock()
            .unwrap()
            .pages
            .get(&i)
            .cloned()
            .unwrap_or_else(|| vec![0; FRAME_SIZE])
    }
}

fn pattern(page: u64, generation: u8) -> Vec<u8> {
    (0..FRAME_SIZE)
        .map(|i| {
            (page as u8)
                .wrapping_mul(31)
                .wrapping_add(i as u8)
                .wrapping_add(generation)
        })
        .collect()
}

impl PageIo for MemDisk {
    fn read_pages(&self, first: u64, frames: Vec<FrameRef>) -> Result<(), IoError> {
        let mut s = self.s.lock().unwrap();
        s.reads.push((first, frames.len()));
        if s.fail_reads {
            return Err(IoError(EIO));
        }
        for (i, f) in frames.iter().enumerate() {
            match s.pages.get(&(first + i as u64)) {
                Some(data) => f.whole().write(0, data),
                None => f.whole().zero(),
            }
        }
        Ok(())
    }

    fn write_pages(&self, first: u64, frames: Vec<FrameRef>) -> Result<(), IoError> {
        // The "DMA" starts: let a test write to the file while it is in flight.
        if let Some(h) = self.hook.lock().unwrap().as_ref() {
            h(first);
        }
        let mut s = self.s.lock().unwrap();
        s.writes.push((first, frames.len()));
        if s.fail_writes > 0 {
            s.fail_writes -= 1;
            return Err(IoError(EIO));
        }
        for (i, f) in frames.iter().enumerate() {
            let mut buf = vec![0u8; FRAME_SIZE];
            f.whole().read(0, &mut buf);
            s.pages.insert(first + i as u64, buf);
        }
        Ok(())
    }
}

fn read_all(f: &CachedFile, offset: u64, len: usize, size: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let n = f.read(offset, &mut buf, size).expect("read");
    buf.truncate(n);
    buf
}

#[test]
fn read_miss_reads_ahead_then_hits() {
    let _g = serial();
    const PAGES: u64 = 1024;
    let disk = MemDisk::with_pattern(PAGES);
    let f = cache().open(Box::new(disk.clone()));
    let size = PAGES * PAGE;
    let (h0, m0) = (
        counters::get(Counter::PagecacheHits),
        counters::get(Counter::PagecacheMisses),
    );
    assert_eq!(read_all(&f, 0, 100, size), pattern(0, 0)[..100]);
    assert_eq!(
        disk.s.lock().unwrap().reads,
        vec![(0, READAHEAD_MIN as usize)],
        "first miss reads a small window"
    );
    // Sequential reading of the whole file: windows grow, every byte right.
    let all = read_all(&f, 0, size as usize, size);
    for i in 0..PAGES {
        assert_eq!(
            &all[(i * PAGE) as usize..((i + 1) * PAGE) as usize],
            &pattern(i, 0)[..],
            "page {i}"
        );
    }
    let reads = disk.s.lock().unwrap().reads.clone();
    assert!(
        reads.len() <= 12,
        "sequential read took {} I/Os: {reads:?}",
        reads.len()
    );
    assert!(
        reads.iter().any(|&(_, n)| n as u64 == READAHEAD_MAX),
        "window never reached the maximum: {reads:?}"
    );
    assert!(reads.iter().all(|&(_, n)| n as u64 <= READAHEAD_MAX));
    // Every page was read exactly once, in ascending windows.
    let mut next = 0;
    for &(first, n) in &reads {
        assert_eq!(first, next, "windows are contiguous: {reads:?}");
        next += n as u64;
    }
    assert_eq!(next, PAGES);
    assert_eq!(f.cached_pages(), PAGES as usize);
    assert!(counters::get(Counter::PagecacheHits) > h0);
    // Only the first accesses miss; readahead keeps ahead of the reader after that.
    assert!(
        counters::get(Counter::PagecacheMisses) - m0 <= 3,
        "{} misses",
        counters::get(Counter::PagecacheMisses) - m0
    );
    // Reads stop at the end of the file.
    assert_eq!(read_all(&f, size - 10, 100, size).len(), 10);
    assert_eq!(read_all(&f, size + 1, 100, size).len(), 0);
}

#[test]
fn partial_write_reads_the_page_first_and_whole_page_write_does_not() {
    let _g = serial();
    let disk = MemDisk::with_pattern(4);
    let f = cache().open(Box::new(disk.clone()));
    let size = 4 * PAGE;
    assert_eq!(f.write(PAGE + 100, b"hello", size), Ok(5));
    assert_eq!(
        disk.s.lock().unwrap().reads,
        vec![(1, 1)],
        "partial write read its page"
    );
    assert_eq!(f.write(2 * PAGE, &[7u8; FRAME_SIZE], size), Ok(FRAME_SIZE));
    assert_eq!(
        disk.s.lock().unwrap().reads.len(),
        1,
        "a whole-page write read the disk"
    );
    let page1 = read_all(&f, PAGE, FRAME_SIZE, size);
    let mut want = pattern(1, 0);
    want[100..105].copy_from_slice(b"hello");
    assert_eq!(page1, want);
    assert_eq!(f.dirty_pages(), 2);
    // Writing past the end starts from zeros, without reading.
    assert_eq!(f.write(10 * PAGE + 5, b"x", size), Ok(1));
    assert_eq!(disk.s.lock().unwrap().reads.len(), 1);
    let new_size = 10 * PAGE + 6;
    assert_eq!(read_all(&f, 10 * PAGE, 6, new_size), b"\0\0\0\0\0x");
}

#[test]
fn writeback_writes_contiguous_runs_and_cleans() {
    let _g = serial();
    let disk = MemDisk::default();
    let f = cache().open(Box::new(disk.clone()));
    for i in (0..8).chain([20]) {
        f.write(i * PAGE, &pattern(i, 5), i * PAGE).unwrap();
    }
    assert_eq!(f.dirty_pages(), 9);
    f.writeback().unwrap();
    assert_eq!(disk.s.lock().unwrap().writes, vec![(0, 8), (20, 1)]);
    assert_eq!(f.dirty_pages(), 0);
    for i in (0..8).chain([20]) {
        assert_eq!(disk.page(i), pattern(i, 5));
    }
    f.writeback().unwrap();
    assert_eq!(
        disk.s.lock().unwrap().writes.len(),
        2,
        "clean pages written again"
    );
}

#[test]
fn a_page_pinned_during_writeback_stays_dirty_until_written_unpinned() {
    let _g = serial();
    let disk = MemDisk::default();
    let f = cache().open(Box::new(disk.clone()));
    f.write(0, &pattern(0, 1), 0).unwrap();
    f.write(PAGE, &pattern(1, 1), PAGE).unwrap();
    // Page 1's frame is pinned, as for a direct read into a shared mapping of it: the
    // device may still be writing it, so writeback cannot call it clean.
    let frame = f.map_page(1, 2 * PAGE, true).unwrap();
    let pin = crate::pin::Pin::new(&frame).unwrap();
    f.writeback().unwrap();
    assert_eq!(disk.page(0), pattern(0, 1));
    assert_eq!(disk.page(1), pattern(1, 1));
    assert_eq!(f.dirty_pages(), 1, "the pinned page was called clean");
    // The "DMA" lands, the pin goes: the next writeback writes the new bytes and cleans.
    frame.whole().write(0, &pattern(1, 2));
    drop(pin);
    f.writeback().unwrap();
    assert_eq!(disk.page(1), pattern(1, 2));
    assert_eq!(f.dirty_pages(), 0);
    drop(frame);
}

#[test]
fn write_during_writeback_copies_the_page_and_the_device_sees_stable_data() {
    let _g = serial();
    let disk = MemDisk::default();
    let file = cache().open(Box::new(disk.clone()));
    file.write(0, &pattern(0, 1), 0).unwrap();
    let old_frame = file.frame_of(0).unwrap();
    let copies0 = counters::get(Counter::DataCopyBytes);
    // While the "DMA" of page 0 is in flight, overwrite the page.
    let weak = Arc::downgrade(&file);
    *disk.hook.lock().unwrap() = Some(Box::new(move |_| {
        if let Some(f) = weak.upgrade() {
            f.write(0, &pattern(0, 2), PAGE).unwrap();
        }
    }));
    file.writeback().unwrap();
    *disk.hook.lock().unwrap() = None;
    assert_eq!(
        disk.page(0),
        pattern(0, 1),
        "the device saw the page change under DMA"
    );
    assert_ne!(
        file.frame_of(0),
        Some(old_frame),
        "the page did not move to a copy"
    );
    assert!(
        counters::get(Counter::DataCopyBytes) - copies0 >= 2 * PAGE,
        "stable-page copy not counted"
    );
    assert_eq!(file.dirty_pages(), 1, "the new data is not dirty");
    assert_eq!(read_all(&file, 0, FRAME_SIZE, PAGE), pattern(0, 2));
    file.writeback().unwrap();
    assert_eq!(disk.page(0), pattern(0, 2));
    let d = testing::allocator().table().get(old_frame).unwrap();
    assert!(
        d.refcount() == 0 || d.owner() != Owner::PageCache || d.flags().contains(FrameFlags::FREE),
        "old frame leaked"
    );
}

#[test]
fn writeback_error_keeps_data_and_every_description_sees_it_once() {
    let _g = serial();
    let disk = MemDisk::default();
    let f = cache().open(Box::new(disk.clone()));
    let (mut a, mut b) = (f.error_cursor(), f.error_cursor());
    f.write(0, &pattern(0, 3), 0).unwrap();
    disk.s.lock().unwrap().fail_writes = 1;
    assert_eq!(
        f.writeback(),
        Err(IoError(EIO)),
        "background writeback fails"
    );
    assert_eq!(
        f.dirty_pages(),
        1,
        "pages were dropped after a failed writeback"
    );
    assert_eq!(
        f.fsync(&mut a),
        Err(IoError(EIO)),
        "first fsync of a must report the earlier error"
    );
    assert_eq!(
        disk.page(0),
        pattern(0, 3),
        "fsync's retry did not write the kept data"
    );
    assert_eq!(
        f.fsync(&mut a),
        Ok(()),
        "the error is reported once per description"
    );
    assert_eq!(
        f.fsync(&mut b),
        Err(IoError(EIO)),
        "description b never saw the error"
    );
    assert_eq!(f.fsync(&mut b), Ok(()));
    let mut c = f.error_cursor();
    assert_eq!(
        f.fsync(&mut c),
        Ok(()),
        "a description opened after the error reports it"
    );
}

#[test]
fn read_error_is_returned_and_not_cached() {
    let _g = serial();
    let disk = MemDisk::with_pattern(8);
    let f = cache().open(Box::new(disk.clone()));
    disk.s.lock().unwrap().fail_reads = true;
    let mut buf = [0u8; 16];
    assert_eq!(f.read(0, &mut buf, 8 * PAGE), Err(IoError(EIO)));
    assert_eq!(f.cached_pages(), 0);
    disk.s.lock().unwrap().fail_reads = false;
    assert_eq!(read_all(&f, 0, 16, 8 * PAGE), pattern(0, 0)[..16]);
}

#[test]
fn truncate_drops_pages_and_zeroes_the_tail() {
    let _g = serial();
    let disk = MemDisk::with_pattern(8);
    let f = cache().open(Box::new(disk.clone()));
    let _ = read_all(&f, 0, 8 * FRAME_SIZE, 8 * PAGE);
    assert_eq!(f.cached_pages(), 8);
    f.truncate(2 * PAGE + 10).unwrap();
    assert_eq!(f.cached_pages(), 3);
    let tail = read_all(&f, 2 * PAGE, FRAME_SIZE, 3 * PAGE);
    assert_eq!(&tail[..10], &pattern(2, 0)[..10]);
    assert!(
        tail[10..].iter().all(|&b| b == 0),
        "bytes past the new end survived"
    );
}

#[test]
fn a_file_larger_than_memory_is_written_and_read_back() {
    let _g = serial();
    let fa = testing::allocator();
    let disk = MemDisk::default();
    let pc = cache();
    // Keep most of the arena off limits so the cache must evict and write back.
    pc.set_low_watermark(fa.free_frames().saturating_sub(256));
    let f = pc.open(Box::new(disk.clone()));
    let pages = 2 * testing::FRAMES;
    let ev0 = counters::get(Counter::PagecacheEvictions);
    for i in 0..pages {
        assert_eq!(
            f.write(i * PAGE, &pattern(i, 9), i * PAGE),
            Ok(FRAME_SIZE),
            "page {i}"
        );
        pc.set_now(i);
    }
    assert!(
        f.cached_pages() < 1024,
        "{} pages cached: nothing was evicted",
        f.cached_pages()
    );
    f.writeback().unwrap();
    for i in 0..pages {
        assert_eq!(
            read_all(&f, i * PAGE, FRAME_SIZE, pages * PAGE),
            pattern(i, 9),
            "page {i}"
        );
    }
    assert!(
        counters::get(Counter::PagecacheEvictions) - ev0 > pages,
        "evictions not counted"
    );
    drop(f);
    pc.set_low_watermark(0);
}

#[test]
fn background_writeback_takes_only_old_dirty_pages() {
    let _g = serial();
    let disk = MemDisk::default();
    let pc = cache();
    let f = pc.open(Box::new(disk.clone()));
    pc.set_now(100);
    f.write(0, b"abc", 0).unwrap();
    pc.set_now(103);
    assert_eq!(pc.writeback_older_than(5), 0);
    assert_eq!(f.dirty_pages(), 1);
    pc.set_now(106);
    assert_eq!(pc.writeback_older_than(5), 1);
    assert_eq!(f.dirty_pages(), 0);
    assert_eq!(&disk.page(0)[..3], b"abc");
}

#[test]
fn dropping_a_file_returns_its_frames() {
    let _g = serial();
    let fa = testing::allocator();
    let before = fa.free_frames();
    let pages0 = counters::get(Counter::PagecachePages);
    let f = cache().open(Box::new(MemDisk::with_pattern(16)));
    let _ = read_all(&f, 0, 16 * FRAME_SIZE, 16 * PAGE);
    assert!(fa.free_frames() < before);
    drop(f);
    assert_eq!(fa.free_frames(), before);
    assert_eq!(counters::get(Counter::PagecachePages), pages0);
}

#[test]
fn dirty_and_writeback_gauges_follow_every_transition() {
    let _g = serial();
    let (d0, w0) = (
        counters::get(Counter::NrDirty),
        counters::get(Counter::NrWriteback),
    );
    let disk = MemDisk::default();
    let f = cache().open(Box::new(disk.clone()));
    for i in 0..6 {
        f.write(i * PAGE, &pattern(i, 1), i * PAGE).unwrap();
    }
    // Writing a dirty page again does not count it twice.
    f.write(0, &pattern(0, 2), 6 * PAGE).unwrap();
    assert_eq!(counters::get(Counter::NrDirty), d0 + 6);
    // While the "device" writes, the pages count as under writeback, not dirty.
    let seen = Arc::new(StdMutex::new(None));
    let s2 = seen.clone();
    *disk.hook.lock().unwrap() = Some(Box::new(move |_| {
        *s2.lock().unwrap() = Some((
            counters::get(Counter::NrDirty),
            counters::get(Counter::NrWriteback),
        ));
    }));
    let (written, r) = f.writeback_range(0, u64::MAX, 4);
    assert_eq!((written, r), (4, Ok(())), "max_pages bounds the pass");
    assert_eq!(*seen.lock().unwrap(), Some((d0 + 2, w0 + 4)));
    *disk.hook.lock().unwrap() = None;
    assert_eq!(counters::get(Counter::NrDirty), d0 + 2);
    assert_eq!(counters::get(Counter::NrWriteback), w0);
    // A failed write puts the pages back to dirty.
    disk.s.lock().unwrap().fail_writes = 1;
    assert_eq!(f.writeback_range(0, u64::MAX, usize::MAX).0, 0);
    assert_eq!(counters::get(Counter::NrDirty), d0 + 2);
    // Truncating dirty pages away uncounts them.
    f.truncate(5 * PAGE).unwrap();
    assert_eq!(counters::get(Counter::NrDirty), d0 + 1);
    drop(f);
    assert_eq!(counters::get(Counter::NrDirty), d0);
    assert_eq!(counters::get(Counter::NrWriteback), w0);
}

#[test]
fn drop_clean_and_eviction_skip_dirty_and_mapped_pages() {
    let _g = serial();
    let pc = cache();
    let f = pc.open(Box::new(MemDisk::with_pattern(8)));
    let _ = read_all(&f, 0, 8 * FRAME_SIZE, 8 * PAGE);
    assert_eq!(f.cached_pages(), 8);
    // Page 1 is dirtied, page 2 mapped (the mapping holds its own frame reference).
    f.write(PAGE, b"x", 8 * PAGE).unwrap();
    let mapped = f.map_page(2, 8 * PAGE, true).unwrap();
    let (scan0, steal0) = (
        counters::get(Counter::Pgscan),
        counters::get(Counter::Pgsteal),
    );
    // CLOCK: the first pass clears the referenced bits, the second evicts.
    let freed = pc.evict_clean(100);
    assert_eq!(freed, 6, "6 of 8 pages are clean and unused");
    assert_eq!(counters::get(Counter::Pgsteal), steal0 + 6);
    assert!(counters::get(Counter::Pgscan) >= scan0 + 8);
    assert_eq!(f.frame_of(2), Some(mapped.pfn()));
    assert!(f.frame_of(1).is_some());
    // drop_caches: nothing more goes while page 1 is dirty and page 2 mapped.
    assert_eq!(pc.drop_clean(), 0);
    drop(mapped);
    f.writeback().unwrap();
    assert_eq!(pc.drop_clean(), 2);
    assert_eq!(f.cached_pages(), 0);
}

#[test]
fn the_eviction_clock_never_grows_without_bound() {
    let _g = serial();
    let pc = cache();
    let f = pc.open(Box::new(MemDisk::default()));
    // Pages that leave by truncate leave stale clock entries behind; eviction passes
    // compact them away.
    for round in 0..40u64 {
        for i in 0..256 {
            f.write(i * PAGE, &[round as u8], i * PAGE).unwrap();
        }
        f.truncate(0).unwrap();
        pc.evict_clean(1);
    }
    assert!(
        pc.lru.lock().len() <= 2 * pc.pages() as usize + 4096,
        "{} clock entries for {} pages",
        pc.lru.lock().len(),
        pc.pages()
    );
}

/// A read started but not completed: first page, frames, completion.
type PendingRead = (u64, Vec<FrameRef>, ReadDone);

/// A disk whose reads complete only when the test says so (as an interrupt would).
#[derive(Clone, Default)]
struct DeferredDisk {
    inner: MemDisk,
    pending: Arc<StdMutex<Vec<PendingRead>>>,
}

impl PageIo for DeferredDisk {
    fn read_pages(&self, first: u64, frames: Vec<FrameRef>) -> Result<(), IoError> {
        self.inner.read_pages(first, frames)
    }
    fn write_pages(&self, first: u64, frames: Vec<FrameRef>) -> Result<(), IoError> {
        self.inner.write_pages(first, frames)
    }
    fn start_read(&self, first: u64, frames: Vec<FrameRef>, done: ReadDone) {
        self.pending.lock().unwrap().push((first, frames, done));
    }
}

impl DeferredDisk {
    /// Wait until a read is pending, then complete every pending read (`ok`: with the
    /// data; otherwise with EIO). Returns how many reads were completed.
    fn complete(&self, ok: bool) -> usize {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let reads: Vec<_> = core::mem::take(&mut *self.pending.lock().unwrap());
            if !reads.is_empty() {
                let n = reads.len();
                for (first, frames, done) in reads {
                    if ok {
                        done(self.inner.read_pages(first, frames));
                    } else {
                        done(Err(IoError(EIO)));
                    }
                }
                return n;
            }
            assert!(std::time::Instant::now() < deadline, "no read was started");
            std::thread::yield_now();
        }
    }
}

#[test]
fn readers_of_a_page_being_read_wait_for_the_one_read_in_flight() {
    let _g = serial();
    let disk = DeferredDisk {
        inner: MemDisk::with_pattern(8),
        ..DeferredDisk::default()
    };
    let pc = cache();
    let f: Arc<CachedFile> = pc.open(Box::new(disk.clone()));
    let size = 8 * PAGE;
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let f = f.clone();
            std::thread::spawn(move || read_all(&f, 100, 50, size))
        })
        .collect();
    // Both readers block on the page while its read is in flight: one read only.
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(
        disk.pending.lock().unwrap().len(),
        1,
        "one read for both readers"
    );
    let frame = f
        .frame_of(0)
        .expect("the page is in the index while being read");
    let locked = pc.frames().table().get(frame).unwrap().flags();
    assert!(locked.contains(FrameFlags::LOCKED) && !locked.contains(FrameFlags::UPTODATE));
    assert_eq!(disk.complete(true), 1);
    for r in readers {
        assert_eq!(r.join().unwrap(), pattern(0, 0)[100..150]);
    }
    // A failed read: the waiter gets EIO, the pages leave the cache, a retry reads again.
    let g = f.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 8];
        g.read(6 * PAGE, &mut buf, size)
    });
    assert_eq!(disk.complete(false), 1);
    assert_eq!(reader.join().unwrap(), Err(IoError(EIO)));
    assert!(f.frame_of(6).is_none(), "a failed page is dropped");
    let g = f.clone();
    let retry = std::thread::spawn(move || read_all(&g, 6 * PAGE, 8, size));
    assert_eq!(disk.complete(true), 1);
    assert_eq!(retry.join().unwrap(), pattern(6, 0)[..8]);
}

#[test]
fn a_page_that_keeps_failing_is_given_up_and_fsync_reports_it() {
    let _g = serial();
    let disk = MemDisk::default();
    let f = cache().open(Box::new(disk.clone()));
    let mut cursor = f.error_cursor();
    f.write(0, &pattern(0, 1), 0).unwrap();
    disk.s.lock().unwrap().fail_writes = u32::MAX;
    for attempt in 1..=WRITE_ATTEMPTS {
        assert_eq!(f.dirty_pages(), 1, "still dirty before attempt {attempt}");
        assert!(f.writeback().is_err());
    }
    assert_eq!(
        f.dirty_pages(),
        0,
        "given up after {WRITE_ATTEMPTS} attempts"
    );
    assert_eq!(
        read_all(&f, 0, 8, PAGE),
        pattern(0, 1)[..8],
        "the data stays cached"
    );
    assert_eq!(
        f.fsync(&mut cursor),
        Err(IoError(EIO)),
        "fsync reports the loss"
    );
    assert_eq!(f.fsync(&mut cursor), Ok(()), "once");
}

// ---- Aliases: page-cache pages of two files sharing one frame -------------------------

/// Two 4-page files on their own disks; B's pages 1 and 2 alias A's (as sendfile will
/// make them). Returns (a, disk a, b, disk b).
fn aliased_pair(pc: &'static PageCache) -> (Arc<CachedFile>, MemDisk, Arc<CachedFile>, MemDisk) {
    let (da, db) = (MemDisk::with_pattern(4), MemDisk::default());
    let a = pc.open(Box::new(da.clone()));
    let b = pc.open(Box::new(db.clone()));
    let size = 4 * PAGE;
    // B starts as 4 zero pages of its own (written, then written back).
    b.write(0, &vec![0u8; 4 * FRAME_SIZE], 0).unwrap();
    b.writeback().unwrap();
    let aliases0 = counters::get(Counter::AliasPages);
    b.alias_page(1, &a, 1, size).unwrap();
    b.alias_page(2, &a, 2, size).unwrap();
    assert_eq!(counters::get(Counter::AliasPages), aliases0 + 2);
    (a, da, b, db)
}

fn sharers(pfn: Pfn) -> u32 {
    testing::allocator().table().get(pfn).unwrap().sharers()
}

#[test]
fn an_alias_reads_the_source_bytes_and_is_written_to_its_own_blocks() {
    let _g = serial();
    let (a, da, b, db) = aliased_pair(cache());
    let size = 4 * PAGE;
    let frame = a.frame_of(1).unwrap();
    assert_eq!(
        b.frame_of(1),
        Some(frame),
        "no copy: the pages share the frame"
    );
    assert_eq!(sharers(frame), 2);
    assert_eq!(read_all(&b, PAGE, FRAME_SIZE, size), pattern(1, 0));
    assert_eq!(b.dirty_pages(), 2, "the alias must still reach B's blocks");
    assert_eq!(a.dirty_pages(), 0);
    b.writeback().unwrap();
    assert_eq!(
        db.page(1),
        pattern(1, 0),
        "B's blocks got the source's bytes"
    );
    assert_eq!(db.page(2), pattern(2, 0));
    assert!(da.s.lock().unwrap().writes.is_empty(), "A was written");
    assert_eq!(b.frame_of(1), Some(frame), "writeback broke the share");
}

/// The probe of the issue: writing A must leave B's bytes alone, move A (not B) to a
/// copy once, and truncating A must not zero B; reclaim frees the shared frame once both
/// sides are clean.
#[test]
fn probe_writing_or_truncating_one_side_leaves_the_other_unchanged() {
    let _g = serial();
    let pc = cache();
    let (a, _da, b, _db) = aliased_pair(pc);
    let size = 4 * PAGE;
    let shared = a.frame_of(1).unwrap();
    let breaks0 = counters::get(Counter::CowBreaks);
    a.write(PAGE + 10, b"written to A", size).unwrap();
    assert_eq!(counters::get(Counter::CowBreaks), breaks0 + 1, "one break");
    assert_ne!(a.frame_of(1), Some(shared), "A's frame did not move");
    assert_eq!(b.frame_of(1), Some(shared), "B lost its frame");
    assert_eq!(sharers(shared), 1);
    assert_eq!(
        read_all(&b, PAGE, FRAME_SIZE, size),
        pattern(1, 0),
        "B changed"
    );
    let mut want = pattern(1, 0);
    want[10..22].copy_from_slice(b"written to A");
    assert_eq!(read_all(&a, PAGE, FRAME_SIZE, size), want);
    // A second write to A's (now private) page breaks nothing.
    a.write(PAGE + 30, b"again", size).unwrap();
    assert_eq!(counters::get(Counter::CowBreaks), breaks0 + 1);

    // Truncate A inside its aliased page 2: B's page 2 keeps every byte.
    let shared2 = a.frame_of(2).unwrap();
    a.truncate(2 * PAGE + 2).unwrap();
    assert_eq!(counters::get(Counter::CowBreaks), breaks0 + 2);
    assert_eq!(read_all(&b, 2 * PAGE, FRAME_SIZE, size), pattern(2, 0));
    assert_eq!(b.frame_of(2), Some(shared2));
    let tail = read_all(&a, 2 * PAGE, FRAME_SIZE, 3 * PAGE);
    assert_eq!(&tail[..2], &pattern(2, 0)[..2]);
    assert!(tail[2..].iter().all(|&x| x == 0), "A's tail not zeroed");

    // Reclaim: once B is clean, its pages (aliased or not) are evictable.
    b.writeback().unwrap();
    a.writeback().unwrap();
    let freed = pc.evict_clean(100) + pc.evict_clean(100);
    assert!(freed >= 4, "reclaim freed {freed} frames");
    assert_eq!(b.cached_pages(), 0);
    assert_eq!(
        read_all(&b, 2 * PAGE, FRAME_SIZE, size),
        pattern(2, 0),
        "B re-read"
    );
}

#[test]
fn writing_the_alias_side_breaks_only_its_own_page() {
    let _g = serial();
    let (a, _da, b, db) = aliased_pair(cache());
    let size = 4 * PAGE;
    let shared = a.frame_of(2).unwrap();
    b.write(2 * PAGE, b"B's own", size).unwrap();
    assert_eq!(a.frame_of(2), Some(shared), "A's page moved");
    assert_ne!(b.frame_of(2), Some(shared));
    assert_eq!(read_all(&a, 2 * PAGE, FRAME_SIZE, size), pattern(2, 0));
    // B's page 1 is still an alias; truncating B inside page 1 breaks it, A untouched.
    b.truncate(PAGE + 3).unwrap();
    assert_eq!(read_all(&a, PAGE, FRAME_SIZE, size), pattern(1, 0));
    assert_ne!(b.frame_of(1), a.frame_of(1));
    b.writeback().unwrap();
    let mut want = pattern(1, 0);
    want[3..].fill(0);
    assert_eq!(db.page(1), want);
}

#[test]
fn writeback_of_one_side_while_the_other_is_written_sees_stable_bytes() {
    let _g = serial();
    let (a, _da, b, db) = aliased_pair(cache());
    let size = 4 * PAGE;
    let shared = a.frame_of(1).unwrap();
    // While B's pages are "under DMA" from the shared frames, A is written.
    let weak = Arc::downgrade(&a);
    *db.hook.lock().unwrap() = Some(Box::new(move |_| {
        if let Some(a) = weak.upgrade() {
            a.write(PAGE, &pattern(1, 9), size).unwrap();
        }
    }));
    b.writeback().unwrap();
    *db.hook.lock().unwrap() = None;
    assert_eq!(db.page(1), pattern(1, 0), "B's DMA saw A's write");
    assert_eq!(read_all(&a, PAGE, FRAME_SIZE, size), pattern(1, 9));
    assert_eq!(b.frame_of(1), Some(shared));
    assert_eq!(sharers(shared), 1);
    // And the other way round: a source page dirty when it was aliased is written back
    // from the shared frame while the alias side is written.
    let pc = cache();
    let (da, db) = (MemDisk::with_pattern(4), MemDisk::with_pattern(4));
    let a = pc.open(Box::new(da.clone()));
    let b = pc.open(Box::new(db.clone()));
    a.write(2 * PAGE, &pattern(2, 7), size).unwrap();
    b.alias_page(2, &a, 2, size).unwrap();
    let shared = a.frame_of(2).unwrap();
    assert_eq!(b.frame_of(2), Some(shared));
    let weak = Arc::downgrade(&b);
    *da.hook.lock().unwrap() = Some(Box::new(move |_| {
        if let Some(b) = weak.upgrade() {
            b.write(2 * PAGE, &pattern(2, 5), size).unwrap();
        }
    }));
    a.writeback().unwrap();
    *da.hook.lock().unwrap() = None;
    assert_eq!(da.page(2), pattern(2, 7), "A's DMA saw B's write");
    assert_eq!(read_all(&a, 2 * PAGE, FRAME_SIZE, size), pattern(2, 7));
    assert_eq!(read_all(&b, 2 * PAGE, FRAME_SIZE, size), pattern(2, 5));
    assert_eq!(a.frame_of(2), Some(shared));
    b.writeback().unwrap();
    assert_eq!(db.page(2), pattern(2, 5));
}

#[test]
fn a_writable_mapping_of_an_alias_gets_a_private_frame_and_a_busy_source_is_refused() {
    let _g = serial();
    let (a, _da, b, _db) = aliased_pair(cache());
    let size = 4 * PAGE;
    let shared = a.frame_of(1).unwrap();
    // Read-only mappings may share; a writable shared mapping must not.
    let ro = b.map_page(1, size, false).unwrap();
    assert_eq!(ro.pfn(), shared);
    drop(ro);
    let rw = b.map_page(1, size, true).unwrap();
    assert_ne!(rw.pfn(), shared, "stores through the mapping would reach A");
    assert_eq!(a.frame_of(1), Some(shared));
    // A page whose frame is mapped cannot become an alias source: stores would change it
    // behind the cache's back.
    assert_eq!(a.alias_page(3, &b, 1, size), Err(IoError(EBUSY)));
    drop(rw);
    // An alias of itself is refused too.
    assert_eq!(a.alias_page(0, &a, 0, size), Err(IoError(EBUSY)));
}

#[test]
fn dropping_either_file_keeps_the_other_sides_frame() {
    let _g = serial();
    let (a, _da, b, _db) = aliased_pair(cache());
    let size = 4 * PAGE;
    let shared = b.frame_of(2).unwrap();
    b.writeback().unwrap();
    drop(a);
    assert_eq!(sharers(shared), 1);
    assert_eq!(read_all(&b, 2 * PAGE, FRAME_SIZE, size), pattern(2, 0));
    let d = testing::allocator().table().get(shared).unwrap();
    assert!(!d.flags().contains(FrameFlags::FREE));
    drop(b);
    assert!(d.flags().contains(FrameFlags::FREE) || d.owner() != Owner::PageCache);
}

static MOVED: StdMutex<Vec<(u64, u64, Pfn)>> = StdMutex::new(Vec::new());

fn record_moved(file: u64, index: u64, old: Pfn) {
    MOVED.lock().unwrap().push((file, index, old));
}

#[test]
fn a_mapped_page_that_moves_is_reported_for_its_stale_mappings() {
    let _g = serial();
    let pc = cache();
    pc.set_moved_hook(record_moved);
    MOVED.lock().unwrap().clear();
    let (a, _da, b, _db) = aliased_pair(pc);
    let size = 4 * PAGE;
    // A process maps B's aliased page 1 read-only (the mapping holds a reference).
    let mapped = b.map_page(1, size, false).unwrap();
    // Writing B moves B's page off the frame the mapping still holds (A keeps it):
    // reported, so the kernel can make the mapping refault.
    b.write(PAGE, b"B", size).unwrap();
    assert_eq!(*MOVED.lock().unwrap(), vec![(b.id(), 1, mapped.pfn())]);
    assert_ne!(b.frame_of(1), Some(mapped.pfn()));
    assert_eq!(a.frame_of(1), Some(mapped.pfn()));
    // Writing A now changes A's own frame in place (no sharer left): nothing moves.
    a.write(PAGE, b"A", size).unwrap();
    assert_eq!(a.frame_of(1), Some(mapped.pfn()));
    assert_eq!(MOVED.lock().unwrap().len(), 1);
    // An unmapped page that moves is not reported.
    let c = pc.open(Box::new(MemDisk::with_pattern(4)));
    c.alias_page(2, &b, 2, size).unwrap();
    c.write(2 * PAGE, b"C", size).unwrap();
    assert_eq!(MOVED.lock().unwrap().len(), 1);
    assert_ne!(b.frame_of(1), Some(mapped.pfn()));
    drop(mapped);
}

/// A user buffer that is a shared mapping of the very page being read or written: the
/// copy's two sides are the same frame, overlapping. It must behave as `memmove`.
#[test]
fn reads_and_writes_whose_buffer_is_the_page_itself_copy_as_memmove() {
    let _g = serial();
    let f = cache().open(Box::new(MemDisk::with_pattern(2)));
    let size = 2 * PAGE;
    let orig = read_all(&f, 0, FRAME_SIZE, size);
    let pfn = f.frame_of(0).unwrap();
    // read(fd at 10, buf = the page's own bytes 20..120)
    // The user's mapping of the page: a reference of its own.
    let user = FrameRef::new(testing::allocator(), pfn).unwrap();
    let dst = user.piece(20, 100);
    assert_eq!(f.read_to_frame(10, dst, size), Ok(100));
    let mut want = orig.clone();
    want.copy_within(10..110, 20);
    assert_eq!(read_all(&f, 0, FRAME_SIZE, size), want);
    // write(fd at 50, buf = the page's own bytes 40..140)
    let src = user.piece(40, 100);
    assert_eq!(f.write_from_frame(50, src, size), Ok(100));
    want.copy_within(40..140, 50);
    assert_eq!(read_all(&f, 0, FRAME_SIZE, size), want);
    assert_eq!(f.frame_of(0), Some(pfn));
    // Across a page boundary into another frame: plain copies.
    let other = f.frame_of(1).unwrap();
    let other_user = FrameRef::new(testing::allocator(), other).unwrap();
    let dst = other_user.piece(0, 200);
    assert_eq!(f.read_to_frame(PAGE - 100, dst, size), Ok(200));
    let page1 = read_all(&f, PAGE, 200, size);
    assert_eq!(&page1[..100], &want[FRAME_SIZE - 100..]);
}

/// sendfile's core: whole aligned pages alias (no bytes copied), the head and tail are
/// copied, the target's blocks get the source's bytes, and a later write to either side
/// breaks only its own page.
#[test]
fn copy_from_aliases_whole_pages_and_copies_the_rest() {
    let _g = serial();
    let pc = cache();
    let (da, db) = (MemDisk::with_pattern(8), MemDisk::default());
    let a = pc.open(Box::new(da.clone()));
    let b = pc.open(Box::new(db.clone()));
    let src_size = 8 * PAGE - 100; // the last page is partial
    let (aliases0, copied0) = (
        counters::get(Counter::AliasPages),
        counters::get(Counter::DataCopyBytes),
    );
    // From byte 1000 of page 0 to the end: head (page 0's tail), pages 1..=6 whole,
    // the partial page 7.
    let n = b
        .copy_from(1000, &a, 1000, usize::MAX, src_size, 0)
        .unwrap();
    assert_eq!(n as u64, src_size - 1000);
    assert_eq!(counters::get(Counter::AliasPages), aliases0 + 6);
    let head = FRAME_SIZE as u64 - 1000;
    let tail = FRAME_SIZE as u64 - 100;
    assert_eq!(
        counters::get(Counter::DataCopyBytes) - copied0,
        head + tail,
        "only the partial pages are copied"
    );
    for i in 1..7 {
        assert_eq!(b.frame_of(i), a.frame_of(i), "page {i} is not an alias");
    }
    assert_ne!(b.frame_of(0), a.frame_of(0));
    assert_ne!(b.frame_of(7), a.frame_of(7));
    let want = read_all(&a, 1000, (src_size - 1000) as usize, src_size);
    assert_eq!(read_all(&b, 1000, want.len(), src_size), want);
    b.writeback().unwrap();
    for i in 1..7 {
        assert_eq!(db.page(i), pattern(i, 0), "B's block {i}");
    }
    assert_eq!(&db.page(0)[1000..], &pattern(0, 0)[1000..]);
    // A write to A after the copy leaves B alone: one break.
    let breaks0 = counters::get(Counter::CowBreaks);
    a.write(3 * PAGE, b"changed", src_size).unwrap();
    assert_eq!(counters::get(Counter::CowBreaks), breaks0 + 1);
    assert_eq!(read_all(&b, 3 * PAGE, FRAME_SIZE, src_size), pattern(3, 0));

    // Misaligned offsets: nothing can alias, everything is copied, bytes equal.
    let c = pc.open(Box::new(MemDisk::default()));
    let aliases1 = counters::get(Counter::AliasPages);
    let n = c
        .copy_from(10, &b, 2 * PAGE, 3 * FRAME_SIZE, src_size, 0)
        .unwrap();
    assert_eq!(n, 3 * FRAME_SIZE);
    assert_eq!(counters::get(Counter::AliasPages), aliases1);
    assert_eq!(
        read_all(&c, 10, n, 10 + n as u64),
        read_all(&b, 2 * PAGE, n, src_size)
    );
    // A dirty target page is busy: copied instead of aliased, still correct.
    let d = pc.open(Box::new(MemDisk::default()));
    d.write(PAGE, b"dirty", 0).unwrap();
    let n = d
        .copy_from(0, &a, 0, 3 * FRAME_SIZE, src_size, 2 * PAGE)
        .unwrap();
    assert_eq!(n, 3 * FRAME_SIZE);
    assert_ne!(d.frame_of(1), a.frame_of(1));
    assert_eq!(d.frame_of(2), a.frame_of(2));
    assert_eq!(read_all(&d, 0, n, 3 * PAGE), read_all(&a, 0, n, src_size));
    // Past the source's end: nothing.
    assert_eq!(d.copy_from(0, &a, src_size, 10, src_size, 3 * PAGE), Ok(0));
}

// ---- sendfile's transitions while I/O is pending ------------------------------------

/// The source page is still being read in (LOCKED) when the copy wants it: the copy
/// waits for that one read and then shares the frame it filled (no second read, no
/// copy).
#[test]
fn a_copy_waits_for_a_source_page_being_read_then_shares_it() {
    let _g = serial();
    let disk = DeferredDisk {
        inner: MemDisk::with_pattern(4),
        ..DeferredDisk::default()
    };
    let pc = cache();
    let a: Arc<CachedFile> = pc.open(Box::new(disk.clone()));
    let b: Arc<CachedFile> = pc.open(Box::new(MemDisk::default()));
    let size = 4 * PAGE;
    let copied0 = counters::get(Counter::DataCopyBytes);
    let (a2, b2) = (a.clone(), b.clone());
    let copier = std::thread::spawn(move || b2.copy_from(0, &a2, 0, 2 * FRAME_SIZE, size, 0));
    // Wait (bounded) until the copy has started the source's read, not for a fixed time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while disk.pending.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the copy started no read"
        );
        std::thread::yield_now();
    }
    let frame = a.frame_of(0).expect("the source page is being read");
    assert!(
        pc.frames()
            .table()
            .get(frame)
            .unwrap()
            .flags()
            .contains(FrameFlags::LOCKED),
        "the source page is not in flight"
    );
    assert!(
        b.frame_of(0).is_none(),
        "the copy went on before the read ended"
    );
    // Complete every read the copy starts until it is done.
    while !copier.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "the copy never finished"
        );
        if !disk.pending.lock().unwrap().is_empty() {
            disk.complete(true);
        }
        std::thread::yield_now();
    }
    assert_eq!(copier.join().unwrap(), Ok(2 * FRAME_SIZE));
    assert_eq!(
        b.frame_of(0),
        Some(frame),
        "the target does not share the frame read"
    );
    assert_eq!(b.frame_of(1), a.frame_of(1));
    assert_eq!(
        counters::get(Counter::DataCopyBytes),
        copied0,
        "bytes were copied"
    );
    assert_eq!(
        read_all(&b, 0, 2 * FRAME_SIZE, size),
        read_all(&a, 0, 2 * FRAME_SIZE, size)
    );
}

/// The target gets mapped writable while its writeback DMA reads the shared frame: the
/// mapping gets a frame of its own (the alias breaks), the DMA finishes on the shared
/// frame with the copied bytes, the source keeps its frame.
#[test]
fn the_target_mapped_writable_during_its_writeback_breaks_off_without_disturbing_the_dma() {
    let _g = serial();
    let (a, _da, b, db) = aliased_pair(cache());
    let size = 4 * PAGE;
    let shared = a.frame_of(1).unwrap();
    let breaks0 = counters::get(Counter::CowBreaks);
    let mapped: Arc<StdMutex<Option<FrameRef>>> = Arc::default();
    let (weak, slot) = (Arc::downgrade(&b), mapped.clone());
    *db.hook.lock().unwrap() = Some(Box::new(move |first| {
        if first <= 1
            && let Some(b) = weak.upgrade()
            && slot.lock().unwrap().is_none()
        {
            let f = b.map_page(1, size, true).unwrap();
            // A store through the new mapping.
            f.piece(0, 4).write(0, b"MAP!");
            *slot.lock().unwrap() = Some(f);
        }
    }));
    b.writeback().unwrap();
    *db.hook.lock().unwrap() = None;
    let f = mapped.lock().unwrap().take().expect("the hook ran");
    assert_ne!(f.pfn(), shared, "the writable mapping got the shared frame");
    assert_eq!(b.frame_of(1), Some(f.pfn()));
    assert_eq!(a.frame_of(1), Some(shared), "the source lost its frame");
    assert_eq!(counters::get(Counter::CowBreaks), breaks0 + 1);
    assert_eq!(db.page(1), pattern(1, 0), "the DMA saw the mapping's store");
    assert_eq!(read_all(&a, PAGE, 4, size), pattern(1, 0)[..4]);
    // The store reaches B's blocks at the next writeback, as any mapped store.
    b.mapped_page_dirtied(1, f.pfn());
    drop(f);
    b.writeback().unwrap();
    assert_eq!(&db.page(1)[..4], b"MAP!");
}

/// The source is truncated away and its pages evicted while the target's writeback DMA
/// reads the shared frames: the frames live on (held by the target's pages and the I/O),
/// the target's blocks get the copied bytes, and the frames end with one sharer.
#[test]
fn the_source_truncated_and_evicted_during_the_targets_writeback() {
    let _g = serial();
    let pc = cache();
    let (a, _da, b, db) = aliased_pair(pc);
    let size = 4 * PAGE;
    let (s1, s2) = (a.frame_of(1).unwrap(), a.frame_of(2).unwrap());
    let weak = Arc::downgrade(&a);
    *db.hook.lock().unwrap() = Some(Box::new(move |_| {
        if let Some(a) = weak.upgrade() {
            a.truncate(0).unwrap();
            pc.evict_clean(64);
        }
    }));
    b.writeback().unwrap();
    *db.hook.lock().unwrap() = None;
    assert_eq!(a.cached_pages(), 0);
    assert_eq!(db.page(1), pattern(1, 0));
    assert_eq!(db.page(2), pattern(2, 0));
    assert_eq!((sharers(s1), sharers(s2)), (1, 1));
    assert_eq!(
        read_all(&b, PAGE, 2 * FRAME_SIZE, size)[..FRAME_SIZE],
        pattern(1, 0)[..]
    );
}

#[test]
fn direct_io_writes_back_before_and_drops_or_rereads_after() {
    let _g = serial();
    let disk = MemDisk::with_pattern(8);
    let f = cache().open(Box::new(disk.clone()));
    let size = 8 * PAGE;
    let _ = read_all(&f, 0, 8 * FRAME_SIZE, size);
    f.write(PAGE, &pattern(1, 5), size).unwrap();
    // Before a direct read: the dirty page reaches the disk.
    f.sync_range(0, 7).unwrap();
    assert_eq!(disk.page(1), pattern(1, 5));
    assert_eq!(f.dirty_pages(), 0);
    // Before a direct write: everything goes but the mapped page.
    let mapped = f.map_page(2, size, true).unwrap();
    assert_eq!(f.invalidate_range(0, 7), Ok(1));
    assert_eq!(f.cached_pages(), 1);
    // A read that races with the direct write caches page 3's old bytes...
    let _ = read_all(&f, 3 * PAGE, FRAME_SIZE, size);
    // ...then the device writes pages 2 and 3.
    disk.s.lock().unwrap().pages.insert(2, pattern(2, 9));
    disk.s.lock().unwrap().pages.insert(3, pattern(3, 9));
    assert_eq!(f.refresh_after_write(0, 7), 0);
    assert_eq!(f.frame_of(3), None, "the stale page is dropped");
    let mut seen = vec![0u8; FRAME_SIZE];
    mapped.whole().read(0, &mut seen);
    assert!(
        seen == pattern(2, 9),
        "the mapped page is read again in place"
    );
    assert_eq!(read_all(&f, 3 * PAGE, FRAME_SIZE, size), pattern(3, 9));
    // A store through the mapping during the write is newer: it stays.
    f.mapped_page_dirtied(2, mapped.pfn());
    assert_eq!(f.refresh_after_write(2, 2), 1);
    drop(mapped);
}
