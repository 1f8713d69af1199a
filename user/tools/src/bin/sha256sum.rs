//! `sha256sum [FILE...]`: print `HEX  NAME` for each file (`-` or none: stdin),
//! like GNU sha256sum.
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

extern crate alloc;

use sys::io::{Bytes, out_bytes};
use sys::println;
use tools::sha256::{Sha256, hex};

fn main() -> i32 {
    let ops = tools::operands();
    let stdin: &core::ffi::CStr = c"-";
    let list = if ops.is_empty() {
        alloc::vec![stdin]
    } else {
        ops
    };
    let mut buf = alloc::vec![0u8; 256 * 1024];
    let mut rc = 0;
    'files: for f in list {
        let fd = if f.to_bytes() == b"-" {
            0
        } else {
            match sys::open(f, sys::O_RDONLY, 0) {
                Ok(fd) => fd,
                Err(e) => {
                    tools::warn(f.to_bytes(), e);
                    rc = 1;
                    continue;
                }
            }
        };
        let mut h = Sha256::new();
        loop {
            match sys::read(fd, &mut buf) {
                Ok(0) => break,
                Ok(n) => h.update(&buf[..n]),
                Err(sys::errno::EINTR) => {}
                Err(e) => {
                    tools::warn(f.to_bytes(), e);
                    rc = 1;
                    if fd != 0 {
                        let _ = sys::close(fd);
                    }
                    continue 'files;
                }
            }
        }
        if fd != 0 {
            let _ = sys::close(fd);
        }
        out_bytes(&hex(&h.finish()));
        println!("  {}", Bytes(f.to_bytes()));
    }
    rc
}

sys::entry!(main);
