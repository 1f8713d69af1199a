//! ext2 through the page cache on real disks: the kernel's `fs` suite mutates an image
//! made by `mke2fs -d`; afterwards `e2fsck -fn` must find it clean and `debugfs` must
//! read back exactly what the kernel wrote (names and patterns: kernel/src/ktest/files.rs).

use tests::*;

/// The `fs` suite on an image of `block_size`-byte blocks on `bus`.
fn fs_suite(bus: Bus, firmware: Firmware, tag: &str, block_size: u32) {
    fs_suite_on(bus, firmware, Machine::Q35, tag, block_size);
}

/// [`fs_suite`] on `machine`.
fn fs_suite_on(bus: Bus, firmware: Firmware, machine: Machine, tag: &str, block_size: u32) {
    let preloaded = pattern_bytes(3 * 1024 * 1024 + 100, 7);
    let img = ext2_image(
        &format!("fs-{tag}"),
        64,
        block_size,
        &[("preloaded.bin", preloaded)],
    );
    let q = Qemu {
        disks: vec![Disk::new(&img, bus)],
        ..suite("fs", firmware, machine)
    };
    let o = run(&q);
    let passed = assert_suite_passed(&o);
    assert_eq!(passed.len(), 5, "{passed:?}");
    assert!(
        o.serial
            .contains(&format!("mounted {} (ext2", first_disk_name(bus))),
        "no mount line for the disk:\n{}",
        o.serial
    );
    assert_fsck_clean(&img);
    assert_eq!(
        debugfs_read(&img, "/dir/a.bin").expect("dir/a.bin"),
        pattern_bytes(1024 * 1024 + 1000, 11)
    );
    assert_eq!(
        debugfs_read(&img, "/dir/new.txt").expect("dir/new.txt"),
        b"hello from AliasOS\n"
    );
    let t = debugfs_read(&img, "/dir/t.bin").expect("dir/t.bin");
    assert_eq!(t.len(), 20_014);
    assert!(t[..5000].iter().all(|&b| b == 0xAB) && t[5000..20_000].iter().all(|&b| b == 0));
    assert!(
        debugfs_read(&img, "/old.txt").is_none(),
        "renamed file still under its old name"
    );
    assert!(
        debugfs_read(&img, "/tmp.bin").is_none(),
        "unlinked file still there"
    );
}

/// The name the kernel gives the first data disk on `bus`.
fn first_disk_name(bus: Bus) -> &'static str {
    match bus {
        Bus::Virtio => "vda",
        Bus::Ahci => "sda",
        Bus::Nvme => "nvme0n1",
    }
}

#[test]
fn ext2_on_virtio_blk() {
    fs_suite(Bus::Virtio, Firmware::Bios, "virtio", 1024);
}

#[test]
fn ext2_on_ahci_uefi() {
    fs_suite(Bus::Ahci, Firmware::Uefi, "ahci", 1024);
}

#[test]
fn ext2_on_nvme() {
    // 4 KiB blocks: writeback then sends runs of up to 1 MiB, more than QEMU's controller
    // takes in one command (MDTS 512 KiB); the driver must cut them (it once refused them,
    // and the page cache gave up on the pages).
    fs_suite(Bus::Nvme, Firmware::Bios, "nvme", 4096);
}

#[test]
fn ext2_on_nvme_uefi_pc() {
    fs_suite_on(Bus::Nvme, Firmware::Uefi, Machine::Pc, "nvme-uefi-pc", 1024);
}

#[test]
fn file_larger_than_memory_with_64_mib_of_ram() {
    let img = ext2_image("fs-big", 400, 4096, &[]);
    let q = Qemu {
        mem: "64M".into(),
        disks: vec![Disk::new(&img, Bus::Virtio)],
        timeout: Some(std::time::Duration::from_secs(600)),
        ..suite("fs_big", Firmware::Bios, Machine::Q35)
    };
    let o = run(&q);
    assert_suite_passed(&o);
    assert_fsck_clean(&img);
    let big = debugfs_read(&img, "/big.bin").expect("big.bin");
    assert_eq!(big.len(), 256 << 20);
    assert!(
        big == pattern_bytes(256 << 20, 13),
        "big.bin on disk differs from what the kernel wrote"
    );
}
