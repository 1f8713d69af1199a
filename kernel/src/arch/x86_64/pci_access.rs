//! PCI configuration space access: PCIe ECAM (memory-mapped, from ACPI MCFG) or the
//! legacy 0xCF8/0xCFC port mechanism.

use drivers::mmio::RegisterWindow;
use drivers::pci::{Bdf, ConfigAccess};
use spin::Mutex;
use x86_64::instructions::port::Port;

use super::paging;

/// Configuration mechanism #1: address port 0xCF8, data port 0xCFC.
pub struct PortIo {
    lock: Mutex<()>,
}

impl PortIo {
    /// The port mechanism (present on every PC).
    pub const fn new() -> PortIo {
        PortIo {
            lock: Mutex::new(()),
        }
    }
}

impl Default for PortIo {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigAccess for PortIo {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        if offset >= 256 {
            return 0xFFFF_FFFF;
        }
        let _g = self.lock.lock();
        // SAFETY: 0xCF8/0xCFC are the PCI configuration ports; the lock keeps the
        // address/data pair atomic.
        unsafe {
            Port::<u32>::new(0xCF8).write(bdf.legacy_address(offset));
            Port::<u32>::new(0xCFC).read()
        }
    }

    fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
        if offset >= 256 {
            return;
        }
        let _g = self.lock.lock();
        // SAFETY: as in read32.
        unsafe {
            Port::<u32>::new(0xCF8).write(bdf.legacy_address(offset));
            Port::<u32>::new(0xCFC).write(value)
        }
    }
}

/// PCIe enhanced configuration access through an ECAM window.
pub struct Ecam {
    /// The configuration space of buses 0..=bus_end (MCFG's base is that of bus 0).
    regs: RegisterWindow,
    bus_start: u8,
    bus_end: u8,
}

impl Ecam {
    /// An ECAM window for buses `bus_start..=bus_end` at physical `phys_base` (which is the
    /// address of bus 0, as in MCFG).
    pub fn new(phys_base: u64, bus_start: u8, bus_end: u8) -> Ecam {
        // From MCFG's base (bus 0's address) to the end of `bus_end`. Only the buses
        // `bus_start..=bus_end`, which MCFG describes as ECAM (configuration registers
        // reached through the physical map, used only here), are accessed: `reg` checks.
        let size = (bus_end as usize + 1) << 20;
        let base = paging::phys_to_virt(phys_base) as usize;
        // SAFETY: device registers (just above) that no Rust reference aliases.
        let regs = unsafe { RegisterWindow::new(base, size) };
        Ecam {
            regs,
            bus_start,
            bus_end,
        }
    }

    fn reg(&self, bdf: Bdf, offset: u16) -> Option<usize> {
        if bdf.bus() < self.bus_start
            || bdf.bus() > self.bus_end
            || offset >= 4096
            || offset & 3 != 0
        {
            return None;
        }
        // MCFG's base address is that of bus 0 even when the window starts later.
        Some(bdf.ecam_offset(offset))
    }
}

impl ConfigAccess for Ecam {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        self.reg(bdf, offset)
            .and_then(|a| self.regs.read::<u32>(a))
            .unwrap_or(0xFFFF_FFFF)
    }

    fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
        if let Some(a) = self.reg(bdf, offset) {
            // The caller decides what the write means to the device.
            self.regs.write::<u32>(a, value);
        }
    }
}
