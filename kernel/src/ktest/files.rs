//! Files on a real ext2 disk through the page cache (suite `fs`, and `fs_big` for the
//! file larger than RAM). The host made the image with `mke2fs -d` and checks it with
//! `e2fsck -fn` and `debugfs` after QEMU exits; the names and patterns here are the
//! contract with tests/tests/files.rs.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;

use ::fs::error::FsError;
use drivers::block::pattern;
use mm::counters::{self, Counter};

use super::TestResult;
use crate::vfs::{self, Mount, OpenFile};
use crate::{ensure, kprintln, time};

/// Seeds of the files' patterns (see tests/tests/files.rs).
const SEED_PRELOADED: u64 = 7;
const SEED_A: u64 = 11;
const SEED_BIG: u64 = 13;
const PRELOADED_LEN: u64 = 3 * 1024 * 1024 + 100;
const A_LEN: u64 = 1024 * 1024 + 1000;
/// The file larger than RAM (run with 64 MiB of RAM).
const BIG_LEN: u64 = 256 << 20;

fn mnt() -> Result<Arc<Mount>, String> {
    vfs::mnt().ok_or_else(|| String::from("nothing mounted at /mnt"))
}

fn e(what: &str, err: FsError) -> String {
    format!("{what}: {err:?} (errno {})", err.errno())
}

/// Write `len` bytes of pattern `seed` in pieces of `chunk` bytes.
fn write_pattern(f: &OpenFile, len: u64, seed: u64, chunk: usize) -> TestResult {
    let mut buf = vec![0u8; chunk];
    let mut off = 0;
    while off < len {
        let n = chunk.min((len - off) as usize);
        pattern::fill_range(&mut buf[..n], off, seed);
        let w = f.write_at(off, &buf[..n]).map_err(|x| e("write", x))?;
        ensure!(w == n, "short write {w} of {n} at {off}");
        off += n as u64;
    }
    Ok(())
}

/// Read the whole file back in pieces of `chunk` bytes and compare with the pattern.
fn check_pattern(f: &OpenFile, len: u64, seed: u64, chunk: usize) -> TestResult {
    ensure!(f.size() == len, "size {} instead of {len}", f.size());
    let mut buf = vec![0u8; chunk];
    let mut want = vec![0u8; chunk];
    let mut off = 0;
    while off < len {
        let n = f.read_at(off, &mut buf).map_err(|x| e("read", x))?;
        ensure!(
            n == chunk.min((len - off) as usize),
            "read {n} bytes at {off}"
        );
        pattern::fill_range(&mut want[..n], off, seed);
        if buf[..n] != want[..n] {
            let i = buf[..n]
                .iter()
                .zip(&want[..n])
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(format!("byte {} differs", off + i as u64));
        }
        off += n as u64;
    }
    let mut tail = [0u8; 16];
    ensure!(
        f.read_at(len, &mut tail) == Ok(0),
        "read past the end returned data"
    );
    Ok(())
}

/// A file the host put on the disk with `mke2fs -d` reads back right.
pub fn preloaded_file_reads_back() -> TestResult {
    let m = mnt()?;
    let f = m.open("preloaded.bin", false).map_err(|x| e("open", x))?;
    check_pattern(&f, PRELOADED_LEN, SEED_PRELOADED, 10_000)
}

/// Create, write in odd-sized pieces, read back; the second read is served from the
/// cache (hits, no new misses).
pub fn create_write_read() -> TestResult {
    let m = mnt()?;
    m.mkdir("dir").map_err(|x| e("mkdir", x))?;
    let f = m.open("dir/a.bin", true).map_err(|x| e("create", x))?;
    write_pattern(&f, A_LEN, SEED_A, 7000)?;
    check_pattern(&f, A_LEN, SEED_A, 4096)?;
    let (h, mi) = (
        counters::get(Counter::PagecacheHits),
        counters::get(Counter::PagecacheMisses),
    );
    check_pattern(&f, A_LEN, SEED_A, 65536)?;
    ensure!(
        counters::get(Counter::PagecacheMisses) == mi,
        "a re-read of cached data missed"
    );
    ensure!(
        counters::get(Counter::PagecacheHits) > h,
        "no page-cache hits counted"
    );
    ensure!(m.open("dir/a.bin", true).is_ok(), "reopen failed");
    ensure!(
        m.mkdir("dir").err() == Some(FsError::Exists),
        "mkdir of an existing name accepted"
    );
    Ok(())
}

/// Overwrite, truncate down, extend past a hole: the hole and the cut tail read as zeros.
pub fn truncate_and_holes() -> TestResult {
    let m = mnt()?;
    let f = m.open("dir/t.bin", true).map_err(|x| e("create", x))?;
    f.write_at(0, &[0xAB; 100 * 1024])
        .map_err(|x| e("write", x))?;
    f.truncate(5000).map_err(|x| e("truncate", x))?;
    f.write_at(20_000, b"after the hole")
        .map_err(|x| e("write", x))?;
    let mut buf = vec![0u8; 20_014];
    ensure!(f.read_at(0, &mut buf) == Ok(20_014), "short read");
    ensure!(
        buf[..5000].iter().all(|&b| b == 0xAB),
        "data before the cut lost"
    );
    ensure!(
        buf[5000..20_000].iter().all(|&b| b == 0),
        "stale bytes in the hole"
    );
    ensure!(&buf[20_000..] == b"after the hole", "tail wrong");
    Ok(())
}

/// Rename across directories and unlink; names behave, and a deleted file's pages go.
pub fn rename_and_unlink() -> TestResult {
    let m = mnt()?;
    let f = m.open("old.txt", true).map_err(|x| e("create", x))?;
    f.write_at(0, b"hello from AliasOS\n")
        .map_err(|x| e("write", x))?;
    m.rename("old.txt", "dir/new.txt")
        .map_err(|x| e("rename", x))?;
    ensure!(
        m.open("old.txt", false).err() == Some(FsError::NotFound),
        "old name still there"
    );
    let t = m.open("tmp.bin", true).map_err(|x| e("create", x))?;
    write_pattern(&t, 64 * 1024, 5, 4096)?;
    drop(t);
    m.unlink("tmp.bin").map_err(|x| e("unlink", x))?;
    ensure!(
        m.open("tmp.bin", false).err() == Some(FsError::NotFound),
        "unlinked file still there"
    );
    ensure!(
        m.unlink("tmp.bin").err() == Some(FsError::NotFound),
        "second unlink accepted"
    );
    Ok(())
}

/// fsync writes the file's pages and metadata; sync writes everything. The host reads
/// the image afterwards.
pub fn fsync_and_sync() -> TestResult {
    let m = mnt()?;
    let f = m.open("dir/a.bin", false).map_err(|x| e("open", x))?;
    f.fsync().map_err(|x| e("fsync", x))?;
    m.sync().map_err(|x| e("sync", x))?;
    kprintln!(
        "    page cache: {} pages, {} hits, {} misses, {} evictions; data copies {} KiB, metadata copies {} KiB",
        counters::get(Counter::PagecachePages),
        counters::get(Counter::PagecacheHits),
        counters::get(Counter::PagecacheMisses),
        counters::get(Counter::PagecacheEvictions),
        counters::get(Counter::DataCopyBytes) >> 10,
        counters::get(Counter::MetadataCopyBytes) >> 10,
    );
    Ok(())
}

/// With 64 MiB of RAM, a 256 MiB file is written and read back: the page cache writes
/// back and evicts as it goes.
pub fn file_larger_than_memory() -> TestResult {
    let m = mnt()?;
    let ram = crate::memory::info().usable_bytes;
    ensure!(
        ram < BIG_LEN / 2,
        "run this with little memory (have {} MiB)",
        ram >> 20
    );
    let ev = counters::get(Counter::PagecacheEvictions);
    let t0 = time::now_ns();
    let f = m.open("big.bin", true).map_err(|x| e("create", x))?;
    write_pattern(&f, BIG_LEN, SEED_BIG, 256 * 1024)?;
    m.sync().map_err(|x| e("sync", x))?;
    let t1 = time::now_ns();
    check_pattern(&f, BIG_LEN, SEED_BIG, 256 * 1024)?;
    let t2 = time::now_ns();
    let evicted = counters::get(Counter::PagecacheEvictions) - ev;
    ensure!(evicted > (BIG_LEN / 4096) / 2, "only {evicted} evictions");
    kprintln!(
        "    256 MiB with {} MiB RAM: write+sync {} ms, read {} ms, {evicted} evictions",
        ram >> 20,
        (t1 - t0) / 1_000_000,
        (t2 - t1) / 1_000_000
    );
    Ok(())
}
