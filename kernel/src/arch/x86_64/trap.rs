//! Trap entry: the IDT, one assembly stub per vector, the common save/restore path and the
//! Rust dispatcher.
//!
//! Every vector (exceptions, device interrupts, the timer) enters through the same path,
//! which saves all general-purpose registers in a [`TrapFrame`]. Exceptions nobody handles
//! are reported with vector, error code, RIP, CR2 and every register, then the machine
//! stops (QEMU exits with [`ExitCode::Exception`]).

use core::arch::global_asm;
use core::fmt;

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use spin::RwLock;

use super::cpu::{self, ExitCode};
use super::gdt;

/// The registers saved on entry, in stack order (lowest address first).
#[repr(C)]
#[derive(Clone, Debug, Default)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Vector number, pushed by the stub.
    pub vector: u64,
    /// The CPU's error code, or 0 for vectors without one.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    /// Whether the trap came from ring 3.
    pub fn from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

// One 16-byte stub per vector at `trap_stubs + 16 * vector`. Vectors without a CPU error
// code push a zero so every frame has the same layout.
global_asm!(
    r#"
    .section .text.trap, "ax"
    .global trap_stubs
    .balign 16
trap_stubs:
    .set vec, 0
    .rept 256
        .balign 16
        .if vec < 32
            .if ((0x60227D00 >> vec) & 1) == 0
                pushq $0
            .endif
        .else
            pushq $0
        .endif
        pushq $vec
        jmp trap_common
        .set vec, vec + 1
    .endr

trap_common:
    testb $3, 24(%rsp)
    jz 1f
    swapgs
1:
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
    call trap_dispatch
    .global trap_return
trap_return:
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    testb $3, 24(%rsp)
    jz 2f
    swapgs
2:
    addq $16, %rsp
    iretq
    .text
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static trap_stubs: u8;
}

/// A trap handler. For exceptions, returning `true` resumes the interrupted code; `false`
/// falls through to the fatal report. For interrupts the result is ignored.
pub type TrapHandler = fn(&mut TrapFrame) -> bool;

static HANDLERS: RwLock<[Option<TrapHandler>; 256]> = RwLock::new([None; 256]);

/// First vector of the remapped legacy PIC (which stays masked).
pub const VECTOR_PIC_BASE: u8 = 0x20;
/// The local APIC timer.
pub const VECTOR_TIMER: u8 = 0x30;
/// IOAPIC input `gsi` is delivered at `VECTOR_GSI_BASE + gsi`.
pub const VECTOR_GSI_BASE: u8 = 0x40;
/// The local APIC's spurious-interrupt vector.
pub const VECTOR_SPURIOUS: u8 = 0xFF;
/// The non-maskable interrupt.
const VECTOR_NMI: u64 = 2;

/// The NMI's handler, apart from [`HANDLERS`]: an NMI may arrive while that table's lock
/// is held for writing, and must never wait for it.
static NMI_HANDLER: spin::Once<TrapHandler> = spin::Once::new();

/// Handle NMIs with `handler` (once; returning `false` makes an NMI fatal, as without
/// one). It runs with NMIs blocked, possibly inside any code, even with locks held: it
/// may only take locks with `try_lock`.
pub fn set_nmi_handler(handler: TrapHandler) {
    NMI_HANDLER.call_once(|| handler);
}

/// A device interrupt handler (may capture its device).
pub type IrqHandler = Arc<dyn Fn() + Send + Sync>;

const NO_IRQ_HANDLER: Option<IrqHandler> = None;
static IRQ_HANDLERS: RwLock<[Option<IrqHandler>; 256]> = RwLock::new([NO_IRQ_HANDLER; 256]);
static IRQ_COUNTS: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];

/// First vector handed out by [`alloc_vector`] (MSI / MSI-X device interrupts).
pub const VECTOR_DYNAMIC_FIRST: u8 = 0x80;
const VECTOR_DYNAMIC_LAST: u8 = 0xEF;
static NEXT_VECTOR: AtomicU8 = AtomicU8::new(VECTOR_DYNAMIC_FIRST);

/// A vector for a device interrupt (MSI/MSI-X), or `None` when all are taken.
pub fn alloc_vector() -> Option<u8> {
    NEXT_VECTOR
        .try_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            (v <= VECTOR_DYNAMIC_LAST).then(|| v + 1)
        })
        .ok()
}

/// Run `handler` (then EOI) whenever `vector` arrives.
pub fn set_irq_handler(vector: u8, handler: IrqHandler) {
    cpu::without_interrupts(|| IRQ_HANDLERS.write()[vector as usize] = Some(handler));
}

/// How many times `vector` has been delivered.
pub fn irq_count(vector: u8) -> u64 {
    IRQ_COUNTS[vector as usize].load(Ordering::Relaxed)
}

/// Install `handler` for `vector`, replacing any previous one.
pub fn set_handler(vector: u8, handler: TrapHandler) {
    cpu::without_interrupts(|| HANDLERS.write()[vector as usize] = Some(handler));
}

/// Remove the handler of `vector`.
pub fn clear_handler(vector: u8) {
    cpu::without_interrupts(|| HANDLERS.write()[vector as usize] = None);
}

#[repr(C, packed)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

static mut IDT: [Gate; 256] = [Gate {
    offset_low: 0,
    selector: 0,
    ist: 0,
    attributes: 0,
    offset_mid: 0,
    offset_high: 0,
    reserved: 0,
}; 256];

/// Fill and load the IDT: every vector gets its stub; #DF, NMI and #MC run on IST stacks;
/// `int3` may be raised from ring 3.
pub fn init() {
    let base = core::ptr::addr_of!(trap_stubs) as u64;
    let cs = gdt::selectors().kernel_code.0;
    let mut gates = [Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        attributes: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    }; 256];
    for (v, gate) in gates.iter_mut().enumerate() {
        let addr = base + 16 * v as u64;
        let ist = match v {
            8 => gdt::IST_DOUBLE_FAULT + 1,
            2 => gdt::IST_NMI + 1,
            18 => gdt::IST_MACHINE_CHECK + 1,
            _ => 0,
        } as u8;
        // Present, 64-bit interrupt gate (interrupts off on entry); DPL 3 for int3.
        let attributes = if v == 3 { 0xEE } else { 0x8E };
        *gate = Gate {
            offset_low: addr as u16,
            selector: cs,
            ist,
            attributes,
            offset_mid: (addr >> 16) as u16,
            offset_high: (addr >> 32) as u32,
            reserved: 0,
        };
    }
    // SAFETY: init runs once on the boot CPU before interrupts are enabled, so nothing
    // reads the IDT while it is written; the table is static so the pointer given to
    // `lidt` stays valid forever.
    unsafe {
        let idt = &raw mut IDT;
        idt.write(gates);
        let ptr = x86_64::structures::DescriptorTablePointer {
            limit: (core::mem::size_of::<[Gate; 256]>() - 1) as u16,
            base: x86_64::VirtAddr::new(idt as u64),
        };
        x86_64::instructions::tables::lidt(&ptr);
    }
}

/// How deeply nested in device-interrupt handlers the CPU is (0: task context).
static IRQ_DEPTH: AtomicU64 = AtomicU64::new(0);

/// Whether an interrupt handler is running (code that must not sleep).
pub fn in_interrupt() -> bool {
    IRQ_DEPTH.load(Ordering::Relaxed) != 0
}

/// Called with the frame of every trap or system call about to return to ring 3 (the
/// scheduler's preemption point), interrupts disabled.
static RETURN_TO_USER: spin::Once<fn(&mut TrapFrame)> = spin::Once::new();

/// Install the return-to-user hook (once).
pub fn set_return_to_user_hook(hook: fn(&mut TrapFrame)) {
    RETURN_TO_USER.call_once(|| hook);
}

/// Run the return-to-user hook if `frame` goes back to ring 3.
pub fn returning(frame: &mut TrapFrame) {
    if frame.from_user()
        && let Some(h) = RETURN_TO_USER.get()
    {
        h(frame);
    }
}

/// Called by `trap_common` with the saved registers.
#[unsafe(no_mangle)]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    trap_handle(frame);
    // An NMI may have hit anywhere, even with a lock held or on the way into a system
    // call: it never runs the return-to-user work (signals, rescheduling).
    if frame.vector != VECTOR_NMI {
        returning(frame);
    }
}

fn trap_handle(frame: &mut TrapFrame) {
    if frame.vector == VECTOR_NMI {
        if NMI_HANDLER.get().is_some_and(|h| h(frame)) {
            return;
        }
        fatal_exception(frame);
    }
    let vector = frame.vector as u8;
    let handler = HANDLERS.read()[vector as usize];
    if vector < 32 {
        if let Some(h) = handler
            && h(frame)
        {
            return;
        }
        fatal_exception(frame);
    }
    if (VECTOR_PIC_BASE..VECTOR_PIC_BASE + 16).contains(&vector) {
        // A spurious interrupt from the masked legacy PIC: nothing to acknowledge.
        return;
    }
    IRQ_COUNTS[vector as usize].fetch_add(1, Ordering::Relaxed);
    IRQ_DEPTH.fetch_add(1, Ordering::Relaxed);
    if let Some(h) = handler {
        h(frame);
    }
    let irq = IRQ_HANDLERS.read()[vector as usize].clone();
    if let Some(h) = irq {
        h();
    }
    IRQ_DEPTH.fetch_sub(1, Ordering::Relaxed);
    if vector != VECTOR_SPURIOUS {
        super::apic::eoi();
    }
}

/// The mnemonic of CPU exception `vector`.
pub fn exception_name(vector: u64) -> &'static str {
    const NAMES: [&str; 32] = [
        "#DE divide error",
        "#DB debug",
        "NMI",
        "#BP breakpoint",
        "#OF overflow",
        "#BR bound range",
        "#UD invalid opcode",
        "#NM device not available",
        "#DF double fault",
        "coprocessor overrun",
        "#TS invalid TSS",
        "#NP segment not present",
        "#SS stack fault",
        "#GP general protection",
        "#PF page fault",
        "reserved 15",
        "#MF x87 error",
        "#AC alignment check",
        "#MC machine check",
        "#XM SIMD error",
        "#VE virtualization",
        "#CP control protection",
        "reserved 22",
        "reserved 23",
        "reserved 24",
        "reserved 25",
        "reserved 26",
        "reserved 27",
        "#HV hypervisor injection",
        "#VC VMM communication",
        "#SX security",
        "reserved 31",
    ];
    NAMES.get(vector as usize).copied().unwrap_or("interrupt")
}

/// Human-readable report of a trap frame (used for fatal exceptions).
pub struct Report<'a>(pub &'a TrapFrame);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        writeln!(
            f,
            "EXCEPTION {} (vector {}) error code {:#x}",
            exception_name(t.vector),
            t.vector,
            t.error_code
        )?;
        if t.vector == 14 {
            let e = t.error_code;
            writeln!(
                f,
                "  page fault: {} {} in {} mode{}",
                if e & 1 != 0 {
                    "protection violation on"
                } else {
                    "not-present page on"
                },
                if e & 0x10 != 0 {
                    "instruction fetch"
                } else if e & 2 != 0 {
                    "write"
                } else {
                    "read"
                },
                if e & 4 != 0 { "user" } else { "kernel" },
                if e & 8 != 0 {
                    " (reserved bit set)"
                } else {
                    ""
                }
            )?;
        }
        writeln!(
            f,
            "  RIP={:#018x} CS={:#06x} RFLAGS={:#010x}",
            t.rip, t.cs, t.rflags
        )?;
        writeln!(
            f,
            "  RSP={:#018x} SS={:#06x} CR2={:#018x}",
            t.rsp,
            t.ss,
            cpu::cr2()
        )?;
        writeln!(
            f,
            "  RAX={:#018x} RBX={:#018x} RCX={:#018x}",
            t.rax, t.rbx, t.rcx
        )?;
        writeln!(
            f,
            "  RDX={:#018x} RSI={:#018x} RDI={:#018x}",
            t.rdx, t.rsi, t.rdi
        )?;
        writeln!(
            f,
            "  RBP={:#018x} R8 ={:#018x} R9 ={:#018x}",
            t.rbp, t.r8, t.r9
        )?;
        writeln!(
            f,
            "  R10={:#018x} R11={:#018x} R12={:#018x}",
            t.r10, t.r11, t.r12
        )?;
        write!(
            f,
            "  R13={:#018x} R14={:#018x} R15={:#018x}",
            t.r13, t.r14, t.r15
        )
    }
}

/// Where a fatal exception's report goes: the console installs its emergency writer
/// (which breaks its lock); before that, straight to COM1.
static FATAL_OUTPUT: spin::Once<fn(fmt::Arguments)> = spin::Once::new();

/// Install the writer for fatal reports (only the first call takes effect).
pub fn set_fatal_output(f: fn(fmt::Arguments)) {
    FATAL_OUTPUT.call_once(|| f);
}

fn fatal_exception(frame: &TrapFrame) -> ! {
    let report = format_args!("\n{}\n", Report(frame));
    match FATAL_OUTPUT.get() {
        Some(out) => out(report),
        None => {
            let _ = fmt::Write::write_fmt(&mut super::uart::Uart::init(), report);
        }
    }
    cpu::fail_exit(ExitCode::Exception)
}
