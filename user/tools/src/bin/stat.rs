//! `stat FILE...` (does not follow a final symlink). Stable output format:
//! ```text
//!   File: NAME
//!   Size: 1234
//! Blocks: 8
//!  Links: 1
//!  Inode: 5678
//! Access: (0644/-rw-r--r--)
//!   Type: regular file
//! ```
//! (`Blocks` are 512-byte units as in `st_blocks`; `Type` uses GNU stat's `%F`
//! words, including `regular empty file`.) Several files print one block each.
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

use sys::io::Bytes;
use sys::println;

fn main() -> i32 {
    let ops = tools::operands();
    if ops.is_empty() {
        tools::die(1, format_args!("missing operand\nusage: stat FILE..."));
    }
    let mut rc = 0;
    for op in ops {
        let st = match sys::lstat(op) {
            Ok(st) => st,
            Err(e) => {
                tools::warn(op.to_bytes(), e);
                rc = 1;
                continue;
            }
        };
        let kind = if st.is_reg() && st.st_size == 0 {
            "regular empty file"
        } else {
            sys::file_type_name(st.st_mode)
        };
        let ms = sys::mode_string(st.st_mode);
        println!("  File: {}", Bytes(op.to_bytes()));
        println!("  Size: {}", st.st_size);
        println!("Blocks: {}", st.st_blocks);
        println!(" Links: {}", st.st_nlink);
        println!(" Inode: {}", st.st_ino);
        println!(
            "Access: ({:04o}/{})",
            st.st_mode & 0o7777,
            core::str::from_utf8(&ms).unwrap_or("?")
        );
        println!("  Type: {}", kind);
    }
    rc
}

sys::entry!(main);
