//! Single CPU instructions and QEMU's debug exit.

use core::arch::x86_64::{__cpuid, _rdtsc};
use x86_64::instructions::port::Port;

/// Read the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; it is available on every x86-64 CPU.
    unsafe { _rdtsc() }
}

/// CPUID leaf `leaf`, subleaf 0: (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    let r = __cpuid(leaf);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Interrupts on, then halt until the next interrupt (atomically: no lost wake-up).
#[inline]
pub fn enable_interrupts_and_halt() {
    x86_64::instructions::interrupts::enable_and_hlt();
}

/// Are interrupts enabled on this CPU?
#[inline]
pub fn interrupts_enabled() -> bool {
    x86_64::instructions::interrupts::are_enabled()
}

/// Run `f` with interrupts disabled, restoring the previous state after.
#[inline]
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    x86_64::instructions::interrupts::without_interrupts(f)
}

/// Enable interrupts on this CPU.
#[inline]
pub fn enable_interrupts() {
    x86_64::instructions::interrupts::enable();
}

/// Stop this CPU for good (interrupts off, halt in a loop).
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Exit codes written to QEMU's isa-debug-exit device (port 0xf4). QEMU then exits with
/// status `(code << 1) | 1`; on real hardware the write does nothing.
#[derive(Clone, Copy, Debug)]
#[repr(u32)]
pub enum ExitCode {
    /// A kernel panic.
    Panic = 0x11,
    /// An unhandled CPU exception.
    Exception = 0x12,
    /// A kernel test failed.
    TestFailed = 0x13,
}

/// Tell QEMU to exit with a failure status; on real hardware, halt.
pub fn fail_exit(code: ExitCode) -> ! {
    let mut port = Port::<u32>::new(0xf4);
    // SAFETY: port 0xf4 is QEMU's isa-debug-exit when present and unused on real PCs
    // (a write to an unclaimed port is ignored).
    unsafe { port.write(code as u32) };
    halt_forever()
}

/// Read CR2 (the faulting address of the last page fault).
pub fn cr2() -> u64 {
    x86_64::registers::control::Cr2::read_raw()
}

/// Issue a breakpoint exception (`int3`).
pub fn breakpoint() {
    x86_64::instructions::interrupts::int3();
}
