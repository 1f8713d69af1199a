//! Programming message-signalled interrupts: MSI (capability `0x05`) and MSI-X
//! (capability `0x11`), one vector each.
//!
//! The kernel picks the message (address and data, e.g. `0xFEE0_0000 | apic_id << 12`
//! and the IDT vector); these helpers write it into the function and switch the
//! function from INTx to the message. The MSI-X table lives in a memory BAR, which is
//! reached through [`Hal::phys_to_virt`] (the volatile accesses are in
//! [`crate::ahci::mmio`], as this module forbids `unsafe`).

use super::{Bar, Bdf, ConfigAccess, ConfigSpace, PciFunction};
use crate::ahci::mmio::{MmioRegs, RegisterIo};
use crate::hal::Hal;

/// MSI: offset of the message control register in the capability.
const MSI_CONTROL: u16 = 0x02;
/// MSI control: enable.
const MSI_ENABLE: u16 = 1 << 0;
/// MSI control: multiple message enable (bits 4..7); 0 = one vector.
const MSI_MME_MASK: u16 = 0b111 << 4;
/// MSI control: 64-bit address capable.
const MSI_64BIT: u16 = 1 << 7;
/// MSI control: per-vector masking capable.
const MSI_PER_VECTOR_MASK: u16 = 1 << 8;
/// MSI: message address (low dword).
const MSI_ADDRESS: u16 = 0x04;

/// MSI-X: offset of the message control register in the capability.
const MSIX_CONTROL: u16 = 0x02;
/// MSI-X control: table size minus one (bits 0..11).
const MSIX_TABLE_SIZE_MASK: u16 = 0x7FF;
/// MSI-X control: function mask (all vectors masked).
const MSIX_FUNCTION_MASK: u16 = 1 << 14;
/// MSI-X control: enable.
const MSIX_ENABLE: u16 = 1 << 15;
/// MSI-X: table offset and BAR indicator.
const MSIX_TABLE: u16 = 0x04;
/// Size of one MSI-X table entry.
const MSIX_ENTRY_SIZE: u64 = 16;
/// MSI-X entry: vector control, bit 0 masks the vector.
const MSIX_VECTOR_CONTROL: usize = 12;

/// Programs the function's MSI capability with one vector: `address` (64-bit if the
/// function can take it) and `data` (16 bits), unmasks vector 0 if per-vector masking
/// exists, sets MSI enable, turns MSI-X off if it was on, disables INTx and enables bus
/// mastering (messages are memory writes).
///
/// Returns false, changing nothing, if there is no MSI capability, `address` is not
/// dword-aligned, is above 4 GiB for a 32-bit-only function, or `data` does not fit in
/// 16 bits.
pub fn enable_msi(
    access: &(impl ConfigAccess + ?Sized),
    bdf: Bdf,
    address: u64,
    data: u32,
) -> bool {
    let space = ConfigSpace::new(access, bdf);
    let Some(cap) = space.msi() else {
        return false;
    };
    let control = access.read16(bdf, cap + MSI_CONTROL);
    if control == 0xFFFF {
        return false;
    }
    let is64 = control & MSI_64BIT != 0;
    if address & 0x3 != 0 || (!is64 && address > u64::from(u32::MAX)) || data > 0xFFFF {
        log::warn!("pci {bdf}: MSI message {address:#x}/{data:#x} not usable (64-bit: {is64})");
        return false;
    }
    disable_msix(access, bdf);

    // Off while the message changes, then on with a single vector.
    access.write16(bdf, cap + MSI_CONTROL, control & !MSI_ENABLE);
    access.write32(bdf, cap + MSI_ADDRESS, address as u32);
    let (data_reg, mask_reg) = if is64 {
        access.write32(bdf, cap + MSI_ADDRESS + 4, (address >> 32) as u32);
        (cap + 0x0C, cap + 0x10)
    } else {
        (cap + 0x08, cap + 0x0C)
    };
    access.write16(bdf, data_reg, data as u16);
    if control & MSI_PER_VECTOR_MASK != 0 {
        let mask = access.read32(bdf, mask_reg);
        access.write32(bdf, mask_reg, mask & !1);
    }
    access.write16(
        bdf,
        cap + MSI_CONTROL,
        (control & !MSI_MME_MASK) | MSI_ENABLE,
    );
    space.disable_intx();
    space.enable_bus_master();
    let ok = access.read16(bdf, cap + MSI_CONTROL) & MSI_ENABLE != 0;
    if ok {
        log::debug!("pci {bdf}: MSI {address:#x}/{data:#x} enabled");
    }
    ok
}

/// Clears MSI enable, if the function has MSI.
pub fn disable_msi(access: &(impl ConfigAccess + ?Sized), bdf: Bdf) {
    if let Some(cap) = ConfigSpace::new(access, bdf).msi() {
        let control = access.read16(bdf, cap + MSI_CONTROL);
        if control != 0xFFFF && control & MSI_ENABLE != 0 {
            access.write16(bdf, cap + MSI_CONTROL, control & !MSI_ENABLE);
        }
    }
}

/// Clears MSI-X enable, if the function has MSI-X.
pub fn disable_msix(access: &(impl ConfigAccess + ?Sized), bdf: Bdf) {
    if let Some(cap) = ConfigSpace::new(access, bdf).msix() {
        let control = access.read16(bdf, cap + MSIX_CONTROL);
        if control != 0xFFFF && control & MSIX_ENABLE != 0 {
            access.write16(bdf, cap + MSIX_CONTROL, control & !MSIX_ENABLE);
        }
    }
}

/// Number of MSI-X table entries, or `None` without an MSI-X capability.
pub fn msix_table_size(access: &(impl ConfigAccess + ?Sized), bdf: Bdf) -> Option<u16> {
    let cap = ConfigSpace::new(access, bdf).msix()?;
    let control = access.read16(bdf, cap + MSIX_CONTROL);
    if control == 0xFFFF {
        return None;
    }
    Some((control & MSIX_TABLE_SIZE_MASK) + 1)
}

/// Where MSI-X table entry `entry` of `func` is: the BAR and the byte offset in it.
fn msix_entry(
    access: &(impl ConfigAccess + ?Sized),
    func: &PciFunction,
    cap: u16,
    entry: u16,
) -> Option<(Bar, usize)> {
    let bdf = func.bdf;
    let size = msix_table_size(access, bdf)?;
    if entry >= size {
        log::warn!("pci {bdf}: MSI-X entry {entry} beyond the table ({size} entries)");
        return None;
    }
    let table = access.read32(bdf, cap + MSIX_TABLE);
    let bir = (table & 0x7) as usize;
    let offset = u64::from(table & !0x7) + u64::from(entry) * MSIX_ENTRY_SIZE;
    match func.bars.get(bir).copied().flatten() {
        Some(bar @ Bar::Memory { size, addr, .. })
            if addr != 0 && offset + MSIX_ENTRY_SIZE <= size =>
        {
            Some((bar, usize::try_from(offset).ok()?))
        }
        other => {
            log::warn!(
                "pci {bdf}: MSI-X table in BAR{bir} ({other:?}) at {offset:#x} is not reachable"
            );
            None
        }
    }
}

/// Programs MSI-X table entry `entry` of `func` with `address` and `data`, unmasks it,
/// and turns MSI-X on (function mask off), with MSI off, INTx disabled and memory
/// decoding and bus mastering enabled. The table is written through the BAR named by the
/// capability, mapped with `H::phys_to_virt`.
///
/// Returns false, changing nothing, if there is no MSI-X capability, `entry` is beyond
/// the table, the table's BAR is not a usable memory BAR, or `address` is not
/// dword-aligned.
pub fn enable_msix<H: Hal>(
    access: &(impl ConfigAccess + ?Sized),
    func: &PciFunction,
    entry: u16,
    address: u64,
    data: u32,
) -> bool {
    let bdf = func.bdf;
    let space = ConfigSpace::new(access, bdf);
    let Some(cap) = space.msix() else {
        return false;
    };
    if address & 0x3 != 0 {
        log::warn!("pci {bdf}: MSI-X address {address:#x} not dword-aligned");
        return false;
    }
    let Some((bar, offset)) = msix_entry(access, func, cap, entry) else {
        return false;
    };
    let Some(table) = MmioRegs::from_bar::<H>(bar) else {
        return false;
    };
    disable_msi(access, bdf);
    space.enable_memory_space();
    space.enable_bus_master();

    // Enabled but with every vector masked while the entry is written.
    let control = access.read16(bdf, cap + MSIX_CONTROL);
    access.write16(
        bdf,
        cap + MSIX_CONTROL,
        control | MSIX_ENABLE | MSIX_FUNCTION_MASK,
    );
    table.write(offset, address as u32);
    table.write(offset + 4, (address >> 32) as u32);
    table.write(offset + 8, data);
    let vector_control = table.read(offset + MSIX_VECTOR_CONTROL);
    table.write(offset + MSIX_VECTOR_CONTROL, vector_control & !1);
    access.write16(
        bdf,
        cap + MSIX_CONTROL,
        (control | MSIX_ENABLE) & !MSIX_FUNCTION_MASK,
    );
    space.disable_intx();
    let ok = access.read16(bdf, cap + MSIX_CONTROL) & MSIX_ENABLE != 0;
    if ok {
        log::debug!("pci {bdf}: MSI-X entry {entry} {address:#x}/{data:#x} enabled");
    }
    ok
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::vec::Vec;

    use super::*;
    use crate::ahci::testing::FakeHal;
    use crate::pci::{CAP_ID_MSI, CAP_ID_MSIX};

    fn bdf() -> Bdf {
        Bdf::new(0, 4, 0).unwrap()
    }

    /// One function's configuration space in a map (dword-granular), recording writes.
    #[derive(Default)]
    struct Fake {
        regs: RefCell<HashMap<u16, u32>>,
        writes: RefCell<Vec<(u16, u32)>>,
    }

    impl Fake {
        /// A function with status.CAP_LIST and the given capabilities: (offset, id, next).
        fn new(caps: &[(u8, u8, u8)]) -> Fake {
            let f = Fake::default();
            f.set(0x00, 0x2922_8086);
            f.set(0x04, 0x0010_0000 | 0x0007); // status: capabilities; command: io|mem|master
            f.set(0x08, 0x0106_0102);
            f.set(0x0C, 0);
            if let Some(&(first, _, _)) = caps.first() {
                f.set(0x34, u32::from(first));
            }
            for &(off, id, next) in caps {
                let old = f.get(u16::from(off));
                f.set(
                    u16::from(off),
                    (old & 0xFFFF_0000) | u32::from(id) | (u32::from(next) << 8),
                );
            }
            f
        }
        fn get(&self, off: u16) -> u32 {
            self.regs.borrow().get(&off).copied().unwrap_or(0)
        }
        fn set(&self, off: u16, v: u32) {
            self.regs.borrow_mut().insert(off, v);
        }
        fn set16(&self, off: u16, v: u16) {
            let a = off & !3;
            let sh = (off & 2) * 8;
            self.set(a, (self.get(a) & !(0xFFFF << sh)) | (u32::from(v) << sh));
        }
        fn get16(&self, off: u16) -> u16 {
            (self.get(off & !3) >> ((off & 2) * 8)) as u16
        }
    }

    impl ConfigAccess for Fake {
        fn read32(&self, b: Bdf, offset: u16) -> u32 {
            assert_eq!(b, bdf());
            assert_eq!(offset % 4, 0);
            self.get(offset)
        }
        fn write32(&self, b: Bdf, offset: u16, value: u32) {
            assert_eq!(b, bdf());
            assert_eq!(offset % 4, 0);
            self.writes.borrow_mut().push((offset, value));
            // Capability headers and the status register are read-only here.
            let value = if self.cap_at(offset) == offset {
                (self.get(offset) & 0xFFFF) | (value & 0xFFFF_0000)
            } else if offset == 0x04 {
                (self.get(offset) & 0xFFFF_0000) | (value & 0xFFFF)
            } else {
                value
            };
            self.set(offset, value);
        }
    }

    impl Fake {
        /// `offset` if a capability header is there (its low 16 bits are read-only).
        fn cap_at(&self, offset: u16) -> u16 {
            let mut p = self.get(0x34) as u16 & 0xFC;
            while p >= 0x40 {
                if p == offset {
                    return p;
                }
                p = (self.get(p) >> 8) as u16 & 0xFC;
            }
            u16::MAX
        }
    }

    #[test]
    fn msi_64bit_with_masking() {
        let f = Fake::new(&[(0x50, 0x01, 0x80), (0x80, CAP_ID_MSI, 0x00)]);
        // 64-bit, per-vector masking, 4 vectors capable, MME set to 2 by someone.
        f.set16(0x82, MSI_64BIT | MSI_PER_VECTOR_MASK | (2 << 1) | (1 << 4));
        f.set(0x90, 0xFFFF_FFFF); // mask bits
        assert!(enable_msi(&f, bdf(), 0x1_FEE0_0000, 0x41));
        assert_eq!(f.get(0x84), 0xFEE0_0000);
        assert_eq!(f.get(0x88), 0x1);
        assert_eq!(f.get16(0x8C), 0x41);
        assert_eq!(f.get(0x90), 0xFFFF_FFFE, "vector 0 unmasked");
        let control = f.get16(0x82);
        assert_eq!(control & MSI_ENABLE, MSI_ENABLE);
        assert_eq!(control & MSI_MME_MASK, 0, "single vector");
        assert_eq!(control & (0b111 << 1), 2 << 1, "MMC kept");
        let command = f.get(0x04) as u16;
        assert_ne!(command & (1 << 10), 0, "INTx disabled");
        assert_ne!(command & (1 << 2), 0, "bus master");
        // Capability header untouched.
        assert_eq!(f.get(0x80) & 0xFFFF, u32::from(CAP_ID_MSI));
    }

    #[test]
    fn msi_32bit() {
        let f = Fake::new(&[(0x80, CAP_ID_MSI, 0xA8), (0xA8, 0x12, 0x00)]);
        f.set16(0x82, 0); // 32-bit, no masking (QEMU ich9-ahci)
        f.set(0x04, 0x0010_0000); // decoding off: enabling MSI turns on bus mastering
        assert!(enable_msi(&f, bdf(), 0xFEE0_0000, 0x30));
        assert_eq!(f.get(0x84), 0xFEE0_0000);
        assert_eq!(f.get16(0x88), 0x30);
        assert_eq!(f.get16(0x82) & MSI_ENABLE, MSI_ENABLE);
        assert_eq!(f.get(0x04) & 0x0404, 0x0404);
        // Above 4 GiB, odd addresses and wide data are refused without writes.
        let f = Fake::new(&[(0x80, CAP_ID_MSI, 0x00)]);
        let before = f.writes.borrow().len();
        assert!(!enable_msi(&f, bdf(), 0x1_0000_0000, 0x30));
        assert!(!enable_msi(&f, bdf(), 0xFEE0_0002, 0x30));
        assert!(!enable_msi(&f, bdf(), 0xFEE0_0000, 0x1_0000));
        assert_eq!(f.writes.borrow().len(), before);
    }

    #[test]
    fn no_capability_means_false() {
        let f = Fake::new(&[(0x40, 0x01, 0x00)]);
        assert!(!enable_msi(&f, bdf(), 0xFEE0_0000, 0x30));
        assert_eq!(msix_table_size(&f, bdf()), None);
        let func = function([None; 6]);
        assert!(!enable_msix::<FakeHal>(&f, &func, 0, 0xFEE0_0000, 0x30));
        assert!(f.writes.borrow().is_empty());
    }

    fn function(bars: [Option<Bar>; 6]) -> PciFunction {
        PciFunction {
            bdf: bdf(),
            vendor: 0x8086,
            device: 0x2922,
            class: 1,
            subclass: 6,
            prog_if: 1,
            revision: 2,
            header_type: 0,
            irq_line: 10,
            irq_pin: 1,
            subsystem: None,
            bars,
        }
    }

    #[test]
    fn msix_programs_the_table_entry() {
        // A 4 KiB "BAR" in host memory (the fake HAL maps unknown addresses 1:1), with
        // the table at 0x800 of BAR 2 and 8 entries, all masked as after reset.
        let mut bar_mem = vec![0u32; 1024];
        for e in 0..8 {
            bar_mem[0x800 / 4 + e * 4 + 3] = 1;
        }
        let addr = bar_mem.as_mut_ptr() as u64;
        let mut bars = [None; 6];
        bars[2] = Some(Bar::Memory {
            addr,
            size: 0x1000,
            prefetchable: false,
            is64: false,
        });
        let func = function(bars);
        let f = Fake::new(&[(0x40, CAP_ID_MSIX, 0x60), (0x60, CAP_ID_MSI, 0x00)]);
        f.set16(0x42, 7); // 8 entries
        f.set(0x44, 0x800 | 2); // table at BAR2 + 0x800
        f.set(0x48, 0xC00 | 2); // PBA
        f.set16(0x62, MSI_ENABLE); // MSI on: must be turned off
        assert_eq!(msix_table_size(&f, bdf()), Some(8));
        assert!(enable_msix::<FakeHal>(&f, &func, 3, 0x1_FEE0_1000, 0x45));
        let entry = 0x800 / 4 + 3 * 4;
        let read = |i: usize| bar_mem[i];
        assert_eq!(
            (
                read(entry),
                read(entry + 1),
                read(entry + 2),
                read(entry + 3)
            ),
            (0xFEE0_1000, 1, 0x45, 0)
        );
        assert_eq!(read(0x800 / 4 + 3), 1, "other entries stay masked");
        let control = f.get16(0x42);
        assert_eq!(control & (MSIX_ENABLE | MSIX_FUNCTION_MASK), MSIX_ENABLE);
        assert_eq!(control & MSIX_TABLE_SIZE_MASK, 7);
        assert_eq!(f.get16(0x62) & MSI_ENABLE, 0, "MSI turned off");
        assert_ne!(f.get(0x04) & (1 << 10), 0, "INTx disabled");

        // Entry beyond the table, table beyond the BAR, BAR missing: refused.
        assert!(!enable_msix::<FakeHal>(&f, &func, 8, 0xFEE0_0000, 0x45));
        f.set(0x44, 0xFF8 | 2);
        assert!(!enable_msix::<FakeHal>(&f, &func, 1, 0xFEE0_0000, 0x45));
        f.set(0x44, 0x800 | 4);
        assert!(!enable_msix::<FakeHal>(&f, &func, 0, 0xFEE0_0000, 0x45));
    }

    #[test]
    fn enabling_msi_turns_msix_off() {
        let f = Fake::new(&[(0x40, CAP_ID_MSIX, 0x60), (0x60, CAP_ID_MSI, 0x00)]);
        f.set16(0x42, MSIX_ENABLE | 3);
        assert!(enable_msi(&f, bdf(), 0xFEE0_0000, 0x22));
        assert_eq!(f.get16(0x42), 3);
        assert_eq!(f.get16(0x62) & MSI_ENABLE, MSI_ENABLE);
    }
}
