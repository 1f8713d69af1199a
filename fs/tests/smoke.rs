mod common;
use common::*;

#[test]
fn smoke() {
    let t = TempDir::new("smoke");
    let img = t.path().join("img");
    mkfs(&img, 8 << 20, &["-b", "1024"], None);
    let mut fs = mount(&img);
    let root = fs::ROOT_INO;
    let f = fs.create(root, b"hello", 0o644).unwrap();
    fs.write_at(f, 0, b"hello world\n").unwrap();
    let d = fs.mkdir(root, b"dir", 0o755).unwrap();
    let g = fs.create(d, b"big", 0o644).unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    fs.write_at(g, 0, &data).unwrap();
    fs.symlink(root, b"s", b"dir/big").unwrap();
    fs.sync().unwrap();
    drop(fs);
    assert_clean(&img);
    assert_eq!(debugfs_cat(&img, "/hello"), b"hello world\n");
    assert_eq!(debugfs_cat(&img, "/dir/big"), data);
}
