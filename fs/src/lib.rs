//! File systems: ext2 and the initramfs (cpio newc).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
