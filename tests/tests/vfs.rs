//! The kernel's `vfs` suite (kernel/src/ktest/vfs.rs) with an ext2 disk made by
//! `mke2fs -d` (vda) and a blank disk (vdb) for the raw-device test. Afterwards the ext2
//! image must be clean for `e2fsck -fn` and hold what the suite wrote through the VFS,
//! and vdb must hold the sectors written through `/dev/vdb`.

use tests::*;

/// Must match kernel/src/ktest/vfs.rs.
const HELLO: &[u8] = b"hello from the host\n";
const NESTED: &[u8] = b"nested file\n";
const WRITTEN_SEED: u64 = 21;
const WRITTEN_LEN: usize = 300_000;
const RAW_FIRST: u64 = 64;
const RAW_SECTORS: u64 = 8;
const RAW_SEED: u64 = 9;

fn ext2_with_tree(name: &str) -> std::path::PathBuf {
    let img = scratch_disk(name, 32);
    let tree = boot::target_dir()
        .join("test-disks")
        .join(format!("{name}.tree"));
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(tree.join("dir")).expect("tree dir");
    std::fs::write(tree.join("hello.txt"), HELLO).expect("hello.txt");
    std::fs::write(tree.join("dir/nested.txt"), NESTED).expect("nested.txt");
    let out = std::process::Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext2", "-b", "1024", "-d"])
        .arg(&tree)
        .arg(&img)
        .output()
        .expect("run mke2fs");
    assert!(
        out.status.success(),
        "mke2fs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    img
}

#[test]
fn vfs_suite() {
    let img = ext2_with_tree("vfs-ext2");
    let raw = scratch_disk("vfs-raw", 8);
    let q = Qemu {
        disks: vec![Disk::new(&img, Bus::Virtio), Disk::new(&raw, Bus::Virtio)],
        ..suite("vfs", Firmware::Bios, Machine::Q35)
    };
    let o = run(&q);
    let passed = assert_suite_passed(&o);
    assert_eq!(passed.len(), 14, "{passed:?}");
    assert_lock_order_checked(&o);
    assert_fsck_clean(&img);
    let written = debugfs_read(&img, "/vfs/written.bin").expect("vfs/written.bin");
    assert!(
        written == pattern_bytes(WRITTEN_LEN, WRITTEN_SEED),
        "vfs/written.bin differs from what the kernel wrote"
    );
    assert_eq!(
        debugfs_read(&img, "/vfs/renamed.txt").expect("vfs/renamed.txt"),
        b"renamed through the VFS\n"
    );
    assert!(
        debugfs_read(&img, "/vfs/name.txt").is_none(),
        "old name still there"
    );
    assert!(
        debugfs_read(&img, "/vfs/tmp.bin").is_none(),
        "unlinked file still there"
    );
    assert_eq!(debugfs_read(&img, "/hello.txt").expect("hello.txt"), HELLO);
    let data = std::fs::read(&raw).expect("read raw disk");
    for s in RAW_FIRST..RAW_FIRST + RAW_SECTORS {
        let off = (s * 512) as usize;
        assert!(
            drivers::block::pattern::check_sector(&data[off..off + 512], s, RAW_SEED),
            "vdb sector {s} does not hold what was written through /dev/vdb"
        );
    }
    assert!(
        data[..(RAW_FIRST * 512) as usize].iter().all(|&b| b == 0),
        "raw writes touched sectors before {RAW_FIRST}"
    );
}
