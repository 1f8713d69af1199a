//! Corrupt images and failing devices: errors, never panics.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

use common::*;
use fs::ext2::{Ext2, MountOptions, ROOT_INO};
use fs::{FaultDev, FsError, MemDev};

fn small_tree(root: &Path) {
    let mut rng = Rng(3);
    std::fs::write(root.join("small"), b"small file").unwrap();
    std::fs::write(root.join("medium"), rng.bytes(20_000)).unwrap();
    std::fs::write(root.join("large"), rng.bytes(300_000)).unwrap();
    let d = root.join("dir");
    std::fs::create_dir(&d).unwrap();
    for i in 0..60 {
        std::fs::write(d.join(format!("file{i}")), format!("{i}")).unwrap();
    }
    std::fs::create_dir_all(root.join("a/b/c/d")).unwrap();
    std::fs::write(root.join("a/b/c/d/leaf"), b"leaf").unwrap();
    std::os::unix::fs::symlink("a/b/c/d/leaf", root.join("fastlink")).unwrap();
    std::os::unix::fs::symlink("x".repeat(120), root.join("slowlink")).unwrap();
}

struct Base {
    label: String,
    image: Vec<u8>,
    /// Byte ranges worth corrupting: superblock, descriptors, inode table, directories.
    regions: Vec<(&'static str, usize, usize)>,
}

fn base_images() -> Vec<Base> {
    let t = TempDir::new("corrupt-base");
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    small_tree(&src);
    let mut out = Vec::new();
    for (label, args) in [
        ("1k", &["-b", "1024"][..]),
        ("4k", &["-b", "4096"][..]),
        ("1k-rev0", &["-b", "1024", "-r", "0"][..]),
        ("2k-none", &["-b", "2048", "-O", "none"][..]),
    ] {
        let img = t.path().join(label);
        mkfs(&img, 4 << 20, args, Some(&src));
        let image = std::fs::read(&img).unwrap();
        let mut fs = Ext2::mount(
            Arc::new(MemDev::new(image.clone())),
            MountOptions { read_only: true },
        )
        .unwrap();
        let bs = fs.block_size() as usize;
        let rd32 =
            |off: usize| u32::from_le_bytes(image[off..off + 4].try_into().unwrap()) as usize;
        let first_data = rd32(1024 + 20);
        let gdt = (first_data + 1) * bs;
        let inode_table = rd32(gdt + 8) * bs;
        let mut regions = vec![
            ("superblock", 1024, 1024 + 1024),
            ("group descriptors", gdt, gdt + 64),
            ("bitmaps", rd32(gdt) * bs, rd32(gdt) * bs + bs),
            ("inode table", inode_table, inode_table + 64 * 256),
        ];
        for path in ["/", "/dir", "/a/b", "/a/b/c/d"] {
            let ino = fs.resolve(path.as_bytes()).unwrap();
            let size = fs.stat(ino).unwrap().size;
            for fb in 0..size / bs as u64 {
                let b = fs.bmap(ino, fb, false).unwrap().unwrap() as usize;
                regions.push(("directory", b * bs, b * bs + bs));
            }
        }
        let large = fs.resolve(b"/large").unwrap();
        // The single indirect block of /large (file block 12's parent) is
        // right before file block 12 when mke2fs lays it out contiguously.
        let b12 = fs.bmap(large, 12, false).unwrap().unwrap() as usize;
        regions.push(("indirect", (b12 - 1) * bs, b12 * bs));
        out.push(Base {
            label: label.to_string(),
            image,
            regions,
        });
    }
    out
}

fn exercise(image: Vec<u8>, seed: u64) {
    // Read-only: mount and walk.
    let dev = Arc::new(MemDev::new(image.clone()));
    if let Ok(mut fs) = Ext2::mount(dev, MountOptions { read_only: true }) {
        robust_walk(&mut fs);
    }
    // Read-write: walk, modify, walk again, sync, remount.
    let dev = Arc::new(MemDev::new(image));
    if let Ok(mut fs) = Ext2::mount_with_cache(dev.clone(), MountOptions { read_only: false }, 16) {
        robust_walk(&mut fs);
        robust_mutate(&mut fs, seed);
        robust_walk(&mut fs);
        let _ = fs.unmount();
        if let Ok(mut fs) = Ext2::mount(dev, MountOptions { read_only: true }) {
            robust_walk(&mut fs);
        }
    }
}

#[test]
fn bit_flips_never_panic() {
    let bases = base_images();
    let mut cases = 0;
    let mut mounted = 0;
    for base in &bases {
        for seed in 0..100u64 {
            let mut rng = Rng(seed.wrapping_mul(0x2545F4914F6CDD1D) ^ 0xdead_beef);
            let (what, start, end) = base.regions[(seed as usize) % base.regions.len()];
            let mut image = base.image.clone();
            let flips = 1 + rng.below(if seed % 5 == 0 { 64 } else { 6 });
            for _ in 0..flips {
                let byte = start + rng.below((end - start) as u64) as usize;
                if seed % 7 == 0 {
                    image[byte] = rng.next() as u8;
                } else {
                    image[byte] ^= 1 << rng.below(8);
                }
            }
            let label = &base.label;
            let r = catch_unwind(AssertUnwindSafe(|| exercise(image.clone(), seed)));
            if r.is_err() {
                let path =
                    std::env::temp_dir().join(format!("aliasos-fs-crash-{label}-{seed}.img"));
                std::fs::write(&path, &image).unwrap();
                panic!(
                    "panic on {label} seed {seed} ({what}); image saved to {}",
                    path.display()
                );
            }
            cases += 1;
            if Ext2::mount(
                Arc::new(MemDev::new(image)),
                MountOptions { read_only: true },
            )
            .is_ok()
            {
                mounted += 1;
            }
        }
    }
    eprintln!("{cases} corrupted images, {mounted} still mounted");
    assert_eq!(cases, 400);
}

#[test]
fn random_garbage_blocks_never_panic() {
    let bases = base_images();
    for base in &bases {
        let bs = if base.label.starts_with('4') {
            4096
        } else if base.label.starts_with('2') {
            2048
        } else {
            1024
        };
        let blocks = base.image.len() / bs;
        for seed in 0..40u64 {
            let mut rng = Rng(seed + 1000);
            let mut image = base.image.clone();
            // Overwrite a few whole blocks among the first 200 with random bytes.
            for _ in 0..3 {
                let b = 1 + rng.below(200.min(blocks as u64 - 1)) as usize;
                let junk = rng.bytes(bs);
                image[b * bs..(b + 1) * bs].copy_from_slice(&junk);
            }
            let r = catch_unwind(AssertUnwindSafe(|| exercise(image.clone(), seed)));
            assert!(r.is_ok(), "panic on {} garbage seed {seed}", base.label);
        }
    }
}

#[test]
fn refuses_bad_superblocks_clearly() {
    let bases = base_images();
    let base = &bases[0];
    let mount = |img: &Vec<u8>, ro: bool| {
        Ext2::mount(
            Arc::new(MemDev::new(img.clone())),
            MountOptions { read_only: ro },
        )
        .map(|_| ())
    };
    let set32 = |img: &mut Vec<u8>, off: usize, v: u32| {
        img[1024 + off..1024 + off + 4].copy_from_slice(&v.to_le_bytes())
    };
    // No magic.
    let mut img = base.image.clone();
    img[1024 + 56] = 0;
    assert_eq!(mount(&img, true), Err(FsError::Invalid));
    // 8 KiB blocks.
    let mut img = base.image.clone();
    set32(&mut img, 24, 3);
    assert_eq!(mount(&img, true), Err(FsError::Unsupported));
    // Unknown incompatible feature (extents): refused even read-only.
    let mut img = base.image.clone();
    let incompat = u32::from_le_bytes(img[1024 + 96..1024 + 100].try_into().unwrap());
    set32(&mut img, 96, incompat | 0x40);
    assert_eq!(mount(&img, true), Err(FsError::Unsupported));
    assert_eq!(mount(&img, false), Err(FsError::Unsupported));
    // Unknown read-only-compatible feature: read-only only.
    let mut img = base.image.clone();
    let ro = u32::from_le_bytes(img[1024 + 100..1024 + 104].try_into().unwrap());
    set32(&mut img, 100, ro | 0x400);
    assert_eq!(mount(&img, false), Err(FsError::ReadOnly));
    assert_eq!(mount(&img, true), Ok(()));
    // Revision 2.
    let mut img = base.image.clone();
    set32(&mut img, 76, 2);
    assert_eq!(mount(&img, true), Err(FsError::Unsupported));
    // Inode count inconsistent with the groups.
    let mut img = base.image.clone();
    set32(&mut img, 0, 12345);
    assert_eq!(mount(&img, true), Err(FsError::Corrupt));
    // Device smaller than the file system.
    let img = base.image[..base.image.len() / 2].to_vec();
    assert_eq!(mount(&img, true), Err(FsError::Invalid));
    // Empty device.
    assert_eq!(mount(&vec![0u8; 512], true), Err(FsError::Invalid));
}

#[test]
fn failing_reads_return_eio() {
    let bases = base_images();
    for base in &bases {
        let mem: Arc<MemDev> = Arc::new(MemDev::new(base.image.clone()));
        for n in 0..120u64 {
            let fault = Arc::new(FaultDev::new(mem.clone()));
            fault.fail_reads_after(n);
            let r = catch_unwind(AssertUnwindSafe(|| {
                match Ext2::mount_with_cache(fault.clone(), MountOptions { read_only: true }, 8) {
                    Ok(mut fs) => {
                        robust_walk(&mut fs);
                        let mut buf = vec![0u8; 400_000];
                        match fs.resolve(b"/large") {
                            Ok(ino) => {
                                let r = fs.read_at(ino, 0, &mut buf);
                                assert!(r.is_ok() || r == Err(FsError::Io), "{r:?}");
                            }
                            Err(e) => assert_eq!(e, FsError::Io),
                        }
                    }
                    Err(e) => assert_eq!(e, FsError::Io),
                }
            }));
            assert!(r.is_ok(), "{} read fault after {n}", base.label);
        }
    }
}

#[test]
fn failing_writes_return_eio_and_recover() {
    let bases = base_images();
    for base in &bases {
        for n in [0u64, 1, 2, 3, 5, 8, 13, 21, 34] {
            let mem = Arc::new(MemDev::new(base.image.clone()));
            let fault = Arc::new(FaultDev::new(mem.clone()));
            let mut fs = Ext2::mount_with_cache(fault.clone(), MountOptions::default(), 8).unwrap();
            fault.fail_writes_after(n);
            let r = catch_unwind(AssertUnwindSafe(|| {
                let mut saw_eio = false;
                for i in 0..30 {
                    let name = format!("w{i}");
                    match fs.create(ROOT_INO, name.as_bytes(), 0o644) {
                        Ok(f) => match fs.write_at(f, 0, &vec![i as u8; 3000]) {
                            Ok(_) => {}
                            Err(e) => {
                                assert_eq!(e, FsError::Io);
                                saw_eio = true;
                            }
                        },
                        Err(e) => {
                            assert_eq!(e, FsError::Io);
                            saw_eio = true;
                        }
                    }
                }
                let s = fs.sync();
                assert!(saw_eio || s == Err(FsError::Io), "writes failed silently");
                fs
            }));
            let mut fs = r.unwrap_or_else(|_| panic!("{} write fault after {n}", base.label));
            assert!(fault.injected.load(std::sync::atomic::Ordering::SeqCst) > 0);
            // Once the device heals, a sync writes everything that was kept dirty.
            fault.heal();
            fs.sync().unwrap();
            drop(fs);
            let t = TempDir::new("healed");
            let img = t.path().join("img");
            std::fs::write(&img, mem.contents()).unwrap();
            let (code, text) = fsck(&img);
            // Data blocks whose write failed hold stale bytes, but the metadata
            // that was kept dirty and re-written must be consistent.
            assert_eq!(code, 0, "{} after write fault {n}:\n{text}", base.label);
        }
    }
}

/// Direct I/O maps a file's blocks by runs and checks each run once: a run of pointers
/// that walks from data blocks into a group's metadata (a superblock copy, a bitmap, the
/// inode table) must be refused as a whole, exactly where a lookup block by block
/// refuses one of its blocks.
#[test]
fn pointer_runs_into_metadata_are_corrupt() {
    // 1 KiB blocks, groups of 1024 blocks: four groups' metadata in 4 MiB.
    let (_t, img, f, ind) = forty_block_file("runs_into_metadata", &["-g", "1024"]);
    let blocks = 4096u64;
    let (mut refused, mut mapped) = (0, 0);
    for start in (1..blocks - 8).step_by(3) {
        // File blocks 12..20 point to disk blocks start..start + 8.
        let ptrs: Vec<u32> = (start..start + 8).map(|b| b as u32).collect();
        set_pointers(&img, ind, 12, &ptrs);
        let mut fs = mount_ro(&img);
        let each: Vec<Result<Option<u64>, FsError>> =
            (12..20).map(|fb| fs.bmap(f, fb, false)).collect();
        let mut runs = Vec::new();
        let got = fs.map_runs(f, 10, 12, |fb, d, n| runs.push((fb, d, n)));
        if each.iter().all(|r| r.is_ok()) {
            got.unwrap_or_else(|e| panic!("{start}: {e:?}"));
            let expanded: Vec<(u64, Option<u64>)> = runs
                .iter()
                .flat_map(|&(fb, d, n)| (0..n).map(move |k| (fb + k, d.map(|d| d + k))))
                .collect();
            let oracle: Vec<(u64, Option<u64>)> = (10..22)
                .map(|fb| (fb, fs.bmap(f, fb, false).unwrap()))
                .collect();
            assert_eq!(expanded, oracle, "{start}");
            assert!(
                runs.iter()
                    .any(|&(fb, d, n)| fb <= 12 && fb + n >= 20 && d.is_some()),
                "{start}: the eight pointers make one run: {runs:?}"
            );
            mapped += 1;
        } else {
            assert!(each.contains(&Err(FsError::Corrupt)), "{start}: {each:?}");
            assert_eq!(got, Err(FsError::Corrupt), "{start}: {runs:?}");
            let mut per_block = Vec::new();
            let r = fs.map_range(f, 12, 8, false, |fb, d| per_block.push((fb, d)));
            assert_eq!(r, Err(FsError::Corrupt), "{start}: map_range");
            refused += 1;
        }
    }
    // Every group's metadata was met, and data between them.
    assert!(
        refused > 4 * 20 && mapped > 600,
        "{refused} refused, {mapped} mapped"
    );
}

/// A 4 MiB image of 1 KiB blocks (with `args` for mke2fs) holding `/f`, 40 blocks long
/// (its indirect block maps the last 28): the directory, the image, the file's inode
/// and its indirect block.
fn forty_block_file(tag: &str, args: &[&str]) -> (TempDir, std::path::PathBuf, u32, u64) {
    let t = TempDir::new(tag);
    let img = t.path().join("img");
    mkfs(&img, 4 << 20, &[&["-b", "1024"], args].concat(), None);
    let mut fs = mount(&img);
    let f = fs.create(ROOT_INO, b"f", 0o644).unwrap();
    fs.map_range(f, 0, 40, true, |_, b| assert!(b.is_some()))
        .unwrap();
    fs.set_size(f, 40 * 1024).unwrap();
    fs.unmount().unwrap();
    let ind = indirect_block(&img, "/f");
    (t, img, f, ind)
}

/// Point a file's blocks from `first` on (12 or more: in its indirect block `ind`) at
/// `blocks`, writing the image directly.
fn set_pointers(img: &Path, ind: u64, first: u64, blocks: &[u32]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    file.seek(SeekFrom::Start(ind * 1024 + (first - 12) * 4))
        .unwrap();
    let bytes: Vec<u8> = blocks.iter().flat_map(|b| b.to_le_bytes()).collect();
    file.write_all(&bytes).unwrap();
}

/// The indirect block of the file at `path` (debugfs: "(IND):n"): it maps file blocks
/// 12 on.
fn indirect_block(img: &Path, path: &str) -> u64 {
    let stat = String::from_utf8(debugfs(img, &format!("stat {path}"))).unwrap();
    stat.split("(IND):").nth(1).unwrap()[..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap()
}

/// A bad pointer refuses the transfers that need its block, not the others nearby (which
/// `map_runs` maps with it, as it learns a whole pointer block's runs at once).
#[test]
fn a_bad_pointer_refuses_only_what_needs_it() {
    let (_t, img, f, ind) = forty_block_file("bad_pointer_nearby", &[]);
    // File block 30 now points at block 1 (the group descriptors).
    set_pointers(&img, ind, 30, &[1]);
    let mut fs = mount_ro(&img);
    for _ in 0..2 {
        let mut n = 0;
        fs.map_runs(f, 12, 8, |_, d, k| {
            assert!(d.is_some());
            n += k
        })
        .unwrap();
        assert_eq!(n, 8);
        assert_eq!(fs.map_runs(f, 28, 4, |_, _, _| {}), Err(FsError::Corrupt));
        fs.map_runs(f, 31, 9, |_, d, _| assert!(d.is_some()))
            .unwrap();
    }
}

/// A run that starts on metadata and goes on into data: a transfer of its data part
/// alone is served, one that needs the metadata block is refused.
#[test]
fn a_run_from_metadata_into_data_serves_its_data_part() {
    let (_t, img, f, ind) = forty_block_file("run_from_metadata", &[]);
    // The last inode-table block, then the first block after the table.
    let stats = String::from_utf8(debugfs(&img, "stats")).unwrap();
    let after = |key: &str| -> u64 {
        let rest = stats.split(key).nth(1).unwrap().trim_start();
        let d: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        d.parse().unwrap()
    };
    let last = after("inode table at ") + after("Inode blocks per group:") - 1;
    set_pointers(&img, ind, 12, &[last as u32, last as u32 + 1]);
    let mut fs = mount_ro(&img);
    for _ in 0..2 {
        let mut got = Vec::new();
        fs.map_runs(f, 13, 1, |fb, d, n| got.push((fb, d, n)))
            .unwrap();
        assert_eq!(got, [(13, Some(last + 1), 1)]);
        assert_eq!(fs.bmap(f, 13, false), Ok(Some(last + 1)));
        assert_eq!(fs.map_runs(f, 12, 1, |_, _, _| {}), Err(FsError::Corrupt));
        assert_eq!(fs.map_runs(f, 11, 3, |_, _, _| {}), Err(FsError::Corrupt));
    }
}
