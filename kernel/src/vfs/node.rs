//! What every file system provides: nodes (files, directories, symbolic links, devices)
//! behind the [`Node`] trait, per-open behaviour behind [`FileOps`], and the buffers
//! file data moves through ([`ReadBuf`], [`WriteBuf`]): kernel slices, or user memory
//! visited one page piece at a time so data goes straight between page-cache frames
//! and user pages.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;

use drivers::block::Op;
use mm::FrameRef;
use mm::phys::FramePiece;

use super::direct::DirectIo;
use crate::errno::Errno;
use crate::uaccess;

/// The type of a node (the `S_IF*` bits of its mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

pub const S_IFMT: u32 = 0o170000;
pub const S_IFSOCK: u32 = 0o140000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFBLK: u32 = 0o060000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFIFO: u32 = 0o010000;

impl FileKind {
    /// The `S_IF*` bits.
    pub const fn mode_bits(self) -> u32 {
        match self {
            FileKind::Regular => S_IFREG,
            FileKind::Directory => S_IFDIR,
            FileKind::Symlink => S_IFLNK,
            FileKind::CharDevice => S_IFCHR,
            FileKind::BlockDevice => S_IFBLK,
            FileKind::Fifo => S_IFIFO,
            FileKind::Socket => S_IFSOCK,
        }
    }

    /// The kind encoded in `mode`, if any.
    pub const fn from_mode(mode: u32) -> Option<FileKind> {
        Some(match mode & S_IFMT {
            S_IFREG => FileKind::Regular,
            S_IFDIR => FileKind::Directory,
            S_IFLNK => FileKind::Symlink,
            S_IFCHR => FileKind::CharDevice,
            S_IFBLK => FileKind::BlockDevice,
            S_IFIFO => FileKind::Fifo,
            S_IFSOCK => FileKind::Socket,
            _ => return None,
        })
    }

    /// The `DT_*` value of `getdents64`.
    pub const fn dt(self) -> u8 {
        match self {
            FileKind::Fifo => 1,
            FileKind::CharDevice => 2,
            FileKind::Directory => 4,
            FileKind::BlockDevice => 6,
            FileKind::Regular => 8,
            FileKind::Symlink => 10,
            FileKind::Socket => 12,
        }
    }
}

/// `st_dev`/`st_rdev` encoding of Linux (`makedev`).
pub const fn makedev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (major as u64, minor as u64);
    (mi & 0xff) | ((ma & 0xfff) << 8) | ((mi & !0xff) << 12) | ((ma & !0xfff) << 32)
}

/// The time for file timestamps: seconds since the Unix epoch (the CMOS clock read at
/// boot plus the monotonic clock).
pub fn now() -> i64 {
    (crate::time::wall_ns() / 1_000_000_000) as i64
}

/// File attributes in Linux terms (what `stat` reports; times in seconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    /// Type and permission bits.
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub blksize: u32,
    /// Allocated space in 512-byte units.
    pub blocks: u64,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
}

/// One directory entry from [`Node::readdir`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub ino: u64,
    /// `DT_*` (0 when unknown).
    pub dtype: u8,
    /// The cursor of the entry after this one (`d_off`).
    pub next: u64,
}

/// Where read data goes: a kernel slice, or user memory `[va, va + len)`.
pub enum ReadBuf<'a> {
    Kernel(&'a mut [u8]),
    User { va: u64, len: usize },
}

impl ReadBuf<'_> {
    /// The user range, if the destination is user memory.
    pub fn user(&self) -> Option<(u64, usize)> {
        match self {
            ReadBuf::User { va, len } => Some((*va, *len)),
            ReadBuf::Kernel(_) => None,
        }
    }

    /// Bytes wanted.
    pub fn len(&self) -> usize {
        match self {
            ReadBuf::Kernel(s) => s.len(),
            ReadBuf::User { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop the first `n` bytes (after a partial transfer).
    pub fn advance(&mut self, n: usize) {
        match self {
            ReadBuf::Kernel(s) => {
                let s2 = core::mem::take(s);
                let n = n.min(s2.len());
                *s = &mut s2[n..];
            }
            ReadBuf::User { va, len } => {
                let n = n.min(*len);
                *va += n as u64;
                *len -= n;
            }
        }
    }

    /// Hand `f` the destination piece by piece as [`ReadBuf::fill`], user memory as frame
    /// pieces rather than slices: for sources that may be the very frame of a user page
    /// (the page cache's, mapped `MAP_SHARED`), copied with [`mm::phys::copy_piece`].
    pub fn fill_pieces(
        &mut self,
        mut f: impl FnMut(Piece<'_>) -> Result<usize, Errno>,
    ) -> Result<usize, Errno> {
        match self {
            ReadBuf::Kernel(s) => {
                if s.is_empty() {
                    return Ok(0);
                }
                let len = s.len();
                f(Piece::Kernel(s)).map(|n| n.min(len))
            }
            ReadBuf::User { va, len } => {
                if *len == 0 {
                    return Ok(0);
                }
                uaccess::user_frames(*va, *len, true, |p| f(Piece::User(p)))
            }
        }
    }

    /// Fill from the page-cache file `cache` of `size` bytes at `offset` (its frames
    /// straight to the destination; the page cache counts the copy). User pieces are
    /// copied frame to frame: the buffer may be a shared mapping of the very page read.
    pub fn fill_from_cache(
        &mut self,
        cache: &mm::page_cache::CachedFile,
        offset: u64,
        size: u64,
    ) -> Result<usize, Errno> {
        if offset >= size {
            return Ok(0);
        }
        let mut pos = offset;
        self.fill_pieces(|piece| {
            let n = match piece {
                Piece::Kernel(s) => cache.read(pos, s, size),
                Piece::User(p) => cache.read_to_frame(pos, p, size),
            }
            .map_err(Errno::from)?;
            pos += n as u64;
            Ok(n)
        })
    }

    /// Hand `f` the destination piece by piece (pieces of user memory never cross a
    /// page); `f` fills as much of its piece as it can and returns how much; a short
    /// count ends the walk. An error before any byte is the result; after some bytes
    /// the count so far is.
    /// (Only for sources that cannot be a user frame: pipes, the terminal, devices.)
    pub fn fill(
        &mut self,
        mut f: impl FnMut(&mut [u8]) -> Result<usize, Errno>,
    ) -> Result<usize, Errno> {
        self.fill_pieces(|piece| match piece {
            Piece::Kernel(s) => f(s),
            Piece::User(p) => p.with_bytes_mut(&mut f),
        })
    }
}

/// A piece of a read's destination or a write's source: kernel memory, or a piece of a
/// user page named by its frame (never as a slice: it may be the other side's frame).
pub enum Piece<'a> {
    Kernel(&'a mut [u8]),
    User(FramePiece<'a>),
}

/// A piece of a write's source (see [`Piece`]).
pub enum SourcePiece<'a> {
    Kernel(&'a [u8]),
    User(FramePiece<'a>),
}

impl SourcePiece<'_> {
    pub fn len(&self) -> usize {
        match self {
            SourcePiece::Kernel(s) => s.len(),
            SourcePiece::User(p) => p.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its first `n` bytes at most.
    pub fn truncate(self, n: usize) -> Self {
        match self {
            SourcePiece::Kernel(s) => SourcePiece::Kernel(&s[..n.min(s.len())]),
            SourcePiece::User(p) => SourcePiece::User(p.sub(0, n.min(p.len()))),
        }
    }
}

/// Where written data comes from: a kernel slice, or user memory `[va, va + len)`.
pub enum WriteBuf<'a> {
    Kernel(&'a [u8]),
    User { va: u64, len: usize },
}

impl WriteBuf<'_> {
    /// The user range, if the source is user memory.
    pub fn user(&self) -> Option<(u64, usize)> {
        match self {
            WriteBuf::User { va, len } => Some((*va, *len)),
            WriteBuf::Kernel(_) => None,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            WriteBuf::Kernel(s) => s.len(),
            WriteBuf::User { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop the first `n` bytes (after a partial transfer).
    pub fn advance(&mut self, n: usize) {
        match self {
            WriteBuf::Kernel(s) => *s = &s[n.min(s.len())..],
            WriteBuf::User { va, len } => {
                let n = n.min(*len);
                *va += n as u64;
                *len -= n;
            }
        }
    }

    /// Hand `f` the source piece by piece as [`WriteBuf::drain`], user memory as frame
    /// pieces (see [`ReadBuf::fill_pieces`]).
    pub fn drain_pieces(
        &mut self,
        mut f: impl FnMut(SourcePiece<'_>) -> Result<usize, Errno>,
    ) -> Result<usize, Errno> {
        match self {
            WriteBuf::Kernel(s) => {
                if s.is_empty() {
                    return Ok(0);
                }
                let len = s.len();
                f(SourcePiece::Kernel(s)).map(|n| n.min(len))
            }
            WriteBuf::User { va, len } => {
                if *len == 0 {
                    return Ok(0);
                }
                uaccess::user_frames(*va, *len, false, |p| f(SourcePiece::User(p)))
            }
        }
    }

    /// Hand `f` the source piece by piece, as [`ReadBuf::fill`] (and for the same kinds of
    /// destination).
    pub fn drain(
        &mut self,
        mut f: impl FnMut(&[u8]) -> Result<usize, Errno>,
    ) -> Result<usize, Errno> {
        self.drain_pieces(|piece| match piece {
            SourcePiece::Kernel(s) => f(s),
            SourcePiece::User(p) => p.with_bytes(&mut f),
        })
    }
}

/// A shared node.
pub type NodeRef = Arc<dyn Node>;

/// A file, directory, symbolic link or device of some file system. Names given to the
/// directory operations are single components, never `.` or `..` (the path walk handles
/// those), at most 255 bytes, without `/` or NUL.
///
/// Every operation has a default that fails the way Linux does for a node that does not
/// support it.
pub trait Node: Send + Sync + Any {
    /// Its type.
    fn kind(&self) -> FileKind;

    /// Its attributes.
    fn stat(&self) -> Result<Stat, Errno>;

    /// Bytes of data (for `SEEK_END` and `O_APPEND`).
    fn size(&self) -> u64 {
        self.stat().map(|s| s.size).unwrap_or(0)
    }

    // ---- directories -------------------------------------------------------------

    /// The node called `name` in this directory.
    fn lookup(&self, _name: &[u8]) -> Result<NodeRef, Errno> {
        Err(Errno::ENOTDIR)
    }

    /// Create a regular file (EEXIST if the name exists).
    fn create(&self, _name: &[u8], _mode: u32) -> Result<NodeRef, Errno> {
        Err(self.not_dir_or(Errno::EPERM))
    }

    fn mkdir(&self, _name: &[u8], _mode: u32) -> Result<(), Errno> {
        Err(self.not_dir_or(Errno::EPERM))
    }

    fn symlink(&self, _name: &[u8], _target: &[u8]) -> Result<(), Errno> {
        Err(self.not_dir_or(Errno::EPERM))
    }

    /// Make `name` another link to `target` (a node of the same file system).
    fn link(&self, _name: &[u8], _target: &NodeRef) -> Result<(), Errno> {
        Err(self.not_dir_or(Errno::EPERM))
    }

    /// Remove a name that is not a directory.
    fn unlink(&self, _name: &[u8]) -> Result<(), Errno> {
        Err(self.not_dir_or(Errno::EPERM))
    }

    /// Remove an empty directory.
    fn rmdir(&self, _name: &[u8]) -> Result<(), Errno> {
        Err(self.not_dir_or(Errno::EPERM))
    }

    /// Move `old` to `new_dir/new` (same file system), replacing a target of the same
    /// kind (an empty directory for a directory).
    fn rename(&self, _old: &[u8], _new_dir: &NodeRef, _new: &[u8]) -> Result<(), Errno> {
        Err(self.not_dir_or(Errno::EPERM))
    }

    /// Entries starting at `cursor` (0 = the start, then the `next` of the last entry
    /// used), in batches; an empty batch is the end.
    fn readdir(&self, _cursor: u64) -> Result<Vec<DirEntry>, Errno> {
        Err(Errno::ENOTDIR)
    }

    // ---- symbolic links ----------------------------------------------------------

    fn readlink(&self) -> Result<Vec<u8>, Errno> {
        Err(Errno::EINVAL)
    }

    // ---- data --------------------------------------------------------------------

    fn read_at(&self, _offset: u64, _buf: &mut ReadBuf) -> Result<usize, Errno> {
        Err(self.is_dir_or(Errno::EINVAL))
    }

    fn write_at(&self, _offset: u64, _buf: &mut WriteBuf) -> Result<usize, Errno> {
        Err(self.is_dir_or(Errno::EINVAL))
    }

    fn truncate(&self, _size: u64) -> Result<(), Errno> {
        Err(self.is_dir_or(Errno::EINVAL))
    }

    fn fsync(&self, _data_only: bool) -> Result<(), Errno> {
        Ok(())
    }

    /// Take `len` bytes of the page-cache file `src` from `src_off` at `offset` straight
    /// from its frames (a device DMAs from them); EOPNOTSUPP where the node cannot (the
    /// caller copies through a buffer).
    fn copy_from_cached(
        &self,
        _offset: u64,
        _src: &super::ext2::Inode,
        _src_off: u64,
        _len: usize,
    ) -> Result<usize, Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Fill `frames` (whole frames) with the node's bytes from `offset` by DMA and hand
    /// them back; EOPNOTSUPP where the node cannot.
    fn fill_frames(&self, _offset: u64, _frames: Vec<FrameRef>) -> Result<Vec<FrameRef>, Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    /// A device's `ioctl`; ENOTTY where the node has none.
    fn ioctl(&self, _cmd: u32, _arg: u64) -> Result<u64, Errno> {
        Err(Errno::ENOTTY)
    }

    /// Copy `len` bytes of disk `src` from byte `src_off` to `offset` here without the
    /// page cache or the CPU (a raw device from another: by the disk itself, or through
    /// transit frames); the bytes done, whole sectors. EOPNOTSUPP where the node cannot
    /// (the caller copies another way).
    fn copy_from_disk(
        &self,
        _offset: u64,
        _src: &Arc<crate::block::Disk>,
        _src_off: u64,
        _len: usize,
    ) -> Result<usize, Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Direct I/O (`O_DIRECT`): plan `op` of up to `len` bytes at `offset` by DMA
    /// straight to or from user memory at `va` (pinned by the plan); EINVAL if the
    /// three are not aligned as Linux requires. EOPNOTSUPP where the node has no direct
    /// path: the caller then goes through the page cache as usual.
    fn direct(&self, _op: Op, _offset: u64, _va: u64, _len: usize) -> Result<DirectIo, Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Change the permission bits.
    fn chmod(&self, _mode: u32) -> Result<(), Errno> {
        Err(Errno::EPERM)
    }

    /// Per-open state. The default reads and writes the node at the description's
    /// offset; devices, pipes, generated files and ext2 files (their writeback-error
    /// cursor) return their own.
    fn open(&self, me: &NodeRef, _flags: u32) -> Result<Box<dyn FileOps>, Errno> {
        Ok(Box::new(NodeFile(me.clone())))
    }

    // ---- helpers for the defaults ------------------------------------------------

    #[doc(hidden)]
    fn not_dir_or(&self, e: Errno) -> Errno {
        if self.kind() == FileKind::Directory {
            e
        } else {
            Errno::ENOTDIR
        }
    }

    #[doc(hidden)]
    fn is_dir_or(&self, e: Errno) -> Errno {
        if self.kind() == FileKind::Directory {
            Errno::EISDIR
        } else {
            e
        }
    }
}

/// `node` as its concrete type, if it is one.
pub fn downcast<T: Node>(node: &NodeRef) -> Option<&T> {
    let any: &dyn Any = node.as_ref();
    any.downcast_ref::<T>()
}

/// What an open file description does with reads, writes and the rest.
pub trait FileOps: Send + Sync {
    /// Read at `pos` (ignored by streams).
    fn read(&self, pos: u64, buf: &mut ReadBuf, nonblock: bool) -> Result<usize, Errno>;

    /// Write at `pos` (ignored by streams).
    fn write(&self, pos: u64, buf: &mut WriteBuf, nonblock: bool) -> Result<usize, Errno>;

    /// A stream (pipe, terminal): no offset, `lseek`/`pread` fail with ESPIPE.
    fn stream(&self) -> bool {
        false
    }

    /// Bytes of data, for `SEEK_END` and `O_APPEND`.
    fn size(&self) -> u64;

    fn fsync(&self, _data_only: bool) -> Result<(), Errno> {
        Ok(())
    }

    fn ioctl(&self, _cmd: u32, _arg: u64) -> Result<u64, Errno> {
        Err(Errno::ENOTTY)
    }

    /// The page-cache inode behind the data, for files whose pages live in the page
    /// cache (ext2 regular files): what `mmap` maps.
    fn cached_inode(&self) -> Option<Arc<super::ext2::Inode>> {
        None
    }

    /// Copy `len` bytes of the page-cache file `src` from `src_off` to `pos` in this
    /// file inside the kernel (sendfile, `copy_file_range`); EOPNOTSUPP where the data
    /// is not in the page cache (the caller then copies through a buffer).
    fn copy_range_from(
        &self,
        _pos: u64,
        _src: &super::ext2::Inode,
        _src_off: u64,
        _len: usize,
    ) -> Result<usize, Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Whole pages from `pos` (page-aligned), up to `len` bytes, whose frames `fill`
    /// fills by DMA from a device (see `ext2::Inode::fill_from`); EOPNOTSUPP where the
    /// file has no page cache.
    fn fill_from(
        &self,
        _pos: u64,
        _len: usize,
        _fill: &mut dyn FnMut(u64, Vec<FrameRef>) -> Result<Vec<FrameRef>, Errno>,
    ) -> Result<usize, Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    /// A source that fills whole frames by DMA (see [`Node::fill_frames`]).
    fn fill_frames(&self, _pos: u64, _frames: Vec<FrameRef>) -> Result<Vec<FrameRef>, Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Direct I/O at `pos` (see [`Node::direct`]).
    fn direct(&self, _op: Op, _pos: u64, _va: u64, _len: usize) -> Result<DirectIo, Errno> {
        Err(Errno::EOPNOTSUPP)
    }
}

/// The default per-open state: reads and writes go to the node.
pub struct NodeFile(pub NodeRef);

impl FileOps for NodeFile {
    fn read(&self, pos: u64, buf: &mut ReadBuf, _nonblock: bool) -> Result<usize, Errno> {
        self.0.read_at(pos, buf)
    }

    fn write(&self, pos: u64, buf: &mut WriteBuf, _nonblock: bool) -> Result<usize, Errno> {
        self.0.write_at(pos, buf)
    }

    fn size(&self) -> u64 {
        self.0.size()
    }

    fn fsync(&self, data_only: bool) -> Result<(), Errno> {
        self.0.fsync(data_only)
    }

    fn copy_range_from(
        &self,
        pos: u64,
        src: &super::ext2::Inode,
        src_off: u64,
        len: usize,
    ) -> Result<usize, Errno> {
        self.0.copy_from_cached(pos, src, src_off, len)
    }

    fn fill_frames(&self, pos: u64, frames: Vec<FrameRef>) -> Result<Vec<FrameRef>, Errno> {
        self.0.fill_frames(pos, frames)
    }

    fn ioctl(&self, cmd: u32, arg: u64) -> Result<u64, Errno> {
        self.0.ioctl(cmd, arg)
    }

    fn direct(&self, op: Op, pos: u64, va: u64, len: usize) -> Result<DirectIo, Errno> {
        self.0.direct(op, pos, va, len)
    }
}

/// Check a single name component for the directory operations.
pub fn check_name(name: &[u8]) -> Result<(), Errno> {
    if name.is_empty() {
        return Err(Errno::ENOENT);
    }
    if name.len() > 255 {
        return Err(Errno::ENAMETOOLONG);
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}
