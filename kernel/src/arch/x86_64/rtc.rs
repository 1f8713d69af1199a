//! The CMOS real-time clock's periodic interrupt (ISA IRQ 8): used to prove IOAPIC routing.

use x86_64::instructions::port::Port;

fn select(reg: u8) {
    // SAFETY: port 0x70 is the CMOS index register; bit 7 set keeps NMIs disabled while a
    // register is selected, as recommended.
    unsafe { Port::<u8>::new(0x70).write(0x80 | reg) }
}

fn read(reg: u8) -> u8 {
    select(reg);
    // SAFETY: port 0x71 is the CMOS data register for the index just selected.
    unsafe { Port::<u8>::new(0x71).read() }
}

fn write(reg: u8, v: u8) {
    select(reg);
    // SAFETY: as in `read`.
    unsafe { Port::<u8>::new(0x71).write(v) }
}

/// Start periodic interrupts at 32768 >> (rate - 1) Hz (rate 3..=15; 6 = 1024 Hz).
pub fn enable_periodic(rate: u8) {
    let a = read(0x0A);
    write(0x0A, (a & 0xF0) | (rate & 0x0F));
    let b = read(0x0B);
    write(0x0B, b | 0x40);
    acknowledge();
}

/// Stop periodic interrupts.
pub fn disable_periodic() {
    let b = read(0x0B);
    write(0x0B, b & !0x40);
    acknowledge();
}

/// Read register C, which acknowledges the interrupt (the RTC raises no more until then).
pub fn acknowledge() -> u8 {
    read(0x0C)
}
