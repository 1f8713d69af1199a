//! Aliases (pages of two files sharing one frame, for sendfile) and the copy-on-write
//! that keeps them apart when either side changes.

use super::*;

impl CachedFile {
    /// Give page `index` (backed by `old`) a private copy of its frame: for a write to a
    /// page under writeback (stable pages) or to an aliased frame (copy-on-write; counted
    /// in `cow_breaks`). Nothing happens if the page changed meanwhile. The old frame
    /// keeps its other holders: the I/O in flight, the other files' pages.
    pub(super) fn move_to_copy(&self, index: u64, old: Pfn) -> Result<(), IoError> {
        let copy = self.cache.alloc_frame()?;
        copy.copy_from(&self.cache.hold(old)?);
        self.set_frame_flags(copy.pfn(), FrameFlags::UPTODATE, FrameFlags::LOCKED);
        let mut st = self.state.lock();
        match st.pages.get_mut(&index) {
            Some(q) if q.pfn == old => {
                let shared = self.cache.sharers(old) > 1;
                let copy = copy.into_raw();
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
            _ => drop(st), // and the copy's reference with it
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
        let held = src.get_page(src_index, src_size)?;
        let pfn = held.pfn();
        // Besides our reference: only the pages sharing it may hold the frame.
        let in_use = self
            .cache
            .frames
            .table()
            .get(pfn)
            .is_none_or(|d| d.mappings() > 0 || d.other_references() > 1 || d.pincount() > 0);
        if in_use || (core::ptr::eq(self, src) && index == src_index) {
            return Err(IoError(EBUSY));
        }
        let mut st = self.state.lock();
        let old = match st.pages.get(&index) {
            Some(p) if p.pfn == pfn => {
                return Ok(()); // already an alias of it
            }
            Some(p) if self.cache.busy(p) => {
                return Err(IoError(EBUSY));
            }
            Some(_) => st.pages.remove(&index),
            None => None,
        };
        // The reference taken for us becomes the page's.
        self.cache.share(held.into_raw());
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
}
