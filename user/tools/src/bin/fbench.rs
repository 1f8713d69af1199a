//! `fbench`: buffered file I/O as a user sees it, the same static binary on AliasOS and
//! on Linux (`make bench-files` runs it on both, on the same QEMU machine and disk image).
//!
//! ```text
//! fbench [-n RUNS] [-c CP] [-w WORKLOADS] [-r DEV] SRC
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
//! * `copy_cfr`: SRC copied by `copy_file_range` calls, then `sync`;
//! * `copy_device`: SRC copied by the disk itself (NVMe Copy), then `sync`. On AliasOS
//!   that is `copy_file_range` (the kernel sends whole blocks to the device; the run fails
//!   if `copy_offload_bytes` did not grow by SRC's whole blocks). On Linux, which has no
//!   device-side file copy, the target is first written and synced (not timed), then
//!   both files' extents (`FIEMAP`) go to `/dev/nvme0n1` as Copy commands through the
//!   passthrough ioctl (`tools::nvme_copy`), then the device is flushed. Either way the
//!   target is then read back cold and compared with SRC (not timed). Where the disk
//!   cannot copy (AliasOS: a one-block `copy_file_range` left `copy_offload_bytes` as it
//!   was; Linux: no `/dev/nvme0n1` with the Copy command), the workload prints
//!   `FBENCH-SKIP copy_device` instead;
//! * `xdisk_sendfile`, `xdisk_rw`, `xdisk_direct`: SRC copied by `sendfile` calls, a
//!   read/write loop, or an `O_DIRECT` read/write loop (1 MiB, page-aligned buffer, then
//!   `fsync`) to `b/fbench-xcopy.bin` beside it (a second file system, on another disk,
//!   mounted at `b`), then `sync`;
//! * `copy_cfr_cache`: `copy_cfr` through the page cache: on AliasOS with
//!   `/proc/sys/vm/copy_offload` 0 for the run (the alias path, even on a disk that
//!   copies); on Linux, where there is no such file, the same as `copy_cfr`.
//!
//!
//! Direct I/O (`O_DIRECT`, page-aligned buffers), on SRC in place (a preallocated file)
//! and, with `-r DEV`, on the raw device DEV (its first 256 MiB; its data is overwritten;
//! `-r auto`: `/dev/vdb` or else `/dev/sdb`, the second disk):
//!
//! * `dread` / `raw_read`: sequential 1 MiB reads, one at a time, MiB/s;
//! * `dwrite` / `raw_write`: sequential 1 MiB writes, one at a time, then `fsync`, MiB/s;
//! * `drand_iops` / `raw_rand_iops`: 4 KiB reads at random 4 KiB-aligned offsets, one at
//!   a time (`pread`), for 3 s, reads per second;
//! * `drand32_iops` / `raw_rand32_iops`: the same with 32 reads in flight (Linux native
//!   AIO: `io_submit`, `io_getevents`), as `fio --ioengine=libaio --iodepth=32`.
//!
//! Each run prints `FBENCH <workload> <value>`. The direct writes also print
//! `FBENCH-WRITES <workload> <MiB/s of the writes alone> <seconds of the fsync>`: the
//! `fsync` at the end waits for the host to write its cache out, which costs both
//! systems alike. Where `/proc/vmstat` counts them (AliasOS): `FBENCH-CPU <workload>
//! <bytes per MiB>` (`data_copy_bytes`: bytes the CPU copied), and for direct workloads
//! `FBENCH-DMA <workload> <dma_pinned_bytes per byte moved> <bounce_bytes>`, and
//! `FBENCH-IRQ <workload> <disk interrupts per request> <device notifications per
//! request>` (`blk_interrupts`, `blk_notifies`). RUNS (default 3) runs per workload, in
//! the order given (default `read,write,copy_rw,copy_cp,copy_sendfile,copy_cfr`).
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

/// Open SRC to read and DST to write (created, truncated), both with `extra` flags.
fn open_pair(src: &CStr, dst: &CStr, extra: usize) -> (i32, i32) {
    let from = sys::open(src, sys::O_RDONLY | extra, 0).unwrap_or_else(|e| fail(src.to_bytes(), e));
    let to = sys::open(
        dst,
        sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC | extra,
        0o644,
    )
    .unwrap_or_else(|e| fail(dst.to_bytes(), e));
    (from, to)
}

/// SRC to DST by a read/write loop through `buf`, with `extra` open flags (`O_DIRECT`:
/// `buf` is page-aligned, and DST is `fsync`ed), then `sync`. The bytes copied.
fn copy_rw(src: &CStr, dst: &CStr, buf: &mut [u8], extra: usize) -> u64 {
    let (from, to) = open_pair(src, dst, extra);
    let n = tools::copy_fd(from, to, buf).unwrap_or_else(|(_, e)| fail(b"copy", e));
    if extra & sys::O_DIRECT != 0
        && let Err(e) = sys::fsync(to)
    {
        fail(b"fsync", e);
    }
    let _ = sys::close(from);
    let _ = sys::close(to);
    sys::sync();
    n
}

/// SRC to DST by repeated in-kernel copy calls (`sendfile` or `copy_file_range`), then
/// `sync`. The bytes the calls reported.
fn copy_in_kernel(src: &CStr, dst: &CStr, sendfile: bool) -> u64 {
    let (from, to) = open_pair(src, dst, 0);
    let mut total = 0u64;
    loop {
        let r = if sendfile {
            sys::sendfile(to, from, 1 << 30)
        } else {
            sys::copy_file_range(from, to, 1 << 30)
        };
        match r {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(sys::errno::EINTR) => {}
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
    total
}

/// The size of DST (what a copy by another program left).
fn size_of(dst: &CStr) -> u64 {
    sys::stat(dst).map_or(0, |st| st.st_size as u64)
}

/// The NVMe namespace `copy_device` copies on under Linux (SRC's file system must be
/// the whole of it).
const NVME_DEV: &CStr = c"/dev/nvme0n1";

/// Write `v` to AliasOS's `/proc/sys/vm/copy_offload`; false where there is none.
fn set_copy_offload(v: &[u8]) -> bool {
    match sys::open(c"/proc/sys/vm/copy_offload", sys::O_WRONLY, 0) {
        Ok(fd) => {
            if let Err(e) = sys::write_all(fd, v) {
                fail(b"/proc/sys/vm/copy_offload", e);
            }
            let _ = sys::close(fd);
            true
        }
        Err(_) => false,
    }
}

/// Whether the disk under SRC copies by itself: on AliasOS, a one-block
/// `copy_file_range` of SRC to DST grows `copy_offload_bytes`; on Linux, SRC's file system
/// is the whole of `/dev/nvme0n1` and it
/// answers Identify with the Copy command. DST is removed again.
fn device_copies(src: &CStr, dst: &CStr) -> bool {
    let Some(before) = vmstat(b"copy_offload_bytes") else {
        let Ok(file) = sys::open(src, sys::O_RDONLY, 0) else {
            return false;
        };
        let whole = tools::nvme_copy::on_device(file, NVME_DEV);
        let _ = sys::close(file);
        let Ok(dev) = sys::open(NVME_DEV, sys::O_RDONLY, 0) else {
            return false;
        };
        if !whole {
            let _ = sys::close(dev);
            return false;
        }
        let ok = tools::nvme_copy::namespace(dev)
            .and_then(|ns| tools::nvme_copy::limits(dev, ns))
            .is_ok();
        let _ = sys::close(dev);
        return ok;
    };
    let from = sys::open(src, sys::O_RDONLY, 0).unwrap_or_else(|e| fail(src.to_bytes(), e));
    let to = sys::open(dst, sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC, 0o644)
        .unwrap_or_else(|e| fail(dst.to_bytes(), e));
    let _ = sys::copy_file_range(from, to, 4096);
    let _ = sys::close(from);
    let _ = sys::close(to);
    let _ = sys::unlink(dst);
    vmstat(b"copy_offload_bytes").is_some_and(|after| after > before)
}

/// SRC to DST by the disk itself (see `copy_device` above). The caller checks DST
/// after taking the time.
fn copy_on_device(src: &CStr, dst: &CStr, size: u64, buf: &mut [u8]) -> u64 {
    match vmstat(b"copy_offload_bytes") {
        Some(before) => {
            let copied = copy_in_kernel(src, dst, false);
            let done = vmstat(b"copy_offload_bytes").unwrap_or(0) - before;
            if done != size / 4096 * 4096 {
                tools::die(
                    1,
                    format_args!("fbench: copy_device: the device copied {done} of {size} bytes"),
                );
            }
            copied
        }
        None => {
            // The commands cover the files' extents up to `size`; the copy is compared
            // with SRC afterwards.
            copy_by_passthrough(src, dst, size, buf);
            size
        }
    }
}

/// Linux: DST written and synced first (not timed: the caller's clock restarts after),
/// then copied over by NVMe Copy commands through the passthrough ioctl, then flushed.
fn copy_by_passthrough(src: &CStr, dst: &CStr, size: u64, buf: &mut [u8]) {
    use tools::nvme_copy;
    let dev = sys::open(NVME_DEV, sys::O_RDWR, 0).unwrap_or_else(|e| fail(NVME_DEV.to_bytes(), e));
    let nsid = nvme_copy::namespace(dev).unwrap_or_else(|e| fail(b"NVME_IOCTL_ID", e));
    let limits = nvme_copy::limits(dev, nsid).unwrap_or_else(|e| fail(b"NVMe Identify", e));
    write_file(dst, size, buf);
    let extents = |p: &CStr| {
        let fd = sys::open(p, sys::O_RDONLY, 0).unwrap_or_else(|e| fail(p.to_bytes(), e));
        let x = nvme_copy::extents(fd).unwrap_or_else(|e| fail(b"FIEMAP", e));
        let _ = sys::close(fd);
        x
    };
    let (from, to) = (extents(src), extents(dst));
    // The preparation is not part of the copy.
    PREPARED.store(now().to_bits(), core::sync::atomic::Ordering::Relaxed);
    let commands = nvme_copy::copy(dev, nsid, &from, &to, size, &limits)
        .unwrap_or_else(|e| fail(b"NVMe Copy", e));
    if let Err(e) = sys::fsync(dev) {
        fail(b"fsync /dev/nvme0n1", e);
    }
    eprintln!(
        "fbench: copy_device: {commands} Copy commands ({} + {} extents; {} ranges of {} blocks, {} blocks per command)",
        from.len(),
        to.len(),
        limits.ranges,
        limits.range_blocks,
        limits.command_blocks
    );
    let _ = sys::close(dev);
}

/// When a direct write workload's last write returned, before its `fsync` (`f64` bits;
/// 0: none): the writes alone are timed too.
static WRITTEN: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// When a workload's untimed preparation ended (`f64` bits; 0: none), for the clock.
static PREPARED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// SRC and DST hold the same bytes, read cold (Linux's page cache still has the DST
/// written before the device copied over it).
fn check_same(src: &CStr, dst: &CStr, buf: &mut [u8]) {
    cold();
    let open = |p: &CStr| sys::open(p, sys::O_RDONLY, 0).unwrap_or_else(|e| fail(p.to_bytes(), e));
    let (a, b) = (open(src), open(dst));
    let (left, right) = buf.split_at_mut(buf.len() / 2);
    let mut at = 0u64;
    loop {
        let n = sys::read_full(a, left).unwrap_or_else(|e| fail(src.to_bytes(), e));
        let m = sys::read_full(b, right).unwrap_or_else(|e| fail(dst.to_bytes(), e));
        if n != m || left[..n] != right[..n] {
            tools::die(
                1,
                format_args!("fbench: copy_device: the copy differs near byte {at}"),
            );
        }
        if n == 0 {
            break;
        }
        at += n as u64;
    }
    let _ = sys::close(a);
    let _ = sys::close(b);
}

/// `blk_requests`, `blk_notifies` and `blk_interrupts` of /proc/vmstat (AliasOS).
fn device_signals() -> Option<(u64, u64, u64)> {
    Some((
        vmstat(b"blk_requests")?,
        vmstat(b"blk_notifies")?,
        vmstat(b"blk_interrupts")?,
    ))
}

/// Counter `name` of /proc/vmstat (None where there is no such counter).
fn vmstat(name: &[u8]) -> Option<u64> {
    let fd = sys::open(c"/proc/vmstat", sys::O_RDONLY, 0).ok()?;
    let mut buf = alloc::vec![0u8; 16 << 10];
    let n = sys::read_full(fd, &mut buf).ok()?;
    let _ = sys::close(fd);
    buf[..n].split(|&c| c == b'\n').find_map(|l| {
        let v = l.strip_prefix(name)?.strip_prefix(b" ")?;
        core::str::from_utf8(v).ok()?.trim().parse().ok()
    })
}

/// `data_copy_bytes`: bytes the CPU copied.
fn cpu_copied() -> Option<u64> {
    vmstat(b"data_copy_bytes")
}

// ---- direct I/O ----------------------------------------------------------------------

/// Bytes of a raw device the direct workloads use.
const RAW_SPAN: u64 = 256 << 20;
/// How long a random-read workload runs.
const RAND_SECS: f64 = 3.0;
const QD: usize = 32;

/// A page-aligned buffer of `len` bytes (an anonymous mapping, kept for the run).
fn aligned(len: usize) -> &'static mut [u8] {
    let p = sys::mmap_anon(len).unwrap_or_else(|e| fail(b"mmap", e));
    // SAFETY: a fresh private read/write mapping of `len` bytes that is never unmapped;
    // this is the only reference into it.
    unsafe { core::slice::from_raw_parts_mut(p, len) }
}

fn open_direct(path: &CStr, write: bool) -> i32 {
    let mode = if write { sys::O_RDWR } else { sys::O_RDONLY };
    sys::open(path, mode | sys::O_DIRECT, 0).unwrap_or_else(|e| fail(path.to_bytes(), e))
}

fn raw(n: usize, a: [usize; 5]) -> Result<usize, sys::Errno> {
    let args = [a[0], a[1], a[2], a[3], a[4], 0];
    // Each pointer in `args` is into a buffer or structure of this program.
    // SAFETY: those buffers and structures live across the call.
    unsafe { sys::syscall(n, args) }
}

/// Sequential 1 MiB direct reads or writes over `span` bytes of `path`.
fn direct_seq(path: &CStr, span: u64, write: bool, buf: &mut [u8]) -> u64 {
    let fd = open_direct(path, write);
    let mut at = 0u64;
    while at + MIB as u64 <= span {
        let r = if write {
            raw(
                18,
                [fd as usize, buf.as_ptr() as usize, MIB, at as usize, 0],
            )
        } else {
            raw(
                17,
                [fd as usize, buf.as_mut_ptr() as usize, MIB, at as usize, 0],
            )
        };
        match r {
            Ok(n) if n == MIB => at += MIB as u64,
            Ok(_) => break,
            Err(e) => fail(b"direct transfer", e),
        }
    }
    if write {
        WRITTEN.store(now().to_bits(), core::sync::atomic::Ordering::Relaxed);
        if let Err(e) = sys::fsync(fd) {
            fail(b"fsync", e);
        }
    }
    let _ = sys::close(fd);
    at
}

/// Random 4 KiB direct reads over `span` bytes of `path` for [`RAND_SECS`], `depth` at
/// a time; returns the reads done and the seconds taken.
fn direct_rand(path: &CStr, span: u64, depth: usize, buf: &mut [u8]) -> (u64, f64) {
    let fd = open_direct(path, false);
    let mut rng = tools::rng::Rng(0x5eed ^ span);
    let pages = span / 4096;
    let t0 = now();
    let mut done = 0u64;
    if depth == 1 {
        while now() - t0 < RAND_SECS {
            for _ in 0..64 {
                let off = rng.below(pages) * 4096;
                if let Err(e) = raw(
                    17,
                    [
                        fd as usize,
                        buf.as_mut_ptr() as usize,
                        4096,
                        off as usize,
                        0,
                    ],
                ) {
                    fail(b"pread", e);
                }
            }
            done += 64;
        }
    } else {
        let mut ctx = 0u64;
        if let Err(e) = raw(206, [depth, &mut ctx as *mut u64 as usize, 0, 0, 0]) {
            fail(b"io_setup", e);
        }
        // struct iocb: data, key+rw_flags, opcode+reqprio+fildes, buf, nbytes, offset,
        // reserved2, flags+resfd.
        let mut cbs = alloc::vec![[0u64; 8]; depth];
        let mut ptrs: Vec<usize> = Vec::with_capacity(depth);
        let mut events = alloc::vec![[0u64; 4]; depth];
        let submit = |i: usize, cbs: &mut [[u64; 8]], rng: &mut tools::rng::Rng| {
            let cb = &mut cbs[i];
            *cb = [0; 8];
            cb[0] = i as u64;
            cb[2] = (fd as u64) << 32; // opcode 0 (PREAD) in the low half
            cb[3] = buf.as_ptr() as u64 + 4096 * i as u64;
            cb[4] = 4096;
            cb[5] = rng.below(pages) * 4096;
        };
        for i in 0..depth {
            submit(i, &mut cbs, &mut rng);
            ptrs.push(cbs[i].as_ptr() as usize);
        }
        if let Err(e) = raw(209, [ctx as usize, depth, ptrs.as_ptr() as usize, 0, 0]) {
            fail(b"io_submit", e);
        }
        let mut in_flight = depth;
        while in_flight > 0 {
            let got = raw(
                208,
                [ctx as usize, 1, depth, events.as_mut_ptr() as usize, 0],
            )
            .unwrap_or_else(|e| fail(b"io_getevents", e));
            in_flight -= got;
            ptrs.clear();
            // One clock read per batch reaped, not per event: fio reads its clock from
            // the vDSO, without a system call; this program makes one on both systems.
            let more = now() - t0 < RAND_SECS;
            for ev in &events[..got] {
                if ev[2] as i64 != 4096 {
                    fail(b"AIO read", sys::Errno(-(ev[2] as i64) as i32));
                }
                done += 1;
                if more {
                    let i = ev[0] as usize;
                    submit(i, &mut cbs, &mut rng);
                    ptrs.push(cbs[i].as_ptr() as usize);
                }
            }
            if !ptrs.is_empty() {
                let n = raw(
                    209,
                    [ctx as usize, ptrs.len(), ptrs.as_ptr() as usize, 0, 0],
                )
                .unwrap_or_else(|e| fail(b"io_submit", e));
                in_flight += n;
            }
        }
        let _ = raw(207, [ctx as usize, 0, 0, 0, 0]);
    }
    let _ = sys::close(fd);
    (done, (now() - t0).max(1e-9))
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
    let mut dev: Option<&CStr> = None;
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
            b"-r" => {
                dev =
                    Some(it.next().unwrap_or_else(|| {
                        tools::die(2, format_args!("fbench: -r needs a device"))
                    }))
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
                format_args!("usage: fbench [-n RUNS] [-c CP] [-w LIST] [-r DEV] SRC"),
            ),
        }
    }
    let Some(src) = src else {
        tools::die(
            2,
            format_args!("usage: fbench [-n RUNS] [-c CP] [-w LIST] [-r DEV] SRC"),
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
    let xfile = scratch(b"b/fbench-xcopy.bin");
    let buf = aligned(MIB);
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i * 7 + 1) as u8;
    }
    // `-r auto`: the second disk, vdb or sdb (the first holds SRC).
    if dev.is_some_and(|d| d.to_bytes() == b"auto") {
        dev = [c"/dev/vdb", c"/dev/sdb"]
            .into_iter()
            .find(|d| sys::open(d, sys::O_RDONLY, 0).map(sys::close).is_ok());
    }
    let raw_dev =
        || dev.unwrap_or_else(|| tools::die(2, format_args!("fbench: raw workloads need -r DEV")));
    println!(
        "fbench: {} ({} MiB), {runs} runs per workload",
        Bytes(src.to_bytes()),
        size >> 20
    );
    for w in workloads.split(|&c| c == b',') {
        // A copy between disks needs `b` to be another file system (a failed mount
        // would leave the source's own directory there).
        if w.starts_with(b"xdisk") {
            let dev = |p: &CStr| {
                sys::stat(p)
                    .map(|st| st.st_dev)
                    .unwrap_or_else(|e| fail(p.to_bytes(), e))
            };
            if dev(&scratch(b"b")) == dev(src) {
                tools::die(
                    1,
                    format_args!("fbench: {}: b/ is on SRC's own file system", Bytes(w)),
                );
            }
        }
        if w == b"copy_device" && !device_copies(src, &cfile) {
            println!("FBENCH-SKIP copy_device: the disk does not copy by itself");
            continue;
        }
        for _ in 0..runs {
            let _ = sys::unlink(&wfile);
            let _ = sys::unlink(&cfile);
            let _ = sys::unlink(&xfile);
            cold();
            let copied0 = cpu_copied();
            let (dma0, bounce0) = (vmstat(b"dma_pinned_bytes"), vmstat(b"bounce_bytes"));
            let doorbells0 = device_signals();
            let t0 = now();
            let (mut value, mut moved) = (None, 0u64);
            let bytes = match w {
                b"dread" => direct_seq(src, size, false, buf),
                b"dwrite" => direct_seq(src, size, true, buf),
                b"raw_read" => direct_seq(raw_dev(), RAW_SPAN, false, buf),
                b"raw_write" => direct_seq(raw_dev(), RAW_SPAN, true, buf),
                b"drand_iops" | b"drand32_iops" | b"raw_rand_iops" | b"raw_rand32_iops" => {
                    let depth = if w.contains(&b'3') { QD } else { 1 };
                    let path = if w.starts_with(b"raw") {
                        raw_dev()
                    } else {
                        src
                    };
                    let span = if w.starts_with(b"raw") {
                        RAW_SPAN
                    } else {
                        size
                    };
                    let (n, secs) = direct_rand(path, span, depth, buf);
                    value = Some(n as f64 / secs);
                    moved = n * 4096;
                    moved
                }
                b"read" => read_all(src, buf),
                b"write" => {
                    write_file(&wfile, size, buf);
                    size
                }
                b"copy_rw" => copy_rw(src, &cfile, buf, 0),
                b"copy_cp" => {
                    run_cp(cp, src, &cfile);
                    size_of(&cfile)
                }
                b"copy_sendfile" => copy_in_kernel(src, &cfile, true),
                b"copy_cfr" => copy_in_kernel(src, &cfile, false),
                b"copy_device" => copy_on_device(src, &cfile, size, buf),
                b"xdisk_sendfile" => copy_in_kernel(src, &xfile, true),
                b"xdisk_rw" => copy_rw(src, &xfile, buf, 0),
                b"xdisk_direct" => copy_rw(src, &xfile, buf, sys::O_DIRECT),
                b"copy_cfr_cache" => {
                    let knob = set_copy_offload(b"0\n");
                    let n = copy_in_kernel(src, &cfile, false);
                    if knob {
                        set_copy_offload(b"1\n");
                    }
                    n
                }
                other => tools::die(2, format_args!("fbench: unknown workload {}", Bytes(other))),
            };
            // A copy is timed over what it moved, which must be all of SRC.
            if (w.starts_with(b"copy") || w.starts_with(b"xdisk")) && bytes != size {
                tools::die(
                    1,
                    format_args!("fbench: {}: copied {bytes} of {size} bytes", Bytes(w)),
                );
            }
            let end = now();
            let prepared = f64::from_bits(PREPARED.swap(0, core::sync::atomic::Ordering::Relaxed));
            let secs = (end - t0.max(prepared)).max(1e-9);
            let direct = w.starts_with(b"d") || w.starts_with(b"raw");
            if direct && moved == 0 {
                moved = bytes;
            }
            println!(
                "FBENCH {} {:.1}",
                Bytes(w),
                value.unwrap_or(bytes as f64 / MIB as f64 / secs)
            );
            let written = f64::from_bits(WRITTEN.swap(0, core::sync::atomic::Ordering::Relaxed));
            if written > t0 {
                println!(
                    "FBENCH-WRITES {} {:.1} {:.4}",
                    Bytes(w),
                    bytes as f64 / MIB as f64 / (written - t0).max(1e-9),
                    end - written
                );
            }
            let per_mib = if direct { moved } else { size } as f64 / MIB as f64;
            if let (Some(a), Some(b)) = (copied0, cpu_copied()) {
                println!(
                    "FBENCH-CPU {} {:.0}",
                    Bytes(w),
                    b.saturating_sub(a) as f64 / per_mib.max(1e-9)
                );
            }
            if direct
                && let (Some(d0), Some(d1), Some(b0), Some(b1)) = (
                    dma0,
                    vmstat(b"dma_pinned_bytes"),
                    bounce0,
                    vmstat(b"bounce_bytes"),
                )
            {
                println!(
                    "FBENCH-DMA {} {:.3} {}",
                    Bytes(w),
                    d1.saturating_sub(d0) as f64 / (moved as f64).max(1.0),
                    b1.saturating_sub(b0)
                );
            }
            if let (Some((r0, n0, i0)), Some((r1, n1, i1))) = (doorbells0, device_signals()) {
                let requests = r1.saturating_sub(r0).max(1) as f64;
                println!(
                    "FBENCH-IRQ {} {:.3} {:.3}",
                    Bytes(w),
                    i1.saturating_sub(i0) as f64 / requests,
                    n1.saturating_sub(n0) as f64 / requests
                );
            }
            // After the counters: the check reads both files through the page cache.
            if w == b"copy_device" {
                check_same(src, &cfile, buf);
            }
        }
    }
    let _ = sys::unlink(&wfile);
    let _ = sys::unlink(&cfile);
    let _ = sys::unlink(&xfile);
    0
}

sys::entry!(main);
