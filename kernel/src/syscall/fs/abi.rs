//! Linux x86-64 structure layouts of the file system calls: `struct stat` (144 bytes),
//! `struct linux_dirent64`, `struct iovec`.

use alloc::vec::Vec;

use crate::errno::Errno;
use crate::uaccess;
use crate::vfs::{DirEntry, Stat};

/// Size of `struct stat` on x86-64.
pub const STAT_SIZE: usize = 144;

/// `struct stat` as x86-64 Linux lays it out.
pub fn stat_bytes(s: &Stat) -> [u8; STAT_SIZE] {
    let mut b = [0u8; STAT_SIZE];
    let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
    put(0, &s.dev.to_le_bytes());
    put(8, &s.ino.to_le_bytes());
    put(16, &(s.nlink as u64).to_le_bytes());
    put(24, &s.mode.to_le_bytes());
    put(28, &s.uid.to_le_bytes());
    put(32, &s.gid.to_le_bytes());
    // 36: padding
    put(40, &s.rdev.to_le_bytes());
    put(48, &(s.size as i64).to_le_bytes());
    put(56, &(s.blksize as i64).to_le_bytes());
    put(64, &(s.blocks as i64).to_le_bytes());
    put(72, &s.atime.to_le_bytes());
    put(88, &s.mtime.to_le_bytes());
    put(104, &s.ctime.to_le_bytes());
    // nanoseconds and the reserved words stay 0
    b
}

/// Write `s` to user address `va`.
pub fn put_stat(va: u64, s: &Stat) -> Result<(), Errno> {
    uaccess::copy_to_user(va, &stat_bytes(s))
}

/// Offset of `d_name` in `struct linux_dirent64`.
const DIRENT_NAME: usize = 19;

/// Record length of a dirent64 for a name of `len` bytes (8-byte aligned, NUL included).
pub fn dirent_reclen(len: usize) -> usize {
    (DIRENT_NAME + len + 1).next_multiple_of(8)
}

/// Append the dirent64 of `e` to `out`.
pub fn push_dirent(out: &mut Vec<u8>, e: &DirEntry) {
    let reclen = dirent_reclen(e.name.len());
    let start = out.len();
    out.extend_from_slice(&e.ino.to_le_bytes());
    out.extend_from_slice(&(e.next as i64).to_le_bytes());
    out.extend_from_slice(&(reclen as u16).to_le_bytes());
    out.push(e.dtype);
    out.extend_from_slice(&e.name);
    out.resize(start + reclen, 0);
}

/// Most iovecs in one call (Linux's UIO_MAXIOV).
pub const IOV_MAX: usize = 1024;

/// The `iovcnt` iovecs at `va`, as (base, len); EINVAL for a bad count or a total
/// beyond `isize::MAX`.
pub fn read_iovecs(va: u64, iovcnt: u64) -> Result<Vec<(u64, usize)>, Errno> {
    let n = usize::try_from(iovcnt).map_err(|_| Errno::EINVAL)?;
    if n > IOV_MAX {
        return Err(Errno::EINVAL);
    }
    let mut raw = alloc::vec![0u8; n * 16];
    if n > 0 {
        uaccess::copy_from_user(va, &mut raw)?;
    }
    let mut total: u64 = 0;
    let mut out = Vec::with_capacity(n);
    for c in raw.as_chunks::<16>().0 {
        let (b, l) = c.split_at(8);
        let base = u64::from_le_bytes(b.try_into().map_err(|_| Errno::EFAULT)?);
        let len = u64::from_le_bytes(l.try_into().map_err(|_| Errno::EFAULT)?);
        total = total.checked_add(len).ok_or(Errno::EINVAL)?;
        if total > isize::MAX as u64 {
            return Err(Errno::EINVAL);
        }
        out.push((base, len as usize));
    }
    Ok(out)
}
