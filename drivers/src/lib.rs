//! Device drivers and the block request model. Pure logic is host-tested; hardware is
//! reached through [`hal::Hal`] and [`pci::ConfigAccess`], implemented by the kernel.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod ahci;
pub mod block;
pub mod hal;
pub mod mmio;
pub mod nvme;
pub mod pci;
pub mod virtio_blk;
pub mod virtqueue;
