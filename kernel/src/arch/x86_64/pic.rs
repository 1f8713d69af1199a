//! The legacy 8259 PICs: remapped away from the exception vectors, then fully masked.

use x86_64::instructions::port::Port;

/// Remap both PICs to `base..base+16` and mask every line. Interrupts come through the
/// IOAPIC instead; a spurious PIC interrupt lands on a harmless vector.
pub fn remap_and_mask(base: u8) {
    let out = |port: u16, v: u8| {
        // SAFETY: 0x20/0x21/0xA0/0xA1 are the 8259 command/data ports on every PC; this is
        // the standard ICW1-ICW4 initialisation sequence followed by a full mask.
        unsafe { Port::<u8>::new(port).write(v) };
        // A write to port 0x80 gives the old PIC time to settle.
        // SAFETY: port 0x80 is the POST diagnostic port, writes are harmless.
        unsafe { Port::<u8>::new(0x80).write(0) };
    };
    out(0x20, 0x11);
    out(0xA0, 0x11);
    out(0x21, base);
    out(0xA1, base + 8);
    out(0x21, 4);
    out(0xA1, 2);
    out(0x21, 0x01);
    out(0xA1, 0x01);
    out(0x21, 0xFF);
    out(0xA1, 0xFF);
}
