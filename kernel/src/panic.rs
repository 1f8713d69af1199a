//! The panic handler: message and location on every console, then stop (QEMU exits with
//! a failure status).

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::cpu::{self, ExitCode};

/// Set by the first panic: a panic while reporting one (the console, the formatter)
/// goes straight to the exit, so a panic can never loop or hang.
static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    x86_64::instructions::interrupts::disable();
    if PANICKING.swap(true, Ordering::SeqCst) {
        cpu::fail_exit(ExitCode::Panic)
    }
    crate::console::emergency(format_args!("\nKERNEL PANIC: {}\n", info));
    cpu::fail_exit(ExitCode::Panic)
}
