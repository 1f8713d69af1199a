//! Linux native AIO: `io_setup`, `io_destroy`, `io_getevents`, `io_submit`, `io_cancel`
//! (206–210), with Linux's structure layouts (`struct iocb`, `struct io_event`).
//!
//! Reads and writes of files open `O_DIRECT` with a direct path (raw block devices) are
//! started at submission and complete from the disk's interrupt handler: one process
//! keeps many requests in flight, each DMAing straight to or from its pinned buffer.
//! Everything else (buffered files, fsync) runs during `io_submit` and is complete when it
//! returns, as Linux does for buffered AIO. Cancelling is not supported: `io_cancel` of a
//! request in flight returns EAGAIN, as Linux may.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

use drivers::block::Op;

use super::fs::{self, abi};
use crate::errno::{Errno, SysResult};
use crate::proc::Process;
use crate::proc::{self, vm::Prot};
use crate::uaccess::{self, UserReader};
use crate::vfs::File;
use crate::vfs::aio::{AioContext, IoEvent};
use crate::vfs::direct::DirectIo;

const IOCB_CMD_PREAD: u16 = 0;
const IOCB_CMD_PWRITE: u16 = 1;
const IOCB_CMD_FSYNC: u16 = 2;
const IOCB_CMD_FDSYNC: u16 = 3;
const IOCB_CMD_PREADV: u16 = 7;
const IOCB_CMD_PWRITEV: u16 = 8;

/// Most requests one context may hold (Linux's default `aio-max-nr` is far larger; this
/// bounds the kernel memory one process can tie up).
const MAX_EVENTS: u64 = 4096;

pub fn dispatch(nr: u64, a: &[u64; 6]) -> Option<SysResult> {
    Some(match nr {
        206 => io_setup(a[0], a[1]),
        207 => io_destroy(a[0]),
        208 => io_getevents(a[0], a[1] as i64, a[2] as i64, a[3], a[4]),
        209 => io_submit(a[0], a[1] as i64, a[2]),
        210 => io_cancel(a[0], a[1], a[2]),
        _ => return None,
    })
}

/// `io_setup(nr_events, ctxp)`: `*ctxp` must be 0; it receives the new context's id, the
/// address of a read-only page mapped for it (zero, so libaio's user-space ring check
/// finds no ring and uses the system call).
fn io_setup(nr_events: u64, ctxp: u64) -> SysResult {
    if nr_events == 0 || nr_events > MAX_EVENTS {
        return Err(Errno::EINVAL);
    }
    if uaccess::read_u64(ctxp)? != 0 {
        return Err(Errno::EINVAL);
    }
    let p = proc::current();
    let id = p.mem.lock().mmap_anon(
        0,
        4096,
        Prot {
            read: true,
            write: false,
            exec: false,
        },
        false,
    )?;
    if let Err(e) = uaccess::write_u64(ctxp, id) {
        let _ = p.mem.lock().munmap(id, 4096);
        return Err(e);
    }
    let ctx = match AioContext::new(id, nr_events as usize) {
        Ok(c) => c,
        Err(e) => {
            let _ = p.mem.lock().munmap(id, 4096);
            return Err(e);
        }
    };
    p.files.lock().add_aio(Arc::new(ctx));
    Ok(0)
}

/// `io_destroy(ctx)`: waits for the requests in flight, then the context is gone.
fn io_destroy(id: u64) -> SysResult {
    let p = proc::current();
    let ctx = p.files.lock().remove_aio(id)?;
    crate::block::wait_completions(&|| ctx.in_flight() == 0, None, true);
    let _ = p.mem.lock().munmap(id, 4096);
    Ok(0)
}

/// `io_getevents(ctx, min_nr, nr, events, timeout)`: waits until `min_nr` completions
/// are ready (or the relative `timeout` passes, or a fatal signal), then copies up to `nr`.
fn io_getevents(id: u64, min_nr: i64, nr: i64, events: u64, timeout: u64) -> SysResult {
    let ctx = proc::current().files.lock().aio(id)?;
    if nr < 0 || min_nr < 0 || min_nr > nr {
        return Err(Errno::EINVAL);
    }
    let (min_nr, nr) = (min_nr as usize, nr as usize);
    uaccess::check_range(events, nr.saturating_mul(32))?;
    let deadline = match timeout {
        0 => None,
        t => Some(crate::time::now_ns().saturating_add(super::misc::read_timespec(t)?)),
    };
    if min_nr > 0 && ctx.ready() < min_nr {
        let met = crate::block::wait_completions(&|| ctx.ready() >= min_nr, deadline, true);
        if !met && deadline.is_none() && ctx.ready() == 0 {
            return Err(Errno::EINTR);
        }
    }
    let got = ctx.take(nr);
    if got.is_empty() {
        return Ok(0);
    }
    // One user access for all the events, not one per event.
    let mut bytes = Vec::with_capacity(got.len() * 32);
    for ev in got {
        bytes.extend_from_slice(&ev.to_bytes());
    }
    let written = uaccess::copy_to_user_prefix(events, &bytes)?;
    // The completions not delivered whole are lost, as on Linux.
    match written / 32 {
        0 => Err(Errno::EFAULT),
        n => Ok(n as u64),
    }
}

/// `io_cancel(ctx, iocb, result)`: nothing can be cancelled once started: EAGAIN for a
/// request in flight, EINVAL for one the context does not know.
fn io_cancel(id: u64, iocb: u64, _result: u64) -> SysResult {
    let ctx = proc::current().files.lock().aio(id)?;
    if ctx.is_in_flight(iocb) {
        Err(Errno::EAGAIN)
    } else {
        Err(Errno::EINVAL)
    }
}

/// A `struct iocb`, the fields AliasOS uses.
struct Iocb {
    data: u64,
    opcode: u16,
    fd: i32,
    buf: u64,
    nbytes: u64,
    offset: i64,
}

fn read_iocb(user: &mut UserReader, va: u64) -> Result<Iocb, Errno> {
    let mut b = [0u8; 64];
    user.read(va, &mut b)?;
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
    let reserved2 = u64_at(48);
    let flags = u32_at(56);
    if reserved2 != 0 || flags != 0 {
        // IOCB_FLAG_RESFD (eventfd notification) and IOCB_FLAG_IOPRIO are not supported.
        return Err(Errno::EINVAL);
    }
    Ok(Iocb {
        data: u64_at(0),
        opcode: u16::from_le_bytes([b[16], b[17]]),
        fd: u32_at(20) as i32,
        buf: u64_at(24),
        nbytes: u64_at(32),
        offset: u64_at(40) as i64,
    })
}

/// `io_submit(ctx, nr, iocbpp)`: the number of requests taken; an error only if the
/// first could not be (EAGAIN when the context is full).
fn io_submit(id: u64, nr: i64, iocbpp: u64) -> SysResult {
    let p = proc::current();
    let ctx = p.files.lock().aio(id)?;
    if nr < 0 {
        return Err(Errno::EINVAL);
    }
    let mut taken = 0u64;
    // The iocb pointers, read a chunk at a time (one user access per chunk); a chunk
    // that is not all readable is read a pointer at a time, so the requests before the
    // first unreadable pointer are still taken, as on Linux.
    const CHUNK: u64 = 64;
    // Room for a batch of planned transfers up front, rather than growing one by one.
    let mut started: Vec<Started> = Vec::with_capacity((nr as usize).min(START_BATCH));
    let mut first_error = None;
    let mut ptrs = [0u8; CHUNK as usize * 8];
    let mut chunk_read = false;
    let mut user = UserReader::new();
    for i in 0..nr as u64 {
        if i % CHUNK == 0 {
            let n = (nr as u64 - i).min(CHUNK) as usize;
            chunk_read = iocbpp
                .checked_add(8 * i)
                .is_some_and(|va| user.read(va, &mut ptrs[..8 * n]).is_ok());
        }
        let k = (i % CHUNK) as usize * 8;
        let obj = if chunk_read {
            Ok(u64::from_le_bytes(
                ptrs[k..k + 8].try_into().unwrap_or([0; 8]),
            ))
        } else {
            uaccess::read_u64(iocbpp.wrapping_add(8 * i))
        };
        let r = obj.and_then(|obj| submit_one(&p, &ctx, &mut user, obj, &mut started));
        match r {
            Ok(()) => {
                taken += 1;
                if started.len() >= START_BATCH {
                    start_all(&mut started);
                }
            }
            Err(e) => {
                first_error = Some(e);
                break;
            }
        }
    }
    start_all(&mut started);
    match first_error {
        Some(e) if taken == 0 => Err(e),
        _ => Ok(taken),
    }
}

/// Planned transfers are started this many at a time, not all at the end of `io_submit`:
/// the device works on the first while the rest are planned. Starting all 32 of a
/// depth-32 batch at once left the device idle while the guest planned them, and the
/// guest idle while the device worked; batches of 4, 8 and 16 all gave virtio about 1.4x
/// the IOPS at depth 32. Each batch reaches a disk with one notification (virtio: one
/// notify; AHCI: one PxCI write).
const START_BATCH: usize = 8;

/// A direct transfer planned by `io_submit`, started with the rest of its batch.
type Started = (DirectIo, Box<dyn FnOnce(Result<usize, Errno>) + Send>);

/// Start the planned transfers: they reach each disk as one batch, one notification for
/// all.
fn start_all(planned: &mut Vec<Started>) {
    if planned.is_empty() {
        return;
    }
    let _plugs: Vec<_> = crate::block::disks().iter().map(|d| d.plug()).collect();
    for (io, done) in planned.drain(..) {
        io.start(done);
    }
}

/// Take one request: errors about the request itself are the result; what goes wrong
/// with its I/O is its completion's `res`. A direct transfer is planned into `planned`,
/// to be started with the others; everything else is done here, after starting what is
/// planned so far (a planned read may hold up a truncation of its file, which must not
/// wait for this request's work too).
fn submit_one(
    p: &Process,
    ctx: &Arc<AioContext>,
    user: &mut UserReader,
    obj: u64,
    planned: &mut Vec<Started>,
) -> Result<(), Errno> {
    let cb = read_iocb(user, obj)?;
    let file = p.files.lock().get(cb.fd)?;
    let op = match cb.opcode {
        IOCB_CMD_PREAD | IOCB_CMD_PREADV => Op::Read,
        IOCB_CMD_PWRITE | IOCB_CMD_PWRITEV => Op::Write,
        IOCB_CMD_FSYNC | IOCB_CMD_FDSYNC => Op::Flush,
        _ => return Err(Errno::EINVAL),
    };
    match op {
        Op::Read if !file.readable() => return Err(Errno::EBADF),
        Op::Write if !file.writable() => return Err(Errno::EBADF),
        _ => {}
    }
    if cb.offset < 0 && op != Op::Flush {
        return Err(Errno::EINVAL);
    }
    let vectored = matches!(cb.opcode, IOCB_CMD_PREADV | IOCB_CMD_PWRITEV);
    let one = [(cb.buf, cb.nbytes as usize)];
    let read;
    let iovs: &[(u64, usize)] = if vectored {
        read = abi::read_iovecs(cb.buf, cb.nbytes)?;
        &read
    } else {
        &one
    };
    if !ctx.reserve(obj) {
        return Err(Errno::EAGAIN);
    }
    let event = move |res: Result<usize, Errno>| IoEvent {
        data: cb.data,
        obj,
        res: match res {
            Ok(n) => n as i64,
            Err(e) => e.to_ret() as i64,
        },
        res2: 0,
    };
    let mut event_now = |planned: &mut Vec<Started>, r: &dyn Fn() -> Result<usize, Errno>| {
        start_all(planned);
        // The work may write user memory (a buffered read into it; a copy-on-write
        // break): the page the reader keeps is let go first, so that the write needs no
        // copy on its account and later iocbs are read as they are after it.
        user.forget();
        ctx.complete(event(r()), 0)
    };
    if op == Op::Flush {
        event_now(planned, &|| {
            file.fsync(cb.opcode == IOCB_CMD_FDSYNC).map(|_| 0)
        });
        return Ok(());
    }
    let pos = cb.offset as u64;
    // Direct writes complete while they are planned (the page-cache work after the DMA
    // needs a task), so writes are done here, each byte once.
    let direct = match op {
        Op::Read => plan(&file, op, pos, iovs),
        _ => None,
    };
    match direct {
        Some(Ok(io)) if ctx.charge_pins(io.bytes()) => {
            let (ctx2, pinned) = (ctx.clone(), io.bytes());
            // Started with the rest of the batch, even a read that holds up a truncation
            // of its file (the truncation waits without the file's lock; see
            // ext2's `Inode::lock_without_direct_reads`).
            planned.push((io, Box::new(move |r| ctx2.complete(event(r), pinned))));
        }
        Some(Ok(io)) => {
            // Past the context's pinning budget: let go and do it now instead.
            drop(io);
            event_now(planned, &|| transfer_now(&file, op, pos, iovs));
        }
        Some(Err(e)) => ctx.complete(event(Err(e)), 0),
        None => event_now(planned, &|| transfer_now(&file, op, pos, iovs)),
    }
    Ok(())
}

/// One direct transfer for all of `iovs` (contiguous in the file from `pos`), or None if
/// any piece has no direct path.
fn plan(file: &File, op: Op, pos: u64, iovs: &[(u64, usize)]) -> Option<Result<DirectIo, Errno>> {
    let total = iovs.iter().fold(0usize, |t, &(_, l)| t.saturating_add(l));
    if total > crate::vfs::direct::MAX_DIRECT_BYTES {
        return None; // done now, a piece at a time
    }
    let mut whole: Option<DirectIo> = None;
    let mut at = pos;
    for &(va, len) in iovs {
        let mut io = match file.plan_direct(op, at, va, len)? {
            Ok(io) => io,
            Err(e) => return Some(Err(e)),
        };
        at += len as u64;
        let short = io.bytes() < len;
        match whole.as_mut() {
            None => whole = Some(io),
            Some(w) => {
                if !w.append(&mut io) {
                    return None;
                }
            }
        }
        if short {
            break; // the end of the device: nothing after it
        }
    }
    whole.map(Ok)
}

/// The transfer done now, as `preadv`/`pwritev` would.
fn transfer_now(file: &File, op: Op, pos: u64, iovs: &[(u64, usize)]) -> Result<usize, Errno> {
    if op == Op::Read {
        fs::read_iovs(file, iovs, Some(pos))
    } else {
        fs::write_iovs(file, iovs, Some(pos), 0)
    }
}
