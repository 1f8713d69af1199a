//! `mv SRC DST` or `mv SRC... DIR`: rename; across file systems (EXDEV) a
//! regular file is copied and the source removed.
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

use sys::io::Bytes;

fn main() -> i32 {
    let (_, ops) = tools::parse_flags("f", "mv SRC DST | mv SRC... DIR");
    if ops.len() < 2 {
        tools::die(
            1,
            format_args!("missing file operand\nusage: mv SRC DST | mv SRC... DIR"),
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
        match sys::rename(src, &target) {
            Ok(_) => {}
            Err(sys::errno::EXDEV) => match tools::copy_file(src, &target) {
                Ok(()) => {
                    if let Err(e) = sys::unlink(src) {
                        tools::warn(src.to_bytes(), e);
                        rc = 1;
                    }
                }
                Err((p, e)) => {
                    tools::warn(p.to_bytes(), e);
                    rc = 1;
                }
            },
            Err(e) => {
                tools::warn(src.to_bytes(), e);
                rc = 1;
            }
        }
    }
    rc
}

sys::entry!(main);
