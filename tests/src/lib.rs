//! Shared helpers for the tests that boot AliasOS in QEMU: scratch disks, running a
//! kernel test suite, and turning its serial output into a clear pass/fail.

use std::path::PathBuf;
use std::time::Duration;

pub mod userland;

pub use boot::{Bus, Disk, Firmware, Machine, Outcome, Qemu, exit_code};

/// A fresh, sparse scratch disk image of `mib` MiB under `target/test-disks/`.
pub fn scratch_disk(name: &str, mib: u64) -> PathBuf {
    let dir = boot::target_dir().join("test-disks");
    std::fs::create_dir_all(&dir).expect("create target/test-disks");
    let path = dir.join(format!("{name}.img"));
    let f = std::fs::File::create(&path).expect("create scratch disk");
    f.set_len(mib << 20).expect("size scratch disk");
    path
}

/// A QEMU run of kernel suite `suite` with the serial output captured.
pub fn suite(suite: &str, firmware: Firmware, machine: Machine) -> Qemu {
    let machine_name = match machine {
        Machine::Q35 => "q35",
        Machine::Pc => "pc",
    };
    Qemu {
        firmware,
        machine,
        cmdline: Some(format!("test={suite} machine={machine_name}")),
        timeout: Some(Duration::from_secs(180)),
        ..Qemu::default()
    }
}

/// Add words to the kernel command line.
pub fn with_args(mut q: Qemu, args: &str) -> Qemu {
    let cmd = q.cmdline.take().unwrap_or_default();
    q.cmdline = Some(format!("{cmd} {args}").trim().to_string());
    q
}

/// Run QEMU; a failure to even start it fails the test.
/// With `ALIASOS_SERIAL=1` in the environment the serial output is printed even when
/// the test passes (use with `-- --nocapture`).
pub fn run(q: &Qemu) -> Outcome {
    match q.run() {
        Ok(o) => {
            if std::env::var_os("ALIASOS_SERIAL").is_some() {
                eprintln!("{}", o.serial);
            }
            o
        }
        Err(e) => panic!("could not run QEMU: {e}"),
    }
}

fn describe(o: &Outcome) -> String {
    format!(
        "QEMU {} after {:.1}s; serial output:\n{}\n",
        if o.timed_out {
            "timed out".to_string()
        } else {
            format!("exited with {:?}", o.status)
        },
        o.elapsed.as_secs_f64(),
        o.serial
    )
}

/// The lock-order checker ran (the debug build has it on) and recorded some pairs of
/// locks taken one inside the other without a violation; returns how many.
pub fn assert_lock_order_checked(o: &Outcome) -> u64 {
    let pairs = o
        .serial
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("lock order: checked, ")?
                .split_once(' ')
                .and_then(|(n, rest)| {
                    rest.starts_with("ordered pairs recorded, no violation")
                        .then(|| n.parse::<u64>().ok())
                        .flatten()
                })
        })
        .unwrap_or_else(|| panic!("no lock-order summary at poweroff\n{}", describe(o)));
    assert!(pairs > 0, "the checker recorded no pair\n{}", describe(o));
    pairs
}

/// The suite ran to its summary, every test passed, and QEMU exited 0 (ACPI poweroff).
/// Returns the names of the tests that passed.
pub fn assert_suite_passed(o: &Outcome) -> Vec<String> {
    let failed: Vec<&str> = o
        .serial
        .lines()
        .filter(|l| l.starts_with("test ") && l.contains(" ... FAILED"))
        .collect();
    assert!(
        failed.is_empty(),
        "kernel tests failed: {failed:#?}\n{}",
        describe(o)
    );
    assert!(!o.timed_out, "{}", describe(o));
    assert!(
        o.serial.contains("test result: ok."),
        "no passing summary line\n{}",
        describe(o)
    );
    assert_eq!(o.status, Some(0), "{}", describe(o));
    o.serial
        .lines()
        .filter_map(|l| {
            l.strip_prefix("test ")?
                .split_once(" ... ok")
                .map(|(n, _)| n.to_string())
        })
        .collect()
}

/// QEMU exited with `status` and the serial output contains every one of `needles`.
pub fn assert_ended_with(o: &Outcome, status: i32, needles: &[&str]) {
    assert!(!o.timed_out, "{}", describe(o));
    assert_eq!(o.status, Some(status), "{}", describe(o));
    for n in needles {
        assert!(
            o.serial.contains(n),
            "serial output lacks {n:?}\n{}",
            describe(o)
        );
    }
}

/// Sector regions the kernel's `blk` suite writes (kernel/src/ktest/block.rs), as
/// (first sector, sector count, pattern seed).
pub const BLK_REGIONS: [(u64, u64, u64); 4] = [
    (8, 45, 1),              // multi-segment round trip: 23040 bytes
    (16 * 1024, 64 * 16, 2), // 64 requests in flight, 8 KiB each
    (24 * 1024, 48 * 8, 4),  // a plugged batch of 48 writes, 4 KiB each
    (32 * 1024, 131_072, 3), // 64 MiB sequential write
];

/// Check that the image holds the pattern in every sector of every region; returns the
/// number of sectors checked.
pub fn check_blk_regions(image: &std::path::Path) -> u64 {
    use drivers::block::pattern;
    let data = std::fs::read(image).expect("read disk image");
    let mut checked = 0;
    for (first, count, seed) in BLK_REGIONS {
        for s in first..first + count {
            let off = (s * 512) as usize;
            let sector = data
                .get(off..off + 512)
                .unwrap_or_else(|| panic!("image too small for sector {s}"));
            assert!(
                pattern::check_sector(sector, s, seed),
                "{}: sector {s} does not hold the pattern the kernel wrote (seed {seed}); starts {:02x?}",
                image.display(),
                &sector[..24]
            );
            checked += 1;
        }
    }
    checked
}

/// A blkdebug config failing reads and writes that touch `sector`.
pub fn blkdebug_eio_config(name: &str, sector: u64) -> PathBuf {
    let path = boot::target_dir()
        .join("test-disks")
        .join(format!("{name}.blkdebug"));
    let mut conf = String::new();
    for event in ["read_aio", "write_aio"] {
        conf.push_str(&format!(
            "[inject-error]\nevent = \"{event}\"\nerrno = \"5\"\nsector = \"{sector}\"\n\n"
        ));
    }
    std::fs::write(&path, conf).expect("write blkdebug config");
    path
}

/// A fresh ext2 image of `mib` MiB made by `mke2fs -d` from `files` (name, contents).
pub fn ext2_image(name: &str, mib: u64, block_size: u32, files: &[(&str, Vec<u8>)]) -> PathBuf {
    let img = scratch_disk(name, mib);
    let tree = boot::target_dir()
        .join("test-disks")
        .join(format!("{name}.tree"));
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(&tree).expect("tree dir");
    for (n, data) in files {
        std::fs::write(tree.join(n), data).expect("write tree file");
    }
    let out = std::process::Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext2",
            "-b",
            &block_size.to_string(),
            "-d",
        ])
        .arg(&tree)
        .arg(&img)
        .output()
        .expect("run mke2fs (make deps installs e2fsprogs)");
    assert!(
        out.status.success(),
        "mke2fs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    img
}

/// `e2fsck -fn` finds the image clean (prints its report otherwise).
pub fn assert_fsck_clean(img: &std::path::Path) {
    let out = std::process::Command::new("e2fsck")
        .arg("-fn")
        .arg(img)
        .output()
        .expect("run e2fsck");
    assert!(
        out.status.success(),
        "e2fsck -fn {} found problems:\n{}{}",
        img.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The contents of `path` in the image, read by `debugfs` (None if it does not exist).
/// Each call dumps into a temporary directory of its own: the tests of one binary run as
/// threads of one process and must never share (or delete) each other's dump.
pub fn debugfs_read(img: &std::path::Path, path: &str) -> Option<Vec<u8>> {
    let dir = boot::target_dir().join("test-disks");
    std::fs::create_dir_all(&dir).expect("create target/test-disks");
    let tmp = tempfile::Builder::new()
        .prefix("dump-")
        .tempdir_in(&dir)
        .expect("a temporary directory for debugfs's dump");
    let dump = tmp.path().join("out");
    let out = std::process::Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump {path} {}", dump.display()))
        .arg(img)
        .output()
        .expect("run debugfs");
    let data = std::fs::read(&dump).ok();
    if String::from_utf8_lossy(&out.stderr).contains("not found") {
        None
    } else {
        data
    }
}

/// `len` bytes of the block pattern with `seed` (the kernel's file tests write these).
pub fn pattern_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    drivers::block::pattern::fill_range(&mut v, 0, seed);
    v
}
