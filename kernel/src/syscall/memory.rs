//! Memory system calls: brk, mmap (anonymous; file mappings arrive with the page-cache
//! mapping work), munmap, mprotect, msync, madvise.

use alloc::sync::Arc;

use mm::page_cache::CachedFile;

use crate::errno::{Errno, SysResult};
use crate::proc::vm::{Kind, MappedFile, Prot, SharedMemory};
use crate::proc::{self};
use crate::vfs::ext2::Inode;
use crate::vfs::file::File;

const MAP_SHARED: u64 = 0x01;
const MAP_PRIVATE: u64 = 0x02;
const MAP_SHARED_VALIDATE: u64 = 0x03;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;

pub fn dispatch(nr: u64, a: &[u64; 6]) -> Option<SysResult> {
    Some(match nr {
        12 => Ok(proc::current().mem.lock().set_brk(a[0])),
        9 => mmap(a),
        11 => proc::current().mem.lock().munmap(a[0], a[1]).map(|_| 0),
        10 => mprotect(a),
        26 => msync(a),
        28 => madvise(a),
        _ => return None,
    })
}

fn mmap(a: &[u64; 6]) -> SysResult {
    let (addr, len, prot, flags, fd, off) = (a[0], a[1], a[2], a[3], a[4] as i32, a[5]);
    let prot = Prot::from_bits(prot)?;
    let kind = flags & 3;
    if kind != MAP_SHARED && kind != MAP_PRIVATE && kind != MAP_SHARED_VALIDATE {
        return Err(Errno::EINVAL);
    }
    if len == 0 || off % 4096 != 0 {
        return Err(Errno::EINVAL);
    }
    let p = proc::current();
    let backing = if flags & MAP_ANONYMOUS != 0 {
        if kind == MAP_PRIVATE {
            Kind::Anon
        } else {
            Kind::SharedAnon {
                obj: Arc::new(SharedMemory::new()),
                pgoff: 0,
            }
        }
    } else {
        file_backing(&p, fd, off, kind != MAP_PRIVATE, prot)?
    };
    let mut mem = p.mem.lock();
    if flags & MAP_FIXED_NOREPLACE != 0 {
        if addr % 4096 != 0 {
            return Err(Errno::EINVAL);
        }
        let end = addr
            .checked_add(len)
            .and_then(|e| e.checked_next_multiple_of(4096))
            .ok_or(Errno::EINVAL)?;
        if mem.is_mapped(addr, end) {
            return Err(Errno::EEXIST);
        }
        return mem.mmap(addr, len, prot, true, backing);
    }
    if flags & MAP_FIXED != 0 {
        return mem.mmap(addr, len, prot, true, backing);
    }
    // A hint is only a hint: used when the whole range there is free, else anywhere.
    if addr != 0 && addr % 4096 == 0 && addr >= proc::vm::USER_MIN {
        let end = addr
            .checked_add(len)
            .and_then(|e| e.checked_next_multiple_of(4096));
        if let Some(end) = end
            && end <= proc::vm::USER_LIMIT
            && !mem.is_mapped(addr, end)
        {
            return mem.mmap(addr, len, prot, true, backing);
        }
    }
    mem.mmap(0, len, prot, false, backing)
}

/// The page-cache backing of `fd` for a mapping at file offset `off`. Only files whose data
/// lives in the page cache (ext2) can be mapped; the open mode must allow the access
/// (EACCES), as on Linux.
fn file_backing(
    p: &proc::Process,
    fd: i32,
    off: u64,
    shared: bool,
    prot: Prot,
) -> Result<Kind, Errno> {
    let file = p.files.lock().get(fd)?;
    if !file.readable() || (shared && prot.write && !file.writable()) {
        return Err(Errno::EACCES);
    }
    // The open file's own inode (for a file unlinked while open, the orphan it keeps).
    let inode = file.cached_inode().ok_or(Errno::ENODEV)?;
    let may_write = file.writable();
    Ok(Kind::File {
        file: Arc::new(MappedInode { inode, _file: file }),
        pgoff: off / 4096,
        shared,
        may_write,
    })
}

/// What a file mapping holds: the inode's page cache, and the open file description, which
/// keeps the file system busy (no umount) while the mapping exists.
struct MappedInode {
    inode: Arc<Inode>,
    _file: Arc<File>,
}

impl MappedFile for MappedInode {
    fn cache(&self) -> &Arc<CachedFile> {
        self.inode.cache()
    }
    fn size(&self) -> u64 {
        self.inode.size()
    }
}

fn mprotect(a: &[u64; 6]) -> SysResult {
    let prot = Prot::from_bits(a[2])?;
    proc::current()
        .mem
        .lock()
        .mprotect(a[0], a[1], prot)
        .map(|_| 0)
}

fn msync(a: &[u64; 6]) -> SysResult {
    let (addr, flags) = (a[0], a[2]);
    if addr % 4096 != 0 || flags & !7 != 0 || flags & 5 == 5 {
        return Err(Errno::EINVAL);
    }
    let p = proc::current();
    let mut mem = p.mem.lock();
    let end = addr.checked_add(a[1]).ok_or(Errno::ENOMEM)?;
    let mut at = addr;
    while at < end {
        let area = mem.area(at).ok_or(Errno::ENOMEM)?;
        at = area.end;
    }
    // Stores through shared file mappings become dirty page-cache pages; MS_SYNC (4)
    // writes them to the disk before returning, MS_ASYNC leaves that to writeback.
    let files = mem.sync_shared(addr, end);
    drop(mem);
    if flags & 4 != 0 {
        for f in files {
            f.cache().writeback().map_err(|_| Errno::EIO)?;
        }
    }
    Ok(0)
}

fn madvise(a: &[u64; 6]) -> SysResult {
    if !a[0].is_multiple_of(4096) {
        return Err(Errno::EINVAL);
    }
    match a[2] {
        // MADV_DONTNEED: the pages go; private ones read back as zero or file contents.
        4 => proc::current().mem.lock().discard(a[0], a[1]).map(|_| 0),
        // Other advice (NORMAL, RANDOM, SEQUENTIAL, WILLNEED, FREE, ...) is only advice.
        0..=3 | 8..=23 => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}
