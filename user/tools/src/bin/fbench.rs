//! `fbench`: buffered file I/O as a user sees it, the same static binary on AliasOS and
//! on Linux (`make bench-files` runs it on both, on the same QEMU machine and disk image).
//!
//! ```text
//! fbench [-n RUNS] [-c CP] [-w WORKLOADS] SRC
//! ```
//!
//! SRC is an existing file on the file system under test; scratch files are made beside
//! it and removed. Every run starts cold: `sync`, then `3` into
//! `/proc/sys/vm/drop_caches`. Workloads (all in MiB/s of SRC's size, or of the bytes
//! written):
//!
//! * `read`: SRC read sequentially with 1 MiB `read`s;
//! * `write`: as many bytes as SRC written with 1 MiB `write`s, then `fsync`;
//! * `copy_rw`: SRC copied by a `read`/`write` loop with a 1 MiB buffer, then `sync`;
//! * `copy_cp`: SRC copied by the program CP (default `/bin/cp`; the system's own), then
//!   `sync`;
//! * `copy_sendfile`: SRC copied by `sendfile` calls (file to file), then `sync`;
//! * `copy_cfr`: SRC copied by `copy_file_range` calls, then `sync`.
//!
//! Each run prints `FBENCH <workload> <MiB/s>`, and where `/proc/vmstat` counts the bytes
//! the CPU copied (`data_copy_bytes`, AliasOS) `FBENCH-CPU <workload> <bytes per MiB>`;
//! RUNS (default 3) runs per workload, in the order the workloads are given (default
//! `read,write,copy_rw,copy_cp,copy_sendfile,copy_cfr`).
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

extern crate alloc;

use alloc::ffi::CString;
use alloc::vec::Vec;
use core::ffi::CStr;

use sys::io::Bytes;
use sys::{eprintln, println};

const MIB: usize = 1 << 20;

fn now() -> f64 {
    sys::clock_gettime(sys::CLOCK_MONOTONIC)
        .map(|t| t.as_secs_f64())
        .unwrap_or(0.0)
}

fn fail(what: &[u8], e: sys::Errno) -> ! {
    tools::warn(what, e);
    sys::exit(1)
}

/// Write back everything and drop the page cache, so the next run starts cold.
fn cold() {
    sys::sync();
    match sys::open(c"/proc/sys/vm/drop_caches", sys::O_WRONLY, 0) {
        Ok(fd) => {
            if let Err(e) = sys::write_all(fd, b"3\n") {
                fail(b"drop_caches", e);
            }
            let _ = sys::close(fd);
        }
        Err(e) => fail(b"/proc/sys/vm/drop_caches", e),
    }
}

fn read_all(path: &CStr, buf: &mut [u8]) -> u64 {
    let fd = sys::open(path, sys::O_RDONLY, 0).unwrap_or_else(|e| fail(path.to_bytes(), e));
    let mut total = 0u64;
    loop {
        match sys::read(fd, buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) => fail(path.to_bytes(), e),
        }
    }
    let _ = sys::close(fd);
    total
}

fn write_file(path: &CStr, bytes: u64, buf: &[u8]) {
    let fd = sys::open(path, sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC, 0o644)
        .unwrap_or_else(|e| fail(path.to_bytes(), e));
    let mut left = bytes;
    while left > 0 {
        let n = (buf.len() as u64).min(left) as usize;
        if let Err(e) = sys::write_all(fd, &buf[..n]) {
            fail(path.to_bytes(), e);
        }
        left -= n as u64;
    }
    if let Err(e) = sys::fsync(fd) {
        fail(b"fsync", e);
    }
    let _ = sys::close(fd);
}

fn copy_rw(src: &CStr, dst: &CStr, buf: &mut [u8]) {
    let from = sys::open(src, sys::O_RDONLY, 0).unwrap_or_else(|e| fail(src.to_bytes(), e));
    let to = sys::open(dst, sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC, 0o644)
        .unwrap_or_else(|e| fail(dst.to_bytes(), e));
    if let Err((_, e)) = tools::copy_fd(from, to, buf) {
        fail(b"copy", e);
    }
    let _ = sys::close(from);
    let _ = sys::close(to);
    sys::sync();
}

/// SRC to DST by repeated in-kernel copy calls (`sendfile` or `copy_file_range`), then
/// `sync`.
fn copy_in_kernel(src: &CStr, dst: &CStr, sendfile: bool) {
    let from = sys::open(src, sys::O_RDONLY, 0).unwrap_or_else(|e| fail(src.to_bytes(), e));
    let to = sys::open(dst, sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC, 0o644)
        .unwrap_or_else(|e| fail(dst.to_bytes(), e));
    loop {
        let r = if sendfile {
            sys::sendfile(to, from, 1 << 30)
        } else {
            sys::copy_file_range(from, to, 1 << 30)
        };
        match r {
            Ok(0) => break,
            Ok(_) | Err(sys::errno::EINTR) => {}
            Err(e) => fail(
                if sendfile {
                    b"sendfile"
                } else {
                    b"copy_file_range"
                },
                e,
            ),
        }
    }
    let _ = sys::close(from);
    let _ = sys::close(to);
    sys::sync();
}

/// `data_copy_bytes` from /proc/vmstat (None where there is no such counter).
fn cpu_copied() -> Option<u64> {
    let fd = sys::open(c"/proc/vmstat", sys::O_RDONLY, 0).ok()?;
    let mut buf = alloc::vec![0u8; 16 << 10];
    let n = sys::read_full(fd, &mut buf).ok()?;
    let _ = sys::close(fd);
    buf[..n].split(|&c| c == b'\n').find_map(|l| {
        let v = l.strip_prefix(b"data_copy_bytes ")?;
        core::str::from_utf8(v).ok()?.trim().parse().ok()
    })
}

fn run_cp(cp: &CStr, src: &CStr, dst: &CStr) {
    let argv = [
        cp.as_ptr() as *const u8,
        src.as_ptr() as *const u8,
        dst.as_ptr() as *const u8,
        core::ptr::null(),
    ];
    let envp = [
        c"PATH=/bin:/usr/bin".as_ptr() as *const u8,
        core::ptr::null(),
    ];
    // SAFETY: single-threaded; the child only calls execve or exits.
    match unsafe { sys::fork() } {
        Ok(0) => {
            let e = sys::execve(cp, &argv, &envp);
            eprintln!("fbench: exec {}: {}", Bytes(cp.to_bytes()), e);
            sys::exit(127);
        }
        Ok(pid) => match sys::wait4(pid, 0) {
            Ok((_, 0)) => {}
            Ok((_, st)) => {
                eprintln!(
                    "fbench: {} failed: wait status {st:#x}",
                    Bytes(cp.to_bytes())
                );
                sys::exit(1);
            }
            Err(e) => fail(b"wait4", e),
        },
        Err(e) => fail(b"fork", e),
    }
    sys::sync();
}

fn main() -> i32 {
    let args: Vec<&'static CStr> = tools::operands();
    let mut runs = 3u32;
    let mut cp: &CStr = c"/bin/cp";
    let mut workloads: &[u8] = b"read,write,copy_rw,copy_cp,copy_sendfile,copy_cfr";
    let mut src = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.to_bytes() {
            b"-n" => {
                runs = it
                    .next()
                    .and_then(|v| core::str::from_utf8(v.to_bytes()).ok()?.parse().ok())
                    .unwrap_or_else(|| tools::die(2, format_args!("fbench: -n needs a number")))
            }
            b"-c" => {
                cp = it
                    .next()
                    .unwrap_or_else(|| tools::die(2, format_args!("fbench: -c needs a path")))
            }
            b"-w" => {
                workloads = it
                    .next()
                    .unwrap_or_else(|| tools::die(2, format_args!("fbench: -w needs a list")))
                    .to_bytes()
            }
            _ if src.is_none() => src = Some(*a),
            _ => tools::die(
                2,
                format_args!("usage: fbench [-n RUNS] [-c CP] [-w LIST] SRC"),
            ),
        }
    }
    let Some(src) = src else {
        tools::die(
            2,
            format_args!("usage: fbench [-n RUNS] [-c CP] [-w LIST] SRC"),
        );
    };
    let size = sys::stat(src)
        .unwrap_or_else(|e| fail(src.to_bytes(), e))
        .st_size as u64;
    let scratch = |name: &[u8]| -> CString {
        let s = src.to_bytes();
        let dir = match s.iter().rposition(|&c| c == b'/') {
            Some(i) => &s[..=i],
            None => &b""[..],
        };
        let mut p = dir.to_vec();
        p.extend_from_slice(name);
        sys::cpath(&p)
    };
    let (wfile, cfile) = (scratch(b"fbench-write.bin"), scratch(b"fbench-copy.bin"));
    let mut buf = alloc::vec![0u8; MIB];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i * 7 + 1) as u8;
    }
    println!(
        "fbench: {} ({} MiB), {runs} runs per workload",
        Bytes(src.to_bytes()),
        size >> 20
    );
    for w in workloads.split(|&c| c == b',') {
        for _ in 0..runs {
            let _ = sys::unlink(&wfile);
            let _ = sys::unlink(&cfile);
            cold();
            let copied0 = cpu_copied();
            let t0 = now();
            let bytes = match w {
                b"read" => read_all(src, &mut buf),
                b"write" => {
                    write_file(&wfile, size, &buf);
                    size
                }
                b"copy_rw" => {
                    copy_rw(src, &cfile, &mut buf);
                    size
                }
                b"copy_cp" => {
                    run_cp(cp, src, &cfile);
                    size
                }
                b"copy_sendfile" => {
                    copy_in_kernel(src, &cfile, true);
                    size
                }
                b"copy_cfr" => {
                    copy_in_kernel(src, &cfile, false);
                    size
                }
                other => tools::die(2, format_args!("fbench: unknown workload {}", Bytes(other))),
            };
            let secs = (now() - t0).max(1e-9);
            println!(
                "FBENCH {} {:.1}",
                Bytes(w),
                bytes as f64 / MIB as f64 / secs
            );
            if let (Some(a), Some(b)) = (copied0, cpu_copied()) {
                println!(
                    "FBENCH-CPU {} {:.0}",
                    Bytes(w),
                    b.saturating_sub(a) as f64 / (size as f64 / MIB as f64)
                );
            }
        }
    }
    let _ = sys::unlink(&wfile);
    let _ = sys::unlink(&cfile);
    0
}

sys::entry!(main);
