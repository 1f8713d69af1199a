//! The initramfs: the root file system the kernel receives as the bootloader's ramdisk.
//!
//! It is a cpio archive in the "newc" format (the one Linux's initramfs uses, `cpio -H newc`)
//! holding the user tools in `/bin`, the mount points `/dev`, `/proc`, `/mnt`, `/tmp`,
//! `/root`, and `/etc/motd`. Entry names carry no leading `/` (`bin/sh`), every directory
//! comes before its contents, and ownership (0:0) and mtimes are fixed, so the same tools
//! always give the same bytes.
//!
//! The tools are built by one `cargo build -p user-tools --bins --release` and stripped of
//! everything the loader does not need (section headers, symbols, debug info).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// Modification time of every entry: 2026-01-01T00:00:00Z (fixed, for reproducible images).
pub const MTIME: u32 = 1_767_225_600;

/// `/etc/motd`.
pub const MOTD: &str = "\
Welcome to AliasOS, a unikernel whose page cache shares frames for zero-copy storage I/O.

The first ext2 disk is mounted at /mnt, and the tools are in /bin (ls /bin). Try:
  ls /mnt
  cat /mnt/README
  sha256sum /mnt/random.bin        (and compare: cat /mnt/random.sha256)
  free
  poweroff
";

/// Directories of the root file system besides `/bin` (all mode 0755).
pub const DIRS: [&str; 6] = ["dev", "proc", "mnt", "etc", "tmp", "root"];

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const NEWC_MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Dir { perm: u32 },
    File { perm: u32, data: Vec<u8> },
}

/// A cpio "newc" archive under construction. Entries are written sorted by name, which puts
/// every directory before its contents; missing parent directories are added (0755).
#[derive(Clone, Debug)]
pub struct Cpio {
    mtime: u32,
    entries: BTreeMap<String, Node>,
}

/// One entry read back from an archive by [`parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub ino: u32,
    /// File type and permission bits (`st_mode`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub data: Vec<u8>,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        self.mode & 0o170_000 == S_IFDIR
    }
}

fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

impl Cpio {
    /// An empty archive whose entries all get modification time `mtime`.
    pub fn new(mtime: u32) -> Self {
        Cpio {
            mtime,
            entries: BTreeMap::new(),
        }
    }

    fn add_parents(&mut self, path: &str) {
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            end += i;
            self.entries
                .entry(path[..end].to_string())
                .or_insert(Node::Dir { perm: 0o755 });
            end += 1;
        }
    }

    /// Add (or replace) directory `path` with permission bits `perm`.
    pub fn dir(&mut self, path: &str, perm: u32) -> &mut Self {
        let path = normalize(path);
        assert!(!path.is_empty(), "the archive root needs no entry");
        self.add_parents(&path);
        self.entries.insert(
            path,
            Node::Dir {
                perm: perm & 0o7777,
            },
        );
        self
    }

    /// Add (or replace) regular file `path` with permission bits `perm`.
    pub fn file(&mut self, path: &str, perm: u32, data: Vec<u8>) -> &mut Self {
        let path = normalize(path);
        assert!(!path.is_empty(), "a file needs a name");
        self.add_parents(&path);
        self.entries.insert(
            path,
            Node::File {
                perm: perm & 0o7777,
                data,
            },
        );
        self
    }

    /// The archive's bytes: each entry, then the `TRAILER!!!` entry.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (ino, (name, node)) in (1u32..).zip(&self.entries) {
            let (mode, nlink, data): (u32, u32, &[u8]) = match node {
                Node::Dir { perm } => (S_IFDIR | perm, 2, &[]),
                Node::File { perm, data } => (S_IFREG | perm, 1, data),
            };
            write_entry(&mut out, name, ino, mode, nlink, self.mtime, data);
        }
        write_entry(&mut out, TRAILER, 0, 0, 1, 0, &[]);
        out
    }
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn write_entry(
    out: &mut Vec<u8>,
    name: &str,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    data: &[u8],
) {
    let filesize = u32::try_from(data.len()).expect("cpio newc entries are below 4 GiB");
    let namesize = u32::try_from(name.len() + 1).expect("name too long");
    out.extend_from_slice(NEWC_MAGIC);
    // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    for field in [
        ino, mode, 0, 0, nlink, mtime, filesize, 0, 0, 0, 0, namesize, 0,
    ] {
        out.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

/// Read a newc archive back (up to its trailer): the entries in archive order.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    let mut pos = 0usize;
    let align = |n: usize| n.div_ceil(4) * 4;
    loop {
        let header = bytes
            .get(pos..pos + 110)
            .ok_or_else(|| format!("truncated header at offset {pos}"))?;
        if &header[..6] != NEWC_MAGIC {
            return Err(format!("bad magic at offset {pos}"));
        }
        let mut fields = [0u32; 13];
        for (i, f) in fields.iter_mut().enumerate() {
            let hex = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i])
                .map_err(|_| format!("non-ASCII header at offset {pos}"))?;
            *f = u32::from_str_radix(hex, 16)
                .map_err(|_| format!("bad hex field {hex:?} at offset {pos}"))?;
        }
        let [
            ino,
            mode,
            uid,
            gid,
            nlink,
            mtime,
            filesize,
            _,
            _,
            _,
            _,
            namesize,
            _,
        ] = fields;
        let name_start = pos + 110;
        let name = bytes
            .get(name_start..name_start + namesize as usize)
            .ok_or("truncated name")?;
        let name = name.strip_suffix(&[0]).ok_or("name not NUL-terminated")?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| "name not UTF-8")?;
        let data_start = align(name_start + namesize as usize);
        let data = bytes
            .get(data_start..data_start + filesize as usize)
            .ok_or_else(|| format!("truncated data of {name}"))?
            .to_vec();
        pos = align(data_start + filesize as usize);
        if name == TRAILER {
            return Ok(entries);
        }
        entries.push(Entry {
            name,
            ino,
            mode,
            uid,
            gid,
            nlink,
            mtime,
            data,
        });
    }
}

/// `elf` without what a loader never reads: the file is cut after the last byte any program
/// header covers (every loadable segment, and the program header table itself), and the
/// section header table is dropped from the ELF header. Section contents that lie after the
/// segments (`.debug_*`, `.symtab`, `.strtab`, `.comment`, `.shstrtab`) go with it. Returns
/// `None` for anything but a well-formed little-endian ELF64 file.
pub fn strip_elf(elf: &[u8]) -> Option<Vec<u8>> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| -> Option<u64> {
        Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?).into())
    };
    let u64_at =
        |o: usize| -> Option<u64> { Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?)) };
    let phoff = u64_at(0x20)?;
    let phentsize = u16_at(0x36)?;
    let phnum = u16_at(0x38)?;
    if phnum == 0 || phentsize < 56 {
        return None;
    }
    let mut end = phoff.checked_add(phentsize.checked_mul(phnum)?)?.max(64);
    for i in 0..phnum {
        let ph = usize::try_from(phoff + i * phentsize).ok()?;
        let offset = u64_at(ph + 8)?;
        let filesz = u64_at(ph + 32)?;
        end = end.max(offset.checked_add(filesz)?);
    }
    let end = usize::try_from(end).ok()?;
    if end > elf.len() {
        return None;
    }
    let mut out = elf[..end].to_vec();
    out[0x28..0x30].fill(0); // e_shoff
    out[0x3c..0x40].fill(0); // e_shnum, e_shstrndx
    Some(out)
}

/// The value of `"key":"..."` in one line of cargo's JSON output (JSON string escapes decoded).
fn json_str(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let start = line.find(&pat)? + pat.len();
    let mut out = String::new();
    let mut chars = line[start..].chars();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
}

static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Show cargo's progress while building the user tools (the `boot` command line does; the
/// library default is quiet, with cargo's output kept for the error message).
pub fn set_verbose(on: bool) {
    VERBOSE.store(on, Ordering::Relaxed);
}

/// Build the user tools (`cargo build -p user-tools --bins --release`) and return their
/// executables, sorted by name. Cargo rebuilds only what changed, so this is quick when
/// nothing did. Works from `make` as well as from inside a running `cargo test`/`cargo run`
/// (the outer cargo no longer holds the build lock then, and the release profile has a
/// build directory of its own).
pub fn build_user_tools() -> Result<Vec<PathBuf>, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let verbose = VERBOSE.load(Ordering::Relaxed);
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(crate::workspace_root()).args([
        "build",
        "-p",
        "user-tools",
        "--bins",
        "--release",
        "--message-format=json-render-diagnostics",
    ]);
    if !verbose {
        cmd.arg("--quiet");
    }
    // Frame pointers, so the kernel's sampling profiler can walk user stacks too.
    cmd.env("RUSTFLAGS", "-C force-frame-pointers=yes");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    cmd.stderr(if verbose {
        Stdio::inherit()
    } else {
        Stdio::piped()
    });
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", Path::new(&cargo).display()))?;
    if !out.status.success() {
        return Err(format!(
            "`cargo build -p user-tools --bins --release` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut bins: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.contains("\"reason\":\"compiler-artifact\"") && l.contains("\"kind\":[\"bin\"]")
        })
        .filter_map(|l| json_str(l, "executable"))
        .map(PathBuf::from)
        .collect();
    bins.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    bins.dedup();
    if bins.is_empty() {
        return Err("cargo built no user tools (no executables in its JSON output)".into());
    }
    Ok(bins)
}

/// The root file system's archive, from the tool executables `tools`.
pub fn archive(tools: &[PathBuf]) -> Result<Vec<u8>, String> {
    let mut cpio = Cpio::new(MTIME);
    cpio.dir("bin", 0o755);
    for d in DIRS {
        cpio.dir(d, 0o755);
    }
    for tool in tools {
        let name = tool
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("odd tool path {}", tool.display()))?;
        let elf = std::fs::read(tool).map_err(|e| format!("{}: {e}", tool.display()))?;
        let elf = strip_elf(&elf).unwrap_or(elf);
        cpio.file(&format!("bin/{name}"), 0o755, elf);
    }
    cpio.file("etc/motd", 0o644, MOTD.as_bytes().to_vec());
    Ok(cpio.to_bytes())
}

/// Write `data` to `path` unless it already holds exactly that (so its mtime only moves
/// when the contents change); through a temporary name, so readers never see half a file.
fn write_if_changed(path: &Path, data: &[u8]) -> Result<bool, String> {
    if std::fs::read(path).is_ok_and(|old| old == data) {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let tmp = crate::temp_beside(path)?;
    std::fs::write(&tmp, data).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    tmp.persist(path)
        .map_err(|e| format!("rename to {}: {e}", path.display()))?;
    Ok(true)
}

/// Build the user tools and (re)write `target/initramfs.cpio`; its mtime changes only when
/// its contents do. Done once per process (the QEMU tests call it from many threads).
pub fn initramfs() -> Result<PathBuf, String> {
    static DONE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let tools = build_user_tools()?;
        let path = crate::target_dir().join("initramfs.cpio");
        write_if_changed(&path, &archive(&tools)?)?;
        Ok(path)
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Cpio {
        let mut c = Cpio::new(MTIME);
        c.file("/etc/motd", 0o644, b"hello\n".to_vec())
            .dir("dev", 0o755)
            .file("bin/sh", 0o755, vec![0x7f, b'E', b'L', b'F', 1, 2, 3])
            .file("bin/a-b", 0o755, Vec::new())
            .dir("./mnt/", 0o700);
        c
    }

    #[test]
    fn newc_round_trip() {
        let bytes = sample().to_bytes();
        assert_eq!(bytes.len() % 4, 0);
        let entries = parse(&bytes).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["bin", "bin/a-b", "bin/sh", "dev", "etc", "etc/motd", "mnt"]
        );
        let get = |n: &str| entries.iter().find(|e| e.name == n).unwrap();
        assert_eq!(get("bin").mode, 0o040_755);
        assert!(get("etc").is_dir());
        assert_eq!(get("mnt").mode, 0o040_700);
        assert_eq!(get("bin/sh").mode, 0o100_755);
        assert_eq!(get("bin/sh").data, [0x7f, b'E', b'L', b'F', 1, 2, 3]);
        assert_eq!(get("etc/motd").mode, 0o100_644);
        assert_eq!(get("etc/motd").data, b"hello\n");
        assert!(get("bin/a-b").data.is_empty());
        for e in &entries {
            assert_eq!((e.uid, e.gid, e.mtime), (0, 0, MTIME));
            assert_eq!(e.nlink, if e.is_dir() { 2 } else { 1 });
        }
        let mut inos: Vec<u32> = entries.iter().map(|e| e.ino).collect();
        inos.dedup();
        assert_eq!(inos.len(), entries.len(), "inode numbers are unique");
        // Same input, same bytes.
        assert_eq!(sample().to_bytes(), bytes);
        // The trailer ends the archive.
        assert!(bytes.windows(10).any(|w| w == b"TRAILER!!!"));
        assert!(parse(&bytes[..bytes.len() - 8]).is_err());
    }

    /// The host's GNU cpio, if installed, reads the archive the same way.
    #[test]
    fn host_cpio_lists_the_archive() {
        use std::io::Write;
        let Ok(mut child) = Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        else {
            eprintln!("cpio is not installed; the archive is checked by parse() only");
            return;
        };
        let bytes = sample().to_bytes();
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "cpio -t failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        let parsed: Vec<String> = parse(&bytes).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(listed, parsed);
    }

    #[test]
    fn strip_keeps_every_segment_and_drops_sections() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let stripped = strip_elf(&exe).expect("the test binary is ELF64");
        assert!(stripped.len() <= exe.len());
        assert_eq!(stripped[..0x28], exe[..0x28]);
        assert!(stripped[0x28..0x30].iter().all(|&b| b == 0));
        assert!(stripped[0x3c..0x40].iter().all(|&b| b == 0));
        assert_eq!(stripped[0x40..], exe[0x40..stripped.len()]);
        // Every program header's bytes are still there.
        let phoff = u64::from_le_bytes(exe[0x20..0x28].try_into().unwrap()) as usize;
        let phnum = u16::from_le_bytes(exe[0x38..0x3a].try_into().unwrap()) as usize;
        for i in 0..phnum {
            let ph = phoff + i * 56;
            let off = u64::from_le_bytes(exe[ph + 8..ph + 16].try_into().unwrap());
            let len = u64::from_le_bytes(exe[ph + 32..ph + 40].try_into().unwrap());
            assert!(off + len <= stripped.len() as u64);
        }
        assert_eq!(strip_elf(b"#!/bin/sh\n"), None);
        assert_eq!(strip_elf(&exe[..100]), None);
    }

    #[test]
    fn json_string_fields() {
        let line =
            r#"{"reason":"compiler-artifact","executable":"/a b/\"q\"\\x\u0041","fresh":true}"#;
        assert_eq!(json_str(line, "executable").unwrap(), "/a b/\"q\"\\xA");
        assert_eq!(json_str(line, "reason").unwrap(), "compiler-artifact");
        assert_eq!(json_str(r#"{"executable":null}"#, "executable"), None);
    }

    /// The real thing: builds the user tools with a nested cargo, as `make image` and the
    /// QEMU tests do.
    #[test]
    fn initramfs_holds_the_tools_and_the_root_directories() {
        let path = initramfs().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let entries = parse(&bytes).unwrap();
        let get = |n: &str| entries.iter().find(|e| e.name == n);
        for d in ["bin"].iter().chain(DIRS.iter()) {
            let e = get(d).unwrap_or_else(|| panic!("no /{d}"));
            assert_eq!(e.mode, 0o040_755, "/{d}");
        }
        for tool in [
            "sh",
            "ls",
            "cat",
            "cp",
            "mv",
            "rm",
            "mkdir",
            "stat",
            "dd",
            "sha256sum",
            "cmp",
            "sync",
            "echo",
            "sleep",
            "free",
            "mount",
            "umount",
            "poweroff",
        ] {
            let e = get(&format!("bin/{tool}")).unwrap_or_else(|| panic!("no /bin/{tool}"));
            assert_eq!(e.mode, 0o100_755);
            assert_eq!(&e.data[..4], b"\x7fELF");
            assert_eq!(
                u16::from_le_bytes([e.data[16], e.data[17]]),
                2,
                "{tool} is ET_EXEC"
            );
            assert_eq!(
                u16::from_le_bytes([e.data[0x3c], e.data[0x3d]]),
                0,
                "{tool} stripped"
            );
        }
        assert_eq!(get("etc/motd").unwrap().data, MOTD.as_bytes());
        let names: Vec<&String> = entries.iter().map(|e| &e.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "entries are sorted");
        // Rebuilding gives the same bytes.
        let tools = build_user_tools().unwrap();
        assert_eq!(archive(&tools).unwrap(), bytes);
    }
}
