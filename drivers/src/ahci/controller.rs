//! The HBA: probe, BIOS/OS handoff, reset, port discovery, interrupt dispatch.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use super::mmio::{MmioRegs, RegisterIo};
use super::port::{AhciDisk, HbaInfo, WAIT_1S, WAIT_10MS, spin_until};
use super::regs::*;
use super::slots::bits;
use crate::hal::Hal;
use crate::pci::{self, Bar, ConfigAccess, PciFunction};

/// BAR holding the AHCI registers (ABAR).
pub const ABAR_INDEX: usize = 5;

/// Why an AHCI controller could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AhciError {
    /// The function is not an AHCI controller (class 01/06/01).
    NotAhci,
    /// BAR5 (ABAR) is missing, not a memory BAR, or unassigned.
    NoAbar,
    /// The registers read all-ones: the device is gone or not decoding.
    Gone,
    /// GHC.HR did not clear after an HBA reset.
    ResetTimeout,
}

impl fmt::Display for AhciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AhciError::NotAhci => "not an AHCI controller",
            AhciError::NoAbar => "no usable ABAR (BAR5)",
            AhciError::Gone => "registers read all-ones",
            AhciError::ResetTimeout => "HBA reset did not complete",
        })
    }
}

/// An AHCI host bus adapter and the ATA disks found on its ports.
pub struct AhciController<H: Hal, R: RegisterIo + Clone = MmioRegs> {
    regs: R,
    name: String,
    cap: u32,
    version: u32,
    interrupts: bool,
    /// Ports with a disk (bit per port).
    managed: u32,
    disks: Vec<Arc<AhciDisk<H, R>>>,
}

impl<H: Hal> AhciController<H, MmioRegs> {
    /// Takes over the AHCI function `func`: enables memory decoding and bus mastering,
    /// maps ABAR (BAR5) through `H::phys_to_virt`, programs MSI (or MSI-X entry 0) with
    /// `irq` = (message address, message data) if given, then resets and sets up the HBA
    /// (see [`AhciController::init`]).
    ///
    /// Without `irq`, or if the function has neither MSI nor MSI-X, interrupts stay off
    /// (GHC.IE clear, INTx never used) and the kernel must poll
    /// [`AhciController::handle_interrupt`]; [`AhciController::uses_interrupts`] says
    /// which. The interrupt handler may run as soon as this returns: until it knows the
    /// controller it can ignore the message (no request is outstanding yet). `ncq`: use
    /// native command queuing where HBA and disk offer it.
    pub fn probe<A: ConfigAccess + ?Sized>(
        access: &A,
        func: &PciFunction,
        irq: Option<(u64, u32)>,
        ncq: bool,
    ) -> Result<Arc<AhciController<H, MmioRegs>>, AhciError> {
        let name = func.bdf.to_string();
        if !func.is_ahci() {
            log::warn!(
                "ahci {name}: class {:02x}/{:02x}/{:02x} is not AHCI",
                func.class,
                func.subclass,
                func.prog_if
            );
            return Err(AhciError::NotAhci);
        }
        let bar = match func.bars[ABAR_INDEX] {
            Some(bar @ Bar::Memory { .. }) => bar,
            other => {
                log::warn!("ahci {name}: BAR5 is {other:?}; not usable");
                return Err(AhciError::NoAbar);
            }
        };
        let config = func.config(access);
        config.enable_memory_space();
        config.enable_bus_master();
        let regs = MmioRegs::from_bar::<H>(bar).ok_or(AhciError::NoAbar)?;
        let interrupts = match irq {
            Some((address, data)) => {
                let ok = pci::msi::enable_msi(access, func.bdf, address, data)
                    || pci::msi::enable_msix::<H>(access, func, 0, address, data);
                if !ok {
                    log::warn!("ahci {name}: neither MSI nor MSI-X could be programmed; polling");
                }
                ok
            }
            None => false,
        };
        Self::init(regs, name, interrupts, ncq)
    }
}

impl<H: Hal, R: RegisterIo + Clone> AhciController<H, R> {
    /// Sets up an HBA whose registers are reached through `regs`: BIOS/OS handoff (if
    /// CAP2.BOH), HBA reset (GHC.HR) and AHCI mode (GHC.AE), then each implemented port
    /// with a device present gets its memory, FIS receive and command engine, and its
    /// disk is identified. `interrupts` sets GHC.IE at the end (the message must already
    /// be routed). `name` is used in log lines. Reads and writes are NCQ commands if `ncq`
    /// and both the HBA and the disk support it.
    ///
    /// Ports without a usable ATA disk are logged and skipped; the controller is returned
    /// even with no disks.
    pub fn init(
        regs: R,
        name: String,
        interrupts: bool,
        ncq: bool,
    ) -> Result<Arc<AhciController<H, R>>, AhciError> {
        let tag = format!("ahci {name}");
        let cap0 = regs.read(CAP);
        if cap0 == u32::MAX {
            log::error!("{tag}: registers read all-ones");
            return Err(AhciError::Gone);
        }
        let pi0 = regs.read(PI);
        if regs.read(CAP2) & CAP2_BOH != 0 {
            bios_handoff(&regs, &tag);
        }

        // Reset. AE must be set before HR on some HBAs; it is reset by HR, so set it again.
        regs.write(GHC, regs.read(GHC) | GHC_AE);
        regs.write(GHC, regs.read(GHC) | GHC_AE | GHC_HR);
        if !spin_until(WAIT_1S, || regs.read(GHC) & GHC_HR == 0) {
            log::error!(
                "{tag}: HBA reset did not complete (GHC {:#x})",
                regs.read(GHC)
            );
            return Err(AhciError::ResetTimeout);
        }
        regs.write(GHC, (regs.read(GHC) & !GHC_IE) | GHC_AE);
        if regs.read(PI) == 0 && pi0 != 0 {
            // PI is write-once "HwInit" on some chipsets and firmware set it.
            log::info!("{tag}: PI lost in reset; restoring {pi0:#x}");
            regs.write(PI, pi0);
        }

        let cap = regs.read(CAP);
        let pi = regs.read(PI);
        let version = regs.read(VS);
        let hba = HbaInfo {
            name: name.clone(),
            nslots: ((cap >> CAP_NCS_SHIFT) & 0x1F) + 1,
            s64a: cap & CAP_S64A != 0,
            sncq: cap & CAP_SNCQ != 0,
            ncq,
        };
        log::info!(
            "{tag}: AHCI {}, {} ports (implemented {pi:#x}), {} slots, {}-bit DMA, NCQ {}, gen{} speed",
            version_string(version),
            (cap & CAP_NP_MASK) + 1,
            hba.nslots,
            if hba.s64a { 64 } else { 32 },
            match (hba.sncq, ncq) {
                (true, true) => "supported",
                (true, false) => "supported, turned off",
                (false, _) => "no",
            },
            (cap >> CAP_ISS_SHIFT) & 0xF
        );

        // Quiet every implemented port, spin devices up, wait for the links.
        let ports: Vec<usize> = bits(pi)
            .map(usize::from)
            .filter(|&p| p < MAX_PORTS)
            .collect();
        for &p in &ports {
            let base = |reg| port_reg(p, reg);
            regs.write(base(PX_IE), 0);
            let mut cmd = regs.read(base(PX_CMD)) & !CMD_ICC_MASK;
            if cmd & (CMD_ST | CMD_FRE) != 0 {
                // HR should have stopped them; be sure.
                cmd &= !(CMD_ST | CMD_FRE);
                regs.write(base(PX_CMD), cmd);
            }
            if cap & CAP_SSS != 0 && cmd & CMD_SUD == 0 {
                let pod = if cmd & CMD_CPD != 0 { CMD_POD } else { 0 };
                regs.write(base(PX_CMD), cmd | CMD_SUD | pod);
            }
        }
        let det = |p: usize| ssts_det(regs.read(port_reg(p, PX_SSTS)));
        // Present links come up within milliseconds; a device seen but without
        // communication (DET=1) gets up to a second.
        spin_until(WAIT_10MS, || {
            ports.iter().all(|&p| det(p) == SSTS_DET_PRESENT)
        });
        spin_until(WAIT_1S, || ports.iter().all(|&p| det(p) != 1));

        let mut disks = Vec::new();
        let mut managed = 0;
        for &p in &ports {
            match det(p) {
                SSTS_DET_PRESENT => {}
                0 => {
                    log::debug!("{tag} port {p}: no device");
                    continue;
                }
                d => {
                    log::info!("{tag} port {p}: link not established (DET {d}); skipped");
                    continue;
                }
            }
            if let Some(disk) = AhciDisk::<H, R>::bring_up(regs.clone(), p, &hba) {
                managed |= 1 << p;
                disks.push(Arc::new(disk));
            }
        }
        for d in &disks {
            let others = disks
                .iter()
                .filter(|o| !Arc::ptr_eq(o, d))
                .map(Arc::downgrade)
                .collect();
            d.set_siblings(others);
        }

        regs.write(IS, u32::MAX);
        if interrupts {
            regs.write(GHC, regs.read(GHC) | GHC_IE | GHC_AE);
        }
        log::info!(
            "{tag}: {} disk(s), {}",
            disks.len(),
            if interrupts {
                "interrupts by MSI"
            } else {
                "polled (no interrupts)"
            }
        );
        Ok(Arc::new(AhciController {
            regs,
            name,
            cap,
            version,
            interrupts,
            managed,
            disks,
        }))
    }

    /// The disks found, in port order.
    pub fn disks(&self) -> Vec<Arc<AhciDisk<H, R>>> {
        self.disks.clone()
    }

    /// The PCI address (or the name given to [`AhciController::init`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether GHC.IE is set and MSI/MSI-X routes the interrupt; if not, poll.
    pub fn uses_interrupts(&self) -> bool {
        self.interrupts
    }

    /// The CAP register as read after reset.
    pub fn capabilities(&self) -> u32 {
        self.cap
    }

    /// The AHCI version register.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The interrupt handler, also the poll routine: services every disk (reaps finished
    /// commands, recovers from errors, issues queued requests; completions run from
    /// here) and acknowledges the HBA. Safe to call at any time, from any context that
    /// may run completion callbacks. Returns whether the HBA had an interrupt pending.
    pub fn handle_interrupt(&self) -> bool {
        let is = self.regs.read(IS);
        if is == u32::MAX {
            return false;
        }
        for disk in &self.disks {
            disk.process();
        }
        let foreign = is & !self.managed;
        if foreign != 0 {
            self.regs.write(IS, foreign);
        }
        is != 0
    }

    /// Same as [`AhciController::handle_interrupt`], for callers that poll.
    pub fn poll(&self) {
        self.handle_interrupt();
    }

    /// Runs [`AhciDisk::check_timeouts`] on every disk.
    pub fn check_timeouts(&self, now_ns: u64) {
        for disk in &self.disks {
            disk.check_timeouts(now_ns);
        }
    }
}

/// `1.3.1` from the VS register.
fn version_string(vs: u32) -> String {
    let (major, minor, sub) = (vs >> 16, (vs >> 8) & 0xFF, vs & 0xFF);
    if sub == 0 {
        format!("{major:x}.{minor:x}")
    } else {
        format!("{major:x}.{minor:x}.{sub:x}")
    }
}

/// AHCI 1.3.1 section 10.6.3: ask the BIOS to hand over the HBA.
fn bios_handoff<R: RegisterIo>(regs: &R, tag: &str) {
    let bohc = regs.read(BOHC);
    regs.write(BOHC, bohc | BOHC_OOS);
    if bohc & BOHC_BOS == 0 {
        return;
    }
    // The BIOS has 25 ms to release or set BB; then up to 2 s to finish.
    let released = spin_until(WAIT_10MS * 3, || regs.read(BOHC) & BOHC_BOS == 0)
        || (regs.read(BOHC) & BOHC_BB != 0
            && spin_until(WAIT_1S * 2, || regs.read(BOHC) & BOHC_BOS == 0));
    if released {
        log::info!("{tag}: BIOS handed the HBA over");
    } else {
        log::warn!(
            "{tag}: BIOS did not release the HBA (BOHC {:#x}); taking it anyway",
            regs.read(BOHC)
        );
    }
}
