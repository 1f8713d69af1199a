//! Walking the bus hierarchy.

use super::access::{Bdf, ConfigAccess, DEVICES_PER_BUS, FUNCTIONS_PER_DEVICE};
use super::bar::{Bar, MAX_BARS};
use super::class::{ClassCode, class_name};
use super::header::{ConfigSpace, HEADER_MULTIFUNCTION, HeaderKind, SubsystemId};
use super::{ids, regs};

/// Number of bus numbers in a segment.
const BUS_COUNT: usize = 256;

/// A snapshot of one function's header, taken during enumeration.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PciFunction {
    /// Where it is.
    pub bdf: Bdf,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Base class code.
    pub class: u8,
    /// Subclass code.
    pub subclass: u8,
    /// Programming interface.
    pub prog_if: u8,
    /// Revision ID.
    pub revision: u8,
    /// Raw header type, multi-function bit (`0x80`) included.
    pub header_type: u8,
    /// Interrupt line (legacy IRQ firmware routed INTx to).
    pub irq_line: u8,
    /// Interrupt pin: 0 none, 1..=4 INTA#..INTD#.
    pub irq_pin: u8,
    /// Subsystem ids (header types 0 and 2 only).
    pub subsystem: Option<SubsystemId>,
    /// The BARs, as [`ConfigSpace::bars`] decodes them: a 64-bit BAR sits in
    /// its first slot and the following slot is `None`.
    pub bars: [Option<Bar>; MAX_BARS],
}

impl PciFunction {
    /// Reads the header of `bdf` and sizes its BARs (see
    /// [`ConfigSpace::bars`] for what that writes). `None` if no function
    /// answers there.
    pub fn read<A: ConfigAccess + ?Sized>(access: &A, bdf: Bdf) -> Option<PciFunction> {
        let space = ConfigSpace::new(access, bdf);
        let ids = access.read32(bdf, regs::VENDOR_ID);
        let vendor = ids as u16;
        if matches!(vendor, 0xFFFF | 0x0000) {
            return None;
        }
        let class_rev = access.read32(bdf, regs::REVISION_ID);
        let class = ClassCode::from_class_revision_dword(class_rev);
        let header_type = access.read8(bdf, regs::HEADER_TYPE);
        let irq = access.read16(bdf, regs::INTERRUPT_LINE);
        Some(PciFunction {
            bdf,
            vendor,
            device: (ids >> 16) as u16,
            class: class.class,
            subclass: class.subclass,
            prog_if: class.prog_if,
            revision: class_rev as u8,
            header_type,
            irq_line: irq as u8,
            irq_pin: (irq >> 8) as u8,
            subsystem: space.subsystem(),
            bars: space.bars(),
        })
    }

    /// Class, subclass and programming interface together.
    pub const fn class_code(&self) -> ClassCode {
        ClassCode::new(self.class, self.subclass, self.prog_if)
    }

    /// The header layout.
    pub const fn header_kind(&self) -> HeaderKind {
        HeaderKind::from_header_type(self.header_type)
    }

    /// Whether the header's multi-function bit is set.
    pub const fn is_multifunction(&self) -> bool {
        self.header_type & HEADER_MULTIFUNCTION != 0
    }

    /// A short name for the class, see [`class_name`].
    pub fn class_name(&self) -> &'static str {
        class_name(self.class, self.subclass, self.prog_if)
    }

    /// Whether it is a virtio-blk device (modern `1af4:1042` or
    /// transitional `1af4:1001`).
    pub const fn is_virtio_blk(&self) -> bool {
        ids::is_virtio_blk(self.vendor, self.device)
    }

    /// Whether it is an AHCI SATA controller (class `01/06/01`).
    pub const fn is_ahci(&self) -> bool {
        self.class == ids::CLASS_AHCI.class
            && self.subclass == ids::CLASS_AHCI.subclass
            && self.prog_if == ids::CLASS_AHCI.prog_if
    }

    /// Whether it is an NVMe controller (class `01/08/02`).
    pub const fn is_nvme(&self) -> bool {
        self.class == ids::CLASS_NVME.class
            && self.subclass == ids::CLASS_NVME.subclass
            && self.prog_if == ids::CLASS_NVME.prog_if
    }

    /// The configuration space of this function, to program it.
    pub const fn config<'a, A: ConfigAccess + ?Sized>(&self, access: &'a A) -> ConfigSpace<'a, A> {
        ConfigSpace::new(access, self.bdf)
    }
}

/// A set of bus numbers.
struct BusSet([u64; BUS_COUNT / 64]);

impl BusSet {
    const fn new() -> Self {
        BusSet([0; BUS_COUNT / 64])
    }

    /// Adds `bus`; false if it was already there.
    fn insert(&mut self, bus: u8) -> bool {
        let (word, bit) = (usize::from(bus / 64), 1u64 << (bus % 64));
        match self.0.get_mut(word) {
            Some(w) if *w & bit == 0 => {
                *w |= bit;
                true
            }
            _ => false,
        }
    }
}

/// Where the scan of one bus has got to.
#[derive(Clone, Copy)]
struct BusCursor {
    bus: u8,
    device: u8,
    function: u8,
    multifunction: bool,
}

impl BusCursor {
    const fn start(bus: u8) -> Self {
        BusCursor {
            bus,
            device: 0,
            function: 0,
            multifunction: false,
        }
    }

    /// The next function present on the bus, moving past it. Function 0
    /// absent means the device is absent; functions 1..8 are only looked at
    /// if function 0 has the multi-function bit (single-function devices may
    /// answer at every function number with copies of function 0).
    fn next_present<A: ConfigAccess + ?Sized>(&mut self, access: &A) -> Option<Bdf> {
        while self.device < DEVICES_PER_BUS {
            let bdf = Bdf::new(self.bus, self.device, self.function)?;
            let space = ConfigSpace::new(access, bdf);
            let present = space.is_present();
            if self.function == 0 {
                if !present {
                    self.device += 1;
                    continue;
                }
                self.multifunction = space.is_multifunction();
            }
            if self.multifunction && self.function + 1 < FUNCTIONS_PER_DEVICE {
                self.function += 1;
            } else {
                self.device += 1;
                self.function = 0;
            }
            if present {
                return Some(bdf);
            }
        }
        None
    }
}

/// Finds every function on bus 0 and on the buses behind its PCI-to-PCI
/// bridges, recursively, and calls `visit` once for each, bridges before
/// the devices behind them (depth first, in `lspci -t` order).
///
/// Each function's BARs are sized as it is found (see
/// [`ConfigSpace::bars`]), which briefly turns off its decoding: enumerate
/// once at boot, before drivers start, with nothing else using
/// configuration space.
///
/// Every bus is scanned at most once: a bridge whose secondary bus is 0
/// (unconfigured) or was already scanned (a loop, or two bridges claiming
/// one bus) is logged and not followed. The scan keeps its own fixed-size
/// stack (about 1 KiB), so deep bridge chains do not deepen the call stack.
/// It does not assign bus numbers or BAR addresses: it reports what
/// firmware set up.
pub fn enumerate<A, F>(access: &A, visit: F)
where
    A: ConfigAccess + ?Sized,
    F: FnMut(&PciFunction),
{
    enumerate_from(access, [0], visit)
}

/// Like [`enumerate`], but starting from each of `roots` in turn (e.g. the
/// root bus numbers ACPI lists for several host bridges, or the first bus
/// of an MCFG entry). A bus is scanned at most once over all the roots.
pub fn enumerate_from<A, R, F>(access: &A, roots: R, mut visit: F)
where
    A: ConfigAccess + ?Sized,
    R: IntoIterator<Item = u8>,
    F: FnMut(&PciFunction),
{
    let mut scanned = BusSet::new();
    for root in roots {
        if scanned.insert(root) {
            scan_tree(access, root, &mut scanned, &mut visit);
        }
    }
}

/// Scans `root` and everything behind it. `root` is already in `scanned`.
fn scan_tree<A, F>(access: &A, root: u8, scanned: &mut BusSet, visit: &mut F)
where
    A: ConfigAccess + ?Sized,
    F: FnMut(&PciFunction),
{
    // Each bus enters the stack at most once (it is in `scanned` from then
    // on), so BUS_COUNT entries always suffice.
    let mut stack = [BusCursor::start(root); BUS_COUNT];
    let mut depth: usize = 1;
    while let Some(cursor) = depth.checked_sub(1).and_then(|top| stack.get_mut(top)) {
        let Some(bdf) = cursor.next_present(access) else {
            depth -= 1;
            continue;
        };
        let Some(function) = PciFunction::read(access, bdf) else {
            continue;
        };
        visit(&function);
        if function.header_kind() != HeaderKind::PciBridge {
            continue;
        }
        let Some(buses) = function.config(access).bridge_buses() else {
            continue;
        };
        let secondary = buses.secondary;
        if secondary == 0 {
            log::warn!("pci {bdf}: bridge has no secondary bus number, not followed");
        } else if !scanned.insert(secondary) {
            log::warn!("pci {bdf}: secondary bus {secondary:02x} already scanned, not followed");
        } else if let Some(slot) = stack.get_mut(depth) {
            *slot = BusCursor::start(secondary);
            depth += 1;
        }
    }
}
