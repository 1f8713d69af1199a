//! Open regular files: an inode plus the writeback errors this description has seen.

use super::*;

/// An open regular file: an inode plus the writeback errors this description has seen.
pub struct OpenFile {
    pub inode: Arc<Inode>,
    pub(super) mount: Arc<Mount>,
    pub(super) seen_errors: spin::Mutex<u64>,
}

impl OpenFile {
    /// Current size in bytes.
    pub fn size(&self) -> u64 {
        self.inode.size()
    }

    /// Read at `offset` through the page cache.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        self.inode
            .read(offset, &mut ReadBuf::Kernel(buf))
            .map_err(errno_fs)
    }

    /// Write at `offset` through the page cache; the size grows as needed (blocks are
    /// allocated at writeback).
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<usize, FsError> {
        let max = self.mount.fs.lock().max_file_size();
        if offset.saturating_add(data.len() as u64) > max {
            return Err(FsError::FileTooBig);
        }
        self.inode
            .write(offset, &mut WriteBuf::Kernel(data))
            .map_err(errno_fs)
    }

    /// Set the size: pages past it leave the cache first, then ext2 frees the blocks.
    pub fn truncate(&self, size: u64) -> Result<(), FsError> {
        self.inode.truncate(size)
    }

    /// Data, then metadata, then the disk's cache; reports a writeback error since this
    /// description last looked, even one from background writeback.
    pub fn fsync(&self) -> Result<(), FsError> {
        let data = {
            let mut seen = *self.seen_errors.lock();
            let r = self.inode.cache.fsync(&mut seen).map_err(io_err);
            *self.seen_errors.lock() = seen;
            r
        };
        let meta = self.mount.fs.lock().fsync_inode(self.inode.ino);
        data.and(meta)
    }
}

/// An errno from the VFS layer back as a file-system error (for the kernel-slice API).
fn errno_fs(e: Errno) -> FsError {
    match e {
        Errno::ENOENT => FsError::NotFound,
        Errno::EEXIST => FsError::Exists,
        Errno::ENOTDIR => FsError::NotDir,
        Errno::EISDIR => FsError::IsDir,
        Errno::ENOSPC => FsError::NoSpace,
        Errno::EFBIG => FsError::FileTooBig,
        Errno::EROFS => FsError::ReadOnly,
        Errno::EINVAL => FsError::Invalid,
        _ => FsError::Io,
    }
}

impl FileOps for OpenFile {
    fn read(&self, pos: u64, buf: &mut ReadBuf, _nonblock: bool) -> Result<usize, Errno> {
        self.inode.read(pos, buf)
    }

    fn write(&self, pos: u64, buf: &mut WriteBuf, _nonblock: bool) -> Result<usize, Errno> {
        if self.mount.read_only {
            return Err(Errno::EROFS);
        }
        self.inode.write(pos, buf)
    }

    fn direct(
        &self,
        op: Op,
        pos: u64,
        va: u64,
        len: usize,
    ) -> Result<crate::vfs::direct::DirectIo, Errno> {
        if op == Op::Write && self.mount.read_only {
            return Err(Errno::EROFS);
        }
        self.inode.direct(op, pos, va, len)
    }

    fn size(&self) -> u64 {
        self.inode.size()
    }

    fn fsync(&self, _data_only: bool) -> Result<(), Errno> {
        OpenFile::fsync(self).map_err(Errno::from)
    }

    fn cached_inode(&self) -> Option<Arc<Inode>> {
        Some(self.inode.clone())
    }

    fn copy_range_from(
        &self,
        pos: u64,
        src: &Inode,
        src_off: u64,
        len: usize,
    ) -> Result<usize, Errno> {
        if self.mount.read_only {
            return Err(Errno::EROFS);
        }
        self.inode.copy_range_from(pos, src, src_off, len)
    }

    fn fill_from(
        &self,
        pos: u64,
        len: usize,
        fill: &mut dyn FnMut(u64, Vec<FrameRef>) -> Result<Vec<FrameRef>, Errno>,
    ) -> Result<usize, Errno> {
        if self.mount.read_only {
            return Err(Errno::EROFS);
        }
        self.inode.fill_from(pos, len, fill)
    }
}

// ---- the VFS node -----------------------------------------------------------------
