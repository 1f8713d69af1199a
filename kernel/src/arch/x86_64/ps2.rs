//! The i8042 PS/2 controller's ports (the keyboard driver is in `console::keyboard`).

use x86_64::instructions::port::Port;

/// i8042 data port.
const PS2_DATA: u16 = 0x60;
/// i8042 status (read) / command (write) port.
const PS2_STATUS: u16 = 0x64;

pub fn status() -> u8 {
    // SAFETY: reading the i8042 status register has no side effects; a PC without
    // the controller returns 0xFF.
    unsafe { Port::<u8>::new(PS2_STATUS).read() }
}

pub fn read() -> u8 {
    // SAFETY: reading the i8042 output buffer only consumes the byte it holds.
    unsafe { Port::<u8>::new(PS2_DATA).read() }
}

fn wait_input_empty() -> bool {
    for _ in 0..100_000 {
        if status() & 2 == 0 {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

/// Send a controller command (with an optional data byte).
pub fn command(cmd: u8, data: Option<u8>) -> bool {
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
pub fn response() -> Option<u8> {
    for _ in 0..100_000 {
        if status() & 1 != 0 {
            return Some(read());
        }
        core::hint::spin_loop();
    }
    None
}
