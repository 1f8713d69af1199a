//! Block mapping (direct and 1/2/3-level indirect), truncation and file data.

use alloc::vec;
use alloc::vec::Vec;

use super::alloc_impl::data_run_ok;
use super::layout::*;
use super::run_cache::{LEARN_BLOCKS, MAX_LEARNED_RUNS, Run};
use super::{Ext2, Geometry};
use crate::error::{FsError, Result};

/// Where file block `fb` hangs: the `i_block` slot, the indices inside each
/// indirect level, and how many indirect levels there are.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockPath {
    pub slot: usize,
    pub idx: [usize; 3],
    pub depth: usize,
}

/// Largest number of blocks read or written with one device request.
const MAX_RUN_BLOCKS: u64 = 64;

impl Ext2 {
    pub(crate) fn block_path(&self, fb: u64) -> Result<BlockPath> {
        let p = self.geo.ptrs;
        let mut idx = [0usize; 3];
        if fb < N_DIRECT as u64 {
            return Ok(BlockPath {
                slot: fb as usize,
                idx,
                depth: 0,
            });
        }
        let mut rel = fb - N_DIRECT as u64;
        if rel < p {
            idx[0] = rel as usize;
            return Ok(BlockPath {
                slot: IND_BLOCK,
                idx,
                depth: 1,
            });
        }
        rel -= p;
        if rel < p * p {
            idx[0] = (rel / p) as usize;
            idx[1] = (rel % p) as usize;
            return Ok(BlockPath {
                slot: DIND_BLOCK,
                idx,
                depth: 2,
            });
        }
        rel -= p * p;
        if rel < p * p * p {
            idx[0] = (rel / (p * p)) as usize;
            idx[1] = ((rel / p) % p) as usize;
            idx[2] = (rel % p) as usize;
            return Ok(BlockPath {
                slot: TIND_BLOCK,
                idx,
                depth: 3,
            });
        }
        Err(FsError::FileTooBig)
    }

    fn check_ptr(&self, b: u64, ino: u32) -> Result<()> {
        if self.valid_data_block(b) {
            Ok(())
        } else {
            log::error!("ext2: inode {ino}: block pointer {b} is outside the data area");
            Err(FsError::Corrupt)
        }
    }

    fn read_ptr(&mut self, blk: u64, index: usize) -> Result<u64> {
        let data = self.cache.get(blk)?;
        Ok(rd32(data, index * 4)? as u64)
    }

    /// Disk block of file block `fb`, or `None` for a hole.
    pub(crate) fn map_block(&mut self, ino: u32, inode: &Inode, fb: u64) -> Result<Option<u64>> {
        let path = self.block_path(fb)?;
        let mut ptr = *inode.block.get(path.slot).ok_or(FsError::Corrupt)? as u64;
        for &index in path.idx.iter().take(path.depth) {
            if ptr == 0 {
                return Ok(None);
            }
            self.check_ptr(ptr, ino)?;
            ptr = self.read_ptr(ptr, index)?;
        }
        if ptr == 0 {
            return Ok(None);
        }
        self.check_ptr(ptr, ino)?;
        Ok(Some(ptr))
    }

    /// Where to look for a new block for file block `fb`: right after the
    /// block allocated last for the previous file block, else after the
    /// block mapping the previous entry of the same pointer array, else after
    /// the parent indirect block, else a spot in the inode's group.
    fn alloc_goal(&mut self, ino: u32, fb: u64, parent: Option<u64>, prev_sibling: u64) -> u64 {
        if let Some((li, lfb, lb)) = self.last_alloc
            && li == ino
            && lfb.wrapping_add(1) == fb
        {
            return lb + 1;
        }
        if prev_sibling != 0 && self.valid_data_block(prev_sibling) {
            return prev_sibling + 1;
        }
        if let Some(p) = parent {
            return p + 1;
        }
        // A file's first block: in the inode's group, "coloured" by inode
        // number so files written at the same time do not interleave.
        let g = ino.saturating_sub(1) / self.geo.inodes_per_group;
        let (start, end) = self.geo.group_range(g);
        start + (ino % 16) as u64 * ((end - start) / 16)
    }

    /// Map file block `fb`, allocating it (and any missing indirect blocks)
    /// if it is a hole. Returns the disk block and whether it is newly
    /// allocated (its contents are then undefined: the caller writes it).
    /// On failure nothing stays allocated and `inode` is unchanged.
    pub(crate) fn map_alloc(
        &mut self,
        ino: u32,
        inode: &mut Inode,
        fb: u64,
    ) -> Result<(u64, bool)> {
        self.check_rw()?;
        self.runs.forget(ino);
        let path = self.block_path(fb)?;
        let mut parent: Option<u64> = None;
        let mut ptr = *inode.block.get(path.slot).ok_or(FsError::Corrupt)? as u64;
        let mut level = 0;
        while ptr != 0 {
            self.check_ptr(ptr, ino)?;
            if level == path.depth {
                return Ok((ptr, false));
            }
            parent = Some(ptr);
            ptr = self.read_ptr(ptr, path.idx[level])?;
            level += 1;
        }
        let need = path.depth - level + 1;
        let spb = self.geo.sectors_per_block();
        let new_iblocks = (need as u32)
            .checked_mul(spb)
            .and_then(|n| inode.blocks.checked_add(n))
            .ok_or(FsError::FileTooBig)?;
        let prev_sibling = match parent {
            None if path.slot > 0 && path.slot <= N_DIRECT => inode.block[path.slot - 1] as u64,
            None => 0,
            Some(p) => match path.idx[level - 1] {
                0 => 0,
                i => self.read_ptr(p, i - 1)?,
            },
        };
        let goal = self.alloc_goal(ino, fb, parent, prev_sibling);
        let blocks = self.alloc_blocks(need, goal)?;
        let linked = self.link_new_blocks(inode, &path, level, parent, &blocks);
        if let Err(e) = linked {
            for &b in &blocks {
                let _ = self.free_block(b);
            }
            return Err(e);
        }
        inode.blocks = new_iblocks;
        let data = *blocks.last().ok_or(FsError::Invalid)?;
        self.last_alloc = Some((ino, fb, data));
        Ok((data, true))
    }

    fn link_new_blocks(
        &mut self,
        inode: &mut Inode,
        path: &BlockPath,
        level: usize,
        parent: Option<u64>,
        blocks: &[u64],
    ) -> Result<()> {
        // New indirect blocks are zeroed and point down the chain.
        for k in 0..blocks.len().saturating_sub(1) {
            let child = blocks[k + 1] as u32;
            let idx = path.idx[level + k];
            let z = self.cache.zeroed(blocks[k])?;
            wr32(z, idx * 4, child)?;
        }
        let first = *blocks.first().ok_or(FsError::Invalid)? as u32;
        match parent {
            None => *inode.block.get_mut(path.slot).ok_or(FsError::Corrupt)? = first,
            Some(p) => {
                let idx = path.idx[level - 1];
                let data = self.cache.get_mut(p)?;
                wr32(data, idx * 4, first)?;
            }
        }
        Ok(())
    }

    /// Free every block of the file from file block `from` on, including
    /// indirect blocks that no longer map anything. Updates `inode.block` and
    /// `inode.blocks`; the caller writes the inode.
    pub(crate) fn free_blocks_from(
        &mut self,
        ino: u32,
        inode: &mut Inode,
        from: u64,
    ) -> Result<()> {
        self.runs.forget(ino);
        let p = self.geo.ptrs;
        let spb = self.geo.sectors_per_block();
        let mut freed = 0u64;
        let mut result = Ok(());
        let first_direct = from.min(N_DIRECT as u64) as usize;
        for slot in inode.block.iter_mut().take(N_DIRECT).skip(first_direct) {
            let b = *slot as u64;
            if b != 0 {
                if let Err(e) = self.free_block(b) {
                    result = Err(e);
                    break;
                }
                *slot = 0;
                freed += 1;
            }
        }
        let trees = [
            (IND_BLOCK, 1u32, 12u64),
            (DIND_BLOCK, 2, 12 + p),
            (TIND_BLOCK, 3, 12 + p + p * p),
        ];
        for (slot, depth, base) in trees {
            if result.is_err() {
                break;
            }
            let top = inode.block[slot] as u64;
            let span = p.pow(depth);
            if top == 0 || from >= base + span {
                continue;
            }
            let rel = from.saturating_sub(base);
            if !self.valid_data_block(top) {
                log::error!("ext2: inode {ino}: indirect block {top} is invalid; dropping it");
                inode.block[slot] = 0;
                continue;
            }
            match self.free_subtree(ino, top, depth, rel, &mut freed) {
                Ok(empty) => {
                    if rel == 0 || empty {
                        self.free_block(top)?;
                        freed += 1;
                        inode.block[slot] = 0;
                    }
                }
                Err(e) => result = Err(e),
            }
        }
        let sectors = freed.saturating_mul(spb as u64);
        inode.blocks = inode
            .blocks
            .saturating_sub(u32::try_from(sectors).unwrap_or(u32::MAX));
        result
    }

    /// Free the part of the subtree under indirect block `blk` (covering
    /// `ptrs^depth` file blocks) from relative file block `rel` on. Returns
    /// whether `blk` maps nothing any more; the caller then frees `blk` itself
    /// (it always does when `rel` is 0).
    fn free_subtree(
        &mut self,
        ino: u32,
        blk: u64,
        depth: u32,
        rel: u64,
        freed: &mut u64,
    ) -> Result<bool> {
        let p = self.geo.ptrs;
        let mut ptrs: Vec<u32> = {
            let data = self.cache.get(blk)?;
            (0..p as usize)
                .map(|j| rd32(data, j * 4))
                .collect::<Result<_>>()?
        };
        let child_span = p.pow(depth - 1);
        let first = (rel / child_span) as usize;
        let mut changed = false;
        for (j, entry) in ptrs.iter_mut().enumerate().skip(first) {
            let c = *entry as u64;
            if c == 0 {
                continue;
            }
            let child_rel = if j == first {
                rel - j as u64 * child_span
            } else {
                0
            };
            if !self.valid_data_block(c) {
                log::error!(
                    "ext2: inode {ino}: block pointer {c} in {blk} is invalid; dropping it"
                );
                *entry = 0;
                changed = true;
                continue;
            }
            let mut child_empty = child_rel == 0;
            if depth > 1 {
                child_empty |= self.free_subtree(ino, c, depth - 1, child_rel, freed)?;
            }
            if child_empty {
                self.free_block(c)?;
                *freed += 1;
                *entry = 0;
                changed = true;
            }
        }
        if rel != 0 && changed {
            let data = self.cache.get_mut(blk)?;
            for (j, &v) in ptrs.iter().enumerate().skip(first) {
                wr32(data, j * 4, v)?;
            }
        }
        Ok(ptrs.iter().all(|&v| v == 0))
    }

    // ---- public data interface ----------------------------------------------

    /// Map file block `fb` of inode `ino` to a disk block (`None` = hole).
    /// With `alloc`, a hole is filled: the data block and any indirect blocks
    /// are allocated (near the previous block, in the inode's group) and the
    /// new data block's contents are undefined until the caller writes the
    /// whole block. The file size is not changed (see [`Ext2::set_size`]).
    pub fn bmap(&mut self, ino: u32, fb: u64, alloc: bool) -> Result<Option<u64>> {
        let mut inode = self.read_inode(ino)?;
        if inode.is_symlink() && self.is_fast_symlink(&inode) {
            return Err(FsError::Invalid);
        }
        if !alloc {
            return self.map_block(ino, &inode, fb);
        }
        let (b, new) = self.map_alloc(ino, &mut inode, fb)?;
        if new {
            self.write_inode(ino, &inode)?;
        }
        Ok(Some(b))
    }

    /// Map file blocks `fb..fb + count` in order, allocating holes when `alloc`, with one
    /// read of the inode and (if anything was allocated) one write of it: `each(file
    /// block, disk block or None for a hole)` is called for every block mapped. On an
    /// error (e.g. no space) the blocks mapped so far have been reported and stay
    /// allocated (the inode is written), and the error is returned. The page cache maps
    /// whole runs of pages this way instead of walking the inode for every block.
    pub fn map_range(
        &mut self,
        ino: u32,
        fb: u64,
        count: u64,
        alloc: bool,
        mut each: impl FnMut(u64, Option<u64>),
    ) -> Result<()> {
        let mut inode = self.read_inode(ino)?;
        if inode.is_symlink() && self.is_fast_symlink(&inode) {
            return Err(FsError::Invalid);
        }
        if !alloc {
            return self.map_existing(ino, &inode, fb, count, each);
        }
        let mut changed = false;
        let result = self.map_allocating(ino, &mut inode, fb, count, &mut changed, &mut each);
        if changed {
            self.write_inode(ino, &inode)?;
        }
        result
    }

    /// [`Ext2::map_range`] with allocation: blocks are mapped (and holes allocated) one
    /// at a time up to the first block of each last-level pointer block; the rest of
    /// that pointer block's blocks are read from it at once, and each run of holes there
    /// gets a run of contiguous blocks from one bitmap scan ([`Ext2::alloc_run`]) and
    /// its pointers written in one go. Sets `changed` when the inode needs writing.
    fn map_allocating(
        &mut self,
        ino: u32,
        inode: &mut Inode,
        fb: u64,
        count: u64,
        changed: &mut bool,
        each: &mut impl FnMut(u64, Option<u64>),
    ) -> Result<()> {
        self.runs.forget(ino);
        let end = fb.saturating_add(count);
        let spb = self.geo.sectors_per_block();
        let mut b = fb;
        while b < end {
            let (d, new) = self.map_alloc(ino, inode, b)?;
            *changed |= new;
            each(b, Some(d));
            b += 1;
            let path = self.block_path(b - 1)?;
            if path.depth == 0 {
                continue;
            }
            // The rest of this last-level pointer block (it exists now).
            let mut leaf = *inode.block.get(path.slot).ok_or(FsError::Corrupt)? as u64;
            for &index in path.idx.iter().take(path.depth - 1) {
                self.check_ptr(leaf, ino)?;
                leaf = self.read_ptr(leaf, index)?;
            }
            self.check_ptr(leaf, ino)?;
            let first = path.idx[path.depth - 1] + 1;
            let n = (end - b).min(self.geo.ptrs - first as u64) as usize;
            let ptrs: Vec<u32> = {
                let data = self.cache.get(leaf)?;
                (0..n)
                    .map(|i| rd32(data, (first + i) * 4))
                    .collect::<Result<_>>()?
            };
            let mut goal = d + 1;
            let mut i = 0;
            while i < n {
                let p = ptrs[i] as u64;
                if p != 0 {
                    self.check_ptr(p, ino)?;
                    each(b + i as u64, Some(p));
                    goal = p + 1;
                    i += 1;
                    continue;
                }
                let holes = ptrs[i..].iter().take_while(|&&q| q == 0).count() as u64;
                let (run, got) = self.alloc_run(goal, holes)?;
                let added = (got as u32)
                    .checked_mul(spb)
                    .and_then(|k| inode.blocks.checked_add(k));
                let Some(iblocks) = added else {
                    for x in run..run + got {
                        let _ = self.free_block(x);
                    }
                    return Err(FsError::FileTooBig);
                };
                {
                    let data = self.cache.get_mut(leaf)?;
                    for k in 0..got {
                        wr32(data, (first + i + k as usize) * 4, (run + k) as u32)?;
                    }
                }
                inode.blocks = iblocks;
                *changed = true;
                for k in 0..got {
                    each(b + i as u64 + k, Some(run + k));
                }
                self.last_alloc = Some((ino, b + i as u64 + got - 1, run + got - 1));
                goal = run + got;
                i += got as usize;
            }
            b += n as u64;
        }
        Ok(())
    }

    /// [`Ext2::map_block`] for `count` file blocks from `fb` on, in order, block by block
    /// ([`Ext2::map_runs`] expanded).
    fn map_existing(
        &mut self,
        ino: u32,
        inode: &Inode,
        fb: u64,
        count: u64,
        mut each: impl FnMut(u64, Option<u64>),
    ) -> Result<()> {
        let range = (fb, fb.saturating_add(count));
        self.runs_of(ino, inode, range, range, |first, disk, n| {
            for k in 0..n {
                each(first + k, disk.map(|d| d + k));
            }
        })
    }

    /// The blocks behind file blocks `[fb, fb + count)` of `ino`, without allocating, as
    /// runs: `each(first file block, first disk block or None for holes, blocks)` for
    /// each run of blocks contiguous on disk (or of holes), in order. Every run is
    /// checked to lie in the data area (FsError::Corrupt otherwise), once per run rather
    /// than per block. The mapped runs of the pointer blocks walked are remembered for the
    /// file (until its block tree changes), so mapping blocks of the same file again,
    /// as direct I/O does for each transfer, is a lookup.
    pub fn map_runs(
        &mut self,
        ino: u32,
        fb: u64,
        count: u64,
        mut each: impl FnMut(u64, Option<u64>, u64),
    ) -> Result<()> {
        let end = fb.saturating_add(count);
        let mut at = fb;
        let mut inode = None;
        while at < end {
            if let Some(r) = self.runs.lookup(ino, at) {
                let n = (r.first + r.len).min(end) - at;
                each(at, Some(r.disk + (at - r.first)), n);
                at += n;
                continue;
            }
            let file = match inode.take() {
                Some(i) => i,
                None => {
                    let i = self.read_inode(ino)?;
                    if i.is_symlink() && self.is_fast_symlink(&i) {
                        return Err(FsError::Invalid);
                    }
                    i
                }
            };
            // Not known: a window of blocks around `at` inside its pointer block (the
            // direct blocks, for the first ones), on to the end of the transfer if it
            // goes further; its runs are remembered unless there are many, and handed
            // on inside the range.
            let path = self.block_path(at)?;
            let (leaf_first, leaf_end) = match path.depth {
                0 => (0, N_DIRECT as u64),
                d => {
                    let first = at - path.idx[d - 1] as u64;
                    (first, first + self.geo.ptrs)
                }
            };
            let first = leaf_first + (at - leaf_first) / LEARN_BLOCKS * LEARN_BLOCKS;
            let span = (first, (first + LEARN_BLOCKS).max(end).min(leaf_end));
            let mut found: Vec<(u64, Option<u64>, u64)> = Vec::new();
            self.runs_of(ino, &file, span, (at, end), |f, d, n| found.push((f, d, n)))?;
            let keep = found.iter().filter(|r| r.1.is_some()).count() <= MAX_LEARNED_RUNS;
            for (f, d, n) in found {
                if let Some(disk) = d
                    && keep
                {
                    self.runs.remember(
                        ino,
                        Run {
                            first: f,
                            disk,
                            len: n,
                        },
                    );
                }
                let (from, to) = (f.max(at), (f + n).min(end));
                if from < to {
                    each(from, d.map(|d| d + (from - f)), to - from);
                }
            }
            at = span.1.min(end);
            inode = Some(file);
        }
        Ok(())
    }

    /// The runs of file blocks `[span.0, span.1)` of `inode` (already read), as
    /// [`Ext2::map_runs`] gives them; a run reaching outside the data area is an error
    /// if it meets `needed` (the blocks asked for), and is left out otherwise.
    fn runs_of(
        &mut self,
        ino: u32,
        inode: &Inode,
        (fb, end): (u64, u64),
        needed: (u64, u64),
        mut each: impl FnMut(u64, Option<u64>, u64),
    ) -> Result<()> {
        let mut b = fb;
        while b < end {
            let path = self.block_path(b)?;
            if path.depth == 0 {
                // The direct blocks: their pointers are in the inode.
                let n = (end - b).min((N_DIRECT - path.slot) as u64) as usize;
                let ptrs = inode.block[path.slot..path.slot + n]
                    .iter()
                    .map(|&p| p as u64);
                emit_runs(&self.geo, &self.groups, ino, b, ptrs, needed, &mut each)?;
                b += n as u64;
                continue;
            }
            // Down to the pointer block of the last level (0: a hole above it).
            let mut leaf = *inode.block.get(path.slot).ok_or(FsError::Corrupt)? as u64;
            for &index in path.idx.iter().take(path.depth - 1) {
                if leaf == 0 {
                    break;
                }
                self.check_ptr(leaf, ino)?;
                leaf = self.read_ptr(leaf, index)?;
            }
            let first = path.idx[path.depth - 1];
            let n = (end - b).min(self.geo.ptrs - first as u64) as usize;
            if leaf == 0 {
                each(b, None, n as u64);
                b += n as u64;
                continue;
            }
            self.check_ptr(leaf, ino)?;
            // The cache and the layout are separate fields: the pointers are read in
            // place while runs are checked against the layout.
            let (geo, groups) = (&self.geo, &self.groups);
            let data = self.cache.get(leaf)?;
            let ptrs = data
                .get(first * 4..(first + n) * 4)
                .ok_or(FsError::Corrupt)?
                .as_chunks::<4>()
                .0
                .iter()
                .map(|&p| u32::from_le_bytes(p) as u64);
            emit_runs(geo, groups, ino, b, ptrs, needed, &mut each)?;
            b += n as u64;
        }
        Ok(())
    }

    /// Map file block `fb` and count how many following file blocks (up to
    /// `max` in all) continue the same run: physically contiguous blocks
    /// after a mapped block, or more holes after a hole. Lets the page cache
    /// build one request for several blocks. Returns (first disk block or
    /// `None` for a hole, run length >= 1).
    pub fn bmap_run(&mut self, ino: u32, fb: u64, max: u64) -> Result<(Option<u64>, u64)> {
        let inode = self.read_inode(ino)?;
        if inode.is_symlink() && self.is_fast_symlink(&inode) {
            return Err(FsError::Invalid);
        }
        let first = self.map_block(ino, &inode, fb)?;
        let mut run = 1u64;
        while run < max.max(1) {
            let Some(next_fb) = fb.checked_add(run) else {
                break;
            };
            let next = match self.map_block(ino, &inode, next_fb) {
                Ok(n) => n,
                Err(_) => break,
            };
            let continues = match (first, next) {
                (None, None) => true,
                (Some(a), Some(b)) => b == a + run,
                _ => false,
            };
            if !continues {
                break;
            }
            run += 1;
        }
        Ok((first, run))
    }

    fn dev_read_blocks(&self, block: u64, buf: &mut [u8]) -> Result<()> {
        let sector = block
            .checked_mul(self.geo.sectors_per_block() as u64)
            .ok_or(FsError::Io)?;
        self.dev.read(sector, buf)
    }

    fn dev_write_blocks(&self, block: u64, buf: &[u8]) -> Result<()> {
        let sector = block
            .checked_mul(self.geo.sectors_per_block() as u64)
            .ok_or(FsError::Io)?;
        self.dev.write(sector, buf)
    }

    fn regular(&mut self, ino: u32) -> Result<Inode> {
        let inode = self.read_inode(ino)?;
        if inode.is_dir() {
            return Err(FsError::IsDir);
        }
        if !inode.is_reg() {
            return Err(FsError::Invalid);
        }
        Ok(inode)
    }

    /// Read from regular file `ino` at `offset`; returns the bytes read (0 at
    /// or past the end). Holes read as zeros.
    pub fn read_at(&mut self, ino: u32, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let inode = self.regular(ino)?;
        if offset >= inode.size {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(inode.size - offset) as usize;
        let bs = self.geo.block_size;
        let mut done = 0usize;
        let mut tmp = Vec::new();
        while done < n {
            let pos = offset + done as u64;
            let fb = pos / bs;
            let boff = (pos % bs) as usize;
            let chunk = (bs as usize - boff).min(n - done);
            let Some(b) = self.map_block(ino, &inode, fb)? else {
                buf[done..done + chunk].fill(0);
                done += chunk;
                continue;
            };
            if boff == 0 && chunk == bs as usize {
                // Gather a run of physically contiguous whole blocks.
                let mut run = 1u64;
                while run < MAX_RUN_BLOCKS && done + ((run + 1) * bs) as usize <= n {
                    match self.map_block(ino, &inode, fb + run)? {
                        Some(nb) if nb == b + run => run += 1,
                        _ => break,
                    }
                }
                let len = (run * bs) as usize;
                self.dev_read_blocks(b, &mut buf[done..done + len])?;
                done += len;
            } else {
                tmp.resize(bs as usize, 0);
                self.dev_read_blocks(b, &mut tmp)?;
                buf[done..done + chunk].copy_from_slice(&tmp[boff..boff + chunk]);
                done += chunk;
            }
        }
        Ok(n)
    }

    /// Zero the bytes of the block holding byte `size` from `size` to the end
    /// of that block (so a later extension reads zeros there).
    fn zero_tail(&mut self, ino: u32, inode: &Inode, size: u64) -> Result<()> {
        let bs = self.geo.block_size;
        let off = (size % bs) as usize;
        if off == 0 {
            return Ok(());
        }
        let Some(b) = self.map_block(ino, inode, size / bs)? else {
            return Ok(());
        };
        let mut tmp = vec![0u8; bs as usize];
        self.dev_read_blocks(b, &mut tmp)?;
        if tmp[off..].iter().any(|&x| x != 0) {
            tmp[off..].fill(0);
            self.dev_write_blocks(b, &tmp)?;
        }
        Ok(())
    }

    /// Check that `size` is allowed, setting `large_file` when needed.
    fn allow_size(&mut self, size: u64) -> Result<()> {
        if size > self.geo.max_file_size {
            return Err(FsError::FileTooBig);
        }
        if size > 0x7fff_ffff {
            if self.geo.rev == 0 {
                return Err(FsError::FileTooBig);
            }
            self.set_ro_compat(RO_COMPAT_LARGE_FILE)?;
        }
        Ok(())
    }

    /// Write `data` to regular file `ino` at `offset`, allocating blocks and
    /// extending the size. Returns the bytes written: fewer than asked only if
    /// the disk filled up (or failed) part-way; an error if nothing was written.
    pub fn write_at(&mut self, ino: u32, offset: u64, data: &[u8]) -> Result<usize> {
        self.check_rw()?;
        let mut inode = self.regular(ino)?;
        if data.is_empty() {
            return Ok(0);
        }
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(FsError::FileTooBig)?;
        self.allow_size(end)?;
        if offset > inode.size {
            self.zero_tail(ino, &inode, inode.size)?;
        }
        let bs = self.geo.block_size;
        let mut done = 0usize;
        let mut err = None;
        let mut tmp = Vec::new();
        while done < data.len() {
            let pos = offset + done as u64;
            let fb = pos / bs;
            let boff = (pos % bs) as usize;
            let chunk = (bs as usize - boff).min(data.len() - done);
            let (b, new) = match self.map_alloc(ino, &mut inode, fb) {
                Ok(x) => x,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            };
            let res = if chunk == bs as usize {
                self.dev_write_blocks(b, &data[done..done + chunk])
            } else {
                tmp.clear();
                tmp.resize(bs as usize, 0);
                let r = if new {
                    Ok(())
                } else {
                    self.dev_read_blocks(b, &mut tmp)
                };
                r.and_then(|()| {
                    tmp[boff..boff + chunk].copy_from_slice(&data[done..done + chunk]);
                    self.dev_write_blocks(b, &tmp)
                })
            };
            if let Err(e) = res {
                err = Some(e);
                break;
            }
            done += chunk;
        }
        let new_end = offset + done as u64;
        if new_end > inode.size {
            inode.size = new_end;
        }
        if err.is_some() {
            // Blocks this call allocated past what it managed to write go back.
            let keep = inode.size.div_ceil(bs);
            if let Err(e) = self.free_blocks_from(ino, &mut inode, keep) {
                log::error!("ext2: inode {ino}: could not roll back a failed write: {e}");
            }
        }
        if done > 0 {
            let now = self.now();
            inode.mtime = now;
            inode.ctime = now;
        }
        self.write_inode(ino, &inode)?;
        match err {
            Some(e) if done == 0 => Err(e),
            _ => Ok(done),
        }
    }

    /// Set the size of regular file `ino`: shrinking frees the blocks past the
    /// new end (indirect blocks included) and zeroes the tail of the last
    /// block; growing leaves a hole.
    pub fn truncate(&mut self, ino: u32, size: u64) -> Result<()> {
        self.check_rw()?;
        let mut inode = self.regular(ino)?;
        self.allow_size(size)?;
        let bs = self.geo.block_size;
        let mut result = Ok(());
        if size < inode.size {
            result = self.free_blocks_from(ino, &mut inode, size.div_ceil(bs));
            if result.is_ok() {
                result = self.zero_tail(ino, &inode, size);
            }
        } else if size > inode.size {
            result = self.zero_tail(ino, &inode, inode.size);
        }
        if result.is_ok() || size < inode.size {
            inode.size = size;
        }
        let now = self.now();
        inode.mtime = now;
        inode.ctime = now;
        self.write_inode(ino, &inode)?;
        result
    }

    /// Free the blocks of regular file `ino` past its size: blocks allocated for data
    /// that never came (a device-side copy into fresh blocks that failed). The size
    /// stays.
    pub fn free_past_size(&mut self, ino: u32) -> Result<()> {
        self.check_rw()?;
        let mut inode = self.regular(ino)?;
        let first = inode.size.div_ceil(self.geo.block_size);
        let result = self.free_blocks_from(ino, &mut inode, first);
        self.write_inode(ino, &inode)?;
        result
    }

    /// Record a new size for regular file `ino` whose blocks the page cache
    /// has written through [`Ext2::bmap`]. Growing only records the size;
    /// shrinking is [`Ext2::truncate`].
    pub fn set_size(&mut self, ino: u32, size: u64) -> Result<()> {
        self.check_rw()?;
        let mut inode = self.regular(ino)?;
        if size < inode.size {
            return self.truncate(ino, size);
        }
        if size == inode.size {
            return Ok(());
        }
        self.allow_size(size)?;
        inode.size = size;
        let now = self.now();
        inode.mtime = now;
        inode.ctime = now;
        self.write_inode(ino, &inode)
    }

    /// Whether a symlink keeps its target inside the inode.
    pub(crate) fn is_fast_symlink(&self, inode: &Inode) -> bool {
        let ea = if inode.file_acl != 0 {
            self.geo.sectors_per_block()
        } else {
            0
        };
        inode.blocks.saturating_sub(ea) == 0
    }

    /// Release the extended-attribute block of `inode` (drop a reference, free
    /// it with the last one).
    pub(crate) fn release_xattr_block(&mut self, inode: &mut Inode) -> Result<()> {
        let b = inode.file_acl as u64;
        if b == 0 {
            return Ok(());
        }
        inode.file_acl = 0;
        inode.blocks = inode.blocks.saturating_sub(self.geo.sectors_per_block());
        if !self.valid_data_block(b) {
            log::error!("ext2: invalid xattr block {b}");
            return Ok(());
        }
        let data = self.cache.get_mut(b)?;
        if rd32(data, 0)? != 0xEA02_0000 {
            log::error!("ext2: xattr block {b} has a bad magic number; leaving it");
            return Ok(());
        }
        let refs = rd32(data, 4)?;
        if refs > 1 {
            wr32(data, 4, refs - 1)?;
            Ok(())
        } else {
            self.free_block(b)
        }
    }

    /// Free everything an unlinked inode owns, and the inode itself.
    pub(crate) fn destroy_inode(&mut self, ino: u32, inode: &mut Inode) -> Result<()> {
        let is_dir = inode.is_dir();
        let mut result = Ok(());
        if !(inode.is_symlink() && self.is_fast_symlink(inode)) {
            result = self.free_blocks_from(ino, inode, 0);
        }
        if result.is_ok() {
            result = self.release_xattr_block(inode);
        }
        if result.is_ok() {
            inode.size = 0;
            inode.links = 0;
            // e2fsck reads a dtime below the inode count as an orphan-list link.
            inode.dtime = self.now().max(self.geo.inodes_count);
        }
        self.write_inode(ino, inode)?;
        result?;
        self.free_inode_bit(ino, is_dir)
    }
}

/// Hand the runs of the pointers `ptrs` (0: a hole) of file blocks `b` on of inode `ino`
/// to `each` ([`emit_run`] for each run of contiguous blocks, or of holes).
fn emit_runs(
    geo: &Geometry,
    groups: &[GroupDesc],
    ino: u32,
    b: u64,
    ptrs: impl Iterator<Item = u64>,
    needed: (u64, u64),
    each: &mut impl FnMut(u64, Option<u64>, u64),
) -> Result<()> {
    // The run being gathered: first file block, first disk block (0: holes), length.
    let mut run: Option<(u64, u64, u64)> = None;
    for (i, d) in ptrs.enumerate() {
        if let Some((_, start, len)) = &mut run {
            let continues = if *start == 0 {
                d == 0
            } else {
                d == *start + *len
            };
            if continues {
                *len += 1;
                continue;
            }
        }
        if let Some(done) = run.replace((b + i as u64, d, 1)) {
            emit_run(geo, groups, ino, done, needed, each)?;
        }
    }
    if let Some(done) = run {
        emit_run(geo, groups, ino, done, needed, each)?;
    }
    Ok(())
}

/// Hand `run` (first file block, first disk block or 0 for holes, blocks) of inode `ino`
/// to `each`, once it is known to lie in the data area of the file system laid out by
/// `geo` and `groups`. One that does not is an error if it meets the file blocks
/// `needed`, and is left out otherwise.
fn emit_run(
    geo: &Geometry,
    groups: &[GroupDesc],
    ino: u32,
    (first, disk, len): (u64, u64, u64),
    needed: (u64, u64),
    each: &mut impl FnMut(u64, Option<u64>, u64),
) -> Result<()> {
    if disk == 0 {
        each(first, None, len);
        return Ok(());
    }
    if data_run_ok(geo, groups, disk, len) {
        each(first, Some(disk), len);
        return Ok(());
    }
    // Only the part needed counts: a bad block beside it is left out with the rest.
    let (from, to) = (first.max(needed.0), (first + len).min(needed.1));
    if from >= to {
        return Ok(());
    }
    let at = disk + (from - first);
    if !data_run_ok(geo, groups, at, to - from) {
        log::error!("ext2: inode {ino}: blocks {disk}+{len} reach outside the data area");
        return Err(FsError::Corrupt);
    }
    each(from, Some(at), to - from);
    Ok(())
}
