//! `boot`: build the AliasOS images and run them in QEMU, or write one to a USB stick.
//!
//! ```text
//! boot image                       build target/aliasos-{bios,uefi}.img (with the initramfs)
//! boot initramfs                   build the user tools and target/initramfs.cpio
//! boot kernel-elf                  print the kernel ELF's path (for gdb)
//! boot run [options] [-- QEMU...]  boot in QEMU (serial on this terminal)
//!   --uefi            boot with OVMF instead of SeaBIOS
//!   --machine q35|pc  machine type (default q35)
//!   --mem SIZE        guest RAM (default 512M)
//!   --kvm             use KVM instead of TCG
//!   --icount          deterministic instruction counting
//!   --disk PATH[:BUS] attach a data disk; BUS = virtio (default), ahci, nvme; repeatable
//!   --headless        no display window
//!   --gdb             wait for gdb on :1234
//!   --cmdline STR     kernel command line (fw_cfg opt/aliasos/cmdline)
//!   --timeout SECS    kill QEMU after SECS
//! boot usb DEV [--bios] [--yes]    write the (UEFI, or BIOS) image to a USB stick
//! boot profile LOG [--svg FILE] [--folded FILE] [--top N]
//!                                  symbolize the samples of a kernel booted with
//!                                  `profile`: flat top N (30), flame graph, folded stacks
//! boot modgraph [DIR]              the layers of the kernel's top-level modules
//!                                  (kernel/src); fails on an import cycle
//! ```
//! The exit status is QEMU's: 0 after a clean poweroff, non-zero after a panic or failure.

use boot::{Bus, Disk, Firmware, Qemu, Serial};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

fn usage() -> ExitCode {
    eprintln!(
        "{}",
        include_str!("main.rs")
            .lines()
            .skip(2)
            .take(23)
            .map(|l| l.trim_start_matches("//! "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    ExitCode::from(2)
}

fn parse_disk(spec: &str) -> Result<Disk, String> {
    let mut parts = spec.split(':');
    let path = parts.next().unwrap_or_default();
    if path.is_empty() {
        return Err("--disk needs a path".into());
    }
    let bus: Bus = match parts.next() {
        Some(b) => b.parse()?,
        None => Bus::Virtio,
    };
    let mut disk = Disk::new(path, bus);
    for flag in parts {
        match flag {
            "ro" => disk.readonly = true,
            other => return Err(format!("unknown disk flag '{other}'")),
        }
    }
    if !disk.path.exists() {
        return Err(format!("disk image {} does not exist", disk.path.display()));
    }
    Ok(disk)
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let mut q = Qemu {
        serial: Serial::Terminal,
        timeout: None,
        headless: false,
        ..Qemu::default()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--uefi" => q.firmware = Firmware::Uefi,
            "--machine" => q.machine = value()?.parse()?,
            "--mem" => q.mem = value()?,
            "--kvm" => q.kvm = true,
            "--icount" => q.icount = true,
            "--disk" => q.disks.push(parse_disk(&value()?)?),
            "--headless" => q.headless = true,
            "--gdb" => q.gdb = true,
            "--cmdline" => q.cmdline = Some(value()?),
            "--timeout" => {
                let secs: u64 = value()?.parse().map_err(|e| format!("--timeout: {e}"))?;
                q.timeout = Some(Duration::from_secs(secs));
            }
            "--" => {
                q.extra.extend(it.by_ref().cloned());
            }
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    // Without a display server QEMU cannot open a window; fall back to headless.
    if !q.headless
        && std::env::var_os("DISPLAY").is_none()
        && std::env::var_os("WAYLAND_DISPLAY").is_none()
    {
        q.headless = true;
    }
    if q.gdb {
        eprintln!("QEMU waits for gdb on localhost:1234 (run `make gdb` in another terminal)");
    }
    eprintln!("qemu-system-x86_64 {}", q.args()?.join(" "));
    eprintln!("(Ctrl-A X quits QEMU, Ctrl-A C switches to its monitor)");
    let outcome = q.run()?;
    Ok(match outcome.status {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => {
            eprintln!("QEMU exited with status {code}");
            ExitCode::from(code.clamp(1, 255) as u8)
        }
        None => ExitCode::from(124),
    })
}

/// `boot profile LOG [--svg FILE] [--top N]`.
fn profile(args: &[String]) -> Result<ExitCode, String> {
    let mut log = None;
    let mut svg = None;
    let mut folded = None;
    let mut top = 30;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--svg" => svg = Some(PathBuf::from(it.next().ok_or("--svg needs a file")?)),
            "--folded" => folded = Some(PathBuf::from(it.next().ok_or("--folded needs a file")?)),
            "--top" => {
                top = it
                    .next()
                    .ok_or("--top needs a number")?
                    .parse()
                    .map_err(|e| format!("--top: {e}"))?
            }
            other if log.is_none() => log = Some(PathBuf::from(other)),
            other => return Err(format!("unexpected argument '{other}'")),
        }
    }
    let log = log.ok_or("usage: boot profile LOG [--svg FILE] [--top N]")?;
    let text = std::fs::read(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let samples = boot::profile::parse(&String::from_utf8_lossy(&text))?;
    let mut sym =
        boot::profile::Symbolizer::new(&boot::kernel_elf(), &boot::profile::user_tools_dir());
    let report = boot::profile::report(&samples, &mut sym);
    print!("{}", report.flat_text(top));
    if let Some(f) = folded {
        std::fs::write(&f, report.folded.join("\n") + "\n")
            .map_err(|e| format!("{}: {e}", f.display()))?;
    }
    if let Some(svg) = svg {
        let title = format!("AliasOS: {}", log.display());
        std::fs::write(&svg, report.flame_graph(&title)?)
            .map_err(|e| format!("{}: {e}", svg.display()))?;
        println!("flame graph: {}", svg.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Show cargo's progress when the user tools are (re)built.
    boot::initramfs::set_verbose(true);
    let result = match args.first().map(String::as_str) {
        Some("image") => (|| {
            for fw in [Firmware::Bios, Firmware::Uefi] {
                println!("{}", boot::image(fw)?.display());
            }
            Ok(ExitCode::SUCCESS)
        })(),
        Some("initramfs") => (|| {
            println!("{}", boot::initramfs()?.display());
            Ok(ExitCode::SUCCESS)
        })(),
        Some("run") => run(&args[1..]),
        Some("kernel-elf") => {
            println!("{}", boot::kernel_elf().display());
            Ok(ExitCode::SUCCESS)
        }
        Some("usb") => (|| {
            let dev = args
                .get(1)
                .ok_or("usage: boot usb /dev/sdX [--bios] [--yes]")?;
            // Most PCs sold since ~2020 boot UEFI only; --bios writes the MBR image instead.
            let fw = if args.iter().any(|a| a == "--bios") {
                Firmware::Bios
            } else {
                Firmware::Uefi
            };
            let img = boot::image(fw)?;
            boot::usb::write_image(&img, &PathBuf::from(dev), args.iter().any(|a| a == "--yes"))?;
            Ok(ExitCode::SUCCESS)
        })(),
        Some("profile") => profile(&args[1..]),
        Some("modgraph") => (|| {
            let dir = PathBuf::from(args.get(1).map_or("kernel/src", String::as_str));
            let g = boot::modgraph::ModuleGraph::scan(&dir)?;
            print!("{}", g.layers());
            let report = g.cycle_report();
            if report.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprint!("{report}");
                Ok(ExitCode::FAILURE)
            }
        })(),
        _ => return usage(),
    };
    result.unwrap_or_else(|e: String| {
        eprintln!("boot: {e}");
        ExitCode::FAILURE
    })
}
