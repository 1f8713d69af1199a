//! Kernel stacks of tasks: each is [`KERNEL_STACK_PAGES`] pages in a kernel region of its
//! own, with an unmapped guard page below it, so running off the end faults (and the
//! double-fault handler reports it on its IST stack) instead of silently overwriting
//! whatever frame happens to lie below. The pages need not be physically contiguous.

use alloc::vec::Vec;

use mm::frame::FRAME_SIZE;
use mm::frame_alloc::AllocError;
use mm::frame_table::Owner;
use spin::Mutex;

use super::cpu;
use super::paging::{self, Access};

/// Pages in a task's kernel stack (64 KiB).
pub const KERNEL_STACK_PAGES: u64 = 16;
/// Virtual space per stack: the stack plus its guard page.
const SLOT: u64 = (KERNEL_STACK_PAGES + 1) * FRAME_SIZE as u64;

struct Region {
    /// Next never-used slot (0: region not reserved yet).
    next: u64,
    end: u64,
    /// Slots whose stacks were freed.
    free: Vec<u64>,
}

static REGION: Mutex<Region> = Mutex::new(Region {
    next: 0,
    end: 0,
    free: Vec::new(),
});

/// Reserve the stacks' region. Must run before the first user address space is made
/// (address spaces copy the kernel's top-level entries when they are created).
pub fn init() {
    let base = paging::reserve_kernel_slot().expect("no free kernel slot for task stacks");
    cpu::without_interrupts(|| {
        let mut r = REGION.lock();
        r.next = base;
        r.end = base + (1 << 39);
    });
}

/// One task's kernel stack.
pub struct KernelStack {
    /// Lowest mapped address (the guard page is just below).
    bottom: u64,
}

impl KernelStack {
    /// Map a fresh stack (contents undefined).
    pub fn new() -> Result<KernelStack, AllocError> {
        let slot = cpu::without_interrupts(|| {
            let mut r = REGION.lock();
            if let Some(s) = r.free.pop() {
                return Some(s);
            }
            if r.next == 0 || r.next + SLOT > r.end {
                return None;
            }
            let s = r.next;
            r.next += SLOT;
            Some(s)
        })
        .ok_or(AllocError::OutOfMemory)?;
        let bottom = slot + FRAME_SIZE as u64;
        let frames = super::physmem::frames();
        let access = Access {
            write: true,
            user: false,
            execute: false,
        };
        for i in 0..KERNEL_STACK_PAGES {
            let va = bottom + i * FRAME_SIZE as u64;
            // Kernel class: a new task's stack may reclaim page-cache pages, but never
            // takes the part of the reserve the heap and I/O need.
            let mapped = super::physmem::alloc_frame(Owner::Kernel, super::physmem::Gfp::Kernel)
                .map_err(|_| AllocError::OutOfMemory)
                .and_then(|pfn| {
                    paging::map_kernel_page(va, pfn, access).map_err(|_| {
                        let _ = frames.put(pfn);
                        AllocError::OutOfMemory
                    })
                });
            if let Err(e) = mapped {
                release(bottom, i);
                return Err(e);
            }
        }
        Ok(KernelStack { bottom })
    }

    /// One past the highest address.
    pub fn top(&self) -> u64 {
        self.bottom + KERNEL_STACK_PAGES * FRAME_SIZE as u64
    }

    /// The whole stack as words, for laying out a new task's first frame.
    pub fn words_mut(&mut self) -> &mut [u64] {
        let words = (KERNEL_STACK_PAGES as usize * FRAME_SIZE) / 8;
        // SAFETY: [bottom, top) was mapped by `new` for this stack alone and stays mapped
        // until drop; `&mut self` makes this the only reference.
        unsafe { core::slice::from_raw_parts_mut(self.bottom as *mut u64, words) }
    }
}

/// Unmap and free the first `pages` pages of the stack at `bottom`, and recycle its slot.
fn release(bottom: u64, pages: u64) {
    let frames = super::physmem::frames();
    for i in 0..pages {
        if let Ok(pfn) = paging::unmap_kernel_page(bottom + i * FRAME_SIZE as u64) {
            let _ = frames.put(pfn);
        }
    }
    cpu::without_interrupts(|| REGION.lock().free.push(bottom - FRAME_SIZE as u64));
}

impl Drop for KernelStack {
    fn drop(&mut self) {
        release(self.bottom, KERNEL_STACK_PAGES);
    }
}
