//! Copies between two disks through transit frames (DESIGN.md "nonpresent → nonpresent"
//! across devices): the source disk DMAs a piece into a transit buffer, the target disk
//! DMAs it out, and the buffer takes the next piece. Several pieces are in flight at
//! once, each at its own stage, so both disks work at the same time. The frames never
//! enter the page cache and the CPU never touches their bytes (`data_copy_bytes` does not
//! move); `transit_bytes` in `/proc/vmstat` counts the bytes written from them, at the
//! write's completion.
//!
//! A transit buffer is a physically contiguous run (one segment per request, whatever the
//! device's segment limit); it belongs to the requests in flight on it (each holds a
//! reference) and goes back to the frame allocator after the last one completes.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use drivers::block::copy::{CopyExtent, split_extents};
use drivers::block::{BlockDevice, BlockError, Op, Request, SECTOR_SIZE, Segment};
use mm::counters::{self, Counter};
use mm::frame::{FRAME_SIZE, Pfn};
use mm::frame_table::Owner;
use spin::Mutex;

use crate::arch::cpu;
use crate::block::{self, Disk};
use crate::memory::frames;

/// Copies bypass the page cache where they can (`/proc/sys/vm/copy_offload`).
static BYPASS: AtomicBool = AtomicBool::new(true);

/// Whether copies between files and raw devices may bypass the page cache: by the disk
/// itself, or through transit frames between disks.
pub fn bypass() -> bool {
    BYPASS.load(Ordering::Relaxed)
}

/// Let copies bypass the page cache, or send every copy through it.
pub fn set_bypass(on: bool) {
    BYPASS.store(on, Ordering::Relaxed);
}

/// Largest piece one buffer carries.
const PIECE_BYTES: u64 = 1 << 20;
/// Buffers (pieces in flight) per copy.
const DEPTH: usize = 8;

/// A physically contiguous run of frames for transit, freed when dropped.
struct TransitBuffer {
    start: Pfn,
    frames: u64,
}

impl TransitBuffer {
    /// A run of `frames` frames, if one is free.
    fn alloc(frames_wanted: u64) -> Option<TransitBuffer> {
        frames()
            .alloc_contiguous(frames_wanted, Owner::Dma)
            .ok()
            .map(|start| TransitBuffer {
                start,
                frames: frames_wanted,
            })
    }

    /// The buffer's first `len` bytes as a request segment.
    fn segment(&self, len: u64) -> Segment {
        Segment {
            phys: self.start.addr(),
            len: len as u32,
        }
    }
}

impl Drop for TransitBuffer {
    fn drop(&mut self) {
        if let Err(e) = frames().free_contiguous(self.start, self.frames) {
            log::error!("transit: freeing {} frames: {e}", self.frames);
        }
    }
}

/// A request of the copy finished: (buffer slot, the write stage?, result).
type Event = (usize, bool, Result<u64, BlockError>);

/// The copy's shared side: completions queued by the disks' interrupt handlers.
type Events = Arc<Mutex<VecDeque<Event>>>;

/// Copy `extents` (sectors of `src` to sectors of `dst`) through transit buffers, up to
/// [`DEPTH`] pieces in flight. Returns the bytes copied in order before the first piece
/// that failed, and that failure; None if not even one buffer could be had, or a disk
/// refused the first piece's request (the caller copies another way).
pub fn copy_between(
    src: &Disk,
    dst: &Disk,
    extents: &[CopyExtent],
) -> Option<(u64, Option<BlockError>)> {
    let max_bytes = PIECE_BYTES
        .min(src.info().max_bytes)
        .min(dst.info().max_bytes);
    let max_sectors = (max_bytes / SECTOR_SIZE as u64).max(1);
    let pieces = split_extents(extents, max_sectors);
    if pieces.is_empty() {
        return Some((0, None));
    }
    let frames_per = (max_sectors * SECTOR_SIZE as u64).div_ceil(FRAME_SIZE as u64);
    let buffers: Vec<Arc<TransitBuffer>> = (0..DEPTH.min(pieces.len()))
        .map_while(|_| TransitBuffer::alloc(frames_per).map(Arc::new))
        .collect();
    if buffers.is_empty() {
        return None;
    }
    let events: Events = Arc::new(Mutex::new(VecDeque::new()));
    // Per piece: its result once written (or failed).
    let mut results: Vec<Option<Result<u64, BlockError>>> = alloc::vec![None; pieces.len()];
    // Per buffer: the piece it carries.
    let mut carrying: Vec<Option<usize>> = alloc::vec![None; buffers.len()];
    let mut next = 0usize;
    // The first piece that failed: nothing after it is started or counted.
    let mut failed_at: Option<usize> = None;
    // Pieces are written in order: the next piece to write, and which pieces are read.
    // So a piece past a failed read is never written, however late the failure shows.
    let mut next_write = 0usize;
    let mut read_ok: Vec<bool> = alloc::vec![false; pieces.len()];
    let start = |disk: &Disk, op: Op, slot: usize, piece: &CopyExtent, events: &Events| {
        let sector = if op == Op::Read { piece.from } else { piece.to };
        let bytes = piece.sectors * SECTOR_SIZE as u64;
        let ev = events.clone();
        let req = Request::new(
            op,
            sector,
            alloc::vec![buffers[slot].segment(bytes)],
            Box::new(move |c| ev.lock().push_back((slot, op == Op::Write, c.result))),
        )
        .owning(buffers[slot].clone());
        if let Err(e) = disk.submit(req) {
            cpu::without_interrupts(|| events.lock().push_back((slot, op == Op::Write, Err(e))));
        }
    };
    for (slot, c) in carrying.iter_mut().enumerate() {
        *c = Some(next);
        start(src, Op::Read, slot, &pieces[next], &events);
        next += 1;
    }
    while carrying.iter().any(Option::is_some) {
        block::wait_completions(&|| !events.lock().is_empty(), None, false);
        let batch: Vec<Event> = cpu::without_interrupts(|| events.lock().drain(..).collect());
        for (slot, written, result) in batch {
            let Some(i) = carrying[slot] else { continue };
            let before_failure = failed_at.is_none_or(|f| i < f);
            match (written, result) {
                (false, Ok(_)) if before_failure => read_ok[i] = true,
                (true, Ok(n)) => {
                    counters::add(Counter::TransitBytes, n);
                    results[i] = Some(Ok(n));
                    carrying[slot] = None;
                    if failed_at.is_none() && next < pieces.len() {
                        carrying[slot] = Some(next);
                        start(src, Op::Read, slot, &pieces[next], &events);
                        next += 1;
                    }
                }
                // Read past a failure: not written.
                (false, Ok(_)) => carrying[slot] = None,
                (_, Err(e)) => {
                    // No new piece starts; the ones in flight before it finish.
                    results[i] = Some(Err(e));
                    failed_at = Some(failed_at.map_or(i, |f| f.min(i)));
                    carrying[slot] = None;
                }
            }
        }
        // Start the writes whose turn has come; drop the read pieces past a failure.
        while next_write < pieces.len()
            && read_ok[next_write]
            && failed_at.is_none_or(|f| next_write < f)
        {
            if let Some(slot) = carrying.iter().position(|&c| c == Some(next_write)) {
                start(dst, Op::Write, slot, &pieces[next_write], &events);
            }
            next_write += 1;
        }
        if let Some(f) = failed_at {
            // Read, past the failure, and not being written (writes start in order).
            for c in carrying.iter_mut() {
                if c.is_some_and(|p| p >= f && p >= next_write && read_ok[p]) {
                    *c = None;
                }
            }
        }
    }
    match block::ordered_prefix(&results) {
        // The first piece refused (a request shape a disk does not take): the caller
        // copies another way.
        (0, Some(e)) if e.is_refusal() => None,
        r => Some(r),
    }
}
