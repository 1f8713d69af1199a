//! Eviction: the CLOCK over every file's pages, and `drop_caches`. Only clean pages that
//! nothing but the cache holds go; an aliased frame is freed with its last sharer.

use super::*;

impl PageCache {
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
    pub(super) fn busy(&self, page: &Page) -> bool {
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

    /// Append pages `first..first + count` of file `file` to the eviction clock. Its
    /// storage grows outside the clock's spin lock (a big allocation may have to reclaim,
    /// which takes that lock) and without panicking: if even that fails, the pages stay
    /// off the clock until it is next rebuilt ([`PageCache::compact_lru`]).
    pub(super) fn lru_push(&self, file: u64, first: u64, count: u64) {
        let n = count as usize;
        loop {
            let mut lru = self.lru.lock();
            if lru.capacity() - lru.len() >= n {
                lru.extend((0..count).map(|i| (file, first + i)));
                return;
            }
            let want = (lru.len() + n).max(2 * lru.capacity()).max(256);
            drop(lru);
            let mut bigger = VecDeque::new();
            if bigger.try_reserve_exact(want).is_err() {
                log::warn!("page cache: no memory to grow the eviction clock to {want} entries");
                return;
            }
            let mut lru = self.lru.lock();
            if lru.len() + n > want {
                continue; // it grew meanwhile past what we made room for
            }
            bigger.extend(lru.drain(..));
            bigger.extend((0..count).map(|i| (file, first + i)));
            *lru = bigger;
            return;
        }
    }

    /// The eviction clock holds stale entries of pages that left the cache by other
    /// paths (truncate, unlink); rebuild it when they outnumber the live ones, so it
    /// never grows without bound.
    pub(super) fn compact_lru(&self) {
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
        // Allocations here may fail without harm (this can run inside a heap allocation
        // under memory pressure): the clock is then rebuilt another time.
        let mut fresh = VecDeque::new();
        if fresh.try_reserve_exact(live + 64).is_err() {
            return;
        }
        for f in files {
            let Some(st) = f.state.try_lock() else {
                return; // held by whoever called us: try another time
            };
            let mut keys: Vec<u64> = Vec::new();
            if keys.try_reserve_exact(st.pages.len()).is_err()
                || fresh.try_reserve(st.pages.len()).is_err()
            {
                return;
            }
            keys.extend(st.pages.keys().copied());
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
        let freed = self
            .live_files()
            .iter()
            .map(|f| f.drop_clean_range(0, u64::MAX).0)
            .sum();
        self.compact_lru();
        freed
    }
}
