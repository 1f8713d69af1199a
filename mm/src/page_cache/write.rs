//! Writes: a page made present and safe to modify (read first for partial writes, moved
//! off a frame under writeback or shared with another file), fresh whole-page writes,
//! dirtying, pages for `mmap`, truncate.

use super::*;

impl CachedFile {
    /// Make page `index` present, up to date (unless the caller overwrites all of
    /// `[in_page, in_page + len)` of a page past the old end) and safe to modify: not
    /// under writeback (stable pages). Returns a reference to the frame, and
    /// whether it is a *fresh* page: not cached before and about to be overwritten whole,
    /// so it was neither read nor zeroed; it stays `LOCKED` (readers wait) until the
    /// caller has filled it and called [`CachedFile::publish_fresh`].
    pub(super) fn prepare_write(
        &self,
        index: u64,
        in_page: usize,
        len: usize,
        file_size: u64,
    ) -> Result<(FrameRef, bool), IoError> {
        loop {
            let st = self.state.lock();
            let Some(p) = st.pages.get(&index).copied() else {
                drop(st);
                let whole = in_page == 0 && len == FRAME_SIZE;
                let beyond_eof = index * PAGE >= file_size;
                if whole {
                    let frame = self.cache.alloc_frame()?;
                    self.set_frame_flags(
                        frame.pfn(),
                        FrameFlags::LOCKED,
                        FrameFlags::UPTODATE | FrameFlags::ERROR,
                    );
                    // The caller's reference, besides the page's.
                    let Ok(page_ref) = self.cache.hold(frame.pfn()) else {
                        continue;
                    };
                    if !self.insert_new(index, page_ref) {
                        continue;
                    }
                    return Ok((frame, true));
                }
                if beyond_eof {
                    // Nothing on disk worth reading: start from a zeroed frame.
                    let frame = self.cache.alloc_frame()?;
                    frame.whole().zero();
                    self.set_frame_flags(frame.pfn(), FrameFlags::UPTODATE, FrameFlags::LOCKED);
                    self.insert_new(index, frame);
                } else {
                    self.start_fill(index, 1)?;
                }
                continue;
            };
            if !self.frame_flags(p.pfn).contains(FrameFlags::UPTODATE) {
                drop(st);
                // Being read (wait for it) or failed (get_page reports the error).
                if self.frame_flags(p.pfn).contains(FrameFlags::ERROR) {
                    drop(self.get_page(index, file_size)?);
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
            return Ok((self.cache.hold(p.pfn)?, false));
        }
    }

    /// Make `frame` (whose reference the page takes) page `index`, unless someone
    /// inserted that page meanwhile: then the reference is dropped and false returned.
    pub(super) fn insert_new(&self, index: u64, frame: FrameRef) -> bool {
        let mut st = self.state.lock();
        if st.pages.contains_key(&index) {
            return false;
        }
        let pfn = frame.into_raw();
        self.cache.share(pfn);
        st.pages.insert(index, Page::fresh(pfn));
        drop(st);
        counters::add(Counter::PagecachePages, 1);
        self.cache.lru_push(self.id, index, 1);
        true
    }

    /// A fresh page from [`CachedFile::prepare_write`] has been filled: make it up to
    /// date and let its waiters in.
    pub(super) fn publish_fresh(&self, pfn: Pfn) {
        self.set_frame_flags(pfn, FrameFlags::UPTODATE, FrameFlags::LOCKED);
        crate::sync::wake(wait_key(pfn));
    }

    /// Copy `data` into the file at `offset` (the caller records any new size). Returns
    /// the bytes written.
    pub fn write(&self, offset: u64, data: &[u8], file_size: u64) -> Result<usize, IoError> {
        self.write_pieces(offset, data.len(), file_size, |dst, at| {
            dst.write(0, &data[at..at + dst.len()]);
        })
    }

    /// Copy the frame piece `src` (a user page) into the file at `offset`, as
    /// [`CachedFile::write`]. The piece may be the very frame of the file page being
    /// written (a `MAP_SHARED` mapping of it as the buffer): the copy is
    /// [`phys::copy_piece`], made for that.
    pub fn write_from_frame(
        &self,
        offset: u64,
        src: FramePiece<'_>,
        file_size: u64,
    ) -> Result<usize, IoError> {
        self.write_pieces(offset, src.len(), file_size, |dst, at| {
            phys::copy_piece(src.sub(at, dst.len()), dst);
        })
    }

    /// Hand `copy` the pieces of file bytes `[offset, offset + len)` (each inside one
    /// page made present, private and writable, with a reference held while `copy` runs)
    /// and where they come from in the source; the pages are dirtied after.
    pub(super) fn write_pieces(
        &self,
        offset: u64,
        len: usize,
        file_size: u64,
        mut copy: impl FnMut(FramePiece<'_>, usize),
    ) -> Result<usize, IoError> {
        let mut done = 0usize;
        while done < len {
            let pos = offset + done as u64;
            let index = pos / PAGE;
            let in_page = (pos % PAGE) as usize;
            let n = (FRAME_SIZE - in_page).min(len - done);
            let (page, fresh) = match self.prepare_write(index, in_page, n, file_size) {
                Ok(p) => p,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            };
            copy(page.piece(in_page, n), done);
            if fresh {
                self.publish_fresh(page.pfn());
            }
            counters::add(Counter::DataCopyBytes, n as u64);
            self.mark_dirty(index, page.pfn());
            done += n;
        }
        Ok(done)
    }

    /// The frame of page `index` for a user mapping (`mmap`): read in if needed, with a
    /// frame reference for the mapping to own (it puts it when it unmaps the page). While
    /// mapped, the extra reference keeps the page from being evicted. A page mapped
    /// `writable` (a writable shared mapping, whose stores reach the file) gets a frame of
    /// its own first if it was aliased: stores must not reach the other sharers.
    pub fn map_page(
        &self,
        index: u64,
        file_size: u64,
        writable: bool,
    ) -> Result<FrameRef, IoError> {
        loop {
            let page = self.get_page(index, file_size)?;
            if !writable || self.cache.sharers(page.pfn()) < 2 {
                return Ok(page);
            }
            let pfn = page.pfn();
            drop(page);
            self.move_to_copy(index, pfn)?;
        }
    }

    /// A store through a shared mapping changed page `index` (still backed by `pfn`): it
    /// must be written back like a page dirtied by `write`.
    pub fn mapped_page_dirtied(&self, index: u64, pfn: Pfn) {
        self.mark_dirty(index, pfn);
    }

    pub(super) fn mark_dirty(&self, index: u64, pfn: Pfn) {
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
            let page = self
                .prepare_write(new_size / PAGE, in_page, FRAME_SIZE - in_page, new_size)?
                .0;
            page.piece(in_page, FRAME_SIZE - in_page).zero();
            self.mark_dirty(new_size / PAGE, page.pfn());
        }
        Ok(())
    }
}
