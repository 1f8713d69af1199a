//! `mount`: print `/proc/mounts`.
//! `mount [-t TYPE] [-o ro|rw[,...]] DEV DIR`: mount DEV on DIR (TYPE defaults to `ext2`;
//! options other than `ro`/`rw` are passed to the file system as data).
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::ffi::CStr;

const USAGE: &str = "mount [-t TYPE] [-o OPTIONS] DEV DIR";

fn main() -> i32 {
    let args: Vec<&'static CStr> = sys::rt::args().skip(1).collect();
    if args.is_empty() {
        return match sys::read_file(c"/proc/mounts") {
            Ok(d) => {
                sys::io::out_bytes(&d);
                0
            }
            Err(e) => {
                tools::warn(b"/proc/mounts", e);
                1
            }
        };
    }
    let mut fstype: &CStr = c"ext2";
    let mut flags = 0;
    let mut data: Vec<u8> = Vec::new();
    let mut ops = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].to_bytes() {
            b"-t" | b"-o" if i + 1 == args.len() => tools::die(
                1,
                format_args!("option requires an argument\nusage: {USAGE}"),
            ),
            b"-t" => {
                fstype = args[i + 1];
                i += 1;
            }
            b"-o" => {
                for opt in args[i + 1].to_bytes().split(|&c| c == b',') {
                    match opt {
                        b"ro" => flags |= sys::MS_RDONLY,
                        b"rw" => flags &= !sys::MS_RDONLY,
                        b"" => {}
                        o => {
                            if !data.is_empty() {
                                data.push(b',');
                            }
                            data.extend_from_slice(o);
                        }
                    }
                }
                i += 1;
            }
            _ => ops.push(args[i]),
        }
        i += 1;
    }
    if ops.len() != 2 {
        tools::die(1, format_args!("need DEV and DIR\nusage: {USAGE}"));
    }
    let data = sys::cpath(&data);
    let d = if data.is_empty() {
        None
    } else {
        Some(data.as_c_str())
    };
    match sys::mount(ops[0], ops[1], fstype, flags, d) {
        Ok(_) => 0,
        Err(e) => {
            tools::warn(ops[1].to_bytes(), e);
            32
        }
    }
}

sys::entry!(main);
