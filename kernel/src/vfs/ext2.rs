//! ext2 on a kernel disk: the metadata path (the file system's block cache reads and
//! writes through [`DiskBlocks`]) and the data path ([`FilePages`], which the page cache
//! calls to DMA file pages straight into and out of their frames).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use drivers::block::{BlockDevice, BlockError, Op, Request, Segment};
use fs::blockdev::BlockDev;
use fs::error::FsError;
use fs::ext2::Ext2;
use mm::counters::{self, Counter};
use mm::frame::{FRAME_SIZE, Pfn};
use mm::frame_table::Owner;
use mm::page_cache::{EIO, ENOMEM, IoError, PageIo};
use spin::Mutex;

use crate::block::Disk;
use crate::memory::frames;

fn fs_err(e: BlockError) -> FsError {
    match e {
        BlockError::OutOfRange
        | BlockError::ZeroLength
        | BlockError::Misaligned
        | BlockError::TooLarge => FsError::Invalid,
        BlockError::ReadOnly => FsError::ReadOnly,
        _ => FsError::Io,
    }
}

/// The file system's metadata I/O on a disk. Its buffers are heap memory, which is not
/// physically contiguous, so each 4 KiB piece goes through a frame of its own (one
/// request, one segment per frame) and is copied; the copies are counted in
/// `metadata_copy_bytes`. File data never takes this path.
pub struct DiskBlocks {
    pub disk: Arc<Disk>,
}

impl DiskBlocks {
    fn transfer(
        &self,
        op: Op,
        sector: u64,
        len: usize,
        mut each: impl FnMut(usize, Pfn, usize),
    ) -> Result<(), FsError> {
        if len == 0 || !len.is_multiple_of(512) {
            return Err(FsError::Invalid);
        }
        let n = len.div_ceil(FRAME_SIZE);
        let mut pfns = Vec::with_capacity(n);
        for _ in 0..n {
            match frames().alloc(Owner::Kernel) {
                Ok(p) => pfns.push(p),
                Err(_) => {
                    for p in pfns {
                        let _ = frames().put(p);
                    }
                    return Err(FsError::Io);
                }
            }
        }
        let segs: Vec<Segment> = pfns
            .iter()
            .enumerate()
            .map(|(i, p)| Segment {
                phys: p.addr(),
                len: (len - i * FRAME_SIZE).min(FRAME_SIZE) as u32,
            })
            .collect();
        if op == Op::Write {
            for (i, &p) in pfns.iter().enumerate() {
                each(i * FRAME_SIZE, p, segs[i].len as usize);
            }
        }
        let result = self.disk.io(op, sector, segs.clone());
        if op == Op::Read && result.is_ok() {
            for (i, &p) in pfns.iter().enumerate() {
                each(i * FRAME_SIZE, p, segs[i].len as usize);
            }
        }
        for p in pfns {
            let _ = frames().put(p);
        }
        counters::add(Counter::MetadataCopyBytes, len as u64);
        result.map(|_| ()).map_err(fs_err)
    }
}

impl BlockDev for DiskBlocks {
    fn sector_count(&self) -> u64 {
        self.disk.info().sectors
    }

    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), FsError> {
        let len = buf.len();
        self.transfer(Op::Read, sector, len, |off, p, n| {
            mm::phys::read(p, 0, &mut buf[off..off + n])
        })
    }

    fn write(&self, sector: u64, buf: &[u8]) -> Result<(), FsError> {
        self.transfer(Op::Write, sector, buf.len(), |off, p, n| {
            mm::phys::write(p, 0, &buf[off..off + n])
        })
    }

    fn flush(&self) -> Result<(), FsError> {
        match self.disk.flush() {
            Ok(_) | Err(BlockError::Unsupported) => Ok(()),
            Err(e) => Err(fs_err(e)),
        }
    }
}

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

impl FilePages {
    /// Map every block of pages `first..first + frames.len()` and group them into
    /// extents of consecutive disk blocks. Holes (when not allocating) are zero-filled
    /// in the frame and left out.
    fn extents(&self, first: u64, frames: &[Pfn], alloc: bool) -> Result<Vec<Extent>, IoError> {
        let mut fs = self.fs.lock();
        let bs = fs.block_size() as u64;
        let spb = fs.sectors_per_block() as u64;
        let per_page = FRAME_SIZE as u64 / bs;
        // Blocks wholly past the end of the file are neither allocated nor written (ext2
        // must not own blocks beyond i_size); on reads they are zeros.
        let size = fs.stat(self.ino).map_err(|e| IoError(e.errno()))?.size;
        let mut out: Vec<Extent> = Vec::new();
        let mut next_sector = u64::MAX;
        for (i, &pfn) in frames.iter().enumerate() {
            for b in 0..per_page {
                let fb = (first + i as u64) * per_page + b;
                let block = if fb * bs >= size {
                    None
                } else {
                    fs.bmap(self.ino, fb, alloc)
                        .map_err(|e| IoError(e.errno()))?
                };
                let Some(block) = block else {
                    mm::phys::zero(pfn, (b * bs) as usize, bs as usize);
                    next_sector = u64::MAX;
                    continue;
                };
                let seg = Segment {
                    phys: pfn.addr() + b * bs,
                    len: bs as u32,
                };
                let sector = block * spb;
                match out.last_mut() {
                    Some(e)
                        if sector == next_sector
                            && e.segs.len() < self.disk.info().max_segments =>
                    {
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
        }
        Ok(out)
    }

    /// Submit every extent at once and wait for all of them.
    fn run(&self, op: Op, extents: Vec<Extent>) -> Result<(), IoError> {
        let left = Arc::new(AtomicUsize::new(extents.len()));
        let failed = Arc::new(AtomicUsize::new(0));
        for e in extents {
            let (l, f) = (left.clone(), failed.clone());
            let req = Request::new(
                op,
                e.sector,
                e.segs,
                Box::new(move |c| {
                    if c.result.is_err() {
                        f.fetch_add(1, Ordering::SeqCst);
                    }
                    l.fetch_sub(1, Ordering::SeqCst);
                }),
            );
            if self.disk.submit(req).is_err() {
                failed.fetch_add(1, Ordering::SeqCst);
                left.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.disk.wait_until(&|| left.load(Ordering::SeqCst) == 0);
        if failed.load(Ordering::SeqCst) == 0 {
            Ok(())
        } else {
            Err(IoError(EIO))
        }
    }
}

impl PageIo for FilePages {
    fn read_pages(&self, first: u64, frames: &[Pfn]) -> Result<(), IoError> {
        let extents = self.extents(first, frames, false)?;
        self.run(Op::Read, extents)
    }

    fn write_pages(&self, first: u64, frames: &[Pfn]) -> Result<(), IoError> {
        let extents = self
            .extents(first, frames, true)
            .map_err(|e| if e.0 == 0 { IoError(ENOMEM) } else { e })?;
        self.run(Op::Write, extents)
    }
}
