//! `ls [-a] [-l] [PATH...]`
//!
//! Output format (stable; compared between the host and AliasOS):
//! * Entries are sorted by name (byte order); names starting with `.` are
//!   hidden unless `-a`. Plain mode prints one name per line.
//! * `-l` prints `MODE LINKS SIZE NAME` per entry, with LINKS and SIZE
//!   right-aligned to the widest value in that listing and single spaces
//!   between fields, e.g. `-rw-r--r-- 1  1234 README`; symlinks end in
//!   ` -> TARGET`. No `total` line, no owner or time.
//! * File operands are listed first (sorted by name), then each directory
//!   (sorted by name); with more than one operand each directory listing starts with
//!   `DIR:` and listings are separated by an empty line.
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::ffi::CStr;
use sys::io::Bytes;
use sys::{print, println};

struct Entry {
    name: Vec<u8>,
    st: Option<sys::Stat>,
    link: Vec<u8>,
}

fn entry(path: &CStr, name: &[u8], long: bool) -> Result<Entry, sys::Errno> {
    let mut e = Entry {
        name: name.to_vec(),
        st: None,
        link: Vec::new(),
    };
    if long {
        let st = sys::lstat(path)?;
        if st.is_lnk() {
            let mut buf = [0u8; 4096];
            if let Ok(n) = sys::readlinkat(sys::AT_FDCWD, path, &mut buf) {
                e.link = buf[..n].to_vec();
            }
        }
        e.st = Some(st);
    }
    Ok(e)
}

fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

fn print_entries(list: &[Entry], long: bool) {
    if !long {
        for e in list {
            println!("{}", Bytes(&e.name));
        }
        return;
    }
    let lw = list
        .iter()
        .filter_map(|e| e.st)
        .map(|s| digits(s.st_nlink))
        .max()
        .unwrap_or(1);
    let sw = list
        .iter()
        .filter_map(|e| e.st)
        .map(|s| digits(s.st_size as u64))
        .max()
        .unwrap_or(1);
    for e in list {
        let st = e.st.unwrap_or_default();
        let mode = sys::mode_string(st.st_mode);
        print!(
            "{} {:>lw$} {:>sw$} {}",
            core::str::from_utf8(&mode).unwrap_or("?"),
            st.st_nlink,
            st.st_size,
            Bytes(&e.name)
        );
        if st.is_lnk() {
            print!(" -> {}", Bytes(&e.link));
        }
        println!();
    }
}

fn main() -> i32 {
    let (flags, mut ops) = tools::parse_flags("al1", "ls [-a] [-l] [PATH...]");
    let all = flags.contains(&b'a');
    let long = flags.contains(&b'l');
    if ops.is_empty() {
        ops.push(c".");
    }
    let mut rc = 0;
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for op in &ops {
        match sys::stat(op).or_else(|_| sys::lstat(op)) {
            Ok(st) if st.is_dir() => dirs.push(*op),
            Ok(_) => match entry(op, op.to_bytes(), long) {
                Ok(e) => files.push(e),
                Err(e) => {
                    tools::warn(op.to_bytes(), e);
                    rc = 2;
                }
            },
            Err(e) => {
                tools::warn(op.to_bytes(), e);
                rc = 2;
            }
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    dirs.sort_by(|a, b| a.to_bytes().cmp(b.to_bytes()));
    print_entries(&files, long);
    let header = ops.len() > 1;
    let mut first = files.is_empty();
    for d in dirs {
        if !first {
            println!();
        }
        first = false;
        if header {
            println!("{}:", Bytes(d.to_bytes()));
        }
        let names = match sys::read_dir(d) {
            Ok(n) => n,
            Err(e) => {
                tools::warn(d.to_bytes(), e);
                rc = 2;
                continue;
            }
        };
        let mut list = Vec::new();
        for (name, _) in names {
            if !all && name.first() == Some(&b'.') {
                continue;
            }
            let path = sys::join(d.to_bytes(), &name);
            match entry(&path, &name, long) {
                Ok(e) => list.push(e),
                Err(e) => {
                    tools::warn(path.to_bytes(), e);
                    rc = 1;
                }
            }
        }
        list.sort_by(|a, b| a.name.cmp(&b.name));
        print_entries(&list, long);
    }
    rc
}

sys::entry!(main);
