//! Requests, segments, errors and validation.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::stats;

/// The logical block size every request is expressed in.
pub const SECTOR_SIZE: usize = 512;

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Device to memory.
    Read,
    /// Memory to device.
    Write,
    /// Make previously completed writes durable (no data, no sector).
    Flush,
    /// Copy the request's source ranges ([`Request::ranges`]), one after the other, to
    /// the sectors from `sector` on, inside the device (no data segments, no memory
    /// touched: the NVMe Copy command). Only devices with [`DeviceInfo::copy`] limits.
    Copy,
    /// Tell the device the sectors of [`Request::ranges`] hold nothing worth keeping
    /// (NVMe Dataset Management, deallocate; TRIM): they may read back as zeros or as
    /// anything. No data segments; `sector` is ignored. Only devices with
    /// [`DeviceInfo::discard`].
    Discard,
}

/// A range of sectors: `sectors` sectors from `sector` (a copy's source, a discard).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectorRange {
    pub sector: u64,
    pub sectors: u32,
}

/// What one copy request may carry (from NVMe's MSRC, MSSRL and MCL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyLimits {
    /// Source ranges in one request.
    pub max_ranges: usize,
    /// Sectors in one source range.
    pub max_range_sectors: u32,
    /// Sectors in one request, all ranges together.
    pub max_sectors: u64,
}

/// A physically contiguous piece of a request's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Physical address (a frame address plus an offset).
    pub phys: u64,
    /// Length in bytes.
    pub len: u32,
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// The range reaches past the end of the device.
    OutOfRange,
    /// A read or write of zero bytes.
    ZeroLength,
    /// A segment's address or length is not a multiple of [`SECTOR_SIZE`].
    Misaligned,
    /// More segments, or more bytes, than the device takes in one request.
    TooLarge,
    /// A write or flush to a read-only device.
    ReadOnly,
    /// The device has no such operation (e.g. flush without a volatile cache).
    Unsupported,
    /// The device reported an error (media, ABRT, injected EIO...).
    Io,
    /// The device did not answer in time and was reset.
    Timeout,
}

impl BlockError {
    /// The device does not take a request of this shape (an operation it lacks, over its
    /// limits, misaligned for it): nothing was done, and another way may work (a copy
    /// through the page cache).
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            BlockError::Unsupported | BlockError::TooLarge | BlockError::Misaligned
        )
    }

    /// The Linux errno this error is reported as to user programs.
    pub fn errno(self) -> i32 {
        match self {
            BlockError::OutOfRange | BlockError::ZeroLength | BlockError::Misaligned => 22, // EINVAL
            BlockError::TooLarge => 22,
            BlockError::ReadOnly => 30,                // EROFS
            BlockError::Unsupported => 95,             // EOPNOTSUPP
            BlockError::Io | BlockError::Timeout => 5, // EIO
        }
    }
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockError::OutOfRange => "request beyond the end of the device",
            BlockError::ZeroLength => "zero-length request",
            BlockError::Misaligned => "segment not aligned to 512 bytes",
            BlockError::TooLarge => "request too large for the device",
            BlockError::ReadOnly => "device is read-only",
            BlockError::Unsupported => "operation not supported by the device",
            BlockError::Io => "I/O error reported by the device",
            BlockError::Timeout => "device timed out",
        })
    }
}

/// What a finished request reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// Bytes transferred, or the error.
    pub result: Result<u64, BlockError>,
}

/// Called once when the request finishes. It owns whatever keeps the buffers alive.
pub type Callback = Box<dyn FnOnce(Completion) + Send>;

/// One block request.
pub struct Request {
    pub op: Op,
    /// First sector (ignored for flush).
    pub sector: u64,
    pub segments: Vec<Segment>,
    /// A copy's source ranges, a discard's ranges (empty for other operations).
    pub ranges: Vec<SectorRange>,
    on_complete: Option<Callback>,
    /// What keeps the segments' memory alive (the frame references or pins of their
    /// frames): it belongs to the request until the device is done, and is dropped right
    /// after the completion ran (or with a request that was never submitted).
    buffers: Option<Box<dyn Send>>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("op", &self.op)
            .field("sector", &self.sector)
            .field("segments", &self.segments)
            .field("ranges", &self.ranges)
            .finish()
    }
}

impl Request {
    /// A request that calls `on_complete` when done.
    pub fn new(op: Op, sector: u64, segments: Vec<Segment>, on_complete: Callback) -> Request {
        Request {
            op,
            sector,
            segments,
            ranges: Vec::new(),
            on_complete: Some(on_complete),
            buffers: None,
        }
    }

    /// A discard of `ranges` (see [`Op::Discard`]).
    pub fn discard(ranges: Vec<SectorRange>, on_complete: Callback) -> Request {
        Request {
            ranges,
            ..Request::new(Op::Discard, 0, Vec::new(), on_complete)
        }
    }

    /// A copy of `sources`, in order, to the sectors from `to` on (see [`Op::Copy`]).
    pub fn copy(to: u64, sources: Vec<SectorRange>, on_complete: Callback) -> Request {
        Request {
            ranges: sources,
            ..Request::new(Op::Copy, to, Vec::new(), on_complete)
        }
    }

    /// The request owns `buffers` (whatever keeps its segments' frames allocated: frame
    /// references, pins) until it completes, as a buffer handed to a device belongs to it
    /// until the completion hands it back.
    pub fn owning(mut self, buffers: impl Send + 'static) -> Request {
        self.buffers = Some(Box::new(buffers));
        self
    }

    /// Total bytes of all segments.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len as u64).sum()
    }

    /// Finish the request: count it at the block layer, then run its completion. Drivers
    /// call this exactly once per request, when the device is done with its buffers.
    pub fn complete(mut self, result: Result<u64, BlockError>) {
        stats::record(self.op, &result);
        if let Some(cb) = self.on_complete.take() {
            cb(Completion { result });
        }
        // The device is done with the memory: let go of it, after the completion.
        drop(self.buffers.take());
    }
}

/// Static facts about a device.
#[derive(Clone, Debug, Default)]
pub struct DeviceInfo {
    /// `vda`, `sdb`...
    pub name: String,
    /// Capacity in 512-byte sectors.
    pub sectors: u64,
    pub read_only: bool,
    /// The device has a volatile write cache that flush empties.
    pub flush: bool,
    pub model: String,
    pub serial: String,
    /// What was negotiated or found, for the boot log.
    pub features: String,
    /// Requests the hardware can hold at once.
    pub queue_depth: usize,
    /// Segments in one request.
    pub max_segments: usize,
    /// Bytes in one request.
    pub max_bytes: u64,
    /// The device copies inside itself ([`Op::Copy`]), within these limits.
    pub copy: Option<CopyLimits>,
    /// The device takes discards ([`Op::Discard`]) of up to this many ranges of at most
    /// `u32::MAX` sectors each.
    pub discard: Option<usize>,
}

/// Check `req` against `info`; returns the request's byte count. Every driver calls this
/// before touching hardware.
pub fn validate(info: &DeviceInfo, req: &Request) -> Result<u64, BlockError> {
    match req.op {
        Op::Flush => {
            if info.read_only {
                return Err(BlockError::ReadOnly);
            }
            if !req.segments.is_empty() {
                return Err(BlockError::TooLarge);
            }
            Ok(0)
        }
        Op::Copy => validate_copy(info, req),
        Op::Discard => validate_discard(info, req),
        Op::Read | Op::Write => {
            if req.op == Op::Write && info.read_only {
                return Err(BlockError::ReadOnly);
            }
            if req.segments.len() > info.max_segments {
                return Err(BlockError::TooLarge);
            }
            let mut total: u64 = 0;
            for s in &req.segments {
                if !(s.len as usize).is_multiple_of(SECTOR_SIZE)
                    || !(s.phys as usize).is_multiple_of(SECTOR_SIZE)
                {
                    return Err(BlockError::Misaligned);
                }
                total += s.len as u64;
            }
            if total == 0 {
                return Err(BlockError::ZeroLength);
            }
            if total > info.max_bytes {
                return Err(BlockError::TooLarge);
            }
            let sectors = total / SECTOR_SIZE as u64;
            match req.sector.checked_add(sectors) {
                Some(end) if end <= info.sectors => Ok(total),
                _ => Err(BlockError::OutOfRange),
            }
        }
    }
}

/// [`validate`] for a copy: the device copies, is writable, and the request is within
/// its limits and its capacity at both ends. The bytes to copy.
fn validate_copy(info: &DeviceInfo, req: &Request) -> Result<u64, BlockError> {
    let limits = info.copy.ok_or(BlockError::Unsupported)?;
    let total = ranges_total(info, req, limits.max_ranges, limits.max_range_sectors)?;
    if total > limits.max_sectors {
        return Err(BlockError::TooLarge);
    }
    match req.sector.checked_add(total) {
        Some(end) if end <= info.sectors => Ok(total * SECTOR_SIZE as u64),
        _ => Err(BlockError::OutOfRange),
    }
}

/// [`validate`] for a discard: the device discards, is writable, and every range is
/// non-empty and on the device. The bytes discarded.
fn validate_discard(info: &DeviceInfo, req: &Request) -> Result<u64, BlockError> {
    let max_ranges = info.discard.ok_or(BlockError::Unsupported)?;
    let total = ranges_total(info, req, max_ranges, u32::MAX)?;
    Ok(total * SECTOR_SIZE as u64)
}

/// The checks copies and discards share: a writable device, no data segments, 1 to
/// `max_ranges` ranges of 1 to `max_range` sectors each, all on the device. The sectors
/// of all ranges.
fn ranges_total(
    info: &DeviceInfo,
    req: &Request,
    max_ranges: usize,
    max_range: u32,
) -> Result<u64, BlockError> {
    if info.read_only {
        return Err(BlockError::ReadOnly);
    }
    if !req.segments.is_empty() || req.ranges.len() > max_ranges {
        return Err(BlockError::TooLarge);
    }
    if req.ranges.is_empty() {
        return Err(BlockError::ZeroLength);
    }
    let mut total: u64 = 0;
    for r in &req.ranges {
        if r.sectors == 0 {
            return Err(BlockError::ZeroLength);
        }
        if r.sectors > max_range {
            return Err(BlockError::TooLarge);
        }
        match r.sector.checked_add(r.sectors.into()) {
            Some(end) if end <= info.sectors => total += u64::from(r.sectors),
            _ => return Err(BlockError::OutOfRange),
        }
    }
    Ok(total)
}
