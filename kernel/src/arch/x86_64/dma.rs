//! The kernel's implementation of the drivers' hardware abstraction: physical addresses
//! through the physical-memory map, DMA structures from contiguous frame runs.

use core::ptr::NonNull;

use mm::frame::{FRAME_SIZE, Pfn};
use mm::frame_table::Owner;

use super::paging;

/// The drivers' [`drivers::hal::Hal`] (and virtio-drivers' `Hal`) for this kernel.
pub struct KernelHal;

impl drivers::hal::Hal for KernelHal {
    fn phys_to_virt(phys: u64) -> *mut u8 {
        paging::phys_to_virt(phys) as *mut u8
    }

    fn dma_alloc(pages: usize) -> Option<u64> {
        // Rings and command tables, allocated at probe time (or on recovery): a
        // contiguous run; if none is free, dropping clean page-cache pages may make one.
        let frames = super::physmem::frames();
        let start = match frames.alloc_contiguous(pages as u64, Owner::Dma) {
            Ok(p) => p,
            Err(_) => {
                super::physmem::refill();
                frames.alloc_contiguous(pages as u64, Owner::Dma).ok()?
            }
        };
        for i in 0..pages as u64 {
            // SAFETY: the run was just allocated for this ring and nobody else knows it
            // yet; its one reference goes to the driver with the address below.
            unsafe { mm::phys::zero(start.add(i), 0, FRAME_SIZE) };
        }
        Some(start.addr())
    }

    fn dma_free(phys: u64, pages: usize) {
        if let Err(e) = super::physmem::frames().free_contiguous(Pfn::from_addr(phys), pages as u64)
        {
            log::error!("dma_free({phys:#x}, {pages}): {e}");
        }
    }
}

/// Size of a DMA page.
pub const DMA_PAGE: usize = FRAME_SIZE;

// SAFETY: dma_alloc returns zeroed, physically contiguous frames that stay allocated until
// dma_dealloc; share() returns the true physical address of a buffer that lies in the
// physical-memory map (every buffer the kernel's drivers hand to a virtqueue does: ring
// memory from dma_alloc, request headers from DMA pages, data frames by physical address);
// mmio_phys_to_virt maps through the physical map, which covers all MMIO below the top of
// the memory map and 4 GiB.
unsafe impl virtio_drivers::Hal for KernelHal {
    fn dma_alloc(
        pages: usize,
        _direction: virtio_drivers::BufferDirection,
    ) -> (virtio_drivers::PhysAddr, NonNull<u8>) {
        match <KernelHal as drivers::hal::Hal>::dma_alloc(pages) {
            Some(phys) => (
                phys,
                NonNull::new(paging::phys_to_virt(phys) as *mut u8).expect("phys map is not null"),
            ),
            // virtio-drivers has no failure path here; a queue without memory is fatal.
            None => panic!("out of memory for a virtqueue ({pages} pages)"),
        }
    }

    unsafe fn dma_dealloc(
        paddr: virtio_drivers::PhysAddr,
        _vaddr: NonNull<u8>,
        pages: usize,
    ) -> i32 {
        <KernelHal as drivers::hal::Hal>::dma_free(paddr, pages);
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: virtio_drivers::PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paging::phys_to_virt(paddr) as *mut u8).expect("phys map is not null")
    }

    unsafe fn share(
        buffer: NonNull<[u8]>,
        _direction: virtio_drivers::BufferDirection,
    ) -> virtio_drivers::PhysAddr {
        let virt = buffer.as_ptr() as *mut u8 as u64;
        match paging::virt_to_phys_map(virt) {
            Some(phys) => phys,
            None => panic!("virtio buffer {virt:#x} is outside the physical-memory map"),
        }
    }

    unsafe fn unshare(
        _paddr: virtio_drivers::PhysAddr,
        _buffer: NonNull<[u8]>,
        _direction: virtio_drivers::BufferDirection,
    ) {
    }
}
