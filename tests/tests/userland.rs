//! The userland end to end: AliasOS boots its default init, `/bin/sh --boot`, which runs
//! the data disk's `/etc/rc` from `/mnt` (echoing each line as `+ LINE`); the rc ends with
//! `poweroff`, so QEMU must exit with status 0. Then the host checks the image with
//! `e2fsck -fn` and reads what the rc wrote with `debugfs` (helpers: tests/src/userland.rs).
//!
//! * `rc_copies_hashes_moves_and_deletes`: cp, dd (bs/skip/seek/count/conv), mv, rm,
//!   mkdir, cat, ls and sha256sum in the rc; the host rebuilds every file, hashes it with
//!   GNU sha256sum and compares, and checks that what was deleted or moved is gone.
//! * `tool_scripts_match_the_host` (and `_on_nvme`): user/tools/tests/scripts/tools.sh
//!   and fs.sh run with the same tool binaries on the Linux host and in AliasOS (output
//!   to files on /mnt);
//!   stdout, stderr and exit status must be identical, and tools.sh's stdout must equal
//!   tools.expected. The scripts print no inode numbers, times, block counts or directory
//!   sizes, so no difference is allowed.
//! * `musl_filetest_matches_the_host`: tests/c/filetest.c built with
//!   `musl-gcc -static -O2` runs on the host and in AliasOS; identical output required,
//!   and the file it leaves must be on the image.
//! * `sysfuzz_survives_100000_calls`: `/bin/sysfuzz -n 100000 -s 1` must end with its OK
//!   line and the machine must still power off cleanly.
//! * `fsxa_random_operations_match_the_model`: `/bin/fsxa` (a model-based random test of
//!   file data: reads, writes, mapped loads and stores, truncates, `copy_file_range`,
//!   `sendfile`, fsync, drop_caches, reopens) over four seeds, 100,000 operations; every
//!   file it leaves must hash on the image to what its model says.
//!   `fsxa_with_device_copies_on_nvme`: two seeds on NVMe, where aligned copies are done
//!   by the disk.
//! * Copies past the page cache, each checked on the images: by the NVMe disk itself
//!   (`copies_on_nvme_are_done_by_the_device`), through transit frames between disks
//!   (`copies_between_disks_go_through_transit_frames`), and `blkdiscard` on NVMe
//!   (`blkdiscard_deallocates_on_nvme`). The tool scripts run on NVMe too.
//!
//! `ALIASOS_SERIAL=1 cargo test -p tests --test userland -- --nocapture` shows the serial
//! logs; on failure the last lines are in the message.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tests::assert_lock_order_checked;
use tests::userland::*;

const RC_TIMEOUT: Duration = Duration::from_secs(180);

/// `dd`'s view of a copy: `count` blocks of `bs` from `input` after skipping `skip`
/// blocks, written at block `seek` of a new file.
fn dd(input: &[u8], bs: usize, skip: usize, seek: usize, count: usize) -> Vec<u8> {
    let from = (skip * bs).min(input.len());
    let to = (from + count * bs).min(input.len());
    let mut out = vec![0u8; seek * bs];
    out.extend_from_slice(&input[from..to]);
    out
}

#[test]
fn rc_copies_hashes_moves_and_deletes() {
    let a = data(1024 * 1024 + 123, 1);
    let b = b"first line\nsecond line\n".to_vec();
    let c = data(3 * 1024 * 1024 + 5, 3);
    let t = Tree::new("rc");
    t.file("in/a.bin", &a)
        .file("in/b.txt", &b)
        .file("in/c.bin", &c)
        .file("in/delete-me.txt", b"bye\n")
        .file("in/dir/x.txt", b"x\n")
        .file("in/dir/sub/y.txt", b"y\n")
        .rc("\
echo rc start
mkdir -p out work/deep/er
cp in/a.bin work/a.copy
cp in/b.txt work/deep/er/b.txt
dd if=in/c.bin of=work/c.part bs=4096 skip=3 count=100 status=none
dd if=in/a.bin of=work/seeked bs=1000 seek=5 count=7 conv=fsync status=none
cp in/c.bin work/c.full
cp work/c.full work/c.again
rm work/c.again
mv work/a.copy work/deep/a.moved
mv work/deep/er work/er2
rm in/delete-me.txt
rm -r in/dir
cat in/b.txt in/b.txt > work/b2.txt
sha256sum in/a.bin in/b.txt in/c.bin work/deep/a.moved work/c.part work/seeked work/c.full work/er2/b.txt work/b2.txt > out/hashes
ls in work work/deep work/er2 > out/ls
cmp in/c.bin work/c.full && echo same > out/cmp
sync
echo rc done
poweroff
");
    let img = t.image(64);
    let o = boot_rc(&img, RC_TIMEOUT);
    assert_powered_off(&o, "rc");
    // Processes, the VFS, ext2 and the page cache took their locks under the checker.
    assert_lock_order_checked(&o);
    for line in [
        "+ echo rc start",
        "rc start",
        "+ mv work/deep/er work/er2",
        "+ poweroff",
    ] {
        assert!(
            o.serial.lines().any(|l| l == line),
            "the console lacks the line {line:?}; {}",
            describe(&o)
        );
    }
    assert_image_clean(&img, &o);

    // The same files, made on the host.
    let host = Tree::new("rc-host");
    let mut b2 = b.clone();
    b2.extend_from_slice(&b);
    host.file("in/a.bin", &a)
        .file("in/b.txt", &b)
        .file("in/c.bin", &c)
        .file("work/deep/a.moved", &a)
        .file("work/c.part", &dd(&c, 4096, 3, 0, 100))
        .file("work/seeked", &dd(&a, 1000, 0, 5, 7))
        .file("work/c.full", &c)
        .file("work/er2/b.txt", &b)
        .file("work/b2.txt", &b2);
    let names = [
        "in/a.bin",
        "in/b.txt",
        "in/c.bin",
        "work/deep/a.moved",
        "work/c.part",
        "work/seeked",
        "work/c.full",
        "work/er2/b.txt",
        "work/b2.txt",
    ];
    assert_eq!(
        read_back_text(&img, "/out/hashes", &o),
        host_sha256sum(host.root(), &names),
        "sha256sum in AliasOS differs from the host's"
    );
    for n in names {
        let want = std::fs::read(host.path(n)).unwrap();
        let got = read_back(&img, &format!("/{n}"), &o);
        assert!(
            got == want,
            "/{n} on the image differs from the host's copy ({} bytes against {})",
            got.len(),
            want.len()
        );
    }
    let ls = Command::new(host_tool("ls"))
        .args(["in", "work", "work/deep", "work/er2"])
        .current_dir(host.root())
        .output()
        .expect("run ls");
    assert_eq!(
        read_back_text(&img, "/out/ls", &o),
        String::from_utf8_lossy(&ls.stdout),
        "ls in AliasOS differs from the host's"
    );
    assert_eq!(read_back_text(&img, "/out/cmp", &o), "same\n");
    for gone in [
        "/in/delete-me.txt",
        "/in/dir",
        "/in/dir/x.txt",
        "/work/a.copy",
        "/work/c.again",
        "/work/deep/er",
    ] {
        assert!(
            try_read_back(&img, gone).is_none(),
            "{gone} should be gone (deleted or moved)"
        );
    }
}

/// Run `script` with the host tools in an empty directory: (stdout, stderr, status).
fn run_script_on_host(script: &Path) -> (String, String, String) {
    let dir = Tree::new(&format!(
        "script-{}",
        script.file_stem().unwrap().to_string_lossy()
    ));
    let o = Command::new(host_tool("sh"))
        .arg(script)
        .current_dir(dir.root())
        .env_clear()
        .env("PATH", host_tools())
        .output()
        .expect("run sh on the host");
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        format!("{}\n", o.status.code().unwrap_or(-1)),
    )
}

#[test]
fn tool_scripts_match_the_host() {
    tool_scripts_on(boot::Bus::Virtio);
}

/// The same with the data disk on NVMe (on NVMe `cp` and the copies in the scripts are
/// done by the disk itself).
#[test]
fn tool_scripts_match_the_host_on_nvme() {
    tool_scripts_on(boot::Bus::Nvme);
}

/// `tool_scripts_match_the_host` with the data disk on `bus`.
fn tool_scripts_on(bus: boot::Bus) {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../user/tools/tests/scripts");
    let names = ["tools", "fs"];
    let t = Tree::new("scripts");
    let mut rc = String::from("mkdir -p out\n");
    for n in names {
        let text = std::fs::read(scripts.join(format!("{n}.sh"))).expect("read the script");
        t.file(&format!("scripts/{n}.sh"), &text)
            .dir(&format!("run-{n}"));
        rc.push_str(&format!(
            "cd /mnt/run-{n}\n\
             sh /mnt/scripts/{n}.sh > /mnt/out/{n}.out 2> /mnt/out/{n}.err\n\
             echo $? > /mnt/out/{n}.status\n"
        ));
    }
    rc.push_str("cd /mnt\nsync\npoweroff\n");
    t.rc(&rc);
    let img = t.image(64);
    let o = boot_rc_on(&img, bus, RC_TIMEOUT);
    assert_powered_off(&o, "tool scripts");
    assert_image_clean(&img, &o);
    for n in names {
        let (out, err, status) = run_script_on_host(&scripts.join(format!("{n}.sh")));
        assert_eq!(
            status, "0\n",
            "{n}.sh fails on the host: {err}\n(the host tests in user/tools cover this)"
        );
        let got_out = read_back_text(&img, &format!("/out/{n}.out"), &o);
        let got_err = read_back_text(&img, &format!("/out/{n}.err"), &o);
        let got_status = read_back_text(&img, &format!("/out/{n}.status"), &o);
        assert_eq!(
            got_out, out,
            "{n}.sh: stdout in AliasOS (left) differs from the host's (right)"
        );
        assert_eq!(
            got_err, err,
            "{n}.sh: stderr in AliasOS (left) differs from the host's (right)"
        );
        assert_eq!(got_status, status, "{n}.sh: exit status in AliasOS");
    }
    // tools.sh's stdout is also pinned down by tools.expected (rm's message is stderr).
    let expected: String = std::fs::read_to_string(scripts.join("tools.expected"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("rm: "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(read_back_text(&img, "/out/tools.out", &o), expected);
}

#[test]
fn musl_filetest_matches_the_host() {
    let elf = c_program("filetest");
    let exe = boot::target_dir().join("userland").join("filetest");

    // The host run.
    let work = Tree::new("filetest-host");
    let host = Command::new(&exe)
        .arg(work.root())
        .output()
        .expect("run filetest on the host");
    let host_out = String::from_utf8_lossy(&host.stdout).into_owned();
    assert!(
        host.status.success() && host_out.ends_with("filetest: OK\n"),
        "filetest fails on the host (status {:?}):\n{host_out}{}",
        host.status,
        String::from_utf8_lossy(&host.stderr)
    );
    let keep = std::fs::read(work.path("keep.bin")).expect("keep.bin on the host");

    // The AliasOS run.
    let t = Tree::new("filetest");
    t.exe("bin/filetest", &elf).dir("ft").rc("\
mkdir -p out
/mnt/bin/filetest /mnt/ft > /mnt/out/filetest.out 2>&1
echo $? > /mnt/out/filetest.status
sync
poweroff
");
    let img = t.image(64);
    let o = boot_rc(&img, RC_TIMEOUT);
    assert_powered_off(&o, "filetest");
    assert_image_clean(&img, &o);
    assert_eq!(
        read_back_text(&img, "/out/filetest.out", &o),
        host_out,
        "filetest's output in AliasOS (left) differs from the host's (right)"
    );
    assert_eq!(read_back_text(&img, "/out/filetest.status", &o), "0\n");
    assert!(
        read_back(&img, "/ft/keep.bin", &o) == keep,
        "/ft/keep.bin on the image differs from the host's"
    );
}

/// Build `tests/c/NAME.c` (musl-gcc is required: `make deps` installs Debian's
/// musl-tools, and a missing compiler fails the test rather than skipping it).
fn c_program(name: &str) -> Vec<u8> {
    let exe = build_c(name).unwrap_or_else(|e| panic!("{e}"));
    let elf = std::fs::read(&exe).expect("read the C program");
    assert_eq!(
        elf_kind(&elf),
        Some((2, false)),
        "{name} is not a static non-PIE executable"
    );
    elf
}

/// Files unlinked while open (read, written, truncated, fsynced, mapped, dup'ed after
/// the unlink) are freed at their last close: e2fsck finds no orphan afterwards.
/// (sysfuzz found the ftruncate case.)
#[test]
fn unlinked_open_files_are_freed_at_last_close() {
    let elf = c_program("unlinked");
    // On the host first (the program's own checks).
    let host = Tree::new("unlinked-host");
    let exe = boot::target_dir().join("userland").join("unlinked");
    let h = Command::new(&exe)
        .arg(host.root())
        .output()
        .expect("run unlinked on the host");
    assert_eq!(
        String::from_utf8_lossy(&h.stdout),
        "unlinked: OK\n",
        "on the host"
    );
    let t = Tree::new("unlinked");
    t.exe("bin/unlinked", &elf).dir("w").rc("\
/mnt/bin/unlinked /mnt/w > /mnt/unlinked.out 2>&1
echo $? >> /mnt/unlinked.out
sync
poweroff
");
    let img = t.image(64);
    let o = boot_rc(&img, RC_TIMEOUT);
    assert_powered_off(&o, "unlinked");
    // Every problem at once: what the program saw, and what is left on the disk.
    let mut problems = Vec::new();
    let out = read_back_text(&img, "/unlinked.out", &o);
    if out != "unlinked: OK\n0\n" {
        problems.push(format!("the program's checks in AliasOS:\n{out}"));
    }
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&img)
        .output()
        .expect("run e2fsck");
    if !fsck.status.success() {
        problems.push(format!(
            "e2fsck -fn after the program (an unlinked file not freed at its last close?):\n{}",
            String::from_utf8_lossy(&fsck.stdout)
        ));
    }
    let (listing, _) = debugfs(&img, "ls /w");
    let listing = String::from_utf8_lossy(&listing).into_owned();
    if listing
        .split_whitespace()
        .filter(|w| w.starts_with('('))
        .count()
        != 2
    {
        problems.push(format!("/w should hold only . and ..:\n{listing}"));
    }
    assert!(
        problems.is_empty(),
        "{}\n{}",
        problems.join("\n"),
        describe(&o)
    );
}

#[test]
fn sysfuzz_survives_100000_calls() {
    let t = Tree::new("sysfuzz");
    t.rc("\
/bin/sysfuzz -n 100000 -s 1 > /mnt/fuzz.out
echo $? > /mnt/fuzz.status
sync
poweroff
");
    let img = t.image(256);
    let o = boot_rc(&img, Duration::from_secs(1200));
    assert_powered_off(&o, "sysfuzz");
    let out = read_back_text(&img, "/fuzz.out", &o);
    assert_eq!(
        out.lines().last(),
        Some("sysfuzz: 100000 calls, seed 1, OK"),
        "sysfuzz did not finish; its output:\n{out}\n{}",
        describe(&o)
    );
    assert_eq!(read_back_text(&img, "/fuzz.status", &o), "0\n");
    assert!(
        try_read_back(&img, "/sysfuzz.tmp").is_none(),
        "sysfuzz left its scratch directory"
    );
    assert_image_clean(&img, &o);
}

/// Counter `name` of a /proc/vmstat text; a missing counter fails the test (a check of
/// "unchanged" must not pass on a counter that is not there).
fn vmstat_field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in this /proc/vmstat:\n{text}"))
}

/// `fsxa` (a model-based random test of file data) with seed `seed` and `ops` operations
/// in AliasOS: it must finish OK, and every file it leaves must hash on the image to
/// what its model says. Even seeds mix in `O_DIRECT` reads and writes (`-d`).
fn fsxa_seeds(seeds: &[u64], ops: u64, bus: boot::Bus) {
    let t = Tree::new("fsxa");
    let mut rc = String::new();
    for s in seeds {
        let direct = if s % 2 == 0 { "-d " } else { "" };
        rc.push_str(&format!(
            "/bin/fsxa {direct}-n {ops} -s {s} /mnt/fsx{s} > /mnt/fsx{s}.out\necho $? > /mnt/fsx{s}.status\n"
        ));
    }
    rc.push_str("cat /proc/vmstat > /mnt/vmstat\nsync\npoweroff\n");
    t.rc(&rc);
    let img = t.image(256);
    let o = boot_rc_on(&img, bus, Duration::from_secs(1500));
    assert_powered_off(&o, "fsxa");
    for s in seeds {
        let out = read_back_text(&img, &format!("/fsx{s}.out"), &o);
        assert!(
            out.lines()
                .last()
                .is_some_and(|l| l.starts_with("fsxa: OK")),
            "fsxa seed {s} failed:\n{out}\n{}",
            describe(&o)
        );
        assert_eq!(read_back_text(&img, &format!("/fsx{s}.status"), &o), "0\n");
        let mut files = 0;
        for l in out.lines() {
            let w: Vec<&str> = l.split_whitespace().collect();
            if let ["fsxa:", path, _size, sha] = w.as_slice()
                && let Some(on_image) = path.strip_prefix("/mnt")
            {
                assert_eq!(
                    image_file_sha256(&img, on_image).as_deref(),
                    Some(*sha),
                    "{on_image} on the image differs from fsxa's model (seed {s})"
                );
                files += 1;
            }
        }
        assert_eq!(files, 3, "fsxa seed {s} listed {files} files:\n{out}");
    }
    // The copies did make aliases, and writes did break them.
    let vmstat = read_back_text(&img, "/vmstat", &o);
    let count = |name: &str| vmstat_field(&vmstat, name);
    let (aliases, breaks) = (count("alias_pages"), count("cow_breaks"));
    let dma = count("dma_pinned_bytes");
    let offloaded = count("copy_offload_bytes");
    eprintln!(
        "fsxa: {aliases} aliases made, {breaks} copy-on-write breaks, {dma} bytes moved by direct I/O, {offloaded} bytes copied by the device"
    );
    if bus == boot::Bus::Nvme {
        // Block-aligned copies go to the device; aliases are left for the rest (target
        // pages that are mapped).
        assert!(
            offloaded > 100 * 4096 * seeds.len() as u64,
            "too few bytes copied by the device ({offloaded}) to have tested it"
        );
    } else {
        assert!(
            aliases > 100 * seeds.len() as u64 && breaks > 10 * seeds.len() as u64,
            "too few aliases ({aliases}) or breaks ({breaks}) to have tested them"
        );
        assert_eq!(offloaded, 0, "virtio-blk cannot copy by itself");
    }
    if seeds.iter().any(|s| s % 2 == 0) {
        assert!(dma > 0, "the -d seeds moved nothing by direct I/O");
    }
    assert_image_clean(&img, &o);
}

/// Reads, writes (direct ones too, for even seeds), shared-mapping loads and stores,
/// truncates, copy_file_range and sendfile (which make and break aliases), fsync,
/// drop_caches and reopens, checked against a byte model: 100,000 operations over four
/// seeds. `FSXA_SEEDS=first-last`
/// and `FSXA_OPS=n` widen it (`make soak` does); `FSXA_BUS=ahci` or `nvme` moves the
/// disk off virtio-blk.
#[test]
fn fsxa_random_operations_match_the_model() {
    let seeds: Vec<u64> = match std::env::var("FSXA_SEEDS") {
        Ok(r) => {
            let (a, b) = r.split_once('-').unwrap_or((&r, &r));
            (a.parse().expect("FSXA_SEEDS")..=b.parse().expect("FSXA_SEEDS")).collect()
        }
        Err(_) => vec![1, 2, 3, 4],
    };
    let ops = std::env::var("FSXA_OPS").map_or(25_000, |v| v.parse().expect("FSXA_OPS"));
    let bus = match std::env::var("FSXA_BUS").as_deref() {
        Ok("ahci") => boot::Bus::Ahci,
        Ok("nvme") => boot::Bus::Nvme,
        Ok("virtio") | Err(_) => boot::Bus::Virtio,
        Ok(other) => panic!("FSXA_BUS={other}: virtio, ahci or nvme"),
    };
    for chunk in seeds.chunks(4) {
        fsxa_seeds(chunk, ops, bus);
    }
}

/// fsxa on NVMe, where block-aligned `copy_file_range` and `sendfile` between files go
/// to the device (NVMe Copy) while the same files are read, written (directly too),
/// mapped, truncated and copied through the page cache: 50,000 operations over two
/// seeds, checked against the model and on the image.
#[test]
fn fsxa_with_device_copies_on_nvme() {
    fsxa_seeds(&[5, 6], 25_000, boot::Bus::Nvme);
}
/// A copy `cp src.bin bad.bin` that failed on an unreadable source block: the script
/// left `/bad.status` and `/bad.err`, and `/bad.bin` (on the image `bad`).
struct FailedCopy<'a> {
    bad: &'a Path,
    src: &'a [u8],
    /// The source's unreadable 4 KiB block.
    bad_block: usize,
}

impl FailedCopy<'_> {
    /// `cp` failed with EIO (on `img`); the copy is a prefix of the source that ends
    /// before the bad block; `moved`, what counter `what` says the disks moved, covers
    /// at least that prefix and at most the source (requests in flight with the failed
    /// one count too; their blocks are freed again).
    fn check(&self, img: &Path, o: &boot::Outcome, moved: u64, what: &str) {
        assert_eq!(read_back_text(img, "/bad.status", o), "1\n");
        let err = read_back_text(img, "/bad.err", o);
        assert!(err.contains("Input/output error"), "{err}");
        let bad = read_back(self.bad, "/bad.bin", o);
        assert!(
            moved >= bad.len() as u64 && moved <= self.src.len() as u64,
            "the failing copy: {what} grew by {moved}, {} bytes in the copy",
            bad.len()
        );
        assert!(
            bad.len() <= self.bad_block * 4096 && bad[..] == self.src[..bad.len()],
            "bad.bin holds {} bytes, not a prefix of the source ending before its block {}",
            bad.len(),
            self.bad_block
        );
    }
}

/// A second data disk on `bus`: an ext2 image of `mib` MiB holding only `/name` (`data`),
/// whose file block `block` fails to read and write (blkdebug EIO). The image and the
/// disk to attach.
fn disk_failing_in(
    tree: &str,
    name: &str,
    data: &[u8],
    block: u64,
    mib: u64,
    bus: boot::Bus,
) -> (std::path::PathBuf, boot::Disk) {
    let t = Tree::new(tree);
    t.file(name, data);
    let img = t.image(mib);
    let (out, _) = debugfs(&img, &format!("bmap /{name} {block}"));
    let bad: u64 = String::from_utf8_lossy(&out)
        .trim()
        .parse()
        .expect("debugfs bmap");
    let mut disk = boot::Disk::new(&img, bus);
    // The image's name is unique per call (the Tree's); so is the config's, beside it.
    let config = img.file_stem().and_then(|n| n.to_str()).unwrap_or(tree);
    disk.blkdebug = Some(tests::blkdebug_eio_config(config, bad * 8));
    (img, disk)
}

/// `copy_file_range` (by `cp`) and `sendfile` (by `fbench`) between files of an ext2 on
/// NVMe: whole blocks are copied by the device (NVMe Copy, counted in
/// `copy_offload_bytes`), not by the CPU; holes stay zeros; the file's partial last block
/// goes through the page cache. On a second disk whose source block fails to read
/// (blkdebug), `cp` fails with EIO and the copy holds exactly the chunk the device
/// finished, with no block past it (e2fsck). With `/proc/sys/vm/copy_offload` 0 the
/// page cache copies instead.
#[test]
fn copies_on_nvme_are_done_by_the_device() {
    const MIB: usize = 1 << 20;
    let src = data(8 * MIB + 3000, 31);
    let t = Tree::new("nvmecopy");
    t.file("src.bin", &src).dir("b").rc("\
cat /proc/vmstat > vm0
cp src.bin cfr.bin
cat /proc/vmstat > vm1
fbench -n 1 -w copy_sendfile src.bin > sendfile.out
cat /proc/vmstat > vm2
cp sparse.bin sparse2.bin
cat /proc/vmstat > vm3
mount /dev/nvme1n1 b
cp b/src.bin b/bad.bin 2> bad.err
echo $? > bad.status
cat /proc/vmstat > vm4
umount b
echo 0 > /proc/sys/vm/copy_offload
cp src.bin alias.bin
echo 1 > /proc/sys/vm/copy_offload
cat /proc/vmstat > vm5
sync
poweroff
");
    // 1 MiB of data, a 2 MiB hole, 1 MiB of data.
    let sparse_path = t.path("sparse.bin");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(&sparse_path).expect("create sparse.bin");
        f.write_all_at(&src[..MIB], 0).expect("write sparse.bin");
        f.write_all_at(&src[MIB..2 * MIB], 3 * MIB as u64)
            .expect("write sparse.bin");
    }
    let mut sparse = src[..MIB].to_vec();
    sparse.resize(3 * MIB, 0);
    sparse.extend_from_slice(&src[MIB..2 * MIB]);
    let img = t.image(64);
    let sparse_blocks = debugfs(&img, "blocks /sparse.bin")
        .0
        .split(|c| c.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .count();
    // The second disk: src.bin alone, its block at 6 MiB failing to read.
    let (img_b, disk_b) = disk_failing_in("nvmecopy-b", "src.bin", &src, 1536, 32, boot::Bus::Nvme);
    let q = boot::Qemu {
        disks: vec![boot::Disk::new(&img, boot::Bus::Nvme), disk_b],
        timeout: Some(RC_TIMEOUT),
        ..boot::Qemu::default()
    };
    let o = tests::run(&q);
    assert_powered_off(&o, "nvmecopy");
    assert!(
        o.serial
            .contains("copy (128 ranges of 1024 KiB, 32768 KiB/command)"),
        "the namespace's copy limits are not in the boot log:\n{}",
        describe(&o)
    );
    assert_image_clean(&img, &o);
    assert_image_clean(&img_b, &o);
    let want = file_sha256(&t.path("src.bin"));
    assert_eq!(
        image_file_sha256(&img, "/cfr.bin").as_deref(),
        Some(want.as_str()),
        "cfr.bin"
    );
    assert!(
        read_back(&img, "/sparse2.bin", &o) == sparse,
        "sparse2.bin differs from sparse.bin"
    );
    let vm: Vec<String> = (0..6)
        .map(|i| read_back_text(&img, &format!("/vm{i}"), &o))
        .collect();
    let delta = |i: usize, name: &str| vmstat_field(&vm[i + 1], name) - vmstat_field(&vm[i], name);
    let sendfile = read_back_text(&img, "/sendfile.out", &o);
    eprintln!(
        "device copies: cp {} bytes (CPU {}), sendfile {} (CPU {}), sparse {} of {sparse_blocks} blocks, failing {}; {}",
        delta(0, "copy_offload_bytes"),
        delta(0, "data_copy_bytes"),
        delta(1, "copy_offload_bytes"),
        delta(1, "data_copy_bytes"),
        delta(2, "copy_offload_bytes") / 4096,
        delta(3, "copy_offload_bytes"),
        sendfile.trim()
    );
    // Whole blocks by the device; the CPU copied the 3000-byte tail and what loading
    // the programs and writing the vm files take (far below the 8 MiB).
    assert_eq!(delta(0, "copy_offload_bytes"), 8 * MIB as u64, "cp");
    assert!(delta(0, "data_copy_bytes") < MIB as u64, "cp");
    assert_eq!(delta(1, "copy_offload_bytes"), 8 * MIB as u64, "sendfile");
    assert!(delta(1, "data_copy_bytes") < MIB as u64, "sendfile");
    assert!(sendfile.contains("FBENCH copy_sendfile "), "{sendfile}");
    // The sparse file's two data MiB by the device, its hole by the page cache (mke2fs
    // kept the hole: 512 data blocks and an indirect block).
    assert!(sparse_blocks < 600, "sparse.bin has {sparse_blocks} blocks");
    assert_eq!(delta(2, "copy_offload_bytes"), 2 * MIB as u64, "sparse.bin");
    // The failing copy: `cp` reports EIO; bad.bin holds what the device copied in order
    // before the failing request (maybe nothing), never the bad block.
    let failed = FailedCopy {
        bad: &img_b,
        src: &src,
        bad_block: 1536,
    };
    failed.check(
        &img,
        &o,
        delta(3, "copy_offload_bytes"),
        "copy_offload_bytes",
    );
    // With /proc/sys/vm/copy_offload 0 the page cache copies (aliases), the device not.
    assert_eq!(delta(4, "copy_offload_bytes"), 0, "copy_offload 0");
    assert_eq!(delta(4, "alias_pages"), 2048, "copy_offload 0");
    assert_eq!(
        image_file_sha256(&img, "/alias.bin").as_deref(),
        Some(want.as_str()),
        "alias.bin"
    );
}

/// `cp` between a file and a raw block device (sendfile underneath): to the device the
/// disk DMAs straight from the file's page-cache frames, from the device it DMAs into
/// frames that become the file's pages; only the partial tail page goes through a
/// buffer. The host reads both the raw disk and the file back.
#[test]
fn cp_between_a_file_and_a_raw_device_by_dma() {
    // Ends on a sector boundary but not on a page boundary: the tail is copied.
    let src = data(6 * 1024 * 1024 + 3 * 4096 + 3 * 512, 21);
    let t = Tree::new("rawcp");
    t.file("src.bin", &src).rc("\
cat /proc/vmstat > vm0
cp src.bin /dev/vdb
cat /proc/vmstat > vm1
cp /dev/vdb back.bin
cat /proc/vmstat > vm2
sha256sum src.bin back.bin > hashes
sync
poweroff
");
    let img = t.image(64);
    let raw = boot::target_dir()
        .join("test-disks")
        .join(format!("rawcp-{}.raw", std::process::id()));
    std::fs::write(&raw, vec![0u8; src.len()]).expect("write the raw disk");
    let q = boot::Qemu {
        disks: vec![
            boot::Disk::new(&img, boot::Bus::Virtio),
            boot::Disk::new(&raw, boot::Bus::Virtio),
        ],
        timeout: Some(RC_TIMEOUT),
        ..boot::Qemu::default()
    };
    let o = tests::run(&q);
    assert_powered_off(&o, "rawcp");
    assert_image_clean(&img, &o);
    let on_disk = std::fs::read(&raw).expect("read the raw disk");
    assert!(
        on_disk == src,
        "the raw disk does not hold the file's bytes"
    );
    let want = file_sha256(&t.path("src.bin"));
    assert_eq!(
        image_file_sha256(&img, "/back.bin").as_deref(),
        Some(want.as_str())
    );
    let hashes = read_back_text(&img, "/hashes", &o);
    assert!(hashes.lines().all(|l| l.starts_with(&want)), "{hashes}");
    let vm: Vec<String> = ["/vm0", "/vm1", "/vm2"]
        .iter()
        .map(|p| read_back_text(&img, p, &o))
        .collect();
    let at = |i: usize, name: &str| vmstat_field(&vm[i], name);
    let (to_dev, from_dev) = (
        at(1, "data_copy_bytes") - at(0, "data_copy_bytes"),
        at(2, "data_copy_bytes") - at(1, "data_copy_bytes"),
    );
    eprintln!("cp to the device: +{to_dev} bytes copied; from it: +{from_dev}");
    // Each includes loading `cp` from the initramfs and writing a `vm` file (the same
    // both times); from the device, the 3.5 KiB tail is copied through a buffer too.
    // A copy of the 6 MiB through the CPU would be 6 MiB more.
    assert!(
        to_dev < 1 << 20 && from_dev < to_dev + 8192,
        "{to_dev} / {from_dev}"
    );
    let _ = std::fs::remove_file(&raw);
}

/// `cp` (`copy_file_range`) between ext2 file systems on two disks, virtio-blk to AHCI and
/// back: whole blocks go disk to transit frame to disk by DMA (`transit_bytes`), none
/// through the page cache or the CPU. A source block that fails to read (blkdebug) makes
/// `cp` fail with EIO, the copy holding only a prefix of the source, with no block past
/// it (e2fsck). `cp` (`sendfile`) from a raw virtio disk to a raw NVMe disk takes the
/// same path.
#[test]
fn copies_between_disks_go_through_transit_frames() {
    const MIB: usize = 1 << 20;
    let src = data(12 * MIB + 700, 41);
    let t = Tree::new("transit");
    t.file("src.bin", &src).dir("b").rc("\
mount /dev/sda b
cat /proc/vmstat > vm0
cp src.bin b/there.bin
cat /proc/vmstat > vm1
cp b/there.bin back.bin
cat /proc/vmstat > vm2
cp b/bad.bin bad.bin 2> bad.err
echo $? > bad.status
cat /proc/vmstat > vm3
cp /dev/vdb /dev/nvme0n1
cat /proc/vmstat > vm4
umount b
sync
poweroff
");
    let img = t.image(64);
    let raw_dir = boot::target_dir().join("test-disks");
    let raw_src = raw_dir.join(format!("transit-src-{}.raw", std::process::id()));
    let raw_dst = raw_dir.join(format!("transit-dst-{}.raw", std::process::id()));
    let raw = data(6 * MIB + 3 * 512, 43);
    std::fs::write(&raw_src, &raw).expect("write the raw source");
    std::fs::write(&raw_dst, vec![0u8; 8 * MIB]).expect("write the raw target");
    let (img_b, disk_b) = disk_failing_in("transit-b", "bad.bin", &src, 2000, 64, boot::Bus::Ahci);
    let q = boot::Qemu {
        disks: vec![
            boot::Disk::new(&img, boot::Bus::Virtio),
            boot::Disk::new(&raw_src, boot::Bus::Virtio),
            disk_b,
            boot::Disk::new(&raw_dst, boot::Bus::Nvme),
        ],
        timeout: Some(RC_TIMEOUT),
        ..boot::Qemu::default()
    };
    let o = tests::run(&q);
    assert_powered_off(&o, "transit");
    assert_image_clean(&img, &o);
    assert_image_clean(&img_b, &o);
    let want = file_sha256(&t.path("src.bin"));
    for (image, path) in [(&img_b, "/there.bin"), (&img, "/back.bin")] {
        assert_eq!(
            image_file_sha256(image, path).as_deref(),
            Some(want.as_str()),
            "{path}"
        );
    }
    let vm: Vec<String> = (0..5)
        .map(|i| read_back_text(&img, &format!("/vm{i}"), &o))
        .collect();
    let delta = |i: usize, name: &str| vmstat_field(&vm[i + 1], name) - vmstat_field(&vm[i], name);
    eprintln!(
        "transit: there {} bytes (CPU {}, aliases {}), back {} (CPU {}), failing {}, raw {} (CPU {})",
        delta(0, "transit_bytes"),
        delta(0, "data_copy_bytes"),
        delta(0, "alias_pages"),
        delta(1, "transit_bytes"),
        delta(1, "data_copy_bytes"),
        delta(2, "transit_bytes"),
        delta(3, "transit_bytes"),
        delta(3, "data_copy_bytes"),
    );
    // Whole blocks through transit frames; the 700-byte tail through the page cache.
    for i in [0, 1] {
        assert_eq!(delta(i, "transit_bytes"), 12 * MIB as u64, "copy {i}");
        assert!(delta(i, "data_copy_bytes") < MIB as u64, "copy {i}");
        assert_eq!(delta(i, "copy_offload_bytes"), 0, "copy {i}");
    }
    let failed = FailedCopy {
        bad: &img,
        src: &src,
        bad_block: 2000,
    };
    failed.check(&img, &o, delta(2, "transit_bytes"), "transit_bytes");
    // Raw to raw: every sector through transit frames, the rest of the target untouched.
    assert_eq!(delta(3, "transit_bytes"), raw.len() as u64, "raw copy");
    assert!(delta(3, "data_copy_bytes") < MIB as u64, "raw copy");
    let on_disk = std::fs::read(&raw_dst).expect("read the raw target");
    assert!(
        on_disk[..raw.len()] == raw[..] && on_disk[raw.len()..].iter().all(|&b| b == 0),
        "the raw NVMe disk does not hold the virtio disk's bytes"
    );
    let _ = std::fs::remove_file(&raw_src);
    let _ = std::fs::remove_file(&raw_dst);
}

/// `blkdiscard` (the `BLKDISCARD` ioctl) on a raw NVMe disk: NVMe Dataset Management
/// deallocates the range (QEMU punches a hole in the image: `discard=unmap`), the disk's
/// page cache drops what it held there (a read after the discard sees zeros), and
/// misaligned or out-of-range requests are EINVAL. The host checks the image.
#[test]
fn blkdiscard_deallocates_on_nvme() {
    const MIB: usize = 1 << 20;
    let t = Tree::new("discard");
    t.rc("\
dd if=/dev/nvme0n1 of=before.bin bs=4096 skip=512 count=1
blkdiscard /dev/nvme0n1 1048576 2097152
echo $? > ok.status
dd if=/dev/nvme0n1 of=after.bin bs=4096 skip=512 count=1
blkdiscard /dev/nvme0n1 1000 512 2> odd.err
echo $? > odd.status
blkdiscard /dev/nvme0n1 8388608 4096 2> past.err
echo $? > past.status
sync
poweroff
");
    let img = t.image(16);
    let raw_path = boot::target_dir()
        .join("test-disks")
        .join(format!("discard-{}.raw", std::process::id()));
    let raw = data(8 * MIB, 47);
    std::fs::write(&raw_path, &raw).expect("write the raw disk");
    let mut disk = boot::Disk::new(&raw_path, boot::Bus::Nvme);
    disk.drive_opts = Some("discard=unmap".into());
    let q = boot::Qemu {
        disks: vec![boot::Disk::new(&img, boot::Bus::Virtio), disk],
        timeout: Some(RC_TIMEOUT),
        ..boot::Qemu::default()
    };
    let o = tests::run(&q);
    assert_powered_off(&o, "discard");
    assert!(
        o.serial.contains("deallocate, "),
        "the NVMe disk does not say it deallocates:\n{}",
        describe(&o)
    );
    assert_image_clean(&img, &o);
    assert_eq!(read_back_text(&img, "/ok.status", &o), "0\n");
    assert!(read_back(&img, "/before.bin", &o) == raw[2 * MIB..2 * MIB + 4096]);
    assert!(
        read_back(&img, "/after.bin", &o).iter().all(|&b| b == 0),
        "a read after the discard still sees the old bytes (the page cache kept them)"
    );
    for (name, text) in [("odd", "Invalid argument"), ("past", "Invalid argument")] {
        assert_eq!(read_back_text(&img, &format!("/{name}.status"), &o), "1\n");
        let err = read_back_text(&img, &format!("/{name}.err"), &o);
        assert!(err.contains(text), "{name}: {err}");
    }
    let on_disk = std::fs::read(&raw_path).expect("read the raw disk");
    assert!(
        on_disk[MIB..3 * MIB].iter().all(|&b| b == 0),
        "the discarded range still holds data on the image"
    );
    assert!(
        on_disk[..MIB] == raw[..MIB] && on_disk[3 * MIB..] == raw[3 * MIB..],
        "bytes outside the discarded range changed"
    );
    let _ = std::fs::remove_file(&raw_path);
}
