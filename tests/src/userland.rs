//! Helpers for the userland tests (tests/tests/userland.rs).
//!
//! AliasOS boots its default init, `/bin/sh --boot`, which runs the data disk's `/etc/rc`
//! (seen as `/mnt/etc/rc`) from `/mnt`, echoing each command line as `+ LINE` on the
//! console before its output. A test builds that disk on the host from a directory tree
//! ([`Tree`], then `mke2fs -t ext2 -d`), boots AliasOS with it ([`boot_rc`]; the rc ends
//! with `poweroff`), requires a clean power-off (QEMU exit status 0, [`assert_powered_off`]),
//! then checks the image with `e2fsck -fn` ([`assert_image_clean`]) and reads what the rc
//! wrote with `debugfs -R 'cat PATH'` ([`read_back`]). Failure messages carry the tail of
//! the serial log.
//!
//! The tools in the initramfs are the `cargo build -p user-tools --bins --release`
//! executables; [`host_tools`] returns the same ones for running the host half of a
//! differential test.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use boot::{Bus, Disk, Outcome, Qemu};

/// How many lines of the serial log a failure message shows.
pub const SERIAL_TAIL_LINES: usize = 80;

/// A directory tree on the host that becomes the root of an ext2 data disk.
/// Lives under `target/test-disks/` and is named after the test, this process and a
/// counter, so no two trees (or their images) ever share a name.
pub struct Tree {
    name: String,
    root: PathBuf,
}

impl Tree {
    /// A fresh, empty tree for the test `name`.
    pub fn new(name: &str) -> Tree {
        // Unique per call, not just per process: the tests of one binary are threads of
        // one process and must never share a tree or an image.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("userland-{name}-{}-{n}", std::process::id());
        let root = boot::target_dir()
            .join("test-disks")
            .join(format!("{name}.tree"));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("create {}: {e}", root.display()));
        Tree { name, root }
    }

    /// The host path of `rel` inside the tree.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// The tree's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Create directory `rel` (and its parents).
    pub fn dir(&self, rel: &str) -> &Self {
        let p = self.path(rel);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        self
    }

    fn put(&self, rel: &str, data: &[u8], mode: u32) -> &Self {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
        }
        std::fs::write(&p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
        self
    }

    /// A regular file (mode 0644).
    pub fn file(&self, rel: &str, data: &[u8]) -> &Self {
        self.put(rel, data, 0o644)
    }

    /// An executable (mode 0755).
    pub fn exe(&self, rel: &str, data: &[u8]) -> &Self {
        self.put(rel, data, 0o755)
    }

    /// The data disk's `/etc/rc`. It should end with `poweroff`.
    pub fn rc(&self, script: &str) -> &Self {
        self.file("etc/rc", script.as_bytes())
    }

    /// `mke2fs -q -F -t ext2 -b 4096 -d TREE IMAGE` on a fresh sparse image of `mib` MiB
    /// under `target/test-disks/`.
    pub fn image(&self, mib: u64) -> PathBuf {
        let img = boot::target_dir()
            .join("test-disks")
            .join(format!("{}.img", self.name));
        let f =
            std::fs::File::create(&img).unwrap_or_else(|e| panic!("create {}: {e}", img.display()));
        f.set_len(mib << 20).expect("size the image");
        drop(f);
        let out = Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext2", "-b", "4096", "-d"])
            .arg(&self.root)
            .arg(&img)
            .output()
            .expect("run mke2fs (tools/deps.sh installs e2fsprogs)");
        assert!(
            out.status.success(),
            "mke2fs -d {} failed: {}",
            self.root.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        img
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The user tools as they go into the initramfs (`cargo build -p user-tools --bins
/// --release`, built once per test process): the directory holding them.
pub fn host_tools() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let bins = boot::initramfs::build_user_tools()
            .unwrap_or_else(|e| panic!("building the user tools: {e}"));
        bins[0]
            .parent()
            .expect("the tools' directory")
            .to_path_buf()
    })
}

/// The host executable of user tool `name` (see [`host_tools`]).
pub fn host_tool(name: &str) -> PathBuf {
    let p = host_tools().join(name);
    assert!(p.is_file(), "no user tool {}", p.display());
    p
}

/// Boot AliasOS (BIOS, q35, 512 MiB, no kernel command line: init is `/bin/sh --boot`)
/// with `image` as the only data disk (virtio-blk), until QEMU exits or `timeout`.
/// With `ALIASOS_SERIAL=1` the serial log is printed (use `-- --nocapture`).
pub fn boot_rc(image: &Path, timeout: Duration) -> Outcome {
    boot_rc_with(image, "512M", None, timeout)
}

/// [`boot_rc`] with the data disk on `bus`.
pub fn boot_rc_on(image: &Path, bus: Bus, timeout: Duration) -> Outcome {
    let q = Qemu {
        disks: vec![Disk::new(image, bus)],
        timeout: Some(timeout),
        ..Qemu::default()
    };
    crate::run(&q)
}

/// [`boot_rc`] with `mem` of RAM (QEMU syntax) and, if given, a kernel command line.
pub fn boot_rc_with(image: &Path, mem: &str, cmdline: Option<&str>, timeout: Duration) -> Outcome {
    let q = Qemu {
        disks: vec![Disk::new(image, Bus::Virtio)],
        timeout: Some(timeout),
        mem: mem.into(),
        cmdline: cmdline.map(str::to_string),
        ..Qemu::default()
    };
    crate::run(&q)
}

/// The last `n` lines of `serial`.
pub fn serial_tail(serial: &str, n: usize) -> String {
    let lines: Vec<&str> = serial.lines().collect();
    let from = lines.len().saturating_sub(n);
    let mut s = String::new();
    if from > 0 {
        s.push_str(&format!("[... {from} earlier lines]\n"));
    }
    for l in &lines[from..] {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// How the run ended, with the tail of the serial log, for failure messages.
pub fn describe(o: &Outcome) -> String {
    let how = if o.timed_out {
        format!("QEMU timed out after {:.0} s", o.elapsed.as_secs_f64())
    } else {
        let meaning = match o.status {
            Some(0) => " (clean power-off)",
            Some(boot::exit_code::PANIC) => " (kernel panic)",
            Some(boot::exit_code::EXCEPTION) => " (unhandled CPU exception in the kernel)",
            Some(boot::exit_code::TEST_FAILED) => " (kernel test failure)",
            _ => "",
        };
        format!(
            "QEMU exited with {:?}{meaning} after {:.1} s",
            o.status,
            o.elapsed.as_secs_f64()
        )
    };
    format!(
        "{how}; last {SERIAL_TAIL_LINES} lines of the serial log:\n{}",
        serial_tail(&o.serial, SERIAL_TAIL_LINES)
    )
}

/// The machine powered itself off (QEMU exit status 0) within the timeout, and the shell
/// got to run `/mnt/etc/rc`.
pub fn assert_powered_off(o: &Outcome, what: &str) {
    assert!(
        !o.timed_out && o.status == Some(0),
        "{what}: AliasOS did not power off cleanly: {}",
        describe(o)
    );
    assert!(
        o.serial.contains("sh: running /mnt/etc/rc"),
        "{what}: the shell never ran /mnt/etc/rc: {}",
        describe(o)
    );
}

/// `e2fsck -fn` finds the image clean.
pub fn assert_image_clean(image: &Path, o: &Outcome) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(image)
        .output()
        .expect("run e2fsck");
    assert!(
        out.status.success(),
        "e2fsck -fn {} found problems:\n{}{}\n{}",
        image.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        describe(o)
    );
}

/// `debugfs -R "REQUEST" IMAGE`: stdout and stderr.
pub fn debugfs(image: &Path, request: &str) -> (Vec<u8>, String) {
    let out = Command::new("debugfs")
        .env("DEBUGFS_PAGER", "__none__")
        .env("PAGER", "__none__")
        .arg("-R")
        .arg(request)
        .arg(image)
        .stdin(Stdio::null())
        .output()
        .expect("run debugfs");
    (
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The contents of `path` (absolute, in the data disk) on the image, or None if it does
/// not exist.
pub fn try_read_back(image: &Path, path: &str) -> Option<Vec<u8>> {
    let (data, err) = debugfs(image, &format!("cat {path}"));
    if err.contains("not found") || err.contains("File not found") {
        None
    } else {
        Some(data)
    }
}

/// The contents of `path` on the image; a missing file fails the test with the serial tail.
pub fn read_back(image: &Path, path: &str, o: &Outcome) -> Vec<u8> {
    try_read_back(image, path)
        .unwrap_or_else(|| panic!("{path} is not on the data disk; {}", describe(o)))
}

/// The contents of `path` on the image as text.
pub fn read_back_text(image: &Path, path: &str, o: &Outcome) -> String {
    String::from_utf8_lossy(&read_back(image, path, o)).into_owned()
}

/// `sha256sum NAMES...` run on the host in `dir` (GNU coreutils): the expected contents
/// of a `sha256sum` output file written inside AliasOS for the same names.
pub fn host_sha256sum(dir: &Path, names: &[&str]) -> String {
    let out = Command::new("sha256sum")
        .args(names)
        .current_dir(dir)
        .output()
        .expect("run sha256sum");
    assert!(
        out.status.success(),
        "sha256sum {names:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The SHA-256 (hex, GNU sha256sum's digest) of `path` on the image, read by debugfs
/// into a temporary file of this call's own; None if the file does not exist.
pub fn image_file_sha256(image: &Path, path: &str) -> Option<String> {
    let dir = tempfile::Builder::new()
        .prefix("dump-")
        .tempdir_in(boot::target_dir().join("test-disks"))
        .expect("a temporary directory");
    let dump = dir.path().join("file");
    let (_, err) = debugfs(image, &format!("dump {path} {}", dump.display()));
    if err.contains("not found") || !dump.exists() {
        return None;
    }
    Some(file_sha256(&dump))
}

/// The SHA-256 (hex) of a host file, by GNU sha256sum.
pub fn file_sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Deterministic test data: `len` bytes of pattern `seed`.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `musl-gcc`, if installed (tools/deps.sh installs Debian's musl-tools).
pub fn musl_gcc() -> Option<PathBuf> {
    let ok = Command::new("musl-gcc")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| PathBuf::from("musl-gcc"))
}

/// Compile the C program `tests/c/NAME.c` with `musl-gcc -static -O2 -Wall` into
/// `target/userland/NAME`; Err(message) if musl-gcc is missing or the build fails.
pub fn build_c(name: &str) -> Result<PathBuf, String> {
    let cc = musl_gcc().ok_or_else(|| {
        "musl-gcc is not installed (run tools/deps.sh, which installs Debian's musl-tools)"
            .to_string()
    })?;
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("c")
        .join(format!("{name}.c"));
    let dir = boot::target_dir().join("userland");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    // A name of our own, renamed into place: concurrent builds never see half a file.
    let exe = dir.join(name);
    let tmp = boot::temp_beside(&exe)?;
    let out = Command::new(&cc)
        .args(["-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&tmp)
        .arg(&src)
        .output()
        .map_err(|e| format!("run musl-gcc: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "musl-gcc -static -O2 {} failed:\n{}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    tmp.persist(&exe)
        .map_err(|e| format!("rename to {}: {e}", exe.display()))?;
    Ok(exe)
}

/// The ELF file type of `bytes` (2 = ET_EXEC) and whether it has a PT_INTERP (is
/// dynamically linked); None if it is not a 64-bit ELF file.
pub fn elf_kind(bytes: &[u8]) -> Option<(u16, bool)> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return None;
    }
    let e_type = u16::from_le_bytes([bytes[16], bytes[17]]);
    let phoff = u64::from_le_bytes(bytes[32..40].try_into().ok()?) as usize;
    let phentsize = u16::from_le_bytes([bytes[54], bytes[55]]) as usize;
    let phnum = u16::from_le_bytes([bytes[56], bytes[57]]) as usize;
    let mut interp = false;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let p_type = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?);
        interp |= p_type == 3;
    }
    Some((e_type, interp))
}
