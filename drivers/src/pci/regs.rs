//! Byte offsets of configuration-space registers.
//!
//! Offsets `0x00..=0x0F` are common to every header type; the rest depend on
//! the header layout (type 0: endpoint, type 1: PCI-to-PCI bridge, type 2:
//! CardBus bridge) and are named accordingly.

/// Vendor ID (16 bits). `0xFFFF` reads mean "no function here".
pub const VENDOR_ID: u16 = 0x00;
/// Device ID (16 bits).
pub const DEVICE_ID: u16 = 0x02;
/// Command register (16 bits), see [`super::Command`].
pub const COMMAND: u16 = 0x04;
/// Status register (16 bits), see [`super::Status`].
pub const STATUS: u16 = 0x06;
/// Revision ID (8 bits).
pub const REVISION_ID: u16 = 0x08;
/// Programming interface (8 bits).
pub const PROG_IF: u16 = 0x09;
/// Subclass code (8 bits).
pub const SUBCLASS: u16 = 0x0A;
/// Base class code (8 bits).
pub const CLASS: u16 = 0x0B;
/// Cache line size (8 bits).
pub const CACHE_LINE_SIZE: u16 = 0x0C;
/// Latency timer (8 bits).
pub const LATENCY_TIMER: u16 = 0x0D;
/// Header type (8 bits): layout in bits 0..7, multi-function flag in bit 7.
pub const HEADER_TYPE: u16 = 0x0E;
/// Built-in self test (8 bits).
pub const BIST: u16 = 0x0F;
/// First base address register; BAR `n` is at `BAR0 + 4 * n`.
pub const BAR0: u16 = 0x10;

/// Type 0: subsystem vendor ID (16 bits).
pub const SUBSYSTEM_VENDOR_ID: u16 = 0x2C;
/// Type 0: subsystem ID (16 bits).
pub const SUBSYSTEM_ID: u16 = 0x2E;
/// Type 0: expansion ROM base address.
pub const EXPANSION_ROM: u16 = 0x30;
/// Types 0 and 1: capabilities pointer (8 bits).
pub const CAPABILITIES_PTR: u16 = 0x34;
/// Interrupt line (8 bits): the legacy IRQ firmware routed the pin to.
pub const INTERRUPT_LINE: u16 = 0x3C;
/// Interrupt pin (8 bits): 0 none, 1..=4 INTA#..INTD#.
pub const INTERRUPT_PIN: u16 = 0x3D;

/// Types 1 and 2: primary bus number (8 bits).
pub const PRIMARY_BUS: u16 = 0x18;
/// Types 1 and 2: secondary bus number (8 bits).
pub const SECONDARY_BUS: u16 = 0x19;
/// Types 1 and 2: subordinate (highest downstream) bus number (8 bits).
pub const SUBORDINATE_BUS: u16 = 0x1A;
/// Type 1: expansion ROM base address.
pub const BRIDGE_EXPANSION_ROM: u16 = 0x38;

/// Type 2: capabilities pointer (8 bits).
pub const CARDBUS_CAPABILITIES_PTR: u16 = 0x14;
/// Type 2: subsystem vendor ID (16 bits).
pub const CARDBUS_SUBSYSTEM_VENDOR_ID: u16 = 0x40;
/// Type 2: subsystem ID (16 bits).
pub const CARDBUS_SUBSYSTEM_ID: u16 = 0x42;
