//! Handles to frames: a [`FrameRef`] is one counted reference to an allocated frame, put
//! back when the handle is dropped. Code that must keep a frame alive for a while (a block
//! request until its completion) holds one instead of a bare frame number, and safe code
//! reaches a frame's bytes only through a handle ([`FrameRef::piece`]).
#![allow(unsafe_code)]

use crate::frame::{FRAME_SIZE, Pfn};
use crate::frame_alloc::{AllocError, FrameAllocator, FrameError};
use crate::frame_table::Owner;
use crate::phys::{self, FramePiece};
use crate::pin::Pin;

/// One reference to an allocated frame; dropping it puts the reference (and frees the
/// frame if it was the last holder).
pub struct FrameRef {
    pfn: Pfn,
    frames: &'static FrameAllocator,
}

impl FrameRef {
    /// Take a new reference to `pfn`, which must be allocated to a holder of data (user
    /// memory, the page cache, DMA buffers, kernel buffers or tests): the kernel's heap
    /// and page tables have no handles, so safe code cannot reach their bytes.
    pub fn new(frames: &'static FrameAllocator, pfn: Pfn) -> Result<FrameRef, FrameError> {
        check_holds_data(frames, pfn)?;
        frames.get(pfn)?;
        Ok(FrameRef { pfn, frames })
    }

    /// A newly allocated frame for `owner`, its contents undefined; the handle holds its
    /// one reference.
    pub fn alloc(frames: &'static FrameAllocator, owner: Owner) -> Result<FrameRef, AllocError> {
        let pfn = frames.alloc(owner)?;
        Ok(FrameRef { pfn, frames })
    }

    /// Adopt one reference to `pfn` that the caller owns (as handed out by
    /// [`FrameRef::into_raw`] or taken with [`FrameAllocator::get`]).
    ///
    /// # Safety
    /// The caller owns one reference to `pfn` and gives it to the handle, and may let
    /// safe code read and write the frame's bytes through it.
    pub unsafe fn from_raw(frames: &'static FrameAllocator, pfn: Pfn) -> FrameRef {
        FrameRef { pfn, frames }
    }

    /// Give the reference up to the caller (a page-table entry, a page-cache page) without
    /// putting it; [`FrameRef::from_raw`] takes it back.
    pub fn into_raw(self) -> Pfn {
        let pfn = self.pfn;
        core::mem::forget(self);
        pfn
    }

    /// The frame.
    pub fn pfn(&self) -> Pfn {
        self.pfn
    }

    /// The allocator the frame belongs to.
    pub(crate) fn allocator(&self) -> &'static FrameAllocator {
        self.frames
    }

    /// Bytes `[offset, offset + len)` of the frame, held as long as this handle is
    /// borrowed.
    pub fn piece(&self, offset: usize, len: usize) -> FramePiece<'_> {
        // SAFETY: the handle owns a reference to an allocated data frame for as long as
        // the piece borrows it; `new_unchecked` checks the range.
        unsafe { FramePiece::new_unchecked(self.pfn, offset, len) }
    }

    /// The whole frame as a piece.
    pub fn whole(&self) -> FramePiece<'_> {
        self.piece(0, FRAME_SIZE)
    }

    /// Copy all of `src`'s bytes into this frame (a distinct frame).
    pub fn copy_from(&self, src: &FrameRef) {
        // SAFETY: both handles own references to allocated data frames; `copy_frame`
        // refuses the same frame on both sides.
        unsafe { phys::copy_frame(src.pfn, self.pfn) }
    }
}

impl core::fmt::Debug for FrameRef {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "FrameRef({:?})", self.pfn)
    }
}

impl Drop for FrameRef {
    fn drop(&mut self) {
        if let Err(e) = self.frames.put(self.pfn) {
            log::error!("dropping a reference to {:?}: {e}", self.pfn);
        }
    }
}

impl Pin {
    /// Pin `pfn`, a frame that holds data (as [`FrameRef::new`] requires), without taking
    /// a reference first: where a whole buffer is pinned for DMA straight from the page
    /// tables that map it, a reference taken and dropped per page is the largest cost.
    ///
    /// # Safety
    /// `pfn` stays allocated to its holder for the whole call, by a reference someone
    /// else holds and cannot drop meanwhile (a page-table entry of an address space the
    /// caller has locked). Otherwise the frame could be freed and handed to the heap
    /// between the check and the pin, and a device would then write into it.
    pub unsafe fn mapped(frames: &'static FrameAllocator, pfn: Pfn) -> Result<Pin, FrameError> {
        check_holds_data(frames, pfn)?;
        frames.pin(pfn)?;
        Ok(Pin::adopt(frames, pfn))
    }
}

/// Whether `pfn` is allocated to a holder of data (user memory, the page cache, DMA
/// buffers, kernel buffers or tests): the only frames a handle or a pin may be taken on.
/// The kernel's heap and page tables have none, so safe code cannot reach their bytes.
pub(crate) fn check_holds_data(frames: &FrameAllocator, pfn: Pfn) -> Result<(), FrameError> {
    let desc = frames.table().get(pfn).ok_or(FrameError::OutOfRange)?;
    if matches!(
        desc.owner(),
        Owner::Heap | Owner::PageTable | Owner::Reserved | Owner::Free
    ) {
        return Err(FrameError::NotAllocated);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::frame_table::{FrameDescriptor, FrameTable, Owner};
    use std::boxed::Box;
    use std::vec::Vec;

    /// An allocator of its own (handles never touch frame contents), so no other test's
    /// frame counts move while this one runs.
    pub(crate) fn allocator() -> &'static FrameAllocator {
        let descs: Vec<FrameDescriptor> =
            (0..16).map(|_| FrameDescriptor::new_reserved()).collect();
        let fa = Box::leak(Box::new(FrameAllocator::new(FrameTable::new(descs.leak()))));
        fa.add_free_range(Pfn(0), 16);
        fa
    }

    #[test]
    fn a_handle_holds_one_reference_until_dropped() {
        let fa = allocator();
        let p = fa.alloc(Owner::Test).unwrap();
        let d = fa.table().get(p).unwrap();
        let h = FrameRef::new(fa, p).unwrap();
        let h2 = FrameRef::new(fa, p).unwrap();
        assert_eq!(d.refcount(), 3);
        drop(h);
        assert_eq!(d.refcount(), 2);
        assert_eq!(fa.put(p), Ok(false), "the handle keeps it");
        assert_eq!(h2.pfn(), p);
        drop(h2);
        assert!(d.flags().contains(crate::frame_table::FrameFlags::FREE) || d.refcount() == 0);
        assert!(FrameRef::new(fa, p).is_err(), "a free frame has no handle");
    }
}
