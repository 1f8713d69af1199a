//! The OOM killer: called by the memory layer's `User` allocation policy when reclaim
//! can free nothing more (no clean page-cache page left to drop, no dirty one left to
//! write back). Processes really hold the memory then, so one of them must go.
//!
//! The victim is the process with the largest resident set; PID 1 only when no other
//! process holds any memory. It gets SIGKILL (its parent sees wait status 9, a shell
//! reports 137), the choice and the memory picture are logged, and `oom_kill` in
//! `/proc/vmstat` counts it. While a victim is on its way out no second one is chosen:
//! the allocations that wait get its memory.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, Ordering};

use mm::counters::{self, Counter};

use super::{Process, SIGKILL, all_processes, find, try_current};
use crate::memory::reclaim::{self, OomOutcome};

/// The victim chosen last, until it has exited (0: none).
static DYING: AtomicU32 = AtomicU32::new(0);

/// Register the OOM killer with the memory layer.
pub fn install() {
    reclaim::set_oom_killer(oom_kill);
}

fn oom_kill() -> OomOutcome {
    let me = try_current();
    if me.as_ref().is_some_and(|p| p.kill_pending()) {
        return OomOutcome::Fail;
    }
    let dying = DYING.load(Ordering::Acquire);
    if dying != 0 {
        if find(dying).is_some_and(|p| !p.is_zombie()) {
            return OomOutcome::Wait;
        }
        DYING.store(0, Ordering::Release);
    }
    let live: alloc::vec::Vec<Arc<Process>> = all_processes()
        .into_iter()
        .filter(|p| !p.is_zombie() && !p.kill_pending())
        .collect();
    let largest = |ps: &mut dyn Iterator<Item = &Arc<Process>>| -> Option<Arc<Process>> {
        ps.filter(|p| p.resident_pages() > 0)
            .max_by_key(|p| (p.resident_pages(), p.pid))
            .cloned()
    };
    let victim =
        largest(&mut live.iter().filter(|p| p.pid != 1)).or_else(|| largest(&mut live.iter()));
    let Some(victim) = victim else {
        return OomOutcome::Fail;
    };
    report(&live, &victim);
    counters::add(Counter::OomKill, 1);
    victim.post_kill(SIGKILL);
    if me.is_some_and(|p| p.pid == victim.pid) {
        return OomOutcome::Fail;
    }
    DYING.store(victim.pid, Ordering::Release);
    OomOutcome::Wait
}

/// Log the memory picture and the choice, as Linux's "Out of memory: Killed process".
fn report(live: &[Arc<Process>], victim: &Process) {
    let f = crate::memory::frames();
    let (heap_mapped, heap_used) = crate::arch::heap::stats();
    crate::kprintln!(
        "out of memory: {} KiB free of {} KiB (reserve {} KiB), page cache {} KiB ({} KiB dirty, {} KiB under writeback), heap {} KiB ({} KiB used)",
        f.free_frames() * 4,
        f.managed_frames() * 4,
        reclaim::reserve() * 4,
        counters::get(Counter::PagecachePages) * 4,
        counters::get(Counter::NrDirty) * 4,
        counters::get(Counter::NrWriteback) * 4,
        heap_mapped >> 10,
        heap_used >> 10
    );
    for p in live {
        log::info!(
            "oom:   pid {:>5} rss {:>8} KiB  {}",
            p.pid,
            p.resident_pages() * 4,
            p.name.lock()
        );
    }
    crate::kprintln!(
        "out of memory: killed process {} ({}), rss {} KiB",
        victim.pid,
        victim.name.lock(),
        victim.resident_pages() * 4
    );
}
