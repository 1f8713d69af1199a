//! The clock: the TSC, calibrated against the PIT, counts nanoseconds since boot.

use core::sync::atomic::{AtomicU64, Ordering};

use super::{cpu, pit};

static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// Remember the boot TSC value (call first thing).
pub fn mark_boot() {
    BOOT_TSC.store(cpu::rdtsc(), Ordering::Relaxed);
}

/// Calibrate the TSC over 20 ms of the PIT; returns its frequency in Hz.
pub fn calibrate() -> u64 {
    let hz = pit::calibrate_tsc(20);
    TSC_HZ.store(hz, Ordering::Relaxed);
    hz
}

/// TSC frequency in Hz (0 before calibration).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Nanoseconds since boot (0 before calibration).
pub fn now_ns() -> u64 {
    let hz = tsc_hz();
    if hz == 0 {
        return 0;
    }
    let dt = cpu::rdtsc().wrapping_sub(BOOT_TSC.load(Ordering::Relaxed));
    (dt as u128 * 1_000_000_000 / hz as u128) as u64
}

/// Busy-wait for `us` microseconds.
pub fn spin_us(us: u64) {
    let hz = tsc_hz().max(1_000_000);
    let start = cpu::rdtsc();
    let wait = us * (hz / 1_000_000);
    while cpu::rdtsc().wrapping_sub(start) < wait {
        core::hint::spin_loop();
    }
}
