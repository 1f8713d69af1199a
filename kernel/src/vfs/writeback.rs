//! The writeback task and dirty throttling (Linux's flusher threads and
//! `balance_dirty_pages`).
//!
//! Of the *dirtyable* memory (free frames plus page-cache pages):
//! - past [`BACKGROUND_RATIO`] (10 %) dirty or under writeback, the writeback task starts
//!   writing pages back while the writers keep running;
//! - past [`HARD_RATIO`] (20 %), a writer waits for writeback before dirtying more
//!   (counted in `dirty_throttled`).
//!
//! The task also writes back pages dirty for longer than [`DIRTY_EXPIRE_NS`] (checked
//! every [`PERIOD_NS`]), writes the file systems' metadata after data, and refills the
//! kernel's reserve of free frames by dropping clean pages when free memory falls below
//! the low watermark (background reclaim, Linux's kswapd).
//!
//! It is a kernel task: it runs while writers run, blocks on the disk like anyone, and
//! never takes a process's memory lock (a process holding it may be waiting for memory
//! this task frees).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use mm::counters::{self, Counter};

use super::{Event, page_cache, sync_metadata};
use crate::memory::{self, reclaim};
use crate::task::{self, WaitQueue};
use crate::time;

/// Background writeback starts past this share of dirtyable memory (percent).
pub const BACKGROUND_RATIO: u64 = 10;
/// Writers wait past this share (percent).
pub const HARD_RATIO: u64 = 20;
/// Pages dirty for longer than this are written back even below the thresholds.
const DIRTY_EXPIRE_NS: u64 = 30_000_000_000;
/// How often the task looks at expired pages and metadata.
const PERIOD_NS: u64 = 5_000_000_000;
/// Pages the task writes back per pass before it looks at its limits again.
const PASS_PAGES: usize = 1024;

/// Wakes the writeback task.
static KICK: WaitQueue = WaitQueue::new();
static KICKED: AtomicBool = AtomicBool::new(false);
/// Notified after every writeback pass: throttled writers look again.
static PROGRESS: Event = Event::new();
/// Passes that found dirty pages but wrote none of them (all failing or busy) in a row:
/// throttled writers stop waiting for progress that is not coming.
static STALLED_PASSES: AtomicU64 = AtomicU64::new(0);
static NEXT_PERIOD: AtomicU64 = AtomicU64::new(0);

/// Dirtyable memory in pages: what could hold dirty file data.
fn dirtyable() -> u64 {
    memory::frames().free_frames() + page_cache().pages()
}

/// Pages dirty or under writeback above which writeback starts.
pub fn background_limit() -> u64 {
    (dirtyable() * BACKGROUND_RATIO / 100).max(64)
}

/// Pages dirty or under writeback above which writers wait.
pub fn hard_limit() -> u64 {
    (dirtyable() * HARD_RATIO / 100).max(128)
}

fn over_background() -> bool {
    page_cache().dirty_and_writeback() > background_limit()
}

/// Start the writeback task (once, at boot).
pub fn start() {
    NEXT_PERIOD.store(time::now_ns() + PERIOD_NS, Ordering::Relaxed);
    match task::spawn_kernel("writeback", main) {
        Ok(_) => time::on_every_tick(tick),
        Err(e) => log::error!("cannot start the writeback task: {e:?}"),
    }
}

/// Ask the writeback task to run now (also from interrupt handlers: it only sets a flag
/// and wakes a queue).
pub fn kick() {
    KICKED.store(true, Ordering::Release);
    KICK.wake_all();
}

/// From the timer tick: wake the writeback task when its limits or the clock say so.
/// Only reads atomics, so it is safe in interrupt context.
fn tick() {
    let due = time::now_ns() >= NEXT_PERIOD.load(Ordering::Relaxed);
    if due || reclaim::below_low_watermark() {
        kick();
    }
}

/// How long the task backs off after a round that achieved nothing (every dirty page
/// failing, nothing clean to drop), so it never spins.
const BACKOFF_NS: u64 = 100_000_000;

fn main() -> ! {
    loop {
        KICK.wait_until(|| {
            KICKED.load(Ordering::Acquire)
                || (over_background() && counters::get(Counter::NrDirty) > 0)
                || reclaim::below_low_watermark()
        });
        KICKED.store(false, Ordering::Release);
        if !run_once() {
            task::sleep_ns(BACKOFF_NS);
        }
    }
}

/// One round of the task's work. Returns whether it achieved anything (or had nothing
/// to do).
fn run_once() -> bool {
    let pc = page_cache();
    let mut wrote = 0;
    let mut useful = true;
    // Background reclaim: refill the reserve the heap and the kernel draw from.
    if reclaim::below_low_watermark() && reclaim::refill() == 0 {
        useful = false;
    }
    // Background writeback: down to half the background limit, so that the writers are
    // not woken again at once.
    while pc.dirty_and_writeback() > background_limit() / 2 && counters::get(Counter::NrDirty) > 0 {
        let n = pc.writeback_some(PASS_PAGES);
        wrote += n;
        if n == 0 {
            STALLED_PASSES.fetch_add(1, Ordering::Relaxed);
            PROGRESS.notify();
            useful = false;
            break;
        }
        useful = true;
        STALLED_PASSES.store(0, Ordering::Relaxed);
        PROGRESS.notify();
        if reclaim::below_low_watermark() {
            reclaim::refill();
        }
    }
    let now = time::now_ns();
    if now >= NEXT_PERIOD.load(Ordering::Relaxed) {
        NEXT_PERIOD.store(now + PERIOD_NS, Ordering::Relaxed);
        pc.set_now(now / 1_000_000_000);
        if pc.writeback_older_than(DIRTY_EXPIRE_NS / 1_000_000_000) > 0 {
            wrote += 1;
        }
    }
    if wrote > 0 {
        sync_metadata();
    }
    PROGRESS.notify();
    useful
}

/// Called by writers after dirtying pages (Linux's `balance_dirty_pages`): past the
/// background limit the writeback task is woken; past the hard limit the writer waits
/// until writeback brings the dirty pages back under it (or stops making progress, or a
/// fatal signal arrives).
pub fn balance_dirty_pages() {
    let pc = page_cache();
    let dirty = pc.dirty_and_writeback();
    if dirty <= background_limit() {
        return;
    }
    kick();
    if dirty <= hard_limit() || task::in_idle() {
        return;
    }
    counters::add(Counter::DirtyThrottled, 1);
    let stalled_at_start = STALLED_PASSES.load(Ordering::Relaxed);
    loop {
        let seen = PROGRESS.snapshot();
        if pc.dirty_and_writeback() <= hard_limit()
            || STALLED_PASSES.load(Ordering::Relaxed) > stalled_at_start + 2
        {
            return;
        }
        kick();
        if PROGRESS.wait(seen).is_err() {
            return; // killed: let it die
        }
    }
}
