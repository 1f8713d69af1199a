//! ramfs: a read-write file system in kernel memory (the root file system, filled from
//! the initramfs). A file's data may point straight at the initramfs image (`&'static`)
//! until it is first written; then it is copied into a buffer of its own.

use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use mm::counters::{self, Counter};
use mm::sync::Mutex;

use super::node::*;
use crate::errno::Errno;
use crate::memory;

/// One ramfs instance.
pub struct RamFs {
    dev: u64,
    next_ino: AtomicU64,
}

/// Largest ramfs file (a bound against runaway writes; memory is the real limit).
const MAX_FILE: u64 = 1 << 32;

struct Meta {
    mode: u32,
    nlink: u32,
    uid: u32,
    gid: u32,
    atime: i64,
    mtime: i64,
    ctime: i64,
}

enum Data {
    /// Bytes of the initramfs, not yet written.
    Static(&'static [u8]),
    Owned(Vec<u8>),
}

impl Data {
    fn bytes(&self) -> &[u8] {
        match self {
            Data::Static(s) => s,
            Data::Owned(v) => v,
        }
    }

    /// The owned buffer (copying the initramfs bytes the first time).
    fn owned(&mut self) -> Result<&mut Vec<u8>, Errno> {
        if let Data::Static(s) = self {
            let mut v = Vec::new();
            v.try_reserve_exact(s.len()).map_err(|_| Errno::ENOSPC)?;
            v.extend_from_slice(s);
            counters::add(Counter::DataCopyBytes, s.len() as u64);
            *self = Data::Owned(v);
        }
        match self {
            Data::Owned(v) => Ok(v),
            Data::Static(_) => Err(Errno::EIO),
        }
    }
}

struct Dir {
    /// name -> (sequence number, node)
    names: BTreeMap<Vec<u8>, (u64, Arc<RamNode>)>,
    /// sequence number -> name: readdir order, stable while entries come and go.
    order: BTreeMap<u64, Vec<u8>>,
    next_seq: u64,
    parent: Weak<RamNode>,
}

enum Content {
    Dir(Mutex<Dir>),
    File(Mutex<Data>),
    Symlink(Vec<u8>),
}

/// A ramfs node.
pub struct RamNode {
    fs: Arc<RamFs>,
    ino: u64,
    kind: FileKind,
    meta: Mutex<Meta>,
    content: Content,
    me: Weak<RamNode>,
}

/// Cursors 0 and 1 are `.` and `..`; entries start at 2.
const FIRST_SEQ: u64 = 2;

impl RamFs {
    /// A new, empty instance; returns its root directory.
    pub fn new_root(dev: u64) -> Arc<RamNode> {
        let fs = Arc::new(RamFs {
            dev,
            next_ino: AtomicU64::new(1),
        });
        fs.new_node(FileKind::Directory, 0o755, None, Weak::new())
    }

    fn new_node(
        self: &Arc<Self>,
        kind: FileKind,
        perm: u32,
        symlink: Option<Vec<u8>>,
        parent: Weak<RamNode>,
    ) -> Arc<RamNode> {
        let t = now();
        let content = match kind {
            FileKind::Directory => Content::Dir(Mutex::new(Dir {
                names: BTreeMap::new(),
                order: BTreeMap::new(),
                next_seq: FIRST_SEQ,
                parent,
            })),
            FileKind::Symlink => Content::Symlink(symlink.unwrap_or_default()),
            _ => Content::File(Mutex::new(Data::Owned(Vec::new()))),
        };
        Arc::new_cyclic(|me| RamNode {
            fs: self.clone(),
            ino: self.next_ino.fetch_add(1, Ordering::Relaxed),
            kind,
            meta: Mutex::new(Meta {
                mode: kind.mode_bits() | (perm & 0o7777),
                nlink: if kind == FileKind::Directory { 2 } else { 1 },
                uid: 0,
                gid: 0,
                atime: t,
                mtime: t,
                ctime: t,
            }),
            content,
            me: me.clone(),
        })
    }
}

impl Dir {
    fn insert(&mut self, name: &[u8], node: Arc<RamNode>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, name.to_vec());
        self.names.insert(name.to_vec(), (seq, node));
    }

    fn remove(&mut self, name: &[u8]) -> Option<Arc<RamNode>> {
        let (seq, node) = self.names.remove(name)?;
        self.order.remove(&seq);
        Some(node)
    }
}

impl RamNode {
    fn dir(&self) -> Result<&Mutex<Dir>, Errno> {
        match &self.content {
            Content::Dir(d) => Ok(d),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn data(&self) -> Result<&Mutex<Data>, Errno> {
        match &self.content {
            Content::File(d) => Ok(d),
            Content::Dir(_) => Err(Errno::EISDIR),
            Content::Symlink(_) => Err(Errno::EINVAL),
        }
    }

    fn touch(&self, data: bool) {
        let t = now();
        let mut m = self.meta.lock();
        if data {
            m.mtime = t;
        }
        m.ctime = t;
    }

    fn add_links(&self, d: i32) {
        let mut m = self.meta.lock();
        m.nlink = (m.nlink as i64 + d as i64).max(0) as u32;
        m.ctime = now();
    }

    /// A live directory can take new names (not one that was removed).
    fn check_live(&self) -> Result<(), Errno> {
        if self.meta.lock().nlink == 0 {
            Err(Errno::ENOENT)
        } else {
            Ok(())
        }
    }

    /// Add `name` -> a new node of `kind`; the node is returned.
    fn add_new(
        &self,
        name: &[u8],
        kind: FileKind,
        perm: u32,
        symlink: Option<Vec<u8>>,
    ) -> Result<Arc<RamNode>, Errno> {
        check_name(name)?;
        let mut d = self.dir()?.lock();
        self.check_live()?;
        if d.names.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let node = self.fs.new_node(kind, perm, symlink, self.me.clone());
        d.insert(name, node.clone());
        drop(d);
        if kind == FileKind::Directory {
            self.add_links(1);
        }
        self.touch(true);
        Ok(node)
    }

    /// Replace the whole content of a regular file with initramfs bytes (no copy).
    pub fn set_static_data(&self, bytes: &'static [u8]) -> Result<(), Errno> {
        *self.data()?.lock() = Data::Static(bytes);
        Ok(())
    }

    /// Set the modification time (the initramfs's).
    pub fn set_mtime(&self, t: i64) {
        let mut m = self.meta.lock();
        m.mtime = t;
        m.atime = t;
        m.ctime = t;
    }

    /// Set permission bits and owner (the initramfs's).
    pub fn set_attrs(&self, mode: u32, uid: u32, gid: u32) {
        let mut m = self.meta.lock();
        m.mode = (m.mode & S_IFMT) | (mode & 0o7777);
        m.uid = uid;
        m.gid = gid;
    }

    fn is_empty_dir(&self) -> bool {
        match &self.content {
            Content::Dir(d) => d.lock().names.is_empty(),
            _ => false,
        }
    }

    /// Whether `self` is `other` or one of its ancestors.
    fn is_ancestor_of(&self, other: &Arc<RamNode>) -> bool {
        let mut cur = Some(other.clone());
        let mut steps = 0;
        while let Some(n) = cur {
            if n.ino == self.ino {
                return true;
            }
            steps += 1;
            if steps > 100_000 {
                return false;
            }
            cur = match &n.content {
                Content::Dir(d) => d.lock().parent.upgrade(),
                _ => None,
            };
        }
        false
    }
}

fn own(node: &NodeRef) -> Result<&RamNode, Errno> {
    downcast::<RamNode>(node).ok_or(Errno::EXDEV)
}

impl Node for RamNode {
    fn kind(&self) -> FileKind {
        self.kind
    }

    fn stat(&self) -> Result<Stat, Errno> {
        let size = match &self.content {
            Content::File(d) => d.lock().bytes().len() as u64,
            Content::Symlink(t) => t.len() as u64,
            Content::Dir(_) => 4096,
        };
        let m = self.meta.lock();
        Ok(Stat {
            dev: self.fs.dev,
            ino: self.ino,
            mode: m.mode,
            nlink: m.nlink,
            uid: m.uid,
            gid: m.gid,
            rdev: 0,
            size,
            blksize: 4096,
            blocks: size.div_ceil(512),
            atime: m.atime,
            mtime: m.mtime,
            ctime: m.ctime,
        })
    }

    fn size(&self) -> u64 {
        match &self.content {
            Content::File(d) => d.lock().bytes().len() as u64,
            Content::Symlink(t) => t.len() as u64,
            Content::Dir(_) => 4096,
        }
    }

    fn lookup(&self, name: &[u8]) -> Result<NodeRef, Errno> {
        let d = self.dir()?.lock();
        match d.names.get(name) {
            Some((_, n)) => Ok(n.clone()),
            None => Err(Errno::ENOENT),
        }
    }

    fn create(&self, name: &[u8], mode: u32) -> Result<NodeRef, Errno> {
        Ok(self.add_new(name, FileKind::Regular, mode, None)?)
    }

    fn mkdir(&self, name: &[u8], mode: u32) -> Result<(), Errno> {
        self.add_new(name, FileKind::Directory, mode, None)
            .map(|_| ())
    }

    fn symlink(&self, name: &[u8], target: &[u8]) -> Result<(), Errno> {
        if target.is_empty() {
            return Err(Errno::ENOENT);
        }
        if target.len() >= 4096 {
            return Err(Errno::ENAMETOOLONG);
        }
        self.add_new(name, FileKind::Symlink, 0o777, Some(target.to_vec()))
            .map(|_| ())
    }

    fn link(&self, name: &[u8], target: &NodeRef) -> Result<(), Errno> {
        check_name(name)?;
        let t = own(target)?;
        if !Arc::ptr_eq(&t.fs, &self.fs) {
            return Err(Errno::EXDEV);
        }
        if t.kind == FileKind::Directory {
            return Err(Errno::EPERM);
        }
        if t.meta.lock().nlink == 0 {
            return Err(Errno::ENOENT);
        }
        let node = t.me.upgrade().ok_or(Errno::ENOENT)?;
        let mut d = self.dir()?.lock();
        self.check_live()?;
        if d.names.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        d.insert(name, node);
        drop(d);
        t.add_links(1);
        self.touch(true);
        Ok(())
    }

    fn unlink(&self, name: &[u8]) -> Result<(), Errno> {
        check_name(name)?;
        let mut d = self.dir()?.lock();
        let node = d
            .names
            .get(name)
            .map(|(_, n)| n.clone())
            .ok_or(Errno::ENOENT)?;
        if node.kind == FileKind::Directory {
            return Err(Errno::EISDIR);
        }
        d.remove(name);
        drop(d);
        node.add_links(-1);
        self.touch(true);
        Ok(())
    }

    fn rmdir(&self, name: &[u8]) -> Result<(), Errno> {
        check_name(name)?;
        let mut d = self.dir()?.lock();
        let node = d
            .names
            .get(name)
            .map(|(_, n)| n.clone())
            .ok_or(Errno::ENOENT)?;
        if node.kind != FileKind::Directory {
            return Err(Errno::ENOTDIR);
        }
        if !node.is_empty_dir() {
            return Err(Errno::ENOTEMPTY);
        }
        d.remove(name);
        drop(d);
        node.meta.lock().nlink = 0;
        self.add_links(-1);
        self.touch(true);
        Ok(())
    }

    fn rename(&self, old: &[u8], new_dir: &NodeRef, new: &[u8]) -> Result<(), Errno> {
        check_name(old)?;
        check_name(new)?;
        let nd = own(new_dir)?;
        if !Arc::ptr_eq(&nd.fs, &self.fs) {
            return Err(Errno::EXDEV);
        }
        nd.dir()?;
        let src = self
            .dir()?
            .lock()
            .names
            .get(old)
            .map(|(_, n)| n.clone())
            .ok_or(Errno::ENOENT)?;
        let dst = nd.dir()?.lock().names.get(new).map(|(_, n)| n.clone());
        if let Some(dst) = &dst {
            if Arc::ptr_eq(dst, &src) {
                return Ok(());
            }
            match (
                src.kind == FileKind::Directory,
                dst.kind == FileKind::Directory,
            ) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                (true, true) if !dst.is_empty_dir() => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
        }
        let nd_arc = nd.me.upgrade().ok_or(Errno::ENOENT)?;
        if src.kind == FileKind::Directory && src.is_ancestor_of(&nd_arc) {
            return Err(Errno::EINVAL);
        }
        nd.check_live()?;
        // Both directories' locks, taken one at a time: the tree is only changed here
        // and in the single-name operations above, which take one lock each.
        if let Some(dst) = dst {
            nd.dir()?.lock().remove(new);
            if dst.kind == FileKind::Directory {
                dst.meta.lock().nlink = 0;
                nd.add_links(-1);
            } else {
                dst.add_links(-1);
            }
        }
        self.dir()?.lock().remove(old);
        nd.dir()?.lock().insert(new, src.clone());
        if src.kind == FileKind::Directory && !core::ptr::eq(self, nd) {
            if let Content::Dir(d) = &src.content {
                d.lock().parent = nd.me.clone();
            }
            self.add_links(-1);
            nd.add_links(1);
        }
        src.touch(false);
        self.touch(true);
        nd.touch(true);
        Ok(())
    }

    fn readdir(&self, cursor: u64) -> Result<Vec<DirEntry>, Errno> {
        // A removed directory cannot be listed (Linux: ENOENT).
        self.check_live()?;
        let d = self.dir()?.lock();
        let mut out = Vec::new();
        if cursor == 0 {
            out.push(DirEntry {
                name: b".".to_vec(),
                ino: self.ino,
                dtype: FileKind::Directory.dt(),
                next: 1,
            });
        }
        if cursor <= 1 {
            let pino = d.parent.upgrade().map(|p| p.ino).unwrap_or(self.ino);
            out.push(DirEntry {
                name: b"..".to_vec(),
                ino: pino,
                dtype: FileKind::Directory.dt(),
                next: FIRST_SEQ,
            });
        }
        for (&seq, name) in d.order.range(cursor.max(FIRST_SEQ)..).take(64) {
            if let Some((_, n)) = d.names.get(name) {
                out.push(DirEntry {
                    name: name.clone(),
                    ino: n.ino,
                    dtype: n.kind.dt(),
                    next: seq + 1,
                });
            }
        }
        Ok(out)
    }

    fn readlink(&self) -> Result<Vec<u8>, Errno> {
        match &self.content {
            Content::Symlink(t) => Ok(t.clone()),
            _ => Err(Errno::EINVAL),
        }
    }

    fn read_at(&self, offset: u64, buf: &mut ReadBuf) -> Result<usize, Errno> {
        let data = self.data()?.lock();
        let bytes = data.bytes();
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        if start >= bytes.len() {
            return Ok(0);
        }
        let mut pos = start;
        let n = buf.fill(|piece| {
            let n = piece.len().min(bytes.len() - pos);
            piece[..n].copy_from_slice(&bytes[pos..pos + n]);
            pos += n;
            Ok(n)
        })?;
        counters::add(Counter::DataCopyBytes, n as u64);
        Ok(n)
    }

    fn write_at(&self, offset: u64, buf: &mut WriteBuf) -> Result<usize, Errno> {
        let len = buf.len() as u64;
        let end = offset.checked_add(len).ok_or(Errno::EFBIG)?;
        if end > MAX_FILE {
            return Err(Errno::EFBIG);
        }
        let mut data = self.data()?.lock();
        let v = data.owned()?;
        let (start, end) = (offset as usize, end as usize);
        if end > v.len() {
            // Keep some memory for everything else.
            let free = memory::frames().free_frames() * 4096;
            let grow = (end - v.len()) as u64;
            if grow > free / 2 {
                return Err(Errno::ENOSPC);
            }
            v.try_reserve(end - v.len()).map_err(|_| Errno::ENOSPC)?;
        }
        let old_len = v.len();
        if start > old_len {
            v.resize(start, 0);
        }
        let mut pos = start;
        let result = buf.drain(|piece| {
            let overlap = v.len().saturating_sub(pos).min(piece.len());
            v[pos..pos + overlap].copy_from_slice(&piece[..overlap]);
            v.extend_from_slice(&piece[overlap..]);
            pos += piece.len();
            Ok(piece.len())
        });
        if result.is_err() && start > old_len {
            // Nothing was written: no hole either.
            v.truncate(old_len);
        }
        let n = result?;
        counters::add(Counter::DataCopyBytes, n as u64);
        drop(data);
        self.touch(true);
        Ok(n)
    }

    fn truncate(&self, size: u64) -> Result<(), Errno> {
        if size > MAX_FILE {
            return Err(Errno::EFBIG);
        }
        let mut data = self.data()?.lock();
        if let Data::Static(s) = &*data
            && (size as usize) <= s.len()
        {
            *data = Data::Static(&s[..size as usize]);
        } else {
            let v = data.owned()?;
            let size = size as usize;
            if size > v.len() {
                v.try_reserve(size - v.len()).map_err(|_| Errno::ENOSPC)?;
            }
            v.resize(size, 0);
        }
        drop(data);
        self.touch(true);
        Ok(())
    }

    fn chmod(&self, mode: u32) -> Result<(), Errno> {
        let mut m = self.meta.lock();
        m.mode = (m.mode & S_IFMT) | (mode & 0o7777);
        m.ctime = now();
        Ok(())
    }
}

/// `mkdir -p` below `dir` for the initramfs: returns the directory `path` names.
pub fn ensure_dir(root: &Arc<RamNode>, path: &[u8]) -> Result<Arc<RamNode>, Errno> {
    let mut cur = root.clone();
    for comp in path.split(|&b| b == b'/') {
        if comp.is_empty() || comp == b"." {
            continue;
        }
        if comp == b".." {
            return Err(Errno::EINVAL);
        }
        let existing = cur.dir()?.lock().names.get(comp).map(|(_, n)| n.clone());
        cur = match existing {
            Some(n) if n.kind == FileKind::Directory => n,
            Some(_) => return Err(Errno::ENOTDIR),
            None => cur.add_new(comp, FileKind::Directory, 0o755, None)?,
        };
    }
    Ok(cur)
}

/// Create `name` in `dir` as a regular file, symlink or directory for the initramfs.
pub fn add_entry(
    dir: &Arc<RamNode>,
    name: &[u8],
    kind: FileKind,
    perm: u32,
    symlink: Option<Vec<u8>>,
) -> Result<Arc<RamNode>, Errno> {
    dir.add_new(name, kind, perm, symlink)
}

/// Link an existing node under another name (hard links in the initramfs).
pub fn add_link(dir: &Arc<RamNode>, name: &[u8], node: &Arc<RamNode>) -> Result<(), Errno> {
    let n: NodeRef = node.clone();
    dir.link(name, &n)
}
