//! IOAPICs: routing of global system interrupts (GSIs) to vectors, following the ACPI
//! MADT's IOAPIC list and ISA interrupt source overrides.

use alloc::vec::Vec;
use drivers::mmio::RegisterWindow;
use spin::Mutex;

use super::paging;

/// One IOAPIC as described by the MADT.
#[derive(Clone, Copy, Debug)]
pub struct IoApicInfo {
    pub id: u8,
    pub phys_addr: u64,
    pub gsi_base: u32,
}

/// An ISA IRQ that the MADT maps to a different GSI or signalling.
#[derive(Clone, Copy, Debug)]
pub struct IsaOverride {
    pub isa_irq: u8,
    pub gsi: u32,
    pub active_low: bool,
    pub level: bool,
}

/// Signalling of an interrupt line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trigger {
    pub level: bool,
    pub active_low: bool,
}

impl Trigger {
    /// ISA default: edge-triggered, active high.
    pub const ISA: Trigger = Trigger {
        level: false,
        active_low: false,
    };
    /// PCI INTx: level-triggered, active low.
    pub const PCI: Trigger = Trigger {
        level: true,
        active_low: true,
    };
}

/// Bytes of an IOAPIC's register window.
const IOAPIC_WINDOW: usize = 0x20;

struct IoApic {
    /// IOREGSEL at +0, IOWIN at +0x10.
    regs: RegisterWindow,
    gsi_base: u32,
    inputs: u32,
}

impl IoApic {
    // Callers hold the IOAPIC lock, so a select/access pair is never interleaved.
    fn read(&self, reg: u32) -> u32 {
        self.regs.write::<u32>(0, reg);
        self.regs.read::<u32>(0x10).unwrap_or(u32::MAX)
    }

    fn write(&self, reg: u32, value: u32) {
        self.regs.write::<u32>(0, reg);
        self.regs.write::<u32>(0x10, value);
    }
}

struct State {
    apics: Vec<IoApic>,
    overrides: Vec<IsaOverride>,
}

static STATE: Mutex<State> = Mutex::new(State {
    apics: Vec::new(),
    overrides: Vec::new(),
});

/// Take over the IOAPICs: every input masked.
pub fn init(apics: &[IoApicInfo], overrides: &[IsaOverride]) {
    let mut st = STATE.lock();
    st.overrides = overrides.to_vec();
    st.apics.clear();
    for a in apics {
        let mut io = IoApic {
            // SAFETY: the MADT gives the IOAPIC's register window, device registers that
            // the physical map reaches and nothing else uses.
            regs: unsafe {
                RegisterWindow::new(paging::phys_to_virt(a.phys_addr) as usize, IOAPIC_WINDOW)
            },
            gsi_base: a.gsi_base,
            inputs: 0,
        };
        io.inputs = ((io.read(1) >> 16) & 0xFF) + 1;
        for i in 0..io.inputs {
            io.write(0x10 + 2 * i, 1 << 16);
            io.write(0x11 + 2 * i, 0);
        }
        log::debug!(
            "ioapic id {} at {:#x}: GSIs {}..{}",
            a.id,
            a.phys_addr,
            a.gsi_base,
            a.gsi_base + io.inputs
        );
        st.apics.push(io);
    }
}

/// Number of IOAPICs in use.
pub fn count() -> usize {
    STATE.lock().apics.len()
}

/// The GSI and signalling of ISA IRQ `irq`, after the MADT's overrides.
pub fn isa_irq(irq: u8) -> (u32, Trigger) {
    let st = STATE.lock();
    match st.overrides.iter().find(|o| o.isa_irq == irq) {
        Some(o) => (
            o.gsi,
            Trigger {
                level: o.level,
                active_low: o.active_low,
            },
        ),
        None => (irq as u32, Trigger::ISA),
    }
}

fn with_input<R>(gsi: u32, f: impl FnOnce(&IoApic, u32) -> R) -> Option<R> {
    let st = STATE.lock();
    let apic = st
        .apics
        .iter()
        .find(|a| gsi >= a.gsi_base && gsi < a.gsi_base + a.inputs)?;
    Some(f(apic, gsi - apic.gsi_base))
}

/// Deliver `gsi` to `vector` on the CPU with APIC id `dest`, unmasked. Returns false if
/// no IOAPIC has that input.
pub fn route(gsi: u32, vector: u8, trigger: Trigger, dest: u32) -> bool {
    route_as(gsi, vector as u32, trigger, dest)
}

/// Deliver `gsi` as a non-maskable interrupt to the CPU with APIC id `dest` (delivery mode
/// NMI, edge-triggered as the IOAPIC requires for it), unmasked. Returns false if no
/// IOAPIC has that input.
pub fn route_nmi(gsi: u32, dest: u32) -> bool {
    const DELIVERY_NMI: u32 = 0b100 << 8;
    route_as(gsi, DELIVERY_NMI, Trigger::ISA, dest)
}

/// Program `gsi`'s redirection entry: `low` holds the vector and delivery mode.
fn route_as(gsi: u32, low: u32, trigger: Trigger, dest: u32) -> bool {
    with_input(gsi, |io, pin| {
        let mut low = low;
        if trigger.active_low {
            low |= 1 << 13;
        }
        if trigger.level {
            low |= 1 << 15;
        }
        io.write(0x10 + 2 * pin, 1 << 16);
        io.write(0x11 + 2 * pin, (dest & 0xFF) << 24);
        io.write(0x10 + 2 * pin, low);
    })
    .is_some()
}

/// Mask `gsi`.
pub fn mask(gsi: u32) {
    with_input(gsi, |io, pin| {
        let low = io.read(0x10 + 2 * pin);
        io.write(0x10 + 2 * pin, low | (1 << 16));
    });
}
