//! x86-64: descriptor tables, traps, interrupt controllers, timers, firmware tables and
//! the few instructions the rest of the kernel needs. All of the kernel's `unsafe` that is
//! not driver MMIO/DMA is in this folder.

pub mod acpi;
pub mod apic;
pub mod backtrace;
pub mod clock;
pub mod context;
pub mod cpu;
pub mod dma;
pub mod fw_cfg;
pub mod gdt;
pub mod heap;
pub mod ioapic;
pub mod kstack;
pub mod paging;
pub mod pci_access;
pub mod physmem;
pub mod pic;
pub mod pit;
pub mod ps2;
pub mod rtc;
pub mod selftest;
pub mod syscall;
pub mod trap;
pub mod uart;
