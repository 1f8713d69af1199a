//! The mount table: which file system is mounted where, by canonical absolute path.
//! `/` is a ramfs (filled from the initramfs), `/dev` a devfs, `/proc` a procfs; ext2
//! file systems on block devices go wherever `mount` puts them (the first one at `/mnt`).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use spin::Mutex;

use super::ext2 as vext2;
use drivers::block::BlockDevice;

use super::node::{FileKind, Node, NodeRef, makedev};
use super::path::Loc;
use super::{devfs, procfs, ramfs};
use crate::block::Disk;
use crate::errno::Errno;

/// `mount` flags.
pub const MS_RDONLY: u64 = 1;
pub const MS_NOSUID: u64 = 2;
pub const MS_NODEV: u64 = 4;
pub const MS_NOEXEC: u64 = 8;
pub const MS_SYNCHRONOUS: u64 = 16;
pub const MS_REMOUNT: u64 = 32;
pub const MS_NOATIME: u64 = 1024;
pub const MS_NODIRATIME: u64 = 2048;
pub const MS_BIND: u64 = 4096;
pub const MS_MOVE: u64 = 8192;
pub const MS_SILENT: u64 = 32768;
/// `umount2` flags.
pub const MNT_FORCE: u64 = 1;
pub const MNT_DETACH: u64 = 2;
pub const MNT_EXPIRE: u64 = 4;
pub const UMOUNT_NOFOLLOW: u64 = 8;

/// What backs a mount (for unmounting and syncing).
pub enum Backing {
    /// In memory (ramfs), or generated (devfs, procfs).
    Virtual,
    /// ext2 on a disk.
    Ext2(Arc<vext2::Mount>),
}

/// One mounted file system.
pub struct Mounted {
    pub id: u32,
    /// Canonical absolute path of the mount point.
    pub path: Vec<u8>,
    pub root: NodeRef,
    /// `ramfs`, `devfs`, `proc`, `ext2`.
    pub fstype: &'static str,
    /// What `/proc/mounts` shows as the device.
    pub source: Vec<u8>,
    pub read_only: bool,
    pub backing: Backing,
}

static TABLE: Mutex<Vec<Arc<Mounted>>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// A fresh anonymous device number (major 0) for a virtual file system.
pub fn anon_dev() -> u64 {
    makedev(0, NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// The mount whose mount point is `path`.
pub fn mounted_at(path: &[u8]) -> Option<Arc<Mounted>> {
    TABLE.lock().iter().rev().find(|m| m.path == path).cloned()
}

/// Every mount, in mount order.
pub fn all() -> Vec<Arc<Mounted>> {
    TABLE.lock().clone()
}

/// The root mount, creating the default root (an empty ramfs with `/bin`, `/dev`,
/// `/proc`, `/mnt`, `/etc`, `/tmp`, devfs on `/dev`, procfs on `/proc`) on first use.
pub fn root_mount() -> Arc<Mounted> {
    if let Some(m) = TABLE.lock().iter().find(|m| m.id == 0) {
        return m.clone();
    }
    let root = ramfs::RamFs::new_root(anon_dev());
    for d in [&b"bin"[..], b"dev", b"proc", b"mnt", b"etc", b"tmp"] {
        if let Err(e) = ramfs::ensure_dir(&root, d) {
            log::error!(
                "vfs: cannot create /{}: {e:?}",
                core::str::from_utf8(d).unwrap_or("?")
            );
        }
    }
    let _ = root.chmod(0o755);
    let tmp: NodeRef = root.clone();
    if let Ok(t) = tmp.lookup(b"tmp") {
        let _ = t.chmod(0o1777);
    }
    let typed = root.clone();
    let m = Arc::new(Mounted {
        id: 0,
        path: b"/".to_vec(),
        root,
        fstype: "ramfs",
        source: b"rootfs".to_vec(),
        read_only: false,
        backing: Backing::Virtual,
    });
    {
        let mut t = TABLE.lock();
        if let Some(first) = t.iter().find(|m| m.id == 0) {
            // Someone else made it meanwhile.
            return first.clone();
        }
        t.insert(0, m.clone());
        *ROOT_RAMFS.lock() = Some(typed);
    }
    for (path, fstype) in [(&b"/dev"[..], &b"devfs"[..]), (b"/proc", b"proc")] {
        if let Err(e) = mount_virtual(path, fstype, b"none", 0) {
            log::error!("vfs: cannot mount {:?}: {e:?}", core::str::from_utf8(path));
        }
    }
    m
}

/// The root ramfs's root directory (for unpacking the initramfs).
pub fn root_ramfs() -> Option<Arc<ramfs::RamNode>> {
    root_mount();
    ROOT_RAMFS.lock().clone()
}

static ROOT_RAMFS: Mutex<Option<Arc<ramfs::RamNode>>> = Mutex::new(None);

fn add(m: Mounted) -> Result<Arc<Mounted>, Errno> {
    // Every mount point lies in the root file system: make sure it exists.
    root_mount();
    let mut t = TABLE.lock();
    if t.iter().any(|x| x.path == m.path) {
        return Err(Errno::EBUSY);
    }
    let m = Arc::new(m);
    t.push(m.clone());
    Ok(m)
}

fn new_id() -> u32 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Mount a virtual file system (`ramfs`/`tmpfs`, `devfs`/`devtmpfs`, `proc`) at the
/// canonical path `path` (which must be a directory).
pub fn mount_virtual(path: &[u8], fstype: &[u8], source: &[u8], flags: u64) -> Result<(), Errno> {
    let (root, name): (NodeRef, &'static str) = match fstype {
        b"ramfs" | b"tmpfs" => (ramfs::RamFs::new_root(anon_dev()), "ramfs"),
        b"devfs" | b"devtmpfs" => (devfs::new(anon_dev()), "devfs"),
        b"proc" => (procfs::new(anon_dev()), "proc"),
        _ => return Err(Errno::ENODEV),
    };
    add(Mounted {
        id: new_id(),
        path: path.to_vec(),
        root,
        fstype: name,
        source: source.to_vec(),
        read_only: flags & MS_RDONLY != 0,
        backing: Backing::Virtual,
    })
    .map(|_| ())
}

/// Mount the ext2 file system on `disk` at canonical path `path`.
pub fn mount_ext2(
    path: &[u8],
    disk: &Arc<Disk>,
    read_only: bool,
) -> Result<Arc<vext2::Mount>, Errno> {
    let busy = TABLE.lock().iter().any(|m| match &m.backing {
        Backing::Ext2(e) => Arc::ptr_eq(&e.disk, disk),
        Backing::Virtual => false,
    });
    if busy {
        return Err(Errno::EBUSY);
    }
    let read_only = read_only || disk.info().read_only;
    let em = vext2::Mount::new(disk.clone(), read_only).map_err(|e| match e {
        fs::FsError::Invalid | fs::FsError::Unsupported | fs::FsError::Corrupt => Errno::EINVAL,
        other => Errno::from(other),
    })?;
    let mut source = b"/dev/".to_vec();
    source.extend_from_slice(disk.name().as_bytes());
    let root = vext2::Ext2Node::root(&em).inspect_err(|_| {
        let _ = em.shutdown();
    })?;
    match add(Mounted {
        id: new_id(),
        path: path.to_vec(),
        root,
        fstype: "ext2",
        source,
        read_only,
        backing: Backing::Ext2(em.clone()),
    }) {
        Ok(_) => Ok(em),
        Err(e) => {
            let _ = em.shutdown();
            Err(e)
        }
    }
}

/// `mount(2)` after the paths are resolved: `target` is the directory to mount on,
/// `source` the block device for ext2.
pub fn mount(
    source: Option<&Loc>,
    source_name: &[u8],
    target: &Loc,
    fstype: &[u8],
    flags: u64,
) -> Result<(), Errno> {
    if flags & (MS_REMOUNT | MS_BIND | MS_MOVE) != 0 {
        return Err(Errno::EINVAL);
    }
    if target.node().kind() != FileKind::Directory {
        return Err(Errno::ENOTDIR);
    }
    let path = target.path();
    match fstype {
        b"ext2" => {
            let src = source.ok_or(Errno::ENOENT)?;
            if src.node().kind() != FileKind::BlockDevice {
                return Err(Errno::ENOTBLK);
            }
            let disk = devfs::disk_of(src.node()).ok_or(Errno::ENXIO)?;
            let m = mount_ext2(&path, &disk, flags & MS_RDONLY != 0)?;
            log::info!(
                "mounted {} (ext2{}) at {}",
                disk.name(),
                if m.read_only { ", read-only" } else { "" },
                core::str::from_utf8(&path).unwrap_or("?")
            );
            Ok(())
        }
        _ => mount_virtual(&path, fstype, source_name, flags),
    }
}

/// `umount2(2)` of the mount whose root `target` is.
pub fn umount(target: Loc, flags: u64) -> Result<(), Errno> {
    if flags & !(MNT_FORCE | MNT_DETACH | UMOUNT_NOFOLLOW) != 0 || flags & MNT_EXPIRE != 0 {
        return Err(Errno::EINVAL);
    }
    if !target.is_mount_root() {
        return Err(Errno::EINVAL);
    }
    let m = target.mount().clone();
    drop(target);
    if m.id == 0 {
        return Err(Errno::EBUSY);
    }
    let mut t = TABLE.lock();
    let mut prefix = m.path.clone();
    prefix.push(b'/');
    if t.iter().any(|x| x.path.starts_with(&prefix)) {
        return Err(Errno::EBUSY);
    }
    // References: the table's, ours, and any open file, working directory or walk
    // inside the mount.
    let busy = Arc::strong_count(&m) > 2;
    if busy && flags & MNT_DETACH == 0 {
        return Err(Errno::EBUSY);
    }
    t.retain(|x| !Arc::ptr_eq(x, &m));
    drop(t);
    if let Backing::Ext2(e) = &m.backing {
        let r = if busy { e.sync() } else { e.shutdown() };
        if let Err(err) = r {
            log::error!(
                "umount {}: {err:?}",
                core::str::from_utf8(&m.path).unwrap_or("?")
            );
            return Err(Errno::from(err));
        }
    }
    Ok(())
}

/// The ext2 mount whose disk holds `ext2` mounted at `path`.
pub fn ext2_at(path: &[u8]) -> Option<Arc<vext2::Mount>> {
    match &mounted_at(path)?.backing {
        Backing::Ext2(e) => Some(e.clone()),
        Backing::Virtual => None,
    }
}

/// Every mounted ext2 file system.
pub fn ext2_mounts() -> Vec<Arc<vext2::Mount>> {
    TABLE
        .lock()
        .iter()
        .filter_map(|m| match &m.backing {
            Backing::Ext2(e) => Some(e.clone()),
            Backing::Virtual => None,
        })
        .collect()
}

/// `/proc/mounts`.
pub fn mounts_text() -> Vec<u8> {
    let mut out = Vec::new();
    let esc = |out: &mut Vec<u8>, s: &[u8]| {
        for &b in s {
            match b {
                b' ' => out.extend_from_slice(b"\\040"),
                b'\t' => out.extend_from_slice(b"\\011"),
                b'\n' => out.extend_from_slice(b"\\012"),
                b'\\' => out.extend_from_slice(b"\\134"),
                _ => out.push(b),
            }
        }
    };
    for m in all() {
        esc(&mut out, &m.source);
        out.push(b' ');
        esc(&mut out, &m.path);
        out.push(b' ');
        out.extend_from_slice(m.fstype.as_bytes());
        out.extend_from_slice(if m.read_only {
            b" ro 0 0\n"
        } else {
            b" rw 0 0\n"
        });
    }
    out
}
