//! The virtual file system: nodes of several file systems behind one trait
//! ([`node::Node`]), a mount table by path ([`mount`]), path walks relative to a working
//! directory with symbolic links and mount crossing ([`path`]), open file descriptions
//! and per-process descriptor tables ([`file`]), and the path operations of the system
//! calls ([`ops`]).
//!
//! File systems: ramfs at `/` (filled from the initramfs), devfs at `/dev`, procfs at
//! `/proc`, ext2 on block devices (the first one at `/mnt`, with file data in the page
//! cache: DMA into page frames, and copies from those frames straight to user pages).
//! Pipes live here too.

pub mod aio;
pub mod devfs;
pub mod direct;
pub mod ext2;
pub mod file;
pub mod initramfs;
pub mod mount;
pub mod node;
pub mod ops;
pub mod path;
pub mod pipe;
pub mod procfs;
pub mod ramfs;
pub mod raw_cache;
pub mod tty;
pub mod writeback;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use drivers::block::BlockDevice;

pub use ext2::{Inode, Mount, OpenFile};
pub use file::{File, ProcessFiles};
pub use node::{DirEntry, FileKind, FileOps, Node, NodeRef, ReadBuf, Stat, WriteBuf};
pub use path::Loc;

use crate::errno::Errno;
use crate::task::WaitQueue;
use crate::{block, kprintln};

pub use crate::memory::page_cache;

/// Something to wait for, without losing a wake-up: take a [`snapshot`](Event::snapshot)
/// before checking the condition, then [`wait`](Event::wait) with it if the condition
/// does not hold; whoever changes the state calls [`notify`](Event::notify) (also from
/// interrupt handlers).
pub struct Event {
    seq: AtomicU64,
    wq: WaitQueue,
}

impl Default for Event {
    fn default() -> Self {
        Self::new()
    }
}

impl Event {
    pub const fn new() -> Event {
        Event {
            seq: AtomicU64::new(0),
            wq: WaitQueue::new(),
        }
    }

    pub fn snapshot(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Block until a notification after `seen` was taken; EINTR if a fatal signal
    /// arrives for the waiting process first.
    pub fn wait(&self, seen: u64) -> Result<(), Errno> {
        let mut killed = false;
        self.wq.wait_until(|| {
            killed = crate::task::kill_pending();
            killed || self.seq.load(Ordering::Acquire) != seen
        });
        if killed { Err(Errno::EINTR) } else { Ok(()) }
    }

    pub fn notify(&self) {
        self.seq.fetch_add(1, Ordering::Release);
        self.wq.wake_all();
    }
}

/// Set up the root file system: a ramfs with `/bin`, `/dev`, `/proc`, `/mnt`, `/etc`,
/// `/tmp`, filled from the cpio "newc" `initramfs` (may be empty), devfs on `/dev`,
/// procfs on `/proc`; and start console input (serial and keyboard interrupts).
pub fn init_root(initramfs: &'static [u8]) {
    mount::root_mount();
    if !initramfs.is_empty() {
        match mount::root_ramfs() {
            Some(root) => {
                let s = initramfs::unpack(&root, initramfs);
                kprintln!(
                    "initramfs: {} KiB, {} files, {} directories, {} symlinks{}",
                    initramfs.len() >> 10,
                    s.files,
                    s.dirs,
                    s.symlinks,
                    if s.skipped > 0 {
                        alloc::format!(", {} entries skipped", s.skipped)
                    } else {
                        alloc::string::String::new()
                    }
                );
            }
            None => log::error!("initramfs: the root is not a ramfs"),
        }
    }
    tty::init_input();
}

/// Mount the first disk holding an ext2 file system at `/mnt` (read-write). Disks
/// without one are skipped with a debug line; a disk with an unusable ext2 is reported.
pub fn mount_first_ext2() -> Option<Arc<Mount>> {
    if let Some(m) = mnt() {
        return Some(m);
    }
    for d in block::disks() {
        if d.info().read_only {
            continue;
        }
        match mount::mount_ext2(b"/mnt", d, false) {
            Ok(m) => {
                let (bs, st) = {
                    let fs = m.fs.lock();
                    (fs.block_size(), fs.statfs())
                };
                kprintln!(
                    "mounted {} (ext2, {bs} byte blocks, {st:?}) at /mnt",
                    d.name()
                );
                return Some(m);
            }
            Err(Errno::EINVAL) => log::debug!("{}: no usable ext2", d.name()),
            Err(e) => log::warn!("{}: ext2 mount failed: {e:?}", d.name()),
        }
    }
    None
}

/// The ext2 file system mounted at `/mnt`, if any.
pub fn mnt() -> Option<Arc<Mount>> {
    mount::ext2_at(b"/mnt")
}

/// Largest executable [`load_executable`] reads.
const MAX_EXECUTABLE: usize = 64 << 20;

/// The bytes of the executable `path` (relative to the working directory of `files`,
/// symbolic links followed). ENOENT/ENOTDIR from the walk; EACCES unless it is a
/// regular file with an x bit.
pub fn load_executable(files: &ProcessFiles, path: &[u8]) -> Result<Vec<u8>, Errno> {
    let cwd = files.cwd();
    let l = path::resolve(&cwd, path, true)?;
    let node = l.node();
    if node.kind() != FileKind::Regular {
        return Err(Errno::EACCES);
    }
    if node.stat()?.mode & 0o111 == 0 {
        return Err(Errno::EACCES);
    }
    ops::read_file(&cwd, path, MAX_EXECUTABLE).map_err(|e| match e {
        Errno::EFBIG => Errno::ENOMEM,
        e => e,
    })
}

/// `sync(2)`: write back every cached file page, then every ext2 file system's metadata.
pub fn sync_all() -> Result<(), Errno> {
    let mut r = page_cache()
        .sync_all()
        .map_err(|e| Errno::from(ext2::io_err(e)));
    for m in mount::ext2_mounts() {
        if let Err(e) = m.fs.lock().sync() {
            r = r.and(Err(e.into()));
        }
    }
    r
}

/// Drop the clean metadata blocks every mounted ext2 file system caches
/// (`drop_caches` 2).
pub fn drop_clean_metadata() {
    for m in mount::ext2_mounts() {
        m.fs.lock().drop_clean_metadata();
    }
}

/// Write the metadata of every mounted ext2 file system (after background writeback of
/// file pages).
pub fn sync_metadata() {
    for m in mount::ext2_mounts() {
        if let Err(e) = m.fs.lock().sync() {
            log::error!(
                "background writeback: {} metadata sync failed: {e:?}",
                m.disk.name()
            );
        }
    }
}
