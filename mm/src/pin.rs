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
//! piece of each page it covers. Its [`PinnedRange::segments`] are the physical runs a
//! device DMAs to or from; physically contiguous pieces merge into one segment. The
//! request carries the range until its completion, as a buffer handed to a device belongs
//! to it until the completion hands it back.

use alloc::vec::Vec;

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

    /// The pinned frame.
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

/// A user byte range pinned for DMA: each page's pin and the piece of the page covered.
#[derive(Debug, Default)]
pub struct PinnedRange {
    pieces: Vec<(Pin, u16, u16)>,
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
        let mut pieces = Vec::new();
        pieces.try_reserve_exact(pages).ok()?;
        Some(PinnedRange { pieces, bytes: 0 })
    }

    /// Append `len` bytes at `offset` of the frame behind `pin` (the next piece of the
    /// user range, in order). `offset + len` must stay inside the frame.
    pub fn push(&mut self, pin: Pin, offset: usize, len: usize) {
        assert!(
            len > 0 && offset + len <= FRAME_SIZE,
            "piece {offset}+{len} outside a frame"
        );
        self.pieces.push((pin, offset as u16, (len - 1) as u16));
        self.bytes += len;
    }

    /// Bytes covered.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Frames pinned.
    pub fn pages(&self) -> usize {
        self.pieces.len()
    }

    /// The physical runs of the range in order, physically contiguous pieces merged; no
    /// run is longer than `max_run` bytes (a device's segment limit; at least one page).
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
    pub fn take_front(&mut self, max_segments: usize, max_bytes: usize) -> PinnedRange {
        let mut at = 0;
        let mut n = 0;
        let mut segments = 0;
        let mut run_end = None;
        while n < self.pieces.len() {
            let len = self.piece_len(n);
            let start = self.piece_addr(n);
            let new_segment = run_end != Some(start);
            if n > 0 && (at + len > max_bytes || (new_segment && segments >= max_segments)) {
                break;
            }
            segments += usize::from(new_segment);
            run_end = Some(start + len as u64);
            at += len;
            n += 1;
        }
        let rest = self.pieces.split_off(n);
        let front = core::mem::replace(&mut self.pieces, rest);
        self.bytes -= at;
        PinnedRange {
            pieces: front,
            bytes: at,
        }
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
        let rest = self.pieces.split_off(n);
        let mut front = core::mem::replace(&mut self.pieces, rest);
        front.extend(straddler);
        self.bytes -= at;
        Ok(PinnedRange {
            pieces: front,
            bytes: at,
        })
    }

    /// Bytes of piece `n`.
    fn piece_len(&self, n: usize) -> usize {
        self.pieces[n].2 as usize + 1
    }

    /// Physical address of piece `n`'s first byte.
    fn piece_addr(&self, n: usize) -> u64 {
        self.pieces[n].0.pfn().addr() + self.pieces[n].1 as u64
    }

    /// Nothing left.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }
}

/// Merge `runs` where each starts where the previous one ended, keeping every run at or
/// under `max_run` bytes.
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

    #[test]
    fn contiguous_pieces_merge_into_one_segment_up_to_the_limit() {
        let fa = allocator();
        // The frames of one buddy block are contiguous.
        let pfn = fa.alloc_contiguous(4, Owner::Test).unwrap();
        let frames: Vec<FrameRef> = (0..4)
            .map(|i| {
                let h = FrameRef::new(fa, Pfn(pfn.0 + i)).unwrap();
                fa.put(h.pfn()).unwrap(); // the handle keeps the frame
                h
            })
            .collect();
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
    fn splitting_inside_a_piece_pins_its_frame_for_both_sides() {
        let fa = allocator();
        let a = FrameRef::alloc(fa, Owner::Test).unwrap();
        let b = FrameRef::alloc(fa, Owner::Test).unwrap();
        let mut r = PinnedRange::new();
        r.push(Pin::new(&a).unwrap(), 0, FRAME_SIZE);
        r.push(Pin::new(&b).unwrap(), 0, FRAME_SIZE);
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
