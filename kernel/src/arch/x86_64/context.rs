//! Switching between tasks: callee-saved registers and RFLAGS on the old stack, stack
//! pointer swap, and the user FPU/SSE state (the kernel itself is built without SSE, so
//! the user's registers stay live until the next task switch).

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use mm::frame_alloc::AllocError;

use super::kstack::KernelStack;
use super::trap::TrapFrame;

global_asm!(
    r#"
    .text
    .global context_switch
context_switch:
    pushfq
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    popfq
    ret

    .global task_first_entry
task_first_entry:
    call task_started
    jmp trap_return

    .global kernel_task_first_entry
kernel_task_first_entry:
    call task_started
    movq %r12, %rdi
    call kernel_task_main
    ud2
"#,
    options(att_syntax)
);

unsafe extern "C" {
    fn context_switch(save_rsp: *mut u64, load_rsp: u64);
    fn task_first_entry();
    fn kernel_task_first_entry();
}

/// First Rust code of a kernel task (after `task_started`): interrupts on, then its
/// body, which never returns. `entry` is the `fn() -> !` that
/// [`TaskContext::new_kernel`] put in the stack's r12 slot.
#[unsafe(no_mangle)]
extern "C" fn kernel_task_main(entry: usize) -> ! {
    // SAFETY: `entry` is exactly the function pointer new_kernel stored, passed through
    // r12 unchanged (callee-saved across task_started).
    let body: fn() -> ! = unsafe { core::mem::transmute::<usize, fn() -> !>(entry) };
    super::cpu::enable_interrupts();
    body()
}

/// Words `context_switch` pops before returning (r15..rbp, rflags).
const SWITCH_WORDS: usize = 7;

static STARTED: spin::Once<fn()> = spin::Once::new();

/// Set the function a new task runs first (on its own stack, interrupts off) before it
/// returns to user mode through its initial trap frame.
pub fn set_task_started_hook(hook: fn()) {
    STARTED.call_once(|| hook);
}

#[unsafe(no_mangle)]
extern "C" fn task_started() {
    if let Some(h) = STARTED.get() {
        h();
    }
}

/// A task's kernel-side execution state: its kernel stack and, while it is switched out,
/// the stack pointer to resume from. The only ways to get a resumable stack pointer are
/// [`TaskContext::new_user`] (a fresh stack holding an initial trap frame) and a previous
/// [`switch`], which is what makes `switch` sound.
pub struct TaskContext {
    saved_rsp: AtomicU64,
    /// The stack (None: the boot stack, which the kernel never frees).
    stack: Option<KernelStack>,
}

impl TaskContext {
    /// The context of the code running now on the boot stack (the idle task).
    pub fn boot() -> TaskContext {
        TaskContext {
            saved_rsp: AtomicU64::new(0),
            stack: None,
        }
    }

    /// A new kernel stack whose first switch-in returns to user mode with `frame`.
    pub fn new_user(frame: &TrapFrame) -> Result<TaskContext, AllocError> {
        let mut stack = KernelStack::new()?;
        let rsp = prepare_user_stack(stack.words_mut(), frame);
        Ok(TaskContext {
            saved_rsp: AtomicU64::new(rsp),
            stack: Some(stack),
        })
    }

    /// A new kernel stack whose first switch-in runs `body` in ring 0 with interrupts
    /// enabled (a kernel task).
    pub fn new_kernel(body: fn() -> !) -> Result<TaskContext, AllocError> {
        let mut stack = KernelStack::new()?;
        let rsp = prepare_kernel_stack(stack.words_mut(), body);
        Ok(TaskContext {
            saved_rsp: AtomicU64::new(rsp),
            stack: Some(stack),
        })
    }

    /// Top of the kernel stack (for the TSS and the syscall entry), if it has its own.
    pub fn stack_top(&self) -> Option<u64> {
        self.stack.as_ref().map(KernelStack::top)
    }
}

/// Where a switched-out task resumes: the stack pointer its last switch saved (or its
/// initial one). Only [`TaskContext::resume_point`] makes one.
pub struct ResumePoint(u64);

impl TaskContext {
    /// Where this context resumes; the scheduler takes it once per switch-in and keeps the
    /// task alive until it runs.
    pub fn resume_point(&self) -> ResumePoint {
        let rsp = self.saved_rsp.load(Ordering::Acquire);
        assert!(rsp != 0, "resume point of a context that never ran");
        ResumePoint(rsp)
    }
}

/// Save the running code's registers in `from` and continue at `to`. Returns when
/// something switches back to `from`. Interrupts must be disabled; `from` must be the
/// context that is running.
pub fn switch(from: &TaskContext, to: ResumePoint) {
    debug_assert!(!super::cpu::interrupts_enabled());
    // `to` holds a stack pointer produced by new_user or by a previous switch (the only
    // writers of saved_rsp, and ResumePoint is only made from it).
    // SAFETY: so it points at a frame laid out by context_switch on a stack the scheduler
    // keeps alive; the stub saves exactly what it restores.
    unsafe { context_switch(from.saved_rsp.as_ptr(), to.0) }
}

/// Continue at `to` from a task that will never run again: nothing of the current stack is
/// saved, so the caller may already have given up every reference to its own task.
pub fn switch_dead(to: ResumePoint) -> ! {
    static SCRATCH: AtomicU64 = AtomicU64::new(0);
    debug_assert!(!super::cpu::interrupts_enabled());
    // SAFETY: as in `switch`; the registers of the dying task go to a scratch word that
    // nothing ever resumes from.
    unsafe { context_switch(SCRATCH.as_ptr(), to.0) };
    unreachable!("a dead task resumed")
}

/// Lay out a new task's kernel stack so that its first switch-in returns to user mode
/// with registers `frame`. Returns the stack pointer to switch to.
fn prepare_user_stack(stack: &mut [u64], frame: &TrapFrame) -> u64 {
    let frame_words = core::mem::size_of::<TrapFrame>() / 8;
    let n = stack.len();
    let frame_at = n - frame_words;
    // SAFETY: TrapFrame is repr(C) plain u64 fields, so viewing it as words is exact.
    let words: &[u64] =
        unsafe { core::slice::from_raw_parts((frame as *const TrapFrame).cast(), frame_words) };
    stack[frame_at..].copy_from_slice(words);
    // Below the frame: the return address for context_switch, then its saved registers.
    stack[frame_at - 1] = task_first_entry as *const () as u64;
    let regs_at = frame_at - 1 - SWITCH_WORDS;
    for w in &mut stack[regs_at..frame_at - 1] {
        *w = 0;
    }
    // RFLAGS popped last: interrupts off until iretq restores the user's flags.
    stack[frame_at - 2] = 0x2;
    stack[regs_at..].as_ptr() as u64
}

/// Lay out a new kernel task's stack so that its first switch-in enters
/// `kernel_task_first_entry` with `body` in r12 and a 16-byte aligned stack. Returns the
/// stack pointer to switch to.
fn prepare_kernel_stack(stack: &mut [u64], body: fn() -> !) -> u64 {
    let n = stack.len();
    // The top word is the return address: after `ret` pops it, rsp is the (16-byte
    // aligned) stack top, as the System V ABI wants before a call.
    stack[n - 1] = kernel_task_first_entry as *const () as u64;
    let regs_at = n - 1 - SWITCH_WORDS;
    for w in &mut stack[regs_at..n - 1] {
        *w = 0;
    }
    // Popped in order r15, r14, r13, r12, rbx, rbp, rflags.
    stack[regs_at + 3] = body as usize as u64;
    // RFLAGS: interrupts off until kernel_task_main turns them on.
    stack[n - 2] = 0x2;
    stack[regs_at..].as_ptr() as u64
}

/// The 512-byte FXSAVE area of a task's user FPU/SSE state.
#[repr(C, align(16))]
#[derive(Clone)]
pub struct FpuState([u8; 512]);

impl FpuState {
    /// The state of a freshly started program (x87 and MXCSR defaults, registers zero).
    pub fn initial() -> FpuState {
        let mut s = FpuState([0; 512]);
        // FCW = 0x037F (all exceptions masked, 64-bit precision), MXCSR = 0x1F80.
        s.0[0..2].copy_from_slice(&0x037Fu16.to_le_bytes());
        s.0[24..28].copy_from_slice(&0x1F80u32.to_le_bytes());
        s
    }

    /// Save the CPU's FPU/SSE registers here.
    pub fn save(&mut self) {
        // SAFETY: the area is 512 bytes, 16-byte aligned, as FXSAVE requires; CR4.OSFXSR is
        // set by enable_fpu at boot.
        unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) self.0.as_mut_ptr(), options(nostack)) };
    }

    /// Load the CPU's FPU/SSE registers from here.
    pub fn restore(&self) {
        // SAFETY: as in save; the area holds a valid image (from save or initial(), whose
        // reserved bits are zero).
        unsafe { core::arch::asm!("fxrstor64 [{}]", in(reg) self.0.as_ptr(), options(nostack)) };
    }
}

/// Let ring 3 use x87/SSE: CR0.MP set, CR0.EM and CR0.TS clear, CR4.OSFXSR and
/// CR4.OSXMMEXCPT set.
pub fn enable_fpu() {
    use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
    // SAFETY: standard FPU/SSE enablement; the kernel is compiled without SSE, so nothing
    // it runs depends on the previous settings.
    unsafe {
        Cr0::update(|f| {
            f.remove(Cr0Flags::EMULATE_COPROCESSOR | Cr0Flags::TASK_SWITCHED);
            f.insert(Cr0Flags::MONITOR_COPROCESSOR);
        });
        Cr4::update(|f| {
            f.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE);
        });
        core::arch::asm!("fninit", options(nostack));
    }
}
