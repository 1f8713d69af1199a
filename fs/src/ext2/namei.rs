//! Name operations: create, mkdir, unlink, rmdir, rename, link, symlinks, paths.

use alloc::vec::Vec;

use super::dir::check_name;
use super::layout::*;
use super::{Ext2, ROOT_INO};
use crate::error::{FsError, Result};

/// Most symbolic links followed while resolving one path (Linux's MAXSYMLINKS).
pub const MAX_SYMLINKS: u32 = 40;
/// Longest path accepted (Linux's PATH_MAX).
pub const PATH_MAX: usize = 4096;

fn is_dot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

impl Ext2 {
    /// Allocate and initialise a new inode near `parent`.
    fn new_inode(&mut self, parent: u32, mode: u16, links: u16) -> Result<(u32, Inode)> {
        let is_dir = mode & S_IFMT == S_IFDIR;
        let ino = self.alloc_inode(parent, is_dir)?;
        let now = self.now();
        self.generation = self.generation.wrapping_add(1);
        let inode = Inode {
            mode,
            links,
            atime: now,
            ctime: now,
            mtime: now,
            generation: self.generation,
            ..Inode::default()
        };
        if let Err(e) = self.init_inode(ino, &inode) {
            let _ = self.free_inode_bit(ino, is_dir);
            return Err(e);
        }
        Ok((ino, inode))
    }

    /// Undo `new_inode` after a failure: free whatever the inode owns.
    fn discard_inode(&mut self, ino: u32, inode: &mut Inode) {
        if let Err(e) = self.destroy_inode(ino, inode) {
            log::error!("ext2: could not roll back inode {ino}: {e}");
        }
    }

    /// Directory `dir` for adding `name`: checks it exists, is live, and has no such name.
    fn dir_for_new(&mut self, dir: u32, name: &[u8]) -> Result<Inode> {
        self.check_rw()?;
        check_name(name)?;
        let d = self.read_dir_inode(dir)?;
        if d.links == 0 {
            return Err(FsError::NotFound);
        }
        if is_dot(name) || self.find_entry(dir, &d, name)?.is_some() {
            return Err(FsError::Exists);
        }
        Ok(d)
    }

    /// Create a file named `name` in directory `dir`. `mode` holds the type
    /// (regular if none; device, FIFO and socket nodes too) and permissions.
    pub fn create(&mut self, dir: u32, name: &[u8], mode: u16) -> Result<u32> {
        let mut mode = mode;
        if mode & S_IFMT == 0 {
            mode |= S_IFREG;
        }
        match mode & S_IFMT {
            S_IFREG | S_IFCHR | S_IFBLK | S_IFIFO | S_IFSOCK => {}
            S_IFDIR => return Err(FsError::IsDir),
            _ => return Err(FsError::Invalid),
        }
        let mut d = self.dir_for_new(dir, name)?;
        let (ino, mut inode) = self.new_inode(dir, mode, 1)?;
        let ft = self.entry_ftype(mode);
        if let Err(e) = self.add_entry(dir, &mut d, name, ino, ft) {
            self.discard_inode(ino, &mut inode);
            return Err(e);
        }
        Ok(ino)
    }

    /// Make directory `name` in `dir`.
    pub fn mkdir(&mut self, dir: u32, name: &[u8], mode: u16) -> Result<u32> {
        let mut d = self.dir_for_new(dir, name)?;
        if d.links >= LINK_MAX {
            return Err(FsError::TooManyLinks);
        }
        let mode = S_IFDIR | (mode & !S_IFMT);
        let (ino, mut inode) = self.new_inode(dir, mode, 2)?;
        let step = (|| {
            let (blk, _) = self.map_alloc(ino, &mut inode, 0)?;
            self.init_dir_block(blk, ino, dir)?;
            inode.size = self.geo.block_size;
            self.write_inode(ino, &inode)?;
            let ft = self.entry_ftype(S_IFDIR);
            self.add_entry(dir, &mut d, name, ino, ft)
        })();
        if let Err(e) = step {
            self.discard_inode(ino, &mut inode);
            return Err(e);
        }
        let mut d = self.read_inode(dir)?;
        d.links += 1;
        self.write_inode(dir, &d)?;
        Ok(ino)
    }

    /// Drop one link of `ino`; free it when no link and no holder remain.
    fn drop_link(&mut self, ino: u32, dir_gone: bool) -> Result<()> {
        let mut inode = self.read_inode(ino)?;
        inode.links = if dir_gone {
            0
        } else {
            inode.links.saturating_sub(1)
        };
        inode.ctime = self.now();
        if inode.links == 0 {
            if !self.is_held(ino) {
                return self.destroy_inode(ino, &mut inode);
            }
            if dir_gone {
                self.free_blocks_from(ino, &mut inode, 0)?;
                inode.size = 0;
            }
        }
        self.write_inode(ino, &inode)
    }

    /// Remove the name `name` (not a directory) from `dir`.
    pub fn unlink(&mut self, dir: u32, name: &[u8]) -> Result<()> {
        self.check_rw()?;
        check_name(name)?;
        if is_dot(name) {
            return Err(FsError::IsDir);
        }
        let d = self.read_dir_inode(dir)?;
        let f = self.find_entry(dir, &d, name)?.ok_or(FsError::NotFound)?;
        let target = self.read_inode(f.entry.inode)?;
        if target.is_dir() {
            return Err(FsError::IsDir);
        }
        self.remove_entry(dir, name)?;
        self.drop_link(f.entry.inode, false)
    }

    /// Remove the empty directory `name` from `dir`.
    pub fn rmdir(&mut self, dir: u32, name: &[u8]) -> Result<()> {
        self.check_rw()?;
        check_name(name)?;
        if name == b"." {
            return Err(FsError::Invalid);
        }
        if name == b".." {
            return Err(FsError::NotEmpty);
        }
        let d = self.read_dir_inode(dir)?;
        let f = self.find_entry(dir, &d, name)?.ok_or(FsError::NotFound)?;
        let ino = f.entry.inode;
        let target = self.read_inode(ino)?;
        if !target.is_dir() {
            return Err(FsError::NotDir);
        }
        if ino == ROOT_INO {
            return Err(FsError::Busy);
        }
        if !self.dir_is_empty(ino, &target)? {
            return Err(FsError::NotEmpty);
        }
        self.remove_entry(dir, name)?;
        let mut d = self.read_inode(dir)?;
        d.links = d.links.saturating_sub(1);
        self.write_inode(dir, &d)?;
        self.drop_link(ino, true)
    }

    /// Whether `dir` is `ancestor` or lies below it.
    fn is_within(&mut self, dir: u32, ancestor: u32) -> Result<bool> {
        let mut cur = dir;
        for _ in 0..=self.geo.inodes_count.min(1 << 16) {
            if cur == ancestor {
                return Ok(true);
            }
            if cur == ROOT_INO {
                return Ok(false);
            }
            cur = self.lookup(cur, b"..")?;
        }
        log::error!("ext2: directory {dir}: `..` chain does not reach the root");
        Err(FsError::Corrupt)
    }

    /// Rename `old_dir/old_name` to `new_dir/new_name`, replacing a target of
    /// the same kind (an empty directory for a directory).
    pub fn rename(
        &mut self,
        old_dir: u32,
        old_name: &[u8],
        new_dir: u32,
        new_name: &[u8],
    ) -> Result<()> {
        self.check_rw()?;
        check_name(old_name)?;
        check_name(new_name)?;
        if is_dot(old_name) || is_dot(new_name) {
            return Err(FsError::Invalid);
        }
        let od = self.read_dir_inode(old_dir)?;
        let nd = self.read_dir_inode(new_dir)?;
        let src = self
            .find_entry(old_dir, &od, old_name)?
            .ok_or(FsError::NotFound)?
            .entry
            .inode;
        if old_dir == new_dir && old_name == new_name {
            return Ok(());
        }
        let si = self.read_inode(src)?;
        let dst = self
            .find_entry(new_dir, &nd, new_name)?
            .map(|f| f.entry.inode);
        if dst == Some(src) {
            return Ok(());
        }
        if si.is_dir() && (src == ROOT_INO || self.is_within(new_dir, src)?) {
            return Err(FsError::Invalid);
        }
        if nd.links == 0 {
            return Err(FsError::NotFound);
        }
        let moving_dir = si.is_dir() && old_dir != new_dir;
        match dst {
            Some(d) => {
                let di = self.read_inode(d)?;
                if si.is_dir() && !di.is_dir() {
                    return Err(FsError::NotDir);
                }
                if !si.is_dir() && di.is_dir() {
                    return Err(FsError::IsDir);
                }
                if di.is_dir() && !self.dir_is_empty(d, &di)? {
                    return Err(FsError::NotEmpty);
                }
            }
            None => {
                if moving_dir && nd.links >= LINK_MAX {
                    return Err(FsError::TooManyLinks);
                }
            }
        }
        let ft = self.entry_ftype(si.mode);
        // The only step that can allocate (and so fail for space) comes first.
        match dst {
            Some(_) => self.set_entry(new_dir, new_name, src, ft)?,
            None => {
                let mut nd = nd;
                self.add_entry(new_dir, &mut nd, new_name, src, ft)?;
            }
        }
        self.remove_entry(old_dir, old_name)?;
        if moving_dir {
            let ft_dir = self.entry_ftype(S_IFDIR);
            self.set_entry(src, b"..", new_dir, ft_dir)?;
            let mut o = self.read_inode(old_dir)?;
            o.links = o.links.saturating_sub(1);
            self.write_inode(old_dir, &o)?;
            let mut n = self.read_inode(new_dir)?;
            n.links = n.links.saturating_add(1);
            self.write_inode(new_dir, &n)?;
        }
        if let Some(d) = dst {
            let di = self.read_inode(d)?;
            if di.is_dir() {
                let mut n = self.read_inode(new_dir)?;
                n.links = n.links.saturating_sub(1);
                self.write_inode(new_dir, &n)?;
            }
            self.drop_link(d, di.is_dir())?;
        }
        let mut si = self.read_inode(src)?;
        si.ctime = self.now();
        self.write_inode(src, &si)
    }

    /// Make `dir/name` a new hard link to `ino` (not a directory).
    pub fn link(&mut self, ino: u32, dir: u32, name: &[u8]) -> Result<()> {
        let mut target = self.read_inode(ino)?;
        if target.is_dir() {
            return Err(FsError::NotPermitted);
        }
        if target.links == 0 {
            return Err(FsError::NotFound);
        }
        if target.links >= LINK_MAX {
            return Err(FsError::TooManyLinks);
        }
        let mut d = self.dir_for_new(dir, name)?;
        let ft = self.entry_ftype(target.mode);
        self.add_entry(dir, &mut d, name, ino, ft)?;
        target.links += 1;
        target.ctime = self.now();
        self.write_inode(ino, &target)
    }

    /// Make `dir/name` a symbolic link to `target`: kept in the inode when
    /// shorter than 60 bytes, in a block otherwise.
    pub fn symlink(&mut self, dir: u32, name: &[u8], target: &[u8]) -> Result<u32> {
        if target.is_empty() {
            return Err(FsError::NotFound);
        }
        if target.len() >= self.geo.block_size as usize {
            return Err(FsError::NameTooLong);
        }
        let mut d = self.dir_for_new(dir, name)?;
        let (ino, mut inode) = self.new_inode(dir, S_IFLNK | 0o777, 1)?;
        let step = (|| {
            if target.len() < FAST_SYMLINK_MAX {
                inode.set_block_bytes(target);
            } else {
                let (blk, _) = self.map_alloc(ino, &mut inode, 0)?;
                let data = self.cache.zeroed(blk)?;
                data.get_mut(..target.len())
                    .ok_or(FsError::Invalid)?
                    .copy_from_slice(target);
            }
            inode.size = target.len() as u64;
            self.write_inode(ino, &inode)?;
            let ft = self.entry_ftype(S_IFLNK);
            self.add_entry(dir, &mut d, name, ino, ft)
        })();
        if let Err(e) = step {
            self.discard_inode(ino, &mut inode);
            return Err(e);
        }
        Ok(ino)
    }

    /// The target of symbolic link `ino`.
    pub fn readlink(&mut self, ino: u32) -> Result<Vec<u8>> {
        let inode = self.read_inode(ino)?;
        if !inode.is_symlink() {
            return Err(FsError::Invalid);
        }
        let len = usize::try_from(inode.size).map_err(|_| FsError::Corrupt)?;
        if len >= self.geo.block_size as usize {
            log::error!("ext2: symlink {ino} has size {len}");
            return Err(FsError::Corrupt);
        }
        if self.is_fast_symlink(&inode) {
            let bytes = inode.block_bytes();
            return Ok(bytes.get(..len).ok_or(FsError::Corrupt)?.to_vec());
        }
        let blk = self.map_block(ino, &inode, 0)?.ok_or(FsError::Corrupt)?;
        let data = self.cache.get(blk)?;
        Ok(data.get(..len).ok_or(FsError::Corrupt)?.to_vec())
    }

    /// Resolve an absolute path (relative paths start at the root too),
    /// following every symbolic link.
    pub fn resolve(&mut self, path: &[u8]) -> Result<u32> {
        self.resolve_at(ROOT_INO, path, true)
    }

    /// Resolve `path` from directory `start` (absolute paths from the root);
    /// the last component's symbolic link is followed only if `follow_last`.
    pub fn resolve_at(&mut self, start: u32, path: &[u8], follow_last: bool) -> Result<u32> {
        if path.len() > PATH_MAX {
            return Err(FsError::NameTooLong);
        }
        if path.is_empty() {
            return Err(FsError::NotFound);
        }
        let mut stack: Vec<Vec<u8>> = Vec::new();
        let push = |stack: &mut Vec<Vec<u8>>, p: &[u8]| {
            for c in p.split(|&b| b == b'/').rev() {
                if !c.is_empty() && c != b"." {
                    stack.push(c.to_vec());
                }
            }
        };
        push(&mut stack, path);
        let mut cur = if path.first() == Some(&b'/') {
            ROOT_INO
        } else {
            start
        };
        let mut links = 0u32;
        while let Some(comp) = stack.pop() {
            let next = self.lookup(cur, &comp)?;
            let ni = self.read_inode(next)?;
            if ni.is_symlink() && (follow_last || !stack.is_empty()) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(FsError::Loop);
                }
                let target = self.readlink(next)?;
                if target.first() == Some(&b'/') {
                    cur = ROOT_INO;
                }
                push(&mut stack, &target);
                if stack.len() > PATH_MAX {
                    return Err(FsError::NameTooLong);
                }
                continue;
            }
            cur = next;
        }
        Ok(cur)
    }
}
