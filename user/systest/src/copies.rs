//! In-kernel copies: `copy_file_range`, `sendfile`, and the vectored `preadv2` /
//! `pwritev2`. On AliasOS whole pages of a copy alias the source's frames (counted in
//! `/proc/vmstat`'s `alias_pages`); block-aligned whole blocks of a copy within an NVMe
//! namespace are copied by the device instead (`copy_offload_bytes`). The counter checks
//! are skipped where the counters do not exist (the same binary runs on Linux).

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use sys::errno::*;
use sys::{O_APPEND, O_CREAT, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY};

use crate::ensure;
use crate::util::*;

const D: &str = "/mnt/systest";
const PAGE: usize = 4096;

#[rustfmt::skip]
pub const CASES: &[Case] = &[
    ("copies: copy_file_range aliases whole pages, copies head and tail; later writes stay apart", cfr_aliases),
    ("copies: copy_file_range errors (flags, overlap, O_APPEND, O_RDONLY, directory, pipe) and EOF", cfr_errors),
    ("copies: sendfile with an offset pointer and with the file offset, to a pipe and /dev/null", sendfile_cases),
    ("copies: a shared mapping of a copy made writable by mprotect: stores stay in the copy", cfr_mprotect),
    ("copies: preadv/pwritev and preadv2/pwritev2 (offset -1, RWF flags, ESPIPE, EOPNOTSUPP)", rw2_cases),
];

fn p(name: &str) -> alloc::string::String {
    format!("{D}/{name}")
}

/// The source's bytes (the host computes the same to check the copy on disk).
pub fn copy_src_byte(i: usize) -> u8 {
    (i.wrapping_mul(7) ^ (i / PAGE)) as u8
}

/// Size of the copy source: 16 whole pages and a 100-byte tail.
const SRC_LEN: usize = 16 * PAGE + 100;

fn cfr(
    fd_in: i32,
    off_in: Option<&mut u64>,
    fd_out: i32,
    off_out: Option<&mut u64>,
    len: usize,
) -> Result<usize, Errno> {
    let ptr = |o: Option<&mut u64>| o.map_or(0, |r| r as *mut u64 as usize);
    sc(
        nr::COPY_FILE_RANGE,
        &[
            fd_in as usize,
            ptr(off_in),
            fd_out as usize,
            ptr(off_out),
            len,
            0,
        ],
    )
}

fn make_src(name: &str) -> Result<Vec<u8>, alloc::string::String> {
    let data: Vec<u8> = (0..SRC_LEN).map(copy_src_byte).collect();
    write_path(&p(name), &data)?;
    Ok(data)
}

fn cfr_aliases() -> Res {
    let src = make_src("cfr_src.bin")?;
    let inf = ok("open src", open_s(&p("cfr_src.bin"), O_RDONLY, 0))?;
    let outf = ok(
        "create dst",
        open_s(&p("cfr_dst.bin"), O_RDWR | O_CREAT | O_TRUNC, 0o644),
    )?;
    let (aliases0, copied0) = (vmstat("alias_pages"), vmstat("data_copy_bytes"));
    // From byte 1000 on both sides: page 0's tail, pages 1..=15 whole, the 100-byte tail.
    let (mut off_in, mut off_out) = (1000u64, 1000u64);
    let n = ok(
        "copy_file_range",
        cfr(inf, Some(&mut off_in), outf, Some(&mut off_out), 1 << 30),
    )?;
    ensure!(
        n == SRC_LEN - 1000,
        "copied {n}, expected {}",
        SRC_LEN - 1000
    );
    ensure!(
        off_in == SRC_LEN as u64 && off_out == SRC_LEN as u64,
        "offsets after: in {off_in}, out {off_out}"
    );
    let pos = ok("lseek", lseek(outf, 0, sys::SEEK_CUR))?;
    ensure!(
        pos == 0,
        "the file offset moved to {pos} with an offset pointer given"
    );
    if let (Some(a0), Some(a1), Some(c0), Some(c1)) = (
        aliases0,
        vmstat("alias_pages"),
        copied0,
        vmstat("data_copy_bytes"),
    ) {
        ensure!(
            a1 - a0 == 15,
            "alias_pages grew by {}, expected 15",
            a1 - a0
        );
        ensure!(
            c1 - c0 < 2 * PAGE as u64,
            "data_copy_bytes grew by {}: whole pages were copied",
            c1 - c0
        );
    }
    let mut want = src.clone();
    want[..1000].fill(0);
    ensure!(read_path(&p("cfr_dst.bin"))? == want, "the copy differs");

    // Writing either side afterwards changes only that side (one break each).
    let breaks0 = vmstat("cow_breaks");
    let srcw = ok("open src rw", open_s(&p("cfr_src.bin"), O_RDWR, 0))?;
    ok(
        "pwrite src",
        sc(
            nr::PWRITE64,
            &[srcw as usize, b"SRC".as_ptr() as usize, 3, 3 * PAGE + 5],
        ),
    )?;
    ok(
        "pwrite dst",
        sc(
            nr::PWRITE64,
            &[outf as usize, b"DST".as_ptr() as usize, 3, 5 * PAGE + 7],
        ),
    )?;
    if let (Some(b0), Some(b1)) = (breaks0, vmstat("cow_breaks")) {
        ensure!(b1 - b0 == 2, "cow_breaks grew by {}, expected 2", b1 - b0);
    }
    let mut src_now = src.clone();
    src_now[3 * PAGE + 5..3 * PAGE + 8].copy_from_slice(b"SRC");
    want[5 * PAGE + 7..5 * PAGE + 10].copy_from_slice(b"DST");
    ensure!(
        read_path(&p("cfr_src.bin"))? == src_now,
        "the source is wrong after the writes"
    );
    ensure!(
        read_path(&p("cfr_dst.bin"))? == want,
        "the copy is wrong after the writes"
    );
    // A second copy with the file offsets (NULL pointers) appends the first 2 pages.
    ok("lseek dst", lseek(outf, SRC_LEN as i64, sys::SEEK_SET))?;
    let n = ok(
        "copy_file_range (offsets)",
        cfr(inf, None, outf, None, 2 * PAGE),
    )?;
    ensure!(n == 2 * PAGE, "copied {n}");
    let (pi, po) = (
        ok("lseek in", lseek(inf, 0, sys::SEEK_CUR))?,
        ok("lseek out", lseek(outf, 0, sys::SEEK_CUR))?,
    );
    ensure!(
        pi == 2 * PAGE && po == SRC_LEN + 2 * PAGE,
        "offsets {pi}, {po}"
    );
    for fd in [inf, outf, srcw] {
        let _ = close(fd);
    }
    Ok(())
}

fn cfr_errors() -> Res {
    make_src("cfr_err.bin")?;
    let f = p("cfr_err.bin");
    let rw = ok("open rw", open_s(&f, O_RDWR, 0))?;
    let ro = ok("open ro", open_s(&f, O_RDONLY, 0))?;
    let app = ok(
        "open append",
        open_s(&p("cfr_app.bin"), O_WRONLY | O_CREAT | O_APPEND, 0o644),
    )?;
    let dir = ok("open dir", open_s(D, O_RDONLY, 0))?;
    let (mut a, mut b) = (0u64, 100u64);
    want(
        "flags 1",
        sc(
            nr::COPY_FILE_RANGE,
            &[rw as usize, 0, rw as usize, 0, 10, 1],
        ),
        EINVAL,
    )?;
    want(
        "overlap in one file",
        cfr(rw, Some(&mut a), rw, Some(&mut b), 1000),
        EINVAL,
    )?;
    // One description's offset as both ends: EINVAL, but copying nothing is 0.
    want(
        "one offset for both ends",
        cfr(rw, None, rw, None, 10),
        EINVAL,
    )?;
    ensure!(
        ok("one offset, length 0", cfr(rw, None, rw, None, 0))? == 0,
        "a copy of nothing within one description is not 0"
    );
    want("O_APPEND target", cfr(ro, None, app, None, 10), EBADF)?;
    want("read-only target", cfr(rw, None, ro, None, 10), EBADF)?;
    want("directory source", cfr(dir, None, rw, None, 10), EISDIR)?;
    let mut fds = [0i32; 2];
    ok("pipe", sc(nr::PIPE, &[fds.as_mut_ptr() as usize]))?;
    want("pipe target", cfr(ro, None, fds[1], None, 10), EINVAL)?;
    want("bad fd", cfr(9999, None, rw, None, 10), EBADF)?;
    // Disjoint ranges in one file are fine; at or past EOF there is nothing to copy.
    let (mut a, mut b) = (0u64, SRC_LEN as u64);
    let n = ok(
        "disjoint in one file",
        cfr(rw, Some(&mut a), rw, Some(&mut b), PAGE),
    )?;
    ensure!(n == PAGE, "copied {n}");
    let mut end = (SRC_LEN + PAGE) as u64;
    let mut to = 0u64;
    let scratch = ok(
        "create",
        open_s(&p("cfr_eof.bin"), O_RDWR | O_CREAT | O_TRUNC, 0o644),
    )?;
    let n = ok(
        "from EOF",
        cfr(rw, Some(&mut end), scratch, Some(&mut to), 10),
    )?;
    ensure!(n == 0 && to == 0, "copied {n} from EOF");
    for fd in [rw, ro, app, dir, fds[0], fds[1], scratch] {
        let _ = close(fd);
    }
    Ok(())
}

fn sendfile_cases() -> Res {
    let src = make_src("sf_src.bin")?;
    let inf = ok("open src", open_s(&p("sf_src.bin"), O_RDONLY, 0))?;
    let outf = ok(
        "create dst",
        open_s(&p("sf_dst.bin"), O_WRONLY | O_CREAT | O_TRUNC, 0o644),
    )?;
    // With /mnt on NVMe, the 16 whole pages go by the device's Copy command.
    let device_copies = mnt_disk(&["/dev/nvme0n1"]).is_some();
    let offloaded0 = vmstat("copy_offload_bytes");
    // With an offset pointer: the input's offset stays, the pointer advances.
    let mut off = 0u64;
    let n = ok(
        "sendfile (pointer)",
        sc(
            nr::SENDFILE,
            &[
                outf as usize,
                inf as usize,
                &mut off as *mut u64 as usize,
                8 * PAGE,
            ],
        ),
    )?;
    ensure!(
        n == 8 * PAGE && off == 8 * PAGE as u64,
        "sent {n}, offset {off}"
    );
    ensure!(
        ok("lseek in", lseek(inf, 0, sys::SEEK_CUR))? == 0,
        "input offset moved"
    );
    // With the file offset: from 8 pages on, to the end.
    ok("lseek in", lseek(inf, 8 * PAGE as i64, sys::SEEK_SET))?;
    let n = ok(
        "sendfile (offset)",
        sc(nr::SENDFILE, &[outf as usize, inf as usize, 0, 1 << 30]),
    )?;
    ensure!(n == SRC_LEN - 8 * PAGE, "sent {n}");
    ensure!(
        ok("lseek in", lseek(inf, 0, sys::SEEK_CUR))? == SRC_LEN,
        "input offset"
    );
    let n = ok(
        "sendfile at EOF",
        sc(nr::SENDFILE, &[outf as usize, inf as usize, 0, 10]),
    )?;
    ensure!(n == 0, "sent {n} at EOF");
    if let (Some(o0), Some(o1)) = (offloaded0, vmstat("copy_offload_bytes")) {
        let want = if device_copies { 16 * PAGE as u64 } else { 0 };
        ensure!(
            o1 - o0 == want,
            "copy_offload_bytes grew by {}, expected {want}",
            o1 - o0
        );
    }
    ensure!(read_path(&p("sf_dst.bin"))? == src, "the copy differs");
    // To a pipe: the bytes arrive.
    let mut fds = [0i32; 2];
    ok("pipe", sc(nr::PIPE, &[fds.as_mut_ptr() as usize]))?;
    let mut off = 5u64;
    let n = ok(
        "sendfile to a pipe",
        sc(
            nr::SENDFILE,
            &[
                fds[1] as usize,
                inf as usize,
                &mut off as *mut u64 as usize,
                3000,
            ],
        ),
    )?;
    ensure!(n == 3000, "sent {n} into the pipe");
    let mut got = vec![0u8; 3000];
    let r = ok("read pipe", sys::read_full(fds[0], &mut got))?;
    ensure!(
        r == 3000 && got[..] == src[5..3005],
        "the pipe got other bytes"
    );
    // To /dev/null.
    let null = ok("open /dev/null", open_s("/dev/null", O_WRONLY, 0))?;
    let mut off = 0u64;
    let n = ok(
        "sendfile to /dev/null",
        sc(
            nr::SENDFILE,
            &[
                null as usize,
                inf as usize,
                &mut off as *mut u64 as usize,
                SRC_LEN,
            ],
        ),
    )?;
    ensure!(n == SRC_LEN, "sent {n} to /dev/null");
    // Errors.
    let app = ok(
        "open append",
        open_s(&p("sf_app.bin"), O_WRONLY | O_CREAT | O_APPEND, 0o644),
    )?;
    want(
        "O_APPEND target",
        sc(nr::SENDFILE, &[app as usize, inf as usize, 0, 10]),
        EINVAL,
    )?;
    want(
        "pipe source",
        sc(nr::SENDFILE, &[outf as usize, fds[0] as usize, 0, 10]),
        EINVAL,
    )?;
    want(
        "write-only source",
        sc(nr::SENDFILE, &[outf as usize, outf as usize, 0, 10]),
        EBADF,
    )?;
    want(
        "read-only target",
        sc(nr::SENDFILE, &[inf as usize, inf as usize, 0, 10]),
        EBADF,
    )?;
    want(
        "bad offset pointer",
        sc(nr::SENDFILE, &[outf as usize, inf as usize, 8, 10]),
        EFAULT,
    )?;
    for fd in [inf, outf, fds[0], fds[1], null, app] {
        let _ = close(fd);
    }
    Ok(())
}

fn rw2_cases() -> Res {
    let f = p("rw2.bin");
    let fd = ok("create", open_s(&f, O_RDWR | O_CREAT | O_TRUNC, 0o644))?;
    let iov = |parts: &[&[u8]]| -> Vec<[usize; 2]> {
        parts
            .iter()
            .map(|s| [s.as_ptr() as usize, s.len()])
            .collect()
    };
    // pwritev2 at -1 writes at (and advances) the offset.
    let v = iov(&[b"abc", b"def"]);
    let n = ok(
        "pwritev2 at -1",
        sc(
            nr::PWRITEV2,
            &[fd as usize, v.as_ptr() as usize, 2, usize::MAX, 0, 0],
        ),
    )?;
    ensure!(n == 6, "wrote {n}");
    ensure!(
        ok("lseek", lseek(fd, 0, sys::SEEK_CUR))? == 6,
        "offset after pwritev2 -1"
    );
    // pwritev at an offset leaves the offset alone; RWF_DSYNC is accepted.
    let v = iov(&[b"XY"]);
    ok(
        "pwritev at 1",
        sc(nr::PWRITEV, &[fd as usize, v.as_ptr() as usize, 1, 1]),
    )?;
    let v = iov(&[b"Z"]);
    ok(
        "pwritev2 at 4, RWF_DSYNC",
        sc(
            nr::PWRITEV2,
            &[fd as usize, v.as_ptr() as usize, 1, 4, 0, 2],
        ),
    )?;
    ensure!(
        ok("lseek", lseek(fd, 0, sys::SEEK_CUR))? == 6,
        "offset moved"
    );
    // RWF_APPEND writes at the end whatever the offset says.
    let v = iov(&[b"!"]);
    ok(
        "pwritev2 RWF_APPEND",
        sc(
            nr::PWRITEV2,
            &[fd as usize, v.as_ptr() as usize, 1, 0, 0, 0x10],
        ),
    )?;
    ensure!(
        read_path(&f)? == b"aXYdZf!",
        "contents {:?}",
        read_path(&f)?
    );
    // preadv2 at an offset and at -1.
    let (mut a, mut b) = ([0u8; 2], [0u8; 3]);
    let v = [[a.as_mut_ptr() as usize, 2], [b.as_mut_ptr() as usize, 3]];
    let n = ok(
        "preadv2 at 1",
        sc(nr::PREADV2, &[fd as usize, v.as_ptr() as usize, 2, 1, 0, 0]),
    )?;
    ensure!(
        n == 5 && &a == b"XY" && &b == b"dZf",
        "preadv2 read {a:?} {b:?}"
    );
    ok("lseek 0", lseek(fd, 0, sys::SEEK_SET))?;
    let n = ok(
        "preadv2 at -1, RWF_HIPRI",
        sc(
            nr::PREADV2,
            &[fd as usize, v.as_ptr() as usize, 2, usize::MAX, 0, 1],
        ),
    )?;
    ensure!(n == 5 && &a == b"aX", "preadv2 -1 read {a:?}");
    ensure!(
        ok("lseek", lseek(fd, 0, sys::SEEK_CUR))? == 5,
        "offset after preadv2 -1"
    );
    let n = ok(
        "preadv at 6",
        sc(nr::PREADV, &[fd as usize, v.as_ptr() as usize, 2, 6]),
    )?;
    ensure!(n == 1 && a[0] == b'!', "preadv at 6 read {n}");
    // RWF_APPEND at offset -1: at the end, and the offset moves past it (as O_APPEND).
    let v2 = iov(&[b"?"]);
    ok(
        "pwritev2 -1 RWF_APPEND",
        sc(
            nr::PWRITEV2,
            &[fd as usize, v2.as_ptr() as usize, 1, usize::MAX, 0, 0x10],
        ),
    )?;
    ensure!(
        ok("lseek", lseek(fd, 0, sys::SEEK_CUR))? == 8,
        "offset after pwritev2 -1 RWF_APPEND"
    );
    ensure!(
        read_path(&f)? == b"aXYdZf!?",
        "contents {:?}",
        read_path(&f)?
    );
    // Errors.
    want(
        "pwritev2 unknown flag",
        sc(
            nr::PWRITEV2,
            &[fd as usize, v.as_ptr() as usize, 1, 0, 0, 0x1000],
        ),
        EOPNOTSUPP,
    )?;
    want(
        "preadv2 unknown flag",
        sc(
            nr::PREADV2,
            &[fd as usize, v.as_ptr() as usize, 1, 0, 0, 0x40],
        ),
        EOPNOTSUPP,
    )?;
    want(
        "preadv2 at -2",
        sc(
            nr::PREADV2,
            &[
                fd as usize,
                v.as_ptr() as usize,
                1,
                (-2isize) as usize,
                0,
                0,
            ],
        ),
        EINVAL,
    )?;
    let mut fds = [0i32; 2];
    ok("pipe", sc(nr::PIPE, &[fds.as_mut_ptr() as usize]))?;
    want(
        "preadv2 at 0 on a pipe",
        sc(
            nr::PREADV2,
            &[fds[0] as usize, v.as_ptr() as usize, 1, 0, 0, 0],
        ),
        ESPIPE,
    )?;
    // RWF_NOWAIT on an empty pipe at -1: EAGAIN rather than blocking.
    want(
        "preadv2 RWF_NOWAIT on an empty pipe",
        sc(
            nr::PREADV2,
            &[fds[0] as usize, v.as_ptr() as usize, 1, usize::MAX, 0, 8],
        ),
        EAGAIN,
    )?;
    for fd in [fd, fds[0], fds[1]] {
        let _ = close(fd);
    }
    Ok(())
}

fn cfr_mprotect() -> Res {
    let src = make_src("mp_src.bin")?;
    let inf = ok("open src", open_s(&p("mp_src.bin"), O_RDONLY, 0))?;
    let outf = ok(
        "create dst",
        open_s(&p("mp_dst.bin"), O_RDWR | O_CREAT | O_TRUNC, 0o644),
    )?;
    let n = ok("copy_file_range", cfr(inf, None, outf, None, 2 * PAGE))?;
    ensure!(n == 2 * PAGE, "copied {n}");
    // Mapped read-only (an alias may be), read, then made writable and stored to.
    let m = ok("mmap", sc(nr::MMAP, &[0, 2 * PAGE, 1, 1, outf as usize, 0]))?;
    // SAFETY: the mapping covers 2 pages of the file, just made.
    let first = unsafe { core::ptr::read_volatile(m as *const u8) };
    ensure!(first == src[0], "the mapping shows {first:#x}");
    ok("mprotect", sc(nr::MPROTECT, &[m, 2 * PAGE, 3]))?;
    // SAFETY: as above, now writable.
    unsafe { core::ptr::write_volatile(m as *mut u8, first ^ 0xff) };
    ok("munmap", sc(nr::MUNMAP, &[m, 2 * PAGE]))?;
    let s_now = read_path(&p("mp_src.bin"))?;
    ensure!(
        s_now[0] == src[0],
        "the store through the copy's mapping reached the source"
    );
    let d_now = read_path(&p("mp_dst.bin"))?;
    ensure!(d_now[0] == first ^ 0xff, "the store did not reach the copy");
    for fd in [inf, outf] {
        let _ = close(fd);
    }
    Ok(())
}
