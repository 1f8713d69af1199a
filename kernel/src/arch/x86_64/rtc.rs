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

/// The wall-clock time from the CMOS clock, in seconds since the Unix epoch (UTC, as QEMU
/// and most PCs keep it), or None if the clock reads as nonsense.
pub fn unix_time() -> Option<u64> {
    // Wait until no update is in progress, then read twice until two reads agree.
    let snapshot = || {
        let mut spins = 0;
        while read(0x0A) & 0x80 != 0 && spins < 100_000 {
            spins += 1;
        }
        [
            read(0x00),
            read(0x02),
            read(0x04),
            read(0x07),
            read(0x08),
            read(0x09),
            read(0x32),
        ]
    };
    let mut t = snapshot();
    for _ in 0..5 {
        let u = snapshot();
        if u == t {
            break;
        }
        t = u;
    }
    let b = read(0x0B);
    let bcd = b & 0x04 == 0;
    let conv = |v: u8| if bcd { (v & 0x0F) + (v >> 4) * 10 } else { v };
    let (sec, min) = (conv(t[0]) as u64, conv(t[1]) as u64);
    let pm = t[2] & 0x80 != 0;
    let mut hour = conv(t[2] & 0x7F) as u64;
    if b & 0x02 == 0 {
        // 12-hour clock.
        hour %= 12;
        if pm {
            hour += 12;
        }
    }
    let (day, month) = (conv(t[3]) as u64, conv(t[4]) as u64);
    let century = match conv(t[6]) {
        c @ 19..=21 => c as u64,
        _ => 20,
    };
    let year = century * 100 + conv(t[5]) as u64;
    if !(1..=31).contains(&day) || !(1..=12).contains(&month) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    // Days from 1970-01-01 to the civil date (proleptic Gregorian).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + hour * 3600 + min * 60 + sec)
}
