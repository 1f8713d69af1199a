//! Helpers shared by the fuzz targets: bounded walks and operation sequences
//! over a possibly corrupt ext2 image. Every error is fine; a panic is a bug.

use std::collections::BTreeSet;
use std::sync::Arc;

use fs::ext2::{Ext2, MountOptions, ROOT_INO};
use fs::{MemDev, SECTOR_SIZE};

/// Mount `image` from memory.
pub fn mount(image: &[u8], read_only: bool) -> Option<(Ext2, Arc<MemDev>)> {
    let len = image.len() / SECTOR_SIZE * SECTOR_SIZE;
    let dev = Arc::new(MemDev::new(image[..len].to_vec()));
    let fs = Ext2::mount_with_cache(dev.clone(), MountOptions { read_only }, 16).ok()?;
    Some((fs, dev))
}

/// Walk the tree (bounded), reading files, links and attributes.
pub fn walk(fs: &mut Ext2) {
    let mut seen = BTreeSet::new();
    let mut stack = vec![ROOT_INO];
    let mut budget = 2000usize;
    let mut buf = vec![0u8; 70_000];
    while let Some(dir) = stack.pop() {
        if !seen.insert(dir) {
            continue;
        }
        let mut cursor = 0u64;
        for _ in 0..64 {
            let entries = match fs.readdir(dir, cursor) {
                Ok(e) if !e.is_empty() => e,
                _ => break,
            };
            let mut advanced = false;
            for e in entries {
                if budget == 0 {
                    return;
                }
                budget -= 1;
                if e.next > cursor {
                    cursor = e.next;
                    advanced = true;
                }
                let _ = fs.lookup(dir, &e.name);
                let Ok(st) = fs.stat(e.ino) else { continue };
                match st.mode & 0o170000 {
                    0o040000 => {
                        if e.name != b"." && e.name != b".." {
                            stack.push(e.ino);
                        }
                    }
                    0o100000 => {
                        let _ = fs.read_at(e.ino, 0, &mut buf);
                        let _ = fs.read_at(e.ino, st.size.saturating_sub(10), &mut buf[..100]);
                        let _ = fs.read_at(e.ino, st.size / 2, &mut buf[..5000]);
                        let _ = fs.bmap(e.ino, st.size / st.blksize.max(1) as u64, false);
                    }
                    0o120000 => {
                        let _ = fs.readlink(e.ino);
                        let _ = fs.resolve_at(dir, &e.name, true);
                    }
                    _ => {}
                }
            }
            if !advanced {
                break;
            }
        }
    }
    let _ = fs.resolve(b"/a/../b/./c");
}

/// Apply operations decoded from `ops` (each byte picks an operation and its
/// arguments come from the following bytes).
pub fn run_ops(fs: &mut Ext2, ops: &[u8]) {
    let names: [&[u8]; 6] = [b"a", b"b", b"dir", b"lost+found", b"file", b"x"];
    let mut it = ops.iter().copied();
    let mut dirs = vec![ROOT_INO];
    let mut files: Vec<u32> = Vec::new();
    if let Ok(entries) = fs.readdir(ROOT_INO, 0) {
        for e in entries {
            match e.file_type {
                fs::FileType::Directory => dirs.push(e.ino),
                _ => files.push(e.ino),
            }
        }
    }
    while let Some(op) = it.next() {
        let arg = it.next().unwrap_or(0);
        let name = names[arg as usize % names.len()];
        let dir = dirs[(arg as usize >> 3) % dirs.len()];
        let file = files.get((arg as usize >> 2) % files.len().max(1)).copied();
        let n = (arg as u64) * 997;
        match op % 14 {
            0 => {
                if let Ok(i) = fs.create(dir, name, 0o644) {
                    files.push(i);
                }
            }
            1 => {
                if let Ok(i) = fs.mkdir(dir, name, 0o755) {
                    dirs.push(i);
                }
            }
            2 => {
                let _ = fs.unlink(dir, name);
            }
            3 => {
                let _ = fs.rmdir(dir, name);
            }
            4 => {
                let other = dirs[(op as usize >> 4) % dirs.len()];
                let _ = fs.rename(dir, name, other, names[(op as usize >> 4) % names.len()]);
            }
            5 => {
                if let Some(f) = file {
                    let _ = fs.write_at(f, n, &vec![op; (arg as usize) * 40]);
                }
            }
            6 => {
                if let Some(f) = file {
                    let _ = fs.truncate(f, n * 3);
                }
            }
            7 => {
                if let Some(f) = file {
                    let _ = fs.link(f, dir, name);
                }
            }
            8 => {
                let target = vec![b'/'; 1 + (arg as usize) * 3];
                let _ = fs.symlink(dir, name, &target);
            }
            9 => {
                if let Some(f) = file {
                    let _ = fs.bmap(f, n, true);
                    let _ = fs.set_size(f, n * 1024);
                }
            }
            10 => {
                let _ = fs.sync();
            }
            11 => {
                if let Some(f) = file {
                    let _ = fs.write_at(f, (arg as u64) << 26, b"far");
                }
            }
            12 => {
                if let Some(f) = file {
                    fs.hold(f);
                    let _ = fs.unlink(dir, name);
                    let _ = fs.release(f);
                }
            }
            _ => {
                let _ = fs.set_times(dir, Some(n as u32), None);
            }
        }
    }
}
