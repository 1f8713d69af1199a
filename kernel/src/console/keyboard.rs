//! Console input devices: the PS/2 keyboard (i8042, ISA IRQ 1, decoded with
//! `pc-keyboard`, US layout) and the COM1 receive interrupt (ISA IRQ 4). Both feed the
//! terminal's line discipline ([`super::tty`]).
//!
//! The port accesses are in [`hw`]: the i8042 data/status ports and COM1's interrupt
//! enable and modem control registers.

use alloc::sync::Arc;

use pc_keyboard::layouts::Us104Key;
use pc_keyboard::{DecodedKey, HandleControl, KeyCode, Keyboard, ScancodeSet1};
use spin::Mutex;

use super::tty;
use crate::arch::{apic, ioapic, trap};

/// Raw port I/O for the two input devices.
pub mod hw {
    use x86_64::instructions::port::Port;

    /// i8042 data port.
    const PS2_DATA: u16 = 0x60;
    /// i8042 status (read) / command (write) port.
    const PS2_STATUS: u16 = 0x64;
    /// COM1 interrupt enable register.
    const COM1_IER: u16 = 0x3F9;
    /// COM1 modem control register.
    const COM1_MCR: u16 = 0x3FC;

    pub fn ps2_status() -> u8 {
        // SAFETY: reading the i8042 status register has no side effects; a PC without
        // the controller returns 0xFF.
        unsafe { Port::<u8>::new(PS2_STATUS).read() }
    }

    pub fn ps2_read() -> u8 {
        // SAFETY: reading the i8042 output buffer only consumes the byte it holds.
        unsafe { Port::<u8>::new(PS2_DATA).read() }
    }

    fn wait_input_empty() -> bool {
        for _ in 0..100_000 {
            if ps2_status() & 2 == 0 {
                return true;
            }
            core::hint::spin_loop();
        }
        false
    }

    /// Send a controller command (with an optional data byte).
    pub fn ps2_command(cmd: u8, data: Option<u8>) -> bool {
        if !wait_input_empty() {
            return false;
        }
        // SAFETY: writing a documented i8042 controller command to its command port.
        unsafe { Port::<u8>::new(PS2_STATUS).write(cmd) };
        if let Some(d) = data {
            if !wait_input_empty() {
                return false;
            }
            // SAFETY: the data byte of the command just sent, to the i8042 data port.
            unsafe { Port::<u8>::new(PS2_DATA).write(d) };
        }
        true
    }

    /// Wait (bounded) for a byte from the controller.
    pub fn ps2_response() -> Option<u8> {
        for _ in 0..100_000 {
            if ps2_status() & 1 != 0 {
                return Some(ps2_read());
            }
            core::hint::spin_loop();
        }
        None
    }

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
}

fn route_isa(irq: u8, handler: trap::IrqHandler) -> bool {
    if ioapic::count() == 0 {
        return false;
    }
    let (gsi, trigger) = ioapic::isa_irq(irq);
    let Ok(g) = u8::try_from(gsi) else {
        return false;
    };
    let vector = trap::VECTOR_GSI_BASE.saturating_add(g);
    if vector >= trap::VECTOR_DYNAMIC_FIRST {
        return false;
    }
    trap::set_irq_handler(vector, handler);
    ioapic::route(gsi, vector, trigger, apic::id())
}

/// Serial receive interrupts delivered so far.
pub static SERIAL_IRQS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

fn on_serial() {
    SERIAL_IRQS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    // Drain the FIFO: the interrupt is edge-triggered, a byte left behind would keep the
    // line high and no further edge would come.
    for _ in 0..64 {
        match super::serial_recv() {
            Some(b) => tty::input_byte(b),
            None => break,
        }
    }
}

/// Route COM1's receive interrupt to the terminal.
pub fn start_serial_input() {
    if !route_isa(4, Arc::new(on_serial)) {
        log::warn!("console: no IOAPIC route for COM1; no serial input");
        return;
    }
    hw::com1_enable_rx_interrupt();
    // Bytes that arrived before the interrupt was on.
    on_serial();
}

static KEYBOARD: Mutex<Keyboard<Us104Key, ScancodeSet1>> = Mutex::new(Keyboard::new(
    ScancodeSet1::new(),
    Us104Key,
    HandleControl::MapLettersToUnicode,
));

/// Scancode (set 1) bytes through the decoder into terminal input.
pub fn key_byte(byte: u8) {
    let key = {
        let mut kb = KEYBOARD.lock();
        match kb.add_byte(byte) {
            Ok(Some(ev)) => kb.process_keyevent(ev),
            _ => None,
        }
    };
    match key {
        Some(DecodedKey::Unicode(c)) => {
            let mut b = [0u8; 4];
            for &x in c.encode_utf8(&mut b).as_bytes() {
                tty::input_byte(x);
            }
        }
        Some(DecodedKey::RawKey(k)) => {
            // Cursor keys as a VT100 sends them.
            let seq: &[u8] = match k {
                KeyCode::ArrowUp => b"\x1b[A",
                KeyCode::ArrowDown => b"\x1b[B",
                KeyCode::ArrowRight => b"\x1b[C",
                KeyCode::ArrowLeft => b"\x1b[D",
                _ => b"",
            };
            tty::input(seq);
        }
        None => {}
    }
}

fn on_keyboard() {
    for _ in 0..16 {
        let status = hw::ps2_status();
        if status & 1 == 0 || status == 0xFF {
            break;
        }
        let byte = hw::ps2_read();
        if status & 0x20 != 0 {
            continue; // mouse data
        }
        key_byte(byte);
    }
}

/// Enable the PS/2 keyboard's interrupt (with scancode translation to set 1) and route
/// it to the terminal. Machines without an i8042 are left alone.
pub fn start_keyboard() {
    if hw::ps2_status() == 0xFF {
        log::info!("console: no PS/2 controller");
        return;
    }
    // Drop stale bytes, then read, adjust and write the configuration byte.
    for _ in 0..32 {
        if hw::ps2_status() & 1 == 0 {
            break;
        }
        hw::ps2_read();
    }
    if hw::ps2_command(0x20, None)
        && let Some(config) = hw::ps2_response()
    {
        // Port 1 interrupt on, port 1 clock on, translation on.
        let new = (config | 0x01 | 0x40) & !0x10;
        if new != config && !hw::ps2_command(0x60, Some(new)) {
            log::warn!("console: PS/2 configuration write timed out");
        }
    } else {
        log::warn!("console: PS/2 controller does not answer");
        return;
    }
    if !route_isa(1, Arc::new(on_keyboard)) {
        log::warn!("console: no IOAPIC route for the keyboard");
    }
}
