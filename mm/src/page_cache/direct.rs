//! Coherence with direct I/O (DESIGN.md: "raw I/O over a range that is cached"). A direct
//! read or write moves data between the disk and user pages without the page cache, so
//! the cache must not hold newer data than the disk before it (dirty pages are written
//! back first) nor older data after a direct write (cached pages are dropped, or read
//! again in place where they cannot be dropped).

use super::*;

impl CachedFile {
    /// Before a direct read of pages `[first, last]`: write their dirty pages back, and
    /// wait for the ones another writer was already writing (as Linux's
    /// `filemap_write_and_wait_range`), so the disk holds what the cache does. Returns
    /// the first write error.
    pub fn sync_range(&self, first: u64, last: u64) -> Result<(), IoError> {
        let result = self.writeback_range(first, last, usize::MAX).1;
        // Each page under writeback is waited for once, in order (a page whose writeback
        // starts later, behind the cursor, holds data newer than this call).
        let mut cursor = first;
        while cursor <= last {
            let busy = self
                .state
                .lock()
                .pages
                .range(cursor..=last)
                .find(|(_, p)| p.writeback)
                .map(|(&i, p)| (i, p.pfn));
            let Some((index, pfn)) = busy else {
                break;
            };
            while self
                .state
                .lock()
                .pages
                .get(&index)
                .is_some_and(|p| p.pfn == pfn && p.writeback)
            {
                crate::sync::relax();
            }
            match index.checked_add(1) {
                Some(next) => cursor = next,
                None => break,
            }
        }
        result
    }

    /// Drop the clean pages of `[first, last]` that nothing else uses. Returns the frames
    /// that freed and the pages that stay: dirty, under I/O, mapped, pinned or referenced.
    pub(super) fn drop_clean_range(&self, first: u64, last: u64) -> (usize, Vec<(u64, Pfn)>) {
        let mut st = self.state.lock();
        let mut stay = Vec::new();
        let mut victims = Vec::new();
        for (&i, p) in st.pages.range(first..=last) {
            if self.cache.busy(p) {
                stay.push((i, p.pfn));
            } else {
                victims.push(i);
            }
        }
        let pages: Vec<Page> = victims
            .into_iter()
            .filter_map(|i| st.pages.remove(&i))
            .collect();
        drop(st);
        counters::add(Counter::PagecacheEvictions, pages.len() as u64);
        let freed = pages
            .into_iter()
            .map(|p| self.cache.drop_page(p, &self.dirty))
            .filter(|&freed| freed)
            .count();
        (freed, stay)
    }

    /// Before a direct write to pages `[first, last]`: write their dirty pages back and
    /// drop every page there. Returns how many pages could not be dropped (mapped,
    /// pinned, under I/O); if any, the caller writes through the page cache instead, as
    /// Linux falls back to buffered I/O when it cannot invalidate.
    pub fn invalidate_range(&self, first: u64, last: u64) -> Result<usize, IoError> {
        self.sync_range(first, last)?;
        Ok(self.drop_clean_range(first, last).1.len())
    }

    /// After a direct write to pages `[first, last]`: drop the pages cached there
    /// meanwhile (a read that raced with the write may have brought in old data); a clean
    /// page that cannot be dropped (mapped by a process) and is this file's alone is read
    /// again from the disk in place, so every view of the file agrees with the disk.
    /// Returns the pages left as they are (dirty: a store newer than the write; or shared
    /// with another file, whose bytes they are).
    pub fn refresh_after_write(&self, first: u64, last: u64) -> usize {
        let mut left = 0;
        for (index, pfn) in self.drop_clean_range(first, last).1 {
            let again = {
                let st = self.state.lock();
                st.pages.get(&index).is_some_and(|p| {
                    p.pfn == pfn && !p.dirty && !p.writeback && self.cache.sharers(pfn) <= 1
                })
            };
            let frame = if again {
                self.cache.hold(pfn).ok()
            } else {
                None
            };
            let refreshed =
                frame.is_some_and(|f| self.io.read_pages(index, alloc::vec![f]).is_ok());
            if !refreshed {
                left += 1;
            }
        }
        left
    }
}
