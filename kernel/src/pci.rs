//! The PCI bus as the kernel sees it: the configuration mechanism chosen at boot (ECAM when
//! ACPI has an MCFG table, port I/O otherwise) and the devices found.

use alloc::vec::Vec;
use drivers::pci::{self, Bar, Bdf, ConfigAccess, PciFunction};
use spin::Once;

use crate::arch::acpi::Platform;
use crate::arch::pci_access::{Ecam, PortIo};

/// The configuration access mechanism in use.
pub enum Access {
    /// PCIe ECAM window (physical base recorded for the boot log).
    Ecam(Ecam, u64),
    /// Legacy 0xCF8/0xCFC.
    PortIo(PortIo),
}

impl ConfigAccess for Access {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        match self {
            Access::Ecam(e, _) => e.read32(bdf, offset),
            Access::PortIo(p) => p.read32(bdf, offset),
        }
    }
    fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
        match self {
            Access::Ecam(e, _) => e.write32(bdf, offset, value),
            Access::PortIo(p) => p.write32(bdf, offset, value),
        }
    }
}

static ACCESS: Once<Access> = Once::new();
static DEVICES: Once<Vec<PciFunction>> = Once::new();

/// Choose the access mechanism and enumerate every bus.
pub fn init(platform: Option<&Platform>) -> &'static [PciFunction] {
    let access = ACCESS.call_once(|| {
        match platform.and_then(|p| p.ecam.iter().find(|r| r.segment == 0 && r.bus_start == 0)) {
            Some(r) => Access::Ecam(Ecam::new(r.phys_base, r.bus_start, r.bus_end), r.phys_base),
            None => Access::PortIo(PortIo::new()),
        }
    });
    DEVICES.call_once(|| {
        let mut found = Vec::new();
        pci::enumerate(access, |f| found.push(*f));
        // Firmware (OVMF in particular) puts 64-bit BARs above 4 GiB, beyond the physical
        // map: map them now so drivers reach them through phys_to_virt.
        for f in &found {
            for bar in f.bars.iter().flatten() {
                if let Bar::Memory { addr, size, .. } = *bar
                    && addr != 0
                    && let Err(e) = crate::arch::paging::map_mmio(addr, size)
                {
                    log::error!("pci {}: cannot map BAR at {addr:#x}: {e:?}", f.bdf);
                }
            }
        }
        found
    })
}

/// The configuration access mechanism.
pub fn access() -> &'static Access {
    ACCESS.get().expect("pci::init has not run")
}

/// Every PCI function found at boot.
pub fn devices() -> &'static [PciFunction] {
    DEVICES.get().map(Vec::as_slice).unwrap_or(&[])
}

/// Print the device table: bus:dev.fn, vendor:device, class, BARs.
pub fn print_table() {
    let mech = match access() {
        Access::Ecam(_, base) => alloc::format!("ECAM at {base:#x}"),
        Access::PortIo(_) => "port I/O 0xCF8/0xCFC".into(),
    };
    crate::kprintln!("PCI ({mech}): {} functions", devices().len());
    crate::kprintln!("  bdf      ven:dev   class     description                      BARs");
    for f in devices() {
        crate::kprint!(
            "  {}  {:04x}:{:04x}  {:02x}{:02x}{:02x}    {:<32}",
            f.bdf,
            f.vendor,
            f.device,
            f.class,
            f.subclass,
            f.prog_if,
            pci::class_name(f.class, f.subclass, f.prog_if)
        );
        for (i, bar) in f.bars.iter().enumerate() {
            match bar {
                Some(Bar::Memory {
                    addr, size, is64, ..
                }) => {
                    crate::kprint!(
                        " {i}:mem{}@{addr:#x}/{}",
                        if *is64 { "64" } else { "32" },
                        human(*size)
                    )
                }
                Some(Bar::Io { port, size }) => crate::kprint!(" {i}:io@{port:#x}/{size}"),
                None => {}
            }
        }
        crate::kprintln!();
    }
}

fn human(size: u64) -> alloc::string::String {
    match size {
        s if s >= 1 << 30 && s % (1 << 30) == 0 => alloc::format!("{}G", s >> 30),
        s if s >= 1 << 20 && s % (1 << 20) == 0 => alloc::format!("{}M", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => alloc::format!("{}K", s >> 10),
        s => alloc::format!("{s}"),
    }
}
