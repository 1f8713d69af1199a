//! On-disk structures of ext2 and bounds-checked little-endian field access.

use crate::error::{FsError, Result};

/// Read a little-endian u16 at `off`; out of bounds is corruption.
pub(crate) fn rd16(b: &[u8], off: usize) -> Result<u16> {
    let s = b
        .get(off..off.checked_add(2).ok_or(FsError::Corrupt)?)
        .ok_or(FsError::Corrupt)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

/// Read a little-endian u32 at `off`; out of bounds is corruption.
pub(crate) fn rd32(b: &[u8], off: usize) -> Result<u32> {
    let s = b
        .get(off..off.checked_add(4).ok_or(FsError::Corrupt)?)
        .ok_or(FsError::Corrupt)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Write a little-endian u16 at `off`.
pub(crate) fn wr16(b: &mut [u8], off: usize, v: u16) -> Result<()> {
    b.get_mut(off..off.checked_add(2).ok_or(FsError::Corrupt)?)
        .ok_or(FsError::Corrupt)?
        .copy_from_slice(&v.to_le_bytes());
    Ok(())
}

/// Write a little-endian u32 at `off`.
pub(crate) fn wr32(b: &mut [u8], off: usize, v: u32) -> Result<()> {
    b.get_mut(off..off.checked_add(4).ok_or(FsError::Corrupt)?)
        .ok_or(FsError::Corrupt)?
        .copy_from_slice(&v.to_le_bytes());
    Ok(())
}

pub(crate) const EXT2_MAGIC: u16 = 0xEF53;
pub(crate) const SUPERBLOCK_OFFSET: u64 = 1024;
pub(crate) const SUPERBLOCK_SIZE: usize = 1024;
pub(crate) const ROOT_INO: u32 = 2;
pub(crate) const GOOD_OLD_FIRST_INO: u32 = 11;
pub(crate) const GOOD_OLD_INODE_SIZE: u32 = 128;
pub(crate) const GROUP_DESC_SIZE: usize = 32;
pub(crate) const N_DIRECT: usize = 12;
pub(crate) const IND_BLOCK: usize = 12;
pub(crate) const DIND_BLOCK: usize = 13;
pub(crate) const TIND_BLOCK: usize = 14;
pub(crate) const N_BLOCKS: usize = 15;
/// ext2's LINK_MAX.
pub(crate) const LINK_MAX: u16 = 32000;
/// Longest name in a directory entry.
pub const NAME_MAX: usize = 255;
/// Fast symlinks keep targets shorter than this in `i_block`.
pub(crate) const FAST_SYMLINK_MAX: usize = 60;

// Superblock field offsets.
pub(crate) const SB_INODES_COUNT: usize = 0;
pub(crate) const SB_BLOCKS_COUNT: usize = 4;
pub(crate) const SB_FREE_BLOCKS: usize = 12;
pub(crate) const SB_FREE_INODES: usize = 16;
pub(crate) const SB_FIRST_DATA_BLOCK: usize = 20;
pub(crate) const SB_LOG_BLOCK_SIZE: usize = 24;
pub(crate) const SB_LOG_FRAG_SIZE: usize = 28;
pub(crate) const SB_BLOCKS_PER_GROUP: usize = 32;
pub(crate) const SB_INODES_PER_GROUP: usize = 40;
pub(crate) const SB_MTIME: usize = 44;
pub(crate) const SB_WTIME: usize = 48;
pub(crate) const SB_MNT_COUNT: usize = 52;
pub(crate) const SB_MAGIC: usize = 56;
pub(crate) const SB_STATE: usize = 58;
pub(crate) const SB_REV_LEVEL: usize = 76;
pub(crate) const SB_FIRST_INO: usize = 84;
pub(crate) const SB_INODE_SIZE: usize = 88;
pub(crate) const SB_FEATURE_COMPAT: usize = 92;
pub(crate) const SB_FEATURE_INCOMPAT: usize = 96;
pub(crate) const SB_FEATURE_RO_COMPAT: usize = 100;
pub(crate) const SB_RESERVED_GDT_BLOCKS: usize = 206;

pub(crate) const COMPAT_RESIZE_INODE: u32 = 0x10;

pub(crate) const INCOMPAT_FILETYPE: u32 = 0x2;
pub(crate) const INCOMPAT_SUPPORTED: u32 = INCOMPAT_FILETYPE;
pub(crate) const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
pub(crate) const RO_COMPAT_LARGE_FILE: u32 = 0x2;
pub(crate) const RO_COMPAT_SUPPORTED: u32 = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE;

/// Names of incompatible feature bits, for error messages.
pub(crate) const INCOMPAT_NAMES: &[(u32, &str)] = &[
    (0x1, "compression"),
    (0x2, "filetype"),
    (0x4, "needs_recovery"),
    (0x8, "journal_dev"),
    (0x10, "meta_bg"),
    (0x40, "extent"),
    (0x80, "64bit"),
    (0x100, "mmp"),
    (0x200, "flex_bg"),
    (0x400, "ea_inode"),
    (0x1000, "dirdata"),
    (0x2000, "metadata_csum_seed"),
    (0x4000, "large_dir"),
    (0x8000, "inline_data"),
    (0x10000, "encrypt"),
    (0x20000, "casefold"),
];

/// Names of read-only-compatible feature bits, for log lines.
pub(crate) const RO_COMPAT_NAMES: &[(u32, &str)] = &[
    (0x1, "sparse_super"),
    (0x2, "large_file"),
    (0x4, "btree_dir"),
    (0x8, "huge_file"),
    (0x10, "uninit_bg"),
    (0x20, "dir_nlink"),
    (0x40, "extra_isize"),
    (0x100, "quota"),
    (0x200, "bigalloc"),
    (0x400, "metadata_csum"),
    (0x800, "replica"),
    (0x1000, "read-only"),
    (0x2000, "project"),
    (0x8000, "verity"),
];

pub(crate) const STATE_VALID: u16 = 1;

// Group descriptor field offsets.
pub(crate) const GD_BLOCK_BITMAP: usize = 0;
pub(crate) const GD_INODE_BITMAP: usize = 4;
pub(crate) const GD_INODE_TABLE: usize = 8;
pub(crate) const GD_FREE_BLOCKS: usize = 12;
pub(crate) const GD_FREE_INODES: usize = 14;
pub(crate) const GD_USED_DIRS: usize = 16;

/// One block group descriptor (the fields ext2 uses).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct GroupDesc {
    pub block_bitmap: u32,
    pub inode_bitmap: u32,
    pub inode_table: u32,
    pub free_blocks: u16,
    pub free_inodes: u16,
    pub used_dirs: u16,
}

impl GroupDesc {
    pub fn parse(b: &[u8]) -> Result<Self> {
        Ok(GroupDesc {
            block_bitmap: rd32(b, GD_BLOCK_BITMAP)?,
            inode_bitmap: rd32(b, GD_INODE_BITMAP)?,
            inode_table: rd32(b, GD_INODE_TABLE)?,
            free_blocks: rd16(b, GD_FREE_BLOCKS)?,
            free_inodes: rd16(b, GD_FREE_INODES)?,
            used_dirs: rd16(b, GD_USED_DIRS)?,
        })
    }

    pub fn store(&self, b: &mut [u8]) -> Result<()> {
        wr32(b, GD_BLOCK_BITMAP, self.block_bitmap)?;
        wr32(b, GD_INODE_BITMAP, self.inode_bitmap)?;
        wr32(b, GD_INODE_TABLE, self.inode_table)?;
        wr16(b, GD_FREE_BLOCKS, self.free_blocks)?;
        wr16(b, GD_FREE_INODES, self.free_inodes)?;
        wr16(b, GD_USED_DIRS, self.used_dirs)
    }
}

// Mode bits.
/// File type mask.
pub const S_IFMT: u16 = 0o170000;
/// Socket.
pub const S_IFSOCK: u16 = 0o140000;
/// Symbolic link.
pub const S_IFLNK: u16 = 0o120000;
/// Regular file.
pub const S_IFREG: u16 = 0o100000;
/// Block device.
pub const S_IFBLK: u16 = 0o060000;
/// Directory.
pub const S_IFDIR: u16 = 0o040000;
/// Character device.
pub const S_IFCHR: u16 = 0o020000;
/// FIFO.
pub const S_IFIFO: u16 = 0o010000;

/// Directory-entry file types (the `filetype` feature), same values as Linux's
/// `DT_*` shifted: ext2 uses 1 = regular, 2 = dir, 3 = chr, 4 = blk, 5 = fifo,
/// 6 = sock, 7 = symlink, 0 = unknown.
pub(crate) fn ftype_from_mode(mode: u16) -> u8 {
    match mode & S_IFMT {
        S_IFREG => 1,
        S_IFDIR => 2,
        S_IFCHR => 3,
        S_IFBLK => 4,
        S_IFIFO => 5,
        S_IFSOCK => 6,
        S_IFLNK => 7,
        _ => 0,
    }
}

/// Inode flag: hashed-index directory (we keep directories linear and clear it).
pub(crate) const INDEX_FL: u32 = 0x1000;

// Inode field offsets.
const I_MODE: usize = 0;
const I_UID: usize = 2;
const I_SIZE: usize = 4;
const I_ATIME: usize = 8;
const I_CTIME: usize = 12;
const I_MTIME: usize = 16;
const I_DTIME: usize = 20;
const I_GID: usize = 24;
const I_LINKS: usize = 26;
const I_BLOCKS: usize = 28;
const I_FLAGS: usize = 32;
const I_BLOCK: usize = 40;
const I_GENERATION: usize = 100;
const I_FILE_ACL: usize = 104;
const I_SIZE_HIGH: usize = 108;
const I_UID_HIGH: usize = 120;
const I_GID_HIGH: usize = 122;
pub(crate) const I_EXTRA_ISIZE: usize = 128;

/// An inode as ext2 uses it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Inode {
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub atime: u32,
    pub ctime: u32,
    pub mtime: u32,
    pub dtime: u32,
    pub links: u16,
    /// 512-byte units, including indirect and xattr blocks.
    pub blocks: u32,
    pub flags: u32,
    pub block: [u32; N_BLOCKS],
    pub generation: u32,
    pub file_acl: u32,
    /// `i_dir_acl` for non-regular files (kept as found).
    pub dir_acl: u32,
}

impl Inode {
    pub fn parse(b: &[u8]) -> Result<Self> {
        let mode = rd16(b, I_MODE)?;
        let mut block = [0u32; N_BLOCKS];
        for (i, slot) in block.iter_mut().enumerate() {
            *slot = rd32(b, I_BLOCK + 4 * i)?;
        }
        let size_lo = rd32(b, I_SIZE)? as u64;
        let high = rd32(b, I_SIZE_HIGH)?;
        let is_reg = mode & S_IFMT == S_IFREG;
        Ok(Inode {
            mode,
            uid: rd16(b, I_UID)? as u32 | (rd16(b, I_UID_HIGH)? as u32) << 16,
            gid: rd16(b, I_GID)? as u32 | (rd16(b, I_GID_HIGH)? as u32) << 16,
            size: if is_reg {
                size_lo | (high as u64) << 32
            } else {
                size_lo
            },
            atime: rd32(b, I_ATIME)?,
            ctime: rd32(b, I_CTIME)?,
            mtime: rd32(b, I_MTIME)?,
            dtime: rd32(b, I_DTIME)?,
            links: rd16(b, I_LINKS)?,
            blocks: rd32(b, I_BLOCKS)?,
            flags: rd32(b, I_FLAGS)?,
            block,
            generation: rd32(b, I_GENERATION)?,
            file_acl: rd32(b, I_FILE_ACL)?,
            dir_acl: if is_reg { 0 } else { high },
        })
    }

    /// Write the fields back, leaving every other byte of the on-disk inode as it was.
    pub fn store(&self, b: &mut [u8]) -> Result<()> {
        let is_reg = self.mode & S_IFMT == S_IFREG;
        wr16(b, I_MODE, self.mode)?;
        wr16(b, I_UID, self.uid as u16)?;
        wr16(b, I_UID_HIGH, (self.uid >> 16) as u16)?;
        wr16(b, I_GID, self.gid as u16)?;
        wr16(b, I_GID_HIGH, (self.gid >> 16) as u16)?;
        wr32(b, I_SIZE, self.size as u32)?;
        wr32(
            b,
            I_SIZE_HIGH,
            if is_reg {
                (self.size >> 32) as u32
            } else {
                self.dir_acl
            },
        )?;
        wr32(b, I_ATIME, self.atime)?;
        wr32(b, I_CTIME, self.ctime)?;
        wr32(b, I_MTIME, self.mtime)?;
        wr32(b, I_DTIME, self.dtime)?;
        wr16(b, I_LINKS, self.links)?;
        wr32(b, I_BLOCKS, self.blocks)?;
        wr32(b, I_FLAGS, self.flags)?;
        for (i, v) in self.block.iter().enumerate() {
            wr32(b, I_BLOCK + 4 * i, *v)?;
        }
        wr32(b, I_GENERATION, self.generation)?;
        wr32(b, I_FILE_ACL, self.file_acl)
    }

    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    pub fn is_reg(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }

    pub fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }

    /// The raw bytes of `i_block` (fast symlink targets live there).
    pub fn block_bytes(&self) -> [u8; 60] {
        let mut out = [0u8; 60];
        for (i, v) in self.block.iter().enumerate() {
            out[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    pub fn set_block_bytes(&mut self, bytes: &[u8]) {
        let mut buf = [0u8; 60];
        let n = bytes.len().min(60);
        buf[..n].copy_from_slice(&bytes[..n]);
        for (i, slot) in self.block.iter_mut().enumerate() {
            *slot =
                u32::from_le_bytes([buf[4 * i], buf[4 * i + 1], buf[4 * i + 2], buf[4 * i + 3]]);
        }
    }
}
