//! The syscall conformance test (issue 5 item 6): AliasOS boots with
//! `init=/mnt/bin/systest`, the user program in user/systest, from an ext2 data disk made
//! here with `mke2fs -d`. systest prints a TAP plan and one `ok N - name` /
//! `not ok N - name: detail` line per case and exits 0 only if every case passed, which
//! powers the machine off with QEMU exit status 0.
//!
//! Afterwards the image is checked on the host: `e2fsck -fn` must find it clean, and the
//! files systest wrote under `/mnt/systest` (and the scratch file it must not change) must
//! hold exactly the bytes the cases put there (`debugfs -R 'cat /file'`). The names and
//! contents below are the ones in user/systest/src/files.rs.
//!
//! `ALIASOS_SERIAL=1 cargo test -p tests --test syscalls -- --nocapture` shows the whole
//! serial log.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tests::*;

/// Build `systest` (`cargo build -p user-systest --release`, as boot builds the user tools)
/// and return the executable.
fn build_systest() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .current_dir(boot::workspace_root())
        .args([
            "build",
            "-p",
            "user-systest",
            "--release",
            "--quiet",
            "--message-format=json-render-diagnostics",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run cargo build -p user-systest");
    assert!(
        out.status.success(),
        "`cargo build -p user-systest --release` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Cargo names the executable in its JSON messages; fall back to <target>/release.
    let from_json = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\""))
        .filter_map(|l| {
            let start = l.find("\"executable\":\"")? + "\"executable\":\"".len();
            let end = start + l[start..].find('"')?;
            Some(PathBuf::from(&l[start..end]))
        })
        .find(|p| p.file_name().is_some_and(|n| n == "systest"));
    let path = from_json.unwrap_or_else(|| boot::target_dir().join("release").join("systest"));
    assert!(
        path.is_file(),
        "no systest executable at {}",
        path.display()
    );
    path
}

/// Byte `i` of `/mnt/data/private.bin` (the file MAP_PRIVATE stores must not change).
fn private_byte(i: usize) -> u8 {
    ((i * 13 + 7) % 256) as u8
}

/// Byte `i` of `/mnt/systest/pattern.bin` (user/systest/src/files.rs `pat`).
/// The copy source of systest's `copies` cases (user/systest/src/copies.rs).
fn copy_src_byte(i: usize) -> u8 {
    (i.wrapping_mul(7) ^ (i / 4096)) as u8
}

/// Length of that source: 16 pages and 100 bytes.
const COPY_SRC_LEN: usize = 16 * 4096 + 100;

fn pattern_byte(i: usize) -> u8 {
    (i % 251) as u8 ^ (i / 4096) as u8
}

/// The ext2 data disk: `bin/systest` and the scratch files the cases read. Named after
/// this process and `tag`, so concurrent runs of the test (and the tests of this binary,
/// threads of one process) do not share (and lock) one image.
fn make_disk(systest: &Path, tag: &str) -> PathBuf {
    let name = format!("syscalls-{tag}-{}", std::process::id());
    let img = scratch_disk(&name, 64);
    let tree = boot::target_dir()
        .join("test-disks")
        .join(format!("{name}.tree"));
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(tree.join("bin")).expect("tree/bin");
    std::fs::create_dir_all(tree.join("data")).expect("tree/data");
    let elf = std::fs::read(systest).expect("read systest");
    let elf = boot::initramfs::strip_elf(&elf).unwrap_or(elf);
    let put = |rel: &str, data: &[u8], mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        let p = tree.join(rel);
        std::fs::write(&p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    put("bin/systest", &elf, 0o755);
    // execve must refuse these with ENOEXEC (they are executable, just not programs).
    put("data/notelf.txt", b"this is not an ELF file\n", 0o755);
    put("data/truncated.elf", &elf[..100], 0o755);
    put("data/empty", b"", 0o755);
    // ELF headers whose program-header table is out of bounds or malformed.
    let patched = |rel: &str, off: usize, bytes: &[u8]| {
        let mut e = elf[..4096].to_vec();
        e[off..off + bytes.len()].copy_from_slice(bytes);
        put(rel, &e, 0o755);
    };
    patched("data/phentsize.elf", 0x36, &1u16.to_le_bytes());
    patched("data/phnum.elf", 0x38, &0xffffu16.to_le_bytes());
    patched(
        "data/phoff.elf",
        0x20,
        &0xffff_ffff_ffff_ff00u64.to_le_bytes(),
    );
    let private: Vec<u8> = (0..8192).map(private_byte).collect();
    put("data/private.bin", &private, 0o644);
    put("data/readonly.bin", &private, 0o644);
    let out = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext2", "-b", "4096", "-d"])
        .arg(&tree)
        .arg(&img)
        .output()
        .expect("run mke2fs (make deps installs e2fsprogs)");
    assert!(
        out.status.success(),
        "mke2fs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&tree);
    img
}

/// `debugfs -R "REQUEST" IMG`: (stdout, stderr).
fn debugfs(img: &Path, request: &str) -> (Vec<u8>, String) {
    let out = Command::new("debugfs")
        .env("DEBUGFS_PAGER", "__none__")
        .env("PAGER", "__none__")
        .arg("-R")
        .arg(request)
        .arg(img)
        .output()
        .expect("run debugfs");
    (
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The contents of `path` in the image, or None if it does not exist.
fn debugfs_cat(img: &Path, path: &str) -> Option<Vec<u8>> {
    let (out, err) = debugfs(img, &format!("cat {path}"));
    if err.contains("not found") {
        None
    } else {
        Some(out)
    }
}

/// `debugfs stat` output for `path` (empty if it does not exist).
fn debugfs_stat(img: &Path, path: &str) -> String {
    String::from_utf8_lossy(&debugfs(img, &format!("stat {path}")).0).into_owned()
}

fn show(b: &[u8]) -> String {
    if b.len() <= 64 {
        format!("{:?}", String::from_utf8_lossy(b))
    } else {
        format!(
            "{} bytes starting {:?}",
            b.len(),
            String::from_utf8_lossy(&b[..64])
        )
    }
}

/// Every difference between the image and what the cases wrote.
fn check_image(img: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(img)
        .output()
        .expect("run e2fsck");
    if !fsck.status.success() {
        problems.push(format!(
            "e2fsck -fn found problems:\n{}{}",
            String::from_utf8_lossy(&fsck.stdout),
            String::from_utf8_lossy(&fsck.stderr)
        ));
    }
    let mut hole = vec![0u8; 10001];
    hole[0] = b'A';
    hole[10000] = b'B';
    let mut pp = b"012AB56789".to_vec();
    pp.extend_from_slice(&[0; 10]);
    pp.extend_from_slice(b"zz");
    let mut shared = vec![b'.'; 3 * 4096];
    for (off, s) in [
        (0, &b"SHARED-0"[..]),
        (2000, b"CHILD"),
        (4196, b"SHARED-1"),
        (6000, b"WRITE"),
        (12192, b"SHARED-2"),
    ] {
        shared[off..off + s.len()].copy_from_slice(s);
    }
    let expected: Vec<(&str, Vec<u8>)> = vec![
        ("/systest/write.txt", b"hello, AliasOS\n".to_vec()),
        ("/systest/append.txt", b"abcdef".to_vec()),
        (
            "/systest/pattern.bin",
            (0..300_000).map(pattern_byte).collect(),
        ),
        ("/systest/hole.bin", hole),
        ("/systest/pp.bin", pp),
        ("/systest/trunc.bin", b"01234".to_vec()),
        ("/systest/renamed/moved.txt", b"rename me\n".to_vec()),
        ("/systest/over.txt", b"new\n".to_vec()),
        ("/systest/link_a", b"linked\n".to_vec()),
        ("/systest/link_b", b"linked\n".to_vec()),
        ("/systest/sym_target.txt", b"target\n".to_vec()),
        ("/systest/fork_fd.txt", b"PCQ".to_vec()),
        ("/systest/dup.txt", b"helloworld".to_vec()),
        ("/systest/sync.txt", b"synced\n".to_vec()),
        ("/systest/cwd.txt", Vec::new()),
        ("/systest/mmap_shared.bin", shared),
        ("/systest/mmap_read.bin", {
            let mut v = vec![b'.'; 8192];
            v[..9].copy_from_slice(b"FROM-READ");
            v[5000..5009].copy_from_slice(b"FROM-READ");
            v
        }),
        ("/systest/mmap_none.bin", {
            let mut v = vec![b'-'; 4096];
            v[..4].copy_from_slice(b"NONE");
            v
        }),
        ("/systest/cfr_src.bin", {
            let mut v: Vec<u8> = (0..COPY_SRC_LEN).map(copy_src_byte).collect();
            v[3 * 4096 + 5..3 * 4096 + 8].copy_from_slice(b"SRC");
            v
        }),
        ("/systest/cfr_dst.bin", {
            // Aliased pages written to the target's own blocks, a head copied into a
            // hole, a write after the copy, and two pages appended by file offsets.
            let mut v: Vec<u8> = (0..COPY_SRC_LEN).map(copy_src_byte).collect();
            v[..1000].fill(0);
            v[5 * 4096 + 7..5 * 4096 + 10].copy_from_slice(b"DST");
            v.extend((0..8192).map(copy_src_byte));
            v
        }),
        (
            "/systest/sf_dst.bin",
            (0..COPY_SRC_LEN).map(copy_src_byte).collect(),
        ),
        ("/data/private.bin", (0..8192).map(private_byte).collect()),
        ("/data/readonly.bin", (0..8192).map(private_byte).collect()),
    ];
    for (path, want) in expected {
        match debugfs_cat(img, path) {
            None => problems.push(format!("{path}: missing from the image")),
            Some(got) if got != want => {
                let at = got.iter().zip(&want).position(|(a, b)| a != b);
                problems.push(format!(
                    "{path}: holds {} (first difference at {at:?}), expected {}",
                    show(&got),
                    show(&want)
                ));
            }
            Some(_) => {}
        }
    }
    for gone in [
        "/systest/gone.txt",
        "/systest/rmdir_me",
        "/systest/r1.txt",
        "/systest/r2.txt",
        "/systest/over_src.txt",
        "/systest/link_c",
    ] {
        if debugfs_cat(img, gone).is_some() {
            problems.push(format!("{gone}: still in the image (it was removed)"));
        }
    }
    for (path, needle) in [
        ("/systest/link_a", "Links: 2"),
        ("/systest/sym", "Fast link dest: \"sym_target.txt\""),
        ("/systest/umask_file", "Mode:  0644"),
        ("/systest/umask_dir", "Mode:  0755"),
    ] {
        let st = debugfs_stat(img, path);
        if !st.contains(needle) {
            problems.push(format!("debugfs stat {path} lacks {needle:?}:\n{st}"));
        }
    }
    problems
}

/// The raw disk of systest's `direct` cases (user/systest/src/direct.rs), `/dev/vdb` or
/// `/dev/nvme1n1`: 32 MiB of `dev_word`s.
const RAW_MIB: u64 = 32;
/// Sector whose reads and writes fail (blkdebug), `direct::EIO_SECTOR`.
const RAW_EIO_SECTOR: u64 = 24 * 2048;
/// The regions the cases write with `written_word` (offset, length), `direct::WRITTEN`.
const RAW_WRITTEN: [(u64, u64); 4] = [
    (16 << 20, 1 << 20),
    (17 << 20, 64 << 10),
    (18 << 20, 128 << 10),
    (20 << 20, 64 << 10),
];

fn dev_word(o: u64) -> u64 {
    o.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5a5a_0000_a5a5
}

fn make_raw_disk(name: &str) -> PathBuf {
    let path = scratch_disk(name, RAW_MIB);
    let mut data = Vec::with_capacity((RAW_MIB << 20) as usize);
    for o in (0..RAW_MIB << 20).step_by(8) {
        data.extend_from_slice(&dev_word(o).to_le_bytes());
    }
    std::fs::write(&path, data).expect("fill the raw disk");
    path
}

/// The raw disk after the run: the written regions hold `!dev_word`, the rest is as it
/// was (no direct write went anywhere else).
fn check_raw_disk(path: &Path) -> Vec<String> {
    let data = std::fs::read(path).expect("read the raw disk");
    let mut problems = Vec::new();
    for (i, w) in data.as_chunks::<8>().0.iter().enumerate() {
        let o = 8 * i as u64;
        let v = u64::from_le_bytes(*w);
        let written = RAW_WRITTEN.iter().any(|&(a, n)| (a..a + n).contains(&o));
        let want = if written { !dev_word(o) } else { dev_word(o) };
        if v != want {
            problems.push(format!(
                "raw disk: the word at {o:#x} is {v:#x}, expected {want:#x} ({})",
                if written {
                    "written by the direct cases"
                } else {
                    "never written"
                }
            ));
            if problems.len() >= 5 {
                break;
            }
        }
    }
    problems
}

#[test]
fn syscall_conformance() {
    conformance_on(Bus::Virtio, "virtio", Machine::Q35);
}

/// The same suite with both disks on NVMe: `/mnt` on `nvme0n1` (copies within it are done
/// by the device), the raw cases on `/dev/nvme1n1`; on the pc machine.
#[test]
fn syscall_conformance_on_nvme_pc() {
    conformance_on(Bus::Nvme, "nvme", Machine::Pc);
}

/// Run systest with the ext2 disk and the raw disk on `bus`, on `machine`; `tag` names
/// their images.
fn conformance_on(bus: Bus, tag: &str, machine: Machine) {
    let systest = build_systest();
    let img = make_disk(&systest, tag);
    let raw_name = format!("systest-raw-{tag}-{}", std::process::id());
    let raw = make_raw_disk(&raw_name);
    let mut raw_disk = Disk::new(&raw, bus);
    raw_disk.blkdebug = Some(blkdebug_eio_config(&raw_name, RAW_EIO_SECTOR));
    let q = Qemu {
        mem: "256M".into(),
        machine,
        disks: vec![Disk::new(&img, bus), raw_disk],
        cmdline: Some("init=/mnt/bin/systest".into()),
        timeout: Some(Duration::from_secs(900)),
        ..Qemu::default()
    };
    let o = run(&q);
    let serial = &o.serial;
    if !o.timed_out && o.status == Some(0) {
        // Faults, mmap, fork, exec, pipes and files all took their locks under the checker.
        assert_lock_order_checked(&o);
    }
    let mut problems = Vec::new();
    if o.timed_out {
        problems.push(format!(
            "QEMU timed out after {:.0} s",
            o.elapsed.as_secs_f64()
        ));
    } else if o.status != Some(0) {
        problems.push(format!("QEMU exited with {:?}, expected 0", o.status));
    }
    if serial.contains("cannot start /mnt/bin/systest") {
        problems.push("the kernel could not start /mnt/bin/systest".into());
    }
    let plan = serial.lines().find_map(|l| {
        l.trim()
            .strip_prefix("1..")
            .and_then(|n| n.parse::<usize>().ok())
    });
    let not_ok: Vec<&str> = serial
        .lines()
        .filter(|l| l.starts_with("not ok "))
        .collect();
    match plan {
        None => problems.push("systest printed no TAP plan (1..N)".into()),
        Some(n) => {
            let passed: std::collections::BTreeSet<usize> = serial
                .lines()
                .filter_map(|l| l.strip_prefix("ok ")?.split(' ').next()?.parse().ok())
                .collect();
            let missing: Vec<usize> = (1..=n).filter(|i| !passed.contains(i)).collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "{} of {n} cases did not print `ok`: {missing:?}",
                    missing.len()
                ));
            }
        }
    }
    if !o.timed_out {
        problems.extend(check_image(&img));
        problems.extend(check_raw_disk(&raw));
    }
    assert!(
        problems.is_empty(),
        "syscall conformance on {tag} failed:\n- {}\n\nfailing cases:\n{}\n\nthe disk image is kept: {}\n\nserial output:\n{serial}",
        problems.join("\n- "),
        not_ok.join("\n"),
        img.display()
    );
    let _ = std::fs::remove_file(&img);
    let _ = std::fs::remove_file(&raw);
}
