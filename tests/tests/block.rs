//! The block layer and disk drivers against QEMU's device models. After each run the host
//! reads the image files to prove the bytes the kernel wrote reached the device.

use tests::*;

const MAIN_MIB: u64 = 96;
const EIO_SECTOR: u64 = 4096;

/// Boot the `blk` suite with `disks` and `args`, check every test passed, the main disk
/// (`main`, named `main_name`) was listed, and the image holds what the kernel wrote.
fn blk_suite(disks: Vec<Disk>, args: &str, main: &std::path::Path, main_name: &str) -> Outcome {
    blk_suite_with(
        disks,
        args,
        main,
        main_name,
        Vec::new(),
        Firmware::Bios,
        Machine::Q35,
    )
}

/// [`blk_suite`] with `extra` QEMU arguments, on `firmware` and `machine`.
fn blk_suite_with(
    disks: Vec<Disk>,
    args: &str,
    main: &std::path::Path,
    main_name: &str,
    extra: Vec<String>,
    firmware: Firmware,
    machine: Machine,
) -> Outcome {
    let q = Qemu {
        disks,
        extra,
        ..with_args(suite("blk", firmware, machine), args)
    };
    let o = run(&q);
    let passed = assert_suite_passed(&o);
    assert!(passed.len() >= 8, "{passed:?}");
    assert!(
        o.serial.contains(&format!("disk {main_name}: 96 MiB")),
        "boot log lacks the disk line:\n{}",
        o.serial
    );
    assert_eq!(check_blk_regions(main), 45 + 1024 + 384 + 131_072);
    o
}

/// The block suite on three virtio-blk disks (vda; vdb read-only; vdc failing at
/// [`EIO_SECTOR`]); `tag` names the scratch files, `extra` is added to the kernel command
/// line. Returns the boot log's line for vda.
fn virtio_suite_run(tag: &str, extra: &str) -> String {
    let main = scratch_disk(&format!("blk-{tag}-main"), MAIN_MIB);
    let ro = scratch_disk(&format!("blk-{tag}-ro"), 8);
    let eio = scratch_disk(&format!("blk-{tag}-eio"), 16);
    let disks = vec![
        Disk::new(&main, Bus::Virtio),
        Disk {
            readonly: true,
            ..Disk::new(&ro, Bus::Virtio)
        },
        Disk {
            blkdebug: Some(blkdebug_eio_config(&format!("{tag}-eio"), EIO_SECTOR)),
            ..Disk::new(&eio, Bus::Virtio)
        },
    ];
    let args = format!(
        "blk_test=vda,vdb ro=vdb eio=vdc:{EIO_SECTOR} size_vda={} {extra}",
        MAIN_MIB << 20
    );
    let o = blk_suite(disks, &args, &main, "vda");
    // The boot log's line for the disk lists what was negotiated, ending in how its
    // completions arrive.
    let vda = disk_line(&o, "vda").to_string();
    assert!(
        vda.split(", ").any(|f| f.trim() == "MSI-X"),
        "virtio-blk completions are not interrupt-driven by MSI-X: {vda}"
    );
    let ro_bytes = std::fs::read(&ro).unwrap();
    assert!(
        ro_bytes.iter().all(|&b| b == 0),
        "the read-only disk was written"
    );
    vda
}

#[test]
fn virtio_blk_suite() {
    let vda = virtio_suite_run("virtio", "");
    // QEMU offers event indices: notifications and interrupts only where asked for.
    assert!(
        vda.split(", ").any(|f| f.trim() == "event index"),
        "event indices were not negotiated: {vda}"
    );
}

/// The same without event indices: the device is notified unless it says not to, and
/// interrupts for every completion.
#[test]
fn virtio_blk_suite_without_event_idx() {
    let vda = virtio_suite_run("virtio-noevent", "virtio_event_idx=off");
    assert!(
        vda.split(", ").any(|f| f.trim() == "event index off"),
        "virtio_event_idx=off was not taken: {vda}"
    );
}

/// The block suite on two disks of an extra AHCI controller (ports 0 and 1: sda and sdb,
/// the second failing at [`EIO_SECTOR`]); `tag` names the scratch files, `extra` is added
/// to the kernel command line.
fn ahci_suite_run(tag: &str, extra: &str) -> Outcome {
    let main = scratch_disk(&format!("blk-{tag}-main"), MAIN_MIB);
    let eio = scratch_disk(&format!("blk-{tag}-eio"), 16);
    // On q35 the boot disk sits on the chipset's AHCI at 00:1f.2, probed later: sdc.
    let disks = vec![
        Disk::new(&main, Bus::Ahci),
        Disk {
            blkdebug: Some(blkdebug_eio_config(&format!("{tag}-eio"), EIO_SECTOR)),
            ..Disk::new(&eio, Bus::Ahci)
        },
    ];
    let args = format!(
        "blk_test=sda eio=sdb:{EIO_SECTOR} size_sda={} {extra}",
        MAIN_MIB << 20
    );
    let o = blk_suite(disks, &args, &main, "sda");
    assert!(
        o.serial.contains("disk sdc:"),
        "the boot disk on the chipset AHCI was not found:\n{}",
        o.serial
    );
    assert!(
        o.serial.contains("interrupts by MSI"),
        "AHCI completions are not interrupt-driven:\n{}",
        o.serial
    );
    o
}

/// The boot log's `disk NAME:` line.
fn disk_line<'a>(o: &'a Outcome, name: &str) -> &'a str {
    let tag = format!("disk {name}:");
    o.serial
        .lines()
        .find(|l| l.starts_with(&tag))
        .unwrap_or_else(|| panic!("no {tag} line:\n{}", o.serial))
}

#[test]
fn ahci_suite() {
    let o = ahci_suite_run("ahci", "");
    // Reads and writes went as NCQ commands; the injected errors hit queued commands (the
    // port is reset after an NCQ error).
    let sda = disk_line(&o, "sda");
    assert!(
        sda.contains("NCQ depth 32"),
        "QEMU's AHCI disk offers NCQ: {sda}"
    );
    assert!(
        o.serial.contains("NCQ commands outstanding; COMRESET"),
        "the I/O errors were not seen on queued commands:\n{}",
        o.serial
    );
}

#[test]
fn ahci_suite_without_ncq() {
    let o = ahci_suite_run("ahci-noncq", "ahci_ncq=off");
    let sda = disk_line(&o, "sda");
    assert!(sda.contains("NCQ off"), "ahci_ncq=off was not taken: {sda}");
    assert!(
        !o.serial.contains("NCQ commands outstanding"),
        "queued commands with NCQ off:\n{}",
        o.serial
    );
}

#[test]
fn nvme_suite() {
    let o = nvme_suite_run("nvme", "", Firmware::Bios, Machine::Q35);
    // QEMU mapped the commands' data by SGLs, both a lone Data Block descriptor (type 0:
    // the contiguous requests of the sequential write) and a Last Segment list (type 3:
    // the scattered sub-page segments of the multi-segment round trip), and by PRPs
    // (page-sized segments).
    let data_block = o.trace_count("pci_nvme_map_sgl type 0x0 ");
    let list = o.trace_count("pci_nvme_map_sgl type 0x3 ");
    let prp = o.big_prp_maps();
    assert!(
        data_block >= 128 && list > 0 && prp >= 128,
        "SGL Data Block maps {data_block}, SGL list maps {list}, PRP maps of 64 KiB or more {prp}"
    );
}

/// The same suite with SGLs forbidden (`nvme_sgl=off`): every command by PRPs, as on a
/// controller without SGLs; on UEFI and the pc machine.
#[test]
fn nvme_suite_with_prps_alone_uefi_pc() {
    let o = nvme_suite_run("nvme-prp", "nvme_sgl=off", Firmware::Uefi, Machine::Pc);
    let (sgl, prp) = (o.trace_count("pci_nvme_map_sgl"), o.big_prp_maps());
    // Both halves of the sequential write (scattered and contiguous) by PRPs.
    assert!(
        sgl == 0 && prp >= 256,
        "SGL maps {sgl}, PRP maps of 64 KiB or more {prp}"
    );
}

/// What a run of the NVMe block suite left: QEMU's trace of how it mapped each command's
/// data.
struct NvmeRun {
    trace: String,
}

impl NvmeRun {
    /// Trace lines of event `name`.
    fn trace_count(&self, name: &str) -> usize {
        self.trace.lines().filter(|l| l.contains(name)).count()
    }

    /// PRP maps of 64 KiB or more: I/O commands (the admin commands, the firmware's
    /// reads and the suite's small requests map less), e.g. `pci_nvme_map_prp trans_len
    /// 524288 len 524288 prp1 0x... prp2 0x... num_prps 129`.
    fn big_prp_maps(&self) -> usize {
        self.trace
            .lines()
            .filter(|l| l.contains("pci_nvme_map_prp"))
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                words.find(|&w| w == "len")?;
                words.next()?.parse::<u64>().ok()
            })
            .filter(|&len| len >= 64 << 10)
            .count()
    }
}

/// Run the block suite on two NVMe controllers (images and trace named after `tag`),
/// with `more` on the kernel command line, on `firmware` and `machine`; check the boot
/// lines and the shutdowns.
fn nvme_suite_run(tag: &str, more: &str, firmware: Firmware, machine: Machine) -> NvmeRun {
    let main = scratch_disk(&format!("blk-{tag}-main"), MAIN_MIB);
    let eio = scratch_disk(&format!("blk-{tag}-eio"), 16);
    // Each disk is a controller of its own with one namespace: nvme0n1 and nvme1n1.
    let disks = vec![
        Disk::new(&main, Bus::Nvme),
        Disk {
            blkdebug: Some(blkdebug_eio_config(&format!("{tag}-eio"), EIO_SECTOR)),
            ..Disk::new(&eio, Bus::Nvme)
        },
    ];
    let args = format!(
        "blk_test=nvme0n1 eio=nvme1n1:{EIO_SECTOR} size_nvme0n1={} {more}",
        MAIN_MIB << 20
    );
    let trace_file = main.with_extension("trace");
    let _ = std::fs::remove_file(&trace_file);
    let extra = vec![
        "-trace".into(),
        "pci_nvme_map_sgl".into(),
        "-trace".into(),
        "pci_nvme_map_prp".into(),
        "-D".into(),
        trace_file.display().to_string(),
    ];
    let o = blk_suite_with(disks, &args, &main, "nvme0n1", extra, firmware, machine);
    let line = o
        .serial
        .lines()
        .find(|l| l.starts_with("disk nvme0n1: "))
        .unwrap_or_else(|| panic!("no boot-log line for nvme0n1:\n{}", o.serial));
    assert!(
        line.split(", ").any(|f| f.trim() == "MSI-X"),
        "NVMe completions are not interrupt-driven by MSI-X: {line}"
    );
    let sgls = line.split(", ").any(|f| f.trim() == "SGLs");
    assert_eq!(sgls, more.is_empty(), "SGLs in the boot line: {line}");
    assert!(o.serial.contains("disk nvme1n1: 16 MiB"), "{}", o.serial);
    // Each controller was told of the power-off, and finished its shutdown.
    assert_eq!(
        o.serial.matches(": shutdown complete").count(),
        2,
        "NVMe shutdown notifications:\n{}",
        o.serial
    );
    let trace = std::fs::read_to_string(&trace_file).unwrap_or_default();
    let _ = std::fs::remove_file(&trace_file);
    NvmeRun { trace }
}

/// QD32 random reads for 40 s each on virtio-blk, AHCI and NVMe in one machine, under
/// `-icount shift=auto,sleep=off` (the guest's sense of time moves with the host's load,
/// so completions arrive at shifting moments): no request may fail and no completion
/// may stall. (A QD32 run once hung: the benchmark loop locked a list with interrupts
/// on that the completion handler also locked. The NVMe driver once read a completion
/// entry byte by byte and could take an old command identifier with a new phase tag: a
/// command never completed within the first second at QD32.)
#[test]
fn soak_qd32_random_reads_do_not_stall() {
    let vd = scratch_disk("soak-virtio", 64);
    let sd = scratch_disk("soak-ahci", 64);
    let nv = scratch_disk("soak-nvme", 64);
    let q = Qemu {
        disks: vec![
            Disk::new(&vd, Bus::Virtio),
            Disk::new(&sd, Bus::Ahci),
            Disk::new(&nv, Bus::Nvme),
        ],
        extra: vec!["-icount".into(), "shift=auto,sleep=off".into()],
        timeout: Some(std::time::Duration::from_secs(400)),
        ..with_args(
            suite("soak", Firmware::Bios, Machine::Q35),
            "blk_test=vda,sda,nvme0n1 soak_secs=40",
        )
    };
    let o = run(&q);
    assert_suite_passed(&o);
    for disk in ["vda", "sda", "nvme0n1"] {
        assert!(
            o.serial.contains(&format!("soak {disk}: ")),
            "no soak figures for {disk}:\n{}",
            o.serial
        );
    }
}
