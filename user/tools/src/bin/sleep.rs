//! `sleep NUMBER[smhd]...`: pause for the sum of the durations (fractions allowed).
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

use sys::io::Bytes;

/// Nanoseconds for `12`, `1.5`, `0.25m`, ...
fn parse(s: &[u8]) -> Option<u128> {
    let (num, mult): (&[u8], u128) = match s.last()? {
        b's' => (&s[..s.len() - 1], 1),
        b'm' => (&s[..s.len() - 1], 60),
        b'h' => (&s[..s.len() - 1], 3600),
        b'd' => (&s[..s.len() - 1], 86400),
        _ => (s, 1),
    };
    let dot = num.iter().position(|&c| c == b'.').unwrap_or(num.len());
    let (int, frac) = (
        &num[..dot],
        if dot < num.len() {
            &num[dot + 1..]
        } else {
            &[][..]
        },
    );
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut ns: u128 = 0;
    for &c in int {
        if !c.is_ascii_digit() {
            return None;
        }
        ns = ns.checked_mul(10)?.checked_add((c - b'0') as u128)?;
    }
    ns = ns.checked_mul(1_000_000_000)?;
    let mut scale = 100_000_000u128;
    for &c in frac {
        if !c.is_ascii_digit() {
            return None;
        }
        ns += (c - b'0') as u128 * scale;
        scale /= 10;
    }
    ns.checked_mul(mult)
}

fn main() -> i32 {
    let ops = tools::operands();
    if ops.is_empty() {
        tools::die(
            1,
            format_args!("missing operand\nusage: sleep NUMBER[smhd]..."),
        );
    }
    let mut total: u128 = 0;
    for op in ops {
        match parse(op.to_bytes()) {
            Some(ns) => total = total.saturating_add(ns),
            None => tools::die(
                1,
                format_args!("invalid time interval '{}'", Bytes(op.to_bytes())),
            ),
        }
    }
    let ts = sys::Timespec {
        tv_sec: (total / 1_000_000_000).min(i64::MAX as u128) as i64,
        tv_nsec: (total % 1_000_000_000) as i64,
    };
    match sys::sleep(ts) {
        Ok(()) => 0,
        Err(e) => {
            tools::warn(b"nanosleep", e);
            1
        }
    }
}

sys::entry!(main);
