//! GDT and TSS: kernel and user segments in the order `sysret` needs, and separate IST
//! stacks for the exceptions that can hit with a broken kernel stack (double fault, NMI,
//! machine check).

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

/// IST slot (1-based in the IDT, 0-based here) for the double-fault handler.
pub const IST_DOUBLE_FAULT: u16 = 0;
/// IST slot for NMI.
pub const IST_NMI: u16 = 1;
/// IST slot for machine check.
pub const IST_MACHINE_CHECK: u16 = 2;

const IST_STACK_SIZE: usize = 16 * 1024;

#[repr(align(16))]
struct Stack(#[allow(dead_code)] [u8; IST_STACK_SIZE]);

static mut IST_STACKS: [Stack; 3] = [const { Stack([0; IST_STACK_SIZE]) }; 3];

/// Segment selectors, fixed by the GDT layout below.
#[derive(Clone, Copy, Debug)]
pub struct Selectors {
    pub kernel_code: SegmentSelector,
    pub kernel_data: SegmentSelector,
    pub user_data: SegmentSelector,
    pub user_code: SegmentSelector,
    pub tss: SegmentSelector,
}

/// The TSS. Written once by `init`, then only its `rsp0` by [`set_kernel_stack`]; the CPU
/// reads it on every ring 3 -> ring 0 transition.
static mut TSS: TaskStateSegment = TaskStateSegment::new();
static GDT: Once<(GlobalDescriptorTable, Selectors)> = Once::new();

/// Build and load the GDT and TSS, and reload the segment registers.
pub fn init() {
    let tss = {
        let mut tss = TaskStateSegment::new();
        for (slot, index) in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK]
            .into_iter()
            .enumerate()
        {
            // SAFETY: only the address of the static is taken (no reference is created); each
            // IST stack is used by exactly one IST slot and nothing else touches it.
            let base = unsafe { core::ptr::addr_of!(IST_STACKS[slot]) } as u64;
            tss.interrupt_stack_table[index as usize] = VirtAddr::new(base + IST_STACK_SIZE as u64);
        }
        // SAFETY: init runs once, on the boot CPU, before the TSS is loaded or read.
        unsafe { (&raw mut TSS).write(tss) };
        &raw const TSS
    };
    let (gdt, sel) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        // Order matters for syscall/sysret: STAR's sysret base points at kernel_data, so
        // user data = base + 8 and user code = base + 16.
        let kernel_code = gdt.append(Descriptor::kernel_code_segment());
        let kernel_data = gdt.append(Descriptor::kernel_data_segment());
        let user_data = gdt.append(Descriptor::user_data_segment());
        let user_code = gdt.append(Descriptor::user_code_segment());
        // SAFETY: the TSS is a static that lives forever; later writes go only to its
        // `rsp0` field through raw pointers (set_kernel_stack), never through references.
        let tss = gdt.append(unsafe { Descriptor::tss_segment_unchecked(tss) });
        (
            gdt,
            Selectors {
                kernel_code,
                kernel_data,
                user_data,
                user_code,
                tss,
            },
        )
    });
    gdt.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded, which lives in a
    // static for the rest of the kernel's life.
    unsafe {
        CS::set_reg(sel.kernel_code);
        SS::set_reg(sel.kernel_data);
        DS::set_reg(sel.kernel_data);
        ES::set_reg(sel.kernel_data);
        load_tss(sel.tss);
    }
}

/// The selectors of the loaded GDT.
pub fn selectors() -> Selectors {
    GDT.get().expect("gdt::init not called").1
}

/// Set the stack the CPU switches to when an interrupt or exception arrives in ring 3 (the
/// running task's kernel stack).
pub fn set_kernel_stack(top: u64) {
    // SAFETY: single CPU; the field is written with interrupts disabled by the scheduler
    // and read by the CPU only on a ring change, which cannot happen during this store.
    unsafe {
        (&raw mut TSS)
            .cast::<u8>()
            .add(core::mem::offset_of!(
                TaskStateSegment,
                privilege_stack_table
            ))
            .cast::<u64>()
            .write_unaligned(top)
    };
}
