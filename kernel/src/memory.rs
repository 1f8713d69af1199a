//! Memory above the platform: the system's page cache and the allocation policy under
//! memory pressure ([`reclaim`]). The frame allocator itself, the reserve and the
//! allocation classes are the platform's (`arch::physmem`); they are re-exported here.

pub mod reclaim;

use bootloader_api::info::MemoryRegions;
use mm::frame_table::Owner;
use mm::page_cache::{ENOMEM, IoError, PageCache};
use spin::Once;

pub use crate::arch::physmem::{Gfp, MemoryInfo, alloc_frame_ref, frames, info};
pub use reclaim::alloc_frame;

use crate::arch::{heap, physmem};

static PAGE_CACHE: Once<PageCache> = Once::new();

/// Initial heap size; it grows on demand.
const INITIAL_HEAP: usize = 1 << 20;

/// The system's page cache. Its frames are `User` allocations: reclaim, dirty
/// throttling and the OOM killer stand behind them.
pub fn page_cache() -> &'static PageCache {
    PAGE_CACHE.call_once(|| {
        let pc = PageCache::new(frames());
        pc.set_frame_source(|| {
            alloc_frame_ref(Owner::PageCache, Gfp::User).map_err(|_| IoError(ENOMEM))
        });
        pc
    })
}

/// Build the frame allocator from the bootloader's memory map, install the reclaim
/// policy, then start the heap.
pub fn init(regions: &MemoryRegions, phys_offset: u64) -> Result<MemoryInfo, &'static str> {
    let info = physmem::init(regions, phys_offset)?;
    physmem::set_reclaim(physmem::Reclaim {
        alloc: reclaim::alloc_frame,
        make_room: reclaim::make_room,
        refill: reclaim::refill,
    });
    heap::init(INITIAL_HEAP)?;
    Ok(info)
}
