//! Directories: linked lists of entries (inode, rec_len, name_len, file_type, name).

use alloc::vec::Vec;

use super::layout::*;
use super::{DirEntry, Ext2, FileType};
use crate::error::{FsError, Result};

/// One parsed directory entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawEntry {
    pub off: usize,
    pub inode: u32,
    pub rec_len: usize,
    pub name_len: usize,
    pub ftype: u8,
}

/// Bytes an entry with a name of `len` bytes needs.
pub(crate) fn rec_size(len: usize) -> usize {
    (8 + len + 3) & !3
}

/// Parse the entry at `off` of a directory block, checking it stays inside.
pub(crate) fn parse_entry(
    data: &[u8],
    off: usize,
    filetype: bool,
    inodes: u32,
) -> Result<RawEntry> {
    let inode = rd32(data, off)?;
    let rec_len = rd16(data, off + 4)? as usize;
    let name_len = *data.get(off + 6).ok_or(FsError::Corrupt)? as usize;
    let ftype = if filetype {
        *data.get(off + 7).ok_or(FsError::Corrupt)?
    } else {
        0
    };
    if rec_len < 8
        || !rec_len.is_multiple_of(4)
        || off + rec_len > data.len()
        || 8 + name_len > rec_len
        || inode > inodes
    {
        return Err(FsError::Corrupt);
    }
    Ok(RawEntry {
        off,
        inode,
        rec_len,
        name_len,
        ftype,
    })
}

/// All entries of a directory block, in order.
pub(crate) fn parse_block(data: &[u8], filetype: bool, inodes: u32) -> Result<Vec<RawEntry>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let e = parse_entry(data, off, filetype, inodes)?;
        off += e.rec_len;
        out.push(e);
    }
    Ok(out)
}

pub(crate) fn entry_name<'a>(data: &'a [u8], e: &RawEntry) -> Result<&'a [u8]> {
    data.get(e.off + 8..e.off + 8 + e.name_len)
        .ok_or(FsError::Corrupt)
}

fn write_entry(
    data: &mut [u8],
    off: usize,
    inode: u32,
    rec_len: usize,
    name: &[u8],
    ftype: u8,
) -> Result<()> {
    wr32(data, off, inode)?;
    wr16(
        data,
        off + 4,
        u16::try_from(rec_len).map_err(|_| FsError::Corrupt)?,
    )?;
    *data.get_mut(off + 6).ok_or(FsError::Corrupt)? = name.len() as u8;
    *data.get_mut(off + 7).ok_or(FsError::Corrupt)? = ftype;
    data.get_mut(off + 8..off + 8 + name.len())
        .ok_or(FsError::Corrupt)?
        .copy_from_slice(name);
    Ok(())
}

/// Where a name was found.
pub(crate) struct Found {
    pub block: u64,
    pub entry: RawEntry,
    pub prev: Option<RawEntry>,
}

/// Check a single path component given to a directory operation.
pub(crate) fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() {
        return Err(FsError::NotFound);
    }
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(FsError::Invalid);
    }
    Ok(())
}

impl Ext2 {
    pub(crate) fn entry_ftype(&self, mode: u16) -> u8 {
        if self.geo.filetype {
            ftype_from_mode(mode)
        } else {
            0
        }
    }

    /// Number of blocks of a directory, checking its size is whole blocks.
    pub(crate) fn dir_nblocks(&self, ino: u32, dir: &Inode) -> Result<u64> {
        if !dir.size.is_multiple_of(self.geo.block_size) {
            log::error!(
                "ext2: directory {ino} has size {} (not whole blocks)",
                dir.size
            );
            return Err(FsError::Corrupt);
        }
        Ok(dir.size / self.geo.block_size)
    }

    /// Disk block of directory block `fb`; a hole is corruption.
    pub(crate) fn dir_block(&mut self, ino: u32, dir: &Inode, fb: u64) -> Result<u64> {
        match self.map_block(ino, dir, fb)? {
            Some(b) => Ok(b),
            None => {
                log::error!("ext2: directory {ino} has a hole at block {fb}");
                Err(FsError::Corrupt)
            }
        }
    }

    pub(crate) fn read_dir_inode(&mut self, ino: u32) -> Result<Inode> {
        let dir = self.read_inode(ino)?;
        if !dir.is_dir() {
            return Err(FsError::NotDir);
        }
        Ok(dir)
    }

    pub(crate) fn find_entry(
        &mut self,
        ino: u32,
        dir: &Inode,
        name: &[u8],
    ) -> Result<Option<Found>> {
        let n = self.dir_nblocks(ino, dir)?;
        let (ft, inodes) = (self.geo.filetype, self.geo.inodes_count);
        for fb in 0..n {
            let blk = self.dir_block(ino, dir, fb)?;
            let data = self.cache.get(blk)?;
            let mut prev = None;
            let mut off = 0;
            while off < data.len() {
                let e = parse_entry(data, off, ft, inodes).inspect_err(|_| {
                    log::error!("ext2: directory {ino}: bad entry at block {fb} offset {off}");
                })?;
                if e.inode != 0 && entry_name(data, &e)? == name {
                    return Ok(Some(Found {
                        block: blk,
                        entry: e,
                        prev,
                    }));
                }
                prev = Some(e);
                off += e.rec_len;
            }
        }
        Ok(None)
    }

    /// Inode number of `name` in directory `dir`.
    pub fn lookup(&mut self, dir: u32, name: &[u8]) -> Result<u32> {
        check_name(name)?;
        let d = self.read_dir_inode(dir)?;
        match self.find_entry(dir, &d, name)? {
            Some(f) if f.entry.inode != 0 => Ok(f.entry.inode),
            _ => Err(FsError::NotFound),
        }
    }

    /// Entries of directory `dir` starting at `cursor` (0 = start; then the
    /// `next` of the last entry returned). Returns the entries of one block at
    /// a time; an empty vector means the end.
    pub fn readdir(&mut self, dir: u32, cursor: u64) -> Result<Vec<DirEntry>> {
        let d = self.read_dir_inode(dir)?;
        let n = self.dir_nblocks(dir, &d)?;
        let bs = self.geo.block_size;
        let (ft, inodes) = (self.geo.filetype, self.geo.inodes_count);
        let mut fb = cursor / bs;
        let mut out = Vec::new();
        while fb < n && out.is_empty() {
            let blk = self.dir_block(dir, &d, fb)?;
            let base = fb * bs;
            let data = self.cache.get(blk)?;
            for e in parse_block(data, ft, inodes)? {
                if e.inode == 0 || base + (e.off as u64) < cursor {
                    continue;
                }
                out.push((
                    DirEntry {
                        name: entry_name(data, &e)?.to_vec(),
                        ino: e.inode,
                        file_type: FileType::from_ext2(e.ftype),
                        next: base + (e.off + e.rec_len) as u64,
                    },
                    e.inode,
                ));
            }
            fb += 1;
        }
        let mut entries = Vec::with_capacity(out.len());
        for (mut de, ino) in out {
            if !ft {
                de.file_type = match self.read_inode(ino) {
                    Ok(i) => FileType::from_ext2(ftype_from_mode(i.mode)),
                    Err(_) => FileType::Unknown,
                };
            }
            entries.push(de);
        }
        Ok(entries)
    }

    /// Add `name -> ino` to directory `dir_ino`, reusing slack space or
    /// growing the directory by a block. Writes the directory inode.
    pub(crate) fn add_entry(
        &mut self,
        dir_ino: u32,
        dir: &mut Inode,
        name: &[u8],
        ino: u32,
        ftype: u8,
    ) -> Result<()> {
        let need = rec_size(name.len());
        let n = self.dir_nblocks(dir_ino, dir)?;
        let (ft, inodes) = (self.geo.filetype, self.geo.inodes_count);
        let bs = self.geo.block_size;
        let mut placed = false;
        for fb in 0..n {
            let blk = self.dir_block(dir_ino, dir, fb)?;
            let spot = {
                let data = self.cache.get(blk)?;
                let mut spot = None;
                let mut off = 0;
                while off < data.len() {
                    let e = parse_entry(data, off, ft, inodes)?;
                    let used = rec_size(e.name_len);
                    if e.inode == 0 && e.rec_len >= need {
                        spot = Some((e, 0));
                        break;
                    }
                    if e.inode != 0 && e.rec_len >= used + need {
                        spot = Some((e, used));
                        break;
                    }
                    off += e.rec_len;
                }
                spot
            };
            let Some((e, used)) = spot else { continue };
            let data = self.cache.get_mut(blk)?;
            if used == 0 {
                write_entry(data, e.off, ino, e.rec_len, name, ftype)?;
            } else {
                wr16(data, e.off + 4, used as u16)?;
                write_entry(data, e.off + used, ino, e.rec_len - used, name, ftype)?;
            }
            placed = true;
            break;
        }
        if !placed {
            if dir.size + bs > u32::MAX as u64 {
                return Err(FsError::NoSpace);
            }
            let (blk, _) = self.map_alloc(dir_ino, dir, n)?;
            let data = self.cache.zeroed(blk)?;
            write_entry(data, 0, ino, bs as usize, name, ftype)?;
            dir.size += bs;
        }
        let now = self.now();
        dir.mtime = now;
        dir.ctime = now;
        dir.flags &= !INDEX_FL;
        self.write_inode(dir_ino, dir)
    }

    /// Remove the entry `name` from directory `dir_ino`; returns its inode.
    /// Writes the directory inode.
    pub(crate) fn remove_entry(&mut self, dir_ino: u32, name: &[u8]) -> Result<u32> {
        let mut dir = self.read_dir_inode(dir_ino)?;
        let f = self
            .find_entry(dir_ino, &dir, name)?
            .ok_or(FsError::NotFound)?;
        let data = self.cache.get_mut(f.block)?;
        match f.prev {
            Some(p) => wr16(data, p.off + 4, (p.rec_len + f.entry.rec_len) as u16)?,
            None => wr32(data, f.entry.off, 0)?,
        }
        let now = self.now();
        dir.mtime = now;
        dir.ctime = now;
        dir.flags &= !INDEX_FL;
        self.write_inode(dir_ino, &dir)?;
        Ok(f.entry.inode)
    }

    /// Point the existing entry `name` of `dir_ino` at `ino`.
    pub(crate) fn set_entry(
        &mut self,
        dir_ino: u32,
        name: &[u8],
        ino: u32,
        ftype: u8,
    ) -> Result<()> {
        let mut dir = self.read_dir_inode(dir_ino)?;
        let f = self
            .find_entry(dir_ino, &dir, name)?
            .ok_or(FsError::NotFound)?;
        let ft = self.geo.filetype;
        let data = self.cache.get_mut(f.block)?;
        wr32(data, f.entry.off, ino)?;
        if ft {
            *data.get_mut(f.entry.off + 7).ok_or(FsError::Corrupt)? = ftype;
        }
        let now = self.now();
        dir.mtime = now;
        dir.ctime = now;
        dir.flags &= !INDEX_FL;
        self.write_inode(dir_ino, &dir)
    }

    /// Whether a directory holds nothing but `.` and `..`.
    pub(crate) fn dir_is_empty(&mut self, ino: u32, dir: &Inode) -> Result<bool> {
        let n = self.dir_nblocks(ino, dir)?;
        let (ft, inodes) = (self.geo.filetype, self.geo.inodes_count);
        for fb in 0..n {
            let blk = self.dir_block(ino, dir, fb)?;
            let data = self.cache.get(blk)?;
            for e in parse_block(data, ft, inodes)? {
                if e.inode == 0 {
                    continue;
                }
                let name = entry_name(data, &e)?;
                if name != b"." && name != b".." {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Write the first block of a new directory: `.` and `..`.
    pub(crate) fn init_dir_block(&mut self, blk: u64, ino: u32, parent: u32) -> Result<()> {
        let bs = self.geo.block_size as usize;
        let ft = self.entry_ftype(S_IFDIR);
        let data = self.cache.zeroed(blk)?;
        write_entry(data, 0, ino, 12, b".", ft)?;
        write_entry(data, 12, parent, bs - 12, b"..", ft)
    }
}
