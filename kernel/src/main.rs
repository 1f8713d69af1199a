//! The AliasOS kernel binary: the bootloader's entry point hands over to `kernel::init`.
#![no_std]
#![no_main]

use bootloader_api::{BootInfo, entry_point};

entry_point!(main, config = &kernel::BOOTLOADER_CONFIG);

fn main(boot_info: &'static mut BootInfo) -> ! {
    kernel::init::start(boot_info)
}
