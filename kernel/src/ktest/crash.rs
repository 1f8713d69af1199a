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

/// Take two locks in one order, then in the other: the lock-order checker must stop the
/// kernel at the second acquisition of the second round, naming both locks.
pub fn lock_order() -> ! {
    static FIRST: mm::sync::Mutex<u32> = mm::sync::Mutex::new(0);
    static SECOND: mm::sync::Mutex<u32> = mm::sync::Mutex::new(0);
    if !mm::lock_order::enabled() {
        kprintln!("the lock-order checker is off");
        crate::arch::cpu::fail_exit(crate::arch::cpu::ExitCode::TestFailed);
    }
    {
        let _a = FIRST.lock();
        let _b = SECOND.lock();
    }
    kprintln!("took FIRST then SECOND; now SECOND then FIRST");
    let _b = SECOND.lock();
    let _a = FIRST.lock();
    panic!("the lock-order checker let an inverted order pass");
}
