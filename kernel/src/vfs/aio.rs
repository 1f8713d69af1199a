//! Linux native AIO contexts (`io_setup`): a completion queue of a process, filled when
//! its requests finish (from the disk's interrupt handler for direct I/O, at once for
//! everything that completes during `io_submit`) and emptied by `io_getevents`.
//!
//! A context is shared by the process's table and by the completions of its requests in
//! flight, so a process may exit or destroy the context while its DMA runs: the request
//! keeps its pins and the context alive until the device is done.

use alloc::collections::{BTreeSet, VecDeque};
use alloc::vec::Vec;

use crate::arch::cpu;

/// `struct io_event`: the request's `aio_data`, the address of its `iocb`, and the result
/// (bytes, or `-errno`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoEvent {
    pub data: u64,
    pub obj: u64,
    pub res: i64,
    pub res2: i64,
}

impl IoEvent {
    /// The 32 bytes of `struct io_event`.
    pub fn to_bytes(self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..8].copy_from_slice(&self.data.to_le_bytes());
        b[8..16].copy_from_slice(&self.obj.to_le_bytes());
        b[16..24].copy_from_slice(&self.res.to_le_bytes());
        b[24..32].copy_from_slice(&self.res2.to_le_bytes());
        b
    }
}

#[derive(Default)]
struct Queue {
    done: VecDeque<IoEvent>,
    /// The `iocb` addresses of requests submitted and not yet completed.
    in_flight: BTreeSet<u64>,
}

/// One AIO context.
pub struct AioContext {
    /// The id user space holds (the address of the page mapped for it).
    pub id: u64,
    /// Requests it may hold at once (submitted and not yet reaped), from `io_setup`.
    pub capacity: usize,
    queue: spin::Mutex<Queue>,
}

impl AioContext {
    pub fn new(id: u64, capacity: usize) -> AioContext {
        AioContext {
            id,
            capacity,
            queue: spin::Mutex::new(Queue::default()),
        }
    }

    /// The queue, with interrupts off (completions take it from the interrupt handler).
    fn with<R>(&self, f: impl FnOnce(&mut Queue) -> R) -> R {
        cpu::without_interrupts(|| f(&mut self.queue.lock()))
    }

    /// Reserve room for a request with `iocb` address `obj`; false if the context is full
    /// (submitted plus unreaped requests at its capacity).
    pub fn reserve(&self, obj: u64) -> bool {
        self.with(|q| {
            if q.done.len() + q.in_flight.len() >= self.capacity {
                return false;
            }
            q.in_flight.insert(obj);
            true
        })
    }

    /// A reserved request finished.
    pub fn complete(&self, ev: IoEvent) {
        self.with(|q| {
            q.in_flight.remove(&ev.obj);
            q.done.push_back(ev);
        });
    }

    /// Completions waiting to be reaped.
    pub fn ready(&self) -> usize {
        self.with(|q| q.done.len())
    }

    /// Requests submitted and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.with(|q| q.in_flight.len())
    }

    /// Whether request `obj` is still in flight.
    pub fn is_in_flight(&self, obj: u64) -> bool {
        self.with(|q| q.in_flight.contains(&obj))
    }

    /// Take up to `n` completions, oldest first.
    pub fn take(&self, n: usize) -> Vec<IoEvent> {
        self.with(|q| {
            let k = n.min(q.done.len());
            q.done.drain(..k).collect()
        })
    }
}
