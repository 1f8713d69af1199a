//! The local APIC: x2APIC (MSRs) where the CPU has it, xAPIC (MMIO) otherwise; EOI and the
//! periodic timer.

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use drivers::mmio::RegisterWindow;

use x86_64::registers::model_specific::Msr;

use super::{cpu, paging};

const IA32_APIC_BASE: u32 = 0x1B;

const REG_ID: u32 = 0x20;
const REG_TPR: u32 = 0x80;
const REG_EOI: u32 = 0xB0;
const REG_SVR: u32 = 0xF0;
const REG_ESR: u32 = 0x280;
const REG_LVT_TIMER: u32 = 0x320;
const REG_LVT_LINT0: u32 = 0x350;
const REG_LVT_LINT1: u32 = 0x360;
const REG_LVT_ERROR: u32 = 0x370;
const REG_TIMER_INIT: u32 = 0x380;
const REG_TIMER_CURRENT: u32 = 0x390;
const REG_TIMER_DIVIDE: u32 = 0x3E0;

const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;
const LVT_NMI: u32 = 0b100 << 8;

/// How the local APIC is being accessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Not initialised.
    None,
    /// Memory-mapped registers.
    XApic,
    /// MSR-based registers (x2APIC).
    X2Apic,
}

static MODE: AtomicU8 = AtomicU8::new(0);
/// The xAPIC register page (4 KiB), in xAPIC mode.
static APIC_REGS: spin::Once<RegisterWindow> = spin::Once::new();
static TIMER_HZ: AtomicU64 = AtomicU64::new(0);

/// Current access mode.
pub fn mode() -> Mode {
    match MODE.load(Ordering::Relaxed) {
        1 => Mode::XApic,
        2 => Mode::X2Apic,
        _ => Mode::None,
    }
}

fn read(reg: u32) -> u32 {
    match mode() {
        // SAFETY: in x2APIC mode every register is the MSR 0x800 + reg/16, readable in ring 0.
        Mode::X2Apic => unsafe { Msr::new(0x800 + (reg >> 4)).read() as u32 },
        Mode::XApic => APIC_REGS
            .get()
            .and_then(|w| w.read::<u32>(reg as usize))
            .unwrap_or(0),
        Mode::None => 0,
    }
}

fn write(reg: u32, value: u32) {
    match mode() {
        // SAFETY: as in `read`; writes to these MSRs only change APIC state.
        Mode::X2Apic => unsafe { Msr::new(0x800 + (reg >> 4)).write(value as u64) },
        Mode::XApic => {
            if let Some(w) = APIC_REGS.get() {
                w.write::<u32>(reg as usize, value);
            }
        }
        Mode::None => {}
    }
}

/// Whether the CPU supports x2APIC.
pub fn has_x2apic() -> bool {
    cpu::cpuid(1).2 & (1 << 21) != 0
}

/// Enable this CPU's local APIC (x2APIC if available) with the spurious vector, accept
/// every priority, mask LINT0 (the masked 8259 would otherwise deliver ExtINT) and route
/// LINT1 as NMI.
pub fn init(spurious_vector: u8) {
    let mut base_msr = Msr::new(IA32_APIC_BASE);
    // IA32_APIC_BASE exists on every x86-64 CPU; setting its global-enable bit (11) and, when
    // CPUID says it is supported, the x2APIC bit (10) is the documented way to enable it.
    // SAFETY: as just said; these MSR writes only change the local APIC's state.
    let base = unsafe {
        let base = base_msr.read();
        if has_x2apic() {
            base_msr.write(base | (1 << 11) | (1 << 10));
            MODE.store(2, Ordering::Relaxed);
        } else {
            base_msr.write(base | (1 << 11));
            MODE.store(1, Ordering::Relaxed);
        }
        base
    };
    if !has_x2apic() {
        let phys = base & 0x000F_FFFF_FFFF_F000;
        // SAFETY: IA32_APIC_BASE gives the local APIC's register page, device registers
        // the physical map reaches and nothing else uses.
        APIC_REGS.call_once(|| unsafe {
            RegisterWindow::new(paging::phys_to_virt(phys) as usize, 0x1000)
        });
    }
    write(REG_TPR, 0);
    write(REG_LVT_LINT0, LVT_MASKED);
    write(REG_LVT_LINT1, LVT_NMI);
    write(REG_LVT_ERROR, LVT_MASKED);
    write(REG_ESR, 0);
    write(REG_SVR, 0x100 | spurious_vector as u32);
    eoi();
}

/// This CPU's APIC id.
pub fn id() -> u32 {
    match mode() {
        Mode::X2Apic => read(REG_ID),
        _ => read(REG_ID) >> 24,
    }
}

/// Signal end of interrupt.
pub fn eoi() {
    write(REG_EOI, 0);
}

/// Measure the APIC timer against the TSC and start it periodically at `hz` on `vector`.
/// Returns the timer's input frequency in Hz (after the divide-by-16).
pub fn start_timer(vector: u8, hz: u64, tsc_hz: u64) -> u64 {
    write(REG_TIMER_DIVIDE, 0b0011); // divide by 16
    write(REG_LVT_TIMER, LVT_MASKED);
    write(REG_TIMER_INIT, u32::MAX);
    let wait = tsc_hz / 100; // 10 ms
    let start = cpu::rdtsc();
    while cpu::rdtsc() - start < wait {
        core::hint::spin_loop();
    }
    let elapsed = u32::MAX - read(REG_TIMER_CURRENT);
    let timer_hz = (elapsed as u64 * 100).max(hz);
    TIMER_HZ.store(timer_hz, Ordering::Relaxed);
    write(REG_TIMER_INIT, 0);
    write(REG_LVT_TIMER, vector as u32 | LVT_PERIODIC);
    write(
        REG_TIMER_INIT,
        (timer_hz / hz).clamp(1, u32::MAX as u64) as u32,
    );
    timer_hz
}

/// The MSI/MSI-X (address, data) that delivers `vector` to this CPU: fixed delivery,
/// physical destination, edge-triggered.
pub fn msi_message(vector: u8) -> (u64, u32) {
    (0xFEE0_0000 | ((id() as u64 & 0xFF) << 12), vector as u32)
}
