//! The kernel's block devices: probing the PCI storage controllers, naming the disks
//! (`vda`… for virtio-blk, `sda`… for SATA, in probe order), wiring their interrupts, and
//! synchronous I/O for kernel code.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use core::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use drivers::ahci::AhciController;
use drivers::block::copy::{CopyExtent, plan_copies};
use drivers::block::{
    self, BlockDevice, BlockError, DeviceInfo, Op, Request, SectorRange, Segment, Waiter,
};
use drivers::nvme::NvmeController;
use drivers::pci::PciFunction;
use drivers::virtio_blk::VirtioBlk;
use mm::{Counter, PinnedRange, counters};
use spin::{Mutex, Once};

use crate::arch::dma::KernelHal;
use crate::arch::{apic, cpu, trap};
use crate::task::WaitQueue;
use crate::{kprintln, pci};

/// A disk as the rest of the kernel sees it.
pub struct Disk {
    info: DeviceInfo,
    dev: Arc<dyn BlockDevice>,
    /// The interrupt vector, if completions arrive by interrupt (otherwise polled).
    pub vector: Option<u8>,
    /// The PCI function of its controller.
    pub pci: PciFunction,
    /// Requests held back while the disk is plugged ([`Disk::plug`]).
    plugged: Mutex<Option<Vec<Request>>>,
}

/// A plugged disk: requests submitted meanwhile reach the device together, with one
/// notification, when this is dropped.
pub struct Plug<'a> {
    disk: &'a Disk,
    outer: bool,
}

impl Drop for Plug<'_> {
    fn drop(&mut self) {
        if !self.outer {
            return;
        }
        let held = cpu::without_interrupts(|| self.disk.plugged.lock().take());
        if let Some(reqs) = held
            && !reqs.is_empty()
        {
            cpu::without_interrupts(|| self.disk.dev.submit_many(reqs));
        }
    }
}

impl Disk {
    /// `vda`, `sdb`...
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// Interrupts delivered for this disk's controller so far.
    pub fn interrupts(&self) -> u64 {
        self.vector.map(trap::irq_count).unwrap_or(0)
    }

    /// Hold back the requests submitted until the returned guard is dropped, then hand
    /// them to the device as one batch. Nothing may wait for a request of its own while
    /// the disk is plugged. Nested plugs are one.
    pub fn plug(&self) -> Plug<'_> {
        let outer = cpu::without_interrupts(|| {
            let mut p = self.plugged.lock();
            let outer = p.is_none();
            if outer {
                *p = Some(Vec::new());
            }
            outer
        });
        Plug { disk: self, outer }
    }

    /// Read or write `segments` at `sector` and wait for the result.
    pub fn io(&self, op: Op, sector: u64, segments: Vec<Segment>) -> Result<u64, BlockError> {
        block::sync_io(self, &KernelWaiter { disk: self }, op, sector, segments)
    }

    /// [`Disk::io`] for a request that owns `buffers` (the references to its segments'
    /// frames) until it completes.
    pub fn io_owning(
        &self,
        op: Op,
        sector: u64,
        segments: Vec<Segment>,
        buffers: impl Send + 'static,
    ) -> Result<u64, BlockError> {
        block::sync_io_owning(
            self,
            &KernelWaiter { disk: self },
            op,
            sector,
            segments,
            buffers,
        )
    }

    /// Start a transfer between the disk and pinned memory (raw I/O): each part (start
    /// sector, pinned range) is split into requests within the device's limits, all in
    /// flight at once, each carrying its share of the pins until it completes;
    /// `dma_pinned_bytes` counts each request's bytes at its completion. `done` runs
    /// once, when the last request has completed (from the interrupt handler, or from
    /// this call if the device finished at once), with the bytes moved contiguously from
    /// the start (a failure ends the count; a failure of the first request is the
    /// result).
    pub fn submit_pinned(
        &self,
        op: Op,
        parts: PinnedParts,
        done: impl FnOnce(Result<u64, BlockError>) + Send + 'static,
    ) {
        let info = self.info();
        let max_pieces = info.max_segments.max(1);
        let max_bytes = (info.max_bytes.max(512) as usize).min(PINNED_REQUEST_BYTES) / 512 * 512;
        // Every request's share (start sector, pins, segments) is cut before the first is
        // submitted, so their number is known before any completes. The first is kept
        // apart: a transfer of one request allocates no list.
        let mut first = None;
        let mut more = Vec::new();
        for (sector, mut range) in parts {
            let mut at = sector;
            while !range.is_empty() {
                let mut segments = Vec::with_capacity(max_pieces.min(range.pages()));
                let part = range.take_front_runs(max_pieces, max_bytes, |r| {
                    segments.push(Segment {
                        phys: r.addr,
                        len: r.len as u32,
                    })
                });
                let share = (at, part, segments);
                at += share.1.bytes() as u64 / 512;
                match first {
                    None => first = Some(share),
                    Some(_) => more.push(share),
                }
            }
        }
        let Some(first) = first else {
            // Nothing to move.
            done(Ok(0));
            return;
        };
        if more.is_empty() {
            // Most transfers are one request (a 4 KiB read; a 1 MiB read of few runs): it
            // reports to `done` itself, with no shared state.
            self.submit_one_pinned(op, first, done);
            return;
        }
        let count = 1 + more.len();
        // The results' room is made here, with interrupts on: completions (in the
        // interrupt handler) never allocate.
        let state = Arc::new(Mutex::new(Transfer {
            first: None,
            rest: alloc::vec![None; count - 1],
            left: count,
            done: Some(Box::new(done)),
        }));
        let _batch = self.plug();
        for (i, share) in core::iter::once(first).chain(more).enumerate() {
            let st = state.clone();
            let req = pinned_request(op, share, move |r| Transfer::finish(&st, i, r));
            if let Err(e) = self.submit(req) {
                // This request and the ones after it never start (dropping them releases
                // their pins).
                for j in i..count {
                    Transfer::finish(&state, j, Err(e));
                }
                break;
            }
        }
    }

    /// The one request of a pinned transfer: its completion releases the pins, counts
    /// the bytes and reports to `done`. A request that fails the disk's checks reports
    /// why; one refused anyway reports an I/O error.
    fn submit_one_pinned(
        &self,
        op: Op,
        share: (u64, PinnedRange, Vec<Segment>),
        done: impl FnOnce(Result<u64, BlockError>) + Send + 'static,
    ) {
        let done = ReportOnce(Some(done));
        let req = pinned_request(op, share, move |r| done.report(r));
        // Checked first, so that a refusal reaches `done` with its reason (a refused
        // request is dropped, not completed).
        match drivers::block::validate(self.info(), &req) {
            Err(e) => req.complete(Err(e)),
            Ok(_) => {
                if let Err(e) = self.submit(req) {
                    // Dropped uncompleted: `ReportOnce` has reported an I/O error.
                    log::error!("{}: a checked request was refused: {e:?}", self.name());
                }
            }
        }
    }

    /// [`Disk::submit_pinned`], waiting for the result.
    pub fn io_pinned(&self, op: Op, parts: PinnedParts) -> Result<u64, BlockError> {
        let slot: Arc<Mutex<Option<Result<u64, BlockError>>>> = Arc::new(Mutex::new(None));
        let s = slot.clone();
        self.submit_pinned(op, parts, move |r| *s.lock() = Some(r));
        self.wait_until(&|| slot.lock().is_some());
        slot.lock().take().unwrap_or(Err(BlockError::Io))
    }

    /// Read or write several runs at once, each `(sector, segments)` one request, every
    /// request owning a share of `held` (what keeps the segments' frames alive), and wait
    /// for all of them. Fails if any failed.
    pub fn io_all<T: Send + Sync + 'static>(
        &self,
        op: Op,
        runs: Vec<(u64, Vec<Segment>)>,
        held: Arc<T>,
    ) -> Result<(), BlockError> {
        let left = Arc::new(AtomicUsize::new(runs.len()));
        let failed: Arc<Mutex<Option<BlockError>>> = Arc::new(Mutex::new(None));
        for (sector, segs) in runs {
            let (l, f) = (left.clone(), failed.clone());
            let req = Request::new(
                op,
                sector,
                segs,
                Box::new(move |c| {
                    if let Err(e) = c.result {
                        f.lock().get_or_insert(e);
                    }
                    l.fetch_sub(1, AtomicOrdering::SeqCst);
                }),
            )
            .owning(held.clone());
            if let Err(e) = self.submit(req) {
                cpu::without_interrupts(|| *failed.lock().get_or_insert(e));
                left.fetch_sub(1, AtomicOrdering::SeqCst);
            }
        }
        self.wait_until(&|| left.load(AtomicOrdering::SeqCst) == 0);
        let failed = cpu::without_interrupts(|| *failed.lock());
        failed.map_or(Ok(()), Err)
    }

    /// Copy `extents` inside the device ([`Op::Copy`]: no memory touched), cut into
    /// requests within its copy limits, all in flight at once, and wait. Returns the
    /// bytes copied in order before the first request that failed, and that failure: a
    /// caller reports only a prefix that is whole. A device that cannot copy fails with
    /// `Unsupported` having copied nothing.
    pub fn copy(&self, extents: &[CopyExtent]) -> (u64, Option<BlockError>) {
        let c = self.start_copy(extents);
        self.finish_copy(c)
    }

    /// The first half of [`Disk::copy`]: the requests are submitted, and the caller may
    /// do other work before [`Disk::finish_copy`] waits for them.
    pub fn start_copy(&self, extents: &[CopyExtent]) -> CopyInFlight {
        let Some(limits) = self.info().copy else {
            return CopyInFlight {
                results: Arc::new(Mutex::new(alloc::vec![Some(Err(BlockError::Unsupported))])),
                left: Arc::new(AtomicUsize::new(0)),
            };
        };
        let plan = plan_copies(extents, &limits);
        let results: Arc<Mutex<Vec<Option<RequestResult>>>> =
            Arc::new(Mutex::new(alloc::vec![None; plan.len()]));
        let left = Arc::new(AtomicUsize::new(plan.len()));
        let mut reqs = Vec::with_capacity(plan.len());
        for (i, cmd) in plan.into_iter().enumerate() {
            let (r, l) = (results.clone(), left.clone());
            reqs.push(Request::copy(
                cmd.to,
                cmd.sources,
                Box::new(move |c| {
                    r.lock()[i] = Some(c.result);
                    l.fetch_sub(1, AtomicOrdering::SeqCst);
                }),
            ));
        }
        // A request the device refuses completes with its error (`submit_many`).
        cpu::without_interrupts(|| self.dev.submit_many(reqs));
        CopyInFlight { results, left }
    }

    /// Wait for the copy `c` started on this disk; the result of [`Disk::copy`].
    pub fn finish_copy(&self, c: CopyInFlight) -> (u64, Option<BlockError>) {
        let left = c.left;
        self.wait_until(&|| left.load(AtomicOrdering::SeqCst) == 0);
        let results = cpu::without_interrupts(|| core::mem::take(&mut *c.results.lock()));
        ordered_prefix(&results)
    }

    /// Discard `sectors` sectors from `sector` ([`Op::Discard`]), as requests of as many
    /// ranges as the device takes, and wait. Unsupported where the device does not
    /// discard.
    pub fn discard(&self, sector: u64, sectors: u64) -> Result<(), BlockError> {
        let max_ranges = self.info().discard.ok_or(BlockError::Unsupported)?.max(1);
        let ranges: Vec<SectorRange> = (0..sectors)
            .step_by(u32::MAX as usize)
            .map(|at| SectorRange {
                sector: sector + at,
                sectors: (sectors - at).min(u64::from(u32::MAX)) as u32,
            })
            .collect();
        for chunk in ranges.chunks(max_ranges) {
            let done: Arc<Mutex<Option<RequestResult>>> = Arc::new(Mutex::new(None));
            let d = done.clone();
            let req = Request::discard(
                chunk.to_vec(),
                Box::new(move |c| *d.lock() = Some(c.result)),
            );
            self.submit(req)?;
            self.wait_until(&|| done.lock().is_some());
            cpu::without_interrupts(|| *done.lock()).unwrap_or(Err(BlockError::Io))?;
        }
        Ok(())
    }

    /// Flush the device's write cache and wait.
    pub fn flush(&self) -> Result<u64, BlockError> {
        self.io(Op::Flush, 0, Vec::new())
    }

    /// Wait until `cond` holds, servicing this disk meanwhile.
    pub fn wait_until(&self, cond: &dyn Fn() -> bool) {
        KernelWaiter { disk: self }.wait_until(cond)
    }
}

/// Largest request of a pinned transfer (devices may allow less); a bigger transfer goes
/// to the device as several requests in flight at once. Measured with `make
/// bench-direct` on virtio-blk, 1 MiB O_DIRECT reads of a raw disk, median of 3:
/// requests of 64 KiB 1719 MiB/s, 128 KiB 2085, 256 KiB 2281, 1 MiB 2446 (once pinning
/// cost a tenth of the time, fewer and larger requests won; before that, 128 KiB did,
/// as it let the device start while the rest was being set up).
const PINNED_REQUEST_BYTES: usize = 1 << 20;

/// What one request reported.
type RequestResult = Result<u64, BlockError>;

/// The bytes of requests `results` (in order) moved before the first that failed, and
/// that failure (a request with no result counts as failed with EIO).
pub fn ordered_prefix<'a>(
    results: impl IntoIterator<Item = &'a Option<RequestResult>>,
) -> (u64, Option<BlockError>) {
    let mut bytes = 0;
    for r in results {
        match r {
            Some(Ok(n)) => bytes += n,
            Some(Err(e)) => return (bytes, Some(*e)),
            None => return (bytes, Some(BlockError::Io)),
        }
    }
    (bytes, None)
}

/// A device-side copy in flight ([`Disk::start_copy`]); [`Disk::finish_copy`] waits for
/// it (every copy started must be finished: the requests carry no buffers, but the
/// caller's blocks are being written).
pub struct CopyInFlight {
    results: Arc<Mutex<Vec<Option<RequestResult>>>>,
    left: Arc<AtomicUsize>,
}

/// The parts of a pinned transfer: each a start sector and the pinned memory that goes
/// there. One is kept inline: most transfers have one (a raw device, a file's one run).
pub type PinnedParts = smallvec::SmallVec<[(u64, PinnedRange); 1]>;

/// What a pinned transfer reports when it is over ([`Disk::submit_pinned`]).
pub type TransferDone = Box<dyn FnOnce(Result<u64, BlockError>) + Send>;

/// The request for one share (start sector, pins, segments) of a pinned transfer. The
/// pins ride in its completion, which releases them, counts the bytes moved as
/// `dma_pinned_bytes`, then hands the result to `then`.
fn pinned_request(
    op: Op,
    (sector, pins, segments): (u64, PinnedRange, Vec<Segment>),
    then: impl FnOnce(Result<u64, BlockError>) + Send + 'static,
) -> Request {
    Request::new(
        op,
        sector,
        segments,
        Box::new(move |c| {
            drop(pins);
            if let Ok(n) = c.result {
                counters::add(Counter::DmaPinnedBytes, n);
            }
            then(c.result);
        }),
    )
}

/// A transfer's report, made exactly once: with the result, or with an I/O error if the
/// request holding it is dropped without completing (so a caller never waits forever).
struct ReportOnce<F: FnOnce(Result<u64, BlockError>)>(Option<F>);

impl<F: FnOnce(Result<u64, BlockError>)> ReportOnce<F> {
    fn report(mut self, result: Result<u64, BlockError>) {
        if let Some(f) = self.0.take() {
            f(result);
        }
    }
}

impl<F: FnOnce(Result<u64, BlockError>)> Drop for ReportOnce<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Err(BlockError::Io));
        }
    }
}

/// The requests of one pinned transfer ([`Disk::submit_pinned`]).
struct Transfer {
    /// The first request's result (most transfers are one request: no list to allocate).
    first: Option<RequestResult>,
    /// The results of the requests after the first, in order (sized before the first
    /// request is submitted).
    rest: Vec<Option<RequestResult>>,
    /// Requests not over yet.
    left: usize,
    done: Option<TransferDone>,
}

impl Transfer {
    /// Request `i` is over; the last one reports the whole transfer: what went in order
    /// before the first failure; the failure only if nothing did. Takes the lock with
    /// interrupts off (the completions run in the interrupt handler); reports after
    /// letting it go.
    fn finish(state: &Mutex<Transfer>, i: usize, result: RequestResult) {
        let report = cpu::without_interrupts(|| {
            let mut t = state.lock();
            let slot = match i {
                0 => &mut t.first,
                _ => t.rest.get_mut(i - 1)?,
            };
            if slot.is_some() {
                return None;
            }
            *slot = Some(result);
            t.left -= 1;
            if t.left > 0 {
                return None;
            }
            let outcome = match ordered_prefix(core::iter::once(&t.first).chain(&t.rest)) {
                (0, Some(e)) => Err(e),
                (total, _) => Ok(total),
            };
            t.done.take().map(|f| (f, outcome))
        });
        if let Some((f, outcome)) = report {
            f(outcome);
        }
    }
}

/// Every call into a driver runs with interrupts off, so the driver's lock is never taken
/// by its own interrupt handler on the same CPU while held.
impl BlockDevice for Disk {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }
    fn submit(&self, req: Request) -> Result<(), BlockError> {
        cpu::without_interrupts(|| {
            let mut plugged = self.plugged.lock();
            match plugged.as_mut() {
                Some(held) => {
                    drivers::block::validate(&self.info, &req)?;
                    held.push(req);
                    Ok(())
                }
                None => {
                    drop(plugged);
                    self.dev.submit(req)
                }
            }
        })
    }
    fn handle_interrupt(&self) {
        cpu::without_interrupts(|| self.dev.handle_interrupt())
    }
    fn in_flight(&self) -> usize {
        cpu::without_interrupts(|| self.dev.in_flight())
    }
    fn check_timeouts(&self, now_ns: u64) {
        cpu::without_interrupts(|| self.dev.check_timeouts(now_ns))
    }
    fn shutdown(&self) {
        cpu::without_interrupts(|| self.dev.shutdown())
    }
}

/// The block-request watchdog, once a second from the timer interrupt: a disk whose
/// requests have made no progress for `REQUEST_TIMEOUT_NS` is reset and the stuck
/// requests fail with EIO, waking their waiters (the drivers log what was stuck).
fn watchdog() {
    let now = crate::time::now_ns();
    for d in disks() {
        d.check_timeouts(now);
    }
    DISK_IRQ.wake_all();
}

/// Tasks waiting for a disk completion; every disk interrupt wakes them to re-check.
static DISK_IRQ: WaitQueue = WaitQueue::new();

/// Tasks in [`wait_completions`]: the timer tick wakes the disk waiters while there are
/// any (for deadlines, and to poll disks without interrupts).
static TIMED_WAITERS: AtomicUsize = AtomicUsize::new(0);

fn wake_timed_waiters() {
    if TIMED_WAITERS.load(AtomicOrdering::Relaxed) > 0 {
        DISK_IRQ.wake_all();
    }
}

/// Block until `cond` holds (re-checked at every disk completion and timer tick), the
/// monotonic clock reaches `deadline_ns`, or (if `interruptible`) a fatal signal is
/// pending. Returns whether `cond` held. For completions that arrive by interrupt (AIO);
/// disks without an interrupt are polled at each check. `cond` runs with interrupts off.
pub fn wait_completions(
    cond: &dyn Fn() -> bool,
    deadline_ns: Option<u64>,
    interruptible: bool,
) -> bool {
    TIMED_WAITERS.fetch_add(1, AtomicOrdering::Relaxed);
    let expired = || deadline_ns.is_some_and(|d| crate::time::now_ns() >= d);
    DISK_IRQ.wait_until(|| {
        for d in disks().iter().filter(|d| d.vector.is_none()) {
            d.dev.handle_interrupt();
        }
        cond() || expired() || (interruptible && crate::task::kill_pending())
    });
    TIMED_WAITERS.fetch_sub(1, AtomicOrdering::Relaxed);
    cond()
}

/// Blocks the calling task (the idle task halts) until a disk interrupt, between checks;
/// polls the device when it has no interrupt.
struct KernelWaiter<'a> {
    disk: &'a Disk,
}

impl Waiter for KernelWaiter<'_> {
    fn wait_until(&self, cond: &dyn Fn() -> bool) {
        loop {
            x86_64::instructions::interrupts::disable();
            if cond() {
                cpu::enable_interrupts();
                return;
            }
            if self.disk.vector.is_none() {
                self.disk.dev.handle_interrupt();
                cpu::enable_interrupts();
                core::hint::spin_loop();
            } else {
                // wait_until re-checks with interrupts off, so a completion that arrives
                // in between still wakes us.
                cpu::enable_interrupts();
                DISK_IRQ.wait_until(cond);
                return;
            }
        }
    }
}

static DISKS: Once<Vec<Arc<Disk>>> = Once::new();

/// All disks, in probe order.
pub fn disks() -> &'static [Arc<Disk>] {
    DISKS.get().map(Vec::as_slice).unwrap_or(&[])
}

/// The disk called `name`.
pub fn find(name: &str) -> Option<Arc<Disk>> {
    disks().iter().find(|d| d.name() == name).cloned()
}

fn disk_name(prefix: &str, index: usize) -> String {
    // vda..vdz, vdaa.. like Linux.
    let mut s = String::from(prefix);
    if index >= 26 {
        s.push((b'a' + (index / 26 - 1) as u8) as char);
    }
    s.push((b'a' + (index % 26) as u8) as char);
    s
}

fn attach(
    list: &mut Vec<Arc<Disk>>,
    dev: Arc<dyn BlockDevice>,
    name: String,
    vector: Option<u8>,
    func: &PciFunction,
) {
    let mut info = dev.info().clone();
    info.name = name;
    let disk = Arc::new(Disk {
        info,
        dev,
        vector,
        pci: *func,
        plugged: Mutex::new(None),
    });
    if let Some(v) = vector {
        let d = disk.clone();
        trap::set_irq_handler(
            v,
            Arc::new(move || {
                drivers::block::stats::add_interrupt();
                d.dev.handle_interrupt();
                DISK_IRQ.wake_all();
            }),
        );
    }
    list.push(disk);
}

/// Probe every storage controller found on PCI and print the disks.
pub fn init() -> &'static [Arc<Disk>] {
    // The drivers' bounded waits (resets, ready bits, admin commands) by the TSC clock,
    // calibrated by now; without it they would count polls.
    if crate::time::tsc_hz() != 0 {
        drivers::mmio::set_clock(crate::time::now_ns);
    }
    DISKS.call_once(|| {
        let mut list = Vec::new();
        let (mut virtio, mut sata, mut nvme) = (0, 0, 0);
        for f in pci::devices() {
            if f.is_virtio_blk() {
                let vector = trap::alloc_vector();
                let msg = vector.map(apic::msi_message);
                // `virtio_event_idx=off`: no event indices (a notification for every batch
                // the device has not asked to skip, an interrupt for every completion).
                let event_idx = crate::cmdline::value("virtio_event_idx") != Some("off");
                match VirtioBlk::<KernelHal>::probe(pci::access(), f, msg, event_idx) {
                    Ok(dev) => {
                        let vector = if dev.uses_interrupts() { vector } else { None };
                        attach(&mut list, dev, disk_name("vd", virtio), vector, f);
                        virtio += 1;
                    }
                    Err(e) => log::error!("virtio-blk at {}: {e:?}", f.bdf),
                }
            } else if f.is_ahci() {
                let vector = trap::alloc_vector();
                let msg = vector.map(apic::msi_message);
                // `ahci_ncq=off`: non-queued commands only, as on HBAs without NCQ.
                let ncq = crate::cmdline::value("ahci_ncq") != Some("off");
                match AhciController::<KernelHal>::probe(pci::access(), f, msg, ncq) {
                    Ok(hba) => {
                        // One interrupt per controller: any of its disks' handlers services
                        // every port, so the one `attach` routes it to last serves them all.
                        let vector = if hba.uses_interrupts() { vector } else { None };
                        for disk in hba.disks() {
                            attach(&mut list, disk, disk_name("sd", sata), vector, f);
                            sata += 1;
                        }
                    }
                    Err(e) => log::error!("ahci at {}: {e:?}", f.bdf),
                }
            } else if f.is_nvme() {
                let vector = trap::alloc_vector();
                let msg = vector.map(apic::msi_message);
                match NvmeController::<KernelHal>::probe(pci::access(), f, msg) {
                    Ok(ctrl) => {
                        // `nvme_sgl=off`: PRPs alone, even where SGLs are offered.
                        ctrl.use_sgls(crate::cmdline::value("nvme_sgl") != Some("off"));
                        // One interrupt per controller (its namespaces share the queue);
                        // `attach` routes it to the disk, which services the controller.
                        let vector = if ctrl.uses_interrupts() { vector } else { None };
                        for disk in ctrl.disks() {
                            // nvme<controller>n<namespace>, as on Linux.
                            let name = alloc::format!("nvme{nvme}n{}", disk.nsid());
                            attach(&mut list, disk, name, vector, f);
                        }
                        nvme += 1;
                    }
                    Err(e) => log::error!("nvme at {}: {e}", f.bdf),
                }
            }
        }
        list
    });
    crate::time::on_every_second(watchdog);
    crate::time::on_every_tick(wake_timed_waiters);
    crate::arch::acpi::before_poweroff(|| {
        for d in disks() {
            d.shutdown();
        }
    });
    for d in disks() {
        let i = d.info();
        kprintln!(
            "disk {}: {} MiB ({} sectors), {} at {}{}, {}",
            d.name(),
            i.sectors / 2048,
            i.sectors,
            i.model,
            d.pci.bdf,
            if i.serial.is_empty() {
                String::new()
            } else {
                alloc::format!(" serial {}", i.serial)
            },
            i.features
        );
    }
    disks()
}
