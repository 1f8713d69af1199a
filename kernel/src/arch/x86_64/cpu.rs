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

/// Fill `buf` with random bytes: RDRAND when the CPU has it, else a xorshift generator
/// seeded from the TSC (good enough for AT_RANDOM and getrandom in a test machine; not
/// cryptographic).
pub fn random_bytes(buf: &mut [u8]) {
    use core::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let has_rdrand = cpuid(1).2 & (1 << 30) != 0;
    for chunk in buf.chunks_mut(8) {
        let mut v = None;
        if has_rdrand {
            for _ in 0..10 {
                let mut x = 0u64;
                // SAFETY: RDRAND exists (CPUID.1:ECX.30); it only writes the register.
                if unsafe { core::arch::x86_64::_rdrand64_step(&mut x) } == 1 {
                    v = Some(x);
                    break;
                }
            }
        }
        let x = v.unwrap_or_else(|| {
            let mut s = STATE.load(Ordering::Relaxed);
            if s == 0 {
                s = rdtsc() | 1;
            }
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            STATE.store(s, Ordering::Relaxed);
            s ^ rdtsc().rotate_left(32)
        });
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

/// Reset the machine through the PCI reset control register (port 0xCF9), falling back to
/// a triple fault.
pub fn reset() -> ! {
    // SAFETY: 0xCF9 is the chipset's reset control register on PC-compatible machines
    // (QEMU's pc and q35 have it); writing 0x06 requests a hard reset.
    unsafe { Port::<u8>::new(0xCF9).write(0x06) };
    halt_forever()
}
