//! Device drivers and the block request model.
#![cfg_attr(not(test), no_std)]
pub mod pci;
