//! The one module of `mm` that turns physical addresses into pointers (DESIGN.md): every
//! byte the page cache copies goes through these functions. The kernel points it at its
//! physical-memory map; host tests point it at an ordinary memory arena.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::frame::{FRAME_SIZE, Pfn};

static OFFSET: AtomicUsize = AtomicUsize::new(0);
static END_PFN: AtomicUsize = AtomicUsize::new(0);

/// Physical address `p` is reachable at virtual address `offset + p`, for frames below
/// `end_pfn`. Call once before any other function here.
pub fn init(offset: usize, end_pfn: u64) {
    OFFSET.store(offset, Ordering::Relaxed);
    END_PFN.store(end_pfn as usize, Ordering::Relaxed);
}

fn frame_ptr(pfn: Pfn) -> *mut u8 {
    assert!(
        (pfn.0 as usize) < END_PFN.load(Ordering::Relaxed),
        "frame {pfn:?} outside the physical map"
    );
    OFFSET
        .load(Ordering::Relaxed)
        .wrapping_add(pfn.addr() as usize) as *mut u8
}

/// Copy `buf.len()` bytes out of frame `pfn` at `offset`. The caller holds a reference to
/// the frame (so it is allocated and cannot be freed meanwhile).
pub fn read(pfn: Pfn, offset: usize, buf: &mut [u8]) {
    assert!(
        offset + buf.len() <= FRAME_SIZE,
        "read past the end of a frame"
    );
    // SAFETY: the frame is mapped (checked against END_PFN) and referenced by the caller;
    // the range stays inside it; `buf` is ordinary memory, not the frame.
    unsafe {
        core::ptr::copy_nonoverlapping(frame_ptr(pfn).add(offset), buf.as_mut_ptr(), buf.len())
    }
}

/// Copy `data` into frame `pfn` at `offset`. The caller holds a reference to the frame
/// and the right to change its contents (it is not shared read-only, not under DMA).
pub fn write(pfn: Pfn, offset: usize, data: &[u8]) {
    assert!(
        offset + data.len() <= FRAME_SIZE,
        "write past the end of a frame"
    );
    // SAFETY: as in `read`; the caller guarantees nobody else writes the frame now.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), frame_ptr(pfn).add(offset), data.len()) }
}

/// Fill `len` bytes of frame `pfn` from `offset` with zeros (same contract as [`write`]).
pub fn zero(pfn: Pfn, offset: usize, len: usize) {
    assert!(offset + len <= FRAME_SIZE, "zero past the end of a frame");
    // SAFETY: as in `write`.
    unsafe { core::ptr::write_bytes(frame_ptr(pfn).add(offset), 0, len) }
}

/// Copy all of frame `src` into frame `dst` (distinct frames; `dst` as in [`write`]).
pub fn copy_frame(src: Pfn, dst: Pfn) {
    assert_ne!(src, dst, "copy of a frame onto itself");
    // SAFETY: both frames are mapped and referenced by the caller, distinct frames do not
    // overlap, and the caller has the right to change `dst`.
    unsafe { core::ptr::copy_nonoverlapping(frame_ptr(src), frame_ptr(dst), FRAME_SIZE) }
}

/// Bytes `[offset, offset + len)` of one frame, named without making a Rust reference to
/// them: the currency of copies whose two sides may be the same memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramePiece {
    /// The frame.
    pub pfn: Pfn,
    /// First byte inside it.
    pub offset: usize,
    /// Bytes.
    pub len: usize,
}

impl FramePiece {
    /// The `len` bytes of this piece from `skip` on.
    pub fn sub(self, skip: usize, len: usize) -> FramePiece {
        assert!(skip + len <= self.len, "piece past the end of its piece");
        FramePiece {
            pfn: self.pfn,
            offset: self.offset + skip,
            len,
        }
    }
}

/// Copy piece `src` onto piece `dst` (same length) with raw pointers only, as `memmove`:
/// correct even when the two are the same bytes or overlap, which happens when a user
/// page mapped from a file (`MAP_SHARED`) is the buffer of a `read` or `write` of that
/// very file page. This is the one copy between two frames that may alias: no `&` or
/// `&mut` to either side exists while it runs. The caller holds references to both
/// frames and the right to change `dst`'s bytes.
pub fn copy_piece(src: FramePiece, dst: FramePiece) {
    assert_eq!(src.len, dst.len, "pieces of different lengths");
    assert!(
        src.offset + src.len <= FRAME_SIZE && dst.offset + dst.len <= FRAME_SIZE,
        "piece past the end of a frame"
    );
    // SAFETY: both ranges lie inside mapped frames the caller holds references to;
    // `ptr::copy` is defined for overlapping ranges, and no Rust reference to either
    // range is created, so an overlap cannot break aliasing rules.
    unsafe {
        core::ptr::copy(
            frame_ptr(src.pfn).add(src.offset),
            frame_ptr(dst.pfn).add(dst.offset),
            src.len,
        )
    }
}

/// Run `f` on bytes `[offset, offset + len)` of frame `pfn` as a mutable slice (for copies
/// into a frame from memory that cannot be the same frame: a pipe's buffer into a user
/// page). The caller holds a reference to the frame and the right to change its
/// contents; the slice cannot escape `f`. Copies between two frames that may be the same
/// (page cache and user pages) use [`copy_piece`].
pub fn with_frame_mut<R>(pfn: Pfn, offset: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    assert!(offset + len <= FRAME_SIZE, "slice past the end of a frame");
    // SAFETY: as in `write`; the slice lives only during `f`, and no other Rust reference to
    // this frame's bytes exists (frames are reached only through this module).
    let s = unsafe { core::slice::from_raw_parts_mut(frame_ptr(pfn).add(offset), len) };
    f(s)
}

/// Run `f` on bytes `[offset, offset + len)` of frame `pfn` (same contract as [`read`]).
pub fn with_frame<R>(pfn: Pfn, offset: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
    assert!(offset + len <= FRAME_SIZE, "slice past the end of a frame");
    // SAFETY: as in `read`; the slice lives only during `f`.
    let s = unsafe { core::slice::from_raw_parts(frame_ptr(pfn).add(offset), len) };
    f(s)
}

/// Host-side stand-in for physical memory, shared by the tests of this crate.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::OnceLock;

    use crate::frame::{FRAME_SIZE, Pfn};
    use crate::frame_alloc::FrameAllocator;
    use crate::frame_table::{FrameDescriptor, FrameTable};

    #[repr(C, align(4096))]
    struct FrameBytes([u8; FRAME_SIZE]);

    /// First "physical" frame of the arena (frame 0 stays unused, as on real machines).
    pub const FIRST_PFN: u64 = 16;
    /// Frames in the arena.
    pub const FRAMES: u64 = 4096;

    /// A frame allocator over a 16 MiB arena, with `phys` pointed at it.
    pub fn allocator() -> &'static FrameAllocator {
        static ALLOC: OnceLock<&'static FrameAllocator> = OnceLock::new();
        ALLOC.get_or_init(|| {
            let arena: &'static mut [FrameBytes] =
                Vec::from_iter((0..FRAMES).map(|_| FrameBytes([0; FRAME_SIZE]))).leak();
            let base = arena.as_mut_ptr() as usize;
            super::init(base - (FIRST_PFN as usize) * FRAME_SIZE, FIRST_PFN + FRAMES);
            let descs: Vec<FrameDescriptor> = (0..FIRST_PFN + FRAMES)
                .map(|_| FrameDescriptor::new_reserved())
                .collect();
            let fa: &'static FrameAllocator =
                Box::leak(Box::new(FrameAllocator::new(FrameTable::new(descs.leak()))));
            fa.add_free_range(Pfn(FIRST_PFN), FRAMES);
            fa
        })
    }
}
