//! `echo [-n] [-e] [ARG...]`: print the arguments separated by spaces.
//! `-e` interprets `\n \t \\ \c \0NNN`, like GNU `echo -e`.
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

use sys::io::out_bytes;

fn main() -> i32 {
    let mut newline = true;
    let mut escapes = false;
    let mut i = 1;
    while let Some(a) = sys::rt::arg(i) {
        let a = a.to_bytes();
        if a.len() >= 2 && a[0] == b'-' && a[1..].iter().all(|c| matches!(c, b'n' | b'e' | b'E')) {
            for &c in &a[1..] {
                match c {
                    b'n' => newline = false,
                    b'e' => escapes = true,
                    _ => escapes = false,
                }
            }
            i += 1;
        } else {
            break;
        }
    }
    let mut first = true;
    while let Some(a) = sys::rt::arg(i) {
        if !first {
            out_bytes(b" ");
        }
        first = false;
        if escapes {
            if !tools::echo_escapes(a.to_bytes()) {
                return 0;
            }
        } else {
            out_bytes(a.to_bytes());
        }
        i += 1;
    }
    if newline {
        out_bytes(b"\n");
    }
    0
}

sys::entry!(main);
