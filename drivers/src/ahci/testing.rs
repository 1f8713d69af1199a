//! Test support: a HAL over host memory with chosen "physical" addresses, and a
//! simulated AHCI HBA with ATA disks behind a [`RegisterIo`].
//!
//! Physical memory is per test thread: [`FakeHal::dma_alloc`] hands out addresses from
//! a bump pointer (set below or above 4 GiB with [`set_dma_base`]), tests place request
//! buffers at chosen addresses with [`buffer`], and any other address maps 1:1 to host
//! memory (for MSI-X tables in host buffers). The simulated HBA does its DMA through the
//! same map, synchronously, in the thread that writes its registers.

#![allow(missing_docs)]

use std::boxed::Box;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::vec;
use std::vec::Vec;

use super::fis;
use super::mmio::RegisterIo;
use super::regs::*;
use crate::hal::Hal;

const PAGE: u64 = 4096;

struct Region {
    phys: u64,
    mem: Box<[u64]>,
    dma: bool,
}

#[derive(Default)]
struct Memory {
    regions: Vec<Region>,
    next: u64,
    fail_alloc: bool,
}

thread_local! {
    static MEM: RefCell<Memory> = RefCell::new(Memory { next: 0x10_0000, ..Memory::default() });
}

/// The fake HAL (see the module documentation).
pub struct FakeHal;

impl Hal for FakeHal {
    fn phys_to_virt(phys: u64) -> *mut u8 {
        MEM.with(|m| {
            let mut m = m.borrow_mut();
            for r in m.regions.iter_mut() {
                let len = (r.mem.len() * 8) as u64;
                if phys >= r.phys && phys < r.phys + len {
                    let base = r.mem.as_mut_ptr() as *mut u8;
                    return base.wrapping_add((phys - r.phys) as usize);
                }
            }
            phys as *mut u8
        })
    }

    fn dma_alloc(pages: usize) -> Option<u64> {
        MEM.with(|m| {
            let mut m = m.borrow_mut();
            if m.fail_alloc {
                return None;
            }
            let phys = m.next;
            // Leave a gap page so overruns do not land in the next allocation.
            m.next += (pages as u64 + 1) * PAGE;
            m.regions.push(Region {
                phys,
                mem: vec![0u64; pages * 512].into_boxed_slice(),
                dma: true,
            });
            Some(phys)
        })
    }

    fn dma_free(phys: u64, pages: usize) {
        MEM.with(|m| {
            let mut m = m.borrow_mut();
            let i = m
                .regions
                .iter()
                .position(|r| r.dma && r.phys == phys)
                .unwrap_or_else(|| panic!("dma_free of unknown {phys:#x}"));
            assert_eq!(
                m.regions[i].mem.len(),
                pages * 512,
                "dma_free({phys:#x}) with the wrong size"
            );
            m.regions.swap_remove(i);
        })
    }
}

/// Forgets all memory of this thread (start of a test).
pub fn reset_memory() {
    MEM.with(|m| {
        *m.borrow_mut() = Memory {
            next: 0x10_0000,
            ..Memory::default()
        }
    });
}

/// Where the next DMA allocations go.
pub fn set_dma_base(phys: u64) {
    MEM.with(|m| m.borrow_mut().next = phys);
}

/// Make DMA allocations fail (or work again).
pub fn fail_dma_alloc(fail: bool) {
    MEM.with(|m| m.borrow_mut().fail_alloc = fail);
}

/// Pages currently allocated with `dma_alloc`.
pub fn dma_pages() -> usize {
    MEM.with(|m| {
        m.borrow()
            .regions
            .iter()
            .filter(|r| r.dma)
            .map(|r| r.mem.len() / 512)
            .sum()
    })
}

/// Places a zeroed buffer of `len` bytes at physical address `phys`.
pub fn buffer(phys: u64, len: usize) {
    MEM.with(|m| {
        m.borrow_mut().regions.push(Region {
            phys,
            mem: vec![0u64; len.div_ceil(8)].into_boxed_slice(),
            dma: false,
        })
    });
}

/// Copies `data` to physical memory at `phys`.
pub fn poke(phys: u64, data: &[u8]) {
    let p = FakeHal::phys_to_virt(phys);
    for (i, b) in data.iter().enumerate() {
        // SAFETY: test memory registered with `buffer`/`dma_alloc`; tests stay in bounds.
        unsafe { p.add(i).write(*b) };
    }
}

/// Reads `len` bytes of physical memory at `phys`.
pub fn peek(phys: u64, len: usize) -> Vec<u8> {
    let p = FakeHal::phys_to_virt(phys);
    // SAFETY: as in `poke`.
    (0..len).map(|i| unsafe { p.add(i).read() }).collect()
}

fn rd32(phys: u64) -> u32 {
    u32::from_le_bytes(peek(phys, 4).try_into().unwrap())
}

fn wr32(phys: u64, v: u32) {
    poke(phys, &v.to_le_bytes());
}

/// A synthetic IDENTIFY DEVICE block.
#[derive(Clone)]
pub struct IdentifySpec {
    pub sectors: u64,
    pub lba48: bool,
    pub model: &'static str,
    pub serial: &'static str,
    pub write_cache: bool,
    pub flush_ext: bool,
    pub logical_sector_size: u32,
    pub ncq_depth: Option<u8>,
    pub checksum: bool,
}

impl Default for IdentifySpec {
    fn default() -> Self {
        IdentifySpec {
            sectors: 64 * 2048,
            lba48: true,
            model: "QEMU HARDDISK",
            serial: "QM00005",
            write_cache: true,
            flush_ext: true,
            logical_sector_size: 512,
            ncq_depth: Some(32),
            checksum: true,
        }
    }
}

fn put_string(w: &mut [u16; 256], first: usize, last: usize, s: &str) {
    let mut bytes: Vec<u8> = s.bytes().collect();
    bytes.resize((last - first + 1) * 2, b' ');
    for (i, pair) in bytes.chunks(2).enumerate() {
        w[first + i] = (u16::from(pair[0]) << 8) | u16::from(pair[1]);
    }
}

impl IdentifySpec {
    pub fn build(&self) -> [u8; 512] {
        let mut w = [0u16; 256];
        w[0] = 0x0040;
        put_string(&mut w, 10, 19, self.serial);
        put_string(&mut w, 23, 26, "2.5+");
        put_string(&mut w, 27, 46, self.model);
        w[49] = (1 << 9) | (1 << 8);
        let lba28 = self.sectors.min((1 << 28) - 1);
        w[60] = lba28 as u16;
        w[61] = (lba28 >> 16) as u16;
        if let Some(d) = self.ncq_depth {
            w[75] = u16::from(d - 1);
            w[76] = 1 << 8;
        }
        w[80] = 0xF0;
        w[82] = 0x4000 | if self.write_cache { 1 << 5 } else { 0 };
        w[83] = 0x4000
            | (1 << 12)
            | if self.flush_ext { 1 << 13 } else { 0 }
            | if self.lba48 { 1 << 10 } else { 0 };
        w[84] = 0x4000;
        w[85] = if self.write_cache { 1 << 5 } else { 0 };
        w[86] = w[83] & 0x3FFF;
        w[87] = 0x4000;
        if self.lba48 {
            for k in 0..4 {
                w[100 + k] = (self.sectors >> (16 * k)) as u16;
            }
        }
        if self.logical_sector_size != 512 {
            w[106] = 0x4000 | (1 << 12);
            let words = self.logical_sector_size / 2;
            w[117] = words as u16;
            w[118] = (words >> 16) as u16;
        }
        let mut b = [0u8; 512];
        for (i, x) in w.iter().enumerate() {
            b[2 * i..2 * i + 2].copy_from_slice(&x.to_le_bytes());
        }
        if self.checksum {
            b[510] = 0xA5;
            let sum = b[..511].iter().fold(0u8, |a, x| a.wrapping_add(*x));
            b[511] = 0u8.wrapping_sub(sum);
        }
        b
    }
}

/// How the simulated HBA behaves on a task-file error.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ErrorModel {
    /// AHCI 1.3: the failing slot stays in PxCI, processing halts until ST is cleared,
    /// and clearing ST clears PxCI and PxSACT. A failed NCQ command sets TFES; the disk
    /// then drops all its queued commands (their PxSACT bits stay set).
    Spec,
    /// QEMU: the failing slot's PxCI bit is cleared (TFES and DHRS both set), processing
    /// goes on with the next slot, and clearing ST leaves PxCI alone. A failed NCQ
    /// command sets TFES and keeps its PxSACT bit; clearing ST clears PxSACT (QEMU 7.2.6
    /// and later), but the disk's queued commands go on running until a COMRESET.
    Qemu,
    /// As [`ErrorModel::Qemu`], but NCQ as QEMU did before 7.2.6 and 8.1: a failed queued
    /// command sets its tag's bit in PxSERR, ERR in PxTFD and SDBS, no TFES; clearing ST
    /// leaves PxSACT alone.
    OldQemu,
}

/// One command the disk executed: (slot, ATA command, LBA, sectors, failed).
pub type Executed = (u8, u8, u64, u32, bool);

pub struct FakeDisk {
    pub data: Vec<u8>,
    pub identify: [u8; 512],
    pub sig: u32,
    /// Reads and writes touching these sectors fail with ABRT.
    pub bad: BTreeSet<u64>,
    /// Commands touching these sectors never finish (until COMRESET or ST cleared).
    pub hang: BTreeSet<u64>,
    pub flushes: u32,
    pub log: Vec<Executed>,
}

impl FakeDisk {
    pub fn new(spec: &IdentifySpec) -> FakeDisk {
        let sectors = spec.sectors.min(1 << 20) as usize;
        let mut data = vec![0u8; sectors * 512];
        for (s, chunk) in data.chunks_mut(512).enumerate() {
            chunk[..8].copy_from_slice(&(s as u64).to_le_bytes());
            chunk[8] = 0xD5;
        }
        FakeDisk {
            data,
            identify: spec.build(),
            sig: SIG_ATA,
            bad: BTreeSet::new(),
            hang: BTreeSet::new(),
            flushes: 0,
            log: Vec::new(),
        }
    }
}

#[derive(Default)]
struct FakePort {
    disk: Option<FakeDisk>,
    clb: u64,
    fb: u64,
    is: u32,
    ie: u32,
    cmd: u32,
    tfd: u32,
    sig: u32,
    sctl: u32,
    serr: u32,
    ci: u32,
    fis_sent: bool,
    /// Spec model: stopped by an error until ST is cleared.
    halted: bool,
    /// A command that never finishes.
    hung: Option<u8>,
    comresets: u32,
    sact: u32,
    /// Queued commands the disk took but has not run yet (`HbaState::hold_ncq`).
    held: Vec<u8>,
    /// Spec model: the disk dropped its queued commands after an NCQ error.
    ncq_failed: bool,
}

pub struct HbaState {
    pub cap: u32,
    ghc: u32,
    pi: u32,
    pub cap2: u32,
    pub bohc: u32,
    /// BIOS releases ownership this many BOHC reads after OOS is set.
    pub bios_release_after: u32,
    ports: Vec<FakePort>,
    /// Execute commands as soon as they are issued (else on `step`).
    pub auto: bool,
    /// Queued (NCQ) commands are taken (PxCI cleared) but run only on `finish_ncq`.
    pub hold_ncq: bool,
    pub model: ErrorModel,
    pub resets: u32,
    /// The last register writes, for assertions.
    pub writes: Vec<(usize, u32)>,
}

/// The simulated HBA. Clones share the state.
#[derive(Clone)]
pub struct FakeHba(pub Arc<Mutex<HbaState>>);

impl FakeHba {
    /// An HBA with `nports` ports and `nslots` slots; `disks[p]` is behind port `p`.
    pub fn new(nports: usize, nslots: u32, s64a: bool, disks: Vec<Option<FakeDisk>>) -> FakeHba {
        let mut ports: Vec<FakePort> = (0..nports).map(|_| FakePort::default()).collect();
        for (p, d) in disks.into_iter().enumerate() {
            ports[p].disk = d;
        }
        let cap = (nports as u32 - 1)
            | ((nslots - 1) << 8)
            | (1 << 20)
            | CAP_SNCQ
            | if s64a { CAP_S64A } else { 0 };
        let mut st = HbaState {
            cap,
            ghc: GHC_AE,
            pi: if nports >= 32 {
                u32::MAX
            } else {
                (1u32 << nports) - 1
            },
            cap2: 0,
            bohc: 0,
            bios_release_after: 0,
            ports,
            auto: true,
            hold_ncq: false,
            model: ErrorModel::Qemu,
            resets: 0,
            writes: Vec::new(),
        };
        st.reset();
        FakeHba(Arc::new(Mutex::new(st)))
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut HbaState) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }

    pub fn disk<T>(&self, port: usize, f: impl FnOnce(&mut FakeDisk) -> T) -> T {
        self.with(|s| f(s.ports[port].disk.as_mut().expect("no disk on port")))
    }

    /// Runs issued commands of `port` (manual mode).
    pub fn run(&self, port: usize) {
        self.with(|s| s.process(port, usize::MAX));
    }

    /// Runs at most one issued command of `port`.
    pub fn step(&self, port: usize) {
        self.with(|s| s.process(port, 1));
    }

    /// The interrupt line: GHC.IE and a port with an enabled status bit.
    pub fn irq(&self) -> bool {
        self.with(|s| s.ghc & GHC_IE != 0 && s.host_is() != 0)
    }

    pub fn ci(&self, port: usize) -> u32 {
        self.with(|s| s.ports[port].ci)
    }

    pub fn sact(&self, port: usize) -> u32 {
        self.with(|s| s.ports[port].sact)
    }

    /// Queued commands taken but not run yet.
    pub fn held(&self, port: usize) -> Vec<u8> {
        self.with(|s| s.ports[port].held.clone())
    }

    /// Runs the held queued commands of `port`, in the order given (slots), or all of
    /// them oldest first if `order` is empty.
    pub fn finish_ncq(&self, port: usize, order: &[u8]) {
        self.with(|s| {
            let model = s.model;
            let p = &mut s.ports[port];
            let order: Vec<u8> = if order.is_empty() {
                p.held.clone()
            } else {
                order.to_vec()
            };
            for slot in order {
                let Some(i) = p.held.iter().position(|&h| h == slot) else {
                    panic!("slot {slot} is not held");
                };
                p.held.remove(i);
                run_queued(p, model, slot);
            }
        })
    }

    pub fn comresets(&self, port: usize) -> u32 {
        self.with(|s| s.ports[port].comresets)
    }

    pub fn ie(&self, port: usize) -> u32 {
        self.with(|s| s.ports[port].ie)
    }

    pub fn cmd(&self, port: usize) -> u32 {
        self.with(|s| s.ports[port].cmd)
    }

    /// Simulates a surprise removal: the link goes down.
    pub fn unplug(&self, port: usize) {
        self.with(|s| {
            let p = &mut s.ports[port];
            p.disk = None;
            p.is |= IS_PRCS | IS_PCS;
            p.serr |= (1 << 16) | (1 << 26);
        })
    }
}

impl HbaState {
    fn reset(&mut self) {
        self.resets += 1;
        self.ghc = GHC_AE;
        for p in self.ports.iter_mut() {
            p.is = 0;
            p.ie = 0;
            p.cmd = CMD_SUD | CMD_POD;
            p.sctl = 0;
            p.serr = 0;
            p.ci = 0;
            p.tfd = 0x7F;
            p.sig = u32::MAX;
            p.fis_sent = false;
            p.halted = false;
            p.hung = None;
            p.sact = 0;
            p.held.clear();
            p.ncq_failed = false;
        }
    }

    fn host_is(&self) -> u32 {
        self.ports.iter().enumerate().fold(
            0,
            |acc, (i, p)| if p.is & p.ie != 0 { acc | 1 << i } else { acc },
        )
    }

    fn port_read(&mut self, port: usize, reg: usize) -> u32 {
        let p = &self.ports[port];
        match reg {
            PX_CLB => p.clb as u32,
            PX_CLBU => (p.clb >> 32) as u32,
            PX_FB => p.fb as u32,
            PX_FBU => (p.fb >> 32) as u32,
            PX_IS => p.is,
            PX_IE => p.ie,
            PX_CMD => {
                let mut c = p.cmd;
                if c & CMD_ST != 0 {
                    c |= CMD_CR;
                }
                if c & CMD_FRE != 0 {
                    c |= CMD_FR;
                }
                c
            }
            PX_TFD => p.tfd,
            PX_SIG => p.sig,
            PX_SSTS => {
                if p.disk.is_some() {
                    0x113
                } else {
                    0
                }
            }
            PX_SCTL => p.sctl,
            PX_SERR => p.serr,
            PX_CI => p.ci,
            PX_SACT => p.sact,
            _ => 0,
        }
    }

    fn port_write(&mut self, port: usize, reg: usize, v: u32) {
        match reg {
            PX_CLB => {
                self.ports[port].clb = (self.ports[port].clb & !0xFFFF_FFFF) | u64::from(v & !0x3FF)
            }
            PX_CLBU => {
                self.ports[port].clb = (self.ports[port].clb & 0xFFFF_FFFF) | (u64::from(v) << 32)
            }
            PX_FB => {
                self.ports[port].fb = (self.ports[port].fb & !0xFFFF_FFFF) | u64::from(v & !0xFF)
            }
            PX_FBU => {
                self.ports[port].fb = (self.ports[port].fb & 0xFFFF_FFFF) | (u64::from(v) << 32)
            }
            PX_IS => self.ports[port].is &= !v,
            PX_IE => self.ports[port].ie = v & IE_MASK,
            PX_CMD => {
                let p = &mut self.ports[port];
                let old = p.cmd;
                p.cmd = v & (CMD_ST | CMD_SUD | CMD_POD | CMD_FRE);
                if p.cmd & CMD_FRE != 0 && !p.fis_sent && p.disk.is_some() {
                    let sig = p.disk.as_ref().map_or(u32::MAX, |d| d.sig);
                    p.fis_sent = true;
                    p.sig = sig;
                    p.tfd = 0x50;
                    p.is |= IS_DHRS;
                }
                if old & CMD_ST != 0 && p.cmd & CMD_ST == 0 {
                    p.halted = false;
                    match self.model {
                        ErrorModel::Spec => {
                            p.ci = 0;
                            p.hung = None;
                            p.sact = 0;
                            p.held.clear();
                        }
                        ErrorModel::Qemu => p.sact = 0,
                        ErrorModel::OldQemu => {}
                    }
                }
                if old & CMD_ST == 0 && p.cmd & CMD_ST != 0 && self.auto {
                    self.process(port, usize::MAX);
                }
            }
            PX_SCTL => {
                let p = &mut self.ports[port];
                let old = p.sctl;
                p.sctl = v;
                if old & 0xF == 1 && v & 0xF == 0 {
                    p.comresets += 1;
                    p.hung = None;
                    p.halted = false;
                    // The disk drops its queued commands (QEMU cancels them).
                    p.sact = 0;
                    p.held.clear();
                    p.ncq_failed = false;
                    p.tfd = 0x7F;
                    p.fis_sent = false;
                    if p.disk.is_some() && p.cmd & CMD_FRE != 0 {
                        p.fis_sent = true;
                        p.sig = p.disk.as_ref().map_or(u32::MAX, |d| d.sig);
                        p.tfd = 0x50;
                        p.is |= IS_DHRS;
                    }
                }
            }
            PX_SERR => self.ports[port].serr &= !v,
            PX_SACT => self.ports[port].sact |= v,
            PX_CI => {
                let p = &mut self.ports[port];
                if p.cmd & CMD_ST != 0 {
                    p.ci |= v;
                }
                if self.auto {
                    self.process(port, usize::MAX);
                }
            }
            _ => {}
        }
    }

    /// Executes up to `max` commands from PxCI, lowest slot first (like QEMU).
    fn process(&mut self, port: usize, max: usize) {
        let model = self.model;
        let p = &mut self.ports[port];
        let mut n = 0;
        while n < max && p.cmd & CMD_ST != 0 && !p.halted && p.hung.is_none() {
            let pending = p.ci;
            if pending == 0 {
                break;
            }
            let slot = pending.trailing_zeros() as u8;
            n += 1;
            if is_queued(p, slot) {
                // The disk takes the command: PxCI clears, PxSACT stays until it is done.
                assert_ne!(p.sact & (1 << slot), 0, "PxSACT is set before PxCI");
                p.ci &= !(1 << slot);
                if self.hold_ncq {
                    p.held.push(slot);
                } else {
                    run_queued(p, model, slot);
                }
                continue;
            }
            match execute(p, slot) {
                Outcome::Done => {
                    p.ci &= !(1 << slot);
                    p.tfd = 0x50;
                    p.is |= IS_DHRS;
                }
                Outcome::Hang => {
                    p.hung = Some(slot);
                    p.tfd = 0xD0;
                }
                Outcome::Error => {
                    p.tfd = (0x04 << 8) | 0x51;
                    p.is |= IS_TFES;
                    match model {
                        ErrorModel::Spec => {
                            p.halted = true;
                            p.cmd = (p.cmd & !(0x1F << CMD_CCS_SHIFT))
                                | (u32::from(slot) << CMD_CCS_SHIFT);
                        }
                        ErrorModel::Qemu | ErrorModel::OldQemu => {
                            p.ci &= !(1 << slot);
                            p.is |= IS_DHRS;
                        }
                    }
                }
            }
        }
    }
}

enum Outcome {
    Done,
    Error,
    Hang,
}

/// Whether the command in `slot` is an NCQ command.
fn is_queued(p: &FakePort, slot: u8) -> bool {
    let header = p.clb + u64::from(slot) * 32;
    let table = u64::from(rd32(header + 8)) | (u64::from(rd32(header + 12)) << 32);
    matches!(
        peek(table + 2, 1)[0],
        fis::ATA_READ_FPDMA_QUEUED | fis::ATA_WRITE_FPDMA_QUEUED
    )
}

/// The disk runs the queued command in `slot` and reports it with a Set Device Bits FIS.
fn run_queued(p: &mut FakePort, model: ErrorModel, slot: u8) {
    if p.ncq_failed {
        // Dropped after an earlier NCQ error: it never finishes.
        return;
    }
    match execute(p, slot) {
        Outcome::Done => {
            p.sact &= !(1 << slot);
            p.tfd = 0x50;
            p.is |= IS_SDBS;
        }
        Outcome::Hang => {}
        Outcome::Error => {
            p.tfd = (0x04 << 8) | 0x51;
            match model {
                ErrorModel::Spec => {
                    p.is |= IS_TFES;
                    p.ncq_failed = true;
                }
                ErrorModel::Qemu => p.is |= IS_TFES,
                ErrorModel::OldQemu => {
                    p.is |= IS_SDBS;
                    p.serr |= 1 << slot;
                }
            }
        }
    }
}

/// Runs the command in `slot` against the port's disk.
fn execute(p: &mut FakePort, slot: u8) -> Outcome {
    let header = p.clb + u64::from(slot) * 32;
    let dw0 = rd32(header);
    let table = u64::from(rd32(header + 8)) | (u64::from(rd32(header + 12)) << 32);
    let prdtl = (dw0 >> 16) as usize;
    let write_bit = dw0 & (1 << 6) != 0;
    assert_eq!(dw0 & 0x1F, 5, "CFL");
    assert_eq!(table % 128, 0, "command table alignment");
    let f = peek(table, 20);
    assert_eq!(f[0], fis::FIS_TYPE_REG_H2D);
    assert_eq!(f[1], 0x80, "C bit");
    let lba = u64::from_le_bytes([f[4], f[5], f[6], f[8], f[9], f[10], 0, 0]);
    let count = u32::from(f[12]) | (u32::from(f[13]) << 8);
    let mut prds = Vec::new();
    for i in 0..prdtl {
        let e = table + 0x80 + 16 * i as u64;
        let addr = u64::from(rd32(e)) | (u64::from(rd32(e + 4)) << 32);
        let dbc = rd32(e + 12);
        assert_eq!(addr % 2, 0, "PRD address alignment");
        assert_eq!(dbc & 1, 1, "PRD byte count must be even");
        prds.push((addr, (dbc & 0x3F_FFFF) + 1));
    }
    let total: u64 = prds.iter().map(|&(_, l)| u64::from(l)).sum();
    let Some(disk) = p.disk.as_mut() else {
        return Outcome::Error;
    };
    let command = f[2];
    let mut moved = 0u64;
    let outcome = match command {
        fis::ATA_IDENTIFY => {
            let id = disk.identify;
            let mut off = 0usize;
            for &(addr, len) in &prds {
                let n = (len as usize).min(512 - off);
                poke(addr, &id[off..off + n]);
                off += n;
            }
            moved = off as u64;
            disk.log.push((slot, command, 0, 0, false));
            Outcome::Done
        }
        fis::ATA_READ_DMA_EXT
        | fis::ATA_WRITE_DMA_EXT
        | fis::ATA_READ_DMA
        | fis::ATA_WRITE_DMA
        | fis::ATA_READ_FPDMA_QUEUED
        | fis::ATA_WRITE_FPDMA_QUEUED => {
            let ext = matches!(command, fis::ATA_READ_DMA_EXT | fis::ATA_WRITE_DMA_EXT);
            let queued = matches!(
                command,
                fis::ATA_READ_FPDMA_QUEUED | fis::ATA_WRITE_FPDMA_QUEUED
            );
            let write = matches!(
                command,
                fis::ATA_WRITE_DMA_EXT | fis::ATA_WRITE_DMA | fis::ATA_WRITE_FPDMA_QUEUED
            );
            assert_eq!(write, write_bit, "W bit must match the command");
            let (lba, sectors) = if queued {
                assert_eq!(f[7] & 0x40, 0x40, "LBA bit");
                assert_eq!(f[12] >> 3, slot, "the NCQ tag is the slot");
                let n = u32::from(f[3]) | (u32::from(f[11]) << 8);
                (lba, if n == 0 { 65536 } else { n })
            } else if ext {
                (lba, if count == 0 { 65536 } else { count })
            } else {
                assert_eq!(f[7] & 0x40, 0x40);
                (
                    lba & 0xFF_FFFF | (u64::from(f[7] & 0xF) << 24),
                    if count & 0xFF == 0 { 256 } else { count & 0xFF },
                )
            };
            let bytes = u64::from(sectors) * 512;
            assert_eq!(total, bytes, "PRDT covers the transfer");
            let range = lba..lba + u64::from(sectors);
            if disk.hang.range(range.clone()).next().is_some() {
                disk.log.push((slot, command, lba, sectors, false));
                return Outcome::Hang;
            }
            if disk.bad.range(range.clone()).next().is_some()
                || range.end as usize * 512 > disk.data.len()
            {
                disk.log.push((slot, command, lba, sectors, true));
                return Outcome::Error;
            }
            let mut off = lba as usize * 512;
            for &(addr, len) in &prds {
                let len = len as usize;
                if write {
                    let d = peek(addr, len);
                    disk.data[off..off + len].copy_from_slice(&d);
                } else {
                    poke(addr, &disk.data[off..off + len]);
                }
                off += len;
            }
            moved = bytes;
            disk.log.push((slot, command, lba, sectors, false));
            Outcome::Done
        }
        fis::ATA_FLUSH_CACHE_EXT | fis::ATA_FLUSH_CACHE => {
            disk.flushes += 1;
            disk.log.push((slot, command, 0, 0, false));
            Outcome::Done
        }
        fis::ATA_CHECK_POWER_MODE => {
            disk.log.push((slot, command, 0, 0, false));
            Outcome::Done
        }
        _ => {
            disk.log.push((slot, command, lba, count, true));
            Outcome::Error
        }
    };
    wr32(header + 4, moved as u32);
    outcome
}

impl RegisterIo for FakeHba {
    fn read(&self, offset: usize) -> u32 {
        let mut s = self.0.lock().unwrap();
        if offset >= PORT_BASE {
            let port = (offset - PORT_BASE) / PORT_STRIDE;
            if port >= s.ports.len() {
                return 0;
            }
            return s.port_read(port, (offset - PORT_BASE) % PORT_STRIDE);
        }
        match offset {
            CAP => s.cap,
            GHC => s.ghc,
            IS => s.host_is(),
            PI => s.pi,
            VS => 0x0001_0000,
            CAP2 => s.cap2,
            BOHC => {
                if s.bohc & BOHC_OOS != 0 && s.bohc & BOHC_BOS != 0 {
                    if s.bios_release_after == 0 {
                        s.bohc &= !BOHC_BOS;
                    } else {
                        s.bios_release_after -= 1;
                    }
                }
                s.bohc
            }
            _ => 0,
        }
    }

    fn write(&self, offset: usize, value: u32) {
        let mut s = self.0.lock().unwrap();
        s.writes.push((offset, value));
        if offset >= PORT_BASE {
            let port = (offset - PORT_BASE) / PORT_STRIDE;
            if port < s.ports.len() {
                s.port_write(port, (offset - PORT_BASE) % PORT_STRIDE, value);
            }
            return;
        }
        match offset {
            GHC => {
                if value & GHC_HR != 0 {
                    s.reset();
                } else {
                    s.ghc = (value & (GHC_IE | GHC_AE)) | GHC_AE;
                }
            }
            BOHC => s.bohc = value & 0x1F,
            _ => {}
        }
    }
}
