//! devfs (`/dev`): `null`, `zero`, `urandom` (and `random`), `console` (and `tty`), and
//! every block device by name (`vda`, `sda`, ...) as a raw device: reads and writes at
//! 512-byte-aligned offsets and sizes, `st_size` the capacity.
//!
//! Raw device data goes through the disk's page cache (`super::raw_cache`), except with
//! `O_DIRECT`, where the disk DMAs straight to and from the caller's pinned pages
//! (`super::direct`).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

use drivers::block::copy::CopyExtent;
use drivers::block::{BlockDevice, Op, Segment};
use mm::FrameRef;
use mm::frame::FRAME_SIZE;

use super::direct::{self, DirectIo, blk_errno};
use super::node::*;
use super::tty;
use crate::block::{self, Disk};
use crate::errno::Errno;
use crate::uaccess;
use mm::page_cache::{CachedFile, pages_of};

/// The character devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Char {
    Null,
    Zero,
    Random,
    URandom,
    Console,
    Tty,
}

const CHARS: [(&[u8], Char, u32, u32); 6] = [
    (b"console", Char::Console, 5, 1),
    (b"null", Char::Null, 1, 3),
    (b"random", Char::Random, 1, 8),
    (b"tty", Char::Tty, 5, 0),
    (b"urandom", Char::URandom, 1, 9),
    (b"zero", Char::Zero, 1, 5),
];

/// First inode number of the block devices.
const BLOCK_INO_BASE: u64 = 100;

/// The `/dev` directory.
pub struct DevDir {
    dev: u64,
}

/// A new devfs instance.
pub fn new(dev: u64) -> NodeRef {
    Arc::new(DevDir { dev })
}

struct CharNode {
    dev: u64,
    ino: u64,
    which: Char,
    rdev: u64,
}

/// A raw block device.
pub struct BlockNode {
    dev: u64,
    ino: u64,
    disk: Arc<Disk>,
}

/// `ioctl(BLKDISCARD)`: erases a range, so it needs a file open for writing (as Linux).
pub const BLKDISCARD: u32 = 0x1277;

/// `st_rdev` of a disk, with Linux's majors: virtio-blk 254, SCSI/SATA 8 (16 minors per
/// disk), NVMe 259.
pub fn disk_rdev(disk: &Disk) -> u64 {
    let name = disk.name().as_bytes();
    let index = block::disks()
        .iter()
        .filter(|d| d.name().as_bytes().get(..2) == name.get(..2))
        .position(|d| d.name() == disk.name())
        .unwrap_or(0) as u32;
    match name.get(..2) {
        Some(b"vd") => makedev(254, index * 16),
        Some(b"sd") => makedev(8, index * 16),
        _ => makedev(259, index),
    }
}

/// The disk behind a block-device node.
pub fn disk_of(node: &NodeRef) -> Option<Arc<Disk>> {
    downcast::<BlockNode>(node).map(|b| b.disk.clone())
}

impl DevDir {
    fn entries(&self) -> Vec<(Vec<u8>, NodeRef)> {
        let mut v: Vec<(Vec<u8>, NodeRef)> = Vec::new();
        for (i, &(name, which, major, minor)) in CHARS.iter().enumerate() {
            v.push((
                name.to_vec(),
                Arc::new(CharNode {
                    dev: self.dev,
                    ino: 2 + i as u64,
                    which,
                    rdev: makedev(major, minor),
                }),
            ));
        }
        for (i, d) in block::disks().iter().enumerate() {
            v.push((
                d.name().as_bytes().to_vec(),
                Arc::new(BlockNode {
                    dev: self.dev,
                    ino: BLOCK_INO_BASE + i as u64,
                    disk: d.clone(),
                }),
            ));
        }
        v
    }
}

impl Node for DevDir {
    fn kind(&self) -> FileKind {
        FileKind::Directory
    }

    fn stat(&self) -> Result<Stat, Errno> {
        let t = now();
        Ok(Stat {
            dev: self.dev,
            ino: 1,
            mode: S_IFDIR | 0o755,
            nlink: 2,
            blksize: 4096,
            size: 0,
            atime: t,
            mtime: t,
            ctime: t,
            ..Stat::default()
        })
    }

    fn lookup(&self, name: &[u8]) -> Result<NodeRef, Errno> {
        self.entries()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, node)| node)
            .ok_or(Errno::ENOENT)
    }

    fn create(&self, _name: &[u8], _mode: u32) -> Result<NodeRef, Errno> {
        Err(Errno::EACCES)
    }

    fn mkdir(&self, _name: &[u8], _mode: u32) -> Result<(), Errno> {
        Err(Errno::EACCES)
    }

    fn readdir(&self, cursor: u64) -> Result<Vec<DirEntry>, Errno> {
        let mut out = Vec::new();
        let mut all = alloc::vec![
            (b".".to_vec(), 1, FileKind::Directory),
            (b"..".to_vec(), 1, FileKind::Directory),
        ];
        for (name, node) in self.entries() {
            let ino = node.stat().map(|s| s.ino).unwrap_or(0);
            all.push((name, ino, node.kind()));
        }
        for (i, (name, ino, kind)) in all.into_iter().enumerate().skip(cursor as usize) {
            out.push(DirEntry {
                name,
                ino,
                dtype: kind.dt(),
                next: i as u64 + 1,
            });
        }
        Ok(out)
    }
}

// ---- character devices ----------------------------------------------------------

/// Random bytes: RDRAND when the CPU has it, else a TSC-seeded xorshift (not a
/// cryptographic generator).
struct Rng;

impl Rng {
    fn fill(buf: &mut [u8]) {
        crate::arch::cpu::random_bytes(buf);
    }
}

/// Fill `buf` with random bytes.
pub fn random_bytes(buf: &mut [u8]) {
    Rng::fill(buf);
}

struct TtyFile;

impl FileOps for TtyFile {
    fn read(&self, _pos: u64, buf: &mut ReadBuf, nonblock: bool) -> Result<usize, Errno> {
        tty::read(buf, nonblock)
    }

    fn write(&self, _pos: u64, buf: &mut WriteBuf, _nonblock: bool) -> Result<usize, Errno> {
        tty::write(buf)
    }

    fn stream(&self) -> bool {
        true
    }

    fn size(&self) -> u64 {
        0
    }

    fn ioctl(&self, cmd: u32, arg: u64) -> Result<u64, Errno> {
        tty::ioctl(cmd, arg)
    }
}

impl Node for CharNode {
    fn kind(&self) -> FileKind {
        FileKind::CharDevice
    }

    fn stat(&self) -> Result<Stat, Errno> {
        let perm = match self.which {
            Char::Console => 0o600,
            _ => 0o666,
        };
        let t = now();
        Ok(Stat {
            dev: self.dev,
            ino: self.ino,
            mode: S_IFCHR | perm,
            nlink: 1,
            rdev: self.rdev,
            blksize: 4096,
            atime: t,
            mtime: t,
            ctime: t,
            ..Stat::default()
        })
    }

    fn size(&self) -> u64 {
        0
    }

    fn read_at(&self, _offset: u64, buf: &mut ReadBuf) -> Result<usize, Errno> {
        match self.which {
            Char::Null => Ok(0),
            Char::Zero => buf.fill(|piece| {
                piece.fill(0);
                Ok(piece.len())
            }),
            Char::Random | Char::URandom => buf.fill(|piece| {
                Rng::fill(piece);
                Ok(piece.len())
            }),
            Char::Console | Char::Tty => tty::read(buf, false),
        }
    }

    fn write_at(&self, _offset: u64, buf: &mut WriteBuf) -> Result<usize, Errno> {
        match self.which {
            // Data written to these is discarded (random: Linux mixes it in).
            Char::Null | Char::Zero | Char::Random | Char::URandom => Ok(buf.len()),
            Char::Console | Char::Tty => tty::write(buf),
        }
    }

    fn truncate(&self, _size: u64) -> Result<(), Errno> {
        // O_TRUNC on a device does nothing.
        Ok(())
    }

    fn open(&self, me: &NodeRef, _flags: u32) -> Result<Box<dyn FileOps>, Errno> {
        match self.which {
            Char::Console | Char::Tty => Ok(Box::new(TtyFile)),
            _ => Ok(Box::new(NodeFile(me.clone()))),
        }
    }
}

// ---- block devices ----------------------------------------------------------------

impl BlockNode {
    fn capacity(&self) -> u64 {
        self.disk.info().sectors * 512
    }

    /// The disk's page cache.
    fn cache(&self) -> Arc<CachedFile> {
        super::raw_cache::of(&self.disk)
    }

    /// Bytes per request whose segments are page-cache frames (one segment per page
    /// piece, a misaligned range touching one page more than it covers).
    fn dma_chunk(&self) -> usize {
        let i = self.disk.info();
        let frames = i.max_segments.saturating_sub(1).clamp(1, 64);
        ((frames * FRAME_SIZE) as u64).min(i.max_bytes.max(512)) as usize / 512 * 512
    }

    /// The DMA of [`Node::copy_from_cached`], `total` bytes.
    fn dma_from_cached(
        &self,
        offset: u64,
        src: &super::ext2::Inode,
        src_off: u64,
        total: usize,
    ) -> Result<usize, Errno> {
        let mut done = 0usize;
        while done < total {
            let want = (total - done).min(self.dma_chunk());
            let (stable, pieces) = src.frames_for_dma(src_off + done as u64, want)?;
            let bytes: usize = pieces.iter().map(|p| p.2).sum();
            let whole = bytes / 512 * 512;
            if whole == 0 {
                break;
            }
            let mut segs = Vec::with_capacity(pieces.len());
            let mut left = whole;
            for (f, off, n) in &pieces {
                if left == 0 {
                    break;
                }
                let n = (*n).min(left);
                segs.push(Segment {
                    phys: f.pfn().addr() + *off as u64,
                    len: n as u32,
                });
                left -= n;
            }
            let frames: Vec<FrameRef> = pieces.into_iter().map(|p| p.0).collect();
            let sector = (offset + done as u64) / 512;
            let r = self.disk.io_owning(Op::Write, sector, segs, frames);
            drop(stable);
            if let Err(e) = r {
                if done == 0 {
                    return Err(blk_errno(e));
                }
                break;
            }
            done += whole;
            if whole < want {
                break;
            }
        }
        Ok(done)
    }

    /// The transfer length for `len` bytes at `offset`, clipped at the end of the disk;
    /// EINVAL unless both are sector multiples.
    fn span(&self, offset: u64, len: usize) -> Result<usize, Errno> {
        if !offset.is_multiple_of(512) || !len.is_multiple_of(512) {
            return Err(Errno::EINVAL);
        }
        Ok(self.capacity().saturating_sub(offset).min(len as u64) as usize)
    }
}

impl Node for BlockNode {
    fn kind(&self) -> FileKind {
        FileKind::BlockDevice
    }

    fn stat(&self) -> Result<Stat, Errno> {
        let t = now();
        Ok(Stat {
            dev: self.dev,
            ino: self.ino,
            mode: S_IFBLK | 0o660,
            nlink: 1,
            rdev: disk_rdev(&self.disk),
            size: self.capacity(),
            blksize: 4096,
            atime: t,
            mtime: t,
            ctime: t,
            ..Stat::default()
        })
    }

    fn size(&self) -> u64 {
        self.capacity()
    }

    /// Through the disk's page cache, at any offset and length (as Linux's block
    /// devices); a read at the end of the disk is 0.
    fn read_at(&self, offset: u64, buf: &mut ReadBuf) -> Result<usize, Errno> {
        buf.fill_from_cache(&self.cache(), offset, self.capacity())
    }

    /// Through the disk's page cache (written back later, or at `fsync`); the part past
    /// the end of the disk is cut off, a write starting there is ENOSPC.
    fn write_at(&self, offset: u64, buf: &mut WriteBuf) -> Result<usize, Errno> {
        if self.disk.info().read_only {
            return Err(Errno::EROFS);
        }
        let cap = self.capacity();
        if buf.is_empty() {
            return Ok(0);
        }
        if offset >= cap {
            return Err(Errno::ENOSPC);
        }
        let cache = self.cache();
        let mut pos = offset;
        let mut left = (cap - offset).min(buf.len() as u64) as usize;
        buf.drain_pieces(|piece| {
            let piece = piece.truncate(left);
            if piece.is_empty() {
                return Ok(0);
            }
            let n = match piece {
                SourcePiece::Kernel(d) => cache.write(pos, d, cap),
                SourcePiece::User(p) => cache.write_from_frame(pos, p, cap),
            }
            .map_err(Errno::from)?;
            pos += n as u64;
            left -= n;
            super::writeback::balance_dirty_pages();
            Ok(n)
        })
    }

    fn truncate(&self, _size: u64) -> Result<(), Errno> {
        Ok(())
    }

    /// A file's bytes to the disk by DMA straight from its page-cache frames (sendfile
    /// from a file to a raw device): the whole sectors of `len`, both offsets
    /// sector-aligned (otherwise EOPNOTSUPP, and the caller copies through a buffer
    /// into the disk's page cache, which takes any length).
    fn copy_from_cached(
        &self,
        offset: u64,
        src: &super::ext2::Inode,
        src_off: u64,
        len: usize,
    ) -> Result<usize, Errno> {
        if self.disk.info().read_only {
            return Err(Errno::EROFS);
        }
        if !offset.is_multiple_of(512) || !src_off.is_multiple_of(512) {
            return Err(Errno::EOPNOTSUPP);
        }
        let len = len / 512 * 512;
        if len == 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let total = self.span(offset, len)?;
        if total == 0 && len >= 512 {
            return Err(Errno::ENOSPC);
        }
        // The disk's cached pages there must not outlive the write with old bytes.
        let cache = self.cache();
        let (first, last) = pages_of(offset, total);
        if cache.invalidate_range(first, last).map_err(Errno::from)? > 0 {
            return Err(Errno::EOPNOTSUPP); // in use: through the page cache instead
        }
        let done = self.dma_from_cached(offset, src, src_off, total);
        cache.refresh_after_write(first, last);
        done
    }

    /// Linux's block-device `ioctl`s: `BLKGETSIZE64` (bytes), `BLKSSZGET` (the logical
    /// block size) and `BLKDISCARD` (`[start, len]` in bytes, both multiples of 512 and
    /// on the disk, else EINVAL; EOPNOTSUPP where the disk does not discard). A discard
    /// first drops the range from the disk's page cache (written back first; a page that
    /// cannot be dropped, being mapped, is read again afterwards).
    fn ioctl(&self, cmd: u32, arg: u64) -> Result<u64, Errno> {
        const BLKSSZGET: u32 = 0x1268;
        const BLKGETSIZE64: u32 = 0x8008_1272;
        match cmd {
            BLKGETSIZE64 => uaccess::write_u64(arg, self.capacity()).map(|_| 0),
            BLKSSZGET => uaccess::copy_to_user(arg, &512u32.to_le_bytes()).map(|_| 0),
            BLKDISCARD => {
                let (start, len) = (uaccess::read_u64(arg)?, uaccess::read_u64(arg + 8)?);
                let end = start.checked_add(len).ok_or(Errno::EINVAL)?;
                if !start.is_multiple_of(512) || !len.is_multiple_of(512) || end > self.capacity() {
                    return Err(Errno::EINVAL);
                }
                if self.disk.info().read_only {
                    return Err(Errno::EROFS);
                }
                if self.disk.info().discard.is_none() {
                    return Err(Errno::EOPNOTSUPP);
                }
                if len == 0 {
                    return Ok(0);
                }
                let cache = self.cache();
                let (first, last) = pages_of(start, len as usize);
                cache.invalidate_range(first, last).map_err(Errno::from)?;
                let r = self.disk.discard(start / 512, len / 512);
                cache.refresh_after_write(first, last);
                r.map(|_| 0).map_err(blk_errno)
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    /// Another disk's bytes (or this one's, elsewhere) to this disk past both page
    /// caches: by the disk itself where it copies (NVMe Copy) and both are this disk,
    /// else through transit frames (`crate::transit`). Whole sectors, both offsets
    /// sector-aligned (otherwise EOPNOTSUPP: the caller copies another way), clipped at
    /// both disks' ends. The source's dirty cached pages are written first; this disk's
    /// cached pages in the range are dropped (EOPNOTSUPP if one cannot be: in use).
    fn copy_from_disk(
        &self,
        offset: u64,
        src: &Arc<Disk>,
        src_off: u64,
        len: usize,
    ) -> Result<usize, Errno> {
        if self.disk.info().read_only {
            return Err(Errno::EROFS);
        }
        if !crate::transit::bypass()
            || !offset.is_multiple_of(512)
            || !src_off.is_multiple_of(512)
            || len < 512
        {
            return Err(Errno::EOPNOTSUPP);
        }
        // One step at a time (a caller loops on a short count).
        const STEP: usize = 64 << 20;
        let src_end = (src.info().sectors * 512).saturating_sub(src_off);
        let total = self
            .span(offset, (len / 512 * 512).min(STEP))?
            .min(src_end as usize);
        // Overlapping ranges of one disk: requests in flight together would race; the
        // caller copies through a buffer, in order.
        let same = Arc::ptr_eq(src, &self.disk);
        if same && offset < src_off + total as u64 && src_off < offset + total as u64 {
            return Err(Errno::EOPNOTSUPP);
        }
        if total == 0 {
            return if src_end == 0 {
                Ok(0)
            } else {
                Err(Errno::ENOSPC)
            };
        }
        let (first, last) = pages_of(src_off, total);
        super::raw_cache::of(src)
            .sync_range(first, last)
            .map_err(Errno::from)?;
        let cache = self.cache();
        let (first, last) = pages_of(offset, total);
        if cache.invalidate_range(first, last).map_err(Errno::from)? > 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let extent = [CopyExtent {
            from: src_off / 512,
            to: offset / 512,
            sectors: total as u64 / 512,
        }];
        let moved = if same && self.disk.info().copy.is_some() {
            Some(self.disk.copy(&extent))
        } else {
            crate::transit::copy_between(src, &self.disk, &extent)
        };
        cache.refresh_after_write(first, last);
        match moved {
            None => Err(Errno::EOPNOTSUPP),
            Some((0, Some(e))) if e.is_refusal() => Err(Errno::EOPNOTSUPP),
            Some((0, Some(e))) => Err(blk_errno(e)),
            Some((n, _)) => Ok(n as usize),
        }
    }

    /// Fill whole frames with the disk's bytes from `offset` by DMA (sendfile from a raw
    /// device to a file: the frames become the file's pages).
    fn fill_frames(&self, offset: u64, frames: Vec<FrameRef>) -> Result<Vec<FrameRef>, Errno> {
        let len = frames.len() * FRAME_SIZE;
        if self.span(offset, len)? < len {
            return Err(Errno::EOPNOTSUPP); // past the end of the disk: whole frames only
        }
        // Bytes written through the page cache reach the disk first.
        let (first, last) = pages_of(offset, len);
        self.cache().sync_range(first, last).map_err(Errno::from)?;
        let per_request = (self.dma_chunk() / FRAME_SIZE).max(1);
        let segs: Vec<Segment> = frames
            .iter()
            .map(|f| Segment {
                phys: f.pfn().addr(),
                len: FRAME_SIZE as u32,
            })
            .collect();
        let held = Arc::new(frames);
        for (i, chunk) in segs.chunks(per_request).enumerate() {
            let sector = (offset + (i * per_request * FRAME_SIZE) as u64) / 512;
            self.disk
                .io_owning(Op::Read, sector, chunk.to_vec(), held.clone())
                .map_err(blk_errno)?;
        }
        Arc::try_unwrap(held).map_err(|_| Errno::EIO)
    }

    /// `O_DIRECT`: the disk DMAs straight to or from the caller's pinned pages, clipped
    /// at the end of the disk (a read there moves nothing; a write there is ENOSPC).
    ///
    /// Coherent with the disk's page cache: a read writes the range's dirty cached pages
    /// back first; a write drops the cached pages first (if one is in use, the write goes
    /// through the page cache instead) and again after (a racing read may have cached
    /// old bytes meanwhile), so a direct write is complete when planned.
    fn direct(&self, op: Op, offset: u64, va: u64, len: usize) -> Result<DirectIo, Errno> {
        direct::check_alignment(offset, va, len)?;
        if op == Op::Write && self.disk.info().read_only {
            return Err(Errno::EROFS);
        }
        let total = self.span(offset, len)?;
        if op == Op::Write && total == 0 && len > 0 {
            return Err(Errno::ENOSPC);
        }
        if total == 0 {
            return Ok(DirectIo::done(Ok(0)));
        }
        let cache = self.cache();
        let part = |device_writes| -> Result<_, Errno> {
            Ok(smallvec::smallvec![(
                offset / 512,
                uaccess::pin_user(va, total, device_writes)?
            )])
        };
        if op == Op::Read {
            direct::sync_before_read(&cache, offset, total)?;
            return Ok(DirectIo::new(self.disk.clone(), op, part(true)?));
        }
        let r = direct::write_coherently(&cache, offset, total, || {
            Ok(DirectIo::new(self.disk.clone(), op, part(false)?))
        });
        match r {
            Err(Errno::EOPNOTSUPP) => Err(Errno::EOPNOTSUPP),
            r => Ok(DirectIo::done(r)),
        }
    }

    fn fsync(&self, _data_only: bool) -> Result<(), Errno> {
        self.cache().writeback().map_err(Errno::from)?;
        match self.disk.flush() {
            Ok(_) | Err(drivers::block::BlockError::Unsupported) => Ok(()),
            Err(e) => Err(blk_errno(e)),
        }
    }
}
