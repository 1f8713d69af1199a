//! Helpers shared by the AliasOS user tools (no_std, on top of `sys`).
// No std test harness: the crate provides the runtime (panic handler, allocator).
#![cfg(not(test))]
#![no_std]

extern crate alloc;

pub mod nvme_copy;
pub mod rng;
pub mod sha256;

use alloc::vec::Vec;
use core::ffi::CStr;
use sys::io::{Bytes, out_bytes};
use sys::{Errno, eprintln};

/// Print `prog: what: error` to stderr.
pub fn warn(what: &[u8], e: Errno) {
    eprintln!("{}: {}: {}", sys::rt::prog_name(), Bytes(what), e);
}

/// Print `prog: msg` and exit with `code`.
pub fn die(code: i32, msg: core::fmt::Arguments) -> ! {
    eprintln!("{}: {}", sys::rt::prog_name(), msg);
    sys::rt::exit(code)
}

/// Arguments after `argv[0]` as byte strings.
pub fn operands() -> Vec<&'static CStr> {
    sys::rt::args().skip(1).collect()
}

/// Split `args` into single-letter flags (`-lf`, `--` ends them) and operands.
/// Unknown flags make the tool exit with status 2 and a usage message.
pub fn parse_flags(known: &str, usage: &str) -> (Vec<u8>, Vec<&'static CStr>) {
    let mut flags = Vec::new();
    let mut ops = Vec::new();
    let mut only_ops = false;
    for a in sys::rt::args().skip(1) {
        let b = a.to_bytes();
        if !only_ops && b == b"--" {
            only_ops = true;
        } else if !only_ops && b.len() > 1 && b[0] == b'-' {
            for &c in &b[1..] {
                if !known.as_bytes().contains(&c) {
                    die(
                        2,
                        format_args!("invalid option -- '{}'\nusage: {}", c as char, usage),
                    );
                }
                flags.push(c);
            }
        } else {
            ops.push(a);
        }
    }
    (flags, ops)
}

/// Output `echo -e` escapes; returns false after `\c` (stop output).
pub fn echo_escapes(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c != b'\\' || i + 1 == s.len() {
            out_bytes(&[c]);
            i += 1;
            continue;
        }
        i += 1;
        let e = s[i];
        i += 1;
        let b = match e {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'a' => 7,
            b'b' => 8,
            b'f' => 12,
            b'v' => 11,
            b'e' => 27,
            b'\\' => b'\\',
            b'c' => return false,
            b'0' => {
                let mut v = 0u32;
                let mut k = 0;
                while k < 3 && i < s.len() && (b'0'..=b'7').contains(&s[i]) {
                    v = v * 8 + (s[i] - b'0') as u32;
                    i += 1;
                    k += 1;
                }
                v as u8
            }
            _ => {
                out_bytes(&[b'\\', e]);
                continue;
            }
        };
        out_bytes(&[b]);
    }
    true
}

/// Parse a size like GNU dd/head: decimal with an optional suffix
/// `c`(1) `w`(2) `b`(512) `K`/`k`/`KiB`(1024) `M`/`MiB` `G`/`GiB` `T`
/// `KB`/`kB`(1000) `MB` `GB` `TB`; `AxB` multiplies.
pub fn parse_size(s: &[u8]) -> Option<u64> {
    if let Some(x) = s.iter().position(|&c| c == b'x') {
        return parse_size(&s[..x])?.checked_mul(parse_size(&s[x + 1..])?);
    }
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in &s[..digits] {
        n = n.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    let mult: u64 = match &s[digits..] {
        b"" | b"c" => 1,
        b"w" => 2,
        b"b" => 512,
        b"K" | b"k" | b"KiB" => 1 << 10,
        b"M" | b"MiB" => 1 << 20,
        b"G" | b"GiB" => 1 << 30,
        b"T" | b"TiB" => 1 << 40,
        b"KB" | b"kB" => 1000,
        b"MB" => 1_000_000,
        b"GB" => 1_000_000_000,
        b"TB" => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Copy everything from `from` to `to` with a buffer of `buf.len()` bytes.
/// Errors are tagged: `Err((true, e))` for a read error, `(false, e)` for write.
pub fn copy_fd(from: i32, to: i32, buf: &mut [u8]) -> Result<u64, (bool, Errno)> {
    let mut total = 0u64;
    loop {
        let n = match sys::read(from, buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(sys::errno::EINTR) => continue,
            Err(e) => return Err((true, e)),
        };
        sys::write_all(to, &buf[..n]).map_err(|e| (false, e))?;
        total += n as u64;
    }
}

/// Copy `from` to `to` (both at their offsets) without passing the bytes
/// through user memory, as GNU cp does: `copy_file_range`, else `sendfile`. Both
/// move the file offsets, so a fallback part-way carries on where they stopped.
/// `Err(None)`: neither applies here (the caller copies through a buffer);
/// `Err(Some(..))`: a real error, tagged as in [`copy_fd`].
fn copy_in_kernel(from: i32, to: i32) -> Result<u64, Option<(bool, Errno)>> {
    use sys::errno::{EINVAL, ENOSYS, EOPNOTSUPP, EXDEV};
    const CHUNK: usize = 1 << 30;
    let mut total = 0u64;
    let mut use_sendfile = false;
    loop {
        let r = if use_sendfile {
            sys::sendfile(to, from, CHUNK)
        } else {
            sys::copy_file_range(from, to, CHUNK)
        };
        match r {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(sys::errno::EINTR) => {}
            Err(ENOSYS | EXDEV | EINVAL | EOPNOTSUPP) if !use_sendfile => use_sendfile = true,
            Err(ENOSYS | EINVAL) if total == 0 => return Err(None),
            Err(e) => return Err(Some((false, e))),
        }
    }
    // Nothing copied (an empty file, or one whose size says nothing, as Linux's /proc
    // files): the offsets have not moved, so the caller reads it instead.
    if total == 0 { Err(None) } else { Ok(total) }
}

/// Copy the regular file `src` to `dst` (created with `src`'s permission
/// bits, truncated if it exists): in the kernel (`copy_file_range`, then
/// `sendfile`) where it can, else with a 1 MiB buffer.
pub fn copy_file(src: &CStr, dst: &CStr) -> Result<(), (alloc::ffi::CString, Errno)> {
    let tag = |p: &CStr, e| (alloc::ffi::CString::from(p), e);
    let inf = sys::open(src, sys::O_RDONLY, 0).map_err(|e| tag(src, e))?;
    let st = sys::fstat(inf).map_err(|e| tag(src, e))?;
    if st.is_dir() {
        let _ = sys::close(inf);
        return Err(tag(src, sys::errno::EISDIR));
    }
    let outf = match sys::open(
        dst,
        sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC,
        st.st_mode & 0o7777,
    ) {
        Ok(f) => f,
        Err(e) => {
            let _ = sys::close(inf);
            return Err(tag(dst, e));
        }
    };
    let r = copy_in_kernel(inf, outf).or_else(|e| match e {
        Some(e) => Err(e),
        None => {
            let mut buf = alloc::vec![0u8; 1 << 20];
            copy_fd(inf, outf, &mut buf)
        }
    });
    let _ = sys::close(inf);
    let c = sys::close(outf);
    match r {
        Err((true, e)) => Err(tag(src, e)),
        Err((false, e)) => Err(tag(dst, e)),
        Ok(_) => c.map(|_| ()).map_err(|e| tag(dst, e)),
    }
}
