//! `rm [-r] [-f] PATH...`: remove files; `-r` removes directories recursively,
//! `-f` ignores missing files.
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

use core::ffi::CStr;

fn fail(path: &CStr, e: sys::Errno) {
    sys::eprintln!(
        "rm: cannot remove '{}': {}",
        sys::io::Bytes(path.to_bytes()),
        e
    );
}

fn remove(path: &CStr, recursive: bool, force: bool) -> bool {
    let st = match sys::lstat(path) {
        Ok(st) => st,
        Err(sys::errno::ENOENT) if force => return true,
        Err(e) => {
            fail(path, e);
            return false;
        }
    };
    if st.is_dir() {
        if !recursive {
            fail(path, sys::errno::EISDIR);
            return false;
        }
        let mut ok = true;
        match sys::read_dir(path) {
            Ok(names) => {
                for (name, _) in names {
                    if name == b"." || name == b".." {
                        continue;
                    }
                    ok &= remove(&sys::join(path.to_bytes(), &name), recursive, force);
                }
            }
            Err(e) => {
                tools::warn(path.to_bytes(), e);
                return false;
            }
        }
        if let Err(e) = sys::rmdir(path) {
            fail(path, e);
            return false;
        }
        ok
    } else if let Err(e) = sys::unlink(path) {
        fail(path, e);
        false
    } else {
        true
    }
}

fn main() -> i32 {
    let (flags, ops) = tools::parse_flags("rRf", "rm [-r] [-f] PATH...");
    let recursive = flags.contains(&b'r') || flags.contains(&b'R');
    let force = flags.contains(&b'f');
    if ops.is_empty() && !force {
        tools::die(
            1,
            format_args!("missing operand\nusage: rm [-r] [-f] PATH..."),
        );
    }
    let mut rc = 0;
    for op in ops {
        if !remove(op, recursive, force) {
            rc = 1;
        }
    }
    rc
}

sys::entry!(main);
