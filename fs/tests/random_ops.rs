//! Random operation sequences checked against a model, then by e2fsck.

mod common;

use std::collections::BTreeMap;

use common::*;
use fs::FsError;
use fs::ext2::{Ext2, ROOT_INO};

#[derive(Clone, Debug)]
enum M {
    Dir,
    File(usize),
    Link(Vec<u8>),
}

struct Model {
    tree: BTreeMap<String, M>,
    data: Vec<Vec<u8>>,
}

fn parent_of(path: &str) -> (&str, &str) {
    let i = path.rfind('/').unwrap();
    (if i == 0 { "/" } else { &path[..i] }, &path[i + 1..])
}

fn ino_of(fs: &mut Ext2, path: &str) -> u32 {
    fs.resolve_at(ROOT_INO, path.as_bytes(), false).unwrap()
}

fn run(label: &str, size: u64, args: &[&str], seed: u64, steps: usize) {
    let t = TempDir::new(label);
    let img = t.path().join("img");
    mkfs(&img, size, args, None);
    let mut fs = mount(&img);
    let bs = fs.block_size() as u64;
    let mut rng = Rng(seed);
    let mut m = Model {
        tree: BTreeMap::new(),
        data: Vec::new(),
    };
    let mut counter = 0;
    for step in 0..steps {
        let dirs: Vec<String> = std::iter::once("/".to_string())
            .chain(
                m.tree
                    .iter()
                    .filter(|(_, v)| matches!(v, M::Dir))
                    .map(|(k, _)| k.clone()),
            )
            .collect();
        let files: Vec<String> = m
            .tree
            .iter()
            .filter(|(_, v)| matches!(v, M::File(_)))
            .map(|(k, _)| k.clone())
            .collect();
        let all: Vec<String> = m.tree.keys().cloned().collect();
        let pick = |rng: &mut Rng, v: &Vec<String>| v[rng.below(v.len() as u64) as usize].clone();
        let join = |d: &str, n: &str| {
            if d == "/" {
                format!("/{n}")
            } else {
                format!("{d}/{n}")
            }
        };
        counter += 1;
        let name = format!("n{counter}");
        match rng.below(12) {
            0 | 1 => {
                let d = pick(&mut rng, &dirs);
                let di = ino_of(&mut fs, &d);
                match fs.create(di, name.as_bytes(), 0o644) {
                    Ok(_) => {
                        m.data.push(Vec::new());
                        m.tree.insert(join(&d, &name), M::File(m.data.len() - 1));
                    }
                    Err(e) => assert_eq!(e, FsError::NoSpace, "step {step}"),
                }
            }
            2 => {
                let d = pick(&mut rng, &dirs);
                let di = ino_of(&mut fs, &d);
                if fs.mkdir(di, name.as_bytes(), 0o755).is_ok() {
                    m.tree.insert(join(&d, &name), M::Dir);
                }
            }
            3..=5 if !files.is_empty() => {
                let f = pick(&mut rng, &files);
                let M::File(id) = m.tree[&f] else {
                    unreachable!()
                };
                let ino = ino_of(&mut fs, &f);
                let len = rng.below(3 * bs) as usize + 1;
                let off = match rng.below(4) {
                    0 => m.data[id].len() as u64,
                    1 => rng.below(300 * bs),
                    _ => rng.below(m.data[id].len() as u64 + 1),
                };
                let bytes = rng.bytes(len);
                match fs.write_at(ino, off, &bytes) {
                    Ok(n) => {
                        let d = &mut m.data[id];
                        let end = off as usize + n;
                        if d.len() < end {
                            d.resize(end, 0);
                        }
                        d[off as usize..end].copy_from_slice(&bytes[..n]);
                    }
                    Err(e) => assert_eq!(e, FsError::NoSpace),
                }
            }
            6 if !files.is_empty() => {
                let f = pick(&mut rng, &files);
                let M::File(id) = m.tree[&f] else {
                    unreachable!()
                };
                let ino = ino_of(&mut fs, &f);
                let cur = m.data[id].len() as u64;
                let new = if rng.below(2) == 0 {
                    rng.below(cur + 1)
                } else {
                    cur + rng.below(100 * bs)
                };
                fs.truncate(ino, new).unwrap();
                m.data[id].resize(new as usize, 0);
            }
            7 if !all.is_empty() => {
                let p = pick(&mut rng, &all);
                let (d, n) = parent_of(&p);
                let di = ino_of(&mut fs, d);
                let is_dir = matches!(m.tree[&p], M::Dir);
                let r = if is_dir {
                    fs.rmdir(di, n.as_bytes())
                } else {
                    fs.unlink(di, n.as_bytes())
                };
                let has_children = m.tree.keys().any(|k| k.starts_with(&format!("{p}/")));
                match r {
                    Ok(()) => {
                        assert!(!has_children);
                        m.tree.remove(&p);
                    }
                    Err(e) => {
                        assert!(is_dir && has_children, "step {step}: remove {p}: {e}");
                        assert_eq!(e, FsError::NotEmpty);
                    }
                }
            }
            8 | 9 if !all.is_empty() => {
                let p = pick(&mut rng, &all);
                let (od, on) = parent_of(&p);
                let nd = pick(&mut rng, &dirs);
                let target = if rng.below(3) == 0 && !all.is_empty() {
                    let q = pick(&mut rng, &all);
                    if parent_of(&q).0 == nd {
                        parent_of(&q).1.to_string()
                    } else {
                        name.clone()
                    }
                } else {
                    name.clone()
                };
                let odi = ino_of(&mut fs, od);
                let ndi = ino_of(&mut fs, &nd);
                let newp = join(&nd, &target);
                let r = fs.rename(odi, on.as_bytes(), ndi, target.as_bytes());
                let into_self = nd == p || nd.starts_with(&format!("{p}/"));
                match r {
                    Ok(()) => {
                        assert!(!into_self, "step {step}: moved {p} into itself");
                        let same_inode = matches!((m.tree.get(&p), m.tree.get(&newp)),
                            (Some(M::File(a)), Some(M::File(b))) if a == b);
                        if newp != p && !same_inode {
                            if let Some(M::Dir) = m.tree.get(&newp) {
                                m.tree.remove(&newp);
                            }
                            let moved: Vec<(String, M)> = m
                                .tree
                                .iter()
                                .filter(|(k, _)| **k == p || k.starts_with(&format!("{p}/")))
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect();
                            for (k, v) in moved {
                                m.tree.remove(&k);
                                m.tree.insert(format!("{newp}{}", &k[p.len()..]), v);
                            }
                        }
                    }
                    Err(FsError::Invalid) => assert!(into_self, "step {step}"),
                    Err(
                        FsError::NotEmpty | FsError::IsDir | FsError::NotDir | FsError::NoSpace,
                    ) => {}
                    Err(e) => panic!("step {step}: rename {p} -> {newp}: {e}"),
                }
            }
            10 if !files.is_empty() => {
                let f = pick(&mut rng, &files);
                let M::File(id) = m.tree[&f] else {
                    unreachable!()
                };
                let ino = ino_of(&mut fs, &f);
                let d = pick(&mut rng, &dirs);
                let di = ino_of(&mut fs, &d);
                if fs.link(ino, di, name.as_bytes()).is_ok() {
                    m.tree.insert(join(&d, &name), M::File(id));
                }
            }
            _ => {
                let d = pick(&mut rng, &dirs);
                let di = ino_of(&mut fs, &d);
                let max = if rng.below(2) == 0 { 59 } else { bs - 2 };
                let len = 1 + rng.below(max);
                let target: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                if fs.symlink(di, name.as_bytes(), &target).is_ok() {
                    m.tree.insert(join(&d, &name), M::Link(target));
                }
            }
        }
        if step % 97 == 0 {
            fs.sync().unwrap();
        }
    }
    let mut found = walk(&mut fs);
    found.remove("/lost+found");
    let expect: BTreeMap<String, Node> = m
        .tree
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                match v {
                    M::Dir => Node::Dir,
                    M::File(id) => Node::File(m.data[*id].clone()),
                    M::Link(t) => Node::Symlink(t.clone()),
                },
            )
        })
        .collect();
    if found != expect {
        for k in found.keys().chain(expect.keys()) {
            let (a, b) = (found.get(k), expect.get(k));
            if a != b {
                let desc = |n: Option<&Node>| match n {
                    None => "missing".to_string(),
                    Some(Node::File(d)) => format!("file len {}", d.len()),
                    Some(n) => format!("{n:?}"),
                };
                eprintln!("{k}: fs {} model {}", desc(a), desc(b));
                if let (Some(Node::File(x)), Some(Node::File(y))) = (a, b) {
                    let i = x.iter().zip(y.iter()).position(|(p, q)| p != q);
                    eprintln!("  first difference at {i:?}");
                }
            }
        }
        panic!("{label} seed {seed}: tree differs from the model");
    }
    fs.unmount().unwrap();
    assert_clean(&img);
    let mut fs = mount_ro(&img);
    let mut again = walk(&mut fs);
    again.remove("/lost+found");
    assert!(
        again == expect,
        "{label} seed {seed}: tree differs after remount"
    );
    for (path, node) in expect.iter().take(40) {
        if let Node::File(d) = node {
            assert!(
                debugfs_cat(&img, path) == *d,
                "{label} seed {seed}: {path} differs in debugfs"
            );
        }
    }
}

#[test]
fn random_operations_stay_consistent() {
    for (i, (label, size, args)) in CONFIGS.iter().enumerate() {
        let seeds: u64 = std::env::var("FS_RANDOM_SEEDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3);
        let steps: usize = std::env::var("FS_RANDOM_STEPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(400);
        for seed in 0..seeds {
            run(label, *size, args, 1 + seed * 7919 + i as u64, steps);
        }
    }
}

#[test]
fn random_operations_on_a_tiny_disk() {
    for seed in 0..4u64 {
        run(
            "tiny",
            1 << 20,
            &["-b", "1024", "-N", "128"],
            100 + seed,
            600,
        );
    }
}
