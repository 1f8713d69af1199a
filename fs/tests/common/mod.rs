//! Helpers shared by the ext2 host tests: a file-backed block device, temp
//! dirs, and the e2fsprogs oracles (mke2fs, e2fsck, debugfs).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fs::ext2::{Ext2, FileType, MountOptions, ROOT_INO};
use fs::{BlockDev, FsError, SECTOR_SIZE};

/// A block device over a host file.
pub struct FileDev {
    file: File,
    sectors: u64,
}

impl FileDev {
    pub fn open(path: &Path) -> FileDev {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open image");
        let sectors = file.metadata().unwrap().len() / SECTOR_SIZE as u64;
        FileDev { file, sectors }
    }
}

impl BlockDev for FileDev {
    fn sector_count(&self) -> u64 {
        self.sectors
    }
    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), FsError> {
        if !buf.len().is_multiple_of(SECTOR_SIZE)
            || sector + (buf.len() / SECTOR_SIZE) as u64 > self.sectors
        {
            return Err(FsError::Io);
        }
        self.file
            .read_exact_at(buf, sector * SECTOR_SIZE as u64)
            .map_err(|_| FsError::Io)
    }
    fn write(&self, sector: u64, buf: &[u8]) -> Result<(), FsError> {
        if !buf.len().is_multiple_of(SECTOR_SIZE)
            || sector + (buf.len() / SECTOR_SIZE) as u64 > self.sectors
        {
            return Err(FsError::Io);
        }
        self.file
            .write_all_at(buf, sector * SECTOR_SIZE as u64)
            .map_err(|_| FsError::Io)
    }
    fn flush(&self) -> Result<(), FsError> {
        self.file.sync_data().map_err(|_| FsError::Io)
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("aliasos-fs-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn tool(name: &str) -> Command {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return Command::new(p);
        }
    }
    Command::new(name)
}

/// Make an ext2 image of `size` bytes with extra mke2fs arguments, optionally
/// preloaded from `src`.
pub fn mkfs(image: &Path, size: u64, args: &[&str], src: Option<&Path>) {
    let f = File::create(image).unwrap();
    f.set_len(size).unwrap();
    drop(f);
    let mut cmd = tool("mke2fs");
    cmd.args(["-q", "-F", "-t", "ext2", "-E", "root_owner=0:0"])
        .args(args);
    if let Some(s) = src {
        cmd.arg("-d").arg(s);
    }
    cmd.arg(image);
    let out = cmd.output().expect("run mke2fs (is e2fsprogs installed?)");
    assert!(
        out.status.success(),
        "mke2fs {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run `e2fsck -fn` and return (exit code, output).
pub fn fsck(image: &Path) -> (i32, String) {
    let out = tool("e2fsck")
        .args(["-f", "-n"])
        .arg(image)
        .output()
        .expect("run e2fsck");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Require `e2fsck -fn` to find the image clean.
pub fn assert_clean(image: &Path) {
    let (code, text) = fsck(image);
    assert_eq!(
        code,
        0,
        "e2fsck -fn {} is not clean:\n{text}",
        image.display()
    );
}

/// `debugfs -R CMD IMAGE` output (stdout only).
pub fn debugfs(image: &Path, cmd: &str) -> Vec<u8> {
    let out = tool("debugfs")
        .arg("-R")
        .arg(cmd)
        .arg(image)
        .output()
        .expect("run debugfs");
    out.stdout
}

/// File contents as debugfs reads them.
pub fn debugfs_cat(image: &Path, path: &str) -> Vec<u8> {
    debugfs(image, &format!("cat \"{path}\""))
}

/// A field of `debugfs stat`, e.g. "Links" or "Size".
pub fn debugfs_stat_field(image: &Path, path: &str, field: &str) -> Option<u64> {
    let text = String::from_utf8_lossy(&debugfs(image, &format!("stat \"{path}\""))).into_owned();
    let key = format!("{field}: ");
    let pos = text.find(&key)?;
    let rest = &text[pos + key.len()..];
    let num: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    num.parse().ok()
}

pub fn mount(image: &Path) -> Ext2 {
    Ext2::mount_with_cache(
        Arc::new(FileDev::open(image)),
        MountOptions { read_only: false },
        512,
    )
    .expect("mount")
}

pub fn mount_ro(image: &Path) -> Ext2 {
    Ext2::mount(
        Arc::new(FileDev::open(image)),
        MountOptions { read_only: true },
    )
    .expect("mount ro")
}

/// What a walk found at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(Vec<u8>),
    Other(u16),
}

/// Walk the whole tree, reading every file; panics on any error (for healthy images).
pub fn walk(fs: &mut Ext2) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut seen = BTreeSet::new();
    walk_dir(fs, ROOT_INO, "", &mut out, &mut seen);
    out
}

fn walk_dir(
    fs: &mut Ext2,
    dir: u32,
    prefix: &str,
    out: &mut BTreeMap<String, Node>,
    seen: &mut BTreeSet<u32>,
) {
    if !seen.insert(dir) {
        panic!("directory cycle at {prefix}");
    }
    let mut cursor = 0;
    loop {
        let entries = fs.readdir(dir, cursor).expect("readdir");
        if entries.is_empty() {
            break;
        }
        for e in entries {
            cursor = e.next;
            if e.name == b"." || e.name == b".." {
                continue;
            }
            let name = String::from_utf8_lossy(&e.name).into_owned();
            let path = format!("{prefix}/{name}");
            let st = fs.stat(e.ino).expect("stat");
            let kind = st.mode & 0o170000;
            match kind {
                0o040000 => {
                    assert_eq!(e.file_type, FileType::Directory, "{path}");
                    out.insert(path.clone(), Node::Dir);
                    if name != "lost+found" {
                        walk_dir(fs, e.ino, &path, out, seen);
                    }
                }
                0o100000 => {
                    let mut buf = vec![0u8; st.size as usize];
                    let n = fs.read_at(e.ino, 0, &mut buf).expect("read");
                    assert_eq!(n as u64, st.size);
                    out.insert(path, Node::File(buf));
                }
                0o120000 => {
                    out.insert(path, Node::Symlink(fs.readlink(e.ino).expect("readlink")));
                }
                k => {
                    out.insert(path, Node::Other(k));
                }
            }
        }
    }
}

/// Walk a host directory the same way.
pub fn walk_host(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    fn rec(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Node>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let path = format!("{prefix}/{name}");
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                out.insert(path.clone(), Node::Dir);
                rec(&e.path(), &path, out);
            } else if ft.is_symlink() {
                let t = std::fs::read_link(e.path()).unwrap();
                out.insert(
                    path,
                    Node::Symlink(t.as_os_str().as_encoded_bytes().to_vec()),
                );
            } else {
                out.insert(path, Node::File(std::fs::read(e.path()).unwrap()));
            }
        }
    }
    rec(root, "", &mut out);
    out
}

/// Deterministic pseudo-random bytes (xorshift).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// mke2fs configurations the tests run on: (label, size in bytes, args).
pub const CONFIGS: &[(&str, u64, &[&str])] = &[
    ("1k-rev0", 24 << 20, &["-b", "1024", "-r", "0"]),
    (
        "1k-none",
        24 << 20,
        &["-b", "1024", "-O", "none", "-I", "128"],
    ),
    (
        "1k-sparse-ft-256",
        24 << 20,
        &[
            "-b",
            "1024",
            "-O",
            "none,sparse_super,filetype,large_file",
            "-I",
            "256",
        ],
    ),
    (
        "2k-ft-128",
        32 << 20,
        &[
            "-b",
            "2048",
            "-O",
            "none,sparse_super,filetype",
            "-I",
            "128",
        ],
    ),
    ("4k-default", 48 << 20, &["-b", "4096"]),
    ("1k-default", 24 << 20, &["-b", "1024"]),
];

/// Walk whatever can be walked of a possibly corrupt file system: every error
/// is tolerated, loops and huge sizes are bounded. Returns how many objects
/// were read successfully.
pub fn robust_walk(fs: &mut Ext2) -> usize {
    let mut ok = 0usize;
    let mut seen = BTreeSet::new();
    let mut stack = vec![ROOT_INO];
    let mut budget = 5000usize;
    while let Some(dir) = stack.pop() {
        if !seen.insert(dir) {
            continue;
        }
        let mut cursor = 0u64;
        for _ in 0..256 {
            let entries = match fs.readdir(dir, cursor) {
                Ok(e) if e.is_empty() => break,
                Ok(e) => e,
                Err(_) => break,
            };
            let mut advanced = false;
            for e in entries {
                if budget == 0 {
                    return ok;
                }
                budget -= 1;
                if e.next > cursor {
                    cursor = e.next;
                    advanced = true;
                }
                let _ = fs.lookup(dir, &e.name);
                let Ok(st) = fs.stat(e.ino) else { continue };
                ok += 1;
                match st.mode & 0o170000 {
                    0o040000 => {
                        if e.name != b"." && e.name != b".." {
                            stack.push(e.ino);
                        }
                    }
                    0o100000 => {
                        let mut buf = vec![0u8; (st.size.min(300_000)) as usize];
                        if fs.read_at(e.ino, 0, &mut buf).is_ok() {
                            ok += 1;
                        }
                        let mut tail = [0u8; 100];
                        let _ = fs.read_at(e.ino, st.size.saturating_sub(50), &mut tail);
                        let _ = fs.bmap(e.ino, st.size / 1024, false);
                    }
                    0o120000 => {
                        if fs.readlink(e.ino).is_ok() {
                            ok += 1;
                        }
                        let _ = fs.resolve_at(dir, &e.name, true);
                    }
                    _ => {}
                }
            }
            if !advanced {
                break;
            }
        }
    }
    ok
}

/// A short sequence of modifications on a possibly corrupt file system; every
/// error is tolerated.
pub fn robust_mutate(fs: &mut Ext2, seed: u64) {
    let mut rng = Rng(seed | 1);
    let names: Vec<Vec<u8>> = match fs.readdir(ROOT_INO, 0) {
        Ok(v) => v
            .into_iter()
            .map(|e| e.name)
            .filter(|n| n != b"." && n != b"..")
            .collect(),
        Err(_) => Vec::new(),
    };
    if let Ok(f) = fs.create(ROOT_INO, b"new-file", 0o644) {
        let _ = fs.write_at(f, 0, &rng.bytes(5000));
        let _ = fs.write_at(f, 300_000, b"far");
        let _ = fs.truncate(f, 1000);
    }
    if let Ok(d) = fs.mkdir(ROOT_INO, b"new-dir", 0o755) {
        let _ = fs.create(d, b"inner", 0o644);
        let _ = fs.symlink(d, b"link", &[b'q'; 100]);
    }
    for name in names.iter().take(6) {
        match rng.below(5) {
            0 => {
                let _ = fs.unlink(ROOT_INO, name);
            }
            1 => {
                let _ = fs.rmdir(ROOT_INO, name);
            }
            2 => {
                let _ = fs.rename(ROOT_INO, name, ROOT_INO, b"renamed");
            }
            3 => {
                if let Ok(ino) = fs.lookup(ROOT_INO, name) {
                    let _ = fs.truncate(ino, rng.below(100_000));
                    let _ = fs.write_at(ino, rng.below(50_000), b"patch");
                }
            }
            _ => {
                if let Ok(ino) = fs.lookup(ROOT_INO, name) {
                    let _ = fs.link(ino, ROOT_INO, b"hard");
                    let _ = fs.rename(ROOT_INO, name, ino, b"x");
                }
            }
        }
    }
    let _ = fs.sync();
}
