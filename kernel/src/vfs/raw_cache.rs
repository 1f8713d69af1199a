//! The page cache of raw block devices: `/dev/vda` read or written without `O_DIRECT`
//! goes through the page cache like a file, page `i` being the disk's bytes
//! `[4096 i, 4096 (i + 1))`, DMAed straight into and out of the cache's frames. One
//! cached file per disk, shared by every open of it; a partial last page (a disk whose
//! size is not a multiple of 4 KiB) is clipped at the end of the disk.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use drivers::block::{BlockDevice, Op, Segment};
use mm::FrameRef;
use mm::frame::FRAME_SIZE;
use mm::page_cache::{CachedFile, EIO, IoError, PageIo};

use super::page_cache;
use crate::block::Disk;

/// Frames per block request.
const FRAMES_PER_REQUEST: usize = 32;

/// A disk's pages, for the page cache.
struct RawPages {
    disk: Arc<Disk>,
}

impl RawPages {
    /// `op` on pages `first..` in `frames`: runs of whole frames (the last one clipped
    /// at the end of the disk; frames past it read as zeros and are not written), all
    /// in flight at once.
    fn transfer(&self, op: Op, first: u64, frames: Vec<FrameRef>) -> Result<(), IoError> {
        let capacity = self.disk.info().sectors * 512;
        let per_request = FRAMES_PER_REQUEST.min(self.disk.info().max_segments.max(1));
        let mut runs: Vec<(u64, Vec<Segment>)> = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let at = (first + i as u64) * FRAME_SIZE as u64;
            let len = capacity.saturating_sub(at).min(FRAME_SIZE as u64) as usize;
            if op == Op::Read && len < FRAME_SIZE {
                f.piece(len, FRAME_SIZE - len).zero();
            }
            if len == 0 {
                continue;
            }
            let seg = Segment {
                phys: f.pfn().addr(),
                len: len as u32,
            };
            match runs.last_mut() {
                Some((_, segs)) if i % per_request != 0 => segs.push(seg),
                _ => runs.push((at / 512, alloc::vec![seg])),
            }
        }
        if runs.is_empty() {
            return Ok(());
        }
        self.disk
            .io_all(op, runs, Arc::new(frames))
            .map_err(|_| IoError(EIO))
    }
}

impl PageIo for RawPages {
    fn read_pages(&self, first: u64, frames: Vec<FrameRef>) -> Result<(), IoError> {
        self.transfer(Op::Read, first, frames)
    }

    fn write_pages(&self, first: u64, frames: Vec<FrameRef>) -> Result<(), IoError> {
        self.transfer(Op::Write, first, frames)
    }
}

static CACHES: spin::Mutex<Vec<(String, Arc<CachedFile>)>> = spin::Mutex::new(Vec::new());

/// The page cache of `disk` (made at its first use).
pub fn of(disk: &Arc<Disk>) -> Arc<CachedFile> {
    let mut caches = CACHES.lock();
    if let Some((_, c)) = caches.iter().find(|(n, _)| n == disk.name()) {
        return c.clone();
    }
    let c = page_cache().open(alloc::boxed::Box::new(RawPages { disk: disk.clone() }));
    caches.push((String::from(disk.name()), c.clone()));
    c
}
