//! Host half of the differential tool tests: run each AliasOS tool binary on
//! the Linux host (same ABI) over files in a temp dir and compare with GNU
//! coreutils/diffutils where the formats match, or with expected strings.
//! `scripts/tools.sh` + `scripts/tools.expected` is the part meant to run
//! unchanged inside AliasOS later (e.g. from `/etc/rc`).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

macro_rules! bin {
    ($name:literal) => {
        env!(concat!("CARGO_BIN_EXE_", $name))
    };
}

const ALL: &[&str] = &[
    bin!("echo"),
    bin!("cat"),
    bin!("ls"),
    bin!("cp"),
    bin!("mv"),
    bin!("rm"),
    bin!("mkdir"),
    bin!("stat"),
    bin!("dd"),
    bin!("sha256sum"),
    bin!("cmp"),
    bin!("sync"),
    bin!("sleep"),
    bin!("free"),
    bin!("poweroff"),
    bin!("mount"),
    bin!("umount"),
    bin!("sh"),
    bin!("sysfuzz"),
];

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "aliasos-user-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn join(&self, s: &str) -> PathBuf {
        self.0.join(s)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Deterministic pseudo-random bytes.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn run_in(dir: &Path, prog: &str, args: &[&str]) -> Output {
    Command::new(prog)
        .args(args)
        .current_dir(dir)
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{prog}: {e}"))
}

fn run_stdin(dir: &Path, prog: &str, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut c = Command::new(prog)
        .args(args)
        .current_dir(dir)
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input).unwrap();
    c.wait_with_output().unwrap()
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Same stdout, stderr (with the program name normalised) and exit status.
fn assert_same(ours: &Output, gnu: &Output, what: &str) {
    assert_eq!(s(&ours.stdout), s(&gnu.stdout), "{what}: stdout");
    assert_eq!(s(&ours.stderr), s(&gnu.stderr), "{what}: stderr");
    assert_eq!(ours.status.code(), gnu.status.code(), "{what}: status");
}

#[test]
fn binaries_are_static_non_pie_elf() {
    for path in ALL {
        let f = fs::read(path).unwrap();
        assert_eq!(&f[..4], b"\x7fELF", "{path}");
        let e_type = u16::from_le_bytes([f[16], f[17]]);
        assert_eq!(e_type, 2, "{path}: ET_EXEC (non-PIE)");
        let phoff = u64::from_le_bytes(f[32..40].try_into().unwrap()) as usize;
        let phentsize = u16::from_le_bytes([f[54], f[55]]) as usize;
        let phnum = u16::from_le_bytes([f[56], f[57]]) as usize;
        for i in 0..phnum {
            let p_type = u32::from_le_bytes(f[phoff + i * phentsize..][..4].try_into().unwrap());
            assert_ne!(p_type, 3, "{path}: has PT_INTERP");
            assert_ne!(p_type, 2, "{path}: has PT_DYNAMIC");
        }
    }
}

#[test]
fn script_runs_like_expected_and_like_gnu() {
    let expected = include_str!("scripts/tools.expected");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/tools.sh");
    let bindir = Path::new(bin!("sh")).parent().unwrap();
    let t = TempDir::new();
    let o = Command::new(bin!("sh"))
        .arg(script)
        .current_dir(t.path())
        .env_clear()
        .env("PATH", bindir)
        .output()
        .unwrap();
    let mut all = o.stdout.clone();
    all.extend_from_slice(&o.stderr);
    // stderr only carries the rm line; compare line sets in order of stdout.
    let got = s(&o.stdout);
    let exp_stdout: String = expected
        .lines()
        .filter(|l| !l.starts_with("rm: "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(got, exp_stdout);
    assert_eq!(
        s(&o.stderr),
        "rm: cannot remove 'a/nope': No such file or directory\n"
    );
    assert_eq!(o.status.code(), Some(0));
    // The reference: bash with GNU tools gives the same output.
    if have("bash") && have("sha256sum") {
        let t2 = TempDir::new();
        let g = Command::new("bash")
            .arg(script)
            .current_dir(t2.path())
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap();
        assert_eq!(s(&g.stdout), exp_stdout, "GNU reference");
    }
}

#[test]
fn echo_matches_gnu() {
    let t = TempDir::new();
    for args in [
        &[][..],
        &["hello", "world"],
        &["-n", "no newline"],
        &["-e", "a\\tb\\nc\\\\d\\x"],
        &["-e", "stop\\cnot"],
        &["-n", "-e", "x\\0101y"],
        &["--", "-x"],
        &["", "", "a"],
    ] {
        let ours = run_in(t.path(), bin!("echo"), args);
        let gnu = run_in(t.path(), "/bin/echo", args);
        assert_same(&ours, &gnu, &format!("echo {args:?}"));
    }
}

#[test]
fn cat_matches_gnu() {
    let t = TempDir::new();
    fs::write(t.join("a"), b"first\n").unwrap();
    fs::write(t.join("b"), data(300_000, 1)).unwrap();
    fs::write(t.join("e"), b"").unwrap();
    for args in [
        &["a"][..],
        &["a", "b", "e", "a"],
        &["e"],
        &["a", "missing", "a"],
        &["."],
    ] {
        let ours = run_in(t.path(), bin!("cat"), args);
        let gnu = run_in(t.path(), "cat", args);
        assert_eq!(ours.stdout, gnu.stdout, "cat {args:?}");
        assert_eq!(ours.status.code(), gnu.status.code(), "cat {args:?}");
    }
    let o = run_in(t.path(), bin!("cat"), &["missing"]);
    assert_eq!(s(&o.stderr), "cat: missing: No such file or directory\n");
    let o = run_stdin(t.path(), bin!("cat"), &[], b"from stdin");
    assert_eq!(o.stdout, b"from stdin");
    let o = run_stdin(t.path(), bin!("cat"), &["a", "-", "a"], b"mid\n");
    assert_eq!(o.stdout, b"first\nmid\nfirst\n");
}

#[test]
fn sha256sum_matches_gnu() {
    let t = TempDir::new();
    let mut names = vec![];
    for (i, len) in [
        0usize, 1, 3, 55, 56, 63, 64, 65, 119, 120, 1000, 65_536, 1_048_579,
    ]
    .iter()
    .enumerate()
    {
        let n = format!("f{len}");
        fs::write(t.join(&n), data(*len, i as u64)).unwrap();
        names.push(n);
    }
    let args: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let ours = run_in(t.path(), bin!("sha256sum"), &args);
    let gnu = run_in(t.path(), "sha256sum", &args);
    assert_same(&ours, &gnu, "sha256sum files");
    assert_eq!(
        s(&run_stdin(t.path(), bin!("sha256sum"), &[], b"abc").stdout),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  -\n"
    );
    let ours = run_in(t.path(), bin!("sha256sum"), &["f1", "nope", "f3"]);
    let gnu = run_in(t.path(), "sha256sum", &["f1", "nope", "f3"]);
    assert_same(&ours, &gnu, "sha256sum missing file");
}

#[test]
fn cmp_matches_gnu() {
    let t = TempDir::new();
    let big = data(200_000, 7);
    let mut big2 = big.clone();
    big2[150_001] ^= 1;
    for (n, d) in [
        ("a", &b"abc\ndef"[..]),
        ("b", b"abc\ndxf"),
        ("c", b"abc"),
        ("nl", b"abc\n"),
        ("nl2", b"abc\nx"),
        ("e", b""),
        ("big", &big),
        ("big2", &big2),
    ] {
        fs::write(t.join(n), d).unwrap();
    }
    for args in [
        ["a", "a"],
        ["a", "b"],
        ["a", "c"],
        ["c", "a"],
        ["a", "e"],
        ["e", "a"],
        ["nl", "nl2"],
        ["big", "big2"],
        ["big", "big"],
        ["a", "missing"],
    ] {
        let ours = run_in(t.path(), bin!("cmp"), &args);
        let gnu = run_in(t.path(), "cmp", &args);
        assert_same(&ours, &gnu, &format!("cmp {args:?}"));
    }
    let o = run_in(t.path(), bin!("cmp"), &["-s", "a", "b"]);
    assert_eq!((o.stdout.len(), o.status.code()), (0, Some(1)));
}

fn dd_summary(o: &Output) -> (Vec<String>, String) {
    let err = s(&o.stderr);
    let lines: Vec<String> = err.lines().map(|l| l.to_string()).collect();
    assert!(lines.len() >= 3, "dd stderr: {err}");
    let n = lines.len();
    let bytes = lines[n - 1].split(" bytes").next().unwrap().to_string();
    (lines[n - 3..n - 1].to_vec(), bytes)
}

#[test]
fn dd_matches_gnu() {
    let t = TempDir::new();
    fs::write(t.join("in"), data(1_000_000, 3)).unwrap();
    let cases: &[&[&str]] = &[
        &[],
        &["bs=4K"],
        &["bs=64K", "count=3"],
        &["bs=1K", "skip=10", "count=7"],
        &["bs=1M"],
        &["bs=512", "seek=3", "count=2"],
        &["bs=1000", "skip=999"],
        &["bs=2x512", "count=5", "conv=fsync"],
        &["bs=1KB", "count=2", "conv=notrunc", "seek=1"],
    ];
    for (i, extra) in cases.iter().enumerate() {
        let mut outs = vec![];
        for (who, prog) in [("ours", bin!("dd")), ("gnu", "dd")] {
            let of = format!("out-{who}-{i}");
            // Pre-existing longer output: checks truncation/notrunc.
            fs::write(t.join(&of), vec![0xAAu8; 3000]).unwrap();
            let mut args = vec!["if=in".to_string(), format!("of={of}")];
            args.extend(extra.iter().map(|s| s.to_string()));
            let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
            let o = run_in(t.path(), prog, &a);
            assert!(o.status.success(), "{prog} {a:?}: {}", s(&o.stderr));
            outs.push((dd_summary(&o), fs::read(t.join(&of)).unwrap()));
        }
        assert_eq!(outs[0].0, outs[1].0, "dd {extra:?}: summary");
        assert!(outs[0].1 == outs[1].1, "dd {extra:?}: output bytes differ");
    }
    // stdin/stdout, status=none, errors.
    let o = run_stdin(
        t.path(),
        bin!("dd"),
        &["status=none", "bs=3", "count=2"],
        b"abcdefgh",
    );
    assert_eq!(
        (o.stdout.as_slice(), o.stderr.as_slice()),
        (&b"abcdef"[..], &b""[..])
    );
    let o = run_in(t.path(), bin!("dd"), &["if=missing", "of=x"]);
    assert_eq!(
        s(&o.stderr),
        "dd: failed to open 'missing': No such file or directory\n"
    );
    assert_eq!(o.status.code(), Some(1));
    let o = run_in(t.path(), bin!("dd"), &["bs=1Q"]);
    assert_eq!(o.status.code(), Some(1));
    // The transfer line has GNU's shape.
    let o = run_in(t.path(), bin!("dd"), &["if=in", "of=/dev/null", "bs=1M"]);
    let last = s(&o.stderr).lines().last().unwrap().to_string();
    assert!(
        last.starts_with("1000000 bytes (1.0 MB, 977 KiB) copied, "),
        "{last}"
    );
    assert!(last.ends_with("B/s"), "{last}");
}

#[test]
fn cp_mv_rm_mkdir_effects() {
    let t = TempDir::new();
    let big = data(3_000_000, 9);
    fs::write(t.join("big"), &big).unwrap();
    fs::set_permissions(t.join("big"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(t.join("small"), b"small\n").unwrap();
    let ok = |prog: &str, args: &[&str]| {
        let o = run_in(t.path(), prog, args);
        assert!(o.status.success(), "{prog} {args:?}: {}", s(&o.stderr));
    };
    ok(bin!("cp"), &["big", "copy"]);
    assert!(fs::read(t.join("copy")).unwrap() == big);
    assert_eq!(fs::metadata(t.join("copy")).unwrap().mode() & 0o777, 0o640);
    fs::write(t.join("over"), vec![1u8; 5_000_000]).unwrap();
    ok(bin!("cp"), &["small", "over"]);
    assert_eq!(fs::read(t.join("over")).unwrap(), b"small\n");
    ok(bin!("mkdir"), &["d1", "d2"]);
    ok(bin!("mkdir"), &["-p", "p/q/r/", "p/q"]);
    assert!(t.join("p/q/r").is_dir());
    ok(bin!("cp"), &["big", "small", "d1"]);
    assert!(fs::read(t.join("d1/big")).unwrap() == big);
    ok(bin!("mv"), &["copy", "d2/moved"]);
    assert!(!t.join("copy").exists() && fs::read(t.join("d2/moved")).unwrap() == big);
    ok(bin!("mv"), &["small", "over", "d2"]);
    assert!(t.join("d2/small").exists() && t.join("d2/over").exists() && !t.join("small").exists());
    ok(bin!("mv"), &["d2", "p/q/r"]);
    assert!(t.join("p/q/r/d2/moved").exists());
    ok(bin!("rm"), &["d1/big"]);
    assert!(!t.join("d1/big").exists());
    ok(bin!("rm"), &["-f", "does-not-exist"]);
    ok(bin!("rm"), &["-r", "p", "d1"]);
    assert!(!t.join("p").exists() && !t.join("d1").exists());

    // Error messages and statuses, compared with GNU where identical.
    fs::create_dir(t.join("dir")).unwrap();
    for (prog, gnu, args) in [
        (bin!("rm"), "rm", &["nope"][..]),
        (bin!("rm"), "rm", &["dir"]),
        (bin!("mkdir"), "mkdir", &["dir"]),
        (bin!("mkdir"), "mkdir", &["x/y"]),
    ] {
        let o = run_in(t.path(), prog, args);
        let g = run_in(t.path(), gnu, args);
        assert_eq!(o.status.code(), g.status.code(), "{gnu} {args:?}");
        if gnu == "rm" {
            assert_eq!(s(&o.stderr), s(&g.stderr), "{gnu} {args:?}");
        }
    }
    let o = run_in(t.path(), bin!("cp"), &["nope", "x"]);
    assert_eq!(
        (s(&o.stderr).as_str(), o.status.code()),
        ("cp: nope: No such file or directory\n", Some(1))
    );
    let o = run_in(t.path(), bin!("mv"), &["nope", "x"]);
    assert_eq!(
        (s(&o.stderr).as_str(), o.status.code()),
        ("mv: nope: No such file or directory\n", Some(1))
    );
}

#[test]
fn ls_plain_matches_gnu_and_long_format() {
    let t = TempDir::new();
    fs::write(t.join("b.txt"), vec![7u8; 12345]).unwrap();
    fs::write(t.join("A"), b"").unwrap();
    fs::write(t.join("a"), b"x").unwrap();
    fs::write(t.join(".hidden"), b"").unwrap();
    fs::create_dir(t.join("sub")).unwrap();
    std::os::unix::fs::symlink("b.txt", t.join("link")).unwrap();
    fs::set_permissions(t.join("a"), fs::Permissions::from_mode(0o754)).unwrap();
    fs::set_permissions(t.join("A"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(t.join("b.txt"), fs::Permissions::from_mode(0o644)).unwrap();
    for args in [&[][..], &["-a"], &["."], &["sub"], &["a", "sub", "A"]] {
        let ours = run_in(t.path(), bin!("ls"), args);
        let gnu = run_in(t.path(), "ls", args);
        assert_same(&ours, &gnu, &format!("ls {args:?}"));
    }
    let o = run_in(t.path(), bin!("ls"), &["-l"]);
    let dsize = fs::metadata(t.join("sub")).unwrap().len();
    let w = dsize.to_string().len().max(5);
    let expected = format!(
        "-rw------- 1 {:>w$} A\n-rwxr-xr-- 1 {:>w$} a\n-rw-r--r-- 1 {:>w$} b.txt\nlrwxrwxrwx 1 {:>w$} link -> b.txt\ndrwxr-xr-x 2 {:>w$} sub\n",
        0, 1, 12345, 5, dsize
    );
    assert_eq!(s(&o.stdout), expected);
    let o = run_in(t.path(), bin!("ls"), &["missing"]);
    assert_eq!(
        (s(&o.stderr).as_str(), o.status.code()),
        ("ls: missing: No such file or directory\n", Some(2))
    );
}

#[test]
fn stat_matches_gnu_values() {
    let t = TempDir::new();
    fs::write(t.join("f"), data(5000, 4)).unwrap();
    fs::write(t.join("empty"), b"").unwrap();
    fs::create_dir(t.join("d")).unwrap();
    std::os::unix::fs::symlink("f", t.join("l")).unwrap();
    for name in ["f", "empty", "d", "l"] {
        let o = run_in(t.path(), bin!("stat"), &[name]);
        assert!(o.status.success());
        let g = run_in(
            t.path(),
            "stat",
            &[
                "-c",
                "  File: %n\n  Size: %s\nBlocks: %b\n Links: %h\n Inode: %i\nAccess: (%04a/%A)\n  Type: %F",
                name,
            ],
        );
        assert_eq!(s(&o.stdout), s(&g.stdout), "stat {name}");
    }
    let o = run_in(t.path(), bin!("stat"), &["nope"]);
    assert_eq!(
        (s(&o.stderr).as_str(), o.status.code()),
        ("stat: nope: No such file or directory\n", Some(1))
    );
}

#[test]
fn free_layout_matches_procps() {
    let t = TempDir::new();
    let o = run_in(t.path(), bin!("free"), &[]);
    assert!(o.status.success());
    let out = s(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3);
    let total = fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(lines[1].split_whitespace().nth(1), Some(total.as_str()));
    assert!(lines[1].starts_with("Mem:") && lines[2].starts_with("Swap:"));
    if have("free") {
        let g = run_in(t.path(), "free", &[]);
        let gs = s(&g.stdout);
        let gl: Vec<&str> = gs.lines().collect();
        assert_eq!(lines[0], gl[0], "header");
        assert_eq!(lines[1].len(), gl[1].len(), "Mem: line width");
        assert_eq!(
            lines[1].split_whitespace().nth(1),
            gl[1].split_whitespace().nth(1)
        );
    }
}

#[test]
fn sleep_sync_mount_umount() {
    let t = TempDir::new();
    let start = std::time::Instant::now();
    let o = run_in(t.path(), bin!("sleep"), &["0.2"]);
    assert!(o.status.success());
    assert!(start.elapsed().as_secs_f64() >= 0.19);
    assert_eq!(
        run_in(t.path(), bin!("sleep"), &["x"]).status.code(),
        Some(1)
    );
    assert!(run_in(t.path(), bin!("sync"), &[]).status.success());
    // `mount` without arguments prints /proc/mounts.
    let o = run_in(t.path(), bin!("mount"), &[]);
    assert!(o.status.success());
    assert!(
        s(&o.stdout)
            .lines()
            .any(|l| l.split(' ').nth(1) == Some("/proc"))
    );
    // Unmounting a plain directory fails with EINVAL (or EPERM without privileges).
    let o = run_in(t.path(), bin!("umount"), &["."]);
    assert_eq!(o.status.code(), Some(32));
    let e = s(&o.stderr);
    assert!(
        e == "umount: .: Invalid argument\n" || e == "umount: .: Operation not permitted\n",
        "{e}"
    );
    // Mounting a missing device fails cleanly.
    let o = run_in(
        t.path(),
        bin!("mount"),
        &["-t", "ext2", "/nonexistent-dev", "."],
    );
    assert_eq!(o.status.code(), Some(32));
    // poweroff is deliberately not run on the host.
}

/// Shell: compare with bash for the supported subset.
#[test]
fn sh_matches_bash() {
    let t = TempDir::new();
    let bindir = Path::new(bin!("sh"))
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    fs::write(t.join("in.txt"), b"line1\nline2\nline3\n").unwrap();
    let scripts = [
        "echo hi 'single  $HOME' \"double  $X\" a\\ b",
        "false; echo $?; true; echo $?",
        "nonexistent-cmd 2>/dev/null; echo $?",
        "echo one > o.txt; echo two >> o.txt; cat < o.txt; cat o.txt | cat | cat",
        "cat in.txt | sha256sum",
        "X=5; echo ${X}x$X; export Y=7; sh -c 'echo $Y'",
        "cd /; pwd; cd /nonexistent 2>/dev/null; echo $?",
        "false && echo A || echo B; true || echo C && echo D",
        "sh -c 'exit 3'; echo $?",
        "cat missing 2>&1 | cat",
        "echo a # comment here",
        "echo -n x; echo y",
        "exit 5",
        "ls in.txt nope 2>/dev/null; echo $?",
        "echo \"$?\"; false; echo \"$?\"",
    ];
    for script in scripts {
        let ours = Command::new(bin!("sh"))
            .args(["-c", script])
            .current_dir(t.path())
            .env_clear()
            .env("PATH", &bindir)
            .env("X", "ex")
            .output()
            .unwrap();
        let bash = Command::new("bash")
            .args(["-c", script])
            .current_dir(t.path())
            .env_clear()
            .env("PATH", format!("{bindir}:/usr/bin:/bin"))
            .env("X", "ex")
            .output()
            .unwrap();
        assert_same(&ours, &bash, script);
    }
    // Script from stdin, with -v echoing each command.
    let o = run_stdin(
        t.path(),
        bin!("sh"),
        &["-v"],
        b"echo one\necho two | cat\nexit 4\necho no\n",
    );
    assert_eq!(s(&o.stdout), "one\ntwo\n");
    assert_eq!(s(&o.stderr), "echo one\necho two | cat\nexit 4\n");
    assert_eq!(o.status.code(), Some(4));
    let o = run_in(t.path(), bin!("sh"), &["-c", "echo 'unterminated"]);
    assert_eq!(o.status.code(), Some(2));
}

/// `sh --boot RC DIR` (the kernel runs `sh --boot`, which means `/mnt/etc/rc` from
/// `/mnt`): motd, the rc with each line echoed before its output, `exit` ending only
/// the rc, then commands from stdin until end of file.
#[test]
fn sh_boot_runs_rc_then_reads_stdin() {
    let t = TempDir::new();
    fs::create_dir(t.join("sub")).unwrap();
    fs::create_dir(t.join("etc")).unwrap();
    let rc = t.join("etc/rc");
    fs::write(
        &rc,
        "# a comment\necho one\n\ncd sub\npwd\necho two > f; cat f | cat\nfalse || echo three\nexit 3\necho never\n",
    )
    .unwrap();
    let bindir = Path::new(bin!("sh")).parent().unwrap();
    let run = |input: &[u8]| {
        use std::io::Write;
        let mut c = Command::new(bin!("sh"))
            .arg("--boot")
            .arg(&rc)
            .arg(t.path())
            .current_dir("/")
            .env_clear()
            .env("PATH", bindir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input).unwrap();
        c.wait_with_output().unwrap()
    };
    let motd = fs::read_to_string("/etc/motd").unwrap_or_default();
    let motd = if motd.is_empty() || motd.ends_with('\n') {
        motd
    } else {
        format!("{motd}\n")
    };
    let dir = t.path().display().to_string();
    let rcname = rc.display().to_string();
    let o = run(b"pwd\necho after $?\n");
    assert_eq!(
        s(&o.stdout),
        format!(
            "{motd}sh: running {rcname}\n+ echo one\none\n+ cd sub\n+ pwd\n{dir}/sub\n\
             + echo two > f; cat f | cat\ntwo\n+ false || echo three\nthree\n+ exit 3\n\
             sh: {rcname} done (status 3)\n{dir}/sub\nafter 0\n"
        )
    );
    // The prompt (with the working directory) goes to stderr, then `exit` at the end.
    assert_eq!(
        s(&o.stderr),
        format!("{dir}/sub $ {dir}/sub $ {dir}/sub $ exit\n")
    );
    assert_eq!(o.status.code(), Some(0));
    // End of input right away: the shell exits (PID 1 exiting powers AliasOS off).
    let o = run(b"");
    assert!(s(&o.stdout).ends_with("done (status 3)\n"));
    assert_eq!(o.status.code(), Some(3));
    // Line editing on raw input: backspace, DEL, ^U, and CR ending a line.
    let o = run(b"echo abX\x08c\x7f\x7fd\recho gone\x15echo kept\n");
    assert!(
        s(&o.stdout).ends_with("done (status 3)\nad\nkept\n"),
        "{}",
        s(&o.stdout)
    );
    // Without an rc the shell goes straight to the prompt.
    let o = Command::new(bin!("sh"))
        .args(["--boot", "/nonexistent/rc", "/"])
        .current_dir("/")
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(s(&o.stdout), motd);
    assert_eq!(s(&o.stderr), "/ $ exit\n");
}

/// `scripts/fs.sh` (the file-system script that tests/tests/userland.rs also runs inside
/// AliasOS) gives with our `sh` and tools what bash and the GNU tools give; stderr too,
/// except for the wording of mkdir's message.
#[test]
fn fs_script_runs_like_bash_and_gnu() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/fs.sh");
    let bindir = Path::new(bin!("sh")).parent().unwrap();
    let t = TempDir::new();
    let o = Command::new(bin!("sh"))
        .arg(script)
        .current_dir(t.path())
        .env_clear()
        .env("PATH", bindir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", s(&o.stderr));
    let out = s(&o.stdout);
    assert!(
        out.starts_with("fs start\n") && out.ends_with("fs done\n"),
        "{out}"
    );
    assert_eq!(
        s(&o.stderr),
        "rm: cannot remove 'top/empty': Is a directory\n\
         cat: top/a/b/text: No such file or directory\n\
         mkdir: top/moved: File exists\n"
    );
    if have("bash") && have("sha256sum") {
        let t2 = TempDir::new();
        let g = Command::new("bash")
            .arg(script)
            .current_dir(t2.path())
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap();
        assert_eq!(s(&g.stdout), out, "GNU reference");
        assert_eq!(g.status.code(), Some(0));
    }
}

/// sysfuzz must never fuzz the Linux host: it sees Linux and refuses before doing
/// anything (`-n 0` as a second safety net: even past the check it would make no call).
#[test]
fn sysfuzz_refuses_to_run_on_linux() {
    let t = TempDir::new();
    let o = run_in(t.path(), bin!("sysfuzz"), &["-n", "0", "-s", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", s(&o.stderr));
    assert!(s(&o.stdout).is_empty());
    assert!(
        s(&o.stderr).starts_with("sysfuzz: refusing to run on Linux"),
        "{}",
        s(&o.stderr)
    );
    assert_eq!(
        fs::read_dir(t.path()).unwrap().count(),
        0,
        "it created files"
    );
}
