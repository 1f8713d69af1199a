//! The `syscall` instruction's entry path and the per-CPU block it needs.
//!
//! `syscall` leaves the user stack pointer in place and jumps to [`syscall_entry`] with
//! interrupts masked (FMASK). The stub swaps to the kernel GS (the per-CPU block), saves
//! the user RSP, loads the task's kernel stack, and builds a [`TrapFrame`] exactly like an
//! interrupt would (user SS, RSP, RFLAGS from R11, CS, RIP from RCX), so system calls,
//! exceptions and interrupts share one frame layout and one exit path (`trap_return`,
//! which ends in `iretq`: slower than `sysretq` but immune to its non-canonical-RCX trap).

use core::arch::global_asm;

use x86_64::registers::model_specific::Msr;

use super::gdt;
use super::trap::TrapFrame;

/// The per-CPU block that `gs:` points at in kernel mode.
#[repr(C)]
pub struct PerCpu {
    /// Its own address (offset 0).
    self_ptr: u64,
    /// Top of the running task's kernel stack (offset 8).
    kernel_rsp: u64,
    /// Scratch slot for the user RSP during entry (offset 16).
    user_rsp: u64,
}

static mut PER_CPU: PerCpu = PerCpu {
    self_ptr: 0,
    kernel_rsp: 0,
    user_rsp: 0,
};

/// Frame "vector" value marking a system call (not a CPU vector).
pub const SYSCALL_VECTOR: u64 = 0x100;

const MSR_EFER: u32 = 0xC000_0080;
const MSR_STAR: u32 = 0xC000_0081;
const MSR_LSTAR: u32 = 0xC000_0082;
const MSR_FMASK: u32 = 0xC000_0084;
const MSR_FS_BASE: u32 = 0xC000_0100;
const MSR_GS_BASE: u32 = 0xC000_0101;
const MSR_KERNEL_GS_BASE: u32 = 0xC000_0102;

global_asm!(
    r#"
    .section .text.trap, "ax"
    .global syscall_entry
    .balign 16
syscall_entry:
    swapgs
    movq %rsp, %gs:16
    movq %gs:8, %rsp
    pushq ${user_ss}
    pushq %gs:16
    pushq %r11
    pushq ${user_cs}
    pushq %rcx
    pushq $0
    pushq ${vector}
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    cld
    call syscall_dispatch_entry
    jmp trap_return
    .text
"#,
    user_ss = const 0x1b,
    user_cs = const 0x23,
    vector = const SYSCALL_VECTOR,
    options(att_syntax)
);

unsafe extern "C" {
    fn syscall_entry();
}

static HANDLER: spin::Once<fn(&mut TrapFrame)> = spin::Once::new();

#[unsafe(no_mangle)]
extern "C" fn syscall_dispatch_entry(frame: &mut TrapFrame) {
    if let Some(h) = HANDLER.get() {
        h(frame);
    }
    x86_64::instructions::interrupts::disable();
    super::trap::returning(frame);
}

/// Enable `syscall`: STAR/LSTAR/FMASK, EFER.SCE, the per-CPU block in GS, and `handler`
/// as the Rust side of every system call (it runs with interrupts still masked and may
/// enable them).
pub fn init(handler: fn(&mut TrapFrame)) {
    HANDLER.call_once(|| handler);
    let sel = gdt::selectors();
    // The stub hard-codes the user selectors; they must match the GDT.
    assert_eq!(sel.user_data.0 | 3, 0x1b, "GDT layout changed");
    assert_eq!(sel.user_code.0 | 3, 0x23, "GDT layout changed");
    let star = ((sel.kernel_data.0 as u64) << 48) | ((sel.kernel_code.0 as u64) << 32);
    // GS_BASE points at the static per-CPU block (kernel mode); KERNEL_GS_BASE holds the
    // user's GS (0) until the first swapgs on the way out.
    // SAFETY: these MSRs exist on every x86-64 CPU; the values describe the GDT loaded by
    // gdt::init and an entry stub that switches to a kernel stack before using RSP.
    unsafe {
        let pc = &raw mut PER_CPU;
        (*pc).self_ptr = pc as u64;
        Msr::new(MSR_GS_BASE).write(pc as u64);
        Msr::new(MSR_KERNEL_GS_BASE).write(0);
        Msr::new(MSR_STAR).write(star);
        Msr::new(MSR_LSTAR).write(syscall_entry as *const () as u64);
        // Mask TF, IF, DF, NT and AC on entry (NT left set would make the iretq on
        // the way out fault in ring 0).
        Msr::new(MSR_FMASK).write(0x4_4700);
        let mut efer = Msr::new(MSR_EFER);
        let v = efer.read();
        efer.write(v | 1);
    }
}

/// Set the kernel stack used for entries from ring 3 (system calls and traps).
pub fn set_kernel_stack(top: u64) {
    // SAFETY: single CPU; called by the scheduler with interrupts disabled, so no entry
    // stub reads the field concurrently.
    unsafe { (&raw mut PER_CPU.kernel_rsp).write(top) };
    gdt::set_kernel_stack(top);
}

/// The user's FS base (thread pointer).
pub fn fs_base() -> u64 {
    // SAFETY: reading FS_BASE has no side effects.
    unsafe { Msr::new(MSR_FS_BASE).read() }
}

/// Set the user's FS base (thread pointer); the kernel does not use FS.
pub fn set_fs_base(v: u64) {
    // SAFETY: the kernel never addresses memory through FS, so any value is harmless to
    // it; a non-canonical value would fault, callers check canonicality first.
    unsafe { Msr::new(MSR_FS_BASE).write(v) }
}
