//! Buffered stdout, stderr and the `print!` family.

use core::cell::UnsafeCell;
use core::fmt::{self, Write};

pub const STDIN: i32 = 0;
pub const STDOUT: i32 = 1;
pub const STDERR: i32 = 2;

const OUT_CAP: usize = 8192;

struct OutBuf {
    buf: [u8; OUT_CAP],
    len: usize,
    /// Set after a write error (e.g. EPIPE) so the tool can report it.
    failed: bool,
}

struct Global(UnsafeCell<OutBuf>);
// SAFETY: the tools are single-threaded processes, so the buffer is never reached from two
// threads.
unsafe impl Sync for Global {}

static OUT: Global = Global(UnsafeCell::new(OutBuf {
    buf: [0; OUT_CAP],
    len: 0,
    failed: false,
}));

fn out() -> &'static mut OutBuf {
    // SAFETY: user processes are single-threaded and no signal handler uses `OUT`, so nothing
    // else touches it during the caller's use; no caller keeps the result across another
    // `out()` (each function below takes it once).
    unsafe { &mut *OUT.0.get() }
}

impl OutBuf {
    fn flush(&mut self) {
        if self.len > 0 {
            if crate::write_all(STDOUT, &self.buf[..self.len]).is_err() {
                self.failed = true;
            }
            self.len = 0;
        }
    }
}

/// Append bytes to the stdout buffer (written when full, on `flush` and at exit).
pub fn out_bytes(b: &[u8]) {
    let o = out();
    if o.len + b.len() > OUT_CAP {
        o.flush();
        if b.len() >= OUT_CAP {
            if crate::write_all(STDOUT, b).is_err() {
                o.failed = true;
            }
            return;
        }
    }
    o.buf[o.len..o.len + b.len()].copy_from_slice(b);
    o.len += b.len();
}

/// Write the stdout buffer out.
pub fn flush() {
    out().flush();
}

/// True if a write to stdout failed.
pub fn stdout_failed() -> bool {
    out().failed
}

/// `fmt::Write` for the buffered stdout.
pub struct Stdout;

impl Write for Stdout {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        out_bytes(s.as_bytes());
        Ok(())
    }
}

/// `fmt::Write` into a fixed stack buffer for one stderr message, so each
/// message goes out with a single `write` when it fits.
pub struct StackWriter<const N: usize> {
    fd: i32,
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackWriter<N> {
    pub fn new(fd: i32) -> Self {
        StackWriter {
            fd,
            buf: [0; N],
            len: 0,
        }
    }
    pub fn bytes(&mut self, b: &[u8]) {
        if self.len + b.len() > N {
            self.flush();
            if b.len() > N {
                let _ = crate::write_all(self.fd, b);
                return;
            }
        }
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }
    pub fn flush(&mut self) {
        if self.len > 0 {
            let _ = crate::write_all(self.fd, &self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl<const N: usize> Write for StackWriter<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes(s.as_bytes());
        Ok(())
    }
}

impl<const N: usize> Drop for StackWriter<N> {
    fn drop(&mut self) {
        self.flush();
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    let _ = Stdout.write_fmt(args);
}

#[doc(hidden)]
pub fn _eprint(args: fmt::Arguments) {
    // Keep stdout/stderr ordering sensible for interleaved output.
    flush();
    let mut w = StackWriter::<512>::new(STDERR);
    let _ = w.write_fmt(args);
}

/// Lossy display of bytes (file names) – invalid UTF-8 is shown as is.
pub struct Bytes<'a>(pub &'a [u8]);

impl fmt::Display for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            for _ in chunk.invalid() {
                f.write_char('\u{FFFD}')?;
            }
        }
        Ok(())
    }
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::io::_print(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::io::out_bytes(b"\n") };
    ($($arg:tt)*) => {{ $crate::io::_print(format_args!($($arg)*)); $crate::io::out_bytes(b"\n"); }};
}

#[macro_export]
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::io::_eprint(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! eprintln {
    () => { $crate::io::_eprint(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::io::_eprint(format_args!("{}\n", format_args!($($arg)*))) };
}
