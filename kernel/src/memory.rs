//! Physical memory: at boot, the frame descriptor table carved out of RAM, the frame
//! allocator fed with every usable region, and the kernel heap on top; afterwards the
//! system's page cache and the allocation policy under memory pressure ([`reclaim`]).

pub mod reclaim;

use bootloader_api::info::{MemoryRegionKind, MemoryRegions};
use mm::frame::{FRAME_SIZE, Pfn};
use mm::frame_alloc::FrameAllocator;
use mm::frame_table::{FrameTable, Owner};
use mm::page_cache::{ENOMEM, IoError, PageCache};
use spin::Once;

pub use reclaim::{Gfp, alloc_frame};

use crate::arch::{heap, paging};

static FRAMES: Once<FrameAllocator> = Once::new();
static PAGE_CACHE: Once<PageCache> = Once::new();

/// Frames below this address are left alone (real-mode area, firmware leftovers).
const LOW_MEMORY_END: u64 = 1 << 20;
/// Initial heap size; it grows on demand.
const INITIAL_HEAP: usize = 1 << 20;

/// The frame allocator.
pub fn frames() -> &'static FrameAllocator {
    FRAMES.get().expect("memory::init has not run")
}

/// The system's page cache. Its frames are `User` allocations: reclaim, dirty
/// throttling and the OOM killer stand behind them.
pub fn page_cache() -> &'static PageCache {
    PAGE_CACHE.call_once(|| {
        let pc = PageCache::new(frames());
        pc.set_frame_source(|| {
            alloc_frame(Owner::PageCache, Gfp::User).map_err(|_| IoError(ENOMEM))
        });
        pc
    })
}

/// Memory figures printed at boot.
#[derive(Clone, Copy, Debug)]
pub struct MemoryInfo {
    /// RAM described by the memory map (usable plus what the bootloader uses).
    pub ram_bytes: u64,
    /// RAM the firmware left usable.
    pub usable_bytes: u64,
    /// Size of the frame descriptor table.
    pub table_bytes: u64,
    /// Frames handed to the allocator.
    pub managed_frames: u64,
}

static INFO: Once<MemoryInfo> = Once::new();

/// Figures from [`init`].
pub fn info() -> MemoryInfo {
    *INFO.get().expect("memory::init has not run")
}

/// Build the frame table and allocator from the bootloader's memory map, then the heap.
pub fn init(regions: &MemoryRegions, phys_offset: u64) -> Result<MemoryInfo, &'static str> {
    // The bootloader maps physical memory from 0 to max(4 GiB, end of the memory map).
    let map_end = regions
        .iter()
        .map(|r| r.end)
        .max()
        .unwrap_or(0)
        .max(1 << 32);
    // The frame allocator's lock is taken with interrupts masked (a handler may grow the
    // heap, and the timer asks how much is free).
    mm::sync::set_interrupt_hooks(mm::sync::InterruptHooks {
        disable: || {
            let was = crate::arch::cpu::interrupts_enabled();
            x86_64::instructions::interrupts::disable();
            was
        },
        restore: |was| {
            if was {
                crate::arch::cpu::enable_interrupts();
            }
        },
    });
    paging::init(phys_offset, map_end);
    let usable = || {
        regions
            .iter()
            .filter(|r| r.kind == MemoryRegionKind::Usable)
    };
    let max_addr = usable().map(|r| r.end).max().ok_or("no usable memory")?;
    let frames_covered = max_addr.div_ceil(FRAME_SIZE as u64);
    let table_bytes = FrameTable::bytes_needed(frames_covered).next_multiple_of(FRAME_SIZE as u64);
    let table_start = usable()
        .map(|r| {
            (
                r.start
                    .max(LOW_MEMORY_END)
                    .next_multiple_of(FRAME_SIZE as u64),
                r.end,
            )
        })
        .find(|&(s, e)| e > s && e - s >= table_bytes)
        .map(|(s, _)| s)
        .ok_or("no region large enough for the frame descriptor table")?;
    let table_end = table_start + table_bytes;
    let storage = paging::frame_table_storage(table_start, frames_covered as usize);
    mm::phys::init(phys_offset as usize, frames_covered);
    let frames = FRAMES.call_once(|| FrameAllocator::new(FrameTable::new(storage)));

    let mut usable_bytes = 0;
    let mut ram_bytes = 0;
    for r in regions.iter() {
        if matches!(
            r.kind,
            MemoryRegionKind::Usable | MemoryRegionKind::Bootloader
        ) {
            ram_bytes += r.end - r.start;
        }
    }
    for r in usable() {
        usable_bytes += r.end - r.start;
        let start = r
            .start
            .max(LOW_MEMORY_END)
            .next_multiple_of(FRAME_SIZE as u64);
        let end = r.end & !(FRAME_SIZE as u64 - 1);
        // Usable minus the frame table.
        for (s, e) in [(start, end.min(table_start)), (start.max(table_end), end)] {
            if e > s {
                frames.add_free_range(Pfn::from_addr(s), (e - s) / FRAME_SIZE as u64);
            }
        }
    }
    reclaim::init(frames.managed_frames());
    heap::init(INITIAL_HEAP)?;
    let info = MemoryInfo {
        ram_bytes,
        usable_bytes,
        table_bytes,
        managed_frames: frames.managed_frames(),
    };
    Ok(*INFO.call_once(|| info))
}
