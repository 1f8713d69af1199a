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
        let Ok(source) = self.cache.hold(old) else {
            // The old frame is gone (every holder let go meanwhile): the page changed,
            // and the caller looks again.
            return Ok(());
        };
        copy.copy_from(&source);
        drop(source);
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
        self.install_dirty(st, index, held, old);
        counters::add(Counter::AliasPages, 1);
        Ok(())
    }

    /// Make `frame` (whose reference the page takes) page `index`, dirty, under the
    /// state lock `st`; `old` is the page it replaces (already out of the index), whose
    /// place in the eviction clock the new page takes.
    fn install_dirty(
        &self,
        mut st: crate::sync::SpinMutexGuard<'_, FileState>,
        index: u64,
        frame: FrameRef,
        old: Option<Page>,
    ) {
        let pfn = frame.into_raw();
        self.cache.share(pfn);
        let mut page = Page::fresh(pfn);
        page.dirtied_at = self.cache.now.load(Ordering::Relaxed);
        page.set_dirty(true, &self.dirty);
        st.pages.insert(index, page);
        drop(st);
        counters::add(Counter::PagecachePages, 1);
        match old {
            Some(old) => {
                self.cache.drop_page(old, &self.dirty);
            }
            None => self.cache.lru_push(self.id, index, 1),
        }
    }

    /// Copy `len` bytes of `src` from `src_off` into this file at `dst_off` without
    /// moving the bytes through the CPU where it can (sendfile, `copy_file_range`):
    /// each page that lies whole in the range on both sides, at the same offset within
    /// the page, becomes an alias of the source's page ([`CachedFile::alias_page`]); the
    /// rest (a partial head or tail, a misaligned range, a page `alias_page` refuses as
    /// busy) is copied frame to frame and counted in `data_copy_bytes`. `src_size` is
    /// the source's size; the caller has already made this file at least
    /// `dst_off + len` bytes long (so writeback allocates the new pages' blocks), and
    /// `dst_old_size` is its size before that (pages past it are not read before they
    /// are overwritten). The caller keeps writers of both files out. Returns the bytes
    /// copied; short only on an error after some progress.
    pub fn copy_from(
        &self,
        dst_off: u64,
        src: &CachedFile,
        src_off: u64,
        len: usize,
        src_size: u64,
        dst_old_size: u64,
    ) -> Result<usize, IoError> {
        let len = len.min(src_size.saturating_sub(src_off) as usize);
        let mut done = 0usize;
        let fail = |e: IoError, done: usize| if done == 0 { Err(e) } else { Ok(done) };
        while done < len {
            let (s, d) = (src_off + done as u64, dst_off + done as u64);
            let left = len - done;
            if s % PAGE == 0 && d % PAGE == 0 && left >= FRAME_SIZE && s + PAGE <= src_size {
                match self.alias_page(d / PAGE, src, s / PAGE, src_size) {
                    Ok(()) => {
                        done += FRAME_SIZE;
                        continue;
                    }
                    Err(IoError(EBUSY)) => {} // in use: copied below
                    Err(e) => return fail(e, done),
                }
            }
            // One piece inside one page on both sides.
            let n = left
                .min(FRAME_SIZE - (s % PAGE) as usize)
                .min(FRAME_SIZE - (d % PAGE) as usize);
            let page = match src.get_page(s / PAGE, src_size) {
                Ok(p) => p,
                Err(e) => return fail(e, done),
            };
            let from = page.piece((s % PAGE) as usize, n);
            match self.write_pieces(d, n, dst_old_size, |dst, at| {
                phys::copy_piece(from.sub(at, dst.len()), dst);
            }) {
                Ok(k) if k == n => done += n,
                Ok(k) => return Ok(done + k),
                Err(e) => return fail(e, done),
            }
        }
        Ok(done)
    }

    /// A reference to page `index`'s up-to-date frame (read in first if needed), for a
    /// device to DMA from (a copy to a raw block device).
    pub fn frame_for_io(&self, index: u64, file_size: u64) -> Result<FrameRef, IoError> {
        self.get_page(index, file_size)
    }

    /// Make `frame` (filled with this file's page `index` by a device, no CPU copy) that
    /// page, dirty, so writeback writes it to the file's blocks: a copy from a raw block
    /// device. A page cached there before is replaced; if it is busy (dirty, under I/O,
    /// mapped), EBUSY and the frame is dropped. The caller has made the file cover the
    /// page and keeps writers out.
    pub fn adopt_page(&self, index: u64, frame: FrameRef) -> Result<(), IoError> {
        self.set_frame_flags(
            frame.pfn(),
            FrameFlags::UPTODATE,
            FrameFlags::LOCKED | FrameFlags::ERROR,
        );
        let mut st = self.state.lock();
        let old = match st.pages.get(&index) {
            Some(p) if self.cache.busy(p) => return Err(IoError(EBUSY)),
            Some(_) => st.pages.remove(&index),
            None => None,
        };
        self.install_dirty(st, index, frame, old);
        Ok(())
    }
}

impl PageCache {
    /// A frame for a page about to be filled by a device and adopted
    /// ([`CachedFile::adopt_page`]), allocated as page-cache frames are.
    pub fn new_frame(&self) -> Result<FrameRef, IoError> {
        self.alloc_frame()
    }
}
