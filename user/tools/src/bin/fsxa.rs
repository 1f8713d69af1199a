//! `fsxa`: a model-based random test of file data (after fsx), aimed at aliasing.
//!
//! ```text
//! fsxa [-n OPS] [-s SEED] [-f FILES] [-d] DIR
//! ```
//!
//! With `-d`, half the reads and writes go through a second descriptor of each file
//! opened `O_DIRECT` (offsets and lengths rounded to 512 bytes, a page-aligned buffer):
//! direct I/O mixed with buffered and mapped I/O on the same files.
//!
//! FILES files (default 3) in DIR get OPS (default 10000) random operations: `pread`,
//! `pwrite`, loads and stores through a `MAP_SHARED` mapping, `ftruncate`,
//! `copy_file_range` (within a file and between files, overlapping ranges included:
//! EINVAL), `sendfile` between files, `fsync`, `drop_caches`, and close/reopen. Offsets
//! and lengths are often whole pages (so copies make aliases) and often not. A byte
//! model of every file predicts each result; the first difference stops the run with
//! the last operations. At the end every file is read back whole and compared, and
//! `fsxa: FILE SIZE SHA256` is printed for each, so the host can check the disk image.
//! The same seed replays the same operations on any system.
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

extern crate alloc;

use alloc::ffi::CString;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::ffi::CStr;

use sys::io::Bytes;
use sys::{Errno, println};
use tools::rng::Rng;
use tools::sha256::{Sha256, hex};

const PAGE: u64 = 4096;
/// Largest file size the operations aim at (files may end a little past it).
const MAX_SIZE: u64 = 64 * PAGE;
/// Bytes of the page-aligned buffer of direct transfers (more than any length).
const DIRECT_BUF: usize = 16 * PAGE as usize;
/// Operations kept for the failure report.
const HISTORY: usize = 24;

const NR_MMAP: usize = 9;
const NR_MUNMAP: usize = 11;
const NR_PREAD: usize = 17;
const NR_PWRITE: usize = 18;
const NR_SENDFILE: usize = 40;
const NR_COPY_FILE_RANGE: usize = 326;
const PROT_RW: usize = 3;
const MAP_SHARED: usize = 1;
const EINVAL: Errno = Errno(22);

/// A raw system call: the result, or the errno.
fn call(n: usize, a: [usize; 6]) -> Result<usize, Errno> {
    // Every pointer passed is to memory of this program that lives across the call
    // (buffers, offset words) or is a mapping it made; the kernel checks the rest.
    // SAFETY: as just said, the pointer arguments stay valid for the call.
    unsafe { sys::syscall(n, a) }
}

struct Fsx {
    rng: Rng,
    paths: Vec<CString>,
    fds: Vec<i32>,
    /// `O_DIRECT` descriptors of the same files (`-d`; empty otherwise).
    direct: Vec<i32>,
    /// A page-aligned buffer for the direct transfers.
    aligned: &'static mut [u8],
    model: Vec<Vec<u8>>,
    history: Vec<String>,
    op: u64,
    counts: [u64; 10],
}

const NAMES: [&str; 10] = [
    "read",
    "write",
    "map",
    "truncate",
    "copy_file_range",
    "sendfile",
    "fsync",
    "drop_caches",
    "reopen",
    "extend",
];

impl Fsx {
    fn note(&mut self, s: String) {
        if self.history.len() == HISTORY {
            self.history.remove(0);
        }
        self.history.push(format!("{}: {s}", self.op));
    }

    fn fail(&self, what: String) -> ! {
        println!("fsxa: FAIL at operation {}: {what}", self.op);
        println!("fsxa: last operations:");
        for h in &self.history {
            println!("fsxa:   {h}");
        }
        sys::exit(1);
    }

    /// An offset: a page boundary half the time, else any byte, up to `limit`.
    fn offset(&mut self, limit: u64) -> u64 {
        let o = self.rng.below(limit + 1);
        if self.rng.one_in(2) {
            o / PAGE * PAGE
        } else {
            o
        }
    }

    /// A length: whole pages half the time, else small or up to a few pages.
    fn length(&mut self) -> u64 {
        match self.rng.below(4) {
            0 | 1 => (1 + self.rng.below(8)) * PAGE,
            2 => 1 + self.rng.below(300),
            _ => 1 + self.rng.below(6 * PAGE),
        }
    }

    fn check(&self, what: &str, got: &[u8], want: &[u8]) {
        if got != want {
            let at = got.iter().zip(want).position(|(a, b)| a != b);
            self.fail(format!(
                "{what}: {} bytes, expected {}; first difference at {at:?}",
                got.len(),
                want.len()
            ));
        }
    }

    fn read(&mut self) {
        if !self.direct.is_empty() && self.rng.one_in(2) {
            return self.direct_read();
        }
        let f = self.rng.below(self.fds.len() as u64) as usize;
        let size = self.model[f].len() as u64;
        let off = self.offset(size + PAGE);
        let len = self.length();
        self.note(format!("read file {f} at {off}, {len} bytes (size {size})"));
        let mut buf = vec![0u8; len as usize];
        let n = call(
            NR_PREAD,
            [
                self.fds[f] as usize,
                buf.as_mut_ptr() as usize,
                len as usize,
                off as usize,
                0,
                0,
            ],
        )
        .unwrap_or_else(|e| self.fail(format!("pread: {e}")));
        let want = if off >= size {
            &[][..]
        } else {
            &self.model[f][off as usize..(off + len).min(size) as usize]
        };
        self.check("pread", &buf[..n], want);
    }

    /// A length for direct I/O: [`Fsx::length`] rounded up to whole 512-byte sectors.
    fn direct_length(&mut self) -> u64 {
        self.length().next_multiple_of(512)
    }

    fn direct_read(&mut self) {
        let f = self.rng.below(self.fds.len() as u64) as usize;
        let size = self.model[f].len() as u64;
        let off = self.offset(size + PAGE) / 512 * 512;
        let len = self.direct_length();
        self.note(format!(
            "direct read file {f} at {off}, {len} bytes (size {size})"
        ));
        let n = call(
            NR_PREAD,
            [
                self.direct[f] as usize,
                self.aligned.as_mut_ptr() as usize,
                len as usize,
                off as usize,
                0,
                0,
            ],
        )
        .unwrap_or_else(|e| self.fail(format!("direct pread: {e}")));
        let want = if off >= size {
            &[][..]
        } else {
            &self.model[f][off as usize..(off + len).min(size) as usize]
        };
        self.check("direct pread", &self.aligned[..n.min(len as usize)], want);
    }

    fn direct_write(&mut self) {
        let f = self.rng.below(self.fds.len() as u64) as usize;
        let off = self.offset(MAX_SIZE) / 512 * 512;
        let len = self.direct_length();
        let data: Vec<u8> = (0..len).map(|_| self.rng.next_u64() as u8).collect();
        self.note(format!("direct write file {f} at {off}, {len} bytes"));
        self.aligned[..len as usize].copy_from_slice(&data);
        let n = call(
            NR_PWRITE,
            [
                self.direct[f] as usize,
                self.aligned.as_ptr() as usize,
                len as usize,
                off as usize,
                0,
                0,
            ],
        )
        .unwrap_or_else(|e| self.fail(format!("direct pwrite: {e}")));
        if n as u64 != len {
            self.fail(format!("direct pwrite wrote {n} of {len}"));
        }
        store(&mut self.model[f], off, &data);
    }

    fn write(&mut self) {
        if !self.direct.is_empty() && self.rng.one_in(2) {
            return self.direct_write();
        }
        let f = self.rng.below(self.fds.len() as u64) as usize;
        let off = self.offset(MAX_SIZE);
        let len = self.length();
        let data: Vec<u8> = (0..len).map(|_| self.rng.next_u64() as u8).collect();
        self.note(format!("write file {f} at {off}, {len} bytes"));
        let n = call(
            NR_PWRITE,
            [
                self.fds[f] as usize,
                data.as_ptr() as usize,
                len as usize,
                off as usize,
                0,
                0,
            ],
        )
        .unwrap_or_else(|e| self.fail(format!("pwrite: {e}")));
        if n as u64 != len {
            self.fail(format!("pwrite wrote {n} of {len}"));
        }
        store(&mut self.model[f], off, &data);
    }

    /// Loads and stores through a shared mapping of the whole file.
    fn map(&mut self) {
        let f = self.rng.below(self.fds.len() as u64) as usize;
        let size = self.model[f].len();
        if size == 0 {
            return;
        }
        let stores = self.rng.below(4);
        self.note(format!(
            "map file {f} ({size} bytes), 8 loads, {stores} stores"
        ));
        let len = size.div_ceil(PAGE as usize) * PAGE as usize;
        let base = call(
            NR_MMAP,
            [0, len, PROT_RW, MAP_SHARED, self.fds[f] as usize, 0],
        )
        .unwrap_or_else(|e| self.fail(format!("mmap: {e}")));
        for _ in 0..8 {
            let at = self.rng.below(size as u64) as usize;
            // SAFETY: `at` is inside the file, so inside the mapping just made.
            let got = unsafe { core::ptr::read_volatile((base + at) as *const u8) };
            if got != self.model[f][at] {
                self.fail(format!(
                    "load at {at}: {got:#x}, expected {:#x}",
                    self.model[f][at]
                ));
            }
        }
        for _ in 0..stores {
            let at = self.rng.below(size as u64) as usize;
            let v = self.rng.next_u64() as u8;
            // SAFETY: as above; the mapping is writable and shared.
            unsafe { core::ptr::write_volatile((base + at) as *mut u8, v) };
            self.model[f][at] = v;
        }
        if let Err(e) = call(NR_MUNMAP, [base, len, 0, 0, 0, 0]) {
            self.fail(format!("munmap: {e}"));
        }
    }

    fn truncate(&mut self) {
        let f = self.rng.below(self.fds.len() as u64) as usize;
        let size = self.offset(MAX_SIZE);
        self.note(format!("truncate file {f} to {size}"));
        if let Err(e) = sys::ftruncate(self.fds[f], size) {
            self.fail(format!("ftruncate: {e}"));
        }
        self.model[f].resize(size as usize, 0);
    }

    /// `copy_file_range` with both offsets given; within one file, overlap is EINVAL.
    fn copy_range(&mut self) {
        let (s, d) = self.two_files(true);
        let ssize = self.model[s].len() as u64;
        let (mut off_in, mut off_out) = (self.offset(ssize + 100), self.offset(MAX_SIZE));
        let len = self.length();
        self.note(format!("copy_file_range file {s} at {off_in} -> file {d} at {off_out}, {len} bytes (sizes {ssize}, {})", self.model[d].len()));
        let (in0, out0) = (off_in, off_out);
        let r = call(
            NR_COPY_FILE_RANGE,
            [
                self.fds[s] as usize,
                &mut off_in as *mut u64 as usize,
                self.fds[d] as usize,
                &mut off_out as *mut u64 as usize,
                len as usize,
                0,
            ],
        );
        let n = len.min(ssize.saturating_sub(in0));
        let overlap = s == d && n > 0 && out0 < in0 + n && in0 < out0 + n;
        match r {
            Err(e) if e == EINVAL && overlap => return,
            Err(e) => self.fail(format!("copy_file_range: {e} (overlap {overlap})")),
            Ok(_) if overlap => self.fail("copy_file_range of overlapping ranges succeeded".into()),
            Ok(k) if k as u64 != n => {
                self.fail(format!("copy_file_range copied {k}, expected {n}"))
            }
            Ok(_) => {}
        }
        if off_in != in0 + n || off_out != out0 + n {
            self.fail(format!("offsets after the copy: {off_in}, {off_out}"));
        }
        if n > 0 {
            let bytes = self.model[s][in0 as usize..(in0 + n) as usize].to_vec();
            store(&mut self.model[d], out0, &bytes);
        }
    }

    /// `sendfile` between two files: to the target's file offset, from an offset word.
    fn sendfile(&mut self) {
        let (s, d) = self.two_files(false);
        let ssize = self.model[s].len() as u64;
        let (mut off_in, off_out) = (self.offset(ssize + 100), self.offset(MAX_SIZE));
        let len = self.length();
        self.note(format!(
            "sendfile file {s} at {off_in} -> file {d} at {off_out}, {len} bytes"
        ));
        let in0 = off_in;
        if let Err(e) = sys::lseek(self.fds[d], off_out as i64, sys::SEEK_SET) {
            self.fail(format!("lseek: {e}"));
        }
        let r = call(
            NR_SENDFILE,
            [
                self.fds[d] as usize,
                self.fds[s] as usize,
                &mut off_in as *mut u64 as usize,
                len as usize,
                0,
                0,
            ],
        );
        let n = len.min(ssize.saturating_sub(in0));
        match r {
            Ok(k) if k as u64 == n => {}
            Ok(k) => self.fail(format!("sendfile sent {k}, expected {n}")),
            Err(e) => self.fail(format!("sendfile: {e}")),
        }
        let pos = sys::lseek(self.fds[d], 0, sys::SEEK_CUR).unwrap_or(0) as u64;
        if off_in != in0 + n || pos != off_out + n {
            self.fail(format!("offsets after sendfile: in {off_in}, out {pos}"));
        }
        if n > 0 {
            let bytes = self.model[s][in0 as usize..(in0 + n) as usize].to_vec();
            store(&mut self.model[d], off_out, &bytes);
        }
    }

    /// Two files; the same one twice only if `same_ok`.
    fn two_files(&mut self, same_ok: bool) -> (usize, usize) {
        let n = self.fds.len() as u64;
        let s = self.rng.below(n) as usize;
        let mut d = self.rng.below(n) as usize;
        if d == s && (!same_ok || self.rng.one_in(2)) {
            d = (s + 1) % n as usize;
        }
        (s, d)
    }

    fn fsync(&mut self) {
        let f = self.rng.below(self.fds.len() as u64) as usize;
        self.note(format!("fsync file {f}"));
        if let Err(e) = sys::fsync(self.fds[f]) {
            self.fail(format!("fsync: {e}"));
        }
    }

    fn drop_caches(&mut self) {
        self.note("drop_caches".into());
        sys::sync();
        if let Ok(fd) = sys::open(c"/proc/sys/vm/drop_caches", sys::O_WRONLY, 0) {
            let _ = sys::write_all(fd, b"3\n");
            let _ = sys::close(fd);
        }
    }

    fn reopen(&mut self) {
        let f = self.rng.below(self.fds.len() as u64) as usize;
        self.note(format!("reopen file {f}"));
        let _ = sys::close(self.fds[f]);
        self.fds[f] = sys::open(&self.paths[f], sys::O_RDWR, 0)
            .unwrap_or_else(|e| self.fail(format!("reopen: {e}")));
    }

    /// A whole-page write past the end (files grow, so later copies have pages to share).
    fn extend(&mut self) {
        let f = self.rng.below(self.fds.len() as u64) as usize;
        let off = (self.model[f].len() as u64).div_ceil(PAGE) * PAGE;
        if off >= MAX_SIZE {
            return;
        }
        let data: Vec<u8> = (0..PAGE).map(|_| self.rng.next_u64() as u8).collect();
        self.note(format!("extend file {f} at {off}"));
        let n = call(
            NR_PWRITE,
            [
                self.fds[f] as usize,
                data.as_ptr() as usize,
                data.len(),
                off as usize,
                0,
                0,
            ],
        )
        .unwrap_or_else(|e| self.fail(format!("pwrite: {e}")));
        if n != data.len() {
            self.fail(format!("pwrite wrote {n}"));
        }
        store(&mut self.model[f], off, &data);
    }

    fn step(&mut self) {
        // Weights: reads and writes most, copies often, the slow ones rarely.
        let k = match self.rng.below(100) {
            0..=17 => 0,
            18..=33 => 1,
            34..=43 => 2,
            44..=49 => 3,
            50..=67 => 4,
            68..=81 => 5,
            82..=85 => 6,
            86 => 7,
            87..=90 => 8,
            _ => 9,
        };
        self.counts[k] += 1;
        match k {
            0 => self.read(),
            1 => self.write(),
            2 => self.map(),
            3 => self.truncate(),
            4 => self.copy_range(),
            5 => self.sendfile(),
            6 => self.fsync(),
            7 => self.drop_caches(),
            8 => self.reopen(),
            _ => self.extend(),
        }
    }

    /// Every file read back whole and compared; its size and hash printed.
    fn finish(&mut self) {
        for f in 0..self.fds.len() {
            let size = self.model[f].len();
            let mut buf = vec![0u8; size + 1];
            let n = call(
                NR_PREAD,
                [
                    self.fds[f] as usize,
                    buf.as_mut_ptr() as usize,
                    size + 1,
                    0,
                    0,
                    0,
                ],
            )
            .unwrap_or_else(|e| self.fail(format!("final read: {e}")));
            self.check("final read", &buf[..n], &self.model[f]);
            let mut h = Sha256::new();
            h.update(&self.model[f]);
            let d = hex(&h.finish());
            println!(
                "fsxa: {} {size} {}",
                Bytes(self.paths[f].to_bytes()),
                Bytes(&d)
            );
        }
    }
}

/// `data` into `file` at `off`, zeros filling any gap past the end.
fn store(file: &mut Vec<u8>, off: u64, data: &[u8]) {
    let end = off as usize + data.len();
    if file.len() < end {
        file.resize(end, 0);
    }
    file[off as usize..end].copy_from_slice(data);
}

fn number(v: Option<&&CStr>, what: &str) -> u64 {
    v.and_then(|v| core::str::from_utf8(v.to_bytes()).ok()?.parse().ok())
        .unwrap_or_else(|| tools::die(2, format_args!("fsxa: {what} needs a number")))
}

fn main() -> i32 {
    let args = tools::operands();
    let (mut ops, mut seed, mut files, mut dir) = (10_000u64, 1u64, 3u64, None);
    let mut direct = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.to_bytes() {
            b"-n" => ops = number(it.next(), "-n"),
            b"-s" => seed = number(it.next(), "-s"),
            b"-f" => files = number(it.next(), "-f").clamp(1, 8),
            b"-d" => direct = true,
            _ if dir.is_none() => dir = Some(*a),
            _ => tools::die(
                2,
                format_args!("usage: fsxa [-n OPS] [-s SEED] [-f FILES] [-d] DIR"),
            ),
        }
    }
    let Some(dir) = dir else {
        tools::die(
            2,
            format_args!("usage: fsxa [-n OPS] [-s SEED] [-f FILES] [-d] DIR"),
        );
    };
    let _ = sys::mkdir(dir, 0o755);
    let paths: Vec<CString> = (0..files)
        .map(|i| {
            let mut p = dir.to_bytes().to_vec();
            p.extend_from_slice(format!("/fsxa-{i}").as_bytes());
            sys::cpath(&p)
        })
        .collect();
    let fds = paths
        .iter()
        .map(|p| {
            sys::open(p, sys::O_RDWR | sys::O_CREAT | sys::O_TRUNC, 0o644).unwrap_or_else(|e| {
                tools::die(1, format_args!("fsxa: {}: {e}", Bytes(p.to_bytes())))
            })
        })
        .collect();
    let direct_fds: Vec<i32> = if direct {
        paths
            .iter()
            .map(|p| {
                sys::open(p, sys::O_RDWR | sys::O_DIRECT, 0).unwrap_or_else(|e| {
                    tools::die(
                        1,
                        format_args!("fsxa: {} O_DIRECT: {e}", Bytes(p.to_bytes())),
                    )
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let map = sys::mmap_anon(DIRECT_BUF)
        .unwrap_or_else(|e| tools::die(1, format_args!("fsxa: mmap: {e}")));
    // SAFETY: a fresh anonymous read/write mapping of DIRECT_BUF bytes, page-aligned,
    // never unmapped; this is the only reference into it.
    let aligned = unsafe { core::slice::from_raw_parts_mut(map, DIRECT_BUF) };
    let mut fsx = Fsx {
        rng: Rng(seed ^ 0xf5a_f5a_f5a),
        paths,
        fds,
        direct: direct_fds,
        aligned,
        model: vec![Vec::new(); files as usize],
        history: Vec::new(),
        op: 0,
        counts: [0; 10],
    };
    println!("fsxa: seed {seed}, {ops} operations on {files} files");
    for i in 0..ops {
        fsx.op = i + 1;
        fsx.step();
    }
    fsx.finish();
    for fd in fsx.fds.iter().chain(&fsx.direct) {
        let _ = sys::close(*fd);
    }
    sys::sync();
    let mut line = String::from("fsxa: OK");
    for (n, c) in NAMES.iter().zip(fsx.counts) {
        line.push_str(&format!(" {n}={c}"));
    }
    println!("{line}");
    0
}

sys::entry!(main);
