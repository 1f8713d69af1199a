//! `sync`: flush all file system buffers.
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

fn main() -> i32 {
    sys::sync();
    0
}

sys::entry!(main);
