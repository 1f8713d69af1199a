//! The controller and its namespaces: reset and enable, the admin queue (used while
//! setting up and after a reset, polled), Identify, one I/O queue pair shared by every
//! namespace, and each namespace as a [`BlockDevice`], [`NvmeDisk`].
//!
//! # Locking
//!
//! The I/O queue pair, its command slots and the software queue sit behind one
//! `spin::Mutex` (the kernel calls drivers with interrupts off). Completions run after it
//! is released: they may submit more requests.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, Ordering, fence};

use spin::Mutex;

use super::command::{self, Cqe, Sqe};
use super::prp::{self, PAGE, Prp};
use super::regs::*;
use super::sgl;
use crate::ahci::mmio::{MmioRegs, RegisterIo, dma_read_bytes, dma_write_u32s};
use crate::block::{
    self, BlockDevice, BlockError, CopyLimits, DeviceInfo, Op, REQUEST_TIMEOUT_NS, Request,
    SECTOR_SIZE,
};
use crate::hal::Hal;
use crate::mmio::spin_until;
use crate::pci::{self, Bar, ConfigAccess, PciFunction};

/// The BAR holding the registers.
pub const BAR_INDEX: usize = 0;
/// Admin queue entries.
const ADMIN_ENTRIES: u16 = 32;
/// I/O queue entries at most (the controller may allow fewer); one fewer commands can be
/// outstanding.
const IO_ENTRIES: u16 = 64;
/// Largest command (the controller's MDTS may lower it); with 4 KiB pages, a PRP list of
/// one page covers it.
const MAX_COMMAND_BYTES: u64 = 1 << 20;
/// Largest request taken: the driver cuts it into commands (as AHCI takes 32 MiB).
const MAX_REQUEST_BYTES: u64 = 32 << 20;
/// Namespaces looked at (1..=this).
const MAX_NAMESPACES: u32 = 16;
/// How long an admin command may take before the driver gives up on it.
const ADMIN_TIMEOUT_NS: u64 = 25_000_000_000;

/// Why a controller could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NvmeError {
    /// The function is not an NVMe controller (class 01/08/02).
    NotNvme,
    /// BAR0 is missing, not a memory BAR, or unassigned.
    NoBar,
    /// The registers read all-ones: the device is gone or not decoding.
    Gone,
    /// No NVM command set, or no 4 KiB memory pages.
    Unsupported,
    /// CSTS.RDY did not follow CC.EN in CAP.TO, or CSTS.CFS was set.
    NotReady,
    /// No memory for the queues.
    NoMemory,
    /// An admin command failed (opcode, status code type, status code).
    Admin(u8, u8, u8),
    /// An admin command did not complete.
    AdminTimeout(u8),
    /// No namespace the driver can serve (none active, or none with 512-byte blocks).
    NoNamespace,
}

impl fmt::Display for NvmeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NvmeError::NotNvme => f.write_str("not an NVMe controller"),
            NvmeError::NoBar => f.write_str("no usable BAR0"),
            NvmeError::Gone => f.write_str("registers read all-ones"),
            NvmeError::Unsupported => f.write_str("no NVM command set with 4 KiB pages"),
            NvmeError::NotReady => f.write_str("the controller did not become ready"),
            NvmeError::NoMemory => f.write_str("no memory for the queues"),
            NvmeError::Admin(op, sct, sc) => {
                write!(
                    f,
                    "admin command {op:#04x} failed (type {sct}, status {sc:#04x})"
                )
            }
            NvmeError::AdminTimeout(op) => write!(f, "admin command {op:#04x} timed out"),
            NvmeError::NoNamespace => f.write_str("no namespace with 512-byte blocks"),
        }
    }
}

/// Where the next completion entry is and which phase tag marks it new. Pure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CqCursor {
    /// Entry index of the head.
    pub head: u16,
    /// The phase tag of new entries (starts true; flips at each wrap).
    pub phase: bool,
    entries: u16,
}

impl CqCursor {
    /// At the start of an empty queue of `entries`.
    pub fn new(entries: u16) -> CqCursor {
        CqCursor {
            head: 0,
            phase: true,
            entries,
        }
    }

    /// Past the entry at the head.
    pub fn advance(&mut self) {
        self.head += 1;
        if self.head == self.entries {
            self.head = 0;
            self.phase = !self.phase;
        }
    }
}

/// One submission and completion queue pair in DMA memory.
struct QueuePair {
    qid: u16,
    entries: u16,
    sq: u64,
    cq: u64,
    tail: u16,
    cursor: CqCursor,
}

impl QueuePair {
    fn alloc<H: Hal>(qid: u16, entries: u16) -> Result<QueuePair, NvmeError> {
        let (sq_pages, cq_pages) = Self::pages(entries);
        let sq = H::dma_alloc(sq_pages).ok_or(NvmeError::NoMemory)?;
        let Some(cq) = H::dma_alloc(cq_pages) else {
            H::dma_free(sq, sq_pages);
            return Err(NvmeError::NoMemory);
        };
        Ok(QueuePair {
            qid,
            entries,
            sq,
            cq,
            tail: 0,
            cursor: CqCursor::new(entries),
        })
    }

    /// Pages of the submission and the completion ring for `entries`.
    fn pages(entries: u16) -> (usize, usize) {
        let pages = |bytes: usize| bytes.div_ceil(PAGE as usize);
        (pages(entries as usize * 64), pages(entries as usize * 16))
    }

    /// Give the rings back (the controller no longer uses them).
    fn free<H: Hal>(&self) {
        let (sq_pages, cq_pages) = Self::pages(self.entries);
        H::dma_free(self.sq, sq_pages);
        H::dma_free(self.cq, cq_pages);
    }

    /// Empty again, as after a controller reset: the completion ring is zeroed, so no old
    /// entry carries the first phase tag.
    fn clear<H: Hal>(&mut self) {
        let zeros = alloc::vec![0u32; self.entries as usize * 4];
        // SAFETY: the completion ring is this queue's DMA memory; the controller is
        // disabled (or the queue not yet created), so it does not write it now.
        unsafe { dma_write_u32s::<H>(self.cq, &zeros) };
        self.tail = 0;
        self.cursor = CqCursor::new(self.entries);
    }

    /// Put `sqe` at the tail (the caller rings the doorbell).
    fn push<H: Hal>(&mut self, sqe: &Sqe) {
        // SAFETY: the entry at `tail` is free: fewer than `entries - 1` commands are
        // outstanding, and the controller fetches entries in order.
        unsafe { dma_write_u32s::<H>(self.sq + self.tail as u64 * 64, &sqe.0) };
        self.tail = (self.tail + 1) % self.entries;
    }

    /// The completion at the head, if the controller has posted it.
    fn peek<H: Hal>(&self) -> Option<Cqe> {
        let entry = H::phys_to_virt(self.cq + self.cursor.head as u64 * 16) as *const u32;
        // Dword 3 first, in one load: the phase tag and the command identifier share it,
        // so they are never torn apart (the controller may be writing the entry while it
        // is read). Only once the phase tag says the entry is new are the others read.
        // SAFETY: `entry` is a naturally aligned entry of this queue's completion ring
        // (DMA memory from `dma_alloc`, mapped by `phys_to_virt`), read with volatile
        // loads; nothing else in the kernel writes it.
        let d3 = u32::from_le(unsafe { core::ptr::read_volatile(entry.add(3)) });
        if ((d3 >> 16) & 1 == 1) != self.cursor.phase {
            return None;
        }
        fence(Ordering::Acquire);
        // SAFETY: as above; the controller wrote the whole entry before its phase tag
        // became visible.
        let (d0, d2) = unsafe {
            (
                u32::from_le(core::ptr::read_volatile(entry)),
                u32::from_le(core::ptr::read_volatile(entry.add(2))),
            )
        };
        Some(Cqe::decode([d0, 0, d2, d3]))
    }
}

/// What one command of a request carries: pages (PRPs) or runs of memory (SGLs).
#[derive(Debug)]
enum Piece {
    Prp(prp::Piece),
    Sgl(sgl::Piece),
}

impl Piece {
    /// Bytes from the start of the request, and bytes.
    fn span(&self) -> (u64, u64) {
        match self {
            Piece::Prp(p) => (p.offset, p.bytes),
            Piece::Sgl(p) => (p.offset, p.bytes),
        }
    }
}

/// A request being carried out, by one command per piece ([`NvmeController::pieces`]; a
/// flush is one piece of nothing).
struct Tracked {
    nsid: u32,
    req: Request,
    /// Pieces not issued yet.
    pieces: VecDeque<Piece>,
    /// Commands issued and not completed.
    outstanding: usize,
    /// The bytes, or the first error of a piece.
    result: Result<u64, BlockError>,
}

/// The I/O queue pair and what is in flight on it.
struct IoState {
    queue: QueuePair,
    /// Command slots: the index is the command identifier, the value the request's
    /// index in `requests`.
    slots: Vec<Option<usize>>,
    free: Vec<u16>,
    /// A PRP list page per slot.
    prp_pages: Vec<u64>,
    /// Requests accepted and not completed.
    requests: Vec<Option<Tracked>>,
    free_requests: Vec<usize>,
    /// Requests with pieces not issued yet, oldest first.
    waiting: VecDeque<usize>,
    progressed: bool,
    stall_since: Option<u64>,
    dead: bool,
}

impl IoState {
    /// Take `t` in; returns its index.
    fn track(&mut self, t: Tracked) -> usize {
        match self.free_requests.pop() {
            Some(i) => {
                self.requests[i] = Some(t);
                i
            }
            None => {
                self.requests.push(Some(t));
                self.requests.len() - 1
            }
        }
    }

    /// Let go of request `i`.
    fn untrack(&mut self, i: usize) -> Option<Tracked> {
        let t = self.requests.get_mut(i)?.take()?;
        self.free_requests.push(i);
        Some(t)
    }
}

/// The admin queue pair (set-up and recovery only).
struct AdminState {
    queue: QueuePair,
    next_cid: u16,
}

/// What Identify Controller told.
#[derive(Clone, Debug, Default)]
struct ControllerId {
    serial: String,
    model: String,
    firmware: String,
    /// Largest transfer in bytes (0: no limit).
    max_transfer: u64,
    namespaces: u32,
    volatile_cache: bool,
    /// ONCS bit 8 (and format 0 in OCFS): the Copy command.
    copy: bool,
    /// ONCS bit 2: Dataset Management (deallocate).
    dsm: bool,
    /// SGLS: scatter gather lists for NVM commands.
    sgl: sgl::Support,
}

/// A namespace the driver serves.
#[derive(Clone, Copy, Debug)]
struct Namespace {
    nsid: u32,
    blocks: u64,
    /// Copy limits, where the controller copies.
    copy: Option<CopyLimits>,
}

/// A finished request and its result, completed after the lock is released.
type Done = (Request, Result<u64, BlockError>);

/// An NVMe controller.
pub struct NvmeController<H: Hal, R: RegisterIo + Clone = MmioRegs> {
    regs: R,
    name: String,
    cap: Cap,
    version: u32,
    interrupts: bool,
    id: ControllerId,
    /// Largest command: MDTS, at most [`MAX_COMMAND_BYTES`].
    max_command_bytes: u64,
    namespaces: Vec<Namespace>,
    admin: Mutex<AdminState>,
    io: Mutex<IoState>,
    /// The shutdown notification was given.
    shut_down: AtomicBool,
    /// SGLs may be used where the controller offers them ([`NvmeController::use_sgls`]).
    sgls_allowed: AtomicBool,
    _hal: PhantomData<H>,
}

/// One namespace of a controller: a disk.
pub struct NvmeDisk<H: Hal, R: RegisterIo + Clone = MmioRegs> {
    ctrl: Arc<NvmeController<H, R>>,
    nsid: u32,
    info: DeviceInfo,
}

impl<H: Hal> NvmeController<H, MmioRegs> {
    /// Takes over the NVMe function `func`: enables memory decoding and bus mastering,
    /// maps BAR0 through `H::phys_to_virt`, programs MSI-X entry 0 with `irq` = (message
    /// address, message data) if given, then sets the controller up (see
    /// [`NvmeController::init`]). Without `irq` or MSI-X, the I/O completion queue raises
    /// no interrupts and the kernel polls [`NvmeController::handle_interrupt`];
    /// [`NvmeController::uses_interrupts`] says which.
    pub fn probe<A: ConfigAccess + ?Sized>(
        access: &A,
        func: &PciFunction,
        irq: Option<(u64, u32)>,
    ) -> Result<Arc<NvmeController<H, MmioRegs>>, NvmeError> {
        let name = func.bdf.to_string();
        if !func.is_nvme() {
            return Err(NvmeError::NotNvme);
        }
        let bar = match func.bars[BAR_INDEX] {
            Some(bar @ Bar::Memory { .. }) => bar,
            other => {
                log::warn!("nvme {name}: BAR0 is {other:?}; not usable");
                return Err(NvmeError::NoBar);
            }
        };
        let config = func.config(access);
        config.enable_memory_space();
        config.enable_bus_master();
        let regs = MmioRegs::from_bar::<H>(bar).ok_or(NvmeError::NoBar)?;
        // MSI-X first: the I/O completion queue is created interrupting on vector 0 only
        // if the message is there. (Admin completions during set-up may raise it too;
        // the kernel ignores a vector with no handler yet.)
        let interrupts = match irq {
            Some((address, data)) => {
                let ok = pci::msi::enable_msix::<H>(access, func, 0, address, data);
                if !ok {
                    log::warn!(
                        "nvme {name}: MSI-X could not be programmed; completions are polled"
                    );
                }
                ok
            }
            None => false,
        };
        Self::init(regs, name, interrupts)
    }
}

impl<H: Hal, R: RegisterIo + Clone> NvmeController<H, R> {
    /// Sets up the controller behind `regs`: disable, admin queue, enable, Identify
    /// Controller, one I/O queue pair (interrupting on MSI-X vector 0 if `interrupts`),
    /// Identify Namespace for namespaces 1 to 16. Namespaces with 512-byte blocks and no
    /// metadata are served; others are logged and skipped.
    pub fn init(regs: R, name: String, interrupts: bool) -> Result<Arc<Self>, NvmeError> {
        let cap_lo = regs.read(CAP);
        let cap_hi = regs.read(CAP + 4);
        if cap_lo == u32::MAX && cap_hi == u32::MAX {
            return Err(NvmeError::Gone);
        }
        let cap = Cap::decode(u64::from(cap_hi) << 32 | u64::from(cap_lo));
        if !cap.nvm_command_set || cap.min_page > PAGE {
            return Err(NvmeError::Unsupported);
        }
        let version = regs.read(VS);
        let io_entries = IO_ENTRIES.min(cap.max_queue_entries.min(u16::MAX as u32) as u16);
        let admin = QueuePair::alloc::<H>(0, ADMIN_ENTRIES)?;
        let io = QueuePair::alloc::<H>(1, io_entries)?;
        let slots = io_entries as usize - 1;
        let mut prp_pages = Vec::with_capacity(slots);
        for _ in 0..slots {
            prp_pages.push(H::dma_alloc(1).ok_or(NvmeError::NoMemory)?);
        }
        let identify = H::dma_alloc(1).ok_or(NvmeError::NoMemory)?;
        let mut ctrl = NvmeController {
            regs,
            name,
            cap,
            version,
            interrupts,
            id: ControllerId::default(),
            max_command_bytes: MAX_COMMAND_BYTES,
            namespaces: Vec::new(),
            admin: Mutex::new(AdminState {
                queue: admin,
                next_cid: 0,
            }),
            io: Mutex::new(IoState {
                queue: io,
                slots: alloc::vec![None; slots],
                free: (0..slots as u16).rev().collect(),
                prp_pages,
                requests: Vec::new(),
                free_requests: Vec::new(),
                waiting: VecDeque::new(),
                progressed: false,
                stall_since: None,
                dead: false,
            }),
            shut_down: AtomicBool::new(false),
            sgls_allowed: AtomicBool::new(true),
            _hal: PhantomData,
        };
        let mut found = ctrl.enable().and_then(|()| ctrl.identify(identify));
        if found.is_ok() && ctrl.namespaces.is_empty() {
            found = Err(NvmeError::NoNamespace);
        }
        if let Err(e) = found {
            // Give the memory back only once the controller is disabled and can no longer
            // write it (a command may still be pending); otherwise it stays leaked.
            if ctrl.disable() {
                H::dma_free(identify, 1);
                ctrl.free_queues();
            }
            return Err(e);
        }
        H::dma_free(identify, 1);
        log::info!(
            "nvme {}: {} ({}), NVMe {}.{}, {} I/O entries, {} KiB/command, {} namespace(s) served",
            ctrl.name,
            ctrl.id.model,
            ctrl.id.serial,
            ctrl.version >> 16,
            (ctrl.version >> 8) & 0xFF,
            io_entries,
            ctrl.max_command_bytes / 1024,
            ctrl.namespaces.len()
        );
        Ok(Arc::new(ctrl))
    }

    /// Whether I/O completions arrive by interrupt (else the kernel polls).
    pub fn uses_interrupts(&self) -> bool {
        self.interrupts
    }

    /// Allow or forbid SGLs (the kernel's `nvme_sgl=off` forbids them, to run PRPs
    /// alone); before [`NvmeController::disks`], whose boot line says which are used.
    pub fn use_sgls(&self, allowed: bool) {
        self.sgls_allowed.store(allowed, Ordering::Relaxed);
    }

    /// What SGLs the driver uses: the controller's, unless forbidden.
    fn sgl_support(&self) -> sgl::Support {
        if self.sgls_allowed.load(Ordering::Relaxed) {
            self.id.sgl
        } else {
            sgl::Support::None
        }
    }

    /// `segments` cut into commands: PRPs, or SGLs where the controller offers them and
    /// [`sgl::prefer`] says they go better (large runs; segments PRPs would cut into more
    /// commands, or cannot describe).
    fn pieces(&self, segments: &[block::Segment]) -> Result<VecDeque<Piece>, BlockError> {
        let max = self.max_command_bytes;
        let support = self.sgl_support();
        let by_sgl =
            || sgl::pieces(segments, max, support).map(|p| p.into_iter().map(Piece::Sgl).collect());
        let by_prp = |p: Vec<prp::Piece>| p.into_iter().map(Piece::Prp).collect();
        if support == sgl::Support::None {
            return prp::pieces(segments, max).map(by_prp);
        }
        if sgl::prefer(segments, 0, max) {
            return by_sgl();
        }
        match prp::pieces(segments, max) {
            Ok(p) if !sgl::prefer(segments, p.len(), max) => Ok(by_prp(p)),
            Ok(_) | Err(BlockError::Misaligned) => by_sgl(),
            Err(e) => Err(e),
        }
    }

    /// One disk per namespace served, in namespace order.
    pub fn disks(self: &Arc<Self>) -> Vec<Arc<NvmeDisk<H, R>>> {
        self.namespaces
            .iter()
            .map(|ns| {
                Arc::new(NvmeDisk {
                    ctrl: self.clone(),
                    nsid: ns.nsid,
                    info: self.info_of(ns),
                })
            })
            .collect()
    }

    fn info_of(&self, ns: &Namespace) -> DeviceInfo {
        let slots = self.io.lock().slots.len();
        DeviceInfo {
            name: String::new(),
            sectors: ns.blocks,
            read_only: false,
            flush: self.id.volatile_cache,
            model: format!("NVMe {}", self.id.model),
            serial: self.id.serial.clone(),
            features: format!(
                "namespace {}, {} commands, {} KiB/command, {}{}{}{}{}",
                ns.nsid,
                slots,
                self.max_command_bytes / 1024,
                match ns.copy {
                    Some(c) => format!(
                        "copy ({} ranges of {} KiB, {} KiB/command), ",
                        c.max_ranges,
                        u64::from(c.max_range_sectors) / 2,
                        c.max_sectors / 2
                    ),
                    None => String::new(),
                },
                if self.id.dsm { "deallocate, " } else { "" },
                if self.sgl_support() == sgl::Support::None {
                    ""
                } else {
                    "SGLs, "
                },
                if self.id.volatile_cache {
                    "flush, "
                } else {
                    ""
                },
                if self.interrupts { "MSI-X" } else { "polled" }
            ),
            queue_depth: slots,
            max_segments: (MAX_REQUEST_BYTES / SECTOR_SIZE as u64) as usize,
            max_bytes: MAX_REQUEST_BYTES,
            copy: ns.copy,
            discard: self
                .id
                .dsm
                .then_some(PAGE as usize / command::DSM_RANGE_BYTES),
        }
    }

    /// The shutdown notification (CC.SHN normal), once, waiting for CSTS.SHST to say it
    /// is complete: the controller then has its volatile data on media and counts no
    /// unsafe shutdown. Commands still in flight are not waited for (the final sync is
    /// over by then).
    pub fn shutdown(&self) {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        let cc = self.regs.read(CC);
        if cc == u32::MAX || cc & CC_EN == 0 {
            return;
        }
        self.regs.write(CC, cc | CC_SHN_NORMAL);
        let done = spin_until(self.ready_timeout_ns(), || {
            self.regs.read(CSTS) & CSTS_SHST_MASK == CSTS_SHST_COMPLETE
        });
        if done {
            log::info!("nvme {}: shutdown complete", self.name);
        } else {
            log::warn!("nvme {}: shutdown did not complete in time", self.name);
        }
    }

    /// CAP.TO, at least 500 ms: how long CSTS.RDY may take to follow CC.EN.
    fn ready_timeout_ns(&self) -> u64 {
        u64::from(self.cap.ready_timeout_ms.max(500)) * 1_000_000
    }

    /// Clear CC.EN and wait for the controller to confirm (CSTS.RDY clear): only then has
    /// it let go of every command and its memory. Registers reading all-ones (the device
    /// is gone) count as confirmed.
    fn disable(&self) -> bool {
        self.regs.write(CC, 0);
        spin_until(self.ready_timeout_ns(), || {
            let csts = self.regs.read(CSTS);
            csts == u32::MAX || csts & CSTS_RDY == 0
        })
    }

    /// Give back the queues' and PRP lists' memory (the controller is disabled).
    fn free_queues(&self) {
        // The I/O lock before the admin lock, as in `restart`.
        let io = self.io.lock();
        let admin = self.admin.lock();
        admin.queue.free::<H>();
        io.queue.free::<H>();
        for &p in &io.prp_pages {
            H::dma_free(p, 1);
        }
    }

    /// Disable, set up the admin queue, enable, and create the I/O queue pair: at
    /// set-up and after a reset. The queues start empty.
    fn enable(&self) -> Result<(), NvmeError> {
        let mut io = self.io.lock();
        self.restart(&mut io)
    }

    /// [`NvmeController::enable`] with the I/O state locked by the caller.
    fn restart(&self, io: &mut IoState) -> Result<(), NvmeError> {
        let ready_timeout_ns = self.ready_timeout_ns();
        if self.regs.read(CC) & CC_EN != 0 {
            self.regs.write(CC, 0);
        }
        if !spin_until(ready_timeout_ns, || self.regs.read(CSTS) & CSTS_RDY == 0) {
            return Err(NvmeError::NotReady);
        }
        let mut admin = self.admin.lock();
        admin.queue.clear::<H>();
        io.queue.clear::<H>();
        let a = u32::from(ADMIN_ENTRIES - 1);
        self.regs.write(AQA, a | a << 16);
        self.regs.write(ASQ, admin.queue.sq as u32);
        self.regs.write(ASQ + 4, (admin.queue.sq >> 32) as u32);
        self.regs.write(ACQ, admin.queue.cq as u32);
        self.regs.write(ACQ + 4, (admin.queue.cq >> 32) as u32);
        self.regs.write(CC, CC_ENABLE);
        let ready = spin_until(ready_timeout_ns, || {
            self.regs.read(CSTS) & (CSTS_RDY | CSTS_CFS) != 0
        });
        if !ready || self.regs.read(CSTS) & CSTS_CFS != 0 {
            return Err(NvmeError::NotReady);
        }
        let q = &io.queue;
        let (qid, entries, sq, cq) = (q.qid, q.entries, q.sq, q.cq);
        // Ask for one I/O queue pair (Set Features, Number of Queues), as the spec's
        // initialization sequence has it; some controllers refuse queues otherwise.
        if let Err(e) = self.admin_command(&mut admin, Sqe::one_queue_pair) {
            log::warn!("nvme {}: Set Features (number of queues): {e}", self.name);
        }
        self.admin_command(&mut admin, |cid| {
            Sqe::create_cq(cid, qid, entries, cq, 0, self.interrupts)
        })?;
        self.admin_command(&mut admin, |cid| Sqe::create_sq(cid, qid, entries, sq, qid))?;
        Ok(())
    }

    /// Identify the controller and its namespaces into the page at `buf`.
    fn identify(&mut self, buf: u64) -> Result<(), NvmeError> {
        let mut page = alloc::vec![0u8; PAGE as usize];
        let mut admin = self.admin.lock();
        self.admin_command(&mut admin, |cid| {
            Sqe::identify(cid, 0, command::CNS_CONTROLLER, buf)
        })?;
        // SAFETY: the identify page is ours; the controller finished writing it.
        unsafe { dma_read_bytes::<H>(buf, &mut page) };
        let text =
            |r: core::ops::Range<usize>| String::from_utf8_lossy(&page[r]).trim().to_string();
        let mdts = page[77];
        let id = ControllerId {
            serial: text(4..24),
            model: text(24..64),
            firmware: text(64..72),
            max_transfer: if mdts == 0 || mdts >= 32 {
                0
            } else {
                self.cap.min_page << mdts
            },
            namespaces: u32::from_le_bytes([page[516], page[517], page[518], page[519]]),
            volatile_cache: page[525] & 1 == 1,
            copy: {
                let oncs = u16::from_le_bytes([page[520], page[521]]);
                let ocfs = u16::from_le_bytes([page[534], page[535]]);
                // OCFS came with NVMe 2.0; before it, Copy meant format 0.
                oncs & 1 << 8 != 0 && (ocfs == 0 || ocfs & 1 != 0)
            },
            dsm: u16::from_le_bytes([page[520], page[521]]) & 1 << 2 != 0,
            sgl: sgl::Support::from_sgls(u32::from_le_bytes([
                page[536], page[537], page[538], page[539],
            ])),
        };
        let mut namespaces = Vec::new();
        for nsid in 1..=id.namespaces.min(MAX_NAMESPACES) {
            let found = self.admin_command(&mut admin, |cid| {
                Sqe::identify(cid, nsid, command::CNS_NAMESPACE, buf)
            });
            match found {
                Ok(_) => {}
                // The command is over (it completed, with an error): skip the namespace.
                Err(NvmeError::Admin(..)) => continue,
                // It may still be pending: the page is not ours to read or free.
                Err(e) => return Err(e),
            }
            // SAFETY: as above.
            unsafe { dma_read_bytes::<H>(buf, &mut page) };
            let blocks = u64::from_le_bytes(page[0..8].try_into().unwrap_or([0; 8]));
            if blocks == 0 {
                continue; // not active
            }
            // FLBAS: format index bits 3:0, and 6:5 above 16 formats (NVMe 2.0); NLBAF
            // (byte 25) is the last valid index.
            let index = (page[26] & 0xF) as usize | (((page[26] >> 5) & 0x3) as usize * 16);
            if index > page[25] as usize || index >= 64 {
                log::warn!(
                    "nvme {}: namespace {nsid}: format {index} beyond NLBAF",
                    self.name
                );
                continue;
            }
            let format = 128 + 4 * index;
            let metadata = u16::from_le_bytes([page[format], page[format + 1]]);
            let block_shift = page[format + 2];
            if block_shift != 9 || metadata != 0 {
                log::warn!(
                    "nvme {}: namespace {nsid}: {}-byte blocks with {metadata} bytes of metadata; only 512-byte blocks without metadata are served",
                    self.name,
                    1u64.checked_shl(block_shift.into()).unwrap_or(0)
                );
                continue;
            }
            let copy = id.copy.then(|| copy_limits(&page)).flatten();
            namespaces.push(Namespace { nsid, blocks, copy });
        }
        drop(admin);
        if id.max_transfer != 0 {
            self.max_command_bytes = self.max_command_bytes.min(id.max_transfer);
        }
        log::debug!("nvme {}: firmware {}", self.name, id.firmware);
        self.id = id;
        self.namespaces = namespaces;
        Ok(())
    }

    /// Issue one admin command (built for the command identifier it is given) and wait
    /// for its completion by polling.
    fn admin_command(
        &self,
        admin: &mut AdminState,
        build: impl FnOnce(u16) -> Sqe,
    ) -> Result<Cqe, NvmeError> {
        let cid = admin.next_cid;
        admin.next_cid = admin.next_cid.wrapping_add(1);
        let sqe = build(cid);
        let opcode = sqe.0[0] as u8;
        admin.queue.push::<H>(&sqe);
        let stride = self.cap.doorbell_stride;
        self.regs
            .write(sq_tail_doorbell(0, stride), admin.queue.tail.into());
        let mut cqe = None;
        spin_until(ADMIN_TIMEOUT_NS, || {
            cqe = admin.queue.peek::<H>();
            cqe.is_some()
        });
        let cqe = cqe.ok_or(NvmeError::AdminTimeout(opcode))?;
        admin.queue.cursor.advance();
        self.regs
            .write(cq_head_doorbell(0, stride), admin.queue.cursor.head.into());
        if cqe.cid != cid || !cqe.ok() {
            log::error!(
                "nvme {}: admin command {opcode:#04x} (cid {cid}) completed as cid {} with type {} status {:#04x}",
                self.name,
                cqe.cid,
                cqe.sct,
                cqe.sc
            );
            return Err(NvmeError::Admin(opcode, cqe.sct, cqe.sc));
        }
        Ok(cqe)
    }

    /// Take `items` (checked, cut into pieces) and start as many commands as there are
    /// free slots, ringing the doorbell once.
    fn queue(&self, items: Vec<Tracked>) {
        let mut done = Vec::new();
        {
            let mut io = self.io.lock();
            if io.dead {
                done.extend(items.into_iter().map(|t| (t.req, Err(BlockError::Io))));
            } else {
                for t in items {
                    let i = io.track(t);
                    io.waiting.push_back(i);
                }
                self.kick(&mut io, &mut done);
            }
        }
        complete(done);
    }

    /// Issue pieces of the waiting requests while slots are free; one doorbell write.
    fn kick(&self, io: &mut IoState, done: &mut Vec<Done>) {
        let before = io.queue.tail;
        while let (Some(&cid), Some(&i)) = (io.free.last(), io.waiting.front()) {
            let Some(t) = io.requests.get_mut(i).and_then(Option::as_mut) else {
                io.waiting.pop_front();
                continue;
            };
            let op = t.req.op;
            let sqe = match (op, t.pieces.pop_front()) {
                (Op::Flush, _) => Sqe::new(command::IO_FLUSH, cid, t.nsid),
                // Copy and discard ranges go in the slot's PRP list page (`validate` kept
                // them within it: `copy_limits`, `DeviceInfo::discard`).
                (Op::Copy | Op::Discard, _) => {
                    let page = io.prp_pages[cid as usize];
                    let (words, sqe) = if op == Op::Copy {
                        let n = t.req.ranges.len();
                        let sqe = Sqe::copy(cid, t.nsid, t.req.sector, n, page);
                        (command::copy_descriptors(&t.req.ranges), sqe)
                    } else {
                        let sqe = Sqe::deallocate(cid, t.nsid, t.req.ranges.len(), page);
                        (command::dsm_ranges(&t.req.ranges), sqe)
                    };
                    // SAFETY: the slot's own PRP list page: no command in flight uses it
                    // (the slot is free).
                    unsafe { dma_write_u32s::<H>(page, &words) };
                    sqe
                }
                (_, Some(piece)) => {
                    let (offset, bytes) = piece.span();
                    let sector = t.req.sector + offset / SECTOR_SIZE as u64;
                    let blocks = bytes / SECTOR_SIZE as u64;
                    let sqe = Sqe::rw(op == Op::Write, cid, t.nsid, sector, blocks as u32);
                    let page = io.prp_pages[cid as usize];
                    // NLB is 16 bits: a piece above 32 MiB cannot go in one command (the
                    // request limit keeps pieces far below).
                    let planned = match (blocks, &piece) {
                        (1..=65536, Piece::Prp(p)) => prp::plan(&p.pages).map(|prp| match prp {
                            Prp::Direct { prp1, prp2 } => sqe.with_prp(prp1, prp2),
                            Prp::List { prp1, list } => {
                                let words: Vec<u32> = list
                                    .iter()
                                    .flat_map(|&a| [a as u32, (a >> 32) as u32])
                                    .collect();
                                // SAFETY: the slot's own PRP list page: no command in
                                // flight uses it (the slot is free).
                                unsafe { dma_write_u32s::<H>(page, &words) };
                                sqe.with_prp(prp1, page)
                            }
                        }),
                        (1..=65536, Piece::Sgl(p)) => match p.segments.as_slice() {
                            [one] => Ok(sqe.with_sgl(sgl::data_block(one.phys, one.len))),
                            many => {
                                let words: Vec<u32> = many
                                    .iter()
                                    .flat_map(|s| sgl::data_block(s.phys, s.len))
                                    .collect();
                                // SAFETY: the slot's own list page (as for PRPs); the
                                // pieces keep to a page of descriptors.
                                unsafe { dma_write_u32s::<H>(page, &words) };
                                Ok(sqe.with_sgl(sgl::last_segment(page, many.len())))
                            }
                        },
                        _ => Err(BlockError::TooLarge),
                    };
                    match planned {
                        Ok(sqe) => sqe,
                        Err(e) => {
                            // Not for want of a slot: the piece fails, the request with it.
                            if t.result.is_ok() {
                                t.result = Err(e);
                            }
                            if t.pieces.is_empty() {
                                io.waiting.pop_front();
                                if t.outstanding == 0 {
                                    let t = io.untrack(i).expect("tracked");
                                    done.push((t.req, t.result));
                                }
                            }
                            continue;
                        }
                    }
                }
                (_, None) => {
                    io.waiting.pop_front();
                    continue;
                }
            };
            t.outstanding += 1;
            if t.pieces.is_empty() {
                io.waiting.pop_front();
            }
            io.free.pop();
            io.slots[cid as usize] = Some(i);
            io.queue.push::<H>(&sqe);
        }
        if io.queue.tail != before {
            self.regs.write(
                sq_tail_doorbell(io.queue.qid, self.cap.doorbell_stride),
                io.queue.tail.into(),
            );
            crate::block::stats::add_notify();
        }
    }

    /// Collect the completions the controller has posted; one head doorbell for all.
    fn reap(&self, io: &mut IoState, done: &mut Vec<Done>) {
        let mut reaped = false;
        while let Some(cqe) = io.queue.peek::<H>() {
            io.queue.cursor.advance();
            reaped = true;
            let slot = io.slots.get_mut(cqe.cid as usize).and_then(Option::take);
            let Some(i) = slot else {
                log::error!(
                    "nvme {}: completion for command {} that is not in flight",
                    self.name,
                    cqe.cid
                );
                continue;
            };
            io.free.push(cqe.cid);
            io.progressed = true;
            let Some(t) = io.requests.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            t.outstanding -= 1;
            if let Err(e) = cqe.status() {
                log::warn!(
                    "nvme {}: {:?} at sector {} failed: type {} status {:#04x} ({e})",
                    self.name,
                    t.req.op,
                    t.req.sector,
                    cqe.sct,
                    cqe.sc
                );
                if t.result.is_ok() {
                    t.result = Err(e);
                }
            }
            if t.outstanding == 0 && t.pieces.is_empty() {
                let t = io.untrack(i).expect("tracked");
                done.push((t.req, t.result));
            }
        }
        if reaped {
            self.regs.write(
                cq_head_doorbell(io.queue.qid, self.cap.doorbell_stride),
                io.queue.cursor.head.into(),
            );
        }
    }

    /// Reap completions and issue waiting requests: the interrupt handler and the poll
    /// routine.
    pub fn handle_interrupt(&self) {
        let mut done = Vec::new();
        {
            let mut io = self.io.lock();
            self.reap(&mut io, &mut done);
            if !io.dead {
                self.kick(&mut io, &mut done);
            }
        }
        complete(done);
    }

    fn in_flight(&self) -> usize {
        self.io.lock().slots.iter().filter(|s| s.is_some()).count()
    }

    /// The watchdog: commands outstanding with none completing for
    /// [`REQUEST_TIMEOUT_NS`] reset the controller (which drops every command and stops
    /// touching their buffers), set it up again, and fail the requests they belonged to
    /// with [`BlockError::Timeout`]; waiting ones are issued afterwards.
    pub fn check_timeouts(&self, now_ns: u64) {
        let mut done = Vec::new();
        {
            let mut io = self.io.lock();
            self.reap(&mut io, &mut done);
            let busy = io.slots.iter().any(Option::is_some);
            if !busy {
                io.stall_since = None;
            } else if io.progressed || io.stall_since.is_none() {
                io.stall_since = Some(now_ns);
            } else if io
                .stall_since
                .is_some_and(|t| now_ns.saturating_sub(t) >= REQUEST_TIMEOUT_NS)
            {
                self.recover(&mut io, &mut done);
                io.stall_since = None;
            }
            io.progressed = false;
        }
        complete(done);
    }

    fn recover(&self, io: &mut IoState, done: &mut Vec<Done>) {
        log::warn!(
            "nvme {}: no command completed for {} s; resetting the controller",
            self.name,
            REQUEST_TIMEOUT_NS / 1_000_000_000
        );
        let mut stuck: Vec<usize> = Vec::new();
        for cid in 0..io.slots.len() {
            if let Some(i) = io.slots[cid].take() {
                if let Some(t) = io.requests.get(i).and_then(Option::as_ref) {
                    log::warn!(
                        "nvme {}:   command {cid}: {:?} at sector {}, not completed",
                        self.name,
                        t.req.op,
                        t.req.sector
                    );
                }
                if !stuck.contains(&i) {
                    stuck.push(i);
                }
            }
        }
        io.free = (0..io.slots.len() as u16).rev().collect();
        // The reset makes the controller drop every command: only then are the stuck
        // requests' buffers theirs again.
        let revived = self.restart(io);
        io.waiting.retain(|i| !stuck.contains(i));
        let disabled = revived.is_ok() || self.disable();
        for i in stuck {
            if let Some(t) = io.untrack(i) {
                if disabled {
                    done.push((t.req, Err(BlockError::Timeout)));
                } else {
                    // The controller never confirmed it stopped: it may still write the
                    // request's buffers, which must then never be reused. Leaked, and
                    // its waiter never wakes.
                    log::error!(
                        "nvme {}: {:?} at sector {} abandoned with its buffers",
                        self.name,
                        t.req.op,
                        t.req.sector
                    );
                    core::mem::forget(t);
                }
            }
        }
        match revived {
            Ok(()) => self.kick(io, done),
            Err(e) => {
                log::error!(
                    "nvme {}: the controller did not come back ({e}); it is offline",
                    self.name
                );
                io.dead = true;
                let left: Vec<usize> = io.waiting.drain(..).collect();
                for i in left {
                    if let Some(t) = io.untrack(i) {
                        done.push((t.req, Err(BlockError::Io)));
                    }
                }
            }
        }
    }
}

/// A namespace's Copy limits from its Identify Namespace page: MSSRL (bytes 74-75), MCL
/// (76-79) and MSRC (80, zero-based), the ranges kept within one descriptor page (where
/// the driver puts them) and a range within NLB's 16 bits. None if a limit is 0.
fn copy_limits(page: &[u8]) -> Option<CopyLimits> {
    let mssrl = u16::from_le_bytes([page[74], page[75]]);
    let mcl = u32::from_le_bytes([page[76], page[77], page[78], page[79]]);
    let msrc = page[80] as usize + 1;
    if mssrl == 0 || mcl == 0 {
        return None;
    }
    Some(CopyLimits {
        max_ranges: msrc.min(PAGE as usize / command::COPY_DESCRIPTOR_BYTES),
        max_range_sectors: u32::from(mssrl),
        max_sectors: u64::from(mcl),
    })
}

fn complete(done: Vec<Done>) {
    for (req, result) in done {
        req.complete(result);
    }
}

impl<H: Hal, R: RegisterIo + Clone> NvmeDisk<H, R> {
    /// The namespace's identifier (1-based).
    pub fn nsid(&self) -> u32 {
        self.nsid
    }

    /// Check `req` for this namespace and cut it into pieces.
    fn prepare(&self, req: Request) -> Result<Tracked, (Request, BlockError)> {
        let bytes = match block::validate(&self.info, &req) {
            Ok(n) => n,
            Err(e) => return Err((req, e)),
        };
        let pieces = match req.op {
            Op::Flush | Op::Copy | Op::Discard => VecDeque::new(),
            _ => match self.ctrl.pieces(&req.segments) {
                Ok(p) => p,
                Err(e) => return Err((req, e)),
            },
        };
        Ok(Tracked {
            nsid: self.nsid,
            req,
            pieces,
            outstanding: 0,
            result: Ok(bytes),
        })
    }
}

impl<H: Hal, R: RegisterIo + Clone> BlockDevice for NvmeDisk<H, R> {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn submit(&self, req: Request) -> Result<(), BlockError> {
        if req.op == Op::Flush && !self.info.flush {
            // No volatile write cache: writes are durable when they complete.
            block::validate(&self.info, &req)?;
            req.complete(Ok(0));
            return Ok(());
        }
        match self.prepare(req) {
            Ok(q) => {
                self.ctrl.queue(alloc::vec![q]);
                Ok(())
            }
            // Refused: dropped without its completion, as the trait says.
            Err((_req, e)) => Err(e),
        }
    }

    /// Every request of the batch into the submission queue, then one doorbell write.
    fn submit_many(&self, reqs: Vec<Request>) {
        let mut items = Vec::with_capacity(reqs.len());
        let mut refused = Vec::new();
        for req in reqs {
            if req.op == Op::Flush && !self.info.flush {
                let result = block::validate(&self.info, &req).map(|_| 0);
                refused.push((req, result));
                continue;
            }
            match self.prepare(req) {
                Ok(q) => items.push(q),
                Err((req, e)) => refused.push((req, Err(e))),
            }
        }
        self.ctrl.queue(items);
        complete(refused);
    }

    fn handle_interrupt(&self) {
        self.ctrl.handle_interrupt();
    }

    /// Commands in flight on the controller (its namespaces share one queue).
    fn in_flight(&self) -> usize {
        self.ctrl.in_flight()
    }

    fn check_timeouts(&self, now_ns: u64) {
        self.ctrl.check_timeouts(now_ns);
    }

    /// The controller's shutdown notification (once for all its namespaces).
    fn shutdown(&self) {
        self.ctrl.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_cursor_flips_phase_at_each_wrap() {
        let mut c = CqCursor::new(3);
        assert_eq!((c.head, c.phase), (0, true));
        c.advance();
        c.advance();
        assert_eq!((c.head, c.phase), (2, true));
        c.advance();
        assert_eq!((c.head, c.phase), (0, false));
        for _ in 0..3 {
            c.advance();
        }
        assert_eq!((c.head, c.phase), (0, true));
    }
}
