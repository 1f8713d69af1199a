//! Direct I/O on a raw block device: `O_DIRECT` reads and writes DMA straight to and from
//! the caller's pinned pages (`/proc/vmstat` `dma_pinned_bytes`, `pinned_pages`), and
//! Linux native AIO keeps many of them in flight.
//!
//! The cases use the scratch disk, `/dev/vdb` or `/dev/nvme1n1` (skipped where there is
//! none; [`crate::util::scratch_disk`]). The host fills
//! it with [`dev_word`] before the run, injects EIO at sector [`EIO_SECTOR`] (QEMU
//! blkdebug), and afterwards checks that exactly the regions the cases write hold
//! [`written_word`] and everything else is as it was.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use sys::errno::*;
use sys::{O_CREAT, O_DIRECT, O_RDONLY, O_RDWR, O_TRUNC};

use crate::util::nr;
use crate::util::*;
use crate::{ensure, say};

const MIB: usize = 1 << 20;

/// The sector whose reads and writes fail (blkdebug on the host side).
pub const EIO_SECTOR: u64 = 24 * 2048;
/// Written by `direct_rw` (1 MiB), from the shared mapping (64 KiB), by AIO (128 KiB)
/// and by the page-cache coherence case (64 KiB).
pub const WRITTEN: [(u64, u64); 4] = [
    (16 << 20, 1 << 20),
    (17 << 20, 64 << 10),
    (18 << 20, 128 << 10),
    (20 << 20, 64 << 10),
];

/// The disk's word at byte offset `o` (a multiple of 8) before the run.
pub fn dev_word(o: u64) -> u64 {
    o.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5a5a_0000_a5a5
}

/// The word the cases write at byte offset `o`.
pub fn written_word(o: u64) -> u64 {
    !dev_word(o)
}

#[rustfmt::skip]
pub const CASES: &[Case] = &[
    ("direct: O_DIRECT reads and writes of a raw disk DMA to pinned pages (read, pwrite, preadv, pwritev2)", direct_rw),
    ("direct: alignment EINVAL, bad buffers EFAULT, the end of the disk, an injected EIO; no pin left", direct_errors),
    ("direct: a MAP_SHARED file mapping as the buffer of direct reads and writes", direct_shared_mapping),
    ("direct: Linux AIO keeps 32 requests in flight (io_setup/submit/getevents/cancel/destroy)", aio_cases),
    ("direct: io_submit reads iocbs wherever they lie; an unreadable one ends the batch there", aio_iocb_placement),
    ("direct: munmap, exit and fork while a direct read is in flight", direct_in_flight),
    ("direct: a raw disk's page cache and O_DIRECT on it agree (buffered writes, direct reads and back)", raw_cache_coherence),
    ("direct: O_DIRECT on an ext2 file, coherent with buffered and mapped I/O (holes, EOF, growth)", file_direct),
    ("direct: direct writes while another process maps and reads the range", file_direct_vs_mapper),
    ("direct: the buffer is a MAP_SHARED mapping of the same file (same and other ranges)", file_direct_own_mapping),
    ("direct: reads into a MAP_PRIVATE file mapping never reach the file; AIO vectored appends once", file_direct_private_and_append),
    ("direct: AIO batches of direct reads while another process truncates the file", file_aio_vs_truncate),
];

/// A transfer that must move exactly `n` bytes.
fn full(what: &str, r: Result<usize, Errno>, n: usize) -> Res {
    let got = ok(what, r)?;
    ensure!(got == n, "{what}: {got} bytes, expected {n}");
    Ok(())
}

/// The raw disk open `O_RDWR | O_DIRECT`, or None (skip) where there is none.
fn open_dev() -> Result<Option<i32>, String> {
    let Some(dev) = scratch_disk() else {
        say!("# no scratch disk: skipped\n");
        return Ok(None);
    };
    match open_s(dev, O_RDWR | O_DIRECT, 0) {
        Ok(fd) => Ok(Some(fd)),
        Err(ENOENT) | Err(ENXIO) => {
            say!("# no {dev}: skipped\n");
            Ok(None)
        }
        Err(e) => Err(format!("open {dev} O_DIRECT: {}", ename(e))),
    }
}

fn pread(fd: i32, buf: usize, len: usize, off: u64) -> Result<usize, Errno> {
    sc(nr::PREAD64, &[fd as usize, buf, len, off as usize])
}

fn pwrite(fd: i32, buf: usize, len: usize, off: u64) -> Result<usize, Errno> {
    sc(nr::PWRITE64, &[fd as usize, buf, len, off as usize])
}

/// Fill `len` bytes at `buf` with the words `f` gives for disk offsets from `off`.
fn fill_for(buf: usize, len: usize, off: u64, f: fn(u64) -> u64) {
    fill64(buf, len, |i| f(off + 8 * i as u64));
}

fn check_for(what: &str, buf: usize, len: usize, off: u64, f: fn(u64) -> u64) -> Res {
    check64(buf, len, |i| f(off + 8 * i as u64)).map_err(|e| format!("{what}: {e}"))
}

/// The pins of finished I/O are gone (AliasOS only): `pinned_pages` back to 0, allowing
/// a moment for a completion still unwinding.
fn no_pins_left(what: &str) -> Res {
    for _ in 0..50 {
        match vmstat("pinned_pages") {
            None | Some(0) => return Ok(()),
            Some(_) => sleep_ms(10),
        }
    }
    Err(format!(
        "{what}: pinned_pages is {:?}, expected 0",
        vmstat("pinned_pages")
    ))
}

fn direct_rw() -> Res {
    let Some(fd) = open_dev()? else {
        return Ok(());
    };
    let (w, r) = (anon(MIB)?, anon(MIB)?);
    fill_for(w, MIB, WRITTEN[0].0, written_word);
    // Reading /proc/vmstat costs what it costs; measure it to leave it out.
    let copy0 = vmstat("data_copy_bytes");
    let copy1 = vmstat("data_copy_bytes");
    let (dma0, bounce0) = (vmstat("dma_pinned_bytes"), vmstat("bounce_bytes"));
    full(
        "pwrite O_DIRECT 1 MiB",
        pwrite(fd, w, MIB, WRITTEN[0].0),
        MIB,
    )?;
    full("pread O_DIRECT 1 MiB", pread(fd, r, MIB, WRITTEN[0].0), MIB)?;
    check_for("read back", r, MIB, WRITTEN[0].0, written_word)?;
    // read() at the file offset, which advances.
    ok("lseek", lseek(fd, 64 << 10, 0))?;
    full("read O_DIRECT", sc(nr::READ, &[fd as usize, r, 8192]), 8192)?;
    check_for("read()", r, 8192, 64 << 10, dev_word)?;
    let pos = ok("lseek", lseek(fd, 0, 1))?;
    ensure!(pos == (64 << 10) + 8192, "offset after read(): {pos}");
    // preadv: two iovecs, the second one page further in memory.
    let iov: [usize; 4] = [r, 4096, r + 8192, 4096];
    full(
        "preadv O_DIRECT",
        sc(
            nr::PREADV,
            &[fd as usize, iov.as_ptr() as usize, 2, 4096 * 5],
        ),
        8192,
    )?;
    check_for("preadv 1", r, 4096, 4096 * 5, dev_word)?;
    check_for("preadv 2", r + 8192, 4096, 4096 * 6, dev_word)?;
    // pwritev2 of what the disk holds there already (the host checks nothing moved).
    let iov: [usize; 2] = [r, 4096];
    full(
        "pwritev2 O_DIRECT",
        sc(
            nr::PWRITEV2,
            &[fd as usize, iov.as_ptr() as usize, 1, 4096 * 5, 0, 0],
        ),
        4096,
    )?;
    let copy2 = vmstat("data_copy_bytes");
    if let (Some(c0), Some(c1), Some(c2)) = (copy0, copy1, copy2) {
        let per_read = c1 - c0;
        // Three more vmstat reads happened after copy1 (dma0, bounce0, copy2).
        ensure!(
            c2 - c1 <= 3 * per_read,
            "data_copy_bytes rose by {} (vmstat reads cost {per_read} each): the CPU copied data",
            c2 - c1
        );
    }
    if let (Some(d0), Some(d1)) = (dma0, vmstat("dma_pinned_bytes")) {
        let want = (2 * MIB + 8192 + 8192 + 4096) as u64;
        ensure!(
            d1 - d0 == want,
            "dma_pinned_bytes rose by {}, expected {want}",
            d1 - d0
        );
    }
    if let (Some(b0), Some(b1)) = (bounce0, vmstat("bounce_bytes")) {
        ensure!(b1 == b0, "bounce_bytes rose by {}", b1 - b0);
    }
    no_pins_left("after the transfers")?;
    let _ = close(fd);
    Ok(())
}

fn direct_errors() -> Res {
    let Some(fd) = open_dev()? else {
        return Ok(());
    };
    let buf = anon(64 << 10)?;
    let size = ok("fstat", fstat(fd))?.st_size as u64;
    // BLKDISCARD erases: a descriptor open read-only may not (EBADF, as on Linux).
    let dev = scratch_disk().ok_or("the scratch disk went away")?;
    let ro = ok("open read-only", open_s(dev, O_RDONLY, 0))?;
    let range: [u64; 2] = [16 << 20, 4096];
    want(
        "BLKDISCARD on a read-only descriptor",
        sc(nr::IOCTL, &[ro as usize, 0x1277, range.as_ptr() as usize]),
        EBADF,
    )?;
    let _ = close(ro);
    want("misaligned offset", pread(fd, buf, 4096, 100), EINVAL)?;
    want("misaligned length", pread(fd, buf, 1000, 0), EINVAL)?;
    want("misaligned buffer", pread(fd, buf + 8, 4096, 0), EINVAL)?;
    want("misaligned write", pwrite(fd, buf + 8, 4096, 0), EINVAL)?;
    want("kernel buffer", pread(fd, KERNEL_BASE, 4096, 0), EFAULT)?;
    let gone = anon(8192)?;
    ok("munmap", munmap(gone, 8192))?;
    want("unmapped buffer", pread(fd, gone, 4096, 0), EFAULT)?;
    // The first page is fine, the second is not: nothing is done, nothing stays pinned.
    let half = anon(8192)?;
    ok("munmap", munmap(half + 4096, 4096))?;
    want("half-unmapped buffer", pread(fd, half, 8192, 0), EFAULT)?;
    want(
        "write from kernel memory",
        pwrite(fd, KERNEL_BASE, 4096, 0),
        EFAULT,
    )?;
    full("read at the end", pread(fd, buf, 4096, size), 0)?;
    full(
        "read across the end",
        pread(fd, buf, 8192, size - 4096),
        4096,
    )?;
    check_for("the last page", buf, 4096, size - 4096, dev_word)?;
    want("write at the end", pwrite(fd, buf, 4096, size), ENOSPC)?;
    want(
        "read of the failing sector",
        pread(fd, buf, 4096, EIO_SECTOR * 512),
        EIO,
    )?;
    want(
        "write of the failing sector",
        pwrite(fd, buf, 4096, EIO_SECTOR * 512),
        EIO,
    )?;
    no_pins_left("after the errors")?;
    // The disk still works.
    full("pread", pread(fd, buf, 4096, 0), 4096)?;
    check_for("sector 0", buf, 4096, 0, dev_word)?;
    let _ = close(fd);
    Ok(())
}

fn direct_shared_mapping() -> Res {
    let Some(fd) = open_dev()? else {
        return Ok(());
    };
    const LEN: usize = 64 << 10;
    let path = "/mnt/systest/direct_map.bin";
    let f = ok(
        "create",
        open_s(path, sys::O_CREAT | O_RDWR | sys::O_TRUNC, 0o644),
    )?;
    write_all("fill", f, &vec![0u8; LEN])?;
    let map = ok(
        "mmap MAP_SHARED",
        mmap(0, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, f as usize, 0),
    )?;
    // Device -> the file's page-cache frames (through the mapping).
    full(
        "direct read into the mapping",
        pread(fd, map, LEN, 4 * MIB as u64),
        LEN,
    )?;
    check_for("mapping", map, LEN, 4 * MIB as u64, dev_word)?;
    let mut back = vec![0u8; LEN];
    ok("lseek", lseek(f, 0, 0))?;
    full("read the file", sys::read_full(f, &mut back), LEN)?;
    check64(back.as_ptr() as usize, LEN, |i| {
        dev_word(4 * MIB as u64 + 8 * i as u64)
    })
    .map_err(|e| format!("read() of the file after the direct read: {e}"))?;
    // The mapping -> device.
    fill_for(map, LEN, WRITTEN[1].0, written_word);
    full(
        "direct write from the mapping",
        pwrite(fd, map, LEN, WRITTEN[1].0),
        LEN,
    )?;
    let r = anon(LEN)?;
    full("read back", pread(fd, r, LEN, WRITTEN[1].0), LEN)?;
    check_for(
        "written from the mapping",
        r,
        LEN,
        WRITTEN[1].0,
        written_word,
    )?;
    ok("munmap", munmap(map, LEN))?;
    let _ = close(f);
    let _ = close(fd);
    no_pins_left("after the mapping cases")
}

fn raw_cache_coherence() -> Res {
    let Some(d) = open_dev()? else {
        return Ok(());
    };
    const LEN: usize = 64 << 10;
    let (at, _) = WRITTEN[3];
    let dev = scratch_disk().ok_or("the scratch disk went away")?;
    let f = ok("open without O_DIRECT", open_s(dev, O_RDWR, 0))?;
    let (b, r) = (anon(LEN)?, anon(LEN)?);
    // Cache the old bytes, then write half of the range through the page cache (dirty,
    // not yet on the disk) at an odd offset and length: any will do without O_DIRECT.
    full("buffered read", pread(f, r, LEN, at), LEN)?;
    check_for("buffered read", r, LEN, at, dev_word)?;
    fill_for(b, LEN, at, written_word);
    full(
        "buffered write",
        pwrite(f, b + 3, LEN / 2 - 3, at + 3),
        LEN / 2 - 3,
    )?;
    full("buffered write of the head", pwrite(f, b, 3, at), 3)?;
    // A direct read sees the dirty cached bytes: they are written back first.
    full("direct read", pread(d, r, LEN, at), LEN)?;
    check_for("direct read, first half", r, LEN / 2, at, written_word)?;
    check_for(
        "direct read, second half",
        r + LEN / 2,
        LEN / 2,
        at + LEN as u64 / 2,
        dev_word,
    )?;
    // A direct write of the second half; the buffered view (cached before) follows.
    full(
        "direct write",
        pwrite(d, b + LEN / 2, LEN / 2, at + LEN as u64 / 2),
        LEN / 2,
    )?;
    full("buffered read", pread(f, r, LEN, at), LEN)?;
    check_for(
        "buffered read after the direct write",
        r,
        LEN,
        at,
        written_word,
    )?;
    ok("fsync", sc(nr::FSYNC, &[f as usize]))?;
    let _ = close(f);
    let _ = close(d);
    no_pins_left("after the raw-cache case")
}

// ---- AIO ---------------------------------------------------------------------------

const CMD_PREAD: u16 = 0;
const CMD_PWRITE: u16 = 1;
const CMD_FSYNC: u16 = 2;
const CMD_PREADV: u16 = 7;
const CMD_PWRITEV: u16 = 8;

/// `struct iocb`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Iocb {
    data: u64,
    key: u32,
    rw_flags: u32,
    opcode: u16,
    reqprio: i16,
    fd: u32,
    buf: u64,
    nbytes: u64,
    offset: i64,
    reserved2: u64,
    flags: u32,
    resfd: u32,
}

/// `struct io_event`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
struct IoEvent {
    data: u64,
    obj: u64,
    res: i64,
    res2: i64,
}

fn iocb(data: u64, opcode: u16, fd: i32, buf: usize, nbytes: usize, offset: u64) -> Iocb {
    Iocb {
        data,
        opcode,
        fd: fd as u32,
        buf: buf as u64,
        nbytes: nbytes as u64,
        offset: offset as i64,
        ..Iocb::default()
    }
}

fn io_setup(n: usize) -> Result<u64, String> {
    let mut ctx: u64 = 0;
    ok(
        "io_setup",
        sc(nr::IO_SETUP, &[n, &mut ctx as *mut u64 as usize]),
    )?;
    ensure!(ctx != 0, "io_setup left the context id 0");
    Ok(ctx)
}

fn submit(ctx: u64, cbs: &[Iocb]) -> Result<usize, Errno> {
    let ptrs: Vec<usize> = cbs.iter().map(|c| c as *const Iocb as usize).collect();
    sc(
        nr::IO_SUBMIT,
        &[ctx as usize, ptrs.len(), ptrs.as_ptr() as usize],
    )
}

/// Wait for exactly `n` completions (30 s at most).
fn reap(ctx: u64, n: usize) -> Result<Vec<IoEvent>, String> {
    let mut out = Vec::new();
    let ts = Timespec { sec: 30, nsec: 0 };
    while out.len() < n {
        let mut evs = vec![IoEvent::default(); n - out.len()];
        let got = ok(
            "io_getevents",
            sc(
                nr::IO_GETEVENTS,
                &[
                    ctx as usize,
                    evs.len(),
                    evs.len(),
                    evs.as_mut_ptr() as usize,
                    &ts as *const Timespec as usize,
                ],
            ),
        )?;
        ensure!(
            got > 0,
            "io_getevents: nothing completed in 30 s ({} of {n})",
            out.len()
        );
        out.extend_from_slice(&evs[..got]);
    }
    Ok(out)
}

/// One request, submitted and reaped: its result.
fn aio_one(ctx: u64, cb: Iocb) -> Result<i64, String> {
    full("io_submit", submit(ctx, &[cb]), 1)?;
    Ok(reap(ctx, 1)?[0].res)
}

fn aio_cases() -> Res {
    let Some(fd) = open_dev()? else {
        return Ok(());
    };
    let ctx = io_setup(64)?;
    // 32 random 4 KiB reads in flight at once.
    const N: usize = 32;
    let bufs = anon(N * 4096)?;
    let mut seed = 12345u64;
    let offsets: Vec<u64> = (0..N)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % (16 * 256) * 4096 // a page in the first 16 MiB
        })
        .collect();
    let cbs: Vec<Iocb> = (0..N)
        .map(|i| {
            iocb(
                i as u64 + 100,
                CMD_PREAD,
                fd,
                bufs + i * 4096,
                4096,
                offsets[i],
            )
        })
        .collect();
    full("io_submit 32", submit(ctx, &cbs), N)?;
    let evs = reap(ctx, N)?;
    let mut seen = [false; N];
    for e in &evs {
        let i = e.data.wrapping_sub(100) as usize;
        ensure!(
            i < N && !seen[i],
            "event with data {} (unknown or twice)",
            e.data
        );
        seen[i] = true;
        ensure!(e.res == 4096, "read {i}: res {}", e.res);
        ensure!(
            e.obj == &cbs[i] as *const Iocb as u64,
            "read {i}: obj {:#x} is not its iocb",
            e.obj
        );
        check_for(
            &format!("read {i}"),
            bufs + i * 4096,
            4096,
            offsets[i],
            dev_word,
        )?;
    }
    // 32 writes and an fsync.
    let (base, len) = WRITTEN[2];
    fill_for(bufs, N * 4096, base, written_word);
    let mut cbs: Vec<Iocb> = (0..N)
        .map(|i| {
            iocb(
                i as u64,
                CMD_PWRITE,
                fd,
                bufs + i * 4096,
                4096,
                base + i as u64 * 4096,
            )
        })
        .collect();
    cbs.push(iocb(99, CMD_FSYNC, fd, 0, 0, 0));
    full("io_submit writes", submit(ctx, &cbs), N + 1)?;
    for e in reap(ctx, N + 1)? {
        let want = if e.data == 99 { 0 } else { 4096 };
        ensure!(e.res == want, "write {}: res {}", e.data, e.res);
    }
    // nr::PREADV of what was written, in two iovecs.
    let r = anon(2 * 4096)?;
    let iov: [usize; 4] = [r + 4096, 4096, r, 4096];
    let res = aio_one(ctx, iocb(7, CMD_PREADV, fd, iov.as_ptr() as usize, 2, base))?;
    ensure!(res == 8192, "preadv: res {res}");
    check_for("preadv first", r + 4096, 4096, base, written_word)?;
    check_for("preadv second", r, 4096, base + 4096, written_word)?;
    ensure!(len >= 2 * 4096, "layout");
    // Errors reach the event.
    let res = aio_one(ctx, iocb(1, CMD_PREAD, fd, r + 8, 4096, 0))?;
    ensure!(res == -(EINVAL.0 as i64), "misaligned AIO read: res {res}");
    let res = aio_one(ctx, iocb(2, CMD_PREAD, fd, r, 4096, EIO_SECTOR * 512))?;
    ensure!(
        res == -(EIO.0 as i64),
        "AIO read of the failing sector: res {res}"
    );
    // Refused at submission.
    want(
        "bad fd",
        submit(ctx, &[iocb(3, CMD_PREAD, 999, r, 4096, 0)]),
        EBADF,
    )?;
    want(
        "bad opcode",
        submit(ctx, &[iocb(3, 99, fd, r, 4096, 0)]),
        EINVAL,
    )?;
    want(
        "bad context",
        submit(ctx + 4096 * 7, &[iocb(3, CMD_PREAD, fd, r, 4096, 0)]),
        EINVAL,
    )?;
    let mut result = IoEvent::default();
    let stray = iocb(5, CMD_PREAD, fd, r, 4096, 0);
    want(
        "io_cancel of a request never submitted",
        sc(
            nr::IO_CANCEL,
            &[
                ctx as usize,
                &stray as *const Iocb as usize,
                &mut result as *mut IoEvent as usize,
            ],
        ),
        EINVAL,
    )?;
    // Events delivered to memory the caller cannot write: EFAULT (a context of its own:
    // Linux keeps the event in its ring, AliasOS drops it).
    let ctx2 = io_setup(4)?;
    let ro = ok(
        "mmap PROT_READ",
        mmap(
            0,
            4096,
            PROT_READ,
            MAP_PRIVATE | MAP_ANONYMOUS,
            MAP_FAILED_FD,
            0,
        ),
    )?;
    full(
        "io_submit",
        submit(ctx2, &[iocb(6, CMD_PREAD, fd, r, 4096, 0)]),
        1,
    )?;
    want(
        "io_getevents into a read-only page",
        sc(nr::IO_GETEVENTS, &[ctx2 as usize, 1, 1, ro, 0]),
        EFAULT,
    )?;
    ok("io_destroy", sc(nr::IO_DESTROY, &[ctx2 as usize]))?;
    ok("munmap", munmap(ro, 4096))?;
    // Nothing pending: a 20 ms timeout passes and returns 0.
    let ts = Timespec {
        sec: 0,
        nsec: 20_000_000,
    };
    let mut evs = [IoEvent::default(); 1];
    let t0 = now_ns(1)?;
    let got = ok(
        "io_getevents with a timeout",
        sc(
            nr::IO_GETEVENTS,
            &[
                ctx as usize,
                1,
                1,
                evs.as_mut_ptr() as usize,
                &ts as *const Timespec as usize,
            ],
        ),
    )?;
    let waited = now_ns(1)? - t0;
    ensure!(
        got == 0,
        "io_getevents returned {got} events with nothing pending"
    );
    ensure!(
        waited >= 15_000_000,
        "io_getevents returned after {waited} ns, before its timeout"
    );
    ok("io_destroy", sc(nr::IO_DESTROY, &[ctx as usize]))?;
    want(
        "io_destroy twice",
        sc(nr::IO_DESTROY, &[ctx as usize]),
        EINVAL,
    )?;
    let _ = close(fd);
    no_pins_left("after AIO")
}

/// Store `cb` at `at` (8-byte aligned), word by word as `struct iocb` lays it out.
fn put_iocb(at: usize, cb: &Iocb) {
    let words = [
        cb.data,
        cb.key as u64 | (cb.rw_flags as u64) << 32,
        cb.opcode as u64 | (cb.reqprio as u16 as u64) << 16 | (cb.fd as u64) << 32,
        cb.buf,
        cb.nbytes,
        cb.offset as u64,
        cb.reserved2,
        cb.flags as u64 | (cb.resfd as u64) << 32,
    ];
    for (i, w) in words.into_iter().enumerate() {
        poke64(at + 8 * i, w);
    }
}

/// `io_submit` with `ptrs` at `at`: the pointers stored there first.
fn submit_at(ctx: u64, at: usize, ptrs: &[usize]) -> Result<usize, Errno> {
    for (i, &p) in ptrs.iter().enumerate() {
        poke64(at + 8 * i, p as u64);
    }
    sc(nr::IO_SUBMIT, &[ctx as usize, ptrs.len(), at])
}

/// The iocbs of one `io_submit` on several pages, one across a page boundary, and the
/// pointer array running into an unmapped page: every readable request is taken, in
/// order, up to the first that cannot be read.
fn aio_iocb_placement() -> Res {
    let Some(fd) = open_dev()? else {
        return Ok(());
    };
    let ctx = io_setup(16)?;
    let bufs = anon(3 * 4096)?;
    // Three pages for iocbs and pointers, the third unmapped.
    let area = anon(3 * 4096)?;
    ok("munmap", munmap(area + 2 * 4096, 4096))?;
    let (a, b, c, gone) = (area, area + 4096 - 32, area + 4096 + 64, area + 2 * 4096);
    let offsets = [3 * 4096u64, 1000 * 4096, 77 * 4096];
    for (i, at) in [a, b, c].into_iter().enumerate() {
        put_iocb(
            at,
            &iocb(i as u64, CMD_PREAD, fd, bufs + i * 4096, 4096, offsets[i]),
        );
    }
    let reads_done = |what: &str, n: usize| -> Res {
        let evs = reap(ctx, n)?;
        let mut seen = [false; 3];
        for e in &evs {
            let i = e.data as usize;
            ensure!(i < n && !seen[i], "{what}: event for request {}", e.data);
            seen[i] = true;
            ensure!(e.res == 4096, "{what}: read {i}: res {}", e.res);
            check_for(
                &format!("{what}: read {i}"),
                bufs + i * 4096,
                4096,
                offsets[i],
                dev_word,
            )?;
        }
        Ok(())
    };
    let ptrs = area + 2048;
    ensure!(
        submit_at(ctx, ptrs, &[a, b, c]) == Ok(3),
        "three iocbs on two pages, one across them: not all taken"
    );
    reads_done("three iocbs", 3)?;
    ensure!(
        submit_at(ctx, ptrs, &[a, gone, c]) == Ok(1),
        "an unmapped second iocb: the first alone must be taken"
    );
    reads_done("before an unmapped iocb", 1)?;
    // An iocb whose first half is readable (data, key, opcode and fd, buffer) and second
    // half on the unmapped page.
    let torn = gone - 32;
    for (i, w) in [9, 0, (fd as u64) << 32, bufs as u64]
        .into_iter()
        .enumerate()
    {
        poke64(torn + 8 * i, w);
    }
    ensure!(
        submit_at(ctx, ptrs, &[a, torn]) == Ok(1),
        "an iocb running into an unmapped page: the one before it alone must be taken"
    );
    reads_done("before an iocb running into an unmapped page", 1)?;
    want(
        "an unmapped first iocb",
        submit_at(ctx, ptrs, &[gone, a]),
        EFAULT,
    )?;
    want(
        "an iocb in the kernel half",
        submit_at(ctx, ptrs, &[KERNEL_BASE, a]),
        EFAULT,
    )?;
    // Two pointers at the end of the second page; the third would be on the unmapped one.
    let edge = area + 2 * 4096 - 16;
    for (i, p) in [a, b].into_iter().enumerate() {
        poke64(edge + 8 * i, p as u64);
    }
    ensure!(
        sc(nr::IO_SUBMIT, &[ctx as usize, 3, edge]) == Ok(2),
        "a pointer array running into an unmapped page: the two readable ones must be taken"
    );
    reads_done("pointers up to an unmapped page", 2)?;
    ok("io_destroy", sc(nr::IO_DESTROY, &[ctx as usize]))?;
    ok("munmap", munmap(area, 2 * 4096))?;
    ok("munmap", munmap(bufs, 3 * 4096))?;
    let _ = close(fd);
    no_pins_left("after the iocb placements")
}

fn direct_in_flight() -> Res {
    let Some(fd) = open_dev()? else {
        return Ok(());
    };
    // munmap while a 1 MiB read is in flight: the frames stay until the DMA is done.
    let ctx = io_setup(8)?;
    let buf = anon(MIB)?;
    full(
        "io_submit",
        submit(ctx, &[iocb(1, CMD_PREAD, fd, buf, MIB, 0)]),
        1,
    )?;
    ok("munmap while in flight", munmap(buf, MIB))?;
    let res = reap(ctx, 1)?[0].res;
    ensure!(
        res == MIB as i64,
        "the read into the unmapped buffer: res {res}"
    );
    no_pins_left("after munmap")?;
    // exit while in flight: a child starts a read of 4 MiB and exits at once.
    child_check("exit with a read in flight", || {
        let ctx = io_setup(8)?;
        let buf = anon(4 * MIB)?;
        full(
            "io_submit",
            submit(ctx, &[iocb(1, CMD_PREAD, fd, buf, 4 * MIB, 0)]),
            1,
        )?;
        exit(0)
    })?;
    no_pins_left("after the child's exit")?;
    // fork while a buffer is pinned: the parent's buffer must get the data even though
    // the parent writes to the same page right after the fork (a copy-on-write break
    // that must not move the parent to a frame the DMA does not reach).
    let buf = anon(MIB)?;
    fill64(buf, MIB, |_| 0x1111_1111_1111_1111);
    full(
        "io_submit",
        submit(ctx, &[iocb(2, CMD_PREAD, fd, buf, MIB, 8 * MIB as u64)]),
        1,
    )?;
    let pid = fork()?;
    if pid == 0 {
        // The child's copy is its own: whatever it held at the fork, the parent's DMA
        // does not reach it afterwards.
        let before = peek64(buf + MIB - 8);
        sleep_ms(100);
        let after = peek64(buf + MIB - 8);
        exit(if before == after { 0 } else { 3 });
    }
    // The parent stores into the first page, which is under DMA.
    poke64(buf + 4096 - 8, 0x2222_2222_2222_2222);
    let res = reap(ctx, 1)?[0].res;
    ensure!(res == MIB as i64, "the read across fork: res {res}");
    let st = wait_pid(pid)?;
    expect_exit("the child", st, 0)?;
    // Everything but the stored word came from the disk.
    check64(buf, 4096 - 8, |i| dev_word(8 * MIB as u64 + 8 * i as u64))
        .map_err(|e| format!("the parent's first page after the fork: {e}"))?;
    check_for(
        "the rest of the parent's buffer",
        buf + 4096,
        MIB - 4096,
        8 * MIB as u64 + 4096,
        dev_word,
    )?;
    ok("io_destroy", sc(nr::IO_DESTROY, &[ctx as usize]))?;
    let _ = close(fd);
    no_pins_left("after the fork case")
}

// ---- ext2 files ----------------------------------------------------------------------

/// Byte `i` of generation `g` of the file cases' data.
fn gen_word(g: u64) -> impl Fn(usize) -> u64 {
    move |i| {
        (i as u64)
            .wrapping_mul(0x0100_0193)
            .wrapping_add(g << 56 | g)
    }
}

fn fill_gen(buf: usize, len: usize, first_word: usize, g: u64) {
    let f = gen_word(g);
    fill64(buf, len, |i| f(first_word + i));
}

/// Create (or empty) `path` and write `len` bytes of generation `g` to it: the open file
/// and the buffer that holds those bytes.
fn gen_file(path: &str, len: usize, g: u64) -> Result<(i32, usize), String> {
    let f = ok("create", open_s(path, O_CREAT | O_RDWR | O_TRUNC, 0o644))?;
    let b = anon(len)?;
    fill_gen(b, len, 0, g);
    full("write", pwrite(f, b, len, 0), len)?;
    Ok((f, b))
}

fn check_gen(what: &str, buf: usize, len: usize, first_word: usize, g: u64) -> Res {
    let f = gen_word(g);
    check64(buf, len, |i| f(first_word + i)).map_err(|e| format!("{what}: {e}"))
}

fn file_direct() -> Res {
    const K: usize = 1024;
    let path = "/mnt/systest/direct_file.bin";
    let f = ok("create", open_s(path, O_CREAT | O_RDWR | O_TRUNC, 0o644))?;
    let d = ok("open O_DIRECT", open_s(path, O_RDWR | O_DIRECT, 0))?;
    let (b, r) = (anon(256 * K)?, anon(256 * K)?);
    // 64 KiB written through the page cache (dirty, not yet on disk).
    fill_gen(b, 64 * K, 0, 1);
    full("buffered write", pwrite(f, b, 64 * K, 0), 64 * K)?;
    // A direct read sees it: the dirty pages are written back first.
    let dma0 = vmstat("dma_pinned_bytes");
    full("direct read", pread(d, r, 16 * K, 4 * K as u64), 16 * K)?;
    check_gen("direct read of dirty cached data", r, 16 * K, 4 * K / 8, 1)?;
    if let (Some(a), Some(z)) = (dma0, vmstat("dma_pinned_bytes")) {
        ensure!(
            z - a == 16 * K as u64,
            "dma_pinned_bytes rose by {}, expected 16384",
            z - a
        );
    }
    // A direct write, then a buffered read: the cached pages were dropped.
    fill_gen(b, 8 * K, 8 * K / 8, 2);
    full("direct write", pwrite(d, b, 8 * K, 8 * K as u64), 8 * K)?;
    full("buffered read", pread(f, r, 8 * K, 8 * K as u64), 8 * K)?;
    check_gen("buffered read after a direct write", r, 8 * K, 8 * K / 8, 2)?;
    // A mapped page cannot be dropped: the write goes through the cache, the mapping sees it.
    let map = ok(
        "mmap",
        mmap(0, 64 * K, PROT_READ | PROT_WRITE, MAP_SHARED, f as usize, 0),
    )?;
    let _ = peek64(map + 32 * K);
    fill_gen(b, 4 * K, 32 * K / 8, 3);
    full(
        "direct write to a mapped page",
        pwrite(d, b, 4 * K, 32 * K as u64),
        4 * K,
    )?;
    check_gen(
        "the mapping after a direct write",
        map + 32 * K,
        4 * K,
        32 * K / 8,
        3,
    )?;
    // Growing by a direct write, then a gap (a hole) and more growth.
    fill_gen(b, 8 * K, 64 * K / 8, 4);
    full(
        "extending direct write",
        pwrite(d, b, 8 * K, 64 * K as u64),
        8 * K,
    )?;
    ensure!(
        ok("fstat", fstat(f))?.st_size == 72 * K as i64,
        "size after growth"
    );
    full("buffered read", pread(f, r, 8 * K, 64 * K as u64), 8 * K)?;
    check_gen("the grown part", r, 8 * K, 64 * K / 8, 4)?;
    fill_gen(b, 8 * K, 128 * K / 8, 5);
    full(
        "direct write past a gap",
        pwrite(d, b, 8 * K, 128 * K as u64),
        8 * K,
    )?;
    ensure!(
        ok("fstat", fstat(f))?.st_size == 136 * K as i64,
        "size after the gap"
    );
    full(
        "direct read of the gap",
        pread(d, r, 32 * K, 80 * K as u64),
        32 * K,
    )?;
    all_zero(r, 32 * K).map_err(|e| format!("the gap: {e}"))?;
    full("direct read", pread(d, r, 8 * K, 128 * K as u64), 8 * K)?;
    check_gen("after the gap", r, 8 * K, 128 * K / 8, 5)?;
    // Reads at and past the end; a size that is not a block multiple.
    full("read at EOF", pread(d, r, 4 * K, 136 * K as u64), 0)?;
    full("append 100 bytes", pwrite(f, b, 100, 136 * K as u64), 100)?;
    full("read across EOF", pread(d, r, 8 * K, 136 * K as u64), 100)?;
    want("misaligned offset", pread(d, r, 4 * K, 100), EINVAL)?;
    want("misaligned buffer", pwrite(d, b + 8, 4 * K, 0), EINVAL)?;
    want("misaligned length", pread(d, r, 1000, 0), EINVAL)?;
    // A sparse file: the hole reads as zeros.
    ok("ftruncate 1 MiB", sc(nr::FTRUNCATE, &[f as usize, 1 << 20]))?;
    full(
        "direct read of a hole",
        pread(d, r, 64 * K, 512 * K as u64),
        64 * K,
    )?;
    all_zero(r, 64 * K).map_err(|e| format!("the hole: {e}"))?;
    // A direct write into the hole, read back both ways.
    fill_gen(b, 64 * K, 512 * K / 8, 6);
    full(
        "direct write into the hole",
        pwrite(d, b, 64 * K, 512 * K as u64),
        64 * K,
    )?;
    full("buffered read", pread(f, r, 64 * K, 512 * K as u64), 64 * K)?;
    check_gen("the filled hole", r, 64 * K, 512 * K / 8, 6)?;
    ok("munmap", munmap(map, 64 * K))?;
    let _ = close(d);
    let _ = close(f);
    no_pins_left("after the file cases")
}

fn file_direct_vs_mapper() -> Res {
    const LEN: usize = 64 << 10;
    const ROUNDS: u64 = 40;
    let path = "/mnt/systest/direct_race.bin";
    let (f, b) = gen_file(path, LEN, 0)?;
    ok("fsync", sc(nr::FSYNC, &[f as usize]))?;
    let mut fds = [0i32; 2];
    ok("pipe", sc(nr::PIPE, &[fds.as_mut_ptr() as usize]))?;
    let pid = fork()?;
    if pid == 0 {
        // Map, read and unmap the range over and over until the parent is done, then
        // check the last generation through a fresh mapping.
        let _ = close(fds[1]);
        let g = open_s(path, O_RDONLY, 0).unwrap_or(-1);
        let mut byte = [0u8; 1];
        loop {
            let m = mmap(0, LEN, PROT_READ, MAP_SHARED, g as usize, 0).unwrap_or(0);
            if m == 0 {
                exit(2);
            }
            for p in (0..LEN).step_by(4096) {
                let _ = peek64(m + p);
            }
            let _ = munmap(m, LEN);
            // The parent closes the pipe's write end when it is done.
            let polled = sc(nr::READ, &[fds[0] as usize, byte.as_mut_ptr() as usize, 1]);
            if polled == Ok(0) {
                break;
            }
        }
        let m = mmap(0, LEN, PROT_READ, MAP_SHARED, g as usize, 0).unwrap_or(0);
        let f = gen_word(ROUNDS);
        let good = (0..LEN / 8).all(|i| peek64(m + 8 * i) == f(i));
        exit(if good { 0 } else { 4 });
    }
    let _ = close(fds[0]);
    let d = ok("open O_DIRECT", open_s(path, O_RDWR | O_DIRECT, 0))?;
    let r = anon(LEN)?;
    for g in 1..=ROUNDS {
        fill_gen(b, LEN, 0, g);
        full("direct write", pwrite(d, b, LEN, 0), LEN)?;
        // Every view agrees with the disk right after the write.
        full("buffered read", pread(f, r, LEN, 0), LEN)?;
        check_gen(
            &format!("buffered read after direct write {g}"),
            r,
            LEN,
            0,
            g,
        )?;
        // Let the child run between writes (one byte per round keeps it polling).
        let _ = sc(nr::WRITE, &[fds[1] as usize, b, 1]);
    }
    let _ = close(fds[1]);
    let st = wait_pid(pid)?;
    expect_exit("the mapping process", st, 0)?;
    let _ = close(d);
    let _ = close(f);
    Ok(())
}

fn file_direct_own_mapping() -> Res {
    const K: usize = 1024;
    const LEN: usize = 64 * K;
    let path = "/mnt/systest/direct_self.bin";
    let (f, _) = gen_file(path, LEN, 7)?;
    let d = ok("open O_DIRECT", open_s(path, O_RDWR | O_DIRECT, 0))?;
    let map = ok(
        "mmap",
        mmap(0, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, f as usize, 0),
    )?;
    // The same range: the file's bytes onto themselves, both ways.
    full(
        "direct read into its own mapping",
        pread(d, map, 16 * K, 0),
        16 * K,
    )?;
    check_gen("the range read onto itself", map, 16 * K, 0, 7)?;
    full(
        "direct write from its own mapping",
        pwrite(d, map + 16 * K, 16 * K, 16 * K as u64),
        16 * K,
    )?;
    check_gen(
        "the range written from itself",
        map + 16 * K,
        16 * K,
        16 * K / 8,
        7,
    )?;
    // Another range of the same file as the buffer: [32K, 48K) read into [48K, 64K).
    full(
        "direct read into another range's mapping",
        pread(d, map + 48 * K, 16 * K, 32 * K as u64),
        16 * K,
    )?;
    check_gen(
        "the mapping of [48K, 64K)",
        map + 48 * K,
        16 * K,
        32 * K / 8,
        7,
    )?;
    let r = anon(16 * K)?;
    full("buffered read", pread(f, r, 16 * K, 48 * K as u64), 16 * K)?;
    check_gen("read() of [48K, 64K)", r, 16 * K, 32 * K / 8, 7)?;
    // Stores through the mapping reach the file and a later direct read sees them.
    fill_gen(map, 4 * K, 0, 8);
    ok("msync", sc(nr::MSYNC, &[map, LEN, 4]))?;
    full("direct read", pread(d, r, 4 * K, 0), 4 * K)?;
    check_gen("a direct read after stores and msync", r, 4 * K, 0, 8)?;
    ok("munmap", munmap(map, LEN))?;
    let _ = close(d);
    let _ = close(f);
    no_pins_left("after the own-mapping cases")
}

fn file_direct_private_and_append() -> Res {
    const K: usize = 1024;
    const LEN: usize = 16 * K;
    let (fp, gp) = (
        "/mnt/systest/direct_priv.bin",
        "/mnt/systest/direct_src.bin",
    );
    let mut b = 0;
    for (path, g) in [(fp, 9), (gp, 10)] {
        let (fd, buf) = gen_file(path, LEN, g)?;
        let _ = close(fd);
        b = buf;
    }
    let f = ok("open read-only", open_s(fp, O_RDONLY, 0))?;
    let g = ok("open O_DIRECT", open_s(gp, O_RDONLY | O_DIRECT, 0))?;
    // Untouched private mappings of F: the first store would give the process its own
    // page; a read into them must do the same, never write F's cached page.
    let map = ok(
        "mmap MAP_PRIVATE",
        mmap(0, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE, f as usize, 0),
    )?;
    full(
        "direct read into the private mapping",
        pread(g, map, 8 * K, 0),
        8 * K,
    )?;
    check_gen("the private mapping", map, 8 * K, 0, 10)?;
    let g2 = ok("open G", open_s(gp, O_RDONLY, 0))?;
    full(
        "read() into the private mapping",
        pread(g2, map + 8 * K, 8 * K, 0),
        8 * K,
    )?;
    check_gen("the private mapping", map + 8 * K, 8 * K, 0, 10)?;
    let _ = close(g2);
    let r = anon(LEN)?;
    full("read F", pread(f, r, LEN, 0), LEN)?;
    check_gen("F after reads into its private mapping", r, LEN, 0, 9)?;
    ok("munmap", munmap(map, LEN))?;
    let _ = close(f);
    let _ = close(g);
    // AIO nr::PWRITEV of two iovecs to an O_APPEND | O_DIRECT file: appended once.
    let a = ok(
        "open O_APPEND O_DIRECT",
        open_s(fp, O_RDWR | O_DIRECT | sys::O_APPEND, 0),
    )?;
    let ctx = io_setup(4)?;
    fill_gen(b, 8 * K, 0, 11);
    let iov: [usize; 4] = [b, 4 * K, b + 4 * K, 4 * K];
    let res = aio_one(ctx, iocb(1, CMD_PWRITEV, a, iov.as_ptr() as usize, 2, 0))?;
    ensure!(res == 8 * K as i64, "AIO pwritev: res {res}");
    let size = ok("fstat", fstat(a))?.st_size as usize;
    ensure!(
        size == LEN + 8 * K,
        "size {size} after an 8 KiB AIO append to {LEN} bytes"
    );
    ok("io_destroy", sc(nr::IO_DESTROY, &[ctx as usize]))?;
    let _ = close(a);
    Ok(())
}

/// `io_submit` plans its reads in batches of 8 before starting them, and a truncation waits for the
/// direct reads of its file: the two must not wait for each other, and no read may see
/// a freed block (its bytes are always the file's, or it is short at the end).
fn file_aio_vs_truncate() -> Res {
    const LEN: usize = 256 << 10;
    const PIECE: usize = 16 << 10;
    const N: usize = LEN / PIECE;
    const ROUNDS: usize = 50;
    const GEN: u64 = 7;
    let path = "/mnt/systest/direct_aio_truncate.bin";
    let (f, b) = gen_file(path, LEN, GEN)?;
    ok("fsync", sc(nr::FSYNC, &[f as usize]))?;
    let mut fds = [0i32; 2];
    ok("pipe", sc(nr::PIPE, &[fds.as_mut_ptr() as usize]))?;
    let pid = fork()?;
    if pid == 0 {
        // Cut the file to half and write the second half back (the same bytes), once per
        // byte from the parent, until the parent closes the pipe.
        let _ = close(fds[1]);
        let half = LEN / 2;
        let mut byte = [0u8; 1];
        loop {
            if sc(nr::FTRUNCATE, &[f as usize, half]).is_err() {
                exit(2);
            }
            if pwrite(f, b + half, half, half as u64) != Ok(half) {
                exit(3);
            }
            let polled = sc(nr::READ, &[fds[0] as usize, byte.as_mut_ptr() as usize, 1]);
            if polled == Ok(0) {
                break;
            }
        }
        exit(0);
    }
    let _ = close(fds[0]);
    let d = ok("open O_DIRECT", open_s(path, O_RDONLY | O_DIRECT, 0))?;
    let ctx = io_setup(N)?;
    let r = anon(LEN)?;
    let cbs: Vec<Iocb> = (0..N)
        .map(|i| {
            iocb(
                i as u64,
                CMD_PREAD,
                d,
                r + i * PIECE,
                PIECE,
                (i * PIECE) as u64,
            )
        })
        .collect();
    let mut short = 0;
    for round in 0..ROUNDS {
        poison(r, LEN);
        full("io_submit", submit(ctx, &cbs), N)?;
        // The child truncates while the batch is in flight.
        let _ = sc(nr::WRITE, &[fds[1] as usize, b, 1]);
        for e in reap(ctx, N)? {
            let i = e.data as usize;
            ensure!(i < N, "event with data {}", e.data);
            let got = usize::try_from(e.res)
                .map_err(|_| format!("round {round}: read {i} failed: {}", e.res))?;
            // The first half is never cut; the second may be at the end of the file.
            ensure!(
                got == PIECE || (i >= N / 2 && got % 512 == 0 && got < PIECE),
                "round {round}: read {i} moved {got} bytes"
            );
            short += usize::from(got < PIECE);
            check_gen(
                &format!("round {round}, read {i}"),
                r + i * PIECE,
                got,
                i * PIECE / 8,
                GEN,
            )?;
        }
    }
    let _ = close(fds[1]);
    let st = wait_pid(pid)?;
    expect_exit("the truncating process", st, 0)?;
    ok("io_destroy", sc(nr::IO_DESTROY, &[ctx as usize]))?;
    let _ = close(d);
    let _ = close(f);
    let _ = sc(nr::UNLINK, &[cstr(path).as_ptr() as usize]);
    say!(
        "#   {short} of {} reads were cut short by a truncation\n",
        ROUNDS * N
    );
    no_pins_left("after the truncation race")
}

/// Fill `[buf, buf + len)` with words no generation writes, so a read that moves fewer
/// bytes than it reports shows.
fn poison(buf: usize, len: usize) {
    for p in (0..len).step_by(8) {
        poke64(buf + p, 0xdead_beef_dead_beef);
    }
}
