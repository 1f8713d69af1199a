//! `mkdir [-p] DIR...`: create directories (mode 0777 minus umask); `-p`
//! creates parents and accepts existing directories.
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

fn main() -> i32 {
    let (flags, ops) = tools::parse_flags("p", "mkdir [-p] DIR...");
    let parents = flags.contains(&b'p');
    if ops.is_empty() {
        tools::die(1, format_args!("missing operand\nusage: mkdir [-p] DIR..."));
    }
    let mut rc = 0;
    for op in ops {
        let path = op.to_bytes();
        if parents {
            // Create each prefix ending before a '/', then the whole path.
            let mut ok = true;
            for i in 1..=path.len() {
                if i < path.len() && path[i] != b'/' {
                    continue;
                }
                if path[i - 1] == b'/' {
                    continue;
                }
                let prefix = sys::cpath(&path[..i]);
                match sys::mkdir(&prefix, 0o777) {
                    Ok(_) => {}
                    Err(sys::errno::EEXIST)
                        if sys::stat(&prefix).map(|s| s.is_dir()).unwrap_or(false) => {}
                    Err(e) => {
                        tools::warn(path, e);
                        ok = false;
                        break;
                    }
                }
            }
            if !ok {
                rc = 1;
            }
        } else if let Err(e) = sys::mkdir(op, 0o777) {
            tools::warn(path, e);
            rc = 1;
        }
    }
    rc
}

sys::entry!(main);
