//! Register and DMA-memory access: the only `unsafe` of the AHCI driver (and of the
//! MSI-X table programming in [`crate::pci::msi`], whose module forbids `unsafe`).
//!
//! Registers are reached through [`RegisterIo`], so host tests can put a simulated HBA
//! behind the driver; the kernel uses [`MmioRegs`], a [`RegisterWindow`] over the ABAR
//! mapped through [`Hal::phys_to_virt`]. DMA memory (command lists, command tables, bounce buffers,
//! request segments) is read and written with the `unsafe fn`s below, whose callers
//! say why the physical range is theirs to touch.

use core::ptr;

use crate::hal::Hal;
use crate::mmio::RegisterWindow;
use crate::pci::Bar;

/// 32-bit register access to a device's register window (the AHCI ABAR).
///
/// Offsets are byte offsets from the start of the window, multiples of 4.
pub trait RegisterIo: Send + Sync + 'static {
    /// Reads the register at `offset`.
    fn read(&self, offset: usize) -> u32;
    /// Writes the register at `offset`.
    fn write(&self, offset: usize, value: u32);
}

/// The AHCI register window (ABAR) as a [`RegisterIo`]: 32-bit registers through a
/// [`RegisterWindow`]. Out-of-window or unaligned offsets read as all-ones and ignore
/// writes (and are logged), the way an absent device answers; they never touch memory
/// outside the window.
#[derive(Clone, Debug)]
pub struct MmioRegs(RegisterWindow);

impl MmioRegs {
    /// The memory BAR `bar` (see [`RegisterWindow::from_bar`]).
    pub fn from_bar<H: Hal>(bar: Bar) -> Option<MmioRegs> {
        RegisterWindow::from_bar::<H>(bar).map(MmioRegs)
    }

    /// Size of the window in bytes.
    pub fn size(&self) -> usize {
        self.0.size()
    }

    fn outside(&self, offset: usize) {
        log::error!(
            "mmio: register offset {offset:#x} outside the {:#x}-byte window",
            self.0.size()
        );
    }
}

impl RegisterIo for MmioRegs {
    fn read(&self, offset: usize) -> u32 {
        self.0.read::<u32>(offset).unwrap_or_else(|| {
            self.outside(offset);
            u32::MAX
        })
    }

    fn write(&self, offset: usize, value: u32) {
        if !self.0.write::<u32>(offset, value) {
            self.outside(offset);
        }
    }
}

/// Writes `words` (little-endian dwords) to physical memory at `phys`.
///
/// # Safety
/// `phys..phys + 4 * words.len()` must be 4-byte aligned memory that the caller owns for
/// DMA (from [`Hal::dma_alloc`], or a segment of a request it holds) and that the device
/// is not writing concurrently.
pub(crate) unsafe fn dma_write_u32s<H: Hal>(phys: u64, words: &[u32]) {
    let base = H::phys_to_virt(phys) as *mut u32;
    for (i, w) in words.iter().enumerate() {
        // SAFETY: in bounds and aligned by the function's contract.
        unsafe { ptr::write_volatile(base.add(i), w.to_le()) }
    }
}

/// Copies `dst.len()` bytes from physical memory at `phys` into `dst`.
///
/// # Safety
/// `phys..phys + dst.len()` must be memory the caller owns for DMA, and the device must
/// be done writing it.
pub(crate) unsafe fn dma_read_bytes<H: Hal>(phys: u64, dst: &mut [u8]) {
    let src = H::phys_to_virt(phys) as *const u8;
    for (i, b) in dst.iter_mut().enumerate() {
        // SAFETY: in bounds by the function's contract; byte accesses need no alignment.
        *b = unsafe { ptr::read_volatile(src.add(i)) };
    }
}

/// Copies `len` bytes between two physical ranges (bounce buffers).
///
/// # Safety
/// Both ranges must be memory the caller owns for DMA, must not overlap, and the device
/// must not be accessing either while the copy runs.
pub(crate) unsafe fn dma_copy<H: Hal>(dst: u64, src: u64, len: usize) {
    let d = H::phys_to_virt(dst);
    let s = H::phys_to_virt(src) as *const u8;
    // SAFETY: by the function's contract; the ranges are distinct allocations.
    unsafe { ptr::copy_nonoverlapping(s, d, len) }
}
