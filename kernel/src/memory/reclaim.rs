//! Where frames come from when memory is tight: the allocation policy every frame
//! allocation of the kernel goes through ([`alloc_frame`]).
//!
//! Free frames are kept above a *reserve* (1/32 of memory, at least 2 MiB, at most a
//! quarter) that only the kernel may use:
//!
//! | class ([`Gfp`]) | may take free frames down to | when that is not enough |
//! |---|---|---|
//! | `Atomic` (heap growth, kernel page tables, interrupt handlers) | 0 | fails at once |
//! | `Kernel` (metadata I/O buffers, DMA rings, kernel stacks) | half the reserve | drops clean pages, waits for writeback, then fails (ENOMEM) |
//! | `User` (anonymous pages, page-cache pages, user page tables) | the reserve | reclaims, waits for writeback, then the OOM killer |
//!
//! Reclaim, in order: clean page-cache pages nobody maps or pins are dropped (CLOCK
//! order); then dirty pages are written back (by the allocating task, waiting for the
//! device) and dropped; pages under writeback are waited for. Only when none of that
//! frees anything does a `User` allocation call the OOM killer the process layer
//! installs, which kills the process with the largest resident set (SIGKILL) and lets
//! the allocation wait until its memory comes back.
//!
//! The kernel heap grows with `Atomic` frames (it cannot reclaim: it runs with its lock
//! held and interrupts off), so it eats into the reserve; every `User` or `Kernel`
//! allocation reclaims back above its floor first, and the writeback task refills the
//! reserve in the background ([`below_low_watermark`], [`refill`]).

use mm::counters::{self, Counter};
use mm::frame::Pfn;
use mm::frame_alloc::AllocError;
use mm::frame_table::Owner;
use spin::Once;

use super::page_cache;
pub use crate::arch::physmem::{
    Gfp, below_low_watermark, frames, high_watermark, low_watermark, reserve,
};
use crate::arch::{cpu, trap};
use crate::time;

/// What the OOM killer did. (It answers `Fail` when the caller's own process is already
/// dying, so a doomed process never waits for memory.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OomOutcome {
    /// A process was killed (or one killed earlier is still on its way out): its memory
    /// will come back, wait for it.
    Wait,
    /// The caller's own process is the one to die: fail the allocation.
    Fail,
}

/// The OOM killer, installed by the process layer.
static OOM_KILLER: Once<fn() -> OomOutcome> = Once::new();

/// Install the OOM killer (only the first call takes effect).
pub fn set_oom_killer(f: fn() -> OomOutcome) {
    OOM_KILLER.call_once(|| f);
}

/// Frames reclaim tries to free at once.
const RECLAIM_BATCH: u64 = 32;
/// One timer tick: how long to wait before looking again.
const TICK_NS: u64 = 1_000_000_000 / time::HZ;
/// Ticks an allocation waits, in all, for pages under writeback to come clean.
const MAX_WRITEBACK_WAITS: u32 = 200;
/// How long a `User` allocation waits, in all, for memory the OOM killer freed.
const OOM_WAIT_NS: u64 = 10_000_000_000;

fn floor(gfp: Gfp) -> u64 {
    match gfp {
        Gfp::Atomic => 0,
        Gfp::Kernel => reserve() / 2,
        Gfp::User => reserve(),
    }
}

/// Whether the running code may block: interrupts on, not in an interrupt handler.
fn may_sleep() -> bool {
    cpu::interrupts_enabled() && !trap::in_interrupt()
}

/// A frame for `owner`, allocated under the policy of `gfp` (see the module comment).
pub fn alloc_frame(owner: Owner, gfp: Gfp) -> Result<Pfn, AllocError> {
    let floor = floor(gfp);
    let mut oom_deadline = None;
    let mut writeback_waits = 0;
    loop {
        if frames().free_frames() > floor
            && let Ok(pfn) = frames().alloc(owner)
        {
            return Ok(pfn);
        }
        if gfp == Gfp::Atomic {
            return frames().alloc(owner);
        }
        if !may_sleep() {
            return Err(AllocError::OutOfMemory);
        }
        if reclaim_above(floor, gfp == Gfp::User) {
            continue;
        }
        // Nothing clean to drop and nothing dirty left to start: pages under writeback
        // come back when their I/O completes. (Bounded: the writeback may be waiting for
        // this very allocation, e.g. a metadata buffer of the task writing it.)
        if counters::get(Counter::NrWriteback) > 0 && writeback_waits < MAX_WRITEBACK_WAITS {
            writeback_waits += 1;
            crate::task::sleep_ns(TICK_NS);
            continue;
        }
        if gfp == Gfp::Kernel {
            return Err(AllocError::OutOfMemory);
        }
        let now = time::now_ns();
        let deadline = *oom_deadline.get_or_insert(now + OOM_WAIT_NS);
        if now >= deadline {
            return Err(AllocError::OutOfMemory);
        }
        match OOM_KILLER.get().map(|k| k()) {
            Some(OomOutcome::Wait) => crate::task::sleep_ns(TICK_NS),
            Some(OomOutcome::Fail) | None => return Err(AllocError::OutOfMemory),
        }
    }
}

/// Free page-cache frames until more than `floor` frames (plus a batch) are free.
/// With `write`, dirty pages may be written back (by this task, waiting for the device)
/// when clean ones run out; `Kernel` allocations must not, since they happen with file
/// system locks held that writeback needs. Returns whether anything was freed or
/// written back (so a retry may succeed).
fn reclaim_above(floor: u64, write: bool) -> bool {
    let pc = page_cache();
    let free = frames().free_frames();
    let want = (floor + RECLAIM_BATCH)
        .saturating_sub(free)
        .max(RECLAIM_BATCH) as usize;
    if pc.evict_clean(want) > 0 {
        return true;
    }
    // Clean pages ran out: write dirty ones back (waiting for them), then drop them.
    if write && counters::get(Counter::NrDirty) > 0 && pc.writeback_some(want.max(256)) > 0 {
        pc.evict_clean(want);
        return true;
    }
    false
}

/// Background reclaim (the writeback task runs this when free memory is below the low
/// watermark): drop clean pages until the high watermark is reached. Never writes.
/// Returns the frames freed.
pub fn refill() -> usize {
    let free = frames().free_frames();
    let high = high_watermark();
    if free >= high {
        return 0;
    }
    page_cache().evict_clean((high - free) as usize)
}

/// Drop clean page-cache pages until `pages` frames are free above the reserve (for a
/// big heap allocation, which may not eat into the reserve). Never writes back, so it is
/// safe with file-system locks held. Returns whether there is room now.
pub fn make_room(pages: u64) -> bool {
    let want = reserve() + pages + RECLAIM_BATCH;
    let free = frames().free_frames();
    if free < want {
        page_cache().evict_clean((want - free) as usize);
    }
    frames().free_frames() >= reserve() + pages
}

/// `drop_caches`: 1 drops clean page-cache pages, 2 clean metadata blocks, 3 both.
/// Dirty pages and pages in use stay. Returns the page-cache frames freed.
pub fn drop_page_cache() -> usize {
    page_cache().drop_clean()
}
