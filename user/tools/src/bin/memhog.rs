//! `memhog [-f] [SIZE]`: take anonymous memory 1 MiB at a time and touch every page,
//! up to SIZE (default: without bound), then exit 0. Prints how much it holds every
//! 16 MiB. With `-f` it instead stores to address 0 and dies of SIGSEGV.
//!
//! A test tool for memory pressure: without SIZE it runs until the OOM killer ends it
//! (the shell then reports status 137). Do not run it without SIZE on a machine you
//! care about.
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

use sys::println;

const CHUNK: usize = 1 << 20;
const PAGE: usize = 4096;

fn main() -> i32 {
    let (flags, ops) = tools::parse_flags("f", "memhog [-f] [SIZE]");
    if flags.contains(&b'f') {
        // SAFETY: deliberately invalid: the store faults and the kernel kills the
        // process; nothing after it runs.
        unsafe { core::ptr::write_volatile(core::ptr::null_mut::<u8>(), 1) };
        return 1;
    }
    let limit = match ops.first() {
        Some(s) => match tools::parse_size(s.to_bytes()) {
            Some(n) => n,
            None => tools::die(1, format_args!("memhog: bad size")),
        },
        None => u64::MAX,
    };
    let mut held: u64 = 0;
    while held < limit {
        let p = match sys::mmap_anon(CHUNK) {
            Ok(p) => p,
            Err(e) => {
                tools::warn(b"mmap", e);
                return 1;
            }
        };
        for off in (0..CHUNK).step_by(PAGE) {
            // SAFETY: `p` is a fresh private read/write mapping of CHUNK bytes that
            // nothing else references; each store stays inside it.
            unsafe { core::ptr::write_volatile(p.add(off), (held >> 20) as u8 | 1) };
        }
        held += CHUNK as u64;
        if held.is_multiple_of(16 << 20) {
            println!("memhog: {} MiB", held >> 20);
        }
    }
    println!("memhog: holding {} MiB; done", held >> 20);
    0
}

sys::entry!(main);
