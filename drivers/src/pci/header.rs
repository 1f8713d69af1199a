//! The common configuration header: identification, header type, command
//! and status registers, interrupt routing, subsystem ids and bridge bus
//! numbers.

use core::fmt;

use super::access::{Bdf, ConfigAccess};
use super::class::ClassCode;
use super::regs;

bitflags::bitflags! {
    /// The command register (offset `0x04`). Bits without a name are kept
    /// as they are by the helpers that modify the register.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Command: u16 {
        /// Respond to accesses in I/O space (I/O BARs decode).
        const IO_SPACE = 1 << 0;
        /// Respond to accesses in memory space (memory BARs decode).
        const MEMORY_SPACE = 1 << 1;
        /// May master the bus: needed for DMA and for MSI/MSI-X messages.
        const BUS_MASTER = 1 << 2;
        /// Monitor special cycles.
        const SPECIAL_CYCLES = 1 << 3;
        /// May use memory-write-and-invalidate.
        const MEMORY_WRITE_INVALIDATE = 1 << 4;
        /// VGA palette snooping.
        const VGA_PALETTE_SNOOP = 1 << 5;
        /// Report parity errors.
        const PARITY_ERROR_RESPONSE = 1 << 6;
        /// Enable the SERR# driver.
        const SERR = 1 << 8;
        /// Fast back-to-back transactions to different agents.
        const FAST_BACK_TO_BACK = 1 << 9;
        /// Do not assert the legacy INTx# interrupt pin.
        const INTX_DISABLE = 1 << 10;
    }
}

bitflags::bitflags! {
    /// The status register (offset `0x06`). The error bits are
    /// write-one-to-clear.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Status: u16 {
        /// The function is asserting its INTx# interrupt.
        const INTERRUPT = 1 << 3;
        /// The capabilities pointer is valid.
        const CAPABILITIES_LIST = 1 << 4;
        /// 66 MHz capable (conventional PCI).
        const MHZ_66 = 1 << 5;
        /// Fast back-to-back capable.
        const FAST_BACK_TO_BACK = 1 << 7;
        /// Master data parity error.
        const MASTER_DATA_PARITY_ERROR = 1 << 8;
        /// Signaled target abort.
        const SIGNALED_TARGET_ABORT = 1 << 11;
        /// Received target abort.
        const RECEIVED_TARGET_ABORT = 1 << 12;
        /// Received master abort.
        const RECEIVED_MASTER_ABORT = 1 << 13;
        /// Signaled system error.
        const SIGNALED_SYSTEM_ERROR = 1 << 14;
        /// Detected parity error.
        const DETECTED_PARITY_ERROR = 1 << 15;
    }
}

/// The multi-function flag in the header type register.
pub(crate) const HEADER_MULTIFUNCTION: u8 = 0x80;

/// The layout of a configuration header (header type bits `0..7`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HeaderKind {
    /// Type 0: an ordinary function, with six BARs.
    Endpoint,
    /// Type 1: a PCI-to-PCI bridge (also PCIe root and switch ports), with
    /// two BARs and primary/secondary/subordinate bus numbers.
    PciBridge,
    /// Type 2: a PCI-to-CardBus bridge.
    CardBusBridge,
    /// A layout this module does not know (the value, without bit 7).
    Unknown(u8),
}

impl HeaderKind {
    /// Decodes the raw header type register (the multi-function bit is
    /// ignored).
    pub const fn from_header_type(header_type: u8) -> HeaderKind {
        match header_type & !HEADER_MULTIFUNCTION {
            0 => HeaderKind::Endpoint,
            1 => HeaderKind::PciBridge,
            2 => HeaderKind::CardBusBridge,
            other => HeaderKind::Unknown(other),
        }
    }

    /// How many BAR slots the layout has: 6, 2, 1 (the CardBus socket
    /// register) or 0.
    pub const fn bar_slots(self) -> usize {
        match self {
            HeaderKind::Endpoint => 6,
            HeaderKind::PciBridge => 2,
            HeaderKind::CardBusBridge => 1,
            HeaderKind::Unknown(_) => 0,
        }
    }
}

/// Subsystem vendor and subsystem id (which board or product the chip is
/// built into).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SubsystemId {
    /// Subsystem vendor ID.
    pub vendor: u16,
    /// Subsystem ID.
    pub device: u16,
}

/// The bus numbers of a bridge (header types 1 and 2).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct BridgeBuses {
    /// The bus the bridge itself sits on.
    pub primary: u8,
    /// The bus directly behind the bridge; 0 if firmware left it unconfigured.
    pub secondary: u8,
    /// The highest bus number behind the bridge.
    pub subordinate: u8,
}

/// One function's configuration space: typed reads of its header and helpers
/// that modify it.
///
/// It is only an address plus the access method, so it is cheap to make and
/// copy; every method goes to the hardware (nothing is cached). See
/// [`super::PciFunction`] for a snapshot.
pub struct ConfigSpace<'a, A: ConfigAccess + ?Sized> {
    access: &'a A,
    bdf: Bdf,
}

impl<A: ConfigAccess + ?Sized> Clone for ConfigSpace<'_, A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A: ConfigAccess + ?Sized> Copy for ConfigSpace<'_, A> {}

impl<A: ConfigAccess + ?Sized> fmt::Debug for ConfigSpace<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigSpace")
            .field("bdf", &self.bdf)
            .finish_non_exhaustive()
    }
}

impl<'a, A: ConfigAccess + ?Sized> ConfigSpace<'a, A> {
    /// The configuration space of `bdf`, reached through `access`.
    pub const fn new(access: &'a A, bdf: Bdf) -> Self {
        ConfigSpace { access, bdf }
    }

    /// The function's address.
    pub const fn bdf(&self) -> Bdf {
        self.bdf
    }

    /// The access method.
    pub const fn access(&self) -> &'a A {
        self.access
    }

    /// Whether a function answers at this address: the vendor id is neither
    /// `0xFFFF` (nobody claimed the read) nor `0x0000` (never a valid vendor;
    /// some bridges return zeros for absent functions).
    pub fn is_present(&self) -> bool {
        !matches!(self.vendor_id(), 0xFFFF | 0x0000)
    }

    /// Vendor ID (`0xFFFF` if absent).
    pub fn vendor_id(&self) -> u16 {
        self.access.read16(self.bdf, regs::VENDOR_ID)
    }

    /// Device ID.
    pub fn device_id(&self) -> u16 {
        self.access.read16(self.bdf, regs::DEVICE_ID)
    }

    /// Class, subclass and programming interface.
    pub fn class_code(&self) -> ClassCode {
        let dword = self.access.read32(self.bdf, regs::REVISION_ID);
        ClassCode::from_class_revision_dword(dword)
    }

    /// Revision ID.
    pub fn revision(&self) -> u8 {
        self.access.read8(self.bdf, regs::REVISION_ID)
    }

    /// The raw header type register, multi-function bit included.
    pub fn header_type(&self) -> u8 {
        self.access.read8(self.bdf, regs::HEADER_TYPE)
    }

    /// The header layout.
    pub fn header_kind(&self) -> HeaderKind {
        HeaderKind::from_header_type(self.header_type())
    }

    /// Whether the multi-function bit is set. Meaningful on function 0: only
    /// then do functions 1..8 of the device exist.
    pub fn is_multifunction(&self) -> bool {
        self.header_type() & HEADER_MULTIFUNCTION != 0
    }

    /// Interrupt line: the legacy IRQ number firmware routed INTx to
    /// (`0xFF` or 0 often mean "not routed").
    pub fn interrupt_line(&self) -> u8 {
        self.access.read8(self.bdf, regs::INTERRUPT_LINE)
    }

    /// Interrupt pin: 0 for none, 1..=4 for INTA#..INTD#.
    pub fn interrupt_pin(&self) -> u8 {
        self.access.read8(self.bdf, regs::INTERRUPT_PIN)
    }

    /// Subsystem ids, for header types 0 and 2 (type 1 bridges keep them in
    /// an optional capability instead, so this gives `None` for them and for
    /// unknown layouts).
    pub fn subsystem(&self) -> Option<SubsystemId> {
        let offset = match self.header_kind() {
            HeaderKind::Endpoint => regs::SUBSYSTEM_VENDOR_ID,
            HeaderKind::CardBusBridge => regs::CARDBUS_SUBSYSTEM_VENDOR_ID,
            HeaderKind::PciBridge | HeaderKind::Unknown(_) => return None,
        };
        let dword = self.access.read32(self.bdf, offset);
        Some(SubsystemId {
            vendor: dword as u16,
            device: (dword >> 16) as u16,
        })
    }

    /// Bus numbers of a bridge (header types 1 and 2); `None` for other
    /// layouts.
    pub fn bridge_buses(&self) -> Option<BridgeBuses> {
        match self.header_kind() {
            HeaderKind::PciBridge | HeaderKind::CardBusBridge => {}
            HeaderKind::Endpoint | HeaderKind::Unknown(_) => return None,
        }
        let dword = self.access.read32(self.bdf, regs::PRIMARY_BUS);
        Some(BridgeBuses {
            primary: dword as u8,
            secondary: (dword >> 8) as u8,
            subordinate: (dword >> 16) as u8,
        })
    }

    /// The status register.
    pub fn status(&self) -> Status {
        Status::from_bits_retain(self.access.read16(self.bdf, regs::STATUS))
    }

    /// The command register.
    pub fn command(&self) -> Command {
        Command::from_bits_retain(self.access.read16(self.bdf, regs::COMMAND))
    }

    /// Writes the command register.
    ///
    /// This is a dword write with zeros in the status half: status bits are
    /// read-only or write-one-to-clear, so zeros leave them alone (a
    /// read-modify-write of the dword would clear pending error bits).
    pub fn set_command(&self, command: Command) {
        self.access
            .write32(self.bdf, regs::COMMAND, u32::from(command.bits()));
    }

    /// Sets the bits in `set`, clears those in `clear`, keeps the rest.
    /// Returns the command register as it was before. Skips the write if
    /// nothing changes.
    pub fn update_command(&self, set: Command, clear: Command) -> Command {
        let old = self.command();
        let new = old.difference(clear).union(set);
        if new != old {
            self.set_command(new);
        }
        old
    }

    /// Lets the function decode its memory BARs.
    pub fn enable_memory_space(&self) {
        self.update_command(Command::MEMORY_SPACE, Command::empty());
    }

    /// Lets the function decode its I/O BARs.
    pub fn enable_io_space(&self) {
        self.update_command(Command::IO_SPACE, Command::empty());
    }

    /// Lets the function master the bus (DMA, MSI).
    pub fn enable_bus_master(&self) {
        self.update_command(Command::BUS_MASTER, Command::empty());
    }

    /// Stops the function asserting its legacy INTx# pin (do this when using
    /// MSI or MSI-X, or polling).
    pub fn disable_intx(&self) {
        self.update_command(Command::INTX_DISABLE, Command::empty());
    }
}
