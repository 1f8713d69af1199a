//! Block and inode allocation: bitmaps and free counts kept consistent.

use alloc::vec::Vec;

use super::layout::GroupDesc;
use super::{Ext2, Geometry};
use crate::error::{FsError, Result};

/// First clear bit in `[from, to)` of `bitmap`.
fn find_zero(bitmap: &[u8], from: u64, to: u64) -> Option<u64> {
    let mut bit = from;
    while bit < to {
        let byte = *bitmap.get((bit / 8) as usize)?;
        if bit.is_multiple_of(8) && byte == 0xff {
            bit += 8;
            continue;
        }
        if byte & (1 << (bit % 8)) == 0 {
            return Some(bit);
        }
        bit += 1;
    }
    None
}

fn test_bit(bitmap: &[u8], bit: u64) -> Result<bool> {
    let byte = bitmap.get((bit / 8) as usize).ok_or(FsError::Corrupt)?;
    Ok(byte & (1 << (bit % 8)) != 0)
}

fn set_bit(bitmap: &mut [u8], bit: u64, on: bool) -> Result<()> {
    let byte = bitmap.get_mut((bit / 8) as usize).ok_or(FsError::Corrupt)?;
    if on {
        *byte |= 1 << (bit % 8);
    } else {
        *byte &= !(1 << (bit % 8));
    }
    Ok(())
}

/// Whether no block of `[b, b + n)` lies outside the data area of the file system laid
/// out by `geo` and `groups`: past its ends, or on a superblock or descriptor copy (with
/// the reserved GDT blocks), a bitmap or an inode table. One check per block group the
/// run crosses. An empty run is fine.
pub(crate) fn data_run_ok(geo: &Geometry, groups: &[GroupDesc], b: u64, n: u64) -> bool {
    let Some(end) = b.checked_add(n) else {
        return false;
    };
    if n == 0 {
        return true;
    }
    if b < geo.first_data_block || end > geo.blocks_count {
        return false;
    }
    let mut at = b;
    while at < end {
        let g = (at - geo.first_data_block) / geo.blocks_per_group;
        let Ok(g) = u32::try_from(g) else {
            return false;
        };
        let Some(gd) = groups.get(g as usize) else {
            return false;
        };
        let (start, group_end) = geo.group_range(g);
        let upto = end.min(group_end);
        // `[at, upto)` lies in group `g`: does it meet one of its metadata ranges?
        let meets = |first: u64, len: u64| at < first.saturating_add(len) && first < upto;
        let fixed = 1 + geo.gdt_blocks + geo.reserved_gdt;
        if (geo.group_has_super(g) && meets(start, fixed))
            || meets(gd.block_bitmap as u64, 1)
            || meets(gd.inode_bitmap as u64, 1)
            || meets(gd.inode_table as u64, geo.itb_per_group)
        {
            return false;
        }
        at = upto;
    }
    true
}

impl Ext2 {
    fn group(&self, g: u32) -> Result<GroupDesc> {
        self.groups.get(g as usize).copied().ok_or(FsError::Corrupt)
    }

    fn group_mut(&mut self, g: u32) -> Result<&mut GroupDesc> {
        self.groups.get_mut(g as usize).ok_or(FsError::Corrupt)
    }

    /// Group of block `b` (which must be at or after the first data block).
    fn block_group(&self, b: u64) -> u32 {
        ((b - self.geo.first_data_block) / self.geo.blocks_per_group) as u32
    }

    /// Whether `b` holds fixed metadata: a superblock or group descriptor copy
    /// (with reserved GDT blocks), a bitmap, or an inode table.
    pub(crate) fn is_metadata(&self, b: u64) -> bool {
        if b < self.geo.first_data_block || b >= self.geo.blocks_count {
            return true;
        }
        let g = self.block_group(b);
        let (start, _) = self.geo.group_range(g);
        // The cheap comparison first: most blocks lie past where a backup would end.
        if b < start + 1 + self.geo.gdt_blocks + self.geo.reserved_gdt
            && self.geo.group_has_super(g)
        {
            return true;
        }
        let Some(gd) = self.groups.get(g as usize) else {
            return true;
        };
        let it = gd.inode_table as u64;
        b == gd.block_bitmap as u64
            || b == gd.inode_bitmap as u64
            || (b >= it && b < it + self.geo.itb_per_group)
    }

    /// Whether `b` may be a file's data, indirect, directory or xattr block.
    pub(crate) fn valid_data_block(&self, b: u64) -> bool {
        b >= self.geo.first_data_block && b < self.geo.blocks_count && !self.is_metadata(b)
    }

    /// Allocate one block, as close after `goal` as possible.
    pub(crate) fn alloc_block(&mut self, goal: u64) -> Result<u64> {
        self.check_rw()?;
        if self.free_blocks == 0 {
            return Err(FsError::NoSpace);
        }
        let geo = self.geo;
        let goal = if goal >= geo.first_data_block && goal < geo.blocks_count {
            goal
        } else {
            geo.first_data_block
        };
        let g0 = self.block_group(goal);
        for i in 0..=geo.group_count {
            let g = (g0 + i) % geo.group_count;
            let gd = self.group(g)?;
            if gd.free_blocks == 0 {
                continue;
            }
            let (start, end) = geo.group_range(g);
            let nbits = end - start;
            let mut from = if i == 0 { goal - start } else { 0 };
            let bitmap_blk = gd.block_bitmap as u64;
            loop {
                let found = {
                    let bm = self.cache.get(bitmap_blk)?;
                    find_zero(bm, from, nbits)
                };
                let Some(bit) = found else { break };
                let b = start + bit;
                if self.is_metadata(b) {
                    log::error!("ext2: block bitmap of group {g} marks metadata block {b} free");
                    from = bit + 1;
                    continue;
                }
                set_bit(self.cache.get_mut(bitmap_blk)?, bit, true)?;
                let gdm = self.group_mut(g)?;
                gdm.free_blocks = gdm.free_blocks.saturating_sub(1);
                self.free_blocks = self.free_blocks.saturating_sub(1);
                self.put_group(g)?;
                return Ok(b);
            }
        }
        log::warn!(
            "ext2: free block count says {} free but no bitmap has room",
            self.free_blocks
        );
        Err(FsError::NoSpace)
    }

    /// Allocate a run of up to `max` (>= 1) contiguous blocks at or after `goal` (the
    /// first free block found as [`Ext2::alloc_block`] finds it, and the free blocks
    /// right after it in its group, set together in a second update of the bitmap and
    /// group): two updates per run instead of one per block. Returns the first block and
    /// the run's length.
    pub(crate) fn alloc_run(&mut self, goal: u64, max: u64) -> Result<(u64, u64)> {
        let first = self.alloc_block(goal)?;
        let g = self.block_group(first);
        let (start, end) = self.geo.group_range(g);
        let bitmap_blk = self.group(g)?.block_bitmap as u64;
        let mut n = 1u64;
        {
            let bm = self.cache.get(bitmap_blk)?;
            while n < max && first + n < end && !test_bit(bm, first + n - start)? {
                n += 1;
            }
        }
        // A bitmap that marks metadata free is not trusted past it (as alloc_block).
        if let Some(k) = (1..n).find(|&k| self.is_metadata(first + k)) {
            n = k;
        }
        if n > 1 {
            let bm = self.cache.get_mut(bitmap_blk)?;
            for b in first + 1..first + n {
                set_bit(bm, b - start, true)?;
            }
            let gdm = self.group_mut(g)?;
            gdm.free_blocks = gdm.free_blocks.saturating_sub((n - 1) as _);
            self.free_blocks = self.free_blocks.saturating_sub(n - 1);
            self.put_group(g)?;
        }
        Ok((first, n))
    }

    /// Allocate `n` blocks (each after the previous when possible); on failure
    /// nothing stays allocated.
    pub(crate) fn alloc_blocks(&mut self, n: usize, goal: u64) -> Result<Vec<u64>> {
        let mut out = Vec::with_capacity(n);
        let mut goal = goal;
        for _ in 0..n {
            match self.alloc_block(goal) {
                Ok(b) => {
                    out.push(b);
                    goal = b + 1;
                }
                Err(e) => {
                    for &b in &out {
                        let _ = self.free_block(b);
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Free block `b` and drop it from the metadata cache. A block number that
    /// cannot be a data block, or a block already free, is logged and skipped.
    pub(crate) fn free_block(&mut self, b: u64) -> Result<()> {
        self.check_rw()?;
        if !self.valid_data_block(b) {
            log::error!("ext2: not freeing invalid block {b}");
            return Ok(());
        }
        self.cache.forget(b);
        let g = self.block_group(b);
        let gd = self.group(g)?;
        let (start, _) = self.geo.group_range(g);
        let bit = b - start;
        let bitmap_blk = gd.block_bitmap as u64;
        let bm = self.cache.get_mut(bitmap_blk)?;
        if !test_bit(bm, bit)? {
            log::error!("ext2: block {b} freed twice");
            return Ok(());
        }
        set_bit(bm, bit, false)?;
        let gdm = self.group_mut(g)?;
        gdm.free_blocks = gdm.free_blocks.saturating_add(1);
        self.free_blocks += 1;
        self.put_group(g)
    }

    /// Allocate an inode, preferring the group of `parent`.
    pub(crate) fn alloc_inode(&mut self, parent: u32, is_dir: bool) -> Result<u32> {
        self.check_rw()?;
        if self.free_inodes == 0 {
            return Err(FsError::NoSpace);
        }
        let geo = self.geo;
        let pg = parent.saturating_sub(1) / geo.inodes_per_group % geo.group_count;
        for i in 0..geo.group_count {
            let g = (pg + i) % geo.group_count;
            let gd = self.group(g)?;
            if gd.free_inodes == 0 {
                continue;
            }
            let first = if g == 0 {
                (geo.first_ino - 1) as u64
            } else {
                0
            };
            let bitmap_blk = gd.inode_bitmap as u64;
            let found = {
                let bm = self.cache.get(bitmap_blk)?;
                find_zero(bm, first, geo.inodes_per_group as u64)
            };
            let Some(bit) = found else { continue };
            set_bit(self.cache.get_mut(bitmap_blk)?, bit, true)?;
            let gdm = self.group_mut(g)?;
            gdm.free_inodes = gdm.free_inodes.saturating_sub(1);
            if is_dir {
                gdm.used_dirs = gdm.used_dirs.saturating_add(1);
            }
            self.free_inodes = self.free_inodes.saturating_sub(1);
            self.put_group(g)?;
            return Ok(g * geo.inodes_per_group + bit as u32 + 1);
        }
        log::warn!(
            "ext2: free inode count says {} free but no bitmap has room",
            self.free_inodes
        );
        Err(FsError::NoSpace)
    }

    /// Clear inode `ino` in its bitmap and fix the counts.
    pub(crate) fn free_inode_bit(&mut self, ino: u32, is_dir: bool) -> Result<()> {
        self.check_rw()?;
        if ino == 0 || ino > self.geo.inodes_count {
            return Err(FsError::Invalid);
        }
        let g = (ino - 1) / self.geo.inodes_per_group;
        let bit = ((ino - 1) % self.geo.inodes_per_group) as u64;
        let bitmap_blk = self.group(g)?.inode_bitmap as u64;
        let bm = self.cache.get_mut(bitmap_blk)?;
        if !test_bit(bm, bit)? {
            log::error!("ext2: inode {ino} freed twice");
            return Ok(());
        }
        set_bit(bm, bit, false)?;
        let gd = self.group_mut(g)?;
        gd.free_inodes = gd.free_inodes.saturating_add(1);
        if is_dir {
            gd.used_dirs = gd.used_dirs.saturating_sub(1);
        }
        self.free_inodes += 1;
        self.put_group(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layout of 1 KiB blocks, 5 groups of 64 blocks (the last one short), sparse
    /// superblocks, with each group's bitmaps and inode table somewhere in it.
    fn layout(seed: u64) -> (Geometry, Vec<GroupDesc>) {
        let geo = Geometry {
            reserved_gdt: 3,
            ..Geometry::for_tests(1 + 4 * 64 + 40, 64, 6)
        };
        let mut x = seed | 1;
        let mut next = |below: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % below
        };
        let groups = (0..geo.group_count)
            .map(|g| {
                let (start, end) = geo.group_range(g);
                let room = end - start - 10;
                GroupDesc {
                    block_bitmap: (start + 5 + next(room)) as u32,
                    inode_bitmap: (start + 5 + next(room)) as u32,
                    inode_table: (start + 5 + next(room.min(end - start - 12))) as u32,
                    ..GroupDesc::default()
                }
            })
            .collect();
        (geo, groups)
    }

    /// Block by block, written apart from the code under test.
    fn is_data(geo: &Geometry, groups: &[GroupDesc], b: u64) -> bool {
        if b < geo.first_data_block || b >= geo.blocks_count {
            return false;
        }
        let g = ((b - geo.first_data_block) / geo.blocks_per_group) as u32;
        let (start, _) = geo.group_range(g);
        let gd = groups[g as usize];
        let it = gd.inode_table as u64;
        let fixed = geo.group_has_super(g) && b < start + 1 + geo.gdt_blocks + geo.reserved_gdt;
        !(fixed
            || b == gd.block_bitmap as u64
            || b == gd.inode_bitmap as u64
            || (it..it + geo.itb_per_group).contains(&b))
    }

    #[test]
    fn a_run_is_data_exactly_when_each_of_its_blocks_is() {
        for seed in 1..40 {
            let (geo, groups) = layout(seed * 0x9e37_79b9);
            let end = geo.blocks_count + 3;
            for b in 0..end {
                let mut all = true;
                for n in 1..=end - b {
                    all &= is_data(&geo, &groups, b + n - 1);
                    assert_eq!(
                        data_run_ok(&geo, &groups, b, n),
                        all,
                        "seed {seed}: {b}+{n}"
                    );
                }
                assert!(data_run_ok(&geo, &groups, b, 0), "empty");
            }
            assert!(!data_run_ok(&geo, &groups, u64::MAX - 1, 4), "wraps");
        }
    }

    #[test]
    fn a_group_without_a_descriptor_holds_no_data() {
        let (geo, mut groups) = layout(7);
        groups.pop();
        let (start, end) = geo.group_range(4);
        assert!(!data_run_ok(&geo, &groups, start + 1, end - start - 1));
        assert!(!data_run_ok(&geo, &groups, end - 1, 1));
    }
}
