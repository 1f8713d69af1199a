//! The VFS without processes (suite `vfs`): path walks, symbolic links, mounts, ramfs,
//! the initramfs, devfs, procfs, ext2 through the VFS, pipes, descriptor tables, the
//! terminal's line discipline and serial input, and the system-call structure layouts.
//!
//! tests/tests/vfs.rs boots it with an ext2 disk (vda, holding `hello.txt` and
//! `dir/nested.txt`) and a blank raw disk (vdb); after the run it checks the ext2 image
//! with `e2fsck` and reads back `vfs/written.bin` (pattern seed 21) and `vfs/renamed.txt`,
//! and checks vdb's sectors 64..72 hold pattern seed 9.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use drivers::block::pattern;
use mm::counters::{self, Counter};

use crate::console::keyboard;
use crate::errno::Errno;
use crate::syscall::fs::abi;
use crate::vfs::file::*;
use crate::vfs::node::*;
use crate::vfs::path::{self, Loc};
use crate::vfs::tty;
use crate::vfs::{self, initramfs, mount, ops, pipe, ramfs};

/// Contents of the files the host puts on the ext2 disk.
pub const HELLO: &[u8] = b"hello from the host\n";
pub const NESTED: &[u8] = b"nested file\n";
/// Seed and length of the file the suite writes on ext2.
pub const WRITTEN_SEED: u64 = 21;
pub const WRITTEN_LEN: usize = 300_000;
/// Sectors of vdb the raw-device test writes, and their pattern seed.
pub const RAW_FIRST: u64 = 64;
pub const RAW_SECTORS: u64 = 8;
pub const RAW_SEED: u64 = 9;

/// A failure: a message, or an errno that came up unexpectedly (`?`).
pub struct Fail(String);

impl From<Errno> for Fail {
    fn from(e: Errno) -> Fail {
        Fail(format!("unexpected error {e:?}"))
    }
}

impl From<String> for Fail {
    fn from(s: String) -> Fail {
        Fail(s)
    }
}

impl From<&str> for Fail {
    fn from(s: &str) -> Fail {
        Fail(s.into())
    }
}

type R = Result<(), Fail>;

/// Fail the test with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(Fail(format!("{} (at {}:{})", format_args!($($msg)+), file!(), line!())));
        }
    };
}

fn err<T>(what: &str, r: Result<T, Errno>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e:?}"))
}

fn root() -> Loc {
    Loc::root()
}

fn open(path: &str, flags: u32) -> Result<Arc<File>, Errno> {
    ops::open(&root(), path.as_bytes(), flags, 0o644)
}

fn write_all(f: &File, data: &[u8]) -> Result<(), Errno> {
    let mut done = 0;
    while done < data.len() {
        let n = f.write(&mut WriteBuf::Kernel(&data[done..]))?;
        if n == 0 {
            return Err(Errno::EIO);
        }
        done += n;
    }
    Ok(())
}

fn read_all(f: &File) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 7000];
    loop {
        let n = f.read(&mut ReadBuf::Kernel(&mut buf))?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn read_path(path: &str) -> Result<Vec<u8>, Errno> {
    ops::read_file(&root(), path.as_bytes(), 1 << 24)
}

fn names(f: &File) -> Result<Vec<Vec<u8>>, Errno> {
    let mut v = Vec::new();
    f.read_dir(|e| {
        v.push(e.name.clone());
        true
    })?;
    Ok(v)
}

fn stat(path: &str) -> Result<Stat, Errno> {
    ops::stat(&root(), path.as_bytes(), true)
}

fn lstat(path: &str) -> Result<Stat, Errno> {
    ops::stat(&root(), path.as_bytes(), false)
}

fn mkdir(path: &str) -> Result<(), Errno> {
    ops::mkdir(&root(), path.as_bytes(), 0o755)
}

fn resolve(path: &str) -> Result<Loc, Errno> {
    path::resolve(&root(), path.as_bytes(), true)
}

/// `/` is a ramfs with the standard directories, devfs on /dev, procfs on /proc.
pub fn root_layout() -> R {
    let r = root();
    ensure!(r.path() == b"/", "root path {:?}", r.path());
    let st = err("stat /", stat("/"))?;
    ensure!(st.mode & S_IFMT == S_IFDIR, "/ is not a directory");
    for d in ["/bin", "/dev", "/proc", "/mnt", "/etc", "/tmp"] {
        let s = err(d, stat(d))?;
        ensure!(s.mode & S_IFMT == S_IFDIR, "{d} is not a directory");
    }
    let f = err("open /", open("/", O_RDONLY | O_DIRECTORY))?;
    let n = err("readdir /", names(&f))?;
    for want in [
        &b"."[..],
        b"..",
        b"bin",
        b"dev",
        b"proc",
        b"mnt",
        b"etc",
        b"tmp",
    ] {
        ensure!(
            n.iter().any(|x| x == want),
            "/ lacks {:?}",
            core::str::from_utf8(want)
        );
    }
    let m = mount::mounts_text();
    let text = String::from_utf8_lossy(&m);
    for line in [
        "rootfs / ramfs rw 0 0",
        "none /dev devfs rw 0 0",
        "none /proc proc rw 0 0",
    ] {
        ensure!(text.contains(line), "/proc/mounts lacks {line:?}:\n{text}");
    }
    Ok(())
}

/// `.`, `..`, repeated and trailing slashes, relative walks, and the errors.
pub fn path_walk() -> R {
    err("mkdir", mkdir("/tmp/pw"))?;
    err("mkdir", mkdir("/tmp/pw/a"))?;
    err("mkdir", mkdir("/tmp/pw/a/b"))?;
    let f = err("create", open("/tmp/pw/a/file", O_CREAT | O_WRONLY))?;
    drop(f);
    let l = err("walk", resolve("//tmp/./pw/a/../a//b/."))?;
    ensure!(
        l.path() == b"/tmp/pw/a/b",
        "canonical {:?}",
        String::from_utf8_lossy(&l.path())
    );
    let up = err("..", resolve("/../../tmp/.."))?;
    ensure!(up.path() == b"/", ".. above / is /");
    // Relative to a directory.
    let start = err("start", resolve("/tmp/pw/a"))?;
    let rel = err("rel", path::resolve(&start, b"b/../file", true))?;
    ensure!(rel.path() == b"/tmp/pw/a/file", "relative walk");
    ensure!(rel.node().kind() == FileKind::Regular, "file kind");
    // Errors.
    let e = |p: &str| resolve(p).err();
    ensure!(e("/tmp/pw/none") == Some(Errno::ENOENT), "ENOENT");
    ensure!(
        e("/tmp/pw/none/x") == Some(Errno::ENOENT),
        "ENOENT in the middle"
    );
    ensure!(
        e("/tmp/pw/a/file/x") == Some(Errno::ENOTDIR),
        "file as a directory"
    );
    ensure!(
        e("/tmp/pw/a/file/") == Some(Errno::ENOTDIR),
        "trailing slash on a file"
    );
    ensure!(
        e("/tmp/pw/a/file/..") == Some(Errno::ENOTDIR),
        ".. after a file"
    );
    ensure!(e("") == Some(Errno::ENOENT), "empty path");
    let long_name = "x".repeat(256);
    ensure!(
        e(&format!("/tmp/{long_name}")) == Some(Errno::ENAMETOOLONG),
        "256-byte component"
    );
    let ok_name = "y".repeat(255);
    ensure!(
        e(&format!("/tmp/{ok_name}")) == Some(Errno::ENOENT),
        "255-byte name"
    );
    let long_path = "/tmp".to_string() + &"/.".repeat(2046);
    ensure!(long_path.len() == 4096, "test path length");
    ensure!(e(&long_path) == Some(Errno::ENAMETOOLONG), "4096-byte path");
    ensure!(resolve(&long_path[..4095]).is_ok(), "4095-byte path");
    // Parent resolution for the name operations.
    let p = err("parent", path::resolve_parent(&root(), b"/tmp/pw/a/new/"))?;
    ensure!(p.name == b"new" && p.trailing_slash, "parent split");
    ensure!(
        path::resolve_parent(&root(), b"/tmp/pw/a/file/x").err() == Some(Errno::ENOTDIR),
        "parent through a file"
    );
    ensure!(
        mkdir("/tmp/pw/a/b").err() == Some(Errno::EEXIST),
        "mkdir existing"
    );
    ensure!(mkdir("/").err() == Some(Errno::EEXIST), "mkdir /");
    ensure!(mkdir("/tmp/pw/a/c/").is_ok(), "mkdir with a trailing slash");
    ensure!(
        ops::rmdir(&root(), b"/tmp/pw/a/.").err() == Some(Errno::EINVAL),
        "rmdir ."
    );
    ensure!(
        ops::rmdir(&root(), b"/").err() == Some(Errno::EBUSY),
        "rmdir /"
    );
    ensure!(
        ops::rmdir(&root(), b"/tmp/pw/a").err() == Some(Errno::ENOTEMPTY),
        "rmdir non-empty"
    );
    ensure!(
        ops::rmdir(&root(), b"/tmp/pw/a/file").err() == Some(Errno::ENOTDIR),
        "rmdir file"
    );
    ensure!(
        ops::unlink(&root(), b"/tmp/pw/a/b").err() == Some(Errno::EISDIR),
        "unlink dir"
    );
    ensure!(
        ops::unlink(&root(), b"/tmp/pw/a/file/").err() == Some(Errno::ENOTDIR),
        "unlink file/"
    );
    Ok(())
}

/// Links are followed (or not), relative targets resolve from the link's directory,
/// `..` after a link is physical, loops give ELOOP after 40, O_NOFOLLOW refuses a link,
/// O_CREAT through a dangling link creates its target.
pub fn symlinks() -> R {
    let r = root();
    err("mkdir", mkdir("/tmp/sl"))?;
    err("mkdir", mkdir("/tmp/sl/real"))?;
    err("mkdir", mkdir("/tmp/sl/real/sub"))?;
    let f = err("create", open("/tmp/sl/real/f", O_CREAT | O_WRONLY))?;
    err("write", write_all(&f, b"target data"))?;
    drop(f);
    err("symlink", ops::symlink(b"real/f", &r, b"/tmp/sl/rel"))?;
    err(
        "symlink",
        ops::symlink(b"/tmp/sl/real/sub", &r, b"/tmp/sl/abs"),
    )?;
    err("symlink", ops::symlink(b"nowhere", &r, b"/tmp/sl/dangling"))?;
    err("symlink", ops::symlink(b"loop2", &r, b"/tmp/sl/loop1"))?;
    err("symlink", ops::symlink(b"loop1", &r, b"/tmp/sl/loop2"))?;
    ensure!(
        ops::symlink(b"x", &r, b"/tmp/sl/rel").err() == Some(Errno::EEXIST),
        "symlink over a name"
    );
    ensure!(
        err("read", read_path("/tmp/sl/rel"))? == b"target data",
        "relative link"
    );
    ensure!(
        lstat("/tmp/sl/rel")?.mode & S_IFMT == S_IFLNK,
        "lstat sees the link"
    );
    ensure!(
        lstat("/tmp/sl/rel")?.size == 6,
        "link size is its target's length"
    );
    ensure!(
        stat("/tmp/sl/rel")?.mode & S_IFMT == S_IFREG,
        "stat follows it"
    );
    ensure!(
        err("readlink", ops::readlink(&r, b"/tmp/sl/abs"))? == b"/tmp/sl/real/sub",
        "readlink"
    );
    ensure!(
        ops::readlink(&r, b"/tmp/sl/real").err() == Some(Errno::EINVAL),
        "readlink of a dir"
    );
    // `..` after a link goes to the parent of the target.
    let l = err("abs/..", resolve("/tmp/sl/abs/.."))?;
    ensure!(
        l.path() == b"/tmp/sl/real",
        "physical .. gave {:?}",
        String::from_utf8_lossy(&l.path())
    );
    ensure!(
        resolve("/tmp/sl/dangling").err() == Some(Errno::ENOENT),
        "dangling link"
    );
    ensure!(resolve("/tmp/sl/loop1").err() == Some(Errno::ELOOP), "loop");
    ensure!(
        path::resolve(&r, b"/tmp/sl/loop1", false).is_ok(),
        "a loop is fine when not followed"
    );
    ensure!(
        open("/tmp/sl/rel", O_RDONLY | O_NOFOLLOW).err() == Some(Errno::ELOOP),
        "O_NOFOLLOW on a link"
    );
    // A chain of exactly 40 links resolves; 41 do not.
    err("mkdir", mkdir("/tmp/sl/chain"))?;
    for i in 1..=41 {
        let target = if i == 1 {
            "../real/f".to_string()
        } else {
            format!("l{}", i - 1)
        };
        let name = format!("/tmp/sl/chain/l{i}");
        err(
            "chain",
            ops::symlink(target.as_bytes(), &r, name.as_bytes()),
        )?;
    }
    ensure!(resolve("/tmp/sl/chain/l40").is_ok(), "40 links");
    ensure!(
        resolve("/tmp/sl/chain/l41").err() == Some(Errno::ELOOP),
        "41 links"
    );
    // O_CREAT through a dangling link creates the target; with O_EXCL it is EEXIST.
    ensure!(
        open("/tmp/sl/dangling", O_CREAT | O_EXCL | O_WRONLY).err() == Some(Errno::EEXIST),
        "O_EXCL on a link"
    );
    err(
        "creat via link",
        open("/tmp/sl/dangling", O_CREAT | O_WRONLY),
    )?;
    ensure!(stat("/tmp/sl/nowhere").is_ok(), "target created");
    // Hard link to the link target, counts.
    err(
        "link",
        ops::link(&r, b"/tmp/sl/rel", &r, b"/tmp/sl/hard", true),
    )?;
    ensure!(stat("/tmp/sl/real/f")?.nlink == 2, "nlink 2");
    ensure!(
        ops::link(&r, b"/tmp/sl/real", &r, b"/tmp/sl/dirlink", true).err() == Some(Errno::EPERM),
        "hard link to a directory"
    );
    Ok(())
}

/// ramfs files: create, write, read, seek, append, truncate, holes, pread/pwrite,
/// unlink while open, rename, and directory listing while entries go away.
pub fn ramfs_files() -> R {
    let r = root();
    err("mkdir", mkdir("/tmp/rf"))?;
    let f = err("create", open("/tmp/rf/a", O_CREAT | O_RDWR))?;
    ensure!(
        open("/tmp/rf/a", O_CREAT | O_EXCL | O_RDWR).err() == Some(Errno::EEXIST),
        "O_EXCL"
    );
    err("write", write_all(&f, b"hello, world"))?;
    ensure!(
        err("seek", f.seek(0, SEEK_CUR))? == 12,
        "offset after write"
    );
    err("seek", f.seek(7, SEEK_SET))?;
    let mut b = [0u8; 32];
    let n = err("read", f.read(&mut ReadBuf::Kernel(&mut b)))?;
    ensure!(&b[..n] == b"world", "read after seek: {:?}", &b[..n]);
    ensure!(err("seek end", f.seek(-5, SEEK_END))? == 7, "SEEK_END");
    ensure!(
        f.seek(-100, SEEK_SET).err() == Some(Errno::EINVAL),
        "negative offset"
    );
    // Holes read as zeros.
    err("pwrite", f.pwrite(100, &mut WriteBuf::Kernel(b"tail")))?;
    ensure!(f.stat()?.size == 104, "size after pwrite");
    let n = err("pread", f.pread(10, &mut ReadBuf::Kernel(&mut b)))?;
    ensure!(
        n == 32 && b[..2] == *b"ld" && b[2..].iter().all(|&x| x == 0),
        "hole"
    );
    // Truncate down and up.
    err("truncate", f.truncate(5))?;
    err("truncate", f.truncate(10))?;
    ensure!(
        err("read", read_path("/tmp/rf/a"))? == b"hello\0\0\0\0\0",
        "truncate"
    );
    // O_APPEND and O_TRUNC.
    let app = err("append", open("/tmp/rf/a", O_WRONLY | O_APPEND))?;
    err("write", write_all(&app, b"++"))?;
    ensure!(
        err("read", read_path("/tmp/rf/a"))?.ends_with(b"\0++"),
        "append"
    );
    drop(app);
    let t = err("trunc", open("/tmp/rf/a", O_WRONLY | O_TRUNC))?;
    ensure!(t.stat()?.size == 0, "O_TRUNC");
    ensure!(
        t.read(&mut ReadBuf::Kernel(&mut b)).err() == Some(Errno::EBADF),
        "read on O_WRONLY"
    );
    let ro = err("ro", open("/tmp/rf/a", O_RDONLY))?;
    ensure!(
        ro.write(&mut WriteBuf::Kernel(b"x")).err() == Some(Errno::EBADF),
        "write on O_RDONLY"
    );
    ensure!(
        open("/tmp/rf", O_WRONLY).err() == Some(Errno::EISDIR),
        "dir for writing"
    );
    ensure!(
        open("/tmp/rf/a", O_RDONLY | O_DIRECTORY).err() == Some(Errno::ENOTDIR),
        "O_DIRECTORY"
    );
    ensure!(
        open("/tmp/rf/new/", O_CREAT | O_WRONLY).err() == Some(Errno::EISDIR),
        "creat x/"
    );
    // Unlinked while open: still readable and writable through the description.
    err("write", write_all(&t, b"still here"))?;
    err("unlink", ops::unlink(&r, b"/tmp/rf/a"))?;
    ensure!(stat("/tmp/rf/a").err() == Some(Errno::ENOENT), "unlinked");
    ensure!(t.stat()?.nlink == 0, "nlink 0 after unlink");
    ensure!(
        err("pread", ro.pread(0, &mut ReadBuf::Kernel(&mut b)))? == 10,
        "read after unlink"
    );
    drop((t, ro, f));
    // Rename over an existing file, and of directories.
    for (n, d) in [("x", "1"), ("y", "2")] {
        let f = err("create", open(&format!("/tmp/rf/{n}"), O_CREAT | O_WRONLY))?;
        err("write", write_all(&f, d.as_bytes()))?;
    }
    err("rename", ops::rename(&r, b"/tmp/rf/x", &r, b"/tmp/rf/y"))?;
    ensure!(
        err("read", read_path("/tmp/rf/y"))? == b"1",
        "rename replaced"
    );
    ensure!(stat("/tmp/rf/x").is_err(), "old name gone");
    err("mkdir", mkdir("/tmp/rf/d1"))?;
    err("mkdir", mkdir("/tmp/rf/d1/inner"))?;
    ensure!(
        ops::rename(&r, b"/tmp/rf/d1", &r, b"/tmp/rf/d1/inner/x").err() == Some(Errno::EINVAL),
        "directory into itself"
    );
    ensure!(
        ops::rename(&r, b"/tmp/rf/y", &r, b"/tmp/rf/d1").err() == Some(Errno::EISDIR),
        "file over a directory"
    );
    ensure!(
        ops::rename(&r, b"/tmp/rf/d1", &r, b"/tmp/rf/y").err() == Some(Errno::ENOTDIR),
        "directory over a file"
    );
    let nlink_before = stat("/tmp/rf")?.nlink;
    err("mkdir", mkdir("/tmp/rf/d2"))?;
    err(
        "rename dir",
        ops::rename(&r, b"/tmp/rf/d1/inner", &r, b"/tmp/rf/d2/moved"),
    )?;
    ensure!(stat("/tmp/rf/d2/moved").is_ok(), "moved dir");
    ensure!(
        stat("/tmp/rf")?.nlink == nlink_before + 1,
        "parent link counts"
    );
    ensure!(
        stat("/tmp/rf/d1")?.nlink == 2 && stat("/tmp/rf/d2")?.nlink == 3,
        "link counts"
    );
    let dd = err("open", open("/tmp/rf/d2/moved/..", O_RDONLY))?;
    ensure!(
        dd.loc.as_ref().map(|l| l.path()) == Some(b"/tmp/rf/d2".to_vec()),
        ".."
    );
    // Listing while deleting: no entry is skipped or repeated.
    err("mkdir", mkdir("/tmp/rf/many"))?;
    for i in 0..100 {
        err(
            "create",
            open(&format!("/tmp/rf/many/f{i:03}"), O_CREAT | O_WRONLY),
        )?;
    }
    let d = err("open dir", open("/tmp/rf/many", O_RDONLY))?;
    let mut seen = Vec::new();
    loop {
        let mut batch = Vec::new();
        err(
            "readdir",
            d.read_dir(|e| {
                if batch.len() == 7 {
                    return false;
                }
                batch.push(e.name.clone());
                true
            }),
        )?;
        if batch.is_empty() {
            break;
        }
        for n in &batch {
            if n != b"." && n != b".." {
                let p = [&b"/tmp/rf/many/"[..], n].concat();
                err("unlink", ops::unlink(&r, &p))?;
            }
        }
        seen.extend(batch);
    }
    ensure!(
        seen.len() == 102,
        "saw {} entries while deleting",
        seen.len()
    );
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    ensure!(sorted.len() == 102, "duplicates in the listing");
    err("rmdir", ops::rmdir(&r, b"/tmp/rf/many"))?;
    // Directory rewind.
    err("rewind", d.seek(0, SEEK_SET))?;
    ensure!(
        names(&d).err() == Some(Errno::ENOENT),
        "a removed directory cannot be listed"
    );
    Ok(())
}

/// A small newc writer for the initramfs test.
fn cpio_entry(out: &mut Vec<u8>, name: &str, mode: u32, ino: u32, nlink: u32, data: &[u8]) {
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        1_000_000,
        data.len() as u32,
        0,
        0,
        0,
        0,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// The initramfs unpacks into a ramfs: directories, files (data read in place),
/// symlinks, hard links; a corrupt archive stops cleanly.
pub fn initramfs_unpacks() -> R {
    let mut a = Vec::new();
    cpio_entry(&mut a, ".", S_IFDIR | 0o755, 1, 2, b"");
    cpio_entry(&mut a, "bin", S_IFDIR | 0o755, 2, 2, b"");
    cpio_entry(
        &mut a,
        "bin/tool",
        S_IFREG | 0o755,
        3,
        1,
        b"#!tool contents",
    );
    cpio_entry(&mut a, "./etc/motd", S_IFREG | 0o644, 4, 1, b"welcome\n");
    cpio_entry(&mut a, "bin/alias", S_IFLNK | 0o777, 5, 1, b"tool");
    cpio_entry(&mut a, "h1", S_IFREG | 0o600, 6, 2, b"");
    cpio_entry(&mut a, "h2", S_IFREG | 0o600, 6, 2, b"shared");
    cpio_entry(&mut a, "dev/null", 0o020666, 7, 1, b"");
    cpio_entry(&mut a, "../escape", S_IFREG | 0o644, 8, 1, b"no");
    cpio_entry(&mut a, "TRAILER!!!", 0, 0, 1, b"");
    let data: &'static [u8] = Vec::leak(a);
    let rootnode = ramfs::RamFs::new_root(mount::anon_dev());
    let c = initramfs::unpack(&rootnode, data);
    ensure!(
        c.files == 4 && c.dirs == 1 && c.symlinks == 1 && c.skipped == 2,
        "counts {c:?}"
    );
    let direct: NodeRef = rootnode.clone();
    let tool = err(
        "lookup",
        direct.lookup(b"bin").and_then(|b| b.lookup(b"tool")),
    )?;
    let mut buf = [0u8; 64];
    let n = err("read", tool.read_at(0, &mut ReadBuf::Kernel(&mut buf)))?;
    ensure!(&buf[..n] == b"#!tool contents", "file data");
    ensure!(
        tool.stat()?.mode == S_IFREG | 0o755,
        "mode {:o}",
        tool.stat()?.mode
    );
    ensure!(tool.stat()?.mtime == 1_000_000, "mtime");
    let motd = err(
        "motd",
        direct.lookup(b"etc").and_then(|e| e.lookup(b"motd")),
    )?;
    ensure!(motd.size() == 8, "motd size");
    let alias = err(
        "alias",
        direct.lookup(b"bin").and_then(|b| b.lookup(b"alias")),
    )?;
    ensure!(alias.readlink()? == b"tool", "symlink target");
    let h1 = err("h1", direct.lookup(b"h1"))?;
    let h2 = err("h2", direct.lookup(b"h2"))?;
    ensure!(
        h1.stat()?.ino == h2.stat()?.ino && h1.stat()?.nlink == 2,
        "hard link"
    );
    ensure!(h1.size() == 6, "hard link data");
    ensure!(direct.lookup(b"escape").is_err(), "../ entry skipped");
    // Writing copies the data out of the archive; the archive is untouched.
    err("write", tool.write_at(0, &mut WriteBuf::Kernel(b"X")))?;
    ensure!(
        data.windows(15).any(|w| w == b"#!tool contents"),
        "archive changed"
    );
    // Cut-off archives unpack what comes before the cut, without panicking.
    for cut in [1, 50, 110, 200, data.len() - 1] {
        let junk = ramfs::RamFs::new_root(mount::anon_dev());
        let _ = initramfs::unpack(&junk, &data[..cut]);
    }
    Ok(())
}

/// Mount points are crossed both ways; each file system has its own st_dev; busy mounts
/// refuse to unmount; rename and link do not cross mounts.
pub fn mounts() -> R {
    let r = root();
    err("mkdir", mkdir("/tmp/mp"))?;
    err("mkdir", mkdir("/tmp/mp/under"))?;
    let t = err("resolve", resolve("/tmp/mp"))?;
    err("mount", mount::mount(None, b"scratch", &t, b"ramfs", 0))?;
    ensure!(
        mount::mount(None, b"again", &t, b"ramfs", 0).err() == Some(Errno::EBUSY),
        "second mount on one point"
    );
    ensure!(
        mount::mount(None, b"x", &t, b"nosuchfs", 0).err() == Some(Errno::ENODEV),
        "unknown type"
    );
    drop(t);
    ensure!(
        stat("/tmp/mp/under").err() == Some(Errno::ENOENT),
        "mount hides what is under"
    );
    ensure!(stat("/tmp/mp")?.dev != stat("/tmp")?.dev, "own st_dev");
    err("mkdir", mkdir("/tmp/mp/inside"))?;
    let l = err("resolve", resolve("/tmp/mp/inside/../.."))?;
    ensure!(
        l.path() == b"/tmp",
        ".. out of the mount: {:?}",
        String::from_utf8_lossy(&l.path())
    );
    let l = err("resolve", resolve("/tmp/mp/.."))?;
    ensure!(
        l.node().stat()?.dev == stat("/tmp")?.dev,
        ".. of the mount root"
    );
    ensure!(
        String::from_utf8_lossy(&mount::mounts_text()).contains("scratch /tmp/mp ramfs rw 0 0"),
        "/proc/mounts line"
    );
    let f = err("create", open("/tmp/mp/inside/f", O_CREAT | O_RDWR))?;
    ensure!(
        ops::rename(&r, b"/tmp/mp/inside/f", &r, b"/tmp/f").err() == Some(Errno::EXDEV),
        "rename across mounts"
    );
    ensure!(
        ops::link(&r, b"/tmp/mp/inside/f", &r, b"/tmp/f", false).err() == Some(Errno::EXDEV),
        "link across mounts"
    );
    ensure!(
        ops::rmdir(&r, b"/tmp/mp").err() == Some(Errno::EBUSY),
        "rmdir of a mount point"
    );
    ensure!(
        ops::rename(&r, b"/tmp/mp", &r, b"/tmp/mp2").err() == Some(Errno::EBUSY),
        "rename of a mount point"
    );
    // Busy while a file is open, a submount exists, or a walk holds it.
    ensure!(
        mount::umount(err("resolve", resolve("/tmp/mp"))?, 0).err() == Some(Errno::EBUSY),
        "umount with an open file"
    );
    drop(f);
    err(
        "mount sub",
        mount::mount(
            None,
            b"sub",
            &err("r", resolve("/tmp/mp/inside"))?,
            b"proc",
            0,
        ),
    )?;
    ensure!(
        stat("/tmp/mp/inside/meminfo").is_ok(),
        "procfs in the submount"
    );
    ensure!(
        mount::umount(err("resolve", resolve("/tmp/mp"))?, 0).err() == Some(Errno::EBUSY),
        "umount with a submount"
    );
    ensure!(
        mount::umount(err("resolve", resolve("/tmp/mp/inside/."))?, 0).is_ok(),
        "umount the submount"
    );
    ensure!(
        mount::umount(err("resolve", resolve("/tmp/mp/inside"))?, 0).err() == Some(Errno::EINVAL),
        "umount of a plain directory"
    );
    ensure!(
        mount::umount(root(), 0).err() == Some(Errno::EBUSY),
        "umount /"
    );
    err(
        "umount",
        mount::umount(err("resolve", resolve("/tmp/mp"))?, 0),
    )?;
    ensure!(stat("/tmp/mp/under").is_ok(), "what was under is back");
    // Read-only mounts.
    let t = err("resolve", resolve("/tmp/mp"))?;
    err(
        "mount ro",
        mount::mount(None, b"ro", &t, b"ramfs", mount::MS_RDONLY),
    )?;
    drop(t);
    ensure!(
        mkdir("/tmp/mp/x").err() == Some(Errno::EROFS),
        "mkdir on a read-only mount"
    );
    ensure!(
        open("/tmp/mp/x", O_CREAT | O_WRONLY).err() == Some(Errno::EROFS),
        "create on a read-only mount"
    );
    err(
        "umount",
        mount::umount(err("resolve", resolve("/tmp/mp"))?, mount::MNT_DETACH),
    )?;
    Ok(())
}

/// /dev/null, zero, urandom, console and the raw block devices.
pub fn devfs() -> R {
    let null = err("null", open("/dev/null", O_RDWR))?;
    let mut b = [7u8; 64];
    ensure!(
        null.read(&mut ReadBuf::Kernel(&mut b))? == 0,
        "null reads EOF"
    );
    ensure!(
        null.write(&mut WriteBuf::Kernel(&b))? == 64,
        "null takes writes"
    );
    let zero = err("zero", open("/dev/zero", O_RDONLY))?;
    ensure!(
        zero.read(&mut ReadBuf::Kernel(&mut b))? == 64 && b.iter().all(|&x| x == 0),
        "zero"
    );
    let ur = err("urandom", open("/dev/urandom", O_RDONLY))?;
    let (mut r1, mut r2) = ([0u8; 32], [0u8; 32]);
    ur.read(&mut ReadBuf::Kernel(&mut r1))?;
    ur.read(&mut ReadBuf::Kernel(&mut r2))?;
    ensure!(r1 != r2 && r1 != [0; 32], "urandom repeats");
    let c = err("console", stat("/dev/console"))?;
    ensure!(
        c.mode & S_IFMT == S_IFCHR && c.rdev == makedev(5, 1),
        "console node"
    );
    ensure!(stat("/dev/null")?.rdev == makedev(1, 3), "null rdev");
    let con = err("open console", open("/dev/console", O_RDWR))?;
    ensure!(con.is_stream(), "console is a stream");
    ensure!(
        con.seek(0, SEEK_SET).err() == Some(Errno::ESPIPE),
        "seek on console"
    );
    ensure!(
        null.ioctl(tty::TCGETS, 0).err() == Some(Errno::ENOTTY),
        "ioctl on a non-tty"
    );
    err(
        "console write",
        con.write(&mut WriteBuf::Kernel(b"    (console write)\n"))
            .map(|_| ()),
    )?;
    let d = err("open /dev", open("/dev", O_RDONLY))?;
    let n = names(&d)?;
    for want in ["null", "zero", "urandom", "console", "vda", "vdb"] {
        ensure!(n.iter().any(|x| x == want.as_bytes()), "/dev lacks {want}");
    }
    ensure!(
        open("/dev/newfile", O_CREAT | O_WRONLY).err() == Some(Errno::EACCES),
        "create in /dev"
    );
    // Raw block device: st_size is the capacity; aligned I/O round-trips on vdb.
    let disk = crate::block::find("vdb").ok_or("no vdb")?;
    let cap = {
        use drivers::block::BlockDevice;
        disk.info().sectors * 512
    };
    let st = err("stat vdb", stat("/dev/vdb"))?;
    ensure!(
        st.size == cap && st.mode & S_IFMT == S_IFBLK,
        "vdb stat {st:?}"
    );
    ensure!(st.rdev == makedev(254, 16), "vdb rdev {:#x}", st.rdev);
    let dev = err("open vdb", open("/dev/vdb", O_RDWR))?;
    ensure!(
        err("seek end", dev.seek(0, SEEK_END))? == cap,
        "SEEK_END of a disk"
    );
    let mut data = vec![0u8; (RAW_SECTORS * 512) as usize];
    for s in 0..RAW_SECTORS {
        let off = (s * 512) as usize;
        pattern::fill_sector(&mut data[off..off + 512], RAW_FIRST + s, RAW_SEED);
    }
    let copies = counters::get(Counter::DataCopyBytes);
    let n = err(
        "pwrite",
        dev.pwrite(RAW_FIRST * 512, &mut WriteBuf::Kernel(&data)),
    )?;
    ensure!(n == data.len(), "short raw write {n}");
    let mut back = vec![0u8; data.len()];
    let n = err(
        "pread",
        dev.pread(RAW_FIRST * 512, &mut ReadBuf::Kernel(&mut back)),
    )?;
    ensure!(n == back.len() && back == data, "raw read back");
    ensure!(
        counters::get(Counter::DataCopyBytes) - copies >= 2 * data.len() as u64,
        "page-cache copies not counted"
    );
    // Through the disk's page cache any offset and length go, as on Linux.
    let n = err(
        "misaligned pread",
        dev.pread(RAW_FIRST * 512 + 1, &mut ReadBuf::Kernel(&mut back[..100])),
    )?;
    ensure!(
        n == 100 && back[..100] == data[1..101],
        "misaligned read through the page cache"
    );
    ensure!(
        dev.pread(cap, &mut ReadBuf::Kernel(&mut back))? == 0,
        "read at the end"
    );
    ensure!(
        dev.pwrite(cap, &mut WriteBuf::Kernel(&data)).err() == Some(Errno::ENOSPC),
        "write past the end"
    );
    err("fsync", dev.fsync(false))?;
    Ok(())
}

/// /proc/meminfo, /proc/vmstat and /proc/mounts: generated at open, in Linux's formats.
pub fn procfs() -> R {
    let m = String::from_utf8(err("meminfo", read_path("/proc/meminfo"))?).map_err(|_| "utf8")?;
    let field = |name: &str| -> Option<u64> {
        m.lines()
            .find(|l| l.starts_with(&format!("{name}:")))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    let total = field("MemTotal").ok_or("no MemTotal")?;
    let free = field("MemFree").ok_or("no MemFree")?;
    ensure!(
        total > 100 * 1024 && free <= total,
        "MemTotal {total} MemFree {free}"
    );
    ensure!(
        m.lines().all(|l| l.ends_with(" kB")),
        "lines end in kB:\n{m}"
    );
    ensure!(
        m.lines()
            .next()
            .is_some_and(|l| l.len() == "MemTotal:       ".len() + 8 + 3),
        "Linux column layout: {:?}",
        m.lines().next()
    );
    let v = String::from_utf8(err("vmstat", read_path("/proc/vmstat"))?).map_err(|_| "utf8")?;
    for c in Counter::ALL {
        let line = v.lines().find(|l| l.split(' ').next() == Some(c.name()));
        let value: Option<u64> = line
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|x| x.parse().ok());
        ensure!(value.is_some(), "vmstat lacks {}", c.name());
    }
    let mounts =
        String::from_utf8(err("mounts", read_path("/proc/mounts"))?).map_err(|_| "utf8")?;
    ensure!(mounts.contains(" /proc proc rw 0 0\n"), "mounts:\n{mounts}");
    ensure!(
        mounts.contains("/dev/vda /mnt ext2 rw 0 0\n"),
        "ext2 in mounts:\n{mounts}"
    );
    for name in [
        "blk_read_bytes",
        "blk_write_bytes",
        "blk_requests",
        "bounce_bytes",
    ] {
        ensure!(
            v.lines().any(|l| l.split(' ').next() == Some(name)),
            "vmstat lacks {name}"
        );
    }
    // A snapshot: content fixed at open. Two opens before a counted copy read the same
    // text; an open after it sees the new data_copy_bytes.
    let f = err("open", open("/proc/vmstat", O_RDONLY))?;
    let g = err("open", open("/proc/vmstat", O_RDONLY))?;
    let mut first = [0u8; 10];
    f.read(&mut ReadBuf::Kernel(&mut first))?;
    err("copy", read_path("/mnt/hello.txt"))?;
    let before = [&first[..], &read_all(&f)?].concat();
    ensure!(before == read_all(&g)?, "one snapshot per open");
    ensure!(
        before != err("vmstat", read_path("/proc/vmstat"))?,
        "a new open sees new values"
    );
    ensure!(
        open("/proc/vmstat", O_WRONLY).err() == Some(Errno::EACCES),
        "procfs is read-only"
    );
    ensure!(
        stat("/proc/nonexistent").err() == Some(Errno::ENOENT),
        "missing proc file"
    );
    Ok(())
}

/// ext2 at /mnt through the VFS: read the host's files, write through the page cache
/// (copies counted), directory listing, rename, symlink, unmount busy and remount.
pub fn ext2_through_vfs() -> R {
    let r = root();
    ensure!(vfs::mnt().is_some(), "nothing mounted at /mnt");
    ensure!(
        err("hello", read_path("/mnt/hello.txt"))? == HELLO,
        "hello.txt"
    );
    ensure!(
        err("nested", read_path("/mnt/dir/nested.txt"))? == NESTED,
        "nested.txt"
    );
    let st = err("stat", stat("/mnt/hello.txt"))?;
    ensure!(
        st.size == HELLO.len() as u64 && st.mode & S_IFMT == S_IFREG,
        "stat {st:?}"
    );
    ensure!(
        stat("/mnt")?.dev == makedev(254, 0) && stat("/mnt")?.ino == 2,
        "ext2 root st_dev/ino"
    );
    let up = err("..", resolve("/mnt/dir/../.."))?;
    ensure!(
        up.path() == b"/" && up.node().stat()?.dev == stat("/")?.dev,
        ".. out of ext2"
    );
    let d = err("opendir", open("/mnt", O_RDONLY | O_DIRECTORY))?;
    let n = names(&d)?;
    for want in [&b"."[..], b"..", b"hello.txt", b"dir", b"lost+found"] {
        ensure!(
            n.iter().any(|x| x == want),
            "/mnt lacks {:?}",
            String::from_utf8_lossy(want)
        );
    }
    drop(d);
    err("mkdir", mkdir("/mnt/vfs"))?;
    let f = err(
        "create",
        open("/mnt/vfs/written.bin", O_CREAT | O_EXCL | O_RDWR),
    )?;
    let mut data = vec![0u8; WRITTEN_LEN];
    pattern::fill_range(&mut data, 0, WRITTEN_SEED);
    let copies = counters::get(Counter::DataCopyBytes);
    err("write", write_all(&f, &data))?;
    err("seek", f.seek(0, SEEK_SET))?;
    ensure!(err("read", read_all(&f))? == data, "read back");
    let copied = counters::get(Counter::DataCopyBytes) - copies;
    ensure!(
        copied == 2 * WRITTEN_LEN as u64,
        "data_copy_bytes grew by {copied}"
    );
    err("fsync", f.fsync(false))?;
    ensure!(f.stat()?.size == WRITTEN_LEN as u64, "size");
    // Unlinked while open: readable until closed, then freed.
    let g = err("create", open("/mnt/vfs/tmp.bin", O_CREAT | O_RDWR))?;
    err("write", write_all(&g, &[5u8; 10_000]))?;
    err("unlink", ops::unlink(&r, b"/mnt/vfs/tmp.bin"))?;
    let mut b = [0u8; 100];
    ensure!(
        g.pread(9_950, &mut ReadBuf::Kernel(&mut b))? == 50,
        "read after unlink"
    );
    ensure!(b[..50].iter().all(|&x| x == 5), "data after unlink");
    drop(g);
    // Names.
    let h = err("create", open("/mnt/vfs/name.txt", O_CREAT | O_WRONLY))?;
    err("write", write_all(&h, b"renamed through the VFS\n"))?;
    drop(h);
    err(
        "rename",
        ops::rename(&r, b"/mnt/vfs/name.txt", &r, b"/mnt/vfs/renamed.txt"),
    )?;
    err(
        "symlink",
        ops::symlink(b"renamed.txt", &r, b"/mnt/vfs/link"),
    )?;
    ensure!(
        err("via link", read_path("/mnt/vfs/link"))? == b"renamed through the VFS\n",
        "ext2 symlink"
    );
    ensure!(
        ops::rename(&r, b"/mnt/vfs/renamed.txt", &r, b"/tmp/x").err() == Some(Errno::EXDEV),
        "rename out of ext2"
    );
    ensure!(
        ops::rmdir(&r, b"/mnt/vfs").err() == Some(Errno::ENOTEMPTY),
        "rmdir non-empty on ext2"
    );
    // Unmount: busy while open, then clean; remount from /dev/vda.
    ensure!(
        mount::umount(err("resolve", resolve("/mnt"))?, 0).err() == Some(Errno::EBUSY),
        "umount with an open file"
    );
    drop(f);
    err("umount", mount::umount(err("resolve", resolve("/mnt"))?, 0))?;
    ensure!(vfs::mnt().is_none(), "still mounted");
    ensure!(
        stat("/mnt/hello.txt").err() == Some(Errno::ENOENT),
        "files gone with the mount"
    );
    let dev = err("dev", resolve("/dev/vda"))?;
    let target = err("target", resolve("/mnt"))?;
    ensure!(
        mount::mount(
            Some(&err("null", resolve("/dev/null"))?),
            b"/dev/null",
            &target,
            b"ext2",
            0
        )
        .err()
            == Some(Errno::ENOTBLK),
        "ext2 on a char device"
    );
    ensure!(
        mount::mount(
            Some(&err("vdb", resolve("/dev/vdb"))?),
            b"/dev/vdb",
            &target,
            b"ext2",
            0
        )
        .err()
            == Some(Errno::EINVAL),
        "ext2 on a disk without one"
    );
    err(
        "mount",
        mount::mount(Some(&dev), b"/dev/vda", &target, b"ext2", 0),
    )?;
    drop((dev, target));
    ensure!(vfs::mnt().is_some(), "remounted");
    let back = err("read", read_path("/mnt/vfs/written.bin"))?;
    ensure!(back == data, "data after remount");
    ensure!(stat("/mnt/vfs/tmp.bin").is_err(), "unlinked file came back");
    // An executable on ext2.
    let x = err(
        "create",
        ops::open(&r, b"/mnt/vfs/prog", O_CREAT | O_WRONLY, 0o755),
    )?;
    err("write", write_all(&x, b"\x7fELF..."))?;
    drop(x);
    let pf = ProcessFiles::new_empty();
    ensure!(
        err("exec", vfs::load_executable(&pf, b"/mnt/vfs/prog"))? == b"\x7fELF...",
        "load_executable"
    );
    ensure!(
        vfs::load_executable(&pf, b"/mnt/vfs/renamed.txt").err() == Some(Errno::EACCES),
        "no x bit"
    );
    ensure!(
        vfs::load_executable(&pf, b"/mnt/vfs").err() == Some(Errno::EACCES),
        "directory"
    );
    ensure!(
        vfs::load_executable(&pf, b"/mnt/none").err() == Some(Errno::ENOENT),
        "missing"
    );
    err("sync", vfs::sync_all())?;
    Ok(())
}

/// Pipes: data in order, EOF with no writers, EPIPE with no readers, EAGAIN when
/// non-blocking, atomic small writes, ESPIPE, fstat says FIFO.
pub fn pipes() -> R {
    let (r, w) = pipe::new_pipe(O_NONBLOCK);
    ensure!(r.stat()?.mode & S_IFMT == S_IFIFO, "fifo");
    let mut b = [0u8; 100];
    ensure!(
        r.read(&mut ReadBuf::Kernel(&mut b)).err() == Some(Errno::EAGAIN),
        "empty, non-blocking"
    );
    ensure!(w.write(&mut WriteBuf::Kernel(b"abc"))? == 3, "write");
    ensure!(w.write(&mut WriteBuf::Kernel(b"def"))? == 3, "write");
    ensure!(
        r.read(&mut ReadBuf::Kernel(&mut b[..4]))? == 4 && &b[..4] == b"abcd",
        "read 4"
    );
    ensure!(
        r.read(&mut ReadBuf::Kernel(&mut b))? == 2 && &b[..2] == b"ef",
        "read rest"
    );
    ensure!(r.seek(0, SEEK_SET).err() == Some(Errno::ESPIPE), "seek");
    ensure!(
        r.pread(0, &mut ReadBuf::Kernel(&mut b)).err() == Some(Errno::ESPIPE),
        "pread"
    );
    ensure!(
        r.write(&mut WriteBuf::Kernel(b"x")).err() == Some(Errno::EBADF),
        "write to the read end"
    );
    // Fill it: a big write goes in partly, then EAGAIN.
    let big = vec![1u8; pipe::PIPE_SIZE + 1000];
    let n = w.write(&mut WriteBuf::Kernel(&big))?;
    ensure!(n == pipe::PIPE_SIZE, "filled with {n}");
    ensure!(
        w.write(&mut WriteBuf::Kernel(b"y")).err() == Some(Errno::EAGAIN),
        "full"
    );
    // A small write waits for room for all of it (atomic): 3000 free is not 4000.
    let mut sink = vec![0u8; 3000];
    ensure!(
        r.read(&mut ReadBuf::Kernel(&mut sink))? == 3000,
        "drain 3000"
    );
    ensure!(
        w.write(&mut WriteBuf::Kernel(&[2u8; 4000])).err() == Some(Errno::EAGAIN),
        "PIPE_BUF write split"
    );
    ensure!(
        w.write(&mut WriteBuf::Kernel(&[2u8; 3000]))? == 3000,
        "fits"
    );
    drop(w);
    let mut total = 0;
    let mut rest = vec![0u8; 8192];
    loop {
        let n = r.read(&mut ReadBuf::Kernel(&mut rest))?;
        if n == 0 {
            break;
        }
        total += n;
    }
    ensure!(total == pipe::PIPE_SIZE, "read {total} before EOF");
    let (r2, w2) = pipe::new_pipe(0);
    drop(r2);
    ensure!(
        w2.write(&mut WriteBuf::Kernel(b"z")).err() == Some(Errno::EPIPE),
        "EPIPE"
    );
    Ok(())
}

/// Descriptor tables: lowest free slot, dup sharing the offset, close-on-exec, fork
/// sharing descriptions, the console on 0-2, working directory.
pub fn process_files() -> R {
    let mut pf = err("console", ProcessFiles::new_console())?;
    ensure!(pf.count() == 3, "three console descriptors");
    let c0 = pf.get(0)?;
    ensure!(Arc::ptr_eq(&c0, &pf.get(2)?), "one description for 0..2");
    ensure!(c0.flags() & O_ACCMODE == O_RDWR, "console O_RDWR");
    err("mkdir", mkdir("/tmp/pf"))?;
    let f = err("create", open("/tmp/pf/f", O_CREAT | O_RDWR))?;
    err("write", write_all(&f, b"0123456789"))?;
    err("seek", f.seek(0, SEEK_SET))?;
    let fd = pf.insert(f.clone(), false)?;
    ensure!(fd == 3, "lowest free descriptor {fd}");
    pf.close(1)?;
    ensure!(pf.insert(f.clone(), true)? == 1, "reuses 1");
    ensure!(
        pf.close(1).is_ok() && pf.close(1).err() == Some(Errno::EBADF),
        "double close"
    );
    ensure!(
        pf.get(-1).err() == Some(Errno::EBADF) && pf.get(999).err() == Some(Errno::EBADF),
        "EBADF"
    );
    let dup = pf.insert_from(10, pf.get(3)?, true)?;
    ensure!(dup == 10, "F_DUPFD from 10 gave {dup}");
    ensure!(pf.cloexec(10)? && !pf.cloexec(3)?, "cloexec flags");
    let child = pf.fork();
    let mut b = [0u8; 4];
    child.get(3)?.read(&mut ReadBuf::Kernel(&mut b))?;
    ensure!(
        pf.get(10)?.offset() == 4,
        "offset shared across fork and dup"
    );
    let mut child = child;
    child.exec_cleanup();
    ensure!(
        child.get(10).err() == Some(Errno::EBADF) && child.get(3).is_ok(),
        "exec closes cloexec"
    );
    let old = pf.set(5, pf.get(3)?, false)?;
    ensure!(old.is_none() && pf.get(5).is_ok(), "dup2 onto a free slot");
    ensure!(
        pf.set(MAX_FDS as i32, pf.get(3)?, false).err() == Some(Errno::EBADF),
        "dup2 out of range"
    );
    // Working directory and *at starts.
    err("chdir", ops::chdir(&mut pf, b"/tmp/pf"))?;
    ensure!(pf.cwd().path() == b"/tmp/pf", "cwd");
    ensure!(
        ops::chdir(&mut pf, b"/tmp/pf/f").err() == Some(Errno::ENOTDIR),
        "chdir to a file"
    );
    let s = pf.start(AT_FDCWD)?;
    ensure!(path::resolve(&s, b"f", true).is_ok(), "relative to cwd");
    ensure!(pf.start(3).err() == Some(Errno::ENOTDIR), "dirfd of a file");
    let d = err("open dir", open("/tmp", O_RDONLY))?;
    let dfd = pf.insert_from(20, d, false)?;
    ensure!(pf.start(dfd)?.path() == b"/tmp", "dirfd start");
    ensure!(pf.set_umask(0o077) == 0o022 && pf.umask() == 0o077, "umask");
    for _ in 0..MAX_FDS {
        if pf.insert(pf.get(3)?, false).is_err() {
            break;
        }
    }
    ensure!(
        pf.insert(pf.get(3)?, false).err() == Some(Errno::EMFILE),
        "EMFILE"
    );
    pf.close_all();
    ensure!(pf.count() == 0, "close_all");
    Ok(())
}

fn no_echo_canonical() -> tty::Termios {
    let mut t = tty::Termios::default_console();
    t.lflag &= !tty::ECHO;
    t
}

fn tty_read() -> Result<Vec<u8>, Errno> {
    let mut b = [0u8; 256];
    let n = tty::read(&mut ReadBuf::Kernel(&mut b), true)?;
    Ok(b[..n].to_vec())
}

/// The line discipline: editing keys, one line per read, ^D, CR to NL, raw mode.
pub fn tty_line_discipline() -> R {
    let saved = tty::termios();
    tty::set_termios(no_echo_canonical());
    tty::flush_input();
    let result = (|| -> R {
        ensure!(tty_read().err() == Some(Errno::EAGAIN), "nothing to read");
        tty::input(b"abc");
        ensure!(tty_read().err() == Some(Errno::EAGAIN), "no line yet");
        tty::input(b"\x7fd\x08e\r");
        ensure!(tty_read()? == b"abe\n", "erase and CR");
        tty::input(b"first\nsecond\n");
        ensure!(tty_read()? == b"first\n", "one line per read");
        ensure!(tty_read()? == b"second\n", "second line");
        tty::input(b"junk\x15kept\n");
        ensure!(tty_read()? == b"kept\n", "^U kills the line");
        tty::input(b"one two\x17three\n");
        ensure!(tty_read()? == b"one three\n", "^W erases a word");
        tty::input(b"\x04");
        ensure!(tty_read()? == b"", "^D on an empty line is EOF");
        tty::input(b"part\x04");
        ensure!(tty_read()? == b"part", "^D hands over a partial line");
        tty::input(b"x\x03y\n");
        ensure!(tty_read()? == b"y\n", "^C drops the line");
        // A short buffer takes part of a line; the rest comes next.
        tty::input(b"0123456789\n");
        let mut small = [0u8; 4];
        ensure!(
            tty::read(&mut ReadBuf::Kernel(&mut small), true)? == 4 && &small == b"0123",
            "partial"
        );
        ensure!(tty_read()? == b"456789\n", "rest of the line");
        // Non-canonical: bytes as they come.
        let mut raw = no_echo_canonical();
        raw.lflag &= !tty::ICANON;
        tty::set_termios(raw);
        tty::input(b"q\x7f");
        ensure!(tty_read()? == b"q\x7f", "raw bytes");
        ensure!(
            tty::termios().to_bytes().len() == tty::TERMIOS_SIZE,
            "termios size"
        );
        let back = tty::Termios::from_bytes(&raw.to_bytes());
        ensure!(back == raw, "termios round trip");
        Ok(())
    })();
    tty::flush_input();
    tty::set_termios(saved);
    result
}

/// Typed keys are echoed, and a character typed on the serial port arrives through the
/// COM1 receive interrupt (the UART in loopback sends it to itself).
pub fn serial_input_interrupt() -> R {
    tty::init_input();
    let saved = tty::termios();
    tty::set_termios(no_echo_canonical());
    tty::flush_input();
    let before = keyboard::SERIAL_IRQS.load(core::sync::atomic::Ordering::Relaxed);
    crate::arch::cpu::without_interrupts(|| {
        crate::arch::uart::com1_loopback(true);
        crate::console::write_bytes(b"ls\r");
    });
    let start = crate::time::now_ns();
    while tty::pending() < 3 && crate::time::now_ns() - start < 1_000_000_000 {
        crate::arch::cpu::enable_interrupts_and_halt();
    }
    crate::arch::cpu::without_interrupts(|| crate::arch::uart::com1_loopback(false));
    let got = tty_read();
    tty::set_termios(saved);
    let irqs = keyboard::SERIAL_IRQS.load(core::sync::atomic::Ordering::Relaxed) - before;
    ensure!(irqs > 0, "no serial receive interrupt");
    ensure!(got == Ok(b"ls\n".to_vec()), "serial input read {got:?}");
    // The keyboard decoder: 'a' pressed and released (set 1), then Enter.
    tty::flush_input();
    tty::set_termios(no_echo_canonical());
    for b in [0x1e, 0x9e, 0x1c, 0x9c] {
        keyboard::key_byte(b);
    }
    let got = tty_read();
    tty::set_termios(saved);
    ensure!(got == Ok(b"a\n".to_vec()), "keyboard input read {got:?}");
    Ok(())
}

/// `struct stat` (144 bytes) and `linux_dirent64` in the Linux x86-64 layout.
pub fn syscall_layouts() -> R {
    let s = Stat {
        dev: 0x0102,
        ino: 0x0304,
        mode: S_IFREG | 0o644,
        nlink: 5,
        uid: 7,
        gid: 8,
        rdev: 9,
        size: 0x1122_3344,
        blksize: 4096,
        blocks: 16,
        atime: 100,
        mtime: 200,
        ctime: 300,
    };
    let b = abi::stat_bytes(&s);
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
    ensure!(b.len() == 144, "stat size");
    ensure!(
        u64_at(0) == 0x0102 && u64_at(8) == 0x0304 && u64_at(16) == 5,
        "dev ino nlink"
    );
    ensure!(
        u32_at(24) == S_IFREG | 0o644 && u32_at(28) == 7 && u32_at(32) == 8,
        "mode uid gid"
    );
    ensure!(
        u64_at(40) == 9 && u64_at(48) == 0x1122_3344 && u64_at(56) == 4096,
        "rdev size blksize"
    );
    ensure!(
        u64_at(64) == 16 && u64_at(72) == 100 && u64_at(88) == 200 && u64_at(104) == 300,
        "times"
    );
    let mut out = Vec::new();
    let e = DirEntry {
        name: b"hello".to_vec(),
        ino: 42,
        dtype: FileKind::Regular.dt(),
        next: 7,
    };
    abi::push_dirent(&mut out, &e);
    ensure!(
        out.len() == 32,
        "reclen {} (19 + 5 + 1 rounded to 8)",
        out.len()
    );
    ensure!(
        u64::from_le_bytes(out[0..8].try_into().unwrap_or([0; 8])) == 42,
        "d_ino"
    );
    ensure!(
        u64::from_le_bytes(out[8..16].try_into().unwrap_or([0; 8])) == 7,
        "d_off"
    );
    ensure!(
        u16::from_le_bytes([out[16], out[17]]) == 32 && out[18] == 8,
        "reclen/type"
    );
    ensure!(&out[19..25] == b"hello\0", "name");
    ensure!(
        abi::dirent_reclen(0) == 24 && abi::dirent_reclen(4) == 24 && abi::dirent_reclen(5) == 32,
        "reclen"
    );
    Ok(())
}

macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        /// The `vfs` suite.
        pub const TESTS: &[super::Test] = &[$(super::Test {
            name: concat!("vfs_", stringify!($name)),
            run: || $name().map_err(|f| f.0),
        }),*];
    };
}

tests!(
    root_layout,
    path_walk,
    symlinks,
    ramfs_files,
    initramfs_unpacks,
    mounts,
    devfs,
    procfs,
    ext2_through_vfs,
    pipes,
    process_files,
    tty_line_discipline,
    serial_input_interrupt,
    syscall_layouts,
);
