//! The one module of `mm` that turns physical addresses into pointers (DESIGN.md): every
//! byte the kernel copies to or from a frame goes through here. The kernel points it at
//! its physical-memory map; host tests point it at an ordinary memory arena.
//!
//! Safe code reaches a frame's bytes only through a handle it holds: a [`FrameRef`]
//! (a counted reference) or a [`FramePiece`] borrowed from one (or from a page-cache page
//! or a user mapping, which hold references of their own). The functions taking a bare
//! [`Pfn`] are `unsafe`: their callers (the page cache inside this crate, the kernel's
//! `arch` layer for its own page tables and DMA rings) promise the frame is theirs.
//!
//! [`FrameRef`]: crate::FrameRef
#![allow(unsafe_code)]

use core::marker::PhantomData;
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

/// Copy `buf.len()` bytes out of frame `pfn` at `offset`.
///
/// # Safety
/// The caller holds a reference to the frame (so it is allocated and cannot be freed or
/// reused meanwhile), and no `&mut` to these bytes exists.
pub unsafe fn read(pfn: Pfn, offset: usize, buf: &mut [u8]) {
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

/// Copy `data` into frame `pfn` at `offset`.
///
/// # Safety
/// As [`read`], and the caller has the right to change the frame's bytes (no Rust
/// reference to them exists, and they are not shared read-only or under a device read).
pub unsafe fn write(pfn: Pfn, offset: usize, data: &[u8]) {
    assert!(
        offset + data.len() <= FRAME_SIZE,
        "write past the end of a frame"
    );
    // SAFETY: as in `read`; the caller guarantees nobody else holds these bytes now.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), frame_ptr(pfn).add(offset), data.len()) }
}

/// Fill `len` bytes of frame `pfn` from `offset` with zeros.
///
/// # Safety
/// As [`write`].
pub unsafe fn zero(pfn: Pfn, offset: usize, len: usize) {
    assert!(offset + len <= FRAME_SIZE, "zero past the end of a frame");
    // SAFETY: as in `write`.
    unsafe { core::ptr::write_bytes(frame_ptr(pfn).add(offset), 0, len) }
}

/// Copy all of frame `src` into frame `dst`.
///
/// # Safety
/// As [`read`] for `src` and [`write`] for `dst`.
pub unsafe fn copy_frame(src: Pfn, dst: Pfn) {
    assert_ne!(src, dst, "copy of a frame onto itself");
    // SAFETY: both frames are mapped and referenced by the caller, distinct frames do not
    // overlap, and the caller has the right to change `dst`.
    unsafe { core::ptr::copy_nonoverlapping(frame_ptr(src), frame_ptr(dst), FRAME_SIZE) }
}

/// Bytes `[offset, offset + len)` of one frame that the holder of the borrow `'a` keeps
/// alive, named without making a Rust reference to them: the currency of copies whose two
/// sides may be the same memory. Made safely only from a handle
/// ([`FrameRef::piece`](crate::FrameRef::piece)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramePiece<'a> {
    pfn: Pfn,
    offset: usize,
    len: usize,
    held: PhantomData<&'a ()>,
}

impl<'a> FramePiece<'a> {
    /// The piece `[offset, offset + len)` of frame `pfn`.
    ///
    /// # Safety
    /// The frame stays allocated and referenced by the caller (or by what the caller
    /// borrows for `'a`) for all of `'a`, and the caller may change its bytes through
    /// the piece's writing methods.
    pub unsafe fn new_unchecked(pfn: Pfn, offset: usize, len: usize) -> FramePiece<'a> {
        assert!(offset + len <= FRAME_SIZE, "piece past the end of a frame");
        FramePiece {
            pfn,
            offset,
            len,
            held: PhantomData,
        }
    }

    /// The frame.
    pub fn pfn(&self) -> Pfn {
        self.pfn
    }

    /// First byte inside the frame.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `len` bytes of this piece from `skip` on.
    pub fn sub(self, skip: usize, len: usize) -> FramePiece<'a> {
        assert!(skip + len <= self.len, "piece past the end of its piece");
        FramePiece {
            offset: self.offset + skip,
            len,
            ..self
        }
    }

    /// Copy the piece's bytes from `at` on into `buf`.
    pub fn read(&self, at: usize, buf: &mut [u8]) {
        assert!(at + buf.len() <= self.len, "read past the end of a piece");
        // SAFETY: the piece's frame is held for 'a (its constructor's contract); `buf`
        // is ordinary memory, never a frame's bytes (those have no Rust reference that
        // outlives `with_bytes_mut`).
        unsafe { read(self.pfn, self.offset + at, buf) }
    }

    /// Copy `data` into the piece from `at` on.
    pub fn write(&self, at: usize, data: &[u8]) {
        assert!(at + data.len() <= self.len, "write past the end of a piece");
        // SAFETY: as in `read`; the holder may change the bytes.
        unsafe { write(self.pfn, self.offset + at, data) }
    }

    /// Zero the piece.
    pub fn zero(&self) {
        // SAFETY: as in `write`.
        unsafe { zero(self.pfn, self.offset, self.len) }
    }

    /// Run `f` on the piece as a mutable slice, for copies into it from memory that
    /// cannot be a frame (a pipe's buffer into a user page). `f` must not reach this
    /// frame through another piece meanwhile; copies between two frames that may be the
    /// same (page cache and user pages) use [`copy_piece`].
    pub fn with_bytes_mut<R>(self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        // SAFETY: the frame is held for 'a and the range is inside it (constructor); the
        // slice lives only during `f`.
        let s = unsafe {
            core::slice::from_raw_parts_mut(frame_ptr(self.pfn).add(self.offset), self.len)
        };
        f(s)
    }

    /// Run `f` on the piece as a slice (same rule as [`FramePiece::with_bytes_mut`]).
    pub fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        // SAFETY: as in `with_bytes_mut`, read-only.
        let s =
            unsafe { core::slice::from_raw_parts(frame_ptr(self.pfn).add(self.offset), self.len) };
        f(s)
    }
}

/// Copy piece `src` onto piece `dst` (same length) with raw pointers only, as `memmove`:
/// correct even when the two are the same bytes or overlap, which happens when a user
/// page mapped from a file (`MAP_SHARED`) is the buffer of a `read` or `write` of that
/// very file page. This is the one copy between two frames that may alias: no `&` or
/// `&mut` to either side exists while it runs.
pub fn copy_piece(src: FramePiece<'_>, dst: FramePiece<'_>) {
    assert_eq!(src.len, dst.len, "pieces of different lengths");
    // SAFETY: both ranges lie inside frames held for the pieces' lifetimes (their
    // constructors' contract); `ptr::copy` is defined for overlapping ranges, and no Rust
    // reference to either range is created, so an overlap cannot break aliasing rules.
    unsafe {
        core::ptr::copy(
            frame_ptr(src.pfn).add(src.offset),
            frame_ptr(dst.pfn).add(dst.offset),
            src.len,
        )
    }
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
