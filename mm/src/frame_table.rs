//! The frame descriptor table: one [`FrameDescriptor`] per physical frame (the analogue of
//! Linux's `struct page`), indexed by frame number.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use bitflags::bitflags;

use crate::frame::Pfn;

bitflags! {
    /// State bits of a frame. Bits 7..32 are free for later use.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub struct FrameFlags: u32 {
        /// In the buddy allocator, head of a free block. Owned by the allocator.
        const FREE = 1 << 0;
        /// I/O on the frame's contents is in flight.
        const LOCKED = 1 << 1;
        /// The contents are valid (the read that filled them completed).
        const UPTODATE = 1 << 2;
        /// The contents were modified and must be written back.
        const DIRTY = 1 << 3;
        /// Writeback of the contents is in flight.
        const WRITEBACK = 1 << 4;
        /// Never allocatable: firmware, kernel image, the table itself, or memory not yet
        /// handed to the allocator. Owned by the allocator.
        const RESERVED = 1 << 5;
        /// The read that was to fill the frame failed (set with `LOCKED` cleared and
        /// `UPTODATE` not set): the next reader drops the page and reports EIO.
        const ERROR = 1 << 6;
    }
}

impl FrameFlags {
    /// Flags only the frame allocator may change.
    pub(crate) const ALLOCATOR: FrameFlags = FrameFlags::FREE.union(FrameFlags::RESERVED);
}

/// What a frame is used for (informational: accounting and debugging).
#[repr(u32)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Owner {
    /// In the frame allocator.
    Free = 0,
    /// Not allocatable (see [`FrameFlags::RESERVED`]).
    Reserved,
    /// General kernel use.
    Kernel,
    /// Backing the kernel heap.
    Heap,
    /// A page table.
    PageTable,
    /// A DMA buffer or ring.
    Dma,
    /// A page-cache page.
    PageCache,
    /// Anonymous user memory.
    Anon,
    /// Host tests.
    Test,
}

impl Owner {
    /// The owner with discriminant `v`, or `None` for an unknown value.
    pub const fn from_u32(v: u32) -> Option<Owner> {
        Some(match v {
            0 => Owner::Free,
            1 => Owner::Reserved,
            2 => Owner::Kernel,
            3 => Owner::Heap,
            4 => Owner::PageTable,
            5 => Owner::Dma,
            6 => Owner::PageCache,
            7 => Owner::Anon,
            8 => Owner::Test,
            _ => return None,
        })
    }
}

/// Descriptor of one physical frame. All fields are atomics so the table can be shared
/// as `&'static [FrameDescriptor]`.
#[derive(Debug)]
pub struct FrameDescriptor {
    /// Low 32 bits: reference count; high 32 bits: pin count. One word, so exactly one
    /// caller sees the transition to "both zero" and frees the frame.
    pub(crate) refs_pins: AtomicU64,
    /// [`FrameFlags`] bits.
    pub(crate) flags: AtomicU32,
    /// [`Owner`] discriminant.
    pub(crate) owner: AtomicU32,
    /// While [`FrameFlags::FREE`]: next free block of the same order (`u64::MAX` = none).
    /// While allocated: low 32 bits, the number of page-cache pages that hold the frame
    /// (its *sharers*: two or more once pages of different files alias it); high 32 bits,
    /// the number of page-table entries mapping it into user address spaces. Each sharer
    /// and each mapping also owns one of the frame's references, so these say *who*
    /// holds references, not whether the frame is freed (that is `refs_pins` alone).
    pub(crate) link_a: AtomicU64,
    /// While [`FrameFlags::FREE`]: previous free block and the block's order (encoding
    /// private to `frame_alloc`). While allocated: the owner's (the page cache stores the
    /// page index / alias link here).
    pub(crate) link_b: AtomicU64,
}

const _: () = assert!(size_of::<FrameDescriptor>() == 32);

const REFS_MASK: u64 = u32::MAX as u64;
const PINS_SHIFT: u32 = 32;

/// Reference count stored in a `refs_pins` word.
pub(crate) const fn refs_of(word: u64) -> u32 {
    (word & REFS_MASK) as u32
}

/// Pin count stored in a `refs_pins` word.
pub(crate) const fn pins_of(word: u64) -> u32 {
    (word >> PINS_SHIFT) as u32
}

/// One reference, as a `refs_pins` increment.
pub(crate) const ONE_REF: u64 = 1;
/// One pin, as a `refs_pins` increment.
pub(crate) const ONE_PIN: u64 = 1 << PINS_SHIFT;

impl FrameDescriptor {
    /// A descriptor for a frame not (yet) managed by the allocator.
    pub const fn new_reserved() -> Self {
        FrameDescriptor {
            refs_pins: AtomicU64::new(0),
            flags: AtomicU32::new(FrameFlags::RESERVED.bits()),
            owner: AtomicU32::new(Owner::Reserved as u32),
            link_a: AtomicU64::new(0),
            link_b: AtomicU64::new(0),
        }
    }

    /// Current reference count.
    pub fn refcount(&self) -> u32 {
        refs_of(self.refs_pins.load(Ordering::Acquire))
    }

    /// Current pin count (frames under DMA).
    pub fn pincount(&self) -> u32 {
        pins_of(self.refs_pins.load(Ordering::Acquire))
    }

    /// Page-cache pages holding the frame (0 for a frame that is free or not a cache
    /// page; 2 or more for an aliased frame).
    pub fn sharers(&self) -> u32 {
        if self.flags().intersects(FrameFlags::ALLOCATOR) {
            return 0;
        }
        self.link_a.load(Ordering::Acquire) as u32
    }

    /// User page-table entries mapping the frame.
    pub fn mappings(&self) -> u32 {
        if self.flags().intersects(FrameFlags::ALLOCATOR) {
            return 0;
        }
        (self.link_a.load(Ordering::Acquire) >> 32) as u32
    }

    /// Transient references: held by neither a page-cache page nor a mapping (an I/O in
    /// flight, a copy in progress, a lookup).
    pub fn other_references(&self) -> u32 {
        self.refcount()
            .saturating_sub(self.sharers())
            .saturating_sub(self.mappings())
    }

    /// Current flags.
    pub fn flags(&self) -> FrameFlags {
        FrameFlags::from_bits_retain(self.flags.load(Ordering::Acquire))
    }

    /// Atomically sets `flags`; returns the previous flags. `FREE` and `RESERVED` belong
    /// to the allocator and are ignored here.
    pub fn set_flags(&self, flags: FrameFlags) -> FrameFlags {
        let bits = flags.difference(FrameFlags::ALLOCATOR).bits();
        FrameFlags::from_bits_retain(self.flags.fetch_or(bits, Ordering::AcqRel))
    }

    /// Atomically clears `flags`; returns the previous flags. `FREE` and `RESERVED` belong
    /// to the allocator and are ignored here.
    pub fn clear_flags(&self, flags: FrameFlags) -> FrameFlags {
        let bits = flags.difference(FrameFlags::ALLOCATOR).bits();
        FrameFlags::from_bits_retain(self.flags.fetch_and(!bits, Ordering::AcqRel))
    }

    /// Current owner; an unknown stored value reads as [`Owner::Reserved`].
    pub fn owner(&self) -> Owner {
        Owner::from_u32(self.owner.load(Ordering::Acquire)).unwrap_or(Owner::Reserved)
    }
}

impl Default for FrameDescriptor {
    fn default() -> Self {
        Self::new_reserved()
    }
}

/// The descriptors of frames `0..len`, indexed by frame number.
#[derive(Clone, Copy)]
pub struct FrameTable {
    pub(crate) descs: &'static [FrameDescriptor],
}

impl FrameTable {
    /// A table over `descs`; `descs[i]` describes frame `i`.
    pub const fn new(descs: &'static [FrameDescriptor]) -> Self {
        FrameTable { descs }
    }

    /// Number of frames covered (frames `0..len`).
    pub const fn len(&self) -> u64 {
        self.descs.len() as u64
    }

    /// Whether the table covers no frame.
    pub const fn is_empty(&self) -> bool {
        self.descs.is_empty()
    }

    /// Descriptor of `pfn`, or `None` if the table does not cover it.
    pub fn get(&self, pfn: Pfn) -> Option<&'static FrameDescriptor> {
        usize::try_from(pfn.0).ok().and_then(|i| self.descs.get(i))
    }

    /// Bytes of memory a table covering `frames` frames occupies.
    pub const fn bytes_needed(frames: u64) -> u64 {
        frames.saturating_mul(size_of::<FrameDescriptor>() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_round_trips_and_rejects_unknown() {
        for v in 0..=8 {
            assert_eq!(Owner::from_u32(v).map(|o| o as u32), Some(v));
        }
        assert_eq!(Owner::from_u32(9), None);
        assert_eq!(Owner::from_u32(u32::MAX), None);
        let d = FrameDescriptor::new_reserved();
        d.owner.store(1234, Ordering::Relaxed);
        assert_eq!(d.owner(), Owner::Reserved);
    }

    #[test]
    fn flags_public_api_cannot_touch_allocator_bits() {
        let d = FrameDescriptor::new_reserved();
        d.set_flags(FrameFlags::FREE | FrameFlags::DIRTY);
        assert_eq!(d.flags(), FrameFlags::RESERVED | FrameFlags::DIRTY);
        d.clear_flags(FrameFlags::all());
        assert_eq!(d.flags(), FrameFlags::RESERVED);
    }

    #[test]
    fn table_lookup_and_size() {
        let descs: &'static [FrameDescriptor] =
            Box::leak((0..4).map(|_| FrameDescriptor::default()).collect());
        let t = FrameTable::new(descs);
        assert_eq!(t.len(), 4);
        assert!(t.get(Pfn(3)).is_some());
        assert!(t.get(Pfn(4)).is_none());
        assert!(t.get(Pfn(u64::MAX)).is_none());
        assert_eq!(FrameTable::bytes_needed(1 << 20), 32 << 20);
        assert_eq!(
            t.get(Pfn(0)).map(|d| (d.refcount(), d.pincount())),
            Some((0, 0))
        );
    }
}
