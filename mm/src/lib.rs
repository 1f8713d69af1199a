//! Physical memory management: frames, frame descriptors, the page cache.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod counters;
pub mod frame;
pub mod frame_alloc;
pub mod frame_ref;
pub mod frame_table;
pub mod lock_order;
pub mod page_cache;
pub mod phys;
pub mod pin;
pub mod sync;

pub use counters::Counter;
pub use frame::{FRAME_SIZE, Pfn};
pub use frame_alloc::{AllocError, FrameAllocator, FrameError, MAX_ORDER};
pub use frame_ref::FrameRef;
pub use frame_table::{FrameDescriptor, FrameFlags, FrameTable, Owner};
pub use pin::{PhysRun, Pin, PinnedRange};
