//! ext2, read and write: revision 0 and 1, 1/2/4 KiB blocks, `sparse_super`,
//! `large_file`, `filetype`; direct and 1/2/3-level indirect blocks.
//!
//! # Concurrency
//! Every operation takes `&mut self`: the kernel wraps an [`Ext2`] in the lock
//! of its choice (a sleeping mutex, since operations wait for disk I/O). The
//! type is `Send`.
//!
//! # Data and metadata
//! Metadata (bitmaps, inode tables, indirect blocks, directories, slow
//! symlinks) goes through the block cache ([`crate::bcache`]). File data never
//! does: [`Ext2::bmap`] tells where a file block lives so the page cache can DMA
//! it straight to or from its frames; [`Ext2::read_at`] / [`Ext2::write_at`]
//! move data between the device and a byte buffer directly. A freed block is
//! dropped from the metadata cache, so the cache never writes over a block that
//! now holds file data.
//!
//! # Open-but-unlinked files
//! [`Ext2::hold`] / [`Ext2::release`] count openers of an inode. An inode whose
//! last link goes away while it is held keeps its blocks until the last release.

mod alloc_impl;
mod dir;
mod file;
pub(crate) mod layout;
mod namei;
mod run_cache;

pub use namei::{MAX_SYMLINKS, PATH_MAX};

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use crate::bcache::{BlockCache, CacheStats};
use crate::blockdev::{BlockDev, SECTOR_SIZE};
use crate::error::{FsError, Result};
use layout::*;

pub use layout::{
    NAME_MAX, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK,
};

/// The root directory's inode number.
pub const ROOT_INO: u32 = layout::ROOT_INO;

/// Default number of metadata blocks cached.
pub const DEFAULT_CACHE_BLOCKS: usize = 256;

/// How to mount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// Refuse every modification; nothing is ever written to the device.
    pub read_only: bool,
}

/// Where timestamps come from (seconds since the epoch).
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> u32;
}

impl<F: Fn() -> u32 + Send + Sync> Clock for F {
    fn now(&self) -> u32 {
        self()
    }
}

/// The clock used until [`Ext2::set_clock`]: always 0.
pub struct ZeroClock;

impl Clock for ZeroClock {
    fn now(&self) -> u32 {
        0
    }
}

/// What `stat` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// Inode number.
    pub ino: u32,
    /// Type and permission bits (`S_IF*` | mode).
    pub mode: u16,
    /// Hard links.
    pub nlink: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Allocated space in 512-byte units (data, indirect and xattr blocks).
    pub blocks: u64,
    /// Last access (seconds).
    pub atime: u32,
    /// Last modification (seconds).
    pub mtime: u32,
    /// Last status change (seconds).
    pub ctime: u32,
    /// Preferred I/O size: the block size.
    pub blksize: u32,
}

/// Type of a directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    /// Not recorded (file systems without `filetype`, or an unreadable inode).
    Unknown,
    /// Regular file.
    Regular,
    /// Directory.
    Directory,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// FIFO.
    Fifo,
    /// Socket.
    Socket,
    /// Symbolic link.
    Symlink,
}

impl FileType {
    pub(crate) fn from_ext2(t: u8) -> Self {
        match t {
            1 => FileType::Regular,
            2 => FileType::Directory,
            3 => FileType::CharDevice,
            4 => FileType::BlockDevice,
            5 => FileType::Fifo,
            6 => FileType::Socket,
            7 => FileType::Symlink,
            _ => FileType::Unknown,
        }
    }

    /// The Linux `DT_*` value (for `getdents64`).
    pub fn dt(self) -> u8 {
        match self {
            FileType::Unknown => 0,
            FileType::Fifo => 1,
            FileType::CharDevice => 2,
            FileType::Directory => 4,
            FileType::BlockDevice => 6,
            FileType::Regular => 8,
            FileType::Symlink => 10,
            FileType::Socket => 12,
        }
    }
}

/// One entry returned by [`Ext2::readdir`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The name (bytes; ext2 names need not be UTF-8).
    pub name: Vec<u8>,
    /// Inode number.
    pub ino: u32,
    /// Type as recorded in the entry (or read from the inode without `filetype`).
    pub file_type: FileType,
    /// Cursor of the entry after this one (Linux's `d_off`).
    pub next: u64,
}

/// File-system totals (for `statfs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsStats {
    /// Block size in bytes.
    pub block_size: u32,
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub free_blocks: u64,
    /// Total inodes.
    pub inodes: u64,
    /// Free inodes.
    pub free_inodes: u64,
    /// Longest name.
    pub name_max: u32,
}

/// Layout numbers derived from the superblock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub block_size: u64,
    pub blocks_count: u64,
    pub inodes_count: u32,
    pub first_data_block: u64,
    pub blocks_per_group: u64,
    pub inodes_per_group: u32,
    pub inode_size: u32,
    pub first_ino: u32,
    pub group_count: u32,
    pub gdt_blocks: u64,
    pub reserved_gdt: u64,
    pub itb_per_group: u64,
    pub rev: u32,
    pub sparse_super: bool,
    pub filetype: bool,
    /// Block pointers per indirect block.
    pub ptrs: u64,
    /// Largest file size the block tree can address.
    pub max_file_size: u64,
    /// `i_extra_isize` given to new inodes.
    pub extra_isize: u16,
}

impl Geometry {
    pub fn sectors_per_block(&self) -> u32 {
        (self.block_size / SECTOR_SIZE as u64) as u32
    }

    pub fn group_has_super(&self, g: u32) -> bool {
        if g <= 1 || !self.sparse_super {
            return true;
        }
        [3u32, 5, 7].iter().any(|&base| {
            let mut n = base;
            while n < g {
                match n.checked_mul(base) {
                    Some(m) => n = m,
                    None => return false,
                }
            }
            n == g
        })
    }

    /// First block and one-past-last block of group `g`.
    pub fn group_range(&self, g: u32) -> (u64, u64) {
        let start = self.first_data_block + g as u64 * self.blocks_per_group;
        let end = (start + self.blocks_per_group).min(self.blocks_count);
        (start, end)
    }

    /// A layout of 1 KiB blocks (the first data block 1), sparse superblocks, one GDT
    /// block, no reserved ones: `blocks` blocks in groups of `per_group`, with inode
    /// tables of `itb` blocks.
    #[cfg(test)]
    pub fn for_tests(blocks: u64, per_group: u64, itb: u64) -> Geometry {
        Geometry {
            block_size: 1024,
            blocks_count: blocks,
            inodes_count: 0,
            first_data_block: 1,
            blocks_per_group: per_group,
            inodes_per_group: 0,
            inode_size: 128,
            first_ino: 11,
            group_count: (blocks - 1).div_ceil(per_group) as u32,
            gdt_blocks: 1,
            reserved_gdt: 0,
            itb_per_group: itb,
            rev: 1,
            sparse_super: true,
            filetype: true,
            ptrs: 256,
            max_file_size: 0,
            extra_isize: 0,
        }
    }
}

/// A mounted ext2 file system.
pub struct Ext2 {
    dev: Arc<dyn BlockDev>,
    cache: BlockCache,
    sb_raw: Vec<u8>,
    sb_dirty: bool,
    geo: Geometry,
    groups: Vec<GroupDesc>,
    free_blocks: u64,
    free_inodes: u64,
    ro_compat: u32,
    read_only: bool,
    clock: Arc<dyn Clock>,
    holds: BTreeMap<u32, u32>,
    /// (inode, file block, disk block) of the last data block allocated, as the
    /// goal for the next one.
    last_alloc: Option<(u32, u64, u64)>,
    generation: u32,
    /// Mapped runs of recently mapped files ([`Ext2::map_runs`]).
    runs: run_cache::RunCache,
}

fn feature_names(bits: u32, table: &[(u32, &str)]) -> String {
    let mut s = String::new();
    for i in 0..32 {
        let bit = 1u32 << i;
        if bits & bit == 0 {
            continue;
        }
        if !s.is_empty() {
            s.push_str(", ");
        }
        match table.iter().find(|(b, _)| *b == bit) {
            Some((_, name)) => s.push_str(name),
            None => {
                use core::fmt::Write;
                let _ = write!(s, "unknown 0x{bit:x}");
            }
        }
    }
    s
}

impl Ext2 {
    /// Mount the ext2 file system on `dev` with the default cache size.
    pub fn mount(dev: Arc<dyn BlockDev>, options: MountOptions) -> Result<Ext2> {
        Self::mount_with_cache(dev, options, DEFAULT_CACHE_BLOCKS)
    }

    /// Mount with a metadata cache of `cache_blocks` blocks.
    pub fn mount_with_cache(
        dev: Arc<dyn BlockDev>,
        options: MountOptions,
        cache_blocks: usize,
    ) -> Result<Ext2> {
        let dev_sectors = dev.sector_count();
        if dev_sectors < 4 {
            log::warn!("ext2: device too small for a superblock");
            return Err(FsError::Invalid);
        }
        let mut sb = vec![0u8; SUPERBLOCK_SIZE];
        dev.read(SUPERBLOCK_OFFSET / SECTOR_SIZE as u64, &mut sb)?;
        let geo = Self::check_superblock(&sb, dev_sectors)?;
        let (incompat, ro_compat) = if geo.rev >= 1 {
            (
                rd32(&sb, SB_FEATURE_INCOMPAT)?,
                rd32(&sb, SB_FEATURE_RO_COMPAT)?,
            )
        } else {
            (0, 0)
        };
        let unknown_incompat = incompat & !INCOMPAT_SUPPORTED;
        if unknown_incompat != 0 {
            log::error!(
                "ext2: cannot mount: unsupported incompatible features: {}",
                feature_names(unknown_incompat, INCOMPAT_NAMES)
            );
            return Err(FsError::Unsupported);
        }
        let unknown_ro = ro_compat & !RO_COMPAT_SUPPORTED;
        if unknown_ro != 0 && !options.read_only {
            log::error!(
                "ext2: refusing read-write mount: unsupported read-only-compatible features: {} \
                 (mount read-only instead)",
                feature_names(unknown_ro, RO_COMPAT_NAMES)
            );
            return Err(FsError::ReadOnly);
        }
        let state = rd16(&sb, SB_STATE)?;
        if state & STATE_VALID == 0 {
            log::warn!("ext2: file system was not cleanly unmounted; run e2fsck");
        }

        let mut cache = BlockCache::new(dev.clone(), geo.block_size as usize, cache_blocks);
        let mut groups = Vec::new();
        let mut free_blocks = 0u64;
        let mut free_inodes = 0u64;
        for g in 0..geo.group_count {
            let byte = g as u64 * GROUP_DESC_SIZE as u64;
            let blk = geo.first_data_block + 1 + byte / geo.block_size;
            let off = (byte % geo.block_size) as usize;
            let data = cache.get(blk)?;
            let gd = GroupDesc::parse(
                data.get(off..off + GROUP_DESC_SIZE)
                    .ok_or(FsError::Corrupt)?,
            )?;
            let (start, end) = geo.group_range(g);
            let inside = |b: u64, n: u64| b >= start && b.checked_add(n).is_some_and(|e| e <= end);
            if !inside(gd.block_bitmap as u64, 1)
                || !inside(gd.inode_bitmap as u64, 1)
                || !inside(gd.inode_table as u64, geo.itb_per_group)
            {
                log::error!(
                    "ext2: group {g}: bitmaps or inode table outside the group \
                     (block bitmap {}, inode bitmap {}, inode table {})",
                    gd.block_bitmap,
                    gd.inode_bitmap,
                    gd.inode_table
                );
                return Err(FsError::Corrupt);
            }
            let fixed_end = if geo.group_has_super(g) {
                start + 1 + geo.gdt_blocks + geo.reserved_gdt
            } else {
                start
            };
            let table = gd.inode_table as u64;
            let clashes = |b: u64| b < fixed_end || (b >= table && b < table + geo.itb_per_group);
            if (gd.block_bitmap as u64) < fixed_end
                || (gd.inode_bitmap as u64) < fixed_end
                || table < fixed_end
                || clashes(gd.block_bitmap as u64)
                || clashes(gd.inode_bitmap as u64)
                || gd.block_bitmap == gd.inode_bitmap
            {
                log::error!("ext2: group {g}: bitmaps or inode table overlap other metadata");
                return Err(FsError::Corrupt);
            }
            if gd.free_blocks as u64 > end - start || gd.free_inodes as u32 > geo.inodes_per_group {
                log::error!("ext2: group {g}: free counts larger than the group");
                return Err(FsError::Corrupt);
            }
            free_blocks += gd.free_blocks as u64;
            free_inodes += gd.free_inodes as u64;
            groups.push(gd);
        }
        let sb_free_blocks = rd32(&sb, SB_FREE_BLOCKS)? as u64;
        let sb_free_inodes = rd32(&sb, SB_FREE_INODES)? as u64;
        if sb_free_blocks != free_blocks || sb_free_inodes != free_inodes {
            log::info!(
                "ext2: superblock free counts ({sb_free_blocks} blocks, {sb_free_inodes} inodes) \
                 differ from the groups' ({free_blocks}, {free_inodes}); using the groups'"
            );
        }

        let mut fs = Ext2 {
            dev,
            cache,
            sb_raw: sb,
            sb_dirty: false,
            geo,
            groups,
            free_blocks,
            free_inodes,
            ro_compat,
            read_only: options.read_only,
            clock: Arc::new(ZeroClock),
            holds: BTreeMap::new(),
            last_alloc: None,
            generation: 0,
            runs: run_cache::RunCache::default(),
        };
        let root = fs.read_inode(ROOT_INO)?;
        if !root.is_dir() {
            log::error!("ext2: root inode is not a directory (mode {:o})", root.mode);
            return Err(FsError::Corrupt);
        }
        if !fs.read_only {
            let count = rd16(&fs.sb_raw, SB_MNT_COUNT)?.wrapping_add(1);
            wr16(&mut fs.sb_raw, SB_MNT_COUNT, count)?;
            fs.sb_dirty = true;
        }
        log::info!(
            "ext2: mounted rev {} fs: {} blocks of {} bytes, {} inodes, {} groups{}",
            geo.rev,
            geo.blocks_count,
            geo.block_size,
            geo.inodes_count,
            geo.group_count,
            if fs.read_only { ", read-only" } else { "" }
        );
        Ok(fs)
    }

    fn check_superblock(sb: &[u8], dev_sectors: u64) -> Result<Geometry> {
        let bad = |what: &str| {
            log::error!("ext2: bad superblock: {what}");
            FsError::Corrupt
        };
        let magic = rd16(sb, SB_MAGIC)?;
        if magic != EXT2_MAGIC {
            log::warn!("ext2: no ext2 magic (found 0x{magic:04x})");
            return Err(FsError::Invalid);
        }
        let rev = rd32(sb, SB_REV_LEVEL)?;
        if rev > 1 {
            log::error!("ext2: unsupported revision {rev}");
            return Err(FsError::Unsupported);
        }
        let log_bs = rd32(sb, SB_LOG_BLOCK_SIZE)?;
        if log_bs > 2 {
            log::error!(
                "ext2: unsupported block size (log_block_size {log_bs}); only 1, 2 and 4 KiB"
            );
            return Err(FsError::Unsupported);
        }
        let block_size = 1024u64 << log_bs;
        if rd32(sb, SB_LOG_FRAG_SIZE)? != log_bs {
            return Err(bad("fragment size differs from block size"));
        }
        let blocks_count = rd32(sb, SB_BLOCKS_COUNT)? as u64;
        let inodes_count = rd32(sb, SB_INODES_COUNT)?;
        let first_data_block = rd32(sb, SB_FIRST_DATA_BLOCK)? as u64;
        if first_data_block != u64::from(block_size == 1024) {
            return Err(bad("first data block"));
        }
        if blocks_count <= first_data_block + 1 {
            return Err(bad("blocks count"));
        }
        let blocks_per_group = rd32(sb, SB_BLOCKS_PER_GROUP)? as u64;
        let inodes_per_group = rd32(sb, SB_INODES_PER_GROUP)?;
        if blocks_per_group == 0 || blocks_per_group > 8 * block_size {
            return Err(bad("blocks per group"));
        }
        if inodes_per_group == 0 || inodes_per_group as u64 > 8 * block_size {
            return Err(bad("inodes per group"));
        }
        let (inode_size, first_ino) = if rev == 0 {
            (GOOD_OLD_INODE_SIZE, GOOD_OLD_FIRST_INO)
        } else {
            (rd16(sb, SB_INODE_SIZE)? as u32, rd32(sb, SB_FIRST_INO)?)
        };
        if inode_size < GOOD_OLD_INODE_SIZE
            || !inode_size.is_power_of_two()
            || inode_size as u64 > block_size
        {
            return Err(bad("inode size"));
        }
        let group_count = (blocks_count - first_data_block).div_ceil(blocks_per_group);
        let group_count = u32::try_from(group_count).map_err(|_| bad("group count"))?;
        if (group_count as u64) * (inodes_per_group as u64) != inodes_count as u64 {
            return Err(bad("inodes count does not match groups * inodes per group"));
        }
        if first_ino < GOOD_OLD_FIRST_INO || first_ino > inodes_count {
            return Err(bad("first inode"));
        }
        let need_sectors = blocks_count
            .checked_mul(block_size / SECTOR_SIZE as u64)
            .ok_or_else(|| bad("size"))?;
        if need_sectors > dev_sectors {
            log::error!(
                "ext2: file system ({blocks_count} blocks) is larger than the device ({dev_sectors} sectors)"
            );
            return Err(FsError::Invalid);
        }
        let gdt_blocks = (group_count as u64 * GROUP_DESC_SIZE as u64).div_ceil(block_size);
        let compat = if rev >= 1 {
            rd32(sb, SB_FEATURE_COMPAT)?
        } else {
            0
        };
        let ro_compat = if rev >= 1 {
            rd32(sb, SB_FEATURE_RO_COMPAT)?
        } else {
            0
        };
        let incompat = if rev >= 1 {
            rd32(sb, SB_FEATURE_INCOMPAT)?
        } else {
            0
        };
        let reserved_gdt = if compat & COMPAT_RESIZE_INODE != 0 {
            rd16(sb, SB_RESERVED_GDT_BLOCKS)? as u64
        } else {
            0
        };
        if first_data_block + 1 + gdt_blocks + reserved_gdt
            > blocks_count.min(first_data_block + blocks_per_group)
        {
            return Err(bad("group descriptor table does not fit in group 0"));
        }
        let itb_per_group = (inodes_per_group as u64 * inode_size as u64).div_ceil(block_size);
        if itb_per_group >= blocks_per_group {
            return Err(bad("inode table larger than a group"));
        }
        let ptrs = block_size / 4;
        let tree_blocks = 12 + ptrs + ptrs * ptrs + ptrs * ptrs * ptrs;
        let max_file_size = tree_blocks.saturating_mul(block_size).min(i64::MAX as u64);
        let extra_isize = if rev >= 1 && inode_size > GOOD_OLD_INODE_SIZE {
            let want = rd16(sb, 0x15E)?;
            if want >= 4 && want % 4 == 0 && (want as u32) <= inode_size - GOOD_OLD_INODE_SIZE {
                want
            } else {
                32.min((inode_size - GOOD_OLD_INODE_SIZE) as u16)
            }
        } else {
            0
        };
        Ok(Geometry {
            block_size,
            blocks_count,
            inodes_count,
            first_data_block,
            blocks_per_group,
            inodes_per_group,
            inode_size,
            first_ino,
            group_count,
            gdt_blocks,
            reserved_gdt,
            itb_per_group,
            rev,
            sparse_super: ro_compat & RO_COMPAT_SPARSE_SUPER != 0,
            filetype: incompat & INCOMPAT_FILETYPE != 0,
            ptrs,
            max_file_size,
            extra_isize,
        })
    }

    /// Number of dirty metadata blocks waiting for [`Ext2::sync`].
    pub fn dirty_blocks(&self) -> usize {
        self.cache.dirty_count()
    }

    /// Use `clock` for timestamps from now on.
    pub fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        self.clock = clock;
    }

    pub(crate) fn now(&self) -> u32 {
        self.clock.now()
    }

    /// Whether the file system is mounted read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.geo.block_size as u32
    }

    /// 512-byte sectors per file-system block: block `b` starts at sector
    /// `b * sectors_per_block()`.
    pub fn sectors_per_block(&self) -> u32 {
        self.geo.sectors_per_block()
    }

    /// Largest file size this file system can hold.
    pub fn max_file_size(&self) -> u64 {
        if self.geo.rev == 0 {
            self.geo.max_file_size.min(0x7fff_ffff)
        } else {
            self.geo.max_file_size
        }
    }

    /// The device the file system lives on.
    pub fn device(&self) -> &Arc<dyn BlockDev> {
        &self.dev
    }

    /// Metadata cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Totals for `statfs`.
    pub fn statfs(&self) -> FsStats {
        FsStats {
            block_size: self.geo.block_size as u32,
            blocks: self.geo.blocks_count,
            free_blocks: self.free_blocks,
            inodes: self.geo.inodes_count as u64,
            free_inodes: self.free_inodes,
            name_max: NAME_MAX as u32,
        }
    }

    pub(crate) fn check_rw(&self) -> Result<()> {
        if self.read_only {
            Err(FsError::ReadOnly)
        } else {
            Ok(())
        }
    }

    // ---- inodes ------------------------------------------------------------

    fn inode_loc(&self, ino: u32) -> Result<(u64, usize)> {
        if ino == 0 || ino > self.geo.inodes_count {
            return Err(FsError::Invalid);
        }
        let g = (ino - 1) / self.geo.inodes_per_group;
        let idx = ((ino - 1) % self.geo.inodes_per_group) as u64;
        let gd = self.groups.get(g as usize).ok_or(FsError::Invalid)?;
        let byte = idx * self.geo.inode_size as u64;
        let blk = gd.inode_table as u64 + byte / self.geo.block_size;
        Ok((blk, (byte % self.geo.block_size) as usize))
    }

    pub(crate) fn read_inode(&mut self, ino: u32) -> Result<Inode> {
        let (blk, off) = self.inode_loc(ino)?;
        let size = self.geo.inode_size as usize;
        let data = self.cache.get(blk)?;
        Inode::parse(data.get(off..off + size).ok_or(FsError::Corrupt)?)
    }

    pub(crate) fn write_inode(&mut self, ino: u32, inode: &Inode) -> Result<()> {
        self.check_rw()?;
        self.runs.forget(ino);
        let (blk, off) = self.inode_loc(ino)?;
        let size = self.geo.inode_size as usize;
        let data = self.cache.get_mut(blk)?;
        inode.store(data.get_mut(off..off + size).ok_or(FsError::Corrupt)?)
    }

    /// Zero the whole on-disk inode slot and write `inode` into it.
    pub(crate) fn init_inode(&mut self, ino: u32, inode: &Inode) -> Result<()> {
        self.runs.forget(ino);
        let (blk, off) = self.inode_loc(ino)?;
        let size = self.geo.inode_size as usize;
        let extra = self.geo.extra_isize;
        let data = self.cache.get_mut(blk)?;
        let slot = data.get_mut(off..off + size).ok_or(FsError::Corrupt)?;
        slot.fill(0);
        if size > GOOD_OLD_INODE_SIZE as usize {
            wr16(slot, I_EXTRA_ISIZE, extra)?;
        }
        inode.store(slot)
    }

    /// Attributes of inode `ino`.
    pub fn stat(&mut self, ino: u32) -> Result<Stat> {
        let i = self.read_inode(ino)?;
        Ok(Stat {
            ino,
            mode: i.mode,
            nlink: i.links,
            uid: i.uid,
            gid: i.gid,
            size: i.size,
            blocks: i.blocks as u64,
            atime: i.atime,
            mtime: i.mtime,
            ctime: i.ctime,
            blksize: self.geo.block_size as u32,
        })
    }

    /// Set access and/or modification times; the change time becomes now.
    pub fn set_times(&mut self, ino: u32, atime: Option<u32>, mtime: Option<u32>) -> Result<()> {
        self.check_rw()?;
        let mut i = self.read_inode(ino)?;
        if let Some(a) = atime {
            i.atime = a;
        }
        if let Some(m) = mtime {
            i.mtime = m;
        }
        i.ctime = self.now();
        self.write_inode(ino, &i)
    }

    /// Change the permission bits (the file type bits are kept).
    pub fn set_mode(&mut self, ino: u32, mode: u16) -> Result<()> {
        self.check_rw()?;
        let mut i = self.read_inode(ino)?;
        i.mode = (i.mode & S_IFMT) | (mode & !S_IFMT);
        i.ctime = self.now();
        self.write_inode(ino, &i)
    }

    /// Change owner and group.
    pub fn set_owner(&mut self, ino: u32, uid: u32, gid: u32) -> Result<()> {
        self.check_rw()?;
        let mut i = self.read_inode(ino)?;
        i.uid = uid;
        i.gid = gid;
        i.ctime = self.now();
        self.write_inode(ino, &i)
    }

    /// Count an opener of `ino`: while held, an inode that loses its last link
    /// keeps its blocks.
    pub fn hold(&mut self, ino: u32) {
        *self.holds.entry(ino).or_insert(0) += 1;
    }

    /// Drop an opener; the last release of an unlinked inode frees it.
    pub fn release(&mut self, ino: u32) -> Result<()> {
        let Some(n) = self.holds.get_mut(&ino) else {
            return Ok(());
        };
        *n -= 1;
        if *n > 0 {
            return Ok(());
        }
        self.holds.remove(&ino);
        if self.read_only {
            return Ok(());
        }
        let mut inode = self.read_inode(ino)?;
        if inode.links == 0 && inode.mode != 0 {
            self.destroy_inode(ino, &mut inode)?;
        }
        Ok(())
    }

    pub(crate) fn is_held(&self, ino: u32) -> bool {
        self.holds.contains_key(&ino)
    }

    // ---- superblock, sync --------------------------------------------------

    pub(crate) fn put_group(&mut self, g: u32) -> Result<()> {
        let gd = *self.groups.get(g as usize).ok_or(FsError::Invalid)?;
        let byte = g as u64 * GROUP_DESC_SIZE as u64;
        let blk = self.geo.first_data_block + 1 + byte / self.geo.block_size;
        let off = (byte % self.geo.block_size) as usize;
        let data = self.cache.get_mut(blk)?;
        gd.store(
            data.get_mut(off..off + GROUP_DESC_SIZE)
                .ok_or(FsError::Corrupt)?,
        )?;
        self.sb_dirty = true;
        Ok(())
    }

    pub(crate) fn set_ro_compat(&mut self, bit: u32) -> Result<()> {
        if self.ro_compat & bit == 0 {
            self.ro_compat |= bit;
            wr32(&mut self.sb_raw, SB_FEATURE_RO_COMPAT, self.ro_compat)?;
            self.sb_dirty = true;
            log::info!("ext2: setting read-only-compatible feature 0x{bit:x}");
        }
        Ok(())
    }

    fn write_superblock(&mut self) -> Result<()> {
        let now = self.now();
        wr32(&mut self.sb_raw, SB_FREE_BLOCKS, self.free_blocks as u32)?;
        wr32(&mut self.sb_raw, SB_FREE_INODES, self.free_inodes as u32)?;
        wr32(&mut self.sb_raw, SB_WTIME, now)?;
        if rd32(&self.sb_raw, SB_MTIME)? == 0 {
            wr32(&mut self.sb_raw, SB_MTIME, now)?;
        }
        self.dev
            .write(SUPERBLOCK_OFFSET / SECTOR_SIZE as u64, &self.sb_raw)?;
        self.sb_dirty = false;
        Ok(())
    }

    /// Drop the clean blocks of the metadata cache (`drop_caches` 2); dirty ones stay.
    /// Returns how many blocks remain cached.
    pub fn drop_clean_metadata(&mut self) -> usize {
        self.cache.drop_clean();
        self.cache.len()
    }

    /// Write every dirty metadata block (in block order) and the superblock,
    /// then flush the device. Errors from earlier failed write-backs are
    /// reported here.
    pub fn sync(&mut self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let blocks = self.cache.write_dirty();
        let sb = if self.sb_dirty {
            self.write_superblock()
        } else {
            Ok(())
        };
        let flush = self.cache.sync();
        blocks.and(sb).and(flush)
    }

    /// Make inode `ino`'s metadata durable. (Writes all dirty metadata: ext2 has
    /// no per-file metadata tracking; file data is the page cache's business.)
    pub fn fsync_inode(&mut self, ino: u32) -> Result<()> {
        self.inode_loc(ino)?;
        self.sync()
    }

    /// Sync and give up the file system.
    pub fn unmount(mut self) -> Result<()> {
        self.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn ext2_can_live_behind_a_kernel_lock() {
        assert_send_sync::<Ext2>();
    }

    #[test]
    fn sparse_super_groups() {
        let mut geo = Geometry::for_tests(1 << 20, 8192, 0);
        let with: Vec<u32> = (0..130).filter(|&g| geo.group_has_super(g)).collect();
        assert_eq!(with, [0, 1, 3, 5, 7, 9, 25, 27, 49, 81, 125]);
        geo.sparse_super = false;
        assert!((0..130).all(|g| geo.group_has_super(g)));
        assert_eq!(geo.group_range(1), (8193, 16385));
    }

    #[test]
    fn errno_values_match_linux() {
        let pairs = [
            (FsError::NotFound, 2),
            (FsError::Io, 5),
            (FsError::Exists, 17),
            (FsError::NotDir, 20),
            (FsError::IsDir, 21),
            (FsError::Invalid, 22),
            (FsError::FileTooBig, 27),
            (FsError::NoSpace, 28),
            (FsError::ReadOnly, 30),
            (FsError::TooManyLinks, 31),
            (FsError::NameTooLong, 36),
            (FsError::NotEmpty, 39),
            (FsError::Loop, 40),
            (FsError::Corrupt, 117),
        ];
        for (e, n) in pairs {
            assert_eq!(e.errno(), n, "{e:?}");
        }
    }
}
