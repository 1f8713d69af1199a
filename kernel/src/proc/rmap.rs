//! The reverse map of file pages, object-based as Linux's `i_mmap`: for each cached file,
//! the address spaces that map some of it. The page cache reports a page that moved to
//! another frame while its old frame is still mapped (a copy-on-write break of an alias,
//! a stable-page copy: [`mm::page_cache::PageCache::set_moved_hook`]); every address
//! space mapping that file gets (file, page, old frame) in its queue of stale pages, and
//! drops the mappings of that page that still point at the old frame before it next
//! resolves an address or returns to user mode ([`vm::MemoryMap::drop_stale_mappings`]).
//! The next access refaults onto the page's current frame.
//!
//! Why a queue rather than unmapping on the spot: the page cache reports with file
//! locks held that rank below the memory-map lock (see `mm::lock_order`), and the space
//! may be the very one faulting. On one CPU nothing reads a stale mapping in between:
//! the process it belongs to is not running in user mode, and its kernel paths drop the
//! stale mappings before they walk its page tables. With SMP this becomes a TLB
//! shootdown of the other CPUs running the space.
//!
//! [`vm::MemoryMap::drop_stale_mappings`]: super::vm::MemoryMap::drop_stale_mappings

use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use mm::Pfn;

/// Pages of one address space whose mappings went stale: (file id, page, old frame).
#[derive(Default)]
pub struct StaleQueue {
    pending: AtomicBool,
    entries: spin::Mutex<Vec<(u64, u64, Pfn)>>,
}

impl StaleQueue {
    pub fn new() -> Arc<StaleQueue> {
        Arc::new(StaleQueue::default())
    }

    /// Whether anything is queued (cheap: an atomic load).
    pub fn pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Everything queued, emptying the queue.
    pub fn take(&self) -> Vec<(u64, u64, Pfn)> {
        let mut e = self.entries.lock();
        self.pending.store(false, Ordering::Release);
        core::mem::take(&mut *e)
    }

    fn push(&self, entry: (u64, u64, Pfn)) {
        self.entries.lock().push(entry);
        self.pending.store(true, Ordering::Release);
    }
}

/// file id → the queues of the address spaces that map (or mapped) some of it. Entries of
/// spaces that are gone are pruned as registrations come.
static MAPPERS: spin::Mutex<BTreeMap<u64, Vec<Weak<StaleQueue>>>> =
    spin::Mutex::new(BTreeMap::new());

/// The address space owning `queue` maps pages of file `file` (called when a file area
/// is added, including a forked child's copies). Idempotent.
pub fn register(file: u64, queue: &Arc<StaleQueue>) {
    let mut m = MAPPERS.lock();
    let list = m.entry(file).or_default();
    list.retain(|w| w.strong_count() > 0);
    if !list
        .iter()
        .any(|w| core::ptr::eq(w.as_ptr(), Arc::as_ptr(queue)))
    {
        list.push(Arc::downgrade(queue));
    }
    m.retain(|_, l| !l.is_empty());
}

/// The page cache's report (see the module comment): queue the stale page for every
/// address space that maps the file.
pub fn page_moved(file: u64, index: u64, old: Pfn) {
    let queues: Vec<Arc<StaleQueue>> = MAPPERS
        .lock()
        .get(&file)
        .map(|l| l.iter().filter_map(Weak::upgrade).collect())
        .unwrap_or_default();
    for q in queues {
        q.push((file, index, old));
    }
}

/// Address spaces registered for `file` and still alive (tests, diagnostics).
pub fn mappers_of(file: u64) -> usize {
    MAPPERS
        .lock()
        .get(&file)
        .map_or(0, |l| l.iter().filter(|w| w.strong_count() > 0).count())
}
