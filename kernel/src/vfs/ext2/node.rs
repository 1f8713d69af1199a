//! The VFS node of a mounted ext2 file system: files, directories, symbolic links.

use super::*;

/// A file, directory or symbolic link of a mounted ext2 file system.
pub struct Ext2Node {
    m: Arc<Mount>,
    ino: u32,
    kind: FileKind,
}

fn kind_of(mode: u16) -> FileKind {
    FileKind::from_mode(mode as u32).unwrap_or(FileKind::Regular)
}

impl Ext2Node {
    /// The root directory of `m`.
    pub fn root(m: &Arc<Mount>) -> Result<NodeRef, Errno> {
        let st = m.fs.lock().stat(ROOT_INO)?;
        if kind_of(st.mode) != FileKind::Directory {
            log::error!("ext2 {}: the root inode is not a directory", m.disk.name());
            return Err(Errno::EINVAL);
        }
        Ok(Arc::new(Ext2Node {
            m: m.clone(),
            ino: ROOT_INO,
            kind: FileKind::Directory,
        }))
    }

    fn node(&self, ino: u32) -> Result<NodeRef, Errno> {
        let st = self.m.fs.lock().stat(ino)?;
        Ok(Arc::new(Ext2Node {
            m: self.m.clone(),
            ino,
            kind: kind_of(st.mode),
        }))
    }

    /// Its page-cache side (regular files only).
    pub fn inode(&self) -> Result<Arc<Inode>, Errno> {
        if self.kind != FileKind::Regular {
            return Err(if self.kind == FileKind::Directory {
                Errno::EISDIR
            } else {
                Errno::EINVAL
            });
        }
        Ok(self.m.inode(self.ino)?)
    }

    fn dir(&self) -> Result<(), Errno> {
        if self.kind != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        Ok(())
    }

    fn writable(&self) -> Result<(), Errno> {
        self.dir()?;
        if self.m.read_only {
            return Err(Errno::EROFS);
        }
        Ok(())
    }

    fn same_fs<'a>(&self, other: &'a NodeRef) -> Result<&'a Ext2Node, Errno> {
        match downcast::<Ext2Node>(other) {
            Some(o) if Arc::ptr_eq(&o.m, &self.m) => Ok(o),
            _ => Err(Errno::EXDEV),
        }
    }

    /// The mount it belongs to.
    pub fn mount(&self) -> &Arc<Mount> {
        &self.m
    }

    /// Its inode number.
    pub fn ino(&self) -> u32 {
        self.ino
    }
}

impl Node for Ext2Node {
    fn kind(&self) -> FileKind {
        self.kind
    }

    fn stat(&self) -> Result<Stat, Errno> {
        let st = self.m.fs.lock().stat(self.ino)?;
        let cached = match self.kind {
            FileKind::Regular => self.m.inodes.lock().get(&self.ino).cloned(),
            _ => None,
        };
        let size = cached.as_ref().map_or(st.size, |i| i.size());
        // Blocks are allocated at writeback: while pages are dirty, count the blocks the
        // data will take (as ext4 counts its delayed-allocation reservations).
        let mut blocks = st.blocks;
        if let Some(i) = &cached
            && i.cache.dirty_pages() > 0
        {
            let bs = st.blksize.max(512) as u64;
            blocks = blocks.max(size.div_ceil(bs) * (bs / 512));
        }
        Ok(Stat {
            dev: self.m.dev,
            ino: self.ino as u64,
            mode: st.mode as u32,
            nlink: st.nlink as u32,
            uid: st.uid,
            gid: st.gid,
            rdev: 0,
            size,
            blksize: st.blksize,
            blocks,
            atime: st.atime as i64,
            mtime: st.mtime as i64,
            ctime: st.ctime as i64,
        })
    }

    fn size(&self) -> u64 {
        match self.inode() {
            Ok(i) => i.size(),
            Err(_) => self.stat().map(|s| s.size).unwrap_or(0),
        }
    }

    fn lookup(&self, name: &[u8]) -> Result<NodeRef, Errno> {
        self.dir()?;
        let ino = self.m.fs.lock().lookup(self.ino, name)?;
        self.node(ino)
    }

    fn create(&self, name: &[u8], mode: u32) -> Result<NodeRef, Errno> {
        self.writable()?;
        let ino = self
            .m
            .fs
            .lock()
            .create(self.ino, name, (S_IFREG | (mode & 0o7777)) as u16)?;
        Ok(Arc::new(Ext2Node {
            m: self.m.clone(),
            ino,
            kind: FileKind::Regular,
        }))
    }

    fn mkdir(&self, name: &[u8], mode: u32) -> Result<(), Errno> {
        self.writable()?;
        self.m
            .fs
            .lock()
            .mkdir(self.ino, name, (S_IFDIR | (mode & 0o7777)) as u16)?;
        Ok(())
    }

    fn symlink(&self, name: &[u8], target: &[u8]) -> Result<(), Errno> {
        self.writable()?;
        self.m.fs.lock().symlink(self.ino, name, target)?;
        Ok(())
    }

    fn link(&self, name: &[u8], target: &NodeRef) -> Result<(), Errno> {
        self.writable()?;
        let t = self.same_fs(target)?;
        self.m.fs.lock().link(t.ino, self.ino, name)?;
        Ok(())
    }

    fn unlink(&self, name: &[u8]) -> Result<(), Errno> {
        self.writable()?;
        let ino = {
            let mut fs = self.m.fs.lock();
            let ino = fs.lookup(self.ino, name)?;
            fs.unlink(self.ino, name)?;
            ino
        };
        self.m.forget_if_unlinked(ino);
        Ok(())
    }

    fn rmdir(&self, name: &[u8]) -> Result<(), Errno> {
        self.writable()?;
        self.m.fs.lock().rmdir(self.ino, name)?;
        Ok(())
    }

    fn rename(&self, old: &[u8], new_dir: &NodeRef, new: &[u8]) -> Result<(), Errno> {
        self.writable()?;
        let nd = self.same_fs(new_dir)?;
        nd.dir()?;
        let replaced = {
            let mut fs = self.m.fs.lock();
            let src = fs.lookup(self.ino, old)?;
            let replaced = fs.lookup(nd.ino, new).ok().filter(|&r| r != src);
            fs.rename(self.ino, old, nd.ino, new)?;
            replaced
        };
        if let Some(r) = replaced {
            self.m.forget_if_unlinked(r);
        }
        Ok(())
    }

    fn readdir(&self, cursor: u64) -> Result<Vec<DirEntry>, Errno> {
        self.dir()?;
        let entries = self.m.fs.lock().readdir(self.ino, cursor)?;
        Ok(entries
            .into_iter()
            .map(|e| DirEntry {
                name: e.name,
                ino: e.ino as u64,
                dtype: e.file_type.dt(),
                next: e.next,
            })
            .collect())
    }

    fn readlink(&self) -> Result<Vec<u8>, Errno> {
        if self.kind != FileKind::Symlink {
            return Err(Errno::EINVAL);
        }
        Ok(self.m.fs.lock().readlink(self.ino)?)
    }

    fn read_at(&self, offset: u64, buf: &mut ReadBuf) -> Result<usize, Errno> {
        self.inode()?.read(offset, buf)
    }

    fn write_at(&self, offset: u64, buf: &mut WriteBuf) -> Result<usize, Errno> {
        if self.m.read_only {
            return Err(Errno::EROFS);
        }
        self.inode()?.write(offset, buf)
    }

    fn truncate(&self, size: u64) -> Result<(), Errno> {
        let inode = self.inode()?;
        if self.m.read_only {
            return Err(Errno::EROFS);
        }
        Ok(inode.truncate(size)?)
    }

    fn fsync(&self, _data_only: bool) -> Result<(), Errno> {
        if let Ok(i) = self.inode() {
            i.cache.writeback().map_err(Errno::from)?;
        }
        Ok(self.m.fs.lock().fsync_inode(self.ino)?)
    }

    fn chmod(&self, mode: u32) -> Result<(), Errno> {
        if self.m.read_only {
            return Err(Errno::EROFS);
        }
        Ok(self
            .m
            .fs
            .lock()
            .set_mode(self.ino, (mode & 0o7777) as u16)?)
    }

    fn open(&self, me: &NodeRef, _flags: u32) -> Result<Box<dyn FileOps>, Errno> {
        if self.kind == FileKind::Regular {
            Ok(Box::new(self.m.open_ino(self.ino)?))
        } else {
            Ok(Box::new(NodeFile(me.clone())))
        }
    }
}
