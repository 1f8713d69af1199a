//! NVMe controllers and their namespaces.
//!
//! [`NvmeController::probe`] takes over a PCI function of class 01/08/02: it maps BAR0,
//! programs MSI-X entry 0 if the kernel gives it a message, resets the controller, sets
//! up the admin queue, identifies the controller and its namespaces and creates one I/O
//! queue pair (the structure for one per CPU: a queue pair is a value, and commands carry
//! the namespace). Each namespace with 512-byte blocks is an [`NvmeDisk`], a
//! [`crate::block::BlockDevice`]:
//!
//! - READ, WRITE and FLUSH (FLUSH only when the controller reports a volatile write
//!   cache); up to 63 commands in flight; requests of up to 32 MiB, cut into commands of at
//!   most 1 MiB (less if MDTS says so) where PRPs can describe them ([`prp::pieces`]);
//! - the data pointer is PRP entries built from the request's segments, with a PRP list
//!   page per command slot ([`prp`]), or, where the controller offers them, an SGL for
//!   requests of large runs or of segments PRPs would cut into more commands ([`sgl`];
//!   the boot line says "SGLs"; the kernel's `nvme_sgl=off` keeps to PRPs);
//! - completion status codes become block errors ([`command::Cqe::status`]);
//! - [`NvmeController::handle_interrupt`] is both the interrupt handler and the poll
//!   routine; [`NvmeController::check_timeouts`] resets a controller whose commands
//!   hang, fails them with [`crate::block::BlockError::Timeout`] and carries on.
//!
//! Register offsets ([`regs`]), entry encodings ([`command`]), PRP and SGL planning
//! ([`prp`], [`sgl`]) are pure and host-tested; the driver as a whole is tested against QEMU's `nvme`
//! device (the block suite in `tests/tests/block.rs`).
#![deny(missing_docs)]

pub mod command;
mod controller;
pub mod prp;
pub mod regs;
pub mod sgl;

pub use controller::{BAR_INDEX, CqCursor, NvmeController, NvmeDisk, NvmeError};
