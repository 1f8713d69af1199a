//! CPU-level helpers for the kernel self-tests: deliberate faults (proving exceptions are
//! caught and reported, and that #DF has its own stack) and raw accesses through mappings.

use core::arch::asm;

/// Read from an unmapped, canonical address: a #PF with CR2 = `addr`.
pub fn page_fault(addr: u64) -> u64 {
    // SAFETY: deliberately invalid; the resulting page fault is fatal and reported, so the
    // read never "returns" a value to Rust code.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

/// Recurse until the kernel stack's guard page is hit. The CPU cannot push the page
/// fault's frame on the overflowed stack, so it raises #DF, which runs on its IST stack.
#[allow(unconditional_recursion)]
pub fn overflow_stack(depth: u64) -> u64 {
    let pad = core::hint::black_box([depth; 64]);
    overflow_stack(depth + 1) + pad[7]
}

/// Execute `int3` with `rax = value`; a breakpoint handler may change the saved RAX,
/// which this returns (testing the trap frame in both directions).
pub fn int3_with_rax(value: u64) -> u64 {
    let out: u64;
    // SAFETY: int3 traps into the kernel's breakpoint handler, which returns to the next
    // instruction; only RAX is declared as changed.
    unsafe { asm!("int3", inout("rax") value => out) };
    out
}

/// Read 8 bytes at user address `va` through the CPU's translation of the address space
/// `space`, which must be the active one (used to check a fresh mapping); None if it is
/// not active, `va` is not mapped there, or the 8 bytes cross a page.
pub fn read_user_bytes(space: &mut super::paging::AddressSpace, va: u64) -> Option<[u8; 8]> {
    if !space.is_active() || va % 4096 > 4096 - 8 || space.translate(va).is_none() {
        return None;
    }
    // SAFETY: `va`'s page is mapped in the active address space (checked just above) and
    // the 8 bytes stay inside it; the kernel runs on one CPU, so nothing unmaps it
    // meanwhile. A page mapped without read permission cannot exist on x86-64.
    Some(unsafe { core::ptr::read_volatile(va as *const [u8; 8]) })
}
