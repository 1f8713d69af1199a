//! A split virtqueue (virtio 1.x, 2.7) in DMA memory of the driver's own.
//!
//! The `virtio-drivers` crate's `VirtQueue` is not used for three reasons:
//!
//! - it takes each buffer as a slice and turns it back into a physical address, while the
//!   data of a block request is physical frames to begin with;
//! - its event-index check compares indices without wrap-around and without a fence
//!   between publishing the available index and reading the device's event index, so
//!   requests stall;
//! - it allocates a new ring after a device reset, and panics when memory is short.
//!
//! Here a buffer is (physical address, length, direction) ([`Buffer`]); the ring is
//! allocated once and cleared by [`SplitQueue::reset`]; with `VIRTIO_F_EVENT_IDX` the
//! driver notifies only when the device asked for it (2.7.10) and asks for an interrupt
//! only at the next used entry after those it has reaped (2.7.7), checking again after
//! asking so that no completion waits for an interrupt that will not come.
//!
//! Descriptors, available and used rings are reached through a [`RegisterWindow`] over
//! the ring pages: every access is bounds-checked and volatile.

use alloc::vec::Vec;
use core::marker::PhantomData;
use core::sync::atomic::{Ordering, fence};

use crate::hal::Hal;
use crate::mmio::RegisterWindow;

const PAGE: usize = 4096;
/// Descriptor flags (2.7.5).
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
/// The device asks not to be notified (used ring flags, without event indices).
const USED_F_NO_NOTIFY: u16 = 1;

/// One buffer of a chain: `len` bytes at physical address `phys`, written by the device
/// (`device_writes`) or read by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Physical address.
    pub phys: u64,
    /// Length in bytes.
    pub len: u32,
    /// The device writes this buffer (a read's data, a status byte); otherwise it reads it.
    pub device_writes: bool,
}

/// A chain the device has finished with: its head descriptor (the token [`SplitQueue::add`]
/// returned) and the bytes the device wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Used {
    /// The chain's head descriptor.
    pub head: u16,
    /// Bytes the device wrote into the chain's device-writable buffers.
    pub written: u32,
}

/// Why [`SplitQueue::add`] refused a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddError {
    /// Fewer free descriptors than buffers.
    Full,
    /// A chain of no buffers.
    Empty,
}

/// Whether a notification (or an interrupt) is due: the other side asked for one at index
/// `event`, and the index moved from `old` to `new` since the last one (2.7.10; the
/// comparison is modulo 2^16).
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// Byte offsets of the three parts of a queue of `size` entries in its pages.
#[derive(Clone, Copy, Debug)]
struct Layout {
    avail: usize,
    used: usize,
    bytes: usize,
}

impl Layout {
    fn of(size: u16) -> Layout {
        let n = size as usize;
        // Descriptors (16 bytes each, 16-aligned), then the available ring (flags, index,
        // n entries, used_event), then the used ring, 4-aligned (flags, index, n entries
        // of 8 bytes, avail_event).
        let avail = 16 * n;
        let used = (avail + 4 + 2 * n + 2).next_multiple_of(4);
        Layout {
            avail,
            used,
            bytes: used + 4 + 8 * n + 2,
        }
    }
}

/// A split virtqueue of `size` entries (see the module documentation).
pub struct SplitQueue<H: Hal> {
    ring: RegisterWindow,
    layout: Layout,
    phys: u64,
    pages: usize,
    size: u16,
    event_idx: bool,
    /// First free descriptor; the free ones are linked through `next`.
    free_head: u16,
    num_free: u16,
    /// Each descriptor's `next` field, kept here as well so that freeing a chain never
    /// reads memory the device can reach.
    next: Vec<u16>,
    /// Descriptors in the chain headed by each descriptor; 0 where no chain in flight
    /// starts.
    chain_len: Vec<u16>,
    /// The available index as last published.
    avail_idx: u16,
    /// Chains published since the last [`SplitQueue::should_notify`].
    unnotified: u16,
    /// Used entries reaped so far (modulo 2^16).
    last_used: u16,
    /// The device moved its used index impossibly far: nothing more is reaped until a
    /// reset.
    broken: bool,
    _hal: PhantomData<H>,
}

impl<H: Hal> SplitQueue<H> {
    /// A queue of `size` entries (a power of two up to 32768) in zeroed DMA pages;
    /// `event_idx` when `VIRTIO_F_EVENT_IDX` was negotiated. `None` for a bad size or
    /// without memory.
    pub fn new(size: u16, event_idx: bool) -> Option<SplitQueue<H>> {
        if !size.is_power_of_two() || size > 32768 {
            return None;
        }
        let layout = Layout::of(size);
        let pages = layout.bytes.div_ceil(PAGE);
        let phys = H::dma_alloc(pages)?;
        let base = H::phys_to_virt(phys) as usize;
        // SAFETY: `pages` pages of DMA memory just allocated for this queue and mapped by
        // `phys_to_virt`; only this queue (through the window) and the device touch them,
        // and they stay allocated until the queue is dropped, with the window.
        let ring = unsafe { RegisterWindow::new(base, pages * PAGE) };
        let mut q = SplitQueue {
            ring,
            layout,
            phys,
            pages,
            size,
            event_idx,
            free_head: 0,
            num_free: 0,
            next: alloc::vec![0; size as usize],
            chain_len: alloc::vec![0; size as usize],
            avail_idx: 0,
            unnotified: 0,
            last_used: 0,
            broken: false,
            _hal: PhantomData,
        };
        q.reset();
        Some(q)
    }

    /// Entries in the queue.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Physical addresses of the descriptor table, the available ring ("driver area") and
    /// the used ring ("device area"), for the transport.
    pub fn addresses(&self) -> (u64, u64, u64) {
        (
            self.phys,
            self.phys + self.layout.avail as u64,
            self.phys + self.layout.used as u64,
        )
    }

    /// Descriptors not in a chain in flight.
    pub fn free_descriptors(&self) -> usize {
        self.num_free as usize
    }

    /// Chains added and not yet reaped (for tests; the driver keeps its own table).
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.chain_len.iter().filter(|&&n| n != 0).count()
    }

    /// Clear the rings and forget every chain: for a queue the device does not use (before
    /// it is set up, after a device reset).
    pub fn reset(&mut self) {
        for off in (0..self.pages * PAGE).step_by(8) {
            self.ring.write::<u64>(off, 0);
        }
        for (i, n) in self.next.iter_mut().enumerate() {
            *n = (i as u16).wrapping_add(1);
        }
        self.chain_len.fill(0);
        self.free_head = 0;
        self.num_free = self.size;
        self.avail_idx = 0;
        self.unnotified = 0;
        self.last_used = 0;
        self.broken = false;
    }

    /// Use event indices (after a device reset, as negotiated again) or not.
    pub fn set_event_idx(&mut self, on: bool) {
        self.event_idx = on;
    }

    /// Put the chain of `buffers` in the available ring; its token (head descriptor). The
    /// device may use the buffers from now until [`SplitQueue::pop_used`] returns the
    /// token: the caller keeps them alive and untouched until then.
    pub fn add(&mut self, buffers: impl IntoIterator<Item = Buffer>) -> Result<u16, AddError> {
        // The chain takes free descriptors in free-list order, so the list's links are the
        // chain's links: nothing changes in the queue's state until the chain is whole.
        let head = self.free_head;
        let mut cursor = head;
        let mut last = None;
        let mut n: u16 = 0;
        for b in buffers {
            if n == self.num_free {
                return Err(AddError::Full);
            }
            let d = cursor as usize * 16;
            let flags = if b.device_writes { DESC_F_WRITE } else { 0 };
            self.ring.write::<u64>(d, b.phys);
            self.ring.write::<u32>(d + 8, b.len);
            self.ring.write::<u16>(d + 12, flags | DESC_F_NEXT);
            self.ring.write::<u16>(d + 14, self.next[cursor as usize]);
            last = Some((d, flags));
            cursor = self.next[cursor as usize];
            n += 1;
        }
        let Some((d, flags)) = last else {
            return Err(AddError::Empty);
        };
        self.ring.write::<u16>(d + 12, flags);
        self.free_head = cursor;
        self.num_free -= n;
        self.chain_len[head as usize] = n;
        let slot = (self.avail_idx % self.size) as usize;
        self.ring
            .write::<u16>(self.layout.avail + 4 + 2 * slot, head);
        // The descriptors and the ring entry before the index that hands them over.
        fence(Ordering::Release);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.ring
            .write::<u16>(self.layout.avail + 2, self.avail_idx);
        self.unnotified = self.unnotified.saturating_add(1);
        Ok(head)
    }

    /// Whether the device must be notified of the chains added since the last call (the
    /// caller then writes the queue's notify register).
    pub fn should_notify(&mut self) -> bool {
        if self.unnotified == 0 {
            return false;
        }
        // The published index before the device's wish is read: otherwise the device may
        // have gone to sleep having seen neither (a store-load barrier; `mfence` on x86).
        fence(Ordering::SeqCst);
        let new = self.avail_idx;
        let old = new.wrapping_sub(self.unnotified);
        self.unnotified = 0;
        if self.event_idx {
            let avail_event = self.read_u16(self.layout.used + 4 + 8 * self.size as usize);
            need_event(avail_event, new, old)
        } else {
            self.read_u16(self.layout.used) & USED_F_NO_NOTIFY == 0
        }
    }

    /// The next chain the device has finished with, its descriptors freed. A used entry
    /// naming no chain in flight (a broken device) is logged and skipped. A used index
    /// more than the queue size ahead of the entries reaped (a broken device: it would
    /// have overwritten entries not yet read) yields nothing more; the driver's watchdog
    /// then resets the device.
    pub fn pop_used(&mut self) -> Option<Used> {
        loop {
            let ahead = self.used_index().wrapping_sub(self.last_used);
            if ahead == 0 {
                return None;
            }
            if ahead > self.size {
                if !self.broken {
                    log::error!(
                        "virtqueue: the device's used index is {ahead} entries ahead of a queue of {}",
                        self.size
                    );
                    self.broken = true;
                }
                return None;
            }
            // The entry after the index that published it.
            fence(Ordering::Acquire);
            let slot = (self.last_used % self.size) as usize;
            let entry = self.layout.used + 4 + 8 * slot;
            let id = self.ring.read::<u32>(entry).unwrap_or(u32::MAX);
            let written = self.ring.read::<u32>(entry + 4).unwrap_or(0);
            self.last_used = self.last_used.wrapping_add(1);
            let n = match usize::try_from(id).ok().and_then(|i| self.chain_len.get(i)) {
                Some(&n) if n != 0 => n,
                _ => {
                    log::error!("virtqueue: the device returned descriptor {id}, not in flight");
                    continue;
                }
            };
            let head = id as u16;
            let mut tail = head;
            for _ in 1..n {
                tail = self.next[tail as usize];
            }
            self.next[tail as usize] = self.free_head;
            self.free_head = head;
            self.num_free += n;
            self.chain_len[head as usize] = 0;
            return Some(Used { head, written });
        }
    }

    /// Ask for an interrupt at the next used entry after those reaped (with event
    /// indices), then look again: true if entries arrived meanwhile, which the caller must
    /// reap, since their interrupt may have been suppressed.
    pub fn enable_interrupts(&mut self) -> bool {
        if self.event_idx {
            let used_event = self.layout.avail + 4 + 2 * self.size as usize;
            self.ring.write::<u16>(used_event, self.last_used);
        }
        // The wish before the index is read again (a store-load barrier).
        fence(Ordering::SeqCst);
        self.used_index() != self.last_used
    }

    fn used_index(&self) -> u16 {
        self.read_u16(self.layout.used + 2)
    }

    fn read_u16(&self, offset: usize) -> u16 {
        // Offsets come from the layout of this window; out of it reads as 0.
        self.ring.read::<u16>(offset).unwrap_or(0)
    }
}

impl<H: Hal> Drop for SplitQueue<H> {
    fn drop(&mut self) {
        H::dma_free(self.phys, self.pages);
    }
}

#[cfg(test)]
mod tests;
