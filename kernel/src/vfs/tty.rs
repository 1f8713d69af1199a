//! The console terminal (`/dev/console`): output to the serial port and the screen,
//! input from the serial port's receive interrupt and the PS/2 keyboard through a line
//! discipline.
//!
//! Canonical mode (the default): input is edited a line at a time with echo; backspace
//! and DEL erase a character, ^W a word, ^U the line; ^C discards the line (no signals
//! yet); CR becomes NL; ^D ends input (EOF) on an empty line, or hands over the partial
//! line. A read returns at most one line. With `ICANON` cleared (TCSETS), bytes are
//! available as they arrive (VMIN=1). Reads block on an [`Event`] woken by the input
//! interrupts.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use spin::Mutex;

use super::Event;
use super::node::{ReadBuf, WriteBuf};
use crate::arch::cpu;
use crate::errno::Errno;
use crate::uaccess;

// ioctl requests.
pub const TCGETS: u32 = 0x5401;
pub const TCSETS: u32 = 0x5402;
pub const TCSETSW: u32 = 0x5403;
pub const TCSETSF: u32 = 0x5404;
pub const TCSBRK: u32 = 0x5409;
pub const TCXONC: u32 = 0x540A;
pub const TCFLSH: u32 = 0x540B;
pub const TIOCSCTTY: u32 = 0x540E;
pub const TIOCGPGRP: u32 = 0x540F;
pub const TIOCSPGRP: u32 = 0x5410;
pub const TIOCGWINSZ: u32 = 0x5413;
pub const TIOCSWINSZ: u32 = 0x5414;
pub const FIONREAD: u32 = 0x541B;
pub const TIOCNOTTY: u32 = 0x5422;

// termios flags used here.
pub const ICRNL: u32 = 0o400;
pub const IXON: u32 = 0o2000;
pub const OPOST: u32 = 0o1;
pub const ONLCR: u32 = 0o4;
pub const ISIG: u32 = 0o1;
pub const ICANON: u32 = 0o2;
pub const ECHO: u32 = 0o10;
pub const ECHOE: u32 = 0o20;
pub const ECHOK: u32 = 0o40;
pub const ECHOCTL: u32 = 0o1000;
pub const ECHOKE: u32 = 0o4000;
pub const IEXTEN: u32 = 0o100000;

// c_cc indices.
pub const VINTR: usize = 0;
pub const VQUIT: usize = 1;
pub const VERASE: usize = 2;
pub const VKILL: usize = 3;
pub const VEOF: usize = 4;
pub const VTIME: usize = 5;
pub const VMIN: usize = 6;
pub const VSTART: usize = 8;
pub const VSTOP: usize = 9;
pub const VSUSP: usize = 10;
pub const VREPRINT: usize = 12;
pub const VDISCARD: usize = 13;
pub const VWERASE: usize = 14;
pub const VLNEXT: usize = 15;

/// The kernel's `struct termios` (what TCGETS/TCSETS pass: 36 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Termios {
    pub iflag: u32,
    pub oflag: u32,
    pub cflag: u32,
    pub lflag: u32,
    pub line: u8,
    pub cc: [u8; 19],
}

/// Size of the kernel's `struct termios`.
pub const TERMIOS_SIZE: usize = 36;

impl Termios {
    /// Linux's defaults for a console: canonical, echoing, CR to NL, NL to CR NL.
    pub const fn default_console() -> Termios {
        let mut cc = [0u8; 19];
        cc[VINTR] = 3;
        cc[VQUIT] = 0x1c;
        cc[VERASE] = 0x7f;
        cc[VKILL] = 0x15;
        cc[VEOF] = 4;
        cc[VTIME] = 0;
        cc[VMIN] = 1;
        cc[VSTART] = 0x11;
        cc[VSTOP] = 0x13;
        cc[VSUSP] = 0x1a;
        cc[VREPRINT] = 0x12;
        cc[VDISCARD] = 0x0f;
        cc[VWERASE] = 0x17;
        cc[VLNEXT] = 0x16;
        Termios {
            iflag: ICRNL | IXON,
            oflag: OPOST | ONLCR,
            cflag: 0o277, // B38400 | CS8 | CREAD | HUPCL
            lflag: ISIG | ICANON | ECHO | ECHOE | ECHOK | ECHOCTL | ECHOKE | IEXTEN,
            line: 0,
            cc,
        }
    }

    pub fn to_bytes(&self) -> [u8; TERMIOS_SIZE] {
        let mut b = [0u8; TERMIOS_SIZE];
        b[0..4].copy_from_slice(&self.iflag.to_ne_bytes());
        b[4..8].copy_from_slice(&self.oflag.to_ne_bytes());
        b[8..12].copy_from_slice(&self.cflag.to_ne_bytes());
        b[12..16].copy_from_slice(&self.lflag.to_ne_bytes());
        b[16] = self.line;
        b[17..36].copy_from_slice(&self.cc);
        b
    }

    pub fn from_bytes(b: &[u8; TERMIOS_SIZE]) -> Termios {
        let u = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut cc = [0u8; 19];
        cc.copy_from_slice(&b[17..36]);
        Termios {
            iflag: u(0),
            oflag: u(4),
            cflag: u(8),
            lflag: u(12),
            line: b[16],
            cc,
        }
    }
}

/// Most bytes of input waiting (Linux's N_TTY buffer).
const INPUT_MAX: usize = 4096;

struct Tty {
    termios: Termios,
    /// The line being edited (canonical mode).
    line: Vec<u8>,
    /// Input ready for readers: whole lines (ending in NL, or cut by ^D; an empty one is
    /// end-of-file) in canonical mode, byte runs otherwise.
    ready: VecDeque<Vec<u8>>,
    ready_bytes: usize,
    winsize: Option<(u16, u16)>,
    pgrp: i32,
}

static TTY: Mutex<Tty> = Mutex::new(Tty {
    termios: Termios::default_console(),
    line: Vec::new(),
    ready: VecDeque::new(),
    ready_bytes: 0,
    winsize: None,
    pgrp: 1,
});

/// Input arrived.
static INPUT: Event = Event::new();

/// Run `f` on the terminal state with interrupts off (the input interrupts share it).
fn with_tty<R>(f: impl FnOnce(&mut Tty) -> R) -> R {
    cpu::without_interrupts(|| f(&mut TTY.lock()))
}

/// Terminal output (echo included): post-processed as `OPOST`/`ONLCR` ask. The serial
/// console always sends NL as CR NL; without ONLCR a bare NL is sent.
fn output(bytes: &[u8]) {
    crate::console::write_bytes(bytes);
}

fn is_word_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl Tty {
    fn canonical(&self) -> bool {
        self.termios.lflag & ICANON != 0
    }

    fn echo(&self) -> bool {
        self.termios.lflag & ECHO != 0
    }

    fn push_ready(&mut self, chunk: Vec<u8>) {
        self.ready_bytes += chunk.len();
        self.ready.push_back(chunk);
    }

    fn erase_one(&mut self, out: &mut Vec<u8>) -> bool {
        match self.line.pop() {
            Some(c) => {
                if self.echo() {
                    // A control character was echoed as two cells (^X).
                    let cells = if c < 0x20 && c != b'\t' { 2 } else { 1 };
                    for _ in 0..cells {
                        out.extend_from_slice(b"\x08 \x08");
                    }
                }
                true
            }
            None => false,
        }
    }

    /// One input byte through the line discipline; echo goes to `out`.
    fn input(&mut self, mut c: u8, out: &mut Vec<u8>) {
        let t = self.termios;
        if c == b'\r' && t.iflag & ICRNL != 0 {
            c = b'\n';
        }
        if !self.canonical() {
            if self.ready_bytes >= INPUT_MAX {
                return;
            }
            if self.echo() {
                out.push(c);
            }
            match self.ready.back_mut() {
                Some(last) if !last.is_empty() && last.len() < 256 => {
                    last.push(c);
                    self.ready_bytes += 1;
                }
                _ => self.push_ready(alloc::vec![c]),
            }
            return;
        }
        let cc = t.cc;
        if c == b'\n' {
            let mut l = core::mem::take(&mut self.line);
            l.push(b'\n');
            if self.echo() {
                out.push(b'\n');
            }
            self.push_ready(l);
        } else if c == cc[VEOF] && c != 0 {
            let l = core::mem::take(&mut self.line);
            self.push_ready(l);
        } else if (c == cc[VERASE] || c == 0x08 || c == 0x7f) && c != 0 {
            self.erase_one(out);
        } else if c == cc[VKILL] && c != 0 {
            while self.erase_one(out) {}
        } else if c == cc[VWERASE] && c != 0 && t.lflag & IEXTEN != 0 {
            while self.line.last().is_some_and(|&b| !is_word_char(b)) {
                self.erase_one(out);
            }
            while self.line.last().is_some_and(|&b| is_word_char(b)) {
                self.erase_one(out);
            }
        } else if c == cc[VINTR] && c != 0 && t.lflag & ISIG != 0 {
            self.line.clear();
            if self.echo() {
                out.extend_from_slice(b"^C\n");
            }
        } else {
            if self.line.len() + self.ready_bytes >= INPUT_MAX - 1 {
                return; // full: dropped, like Linux
            }
            self.line.push(c);
            if self.echo() {
                if c < 0x20 && c != b'\t' && t.lflag & ECHOCTL != 0 {
                    out.extend_from_slice(&[b'^', c + 0x40]);
                } else {
                    out.push(c);
                }
            }
        }
    }

    /// Take what one read may return (up to `max` bytes): the front line in canonical
    /// mode, everything waiting otherwise. `None` if nothing is waiting; an empty vector
    /// is end-of-file.
    fn take(&mut self, max: usize) -> Option<Vec<u8>> {
        let canonical = self.canonical();
        let mut got: Vec<u8> = Vec::new();
        loop {
            let front = self.ready.front_mut()?;
            if front.is_empty() {
                if got.is_empty() {
                    self.ready.pop_front();
                    return Some(got);
                }
                return Some(got);
            }
            let n = front.len().min(max - got.len());
            got.extend(front.drain(..n));
            self.ready_bytes -= n;
            if front.is_empty() {
                self.ready.pop_front();
            }
            if canonical || got.len() == max || self.ready.is_empty() {
                return Some(got);
            }
        }
    }

    /// Give back bytes a reader could not take (a fault in its buffer).
    fn untake(&mut self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        self.ready_bytes += bytes.len();
        // What was taken came from the front chunk (canonical: one line), so it goes
        // back in front of what is left of that chunk.
        let canonical = self.canonical();
        match self.ready.front_mut() {
            Some(f) if !canonical || (!f.is_empty() && !bytes.ends_with(b"\n")) => {
                let mut b = bytes;
                b.append(f);
                *f = b;
            }
            _ => self.ready.push_front(bytes),
        }
    }
}

/// Feed one byte of keyboard or serial input (also from interrupt handlers).
pub fn input_byte(c: u8) {
    let mut echo = Vec::new();
    with_tty(|t| t.input(c, &mut echo));
    if !echo.is_empty() {
        output(&echo);
    }
    INPUT.notify();
}

/// Feed several bytes.
pub fn input(bytes: &[u8]) {
    for &b in bytes {
        input_byte(b);
    }
}

/// Bytes of complete input waiting.
pub fn pending() -> usize {
    with_tty(|t| t.ready_bytes)
}

/// Drop all pending input (TCSETSF, TCFLSH).
pub fn flush_input() {
    with_tty(|t| {
        t.line.clear();
        t.ready.clear();
        t.ready_bytes = 0;
    });
}

/// The current settings.
pub fn termios() -> Termios {
    with_tty(|t| t.termios)
}

/// Change the settings (leaving canonical mode hands the partial line over).
pub fn set_termios(new: Termios) {
    with_tty(|t| {
        let was_canonical = t.canonical();
        t.termios = new;
        if was_canonical && !t.canonical() && !t.line.is_empty() {
            let l = core::mem::take(&mut t.line);
            t.push_ready(l);
        }
    });
    INPUT.notify();
}

/// `read(2)` on the terminal.
pub fn read(buf: &mut ReadBuf, nonblock: bool) -> Result<usize, Errno> {
    if buf.is_empty() {
        return Ok(0);
    }
    let max = buf.len().min(INPUT_MAX);
    loop {
        let seen = INPUT.snapshot();
        if let Some(data) = with_tty(|t| t.take(max)) {
            if data.is_empty() {
                return Ok(0);
            }
            let mut at = 0;
            let r = buf.fill(|piece| {
                let n = piece.len().min(data.len() - at);
                piece[..n].copy_from_slice(&data[at..at + n]);
                at += n;
                Ok(n)
            });
            if at < data.len() {
                let rest = data[at..].to_vec();
                with_tty(|t| t.untake(rest));
            }
            return r;
        }
        if nonblock {
            return Err(Errno::EAGAIN);
        }
        INPUT.wait(seen)?;
    }
}

/// `write(2)` on the terminal.
pub fn write(buf: &mut WriteBuf) -> Result<usize, Errno> {
    buf.drain(|piece| {
        // Interrupts are off while the console is written: keep the pieces short.
        for chunk in piece.chunks(256) {
            output(chunk);
        }
        Ok(piece.len())
    })
}

/// The window size: the framebuffer console's, else 80x25.
fn winsize() -> (u16, u16) {
    if let Some(ws) = with_tty(|t| t.winsize) {
        return ws;
    }
    match crate::console::framebuffer_state() {
        Some((cols, rows, _)) => (
            rows.min(u16::MAX as usize) as u16,
            cols.min(u16::MAX as usize) as u16,
        ),
        None => (25, 80),
    }
}

/// `ioctl(2)` on the terminal.
pub fn ioctl(cmd: u32, arg: u64) -> Result<u64, Errno> {
    match cmd {
        TCGETS => {
            uaccess::copy_to_user(arg, &termios().to_bytes())?;
            Ok(0)
        }
        TCSETS | TCSETSW | TCSETSF => {
            let mut b = [0u8; TERMIOS_SIZE];
            uaccess::copy_from_user(arg, &mut b)?;
            if cmd == TCSETSF {
                flush_input();
            }
            set_termios(Termios::from_bytes(&b));
            Ok(0)
        }
        TIOCGWINSZ => {
            let (rows, cols) = winsize();
            let mut b = [0u8; 8];
            b[0..2].copy_from_slice(&rows.to_ne_bytes());
            b[2..4].copy_from_slice(&cols.to_ne_bytes());
            uaccess::copy_to_user(arg, &b)?;
            Ok(0)
        }
        TIOCSWINSZ => {
            let mut b = [0u8; 8];
            uaccess::copy_from_user(arg, &mut b)?;
            let rows = u16::from_ne_bytes([b[0], b[1]]);
            let cols = u16::from_ne_bytes([b[2], b[3]]);
            with_tty(|t| t.winsize = Some((rows, cols)));
            Ok(0)
        }
        TIOCGPGRP => {
            let pgrp = with_tty(|t| t.pgrp);
            uaccess::copy_to_user(arg, &pgrp.to_ne_bytes())?;
            Ok(0)
        }
        TIOCSPGRP => {
            let mut b = [0u8; 4];
            uaccess::copy_from_user(arg, &mut b)?;
            let pgrp = i32::from_ne_bytes(b);
            if pgrp < 0 {
                return Err(Errno::EINVAL);
            }
            with_tty(|t| t.pgrp = pgrp);
            Ok(0)
        }
        FIONREAD => {
            let n = pending() as i32;
            uaccess::copy_to_user(arg, &n.to_ne_bytes())?;
            Ok(0)
        }
        TCFLSH => {
            if arg != 1 {
                flush_input();
            }
            Ok(0)
        }
        TCSBRK | TCXONC | TIOCSCTTY | TIOCNOTTY => Ok(0),
        _ => Err(Errno::ENOTTY),
    }
}

static INPUT_STARTED: spin::Once<()> = spin::Once::new();

/// Start console input: the serial port's receive interrupt (COM1, ISA IRQ 4) and the
/// PS/2 keyboard (ISA IRQ 1), through the IOAPIC. Safe to call more than once.
pub fn init_input() {
    INPUT_STARTED.call_once(|| {
        crate::console::keyboard::set_input_sink(input_byte);
        crate::console::keyboard::start_serial_input();
        crate::console::keyboard::start_keyboard();
    });
}
