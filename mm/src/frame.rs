//! Physical frame numbers.

/// Size of a physical frame (and of a page) in bytes.
pub const FRAME_SIZE: usize = 4096;

const FRAME_SHIFT: u32 = FRAME_SIZE.trailing_zeros();

/// A physical frame number: the physical address divided by [`FRAME_SIZE`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Pfn(pub u64);

impl Pfn {
    /// Physical address of the first byte of the frame.
    #[inline]
    pub const fn addr(self) -> u64 {
        self.0 << FRAME_SHIFT
    }

    /// Frame number of `addr`, rounded down to the frame boundary.
    #[inline]
    pub const fn from_addr(addr: u64) -> Pfn {
        Pfn(addr >> FRAME_SHIFT)
    }

    /// The frame that contains the byte at `addr` (same as [`Pfn::from_addr`]).
    #[inline]
    pub const fn containing(addr: u64) -> Pfn {
        Pfn::from_addr(addr)
    }

    /// The frame `n` frames after this one (saturates instead of overflowing).
    #[inline]
    pub const fn add(self, n: u64) -> Pfn {
        Pfn(self.0.saturating_add(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_conversions() {
        assert_eq!(Pfn(3).addr(), 3 * 4096);
        assert_eq!(Pfn::from_addr(0x3000), Pfn(3));
        assert_eq!(Pfn::from_addr(0x3fff), Pfn(3));
        assert_eq!(Pfn::containing(0x4000), Pfn(4));
        assert_eq!(Pfn(7).add(5), Pfn(12));
        assert_eq!(Pfn(u64::MAX - 1).add(5), Pfn(u64::MAX));
    }
}
