//! The AliasOS kernel: boot sequence, architecture support, console, memory, PCI, and the
//! in-kernel test suites that `make test` runs in QEMU.
#![no_std]

extern crate alloc;

pub mod arch;
pub mod bench;
pub mod block;
pub mod cmdline;
pub mod console;
pub mod errno;
pub mod init;
pub mod ktest;
pub mod memory;
pub mod panic;
pub mod pci;
pub mod proc;
pub mod profile;
pub mod syscall;
pub mod task;
pub mod time;
pub mod transit;
pub mod uaccess;
pub mod vfs;

use bootloader_api::BootloaderConfig;
use bootloader_api::config::Mapping;

/// How the bootloader must set the machine up for this kernel.
pub const BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    // All of physical memory mapped at a fixed offset: the kernel reaches frames, page
    // tables, ACPI tables and MMIO through it.
    config.mappings.physical_memory = Some(Mapping::Dynamic);
    // Everything the bootloader places dynamically goes in the upper half, leaving the
    // lower half to user address spaces.
    config.mappings.dynamic_range_start = Some(0xffff_8000_0000_0000);
    // A fixed kernel address, so gdb can load the symbols without guessing (`make gdb`).
    config.mappings.kernel_base = Mapping::FixedAddress(KERNEL_BASE);
    config.kernel_stack_size = 256 * 1024;
    config
};

/// Where the kernel image is mapped (it is a position-independent executable).
pub const KERNEL_BASE: u64 = 0xffff_8000_0000_0000;

/// The kernel's version string.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
