//! Suites that must end in a reported fault; the host checks the report and exit status.

use crate::arch::selftest;
use crate::kprintln;

/// Address of the deliberate page fault (canonical, never mapped).
const FAULT_ADDR: u64 = 0x0000_00de_adbe_e000;

pub fn page_fault() -> ! {
    kprintln!("reading {FAULT_ADDR:#x} on purpose");
    let v = selftest::page_fault(FAULT_ADDR);
    panic!("the read of an unmapped address returned {v:#x}");
}

pub fn double_fault() -> ! {
    kprintln!("overflowing the kernel stack on purpose");
    let v = selftest::overflow_stack(0);
    panic!("stack overflow returned {v}");
}

pub fn panic() -> ! {
    panic!("deliberate panic for the test suite");
}
