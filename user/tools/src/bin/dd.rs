//! `dd [if=FILE] [of=FILE] [bs=N] [count=N] [skip=N] [seek=N]
//!    [conv=fsync,fdatasync,notrunc] [iflag=fullblock,direct] [oflag=direct]
//!    [status=progress|none|noxfer]`
//!
//! `iflag=direct` / `oflag=direct` open the input / output with `O_DIRECT` (the buffer is
//! page-aligned, as GNU dd's); a last partial block is written with `O_DIRECT` turned off,
//! as GNU dd does.
//!
//! Sizes take the suffixes of `tools::parse_size` (K, M, G, KB, MB, b, w, ...).
//! `skip`/`seek`/`count` are in blocks of `bs` (default 512). Prints a GNU-dd
//! summary to stderr: `F+P records in`, `F+P records out`,
//! `X bytes (… kB, … KiB) copied, T s, R MB/s` (the first two lines and the
//! `X bytes` prefix match GNU dd exactly).
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use core::fmt::Write;
use sys::io::Bytes;
use sys::{Timespec, eprint, eprintln};

/// GNU `human_readable`-like: `3.1 kB`, `157 kB`, `4.5 GB`.
fn human(v: f64, base: f64, units: &[&str]) -> String {
    let mut v = v;
    let mut u = 0;
    while v >= base && u + 1 < units.len() {
        v /= base;
        u += 1;
    }
    let mut s = String::new();
    if v < 10.0 {
        let tenths = (v * 10.0 + 0.5) as u64;
        if tenths >= 100 {
            let _ = write!(s, "{} {}", tenths / 10, units[u]);
        } else {
            let _ = write!(s, "{}.{} {}", tenths / 10, tenths % 10, units[u]);
        }
    } else {
        let _ = write!(s, "{} {}", (v + 0.5) as u64, units[u]);
    }
    s
}

/// C `%g` (6 significant digits) for a non-negative value.
fn fmt_g(v: f64) -> String {
    let mut s = String::new();
    if v <= 0.0 || v.is_nan() {
        s.push('0');
        return s;
    }
    let mut exp = 0i32;
    let mut m = v;
    while m >= 10.0 {
        m /= 10.0;
        exp += 1;
    }
    while m < 1.0 {
        m *= 10.0;
        exp -= 1;
    }
    // Round the mantissa to 6 significant digits.
    let mut digits = (m * 100000.0 + 0.5) as u64;
    if digits >= 1_000_000 {
        digits /= 10;
        exp += 1;
    }
    let trim = |s: &mut String| {
        if s.contains('.') {
            while s.ends_with('0') {
                s.pop();
            }
            if s.ends_with('.') {
                s.pop();
            }
        }
    };
    if !(-4..6).contains(&exp) {
        let _ = write!(s, "{}.{:05}", digits / 100000, digits % 100000);
        trim(&mut s);
        let _ = write!(s, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else if exp >= 0 {
        let int_digits = exp as u32 + 1;
        let div = 10u64.pow(6 - int_digits);
        let _ = write!(s, "{}", digits / div);
        if div > 1 {
            let _ = write!(s, ".{:0w$}", digits % div, w = (6 - int_digits) as usize);
        }
        trim(&mut s);
    } else {
        s.push_str("0.");
        for _ in 0..(-exp - 1) {
            s.push('0');
        }
        let _ = write!(s, "{:06}", digits);
        trim(&mut s);
    }
    s
}

fn transfer_line(bytes: u64, secs: f64) -> String {
    let mut s = String::new();
    if bytes < 1000 {
        let _ = write!(s, "{} bytes copied", bytes);
    } else {
        let _ = write!(
            s,
            "{} bytes ({}, {}) copied",
            bytes,
            human(
                bytes as f64,
                1000.0,
                &["B", "kB", "MB", "GB", "TB", "PB", "EB"]
            ),
            human(
                bytes as f64,
                1024.0,
                &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
            )
        );
    }
    let rate = if secs > 0.0 { bytes as f64 / secs } else { 0.0 };
    let r = if rate < 1000.0 && bytes > 0 {
        let mut r = String::new();
        let _ = write!(r, "{} B", (rate + 0.5) as u64);
        r
    } else if bytes == 0 {
        String::from("0.0 kB")
    } else {
        human(rate, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB", "EB"])
    };
    let _ = write!(s, ", {} s, {}/s", fmt_g(secs), r);
    s
}

struct Counts {
    full_in: u64,
    part_in: u64,
    full_out: u64,
    part_out: u64,
    bytes: u64,
}

fn summary(c: &Counts, start: &Timespec, status: &[u8]) {
    if status == b"none" {
        return;
    }
    let now = sys::clock_gettime(sys::CLOCK_MONOTONIC).unwrap_or(*start);
    eprint!(
        "{}+{} records in\n{}+{} records out\n",
        c.full_in, c.part_in, c.full_out, c.part_out
    );
    if status != b"noxfer" {
        eprintln!("{}", transfer_line(c.bytes, now.since(start)));
    }
}

fn main() -> i32 {
    let mut inf: Option<&[u8]> = None;
    let mut outf: Option<&[u8]> = None;
    let mut bs: u64 = 512;
    let mut count: Option<u64> = None;
    let (mut skip, mut seek) = (0u64, 0u64);
    let (mut fsync, mut notrunc, mut fullblock) = (false, false, false);
    let (mut idirect, mut odirect) = (false, false);
    let mut status: &[u8] = b"";
    for a in sys::rt::args().skip(1) {
        let a = a.to_bytes();
        let Some(eq) = a.iter().position(|&c| c == b'=') else {
            tools::die(1, format_args!("unrecognized operand '{}'", Bytes(a)));
        };
        let (k, v) = (&a[..eq], &a[eq + 1..]);
        let num = || match tools::parse_size(v) {
            Some(n) => n,
            None => tools::die(1, format_args!("invalid number: '{}'", Bytes(v))),
        };
        match k {
            b"if" => inf = Some(v),
            b"of" => outf = Some(v),
            b"bs" | b"ibs" | b"obs" => bs = num(),
            b"count" => count = Some(num()),
            b"skip" | b"iseek" => skip = num(),
            b"seek" | b"oseek" => seek = num(),
            b"conv" | b"iflag" | b"oflag" => {
                for w in v.split(|&c| c == b',') {
                    match w {
                        b"direct" if k == b"iflag" => idirect = true,
                        b"direct" if k == b"oflag" => odirect = true,
                        b"fsync" | b"fdatasync" => fsync = true,
                        b"notrunc" => notrunc = true,
                        b"fullblock" => fullblock = true,
                        b"" => {}
                        _ => tools::die(1, format_args!("invalid conversion: '{}'", Bytes(w))),
                    }
                }
            }
            b"status" => match v {
                b"progress" | b"none" | b"noxfer" | b"default" => status = v,
                _ => tools::die(1, format_args!("invalid status level: '{}'", Bytes(v))),
            },
            _ => tools::die(1, format_args!("unrecognized operand '{}'", Bytes(a))),
        }
    }
    if bs == 0 || bs > (1 << 31) {
        tools::die(1, format_args!("invalid number: bs"));
    }
    let ifd = match inf {
        None => 0,
        Some(p) => match sys::open(
            &sys::cpath(p),
            sys::O_RDONLY | if idirect { sys::O_DIRECT } else { 0 },
            0,
        ) {
            Ok(fd) => fd,
            Err(e) => tools::die(1, format_args!("failed to open '{}': {}", Bytes(p), e)),
        },
    };
    let ofd = match outf {
        None => 1,
        Some(p) => match sys::open(
            &sys::cpath(p),
            sys::O_WRONLY | sys::O_CREAT | if odirect { sys::O_DIRECT } else { 0 },
            0o666,
        ) {
            Ok(fd) => fd,
            Err(e) => tools::die(1, format_args!("failed to open '{}': {}", Bytes(p), e)),
        },
    };
    let out_name = outf.unwrap_or(b"standard output");
    let in_name = inf.unwrap_or(b"standard input");
    // Page-aligned, so O_DIRECT takes it.
    let mut store = alloc::vec![0u8; bs as usize + 4096];
    let align = store.as_ptr().align_offset(4096);
    let buf = &mut store[align..align + bs as usize];
    if skip > 0 {
        let off = skip.saturating_mul(bs);
        if sys::lseek(ifd, off as i64, sys::SEEK_CUR).is_err() {
            for _ in 0..skip {
                match sys::read(ifd, buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        tools::die(1, format_args!("'{}': cannot skip: {}", Bytes(in_name), e))
                    }
                }
            }
        }
    }
    let off = seek.saturating_mul(bs);
    if seek > 0
        && let Err(e) = sys::lseek(ofd, off as i64, sys::SEEK_CUR)
    {
        tools::die(1, format_args!("'{}': cannot seek: {}", Bytes(out_name), e));
    }
    if !notrunc
        && outf.is_some()
        && sys::fstat(ofd).map(|s| s.is_reg()).unwrap_or(false)
        && let Err(e) = sys::ftruncate(ofd, off)
    {
        tools::die(
            1,
            format_args!("failed to truncate '{}': {}", Bytes(out_name), e),
        );
    }
    let start = sys::clock_gettime(sys::CLOCK_MONOTONIC).unwrap_or_default();
    let mut next_progress = start.tv_sec + 1;
    let mut printed_progress = false;
    let mut c = Counts {
        full_in: 0,
        part_in: 0,
        full_out: 0,
        part_out: 0,
        bytes: 0,
    };
    let mut rc = 0;
    while count.is_none_or(|n| c.full_in + c.part_in < n) {
        let r = if fullblock {
            sys::read_full(ifd, buf)
        } else {
            sys::read(ifd, buf)
        };
        let n = match r {
            Ok(0) => break,
            Ok(n) => n,
            Err(sys::errno::EINTR) => continue,
            Err(e) => {
                sys::io::flush();
                eprintln!("dd: error reading '{}': {}", Bytes(in_name), e);
                rc = 1;
                break;
            }
        };
        if n as u64 == bs {
            c.full_in += 1;
        } else {
            c.part_in += 1;
        }
        if odirect && n % 512 != 0 {
            // O_DIRECT takes whole blocks only: the tail goes through the page cache.
            let _ = sys::fcntl(ofd, sys::F_GETFL, 0)
                .and_then(|fl| sys::fcntl(ofd, sys::F_SETFL, fl & !sys::O_DIRECT));
        }
        if let Err(e) = sys::write_all(ofd, &buf[..n]) {
            eprintln!("dd: error writing '{}': {}", Bytes(out_name), e);
            rc = 1;
            break;
        }
        if n as u64 == bs {
            c.full_out += 1;
        } else {
            c.part_out += 1;
        }
        c.bytes += n as u64;
        if status == b"progress" {
            let now = sys::clock_gettime(sys::CLOCK_MONOTONIC).unwrap_or(start);
            if now.tv_sec >= next_progress {
                next_progress = now.tv_sec + 1;
                eprint!("\r{}      ", transfer_line(c.bytes, now.since(&start)));
                printed_progress = true;
            }
        }
    }
    if fsync
        && rc == 0
        && let Err(e) = sys::fsync(ofd)
    {
        eprintln!("dd: fsync failed for '{}': {}", Bytes(out_name), e);
        rc = 1;
    }
    if ofd != 1
        && let Err(e) = sys::close(ofd)
    {
        eprintln!("dd: closing output file '{}': {}", Bytes(out_name), e);
        rc = 1;
    }
    if printed_progress {
        eprint!("\n");
    }
    summary(&c, &start, status);
    rc
}

sys::entry!(main);
