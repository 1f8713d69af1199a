//! Direct I/O on ext2 files (`O_DIRECT`): the file's blocks go straight between the disk
//! and the caller's pinned pages (`vfs::direct`), kept coherent with the page cache
//! (`mm::page_cache::direct`):
//!
//! - a read writes the range's dirty cached pages back first, then DMAs into the user's
//!   pages from the file's blocks; a read reaching a hole takes the page cache (which
//!   reads holes as zeros), a read past the end is short as on Linux;
//! - a write, with the file's write lock held throughout, over blocks the file already
//!   has inside its size (growth and holes go through the page cache, which allocates
//!   and zeroes: a failed DMA must never leave fresh blocks holding old disk bytes),
//!   writes back and drops the range's cached pages (if one cannot be dropped, being
//!   mapped, the write goes through the page cache instead, as Linux falls back to
//!   buffered I/O), DMAs from the user's pages, then drops (or reads again in place, if
//!   mapped) the pages a racing read brought in. It is complete when planned: its result
//!   comes back at once.

use super::*;
use crate::block::PinnedParts;
use crate::uaccess;
use crate::vfs::direct::{self, DirectIo};

/// A direct read in flight, counted in its inode until the read is over. It holds the
/// inode, so an unlinked file's blocks are not freed before the read is done.
struct DioRead(Arc<Inode>);

impl Drop for DioRead {
    fn drop(&mut self) {
        self.0.dio_reads.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A run of the file's blocks that is contiguous on disk: start sector, bytes.
type DiskRun = (u64, usize);

/// The disk runs of one transfer: most have one or two (a file's blocks are contiguous
/// but for a pointer block now and then), kept inline.
type DiskRuns = smallvec::SmallVec<[DiskRun; 2]>;

impl Inode {
    /// The disk runs behind bytes `[offset, offset + len)` (512-byte aligned) of the
    /// file; None if a block is a hole.
    fn disk_runs(&self, offset: u64, len: usize) -> Result<Option<DiskRuns>, Errno> {
        let mut fs = self.fs.lock();
        let bs = fs.block_size() as u64;
        let spb = bs / 512;
        let end = offset + len as u64;
        let first = offset / bs;
        let last = (end - 1) / bs;
        let mut runs = DiskRuns::new();
        let mut hole = false;
        fs.map_runs(self.ino, first, last - first + 1, |fb, disk, n| {
            let Some(disk) = disk else {
                hole = true;
                return;
            };
            // The part of these blocks inside the range, as sectors and bytes.
            let (run_start, run_end) = (fb * bs, (fb + n) * bs);
            let (from, to) = (offset.max(run_start), end.min(run_end));
            let sector = disk * spb + (from - run_start) / 512;
            let bytes = (to - from) as usize;
            match runs.last_mut() {
                Some((s, len)) if *s + (*len as u64) / 512 == sector => *len += bytes,
                _ => runs.push((sector, bytes)),
            }
        })
        .map_err(Errno::from)?;
        Ok((!hole).then_some(runs))
    }

    /// The pinned user memory `[va, va + len)` cut into one range per disk run.
    fn pin_for(
        va: u64,
        len: usize,
        runs: &[DiskRun],
        device_writes: bool,
    ) -> Result<PinnedParts, Errno> {
        let mut pinned = uaccess::pin_user(va, len, device_writes)?;
        runs.iter()
            .map(|&(sector, n)| {
                pinned
                    .split_front(n)
                    .map(|r| (sector, r))
                    .map_err(|_| Errno::ENOMEM)
            })
            .collect()
    }

    /// Plan (reads) or do (writes) direct I/O of `len` bytes at `offset` with user memory
    /// at `va`; EOPNOTSUPP where the page cache must do it instead (see the module).
    pub fn direct(
        self: &Arc<Self>,
        op: Op,
        offset: u64,
        va: u64,
        len: usize,
    ) -> Result<DirectIo, Errno> {
        direct::check_alignment(offset, va, len)?;
        uaccess::check_range(va, len)?;
        if len == 0 {
            return Ok(DirectIo::done(Ok(0)));
        }
        match op {
            Op::Read => {
                // Mapped and counted under the write lock, so truncation (which takes
                // the lock once the count is 0) never frees a block being read. While a
                // truncation waits for the count, the page cache reads instead.
                let _w = self.write_lock.lock();
                if self.truncation_pending() {
                    return Err(Errno::EOPNOTSUPP);
                }
                let io = self.direct_read(offset, va, len)?;
                self.dio_reads.fetch_add(1, Ordering::AcqRel);
                Ok(io.holding(DioRead(self.clone())))
            }
            _ => {
                let _w = self.write_lock.lock();
                self.direct_write(offset, va, len)
                    .map(|r| DirectIo::done(Ok(r)))
            }
        }
    }

    fn direct_read(&self, offset: u64, va: u64, len: usize) -> Result<DirectIo, Errno> {
        let size = self.size();
        if offset >= size {
            return Ok(DirectIo::done(Ok(0)));
        }
        // Whole sectors move; the result stops at the end of the file.
        let total = ((size - offset).next_multiple_of(512)).min(len as u64) as usize;
        direct::sync_before_read(&self.cache, offset, total)?;
        let Some(runs) = self.disk_runs(offset, total)? else {
            return Err(Errno::EOPNOTSUPP); // a hole: the page cache reads it as zeros
        };
        let parts = Self::pin_for(va, total, &runs, true)?;
        Ok(DirectIo::new(self.disk.clone(), Op::Read, parts).clip((size - offset) as usize))
    }

    /// The write itself, with the write lock held: the bytes written. Only over blocks
    /// the file already has, inside its size: growth and holes go through the page cache
    /// (EOPNOTSUPP), so a failed or short DMA never leaves newly allocated blocks with
    /// another file's old bytes in them, and the size never moves here.
    fn direct_write(&self, offset: u64, va: u64, len: usize) -> Result<usize, Errno> {
        let end = offset.checked_add(len as u64).ok_or(Errno::EFBIG)?;
        if end > self.size() {
            return Err(Errno::EOPNOTSUPP);
        }
        let Some(runs) = self.disk_runs(offset, len)? else {
            return Err(Errno::EOPNOTSUPP); // a hole
        };
        direct::write_coherently(&self.cache, offset, len, || {
            let parts = Self::pin_for(va, len, &runs, false)?;
            Ok(DirectIo::new(self.disk.clone(), Op::Write, parts))
        })
    }
}
