//! Firmware tables, the command line, PCI and the framebuffer.

use alloc::vec::Vec;

use super::TestResult;
use crate::arch::acpi;
use crate::{cmdline, console, ensure, pci};

/// The MADT gave at least one CPU and IOAPIC; q35 (which has MCFG) uses ECAM.
pub fn acpi_describes_platform() -> TestResult {
    let p = acpi::platform().ok_or("ACPI tables not parsed")?;
    ensure!(p.cpus >= 1, "no CPUs in the MADT");
    ensure!(!p.ioapics.is_empty(), "no IOAPIC in the MADT");
    ensure!(p.local_apic_addr != 0, "no local APIC address");
    let ecam_expected = cmdline::value("machine") == Some("q35");
    let uses_ecam = matches!(pci::access(), pci::Access::Ecam(..));
    ensure!(
        !ecam_expected || uses_ecam,
        "q35 has MCFG but PCI does not use ECAM"
    );
    Ok(())
}

/// The host passes the command line through fw_cfg; the suite name arrived.
pub fn cmdline_from_fw_cfg() -> TestResult {
    ensure!(
        cmdline::value("test").is_some(),
        "command line '{}' has no test=",
        cmdline::get()
    );
    ensure!(cmdline::value("no_such_key").is_none(), "made-up key found");
    Ok(())
}

/// The storage controllers (PCI class 01) are exactly those in `pci_expect=` (vendor:device
/// pairs, one per controller QEMU was given, including the chipset's own).
pub fn pci_finds_exactly_the_storage_controllers() -> TestResult {
    let Some(expect) = cmdline::value("pci_expect") else {
        return Err("no pci_expect= on the command line".into());
    };
    let mut want: Vec<(u16, u16)> = expect
        .split(',')
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let (v, d) = s.split_once(':')?;
            Some((
                u16::from_str_radix(v, 16).ok()?,
                u16::from_str_radix(d, 16).ok()?,
            ))
        })
        .collect();
    let mut found: Vec<(u16, u16)> = pci::devices()
        .iter()
        .filter(|f| f.class == 0x01)
        .map(|f| (f.vendor, f.device))
        .collect();
    want.sort_unstable();
    found.sort_unstable();
    ensure!(
        found == want,
        "storage controllers found {found:04x?}, expected {want:04x?}"
    );
    ensure!(
        pci::devices()
            .iter()
            .any(|f| f.class == 0x06 && f.subclass == 0x00),
        "no host bridge"
    );
    Ok(())
}

/// If the firmware gave a framebuffer, the console has drawn the boot text into it.
pub fn framebuffer_console_draws() -> TestResult {
    match console::framebuffer_state() {
        Some((cols, rows, lit)) => {
            ensure!(
                cols >= 40 && rows >= 10,
                "framebuffer console is only {cols}x{rows}"
            );
            ensure!(lit > 1000, "only {lit} pixels lit after the boot banner");
            Ok(())
        }
        None => Err("no framebuffer console".into()),
    }
}
