//! Global allocator: small requests are bump-allocated from 1 MiB chunks
//! obtained with `mmap` (the last allocation of a chunk can be freed or grown
//! in place); requests of 64 KiB or more get their own mapping, returned with
//! `munmap` on free. Userland tools are single-threaded.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr;

const CHUNK: usize = 1 << 20;
const BIG: usize = 64 << 10;
const PAGE: usize = 4096;

struct State {
    cur: usize,
    end: usize,
    /// Start of the most recent small allocation (for free/grow in place).
    last: usize,
}

pub struct Allocator {
    st: UnsafeCell<State>,
}

// SAFETY: the tools are single-threaded processes (fork copies the whole state), so the
// state is never reached from two threads.
unsafe impl Sync for Allocator {}

#[global_allocator]
static ALLOCATOR: Allocator = Allocator {
    st: UnsafeCell::new(State {
        cur: 0,
        end: 0,
        last: 0,
    }),
};

fn big(layout: &Layout) -> bool {
    layout.size() >= BIG || layout.align() > PAGE
}

fn round_page(n: usize) -> usize {
    (n + PAGE - 1) & !(PAGE - 1)
}

// SAFETY: `alloc` returns fresh, suitably aligned memory of the layout's size or null;
// `dealloc` and `realloc` only act on blocks `alloc` returned (the trait's contract).
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if big(&layout) {
            if layout.align() > PAGE {
                return ptr::null_mut();
            }
            return crate::mmap_anon(round_page(layout.size())).unwrap_or(ptr::null_mut());
        }
        // SAFETY: user processes are single-threaded and `mmap_anon` does not allocate, so
        // nothing re-enters the allocator: this is the only live reference to the state.
        let st = unsafe { &mut *self.st.get() };
        let align = layout.align().max(8);
        let mut start = (st.cur + align - 1) & !(align - 1);
        if st.cur == 0 || start + layout.size() > st.end {
            let Ok(p) = crate::mmap_anon(CHUNK) else {
                return ptr::null_mut();
            };
            st.cur = p as usize;
            st.end = st.cur + CHUNK;
            start = (st.cur + align - 1) & !(align - 1);
        }
        st.cur = start + layout.size();
        st.last = start;
        start as *mut u8
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if big(&layout) {
            // SAFETY: a big `layout` means `alloc` gave `p` a mapping of its own of
            // `round_page(layout.size())` bytes, and the caller no longer uses the block.
            unsafe {
                let _ = crate::munmap(p, round_page(layout.size()));
            }
            return;
        }
        // SAFETY: user processes are single-threaded and this path calls nothing, so this is
        // the only live reference to the state.
        let st = unsafe { &mut *self.st.get() };
        if p as usize == st.last && st.last + layout.size() == st.cur {
            st.cur = st.last;
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: single-threaded and nothing re-enters the allocator while `st` is used; `st` is
        // not used after `self.alloc` below takes its own reference.
        let st = unsafe { &mut *self.st.get() };
        if !big(&layout)
            && new_size < BIG
            && p as usize == st.last
            && st.last + layout.size() == st.cur
            && st.last + new_size <= st.end
        {
            st.cur = st.last + new_size;
            return p;
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        // SAFETY: `new_layout` has a non-zero size (`realloc` requires `new_size > 0`) and the
        // alignment `layout` already had.
        let np = unsafe { self.alloc(new_layout) };
        if !np.is_null() {
            // SAFETY: `p` is valid for `layout.size()` bytes and `np` for `new_size`; `np` is a
            // fresh block, so they do not overlap; `p` was allocated with `layout` and is not
            // used again.
            unsafe {
                ptr::copy_nonoverlapping(p, np, layout.size().min(new_size));
                self.dealloc(p, layout);
            }
        }
        np
    }
}
