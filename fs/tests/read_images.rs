//! Read images that mke2fs preloaded (`-d`) and compare with the source tree.

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use common::*;
use fs::ext2::ROOT_INO;

fn make_tree(root: &Path) {
    let mut rng = Rng(42);
    let sizes: &[usize] = &[
        0,
        1,
        511,
        1023,
        1024,
        1025,
        4095,
        4096,
        4097,
        12 * 1024,
        12 * 1024 + 1,
        48 * 1024,
        49 * 1024 + 3,
        268 * 1024,
        268 * 1024 + 1,
        300_000,
        1 << 20,
        8 << 20,
    ];
    for &s in sizes {
        std::fs::write(root.join(format!("f{s}")), rng.bytes(s)).unwrap();
    }
    // Sparse: data at the start, in the middle and past the triple-indirect
    // boundary of 1 KiB blocks (12 + 256 + 65536 blocks = ~64.3 MiB).
    let mut f = std::fs::File::create(root.join("sparse")).unwrap();
    f.write_all(b"start").unwrap();
    f.seek(SeekFrom::Start(5 << 20)).unwrap();
    f.write_all(&rng.bytes(3000)).unwrap();
    f.seek(SeekFrom::Start(70 << 20)).unwrap();
    f.write_all(b"the end").unwrap();
    drop(f);
    let mut deep = root.to_path_buf();
    for i in 0..12 {
        deep = deep.join(format!("level{i}"));
        std::fs::create_dir(&deep).unwrap();
        std::fs::write(deep.join("here"), format!("depth {i}")).unwrap();
    }
    std::fs::create_dir(root.join("empty")).unwrap();
    let wide = root.join("wide");
    std::fs::create_dir(&wide).unwrap();
    for i in 0..400 {
        std::fs::write(wide.join(format!("entry number {i}")), format!("{i}")).unwrap();
    }
    std::fs::write(root.join("n".repeat(255)), b"long name").unwrap();
    std::fs::write(root.join("ünïcödé name"), b"utf8").unwrap();
    std::os::unix::fs::symlink("f1024", root.join("short-link")).unwrap();
    let long = format!("{}/target", "x".repeat(150));
    std::os::unix::fs::symlink(&long, root.join("long-link")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", root.join("dangling")).unwrap();
    std::fs::hard_link(root.join("f4096"), root.join("hardlink-to-f4096")).unwrap();
}

#[test]
fn preloaded_images_read_back_exactly() {
    let t = TempDir::new("preload");
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    make_tree(&src);
    let expect = walk_host(&src);
    let configs: &[(&str, &[&str])] = &[
        ("1k", &["-b", "1024"]),
        ("1k-rev0", &["-b", "1024", "-r", "0"]),
        ("1k-none", &["-b", "1024", "-O", "none"]),
        ("2k", &["-b", "2048", "-I", "128"]),
        ("4k", &["-b", "4096"]),
        (
            "4k-ft",
            &[
                "-b",
                "4096",
                "-O",
                "none,filetype,sparse_super",
                "-I",
                "128",
            ],
        ),
    ];
    for (label, args) in configs {
        eprintln!("config {label}");
        let img = t.path().join(format!("{label}.img"));
        mkfs(&img, 40 << 20, args, Some(&src));
        assert_clean(&img);
        let mut fs = mount_ro(&img);
        let mut found = walk(&mut fs);
        found.remove("/lost+found");
        assert_eq!(found.len(), expect.len(), "{label}: entry count");
        for (path, node) in &expect {
            let got = found
                .get(path)
                .unwrap_or_else(|| panic!("{label}: {path} missing"));
            assert!(got == node, "{label}: {path} differs");
        }
        // Links and sizes as stat reports them.
        let f = fs.resolve(b"/f4096").unwrap();
        assert_eq!(fs.resolve(b"/hardlink-to-f4096").unwrap(), f);
        assert_eq!(fs.stat(f).unwrap().nlink, 2);
        let sp = fs.resolve(b"/sparse").unwrap();
        let st = fs.stat(sp).unwrap();
        assert_eq!(st.size, (70 << 20) + 7);
        assert!(
            st.blocks < 100,
            "{label}: sparse file stays sparse ({} sectors)",
            st.blocks
        );
        assert_eq!(
            fs.resolve(b"/short-link").unwrap(),
            fs.resolve(b"/f1024").unwrap()
        );
        assert_eq!(
            fs.resolve(b"/level0/level1/../level1/here").unwrap(),
            fs.resolve(b"/level0/level1/here").unwrap()
        );
        let root = fs.stat(ROOT_INO).unwrap();
        assert_eq!(
            root.nlink as usize,
            2 + 4,
            "{label}: root has level0, empty, wide, lost+found"
        );
        // Reads at odd offsets and lengths agree with the source.
        let big = fs.resolve(b"/f8388608").unwrap();
        let data = std::fs::read(src.join("f8388608")).unwrap();
        let mut rng = Rng(7);
        for _ in 0..50 {
            let off = rng.below(data.len() as u64 + 100);
            let len = rng.below(70_000) as usize;
            let mut buf = vec![0u8; len];
            let n = fs.read_at(big, off, &mut buf).unwrap();
            let want = &data[(off as usize).min(data.len())..(off as usize + len).min(data.len())];
            assert_eq!(&buf[..n], want);
        }
    }
}
