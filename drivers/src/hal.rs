//! What drivers need from the kernel for MMIO and DMA. The kernel implements this once;
//! host tests implement it over ordinary memory.

/// Physical memory access and DMA allocation, as static functions so a driver can take
/// the implementation as a type parameter.
pub trait Hal: Send + Sync + 'static {
    /// A pointer through which physical address `phys` (RAM or MMIO) can be accessed.
    fn phys_to_virt(phys: u64) -> *mut u8;
    /// `pages` physically contiguous, zeroed 4 KiB pages for device-owned structures
    /// (rings, command tables). Returns the physical address.
    fn dma_alloc(pages: usize) -> Option<u64>;
    /// Return pages from [`Hal::dma_alloc`].
    fn dma_free(phys: u64, pages: usize);
}
