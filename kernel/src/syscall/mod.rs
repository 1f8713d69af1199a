//! System calls with the Linux x86-64 ABI: numbers, argument order, errno values and
//! structure layouts, so the tools are ordinary static Linux binaries.
//!
//! One module per family; each family's `dispatch` returns `None` for numbers it does not
//! own. Unknown numbers return ENOSYS and are logged once.

pub mod aio;
pub mod fs;
pub mod memory;
pub mod misc;
pub mod process;

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::cpu;
use crate::arch::trap::TrapFrame;
use crate::errno::{Errno, SysResult};

/// Numbers already reported as unimplemented (one bit each, numbers < 1024).
static REPORTED: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];

/// The Rust side of every system call: `rax` = number, `rdi, rsi, rdx, r10, r8, r9` =
/// arguments; the result (or `-errno`) goes back in `rax`.
pub fn handle(frame: &mut TrapFrame) {
    cpu::enable_interrupts();
    let nr = frame.rax;
    let a = [
        frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9,
    ];
    if matches!(nr, 74 | 75 | 162 | 306) {
        // fsync, fdatasync, sync, syncfs: stores made through shared mappings count too.
        crate::proc::sync_all_mappings();
    }
    let r = process::dispatch(nr, &a, frame)
        .or_else(|| memory::dispatch(nr, &a))
        .or_else(|| misc::dispatch(nr, &a))
        .or_else(|| fs::dispatch(nr, &a))
        .or_else(|| aio::dispatch(nr, &a))
        .unwrap_or_else(|| {
            unimplemented_call(nr);
            Err(Errno::ENOSYS)
        });
    // execve replaced the frame with the new program's: its rax starts at 0.
    if frame.vector == crate::arch::syscall::SYSCALL_VECTOR {
        frame.rax = ret(r);
    }
}

fn ret(r: SysResult) -> u64 {
    match r {
        Ok(v) => v,
        Err(e) => e.to_ret(),
    }
}

fn unimplemented_call(nr: u64) {
    let (word, bit) = ((nr / 64) as usize, nr % 64);
    let first = match REPORTED.get(word) {
        Some(w) => w.fetch_or(1 << bit, Ordering::Relaxed) & (1 << bit) == 0,
        None => false,
    };
    if first {
        let name = crate::proc::try_current()
            .map(|p| p.name.lock().clone())
            .unwrap_or_default();
        log::warn!("system call {nr} not implemented (first called by {name}): ENOSYS");
    }
}
