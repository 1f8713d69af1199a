//! The block request model (DESIGN.md "Block layer").
//!
//! A request is an operation, a start sector and a scatter-gather list of *physical*
//! segments. Drivers put each segment in its own descriptor (virtqueue descriptor, AHCI
//! PRD entry), so page-cache frames and pinned user frames are DMA targets as they are.
//! Requests complete asynchronously (by interrupt); the completion callback owns whatever
//! keeps the buffers alive (frame references, pins), so nothing can free or reuse them
//! before the device is done. [`sync_io`] waits for one request.

pub mod copy;
pub mod pattern;
mod request;
pub mod stats;

pub use request::{
    BlockError, Completion, CopyLimits, DeviceInfo, Op, Request, SECTOR_SIZE, SectorRange, Segment,
    validate,
};

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use spin::Mutex;

/// A block device: a driver instance for one disk.
pub trait BlockDevice: Send + Sync {
    /// Name, capacity, features.
    fn info(&self) -> &DeviceInfo;

    /// Queue `req`. Returns an error (and drops the request without calling its
    /// completion) if the request is invalid for this device; otherwise the completion
    /// runs exactly once, later, from [`BlockDevice::handle_interrupt`] (or from this call
    /// if the device finishes at once). Requests beyond the device's queue depth wait in
    /// the driver's software queue.
    fn submit(&self, req: Request) -> Result<(), BlockError>;

    /// Queue several requests at once, telling the device about them once (a plugged
    /// batch, as Linux's `blk_plug`). A request the device refuses completes with the
    /// error. The default submits them one by one.
    fn submit_many(&self, reqs: Vec<Request>) {
        for r in reqs {
            if let Err(e) = self.submit(r) {
                log::error!("block: a request of a batch was refused: {e}");
            }
        }
    }

    /// Reap finished requests and start queued ones. Called from the device's interrupt
    /// handler, and safe to call at any time.
    fn handle_interrupt(&self);

    /// Requests handed to the hardware and not yet completed (not counting those still
    /// waiting in the driver's software queue).
    fn in_flight(&self) -> usize;

    /// The watchdog, called about once a second with a monotonic clock: when requests
    /// are outstanding and none has completed for [`REQUEST_TIMEOUT_NS`], log them
    /// (sector, slot or descriptor, state), reset the device or port so it lets go of
    /// their buffers, and complete them with [`BlockError::Timeout`] (EIO) so their
    /// waiters wake. Drivers without a way to do that keep the default, which does
    /// nothing.
    fn check_timeouts(&self, _now_ns: u64) {}

    /// The machine is about to turn off (after the final sync): tell the device, if it
    /// wants to know (an NVMe controller's shutdown notification). The default does
    /// nothing.
    fn shutdown(&self) {}
}

/// How long requests may be outstanding without any completing before the watchdog
/// resets the device.
pub const REQUEST_TIMEOUT_NS: u64 = 30_000_000_000;

/// How a synchronous caller waits: `wait_until(cond)` returns once `cond()` is true,
/// sleeping (e.g. halting until the next interrupt) in between. The kernel supplies it.
pub trait Waiter {
    /// Block until `cond` holds.
    fn wait_until(&self, cond: &dyn Fn() -> bool);
}

/// Submit one request and wait for it. Returns the bytes transferred.
pub fn sync_io(
    dev: &dyn BlockDevice,
    waiter: &dyn Waiter,
    op: Op,
    sector: u64,
    segments: Vec<Segment>,
) -> Result<u64, BlockError> {
    sync_io_owning(dev, waiter, op, sector, segments, ())
}

/// [`sync_io`] for a request that owns `buffers` (what keeps its segments' frames
/// alive) until its completion has run.
pub fn sync_io_owning(
    dev: &dyn BlockDevice,
    waiter: &dyn Waiter,
    op: Op,
    sector: u64,
    segments: Vec<Segment>,
    buffers: impl Send + 'static,
) -> Result<u64, BlockError> {
    let slot: Arc<Mutex<Option<Completion>>> = Arc::new(Mutex::new(None));
    let done = slot.clone();
    dev.submit(
        Request::new(
            op,
            sector,
            segments,
            Box::new(move |c| *done.lock() = Some(c)),
        )
        .owning(buffers),
    )?;
    waiter.wait_until(&|| slot.lock().is_some());
    let completion = slot.lock().take();
    match completion {
        Some(c) => c.result,
        None => Err(BlockError::Io),
    }
}

#[cfg(test)]
mod tests;
