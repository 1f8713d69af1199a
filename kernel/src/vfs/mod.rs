//! Files for the kernel: the ext2 mount on the first disk that holds one, inodes whose
//! data lives in the page cache, and open files with their own writeback-error cursor.
//! (Mount table, fd tables, devfs and procfs arrive with the userland.)

pub mod ext2;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use ::fs::error::FsError;
use ::fs::ext2::{Ext2, MountOptions};
use drivers::block::BlockDevice;
use mm::page_cache::{CachedFile, IoError, PageCache};
use spin::{Mutex, Once};

use self::ext2::{DiskBlocks, FilePages};
use crate::block::{self, Disk};
use crate::{kprintln, memory, time};

/// A process's open files and working directory (placeholder until the fd table lands).
pub struct ProcessFiles;

static PAGE_CACHE: Once<PageCache> = Once::new();

/// The system's page cache.
pub fn page_cache() -> &'static PageCache {
    PAGE_CACHE.call_once(|| PageCache::new(memory::frames()))
}

/// Keep the page cache's clock (seconds since boot) current, for the age of dirty pages.
fn touch_clock() {
    page_cache().set_now(time::now_ns() / 1_000_000_000);
}

fn io_err(e: IoError) -> FsError {
    match e.0 {
        28 => FsError::NoSpace,
        27 => FsError::FileTooBig,
        _ => FsError::Io,
    }
}

/// A file's in-memory side: its page-cache index and its size.
pub struct Inode {
    pub ino: u32,
    cache: Arc<CachedFile>,
    size: AtomicU64,
}

/// A mounted ext2 file system.
pub struct Mount {
    pub disk: Arc<Disk>,
    pub fs: Arc<Mutex<Ext2>>,
    inodes: Mutex<BTreeMap<u32, Arc<Inode>>>,
}

/// An open file: an inode plus the writeback errors this description has seen.
pub struct OpenFile {
    pub inode: Arc<Inode>,
    mount: Arc<Mount>,
    seen_errors: u64,
}

static MNT: Once<Arc<Mount>> = Once::new();

/// The file system mounted at `/mnt`, if any.
pub fn mnt() -> Option<Arc<Mount>> {
    MNT.get().cloned()
}

/// Mount the first disk holding an ext2 file system (read-write). Disks without one are
/// skipped with a debug line; a disk with an unusable ext2 is reported.
pub fn mount_first_ext2() -> Option<Arc<Mount>> {
    for d in block::disks() {
        if d.info().read_only {
            continue;
        }
        let dev = Arc::new(DiskBlocks { disk: d.clone() });
        match Ext2::mount(dev, MountOptions { read_only: false }) {
            Ok(mut fs) => {
                fs.set_clock(Arc::new(|| (time::now_ns() / 1_000_000_000) as u32));
                let st = fs.statfs();
                kprintln!(
                    "mounted {} (ext2, {} byte blocks, {st:?}) at /mnt",
                    d.name(),
                    fs.block_size()
                );
                let m = Arc::new(Mount {
                    disk: d.clone(),
                    fs: Arc::new(Mutex::new(fs)),
                    inodes: Mutex::new(BTreeMap::new()),
                });
                return Some(MNT.call_once(|| m).clone());
            }
            Err(FsError::Invalid) | Err(FsError::Unsupported) | Err(FsError::Corrupt) => {
                log::debug!("{}: no usable ext2", d.name());
            }
            Err(e) => log::warn!("{}: ext2 mount failed: {e:?}", d.name()),
        }
    }
    None
}

fn split(path: &str) -> (&str, &str) {
    let p = path.trim_end_matches('/');
    match p.rfind('/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => ("", p),
    }
}

/// The inode of `path` relative to the root ("" is the root itself).
fn lookup_path(fs: &mut Ext2, path: &str) -> Result<u32, FsError> {
    if path.trim_matches('/').is_empty() {
        Ok(::fs::ext2::ROOT_INO)
    } else {
        fs.resolve(path.as_bytes())
    }
}

impl Mount {
    fn resolve(&self, path: &str) -> Result<u32, FsError> {
        lookup_path(&mut self.fs.lock(), path)
    }

    fn inode(self: &Arc<Self>, ino: u32) -> Result<Arc<Inode>, FsError> {
        if let Some(i) = self.inodes.lock().get(&ino) {
            return Ok(i.clone());
        }
        let size = {
            let mut fs = self.fs.lock();
            fs.hold(ino);
            fs.stat(ino)?.size
        };
        let io = FilePages {
            fs: self.fs.clone(),
            disk: self.disk.clone(),
            ino,
        };
        let inode = Arc::new(Inode {
            ino,
            cache: page_cache().open(Box::new(io)),
            size: AtomicU64::new(size),
        });
        Ok(self.inodes.lock().entry(ino).or_insert(inode).clone())
    }

    /// Open `path` (relative to the mount's root), creating a regular file if asked.
    pub fn open(self: &Arc<Self>, path: &str, create: bool) -> Result<OpenFile, FsError> {
        let ino = match self.resolve(path) {
            Ok(ino) => ino,
            Err(FsError::NotFound) if create => {
                let (dir, name) = split(path);
                let mut fs = self.fs.lock();
                let parent = lookup_path(&mut fs, dir)?;
                fs.create(parent, name.as_bytes(), 0o100644)?
            }
            Err(e) => return Err(e),
        };
        let inode = self.inode(ino)?;
        let seen_errors = inode.cache.error_cursor();
        Ok(OpenFile {
            inode,
            mount: self.clone(),
            seen_errors,
        })
    }

    /// Make a directory.
    pub fn mkdir(&self, path: &str) -> Result<u32, FsError> {
        let (dir, name) = split(path);
        let mut fs = self.fs.lock();
        let parent = lookup_path(&mut fs, dir)?;
        fs.mkdir(parent, name.as_bytes(), 0o40755)
    }

    /// Rename `from` to `to`.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        let ((fd, fname), (td, tname)) = (split(from), split(to));
        let mut fs = self.fs.lock();
        let (a, b) = (lookup_path(&mut fs, fd)?, lookup_path(&mut fs, td)?);
        fs.rename(a, fname.as_bytes(), b, tname.as_bytes())
    }

    /// Remove the name `path`; when it was the last link, the cached pages go too.
    pub fn unlink(&self, path: &str) -> Result<(), FsError> {
        let (dir, name) = split(path);
        let ino = {
            let mut fs = self.fs.lock();
            let parent = lookup_path(&mut fs, dir)?;
            let ino = fs.lookup(parent, name.as_bytes())?;
            fs.unlink(parent, name.as_bytes())?;
            ino
        };
        let gone = self
            .fs
            .lock()
            .stat(ino)
            .map(|s| s.nlink == 0)
            .unwrap_or(true);
        if gone && let Some(inode) = self.inodes.lock().remove(&ino) {
            // The data has nowhere to go: drop the pages, then let ext2 free the blocks.
            let _ = inode.cache.truncate(0);
            self.fs.lock().release(ino)?;
        }
        Ok(())
    }

    /// Write back every file's pages, then the metadata, then flush the disk.
    pub fn sync(&self) -> Result<(), FsError> {
        let data = page_cache().sync_all().map_err(io_err);
        let meta = self.fs.lock().sync();
        data.and(meta)
    }
}

impl OpenFile {
    /// Current size in bytes.
    pub fn size(&self) -> u64 {
        self.inode.size.load(Ordering::Acquire)
    }

    /// Read at `offset` through the page cache.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        self.inode
            .cache
            .read(offset, buf, self.size())
            .map_err(io_err)
    }

    /// Write at `offset` through the page cache; the size grows as needed (blocks are
    /// allocated at writeback).
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<usize, FsError> {
        let max = self.mount.fs.lock().max_file_size();
        if offset.saturating_add(data.len() as u64) > max {
            return Err(FsError::FileTooBig);
        }
        // The size grows *before* the pages are dirtied: writeback triggered by memory
        // pressure in the middle of this write only writes blocks inside the size, so the
        // new pages must already be inside it.
        let old = self.size();
        let end = offset + data.len() as u64;
        if end > old {
            self.mount.fs.lock().set_size(self.inode.ino, end)?;
            self.inode.size.store(end, Ordering::Release);
        }
        touch_clock();
        let result = self.inode.cache.write(offset, data, old).map_err(io_err);
        let done = offset + *result.as_ref().unwrap_or(&0) as u64;
        if end > old && done < end {
            // Short or failed write: the file ends where the data does.
            let keep = done.max(old);
            self.inode.size.store(keep, Ordering::Release);
            self.mount.fs.lock().set_size(self.inode.ino, keep)?;
        }
        let n = result?;
        Ok(n)
    }

    /// Set the size: pages past it leave the cache first, then ext2 frees the blocks.
    pub fn truncate(&self, size: u64) -> Result<(), FsError> {
        self.inode.cache.truncate(size).map_err(io_err)?;
        self.mount.fs.lock().truncate(self.inode.ino, size)?;
        self.inode.size.store(size, Ordering::Release);
        Ok(())
    }

    /// Data, then metadata, then the disk's cache; reports a writeback error since this
    /// description last looked, even one from background writeback.
    pub fn fsync(&mut self) -> Result<(), FsError> {
        let data = self
            .inode
            .cache
            .fsync(&mut self.seen_errors)
            .map_err(io_err);
        let meta = self.mount.fs.lock().fsync_inode(self.inode.ino);
        data.and(meta)
    }
}
