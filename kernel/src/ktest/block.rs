//! Block devices on QEMU's real device models: scatter-gather from scattered frames, many
//! requests in flight, flush, errors (range, alignment, read-only, injected EIO), and a
//! 64 MiB sequential write that the host verifies in the image file after QEMU exits.
//!
//! Command line: `blk_test=vda,sda` names the disks to exercise (never the boot disk);
//! `ro=NAME` marks a disk QEMU attached read-only; `eio=NAME:SECTOR` a disk whose sector
//! fails through QEMU's blkdebug.

use alloc::boxed::Box;
use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use drivers::block::pattern;
use drivers::block::{BlockDevice, BlockError, Op, Request, SECTOR_SIZE, Segment};
use mm::frame::{FRAME_SIZE, Pfn};
use mm::frame_table::Owner;

use super::TestResult;
use crate::block::{self, Disk};
use crate::memory::frames;
use crate::{cmdline, ensure, kprintln, time};

/// Where each test writes, in sectors (the host checks these regions).
pub const MULTI_SEGMENT_SECTOR: u64 = 8;
pub const IN_FLIGHT_SECTOR: u64 = 16 * 1024;
pub const SEQUENTIAL_SECTOR: u64 = 32 * 1024;
pub const SEQUENTIAL_BYTES: u64 = 64 << 20;
pub const PLUGGED_SECTOR: u64 = 24 * 1024;

/// Seeds of the three regions' patterns.
const SEED_MULTI: u64 = 1;
const SEED_IN_FLIGHT: u64 = 2;
const SEED_SEQUENTIAL: u64 = 3;
const SEED_PLUGGED: u64 = 4;

/// Frames owned by a test, freed on drop. Allocated two at a time keeping one, so no two
/// are physically adjacent: a driver that assumed contiguity would corrupt data.
struct Frames(Vec<Pfn>);

impl Frames {
    fn scattered(n: usize) -> Result<Frames, alloc::string::String> {
        let fa = frames();
        let mut keep = Vec::with_capacity(n);
        let mut spare = Vec::with_capacity(n);
        while keep.len() < n {
            let a = fa.alloc(Owner::Test).map_err(|e| format!("alloc: {e}"))?;
            let b = fa.alloc(Owner::Test).map_err(|e| format!("alloc: {e}"))?;
            keep.push(a);
            spare.push(b);
        }
        for p in spare {
            let _ = fa.put(p);
        }
        Ok(Frames(keep))
    }
}

impl Drop for Frames {
    fn drop(&mut self) {
        for &p in &self.0 {
            let _ = frames().put(p);
        }
    }
}

/// Physically contiguous frames owned by a test (first, count), freed on drop.
struct Contiguous(Pfn, u64);

impl Contiguous {
    fn alloc(n: u64) -> Result<Contiguous, alloc::string::String> {
        let p = frames()
            .alloc_contiguous(n, Owner::Test)
            .map_err(|e| format!("alloc {n} contiguous frames: {e}"))?;
        Ok(Contiguous(p, n))
    }

    /// All of it as one segment.
    fn segment(&self) -> Segment {
        Segment {
            phys: self.0.addr(),
            len: (self.1 as usize * FRAME_SIZE) as u32,
        }
    }
}

impl Drop for Contiguous {
    fn drop(&mut self) {
        let _ = frames().free_contiguous(self.0, self.1);
    }
}

fn sectors_of(segments: &[Segment]) -> impl Iterator<Item = (Pfn, usize)> + '_ {
    segments.iter().flat_map(|s| {
        (0..s.len as u64 / SECTOR_SIZE as u64).map(move |i| {
            let phys = s.phys + i * SECTOR_SIZE as u64;
            (Pfn::from_addr(phys), (phys % FRAME_SIZE as u64) as usize)
        })
    })
}

fn fill(segments: &[Segment], sector: u64, seed: u64) {
    let mut buf = [0u8; SECTOR_SIZE];
    for (i, (pfn, off)) in sectors_of(segments).enumerate() {
        pattern::fill_sector(&mut buf, sector + i as u64, seed);
        super::frame_write(pfn, off, &buf);
    }
}

/// Index of the first sector that does not hold its pattern.
fn first_bad(segments: &[Segment], sector: u64, seed: u64) -> Option<usize> {
    let mut buf = [0u8; SECTOR_SIZE];
    sectors_of(segments)
        .enumerate()
        .find_map(|(i, (pfn, off))| {
            super::frame_read(pfn, off, &mut buf);
            (!pattern::check_sector(&buf, sector + i as u64, seed)).then_some(i)
        })
}

fn whole(pfn: Pfn) -> Segment {
    Segment {
        phys: pfn.addr(),
        len: FRAME_SIZE as u32,
    }
}

fn test_disks() -> Result<Vec<Arc<Disk>>, alloc::string::String> {
    let names = cmdline::value("blk_test").ok_or("no blk_test= on the command line")?;
    names
        .split(',')
        .filter(|n| !n.is_empty())
        .map(|n| {
            block::find(n).ok_or_else(|| {
                format!(
                    "disk {n} not found (have {:?})",
                    block::disks().iter().map(|d| d.name()).collect::<Vec<_>>()
                )
            })
        })
        .collect()
}

fn writable_disks() -> Result<Vec<Arc<Disk>>, alloc::string::String> {
    Ok(test_disks()?
        .into_iter()
        .filter(|d| !d.info().read_only)
        .collect())
}

/// Every disk named on the command line exists, with the size the host gave it.
pub fn disks_found_with_capacity() -> TestResult {
    let disks = test_disks()?;
    ensure!(!disks.is_empty(), "no disks to test");
    for d in &disks {
        let want =
            cmdline::value(&format!("size_{}", d.name())).and_then(|v| v.parse::<u64>().ok());
        ensure!(
            want.is_none_or(|w| w == d.info().sectors * 512),
            "{}: {} bytes, host made {want:?}",
            d.name(),
            d.info().sectors * 512
        );
        ensure!(
            d.info().queue_depth > 1,
            "{}: queue depth {}",
            d.name(),
            d.info().queue_depth
        );
    }
    Ok(())
}

/// One write from eight scattered frames with sub-page segments, read back through a
/// different segmentation into other frames.
pub fn multi_segment_round_trip() -> TestResult {
    for d in writable_disks()? {
        let f = Frames::scattered(16)?;
        let out = [
            whole(f.0[0]),
            Segment {
                phys: f.0[1].addr() + 512,
                len: 1024,
            },
            whole(f.0[2]),
            Segment {
                phys: f.0[3].addr() + 3584,
                len: 512,
            },
            Segment {
                phys: f.0[4].addr(),
                len: 2048,
            },
            whole(f.0[5]),
            Segment {
                phys: f.0[6].addr() + 1024,
                len: 3072,
            },
            whole(f.0[7]),
        ];
        let total: u64 = out.iter().map(|s| s.len as u64).sum();
        fill(&out, MULTI_SEGMENT_SECTOR, SEED_MULTI);
        let n = d
            .io(Op::Write, MULTI_SEGMENT_SECTOR, out.to_vec())
            .map_err(|e| format!("{}: write: {e}", d.name()))?;
        ensure!(n == total, "{}: wrote {n} of {total} bytes", d.name());
        // Read back as full frames plus a tail, into the other eight frames.
        let sectors = total / 512;
        let mut back: Vec<Segment> = f.0[8..].iter().map(|&p| whole(p)).collect();
        let mut left = sectors * 512;
        back.retain_mut(|s| {
            if left == 0 {
                return false;
            }
            s.len = s.len.min(left as u32);
            left -= s.len as u64;
            true
        });
        for &p in &f.0[8..] {
            super::frame_write(p, 0, &[0xEE; FRAME_SIZE]);
        }
        d.io(Op::Read, MULTI_SEGMENT_SECTOR, back.clone())
            .map_err(|e| format!("{}: read: {e}", d.name()))?;
        if let Some(i) = first_bad(&back, MULTI_SEGMENT_SECTOR, SEED_MULTI) {
            return Err(format!(
                "{}: sector {} read back wrong",
                d.name(),
                MULTI_SEGMENT_SECTOR + i as u64
            ));
        }
    }
    Ok(())
}

/// 64 requests submitted at once; more than one is in flight at the device; every one
/// completes exactly once, and the data is right.
pub fn many_requests_in_flight() -> TestResult {
    const N: usize = 64;
    for d in writable_disks()? {
        let f = Frames::scattered(2 * N)?;
        let done = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let irqs_before = d.interrupts();
        let mut peak = 0;
        // Fill every buffer first: submitting back to back keeps the device busy.
        for i in 0..N {
            fill(
                &[whole(f.0[2 * i]), whole(f.0[2 * i + 1])],
                IN_FLIGHT_SECTOR + (i as u64) * 16,
                SEED_IN_FLIGHT,
            );
        }
        // Submit back to back with interrupts off, so completions cannot be reaped between
        // submissions: the device holds as many requests as its queue takes.
        crate::arch::cpu::without_interrupts(|| -> TestResult {
            for i in 0..N {
                let sector = IN_FLIGHT_SECTOR + (i as u64) * 16;
                let req = counted_write(sector, &f.0[2 * i..2 * i + 2], &done, &failed)?;
                d.submit(req)
                    .map_err(|e| format!("{}: submit {i}: {e}", d.name()))?;
                peak = peak.max(d.in_flight());
                let refs = frames().table().get(f.0[2 * i]).map_or(0, |d| d.refcount());
                ensure!(
                    refs == 2,
                    "{}: a request in flight holds no reference to its frame ({refs})",
                    d.name()
                );
            }
            Ok(())
        })?;
        d.wait_until(&|| done.load(Ordering::SeqCst) >= N);
        time::sleep_ticks(1);
        let leaked =
            f.0.iter()
                .filter(|&&p| frames().table().get(p).is_none_or(|d| d.refcount() != 1))
                .count();
        ensure!(
            leaked == 0,
            "{}: {leaked} frames still referenced after their requests completed",
            d.name()
        );
        ensure!(
            done.load(Ordering::SeqCst) == N,
            "{}: {} completions for {N} requests",
            d.name(),
            done.load(Ordering::SeqCst)
        );
        ensure!(
            failed.load(Ordering::SeqCst) == 0,
            "{}: {} requests failed",
            d.name(),
            failed.load(Ordering::SeqCst)
        );
        ensure!(
            peak > 1,
            "{}: never more than {peak} request in flight",
            d.name()
        );
        ensure!(
            d.in_flight() == 0,
            "{}: {} requests still in flight",
            d.name(),
            d.in_flight()
        );
        if d.vector.is_some() {
            ensure!(
                d.interrupts() > irqs_before,
                "{}: completions arrived without interrupts",
                d.name()
            );
        }
        // Read everything back in one request per 16 sectors, into cleared frames.
        for &p in &f.0 {
            super::frame_zero(p);
        }
        for i in 0..N {
            let segs = alloc::vec![whole(f.0[2 * i]), whole(f.0[2 * i + 1])];
            let sector = IN_FLIGHT_SECTOR + (i as u64) * 16;
            d.io(Op::Read, sector, segs.clone())
                .map_err(|e| format!("{}: read {i}: {e}", d.name()))?;
            if let Some(bad) = first_bad(&segs, sector, SEED_IN_FLIGHT) {
                return Err(format!(
                    "{}: request {i} sector {} wrong",
                    d.name(),
                    sector + bad as u64
                ));
            }
        }
        kprintln!(
            "    {}: {N} requests, peak {peak} in flight, {} interrupts",
            d.name(),
            d.interrupts() - irqs_before
        );
    }
    Ok(())
}

/// A write of the whole frames `pfns` at `sector` that counts its completion in `done`,
/// and in `failed` unless it moved every byte. It owns a reference to each of its frames
/// until it completes.
fn counted_write(
    sector: u64,
    pfns: &[Pfn],
    done: &Arc<AtomicUsize>,
    failed: &Arc<AtomicUsize>,
) -> Result<Request, alloc::string::String> {
    let held = pfns
        .iter()
        .map(|&p| mm::FrameRef::new(frames(), p).map_err(|e| format!("{e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = (pfns.len() * FRAME_SIZE) as u64;
    let (dn, fl) = (done.clone(), failed.clone());
    Ok(Request::new(
        Op::Write,
        sector,
        pfns.iter().map(|&p| whole(p)).collect(),
        Box::new(move |c| {
            if c.result != Ok(bytes) {
                fl.fetch_add(1, Ordering::SeqCst);
            }
            dn.fetch_add(1, Ordering::SeqCst);
        }),
    )
    .owning(held))
}

/// A plugged batch larger than the device's queue, with a flush in the middle, reaches
/// the disk when the plug goes: every write lands, the flush completes, and the device
/// is told of the batch with a few notifications, not one per request (AHCI: one PxCI
/// write for all the free slots; virtio: one notify per queue-full).
pub fn plugged_batch_reaches_the_disk() -> TestResult {
    const N: usize = 48;
    for d in writable_disks()? {
        let f = Frames::scattered(N)?;
        for (i, &p) in f.0.iter().enumerate() {
            fill(&[whole(p)], PLUGGED_SECTOR + i as u64 * 8, SEED_PLUGGED);
        }
        let done = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let flushed = Arc::new(AtomicUsize::new(0));
        let notifies = || drivers::block::stats::get("blk_notifies").unwrap_or(0);
        let before = notifies();
        {
            let _plug = d.plug();
            for i in 0..N {
                let sector = PLUGGED_SECTOR + i as u64 * 8;
                let req = counted_write(sector, &f.0[i..i + 1], &done, &failed)?;
                d.submit(req)
                    .map_err(|e| format!("{}: submit {i}: {e}", d.name()))?;
                if i == N / 2 {
                    // A disk without a flush command refuses it: only its completion
                    // counts there.
                    let (fd, fl, must) = (flushed.clone(), failed.clone(), d.info().flush);
                    let flush = Request::new(
                        Op::Flush,
                        0,
                        Vec::new(),
                        Box::new(move |c| {
                            if must && c.result.is_err() {
                                fl.fetch_add(1, Ordering::SeqCst);
                            }
                            fd.fetch_add(1, Ordering::SeqCst);
                        }),
                    );
                    d.submit(flush)
                        .map_err(|e| format!("{}: submit the flush: {e}", d.name()))?;
                }
            }
            ensure!(
                done.load(Ordering::SeqCst) == 0,
                "{}: a request completed while the disk was plugged",
                d.name()
            );
        }
        d.wait_until(&|| done.load(Ordering::SeqCst) >= N && flushed.load(Ordering::SeqCst) > 0);
        let told = notifies() - before;
        ensure!(
            failed.load(Ordering::SeqCst) == 0,
            "{}: {} of the batch's requests failed",
            d.name(),
            failed.load(Ordering::SeqCst)
        );
        ensure!(
            told < N as u64 / 2,
            "{}: {told} notifications for a batch of {} requests",
            d.name(),
            N + 1
        );
        for (i, &p) in f.0.iter().enumerate() {
            super::frame_zero(p);
            let sector = PLUGGED_SECTOR + i as u64 * 8;
            d.io(Op::Read, sector, alloc::vec![whole(p)])
                .map_err(|e| format!("{}: read back {i}: {e}", d.name()))?;
            ensure!(
                first_bad(&[whole(p)], sector, SEED_PLUGGED).is_none(),
                "{}: write {i} of the batch did not land",
                d.name()
            );
        }
        kprintln!(
            "    {}: a plugged batch of {} requests, {told} notifications",
            d.name(),
            N + 1
        );
    }
    Ok(())
}

/// A flush succeeds (or is refused clearly on a read-only disk).
pub fn flush_completes() -> TestResult {
    for d in test_disks()? {
        let r = d.flush();
        if d.info().read_only {
            ensure!(
                r == Err(BlockError::ReadOnly),
                "{}: flush of a read-only disk gave {r:?}",
                d.name()
            );
        } else {
            ensure!(r == Ok(0), "{}: flush gave {r:?}", d.name());
        }
    }
    Ok(())
}

/// Bad requests are refused with the right error and the disk keeps working.
pub fn invalid_requests_are_refused() -> TestResult {
    for d in test_disks()? {
        let f = Frames::scattered(2)?;
        let cap = d.info().sectors;
        let name = d.name();
        let one = || {
            alloc::vec![Segment {
                phys: f.0[0].addr(),
                len: 512
            }]
        };
        ensure!(
            d.io(Op::Read, cap, one()) == Err(BlockError::OutOfRange),
            "{name}: read at the end accepted"
        );
        ensure!(
            d.io(
                Op::Read,
                cap - 1,
                alloc::vec![Segment {
                    phys: f.0[0].addr(),
                    len: 1024
                }]
            ) == Err(BlockError::OutOfRange),
            "{name}: read across the end accepted"
        );
        ensure!(
            d.io(Op::Read, u64::MAX - 1, one()) == Err(BlockError::OutOfRange),
            "{name}: sector overflow accepted"
        );
        ensure!(
            d.io(Op::Read, 0, Vec::new()) == Err(BlockError::ZeroLength),
            "{name}: empty read accepted"
        );
        ensure!(
            d.io(
                Op::Read,
                0,
                alloc::vec![Segment {
                    phys: f.0[0].addr() + 8,
                    len: 512
                }]
            ) == Err(BlockError::Misaligned),
            "{name}: misaligned segment accepted"
        );
        ensure!(
            d.io(
                Op::Read,
                0,
                alloc::vec![Segment {
                    phys: f.0[0].addr(),
                    len: 100
                }]
            ) == Err(BlockError::Misaligned),
            "{name}: odd length accepted"
        );
        let too_many =
            alloc::vec![Segment { phys: f.0[0].addr(), len: 512 }; d.info().max_segments + 1];
        ensure!(
            d.io(Op::Read, 0, too_many) == Err(BlockError::TooLarge),
            "{name}: too many segments accepted"
        );
        ensure!(
            d.io(Op::Read, 0, one()) == Ok(512),
            "{name}: disk unusable after bad requests"
        );
    }
    Ok(())
}

/// A disk attached read-only (`ro=NAME`) refuses writes and still reads.
pub fn read_only_disk_refuses_writes() -> TestResult {
    let Some(name) = cmdline::value("ro") else {
        return Ok(());
    };
    let d = block::find(name).ok_or_else(|| format!("no disk {name}"))?;
    ensure!(
        d.info().read_only,
        "{name} was attached read-only but the driver did not notice"
    );
    let f = Frames::scattered(1)?;
    let seg = || alloc::vec![whole(f.0[0])];
    ensure!(
        d.io(Op::Write, 0, seg()) == Err(BlockError::ReadOnly),
        "{name}: write accepted"
    );
    ensure!(d.io(Op::Read, 0, seg()) == Ok(4096), "{name}: read failed");
    Ok(())
}

/// QEMU's blkdebug fails reads and writes at one sector (`eio=NAME:SECTOR`): the request
/// gets an I/O error, its neighbours and later requests still work.
pub fn injected_io_errors_are_reported() -> TestResult {
    let Some(spec) = cmdline::value("eio") else {
        return Ok(());
    };
    let (name, sector) = spec.split_once(':').ok_or("eio=NAME:SECTOR")?;
    let sector: u64 = sector.parse().map_err(|_| "bad eio sector")?;
    let d = block::find(name).ok_or_else(|| format!("no disk {name}"))?;
    let f = Frames::scattered(4)?;
    let seg = |i: usize| alloc::vec![whole(f.0[i])];
    let r = d.io(Op::Read, sector, seg(0));
    ensure!(
        r == Err(BlockError::Io),
        "{name}: read of the failing sector gave {r:?}"
    );
    let w = d.io(Op::Write, sector, seg(1));
    ensure!(
        w == Err(BlockError::Io),
        "{name}: write of the failing sector gave {w:?}"
    );
    ensure!(
        d.io(Op::Read, sector + 64, seg(2)) == Ok(4096),
        "{name}: disk unusable after an I/O error"
    );
    // An error in the middle of several queued requests fails only that one.
    let results = Arc::new(spin::Mutex::new(Vec::new()));
    for (i, s) in [sector - 16, sector, sector + 16].into_iter().enumerate() {
        let r = results.clone();
        d.submit(Request::new(
            Op::Read,
            s,
            seg(i),
            Box::new(move |c| r.lock().push((i, c.result))),
        ))
        .map_err(|e| format!("submit: {e}"))?;
    }
    d.wait_until(&|| results.lock().len() == 3);
    let mut got = results.lock().clone();
    got.sort_by_key(|(i, _)| *i);
    ensure!(
        got == [(0, Ok(4096)), (1, Err(BlockError::Io)), (2, Ok(4096))],
        "{name}: queued requests around the bad sector gave {got:?}"
    );
    Ok(())
}

/// 64 MiB written sequentially in 256 KiB requests of 64 scattered frames; the host
/// checks every sector in the image afterwards.
pub fn sequential_64mib_write() -> TestResult {
    const FRAMES_PER_REQUEST: usize = 64;
    let request_bytes = (FRAMES_PER_REQUEST * FRAME_SIZE) as u64;
    for d in writable_disks()? {
        // Every other request from one physically contiguous buffer: one segment of
        // 256 KiB (an SGL Data Block on NVMe) instead of 64 pages.
        let f = Frames::scattered(FRAMES_PER_REQUEST)?;
        let scattered: Vec<Segment> = f.0.iter().map(|&p| whole(p)).collect();
        let run = Contiguous::alloc(FRAMES_PER_REQUEST as u64)?;
        let contiguous = alloc::vec![run.segment()];
        let stat = |name| drivers::block::stats::get(name).unwrap_or(0);
        let (notifies0, irqs0, disk_irqs0) =
            (stat("blk_notifies"), stat("blk_interrupts"), d.interrupts());
        let start = time::now_ns();
        let mut sector = SEQUENTIAL_SECTOR;
        let end = SEQUENTIAL_SECTOR + SEQUENTIAL_BYTES / 512;
        let mut fill_ns = 0;
        while sector < end {
            let segs = if (sector / (request_bytes / 512)).is_multiple_of(2) {
                &scattered
            } else {
                &contiguous
            };
            let t = time::now_ns();
            fill(segs, sector, SEED_SEQUENTIAL);
            fill_ns += time::now_ns() - t;
            let n = d
                .io(Op::Write, sector, segs.clone())
                .map_err(|e| format!("{}: write at {sector}: {e}", d.name()))?;
            ensure!(n == request_bytes, "{}: short write {n}", d.name());
            sector += request_bytes / 512;
        }
        d.flush().map_err(|e| format!("{}: flush: {e}", d.name()))?;
        let io_ns = (time::now_ns() - start - fill_ns).max(1);
        // Each request waited for its own completion, so each was announced to the
        // device on its own (`blk_notifies`); every interrupt of this disk was counted in
        // `blk_interrupts`, which also counts the other disks'.
        let requests = SEQUENTIAL_BYTES / request_bytes;
        let notifies = stat("blk_notifies") - notifies0;
        ensure!(
            notifies >= requests,
            "{}: {notifies} device notifications for {requests} requests",
            d.name()
        );
        let (irqs, disk_irqs) = (stat("blk_interrupts") - irqs0, d.interrupts() - disk_irqs0);
        ensure!(
            irqs >= disk_irqs && (d.vector.is_none() || disk_irqs > 0),
            "{}: blk_interrupts grew by {irqs}, the disk's own interrupts by {disk_irqs}",
            d.name()
        );
        kprintln!(
            "    {}: 64 MiB written, {} MiB/s of device time",
            d.name(),
            (SEQUENTIAL_BYTES * 1_000_000_000 / io_ns) >> 20
        );
    }
    Ok(())
}

/// Random 4 KiB reads at queue depth 32 on every disk named by `blk_test=`, for
/// `soak_secs=` seconds each (default 60): any stall fails. Completions run in the disk
/// interrupt; a lost completion or a handler deadlock would stop the flow (the host's
/// timeout catches a hard hang, the watchdog a stuck request, which then counts as an
/// error here). The longest wait for a completion is reported.
pub fn soak_random_reads_qd32() -> TestResult {
    let secs: u64 = cmdline::value("soak_secs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    for d in test_disks()? {
        let f = Frames::scattered(32)?;
        let r = crate::bench::random_reads(&d, 32, &f.0, secs * 1_000_000_000);
        kprintln!(
            "soak {}: {:.0} IOPS over {secs} s at QD32, {} errors, longest wait for a completion {} ms",
            d.name(),
            r.iops,
            r.errors,
            r.max_gap_ns / 1_000_000
        );
        ensure!(r.errors == 0, "{}: {} requests failed", d.name(), r.errors);
        ensure!(r.completed > 0, "{}: nothing completed", d.name());
        // No single completion may take as long as the watchdog's patience.
        ensure!(
            r.max_gap_ns < drivers::block::REQUEST_TIMEOUT_NS / 2,
            "{}: a completion took {} ms (a stall)",
            d.name(),
            r.max_gap_ns / 1_000_000
        );
    }
    Ok(())
}
