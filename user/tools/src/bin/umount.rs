//! `umount [-l] [-f] DIR...`: unmount (`-l` lazy: MNT_DETACH, `-f`: MNT_FORCE).
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

fn main() -> i32 {
    let (flags, ops) = tools::parse_flags("lf", "umount [-l] [-f] DIR...");
    if ops.is_empty() {
        tools::die(
            1,
            format_args!("missing operand\nusage: umount [-l] [-f] DIR..."),
        );
    }
    let mut f = 0;
    if flags.contains(&b'l') {
        f |= sys::MNT_DETACH;
    }
    if flags.contains(&b'f') {
        f |= sys::MNT_FORCE;
    }
    let mut rc = 0;
    for op in ops {
        if let Err(e) = sys::umount2(op, f) {
            tools::warn(op.to_bytes(), e);
            rc = 32;
        }
    }
    rc
}

sys::entry!(main);
