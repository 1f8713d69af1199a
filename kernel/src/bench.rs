//! In-kernel benchmarks, run with `bench=blk` on the command line by `make bench-blk`,
//! which compares them with the same workloads in a Linux guest on the same QEMU machine.
//!
//! Raw device workloads on every disk of at least 512 MiB (or the one named by
//! `bench_disk=`): sequential 1 MiB reads and writes at queue depth 1 (like fio with
//! O_DIRECT), random 4 KiB reads at queue depth 1 and 32 (like fio with libaio). Each
//! prints `BENCH <bus> <workload> <value> <unit>`.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

use core::sync::atomic::{AtomicU64, Ordering};
use drivers::block::{BlockDevice, Op, Request, Segment};
use mm::frame::{FRAME_SIZE, Pfn};
use mm::frame_table::Owner;

use crate::arch::{acpi, cpu};
use crate::block::{self, Disk};
use crate::memory::frames;
use crate::{cmdline, kprintln, time};

const MIB: u64 = 1 << 20;
/// Length of each workload (fio's runtime on the Linux side).
const RUN_SECONDS: u64 = 5;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn bus(d: &Disk) -> &'static str {
    if d.name().starts_with("vd") {
        "virtio"
    } else if d.name().starts_with("sd") {
        "ahci"
    } else {
        "nvme"
    }
}

fn seconds(ns: u64) -> f64 {
    ns.max(1) as f64 / 1e9
}

/// Sequential 1 MiB transfers at queue depth 1 from one physically contiguous buffer, for
/// [`RUN_SECONDS`] (wrapping at the end of the disk); writes end with a flush, counted in
/// the time, like fio's `end_fsync`. A device taking less than 1 MiB per request gets each
/// MiB as several requests at once (as Linux splits a 1 MiB bio at `max_sectors`).
fn sequential(d: &Disk, op: Op, buf: Pfn) -> Result<f64, drivers::block::BlockError> {
    let piece = d.info().max_bytes.clamp(4096, MIB) / 4096 * 4096;
    let span = (d.info().sectors * 512 / MIB * MIB).max(MIB);
    let start = time::now_ns();
    let deadline = start + RUN_SECONDS * 1_000_000_000;
    let mut bytes = 0;
    while time::now_ns() < deadline {
        let at = bytes % span;
        let runs = (0..MIB.div_ceil(piece))
            .map(|i| {
                let off = i * piece;
                let seg = Segment {
                    phys: buf.addr() + off,
                    len: piece.min(MIB - off) as u32,
                };
                ((at + off) / 512, alloc::vec![seg])
            })
            .collect();
        d.io_all(op, runs, Arc::new(()))?;
        bytes += MIB;
    }
    if op == Op::Write {
        d.flush()?;
    }
    Ok(bytes as f64 / MIB as f64 / seconds(time::now_ns() - start))
}

/// What [`random_reads`] measured.
pub struct RandomReads {
    /// Completed requests per second.
    pub iops: f64,
    /// Requests that completed successfully.
    pub completed: u64,
    /// Requests that failed.
    pub errors: u64,
    /// The longest time the loop waited with requests outstanding and none completing.
    pub max_gap_ns: u64,
}

/// Random 4 KiB reads with `depth` (at most 64) requests outstanding for `run_ns`.
///
/// Completions run in the disk's interrupt handler; they hand buffer `i` back by setting
/// bit `i` of an atomic word. (An earlier version pushed onto a spin-locked list that this
/// loop also locked with interrupts enabled: a completion arriving while the loop held the
/// lock spun forever in the interrupt handler, the QD32 hang.)
pub fn random_reads(d: &Disk, depth: usize, bufs: &[Pfn], run_ns: u64) -> RandomReads {
    let depth = depth.min(bufs.len()).min(64);
    let blocks = d.info().sectors / 8;
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let ready = Arc::new(AtomicU64::new(if depth == 64 {
        u64::MAX
    } else {
        (1u64 << depth) - 1
    }));
    let errors = Arc::new(AtomicU64::new(0));
    let start = time::now_ns();
    let deadline = start + run_ns;
    let mut submitted = 0u64;
    let mut outstanding = 0usize;
    let mut max_gap_ns = 0;
    loop {
        let free = ready.swap(0, Ordering::AcqRel);
        outstanding -= (free.count_ones() as usize).min(outstanding);
        let now = time::now_ns();
        if now >= deadline {
            if outstanding == 0 {
                break;
            }
        } else {
            for i in (0..depth).filter(|i| free & (1 << i) != 0) {
                let sector = (rng.next() % blocks) * 8;
                let (r, e) = (ready.clone(), errors.clone());
                let req = Request::new(
                    Op::Read,
                    sector,
                    alloc::vec![Segment {
                        phys: bufs[i].addr(),
                        len: FRAME_SIZE as u32
                    }],
                    Box::new(move |c| {
                        if c.result.is_err() {
                            e.fetch_add(1, Ordering::Relaxed);
                        }
                        r.fetch_or(1 << i, Ordering::AcqRel);
                    }),
                );
                if d.submit(req).is_ok() {
                    submitted += 1;
                    outstanding += 1;
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    submitted += 1;
                    ready.fetch_or(1 << i, Ordering::AcqRel);
                }
            }
        }
        let waited = time::now_ns();
        d.wait_until(&|| ready.load(Ordering::Acquire) != 0);
        max_gap_ns = max_gap_ns.max(time::now_ns() - waited);
    }
    let errors = errors.load(Ordering::Relaxed);
    let completed = submitted - errors;
    RandomReads {
        iops: completed as f64 / seconds(time::now_ns() - start),
        completed,
        errors,
        max_gap_ns,
    }
}

fn bench_disk(d: &Disk) {
    let bus = bus(d);
    let Ok(big) = frames().alloc_contiguous(MIB / FRAME_SIZE as u64, Owner::Dma) else {
        kprintln!("BENCH {bus} error no-memory");
        return;
    };
    let small: Vec<Pfn> = (0..32)
        .filter_map(|_| frames().alloc(Owner::Dma).ok())
        .collect();
    // Write first, so the reads read data rather than holes.
    match sequential(d, Op::Write, big) {
        Ok(v) => kprintln!("BENCH {bus} seq_write_1m {v:.1} MiB/s"),
        Err(e) => kprintln!("BENCH {bus} seq_write_1m error {e}"),
    }
    match sequential(d, Op::Read, big) {
        Ok(v) => kprintln!("BENCH {bus} seq_read_1m {v:.1} MiB/s"),
        Err(e) => kprintln!("BENCH {bus} seq_read_1m error {e}"),
    }
    let run_ns = RUN_SECONDS * 1_000_000_000;
    kprintln!(
        "BENCH {bus} randread_4k_qd1 {:.0} IOPS",
        random_reads(d, 1, &small, run_ns).iops
    );
    kprintln!(
        "BENCH {bus} randread_4k_qd32 {:.0} IOPS",
        random_reads(d, 32, &small, run_ns).iops
    );
    let _ = frames().free_contiguous(big, MIB / FRAME_SIZE as u64);
    for p in small {
        let _ = frames().put(p);
    }
}

/// Run `suite` and power off.
pub fn run(suite: &str) -> ! {
    if suite != "blk" {
        kprintln!("unknown benchmark '{suite}'");
        cpu::fail_exit(cpu::ExitCode::TestFailed);
    }
    let chosen: Vec<Arc<Disk>> = match cmdline::value("bench_disk") {
        Some(name) => block::find(name).into_iter().collect(),
        None => block::disks()
            .iter()
            .filter(|d| d.info().sectors * 512 >= 512 * MIB && !d.info().read_only)
            .cloned()
            .collect(),
    };
    if chosen.is_empty() {
        kprintln!("BENCH none no-disk");
    }
    for d in &chosen {
        kprintln!(
            "benchmarking {} ({} MiB, {})",
            d.name(),
            d.info().sectors / 2048,
            d.info().features
        );
        bench_disk(d);
    }
    kprintln!("BENCH done");
    acpi::poweroff()
}
