//! Tasks and the scheduler: kernel stacks, context switch, run queue, wait queues, sleeping.
//!
//! (Skeleton: the API below is what the rest of the kernel uses; the scheduler behind it
//! is being written.)

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::cpu;

/// Tasks waiting for something; woken by whoever makes it happen (an interrupt handler, a
/// process exiting, a pipe being written). Waiting is always "until a condition holds":
/// the condition is re-checked after every wake-up, so spurious wake-ups are harmless.
pub struct WaitQueue {
    generation: AtomicU64,
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitQueue {
    pub const fn new() -> WaitQueue {
        WaitQueue {
            generation: AtomicU64::new(0),
        }
    }

    /// Block the calling task until `cond()` returns true. `cond` runs with interrupts
    /// disabled, so a wake-up between the check and the sleep is not lost. Must not be
    /// called from an interrupt handler.
    pub fn wait_until(&self, mut cond: impl FnMut() -> bool) {
        loop {
            x86_64::instructions::interrupts::disable();
            if cond() {
                cpu::enable_interrupts();
                return;
            }
            cpu::enable_interrupts_and_halt();
        }
    }

    /// Wake every task waiting here (callable from interrupt handlers).
    pub fn wake_all(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// Give the CPU to another runnable task, if there is one.
pub fn yield_now() {}

/// Sleep for at least `ns` nanoseconds.
pub fn sleep_ns(ns: u64) {
    let until = crate::time::now_ns().saturating_add(ns);
    while crate::time::now_ns() < until {
        cpu::enable_interrupts_and_halt();
    }
}
