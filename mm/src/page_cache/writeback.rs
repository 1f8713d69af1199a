//! Writeback: dirty pages written in contiguous runs and batches, errors kept for
//! `fsync`, pages given up after repeated failures; the system-wide passes (background,
//! `sync`, reclaim's).

use super::*;

impl PageCache {
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
            // Allocated at the first dirty page only: a range with none (the common case
            // before a direct read) costs no allocation.
            let mut batch: Vec<(u64, FrameRef)> = Vec::new();
            {
                let mut st = self.state.lock();
                for (&index, p) in st.pages.range_mut(cursor..=last) {
                    if batch.len() >= want {
                        break;
                    }
                    cursor = index.saturating_add(1);
                    if p.dirty && !p.writeback {
                        let Ok(held) = self.cache.hold(p.pfn) else {
                            continue;
                        };
                        // A pinned frame may be taking a device's write that this
                        // writeback does not see (a direct read into a shared mapping of
                        // the file, whose dirty bit was collected before the DMA ended):
                        // the page stays dirty, to be written again after the pin.
                        let pinned = self
                            .cache
                            .frames
                            .table()
                            .get(p.pfn)
                            .is_some_and(|d| d.pincount() > 0);
                        if !pinned {
                            p.set_dirty(false, &self.dirty);
                        }
                        p.set_writeback(true);
                        batch.push((index, held));
                    }
                }
            }
            if batch.is_empty() {
                break;
            }
            attempted += batch.len();
            let (ok, r) = self.write_batch(batch);
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
    pub(super) fn write_batch(&self, batch: Vec<(u64, FrameRef)>) -> (usize, Result<(), IoError>) {
        let mut written = 0;
        let mut result = Ok(());
        let mut batch = batch.into_iter().peekable();
        while let Some((first, frame)) = batch.next() {
            // One contiguous run; its references go to the I/O, which drops them when
            // the device is done.
            let mut run: Vec<(u64, Pfn)> = alloc::vec![(first, frame.pfn())];
            let mut frames = alloc::vec![frame];
            while let Some((index, _)) = batch.peek()
                && *index == run[run.len() - 1].0 + 1
            {
                let (index, frame) = batch.next().expect("peeked");
                run.push((index, frame.pfn()));
                frames.push(frame);
            }
            let r = self.io.write_pages(first, frames);
            let mut st = self.state.lock();
            let mut given_up = 0;
            for &(index, pfn) in &run {
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
            match r {
                Ok(()) => written += run.len(),
                Err(e) => {
                    self.last_errno.store(e.0, Ordering::Relaxed);
                    self.wb_errors.fetch_add(1, Ordering::Release);
                    result = result.and(Err(e));
                }
            }
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
}
