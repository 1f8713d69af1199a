//! Host tests against a fake configuration space.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::vec::Vec;

use super::*;

fn bdf(bus: u8, device: u8, function: u8) -> Bdf {
    Bdf::new(bus, device, function).expect("valid test bdf")
}

/// How a BAR register answers: reads give `(stored & writable) | fixed`.
#[derive(Clone, Copy)]
struct BarModel {
    writable: u32,
    fixed: u32,
}

/// Write-one-to-clear bits of the status register.
const STATUS_W1C: u32 = 0xF900;

/// A configuration space in a map. A function exists if its dword 0 is in
/// the map; absent functions read all-ones and ignore writes. BAR registers
/// behave like hardware for the sizing probe; the status register's error
/// bits are write-one-to-clear.
#[derive(Default)]
struct Fake {
    regs: RefCell<HashMap<(Bdf, u16), u32>>,
    bars: HashMap<(Bdf, u16), BarModel>,
    reads: RefCell<Vec<(Bdf, u16)>>,
    writes: RefCell<Vec<(Bdf, u16, u32)>>,
    /// Things real hardware would not like (BAR sized with decode on).
    violations: RefCell<Vec<String>>,
}

impl Fake {
    fn present(&self, bdf: Bdf) -> bool {
        self.regs.borrow().contains_key(&(bdf, 0))
    }

    fn get(&self, bdf: Bdf, offset: u16) -> u32 {
        self.regs.borrow().get(&(bdf, offset)).copied().unwrap_or(0)
    }

    fn set(&mut self, bdf: Bdf, offset: u16, value: u32) {
        self.regs.get_mut().insert((bdf, offset), value);
    }

    fn set_byte(&mut self, bdf: Bdf, offset: u16, value: u8) {
        let aligned = offset & !3;
        let shift = (offset & 3) * 8;
        let old = self.get(bdf, aligned);
        self.set(
            bdf,
            aligned,
            (old & !(0xFF << shift)) | (u32::from(value) << shift),
        );
    }

    fn func(
        &mut self,
        at: Bdf,
        vendor: u16,
        device: u16,
        class: (u8, u8, u8),
        header_type: u8,
    ) -> &mut Self {
        self.set(at, 0x00, u32::from(vendor) | (u32::from(device) << 16));
        let (c, s, p) = class;
        self.set(
            at,
            0x08,
            0x02 | (u32::from(p) << 8) | (u32::from(s) << 16) | (u32::from(c) << 24),
        );
        self.set(at, 0x0C, u32::from(header_type) << 16);
        let slots = match header_type & 0x7F {
            0 => 6,
            1 => 2,
            _ => 0,
        };
        for slot in 0..slots {
            self.bars.insert(
                (at, 0x10 + 4 * slot),
                BarModel {
                    writable: 0,
                    fixed: 0,
                },
            );
        }
        self
    }

    fn command(&mut self, at: Bdf, command: u16) -> &mut Self {
        let old = self.get(at, 0x04);
        self.set(at, 0x04, (old & 0xFFFF_0000) | u32::from(command));
        self
    }

    fn status(&mut self, at: Bdf, status: u16) -> &mut Self {
        let old = self.get(at, 0x04);
        self.set(at, 0x04, (old & 0xFFFF) | (u32::from(status) << 16));
        self
    }

    fn bar(&mut self, at: Bdf, slot: u16, value: u32, model: BarModel) -> &mut Self {
        let offset = 0x10 + 4 * slot;
        self.bars.insert((at, offset), model);
        self.set(at, offset, value & model.writable);
        self
    }

    fn bar_mem32(&mut self, at: Bdf, slot: u16, addr: u32, size: u32, pf: bool) -> &mut Self {
        let fixed = if pf { 0x8 } else { 0 };
        let writable = !(size - 1) & !0xF;
        self.bar(at, slot, addr, BarModel { writable, fixed })
    }

    fn bar_mem64(&mut self, at: Bdf, slot: u16, addr: u64, size: u64, pf: bool) -> &mut Self {
        let fixed = 0x4 | if pf { 0x8 } else { 0 };
        let mask = !(size - 1);
        self.bar(
            at,
            slot,
            addr as u32,
            BarModel {
                writable: mask as u32 & !0xF,
                fixed,
            },
        );
        self.bar(
            at,
            slot + 1,
            (addr >> 32) as u32,
            BarModel {
                writable: (mask >> 32) as u32,
                fixed: 0,
            },
        )
    }

    /// An I/O BAR decoding 16 address bits (the upper half reads 0).
    fn bar_io(&mut self, at: Bdf, slot: u16, port: u32, size: u32) -> &mut Self {
        let writable = !(size - 1) & 0xFFFC;
        self.bar(at, slot, port, BarModel { writable, fixed: 1 })
    }

    fn bridge(&mut self, at: Bdf, primary: u8, secondary: u8, subordinate: u8) -> &mut Self {
        self.set_byte(at, 0x18, primary);
        self.set_byte(at, 0x19, secondary);
        self.set_byte(at, 0x1A, subordinate);
        self
    }

    fn irq(&mut self, at: Bdf, line: u8, pin: u8) -> &mut Self {
        self.set_byte(at, 0x3C, line);
        self.set_byte(at, 0x3D, pin);
        self
    }

    fn subsystem(&mut self, at: Bdf, vendor: u16, device: u16) -> &mut Self {
        self.set(at, 0x2C, u32::from(vendor) | (u32::from(device) << 16));
        self
    }

    /// Capability list: `first` goes in the pointer register; each entry is
    /// (offset, id, next).
    fn caps(&mut self, at: Bdf, first: u8, list: &[(u8, u8, u8)]) -> &mut Self {
        let status = (self.get(at, 0x04) >> 16) as u16;
        self.status(at, status | 0x10);
        self.set_byte(at, 0x34, first);
        for &(offset, id, next) in list {
            self.set_byte(at, u16::from(offset), id);
            self.set_byte(at, u16::from(offset) + 1, next);
        }
        self
    }

    /// Makes function `to` answer exactly like `from` (what single-function
    /// devices that ignore the function number do).
    fn mirror(&mut self, from: Bdf, to: Bdf) {
        let regs: Vec<_> = self
            .regs
            .get_mut()
            .iter()
            .filter(|((b, _), _)| *b == from)
            .map(|((_, o), v)| (*o, *v))
            .collect();
        for (offset, value) in regs {
            self.set(to, offset, value);
        }
        let bars: Vec<_> = self
            .bars
            .iter()
            .filter(|((b, _), _)| *b == from)
            .map(|((_, o), m)| (*o, *m))
            .collect();
        for (offset, model) in bars {
            self.bars.insert((to, offset), model);
        }
    }

    /// The register contents (an absent key and a zero value are the same
    /// register value, so zeros are left out).
    fn snapshot(&self) -> HashMap<(Bdf, u16), u32> {
        let mut regs = self.regs.borrow().clone();
        regs.retain(|_, value| *value != 0);
        regs
    }

    fn read_bdfs(&self) -> HashSet<Bdf> {
        self.reads.borrow().iter().map(|(b, _)| *b).collect()
    }

    fn command_writes(&self, at: Bdf) -> Vec<u32> {
        self.writes
            .borrow()
            .iter()
            .filter(|(b, o, _)| *b == at && *o == 0x04)
            .map(|(_, _, v)| *v)
            .collect()
    }
}

impl ConfigAccess for Fake {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        assert_eq!(offset % 4, 0, "unaligned read32 {bdf} {offset:#x}");
        assert!(offset < 0x1000, "read32 beyond config space");
        self.reads.borrow_mut().push((bdf, offset));
        if !self.present(bdf) {
            return u32::MAX;
        }
        let stored = self.get(bdf, offset);
        match self.bars.get(&(bdf, offset)) {
            Some(model) => (stored & model.writable) | model.fixed,
            None => stored,
        }
    }

    fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
        assert_eq!(offset % 4, 0, "unaligned write32 {bdf} {offset:#x}");
        self.writes.borrow_mut().push((bdf, offset, value));
        if !self.present(bdf) {
            return;
        }
        let old = self.get(bdf, offset);
        let new = if offset == 0x04 {
            let status = (old >> 16) & !((value >> 16) & STATUS_W1C);
            (status << 16) | (value & 0xFFFF)
        } else if let Some(model) = self.bars.get(&(bdf, offset)) {
            let class = self.get(bdf, 0x08) >> 16;
            let decode = self.get(bdf, 0x04) & 0x3;
            if value == u32::MAX && decode != 0 && class != 0x0600 {
                self.violations
                    .borrow_mut()
                    .push(format!("{bdf}: BAR {offset:#x} sized with decode on"));
            }
            value & model.writable
        } else {
            value
        };
        self.regs.borrow_mut().insert((bdf, offset), new);
    }
}

const CMD_DECODE_MASTER: u16 = 0x0007;

/// The QEMU q35 machine: host bridge 00:00.0, VGA 00:01.0, e1000e 00:02.0,
/// virtio-blk 00:03.0, PCI bridge 00:1e.0 -> bus 1 with NVMe 01:00.0, and
/// the multi-function ICH9 at 00:1f (.0 ISA/LPC, .2 AHCI, .3 SMBus).
fn q35() -> Fake {
    let mut f = Fake::default();
    f.func(bdf(0, 0, 0), 0x8086, 0x29C0, (0x06, 0x00, 0x00), 0x00)
        .subsystem(bdf(0, 0, 0), 0x1AF4, 0x1100);
    f.func(bdf(0, 1, 0), 0x1234, 0x1111, (0x03, 0x00, 0x00), 0x00)
        .command(bdf(0, 1, 0), 0x0003)
        .bar_mem32(bdf(0, 1, 0), 0, 0xFD00_0000, 0x100_0000, true)
        .bar_mem32(bdf(0, 1, 0), 2, 0xFEBD_0000, 0x1000, false);
    f.func(bdf(0, 2, 0), 0x8086, 0x10D3, (0x02, 0x00, 0x00), 0x00)
        .command(bdf(0, 2, 0), CMD_DECODE_MASTER)
        .bar_mem32(bdf(0, 2, 0), 0, 0xFEB8_0000, 0x2_0000, false)
        .bar_io(bdf(0, 2, 0), 2, 0xC060, 0x20)
        .irq(bdf(0, 2, 0), 10, 1);
    f.func(bdf(0, 3, 0), 0x1AF4, 0x1042, (0x01, 0x00, 0x00), 0x00)
        .command(bdf(0, 3, 0), CMD_DECODE_MASTER)
        .bar_mem32(bdf(0, 3, 0), 1, 0xFEBD_1000, 0x1000, false)
        .bar_mem64(bdf(0, 3, 0), 4, 0xFE00_0000, 0x4000, true)
        .irq(bdf(0, 3, 0), 11, 1)
        .subsystem(bdf(0, 3, 0), 0x1AF4, 0x1100)
        .caps(
            bdf(0, 3, 0),
            0x98,
            &[
                (0x98, CAP_ID_MSIX, 0x84),
                (0x84, CAP_ID_VENDOR, 0x70),
                (0x70, CAP_ID_VENDOR, 0x60),
                (0x60, CAP_ID_VENDOR, 0x50),
                (0x50, CAP_ID_VENDOR, 0x40),
                (0x40, CAP_ID_VENDOR, 0x00),
            ],
        );
    f.func(bdf(0, 0x1E, 0), 0x8086, 0x244E, (0x06, 0x04, 0x01), 0x01)
        .command(bdf(0, 0x1E, 0), CMD_DECODE_MASTER)
        .bridge(bdf(0, 0x1E, 0), 0, 1, 1);
    f.func(bdf(1, 0, 0), 0x1B36, 0x0010, (0x01, 0x08, 0x02), 0x00)
        .command(bdf(1, 0, 0), CMD_DECODE_MASTER)
        .bar_mem64(bdf(1, 0, 0), 0, 0x8_0000_0000, 0x4000, false)
        .irq(bdf(1, 0, 0), 10, 1)
        .caps(
            bdf(1, 0, 0),
            0x40,
            &[
                (0x40, CAP_ID_MSIX, 0x80),
                (0x80, CAP_ID_PCIE, 0x60),
                (0x60, CAP_ID_POWER_MANAGEMENT, 0x00),
            ],
        );
    f.func(bdf(0, 0x1F, 0), 0x8086, 0x2918, (0x06, 0x01, 0x00), 0x80)
        .command(bdf(0, 0x1F, 0), 0x0003);
    f.func(bdf(0, 0x1F, 2), 0x8086, 0x2922, (0x01, 0x06, 0x01), 0x00)
        .command(bdf(0, 0x1F, 2), CMD_DECODE_MASTER)
        .status(bdf(0, 0x1F, 2), 0x2000) // received master abort, W1C
        .bar_io(bdf(0, 0x1F, 2), 4, 0xC040, 0x20)
        .bar_mem32(bdf(0, 0x1F, 2), 5, 0xFEBD_2000, 0x1000, false)
        .irq(bdf(0, 0x1F, 2), 10, 1)
        .caps(
            bdf(0, 0x1F, 2),
            0x80,
            &[(0x80, CAP_ID_MSI, 0xA8), (0xA8, 0x12, 0x00)],
        );
    f.func(bdf(0, 0x1F, 3), 0x8086, 0x2930, (0x0C, 0x05, 0x00), 0x00)
        .command(bdf(0, 0x1F, 3), 0x0001)
        .bar_io(bdf(0, 0x1F, 3), 4, 0x0700, 0x40)
        .irq(bdf(0, 0x1F, 3), 10, 1);
    f
}

fn collect(fake: &Fake) -> Vec<PciFunction> {
    let mut found = Vec::new();
    enumerate(fake, |f| found.push(*f));
    found
}

fn bdfs(found: &[PciFunction]) -> Vec<Bdf> {
    found.iter().map(|f| f.bdf).collect()
}

fn by_bdf(found: &[PciFunction], at: Bdf) -> PciFunction {
    *found.iter().find(|f| f.bdf == at).expect("function found")
}

fn mem(addr: u64, size: u64, prefetchable: bool, is64: bool) -> Option<Bar> {
    Some(Bar::Memory {
        addr,
        size,
        prefetchable,
        is64,
    })
}

#[test]
fn bdf_new_display_and_offsets() {
    assert_eq!(Bdf::new(0, 32, 0), None);
    assert_eq!(Bdf::new(0, 0, 8), None);
    let b = bdf(0x0A, 0x1F, 7);
    assert_eq!((b.bus(), b.device(), b.function()), (0x0A, 0x1F, 7));
    assert_eq!(std::format!("{}", bdf(0, 0x1F, 2)), "00:1f.2");
    assert_eq!(std::format!("{}", bdf(0xFF, 0x1F, 7)), "ff:1f.7");
    assert_eq!(std::format!("{}", bdf(1, 0, 0)), "01:00.0");
    assert_eq!(
        b.ecam_offset(0x10),
        (0x0A << 20) | (0x1F << 15) | (7 << 12) | 0x10
    );
    assert_eq!(bdf(0xFF, 0x1F, 7).ecam_offset(0xFFF), 0x0FFF_FFFF);
    // Out-of-range register offsets stay inside the function's window.
    assert_eq!(b.ecam_offset(0x1004), b.ecam_offset(0x004));
    assert_eq!(
        bdf(0, 0x1F, 2).legacy_address(0x3D),
        0x8000_0000 | (0x1F << 11) | (2 << 8) | 0x3C
    );
    assert_eq!(bdf(0xFF, 0, 0).legacy_address(0), 0x80FF_0000);
}

#[test]
fn narrow_accessors() {
    let mut f = Fake::default();
    let at = bdf(0, 5, 0);
    f.func(at, 0x8086, 0x1234, (0x02, 0x00, 0x00), 0x80);
    f.set(at, 0x3C, 0x1122_0B01);
    assert_eq!(f.read16(at, 0x00), 0x8086);
    assert_eq!(f.read16(at, 0x02), 0x1234);
    assert_eq!(f.read16(at, 0x03), 0x1234, "odd offset rounds down");
    assert_eq!(f.read8(at, 0x0E), 0x80);
    assert_eq!(f.read8(at, 0x0B), 0x02);
    assert_eq!(f.read8(at, 0x3D), 0x0B);
    f.write16(at, 0x3E, 0xBEEF);
    assert_eq!(f.get(at, 0x3C), 0xBEEF_0B01);
    f.write16(at, 0x3C, 0x0A05);
    assert_eq!(f.get(at, 0x3C), 0xBEEF_0A05);
    // Through a reference and a trait object too.
    let dynamic: &dyn ConfigAccess = &f;
    assert_eq!((&dynamic).read16(at, 0x00), 0x8086);
    // Absent functions read all-ones.
    assert_eq!(f.read16(bdf(0, 6, 0), 0x00), 0xFFFF);
}

#[test]
fn q35_finds_every_function_once_in_depth_first_order() {
    let fake = q35();
    let found = collect(&fake);
    assert_eq!(
        bdfs(&found),
        [
            bdf(0, 0, 0),
            bdf(0, 1, 0),
            bdf(0, 2, 0),
            bdf(0, 3, 0),
            bdf(0, 0x1E, 0),
            bdf(1, 0, 0),
            bdf(0, 0x1F, 0),
            bdf(0, 0x1F, 2),
            bdf(0, 0x1F, 3),
        ]
    );
    let unique: HashSet<_> = bdfs(&found).into_iter().collect();
    assert_eq!(unique.len(), found.len());
    assert!(fake.violations.borrow().is_empty(), "{:?}", fake.violations);
}

#[test]
fn q35_header_fields() {
    let fake = q35();
    let found = collect(&fake);

    let virtio = by_bdf(&found, bdf(0, 3, 0));
    assert_eq!((virtio.vendor, virtio.device), (0x1AF4, 0x1042));
    assert_eq!(virtio.class_code(), ClassCode::new(0x01, 0x00, 0x00));
    assert_eq!(virtio.revision, 0x02);
    assert_eq!((virtio.irq_line, virtio.irq_pin), (11, 1));
    assert_eq!(
        virtio.subsystem,
        Some(SubsystemId {
            vendor: 0x1AF4,
            device: 0x1100
        })
    );
    assert_eq!(virtio.header_kind(), HeaderKind::Endpoint);
    assert!(virtio.is_virtio_blk() && !virtio.is_ahci() && !virtio.is_nvme());

    let ahci = by_bdf(&found, bdf(0, 0x1F, 2));
    assert!(ahci.is_ahci() && !ahci.is_nvme() && !ahci.is_virtio_blk());
    assert_eq!(ahci.class_name(), "SATA controller (AHCI)");

    let nvme = by_bdf(&found, bdf(1, 0, 0));
    assert!(nvme.is_nvme());
    assert_eq!(nvme.class_name(), "NVMe controller");

    let isa = by_bdf(&found, bdf(0, 0x1F, 0));
    assert!(isa.is_multifunction());
    assert_eq!(isa.header_type, 0x80);
    assert_eq!(isa.class_name(), "ISA bridge");

    let bridge = by_bdf(&found, bdf(0, 0x1E, 0));
    assert_eq!(bridge.header_kind(), HeaderKind::PciBridge);
    assert_eq!(bridge.subsystem, None);
    assert_eq!(bridge.bars, [None; 6]);
    assert_eq!(
        bridge.config(&fake).bridge_buses(),
        Some(BridgeBuses {
            primary: 0,
            secondary: 1,
            subordinate: 1
        })
    );
    assert_eq!(by_bdf(&found, bdf(0, 0x1F, 3)).class_name(), "SMBus");
    assert_eq!(by_bdf(&found, bdf(0, 0, 0)).class_name(), "host bridge");
    assert_eq!(
        by_bdf(&found, bdf(0, 1, 0)).class_name(),
        "VGA compatible controller"
    );
    assert_eq!(
        by_bdf(&found, bdf(0, 2, 0)).class_name(),
        "Ethernet controller"
    );

    let space = ConfigSpace::new(&fake, bdf(0, 0x1F, 2));
    assert!(space.is_present());
    assert_eq!((space.vendor_id(), space.device_id()), (0x8086, 0x2922));
    assert_eq!(space.class_code(), ids::CLASS_AHCI);
    assert_eq!(space.revision(), 2);
    assert_eq!((space.interrupt_line(), space.interrupt_pin()), (10, 1));
    assert!(!space.is_multifunction());
    assert!(ConfigSpace::new(&fake, bdf(0, 0x1F, 0)).is_multifunction());
    assert_eq!(space.bridge_buses(), None);
    assert!(!ConfigSpace::new(&fake, bdf(0, 4, 0)).is_present());
}

#[test]
fn q35_bars() {
    let fake = q35();
    let found = collect(&fake);

    let virtio = by_bdf(&found, bdf(0, 3, 0));
    assert_eq!(
        virtio.bars,
        [
            None,
            mem(0xFEBD_1000, 0x1000, false, false),
            None,
            None,
            mem(0xFE00_0000, 0x4000, true, true),
            None,
        ]
    );

    let ahci = by_bdf(&found, bdf(0, 0x1F, 2));
    assert_eq!(
        ahci.bars,
        [
            None,
            None,
            None,
            None,
            Some(Bar::Io {
                port: 0xC040,
                size: 0x20
            }),
            mem(0xFEBD_2000, 0x1000, false, false),
        ]
    );

    let nvme = by_bdf(&found, bdf(1, 0, 0));
    assert_eq!(nvme.bars[0], mem(0x8_0000_0000, 0x4000, false, true));
    assert_eq!(nvme.bars[1..], [None; 5]);

    let smbus = by_bdf(&found, bdf(0, 0x1F, 3));
    assert_eq!(
        smbus.bars[4],
        Some(Bar::Io {
            port: 0x700,
            size: 0x40
        })
    );

    let vga = by_bdf(&found, bdf(0, 1, 0));
    assert_eq!(vga.bars[0], mem(0xFD00_0000, 0x100_0000, true, false));
    assert_eq!(vga.bars[2], mem(0xFEBD_0000, 0x1000, false, false));

    let e1000e = by_bdf(&found, bdf(0, 2, 0));
    assert_eq!(e1000e.bars[0], mem(0xFEB8_0000, 0x2_0000, false, false));
    assert_eq!(
        e1000e.bars[2],
        Some(Bar::Io {
            port: 0xC060,
            size: 0x20
        })
    );

    assert_eq!(by_bdf(&found, bdf(0, 0, 0)).bars, [None; 6]);
}

#[test]
fn probing_restores_bars_and_command() {
    let fake = q35();
    let before = fake.snapshot();
    let found = collect(&fake);
    assert_eq!(found.len(), 9);
    assert_eq!(
        fake.snapshot(),
        before,
        "config space differs after enumeration"
    );
    assert!(fake.violations.borrow().is_empty(), "{:?}", fake.violations);

    // Decoding was turned off for the probe and put back, once each.
    assert_eq!(
        fake.command_writes(bdf(0, 3, 0)),
        [
            u32::from(CMD_DECODE_MASTER & !0x3),
            u32::from(CMD_DECODE_MASTER)
        ]
    );
    // A function with decoding already off gets no command writes.
    let mut off = Fake::default();
    off.func(bdf(0, 4, 0), 0x1AF4, 0x1001, (0x01, 0x00, 0x00), 0x00)
        .bar_io(bdf(0, 4, 0), 0, 0xC000, 0x40);
    let found = collect(&off);
    assert!(found[0].is_virtio_blk());
    assert_eq!(
        found[0].bars[0],
        Some(Bar::Io {
            port: 0xC000,
            size: 0x40
        })
    );
    assert!(off.command_writes(bdf(0, 4, 0)).is_empty());
    // The W1C status bit of the AHCI function survived.
    assert_eq!(
        ConfigSpace::new(&fake, bdf(0, 0x1F, 2)).status(),
        Status::CAPABILITIES_LIST | Status::RECEIVED_MASTER_ABORT
    );
}

#[test]
fn host_bridge_keeps_decoding_during_probe() {
    let mut f = Fake::default();
    let host = bdf(0, 0, 0);
    f.func(host, 0x8086, 0x29C0, (0x06, 0x00, 0x00), 0x00)
        .command(host, 0x0006)
        .bar_mem32(host, 0, 0xE000_0000, 0x1000_0000, false);
    let found = collect(&f);
    assert_eq!(
        found[0].bars[0],
        mem(0xE000_0000, 0x1000_0000, false, false)
    );
    assert!(f.command_writes(host).is_empty());
    assert_eq!(f.get(host, 0x10), 0xE000_0000);
}

#[test]
fn single_function_devices_are_scanned_at_function_0_only() {
    let mut fake = q35();
    // 00:03 is not multi-function but answers at every function number.
    for function in 1..8 {
        fake.mirror(bdf(0, 3, 0), bdf(0, 3, function));
    }
    let found = collect(&fake);
    assert_eq!(found.len(), 9);
    let read = fake.read_bdfs();
    for function in 1..8 {
        assert!(
            !read.contains(&bdf(0, 3, function)),
            "read 00:03.{function}"
        );
    }
    // The multi-function device had all its functions looked at.
    for function in 0..8 {
        assert!(read.contains(&bdf(0, 0x1F, function)));
    }
    // Absent devices: only function 0 is read.
    assert!(read.contains(&bdf(0, 4, 0)));
    assert!(!read.contains(&bdf(0, 4, 1)));
}

#[test]
fn vendor_zero_is_absent() {
    let mut f = Fake::default();
    f.set(bdf(0, 2, 0), 0x00, 0x0000_0000);
    f.func(bdf(0, 3, 0), 0x1AF4, 0x1042, (0x01, 0, 0), 0);
    assert_eq!(bdfs(&collect(&f)), [bdf(0, 3, 0)]);
    assert_eq!(PciFunction::read(&f, bdf(0, 2, 0)), None);
    assert_eq!(PciFunction::read(&f, bdf(0, 9, 0)), None);
}

#[test]
fn bridge_back_to_bus_0_terminates() {
    let mut fake = q35();
    fake.bridge(bdf(0, 0x1E, 0), 0, 0, 0);
    let found = collect(&fake);
    assert_eq!(found.len(), 8, "bus 1 is unreachable now");
    let unique: HashSet<_> = bdfs(&found).into_iter().collect();
    assert_eq!(unique.len(), 8);

    // A cycle through bus numbers: 0 -> 1 -> 2 -> 1 and 2 -> 0.
    let mut fake = q35();
    fake.func(bdf(1, 1, 0), 0x8086, 0x244E, (0x06, 0x04, 0x00), 0x01)
        .bridge(bdf(1, 1, 0), 1, 2, 2);
    fake.func(bdf(2, 0, 0), 0x8086, 0x244E, (0x06, 0x04, 0x00), 0x01)
        .bridge(bdf(2, 0, 0), 2, 1, 1);
    fake.func(bdf(2, 1, 0), 0x8086, 0x244E, (0x06, 0x04, 0x00), 0x01)
        .bridge(bdf(2, 1, 0), 2, 0, 0);
    let found = collect(&fake);
    assert_eq!(found.len(), 12);
    let unique: HashSet<_> = bdfs(&found).into_iter().collect();
    assert_eq!(unique.len(), 12);
}

#[test]
fn two_bridges_claiming_one_bus_scan_it_once() {
    let mut fake = q35();
    fake.func(bdf(0, 0x1C, 0), 0x8086, 0x244E, (0x06, 0x04, 0x00), 0x01)
        .bridge(bdf(0, 0x1C, 0), 0, 1, 1);
    let found = collect(&fake);
    let nvmes = found.iter().filter(|f| f.is_nvme()).count();
    assert_eq!(nvmes, 1);
    assert_eq!(found.len(), 10);
}

#[test]
fn deep_bridge_chain() {
    // Bus n has a bridge to bus n+1; bus 255's points back to 1.
    let mut fake = Fake::default();
    for bus in 0..=255u8 {
        let at = bdf(bus, 0, 0);
        fake.func(at, 0x8086, 0x244E, (0x06, 0x04, 0x00), 0x01)
            .bridge(at, bus, bus.wrapping_add(1).max(1), 255);
    }
    fake.func(bdf(255, 7, 0), 0x1B36, 0x0010, (0x01, 0x08, 0x02), 0x00);
    let found = collect(&fake);
    assert_eq!(found.len(), 257);
    let buses: HashSet<u8> = found.iter().map(|f| f.bdf.bus()).collect();
    assert_eq!(buses.len(), 256);
    assert_eq!(found.last().map(|f| f.bdf), Some(bdf(255, 7, 0)));
}

#[test]
fn enumerate_from_several_roots() {
    let mut fake = q35();
    fake.func(bdf(0x80, 0, 0), 0x8086, 0x29C0, (0x06, 0x00, 0x00), 0x00);
    assert_eq!(collect(&fake).len(), 9, "bus 0x80 is not behind bus 0");
    let mut found = Vec::new();
    enumerate_from(&fake, [0, 0x80, 1], |f| found.push(f.bdf));
    assert_eq!(found.len(), 10);
    assert_eq!(found.last(), Some(&bdf(0x80, 0, 0)));
}

#[test]
fn works_through_a_trait_object() {
    let fake = q35();
    let access: &dyn ConfigAccess = &fake;
    let mut count = 0;
    enumerate(access, |_| count += 1);
    assert_eq!(count, 9);
}

#[test]
fn capabilities_of_q35_devices() {
    let fake = q35();
    let virtio = ConfigSpace::new(&fake, bdf(0, 3, 0));
    let caps: Vec<_> = virtio.capabilities().map(|c| (c.id, c.offset)).collect();
    assert_eq!(
        caps,
        [
            (0x11, 0x98),
            (0x09, 0x84),
            (0x09, 0x70),
            (0x09, 0x60),
            (0x09, 0x50),
            (0x09, 0x40)
        ]
    );
    assert_eq!(virtio.msix(), Some(0x98));
    assert_eq!(virtio.msi(), None);
    assert_eq!(virtio.pcie(), None);

    let nvme = ConfigSpace::new(&fake, bdf(1, 0, 0));
    assert_eq!(nvme.msix(), Some(0x40));
    assert_eq!(nvme.pcie(), Some(0x80));
    assert_eq!(nvme.find_capability(CAP_ID_POWER_MANAGEMENT), Some(0x60));

    let ahci = ConfigSpace::new(&fake, bdf(0, 0x1F, 2));
    assert_eq!(ahci.msi(), Some(0x80));
    assert_eq!(ahci.find_capability(0x12), Some(0xA8));

    // No capabilities-list bit: nothing, and the absent function too.
    assert_eq!(
        ConfigSpace::new(&fake, bdf(0, 2, 0)).capabilities().count(),
        0
    );
    assert_eq!(
        ConfigSpace::new(&fake, bdf(0, 9, 0)).capabilities().count(),
        0
    );
}

fn cap_fake(first: u8, list: &[(u8, u8, u8)]) -> Fake {
    let mut f = Fake::default();
    f.func(bdf(0, 4, 0), 0x1AF4, 0x1042, (0x01, 0, 0), 0)
        .caps(bdf(0, 4, 0), first, list);
    f
}

fn cap_offsets(f: &Fake) -> Vec<u16> {
    ConfigSpace::new(f, bdf(0, 4, 0))
        .capabilities()
        .map(|c| c.offset)
        .collect()
}

#[test]
fn capability_loops_terminate() {
    // 0x40 -> 0x50 -> 0x40 ...
    let f = cap_fake(0x40, &[(0x40, 0x05, 0x50), (0x50, 0x11, 0x40)]);
    assert_eq!(cap_offsets(&f), [0x40, 0x50]);
    assert_eq!(ConfigSpace::new(&f, bdf(0, 4, 0)).pcie(), None);
    // Self loop.
    let f = cap_fake(0x60, &[(0x60, 0x05, 0x60)]);
    assert_eq!(cap_offsets(&f), [0x60]);
    // Pointer into the standard header ends the list.
    let f = cap_fake(0x40, &[(0x40, 0x05, 0x10)]);
    assert_eq!(cap_offsets(&f), [0x40]);
    let f = cap_fake(0x3C, &[]);
    assert_eq!(cap_offsets(&f), [] as [u16; 0]);
    // Reserved low bits are masked off.
    let f = cap_fake(0x43, &[(0x40, 0x05, 0x52), (0x50, 0x10, 0x00)]);
    assert_eq!(cap_offsets(&f), [0x40, 0x50]);
    // An id of 0xFF ends the list.
    let f = cap_fake(
        0x40,
        &[(0x40, 0x05, 0x50), (0x50, 0xFF, 0x60), (0x60, 0x10, 0)],
    );
    assert_eq!(cap_offsets(&f), [0x40]);
    // A chain through every dword from 0xFC down to 0x40 that then loops:
    // the 48 entries, once each.
    let list: Vec<(u8, u8, u8)> = (0x10u8..0x40)
        .rev()
        .map(|dword| {
            (
                dword * 4,
                0x09,
                if dword == 0x10 { 0xFC } else { dword * 4 - 4 },
            )
        })
        .collect();
    let f = cap_fake(0xFC, &list);
    let offsets = cap_offsets(&f);
    assert_eq!(offsets.len(), MAX_CAPABILITIES);
    assert_eq!(
        offsets.iter().collect::<HashSet<_>>().len(),
        MAX_CAPABILITIES
    );
}

#[test]
fn command_helpers() {
    let fake = q35();
    let ahci = ConfigSpace::new(&fake, bdf(0, 0x1F, 2));
    let smbus = ConfigSpace::new(&fake, bdf(0, 0x1F, 3));
    assert_eq!(smbus.command(), Command::IO_SPACE);
    smbus.enable_memory_space();
    smbus.enable_bus_master();
    smbus.disable_intx();
    assert_eq!(
        smbus.command(),
        Command::IO_SPACE | Command::MEMORY_SPACE | Command::BUS_MASTER | Command::INTX_DISABLE
    );
    let mem_only = ConfigSpace::new(&fake, bdf(0, 1, 0));
    mem_only.update_command(Command::empty(), Command::IO_SPACE);
    mem_only.enable_io_space();
    assert_eq!(
        mem_only.command(),
        Command::IO_SPACE | Command::MEMORY_SPACE
    );

    // Already set: no write at all.
    let writes = fake.command_writes(ahci.bdf()).len();
    ahci.enable_bus_master();
    assert_eq!(fake.command_writes(ahci.bdf()).len(), writes);
    // Changing the command leaves the status error bits alone.
    ahci.disable_intx();
    assert!(ahci.command().contains(Command::INTX_DISABLE));
    assert!(ahci.status().contains(Status::RECEIVED_MASTER_ABORT));
    // Unnamed command bits are kept.
    fake.write32(ahci.bdf(), 0x04, 0x0807);
    ahci.disable_intx();
    assert_eq!(ahci.command().bits(), 0x0C07);
}

#[test]
fn class_names() {
    let cases = [
        ((0x01, 0x01, 0x80), "IDE interface"),
        ((0x01, 0x06, 0x01), "SATA controller (AHCI)"),
        ((0x01, 0x06, 0x00), "SATA controller"),
        ((0x01, 0x08, 0x02), "NVMe controller"),
        ((0x01, 0x00, 0x00), "SCSI storage controller"),
        ((0x01, 0x80, 0x00), "mass storage controller"),
        ((0x02, 0x00, 0x00), "Ethernet controller"),
        ((0x03, 0x00, 0x00), "VGA compatible controller"),
        ((0x06, 0x00, 0x00), "host bridge"),
        ((0x06, 0x01, 0x00), "ISA bridge"),
        ((0x06, 0x04, 0x00), "PCI bridge"),
        ((0x06, 0x04, 0x01), "PCI bridge"),
        ((0x0C, 0x03, 0x30), "USB controller (xHCI)"),
        ((0x0C, 0x03, 0x20), "USB controller (EHCI)"),
        ((0x0C, 0x03, 0x00), "USB controller (UHCI)"),
        ((0x0C, 0x05, 0x00), "SMBus"),
        ((0xFF, 0x00, 0x00), "other"),
        ((0x42, 0x42, 0x42), "other"),
    ];
    for ((c, s, p), name) in cases {
        assert_eq!(class_name(c, s, p), name, "{c:02x}/{s:02x}/{p:02x}");
    }
    assert_eq!(ids::CLASS_AHCI.name(), "SATA controller (AHCI)");
    assert_eq!(std::format!("{}", ids::CLASS_NVME), "01/08/02");
    assert!(ids::is_virtio_blk(0x1AF4, 0x1001));
    assert!(ids::is_virtio_blk(0x1AF4, 0x1042));
    assert!(!ids::is_virtio_blk(0x1AF4, 0x1041));
    assert!(!ids::is_virtio_blk(0x8086, 0x1042));
}

#[test]
fn header_kinds() {
    assert_eq!(HeaderKind::from_header_type(0x80), HeaderKind::Endpoint);
    assert_eq!(HeaderKind::from_header_type(0x81), HeaderKind::PciBridge);
    assert_eq!(
        HeaderKind::from_header_type(0x02),
        HeaderKind::CardBusBridge
    );
    assert_eq!(
        HeaderKind::from_header_type(0xFF),
        HeaderKind::Unknown(0x7F)
    );
    assert_eq!(HeaderKind::Unknown(3).bar_slots(), 0);

    // Unknown layouts: no BARs, no subsystem, no capabilities, no writes.
    let mut f = Fake::default();
    let at = bdf(0, 5, 0);
    f.func(at, 0x1234, 0x5678, (0xFF, 0, 0), 0x03)
        .command(at, 3);
    let found = collect(&f);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].bars, [None; 6]);
    assert_eq!(found[0].subsystem, None);
    assert!(f.writes.borrow().is_empty());
}
