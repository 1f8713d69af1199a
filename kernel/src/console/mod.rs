//! The kernel console: COM1 serial and the framebuffer text console together, the `log`
//! backend, and `kprint!`/`kprintln!`.

pub mod framebuffer;
pub mod keyboard;

use core::fmt::{self, Write};

use bootloader_api::info::FrameBuffer;
use spin::Mutex;

use crate::arch::cpu;
use crate::arch::uart::Uart;
use framebuffer::FramebufferConsole;

struct Console {
    serial: Option<Uart>,
    screen: Option<FramebufferConsole>,
}

static CONSOLE: Mutex<Console> = Mutex::new(Console {
    serial: None,
    screen: None,
});

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(u) = self.serial.as_mut() {
            u.write_str(s)?;
        }
        if let Some(fb) = self.screen.as_mut() {
            fb.write_str(s)?;
        }
        Ok(())
    }
}

/// Bring up the serial console (first thing at boot).
pub fn init_serial() {
    let uart = Uart::init();
    CONSOLE.lock().serial = Some(uart);
    crate::arch::trap::set_fatal_output(emergency);
}

/// Add the framebuffer console.
pub fn init_framebuffer(fb: &'static mut FrameBuffer) {
    let info = fb.info();
    let buf = fb.buffer_mut();
    let screen = FramebufferConsole::new(buf, info);
    CONSOLE.lock().screen = Some(screen);
}

/// (columns, rows, lit pixels) of the framebuffer console, if there is one.
pub fn framebuffer_state() -> Option<(usize, usize, usize)> {
    cpu::without_interrupts(|| {
        CONSOLE.lock().screen.as_ref().map(|s| {
            let (c, r) = s.size();
            (c, r, s.lit_pixels())
        })
    })
}

/// Write formatted text to every console.
pub fn write_fmt(args: fmt::Arguments) {
    cpu::without_interrupts(|| {
        let _ = CONSOLE.lock().write_fmt(args);
    });
}

/// Write raw bytes (terminal output): to the serial port as they are (NL as CR NL), to
/// the screen as text (invalid UTF-8 as U+FFFD).
pub fn write_bytes(bytes: &[u8]) {
    cpu::without_interrupts(|| {
        let mut c = CONSOLE.lock();
        if let Some(u) = c.serial.as_mut() {
            for &b in bytes {
                if b == b'\n' {
                    u.send(b'\r');
                }
                u.send(b);
            }
        }
        if let Some(fb) = c.screen.as_mut() {
            for chunk in bytes.utf8_chunks() {
                let _ = fb.write_str(chunk.valid());
                if !chunk.invalid().is_empty() {
                    let _ = fb.write_str("\u{FFFD}");
                }
            }
        }
    });
}

/// A byte received on the serial port, if one is waiting (for the terminal's input).
pub fn serial_recv() -> Option<u8> {
    cpu::without_interrupts(|| CONSOLE.lock().serial.as_mut().and_then(|u| u.try_recv()))
}

/// Write from a context that may have interrupted a console writer (exceptions, panics):
/// breaks the console lock rather than deadlocking on it.
pub fn emergency(args: fmt::Arguments) {
    if CONSOLE.is_locked() {
        // SAFETY: we are on the only CPU, in a fatal path that never returns to the
        // interrupted writer; a torn line of output is the worst outcome.
        unsafe { CONSOLE.force_unlock() };
    }
    write_fmt(args);
}

/// Print to the kernel console.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!($($arg)*)) };
}

/// Print a line to the kernel console.
#[macro_export]
macro_rules! kprintln {
    () => { $crate::kprint!("\n") };
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let us = crate::arch::clock::now_ns() / 1000;
        let level = match record.level() {
            log::Level::Error => "ERROR",
            log::Level::Warn => "WARN ",
            log::Level::Info => "INFO ",
            log::Level::Debug => "DEBUG",
            log::Level::Trace => "TRACE",
        };
        write_fmt(format_args!(
            "[{:5}.{:06}] {level} {}: {}\n",
            us / 1_000_000,
            us % 1_000_000,
            record.target().trim_start_matches("kernel::"),
            record.args()
        ));
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Install the console as the `log` backend with `level`.
pub fn init_log(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
