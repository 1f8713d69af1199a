//! The capability list.

use super::access::ConfigAccess;
use super::header::{ConfigSpace, HeaderKind, Status};
use super::regs;

/// Capability id: power management.
pub const CAP_ID_POWER_MANAGEMENT: u8 = 0x01;
/// Capability id: MSI.
pub const CAP_ID_MSI: u8 = 0x05;
/// Capability id: vendor specific (virtio uses these to locate its
/// structures).
pub const CAP_ID_VENDOR: u8 = 0x09;
/// Capability id: PCI Express.
pub const CAP_ID_PCIE: u8 = 0x10;
/// Capability id: MSI-X.
pub const CAP_ID_MSIX: u8 = 0x11;

/// Most capabilities a list can hold: the dwords from `0x40` to `0xFF`.
pub const MAX_CAPABILITIES: usize = 48;

/// First offset a capability may live at (the end of the standard header).
const FIRST_CAP_OFFSET: u8 = 0x40;

/// One entry of the capability list.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Capability {
    /// The capability id (e.g. [`CAP_ID_MSI`]).
    pub id: u8,
    /// Its offset in configuration space: dword-aligned, `0x40..=0xFC`.
    pub offset: u16,
}

/// Iterator over a function's capability list, from
/// [`ConfigSpace::capabilities`].
///
/// It is safe against bad lists: the reserved low two bits of each pointer
/// are masked off (as the PCI specification requires), a pointer below
/// `0x40` ends the list, an id of `0xFF` (function gone) ends it, a pointer
/// back to an entry already seen ends it, and it never yields more than
/// [`MAX_CAPABILITIES`] entries.
pub struct Capabilities<'a, A: ConfigAccess + ?Sized> {
    space: ConfigSpace<'a, A>,
    next: u8,
    seen: u64,
    yielded: usize,
}

impl<A: ConfigAccess + ?Sized> core::fmt::Debug for Capabilities<'_, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Capabilities")
            .field("bdf", &self.space.bdf())
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl<A: ConfigAccess + ?Sized> Iterator for Capabilities<'_, A> {
    type Item = Capability;

    fn next(&mut self) -> Option<Capability> {
        let offset = self.next & !0x3;
        self.next = 0;
        if offset < FIRST_CAP_OFFSET || self.yielded >= MAX_CAPABILITIES {
            return None;
        }
        let bit = 1u64 << (offset / 4);
        if self.seen & bit != 0 {
            log::warn!(
                "pci {}: capability list loops back to {offset:#x}",
                self.space.bdf()
            );
            return None;
        }
        self.seen |= bit;
        let header = self
            .space
            .access()
            .read16(self.space.bdf(), u16::from(offset));
        let id = header as u8;
        if id == 0xFF {
            return None;
        }
        self.next = (header >> 8) as u8;
        self.yielded += 1;
        Some(Capability {
            id,
            offset: u16::from(offset),
        })
    }
}

impl<'a, A: ConfigAccess + ?Sized> ConfigSpace<'a, A> {
    /// The capability list (empty if the status register says there is
    /// none, or for an unknown header layout).
    pub fn capabilities(&self) -> Capabilities<'a, A> {
        let pointer_reg = match self.header_kind() {
            HeaderKind::Endpoint | HeaderKind::PciBridge => Some(regs::CAPABILITIES_PTR),
            HeaderKind::CardBusBridge => Some(regs::CARDBUS_CAPABILITIES_PTR),
            HeaderKind::Unknown(_) => None,
        };
        let next = match pointer_reg {
            Some(reg) if self.status().contains(Status::CAPABILITIES_LIST) => {
                self.access().read8(self.bdf(), reg)
            }
            _ => 0,
        };
        Capabilities {
            space: *self,
            next,
            seen: 0,
            yielded: 0,
        }
    }

    /// Offset of the first capability with this id.
    pub fn find_capability(&self, id: u8) -> Option<u16> {
        self.capabilities()
            .find(|cap| cap.id == id)
            .map(|cap| cap.offset)
    }

    /// Offset of the MSI capability.
    pub fn msi(&self) -> Option<u16> {
        self.find_capability(CAP_ID_MSI)
    }

    /// Offset of the MSI-X capability.
    pub fn msix(&self) -> Option<u16> {
        self.find_capability(CAP_ID_MSIX)
    }

    /// Offset of the PCI Express capability (present on every PCIe
    /// function).
    pub fn pcie(&self) -> Option<u16> {
        self.find_capability(CAP_ID_PCIE)
    }
}
