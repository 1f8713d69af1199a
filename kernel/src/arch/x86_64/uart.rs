//! The 16550 UART at COM1 (0x3F8): polled output and, later, input.

use x86_64::instructions::port::Port;

const COM1: u16 = 0x3F8;

/// The COM1 serial port.
pub struct Uart {
    present: bool,
}

impl Uart {
    /// Initialise COM1 at 115200 8N1 with FIFOs; detects a missing port with the loopback test.
    pub fn init() -> Uart {
        let w = |off: u16, v: u8| {
            // SAFETY: COM1's registers are at 0x3F8..0x3FF on every PC that has one; writes to
            // them on a PC without one are ignored.
            unsafe { Port::<u8>::new(COM1 + off).write(v) }
        };
        let r = |off: u16| -> u8 {
            // SAFETY: as above; a read of an absent port returns 0xFF.
            unsafe { Port::<u8>::new(COM1 + off).read() }
        };
        w(1, 0x00); // no interrupts
        w(3, 0x80); // DLAB
        w(0, 0x01); // divisor 1 = 115200 baud
        w(1, 0x00);
        w(3, 0x03); // 8N1
        w(2, 0xC7); // FIFO on, clear, 14-byte threshold
        w(4, 0x1E); // loopback for the self-test
        w(0, 0xAE);
        let present = r(0) == 0xAE;
        w(4, 0x0F); // normal operation, OUT1/OUT2, RTS/DTR
        Uart { present }
    }

    /// Whether the self-test found a UART.
    pub fn present(&self) -> bool {
        self.present
    }

    /// Send one byte, waiting (bounded) for the transmitter.
    pub fn send(&mut self, byte: u8) {
        if !self.present {
            return;
        }
        for _ in 0..100_000 {
            // SAFETY: reading the line status register of the UART found by `init`.
            if unsafe { Port::<u8>::new(COM1 + 5).read() } & 0x20 != 0 {
                break;
            }
        }
        // SAFETY: writing the transmit register of the UART found by `init`.
        unsafe { Port::<u8>::new(COM1).write(byte) }
    }

    /// A received byte, if one is waiting.
    pub fn try_recv(&mut self) -> Option<u8> {
        if !self.present {
            return None;
        }
        // SAFETY: reading the line status and receive registers of the UART found by `init`.
        unsafe {
            if Port::<u8>::new(COM1 + 5).read() & 1 != 0 {
                Some(Port::<u8>::new(COM1).read())
            } else {
                None
            }
        }
    }
}

impl core::fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.send(b'\r');
            }
            self.send(b);
        }
        Ok(())
    }
}

/// COM1 interrupt enable register.
const COM1_IER: u16 = 0x3F9;
/// COM1 modem control register.
const COM1_MCR: u16 = 0x3FC;

/// Enable COM1's "received data available" interrupt (OUT2 gates the IRQ line).
pub fn com1_enable_rx_interrupt() {
    // SAFETY: COM1's IER and MCR, on the UART the console initialised; setting
    // IER bit 0 and keeping DTR/RTS/OUT1/OUT2 on changes nothing else.
    unsafe {
        Port::<u8>::new(COM1_MCR).write(0x0F);
        Port::<u8>::new(COM1_IER).write(0x01);
    }
}

/// Turn COM1's loopback mode on or off (tests: what is sent comes back as input).
pub fn com1_loopback(on: bool) {
    // SAFETY: as above; bit 4 of the MCR is the UART's internal loopback.
    unsafe { Port::<u8>::new(COM1_MCR).write(if on { 0x1F } else { 0x0F }) };
}
