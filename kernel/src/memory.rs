//! Physical memory at boot: the frame descriptor table carved out of RAM, the frame
//! allocator fed with every usable region, and the kernel heap on top.

use bootloader_api::info::{MemoryRegionKind, MemoryRegions};
use mm::frame::{FRAME_SIZE, Pfn};
use mm::frame_alloc::FrameAllocator;
use mm::frame_table::FrameTable;
use spin::Once;

use crate::arch::{heap, paging};

static FRAMES: Once<FrameAllocator> = Once::new();

/// Frames below this address are left alone (real-mode area, firmware leftovers).
const LOW_MEMORY_END: u64 = 1 << 20;
/// Initial heap size; it grows on demand.
const INITIAL_HEAP: usize = 4 << 20;

/// The frame allocator.
pub fn frames() -> &'static FrameAllocator {
    FRAMES.get().expect("memory::init has not run")
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
    heap::init(INITIAL_HEAP)?;
    let info = MemoryInfo {
        ram_bytes,
        usable_bytes,
        table_bytes,
        managed_frames: frames.managed_frames(),
    };
    Ok(*INFO.call_once(|| info))
}
