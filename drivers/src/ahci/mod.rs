//! AHCI (SATA) host bus adapters and the ATA disks on them.
//!
//! [`AhciController::probe`] takes over a PCI function of class 01/06/01: it maps ABAR
//! (BAR5), programs MSI if the kernel gives it a message, takes the HBA from the BIOS,
//! resets it and sets up every port that has an ATA disk. Each disk is an [`AhciDisk`],
//! a [`crate::block::BlockDevice`]:
//!
//! - one command list, FIS receive area and one command table per slot (248 PRD
//!   entries, one page) per port, all from [`crate::hal::Hal::dma_alloc`];
//! - READ/WRITE DMA EXT (or the LBA28 forms for old disks) and FLUSH CACHE EXT, as
//!   non-queued commands in up to all 32 slots at once (NCQ is not used);
//! - every request segment is its own PRD entry (split at 4 MiB); bounce buffers only
//!   for segments above 4 GiB on an HBA without 64-bit addressing;
//! - errors (task file, host bus, interface, link) stop the port, fail the command that
//!   caused them with [`crate::block::BlockError::Io`], COMRESET the link if the device
//!   stays busy, restart the port and re-issue the other commands; the disk stays usable;
//! - [`AhciController::handle_interrupt`] is both the interrupt handler and the poll
//!   routine; [`AhciController::check_timeouts`] fails commands that hang.
//!
//! The register-poking layer is thin ([`mmio`]); encodings ([`fis`]), IDENTIFY parsing
//! ([`identify`]) and slot bookkeeping ([`slots`]) are pure and host-tested, and the
//! driver as a whole is tested against a simulated HBA.
#![deny(missing_docs)]

mod controller;
pub mod fis;
pub mod identify;
pub mod mmio;
mod port;
pub mod regs;
pub mod slots;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

pub use controller::{ABAR_INDEX, AhciController, AhciError};
pub use identify::Identify;
pub use mmio::{MmioRegs, RegisterIo};
pub use port::{AhciDisk, COMMAND_TIMEOUT_NS, MAX_SEGMENTS, PRDT_ENTRIES};
