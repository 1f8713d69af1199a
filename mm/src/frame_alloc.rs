//! The buddy frame allocator.
//!
//! Free blocks of `2^order` frames (`order` in `0..=MAX_ORDER`) sit on one intrusive doubly
//! linked list per order, threaded through the descriptors of their head frames (like
//! Linux, nothing is written to the frames themselves, and no heap is needed). A free
//! head has [`FrameFlags::FREE`], `link_a` = next head (`u64::MAX` = none) and `link_b` =
//! order in the top byte, previous head below (all ones = none). One spin lock guards the
//! list heads and the link fields of free frames; reference and pin counts are changed
//! with atomics and take the lock only to free a frame.
//!
//! Misuse (out of range, reserved, already free, count underflow or overflow) returns a
//! [`FrameError`] and changes nothing.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use crate::counters::{self, Counter};
use crate::frame::Pfn;
use crate::frame_table::{
    FrameDescriptor, FrameFlags, FrameTable, ONE_PIN, ONE_REF, Owner, pins_of, refs_of,
};

/// Largest block order: runs of up to `2^MAX_ORDER` frames (4 MiB).
pub const MAX_ORDER: u32 = 10;

const NIL: u64 = u64::MAX;
const ORDER_SHIFT: u32 = 56;
/// Who, besides transient users, holds an allocated frame's references: counted in
/// `link_a` (sharers in the low half, mappings in the high half).
#[derive(Clone, Copy)]
enum Holder {
    Sharer,
    Mapping,
}

impl Holder {
    const fn unit(self) -> u64 {
        match self {
            Holder::Sharer => 1,
            Holder::Mapping => 1 << 32,
        }
    }

    const fn count(self, link_a: u64) -> u32 {
        match self {
            Holder::Sharer => link_a as u32,
            Holder::Mapping => (link_a >> 32) as u32,
        }
    }
}

/// Mask of the previous-head field of `link_b`; the all-ones value means "none".
const PREV_MASK: u64 = (1 << ORDER_SHIFT) - 1;

/// Why an allocation failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AllocError {
    /// No free block is large enough.
    OutOfMemory,
    /// More than `2^MAX_ORDER` frames were requested.
    TooLarge,
    /// Zero frames were requested.
    ZeroFrames,
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AllocError::OutOfMemory => "out of physical memory",
            AllocError::TooLarge => "contiguous run larger than the largest block",
            AllocError::ZeroFrames => "allocation of zero frames",
        })
    }
}

/// Why a reference or pin operation on a frame was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FrameError {
    /// The frame is outside the frame table.
    OutOfRange,
    /// The frame is reserved (never allocatable).
    Reserved,
    /// The frame is not allocated (free, or both counts are zero).
    NotAllocated,
    /// `put` on a frame whose reference count is zero (it is only pinned).
    NoReferences,
    /// `unpin` on a frame that is not pinned.
    NotPinned,
    /// The reference or pin count is at its maximum.
    Overflow,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameError::OutOfRange => "frame outside the frame table",
            FrameError::Reserved => "frame is reserved",
            FrameError::NotAllocated => "frame is not allocated",
            FrameError::NoReferences => "frame has no references to drop",
            FrameError::NotPinned => "frame is not pinned",
            FrameError::Overflow => "frame reference or pin count overflow",
        })
    }
}

/// The state guarded by the allocator's lock.
struct FreeLists {
    heads: [u64; MAX_ORDER as usize + 1],
    free: u64,
    managed: u64,
}

/// A buddy allocator over a [`FrameTable`].
pub struct FrameAllocator {
    table: FrameTable,
    /// Taken only with interrupts masked ([`crate::sync::without_interrupts`]).
    lists: Mutex<FreeLists>,
    /// `lists.free` and `lists.managed`, readable without the lock.
    free: AtomicU64,
    managed: AtomicU64,
}

impl FrameAllocator {
    /// An allocator over `table` with no free frames yet (see [`Self::add_free_range`]).
    pub const fn new(table: FrameTable) -> Self {
        FrameAllocator {
            table,
            lists: Mutex::new(FreeLists {
                heads: [NIL; MAX_ORDER as usize + 1],
                free: 0,
                managed: 0,
            }),
            free: AtomicU64::new(0),
            managed: AtomicU64::new(0),
        }
    }

    /// The frame table this allocator manages.
    pub fn table(&self) -> &FrameTable {
        &self.table
    }

    /// Hands the frames `start..start + count` to the allocator, coalescing them into the
    /// largest naturally aligned blocks. Frames outside the table, and frames that are not
    /// in their initial reserved state (e.g. added twice), are ignored with a warning.
    /// Returns how many frames were added.
    pub fn add_free_range(&self, start: Pfn, count: u64) -> u64 {
        let len = self.table.len();
        let end = start.0.saturating_add(count);
        if end > len {
            log::warn!(
                "mm: frames {:#x}..{:#x} are outside the frame table ({len} frames); ignored",
                start.0.max(len),
                end
            );
        }
        let end = end.min(len);
        crate::sync::without_interrupts(|| self.add_free_locked(start, end))
    }

    fn add_free_locked(&self, start: Pfn, end: u64) -> u64 {
        let mut lists = self.lists.lock();
        let mut added = 0;
        let mut run = None;
        for pfn in start.0..end {
            let d = self.desc(pfn);
            if d.flags().contains(FrameFlags::RESERVED) && d.refs_pins.load(Ordering::Acquire) == 0
            {
                d.flags.store(0, Ordering::Release);
                d.owner.store(Owner::Free as u32, Ordering::Release);
                run.get_or_insert(pfn);
                added += 1;
            } else if let Some(s) = run.take() {
                self.free_run(&mut lists, s, pfn - s);
            }
        }
        if let Some(s) = run {
            self.free_run(&mut lists, s, end - s);
        }
        lists.managed += added;
        self.publish(&lists);
        drop(lists);
        let skipped = end.saturating_sub(start.0) - added;
        if skipped > 0 {
            log::warn!(
                "mm: {skipped} frames in {:#x}..{end:#x} are not reserved; ignored",
                start.0
            );
        }
        added
    }

    /// Allocates one frame: reference count 1, no pins, no flags, owned by `owner`.
    pub fn alloc(&self, owner: Owner) -> Result<Pfn, AllocError> {
        self.alloc_contiguous(1, owner)
    }

    /// Allocates `frames` physically contiguous frames, aligned to the power of two that
    /// covers `frames`; each gets reference count 1 and `owner`. Returns the first frame.
    pub fn alloc_contiguous(&self, frames: u64, owner: Owner) -> Result<Pfn, AllocError> {
        if frames == 0 {
            return Err(AllocError::ZeroFrames);
        }
        if frames > 1 << MAX_ORDER {
            return Err(AllocError::TooLarge);
        }
        let order = frames.next_power_of_two().trailing_zeros();
        let start = crate::sync::without_interrupts(|| {
            let mut lists = self.lists.lock();
            let start = self
                .take_block(&mut lists, order)
                .ok_or(AllocError::OutOfMemory)?;
            self.free_run(&mut lists, start + frames, (1 << order) - frames);
            self.publish(&lists);
            Ok(start)
        })?;
        // The run is off the free lists and its counts are zero, so nobody else writes
        // these descriptors until the reference counts below are published.
        for pfn in start..start + frames {
            let d = self.desc(pfn);
            d.flags.store(0, Ordering::Relaxed);
            d.owner.store(owner as u32, Ordering::Relaxed);
            d.link_a.store(0, Ordering::Relaxed);
            d.link_b.store(0, Ordering::Relaxed);
            d.refs_pins.store(ONE_REF, Ordering::Release);
        }
        Ok(Pfn(start))
    }

    /// Takes a reference to an allocated frame.
    pub fn get(&self, pfn: Pfn) -> Result<(), FrameError> {
        self.update(pfn, |w| match refs_of(w) {
            u32::MAX => Err(FrameError::Overflow),
            _ => Ok(w + ONE_REF),
        })
        .map(drop)
    }

    /// Drops a reference. Returns `Ok(true)` if that freed the frame (no references and no
    /// pins left).
    pub fn put(&self, pfn: Pfn) -> Result<bool, FrameError> {
        let (_, new) = self.update(pfn, |w| match refs_of(w) {
            0 => Err(FrameError::NoReferences),
            _ => Ok(w - ONE_REF),
        })?;
        Ok(self.release_if_unused(pfn, new))
    }

    /// One more page-cache page holds `pfn` (with a reference it already owns). Returns
    /// the new number of sharers.
    pub fn add_sharer(&self, pfn: Pfn) -> Result<u32, FrameError> {
        self.add_holder(pfn, Holder::Sharer)
    }

    /// A page-cache page let go of `pfn` (the caller then drops the page's reference).
    /// Returns the sharers left.
    pub fn remove_sharer(&self, pfn: Pfn) -> Result<u32, FrameError> {
        self.remove_holder(pfn, Holder::Sharer)
    }

    /// A user page-table entry now maps `pfn`, with a reference the caller already owns
    /// (it becomes the mapping's). Returns the new number of mappings.
    pub fn add_mapping(&self, pfn: Pfn) -> Result<u32, FrameError> {
        self.add_holder(pfn, Holder::Mapping)
    }

    /// A user page-table entry no longer maps `pfn` (the caller then drops the mapping's
    /// reference). Returns the mappings left.
    pub fn remove_mapping(&self, pfn: Pfn) -> Result<u32, FrameError> {
        self.remove_holder(pfn, Holder::Mapping)
    }

    /// Count one more holder of kind `h`; never more holders than references.
    fn add_holder(&self, pfn: Pfn, h: Holder) -> Result<u32, FrameError> {
        let d = self.live(pfn)?;
        let old = d.link_a.fetch_add(h.unit(), Ordering::AcqRel);
        let (sharers, maps) = (old as u32, (old >> 32) as u32);
        if sharers as u64 + maps as u64 >= d.refcount() as u64 {
            d.link_a.fetch_sub(h.unit(), Ordering::AcqRel);
            return Err(FrameError::Overflow); // more holders than references
        }
        Ok(h.count(old) + 1)
    }

    /// Count one holder of kind `h` fewer (an error if there is none).
    fn remove_holder(&self, pfn: Pfn, h: Holder) -> Result<u32, FrameError> {
        let d = self.live(pfn)?;
        let mut old = d.link_a.load(Ordering::Acquire);
        loop {
            if h.count(old) == 0 {
                return Err(FrameError::NoReferences);
            }
            match d.link_a.compare_exchange(
                old,
                old - h.unit(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(h.count(old) - 1),
                Err(now) => old = now,
            }
        }
    }

    /// The descriptor of an allocated frame.
    fn live(&self, pfn: Pfn) -> Result<&'static FrameDescriptor, FrameError> {
        let d = self.table.get(pfn).ok_or(FrameError::OutOfRange)?;
        let flags = d.flags();
        if flags.contains(FrameFlags::RESERVED) {
            return Err(FrameError::Reserved);
        }
        if flags.contains(FrameFlags::FREE) || d.refs_pins.load(Ordering::Acquire) == 0 {
            return Err(FrameError::NotAllocated);
        }
        Ok(d)
    }

    /// Pins an allocated frame (for DMA); it stays allocated until unpinned.
    pub fn pin(&self, pfn: Pfn) -> Result<(), FrameError> {
        let (old, _) = self.update(pfn, |w| match pins_of(w) {
            u32::MAX => Err(FrameError::Overflow),
            _ => Ok(w + ONE_PIN),
        })?;
        if pins_of(old) == 0 {
            counters::add(Counter::PinnedPages, 1);
        }
        Ok(())
    }

    /// Drops a pin. Returns `Ok(true)` if that freed the frame (no references and no pins
    /// left).
    pub fn unpin(&self, pfn: Pfn) -> Result<bool, FrameError> {
        let (_, new) = self.update(pfn, |w| match pins_of(w) {
            0 => Err(FrameError::NotPinned),
            _ => Ok(w - ONE_PIN),
        })?;
        if pins_of(new) == 0 {
            counters::sub(Counter::PinnedPages, 1);
        }
        Ok(self.release_if_unused(pfn, new))
    }

    /// Drops one reference to each frame of `start..start + frames`. Nothing is done if
    /// the run leaves the table; otherwise every frame is tried and the first error, if
    /// any, is returned.
    pub fn free_contiguous(&self, start: Pfn, frames: u64) -> Result<(), FrameError> {
        let end = start
            .0
            .checked_add(frames)
            .filter(|&end| end <= self.table.len())
            .ok_or(FrameError::OutOfRange)?;
        let first_error = (start.0..end)
            .filter_map(|pfn| self.put(Pfn(pfn)).err())
            .fold(None, |first, e| first.or(Some(e)));
        first_error.map_or(Ok(()), Err)
    }

    /// Frames currently free. Lock-free (a copy kept beside the lists), so interrupt
    /// handlers and wait conditions may ask.
    pub fn free_frames(&self) -> u64 {
        self.free.load(Ordering::Acquire)
    }

    /// Frames ever handed to the allocator.
    pub fn managed_frames(&self) -> u64 {
        self.managed.load(Ordering::Acquire)
    }

    /// Copy the lists' counts to the lock-free mirrors (with the lists' lock held).
    fn publish(&self, lists: &FreeLists) {
        self.free.store(lists.free, Ordering::Release);
        self.managed.store(lists.managed, Ordering::Release);
    }

    fn desc(&self, pfn: u64) -> &'static FrameDescriptor {
        &self.table.descs[pfn as usize]
    }

    /// Atomically replaces the counts word of a live frame by `f(word)`; returns the old
    /// and new words.
    fn update(
        &self,
        pfn: Pfn,
        f: impl Fn(u64) -> Result<u64, FrameError>,
    ) -> Result<(u64, u64), FrameError> {
        let d = self.table.get(pfn).ok_or(FrameError::OutOfRange)?;
        let mut old = d.refs_pins.load(Ordering::Acquire);
        loop {
            if old == 0 {
                return Err(if d.flags().contains(FrameFlags::RESERVED) {
                    FrameError::Reserved
                } else {
                    FrameError::NotAllocated
                });
            }
            let new = f(old)?;
            match d
                .refs_pins
                .compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok((old, new)),
                Err(current) => old = current,
            }
        }
    }

    /// Frees `pfn` if its counts word just became `word == 0`; only the caller that made
    /// that transition gets here with zero.
    fn release_if_unused(&self, pfn: Pfn, word: u64) -> bool {
        if word != 0 {
            return false;
        }
        let d = self.desc(pfn.0);
        d.flags.store(0, Ordering::Release);
        d.owner.store(Owner::Free as u32, Ordering::Release);
        crate::sync::without_interrupts(|| {
            let mut lists = self.lists.lock();
            self.free_block(&mut lists, pfn.0, 0);
            self.publish(&lists);
        });
        true
    }

    /// Removes a block of at least `2^order` frames from the lists, splitting off and
    /// keeping the excess; returns its first frame.
    fn take_block(&self, lists: &mut FreeLists, order: u32) -> Option<u64> {
        let found = (order..=MAX_ORDER).find(|&k| lists.heads[k as usize] != NIL)?;
        let pfn = lists.heads[found as usize];
        self.unlink(lists, pfn, found);
        for k in (order..found).rev() {
            self.push(lists, pfn + (1 << k), k);
        }
        lists.free -= 1 << order;
        Some(pfn)
    }

    /// Frees `start..start + count` as the largest naturally aligned blocks.
    fn free_run(&self, lists: &mut FreeLists, start: u64, count: u64) {
        let end = start + count;
        let mut pfn = start;
        while pfn < end {
            let order = pfn.trailing_zeros().min(MAX_ORDER).min((end - pfn).ilog2());
            self.free_block(lists, pfn, order);
            pfn += 1 << order;
        }
    }

    /// Frees the naturally aligned block at `pfn` of `2^order` frames, merging it with
    /// its free buddies.
    fn free_block(&self, lists: &mut FreeLists, pfn: u64, order: u32) {
        lists.free += 1 << order;
        let (mut pfn, mut order) = (pfn, order);
        while order < MAX_ORDER {
            let buddy = pfn ^ (1 << order);
            if !self.is_free_head(buddy, order) {
                break;
            }
            self.unlink(lists, buddy, order);
            pfn = pfn.min(buddy);
            order += 1;
        }
        self.push(lists, pfn, order);
    }

    fn is_free_head(&self, pfn: u64, order: u32) -> bool {
        self.table.get(Pfn(pfn)).is_some_and(|d| {
            d.flags().contains(FrameFlags::FREE)
                && d.link_b.load(Ordering::Relaxed) >> ORDER_SHIFT == u64::from(order)
        })
    }

    fn push(&self, lists: &mut FreeLists, pfn: u64, order: u32) {
        let d = self.desc(pfn);
        let head = lists.heads[order as usize];
        d.link_a.store(head, Ordering::Relaxed);
        d.link_b
            .store(free_link_b(PREV_MASK, order), Ordering::Relaxed);
        if head != NIL {
            self.desc(head)
                .link_b
                .store(free_link_b(pfn, order), Ordering::Relaxed);
        }
        lists.heads[order as usize] = pfn;
        d.flags.fetch_or(FrameFlags::FREE.bits(), Ordering::Release);
    }

    fn unlink(&self, lists: &mut FreeLists, pfn: u64, order: u32) {
        let d = self.desc(pfn);
        let next = d.link_a.load(Ordering::Relaxed);
        let prev = d.link_b.load(Ordering::Relaxed) & PREV_MASK;
        if prev == PREV_MASK {
            lists.heads[order as usize] = next;
        } else {
            self.desc(prev).link_a.store(next, Ordering::Relaxed);
        }
        if next != NIL {
            self.desc(next)
                .link_b
                .store(free_link_b(prev, order), Ordering::Relaxed);
        }
        d.flags
            .fetch_and(!FrameFlags::FREE.bits(), Ordering::Release);
    }
}

/// `link_b` of a free head: its order and the previous head (`PREV_MASK` = none).
const fn free_link_b(prev: u64, order: u32) -> u64 {
    (order as u64) << ORDER_SHIFT | prev
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Barrier, Mutex as StdMutex, MutexGuard};
    use std::thread;
    use std::vec::Vec;

    /// Serialises the tests that pin, so they can check the global `pinned_pages`.
    static PIN_TESTS: StdMutex<()> = StdMutex::new(());

    fn pin_lock() -> MutexGuard<'static, ()> {
        PIN_TESTS.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn allocator(frames: u64) -> FrameAllocator {
        let descs = (0..frames)
            .map(|_| FrameDescriptor::new_reserved())
            .collect();
        FrameAllocator::new(FrameTable::new(Box::leak(descs)))
    }

    fn managed(frames: u64) -> FrameAllocator {
        let a = allocator(frames);
        assert_eq!(a.add_free_range(Pfn(0), frames), frames);
        a
    }

    /// Checks the free lists against the descriptors; returns which frames are free.
    fn check(a: &FrameAllocator) -> Vec<bool> {
        let lists = a.lists.lock();
        let mut free = vec![false; a.table.len() as usize];
        let (mut total, mut heads) = (0, 0);
        for order in 0..=MAX_ORDER {
            let (mut prev, mut pfn) = (PREV_MASK, lists.heads[order as usize]);
            while pfn != NIL {
                let d = a.desc(pfn);
                assert!(a.is_free_head(pfn, order), "{pfn} on list {order}");
                assert_eq!(d.link_b.load(Ordering::Relaxed) & PREV_MASK, prev);
                assert_eq!(pfn % (1 << order), 0, "misaligned block");
                if order < MAX_ORDER {
                    assert!(!a.is_free_head(pfn ^ (1 << order), order), "free buddies");
                }
                for q in pfn..pfn + (1 << order) {
                    assert!(!free[q as usize], "frame {q} on two blocks");
                    free[q as usize] = true;
                    assert_eq!(a.desc(q).refs_pins.load(Ordering::Relaxed), 0);
                }
                total += 1 << order;
                heads += 1;
                (prev, pfn) = (pfn, d.link_a.load(Ordering::Relaxed));
            }
        }
        assert_eq!(total, lists.free);
        let flagged = (0..a.table.len())
            .filter(|&p| a.desc(p).flags().contains(FrameFlags::FREE))
            .count();
        assert_eq!(
            flagged, heads,
            "FREE flag on a frame that is not a listed head"
        );
        free
    }

    fn alloc_all(a: &FrameAllocator) -> Vec<Pfn> {
        let all: Vec<Pfn> = std::iter::from_fn(|| a.alloc(Owner::Test).ok()).collect();
        assert_eq!(a.alloc(Owner::Test), Err(AllocError::OutOfMemory));
        all
    }

    #[test]
    fn exhaustion_and_refill() {
        let a = managed(3000);
        let mut all = alloc_all(&a);
        assert_eq!(all.len() as u64, a.managed_frames());
        assert_eq!(a.free_frames(), 0);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 3000, "a frame was handed out twice");
        for &p in &all {
            let d = a.table().get(p).unwrap();
            assert_eq!((d.refcount(), d.pincount(), d.owner()), (1, 0, Owner::Test));
            assert_eq!(d.flags(), FrameFlags::empty());
            assert_eq!(a.put(p), Ok(true));
        }
        assert_eq!(a.free_frames(), 3000);
        assert!(check(&a).iter().all(|&f| f));
    }

    #[test]
    fn freed_frame_is_reused() {
        let a = managed(2048);
        let p = a.alloc(Owner::Kernel).unwrap();
        assert_eq!(a.put(p), Ok(true));
        assert_eq!(a.table().get(p).unwrap().owner(), Owner::Free);
        assert_eq!(a.alloc(Owner::Heap), Ok(p));
        assert_eq!(a.table().get(p).unwrap().owner(), Owner::Heap);
    }

    #[test]
    fn contiguous_run_is_aligned_exact_and_returns_excess() {
        let a = managed(2048);
        let before = a.free_frames();
        let start = a.alloc_contiguous(5, Owner::Dma).unwrap();
        assert_eq!(start.0 % 8, 0);
        assert_eq!(a.free_frames(), before - 5);
        for i in 0..5 {
            let d = a.table().get(start.add(i)).unwrap();
            assert_eq!((d.refcount(), d.owner()), (1, Owner::Dma));
        }
        let free = check(&a);
        assert!((start.0 + 5..start.0 + 8).all(|p| free[p as usize]));
        assert_eq!(a.free_contiguous(start, 5), Ok(()));
        assert_eq!(a.free_frames(), before);
        assert_eq!(
            a.alloc_contiguous(0, Owner::Dma),
            Err(AllocError::ZeroFrames)
        );
        assert_eq!(
            a.alloc_contiguous(1025, Owner::Dma),
            Err(AllocError::TooLarge)
        );
        let big = a.alloc_contiguous(1024, Owner::Dma).unwrap();
        assert_eq!(big.0 % 1024, 0);
        check(&a);
    }

    #[test]
    fn contiguous_fails_when_fragmented() {
        let a = managed(64);
        let all = alloc_all(&a);
        for p in all.iter().step_by(2) {
            assert_eq!(a.put(*p), Ok(true));
        }
        assert_eq!(a.free_frames(), 32);
        assert_eq!(
            a.alloc_contiguous(2, Owner::Dma),
            Err(AllocError::OutOfMemory)
        );
        assert_eq!(a.free_frames(), 32);
        check(&a);
    }

    #[test]
    fn everything_coalesces_back_to_max_order_blocks() {
        let a = managed(4096);
        let mut all = alloc_all(&a);
        all.reverse();
        all.rotate_left(1000); // free in an order unrelated to allocation order
        for p in all {
            assert_eq!(a.put(p), Ok(true));
        }
        check(&a);
        for _ in 0..4 {
            assert!(a.alloc_contiguous(1024, Owner::Test).is_ok());
        }
        assert_eq!(a.free_frames(), 0);
    }

    #[test]
    fn unaligned_ranges_are_split_and_merged() {
        let a = allocator(2048);
        assert_eq!(a.add_free_range(Pfn(37), 1000), 1000);
        assert_eq!(a.managed_frames(), 1000);
        check(&a);
        let all = alloc_all(&a);
        assert!(all.iter().all(|p| (37..1037).contains(&p.0)));
        for p in all {
            a.put(p).unwrap();
        }
        assert_eq!(
            a.alloc_contiguous(1024, Owner::Test),
            Err(AllocError::OutOfMemory)
        );
        let half = a.alloc_contiguous(512, Owner::Test).unwrap();
        assert_eq!(half, Pfn(512));
        a.free_contiguous(half, 512).unwrap();
        // The missing head 0..37 joins its neighbours into one max-order block.
        assert_eq!(a.add_free_range(Pfn(0), 37), 37);
        assert_eq!(a.alloc_contiguous(1024, Owner::Test), Ok(Pfn(0)));
        check(&a);
    }

    #[test]
    fn bad_ranges_are_ignored() {
        let a = allocator(100);
        assert_eq!(a.add_free_range(Pfn(90), 50), 10);
        assert_eq!(a.add_free_range(Pfn(200), 5), 0);
        assert_eq!(a.add_free_range(Pfn(u64::MAX - 1), 5), 0);
        assert_eq!(
            a.add_free_range(Pfn(80), 15),
            10,
            "90..95 were already added"
        );
        assert_eq!(a.managed_frames(), 20);
        assert_eq!(a.free_frames(), 20);
        check(&a);
    }

    #[test]
    fn sharers_and_mappings_are_counted_apart_from_references() {
        let a = managed(16);
        let p = a.alloc(Owner::PageCache).unwrap();
        let d = a.table().get(p).unwrap();
        // The allocation's reference becomes a cache page's; a second page (an alias)
        // and a mapping bring their own.
        assert_eq!(a.add_sharer(p), Ok(1));
        assert_eq!(
            a.add_sharer(p),
            Err(FrameError::Overflow),
            "no reference for it"
        );
        a.get(p).unwrap();
        assert_eq!(a.add_sharer(p), Ok(2));
        a.get(p).unwrap();
        assert_eq!(a.add_mapping(p), Ok(1));
        a.get(p).unwrap(); // a transient reference (a copy in progress)
        assert_eq!(
            (
                d.refcount(),
                d.sharers(),
                d.mappings(),
                d.other_references()
            ),
            (4, 2, 1, 1)
        );
        assert_eq!(a.put(p), Ok(false));
        assert_eq!(
            a.add_mapping(p),
            Err(FrameError::Overflow),
            "no reference for it"
        );
        assert_eq!(a.remove_mapping(p), Ok(0));
        assert_eq!(a.remove_mapping(p), Err(FrameError::NoReferences));
        assert_eq!(a.put(p), Ok(false));
        assert_eq!(a.remove_sharer(p), Ok(1));
        assert_eq!(a.put(p), Ok(false));
        assert_eq!(a.remove_sharer(p), Ok(0));
        assert_eq!(a.remove_sharer(p), Err(FrameError::NoReferences));
        assert_eq!(a.put(p), Ok(true), "the last reference frees");
        assert_eq!((d.sharers(), d.mappings()), (0, 0));
        // A frame allocated again starts with no sharers and no mappings.
        let q = a.alloc(Owner::Anon).unwrap();
        assert_eq!(q, p);
        assert_eq!((d.sharers(), d.mappings(), d.other_references()), (0, 0, 1));
        assert_eq!(a.add_sharer(Pfn(99)), Err(FrameError::OutOfRange));
        check(&a);
    }

    #[test]
    fn pins_keep_frames_allocated() {
        let _guard = pin_lock();
        let pinned = counters::get(Counter::PinnedPages);
        let a = managed(16);
        let p = a.alloc(Owner::Anon).unwrap();
        a.get(p).unwrap();
        assert_eq!(a.put(p), Ok(false));
        a.pin(p).unwrap();
        a.pin(p).unwrap();
        assert_eq!(counters::get(Counter::PinnedPages), pinned + 1);
        assert_eq!(a.put(p), Ok(false), "put while pinned must not free");
        assert_eq!(a.free_frames(), 15);
        assert_eq!(a.put(p), Err(FrameError::NoReferences));
        a.get(p).unwrap(); // a pinned frame may gain references again
        assert_eq!(a.put(p), Ok(false));
        assert_eq!(a.unpin(p), Ok(false));
        assert_eq!(counters::get(Counter::PinnedPages), pinned + 1);
        assert_eq!(a.unpin(p), Ok(true), "last unpin frees");
        assert_eq!(counters::get(Counter::PinnedPages), pinned);
        assert_eq!(a.free_frames(), 16);

        let q = a.alloc(Owner::Anon).unwrap();
        a.pin(q).unwrap();
        assert_eq!(a.unpin(q), Ok(false), "a referenced frame stays");
        assert_eq!(a.put(q), Ok(true));
        assert_eq!(counters::get(Counter::PinnedPages), pinned);
        check(&a);
    }

    #[test]
    fn misuse_is_refused_without_damage() {
        let _guard = pin_lock();
        let a = allocator(64);
        a.add_free_range(Pfn(0), 32); // 32..64 stay reserved
        let p = a.alloc(Owner::Test).unwrap();
        assert_eq!(a.put(p), Ok(true));
        assert_eq!(a.put(p), Err(FrameError::NotAllocated));
        assert_eq!(a.get(p), Err(FrameError::NotAllocated));
        assert_eq!(a.pin(p), Err(FrameError::NotAllocated));
        assert_eq!(a.unpin(p), Err(FrameError::NotAllocated));
        assert_eq!(a.put(Pfn(40)), Err(FrameError::Reserved));
        assert_eq!(a.pin(Pfn(40)), Err(FrameError::Reserved));
        assert_eq!(a.put(Pfn(64)), Err(FrameError::OutOfRange));
        assert_eq!(a.get(Pfn(u64::MAX)), Err(FrameError::OutOfRange));
        assert_eq!(a.free_contiguous(Pfn(60), 8), Err(FrameError::OutOfRange));
        assert_eq!(
            a.free_contiguous(Pfn(1), u64::MAX),
            Err(FrameError::OutOfRange)
        );

        let q = a.alloc(Owner::Test).unwrap();
        assert_eq!(a.unpin(q), Err(FrameError::NotPinned));
        a.table()
            .get(q)
            .unwrap()
            .set_flags(FrameFlags::FREE | FrameFlags::DIRTY);
        assert_eq!(a.free_contiguous(q, 2), Err(FrameError::NotAllocated));
        assert_eq!(
            a.put(q),
            Err(FrameError::NotAllocated),
            "freed by free_contiguous"
        );

        let r = a.alloc(Owner::Test).unwrap();
        a.table()
            .get(r)
            .unwrap()
            .refs_pins
            .store(u64::from(u32::MAX), Ordering::Relaxed);
        assert_eq!(a.get(r), Err(FrameError::Overflow));
        a.table()
            .get(r)
            .unwrap()
            .refs_pins
            .store(ONE_REF, Ordering::Relaxed);
        assert_eq!(a.put(r), Ok(true));

        assert_eq!(a.free_frames(), 32);
        assert!(check(&a)[..32].iter().all(|&f| f));
        assert_eq!(a.alloc_contiguous(32, Owner::Test), Ok(Pfn(0)));
    }

    #[test]
    fn racing_put_and_unpin_free_exactly_once() {
        let _guard = pin_lock();
        let pinned = counters::get(Counter::PinnedPages);
        let a = managed(4096);
        let frames = alloc_all(&a);
        for &p in &frames {
            a.pin(p).unwrap();
        }
        let barrier = Barrier::new(2);
        let (puts, unpins) = thread::scope(|s| {
            let run = |unpin: bool| {
                let (a, frames, barrier) = (&a, &frames, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    frames
                        .iter()
                        .map(|&p| if unpin { a.unpin(p) } else { a.put(p) }.unwrap())
                        .collect::<Vec<bool>>()
                })
            };
            let (puts, unpins) = (run(false), run(true));
            (puts.join().unwrap(), unpins.join().unwrap())
        });
        assert!(puts.iter().zip(&unpins).all(|(p, u)| p ^ u));
        assert_eq!(a.free_frames(), 4096);
        assert_eq!(counters::get(Counter::PinnedPages), pinned);
        check(&a);
    }

    #[test]
    fn hammering_counts_from_many_threads() {
        let _guard = pin_lock();
        let pinned = counters::get(Counter::PinnedPages);
        let a = managed(256);
        let shared: Vec<Pfn> = (0..8).map(|_| a.alloc(Owner::Test).unwrap()).collect();
        thread::scope(|s| {
            for t in 0..4u64 {
                let (a, shared) = (&a, &shared);
                s.spawn(move || {
                    let mut rng = XorShift(t + 1);
                    for _ in 0..20_000 {
                        let p = shared[rng.below(8) as usize];
                        if rng.below(2) == 0 {
                            a.get(p).unwrap();
                            assert_eq!(a.put(p), Ok(false));
                        } else {
                            a.pin(p).unwrap();
                            assert_eq!(a.unpin(p), Ok(false));
                        }
                        // Churn the free lists alongside.
                        let own = a.alloc(Owner::Test).unwrap();
                        assert_eq!(a.put(own), Ok(true));
                    }
                });
            }
        });
        assert_eq!(counters::get(Counter::PinnedPages), pinned);
        assert_eq!(a.free_frames(), 248);
        for p in shared {
            let d = a.table().get(p).unwrap();
            assert_eq!((d.refcount(), d.pincount()), (1, 0));
            assert_eq!(a.put(p), Ok(true));
        }
        assert_eq!(a.free_frames(), 256);
        check(&a);
    }

    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    #[test]
    fn random_operations_match_a_shadow_model() {
        const BASE: u64 = 37;
        const COUNT: u64 = 3000;
        let a = allocator(4096);
        a.add_free_range(Pfn(BASE), COUNT);
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let mut held = vec![false; 4096];
        let mut runs: Vec<(Pfn, u64)> = Vec::new();
        let mut held_frames = 0;
        for step in 0..20_000 {
            let op = rng.below(10);
            if op < 5 || runs.is_empty() {
                let frames = if op < 3 { 1 } else { 1 + rng.below(70) };
                match a.alloc_contiguous(frames, Owner::Test) {
                    Ok(start) => {
                        assert_eq!(start.0 % frames.next_power_of_two(), 0);
                        for p in start.0..start.0 + frames {
                            assert!((BASE..BASE + COUNT).contains(&p), "unmanaged frame");
                            assert!(!held[p as usize], "frame {p} handed out twice");
                            held[p as usize] = true;
                        }
                        held_frames += frames;
                        runs.push((start, frames));
                    }
                    Err(e) => {
                        assert_eq!(e, AllocError::OutOfMemory);
                        assert!(frames > 1 || a.free_frames() == 0);
                    }
                }
            } else {
                let (start, frames) = runs.swap_remove(rng.below(runs.len() as u64) as usize);
                if frames == 1 {
                    assert_eq!(a.put(start), Ok(true));
                } else {
                    assert_eq!(a.free_contiguous(start, frames), Ok(()));
                }
                (start.0..start.0 + frames).for_each(|p| held[p as usize] = false);
                held_frames -= frames;
            }
            assert_eq!(a.free_frames(), COUNT - held_frames);
            if step % 500 == 0 {
                let free = check(&a);
                for p in BASE..BASE + COUNT {
                    assert_eq!(free[p as usize], !held[p as usize], "frame {p}");
                }
            }
        }
        for (start, frames) in runs {
            a.free_contiguous(start, frames).unwrap();
        }
        assert_eq!(a.free_frames(), COUNT);
        check(&a);
        // 37..3037 holds exactly one whole max-order block.
        assert_eq!(a.alloc_contiguous(1024, Owner::Test), Ok(Pfn(1024)));
        assert_eq!(
            a.alloc_contiguous(1024, Owner::Test),
            Err(AllocError::OutOfMemory)
        );
    }
}
