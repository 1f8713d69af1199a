//! Traps, the timer, the TSC and IOAPIC routing on the real (emulated) hardware.

use core::sync::atomic::{AtomicU64, Ordering};

use super::TestResult;
use crate::arch::ioapic;
use crate::arch::trap::{self, TrapFrame};
use crate::arch::{apic, rtc, selftest};
use crate::{ensure, time};

static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);

fn on_breakpoint(frame: &mut TrapFrame) -> bool {
    BREAKPOINTS.fetch_add(1, Ordering::Relaxed);
    frame.rax = frame.rax.wrapping_mul(3);
    true
}

/// `int3` reaches the handler with the interrupted RAX in the frame; a change to the frame
/// reaches the interrupted code; execution resumes after the instruction.
pub fn breakpoint_resumes_with_frame_intact() -> TestResult {
    trap::set_handler(3, on_breakpoint);
    let before = BREAKPOINTS.load(Ordering::Relaxed);
    let out = selftest::int3_with_rax(0x1234_5678);
    let out2 = selftest::int3_with_rax(7);
    trap::clear_handler(3);
    ensure!(
        BREAKPOINTS.load(Ordering::Relaxed) == before + 2,
        "handler ran {} times",
        BREAKPOINTS.load(Ordering::Relaxed) - before
    );
    ensure!(
        out == 0x1234_5678 * 3 && out2 == 21,
        "rax came back as {out:#x} / {out2}"
    );
    Ok(())
}

/// The local APIC timer interrupts at HZ while the CPU halts.
pub fn timer_ticks_advance() -> TestResult {
    let t0 = time::ticks();
    time::sleep_ticks(5);
    let t1 = time::ticks();
    ensure!(t1 >= t0 + 5, "ticks went {t0} -> {t1}");
    ensure!(
        apic::mode() != apic::Mode::None,
        "local APIC not initialised"
    );
    Ok(())
}

/// 20 timer ticks (200 ms) measured with the TSC. TCG timing is loose, so the bounds are
/// wide: they catch a mis-calibrated TSC or timer (off by 10x), not jitter.
pub fn tsc_agrees_with_timer() -> TestResult {
    let hz = time::tsc_hz();
    ensure!(
        hz > 100_000_000 && hz < 20_000_000_000,
        "TSC frequency {hz} Hz is implausible"
    );
    time::sleep_ticks(1);
    let t0 = time::now_ns();
    time::sleep_ticks(20);
    let ms = (time::now_ns() - t0) / 1_000_000;
    ensure!(
        (100..=1000).contains(&ms),
        "20 ticks at {} Hz took {ms} ms by the TSC",
        time::HZ
    );
    Ok(())
}

static RTC_IRQS: AtomicU64 = AtomicU64::new(0);

fn on_rtc(_frame: &mut TrapFrame) -> bool {
    rtc::acknowledge();
    RTC_IRQS.fetch_add(1, Ordering::Relaxed);
    true
}

/// ISA IRQ 8 (RTC periodic interrupt), routed through the IOAPIC after the MADT's
/// overrides, arrives on the vector it was given; masking stops it.
pub fn ioapic_routes_rtc_interrupt() -> TestResult {
    ensure!(ioapic::count() > 0, "no IOAPIC");
    let (gsi, trigger) = ioapic::isa_irq(8);
    let vector = trap::VECTOR_GSI_BASE + gsi as u8;
    trap::set_handler(vector, on_rtc);
    ensure!(
        ioapic::route(gsi, vector, trigger, apic::id()),
        "GSI {gsi} not on any IOAPIC"
    );
    RTC_IRQS.store(0, Ordering::Relaxed);
    rtc::enable_periodic(6); // 1024 Hz
    let start = time::ticks();
    while RTC_IRQS.load(Ordering::Relaxed) < 16 && time::ticks() < start + 100 {
        crate::arch::cpu::enable_interrupts_and_halt();
    }
    let got = RTC_IRQS.load(Ordering::Relaxed);
    ioapic::mask(gsi);
    rtc::disable_periodic();
    time::sleep_ticks(2);
    let after_mask = RTC_IRQS.load(Ordering::Relaxed);
    time::sleep_ticks(5);
    let later = RTC_IRQS.load(Ordering::Relaxed);
    trap::clear_handler(vector);
    ensure!(
        got >= 16,
        "only {got} RTC interrupts in 1 s (GSI {gsi}, vector {vector:#x})"
    );
    ensure!(
        later == after_mask,
        "interrupts kept coming after masking ({after_mask} -> {later})"
    );
    Ok(())
}
