//! procfs (`/proc`): `meminfo`, `vmstat`, `mounts`. A file's content is generated when
//! it is opened, so a reader sees one consistent snapshot however it reads.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::Write;

use mm::counters::{self, Counter};

use super::node::*;
use crate::syscall::errno::Errno;

type Generator = fn() -> Vec<u8>;

const FILES: [(&[u8], Generator); 3] = [
    (b"meminfo", meminfo),
    (b"mounts", mounts),
    (b"vmstat", vmstat),
];

/// The `/proc` directory.
struct ProcDir {
    dev: u64,
}

struct ProcFile {
    dev: u64,
    ino: u64,
    generate: Generator,
}

/// A new procfs instance.
pub fn new(dev: u64) -> NodeRef {
    Arc::new(ProcDir { dev })
}

struct Text(Vec<u8>);

impl Write for Text {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// `/proc/meminfo` in Linux's layout (kB).
pub fn meminfo() -> Vec<u8> {
    let f = crate::memory::frames();
    let kib = |frames: u64| frames * 4;
    let total = kib(f.managed_frames());
    let free = kib(f.free_frames());
    let cached = kib(counters::get(Counter::PagecachePages));
    let mut t = Text(Vec::new());
    let mut line = |name: &str, v: u64| {
        let _ = writeln!(t, "{:<16}{v:>8} kB", alloc::format!("{name}:"));
    };
    line("MemTotal", total);
    line("MemFree", free);
    line("MemAvailable", (free + cached).min(total));
    line("Buffers", 0);
    line("Cached", cached);
    line("SwapCached", 0);
    line("Active", 0);
    line("Inactive", 0);
    line("Mlocked", kib(counters::get(Counter::PinnedPages)));
    line("SwapTotal", 0);
    line("SwapFree", 0);
    line("Dirty", 0);
    line("Writeback", 0);
    line("Shmem", 0);
    t.0
}

/// `/proc/vmstat`: `name value` for every counter (mm's and the block layer's).
pub fn vmstat() -> Vec<u8> {
    let mut t = Text(Vec::new());
    let _ = writeln!(t, "nr_free_pages {}", crate::memory::frames().free_frames());
    for c in Counter::ALL {
        let _ = writeln!(t, "{} {}", c.name(), counters::get(c));
    }
    for (name, v) in drivers::block::stats::snapshot() {
        let _ = writeln!(t, "{name} {v}");
    }
    t.0
}

fn mounts() -> Vec<u8> {
    super::mount::mounts_text()
}

/// An open procfs file: its snapshot.
struct Snapshot(Vec<u8>);

impl FileOps for Snapshot {
    fn read(&self, pos: u64, buf: &mut ReadBuf, _nonblock: bool) -> Result<usize, Errno> {
        let Ok(start) = usize::try_from(pos) else {
            return Ok(0);
        };
        let data = self.0.get(start..).unwrap_or(&[]);
        let mut at = 0;
        buf.fill(|piece| {
            let n = piece.len().min(data.len() - at);
            piece[..n].copy_from_slice(&data[at..at + n]);
            at += n;
            Ok(n)
        })
    }

    fn write(&self, _pos: u64, _buf: &mut WriteBuf, _nonblock: bool) -> Result<usize, Errno> {
        Err(Errno::EACCES)
    }

    fn size(&self) -> u64 {
        self.0.len() as u64
    }
}

impl Node for ProcDir {
    fn kind(&self) -> FileKind {
        FileKind::Directory
    }

    fn stat(&self) -> Result<Stat, Errno> {
        let t = now();
        Ok(Stat {
            dev: self.dev,
            ino: 1,
            mode: S_IFDIR | 0o555,
            nlink: 2,
            blksize: 4096,
            atime: t,
            mtime: t,
            ctime: t,
            ..Stat::default()
        })
    }

    fn lookup(&self, name: &[u8]) -> Result<NodeRef, Errno> {
        let (i, &(_, generate)) = FILES
            .iter()
            .enumerate()
            .find(|(_, (n, _))| *n == name)
            .ok_or(Errno::ENOENT)?;
        Ok(Arc::new(ProcFile {
            dev: self.dev,
            ino: 2 + i as u64,
            generate,
        }))
    }

    fn create(&self, _name: &[u8], _mode: u32) -> Result<NodeRef, Errno> {
        Err(Errno::EACCES)
    }

    fn mkdir(&self, _name: &[u8], _mode: u32) -> Result<(), Errno> {
        Err(Errno::EACCES)
    }

    fn readdir(&self, cursor: u64) -> Result<Vec<DirEntry>, Errno> {
        let mut all: Vec<(&[u8], u64, FileKind)> = alloc::vec![
            (&b"."[..], 1, FileKind::Directory),
            (b"..", 1, FileKind::Directory),
        ];
        for (i, (n, _)) in FILES.iter().enumerate() {
            all.push((n, 2 + i as u64, FileKind::Regular));
        }
        Ok(all
            .into_iter()
            .enumerate()
            .skip(cursor as usize)
            .map(|(i, (name, ino, kind))| DirEntry {
                name: name.to_vec(),
                ino,
                dtype: kind.dt(),
                next: i as u64 + 1,
            })
            .collect())
    }
}

impl Node for ProcFile {
    fn kind(&self) -> FileKind {
        FileKind::Regular
    }

    fn stat(&self) -> Result<Stat, Errno> {
        let t = now();
        Ok(Stat {
            dev: self.dev,
            ino: self.ino,
            mode: S_IFREG | 0o444,
            nlink: 1,
            blksize: 1024,
            atime: t,
            mtime: t,
            ctime: t,
            ..Stat::default()
        })
    }

    fn size(&self) -> u64 {
        0
    }

    fn read_at(&self, offset: u64, buf: &mut ReadBuf) -> Result<usize, Errno> {
        Snapshot((self.generate)()).read(offset, buf, false)
    }

    fn write_at(&self, _offset: u64, _buf: &mut WriteBuf) -> Result<usize, Errno> {
        Err(Errno::EACCES)
    }

    fn truncate(&self, _size: u64) -> Result<(), Errno> {
        Err(Errno::EACCES)
    }

    fn open(&self, _me: &NodeRef, flags: u32) -> Result<Box<dyn FileOps>, Errno> {
        if flags & 3 != 0 {
            return Err(Errno::EACCES);
        }
        Ok(Box::new(Snapshot((self.generate)())))
    }
}
