//! Copies between files that bypass the page cache (DESIGN.md "nonpresent →
//! nonpresent"): whole blocks of an ext2 file go to another file's blocks either by the
//! disk itself (NVMe's Copy command: both files on one disk that copies; no frame
//! touched) or, between two disks, by DMA through transit frames (`crate::transit`: the
//! source disk reads into a frame, the target disk writes from it; the frames never
//! enter the page cache and the CPU never touches their bytes).
//!
//! With both files' write locks held ([`Inode::copy_range_from`]), for a chunk whose
//! offsets are block-aligned (the two file systems having one block size):
//!
//! 1. the source's dirty cached pages in the range are written back (and writeback in
//!    flight waited for), so its blocks hold what the cache does;
//! 2. the target's cached pages in the range are written back and dropped; if one cannot
//!    be dropped (mapped, under I/O), the page cache copies the chunk instead;
//! 3. the source's blocks are looked up (a hole stops the copy there: the page cache
//!    copies holes as zeros), the target's blocks inside its size too (a hole there
//!    stops it as well: a failed copy must never leave a fresh block inside the file with
//!    old disk bytes), and the target's blocks past its size are allocated;
//! 4. the blocks move, all requests in flight at once; the bytes copied in order before
//!    the first failure count, the target's size grows to cover only them, and blocks
//!    allocated past it are freed again;
//! 5. pages of the target a racing reader brought in meanwhile are dropped (or read
//!    again, if mapped).
//!
//! `copy_offload_bytes` (by the disk) and `transit_bytes` (through frames) in
//! `/proc/vmstat` count the bytes at the requests' completion. A disk that refuses a
//! copy (unsupported, over its limits), or no transit memory, sends the chunk to the
//! page cache; any other failure is EIO, or a short count after what was copied.
//! `/proc/sys/vm/copy_offload` 0 sends every copy through the page cache.

use drivers::block::copy::CopyExtent;
use mm::page_cache::pages_of;

use super::*;
use crate::transit;
use crate::vfs::direct::blk_errno;

/// What a device-side copy of a chunk did.
#[derive(Default)]
pub(super) struct Offloaded {
    /// Bytes the device copied, whole blocks from the chunk's start (0: none).
    pub copied: usize,
    /// What stopped it (nothing reported as copied past it).
    pub failed: Option<Errno>,
    /// Nothing copied because the chunk starts with holes (at either end): the bytes
    /// they cover, for the page cache to copy before the device is tried again.
    pub holes: usize,
    /// The disk refused the copy (unsupported, over its limits) or no transit memory
    /// was free: the page cache copies the rest of this call.
    pub refused: bool,
}

impl Offloaded {
    fn failed(e: Errno) -> Offloaded {
        Offloaded {
            failed: Some(e),
            ..Offloaded::default()
        }
    }
}

/// How the blocks at both ends pair up ([`Inode::pair_blocks`]).
enum Pairing {
    /// Sector extents to copy (a prefix of the range), and whether blocks were
    /// allocated past the file's size for them.
    Extents(Vec<CopyExtent>, bool),
    /// The range starts with this many blocks that are holes on one side.
    Holes(u64),
}

/// A device that refused a copy is logged once.
static REFUSAL_LOGGED: AtomicBool = AtomicBool::new(false);

/// A piece of a copy by one disk: its requests run while the next piece is planned.
const DISK_PIECE_BYTES: u64 = 16 << 20;

/// A piece of a copy: requests in flight on one disk, or a transit copy already over
/// (None: no transit memory, or a disk refused it).
enum Flight {
    Disk(crate::block::CopyInFlight),
    Done(Option<(u64, Option<BlockError>)>),
}

/// What moves the blocks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mover {
    /// The disk, by itself (both files on it).
    Disk,
    /// The two disks, through transit frames.
    Transit,
}

impl Inode {
    /// What can move blocks from `src` to this file without the page cache, if anything.
    fn mover(&self, src: &Inode) -> Option<Mover> {
        if !transit::bypass() {
            return None;
        }
        if Arc::ptr_eq(&self.disk, &src.disk) {
            return self.disk.info().copy.map(|_| Mover::Disk);
        }
        // One file system's lock at a time.
        let src_bs = src.fs.lock().block_size();
        let bs = self.fs.lock().block_size();
        (src_bs == bs).then_some(Mover::Transit)
    }

    /// Copy bytes `[src_off, src_off + len)` of `src` (of size `src_size`) to `dst_off`
    /// in this file past the page cache, as far as the range qualifies (see the module).
    /// The caller holds both files' write locks.
    pub(super) fn copy_past_cache(
        &self,
        dst_off: u64,
        src: &Inode,
        src_off: u64,
        len: usize,
        src_size: u64,
    ) -> Offloaded {
        let Some(mover) = self.mover(src) else {
            return Offloaded::default();
        };
        let bs = self.fs.lock().block_size() as u64;
        let blocks = (len as u64).min(src_size.saturating_sub(src_off)) / bs;
        if !dst_off.is_multiple_of(bs) || !src_off.is_multiple_of(bs) || blocks == 0 {
            return Offloaded::default();
        }
        let bytes = (blocks * bs) as usize;
        // 1 and 2: the cache and the disk agree on both ranges.
        let (first, last) = pages_of(src_off, bytes);
        if let Err(e) = src.cache.sync_range(first, last) {
            return Offloaded::failed(Errno::from(e));
        }
        let (first, last) = pages_of(dst_off, bytes);
        match self.cache.invalidate_range(first, last) {
            Ok(0) => {}
            Ok(_) => return Offloaded::default(),
            Err(e) => return Offloaded::failed(Errno::from(e)),
        }
        // 3 and 4: the blocks at both ends, and the copy. On one disk, a piece at a time:
        // each piece's requests run while the next piece's blocks are looked up and
        // allocated; between two disks, transit pipelines by itself.
        let old = self.size();
        let piece = match mover {
            Mover::Disk => DISK_PIECE_BYTES / bs,
            Mover::Transit => blocks,
        }
        .max(1);
        let mut planned = 0u64;
        let mut allocated = false;
        let mut flights: Vec<(u64, Flight)> = Vec::new();
        while planned < blocks {
            let n = (blocks - planned).min(piece);
            let (sfb, dfb) = (src_off / bs + planned, dst_off / bs + planned);
            match self.pair_blocks(src, sfb, dfb, n, old) {
                Ok(Pairing::Extents(e, a)) => {
                    allocated |= a;
                    let got = e.iter().map(|x| x.sectors).sum::<u64>() * 512 / bs;
                    if got == 0 {
                        break;
                    }
                    let flight = match mover {
                        Mover::Disk => Flight::Disk(self.disk.start_copy(&e)),
                        Mover::Transit => {
                            Flight::Done(transit::copy_between(&src.disk, &self.disk, &e))
                        }
                    };
                    flights.push((got * bs, flight));
                    planned += got;
                    if got < n {
                        break; // a hole on either side: the next call starts there
                    }
                }
                Ok(Pairing::Holes(h)) if flights.is_empty() => {
                    return Offloaded {
                        holes: (h * bs) as usize,
                        ..Offloaded::default()
                    };
                }
                Ok(Pairing::Holes(_)) => break,
                // After pieces in flight: they count, and the next call meets the error.
                Err(_) if !flights.is_empty() => break,
                Err(e) => {
                    // Mapping past the size may have allocated some blocks.
                    self.free_past(old);
                    return Offloaded::failed(e);
                }
            }
        }
        if flights.is_empty() {
            if allocated {
                self.free_past(old);
            }
            return Offloaded::default();
        }
        // Every piece is waited for; the bytes count up to the first that fell short.
        let mut moved: Option<(u64, Option<BlockError>)> = Some((0, None));
        for (want, flight) in flights {
            let result = match flight {
                Flight::Disk(c) => Some(self.disk.finish_copy(c)),
                Flight::Done(r) => r,
            };
            moved = match (moved, result) {
                (Some((sum, None)), Some((n, None))) if n == want => Some((sum + n, None)),
                (Some((sum, None)), Some((n, e))) => {
                    Some((sum + n, Some(e.unwrap_or(BlockError::Io))))
                }
                (Some((0, None)), None) => None,
                (m, _) => m,
            };
        }
        let Some((copied, failed)) = moved else {
            // No transit memory, or a disk refused it: the page cache copies.
            if allocated {
                self.free_past(old);
            }
            return Offloaded {
                refused: true,
                ..Offloaded::default()
            };
        };
        let mut copied = copied as usize;
        let end = dst_off + copied as u64;
        let grown = if end > old {
            self.grow_to(end).map(|_| ())
        } else {
            Ok(())
        };
        if grown.is_err() {
            // The size stayed: what was copied past it is not the file's.
            copied = copied.min(old.saturating_sub(dst_off) as usize);
        }
        if allocated {
            self.free_past(self.size());
        }
        // 5: what a racing reader cached meanwhile goes.
        let (first, last) = pages_of(dst_off, bytes);
        self.cache.refresh_after_write(first, last);
        let mut refused = false;
        let failed = match failed {
            Some(e) if e.is_refusal() && copied == 0 => {
                if !REFUSAL_LOGGED.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "ext2: a copy to {} was refused ({:?}); it goes through the page cache",
                        self.disk.name(),
                        failed
                    );
                }
                refused = true;
                None
            }
            Some(e) => Some(blk_errno(e)),
            None => grown.err().map(Errno::from),
        };
        Offloaded {
            copied,
            failed,
            holes: 0,
            refused,
        }
    }

    /// The copy of `blocks` blocks from file block `sfb` of `src` to file block
    /// `dfb` of this file (of size `size`), as extents in sectors: the source's blocks
    /// up to its first hole, paired with this file's blocks up to a hole inside its size,
    /// with blocks past its size allocated (they stay allocated: the caller frees what
    /// ends past the size). Where the first block on either side is a hole: how many
    /// blocks the holes there cover.
    fn pair_blocks(
        &self,
        src: &Inode,
        sfb: u64,
        dfb: u64,
        blocks: u64,
        size: u64,
    ) -> Result<Pairing, Errno> {
        // The source's file system, then this one's (one at a time: they may be two).
        let mut from = Run::default();
        src.fs
            .lock()
            .map_range(src.ino, sfb, blocks, false, |_, b| from.see(b))
            .map_err(Errno::from)?;
        if from.holes > 0 {
            return Ok(Pairing::Holes(from.holes));
        }
        let from = from.blocks;
        let mut fs = self.fs.lock();
        let bs = fs.block_size() as u64;
        let spb = bs / 512;
        // This file: inside its size without allocating, past it allocating.
        let inside = size.div_ceil(bs).saturating_sub(dfb).min(from.len() as u64);
        let mut to = Run::default();
        if inside > 0 {
            fs.map_range(self.ino, dfb, inside, false, |_, b| to.see(b))
                .map_err(Errno::from)?;
        }
        if to.holes > 0 {
            return Ok(Pairing::Holes(to.holes));
        }
        let (hole, mut to) = (to.stopped, to.blocks);
        let mut allocated = false;
        if !hole && (to.len() as u64) < from.len() as u64 {
            allocated = true;
            let at = dfb + to.len() as u64;
            let want = from.len() as u64 - to.len() as u64;
            // Out of space part-way: the blocks allocated so far are used.
            let _ = fs.map_range(self.ino, at, want, true, |_, b| {
                if let Some(b) = b {
                    to.push(b);
                }
            });
        }
        drop(fs);
        let mut extents: Vec<CopyExtent> = Vec::new();
        for (&s, &d) in from.iter().zip(&to) {
            let (s, d) = (s * spb, d * spb);
            match extents.last_mut() {
                Some(e) if e.from + e.sectors == s && e.to + e.sectors == d => e.sectors += spb,
                _ => extents.push(CopyExtent {
                    from: s,
                    to: d,
                    sectors: spb,
                }),
            }
        }
        Ok(Pairing::Extents(extents, allocated))
    }

    /// Free this file's blocks past its size, `size` (blocks allocated for a copy that
    /// did not reach them); a failure is logged (e2fsck would find the blocks).
    fn free_past(&self, size: u64) {
        if let Err(e) = self.fs.lock().free_past_size(self.ino) {
            log::error!(
                "ext2: inode {}: blocks past {size} not freed: {e:?}",
                self.ino
            );
        }
    }
}

/// A file's blocks as `map_range` reports them, kept up to the first hole after a
/// mapped block; or, where the range starts with holes, how many.
#[derive(Default)]
struct Run {
    blocks: Vec<u64>,
    /// Holes before the first mapped block (only while `blocks` is empty).
    holes: u64,
    /// A hole after mapped blocks ended the run.
    stopped: bool,
}

impl Run {
    fn see(&mut self, b: Option<u64>) {
        match b {
            _ if self.stopped => {}
            Some(b) if self.holes == 0 => self.blocks.push(b),
            // Mapped after leading holes: the holes' count is what matters.
            Some(_) => self.stopped = true,
            None if self.blocks.is_empty() => self.holes += 1,
            None => self.stopped = true,
        }
    }
}
