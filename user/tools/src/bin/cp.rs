//! `cp SRC DST` or `cp SRC... DIR`: copy regular files (read/write loop, 1 MiB buffer).
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

use sys::io::Bytes;

fn main() -> i32 {
    let (_, ops) = tools::parse_flags("", "cp SRC DST | cp SRC... DIR");
    if ops.len() < 2 {
        tools::die(
            1,
            format_args!("missing file operand\nusage: cp SRC DST | cp SRC... DIR"),
        );
    }
    let (srcs, dst) = ops.split_at(ops.len() - 1);
    let dst = dst[0];
    let dst_is_dir = sys::stat(dst).map(|s| s.is_dir()).unwrap_or(false);
    if srcs.len() > 1 && !dst_is_dir {
        tools::die(
            1,
            format_args!("target '{}' is not a directory", Bytes(dst.to_bytes())),
        );
    }
    let mut rc = 0;
    for src in srcs {
        let target = if dst_is_dir {
            sys::join(dst.to_bytes(), sys::basename(src.to_bytes()))
        } else {
            dst.into()
        };
        if let Err((path, e)) = tools::copy_file(src, &target) {
            tools::warn(path.to_bytes(), e);
            rc = 1;
        }
    }
    rc
}

sys::entry!(main);
