//! Unpacking the initramfs (cpio "newc") into the root ramfs. Regular files keep
//! pointing at the archive's bytes until written; hard links (same inode number, data
//! with the last name) become links; devices, FIFOs and sockets are skipped.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;

use fs::cpio::{self, Entry};

use super::node::{FileKind, Node};
use super::ramfs::{self, RamNode};
use crate::errno::Errno;

/// What was unpacked.
#[derive(Default, Debug)]
pub struct Counts {
    pub files: usize,
    pub dirs: usize,
    pub symlinks: usize,
    pub skipped: usize,
}

/// Split a cleaned path into (directory, last name).
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b""[..], path),
    }
}

/// `./a//b/` -> `a/b`; None for the root itself or a path with `..`.
fn clean(name: &[u8]) -> Option<alloc::vec::Vec<u8>> {
    let mut out = alloc::vec::Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => continue,
            b".." => return None,
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

fn add(
    root: &Arc<RamNode>,
    e: &Entry<'static>,
    links: &mut BTreeMap<u32, Arc<RamNode>>,
    counts: &mut Counts,
) -> Result<(), Errno> {
    let Some(path) = clean(e.name) else {
        if e.is_dir() {
            // The root itself (".").
            root.set_attrs(e.mode, e.uid, e.gid);
            return Ok(());
        }
        counts.skipped += 1;
        log::warn!(
            "initramfs: skipping {}",
            alloc::string::String::from_utf8_lossy(e.name)
        );
        return Ok(());
    };
    let (dir, name) = split(&path);
    let dir = ramfs::ensure_dir(root, dir)?;
    if e.is_dir() {
        let d = ramfs::ensure_dir(&dir, name)?;
        d.set_attrs(e.mode, e.uid, e.gid);
        d.set_mtime(e.mtime as i64);
        counts.dirs += 1;
        return Ok(());
    }
    let kind = if e.is_file() {
        FileKind::Regular
    } else if e.is_symlink() {
        FileKind::Symlink
    } else {
        counts.skipped += 1;
        return Ok(());
    };
    // A later entry replaces an earlier one of the same name.
    if let Ok(old) = dir.lookup(name) {
        if old.kind() == FileKind::Directory {
            return Err(Errno::EISDIR);
        }
        dir.unlink(name)?;
    }
    if kind == FileKind::Regular
        && e.nlink > 1
        && let Some(first) = links.get(&e.ino)
    {
        ramfs::add_link(&dir, name, first)?;
        if !e.data.is_empty() {
            first.set_static_data(e.data)?;
        }
        counts.files += 1;
        return Ok(());
    }
    let symlink = (kind == FileKind::Symlink).then(|| e.data.to_vec());
    let node = ramfs::add_entry(&dir, name, kind, e.mode, symlink)?;
    if kind == FileKind::Regular {
        node.set_static_data(e.data)?;
        if e.nlink > 1 {
            links.insert(e.ino, node.clone());
        }
        counts.files += 1;
    } else {
        counts.symlinks += 1;
    }
    node.set_attrs(e.mode, e.uid, e.gid);
    node.set_mtime(e.mtime as i64);
    Ok(())
}

/// Unpack `data` into `root`. Errors are logged and counted as skipped; a malformed
/// archive stops the unpacking where it goes bad.
pub fn unpack(root: &Arc<RamNode>, data: &'static [u8]) -> Counts {
    let mut counts = Counts::default();
    let mut links = BTreeMap::new();
    for item in cpio::Reader::new(data) {
        match item {
            Ok(e) => {
                if let Err(err) = add(root, &e, &mut links, &mut counts) {
                    counts.skipped += 1;
                    log::warn!(
                        "initramfs: {:?}: {err:?}",
                        core::str::from_utf8(e.name).unwrap_or("?")
                    );
                }
            }
            Err(err) => {
                log::error!("initramfs: {err}; the rest is ignored");
                break;
            }
        }
    }
    counts
}
