//! The metadata path: the file system's block cache reads and writes sectors through
//! [`DiskBlocks`], one block request per transfer (counted in `metadata_copy_bytes`).

use super::*;

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
        mut each: impl FnMut(usize, &FrameRef, usize),
    ) -> Result<(), FsError> {
        if len == 0 || !len.is_multiple_of(512) {
            return Err(FsError::Invalid);
        }
        let n = len.div_ceil(FRAME_SIZE);
        let mut pfns = Vec::with_capacity(n);
        for _ in 0..n {
            // Kernel class: metadata I/O must make progress under memory pressure (it is
            // how dirty pages get written back), so it may use half of the reserve.
            match crate::memory::alloc_frame_ref(Owner::Kernel, crate::memory::Gfp::Kernel) {
                Ok(f) => pfns.push(f),
                Err(_) => return Err(FsError::Io),
            }
        }
        let segs: Vec<Segment> = pfns
            .iter()
            .enumerate()
            .map(|(i, p)| Segment {
                phys: p.pfn().addr(),
                len: (len - i * FRAME_SIZE).min(FRAME_SIZE) as u32,
            })
            .collect();
        if op == Op::Write {
            for (i, p) in pfns.iter().enumerate() {
                each(i * FRAME_SIZE, p, segs[i].len as usize);
            }
        }
        let result = self.disk.io(op, sector, segs.clone());
        if op == Op::Read && result.is_ok() {
            for (i, p) in pfns.iter().enumerate() {
                each(i * FRAME_SIZE, p, segs[i].len as usize);
            }
        }
        drop(pfns);
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
            p.piece(0, n).read(0, &mut buf[off..off + n])
        })
    }

    fn write(&self, sector: u64, buf: &[u8]) -> Result<(), FsError> {
        self.transfer(Op::Write, sector, buf.len(), |off, p, n| {
            p.piece(0, n).write(0, &buf[off..off + n])
        })
    }

    fn flush(&self) -> Result<(), FsError> {
        match self.disk.flush() {
            Ok(_) | Err(BlockError::Unsupported) => Ok(()),
            Err(e) => Err(fs_err(e)),
        }
    }
}
