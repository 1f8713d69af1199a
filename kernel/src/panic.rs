//! The panic handler: message and location on every console, then stop (QEMU exits with
//! a failure status).

use core::panic::PanicInfo;

use crate::arch::cpu::{self, ExitCode};

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    x86_64::instructions::interrupts::disable();
    crate::console::emergency(format_args!("\nKERNEL PANIC: {}\n", info));
    cpu::fail_exit(ExitCode::Panic)
}
