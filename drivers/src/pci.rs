//! PCI and PCI Express enumeration.
//!
//! Everything here is plain logic: configuration space is reached through the
//! [`ConfigAccess`] trait, which the kernel implements twice (legacy port I/O at
//! `0xCF8`/`0xCFC`, and PCIe ECAM from the ACPI MCFG table). That keeps this
//! module free of `unsafe` and lets `cargo test` run it against a fake
//! configuration space.
//!
//! The pieces:
//!
//! - [`Bdf`] names a function; [`ConfigAccess`] reads and writes its registers.
//! - [`ConfigSpace`] parses the common header (ids, class, header type,
//!   interrupt line and pin, subsystem ids), drives the command register,
//!   sizes the BARs ([`Bar`]) and walks the capability list
//!   ([`Capabilities`]).
//! - [`enumerate`] scans bus 0 and every bus reachable through PCI-to-PCI
//!   bridges, calling back with a [`PciFunction`] snapshot of each function.
//! - [`class_name`] and the [`ids`] constants say what a function is.
//!
//! Odd values from hardware (all-ones reads, looping capability lists, bridge
//! loops, bogus BARs) are turned into `None`, empty iterators or a log line;
//! nothing here panics on them.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod access;
mod bar;
mod caps;
mod class;
mod header;
pub mod ids;
pub mod msi;
pub mod regs;
mod scan;

#[cfg(test)]
mod tests;

pub use access::{Bdf, ConfigAccess, DEVICES_PER_BUS, FUNCTIONS_PER_DEVICE};
pub use bar::{Bar, MAX_BARS};
pub use caps::{
    CAP_ID_MSI, CAP_ID_MSIX, CAP_ID_PCIE, CAP_ID_POWER_MANAGEMENT, CAP_ID_VENDOR, Capabilities,
    Capability, MAX_CAPABILITIES,
};
pub use class::{ClassCode, class_name};
pub use header::{BridgeBuses, Command, ConfigSpace, HeaderKind, Status, SubsystemId};
pub use scan::{PciFunction, enumerate, enumerate_from};
