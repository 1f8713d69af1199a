//! Reads: page lookups, misses filled by asynchronous readahead windows, readers
//! sleeping on a read in flight, failed reads dropped and reported.

use super::*;

impl CachedFile {
    /// Insert fresh, `LOCKED` pages for up to `count` pages from `first` (stopping at a
    /// page already cached or when frames run out) and start reading them; returns
    /// without waiting. The completion (from the disk interrupt) sets `UPTODATE`, or
    /// `ERROR` on failure, clears `LOCKED` and wakes the waiters of each frame. Returns
    /// the number of pages started; an error only if not even one frame was available.
    pub(super) fn start_fill(&self, first: u64, count: u64) -> Result<u64, IoError> {
        let mut frames: Vec<FrameRef> = Vec::with_capacity(count as usize);
        for _ in 0..count {
            match self.cache.alloc_frame() {
                Ok(f) => frames.push(f),
                Err(e) if frames.is_empty() => return Err(e),
                Err(_) => break, // read what we could get frames for
            }
        }
        // Insert, stopping at the first page someone else inserted meanwhile. Each page
        // gets a reference of its own; the read keeps the allocation's reference until
        // it completes: truncate may take the page out of the index meanwhile, and the
        // DMA must not land in a frame that went back to the allocator.
        let mut st = self.state.lock();
        let mut inserted = 0;
        for (i, f) in frames.iter().enumerate() {
            let index = first + i as u64;
            if st.pages.contains_key(&index) {
                break;
            }
            self.set_frame_flags(
                f.pfn(),
                FrameFlags::LOCKED,
                FrameFlags::UPTODATE | FrameFlags::ERROR,
            );
            let Ok(page_ref) = self.cache.hold(f.pfn()) else {
                break;
            };
            self.cache.share(page_ref.into_raw());
            st.pages.insert(index, Page::fresh(f.pfn()));
            inserted += 1;
        }
        drop(st);
        frames.truncate(inserted);
        if frames.is_empty() {
            return Ok(0);
        }
        counters::add(Counter::PagecachePages, frames.len() as u64);
        self.cache.lru_push(self.id, first, frames.len() as u64);
        let n = frames.len() as u64;
        let table = self.cache.frames.table();
        let pfns: Vec<Pfn> = frames.iter().map(FrameRef::pfn).collect();
        // The read owns the frames' references (`frames`) until the device is done;
        // the completion only publishes the result.
        self.io.start_read(
            first,
            frames,
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
                }
            }),
        );
        Ok(n)
    }

    /// Pages from `from` (up to `want`, before `last_page`) not cached yet.
    pub(super) fn uncached_run(st: &FileState, from: u64, want: u64, last_page: u64) -> u64 {
        let mut count = 0;
        while count < want && from + count < last_page && !st.pages.contains_key(&(from + count)) {
            count += 1;
        }
        count
    }

    /// A reference to the up-to-date frame of page `index` (reading it, with readahead,
    /// on a miss).
    ///
    /// Readahead: a miss reads a window of pages (growing to [`READAHEAD_MAX`] while the
    /// reader is sequential, [`READAHEAD_MIN`] otherwise); a sequential reader that
    /// reaches the first page of the window requested last triggers the next window
    /// asynchronously, so the device reads ahead while the reader copies.
    pub(super) fn get_page(&self, index: u64, file_size: u64) -> Result<FrameRef, IoError> {
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
                    let held = self.cache.hold(pfn)?;
                    if !counted {
                        counters::add(Counter::PagecacheHits, 1);
                    }
                    return Ok(held);
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
        self.read_pieces(offset, buf.len(), file_size, |src, at| {
            src.read(0, &mut buf[at..at + src.len()]);
        })
    }

    /// Copy file bytes at `offset` into the frame piece `dst` (a user page), stopping at
    /// `file_size`. The piece may be the very frame of the file page being read (a
    /// `MAP_SHARED` mapping of it as the buffer): the copy is [`phys::copy_piece`], made
    /// for that. Returns the bytes copied.
    pub fn read_to_frame(
        &self,
        offset: u64,
        dst: FramePiece<'_>,
        file_size: u64,
    ) -> Result<usize, IoError> {
        self.read_pieces(offset, dst.len(), file_size, |src, at| {
            phys::copy_piece(src, dst.sub(at, src.len()));
        })
    }

    /// Hand `copy` the pieces of file bytes `[offset, offset + len)` below `file_size`
    /// (each inside one cached page, with a reference held while `copy` runs) and where
    /// they go in the destination.
    fn read_pieces(
        &self,
        offset: u64,
        len: usize,
        file_size: u64,
        mut copy: impl FnMut(FramePiece<'_>, usize),
    ) -> Result<usize, IoError> {
        let end = file_size.min(offset.saturating_add(len as u64));
        let mut pos = offset;
        while pos < end {
            let index = pos / PAGE;
            let in_page = (pos % PAGE) as usize;
            let n = ((PAGE - pos % PAGE).min(end - pos)) as usize;
            let page = match self.get_page(index, file_size) {
                Ok(p) => p,
                Err(e) if pos == offset => return Err(e),
                Err(_) => break, // short read: return what we have
            };
            copy(page.piece(in_page, n), (pos - offset) as usize);
            counters::add(Counter::DataCopyBytes, n as u64);
            pos += n as u64;
        }
        Ok((pos - offset) as usize)
    }
}
