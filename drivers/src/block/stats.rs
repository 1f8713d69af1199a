//! Block-layer totals for `/proc/vmstat`, counted where requests complete.

use core::sync::atomic::{AtomicU64, Ordering};

use super::{BlockError, Op};

static READ_BYTES: AtomicU64 = AtomicU64::new(0);
static WRITE_BYTES: AtomicU64 = AtomicU64::new(0);
static REQUESTS: AtomicU64 = AtomicU64::new(0);
static ERRORS: AtomicU64 = AtomicU64::new(0);
static BOUNCE_BYTES: AtomicU64 = AtomicU64::new(0);
static COPY_OFFLOAD_BYTES: AtomicU64 = AtomicU64::new(0);
static NOTIFIES: AtomicU64 = AtomicU64::new(0);
static INTERRUPTS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn record(op: Op, result: &Result<u64, BlockError>) {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    match (op, result) {
        (Op::Read, Ok(n)) => {
            READ_BYTES.fetch_add(*n, Ordering::Relaxed);
        }
        (Op::Write, Ok(n)) => {
            WRITE_BYTES.fetch_add(*n, Ordering::Relaxed);
        }
        // Bytes a device copied inside itself, counted when it says it is done.
        (Op::Copy, Ok(n)) => {
            COPY_OFFLOAD_BYTES.fetch_add(*n, Ordering::Relaxed);
        }
        (_, Err(_)) => {
            ERRORS.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
}

/// Count bytes a driver copied through a bounce buffer (a segment the device cannot address).
pub fn add_bounce(bytes: u64) {
    BOUNCE_BYTES.fetch_add(bytes, Ordering::Relaxed);
}

/// Count one notification of a device that there is new work (a doorbell: a virtio
/// queue notify, an AHCI PxCI write, an NVMe submission-queue tail write).
pub fn add_notify() {
    NOTIFIES.fetch_add(1, Ordering::Relaxed);
}

/// Count one disk interrupt taken (by the kernel's interrupt handler, not by polls).
pub fn add_interrupt() {
    INTERRUPTS.fetch_add(1, Ordering::Relaxed);
}

/// `(name, value)` for every block counter, in `/proc/vmstat` order.
pub fn snapshot() -> [(&'static str, u64); 8] {
    [
        ("blk_read_bytes", READ_BYTES.load(Ordering::Relaxed)),
        ("blk_write_bytes", WRITE_BYTES.load(Ordering::Relaxed)),
        ("blk_requests", REQUESTS.load(Ordering::Relaxed)),
        ("blk_errors", ERRORS.load(Ordering::Relaxed)),
        ("bounce_bytes", BOUNCE_BYTES.load(Ordering::Relaxed)),
        (
            "copy_offload_bytes",
            COPY_OFFLOAD_BYTES.load(Ordering::Relaxed),
        ),
        ("blk_notifies", NOTIFIES.load(Ordering::Relaxed)),
        ("blk_interrupts", INTERRUPTS.load(Ordering::Relaxed)),
    ]
}

/// One counter by name.
pub fn get(name: &str) -> Option<u64> {
    snapshot()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}
