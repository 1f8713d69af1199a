//! Locking user pages down for DMA (DESIGN.md "Raw I/O"): the pin API any driver uses
//! (disks now; network and capture devices later).
//!
//! A [`Pin`] is one pin on a frame, counted apart from references (Linux's FOLL_PIN):
//! while it is held the frame stays allocated whatever happens to the mapping it came
//! from (`munmap`, `exit`), and copy-on-write never reuses it in place (`fork` copies a
//! pinned private page for the child eagerly). Dropping the pin releases it, and frees the
//! frame if nothing else holds it.
//!
//! A [`PinnedRange`] is a byte range of user memory pinned page by page, with the
//! piece of each page it covers. [`PinnedRange::take_front_runs`] cuts it into requests
//! within a device's limits and gives each request's physical runs, the segments a device
//! DMAs to or from; physically contiguous pieces merge into one segment. The request carries its share of the range
//! until its completion, as a buffer handed to a device belongs to it until the
//! completion hands it back.

use smallvec::SmallVec;

use crate::frame::{FRAME_SIZE, Pfn};
use crate::frame_alloc::{FrameAllocator, FrameError};
use crate::frame_ref::FrameRef;

/// One pin on an allocated frame, released when dropped.
pub struct Pin {
    pfn: Pfn,
    frames: &'static FrameAllocator,
}

impl Pin {
    /// Pin the frame `frame` refers to. The pin holds the frame on its own: the reference
    /// may be dropped afterwards.
    pub fn new(frame: &FrameRef) -> Result<Pin, FrameError> {
        let frames = frame.allocator();
        frames.pin(frame.pfn())?;
        Ok(Pin {
            pfn: frame.pfn(),
            frames,
        })
    }

    /// A pin the caller has already taken on `pfn` (with [`FrameAllocator::pin`]), which
    /// this handle now owns and releases.
    pub(crate) fn adopt(frames: &'static FrameAllocator, pfn: Pfn) -> Pin {
        Pin { pfn, frames }
    }

    /// The pinned frame.
    #[inline]
    pub fn pfn(&self) -> Pfn {
        self.pfn
    }

    /// A second pin on the same frame.
    pub fn duplicate(&self) -> Result<Pin, FrameError> {
        self.frames.pin(self.pfn)?;
        Ok(Pin {
            pfn: self.pfn,
            frames: self.frames,
        })
    }
}

impl core::fmt::Debug for Pin {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Pin({:?})", self.pfn)
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        if let Err(e) = self.frames.unpin(self.pfn) {
            log::error!("unpinning {:?}: {e}", self.pfn);
        }
    }
}

/// A physically contiguous run of bytes for a device: start address and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysRun {
    /// Physical address of the first byte.
    pub addr: u64,
    /// Bytes.
    pub len: usize,
}

/// Each page's pin, and the piece of the page covered (offset, length - 1). One piece is
/// kept inline: a range of one page (a 4 KiB transfer) allocates nothing.
type Pieces = SmallVec<[(Pin, u16, u16); 1]>;

/// A user byte range pinned for DMA: each page's pin and the piece of the page covered.
#[derive(Debug, Default)]
pub struct PinnedRange {
    pieces: Pieces,
    bytes: usize,
}

impl PinnedRange {
    /// An empty range.
    pub fn new() -> PinnedRange {
        PinnedRange::default()
    }

    /// An empty range with room for `pages` pieces, or None if the memory for that
    /// bookkeeping cannot be had (the caller reports ENOMEM instead of panicking).
    pub fn try_with_capacity(pages: usize) -> Option<PinnedRange> {
        let mut pieces = Pieces::new();
        pieces.try_reserve_exact(pages).ok()?;
        Some(PinnedRange { pieces, bytes: 0 })
    }

    /// Append `len` bytes at `offset` of the frame behind `pin` (the next piece of the
    /// user range, in order). `offset + len` must stay inside the frame.
    #[inline]
    pub fn push(&mut self, pin: Pin, offset: usize, len: usize) {
        assert!(
            len > 0 && offset + len <= FRAME_SIZE,
            "piece {offset}+{len} outside a frame"
        );
        self.pieces.push((pin, offset as u16, (len - 1) as u16));
        self.bytes += len;
    }

    /// Bytes covered.
    #[inline]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Frames pinned.
    #[inline]
    pub fn pages(&self) -> usize {
        self.pieces.len()
    }

    /// The physical runs of the range in order, physically contiguous pieces merged; no
    /// run is longer than `max_run` bytes (a device's segment limit; at least one page).
    /// What [`PinnedRange::take_front_runs`] must give, for the tests.
    #[cfg(test)]
    pub fn segments(&self, max_run: usize) -> Vec<PhysRun> {
        merge_runs(
            (0..self.pieces.len()).map(|n| PhysRun {
                addr: self.piece_addr(n),
                len: self.piece_len(n),
            }),
            max_run.max(FRAME_SIZE),
        )
    }

    /// Take whole pieces off the front, as many as fit in `max_segments` physical runs
    /// (contiguous pieces merge into one) and `max_bytes` bytes (at least one piece), as a
    /// range of their own: one request's share of a transfer that takes several.
    #[cfg(test)]
    pub fn take_front(&mut self, max_segments: usize, max_bytes: usize) -> PinnedRange {
        self.take_front_runs(max_segments, max_bytes, |_| {})
    }

    /// [`PinnedRange::take_front`], handing `run` the physical runs of the part taken, in
    /// order, as [`PinnedRange::segments`] would give them: one pass over the pieces for
    /// both (a request needs its segments as soon as its share is known).
    pub fn take_front_runs(
        &mut self,
        max_segments: usize,
        max_bytes: usize,
        mut run: impl FnMut(PhysRun),
    ) -> PinnedRange {
        let mut at = 0;
        let mut n = 0;
        let mut segments = 0;
        let mut current: Option<PhysRun> = None;
        while n < self.pieces.len() {
            let len = self.piece_len(n);
            let start = self.piece_addr(n);
            let extends = current.is_some_and(|c| c.addr + c.len as u64 == start);
            if n > 0 && (at + len > max_bytes || (!extends && segments >= max_segments)) {
                break;
            }
            match &mut current {
                Some(c) if extends => c.len += len,
                _ => {
                    if let Some(done) = current.replace(PhysRun { addr: start, len }) {
                        run(done);
                    }
                    segments += 1;
                }
            }
            at += len;
            n += 1;
        }
        if let Some(done) = current {
            run(done);
        }
        let front = self.split_pieces(n);
        self.bytes -= at;
        PinnedRange {
            pieces: front,
            bytes: at,
        }
    }

    /// Narrow a range of whole pages to the `bytes` bytes from `skip` bytes into its
    /// first page on: a user buffer's own start and end, once its pages are pinned.
    /// `skip` lies in the first page and the end in the last.
    pub fn narrow(&mut self, skip: usize, bytes: usize) {
        let pages = self.pieces.len();
        assert!(
            self.bytes == pages * FRAME_SIZE
                && skip < FRAME_SIZE
                && bytes > 0
                && skip + bytes <= self.bytes
                && skip + bytes > self.bytes - FRAME_SIZE,
            "narrowing {} pages to {skip}+{bytes}",
            pages
        );
        let cut = self.bytes - skip - bytes;
        let first = &mut self.pieces[0];
        first.1 += skip as u16;
        first.2 -= skip as u16;
        let last = &mut self.pieces[pages - 1];
        last.2 -= cut as u16;
        self.bytes = bytes;
    }

    /// Split off the first `bytes` bytes as a range of their own (one disk extent's share
    /// of a transfer); a piece that straddles the split is pinned twice, once for each
    /// side. Fewer bytes if the range is shorter.
    pub fn split_front(&mut self, bytes: usize) -> Result<PinnedRange, FrameError> {
        let mut at = 0;
        let mut n = 0;
        while n < self.pieces.len() && at + self.piece_len(n) <= bytes {
            at += self.piece_len(n);
            n += 1;
        }
        let mut straddler = None;
        if at < bytes && n < self.pieces.len() {
            let (pin, off, len_m1) = &mut self.pieces[n];
            let k = bytes - at;
            straddler = Some((pin.duplicate()?, *off, (k - 1) as u16));
            *off += k as u16;
            *len_m1 -= k as u16;
            at = bytes;
        }
        let mut front = self.split_pieces(n);
        front.extend(straddler);
        self.bytes -= at;
        Ok(PinnedRange {
            pieces: front,
            bytes: at,
        })
    }

    /// The first `n` pieces, taken off the front.
    fn split_pieces(&mut self, n: usize) -> Pieces {
        if n == self.pieces.len() {
            return core::mem::take(&mut self.pieces);
        }
        let rest: Pieces = self.pieces.drain(n..).collect();
        core::mem::replace(&mut self.pieces, rest)
    }

    /// Bytes of piece `n`.
    #[inline]
    fn piece_len(&self, n: usize) -> usize {
        self.pieces[n].2 as usize + 1
    }

    /// Physical address of piece `n`'s first byte.
    #[inline]
    fn piece_addr(&self, n: usize) -> u64 {
        self.pieces[n].0.pfn().addr() + self.pieces[n].1 as u64
    }

    /// Nothing left.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }
}

/// Merge `runs` where each starts where the previous one ended, keeping every run at or
/// under `max_run` bytes.
#[cfg(test)]
pub fn merge_runs(runs: impl Iterator<Item = PhysRun>, max_run: usize) -> Vec<PhysRun> {
    let mut out: Vec<PhysRun> = Vec::new();
    for r in runs {
        match out.last_mut() {
            Some(last) if last.addr + last.len as u64 == r.addr && last.len + r.len <= max_run => {
                last.len += r.len;
            }
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame_ref::tests::allocator;
    use crate::frame_table::{FrameFlags, Owner};

    #[test]
    fn a_pin_outlives_every_reference_and_frees_the_frame_last() {
        let fa = allocator();
        let frame = FrameRef::alloc(fa, Owner::Test).unwrap();
        let pfn = frame.pfn();
        let d = fa.table().get(pfn).unwrap();
        let pin = Pin::new(&frame).unwrap();
        let pin2 = Pin::new(&frame).unwrap();
        assert_eq!(d.pincount(), 2);
        drop(frame); // the mapping goes away (munmap, exit)
        assert_eq!(d.refcount(), 0);
        assert!(
            !d.flags().contains(FrameFlags::FREE),
            "pinned: still allocated"
        );
        drop(pin);
        assert!(!d.flags().contains(FrameFlags::FREE), "one pin left");
        drop(pin2);
        assert!(
            d.flags().contains(FrameFlags::FREE),
            "the last pin frees it"
        );
    }

    /// `n` physically contiguous frames (the frames of one buddy block), a handle each.
    fn contiguous_frames(n: u64) -> Vec<FrameRef> {
        let fa = allocator();
        let pfn = fa.alloc_contiguous(n, Owner::Test).unwrap();
        (0..n)
            .map(|i| {
                let h = FrameRef::new(fa, Pfn(pfn.0 + i)).unwrap();
                fa.put(h.pfn()).unwrap(); // the handle keeps the frame
                h
            })
            .collect()
    }

    #[test]
    fn contiguous_pieces_merge_into_one_segment_up_to_the_limit() {
        let frames = contiguous_frames(4);
        let mut r = PinnedRange::new();
        r.push(Pin::new(&frames[0]).unwrap(), 512, FRAME_SIZE - 512);
        r.push(Pin::new(&frames[1]).unwrap(), 0, FRAME_SIZE);
        r.push(Pin::new(&frames[3]).unwrap(), 0, 1024); // a gap: frame 2 is skipped
        assert_eq!(r.bytes(), 2 * FRAME_SIZE - 512 + 1024);
        assert_eq!(r.pages(), 3);
        let segs = r.segments(1 << 20);
        assert_eq!(
            segs,
            vec![
                PhysRun {
                    addr: frames[0].pfn().addr() + 512,
                    len: 2 * FRAME_SIZE - 512
                },
                PhysRun {
                    addr: frames[3].pfn().addr(),
                    len: 1024
                },
            ]
        );
        assert_eq!(r.segments(FRAME_SIZE).len(), 3, "the limit splits the run");
        let front = r.take_front(8, FRAME_SIZE + 1);
        assert_eq!(
            (front.pages(), front.bytes()),
            (1, FRAME_SIZE - 512),
            "bytes limit"
        );
        assert_eq!(r.bytes(), FRAME_SIZE + 1024);
        let front = r.take_front(1, 1 << 20);
        assert_eq!((front.pages(), r.pages()), (1, 1), "pieces limit");
        let last = r.take_front(8, 512);
        assert_eq!(last.bytes(), 1024, "one piece at least");
        assert!(r.is_empty() && r.bytes() == 0);
    }

    #[test]
    fn taking_requests_gives_the_runs_segments_would_give() {
        let frames = contiguous_frames(8);
        // Pages 0-2 contiguous, then 5, 6, then 4 (behind 6: a run of its own), then 7.
        let order = [0, 1, 2, 5, 6, 4, 7];
        let whole = || {
            let mut r = PinnedRange::new();
            for &i in &order {
                r.push(Pin::new(&frames[i]).unwrap(), 0, FRAME_SIZE);
            }
            r
        };
        for (max_segments, max_bytes) in [
            (1, 1 << 20),
            (2, 1 << 20),
            (8, 2 * FRAME_SIZE),
            (8, 1 << 20),
        ] {
            let mut r = whole();
            let mut taken = 0;
            while !r.is_empty() {
                let mut runs = Vec::new();
                let front = r.take_front_runs(max_segments, max_bytes, |run| runs.push(run));
                assert_eq!(
                    runs,
                    front.segments(max_bytes),
                    "{max_segments} {max_bytes}"
                );
                assert!(runs.len() <= max_segments && front.bytes() <= max_bytes);
                assert_eq!(runs.iter().map(|r| r.len).sum::<usize>(), front.bytes());
                taken += front.pages();
            }
            assert_eq!(taken, order.len());
        }
    }

    /// Two frames and a range pinning both whole.
    fn two_whole_pages() -> (&'static FrameAllocator, FrameRef, FrameRef, PinnedRange) {
        let fa = allocator();
        let a = FrameRef::alloc(fa, Owner::Test).unwrap();
        let b = FrameRef::alloc(fa, Owner::Test).unwrap();
        let mut r = PinnedRange::new();
        r.push(Pin::new(&a).unwrap(), 0, FRAME_SIZE);
        r.push(Pin::new(&b).unwrap(), 0, FRAME_SIZE);
        (fa, a, b, r)
    }

    #[test]
    fn narrowing_whole_pages_to_a_buffer() {
        let (_, a, b, mut r) = two_whole_pages();
        r.narrow(512, FRAME_SIZE);
        assert_eq!(r.bytes(), FRAME_SIZE);
        let pieces = [
            PhysRun {
                addr: a.pfn().addr() + 512,
                len: FRAME_SIZE - 512,
            },
            PhysRun {
                addr: b.pfn().addr(),
                len: 512,
            },
        ];
        assert_eq!(
            r.segments(FRAME_SIZE),
            merge_runs(pieces.into_iter(), FRAME_SIZE)
        );
        let mut one = PinnedRange::new();
        one.push(Pin::new(&a).unwrap(), 0, FRAME_SIZE);
        one.narrow(1024, 2048);
        assert_eq!(
            one.segments(FRAME_SIZE),
            vec![PhysRun {
                addr: a.pfn().addr() + 1024,
                len: 2048
            }]
        );
    }

    #[test]
    fn splitting_inside_a_piece_pins_its_frame_for_both_sides() {
        let (fa, _a, b, mut r) = two_whole_pages();
        let front = r.split_front(FRAME_SIZE + 1024).unwrap();
        assert_eq!((front.bytes(), front.pages()), (FRAME_SIZE + 1024, 2));
        assert_eq!((r.bytes(), r.pages()), (FRAME_SIZE - 1024, 1));
        let d = fa.table().get(b.pfn()).unwrap();
        assert_eq!(d.pincount(), 2, "frame b is pinned for both sides");
        assert_eq!(
            r.segments(1 << 20),
            vec![PhysRun {
                addr: b.pfn().addr() + 1024,
                len: FRAME_SIZE - 1024
            }]
        );
        drop(front);
        assert_eq!(d.pincount(), 1);
        let whole = r.split_front(usize::MAX).unwrap();
        assert_eq!(whole.bytes(), FRAME_SIZE - 1024);
        assert!(r.is_empty());
    }
}
