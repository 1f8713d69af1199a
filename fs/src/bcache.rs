//! A fixed-capacity cache of file-system *metadata* blocks (superblock-adjacent
//! tables, bitmaps, inode tables, indirect blocks, directory and symlink blocks).
//!
//! File data never goes through this cache: it goes straight between the
//! device and the caller's buffer (or, in the kernel, the page cache's frames).
//! A block that is freed is dropped from the cache ([`BlockCache::forget`]) so a
//! stale dirty copy can never overwrite the block's next user.
//!
//! Eviction is least-recently-used; a dirty victim is written back first. If
//! that write fails the block stays cached and dirty, the error is remembered
//! and reported by the next [`BlockCache::sync`], and another victim is tried
//! (the cache may then briefly exceed its capacity rather than lose data).

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use crate::blockdev::{BlockDev, SECTOR_SIZE};
use crate::error::{FsError, Result};

/// Counters of cache activity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups satisfied from the cache.
    pub hits: u64,
    /// Lookups that read the device.
    pub misses: u64,
    /// Dirty blocks written to the device.
    pub writebacks: u64,
    /// Blocks dropped to make room.
    pub evictions: u64,
}

struct Entry {
    data: Vec<u8>,
    dirty: bool,
    tick: u64,
}

/// The metadata block cache.
pub struct BlockCache {
    dev: Arc<dyn BlockDev>,
    block_size: usize,
    sectors_per_block: u64,
    capacity: usize,
    entries: BTreeMap<u64, Entry>,
    /// Recency clock: every use stamps its entry with the next tick; eviction takes the
    /// entry with the oldest stamp (found by a scan, only when the cache is full and a
    /// block must come in: far cheaper than keeping an ordered index on every hit).
    tick: u64,
    write_error: bool,
    stats: CacheStats,
}

impl BlockCache {
    /// A cache of at most `capacity` blocks (at least 8) of `block_size` bytes.
    pub fn new(dev: Arc<dyn BlockDev>, block_size: usize, capacity: usize) -> Self {
        let block_size = block_size.max(SECTOR_SIZE);
        BlockCache {
            dev,
            block_size,
            sectors_per_block: (block_size / SECTOR_SIZE) as u64,
            capacity: capacity.max(8),
            entries: BTreeMap::new(),
            tick: 0,
            write_error: false,
            stats: CacheStats::default(),
        }
    }

    /// The block size in bytes.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// The device under the cache.
    pub fn dev(&self) -> &Arc<dyn BlockDev> {
        &self.dev
    }

    /// Activity counters.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Number of cached blocks.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of dirty cached blocks.
    pub fn dirty_count(&self) -> usize {
        self.entries.values().filter(|e| e.dirty).count()
    }

    /// First sector of `block`.
    pub fn block_sector(&self, block: u64) -> Result<u64> {
        block.checked_mul(self.sectors_per_block).ok_or(FsError::Io)
    }

    fn touch(&mut self, block: u64) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(e) = self.entries.get_mut(&block) {
            e.tick = tick;
        }
    }

    fn write_entry(&mut self, block: u64) -> Result<()> {
        let sector = self.block_sector(block)?;
        let Some(e) = self.entries.get_mut(&block) else {
            return Ok(());
        };
        if !e.dirty {
            return Ok(());
        }
        match self.dev.write(sector, &e.data) {
            Ok(()) => {
                e.dirty = false;
                self.stats.writebacks += 1;
                Ok(())
            }
            Err(err) => {
                log::error!("fs: bcache: writeback of block {block} failed: {err}");
                self.write_error = true;
                Err(err)
            }
        }
    }

    fn make_room(&mut self) {
        // Blocks whose write-back failed this time stay (dirty) and are passed over.
        let mut failed: Vec<u64> = Vec::new();
        while self.entries.len() >= self.capacity {
            let victim = self
                .entries
                .iter()
                .filter(|(b, _)| !failed.contains(b))
                .min_by_key(|(_, e)| e.tick)
                .map(|(&b, _)| b);
            let Some(block) = victim else {
                return; // every block is dirty and failing: exceed the capacity
            };
            if self.write_entry(block).is_err() {
                failed.push(block);
                continue;
            }
            if self.entries.remove(&block).is_some() {
                self.stats.evictions += 1;
            }
        }
    }

    fn insert(&mut self, block: u64, data: Vec<u8>, dirty: bool) {
        self.make_room();
        self.tick += 1;
        let tick = self.tick;
        self.entries.insert(block, Entry { data, dirty, tick });
    }

    fn load(&mut self, block: u64) -> Result<()> {
        if self.entries.contains_key(&block) {
            self.stats.hits += 1;
            self.touch(block);
            return Ok(());
        }
        self.stats.misses += 1;
        let sector = self.block_sector(block)?;
        let mut data = vec![0u8; self.block_size];
        self.dev.read(sector, &mut data)?;
        self.insert(block, data, false);
        Ok(())
    }

    /// The contents of `block`, read from the device on a miss.
    pub fn get(&mut self, block: u64) -> Result<&[u8]> {
        self.load(block)?;
        self.entries
            .get(&block)
            .map(|e| e.data.as_slice())
            .ok_or(FsError::Io)
    }

    /// The contents of `block` for modification; the block becomes dirty.
    pub fn get_mut(&mut self, block: u64) -> Result<&mut [u8]> {
        self.load(block)?;
        let e = self.entries.get_mut(&block).ok_or(FsError::Io)?;
        e.dirty = true;
        Ok(e.data.as_mut_slice())
    }

    /// A freshly allocated block: zero-filled and dirty, without reading the device.
    pub fn zeroed(&mut self, block: u64) -> Result<&mut [u8]> {
        match self.entries.get_mut(&block) {
            Some(e) => {
                e.data.fill(0);
                e.dirty = true;
                self.touch(block);
            }
            None => {
                let data = vec![0u8; self.block_size];
                self.insert(block, data, true);
            }
        }
        let e = self.entries.get_mut(&block).ok_or(FsError::Io)?;
        Ok(e.data.as_mut_slice())
    }

    /// Drop `block` without writing it back (it was freed).
    pub fn forget(&mut self, block: u64) {
        self.entries.remove(&block);
    }

    /// Drop every clean block (dirty ones stay).
    pub fn drop_clean(&mut self) {
        let clean: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.dirty)
            .map(|(b, _)| *b)
            .collect();
        for b in clean {
            self.forget(b);
        }
    }

    /// Write back one block if it is cached and dirty.
    pub fn write_block(&mut self, block: u64) -> Result<()> {
        self.write_entry(block)
    }

    /// Write every dirty block in ascending block order, without flushing.
    /// Returns the first error, after trying every block.
    pub fn write_dirty(&mut self) -> Result<()> {
        let dirty: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.dirty)
            .map(|(b, _)| *b)
            .collect();
        let mut result = Ok(());
        for b in dirty {
            if let Err(e) = self.write_entry(b)
                && result.is_ok()
            {
                result = Err(e);
            }
        }
        result
    }

    /// Write every dirty block in block order, then flush the device. Reports
    /// (and clears) an error remembered from an earlier failed eviction.
    pub fn sync(&mut self) -> Result<()> {
        let mut result = self.write_dirty();
        if self.write_error {
            self.write_error = false;
            if result.is_ok() {
                result = Err(FsError::Io);
            }
        }
        let flushed = self.dev.flush();
        result.and(flushed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::{FaultDev, MemDev};

    #[test]
    fn lru_eviction_writes_back_dirty_blocks() {
        let mem = Arc::new(MemDev::new(vec![0u8; 64 * 1024]));
        let mut c = BlockCache::new(mem.clone(), 1024, 8);
        for b in 0..8u64 {
            c.get_mut(b).unwrap()[0] = b as u8 + 1;
        }
        assert_eq!(c.len(), 8);
        // Touch block 0 so block 1 is the LRU victim.
        c.get(0).unwrap();
        c.get(20).unwrap();
        assert_eq!(c.len(), 8);
        assert_eq!(c.stats().evictions, 1);
        assert_eq!(mem.contents()[1024], 2);
        assert_eq!(mem.contents()[0], 0, "block 0 still cached, not written");
        c.sync().unwrap();
        assert_eq!(mem.contents()[0], 1);
        assert_eq!(c.dirty_count(), 0);
    }

    #[test]
    fn forget_discards_dirty_data() {
        let mem = Arc::new(MemDev::new(vec![0u8; 16 * 1024]));
        let mut c = BlockCache::new(mem.clone(), 1024, 8);
        c.zeroed(3).unwrap()[5] = 9;
        c.forget(3);
        c.sync().unwrap();
        assert_eq!(mem.contents()[3 * 1024 + 5], 0);
    }

    #[test]
    fn failed_eviction_is_reported_by_sync_and_keeps_data() {
        let mem = Arc::new(MemDev::new(vec![0u8; 64 * 1024]));
        let fault = Arc::new(FaultDev::new(mem.clone()));
        let mut c = BlockCache::new(fault.clone(), 1024, 8);
        c.get_mut(0).unwrap()[0] = 7;
        fault.fail_write(0);
        for b in 1..10u64 {
            c.get(b).unwrap();
        }
        assert!(c.sync().is_err());
        fault.heal();
        c.sync().unwrap();
        assert_eq!(mem.contents()[0], 7);
    }

    #[test]
    fn read_errors_are_values() {
        let mem = Arc::new(MemDev::new(vec![0u8; 8 * 1024]));
        let mut c = BlockCache::new(mem, 1024, 8);
        assert_eq!(c.get(100).err(), Some(FsError::Io));
        assert_eq!(c.get(u64::MAX).err(), Some(FsError::Io));
    }
}
