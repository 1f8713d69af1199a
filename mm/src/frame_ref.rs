//! Handles to frames: a [`FrameRef`] is one counted reference to an allocated frame, put
//! back when the handle is dropped. Code that must keep a frame alive for a while (a block
//! request until its completion) holds one instead of a bare frame number.

use crate::frame::Pfn;
use crate::frame_alloc::{FrameAllocator, FrameError};

/// One reference to an allocated frame; dropping it puts the reference (and frees the
/// frame if it was the last holder).
pub struct FrameRef {
    pfn: Pfn,
    frames: &'static FrameAllocator,
}

impl FrameRef {
    /// Take a new reference to `pfn` (which must be allocated).
    pub fn new(frames: &'static FrameAllocator, pfn: Pfn) -> Result<FrameRef, FrameError> {
        frames.get(pfn)?;
        Ok(FrameRef { pfn, frames })
    }

    /// The frame.
    pub fn pfn(&self) -> Pfn {
        self.pfn
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame_table::{FrameDescriptor, FrameTable, Owner};
    use std::boxed::Box;
    use std::vec::Vec;

    /// An allocator of its own (handles never touch frame contents), so no other test's
    /// frame counts move while this one runs.
    fn allocator() -> &'static FrameAllocator {
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
