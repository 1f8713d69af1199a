//! Mutate fresh mke2fs images through `fs`, then let e2fsck and debugfs judge.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::*;
use fs::FsError;
use fs::ext2::{Ext2, ROOT_INO, S_IFMT, S_IFREG};

const NOW: u32 = 1_700_000_000;

fn set_clock(fs: &mut Ext2) {
    fs.set_clock(Arc::new(|| NOW));
}

/// Compare a mounted fs (through a fresh mount) and the image (through
/// debugfs) with the model, after e2fsck says it is clean.
fn verify(img: &Path, model: &BTreeMap<String, Node>) {
    assert_clean(img);
    let mut fs = mount_ro(img);
    let mut found = walk(&mut fs);
    found.remove("/lost+found");
    assert_eq!(
        found.keys().collect::<Vec<_>>(),
        model.keys().collect::<Vec<_>>()
    );
    for (path, node) in model {
        assert_eq!(
            found.get(path),
            Some(node),
            "{path} differs when read back through fs"
        );
        if let Node::File(data) = node {
            let dump = debugfs_cat(img, path);
            assert!(
                dump == *data,
                "{path}: debugfs content differs (len {} vs {})",
                dump.len(),
                data.len()
            );
        }
    }
}

fn write_file(fs: &mut Ext2, dir: u32, name: &str, data: &[u8]) -> u32 {
    let ino = fs.create(dir, name.as_bytes(), 0o644).unwrap();
    assert_eq!(fs.write_at(ino, 0, data).unwrap(), data.len());
    ino
}

fn scenario(label: &str, size: u64, args: &[&str]) {
    let t = TempDir::new(label);
    let img = t.path().join("img");
    mkfs(&img, size, args, None);
    let mut model: BTreeMap<String, Node> = BTreeMap::new();
    let mut rng = Rng(0x9e3779b97f4a7c15 ^ size);
    let mut fs = mount(&img);
    set_clock(&mut fs);
    let bs = fs.block_size() as usize;

    // Create, append, overwrite.
    let a = write_file(&mut fs, ROOT_INO, "a.txt", b"hello");
    fs.write_at(a, 5, b", world").unwrap();
    fs.write_at(a, 0, b"J").unwrap();
    model.insert("/a.txt".into(), Node::File(b"Jello, world".to_vec()));

    // A file through direct, single and double indirect blocks.
    let big_len = (12 + bs / 4 + 40) * bs + 123;
    let mut big = rng.bytes(big_len);
    let bi = write_file(&mut fs, ROOT_INO, "big", &big);
    // Overwrite a range crossing block boundaries.
    let patch = rng.bytes(3 * bs);
    fs.write_at(bi, (bs * 20 + 7) as u64, &patch).unwrap();
    big[bs * 20 + 7..bs * 23 + 7].copy_from_slice(&patch);
    let st = fs.stat(bi).unwrap();
    assert_eq!(st.size, big_len as u64);
    assert_eq!(st.mtime, NOW);
    // Truncate down into the direct blocks (frees indirect ones), then up (hole), then append.
    fs.truncate(bi, (5 * bs + 17) as u64).unwrap();
    big.truncate(5 * bs + 17);
    fs.truncate(bi, (30 * bs) as u64).unwrap();
    big.resize(30 * bs, 0);
    fs.write_at(bi, (30 * bs) as u64, b"tail").unwrap();
    big.extend_from_slice(b"tail");
    model.insert("/big".into(), Node::File(big.clone()));

    // Sparse file: data far apart, up to the triple-indirect range on 1 KiB blocks.
    let sp = fs.create(ROOT_INO, b"sparse", 0o600).unwrap();
    let offsets: Vec<u64> = vec![3, 1 << 20, 10 << 20, 70 << 20];
    let mut sparse = Vec::new();
    for (i, off) in offsets.iter().enumerate() {
        let chunk = format!("chunk{i}").into_bytes();
        fs.write_at(sp, *off, &chunk).unwrap();
        let end = *off as usize + chunk.len();
        if sparse.len() < end {
            sparse.resize(end, 0);
        }
        sparse[*off as usize..end].copy_from_slice(&chunk);
    }
    assert!(
        fs.stat(sp).unwrap().blocks < 64 * 8,
        "sparse file must stay sparse"
    );
    assert_eq!(fs.bmap(sp, 5000, false).unwrap(), None);
    model.insert("/sparse".into(), Node::File(sparse));

    // Deep directories.
    let mut dir = ROOT_INO;
    let mut path = String::new();
    for i in 0..30 {
        dir = fs.mkdir(dir, format!("d{i}").as_bytes(), 0o755).unwrap();
        path.push_str(&format!("/d{i}"));
        model.insert(path.clone(), Node::Dir);
    }
    write_file(&mut fs, dir, "deep.txt", b"deep");
    model.insert(format!("{path}/deep.txt"), Node::File(b"deep".to_vec()));
    assert!(fs.resolve(format!("{path}/deep.txt").as_bytes()).is_ok());

    // Many entries in one directory: grows past a block, removal, slack reuse.
    let many = fs.mkdir(ROOT_INO, b"many", 0o755).unwrap();
    model.insert("/many".into(), Node::Dir);
    for i in 0..200 {
        let name = format!("file-with-a-longish-name-{i:04}");
        write_file(&mut fs, many, &name, name.as_bytes());
        model.insert(format!("/many/{name}"), Node::File(name.into_bytes()));
    }
    assert!(fs.stat(many).unwrap().size > bs as u64);
    for i in (0..200).step_by(3) {
        let name = format!("file-with-a-longish-name-{i:04}");
        fs.unlink(many, name.as_bytes()).unwrap();
        model.remove(&format!("/many/{name}"));
    }
    let size_before = fs.stat(many).unwrap().size;
    for i in 0..40 {
        let name = format!("n{i}");
        write_file(&mut fs, many, &name, b"x");
        model.insert(format!("/many/{name}"), Node::File(b"x".to_vec()));
    }
    assert_eq!(
        fs.stat(many).unwrap().size,
        size_before,
        "new entries reuse freed space"
    );

    // Renames: file across dirs, replacing a file, directory across dirs.
    let src = fs.mkdir(ROOT_INO, b"src", 0o755).unwrap();
    let dst = fs.mkdir(ROOT_INO, b"dst", 0o755).unwrap();
    model.insert("/src".into(), Node::Dir);
    model.insert("/dst".into(), Node::Dir);
    write_file(&mut fs, src, "f", b"moved file");
    fs.rename(src, b"f", dst, b"g").unwrap();
    model.insert("/dst/g".into(), Node::File(b"moved file".to_vec()));
    write_file(&mut fs, dst, "victim", b"to be replaced");
    write_file(&mut fs, src, "winner", b"replacement");
    fs.rename(src, b"winner", dst, b"victim").unwrap();
    model.insert("/dst/victim".into(), Node::File(b"replacement".to_vec()));
    let sub = fs.mkdir(src, b"sub", 0o755).unwrap();
    write_file(&mut fs, sub, "inner", b"inner data");
    fs.rename(src, b"sub", dst, b"sub2").unwrap();
    assert_eq!(fs.lookup(sub, b"..").unwrap(), dst);
    model.insert("/dst/sub2".into(), Node::Dir);
    model.insert("/dst/sub2/inner".into(), Node::File(b"inner data".to_vec()));
    assert_eq!(fs.stat(src).unwrap().nlink, 2);
    assert_eq!(fs.stat(dst).unwrap().nlink, 3);
    // A directory replacing an empty directory.
    fs.mkdir(dst, b"empty", 0o755).unwrap();
    let mover = fs.mkdir(src, b"mover", 0o755).unwrap();
    fs.rename(src, b"mover", dst, b"empty").unwrap();
    assert_eq!(fs.lookup(dst, b"empty").unwrap(), mover);
    assert_eq!(fs.stat(dst).unwrap().nlink, 4);
    model.insert("/dst/empty".into(), Node::Dir);
    // Rename within a directory, and a directory into its own subtree.
    fs.rename(dst, b"g", dst, b"g2").unwrap();
    let g2 = model.remove("/dst/g").unwrap();
    model.insert("/dst/g2".into(), g2);
    assert_eq!(
        fs.rename(ROOT_INO, b"dst", sub, b"x"),
        Err(FsError::Invalid)
    );
    assert_eq!(
        fs.rename(ROOT_INO, b"dst", dst, b"x"),
        Err(FsError::Invalid)
    );
    // Non-empty directory target; file over directory; directory over file.
    fs.mkdir(src, b"d1", 0o755).unwrap();
    assert_eq!(fs.rename(src, b"d1", dst, b"sub2"), Err(FsError::NotEmpty));
    assert_eq!(fs.rename(dst, b"g2", dst, b"sub2"), Err(FsError::IsDir));
    assert_eq!(fs.rename(src, b"d1", dst, b"g2"), Err(FsError::NotDir));
    fs.rmdir(src, b"d1").unwrap();

    // Hard links.
    let h = write_file(&mut fs, ROOT_INO, "h1", b"linked");
    fs.link(h, dst, b"h2").unwrap();
    fs.link(h, ROOT_INO, b"h3").unwrap();
    assert_eq!(fs.stat(h).unwrap().nlink, 3);
    fs.unlink(ROOT_INO, b"h1").unwrap();
    assert_eq!(fs.stat(h).unwrap().nlink, 2);
    model.insert("/dst/h2".into(), Node::File(b"linked".to_vec()));
    model.insert("/h3".into(), Node::File(b"linked".to_vec()));
    assert_eq!(
        fs.link(dst, ROOT_INO, b"dirlink"),
        Err(FsError::NotPermitted)
    );

    // Symlinks: fast, slow, resolution, loops.
    fs.symlink(ROOT_INO, b"fast", b"dst/sub2/inner").unwrap();
    let long_target = format!("/{}", "long-component/".repeat(10)).into_bytes();
    let slow = fs.symlink(ROOT_INO, b"slow", &long_target).unwrap();
    assert!(fs.stat(slow).unwrap().blocks > 0);
    assert_eq!(fs.readlink(slow).unwrap(), long_target);
    model.insert("/fast".into(), Node::Symlink(b"dst/sub2/inner".to_vec()));
    model.insert("/slow".into(), Node::Symlink(long_target));
    let inner = fs.resolve(b"/fast").unwrap();
    let mut buf = [0u8; 10];
    fs.read_at(inner, 0, &mut buf).unwrap();
    assert_eq!(&buf, b"inner data");
    fs.symlink(ROOT_INO, b"loop1", b"loop2").unwrap();
    fs.symlink(ROOT_INO, b"loop2", b"/loop1").unwrap();
    assert_eq!(fs.resolve(b"/loop1"), Err(FsError::Loop));
    assert!(fs.resolve_at(ROOT_INO, b"loop1", false).is_ok());
    model.insert("/loop1".into(), Node::Symlink(b"loop2".to_vec()));
    model.insert("/loop2".into(), Node::Symlink(b"/loop1".to_vec()));
    fs.symlink(ROOT_INO, b"gone", b"x").unwrap();
    fs.unlink(ROOT_INO, b"gone").unwrap();
    fs.symlink(ROOT_INO, b"gone-slow", &[b'y'; 200]).unwrap();
    fs.unlink(ROOT_INO, b"gone-slow").unwrap();

    // Removal errors and removal.
    assert_eq!(fs.rmdir(ROOT_INO, b"dst"), Err(FsError::NotEmpty));
    assert_eq!(fs.unlink(ROOT_INO, b"dst"), Err(FsError::IsDir));
    assert_eq!(fs.rmdir(ROOT_INO, b"a.txt"), Err(FsError::NotDir));
    let tmpd = fs.mkdir(ROOT_INO, b"tmpd", 0o700).unwrap();
    write_file(&mut fs, tmpd, "x", &rng.bytes(5 * bs));
    fs.unlink(tmpd, b"x").unwrap();
    fs.rmdir(ROOT_INO, b"tmpd").unwrap();
    assert_eq!(fs.lookup(ROOT_INO, b"tmpd"), Err(FsError::NotFound));

    // Device node and FIFO entries.
    fs.create(ROOT_INO, b"fifo", 0o010644).unwrap();
    model.insert("/fifo".into(), Node::Other(0o010000));

    // Times.
    fs.set_times(a, Some(5), Some(6)).unwrap();
    let st = fs.stat(a).unwrap();
    assert_eq!((st.atime, st.mtime, st.ctime), (5, 6, NOW));

    // Our own view before unmounting.
    let mut found = walk(&mut fs);
    found.remove("/lost+found");
    assert_eq!(found, model);
    fs.unmount().unwrap();
    verify(&img, &model);
    assert_eq!(debugfs_stat_field(&img, "/h3", "Links"), Some(2));
    assert_eq!(debugfs_stat_field(&img, "/dst", "Links"), Some(4));
    assert_eq!(
        debugfs_stat_field(&img, "/sparse", "Size"),
        Some((70 << 20) + 6)
    );

    // Second session on the same image: delete most things, verify again.
    let mut fs = mount(&img);
    set_clock(&mut fs);
    let big_ino = fs.resolve(b"/big").unwrap();
    fs.truncate(big_ino, 0).unwrap();
    model.insert("/big".into(), Node::File(Vec::new()));
    fs.unlink(ROOT_INO, b"sparse").unwrap();
    model.remove("/sparse");
    let dst = fs.resolve(b"/dst").unwrap();
    let sub2 = fs.lookup(dst, b"sub2").unwrap();
    fs.unlink(sub2, b"inner").unwrap();
    fs.rmdir(dst, b"sub2").unwrap();
    model.remove("/dst/sub2/inner");
    model.remove("/dst/sub2");
    fs.sync().unwrap();
    drop(fs);
    verify(&img, &model);
}

#[test]
fn mutate_all_configs() {
    for (label, size, args) in CONFIGS {
        eprintln!("config {label}");
        scenario(label, *size, args);
    }
}

/// Fill the disk with small files until ENOSPC, check, delete some, write again.
fn fill_until_full(label: &str, size: u64, args: &[&str]) {
    let t = TempDir::new(label);
    let img = t.path().join("img");
    mkfs(&img, size, args, None);
    let mut fs = mount(&img);
    let d = fs.mkdir(ROOT_INO, b"fill", 0o755).unwrap();
    let mut n = 0;
    let err = loop {
        let name = format!("f{n}");
        let ino = match fs.create(d, name.as_bytes(), 0o644) {
            Ok(i) => i,
            Err(e) => break e,
        };
        let data = vec![n as u8; 1500];
        match fs.write_at(ino, 0, &data) {
            Ok(1500) => {}
            Ok(_) | Err(FsError::NoSpace) => {
                n += 1;
                break FsError::NoSpace;
            }
            Err(e) => panic!("{e}"),
        }
        n += 1;
    };
    assert_eq!(err, FsError::NoSpace);
    assert!(n > 10, "{label}: only {n} files fit");
    // More failures must not leak anything.
    for i in 0..5 {
        let _ = fs.mkdir(d, format!("dd{i}").as_bytes(), 0o755);
        let _ = fs.symlink(d, format!("ss{i}").as_bytes(), &[b'z'; 300]);
    }
    let free = fs.statfs();
    fs.sync().unwrap();
    drop(fs);
    assert_clean(&img);

    let mut fs = mount(&img);
    assert_eq!(fs.statfs(), free);
    for i in (0..n).step_by(2) {
        let _ = fs.unlink(d, format!("f{i}").as_bytes());
    }
    let ino = fs.create(d, b"after", 0o644).unwrap();
    let data: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
    assert_eq!(fs.write_at(ino, 0, &data).unwrap(), data.len());
    // One large file until full: a short write, then ENOSPC.
    let big = fs.create(d, b"bigfill", 0o644).unwrap();
    let chunk = vec![0xabu8; 64 * 1024];
    let mut off = 0u64;
    loop {
        match fs.write_at(big, off, &chunk) {
            Ok(w) => off += w as u64,
            Err(FsError::NoSpace) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(fs.stat(big).unwrap().size, off);
    fs.unmount().unwrap();
    assert_clean(&img);
    assert_eq!(debugfs_cat(&img, "/fill/after"), data);
    assert_eq!(debugfs_stat_field(&img, "/fill/bigfill", "Size"), Some(off));
}

#[test]
fn enospc_small_images() {
    fill_until_full("full-1k", 2 << 20, &["-b", "1024", "-N", "4096"]);
    fill_until_full("full-inodes", 4 << 20, &["-b", "1024", "-N", "64"]);
    fill_until_full("full-4k", 4 << 20, &["-b", "4096", "-O", "none,filetype"]);
    fill_until_full("full-rev0", 2 << 20, &["-b", "1024", "-r", "0"]);
}

#[test]
fn file_over_4gib() {
    for (label, args) in [
        ("4g-4k", &["-b", "4096"][..]),
        (
            "4g-1k-nolarge",
            &["-b", "1024", "-O", "none,filetype,sparse_super"][..],
        ),
    ] {
        let t = TempDir::new(label);
        let img = t.path().join("img");
        mkfs(&img, 64 << 20, args, None);
        let mut fs = mount(&img);
        let f = fs.create(ROOT_INO, b"huge", 0o644).unwrap();
        let off = 5u64 << 30;
        fs.write_at(f, off, b"far away").unwrap();
        fs.write_at(f, 100, b"near").unwrap();
        let g = fs.create(ROOT_INO, b"three-gig", 0o644).unwrap();
        fs.truncate(g, 3 << 30).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(fs.read_at(f, off, &mut buf).unwrap(), 8);
        assert_eq!(&buf, b"far away");
        assert_eq!(fs.read_at(f, off + 8, &mut buf).unwrap(), 0);
        fs.unmount().unwrap();
        assert_clean(&img);
        assert_eq!(debugfs_stat_field(&img, "/huge", "Size"), Some(off + 8));
        assert_eq!(
            debugfs_stat_field(&img, "/three-gig", "Size"),
            Some(3 << 30)
        );
        let features = String::from_utf8_lossy(&debugfs(&img, "features")).into_owned();
        assert!(features.contains("large_file"), "{features}");
        // Read the far end back through debugfs without dumping 5 GiB.
        let mut fs = mount(&img);
        let f = fs.resolve(b"/huge").unwrap();
        fs.truncate(f, 4096).unwrap();
        fs.unmount().unwrap();
        assert_clean(&img);
        let dump = debugfs_cat(&img, "/huge");
        assert_eq!(dump.len(), 4096);
        assert_eq!(&dump[100..104], b"near");
    }
    // Revision 0 cannot hold files past 2 GiB.
    let t = TempDir::new("rev0-big");
    let img = t.path().join("img");
    mkfs(&img, 8 << 20, &["-b", "1024", "-r", "0"], None);
    let mut fs = mount(&img);
    let f = fs.create(ROOT_INO, b"f", 0o644).unwrap();
    assert_eq!(fs.write_at(f, 3 << 30, b"x"), Err(FsError::FileTooBig));
    assert_eq!(fs.truncate(f, 1 << 31), Err(FsError::FileTooBig));
    fs.truncate(f, (1 << 31) - 1).unwrap();
    fs.unmount().unwrap();
    assert_clean(&img);
}

#[test]
fn name_and_argument_errors() {
    let t = TempDir::new("errors");
    let img = t.path().join("img");
    mkfs(&img, 8 << 20, &["-b", "1024"], None);
    let mut fs = mount(&img);
    let f = fs.create(ROOT_INO, b"file", 0o644).unwrap();
    assert_eq!(fs.create(ROOT_INO, b"file", 0o644), Err(FsError::Exists));
    assert_eq!(fs.mkdir(ROOT_INO, b"file", 0o755), Err(FsError::Exists));
    assert_eq!(fs.lookup(ROOT_INO, b"nope"), Err(FsError::NotFound));
    assert_eq!(fs.lookup(f, b"x"), Err(FsError::NotDir));
    assert_eq!(fs.create(f, b"x", 0o644), Err(FsError::NotDir));
    let long = vec![b'n'; 256];
    assert_eq!(fs.create(ROOT_INO, &long, 0o644), Err(FsError::NameTooLong));
    assert_eq!(fs.lookup(ROOT_INO, &long), Err(FsError::NameTooLong));
    let max = vec![b'm'; 255];
    let m = fs.create(ROOT_INO, &max, 0o644).unwrap();
    assert_eq!(fs.lookup(ROOT_INO, &max).unwrap(), m);
    assert_eq!(fs.create(ROOT_INO, b"a/b", 0o644), Err(FsError::Invalid));
    assert_eq!(fs.create(ROOT_INO, b"", 0o644), Err(FsError::NotFound));
    assert_eq!(fs.create(ROOT_INO, b".", 0o644), Err(FsError::Exists));
    assert_eq!(fs.rmdir(ROOT_INO, b"."), Err(FsError::Invalid));
    assert_eq!(fs.rmdir(ROOT_INO, b".."), Err(FsError::NotEmpty));
    assert_eq!(fs.read_at(ROOT_INO, 0, &mut [0u8; 4]), Err(FsError::IsDir));
    assert_eq!(fs.write_at(ROOT_INO, 0, b"x"), Err(FsError::IsDir));
    assert_eq!(fs.readlink(f), Err(FsError::Invalid));
    assert_eq!(fs.stat(0), Err(FsError::Invalid));
    assert_eq!(fs.stat(u32::MAX), Err(FsError::Invalid));
    assert_eq!(fs.symlink(ROOT_INO, b"s", b""), Err(FsError::NotFound));
    assert_eq!(
        fs.symlink(ROOT_INO, b"s", &[b'x'; 1024]),
        Err(FsError::NameTooLong)
    );
    assert_eq!(fs.resolve(b"/file/x"), Err(FsError::NotDir));
    assert_eq!(fs.resolve(&vec![b'a'; 5000]), Err(FsError::NameTooLong));
    assert_eq!(fs.resolve(b"/").unwrap(), ROOT_INO);
    assert_eq!(fs.resolve(b"/./file/").unwrap(), f);
    assert_eq!(fs.resolve(b"/lost+found/../file").unwrap(), f);
    assert_eq!(
        fs.write_at(f, u64::MAX - 2, b"abc"),
        Err(FsError::FileTooBig)
    );
    assert_eq!(FsError::NotFound.errno(), 2);
    assert_eq!(FsError::NoSpace.errno(), 28);
    fs.mkdir(ROOT_INO, b"links", 0o755).unwrap();
    fs.unmount().unwrap();
    // EMLINK: bring the link counts next to ext2's 32000 with debugfs.
    let out = std::process::Command::new("debugfs")
        .args(["-w", "-R", "sif /file links_count 31999"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::process::Command::new("debugfs")
        .args(["-w", "-R", "sif /links links_count 32000"])
        .arg(&img)
        .output()
        .unwrap();
    let mut fs = mount(&img);
    let f = fs.resolve(b"/file").unwrap();
    let d = fs.resolve(b"/links").unwrap();
    assert_eq!(fs.stat(f).unwrap().nlink, 31999);
    fs.link(f, d, b"one-more").unwrap();
    assert_eq!(fs.link(f, d, b"too-many"), Err(FsError::TooManyLinks));
    assert_eq!(fs.stat(f).unwrap().nlink, 32000);
    assert_eq!(fs.mkdir(d, b"sub", 0o755), Err(FsError::TooManyLinks));
    assert_eq!(fs.lookup(d, b"sub"), Err(FsError::NotFound));
    fs.unlink(d, b"one-more").unwrap();
    fs.unmount().unwrap();
    // Put the real counts back so e2fsck agrees.
    std::process::Command::new("debugfs")
        .args(["-w", "-R", "sif /file links_count 1"])
        .arg(&img)
        .output()
        .unwrap();
    std::process::Command::new("debugfs")
        .args(["-w", "-R", "sif /links links_count 2"])
        .arg(&img)
        .output()
        .unwrap();
    assert_clean(&img);
}

#[test]
fn read_only_mount_refuses_writes() {
    let t = TempDir::new("ro");
    let img = t.path().join("img");
    mkfs(&img, 8 << 20, &["-b", "1024"], None);
    let before = std::fs::read(&img).unwrap();
    let mut fs = mount_ro(&img);
    assert!(fs.is_read_only());
    assert_eq!(fs.create(ROOT_INO, b"x", 0o644), Err(FsError::ReadOnly));
    assert_eq!(fs.mkdir(ROOT_INO, b"x", 0o644), Err(FsError::ReadOnly));
    assert_eq!(fs.unlink(ROOT_INO, b"lost+found"), Err(FsError::ReadOnly));
    assert_eq!(
        fs.set_times(ROOT_INO, Some(1), None),
        Err(FsError::ReadOnly)
    );
    assert_eq!(fs.bmap(ROOT_INO, 0, true), Err(FsError::ReadOnly));
    fs.sync().unwrap();
    fs.unmount().unwrap();
    assert!(
        std::fs::read(&img).unwrap() == before,
        "read-only mount wrote to the image"
    );
}

#[test]
fn held_inode_outlives_unlink() {
    let t = TempDir::new("held");
    let img = t.path().join("img");
    mkfs(&img, 8 << 20, &["-b", "1024"], None);
    let mut fs = mount(&img);
    let f = write_file(&mut fs, ROOT_INO, "open", &vec![7u8; 10_000]);
    let free = fs.statfs().free_blocks;
    fs.hold(f);
    fs.unlink(ROOT_INO, b"open").unwrap();
    let mut buf = vec![0u8; 10_000];
    assert_eq!(fs.read_at(f, 0, &mut buf).unwrap(), 10_000);
    assert!(buf.iter().all(|&b| b == 7));
    assert_eq!(fs.statfs().free_blocks, free);
    fs.release(f).unwrap();
    assert!(fs.statfs().free_blocks > free);
    fs.unmount().unwrap();
    assert_clean(&img);
}

#[test]
fn bmap_is_what_the_page_cache_uses() {
    let t = TempDir::new("bmap");
    let img = t.path().join("img");
    mkfs(&img, 16 << 20, &["-b", "1024"], None);
    let mut fs = mount(&img);
    let f = fs.create(ROOT_INO, b"pc", 0o644).unwrap();
    let spb = fs.sectors_per_block() as u64;
    // Write 600 blocks the way the page cache would: bmap(alloc) then raw device writes.
    let mut prev = None;
    let mut contiguous = 0;
    let mut expect = Vec::new();
    for fb in 0..600u64 {
        let b = fs.bmap(f, fb, true).unwrap().unwrap();
        if prev.map(|p: u64| p + 1) == Some(b) {
            contiguous += 1;
        }
        prev = Some(b);
        let data = vec![(fb % 251) as u8; 1024];
        fs.device().write(b * spb, &data).unwrap();
        expect.extend_from_slice(&data);
        assert_eq!(fs.bmap(f, fb, false).unwrap(), Some(b));
    }
    assert!(
        contiguous > 550,
        "allocation should be mostly contiguous ({contiguous})"
    );
    assert_eq!(fs.bmap(f, 700, false).unwrap(), None);
    assert_eq!(fs.bmap_run(f, 700, 50).unwrap(), (None, 50));
    let (first, run) = fs.bmap_run(f, 0, 64).unwrap();
    assert_eq!(first, fs.bmap(f, 0, false).unwrap());
    assert_eq!(
        run, 12,
        "the single indirect block sits between blocks 11 and 12"
    );
    let (b13, run) = fs.bmap_run(f, 13, 8).unwrap();
    assert_eq!(b13.unwrap() + 7, fs.bmap(f, 20, false).unwrap().unwrap());
    assert_eq!(run, 8);
    fs.set_size(f, expect.len() as u64).unwrap();
    let st = fs.stat(f).unwrap();
    // 600 data blocks + 1 single indirect + 1 double + 1 second-level indirect.
    assert_eq!(st.blocks, (600 + 4) * 2); // + single, double, two second-level indirect
    fs.unmount().unwrap();
    assert_clean(&img);
    assert!(debugfs_cat(&img, "/pc") == expect);
    let _ = S_IFMT | S_IFREG;
}

#[test]
fn out_of_order_allocation_stays_contiguous() {
    let t = TempDir::new("order");
    let img = t.path().join("img");
    mkfs(&img, 16 << 20, &["-b", "1024"], None);
    let mut fs = mount(&img);
    let a = fs.create(ROOT_INO, b"a", 0o644).unwrap();
    let b = fs.create(ROOT_INO, b"b", 0o644).unwrap();
    // Interleave two files, the way writeback of two files' pages might.
    for fb in 0..8u64 {
        fs.bmap(a, fb, true).unwrap();
        fs.bmap(b, fb, true).unwrap();
    }
    let run_a = fs.bmap_run(a, 0, 8).unwrap().1;
    assert!(run_a >= 4, "file a fragmented into runs of {run_a}");
    fs.set_size(a, 8 * 1024).unwrap();
    fs.set_size(b, 8 * 1024).unwrap();
    fs.unmount().unwrap();
    assert_clean(&img);
}

#[test]
fn xattr_blocks_are_released_with_their_inodes() {
    let t = TempDir::new("xattr");
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for name in ["one", "two", "three"] {
        std::fs::write(src.join(name), name).unwrap();
    }
    // A user xattr large enough to need a block of its own (128-byte inodes).
    let set = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import os\nfor n in ['one','two']: os.setxattr('{0}/'+n, 'user.big', b'v'*400)",
            src.display()
        ))
        .status();
    if !matches!(set, Ok(s) if s.success()) {
        eprintln!("host cannot set user xattrs; skipping");
        return;
    }
    let img = t.path().join("img");
    mkfs(&img, 8 << 20, &["-b", "1024", "-I", "128"], Some(&src));
    let acl = debugfs_stat_field(&img, "/one", "File ACL");
    assert!(
        acl.is_some_and(|b| b != 0),
        "mke2fs did not give /one an xattr block"
    );
    let mut fs = mount(&img);
    let free = fs.statfs().free_blocks;
    fs.unlink(ROOT_INO, b"one").unwrap();
    fs.unlink(ROOT_INO, b"two").unwrap();
    // Each file frees its data block; the xattr block (shared or not) goes with the last user.
    assert!(
        fs.statfs().free_blocks >= free + 3,
        "{} -> {}",
        free,
        fs.statfs().free_blocks
    );
    fs.unmount().unwrap();
    assert_clean(&img);
}

#[test]
fn map_range_maps_and_allocates_like_bmap() {
    let t = TempDir::new("maprange");
    let img = t.path().join("img");
    mkfs(&img, 16 << 20, &["-b", "1024"], None);
    let mut fs = mount(&img);
    let f = fs.create(ROOT_INO, b"r", 0o644).unwrap();
    let spb = fs.sectors_per_block() as u64;
    // Allocate 300 blocks in runs of 64 (crossing into the double-indirect area), write
    // them on the device, and check that a lookup without allocation agrees with bmap.
    let mut mapped = Vec::new();
    for start in (0..300u64).step_by(64) {
        let n = 64.min(300 - start);
        fs.map_range(f, start, n, true, |fb, b| mapped.push((fb, b.unwrap())))
            .unwrap();
    }
    assert_eq!(mapped.len(), 300);
    let mut expect = Vec::new();
    for &(fb, b) in &mapped {
        assert_eq!(fs.bmap(f, fb, false).unwrap(), Some(b));
        let data = vec![(fb % 241) as u8; 1024];
        fs.device().write(b * spb, &data).unwrap();
        expect.extend_from_slice(&data);
    }
    // Without allocation, holes come back as None and nothing is allocated.
    let mut seen = Vec::new();
    fs.map_range(f, 290, 20, false, |fb, b| seen.push((fb, b)))
        .unwrap();
    assert_eq!(seen.len(), 20);
    assert!(seen[..10].iter().all(|(_, b)| b.is_some()));
    assert!(seen[10..].iter().all(|(_, b)| b.is_none()));
    fs.set_size(f, expect.len() as u64).unwrap();
    fs.unmount().unwrap();
    assert_clean(&img);
    assert!(debugfs_cat(&img, "/r") == expect);
}

#[test]
fn map_range_without_allocation_agrees_with_bmap_across_holes() {
    let t = TempDir::new("maprange_holes");
    let img = t.path().join("img");
    mkfs(&img, 16 << 20, &["-b", "1024"], None);
    let mut fs = mount(&img);
    let f = fs.create(ROOT_INO, b"sparse", 0o644).unwrap();
    // 1 KiB blocks: 256 pointers per block, the double-indirect area starts at file
    // block 268 and each of its pointer blocks maps 256 blocks (268.., 524.., 780..,
    // 1036..). Blocks in the direct, indirect and double-indirect areas, with a
    // double-indirect pointer block (780..1035) that does not exist at all.
    let present = [
        0u64, 5, 11, 12, 100, 267, 268, 300, 523, 524, 600, 1200, 1291,
    ];
    for &fb in &present {
        assert!(fs.bmap(f, fb, true).unwrap().is_some());
    }
    let mut seen = Vec::new();
    fs.map_range(f, 0, 1300, false, |fb, b| seen.push((fb, b)))
        .unwrap();
    assert_eq!(seen.len(), 1300);
    for (i, &(fb, b)) in seen.iter().enumerate() {
        assert_eq!(fb, i as u64);
        assert_eq!(b, fs.bmap(f, fb, false).unwrap(), "file block {fb}");
        assert_eq!(b.is_some(), present.contains(&fb), "file block {fb}");
    }
    // A range starting inside a pointer block and ending inside another.
    let mut part = Vec::new();
    fs.map_range(f, 520, 90, false, |fb, b| part.push((fb, b)))
        .unwrap();
    assert_eq!(part[..], seen[520..610]);
    fs.set_size(f, 1292 * 1024).unwrap();
    fs.unmount().unwrap();
    assert_clean(&img);
}

#[test]
fn blocks_past_the_size_are_freed_again() {
    let t = TempDir::new("free_past_size");
    let img = t.path().join("img");
    mkfs(&img, 16 << 20, &["-b", "1024"], None);
    let mut fs = mount(&img);
    let f = fs.create(ROOT_INO, b"f", 0o644).unwrap();
    let data = vec![7u8; 3000];
    fs.write_at(f, 0, &data).unwrap();
    let free = fs.statfs().free_blocks;
    // Blocks 3..400 for data that never comes (past the indirect area's start).
    fs.map_range(f, 3, 397, true, |_, b| assert!(b.is_some()))
        .unwrap();
    assert!(fs.statfs().free_blocks < free - 397);
    fs.free_past_size(f).unwrap();
    assert_eq!(fs.statfs().free_blocks, free);
    assert!(fs.bmap(f, 2, false).unwrap().is_some());
    assert_eq!(fs.bmap(f, 3, false).unwrap(), None);
    fs.unmount().unwrap();
    assert_clean(&img);
    assert!(debugfs_cat(&img, "/f") == data);
}

#[test]
fn map_range_allocates_runs_around_existing_blocks() {
    let t = TempDir::new("maprange_runs");
    let img = t.path().join("img");
    mkfs(&img, 32 << 20, &["-b", "1024"], None);
    let mut fs = mount(&img);
    let f = fs.create(ROOT_INO, b"r", 0o644).unwrap();
    let spb = fs.sectors_per_block() as u64;
    // Blocks already there, in the direct, indirect and double-indirect areas.
    let present = [3u64, 20, 21, 300, 301, 700];
    let mut before = std::collections::BTreeMap::new();
    for &fb in &present {
        before.insert(fb, fs.bmap(f, fb, true).unwrap().unwrap());
    }
    let free = fs.statfs().free_blocks;
    let mut mapped = Vec::new();
    fs.map_range(f, 0, 1000, true, |fb, b| mapped.push((fb, b.unwrap())))
        .unwrap();
    assert_eq!(mapped.len(), 1000);
    let mut seen = std::collections::BTreeSet::new();
    let mut breaks = 0;
    for (i, &(fb, b)) in mapped.iter().enumerate() {
        assert_eq!(fb, i as u64);
        assert_eq!(fs.bmap(f, fb, false).unwrap(), Some(b), "file block {fb}");
        assert!(seen.insert(b), "block {b} mapped twice");
        if let Some(&old) = before.get(&fb) {
            assert_eq!(b, old, "file block {fb} moved");
        }
        if i > 0 && b != mapped[i - 1].1 + 1 {
            breaks += 1;
        }
    }
    // 994 new data blocks and one pointer block (the double-indirect area's third; the
    // indirect block, the double-indirect one and its first two came with the old
    // blocks).
    assert_eq!(free - fs.statfs().free_blocks, 994 + 1);
    // Runs, not scattered blocks: breaks only around the old blocks and pointer blocks.
    assert!(breaks < 30, "{breaks} discontinuities");
    let mut expect = Vec::new();
    for &(fb, b) in &mapped {
        let data = vec![(fb % 251) as u8; 1024];
        fs.device().write(b * spb, &data).unwrap();
        expect.extend_from_slice(&data);
    }
    fs.set_size(f, expect.len() as u64).unwrap();
    fs.unmount().unwrap();
    assert_clean(&img);
    assert!(debugfs_cat(&img, "/r") == expect);
}

/// `map_runs` remembers the runs it found; every change to a file's blocks (writes that
/// allocate, truncation, freeing past the size, unlink and a new file on the same inode)
/// must make it find them again. Checked against `bmap` (which walks the tree each time)
/// after every step of a random mix on two files.
#[test]
fn map_runs_follows_every_change_to_the_block_tree() {
    let t = TempDir::new("map_runs_changes");
    let img = t.path().join("img");
    mkfs(&img, 16 << 20, &["-b", "1024"], None);
    let mut fs = mount(&img);
    let mut files = vec![
        fs.create(ROOT_INO, b"a", 0o644).unwrap(),
        fs.create(ROOT_INO, b"b", 0o644).unwrap(),
    ];
    let mut rng = Rng(0x5eed_1234);
    // Past the direct, indirect and into the double-indirect area (1 KiB blocks).
    let limit = 1400u64;
    let mut checks = 0;
    for step in 0..400 {
        let which = rng.below(2) as usize;
        let f = files[which];
        match rng.below(6) {
            0 | 1 => {
                let at = rng.below(limit);
                let n = 1 + rng.below(64).min(limit - at - 1);
                fs.map_range(f, at, n, true, |_, b| assert!(b.is_some()))
                    .unwrap();
                let size = fs.stat(f).unwrap().size.max((at + n) * 1024);
                fs.set_size(f, size).unwrap();
            }
            2 => {
                let at = rng.below(limit * 1024);
                let len = 1 + rng.below(5000) as usize;
                let data = rng.bytes(len);
                fs.write_at(f, at, &data).unwrap();
            }
            3 => {
                let size = fs.stat(f).unwrap().size;
                fs.set_size(f, rng.below(size + 1)).unwrap();
            }
            4 => {
                // Blocks past the size, then freed again.
                let size = fs.stat(f).unwrap().size;
                let first = size.div_ceil(1024);
                if first + 8 < limit {
                    fs.map_range(f, first, 8, true, |_, _| {}).unwrap();
                    fs.free_past_size(f).unwrap();
                }
            }
            _ => {
                let name: &[u8] = if which == 0 { b"a" } else { b"b" };
                fs.unlink(ROOT_INO, name).unwrap();
                files[which] = fs.create(ROOT_INO, name, 0o644).unwrap();
            }
        }
        for &f in &files {
            for _ in 0..4 {
                let at = rng.below(limit);
                let n = 1 + rng.below(300).min(limit - at - 1);
                let mut got = Vec::new();
                fs.map_runs(f, at, n, |fb, d, k| {
                    got.extend((0..k).map(|i| (fb + i, d.map(|d| d + i))))
                })
                .unwrap();
                let want: Vec<(u64, Option<u64>)> = (at..at + n)
                    .map(|fb| (fb, fs.bmap(f, fb, false).unwrap()))
                    .collect();
                assert_eq!(got, want, "step {step}: file {f}, blocks {at}+{n}");
                checks += 1;
            }
        }
    }
    assert_eq!(checks, 400 * 2 * 4);
    fs.unmount().unwrap();
    assert_clean(&img);
}
