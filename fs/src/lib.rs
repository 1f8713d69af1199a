//! File systems: ext2 (read/write) over a block device, with a metadata block
//! cache. (The initramfs cpio reader lives here too once it lands.)
//!
//! Nothing in this crate panics on disk content: corrupt structures and device
//! errors come back as [`FsError`] values.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod bcache;
pub mod blockdev;
pub mod cpio;
pub mod error;
pub mod ext2;

pub use blockdev::{BlockDev, FaultDev, MemDev, SECTOR_SIZE};
pub use error::{FsError, Result};
pub use ext2::{Clock, DirEntry, Ext2, FileType, FsStats, MountOptions, ROOT_INO, Stat};
