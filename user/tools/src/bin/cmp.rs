//! `cmp [-s] FILE1 FILE2`: compare byte by byte, like GNU cmp.
//! Exit 0 if equal, 1 if different (`F1 F2 differ: byte N, line M` on stdout,
//! or `cmp: EOF on F after byte N, line M` / `..., in line M` / `which is empty`
//! on stderr), 2 on trouble.
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

extern crate alloc;

use core::ffi::CStr;
use sys::io::Bytes;
use sys::{eprintln, println};

fn open(f: &CStr) -> i32 {
    if f.to_bytes() == b"-" {
        return 0;
    }
    match sys::open(f, sys::O_RDONLY, 0) {
        Ok(fd) => fd,
        Err(e) => {
            tools::warn(f.to_bytes(), e);
            sys::rt::exit(2)
        }
    }
}

fn fill(fd: i32, name: &CStr, buf: &mut [u8]) -> usize {
    match sys::read_full(fd, buf) {
        Ok(n) => n,
        Err(e) => {
            tools::warn(name.to_bytes(), e);
            sys::rt::exit(2)
        }
    }
}

fn main() -> i32 {
    let (flags, ops) = tools::parse_flags("s", "cmp [-s] FILE1 FILE2");
    let silent = flags.contains(&b's');
    if ops.len() != 2 {
        tools::die(
            2,
            format_args!("need two files\nusage: cmp [-s] FILE1 FILE2"),
        );
    }
    let (fa, fb) = (open(ops[0]), open(ops[1]));
    const N: usize = 64 * 1024;
    let mut a = alloc::vec![0u8; N];
    let mut b = alloc::vec![0u8; N];
    let mut offset: u64 = 0; // bytes equal so far
    let mut newlines: u64 = 0;
    let mut last = b'\n';
    loop {
        let na = fill(fa, ops[0], &mut a);
        let nb = fill(fb, ops[1], &mut b);
        let n = na.min(nb);
        if let Some(i) = (0..n).find(|&i| a[i] != b[i]) {
            if !silent {
                newlines += a[..i].iter().filter(|&&c| c == b'\n').count() as u64;
                println!(
                    "{} {} differ: byte {}, line {}",
                    Bytes(ops[0].to_bytes()),
                    Bytes(ops[1].to_bytes()),
                    offset + i as u64 + 1,
                    newlines + 1
                );
            }
            return 1;
        }
        newlines += a[..n].iter().filter(|&&c| c == b'\n').count() as u64;
        if n > 0 {
            last = a[n - 1];
        }
        offset += n as u64;
        if na != nb {
            if !silent {
                let short = if na < nb { ops[0] } else { ops[1] };
                let name = Bytes(short.to_bytes());
                if offset == 0 {
                    eprintln!("cmp: EOF on {} which is empty", name);
                } else if last == b'\n' {
                    eprintln!(
                        "cmp: EOF on {} after byte {}, line {}",
                        name, offset, newlines
                    );
                } else {
                    eprintln!(
                        "cmp: EOF on {} after byte {}, in line {}",
                        name,
                        offset,
                        newlines + 1
                    );
                }
            }
            return 1;
        }
        if na == 0 {
            return 0;
        }
    }
}

sys::entry!(main);
