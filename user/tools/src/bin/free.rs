//! `free [-k|-m|-g|-b]`: memory usage from `/proc/meminfo`, in the layout of
//! procps-ng 4 `free` (KiB by default; `used = total - available`,
//! `buff/cache = Buffers + Cached + SReclaimable`).
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

use sys::println;

fn field(info: &[u8], name: &[u8]) -> Option<u64> {
    for line in info.split(|&c| c == b'\n') {
        if line.len() > name.len() && line.starts_with(name) && line[name.len()] == b':' {
            let v: u64 = line[name.len() + 1..]
                .iter()
                .skip_while(|c| **c == b' ')
                .take_while(|c| c.is_ascii_digit())
                .fold(0, |a, &c| a * 10 + (c - b'0') as u64);
            return Some(v);
        }
    }
    None
}

fn main() -> i32 {
    let (flags, _) = tools::parse_flags("bkmg", "free [-b|-k|-m|-g]");
    let info = match sys::read_file(c"/proc/meminfo") {
        Ok(i) => i,
        Err(e) => {
            tools::warn(b"/proc/meminfo", e);
            return 1;
        }
    };
    let f = |n: &[u8]| field(&info, n).unwrap_or(0);
    let total = f(b"MemTotal");
    let free = f(b"MemFree");
    let shared = f(b"Shmem");
    let cache = f(b"Buffers") + f(b"Cached") + f(b"SReclaimable");
    let avail = field(&info, b"MemAvailable")
        .unwrap_or(free + cache)
        .min(total);
    let used = total - avail;
    let (stotal, sfree) = (f(b"SwapTotal"), f(b"SwapFree"));
    let conv = |kib: u64| -> u64 {
        match flags.last() {
            Some(b'b') => kib * 1024,
            Some(b'm') => kib >> 10,
            Some(b'g') => kib >> 20,
            _ => kib,
        }
    };
    println!(
        "{:<8}{:>12}{:>12}{:>12}{:>12}{:>12}{:>12}",
        "", "total", "used", "free", "shared", "buff/cache", "available"
    );
    println!(
        "{:<8}{:>12}{:>12}{:>12}{:>12}{:>12}{:>12}",
        "Mem:",
        conv(total),
        conv(used),
        conv(free),
        conv(shared),
        conv(cache),
        conv(avail)
    );
    println!(
        "{:<8}{:>12}{:>12}{:>12}",
        "Swap:",
        conv(stotal),
        conv(stotal - sfree.min(stotal)),
        conv(sfree)
    );
    0
}

sys::entry!(main);
