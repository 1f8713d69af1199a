//! Class codes and their names.

use core::fmt;

use super::ids;

/// A function's class code: base class, subclass and programming interface
/// (configuration offsets `0x0B`, `0x0A`, `0x09`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ClassCode {
    /// Base class (e.g. `0x01` mass storage).
    pub class: u8,
    /// Subclass (e.g. `0x06` SATA).
    pub subclass: u8,
    /// Programming interface (e.g. `0x01` AHCI).
    pub prog_if: u8,
}

impl ClassCode {
    /// A class code from its three bytes.
    pub const fn new(class: u8, subclass: u8, prog_if: u8) -> Self {
        ClassCode {
            class,
            subclass,
            prog_if,
        }
    }

    /// Decodes the dword at offset `0x08` (revision in bits `0..8`,
    /// programming interface, subclass, class above it).
    pub const fn from_class_revision_dword(dword: u32) -> Self {
        ClassCode {
            class: (dword >> 24) as u8,
            subclass: (dword >> 16) as u8,
            prog_if: (dword >> 8) as u8,
        }
    }

    /// The name [`class_name`] gives this class code.
    pub fn name(&self) -> &'static str {
        class_name(self.class, self.subclass, self.prog_if)
    }
}

impl fmt::Display for ClassCode {
    /// Prints `cc/ss/pp` in hex, e.g. `01/06/01`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}/{:02x}/{:02x}",
            self.class, self.subclass, self.prog_if
        )
    }
}

/// A short human-readable name for a class code, in the style of `lspci`
/// (e.g. `"SATA controller (AHCI)"`), for the common classes; anything
/// unlisted gives `"other"`.
pub fn class_name(class: u8, subclass: u8, prog_if: u8) -> &'static str {
    use ids::*;
    match (class, subclass, prog_if) {
        (0x00, 0x01, _) => "VGA-compatible unclassified device",
        (0x00, _, _) => "unclassified device",

        (CLASS_MASS_STORAGE, SUBCLASS_SCSI, _) => "SCSI storage controller",
        (CLASS_MASS_STORAGE, SUBCLASS_IDE, _) => "IDE interface",
        (CLASS_MASS_STORAGE, 0x02, _) => "floppy disk controller",
        (CLASS_MASS_STORAGE, 0x04, _) => "RAID bus controller",
        (CLASS_MASS_STORAGE, 0x05, _) => "ATA controller",
        (CLASS_MASS_STORAGE, SUBCLASS_SATA, PROG_IF_AHCI) => "SATA controller (AHCI)",
        (CLASS_MASS_STORAGE, SUBCLASS_SATA, _) => "SATA controller",
        (CLASS_MASS_STORAGE, 0x07, _) => "SAS controller",
        (CLASS_MASS_STORAGE, SUBCLASS_NVM, PROG_IF_NVME) => "NVMe controller",
        (CLASS_MASS_STORAGE, SUBCLASS_NVM, _) => "non-volatile memory controller",
        (CLASS_MASS_STORAGE, _, _) => "mass storage controller",

        (CLASS_NETWORK, 0x00, _) => "Ethernet controller",
        (CLASS_NETWORK, 0x80, _) => "network controller",
        (CLASS_NETWORK, _, _) => "network controller",

        (CLASS_DISPLAY, 0x00, 0x00) => "VGA compatible controller",
        (CLASS_DISPLAY, 0x00, _) => "8514 compatible controller",
        (CLASS_DISPLAY, 0x01, _) => "XGA compatible controller",
        (CLASS_DISPLAY, 0x02, _) => "3D controller",
        (CLASS_DISPLAY, _, _) => "display controller",

        (0x04, 0x01, _) => "multimedia audio controller",
        (0x04, 0x03, _) => "audio device",
        (0x04, _, _) => "multimedia controller",

        (0x05, 0x00, _) => "RAM memory",
        (0x05, _, _) => "memory controller",

        (CLASS_BRIDGE, SUBCLASS_HOST_BRIDGE, _) => "host bridge",
        (CLASS_BRIDGE, SUBCLASS_ISA_BRIDGE, _) => "ISA bridge",
        (CLASS_BRIDGE, SUBCLASS_PCI_BRIDGE, _) => "PCI bridge",
        (CLASS_BRIDGE, 0x07, _) => "CardBus bridge",
        (CLASS_BRIDGE, 0x09, _) => "PCI bridge (semi-transparent)",
        (CLASS_BRIDGE, _, _) => "bridge",

        (0x07, 0x00, _) => "serial controller",
        (0x07, 0x03, _) => "modem",
        (0x07, _, _) => "communication controller",

        (0x08, 0x00, _) => "PIC",
        (0x08, 0x05, _) => "SD host controller",
        (0x08, 0x06, _) => "IOMMU",
        (0x08, _, _) => "system peripheral",

        (0x09, _, _) => "input device controller",

        (CLASS_SERIAL_BUS, SUBCLASS_USB, 0x00) => "USB controller (UHCI)",
        (CLASS_SERIAL_BUS, SUBCLASS_USB, 0x10) => "USB controller (OHCI)",
        (CLASS_SERIAL_BUS, SUBCLASS_USB, 0x20) => "USB controller (EHCI)",
        (CLASS_SERIAL_BUS, SUBCLASS_USB, 0x30) => "USB controller (xHCI)",
        (CLASS_SERIAL_BUS, SUBCLASS_USB, _) => "USB controller",
        (CLASS_SERIAL_BUS, SUBCLASS_SMBUS, _) => "SMBus",
        (CLASS_SERIAL_BUS, _, _) => "serial bus controller",

        (0x0D, _, _) => "wireless controller",
        (0x10, _, _) => "encryption controller",
        (0x11, _, _) => "signal processing controller",
        (0x12, _, _) => "processing accelerator",

        _ => "other",
    }
}
