//! The boot sequence, from the bootloader's hand-off to the idle loop (or a test suite).

use bootloader_api::BootInfo;

use crate::arch::{acpi, apic, cpu, gdt, ioapic, pic, trap};
use crate::{cmdline, console, kprintln, memory, pci, time};

/// Bring the machine up; never returns.
pub fn start(boot_info: &'static mut BootInfo) -> ! {
    time::mark_boot();
    console::init_serial();
    console::init_log(log::LevelFilter::Info);
    gdt::init();
    trap::init();

    let phys_offset = match boot_info.physical_memory_offset.into_option() {
        Some(o) => o,
        None => panic!("the bootloader did not map physical memory"),
    };
    let mem = match memory::init(&boot_info.memory_regions, phys_offset) {
        Ok(m) => m,
        Err(e) => panic!("memory setup failed: {e}"),
    };
    // The initramfs (mapped by the bootloader, never freed), taken before the
    // framebuffer borrows the boot information for good.
    let initramfs = crate::arch::paging::ramdisk(boot_info);
    if let Some(fb) = boot_info.framebuffer.as_mut() {
        console::init_framebuffer(fb);
    }
    let cmdline = cmdline::init();
    if let Some(level) = cmdline::value("log").and_then(|l| l.parse().ok()) {
        log::set_max_level(level);
    }

    kprintln!("AliasOS {} - zero-copy storage unikernel", crate::VERSION);
    kprintln!(
        "memory: {} MiB RAM, {} MiB usable, frame table {} KiB, {} frames free ({} MiB)",
        mem.ram_bytes >> 20,
        mem.usable_bytes >> 20,
        mem.table_bytes >> 10,
        memory::frames().free_frames(),
        (memory::frames().free_frames() * 4096) >> 20
    );
    if !cmdline.is_empty() {
        kprintln!("command line: {cmdline}");
    }

    let platform = match boot_info.rsdp_addr.into_option().map(acpi::init) {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            log::warn!("ACPI tables unusable ({e:?}); no IOAPIC, no poweroff");
            None
        }
        None => {
            log::warn!("no ACPI RSDP; no IOAPIC, no poweroff");
            None
        }
    };
    pic::remap_and_mask(trap::VECTOR_PIC_BASE);
    apic::init(trap::VECTOR_SPURIOUS);
    if let Some(p) = platform {
        ioapic::init(&p.ioapics, &p.isa_overrides);
    }
    let tsc_hz = time::calibrate();
    time::start_timer();
    cpu::enable_interrupts();
    kprintln!(
        "cpu: {} CPU(s), local APIC {:?} id {}, {} IOAPIC(s), TSC {}.{:03} MHz, APIC timer {} kHz, tick {} Hz",
        platform.map(|p| p.cpus).unwrap_or(1),
        apic::mode(),
        apic::id(),
        ioapic::count(),
        tsc_hz / 1_000_000,
        (tsc_hz / 1000) % 1000,
        time::apic_timer_hz() / 1000,
        time::HZ
    );

    time::init_wall_clock();
    crate::task::init();
    crate::proc::init();
    crate::arch::syscall::init(crate::syscall::handle);

    pci::init(platform);
    pci::print_table();
    crate::block::init();
    crate::vfs::init_root(initramfs);
    crate::vfs::mount_first_ext2();
    crate::vfs::writeback::start();

    if let Some(suite) = cmdline::value("bench") {
        crate::bench::run(suite);
    }
    if let Some(suite) = cmdline::value("test") {
        crate::ktest::run(suite);
    }
    if cmdline::value("poweroff").is_some() {
        kprintln!("poweroff requested on the command line");
        acpi::poweroff();
    }
    kprintln!("boot complete in {} ms", time::now_ns() / 1_000_000);
    let init = cmdline::value("init").unwrap_or(DEFAULT_INIT);
    let name = init.rsplit('/').next().unwrap_or(init);
    let mut args = alloc::vec![name];
    if init == DEFAULT_INIT {
        args.push("--boot");
    }
    args.extend(cmdline::init_args());
    match crate::proc::start_init(init, &args) {
        Ok(pid) => log::info!("started {init} as pid {pid}"),
        Err(e) => log::error!("cannot start {init}: {e:?}; idle"),
    }
    idle()
}

/// The first program (PID 1), unless the command line says `init=PATH`.
const DEFAULT_INIT: &str = "/bin/sh";

/// Halt between interrupts and run whatever becomes runnable (background writeback is
/// the writeback task's job, see `vfs::writeback`).
fn idle() -> ! {
    loop {
        crate::task::idle_step();
    }
}
