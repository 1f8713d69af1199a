//! The data path: [`FilePages`] maps a run of file pages through ext2's block map and
//! DMAs them straight into and out of their page-cache frames.

use super::*;

/// One file's pages on disk: maps file blocks with ext2's block map and moves whole runs
/// of frames in block requests whose segments are the page-cache frames themselves.
pub struct FilePages {
    pub fs: Arc<Mutex<Ext2>>,
    pub disk: Arc<Disk>,
    pub ino: u32,
}

/// A piece of a transfer: `sectors` on disk starting at `sector`, to or from the frame
/// ranges in `segs`.
struct Extent {
    sector: u64,
    segs: Vec<Segment>,
}

/// The references to a transfer's frames that the page cache handed over: every block
/// request of the transfer owns a share, so the last completion lets them go.
type HeldFrames = Arc<Vec<FrameRef>>;

impl FilePages {
    /// Map every block of pages `first..first + frames.len()` and group them into
    /// extents of consecutive disk blocks. Holes (when not allocating) are zero-filled
    /// in the frame and left out. The whole range is mapped with one walk of the inode
    /// (`map_range`), not one per block.
    fn extents(
        &self,
        first: u64,
        frames: &[FrameRef],
        alloc: bool,
    ) -> Result<Vec<Extent>, IoError> {
        let mut fs = self.fs.lock();
        let bs = fs.block_size() as u64;
        let spb = fs.sectors_per_block() as u64;
        let per_page = FRAME_SIZE as u64 / bs;
        // Blocks wholly past the end of the file are neither allocated nor written (ext2
        // must not own blocks beyond i_size); on reads they are zeros.
        let size = fs.stat(self.ino).map_err(|e| IoError(e.errno()))?.size;
        let first_block = first * per_page;
        let blocks = frames.len() as u64 * per_page;
        let inside = size.div_ceil(bs).saturating_sub(first_block).min(blocks);
        let mut map: Vec<Option<u64>> = alloc::vec![None; blocks as usize];
        fs.map_range(self.ino, first_block, inside, alloc, |fb, b| {
            map[(fb - first_block) as usize] = b;
        })
        .map_err(|e| IoError(e.errno()))?;
        drop(fs);
        let max_segments = self.disk.info().max_segments;
        let mut out: Vec<Extent> = Vec::new();
        let mut next_sector = u64::MAX;
        for (i, block) in map.into_iter().enumerate() {
            let frame = &frames[i / per_page as usize];
            let pfn = frame.pfn();
            let b = i as u64 % per_page;
            let Some(block) = block else {
                // A read of a hole or of blocks past the end finds zeros; a write zeroes
                // blocks past the end in the frame too (stores through a mapping may
                // have reached them, and a later extension must read zeros), unless
                // the frame is shared with another file's page, whose bytes these are
                // (an aliased page is always whole inside both files: truncating either
                // side to inside it breaks the share first).
                let shared = crate::memory::frames()
                    .table()
                    .get(pfn)
                    .is_some_and(|d| d.sharers() > 1);
                if !alloc || !shared {
                    frame.piece((b * bs) as usize, bs as usize).zero();
                }
                next_sector = u64::MAX;
                continue;
            };
            let seg = Segment {
                phys: pfn.addr() + b * bs,
                len: bs as u32,
            };
            let sector = block * spb;
            match out.last_mut() {
                Some(e) if sector == next_sector && e.segs.len() < max_segments => {
                    // Merge with the previous segment when the frame range continues.
                    let last = e.segs.last_mut().expect("extent has a segment");
                    if last.phys + last.len as u64 == seg.phys {
                        last.len += seg.len;
                    } else {
                        e.segs.push(seg);
                    }
                }
                _ => out.push(Extent {
                    sector,
                    segs: alloc::vec![seg],
                }),
            }
            next_sector = sector + spb;
        }
        Ok(out)
    }

    /// Submit every extent at once and wait for all of them.
    fn run(&self, op: Op, extents: Vec<Extent>, held: HeldFrames) -> Result<(), IoError> {
        let runs = extents.into_iter().map(|e| (e.sector, e.segs)).collect();
        self.disk.io_all(op, runs, held).map_err(|_| IoError(EIO))
    }
}

impl PageIo for FilePages {
    fn read_pages(&self, first: u64, frames: Vec<FrameRef>) -> Result<(), IoError> {
        let extents = self.extents(first, &frames, false)?;
        self.run(Op::Read, extents, Arc::new(frames))
    }

    /// Readahead: every extent goes to the disk at once and this returns; the last
    /// completion (in the disk interrupt) reports the result.
    fn start_read(&self, first: u64, frames: Vec<FrameRef>, done: ReadDone) {
        let extents = match self.extents(first, &frames, false) {
            Ok(e) => e,
            Err(e) => return done(Err(e)),
        };
        if extents.is_empty() {
            return done(Ok(())); // all holes, already zeroed
        }
        struct Pending {
            left: AtomicUsize,
            failed: AtomicBool,
            done: spin::Mutex<Option<ReadDone>>,
        }
        let p = Arc::new(Pending {
            left: AtomicUsize::new(extents.len()),
            failed: AtomicBool::new(false),
            done: spin::Mutex::new(Some(done)),
        });
        // Called once per extent, from the interrupt handler or (a refused submit) here,
        // always with interrupts off: the last one runs `done`.
        let finish = |p: &Pending, ok: bool| {
            if !ok {
                p.failed.store(true, Ordering::SeqCst);
            }
            if p.left.fetch_sub(1, Ordering::SeqCst) == 1
                && let Some(d) = p.done.lock().take()
            {
                d(if p.failed.load(Ordering::SeqCst) {
                    Err(IoError(EIO))
                } else {
                    Ok(())
                });
            }
        };
        let held: HeldFrames = Arc::new(frames);
        for e in extents {
            let pc = p.clone();
            let req = Request::new(
                Op::Read,
                e.sector,
                e.segs,
                Box::new(move |c| finish(&pc, c.result.is_ok())),
            )
            .owning(held.clone());
            if self.disk.submit(req).is_err() {
                crate::arch::cpu::without_interrupts(|| finish(&p, false));
            }
        }
    }

    fn write_pages(&self, first: u64, frames: Vec<FrameRef>) -> Result<(), IoError> {
        let extents = self
            .extents(first, &frames, true)
            .map_err(|e| if e.0 == 0 { IoError(ENOMEM) } else { e })?;
        self.run(Op::Write, extents, Arc::new(frames))
    }
}

// ---- mounts, inodes, open files -------------------------------------------------
