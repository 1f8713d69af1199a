//! `cat [FILE...]`: concatenate files (`-` or none: stdin) to stdout.
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

fn main() -> i32 {
    let ops = tools::operands();
    let mut buf = alloc::vec![0u8; 128 * 1024];
    let mut rc = 0;
    let stdin: &core::ffi::CStr = c"-";
    let list = if ops.is_empty() {
        alloc::vec![stdin]
    } else {
        ops
    };
    for f in list {
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
        match tools::copy_fd(fd, 1, &mut buf) {
            Ok(_) => {}
            Err((true, e)) => {
                tools::warn(f.to_bytes(), e);
                rc = 1;
            }
            Err((false, e)) => {
                tools::warn(b"write error", e);
                return 1;
            }
        }
        if fd != 0 {
            let _ = sys::close(fd);
        }
    }
    rc
}

extern crate alloc;
sys::entry!(main);
