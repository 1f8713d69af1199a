//! ACPI: the tables the kernel needs (MADT for the APICs, MCFG for PCIe ECAM, FADT and the
//! DSDT's `\_S5` for poweroff), parsed with the `acpi` crate from the RSDP the bootloader
//! found.

use alloc::vec::Vec;
use core::ptr::NonNull;
use drivers::mmio::RegisterWindow;

use acpi::address::{AddressSpace as GasSpace, GenericAddress};
use acpi::platform::interrupt::{InterruptModel, Polarity, TriggerMode};
use acpi::sdt::fadt::Fadt;
use acpi::sdt::mcfg::Mcfg;
use acpi::{AcpiTables, Handle, Handler, PciAddress, PhysicalMapping};
use spin::Once;
use x86_64::instructions::port::Port;

use super::ioapic::{IoApicInfo, IsaOverride};
use super::{cpu, paging};

/// A PCIe ECAM window from the MCFG table.
#[derive(Clone, Copy, Debug)]
pub struct EcamRegion {
    pub phys_base: u64,
    pub segment: u16,
    pub bus_start: u8,
    pub bus_end: u8,
}

/// What the kernel learned from ACPI.
#[derive(Debug, Default)]
pub struct Platform {
    pub local_apic_addr: u64,
    pub ioapics: Vec<IoApicInfo>,
    pub isa_overrides: Vec<IsaOverride>,
    pub cpus: usize,
    pub ecam: Vec<EcamRegion>,
    /// The 8259 PICs exist and must be masked.
    pub legacy_pics: bool,
    sleep: Option<SleepControl>,
}

#[derive(Clone, Copy, Debug)]
struct SleepControl {
    pm1a: GenericAddress,
    pm1b: Option<GenericAddress>,
    smi_cmd: u32,
    acpi_enable: u8,
    /// SLP_TYPa, SLP_TYPb for S5 (soft off).
    s5: (u8, u8),
}

/// Physical memory access for the `acpi` crate, through the physical-memory map (tables
/// need no new mappings); port I/O for the few registers it touches.
#[derive(Clone, Copy)]
struct KernelAcpiHandler;

/// The `T`-sized register at physical `address` (an ACPI-described register: a GAS in
/// memory space, or what the `acpi` crate reads for the tables' AML), as a one-register
/// window; misaligned addresses read as all-ones and ignore writes.
fn acpi_register<T>(address: usize) -> RegisterWindow {
    // SAFETY: ACPI gives these physical addresses as registers or firmware memory; the
    // physical map reaches them, and the kernel holds no Rust reference into them.
    unsafe {
        RegisterWindow::new(
            paging::phys_to_virt(address as u64) as usize,
            core::mem::size_of::<T>(),
        )
    }
}

impl Handler for KernelAcpiHandler {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let virt = paging::phys_to_virt(physical_address as u64) as *mut T;
        PhysicalMapping {
            physical_start: physical_address,
            // The physical map starts far above 0, so this is never null.
            virtual_start: NonNull::new(virt).expect("physical map address is null"),
            region_length: size,
            mapped_length: size,
            handler: *self,
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}

    fn read_u8(&self, address: usize) -> u8 {
        acpi_register::<u8>(address).read(0).unwrap_or(u8::MAX)
    }
    fn read_u16(&self, address: usize) -> u16 {
        acpi_register::<u16>(address).read(0).unwrap_or(u16::MAX)
    }
    fn read_u32(&self, address: usize) -> u32 {
        acpi_register::<u32>(address).read(0).unwrap_or(u32::MAX)
    }
    fn read_u64(&self, address: usize) -> u64 {
        acpi_register::<u64>(address).read(0).unwrap_or(u64::MAX)
    }
    // ACPI registers are written only where the tables say.
    fn write_u8(&self, address: usize, value: u8) {
        acpi_register::<u8>(address).write(0, value);
    }
    fn write_u16(&self, address: usize, value: u16) {
        acpi_register::<u16>(address).write(0, value);
    }
    fn write_u32(&self, address: usize, value: u32) {
        acpi_register::<u32>(address).write(0, value);
    }
    fn write_u64(&self, address: usize, value: u64) {
        acpi_register::<u64>(address).write(0, value);
    }
    fn read_io_u8(&self, port: u16) -> u8 {
        // SAFETY: ports named by ACPI tables belong to the ACPI hardware.
        unsafe { Port::new(port).read() }
    }
    fn read_io_u16(&self, port: u16) -> u16 {
        // SAFETY: as in read_io_u8.
        unsafe { Port::new(port).read() }
    }
    fn read_io_u32(&self, port: u16) -> u32 {
        // SAFETY: as in read_io_u8.
        unsafe { Port::new(port).read() }
    }
    fn write_io_u8(&self, port: u16, value: u8) {
        // SAFETY: as in read_io_u8.
        unsafe { Port::new(port).write(value) }
    }
    fn write_io_u16(&self, port: u16, value: u16) {
        // SAFETY: as in read_io_u8.
        unsafe { Port::new(port).write(value) }
    }
    fn write_io_u32(&self, port: u16, value: u32) {
        // SAFETY: as in read_io_u8.
        unsafe { Port::new(port).write(value) }
    }
    fn read_pci_u8(&self, _address: PciAddress, _offset: u16) -> u8 {
        0xFF
    }
    fn read_pci_u16(&self, _address: PciAddress, _offset: u16) -> u16 {
        0xFFFF
    }
    fn read_pci_u32(&self, _address: PciAddress, _offset: u16) -> u32 {
        0xFFFF_FFFF
    }
    fn write_pci_u8(&self, _address: PciAddress, _offset: u16, _value: u8) {}
    fn write_pci_u16(&self, _address: PciAddress, _offset: u16, _value: u16) {}
    fn write_pci_u32(&self, _address: PciAddress, _offset: u16, _value: u32) {}
    fn nanos_since_boot(&self) -> u64 {
        super::clock::now_ns()
    }
    fn stall(&self, microseconds: u64) {
        super::clock::spin_us(microseconds);
    }
    fn sleep(&self, milliseconds: u64) {
        super::clock::spin_us(milliseconds * 1000);
    }
    // The kernel never runs AML, so AML mutexes are never contended.
    fn create_mutex(&self) -> Handle {
        Handle(0)
    }
    fn acquire(&self, _mutex: Handle, _timeout: u16) -> Result<(), acpi::aml::AmlError> {
        Ok(())
    }
    fn release(&self, _mutex: Handle) {}
}

static PLATFORM: Once<Platform> = Once::new();

/// Parse the ACPI tables at `rsdp` (physical).
pub fn init(rsdp: u64) -> Result<&'static Platform, acpi::AcpiError> {
    // SAFETY: the bootloader found the RSDP at this physical address and validated its
    // signature; the crate checks it again.
    let tables = unsafe { AcpiTables::from_rsdp(KernelAcpiHandler, rsdp as usize) }?;
    let mut p = Platform::default();
    let (model, cpus) = InterruptModel::new(&tables)?;
    p.cpus = cpus
        .map(|c| 1 + c.application_processors.len())
        .unwrap_or(1);
    if let InterruptModel::Apic(apic) = model {
        p.local_apic_addr = apic.local_apic_address;
        p.legacy_pics = apic.also_has_legacy_pics;
        p.ioapics = apic
            .io_apics
            .iter()
            .map(|a| IoApicInfo {
                id: a.id,
                phys_addr: a.address as u64,
                gsi_base: a.global_system_interrupt_base,
            })
            .collect();
        p.isa_overrides = apic
            .interrupt_source_overrides
            .iter()
            .map(|o| IsaOverride {
                isa_irq: o.isa_source,
                gsi: o.global_system_interrupt,
                active_low: o.polarity == Polarity::ActiveLow,
                level: o.trigger_mode == TriggerMode::Level,
            })
            .collect();
    }
    if let Some(mcfg) = tables.find_table::<Mcfg>() {
        p.ecam = mcfg
            .entries()
            .iter()
            .map(|e| EcamRegion {
                phys_base: e.base_address,
                segment: e.pci_segment_group,
                bus_start: e.bus_number_start,
                bus_end: e.bus_number_end,
            })
            .collect();
    }
    if let Some(fadt) = tables.find_table::<Fadt>() {
        let s5 = fadt
            .dsdt_address()
            .ok()
            .and_then(|dsdt| find_s5(dsdt as u64))
            .unwrap_or((0, 0));
        if let Ok(pm1a) = fadt.pm1a_control_block() {
            p.sleep = Some(SleepControl {
                pm1a,
                pm1b: fadt.pm1b_control_block().ok().flatten(),
                smi_cmd: fadt.smi_cmd_port,
                acpi_enable: fadt.acpi_enable,
                s5,
            });
        }
    }
    Ok(PLATFORM.call_once(|| p))
}

/// The platform description, once [`init`] succeeded.
pub fn platform() -> Option<&'static Platform> {
    PLATFORM.get()
}

/// Find `\_S5` in the DSDT's AML and return its SLP_TYPa/SLP_TYPb values. This is the
/// well-known byte scan: `_S5_` followed by a PackageOp whose first two elements are
/// integers. Full AML interpretation is not needed for it.
fn find_s5(dsdt_phys: u64) -> Option<(u8, u8)> {
    let header = paging::phys_to_virt(dsdt_phys) as *const u8;
    // SAFETY: the FADT points at the DSDT, mapped by the physical map; its length field is
    // at offset 4 and we read no further than that length.
    let len = unsafe { core::ptr::read_unaligned(header.add(4) as *const u32) } as usize;
    // SAFETY: as above.
    let aml = unsafe { core::slice::from_raw_parts(header, len.min(4 << 20)) };
    parse_s5(aml)
}

fn parse_s5(aml: &[u8]) -> Option<(u8, u8)> {
    let pos = aml.windows(4).position(|w| w == b"_S5_")?;
    let mut i = pos + 4;
    if *aml.get(i)? != 0x12 {
        return None; // not a PackageOp
    }
    i += 1;
    let lead = *aml.get(i)?;
    i += 1 + (lead >> 6) as usize; // PkgLength
    i += 1; // NumElements
    let mut element = || -> Option<u8> {
        let op = *aml.get(i)?;
        i += 1;
        Some(match op {
            0x0A => {
                let v = *aml.get(i)?;
                i += 1;
                v
            }
            0x00 => 0,
            0x01 => 1,
            v => v,
        })
    };
    let a = element()?;
    let b = element().unwrap_or(0);
    Some((a, b))
}

fn gas_write16(gas: &GenericAddress, value: u16) {
    match gas.address_space {
        GasSpace::SystemIo => KernelAcpiHandler.write_io_u16(gas.address as u16, value),
        GasSpace::SystemMemory => KernelAcpiHandler.write_u16(gas.address as usize, value),
        _ => {}
    }
}

fn gas_read16(gas: &GenericAddress) -> u16 {
    match gas.address_space {
        GasSpace::SystemIo => KernelAcpiHandler.read_io_u16(gas.address as u16),
        GasSpace::SystemMemory => KernelAcpiHandler.read_u16(gas.address as usize),
        _ => 0,
    }
}

/// What runs just before the machine turns off (reports: the profiler's dump, the
/// lock-order checker's summary).
static BEFORE_POWEROFF: spin::Mutex<[PoweroffHook; 4]> = spin::Mutex::new([None; 4]);

type PoweroffHook = Option<fn()>;

/// Call `f` at the start of [`poweroff`], after those registered before it.
pub fn before_poweroff(f: fn()) {
    super::cpu::without_interrupts(|| {
        let mut hooks = BEFORE_POWEROFF.lock();
        match hooks.iter_mut().find(|h| h.is_none()) {
            Some(slot) => *slot = Some(f),
            None => log::error!("acpi: no free poweroff hook slot"),
        }
    })
}

/// Turn the machine off (ACPI S5). Under QEMU this ends QEMU with status 0. Falls back to
/// halting if the platform has no usable PM1 control register.
pub fn poweroff() -> ! {
    let hooks = super::cpu::without_interrupts(|| *BEFORE_POWEROFF.lock());
    hooks.iter().flatten().for_each(|f| f());
    x86_64::instructions::interrupts::disable();
    if let Some(s) = platform().and_then(|p| p.sleep) {
        // Hand the ACPI registers to the OS first if the firmware still owns them.
        if gas_read16(&s.pm1a) & 1 == 0 && s.smi_cmd != 0 && s.acpi_enable != 0 {
            KernelAcpiHandler.write_io_u8(s.smi_cmd as u16, s.acpi_enable);
            for _ in 0..1000 {
                if gas_read16(&s.pm1a) & 1 != 0 {
                    break;
                }
                super::clock::spin_us(1000);
            }
        }
        const SLP_EN: u16 = 1 << 13;
        gas_write16(&s.pm1a, ((s.s5.0 as u16 & 7) << 10) | SLP_EN);
        if let Some(b) = &s.pm1b {
            gas_write16(b, ((s.s5.1 as u16 & 7) << 10) | SLP_EN);
        }
        super::clock::spin_us(100_000);
    }
    log::error!("ACPI poweroff failed; halting");
    cpu::halt_forever()
}
