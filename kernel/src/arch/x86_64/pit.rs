//! The 8254 PIT: a known-frequency reference to calibrate the TSC (channel 2), and the
//! profiler's sampling clock when its interrupt can be delivered as an NMI (channel 0).

use x86_64::instructions::port::Port;

use super::cpu;

const PIT_HZ: u64 = 1_193_182;

/// Run channel 0 as a rate generator at about `hz` interrupts per second (IRQ 0);
/// returns the rate programmed.
pub fn start_periodic(hz: u64) -> u64 {
    let divisor = (PIT_HZ / hz.max(19)).clamp(2, 0xFFFF) as u16;
    // SAFETY: ports 0x43 and 0x40 are the PIT's mode register and channel 0 data on every
    // PC; channel 0 drives only IRQ 0, which nothing else in this kernel uses.
    unsafe {
        Port::<u8>::new(0x43).write(0b0011_0100); // channel 0, lobyte/hibyte, mode 2, binary
        let mut ch0 = Port::<u8>::new(0x40);
        ch0.write(divisor as u8);
        ch0.write((divisor >> 8) as u8);
    }
    PIT_HZ / divisor as u64
}

/// Count TSC ticks across `ms` milliseconds of PIT channel 2 (gated, speaker off) and
/// return the TSC frequency in Hz. Polls; call with interrupts in any state.
pub fn calibrate_tsc(ms: u64) -> u64 {
    let count = (PIT_HZ * ms / 1000).min(0xFFFF) as u16;
    // SAFETY: ports 0x42, 0x43 and 0x61 are the PIT channel 2 data, PIT mode and the
    // keyboard controller's port B (gate/speaker bits) on every PC; programming channel 2
    // affects only the PC speaker, which stays disabled (bit 1 cleared).
    unsafe {
        let mut port_b = Port::<u8>::new(0x61);
        let mut mode = Port::<u8>::new(0x43);
        let mut ch2 = Port::<u8>::new(0x42);
        let b = port_b.read();
        port_b.write((b & !0x02) & !0x01); // gate low, speaker off
        mode.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0, binary
        ch2.write(count as u8);
        ch2.write((count >> 8) as u8);
        port_b.write((b & !0x02) | 0x01); // gate high: start counting
        let start = cpu::rdtsc();
        let mut guard = 0u64;
        while port_b.read() & 0x20 == 0 {
            guard += 1;
            if guard > 500_000_000 {
                break;
            }
        }
        let end = cpu::rdtsc();
        port_b.write(b);
        (end - start) * 1000 / ms
    }
}
