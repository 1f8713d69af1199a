//! Console input devices: the PS/2 keyboard (i8042, ISA IRQ 1, decoded with
//! `pc-keyboard`, US layout) and the COM1 receive interrupt (ISA IRQ 4). Both feed the
//! terminal's line discipline (`vfs::tty`, through [`set_input_sink`]).
//!
//! The port accesses are in `arch`: [`crate::arch::ps2`] (the i8042) and
//! [`crate::arch::uart`] (COM1's interrupt enable and modem control registers).

use alloc::sync::Arc;

use pc_keyboard::layouts::Us104Key;
use pc_keyboard::{DecodedKey, HandleControl, KeyCode, Keyboard, ScancodeSet1};
use spin::Mutex;

use crate::arch::{apic, ioapic, ps2, trap, uart};

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

/// Where input bytes go: the terminal's line discipline installs itself (`vfs::tty`).
/// Until it does, input is dropped.
static INPUT_SINK: spin::Once<fn(u8)> = spin::Once::new();

/// Deliver input to `sink` (only the first call takes effect).
pub fn set_input_sink(sink: fn(u8)) {
    INPUT_SINK.call_once(|| sink);
}

fn deliver(bytes: &[u8]) {
    if let Some(sink) = INPUT_SINK.get() {
        bytes.iter().for_each(|&b| sink(b));
    }
}

/// Serial receive interrupts delivered so far.
pub static SERIAL_IRQS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

fn on_serial() {
    SERIAL_IRQS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    // Drain the FIFO: the interrupt is edge-triggered, a byte left behind would keep the
    // line high and no further edge would come.
    for _ in 0..64 {
        match super::serial_recv() {
            Some(b) => deliver(&[b]),
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
    uart::com1_enable_rx_interrupt();
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
            deliver(c.encode_utf8(&mut b).as_bytes());
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
            deliver(seq);
        }
        None => {}
    }
}

fn on_keyboard() {
    for _ in 0..16 {
        let status = ps2::status();
        if status & 1 == 0 || status == 0xFF {
            break;
        }
        let byte = ps2::read();
        if status & 0x20 != 0 {
            continue; // mouse data
        }
        key_byte(byte);
    }
}

/// Enable the PS/2 keyboard's interrupt (with scancode translation to set 1) and route
/// it to the terminal. Machines without an i8042 are left alone.
pub fn start_keyboard() {
    if ps2::status() == 0xFF {
        log::info!("console: no PS/2 controller");
        return;
    }
    // Drop stale bytes, then read, adjust and write the configuration byte.
    for _ in 0..32 {
        if ps2::status() & 1 == 0 {
            break;
        }
        ps2::read();
    }
    if ps2::command(0x20, None)
        && let Some(config) = ps2::response()
    {
        // Port 1 interrupt on, port 1 clock on, translation on.
        let new = (config | 0x01 | 0x40) & !0x10;
        if new != config && !ps2::command(0x60, Some(new)) {
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
