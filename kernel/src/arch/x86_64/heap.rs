//! The kernel heap: the `talc` allocator (segregated free lists: allocation and free in
//! near-constant time, where a linked-list first fit walks every free block) over a
//! virtual region in its own level-4 slot, grown on demand by mapping more frames (which
//! need not be contiguous).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use mm::frame::FRAME_SIZE;
use mm::frame_table::Owner;
use spin::Mutex;
use talc::{ErrOnOom, Span, Talc};

use super::cpu;
use super::paging::{self, Access};

/// The heap grows in steps of at least this many bytes.
const GROW_STEP: usize = 1 << 20;
/// And never beyond this size.
const MAX_HEAP: u64 = 64 << 30;

struct Heap {
    talc: Talc<ErrOnOom>,
    /// The span talc manages (grown by `extend`); empty before `init`.
    span: Span,
}

struct KernelHeap {
    heap: Mutex<Heap>,
}

// SAFETY: the heap's raw pointers (inside talc and the span) point into the kernel's heap
// region, which is mapped for the kernel's lifetime; all access goes through the mutex.
unsafe impl Send for Heap {}

static BASE: AtomicU64 = AtomicU64::new(0);
static MAPPED: AtomicU64 = AtomicU64::new(0);
/// Bytes handed out and not yet freed (for `stats`).
static USED: AtomicU64 = AtomicU64::new(0);

#[global_allocator]
static HEAP: KernelHeap = KernelHeap {
    heap: Mutex::new(Heap {
        talc: Talc::new(ErrOnOom),
        span: Span::empty(),
    }),
};

/// Allocations at least this large are "big": the heap grows for them only while that
/// leaves the kernel's reserve of free frames intact, so one large (fallible) request
/// can never take the frames the rest of the kernel needs to keep going.
const BIG_ALLOCATION: usize = 64 << 10;

/// Map `bytes` more of heap at its top. Returns false when out of frames or address space.
fn grow(bytes: usize, big: bool) -> bool {
    let base = BASE.load(Ordering::Relaxed);
    let mapped = MAPPED.load(Ordering::Relaxed);
    let pages = bytes.div_ceil(FRAME_SIZE) as u64;
    if base == 0 || mapped + pages * FRAME_SIZE as u64 > MAX_HEAP {
        return false;
    }
    let free = super::physmem::frames().free_frames();
    if big && free < pages + super::physmem::reserve() {
        return false;
    }
    for i in 0..pages {
        // Atomic: the heap lock is held with interrupts off, so nothing may be reclaimed
        // here; growth takes from the reserve, which the writeback task refills.
        let Ok(pfn) = super::physmem::alloc_frame(Owner::Heap, super::physmem::Gfp::Atomic) else {
            MAPPED.store(mapped + i * FRAME_SIZE as u64, Ordering::Relaxed);
            return i > 0;
        };
        let va = base + mapped + i * FRAME_SIZE as u64;
        if paging::map_kernel_page(
            va,
            pfn,
            Access {
                write: true,
                user: false,
                execute: false,
            },
        )
        .is_err()
        {
            let _ = super::physmem::frames().put(pfn);
            MAPPED.store(mapped + i * FRAME_SIZE as u64, Ordering::Relaxed);
            return i > 0;
        }
    }
    MAPPED.store(mapped + pages * FRAME_SIZE as u64, Ordering::Relaxed);
    true
}

/// Reserve the heap's virtual region and map its first `initial` bytes.
pub fn init(initial: usize) -> Result<(), &'static str> {
    let base = paging::reserve_kernel_slot().ok_or("no free level-4 slot for the heap")?;
    BASE.store(base, Ordering::Relaxed);
    if !grow(initial, false) {
        return Err("no memory for the initial heap");
    }
    let mapped = MAPPED.load(Ordering::Relaxed) as usize;
    cpu::without_interrupts(|| {
        let mut h = HEAP.heap.lock();
        // SAFETY: [base, base + mapped) was just mapped, writable, and nothing else uses
        // it; talc owns it from now on.
        let span = unsafe {
            h.talc
                .claim(Span::from_base_size(base as *mut u8, mapped))
                .map_err(|_| "talc refused the initial heap")?
        };
        h.span = span;
        Ok(())
    })
}

/// (bytes mapped, bytes in use) of the heap.
pub fn stats() -> (u64, u64) {
    (MAPPED.load(Ordering::Relaxed), USED.load(Ordering::Relaxed))
}

impl KernelHeap {
    /// Allocate, growing the heap as needed; null when out of frames. Interrupts off.
    fn alloc_locked(&self, layout: Layout) -> *mut u8 {
        let mut heap = self.heap.lock();
        loop {
            // SAFETY: GlobalAlloc never passes a zero-sized layout.
            if let Ok(p) = unsafe { heap.talc.malloc(layout) } {
                USED.fetch_add(layout.size() as u64, Ordering::Relaxed);
                return p.as_ptr();
            }
            let need = layout.size() + layout.align() + 64;
            let big = layout.size() >= BIG_ALLOCATION;
            let before = MAPPED.load(Ordering::Relaxed);
            // Grow by a step while memory is plentiful, else by just what this needs.
            let plenty =
                super::physmem::frames().free_frames() > 2 * super::physmem::high_watermark();
            let step = if plenty { need.max(GROW_STEP) } else { need };
            if !grow(step, big) {
                return core::ptr::null_mut();
            }
            let added = (MAPPED.load(Ordering::Relaxed) - before) as usize;
            let old = heap.span;
            let base = BASE.load(Ordering::Relaxed) as *mut u8;
            // SAFETY: `grow` mapped `added` bytes directly above the heap's top, so
            // [BASE, BASE + MAPPED) is mapped and contains the old span.
            heap.span = unsafe {
                heap.talc
                    .extend(old, Span::from_base_size(base, before as usize + added))
            };
        }
    }
}

// SAFETY: allocation and deallocation are serialised by the heap lock (taken with
// interrupts off so an interrupt handler can never deadlock on it); the region handed to
// talc is mapped and owned by the heap for the kernel's lifetime, and `extend` is only
// called after the pages right above the current top were mapped.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = cpu::without_interrupts(|| self.alloc_locked(layout));
        if !p.is_null() || layout.size() < BIG_ALLOCATION {
            return p;
        }
        // A big allocation found too few free frames outside the reserve. Where the
        // caller may block (interrupts on, not a handler, so it holds no spin lock),
        // drop clean page-cache pages to make room and try once more.
        if cpu::interrupts_enabled() && !super::trap::in_interrupt() {
            let pages = layout.size().div_ceil(FRAME_SIZE) as u64;
            super::physmem::make_room(pages);
            return cpu::without_interrupts(|| self.alloc_locked(layout));
        }
        core::ptr::null_mut()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        cpu::without_interrupts(|| {
            if let Some(p) = NonNull::new(ptr) {
                USED.fetch_sub(layout.size() as u64, Ordering::Relaxed);
                // SAFETY: `ptr` was returned by `alloc` with this layout (GlobalAlloc contract).
                unsafe { self.heap.lock().talc.free(p, layout) };
            }
        })
    }
}
