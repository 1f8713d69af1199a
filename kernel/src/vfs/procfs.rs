//! procfs (`/proc`): `meminfo`, `vmstat`, `mounts`, `sys/vm/drop_caches` and
//! `sys/vm/copy_offload`. A file's
//! content is generated when it is opened, so a reader sees one consistent snapshot
//! however it reads; a control file acts on each write.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::Write;

use mm::counters::{self, Counter};

use super::node::*;
use crate::errno::Errno;

type Generator = fn() -> Vec<u8>;
type Control = fn(&[u8]) -> Result<(), Errno>;

/// What an entry of the tree is.
#[derive(Clone, Copy)]
enum Entry {
    Dir,
    /// Generated on open, read-only.
    File(Generator),
    /// Written to act (mode 0200 like Linux's `drop_caches`); reads give nothing.
    Control(Control),
}

/// The whole tree: paths below `/proc` (no leading slash), parents before children.
const TREE: [(&str, Entry); 8] = [
    ("interrupts", Entry::File(interrupts)),
    ("meminfo", Entry::File(meminfo)),
    ("mounts", Entry::File(mounts)),
    ("vmstat", Entry::File(vmstat)),
    ("sys", Entry::Dir),
    ("sys/vm", Entry::Dir),
    ("sys/vm/copy_offload", Entry::Control(copy_offload)),
    ("sys/vm/drop_caches", Entry::Control(drop_caches)),
];

/// A directory of procfs: `/proc` itself (`index` None) or an entry of [`TREE`].
struct ProcDir {
    dev: u64,
    index: Option<usize>,
}

struct ProcFile {
    dev: u64,
    index: usize,
}

fn ino(index: Option<usize>) -> u64 {
    index.map_or(1, |i| 2 + i as u64)
}

fn path_of(index: Option<usize>) -> &'static str {
    index.map_or("", |i| TREE[i].0)
}

/// The entries directly inside the directory at `dir` ("" for the root).
fn children(dir: &'static str) -> impl Iterator<Item = (usize, &'static str)> {
    TREE.iter().enumerate().filter_map(move |(i, (p, _))| {
        let rest = if dir.is_empty() {
            *p
        } else {
            p.strip_prefix(dir)?.strip_prefix('/')?
        };
        (!rest.contains('/')).then_some((i, rest))
    })
}

/// A new procfs instance.
pub fn new(dev: u64) -> NodeRef {
    Arc::new(ProcDir { dev, index: None })
}

struct Text(Vec<u8>);

impl Write for Text {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// `/proc/sys/vm/copy_offload` (AliasOS's own): "0" sends copies between files and raw
/// devices through the page cache even where the disk could copy by itself or transit
/// frames could carry them between disks; "1" (the default) lets them bypass it. For
/// comparing the paths (`make bench-copy`).
fn copy_offload(data: &[u8]) -> Result<(), Errno> {
    let on = match data.trim_ascii() {
        b"0" => false,
        b"1" => true,
        _ => return Err(Errno::EINVAL),
    };
    crate::transit::set_bypass(on);
    log::info!("copy_offload {}", on as u8);
    Ok(())
}

/// `/proc/sys/vm/drop_caches`: as Linux, "1" drops clean page-cache pages, "2" clean
/// metadata blocks, "3" both; dirty pages, and pages mapped or under I/O, stay.
fn drop_caches(data: &[u8]) -> Result<(), Errno> {
    let text = core::str::from_utf8(data).map_err(|_| Errno::EINVAL)?;
    let what: u32 = text.trim().parse().map_err(|_| Errno::EINVAL)?;
    if !(1..=3).contains(&what) {
        return Err(Errno::EINVAL);
    }
    let mut pages = 0;
    if what & 1 != 0 {
        pages = crate::memory::reclaim::drop_page_cache();
    }
    if what & 2 != 0 {
        super::drop_clean_metadata();
    }
    log::info!("drop_caches {what}: {pages} page-cache pages dropped");
    Ok(())
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
    line("Dirty", kib(counters::get(Counter::NrDirty)));
    line("Writeback", kib(counters::get(Counter::NrWriteback)));
    line("Shmem", 0);
    t.0
}

/// `/proc/interrupts`, shortened from Linux's layout: one line per disk that completes
/// by interrupt (`vector: count  MSI name`); disks that are polled are not listed.
pub fn interrupts() -> Vec<u8> {
    let mut t = Text(Vec::new());
    let _ = writeln!(t, "{:>12}", "CPU0");
    for d in crate::block::disks() {
        if let Some(v) = d.vector {
            let _ = writeln!(t, "{v:>3}: {:>10}  MSI  {}", d.interrupts(), d.name());
        }
    }
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

/// An open control file: each write (at most a page) is one command.
struct ControlFile(Control);

impl FileOps for ControlFile {
    fn read(&self, _pos: u64, _buf: &mut ReadBuf, _nonblock: bool) -> Result<usize, Errno> {
        Err(Errno::EINVAL)
    }

    fn write(&self, _pos: u64, buf: &mut WriteBuf, _nonblock: bool) -> Result<usize, Errno> {
        let n = buf.len();
        if n > 4096 {
            return Err(Errno::EINVAL);
        }
        let mut data = Vec::with_capacity(n);
        buf.drain(|piece| {
            data.extend_from_slice(piece);
            Ok(piece.len())
        })?;
        (self.0)(&data)?;
        Ok(n)
    }

    fn size(&self) -> u64 {
        0
    }
}

fn stat_of(dev: u64, index: Option<usize>) -> Stat {
    let t = now();
    let (mode, nlink, blksize) = match index.map(|i| TREE[i].1) {
        None | Some(Entry::Dir) => (S_IFDIR | 0o555, 2, 4096),
        Some(Entry::File(_)) => (S_IFREG | 0o444, 1, 1024),
        Some(Entry::Control(_)) => (S_IFREG | 0o200, 1, 1024),
    };
    Stat {
        dev,
        ino: ino(index),
        mode,
        nlink,
        blksize,
        atime: t,
        mtime: t,
        ctime: t,
        ..Stat::default()
    }
}

impl Node for ProcDir {
    fn kind(&self) -> FileKind {
        FileKind::Directory
    }

    fn stat(&self) -> Result<Stat, Errno> {
        Ok(stat_of(self.dev, self.index))
    }

    fn lookup(&self, name: &[u8]) -> Result<NodeRef, Errno> {
        let (i, _) = children(path_of(self.index))
            .find(|(_, n)| n.as_bytes() == name)
            .ok_or(Errno::ENOENT)?;
        Ok(match TREE[i].1 {
            Entry::Dir => Arc::new(ProcDir {
                dev: self.dev,
                index: Some(i),
            }),
            Entry::File(_) | Entry::Control(_) => Arc::new(ProcFile {
                dev: self.dev,
                index: i,
            }),
        })
    }

    fn create(&self, _name: &[u8], _mode: u32) -> Result<NodeRef, Errno> {
        Err(Errno::EACCES)
    }

    fn mkdir(&self, _name: &[u8], _mode: u32) -> Result<(), Errno> {
        Err(Errno::EACCES)
    }

    fn readdir(&self, cursor: u64) -> Result<Vec<DirEntry>, Errno> {
        let parent = match self.index {
            Some(i) => {
                let p = TREE[i].0;
                let up = p.rfind('/').map(|k| &p[..k]);
                up.and_then(|u| TREE.iter().position(|(q, _)| *q == u))
            }
            None => None,
        };
        let mut all: Vec<(&[u8], u64, FileKind)> = alloc::vec![
            (&b"."[..], ino(self.index), FileKind::Directory),
            (b"..", ino(parent), FileKind::Directory),
        ];
        for (i, n) in children(path_of(self.index)) {
            let kind = match TREE[i].1 {
                Entry::Dir => FileKind::Directory,
                _ => FileKind::Regular,
            };
            all.push((n.as_bytes(), ino(Some(i)), kind));
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
        Ok(stat_of(self.dev, Some(self.index)))
    }

    fn size(&self) -> u64 {
        0
    }

    fn read_at(&self, offset: u64, buf: &mut ReadBuf) -> Result<usize, Errno> {
        match TREE[self.index].1 {
            Entry::File(generate) => Snapshot(generate()).read(offset, buf, false),
            _ => Err(Errno::EINVAL),
        }
    }

    fn write_at(&self, offset: u64, buf: &mut WriteBuf) -> Result<usize, Errno> {
        match TREE[self.index].1 {
            Entry::Control(c) => ControlFile(c).write(offset, buf, false),
            _ => Err(Errno::EACCES),
        }
    }

    fn truncate(&self, _size: u64) -> Result<(), Errno> {
        match TREE[self.index].1 {
            // `echo 3 > drop_caches` opens with O_TRUNC, as on Linux.
            Entry::Control(_) => Ok(()),
            _ => Err(Errno::EACCES),
        }
    }

    fn open(&self, _me: &NodeRef, flags: u32) -> Result<Box<dyn FileOps>, Errno> {
        let writing = flags & 3 != 0;
        match TREE[self.index].1 {
            Entry::File(generate) if !writing => Ok(Box::new(Snapshot(generate()))),
            Entry::Control(c) if flags & 3 == 1 => Ok(Box::new(ControlFile(c))),
            _ => Err(Errno::EACCES),
        }
    }
}
