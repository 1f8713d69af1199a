//! Synchronous sector I/O used for file-system metadata (and, until the page
//! cache takes over, for file data in `read_at`/`write_at`).
//!
//! The kernel implements [`BlockDev`] over its block layer; host tests implement
//! it over a file. [`MemDev`] keeps an image in memory (fuzzing, unit tests) and
//! [`FaultDev`] wraps any device to inject I/O errors.

use alloc::collections::BTreeSet;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use crate::error::{FsError, Result};

/// Size of one sector in bytes. Every buffer passed to a [`BlockDev`] is a
/// whole number of sectors.
pub const SECTOR_SIZE: usize = 512;

/// A block device addressed in 512-byte sectors.
///
/// Buffers are byte slices whose length is a multiple of [`SECTOR_SIZE`]; a
/// request that reaches past [`BlockDev::sector_count`] must fail with
/// [`FsError::Io`]. Implementations use interior mutability.
pub trait BlockDev: Send + Sync {
    /// Number of sectors on the device.
    fn sector_count(&self) -> u64;
    /// Read `buf.len() / 512` sectors starting at `sector`.
    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<()>;
    /// Write `buf.len() / 512` sectors starting at `sector`.
    fn write(&self, sector: u64, buf: &[u8]) -> Result<()>;
    /// Make earlier writes durable.
    fn flush(&self) -> Result<()>;
}

/// Checks a request against the device size; returns the byte range.
fn byte_range(sector: u64, len: usize, sectors: u64) -> Result<(usize, usize)> {
    if !len.is_multiple_of(SECTOR_SIZE) {
        return Err(FsError::Invalid);
    }
    let count = (len / SECTOR_SIZE) as u64;
    let end = sector.checked_add(count).ok_or(FsError::Io)?;
    if end > sectors {
        return Err(FsError::Io);
    }
    let start = usize::try_from(sector.checked_mul(SECTOR_SIZE as u64).ok_or(FsError::Io)?)
        .map_err(|_| FsError::Io)?;
    let stop = start.checked_add(len).ok_or(FsError::Io)?;
    Ok((start, stop))
}

/// A device held in memory.
pub struct MemDev {
    data: Mutex<Vec<u8>>,
    sectors: u64,
}

impl MemDev {
    /// A device over `data`; a trailing partial sector is ignored.
    pub fn new(data: Vec<u8>) -> Self {
        let sectors = (data.len() / SECTOR_SIZE) as u64;
        MemDev {
            data: Mutex::new(data),
            sectors,
        }
    }

    /// A copy of the current contents.
    pub fn contents(&self) -> Vec<u8> {
        self.data.lock().clone()
    }
}

impl BlockDev for MemDev {
    fn sector_count(&self) -> u64 {
        self.sectors
    }

    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<()> {
        let (a, b) = byte_range(sector, buf.len(), self.sectors)?;
        let data = self.data.lock();
        buf.copy_from_slice(data.get(a..b).ok_or(FsError::Io)?);
        Ok(())
    }

    fn write(&self, sector: u64, buf: &[u8]) -> Result<()> {
        let (a, b) = byte_range(sector, buf.len(), self.sectors)?;
        let mut data = self.data.lock();
        data.get_mut(a..b).ok_or(FsError::Io)?.copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

/// Wraps a device and fails chosen requests with [`FsError::Io`].
///
/// A request fails when it touches a sector in the read (or write) fail set,
/// when all reads (writes) are set to fail, or when the countdown of allowed
/// writes has run out.
pub struct FaultDev {
    inner: Arc<dyn BlockDev>,
    fail_read_sectors: Mutex<BTreeSet<u64>>,
    fail_write_sectors: Mutex<BTreeSet<u64>>,
    /// Remaining successful reads before every read fails (`u64::MAX` = never).
    reads_left: AtomicU64,
    /// Remaining successful writes before every write fails (`u64::MAX` = never).
    writes_left: AtomicU64,
    fail_flush: Mutex<bool>,
    /// Number of requests that were failed on purpose.
    pub injected: AtomicU64,
}

impl FaultDev {
    /// A wrapper that fails nothing until told to.
    pub fn new(inner: Arc<dyn BlockDev>) -> Self {
        FaultDev {
            inner,
            fail_read_sectors: Mutex::new(BTreeSet::new()),
            fail_write_sectors: Mutex::new(BTreeSet::new()),
            reads_left: AtomicU64::new(u64::MAX),
            writes_left: AtomicU64::new(u64::MAX),
            fail_flush: Mutex::new(false),
            injected: AtomicU64::new(0),
        }
    }

    /// Fail every read touching `sector`.
    pub fn fail_read(&self, sector: u64) {
        self.fail_read_sectors.lock().insert(sector);
    }

    /// Fail every write touching `sector`.
    pub fn fail_write(&self, sector: u64) {
        self.fail_write_sectors.lock().insert(sector);
    }

    /// Allow `n` more reads, then fail all (`u64::MAX` = never fail).
    pub fn fail_reads_after(&self, n: u64) {
        self.reads_left.store(n, Ordering::SeqCst);
    }

    /// Allow `n` more writes, then fail all (`u64::MAX` = never fail).
    pub fn fail_writes_after(&self, n: u64) {
        self.writes_left.store(n, Ordering::SeqCst);
    }

    /// Make flushes fail (or succeed again).
    pub fn set_fail_flush(&self, fail: bool) {
        *self.fail_flush.lock() = fail;
    }

    /// Stop injecting any fault.
    pub fn heal(&self) {
        self.fail_read_sectors.lock().clear();
        self.fail_write_sectors.lock().clear();
        self.reads_left.store(u64::MAX, Ordering::SeqCst);
        self.writes_left.store(u64::MAX, Ordering::SeqCst);
        *self.fail_flush.lock() = false;
    }

    fn hits(set: &Mutex<BTreeSet<u64>>, sector: u64, len: usize) -> bool {
        let end = sector.saturating_add((len / SECTOR_SIZE) as u64);
        set.lock().range(sector..end).next().is_some()
    }

    fn countdown(counter: &AtomicU64) -> bool {
        let v = counter.load(Ordering::SeqCst);
        if v == u64::MAX {
            return false;
        }
        if v == 0 {
            return true;
        }
        counter.store(v - 1, Ordering::SeqCst);
        false
    }

    fn inject(&self) -> Result<()> {
        self.injected.fetch_add(1, Ordering::SeqCst);
        Err(FsError::Io)
    }
}

impl BlockDev for FaultDev {
    fn sector_count(&self) -> u64 {
        self.inner.sector_count()
    }

    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<()> {
        if Self::hits(&self.fail_read_sectors, sector, buf.len())
            || Self::countdown(&self.reads_left)
        {
            return self.inject();
        }
        self.inner.read(sector, buf)
    }

    fn write(&self, sector: u64, buf: &[u8]) -> Result<()> {
        if Self::hits(&self.fail_write_sectors, sector, buf.len())
            || Self::countdown(&self.writes_left)
        {
            return self.inject();
        }
        self.inner.write(sector, buf)
    }

    fn flush(&self) -> Result<()> {
        if *self.fail_flush.lock() {
            return self.inject();
        }
        self.inner.flush()
    }
}
