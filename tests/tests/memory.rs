//! Memory pressure, end to end: big files with little RAM, the OOM killer, PID 1 dying.
//! Each test boots the default init (`/bin/sh --boot`) with an ext2 data disk whose
//! `/etc/rc` does the work (see tests/src/userland.rs), then the host checks the image:
//! `e2fsck -fn` clean, and every file the rc wrote hashed by the host (read with
//! `debugfs`) equal to what it must be.
//!
//! * `copy_256_mib_with_512_mib_of_ram`: a cold read of a 256 MiB file, then 256 MiB of
//!   zeros written with `conv=fsync` (this panicked the kernel once: a 1 MiB heap
//!   allocation of writeback bookkeeping), `drop_caches`, the file hashed cold (every
//!   byte through readahead), then copied by `cp` (copy_file_range: 65,536 pages
//!   aliased, no byte copied by the CPU) and by `dd bs=1M` (a read/write loop); no
//!   process may die, nothing may be killed.
//! * `big_file_with_64_mib_of_ram` / `..._32_mib_...`: 256 MiB from /dev/urandom written
//!   with `dd`, hashed, copied (by `cp`: aliases, under memory pressure), hashed, on a
//!   machine with a fraction of that in RAM.
//! * `copy_1_gib_by_aliases_with_64_mib_of_ram`: a 1 GiB file copied by `cp` (aliases)
//!   with 64 MiB of RAM, both hashed in AliasOS and on the host.
//! * `oom_killer_ends_the_hog_and_the_shell_survives`: `memhog` takes memory without
//!   bound; it must die of SIGKILL (status 137), the shell must carry on.
//! * `pid1_killed_by_a_fault_ends_the_run`: PID 1 dies of SIGSEGV; QEMU must exit with a
//!   failure status within seconds.
//! * `a_disk_that_fails_every_write_neither_hangs_nor_fills_memory`: with every write
//!   failing (blkdebug) and 64 MiB of RAM, 128 MiB written with `conv=fsync`: dd reports
//!   the error, pages that cannot be written are given up after 3 attempts, and the
//!   machine powers off.
//!
//! `ALIASOS_SERIAL=1 cargo test -p tests --test memory -- --nocapture` shows the logs.

use std::path::Path;
use std::time::Duration;

use tests::userland::*;

const MIB: usize = 1 << 20;

/// A line of the `name value` text `text` (vmstat), as a number.
fn stat(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The hash `sha256sum` printed for `name` in the text `hashes`.
fn hash_of<'a>(hashes: &'a str, name: &str) -> Option<&'a str> {
    hashes
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .and_then(|l| l.split_whitespace().next())
}

/// The image holds `path` with SHA-256 `want`.
fn assert_file_hash(img: &Path, path: &str, want: &str, o: &boot::Outcome) {
    let got = image_file_sha256(img, path);
    assert_eq!(
        got.as_deref(),
        Some(want),
        "{path} on the image is not what was written; {}",
        describe(o)
    );
}

/// No process was killed: no OOM kill, no fault.
fn assert_nothing_killed(o: &boot::Outcome) {
    for bad in ["killed by signal", "out of memory", "KERNEL PANIC"] {
        assert!(
            !o.serial.contains(bad),
            "the serial log shows {bad:?}; {}",
            describe(o)
        );
    }
}

#[test]
fn copy_256_mib_with_512_mib_of_ram() {
    let src = data(256 * MIB, 9);
    let t = Tree::new("copy256");
    t.file("src.bin", &src).file("empty.bin", b"").rc("\
echo rc start
dd if=src.bin of=/dev/null bs=1M
dd if=/dev/zero of=z.bin bs=1M count=256 conv=fsync
rm z.bin
echo 3 > /proc/sys/vm/drop_caches
sha256sum src.bin > cold-hash
echo 3 > /proc/sys/vm/drop_caches
cat /proc/vmstat > vm0
cp empty.bin empty-copy.bin
cat /proc/vmstat > vm1
cp src.bin cp.bin
cat /proc/vmstat > vm2
dd if=src.bin of=dd.bin bs=1M
sha256sum cp.bin dd.bin > hashes
cat /proc/vmstat > vmstat
sync
echo rc done
poweroff
");
    let want = file_sha256(&t.path("src.bin"));
    drop(src);
    let img = t.image(1024);
    let o = boot_rc_with(&img, "512M", None, Duration::from_secs(600));
    assert_powered_off(&o, "copy256");
    assert!(o.serial.contains("rc done"), "{}", describe(&o));
    assert_nothing_killed(&o);
    assert_image_clean(&img, &o);
    // A cold read of the whole file through readahead: every byte hashed in AliasOS.
    let cold = read_back_text(&img, "/cold-hash", &o);
    assert_eq!(hash_of(&cold, "src.bin"), Some(want.as_str()), "{cold}");
    let hashes = read_back_text(&img, "/hashes", &o);
    for name in ["cp.bin", "dd.bin"] {
        assert_eq!(
            hash_of(&hashes, name),
            Some(want.as_str()),
            "sha256sum in AliasOS: {hashes}"
        );
        assert_file_hash(&img, &format!("/{name}"), &want, &o);
    }
    assert!(try_read_back(&img, "/z.bin").is_none(), "z.bin was removed");
    let vmstat = read_back_text(&img, "/vmstat", &o);
    assert_eq!(stat(&vmstat, "oom_kill"), Some(0), "{vmstat}");
    // `cp` copies with copy_file_range: every page of the cold source is read in by
    // DMA and aliased, none is copied by the CPU. The counters are read by `cat`s from
    // the shell, whose own file data (the programs loaded from the initramfs, the
    // `vm*` files written) is counted too: a copy of an empty file, measured the same
    // way, gives that baseline. The 256 MiB copy may add only the difference in length
    // of the two `vm*` files (and a line of the script the shell reads, if any).
    let vm: Vec<String> = ["/vm0", "/vm1", "/vm2"]
        .iter()
        .map(|p| read_back_text(&img, p, &o))
        .collect();
    let at = |i: usize, name| stat(&vm[i], name).unwrap_or(0);
    assert_eq!(
        at(2, "alias_pages") - at(1, "alias_pages"),
        (256 * MIB / 4096) as u64,
        "{}\n{}",
        vm[1],
        vm[2]
    );
    let baseline = at(1, "data_copy_bytes") - at(0, "data_copy_bytes");
    let copy = at(2, "data_copy_bytes") - at(1, "data_copy_bytes");
    eprintln!(
        "cp of 256 MiB: {} pages aliased, data_copy_bytes +{copy} (an empty file's cp: +{baseline})",
        at(2, "alias_pages") - at(1, "alias_pages")
    );
    assert!(
        copy <= baseline + 4096,
        "cp copied {copy} bytes by the CPU against {baseline} for an empty file:\n{}\n{}",
        vm[1],
        vm[2]
    );
    let _ = std::fs::remove_file(&img);
}

/// 256 MiB of random data written, hashed, copied and hashed with `mem` of RAM.
fn big_file_with(mem: &str, tag: &str) {
    let t = Tree::new(tag);
    t.rc("\
echo rc start
free -m
dd if=/dev/urandom of=big.bin bs=1M count=256
sha256sum big.bin > h1
cp big.bin copy.bin
sha256sum copy.bin > h2
cat /proc/vmstat > vmstat
free -m
sync
echo rc done
poweroff
");
    let img = t.image(768);
    let o = boot_rc_with(&img, mem, None, Duration::from_secs(600));
    assert_powered_off(&o, tag);
    assert!(o.serial.contains("rc done"), "{}", describe(&o));
    assert_nothing_killed(&o);
    assert_image_clean(&img, &o);
    let h1 = read_back_text(&img, "/h1", &o);
    let h2 = read_back_text(&img, "/h2", &o);
    let written = hash_of(&h1, "big.bin")
        .expect("h1 names big.bin")
        .to_string();
    assert_eq!(
        hash_of(&h2, "copy.bin"),
        Some(written.as_str()),
        "the copy hashes differently in AliasOS: {h1} {h2}"
    );
    assert_file_hash(&img, "/big.bin", &written, &o);
    assert_file_hash(&img, "/copy.bin", &written, &o);
    let vmstat = read_back_text(&img, "/vmstat", &o);
    assert_eq!(stat(&vmstat, "oom_kill"), Some(0), "{vmstat}");
    assert!(
        stat(&vmstat, "pgsteal").is_some_and(|n| n > 0),
        "a 256 MiB file through {mem} of RAM must have evicted pages: {vmstat}"
    );
    let _ = std::fs::remove_file(&img);
}

/// A 1 GiB copy by `cp` (copy_file_range: every page an alias of the source's frame)
/// with 64 MiB of RAM: the whole copy lives as shared frames, dirty pages written back
/// from them under memory pressure.
#[test]
fn copy_1_gib_by_aliases_with_64_mib_of_ram() {
    let t = Tree::new("alias1g");
    t.rc("\
echo rc start
dd if=/dev/urandom of=big.bin bs=1M count=1024
cat /proc/vmstat > vm0
cp big.bin copy.bin
cat /proc/vmstat > vm1
sha256sum big.bin copy.bin > hashes
sync
echo rc done
poweroff
");
    let img = t.image(2400);
    let o = boot_rc_with(&img, "64M", None, Duration::from_secs(1200));
    assert_powered_off(&o, "alias1g");
    assert!(o.serial.contains("rc done"), "{}", describe(&o));
    assert_nothing_killed(&o);
    assert_image_clean(&img, &o);
    let hashes = read_back_text(&img, "/hashes", &o);
    let written = hash_of(&hashes, "big.bin")
        .expect("hashes names big.bin")
        .to_string();
    assert_eq!(
        hash_of(&hashes, "copy.bin"),
        Some(written.as_str()),
        "{hashes}"
    );
    assert_file_hash(&img, "/big.bin", &written, &o);
    assert_file_hash(&img, "/copy.bin", &written, &o);
    let (vm0, vm1) = (
        read_back_text(&img, "/vm0", &o),
        read_back_text(&img, "/vm1", &o),
    );
    let delta = |n| stat(&vm1, n).unwrap_or(0) - stat(&vm0, n).unwrap_or(0);
    eprintln!(
        "cp of 1 GiB with 64 MiB: {} aliases, data_copy_bytes +{}, oom_kill {:?}",
        delta("alias_pages"),
        delta("data_copy_bytes"),
        stat(&vm1, "oom_kill")
    );
    // Pages under writeback or still being read when the copy reached them are copied
    // instead of shared; nearly all must be aliases.
    assert!(
        delta("alias_pages") >= (1024 * MIB / 4096) as u64 * 99 / 100,
        "{vm0}\n{vm1}"
    );
    assert_eq!(stat(&vm1, "oom_kill"), Some(0), "{vm1}");
    let _ = std::fs::remove_file(&img);
}

#[test]
fn big_file_with_64_mib_of_ram() {
    big_file_with("64M", "big64");
}

#[test]
fn big_file_with_32_mib_of_ram() {
    big_file_with("32M", "big32");
}

#[test]
fn oom_killer_ends_the_hog_and_the_shell_survives() {
    let t = Tree::new("oom");
    t.rc("\
echo rc start
memhog
echo memhog status $?
memhog 8M
echo small hog status $?
cat /proc/vmstat > vmstat
sync
echo rc done
poweroff
");
    let img = t.image(32);
    let o = boot_rc_with(&img, "96M", None, Duration::from_secs(300));
    assert_powered_off(&o, "oom");
    for line in [
        "memhog status 137",
        "memhog: holding 8 MiB; done",
        "small hog status 0",
        "rc done",
    ] {
        assert!(
            o.serial.lines().any(|l| l.trim_end() == line),
            "the console lacks {line:?}; {}",
            describe(&o)
        );
    }
    assert!(
        o.serial.contains("out of memory: killed process") && o.serial.contains("(memhog)"),
        "the OOM killer did not report its choice; {}",
        describe(&o)
    );
    assert!(!o.serial.contains("KERNEL PANIC"), "{}", describe(&o));
    assert_image_clean(&img, &o);
    let vmstat = read_back_text(&img, "/vmstat", &o);
    assert_eq!(stat(&vmstat, "oom_kill"), Some(1), "{vmstat}");
}

#[test]
fn pid1_killed_by_a_fault_ends_the_run() {
    let t = Tree::new("pid1");
    t.rc("echo never\n");
    let img = t.image(16);
    let o = boot_rc_with(
        &img,
        "128M",
        Some("init=/bin/memhog -- -f"),
        Duration::from_secs(60),
    );
    assert!(
        !o.timed_out,
        "the machine hung after PID 1 died; {}",
        describe(&o)
    );
    assert_eq!(
        o.status,
        Some(boot::exit_code::TEST_FAILED),
        "PID 1's death must end the run with the failure status; {}",
        describe(&o)
    );
    assert!(
        o.serial.contains("init exited with wait status 0xb"),
        "{}",
        describe(&o)
    );
}

/// Every write to the data disk fails (QEMU blkdebug) while a process writes twice the
/// machine's memory: pages that cannot be written are retried, then given up (kept
/// clean, the error kept for fsync), so memory never fills with dirty pages nobody can
/// write; `dd conv=fsync` reports the error, nothing hangs, the machine powers off.
#[test]
fn a_disk_that_fails_every_write_neither_hangs_nor_fills_memory() {
    let t = Tree::new("wfail");
    t.rc("\
echo rc start
dd if=/dev/zero of=z.bin bs=1M count=128 conv=fsync
echo dd status $?
cat /proc/vmstat > /dev/null
echo rc done
poweroff
");
    let img = t.image(256);
    let conf = boot::target_dir()
        .join("test-disks")
        .join(format!("wfail-{}.blkdebug", std::process::id()));
    std::fs::write(
        &conf,
        "[inject-error]\nevent = \"write_aio\"\nerrno = \"5\"\n",
    )
    .expect("write the blkdebug config");
    let q = boot::Qemu {
        disks: vec![boot::Disk {
            blkdebug: Some(conf.clone()),
            ..boot::Disk::new(&img, boot::Bus::Virtio)
        }],
        mem: "64M".into(),
        timeout: Some(Duration::from_secs(300)),
        ..boot::Qemu::default()
    };
    let o = tests::run(&q);
    let _ = std::fs::remove_file(&conf);
    assert_powered_off(&o, "wfail");
    assert!(o.serial.contains("rc done"), "{}", describe(&o));
    let status = o
        .serial
        .lines()
        .find_map(|l| l.strip_prefix("dd status "))
        .unwrap_or_else(|| panic!("no dd status; {}", describe(&o)));
    assert_ne!(
        status.trim(),
        "0",
        "dd conv=fsync must report the failed writes"
    );
    assert!(
        o.serial.contains("giving up on them"),
        "pages that cannot be written are given up; {}",
        describe(&o)
    );
    assert!(
        !o.serial.contains("KERNEL PANIC") && !o.serial.contains("out of memory"),
        "{}",
        describe(&o)
    );
}
