//! One AHCI port with an ATA disk behind it: bring-up, command issue, completion and
//! error recovery. The disk is an [`AhciDisk`], a [`BlockDevice`].
//!
//! # Locking
//!
//! All slot state of a port sits behind one `spin::Mutex`. Completion callbacks run
//! after it is released (they may submit new requests). [`AhciDisk::handle_interrupt`]
//! never spins on the lock: if it is held (say the interrupt arrived while this CPU was
//! inside `submit`), it leaves a note and the holder services the port once it unlocks.
//!
//! # Native command queuing
//!
//! Where both the HBA (CAP.SNCQ) and the disk (IDENTIFY word 76) support it, reads and
//! writes are READ/WRITE FPDMA QUEUED commands, tagged with their slot: the disk holds up
//! to its queue depth of them at once and finishes them in any order. The driver sets a
//! slot's PxSACT bit, then its PxCI bit; the HBA clears PxCI once the disk took the
//! command, and the disk clears PxSACT (Set Device Bits FIS, PxIS.SDBS) once it is done.
//! Flushes are non-queued commands, and the two kinds never share the port (see
//! [`SlotTable`]). The kernel option `ahci_ncq=off` keeps to non-queued commands.
//!
//! # Several commands at once without NCQ
//!
//! Plain READ/WRITE DMA EXT commands are put in several slots at once; the HBA runs them
//! one after another.
//!
//! # Errors
//!
//! When a fatal error arrives with more than one command outstanding, the driver cannot
//! always tell which one failed (PxCMD.CCS is not reliable everywhere, QEMU's HBA keeps
//! running the other slots after an error, and an NCQ error names its command only in a
//! log page), so it takes all of them back and re-runs them one at a time: each error is
//! then unambiguous. Re-running a read or a write that had already succeeded is harmless.
//! Queued commands whose PxSACT bit is clear finished well and complete first.
//!
//! After an error or a timeout with queued commands outstanding, the port always gets a
//! COMRESET: a disk refuses further commands after an NCQ error until it is reset (or its
//! error log is read), and QEMU's HBA keeps queued commands running when PxCMD.ST is
//! cleared (only a reset cancels them), so their buffers could not be handed back before.
//! A failed queued command raises PxIS.TFES (AHCI; QEMU 7.2.22 as tested here). Older QEMUs
//! (before 7.2.6 and 8.1) only set its tag's bit in PxSERR and ERR in the status with a
//! Set Device Bits FIS, so after such a FIS the driver also checks PxSERR for the tags
//! still outstanding.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::sync::Weak;
use alloc::vec::Vec;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};

use spin::{Mutex, Once};

use super::fis::{self, AtaCommand, PRD_SIZE, PRDT_OFFSET, Prd};
use super::identify::Identify;
use super::mmio::{self, MmioRegs, RegisterIo};
use super::regs::*;
use super::slots::{Kind, SlotTable, bits};
use crate::block::{self, BlockDevice, BlockError, DeviceInfo, Op, Request, SECTOR_SIZE, Segment};
use crate::hal::Hal;

/// DMA page size.
const PAGE: usize = 4096;
/// PRD entries per command table: a table (128-byte header plus PRDT) fills one page.
pub const PRDT_ENTRIES: usize = (PAGE - PRDT_OFFSET) / PRD_SIZE;
/// Segments a request may have. Below [`PRDT_ENTRIES`] so that segments above 4 MiB,
/// which take several entries, still fit: a request holds at most 32 MiB, so splitting
/// adds at most 8 entries.
pub const MAX_SEGMENTS: usize = PRDT_ENTRIES - 8;
/// A port with commands outstanding that finishes none of them for this long (as seen by
/// [`AhciDisk::check_timeouts`]) is reset, and the command at fault fails with
/// [`BlockError::Timeout`].
pub const COMMAND_TIMEOUT_NS: u64 = crate::block::REQUEST_TIMEOUT_NS;
/// How many times a command is tried when errors cannot be pinned on it (link and bus
/// errors); a task-file error (the device said no) is never retried.
const MAX_ATTEMPTS: u8 = 2;

/// Offset of the FIS receive area in the port's first page (after the 1 KiB command list).
const FIS_OFFSET: u64 = 0x400;
/// Offset of the IDENTIFY buffer in the port's first page.
const IDENTIFY_OFFSET: u64 = 0x800;

// Bounded waits, in nanoseconds (`spin_until`: by the kernel's clock).
/// 1 ms.
pub(crate) const WAIT_1MS: u64 = 1_000_000;
/// 10 ms.
pub(crate) const WAIT_10MS: u64 = 10_000_000;
/// 500 ms (PxCMD.CR/FR to clear, AHCI section 10.1.2).
pub(crate) const WAIT_500MS: u64 = 500_000_000;
/// A second (link, HBA reset).
pub(crate) const WAIT_1S: u64 = 1_000_000_000;
/// Ten seconds (a disk spinning up after reset).
pub(crate) const WAIT_LONG: u64 = 10_000_000_000;

pub(crate) use crate::mmio::spin_until;

/// The registers of one port.
#[derive(Clone)]
pub(crate) struct PortIo<R> {
    pub regs: R,
    pub port: usize,
}

impl<R: RegisterIo> PortIo<R> {
    pub fn r(&self, reg: usize) -> u32 {
        self.regs.read(port_reg(self.port, reg))
    }

    pub fn w(&self, reg: usize, value: u32) {
        self.regs.write(port_reg(self.port, reg), value)
    }

    /// Writes PxCMD, never writing the ICC field back (it is a command, not state).
    fn set_cmd(&self, set: u32, clear: u32) {
        let cmd = self.r(PX_CMD) & !CMD_ICC_MASK;
        self.w(PX_CMD, (cmd & !clear) | set);
    }

    /// Clears PxIS bits `is` and then this port's bit in the HBA's IS.
    fn ack(&self, is: u32) {
        self.w(PX_IS, is);
        self.regs.write(IS, 1 << self.port);
    }

    /// Clears PxCMD.ST and waits for the command list engine to stop (CR clear).
    pub fn stop_engine(&self) -> bool {
        if self.r(PX_CMD) & CMD_ST != 0 {
            self.set_cmd(0, CMD_ST);
        }
        spin_until(WAIT_500MS, || self.r(PX_CMD) & CMD_CR == 0)
    }

    /// Clears PxCMD.FRE and waits for FIS receive to stop (FR clear).
    pub fn stop_fis(&self) -> bool {
        if self.r(PX_CMD) & CMD_FRE != 0 {
            self.set_cmd(0, CMD_FRE);
        }
        spin_until(WAIT_500MS, || self.r(PX_CMD) & CMD_FR == 0)
    }

    /// Waits for the device to be idle (task file BSY and DRQ clear).
    fn wait_idle(&self, timeout_ns: u64) -> bool {
        spin_until(timeout_ns, || {
            self.r(PX_TFD) & (TFD_STS_BSY | TFD_STS_DRQ) == 0
        })
    }

    /// Starts command processing: FIS receive on, device idle, then ST.
    fn start_engine(&self) -> bool {
        self.set_cmd(CMD_FRE, 0);
        if !self.wait_idle(WAIT_1S) {
            return false;
        }
        self.set_cmd(CMD_ST, 0);
        true
    }

    /// COMRESET (SATA hard reset) through PxSCTL.DET; the command list engine must be
    /// stopped. Waits for the link and for the device to report ready.
    pub fn comreset(&self) -> bool {
        let sctl = self.r(PX_SCTL) & !0xFFF;
        // DET=1 starts COMRESET; IPM=3 keeps the link out of partial/slumber.
        self.w(PX_SCTL, sctl | 0x301);
        spin_until(WAIT_1MS, || {
            let _ = self.r(PX_SSTS);
            false
        });
        self.w(PX_SCTL, sctl | 0x300);
        let up = spin_until(WAIT_1S, || ssts_det(self.r(PX_SSTS)) == SSTS_DET_PRESENT);
        self.w(PX_SERR, u32::MAX);
        up && self.wait_idle(WAIT_LONG)
    }
}

/// The DMA memory of a port: one page with the command list (1 KiB at 0), the FIS
/// receive area (256 bytes at 0x400) and a buffer for IDENTIFY (512 bytes at 0x800); one
/// page per command slot for its command table (128-byte header plus
/// [`PRDT_ENTRIES`] PRD entries).
pub(crate) struct PortMemory<H: Hal> {
    page: u64,
    tables: Vec<u64>,
    /// Set when the HBA might still use the memory: then it is never freed.
    leak: bool,
    _hal: PhantomData<fn() -> H>,
}

impl<H: Hal> PortMemory<H> {
    fn alloc(nslots: u32, s64a: bool) -> Result<PortMemory<H>, String> {
        let page = H::dma_alloc(1).ok_or_else(|| String::from("out of DMA memory"))?;
        let mut mem = PortMemory {
            page,
            tables: Vec::new(),
            leak: false,
            _hal: PhantomData,
        };
        for _ in 0..nslots {
            let t = H::dma_alloc(1).ok_or_else(|| String::from("out of DMA memory"))?;
            mem.tables.push(t);
        }
        let high = |p: u64| p + PAGE as u64 > 1 << 32;
        if !s64a && (high(page) || mem.tables.iter().any(|&t| high(t))) {
            return Err(String::from(
                "the HBA has only 32-bit addressing but DMA memory came from above 4 GiB",
            ));
        }
        Ok(mem)
    }

    fn header(&self, slot: u8) -> u64 {
        self.page + (slot as usize * fis::CMD_HEADER_SIZE) as u64
    }

    /// Writes the command for `slot`: its table (FIS and PRDT) and its command header.
    /// The slot must not be in PxCI (the HBA is not reading it).
    fn write_command(&self, slot: u8, cmd: &AtaCommand, prdt: &[Prd]) {
        let Some(&table) = self.tables.get(slot as usize) else {
            log::error!("ahci: no command table for slot {slot}");
            return;
        };
        let prdt = &prdt[..prdt.len().min(PRDT_ENTRIES)];
        let fis: [u32; 5] = fis::le_dwords(&cmd.to_fis());
        let header = fis::command_header(cmd.is_write(), prdt.len() as u16, table);
        // SAFETY: `table` and `self.page` are pages this port got from `H::dma_alloc` and
        // owns; the FIS (20 bytes at 0), the PRDT (at most PRDT_ENTRIES * 16 bytes from
        // 0x80) and the 32-byte header of `slot` (< 32) lie inside them. The slot is not in
        // PxCI, so the HBA is not reading this table or header.
        unsafe {
            mmio::dma_write_u32s::<H>(table, &fis);
            for (i, prd) in prdt.iter().enumerate() {
                mmio::dma_write_u32s::<H>(
                    table + (PRDT_OFFSET + i * PRD_SIZE) as u64,
                    &prd.encode(),
                );
            }
            mmio::dma_write_u32s::<H>(self.header(slot), &header);
        }
    }
}

impl<H: Hal> Drop for PortMemory<H> {
    fn drop(&mut self) {
        if self.leak {
            return;
        }
        H::dma_free(self.page, 1);
        for &t in &self.tables {
            H::dma_free(t, 1);
        }
    }
}

/// A bounce buffer standing in for a segment the HBA cannot address. Freed on drop.
struct Bounce<H: Hal> {
    phys: u64,
    pages: usize,
    seg: Segment,
    _hal: PhantomData<fn() -> H>,
}

impl<H: Hal> Bounce<H> {
    fn alloc(seg: Segment) -> Result<Bounce<H>, BlockError> {
        let pages = (seg.len as usize).div_ceil(PAGE);
        let Some(phys) = H::dma_alloc(pages) else {
            log::error!("ahci: no memory for a {}-byte bounce buffer", seg.len);
            return Err(BlockError::Io);
        };
        let b = Bounce {
            phys,
            pages,
            seg,
            _hal: PhantomData,
        };
        if b.phys + (pages * PAGE) as u64 > 1 << 32 {
            log::error!("ahci: bounce buffer at {phys:#x} is above 4 GiB too");
            return Err(BlockError::Io);
        }
        Ok(b)
    }
}

impl<H: Hal> Drop for Bounce<H> {
    fn drop(&mut self) {
        H::dma_free(self.phys, self.pages);
    }
}

/// A request waiting for a slot.
struct Queued {
    req: Request,
    attempts: u8,
}

/// A request in a slot.
struct Inflight<H: Hal> {
    req: Request,
    bytes: u64,
    bounces: Vec<Bounce<H>>,
    /// Issue order.
    seq: u64,
    attempts: u8,
}

/// A finished request and its result, completed after the port lock is released.
type Done = (Request, Result<u64, BlockError>);

struct PortState<H: Hal> {
    mem: PortMemory<H>,
    slots: SlotTable,
    cmds: Vec<Option<Inflight<H>>>,
    /// Bounce buffers that a zombie slot's old command may still point at.
    held: Vec<Vec<Bounce<H>>>,
    queue: VecDeque<Queued>,
    next_seq: u64,
    /// The port is gone or could not be recovered: everything fails with `Io`.
    dead: bool,
    /// A command finished (or recovery ran) since the last timeout check.
    progressed: bool,
    /// Since when (by the timeout checks' clock) commands have been outstanding with no
    /// progress.
    stall_since: Option<u64>,
}

/// Why recovery runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cause {
    /// PxIS had these error bits.
    Error(u32),
    /// A command took longer than [`COMMAND_TIMEOUT_NS`].
    Timeout,
}

/// What [`AhciDisk::bring_up`] needs to know about the HBA.
pub(crate) struct HbaInfo {
    /// PCI address, for log lines.
    pub name: String,
    pub nslots: u32,
    pub s64a: bool,
    pub sncq: bool,
    /// NCQ wanted (else non-queued commands only).
    pub ncq: bool,
}

/// An ATA disk on one AHCI port: a [`BlockDevice`].
///
/// Queue depth is the number of command slots; further requests wait in a software queue.
/// Each request segment gets its own PRD entry (segments above 4 MiB get several); a
/// segment the HBA cannot address (no 64-bit addressing, segment above 4 GiB) goes
/// through a bounce buffer, counted in `bounce_bytes`.
pub struct AhciDisk<H: Hal, R: RegisterIo + Clone = MmioRegs> {
    io: PortIo<R>,
    name: String,
    info: DeviceInfo,
    identify: Identify,
    s64a: bool,
    /// The NCQ queue depth used (0: no NCQ, non-queued commands only).
    ncq_depth: u32,
    state: Mutex<PortState<H>>,
    /// Work for whoever holds (or next takes) the lock: service the port.
    pending: AtomicBool,
    in_flight: AtomicUsize,
    /// The other disks of the same HBA: they share its one interrupt, so a disk's
    /// `handle_interrupt` services them too.
    siblings: Once<Vec<Weak<AhciDisk<H, R>>>>,
}

impl<H: Hal, R: RegisterIo + Clone> AhciDisk<H, R> {
    /// Queue `req` and issue what the port has room for; a refused request comes back
    /// with the reason.
    fn enqueue(&self, req: Request) -> Result<(), (Request, BlockError)> {
        if let Err(e) = self.acceptable(&req) {
            return Err((req, e));
        }
        let mut done = Vec::new();
        {
            let mut st = self.state.lock();
            if st.dead {
                return Err((req, BlockError::Io));
            }
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            st.queue.push_back(Queued { req, attempts: 0 });
            // Only issue: reaping and error handling are for the interrupt (or poll) path,
            // which keeps a submission down to one register write.
            self.issue(&mut st, &mut done);
        }
        self.finish(done);
        self.drain_pending();
        Ok(())
    }

    /// Why the port would refuse `req`, before it is queued.
    fn acceptable(&self, req: &Request) -> Result<(), BlockError> {
        block::validate(&self.info, req)?;
        if req.op == Op::Flush && !self.info.flush {
            return Err(BlockError::Unsupported);
        }
        Ok(())
    }

    /// Sets up `port` (device already detected on the link): memory, FIS receive,
    /// signature check, command engine, IDENTIFY. `None` (logged) if there is no usable
    /// ATA disk.
    pub(crate) fn bring_up(regs: R, port: usize, hba: &HbaInfo) -> Option<AhciDisk<H, R>> {
        let io = PortIo { regs, port };
        let name = format!("ahci {} port {port}", hba.name);
        let mut mem = match PortMemory::<H>::alloc(hba.nslots, hba.s64a) {
            Ok(m) => m,
            Err(e) => {
                log::error!("{name}: {e}; port not used");
                return None;
            }
        };
        match init_port(&io, &mem, &name) {
            Ok(identify) => {
                let info = device_info(&identify, hba, port, io.r(PX_SSTS));
                log::info!(
                    "{name}: {} ({} sectors, {} MiB), serial {}, fw {}: {}",
                    info.model,
                    info.sectors,
                    info.sectors / 2048,
                    info.serial,
                    identify.firmware,
                    info.features
                );
                io.w(PX_SERR, u32::MAX);
                io.ack(u32::MAX);
                io.w(PX_IE, IE_MASK);
                let nslots = hba.nslots as usize;
                let ncq_depth = ncq_depth(hba, &identify);
                Some(AhciDisk {
                    io,
                    name,
                    info,
                    identify,
                    s64a: hba.s64a,
                    ncq_depth,
                    state: Mutex::new(PortState {
                        mem,
                        slots: SlotTable::new(hba.nslots, ncq_depth),
                        cmds: (0..nslots).map(|_| None).collect(),
                        held: (0..nslots).map(|_| Vec::new()).collect(),
                        queue: VecDeque::new(),
                        next_seq: 0,
                        dead: false,
                        progressed: false,
                        stall_since: None,
                    }),
                    pending: AtomicBool::new(false),
                    in_flight: AtomicUsize::new(0),
                    siblings: Once::new(),
                })
            }
            Err(e) => {
                log::warn!("{name}: {e}; port not used");
                io.w(PX_IE, 0);
                if !(io.stop_engine() && io.stop_fis()) {
                    log::error!("{name}: port does not stop; its DMA memory is leaked");
                    mem.leak = true;
                }
                None
            }
        }
    }

    /// Records the other disks of the HBA (once, at probe).
    pub(crate) fn set_siblings(&self, siblings: Vec<Weak<AhciDisk<H, R>>>) {
        self.siblings.call_once(|| siblings);
    }

    /// Services this port now, or leaves the work to whoever holds its lock. Never spins.
    pub(crate) fn process(&self) {
        self.pending.store(true, Ordering::SeqCst);
        self.drain_pending();
    }

    /// The NCQ queue depth used: the device's, at most the HBA's slots; 0 if either
    /// lacks NCQ or it is turned off.
    pub fn ncq_depth(&self) -> u32 {
        self.ncq_depth
    }

    /// The port number on the HBA.
    pub fn port(&self) -> usize {
        self.io.port
    }

    /// What IDENTIFY DEVICE reported.
    pub fn identify(&self) -> &Identify {
        &self.identify
    }

    /// Reaps finished commands, then, if commands are outstanding and none has finished
    /// for [`COMMAND_TIMEOUT_NS`] (measured between calls), stops and resets the port:
    /// the command at fault fails with [`BlockError::Timeout`] and the others are
    /// re-issued. `now_ns` is any monotonic clock; call this every second or so.
    pub fn check_timeouts(&self, now_ns: u64) {
        let mut done = Vec::new();
        {
            let mut st = self.state.lock();
            self.service(&mut st, &mut done);
            if st.slots.busy() == 0 {
                st.stall_since = None;
            } else if st.progressed || st.stall_since.is_none() {
                st.stall_since = Some(now_ns);
            } else if st
                .stall_since
                .is_some_and(|t| now_ns.saturating_sub(t) >= COMMAND_TIMEOUT_NS)
            {
                self.recover(&mut st, Cause::Timeout, &mut done);
                self.issue(&mut st, &mut done);
                st.stall_since = None;
            }
            st.progressed = false;
        }
        self.finish(done);
        self.drain_pending();
    }

    /// Runs `f` while holding the port lock (tests of the deferred-interrupt path).
    #[cfg(test)]
    pub(crate) fn with_lock_held(&self, f: impl FnOnce()) {
        let _st = self.state.lock();
        f();
    }

    /// Runs the completions, outside the lock.
    fn finish(&self, done: Vec<Done>) {
        for (req, result) in done {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            req.complete(result);
        }
    }

    /// Services the port while someone asked for it and nobody else holds the lock.
    fn drain_pending(&self) {
        while self.pending.load(Ordering::SeqCst) {
            let Some(mut st) = self.state.try_lock() else {
                // The holder checks `pending` after unlocking.
                return;
            };
            self.pending.store(false, Ordering::SeqCst);
            let mut done = Vec::new();
            self.service(&mut st, &mut done);
            drop(st);
            self.finish(done);
        }
    }

    /// Reaps, recovers from errors, issues queued requests. Called with the lock held.
    fn service(&self, st: &mut PortState<H>, done: &mut Vec<Done>) {
        for _ in 0..8 {
            if st.dead {
                break;
            }
            // PxCI and PxSACT before PxIS: a command whose bit is clear in `ci` finished
            // before the PxIS read, so an error of its own would show there.
            let ci = self.io.r(PX_CI);
            let sact = if st.slots.queued() != 0 {
                self.io.r(PX_SACT)
            } else {
                0
            };
            let is = self.io.r(PX_IS);
            if is == u32::MAX && ci == u32::MAX {
                log::error!("{}: registers read all-ones; device gone", self.name);
                self.kill(st, true, done);
                break;
            }
            if is != 0 {
                self.io.ack(is);
            }
            if is & IS_ERRORS != 0 {
                self.recover(st, Cause::Error(is), done);
            } else {
                // The HBA wrote the data before clearing PxCI (the disk before PxSACT).
                fence(Ordering::SeqCst);
                self.reap(st, ci, sact, u32::MAX, done);
                // Read after the PxIS write above: an older QEMU's NCQ failure that sets
                // PxSERR after that write raises SDBS again, and the next pass sees it. Only
                // while queued commands are still outstanding (or for INFS).
                let serr = if is & IS_INFS != 0 || (is & IS_SDBS != 0 && st.slots.queued() != 0) {
                    self.io.r(PX_SERR)
                } else {
                    0
                };
                // Outstanding tags flagged in PxSERR: how older QEMUs report failed queued
                // commands.
                let failed_tags = serr & st.slots.queued();
                if is & IS_INFS != 0 {
                    self.io.w(PX_SERR, serr & !failed_tags);
                    log::warn!("{}: interface non-fatal error, SERR {serr:#x}", self.name);
                }
                if failed_tags != 0 {
                    self.recover(st, Cause::Error(is | IS_TFES), done);
                }
            }
            self.issue(st, done);
            if is == 0 {
                break;
            }
        }
        if st.dead {
            while let Some(q) = st.queue.pop_front() {
                done.push((q.req, Err(BlockError::Io)));
            }
        }
    }

    /// Completes the busy slots of `mask` whose commands finished (given PxCI and
    /// PxSACT), and frees zombies the HBA let go.
    fn reap(&self, st: &mut PortState<H>, ci: u32, sact: u32, mask: u32, done: &mut Vec<Done>) {
        let zombies = st.slots.zombies();
        let finished = st.slots.finished(ci, sact) & mask;
        release_held(st, zombies);
        st.progressed |= finished != 0;
        for slot in bits(finished) {
            st.slots.release(slot);
            st.slots.command_finished();
            if let Some(inf) = st.cmds[slot as usize].take() {
                let bytes = inf.bytes;
                done.push(complete_inflight(inf, Ok(bytes)));
            }
        }
    }

    /// Moves queued requests into free slots and issues them with one PxCI write.
    fn issue(&self, st: &mut PortState<H>, done: &mut Vec<Done>) {
        if st.dead {
            return;
        }
        let mut issued = 0u32;
        let mut queued = 0u32;
        let ncq = self.ncq_depth > 0;
        while let Some(head) = st.queue.front() {
            let kind = if ncq && matches!(head.req.op, Op::Read | Op::Write) {
                Kind::Queued
            } else {
                Kind::NonQueued
            };
            // In order: a request that must wait holds back the ones behind it.
            let Some(slot) = st.slots.next_free(kind) else {
                break;
            };
            let Some(q) = st.queue.pop_front() else { break };
            match self.prepare(&q.req, (kind == Kind::Queued).then_some(slot)) {
                Ok((cmd, prdt, bounces)) => {
                    st.mem.write_command(slot, &cmd, &prdt);
                    let bytes = q.req.bytes();
                    st.cmds[slot as usize] = Some(Inflight {
                        req: q.req,
                        bytes,
                        bounces,
                        seq: st.next_seq,
                        attempts: q.attempts,
                    });
                    st.next_seq += 1;
                    st.slots.take(slot, kind);
                    issued |= 1 << slot;
                    if kind == Kind::Queued {
                        queued |= 1 << slot;
                    }
                }
                Err(e) => {
                    st.slots.command_finished();
                    done.push((q.req, Err(e)));
                }
            }
        }
        if issued != 0 {
            // Command tables and headers are in memory before the HBA is told.
            fence(Ordering::SeqCst);
            if queued != 0 {
                // PxSACT before PxCI, as AHCI requires for queued commands.
                self.io.w(PX_SACT, queued);
            }
            self.io.w(PX_CI, issued);
            block::stats::add_notify();
        }
    }

    /// The ATA command, PRDT and bounce buffers for `req`; an NCQ command with `tag`.
    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
        req: &Request,
        tag: Option<u8>,
    ) -> Result<(AtaCommand, Vec<Prd>, Vec<Bounce<H>>), BlockError> {
        if req.op == Op::Flush {
            return Ok((
                AtaCommand::flush(self.identify.flush_ext),
                Vec::new(),
                Vec::new(),
            ));
        }
        let sectors = req.bytes() / SECTOR_SIZE as u64;
        let sectors = u32::try_from(sectors).map_err(|_| BlockError::TooLarge)?;
        let cmd = match tag {
            Some(tag) => AtaCommand::queued(req.op, req.sector, sectors, tag)?,
            None => AtaCommand::read_write(req.op, req.sector, sectors, self.identify.lba48)?,
        };
        let mut ranges = Vec::with_capacity(req.segments.len());
        let mut bounces = Vec::new();
        for seg in &req.segments {
            if fis::reachable(seg, self.s64a) {
                ranges.push((seg.phys, seg.len));
                continue;
            }
            let b = Bounce::<H>::alloc(*seg)?;
            if req.op == Op::Write {
                // SAFETY: the segment belongs to `req`, which the caller keeps alive and
                // does not let the device touch yet; the bounce buffer was just allocated
                // with room for `seg.len` bytes and is not in any command.
                unsafe { mmio::dma_copy::<H>(b.phys, seg.phys, seg.len as usize) };
                block::stats::add_bounce(u64::from(seg.len));
            }
            ranges.push((b.phys, seg.len));
            bounces.push(b);
        }
        let prdt = fis::build_prdt(&ranges, PRDT_ENTRIES)?;
        Ok((cmd, prdt, bounces))
    }

    /// Error or timeout: complete the queued commands the disk finished, stop the port,
    /// take the outstanding commands back, blame one if it is unambiguous, reset the link
    /// if the device stays busy, timed out or had queued commands, restart.
    fn recover(&self, st: &mut PortState<H>, cause: Cause, done: &mut Vec<Done>) {
        let io = &self.io;
        let (tfd, serr, ci, cmd) = (io.r(PX_TFD), io.r(PX_SERR), io.r(PX_CI), io.r(PX_CMD));
        // Queued commands the disk has finished (PxSACT clear) finished well: complete
        // them now, before the reset below clears PxSACT.
        if st.slots.queued() != 0 {
            let sact = io.r(PX_SACT);
            self.reap(st, ci, sact, st.slots.queued(), done);
        }
        let queued = st.slots.queued();
        let busy = st.slots.busy();
        match cause {
            Cause::Error(is) => log::warn!(
                "{}: error: IS {is:#010x} TFD {tfd:#06x} (status {:#04x} error {:#04x}) SERR {serr:#x} \
                 CI {ci:#x} CMD {cmd:#x}, {} command(s) outstanding",
                self.name,
                tfd & 0xFF,
                (tfd >> 8) & 0xFF,
                busy.count_ones()
            ),
            Cause::Timeout => {
                log::warn!(
                    "{}: command timeout: TFD {tfd:#06x} SERR {serr:#x} CI {ci:#x} CMD {cmd:#x}, {} command(s) \
                     outstanding",
                    self.name,
                    busy.count_ones()
                );
                for slot in bits(busy) {
                    if let Some(inf) = &st.cmds[slot as usize] {
                        log::warn!(
                            "{}:   slot {slot}: {:?} sector {} ({} bytes), {}, attempt {}",
                            self.name,
                            inf.req.op,
                            inf.req.sector,
                            inf.bytes,
                            if ci & (1 << slot) != 0 {
                                "still issued (PxCI)"
                            } else if queued & (1 << slot) != 0 {
                                "taken by the disk, not finished (PxSACT)"
                            } else {
                                "done by the device, not reaped"
                            },
                            inf.attempts + 1
                        );
                    }
                }
            }
        }

        st.progressed = true;
        let stopped = io.stop_engine();
        // An HBA that keeps running the current command after ST is cleared (QEMU)
        // shows BSY until it is done.
        let idle = io.wait_idle(WAIT_1S);
        io.w(PX_SERR, u32::MAX);
        io.ack(u32::MAX);
        let link = ssts_det(io.r(PX_SSTS)) == SSTS_DET_PRESENT;
        // A hung command gets a COMRESET even if the task file looks idle: some HBAs
        // (QEMU) do not show BSY for the command they are running, and a reset is what
        // makes the device drop it. So do outstanding queued commands (see the module
        // documentation).
        let mut ok = stopped && idle && link && cause != Cause::Timeout && queued == 0;
        if !ok {
            log::warn!(
                "{}: after stop: engine {}, TFD {:#06x}, SSTS {:#x}{}{}; COMRESET",
                self.name,
                if stopped { "stopped" } else { "still running" },
                io.r(PX_TFD),
                io.r(PX_SSTS),
                if cause == Cause::Timeout {
                    ", timeout"
                } else {
                    ""
                },
                if queued != 0 {
                    ", NCQ commands outstanding"
                } else {
                    ""
                }
            );
            // If CR did not clear, ST is clear now and COMRESET stops the engine.
            ok = io.comreset() && (stopped || io.stop_engine());
            io.w(PX_SERR, u32::MAX);
            io.ack(u32::MAX);
        }

        // Slots the HBA still lists in PxCI although the engine is stopped: neutralise
        // their tables so that nothing stale moves data if the HBA runs them later.
        let zombies = st.slots.zombies();
        let stale = io.r(PX_CI) & (busy | zombies);
        st.slots.stopped(stale);
        release_held(st, zombies);
        for slot in bits(stale) {
            st.mem
                .write_command(slot, &AtaCommand::simple(fis::ATA_CHECK_POWER_MODE), &[]);
        }

        let mut taken: Vec<(u8, Inflight<H>)> = bits(busy)
            .filter_map(|s| st.cmds[s as usize].take().map(|inf| (s, inf)))
            .collect();
        taken.sort_by_key(|(_, inf)| inf.seq);

        if !ok {
            log::error!(
                "{}: port could not be recovered; disk is offline",
                self.name
            );
            // The engine is stopped (or COMRESET at least ran); if it is not, buffers of
            // the stale commands are kept forever rather than handed back.
            let engine_stopped = io.r(PX_CMD) & CMD_CR == 0;
            // A queued command the disk took (PxCI clear) may still move data too.
            let in_use = stale | queued;
            for (slot, inf) in taken {
                if engine_stopped || in_use & (1 << slot) == 0 {
                    done.push(complete_inflight(inf, Err(BlockError::Io)));
                } else {
                    log::error!(
                        "{}: slot {slot} may still be in use by the HBA; its request is leaked",
                        self.name
                    );
                    core::mem::forget(inf);
                }
            }
            self.kill(st, engine_stopped, done);
            return;
        }

        match taken.len() {
            0 => {}
            1 => {
                let Some((slot, mut inf)) = taken.pop() else {
                    return;
                };
                let device_error = matches!(cause, Cause::Error(is) if is & IS_TFES != 0);
                inf.attempts = inf.attempts.saturating_add(1);
                if cause == Cause::Timeout || device_error || inf.attempts >= MAX_ATTEMPTS {
                    let err = if cause == Cause::Timeout {
                        BlockError::Timeout
                    } else {
                        BlockError::Io
                    };
                    log::warn!(
                        "{}: {:?} of sector {} failed: {err}",
                        self.name,
                        inf.req.op,
                        inf.req.sector
                    );
                    st.slots.command_finished();
                    if stale & (1 << slot) != 0 {
                        st.held[slot as usize].append(&mut inf.bounces);
                    }
                    done.push(complete_inflight(inf, Err(err)));
                } else {
                    self.requeue(st, slot, stale, inf);
                }
            }
            n => {
                log::info!(
                    "{}: re-running {n} commands one at a time to find the failing one",
                    self.name
                );
                for (slot, inf) in taken.into_iter().rev() {
                    self.requeue(st, slot, stale, inf);
                }
                st.slots.enter_serial(n as u32);
            }
        }

        if !io.start_engine() {
            log::error!("{}: port does not restart; disk is offline", self.name);
            self.kill(st, true, done);
        }
    }

    /// Puts a taken-back command at the head of the queue. Its bounce buffers stay with
    /// the slot while the slot is a zombie.
    fn requeue(&self, st: &mut PortState<H>, slot: u8, stale: u32, mut inf: Inflight<H>) {
        if stale & (1 << slot) != 0 {
            st.held[slot as usize].append(&mut inf.bounces);
        }
        drop(inf.bounces);
        st.queue.push_front(Queued {
            req: inf.req,
            attempts: inf.attempts,
        });
    }

    /// Marks the port dead and fails queued and (if `engine_stopped`) in-flight requests.
    fn kill(&self, st: &mut PortState<H>, engine_stopped: bool, done: &mut Vec<Done>) {
        st.dead = true;
        self.io.w(PX_IE, 0);
        for slot in 0..st.cmds.len() {
            if let Some(inf) = st.cmds[slot].take() {
                if engine_stopped {
                    done.push(complete_inflight(inf, Err(BlockError::Io)));
                } else {
                    core::mem::forget(inf);
                }
            }
        }
        if !engine_stopped {
            st.mem.leak = true;
            for held in st.held.iter_mut() {
                for b in held.drain(..) {
                    core::mem::forget(b);
                }
            }
        }
        st.slots.clear();
        while let Some(q) = st.queue.pop_front() {
            done.push((q.req, Err(BlockError::Io)));
        }
    }
}

/// Frees the bounce buffers held for slots of `before` that are no longer zombies.
fn release_held<H: Hal>(st: &mut PortState<H>, before: u32) {
    for slot in bits(before & !st.slots.zombies()) {
        st.held[slot as usize].clear();
    }
}

/// Finishes a command: copies bounced read data back, frees bounce buffers.
fn complete_inflight<H: Hal>(inf: Inflight<H>, result: Result<u64, BlockError>) -> Done {
    if result.is_ok() && inf.req.op == Op::Read {
        for b in &inf.bounces {
            // SAFETY: the command is finished, so the HBA no longer writes the bounce
            // buffer; the segment belongs to the request, which is still alive here.
            unsafe { mmio::dma_copy::<H>(b.seg.phys, b.phys, b.seg.len as usize) };
            block::stats::add_bounce(u64::from(b.seg.len));
        }
    }
    drop(inf.bounces);
    (inf.req, result)
}

/// Port bring-up up to a parsed IDENTIFY. The caller stops the port on error.
fn init_port<H: Hal, R: RegisterIo>(
    io: &PortIo<R>,
    mem: &PortMemory<H>,
    name: &str,
) -> Result<Identify, String> {
    let ssts = io.r(PX_SSTS);
    if ssts_ipm(ssts) != SSTS_IPM_ACTIVE {
        io.set_cmd(CMD_ICC_ACTIVE, 0);
        if !spin_until(WAIT_10MS, || ssts_ipm(io.r(PX_SSTS)) == SSTS_IPM_ACTIVE) {
            return Err(format!("link not active (SSTS {:#x})", io.r(PX_SSTS)));
        }
    }
    if !(io.stop_engine() && io.stop_fis()) {
        return Err(String::from("port engines do not stop"));
    }
    let fis = mem.page + FIS_OFFSET;
    io.w(PX_CLB, mem.page as u32);
    io.w(PX_CLBU, (mem.page >> 32) as u32);
    io.w(PX_FB, fis as u32);
    io.w(PX_FBU, (fis >> 32) as u32);
    io.w(PX_IE, 0);
    io.w(PX_SERR, u32::MAX);
    io.w(PX_IS, u32::MAX);
    io.set_cmd(CMD_FRE, 0);
    if !spin_until(WAIT_500MS, || io.r(PX_CMD) & CMD_FR != 0) {
        log::warn!("{name}: FIS receive does not report running");
    }
    if !io.wait_idle(WAIT_LONG) {
        log::warn!("{name}: device busy (TFD {:#06x}); COMRESET", io.r(PX_TFD));
        if !io.comreset() {
            return Err(format!(
                "device stays busy after COMRESET (TFD {:#06x})",
                io.r(PX_TFD)
            ));
        }
    }
    let sig = io.r(PX_SIG);
    match sig {
        SIG_ATA => {}
        SIG_ATAPI => return Err(String::from("ATAPI device (not supported)")),
        SIG_PM => return Err(String::from("port multiplier (not supported)")),
        SIG_SEMB => return Err(String::from("enclosure bridge (not supported)")),
        other => return Err(format!("unknown device signature {other:#x}")),
    }
    io.w(PX_SERR, u32::MAX);
    io.w(PX_IS, u32::MAX);
    if !io.start_engine() {
        return Err(String::from("command engine does not start"));
    }

    // IDENTIFY DEVICE, polled, in slot 0.
    let buf = mem.page + IDENTIFY_OFFSET;
    mem.write_command(
        0,
        &AtaCommand::simple(fis::ATA_IDENTIFY),
        &[Prd {
            addr: buf,
            bytes: 512,
            interrupt: false,
        }],
    );
    fence(Ordering::SeqCst);
    io.w(PX_CI, 1);
    let finished = spin_until(WAIT_LONG, || {
        io.r(PX_CI) & 1 == 0 || io.r(PX_IS) & IS_ERRORS != 0
    });
    let (is, tfd) = (io.r(PX_IS), io.r(PX_TFD));
    if !finished || is & IS_ERRORS != 0 || tfd & TFD_STS_ERR != 0 {
        io.stop_engine();
        return Err(format!(
            "IDENTIFY DEVICE failed ({}IS {is:#x}, TFD {tfd:#06x})",
            if finished { "" } else { "timeout, " }
        ));
    }
    fence(Ordering::SeqCst);
    let mut data = [0u8; 512];
    // SAFETY: the IDENTIFY buffer is 512 bytes inside the port's own DMA page, and the
    // command that wrote it has finished (its PxCI bit is clear).
    unsafe { mmio::dma_read_bytes::<H>(buf, &mut data) };
    io.w(PX_IS, u32::MAX);

    let id = Identify::parse(&data);
    if id.bad_checksum {
        log::warn!("{name}: IDENTIFY data checksum is wrong; using it anyway");
    }
    if id.logical_sector_size != SECTOR_SIZE as u32 {
        return Err(format!(
            "logical sector size is {} bytes; only {} is supported, disk refused",
            id.logical_sector_size, SECTOR_SIZE
        ));
    }
    if !id.lba || !id.dma {
        return Err(String::from(
            "device lacks LBA addressing or DMA; disk refused",
        ));
    }
    if id.sectors == 0 {
        return Err(String::from("device reports zero capacity"));
    }
    Ok(id)
}

/// The NCQ queue depth to use: what HBA and disk both support, if NCQ is wanted (0: none).
fn ncq_depth(hba: &HbaInfo, id: &Identify) -> u32 {
    match (hba.sncq && hba.ncq, id.ncq_depth) {
        (true, Some(d)) => u32::from(d).min(hba.nslots),
        _ => 0,
    }
}

/// The [`DeviceInfo`] of a disk (name left empty: the kernel names disks).
fn device_info(id: &Identify, hba: &HbaInfo, port: usize, ssts: u32) -> DeviceInfo {
    let max_sectors = if id.lba48 {
        fis::LBA48_MAX_SECTORS
    } else {
        fis::LBA28_MAX_SECTORS
    };
    let sectors = if id.lba48 {
        id.sectors
    } else {
        id.sectors.min(fis::LBA28_LIMIT)
    };
    let flush = id.has_flushable_cache();
    let ncq = match (ncq_depth(hba, id), hba.sncq && id.ncq_depth.is_some()) {
        (0, true) => String::from("NCQ off"),
        (0, false) => String::from("NCQ no"),
        (d, _) => format!("NCQ depth {d}"),
    };
    let features = format!(
        "port {port}, SATA gen{}, {} slots, {ncq}, {} DMA, {}, {}",
        ssts_spd(ssts),
        hba.nslots,
        if hba.s64a { "64-bit" } else { "32-bit" },
        if id.lba48 { "LBA48" } else { "LBA28" },
        if flush {
            "flush"
        } else if id.write_cache_enabled {
            "write cache without flush command"
        } else {
            "no write cache"
        }
    );
    DeviceInfo {
        name: String::new(),
        sectors,
        read_only: false,
        flush,
        model: id.model.clone(),
        serial: id.serial.clone(),
        features,
        queue_depth: hba.nslots as usize,
        max_segments: MAX_SEGMENTS,
        max_bytes: u64::from(max_sectors) * SECTOR_SIZE as u64,
        copy: None,
        discard: None,
    }
}

impl<H: Hal, R: RegisterIo + Clone> BlockDevice for AhciDisk<H, R> {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn submit(&self, req: Request) -> Result<(), BlockError> {
        self.enqueue(req).map_err(|(_, e)| e)
    }

    /// A batch, queued together and issued with one PxCI write for all the slots free
    /// (QEMU's HBA, like a real one, takes every bit set in one write); a request the
    /// port refuses completes with the error.
    fn submit_many(&self, reqs: Vec<Request>) {
        let mut refused = Vec::new();
        let mut done = Vec::new();
        {
            let mut st = self.state.lock();
            for req in reqs {
                match self.acceptable(&req) {
                    Err(e) => refused.push((req, e)),
                    Ok(()) if st.dead => refused.push((req, BlockError::Io)),
                    Ok(()) => {
                        self.in_flight.fetch_add(1, Ordering::SeqCst);
                        st.queue.push_back(Queued { req, attempts: 0 });
                    }
                }
            }
            self.issue(&mut st, &mut done);
        }
        self.finish(done);
        self.drain_pending();
        for (req, e) in refused {
            req.complete(Err(e));
        }
    }

    /// Services this disk and the other disks of its HBA (they share one interrupt, so
    /// any disk's handler may be the one the kernel calls).
    fn handle_interrupt(&self) {
        self.process();
        if let Some(siblings) = self.siblings.get() {
            for s in siblings.iter().filter_map(Weak::upgrade) {
                s.process();
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    fn check_timeouts(&self, now_ns: u64) {
        AhciDisk::check_timeouts(self, now_ns);
    }
}

impl<H: Hal, R: RegisterIo + Clone> Drop for AhciDisk<H, R> {
    fn drop(&mut self) {
        let io = self.io.clone();
        io.w(PX_IE, 0);
        let mut stopped = io.stop_engine();
        if self.state.lock().slots.queued() != 0 {
            // Queued commands may go on after ST is cleared (QEMU): a reset ends them.
            stopped &= io.comreset();
        }
        let stopped = stopped && io.stop_fis();
        if !stopped {
            log::error!(
                "{}: port does not stop; its memory and requests are leaked",
                self.name
            );
        }
        let mut done = Vec::new();
        {
            // Nobody else can hold the lock: we are the last owner.
            let mut st = self.state.lock();
            self.kill(&mut st, stopped, &mut done);
        }
        self.finish(done);
    }
}
