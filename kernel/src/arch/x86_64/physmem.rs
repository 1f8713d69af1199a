//! Physical memory: the frame descriptor table carved out of RAM at boot, the frame
//! allocator fed with every usable region, the reserve of free frames only the kernel may
//! take, and the allocation classes ([`Gfp`]).
//!
//! The policy behind [`alloc_frame`] (reclaim, writeback, the OOM killer) lives above
//! this layer, in `memory::reclaim`, and is installed with [`set_reclaim`]; until it is,
//! allocations take free frames and fail when there are none. The kernel heap, DMA
//! buffers, kernel stacks and page tables allocate through here.

use core::sync::atomic::{AtomicU64, Ordering};

use bootloader_api::info::{MemoryRegionKind, MemoryRegions};
use mm::frame::{FRAME_SIZE, Pfn};
use mm::frame_alloc::{AllocError, FrameAllocator};
use mm::frame_ref::FrameRef;
use mm::frame_table::{FrameTable, Owner};
use spin::Once;

use super::{cpu, paging};

static FRAMES: Once<FrameAllocator> = Once::new();

/// Frames below this address are left alone (real-mode area, firmware leftovers).
const LOW_MEMORY_END: u64 = 1 << 20;

/// The frame allocator.
pub fn frames() -> &'static FrameAllocator {
    FRAMES.get().expect("physmem::init has not run")
}

/// How an allocation may wait for memory (after Linux's GFP flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gfp {
    /// Never waits, never reclaims; may take the last free frames.
    Atomic,
    /// Kernel memory needed to make progress, possibly with file-system locks held:
    /// drops clean pages (never writes any back), may use half of the reserve, fails
    /// with ENOMEM rather than kill.
    Kernel,
    /// Memory on behalf of a process; reclaims, waits for writeback, then OOM-kills;
    /// never takes the reserve.
    User,
}

static RESERVE: AtomicU64 = AtomicU64::new(512);

/// Set the reserve from the amount of managed memory (at boot).
fn init_reserve(managed: u64) {
    let reserve = (managed / 32).max(512).min(managed / 4);
    RESERVE.store(reserve, Ordering::Relaxed);
}

/// Frames only the kernel may take.
pub fn reserve() -> u64 {
    RESERVE.load(Ordering::Relaxed)
}

/// Free frames below which background reclaim starts (the reserve plus a margin).
pub fn low_watermark() -> u64 {
    reserve() + reserve() / 2
}

/// Free frames background reclaim aims for.
pub fn high_watermark() -> u64 {
    2 * reserve()
}

/// Whether free memory is below the low watermark (background reclaim should run).
pub fn below_low_watermark() -> bool {
    frames().free_frames() < low_watermark()
}

/// The allocation policy of the memory layer: what to do when free frames run short.
#[derive(Clone, Copy)]
pub struct Reclaim {
    /// A frame for `owner` under the rules of its class (may reclaim, wait, OOM-kill).
    pub alloc: fn(Owner, Gfp) -> Result<Pfn, AllocError>,
    /// Drop clean cached pages until this many frames are free above the reserve
    /// (never writes back); whether there is room now.
    pub make_room: fn(u64) -> bool,
    /// Background reclaim up to the high watermark; the frames freed.
    pub refill: fn() -> usize,
}

static RECLAIM: Once<Reclaim> = Once::new();

/// Install the allocation policy (only the first call takes effect).
pub fn set_reclaim(r: Reclaim) {
    RECLAIM.call_once(|| r);
}

/// A frame for `owner`, allocated under the policy of `gfp`.
pub fn alloc_frame(owner: Owner, gfp: Gfp) -> Result<Pfn, AllocError> {
    match RECLAIM.get() {
        Some(r) => (r.alloc)(owner, gfp),
        None => frames().alloc(owner),
    }
}

/// A frame for `owner` as [`alloc_frame`], its one reference held by the handle (the
/// way safe code gets a frame whose bytes it may touch).
pub fn alloc_frame_ref(owner: Owner, gfp: Gfp) -> Result<FrameRef, AllocError> {
    let pfn = alloc_frame(owner, gfp)?;
    // SAFETY: `alloc_frame` hands out a newly allocated frame for `owner` with one
    // reference, which nobody else has; the handle takes that reference.
    Ok(unsafe { FrameRef::from_raw(frames(), pfn) })
}

/// See [`Reclaim::make_room`]; false without a policy.
pub fn make_room(pages: u64) -> bool {
    RECLAIM.get().is_some_and(|r| (r.make_room)(pages))
}

/// See [`Reclaim::refill`]; 0 without a policy.
pub fn refill() -> usize {
    RECLAIM.get().map_or(0, |r| (r.refill)())
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
    *INFO.get().expect("physmem::init has not run")
}

/// Build the frame table and allocator from the bootloader's memory map (the heap comes
/// next, on top of it).
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
            let was = cpu::interrupts_enabled();
            x86_64::instructions::interrupts::disable();
            was
        },
        restore: |was| {
            if was {
                cpu::enable_interrupts();
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
    // SAFETY: `[table_start, table_end)` is usable RAM chosen above, and the regions
    // handed to the allocator below skip it, so nothing else ever uses it.
    let storage = unsafe { paging::frame_table_storage(table_start, frames_covered as usize) };
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
    init_reserve(frames.managed_frames());
    let info = MemoryInfo {
        ram_bytes,
        usable_bytes,
        table_bytes,
        managed_frames: frames.managed_frames(),
    };
    Ok(*INFO.call_once(|| info))
}
