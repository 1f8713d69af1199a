//! `blkdiscard DEV [OFFSET [LENGTH]]`: tell the disk behind the block device DEV that
//! LENGTH bytes from OFFSET (default: all of it) hold nothing worth keeping (`BLKDISCARD`:
//! NVMe deallocate). Both in bytes, multiples of 512.
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

use core::ffi::CStr;

use sys::io::Bytes;

const BLKDISCARD: usize = 0x1277;
const BLKGETSIZE64: usize = 0x8008_1272;
const SYS_IOCTL: usize = 16;

fn number(s: &CStr) -> u64 {
    core::str::from_utf8(s.to_bytes())
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| tools::die(1, format_args!("not a number: {}", Bytes(s.to_bytes()))))
}

fn main() -> i32 {
    let ops = tools::operands();
    let Some(&dev) = ops.first() else {
        tools::die(1, format_args!("usage: blkdiscard DEV [OFFSET [LENGTH]]"));
    };
    let fd = sys::open(dev, sys::O_WRONLY, 0).unwrap_or_else(|e| {
        tools::warn(dev.to_bytes(), e);
        sys::rt::exit(1)
    });
    let mut size = 0u64;
    // SAFETY: `size` is a u64 of this frame that the kernel writes the disk's size into.
    let got = unsafe {
        sys::syscall(
            SYS_IOCTL,
            [
                fd as usize,
                BLKGETSIZE64,
                &mut size as *mut u64 as usize,
                0,
                0,
                0,
            ],
        )
    };
    if let Err(e) = got {
        tools::warn(dev.to_bytes(), e);
        return 1;
    }
    let offset = ops.get(1).map_or(0, |s| number(s));
    let length = ops
        .get(2)
        .map_or(size.saturating_sub(offset), |s| number(s));
    let range = [offset, length];
    // SAFETY: `range` is two u64s of this frame that the kernel reads.
    let r = unsafe {
        sys::syscall(
            SYS_IOCTL,
            [fd as usize, BLKDISCARD, range.as_ptr() as usize, 0, 0, 0],
        )
    };
    if let Err(e) = r {
        tools::warn(dev.to_bytes(), e);
        return 1;
    }
    0
}

sys::entry!(main);
