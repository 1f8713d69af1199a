//! Host-side tooling for AliasOS: builds the BIOS and UEFI disk images around the kernel
//! ELF and the initramfs (the root file system, passed as the bootloader's ramdisk), and runs
//! QEMU with the project's standard machine, disks and debug devices.
//!
//! Used by `make run` (through the `boot` binary), by the QEMU tests in `tests/`, and by
//! the benchmarks.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod gpt;
pub mod initramfs;
pub mod modgraph;
pub mod profile;
pub mod usb;

pub use initramfs::initramfs;

/// The kernel ELF, built by cargo as an artifact dependency of this crate.
pub fn kernel_elf() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_FILE_KERNEL_kernel"))
}

/// The workspace's `target/` folder (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target"),
    }
}

/// A fresh, uniquely named temporary file beside `path` (same directory, so a rename
/// into place is atomic). Every caller gets its own name: the tests of one binary are
/// threads of one process, so a name made from the process id alone would be shared.
/// The file is removed when the returned handle drops unless it was persisted.
pub fn temp_beside(path: &Path) -> Result<tempfile::TempPath, String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let stem = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!(".{stem}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map(|f| f.into_temp_path())
        .map_err(|e| format!("temporary file in {}: {e}", dir.display()))
}

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    let boot = Path::new(env!("CARGO_MANIFEST_DIR"));
    boot.parent().unwrap_or(boot).to_path_buf()
}

/// Firmware the machine boots with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS, booting `aliasos-bios.img` (MBR).
    Bios,
    /// OVMF, booting `aliasos-uefi.img` (GPT + EFI system partition).
    Uefi,
}

impl fmt::Display for Firmware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
        })
    }
}

/// QEMU machine type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// Q35 + ICH9: PCIe with ECAM (ACPI MCFG), AHCI built in.
    Q35,
    /// i440FX + PIIX: legacy PCI, configuration by port I/O only.
    Pc,
}

impl Machine {
    fn qemu_name(self) -> &'static str {
        match self {
            Machine::Q35 => "q35",
            Machine::Pc => "pc",
        }
    }
}

impl std::str::FromStr for Machine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "q35" => Ok(Machine::Q35),
            "pc" | "i440fx" => Ok(Machine::Pc),
            other => Err(format!("unknown machine '{other}' (use q35 or pc)")),
        }
    }
}

/// The bus a data disk is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bus {
    /// virtio-blk over PCI (modern).
    Virtio,
    /// A SATA disk on an extra AHCI controller.
    Ahci,
    /// An NVMe controller with one namespace.
    Nvme,
}

impl std::str::FromStr for Bus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "virtio" | "virtio-blk" => Ok(Bus::Virtio),
            "ahci" | "sata" => Ok(Bus::Ahci),
            "nvme" => Ok(Bus::Nvme),
            other => Err(format!("unknown bus '{other}' (use virtio, ahci or nvme)")),
        }
    }
}

/// A data disk: a raw image file on a bus.
#[derive(Clone, Debug)]
pub struct Disk {
    /// Path of the raw image.
    pub path: PathBuf,
    /// Where it is attached.
    pub bus: Bus,
    /// Attach read-only (virtio only; QEMU's ide-hd refuses read-only drives).
    pub readonly: bool,
    /// A QEMU blkdebug config (error injection) to put under the raw format node.
    pub blkdebug: Option<PathBuf>,
    /// Extra `-drive` options.
    pub drive_opts: Option<String>,
    /// NVMe only: the namespace's options in place of [`NVME_NAMESPACE_OPTS`].
    pub namespace_opts: Option<String>,
}

/// Options of every NVMe namespace unless a disk says otherwise: the Copy command's
/// limits raised from QEMU's defaults (ranges of 128 blocks, 128 blocks per command) to
/// ranges of 1 MiB, 32 MiB per command and 128 ranges, as a real SSD's are.
pub const NVME_NAMESPACE_OPTS: &str = "mssrl=2048,mcl=65536,msrc=127";

impl Disk {
    /// A read-write disk on `bus`.
    pub fn new(path: impl Into<PathBuf>, bus: Bus) -> Self {
        Disk {
            path: path.into(),
            bus,
            readonly: false,
            blkdebug: None,
            drive_opts: None,
            namespace_opts: None,
        }
    }
}

/// A Linux kernel booted by QEMU itself (`-kernel`/`-initrd`/`-append`) in place of the
/// AliasOS boot image: the benchmarks' Linux peer runs on exactly the same machine.
#[derive(Clone, Debug)]
pub struct DirectKernel {
    /// The kernel (a bzImage such as Debian's `vmlinuz`).
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The kernel command line.
    pub append: String,
}

/// Where the guest's serial port goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serial {
    /// The terminal, with QEMU's monitor multiplexed (Ctrl-A X quits, Ctrl-A C monitor).
    Terminal,
    /// Captured and returned in [`Outcome::serial`].
    Capture,
}

/// Everything that describes one QEMU run.
#[derive(Clone, Debug)]
pub struct Qemu {
    pub firmware: Firmware,
    pub machine: Machine,
    /// Guest RAM, QEMU syntax (`512M`, `2G`).
    pub mem: String,
    /// Use KVM instead of TCG (slow here: /dev/kvm is PVM; see TOOLCHAIN.md).
    pub kvm: bool,
    /// Deterministic instruction counting (`-icount shift=0,sleep=off`).
    pub icount: bool,
    pub disks: Vec<Disk>,
    /// No window: `-display none`.
    pub headless: bool,
    /// Start paused with a gdb stub on :1234.
    pub gdb: bool,
    /// The kernel command line, passed through fw_cfg as `opt/aliasos/cmdline`.
    pub cmdline: Option<String>,
    pub serial: Serial,
    /// Kill QEMU after this long.
    pub timeout: Option<Duration>,
    /// Extra arguments appended verbatim.
    pub extra: Vec<String>,
    /// Number of virtual CPUs.
    pub cpus: u32,
    /// Boot this Linux kernel instead of the AliasOS image (no boot disk is attached;
    /// every other option is unchanged).
    pub direct_kernel: Option<DirectKernel>,
}

impl Default for Qemu {
    fn default() -> Self {
        Qemu {
            firmware: Firmware::Bios,
            machine: Machine::Q35,
            mem: "512M".into(),
            kvm: false,
            icount: false,
            disks: Vec::new(),
            headless: true,
            gdb: false,
            cmdline: None,
            serial: Serial::Capture,
            timeout: Some(Duration::from_secs(120)),
            extra: Vec::new(),
            cpus: 1,
            direct_kernel: None,
        }
    }
}

/// How a QEMU run ended.
#[derive(Debug)]
pub struct Outcome {
    /// QEMU's exit status; `None` if it was killed at the timeout or by a signal.
    pub status: Option<i32>,
    /// True if the run hit its timeout.
    pub timed_out: bool,
    /// Serial output (empty unless captured).
    pub serial: String,
    /// Wall-clock duration of the run.
    pub elapsed: Duration,
}

/// Exit codes the kernel reports through the isa-debug-exit device; QEMU exits with
/// `(code << 1) | 1`. A clean ACPI poweroff exits 0.
pub mod exit_code {
    /// `panic!` in the kernel.
    pub const PANIC: i32 = (0x11 << 1) | 1;
    /// An unhandled CPU exception.
    pub const EXCEPTION: i32 = (0x12 << 1) | 1;
    /// A kernel test failed.
    pub const TEST_FAILED: i32 = (0x13 << 1) | 1;
}

/// The OVMF firmware image shipped by Debian's `ovmf` package.
pub const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

/// Build (or reuse, if newer than its inputs) the disk image for `firmware`.
/// The images are `target/aliasos-bios-<tag>.img` and `target/aliasos-uefi-<tag>.img`
/// (see [`build_tag`]), the last one built also as `target/aliasos-bios.img` and
/// `target/aliasos-uefi.img`; each holds the kernel and `target/initramfs.cpio` (the bootloader's ramdisk), which is brought up to
/// date first (this builds the user tools).
pub fn image(firmware: Firmware) -> Result<PathBuf, String> {
    let ramdisk = initramfs()?;
    // Tests run in parallel threads; one builder at a time (other processes are kept
    // apart by the temporary name below).
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let kernel = kernel_elf();
    let path = target_dir().join(format!("aliasos-{firmware}-{}.img", build_tag(&kernel)));
    let newer = |a: &Path, b: &Path| -> bool {
        let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        matches!((m(a), m(b)), (Some(x), Some(y)) if x >= y)
    };
    // The boot tool itself decides the image layout, so a rebuilt tool rebuilds images.
    // The initramfs is rewritten only when its contents change.
    let tool = std::env::current_exe().ok();
    let fresh = newer(&path, &kernel)
        && newer(&path, &ramdisk)
        && tool.as_deref().is_none_or(|t| newer(&path, t));
    if fresh {
        publish(&path, &target_dir().join(format!("aliasos-{firmware}.img")))?;
        return Ok(path);
    }
    std::fs::create_dir_all(target_dir()).map_err(|e| format!("create target dir: {e}"))?;
    let mut config = bootloader::BootConfig::default();
    config.serial_logging = false;
    config.frame_buffer_logging = false;
    let mut builder = bootloader::DiskImageBuilder::new(boot_kernel(&kernel)?);
    builder.set_boot_config(&config);
    builder.set_ramdisk(ramdisk);
    // Write to a temporary name and rename, so concurrent test runs never see a half image.
    let tmp = temp_beside(&path)?;
    let result = match firmware {
        Firmware::Bios => builder
            .create_bios_image(&tmp)
            .map_err(|e| format!("{e:#}")),
        // Same inputs, same bytes: the GPT's random GUIDs are replaced by fixed ones.
        Firmware::Uefi => builder
            .create_uefi_image(&tmp)
            .map_err(|e| format!("{e:#}"))
            .and_then(|()| gpt::fix_guids(&tmp)),
    };
    if let Err(e) = result {
        return Err(format!("building {firmware} image: {e}"));
    }
    tmp.persist(&path)
        .map_err(|e| format!("rename image: {e}"))?;
    publish(&path, &target_dir().join(format!("aliasos-{firmware}.img")))?;
    Ok(path)
}

/// Several kernel builds coexist in `target/`: cargo builds the kernel artifact once per
/// set of unified dependency features (`cargo test --workspace` and `cargo run -p bench`
/// get different ones), each in its own folder. Each build gets its own stripped kernel
/// and images, named with this tag (a hash of the kernel's path), so one build never
/// boots (or a profile never symbolizes against) another build's kernel, even when two
/// run at once.
fn build_tag(kernel: &Path) -> String {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same path gives the same tag in every process.
    let mut h = std::hash::DefaultHasher::new();
    kernel.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Make `name` (the image name the README and `make image` promise) the image at `built`,
/// atomically: a hard link under a temporary name, renamed over it (a copy where hard
/// links are not possible).
fn publish(built: &Path, name: &Path) -> Result<(), String> {
    let tmp = temp_beside(name)?;
    let tmp_path = tmp.to_path_buf();
    std::fs::remove_file(&tmp_path).map_err(|e| format!("{}: {e}", tmp_path.display()))?;
    if std::fs::hard_link(built, &tmp_path).is_err() {
        std::fs::copy(built, &tmp_path)
            .map_err(|e| format!("copy {} to {}: {e}", built.display(), tmp_path.display()))?;
    }
    tmp.persist(name)
        .map_err(|e| format!("rename {}: {e}", name.display()))?;
    Ok(())
}

/// The kernel as it goes into the images: the ELF without its debug sections
/// (`llvm-objcopy --strip-debug` from the toolchain's llvm-tools), so firmware loads a
/// few MiB instead of tens (BIOS disk reads under TCG are slow). gdb uses the full ELF
/// (`kernel_elf`). Without llvm-objcopy the full ELF goes in.
fn boot_kernel(kernel: &Path) -> Result<PathBuf, String> {
    let out = target_dir().join(format!("kernel-boot-{}.elf", build_tag(kernel)));
    let newer = std::fs::metadata(&out)
        .and_then(|m| m.modified())
        .ok()
        .zip(std::fs::metadata(kernel).and_then(|m| m.modified()).ok())
        .is_some_and(|(o, k)| o >= k);
    if newer {
        return Ok(out);
    }
    let Some(objcopy) = llvm_objcopy() else {
        return Ok(kernel.to_path_buf());
    };
    let tmp = temp_beside(&out)?;
    let ok = Command::new(&objcopy)
        .arg("--strip-debug")
        .arg(kernel)
        .arg(&tmp)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        return Ok(kernel.to_path_buf());
    }
    tmp.persist(&out)
        .map_err(|e| format!("rename {}: {e}", out.display()))?;
    Ok(out)
}

/// `llvm-objcopy` of the pinned toolchain's llvm-tools component, if installed.
fn llvm_objcopy() -> Option<PathBuf> {
    let out = Command::new("rustc")
        .current_dir(workspace_root())
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let sysroot = String::from_utf8(out.stdout).ok()?;
    let p = Path::new(sysroot.trim()).join("lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-objcopy");
    p.exists().then_some(p)
}

impl Qemu {
    /// The full QEMU argument list for this run (the boot image is built first).
    pub fn args(&self) -> Result<Vec<String>, String> {
        let img = match &self.direct_kernel {
            Some(_) => None,
            None => Some(image(self.firmware)?),
        };
        let mut a: Vec<String> = Vec::new();
        let mut push = |s: &str| a.push(s.to_string());
        push("-machine");
        push(self.machine.qemu_name());
        push("-accel");
        push(if self.kvm { "kvm" } else { "tcg" });
        if self.kvm {
            push("-cpu");
            push("host");
        } else {
            // Every feature TCG can emulate, so the kernel sees a modern CPU.
            push("-cpu");
            push("max");
        }
        push("-smp");
        push(&self.cpus.to_string());
        push("-m");
        push(&self.mem);
        push("-no-reboot");
        push("-nic");
        push("none");
        push("-device");
        push("isa-debug-exit,iobase=0xf4,iosize=0x04");
        if self.icount {
            push("-icount");
            push("shift=0,sleep=off");
        }
        if self.firmware == Firmware::Uefi {
            push("-bios");
            push(OVMF);
        }
        if self.headless {
            push("-display");
            push("none");
        }
        match self.serial {
            Serial::Terminal => {
                push("-serial");
                push("mon:stdio");
            }
            Serial::Capture => {
                push("-serial");
                push("stdio");
                push("-monitor");
                push("none");
            }
        }
        if self.gdb {
            push("-s");
            push("-S");
        }
        if let Some(cmdline) = &self.cmdline {
            push("-fw_cfg");
            push(&format!(
                "name=opt/aliasos/cmdline,string={}",
                cmdline.replace(',', ",,")
            ));
        }
        if let Some(dk) = &self.direct_kernel {
            push("-kernel");
            push(&dk.kernel.display().to_string());
            push("-initrd");
            push(&dk.initrd.display().to_string());
            push("-append");
            push(&dk.append);
        }
        if let Some(img) = &img {
            // The boot disk: on q35 it lands on the ICH9 AHCI at 00:1f.2, on pc on PIIX IDE.
            // bootindex=0 is required: without it SeaBIOS may boot an empty data disk and hang.
            push("-drive");
            // snapshot=on: the guest never changes the boot image, and many QEMUs can share it.
            push(&format!(
                "if=none,id=boot,format=raw,snapshot=on,file={}",
                img.display()
            ));
            push("-device");
            push("ide-hd,drive=boot,bootindex=0");
        }
        let mut ahci_ports = 0;
        let mut ahci_ctrl = 0;
        for (i, d) in self.disks.iter().enumerate() {
            let mut drive = match &d.blkdebug {
                // blkdebug injects errors only *under* the raw format node.
                Some(conf) => format!(
                    "if=none,id=disk{i},format=raw,file.driver=blkdebug,file.config={},file.image.filename={}",
                    conf.display(),
                    d.path.display()
                ),
                None => format!("if=none,id=disk{i},format=raw,file={}", d.path.display()),
            };
            if d.readonly {
                drive.push_str(",readonly=on");
            }
            if let Some(o) = &d.drive_opts {
                drive.push(',');
                drive.push_str(o);
            }
            push("-drive");
            push(&drive);
            push("-device");
            match d.bus {
                Bus::Virtio => push(&format!("virtio-blk-pci,drive=disk{i},disable-legacy=on")),
                Bus::Ahci => {
                    // One extra AHCI controller (6 ports) for every six SATA disks.
                    if ahci_ports % 6 == 0 {
                        ahci_ctrl += 1;
                        push(&format!("ahci,id=ahci{ahci_ctrl}"));
                        push("-device");
                    }
                    push(&format!(
                        "ide-hd,drive=disk{i},bus=ahci{ahci_ctrl}.{}",
                        ahci_ports % 6
                    ));
                    ahci_ports += 1;
                }
                Bus::Nvme => {
                    push(&format!("nvme,id=nvme{i},serial=aliasos{i}"));
                    push("-device");
                    push(&format!(
                        "nvme-ns,drive=disk{i},bus=nvme{i},nsid=1,{}",
                        d.namespace_opts.as_deref().unwrap_or(NVME_NAMESPACE_OPTS)
                    ));
                }
            }
        }
        a.extend(self.extra.iter().cloned());
        Ok(a)
    }

    /// Run QEMU to completion (or the timeout).
    pub fn run(&self) -> Result<Outcome, String> {
        let args = self.args()?;
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(&args);
        cmd.stdin(if self.serial == Serial::Terminal {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
        if self.serial == Serial::Capture {
            cmd.stdout(Stdio::piped());
        }
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start qemu-system-x86_64: {e} (run `make deps`)"))?;
        // Read serial output on a thread so a chatty guest never blocks on a full pipe.
        let reader = child.stdout.take().map(|mut out| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = out.read_to_end(&mut buf);
                buf
            })
        });
        let mut timed_out = false;
        let status = loop {
            match child
                .try_wait()
                .map_err(|e| format!("waiting for qemu: {e}"))?
            {
                Some(s) => break s,
                None => {
                    if self.timeout.is_some_and(|t| start.elapsed() > t) {
                        timed_out = true;
                        let _ = child.kill();
                        break child.wait().map_err(|e| format!("waiting for qemu: {e}"))?;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        let serial = reader
            .map(|r| String::from_utf8_lossy(&r.join().unwrap_or_default()).into_owned())
            .unwrap_or_default();
        Ok(Outcome {
            status: if timed_out { None } else { status.code() },
            timed_out,
            serial,
            elapsed: start.elapsed(),
        })
    }
}
