//! Linux native AIO contexts (`io_setup`): a completion queue of a process, filled when
//! its requests finish (from the disk's interrupt handler for direct I/O, at once for
//! everything that completes during `io_submit`) and emptied by `io_getevents`.
//!
//! A context is shared by the process's table and by the completions of its requests in
//! flight, so a process may exit or destroy the context while its DMA runs: the request
//! keeps its pins and the context alive until the device is done.

use alloc::collections::VecDeque;
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

struct Queue {
    /// Completions not yet reaped (room for the whole capacity is kept, so completing
    /// never allocates in an interrupt handler).
    done: VecDeque<IoEvent>,
    /// The `iocb` addresses of requests submitted and not yet completed, in no order (an
    /// `iocb` submitted twice is there twice): one entry per request in flight. Room for
    /// the whole capacity is kept, so neither submitting nor completing allocates; a
    /// completion finds its entry by a scan of the requests in flight (a few dozen at the
    /// depths AIO is used at).
    in_flight: Vec<u64>,
    /// Bytes of user memory pinned by the requests in flight.
    pinned: usize,
}

/// Most bytes of user memory one context keeps pinned by requests in flight; past it,
/// requests are done during `io_submit` instead (bounding the kernel memory and pins
/// one process can tie up).
pub const MAX_PINNED_BYTES: usize = 64 << 20;

/// One AIO context.
pub struct AioContext {
    /// The id user space holds (the address of the page mapped for it).
    pub id: u64,
    /// Requests it may hold at once (submitted and not yet reaped), from `io_setup`.
    pub capacity: usize,
    queue: spin::Mutex<Queue>,
}

impl AioContext {
    /// A context for `capacity` requests; ENOMEM if its queue cannot be had.
    pub fn new(id: u64, capacity: usize) -> Result<AioContext, crate::errno::Errno> {
        let mut done = VecDeque::new();
        done.try_reserve_exact(capacity)
            .map_err(|_| crate::errno::Errno::ENOMEM)?;
        let mut in_flight = Vec::new();
        in_flight
            .try_reserve_exact(capacity)
            .map_err(|_| crate::errno::Errno::ENOMEM)?;
        Ok(AioContext {
            id,
            capacity,
            queue: spin::Mutex::new(Queue {
                done,
                in_flight,
                pinned: 0,
            }),
        })
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
            // Within the room kept: fewer than `capacity` entries so far.
            q.in_flight.push(obj);
            true
        })
    }

    /// Account `bytes` of pinned user memory to a request about to start; false (and
    /// nothing accounted) if that would take the context past [`MAX_PINNED_BYTES`].
    pub fn charge_pins(&self, bytes: usize) -> bool {
        self.with(|q| {
            if q.pinned + bytes > MAX_PINNED_BYTES {
                return false;
            }
            q.pinned += bytes;
            true
        })
    }

    /// A reserved request finished (`pinned`: the bytes it had charged).
    pub fn complete(&self, ev: IoEvent, pinned: usize) {
        self.with(|q| {
            if let Some(i) = q.in_flight.iter().rposition(|&o| o == ev.obj) {
                q.in_flight.swap_remove(i);
            }
            q.pinned = q.pinned.saturating_sub(pinned);
            // Room was reserved in `new` for every request the context may hold.
            if q.done.len() < q.done.capacity() {
                q.done.push_back(ev);
            }
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
