//! Stack walks by frame pointer (the kernel and the user tools are built with them): the
//! profiler's samples and the lock-order checker's reports.

use super::paging;

/// Walk saved frame pointers from `rbp` into `out`: each frame holds the caller's rbp and
/// the return address above it. Stops at anything implausible: a frame pointer that does
/// not move up the stack, leaves `[lo, hi)`, or is not mapped. Returns the frames filled.
pub fn walk(out: &mut [u64], mut rbp: u64, lo: u64, hi: u64) -> usize {
    let mut n = 0;
    while n < out.len() && rbp >= lo && rbp < hi {
        let (Some(next), Some(ret)) = (
            paging::read_mapped_u64(rbp),
            paging::read_mapped_u64(rbp.wrapping_add(8)),
        ) else {
            break;
        };
        if ret == 0 {
            break;
        }
        out[n] = ret;
        n += 1;
        if next <= rbp {
            break;
        }
        rbp = next;
    }
    n
}

/// The return addresses of the caller's own stack, innermost first (kernel code only).
#[inline(never)]
pub fn here(out: &mut [u64]) -> usize {
    let rbp = frame_pointer();
    walk(out, rbp, rbp, rbp.saturating_add(1 << 20))
}

#[inline(always)]
fn frame_pointer() -> u64 {
    let rbp: u64;
    // SAFETY: reads a register into a local; no memory is touched.
    unsafe {
        core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags))
    };
    rbp
}
