//! Operations on paths, as the system calls need them: open, mkdir, unlink, rmdir,
//! rename, link, symlink, readlink, stat, chmod, truncate, access. Each starts its walk at
//! a location (the working directory, or the directory of a `*at` call's descriptor)
//! and fails the way Linux does.

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::file::*;
use super::mount;
use super::node::*;
use super::path::{self, Loc, Walked};
use crate::errno::Errno;

fn check_writable(loc: &Loc) -> Result<(), Errno> {
    if loc.mount().read_only {
        Err(Errno::EROFS)
    } else {
        Ok(())
    }
}

/// Canonical path of `name` in directory `dir`.
fn child_path(dir: &Loc, name: &[u8]) -> Vec<u8> {
    let mut p = dir.path();
    if p != b"/" {
        p.push(b'/');
    } else {
        p.clear();
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// EBUSY if `path` is a mount point or has mounts below it.
fn check_not_mounted_on(path: &[u8]) -> Result<(), Errno> {
    let mut prefix = path.to_vec();
    prefix.push(b'/');
    if mount::all()
        .iter()
        .any(|m| m.path == path || m.path.starts_with(&prefix))
    {
        return Err(Errno::EBUSY);
    }
    Ok(())
}

/// `open(2)`/`openat(2)` from `start`. `mode` (for a new file) already has the umask
/// applied.
pub fn open(start: &Loc, path: &[u8], flags: u32, mode: u32) -> Result<Arc<File>, Errno> {
    if flags & O_ACCMODE == 3 {
        return Err(Errno::EINVAL);
    }
    if flags & O_TMPFILE == O_TMPFILE {
        return Err(Errno::EOPNOTSUPP);
    }
    let create = flags & O_CREAT != 0;
    let excl = create && flags & O_EXCL != 0;
    let follow = flags & O_NOFOLLOW == 0 && !excl;
    let writing = flags & O_ACCMODE != O_RDONLY;
    let (loc, created) = match path::walk(start, path, follow)? {
        Walked::Found(loc) => {
            if excl {
                return Err(Errno::EEXIST);
            }
            (loc, false)
        }
        Walked::Missing {
            parent,
            name,
            trailing_slash,
        } => {
            if !create {
                return Err(Errno::ENOENT);
            }
            if trailing_slash {
                return Err(Errno::EISDIR);
            }
            check_writable(&parent)?;
            let node = parent.node().create(&name, mode & 0o7777)?;
            (parent.child(&name, node), true)
        }
    };
    let node = loc.node().clone();
    match node.kind() {
        FileKind::Symlink => return Err(Errno::ELOOP),
        FileKind::Directory => {
            if writing || create {
                return Err(Errno::EISDIR);
            }
        }
        _ if flags & O_DIRECTORY != 0 => return Err(Errno::ENOTDIR),
        FileKind::Regular => {
            if writing || flags & O_TRUNC != 0 {
                check_writable(&loc)?;
            }
            if flags & O_TRUNC != 0 && !created {
                node.truncate(0)?;
            }
        }
        _ => {}
    }
    let ops = node.open(&node, flags)?;
    Ok(File::new(node, Some(loc), ops, flags))
}

/// `mkdir(2)`; `mode` has the umask applied.
pub fn mkdir(start: &Loc, path: &[u8], mode: u32) -> Result<(), Errno> {
    let p = path::resolve_parent(start, path)?;
    if p.is_dot() {
        return Err(Errno::EEXIST);
    }
    if p.dir.node().lookup(&p.name).is_ok() {
        return Err(Errno::EEXIST);
    }
    check_writable(&p.dir)?;
    p.dir.node().mkdir(&p.name, mode & 0o7777)
}

/// `unlink(2)`.
pub fn unlink(start: &Loc, path: &[u8]) -> Result<(), Errno> {
    let p = path::resolve_parent(start, path)?;
    if p.is_dot() {
        return Err(Errno::EISDIR);
    }
    let child = p.dir.node().lookup(&p.name)?;
    if child.kind() == FileKind::Directory {
        return Err(Errno::EISDIR);
    }
    if p.trailing_slash {
        return Err(Errno::ENOTDIR);
    }
    check_writable(&p.dir)?;
    p.dir.node().unlink(&p.name)
}

/// `rmdir(2)`.
pub fn rmdir(start: &Loc, path: &[u8]) -> Result<(), Errno> {
    let p = path::resolve_parent(start, path)?;
    match &p.name[..] {
        b"." => return Err(Errno::EINVAL),
        b".." => return Err(Errno::ENOTEMPTY),
        b"" => return Err(Errno::EBUSY),
        _ => {}
    }
    let child = p.dir.node().lookup(&p.name)?;
    if child.kind() != FileKind::Directory {
        return Err(Errno::ENOTDIR);
    }
    check_not_mounted_on(&child_path(&p.dir, &p.name))?;
    check_writable(&p.dir)?;
    p.dir.node().rmdir(&p.name)
}

fn same_mount(a: &Loc, b: &Loc) -> bool {
    Arc::ptr_eq(a.mount(), b.mount())
}

/// `renameat2(2)` with flags 0.
pub fn rename(old_start: &Loc, old: &[u8], new_start: &Loc, new: &[u8]) -> Result<(), Errno> {
    let o = path::resolve_parent(old_start, old)?;
    let n = path::resolve_parent(new_start, new)?;
    if !same_mount(&o.dir, &n.dir) {
        return Err(Errno::EXDEV);
    }
    if o.is_dot() || n.is_dot() {
        return Err(Errno::EBUSY);
    }
    let src = o.dir.node().lookup(&o.name)?;
    let src_dir = src.kind() == FileKind::Directory;
    if (o.trailing_slash || n.trailing_slash) && !src_dir {
        return Err(Errno::ENOTDIR);
    }
    let (op, np) = (child_path(&o.dir, &o.name), child_path(&n.dir, &n.name));
    if op == np {
        return Ok(());
    }
    check_not_mounted_on(&op)?;
    check_not_mounted_on(&np)?;
    if src_dir {
        // A directory cannot move below itself.
        let mut prefix = op.clone();
        prefix.push(b'/');
        if np.starts_with(&prefix) {
            return Err(Errno::EINVAL);
        }
    }
    check_writable(&o.dir)?;
    o.dir.node().rename(&o.name, n.dir.node(), &n.name)
}

/// `linkat(2)`: a new name `new` for what `old` names (following a final symlink of
/// `old` only if `follow`).
pub fn link(
    old_start: &Loc,
    old: &[u8],
    new_start: &Loc,
    new: &[u8],
    follow: bool,
) -> Result<(), Errno> {
    let target = path::resolve(old_start, old, follow)?;
    if target.node().kind() == FileKind::Directory {
        return Err(Errno::EPERM);
    }
    let n = path::resolve_parent(new_start, new)?;
    if n.is_dot() || n.dir.node().lookup(&n.name).is_ok() {
        return Err(Errno::EEXIST);
    }
    if n.trailing_slash {
        return Err(Errno::ENOENT);
    }
    if !same_mount(&target, &n.dir) {
        return Err(Errno::EXDEV);
    }
    check_writable(&n.dir)?;
    n.dir.node().link(&n.name, target.node())
}

/// `symlink(2)`: `linkpath` becomes a link to `target`.
pub fn symlink(target: &[u8], start: &Loc, linkpath: &[u8]) -> Result<(), Errno> {
    if target.is_empty() {
        return Err(Errno::ENOENT);
    }
    if target.len() >= path::PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    let p = path::resolve_parent(start, linkpath)?;
    if p.is_dot() || p.dir.node().lookup(&p.name).is_ok() {
        return Err(Errno::EEXIST);
    }
    if p.trailing_slash {
        return Err(Errno::ENOENT);
    }
    check_writable(&p.dir)?;
    p.dir.node().symlink(&p.name, target)
}

/// `readlink(2)`.
pub fn readlink(start: &Loc, path: &[u8]) -> Result<Vec<u8>, Errno> {
    let l = path::resolve(start, path, false)?;
    if l.node().kind() != FileKind::Symlink {
        return Err(Errno::EINVAL);
    }
    l.node().readlink()
}

/// `stat(2)` (`follow`) or `lstat(2)`.
pub fn stat(start: &Loc, path: &[u8], follow: bool) -> Result<Stat, Errno> {
    path::resolve(start, path, follow)?.node().stat()
}

/// `chmod(2)`.
pub fn chmod(start: &Loc, path: &[u8], mode: u32, follow: bool) -> Result<(), Errno> {
    let l = path::resolve(start, path, follow)?;
    if matches!(
        l.node().kind(),
        FileKind::Regular | FileKind::Directory | FileKind::Symlink
    ) {
        check_writable(&l)?;
    }
    l.node().chmod(mode)
}

/// `truncate(2)`.
pub fn truncate(start: &Loc, path: &[u8], len: u64) -> Result<(), Errno> {
    let l = path::resolve(start, path, true)?;
    match l.node().kind() {
        FileKind::Regular => {}
        FileKind::Directory => return Err(Errno::EISDIR),
        _ => return Err(Errno::EINVAL),
    }
    check_writable(&l)?;
    l.node().truncate(len)
}

pub const F_OK: u32 = 0;
pub const X_OK: u32 = 1;
pub const W_OK: u32 = 2;
pub const R_OK: u32 = 4;

/// `faccessat(2)` for the (only) user, root: reading and writing are allowed (writing
/// not on a read-only mount), executing needs an x bit on a non-directory.
pub fn access(start: &Loc, path: &[u8], mode: u32, follow: bool) -> Result<(), Errno> {
    if mode & !7 != 0 {
        return Err(Errno::EINVAL);
    }
    let l = path::resolve(start, path, follow)?;
    let st = l.node().stat()?;
    let kind = l.node().kind();
    if mode & W_OK != 0
        && matches!(
            kind,
            FileKind::Regular | FileKind::Directory | FileKind::Symlink
        )
    {
        check_writable(&l)?;
    }
    if mode & X_OK != 0 && kind != FileKind::Directory && st.mode & 0o111 == 0 {
        return Err(Errno::EACCES);
    }
    Ok(())
}

/// The whole content of the regular file `path` (at most `max` bytes, else EFBIG).
pub fn read_file(start: &Loc, path: &[u8], max: usize) -> Result<Vec<u8>, Errno> {
    let l = path::resolve(start, path, true)?;
    let node = l.node();
    match node.kind() {
        FileKind::Regular => {}
        FileKind::Directory => return Err(Errno::EISDIR),
        _ => return Err(Errno::EINVAL),
    }
    let f = open(start, path, O_RDONLY, 0)?;
    let size = f.node.size() as usize;
    if size > max {
        return Err(Errno::EFBIG);
    }
    let mut out = Vec::new();
    out.try_reserve_exact(size).map_err(|_| Errno::ENOMEM)?;
    out.resize(size, 0);
    let mut done = 0;
    while done < out.len() {
        let n = f.read(&mut ReadBuf::Kernel(&mut out[done..]))?;
        if n == 0 {
            break;
        }
        done += n;
    }
    out.truncate(done);
    // Generated files report size 0: read on until the end.
    if size == 0 {
        let mut chunk = [0u8; 512];
        loop {
            let n = f.read(&mut ReadBuf::Kernel(&mut chunk))?;
            if n == 0 || out.len() + n > max {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
    }
    Ok(out)
}

/// Change the working directory of `files` to `path`.
pub fn chdir(files: &mut ProcessFiles, path: &[u8]) -> Result<(), Errno> {
    let l = path::resolve(&files.cwd(), path, true)?;
    files.set_cwd(l)
}
