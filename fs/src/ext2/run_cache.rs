//! The mapped runs of a few files' blocks, as [`super::Ext2::map_runs`] found them:
//! direct I/O maps the same file's blocks again and again (random 4 KiB reads), and a
//! run found once spares the walk down the block tree (the inode, the pointer blocks,
//! the checks against the layout) the next times.
//!
//! Only mapped runs are kept, each checked against the layout when found. Anything that
//! changes a file's block tree (an allocation, a freeing, writing its inode) forgets that
//! file's runs first, so a run is never used after its blocks could have moved.

use alloc::vec::Vec;

/// A run of a file's blocks contiguous on disk: the first file block, the first disk
/// block, the blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub first: u64,
    pub disk: u64,
    pub len: u64,
}

impl Run {
    fn end(&self) -> u64 {
        self.first + self.len
    }
}

/// Blocks a miss maps around the block asked for (aligned, inside its pointer block, and
/// further if the transfer goes on): a contiguous file is learned 256 KiB (4 KiB blocks)
/// at a time, and a miss never walks much more than the transfer itself would.
pub(crate) const LEARN_BLOCKS: u64 = 64;

/// A learned window that holds more runs than this is not kept: the file is fragmented
/// there, and keeping it would cost more than walking the tree again.
pub(crate) const MAX_LEARNED_RUNS: usize = 8;

/// Files whose runs are kept at once (the oldest is replaced).
const FILES: usize = 4;

/// Runs kept per file: past it the file's runs start over (a file that fragmented is
/// mapped again as it is used).
const RUNS_PER_FILE: usize = 1024;

/// One file's runs, in file-block order, not overlapping.
struct FileRuns {
    ino: u32,
    runs: Vec<Run>,
}

/// The runs of up to [`FILES`] files.
#[derive(Default)]
pub(crate) struct RunCache {
    files: [Option<FileRuns>; FILES],
    /// The slot the next new file takes.
    next: usize,
}

impl RunCache {
    /// The run of file `ino` that holds file block `fb`.
    pub fn lookup(&self, ino: u32, fb: u64) -> Option<Run> {
        let runs = &self.file(ino)?.runs;
        let i = runs.partition_point(|r| r.end() <= fb);
        runs.get(i).copied().filter(|r| r.first <= fb)
    }

    /// Keep `run` of file `ino`, merged with a kept neighbour it continues (on the disk
    /// too). Where it overlaps runs kept already (both came from the same block tree,
    /// which nothing has changed since), only its part in the gap from where the run
    /// before it ends to where the next one starts is kept.
    pub fn remember(&mut self, ino: u32, run: Run) {
        if run.len == 0 || run.first.checked_add(run.len).is_none() {
            return;
        }
        let slot = match self
            .files
            .iter()
            .position(|f| f.as_ref().is_some_and(|f| f.ino == ino))
        {
            Some(i) => i,
            None => {
                // A slot a forgotten file left, or else the oldest.
                let i = self
                    .files
                    .iter()
                    .position(Option::is_none)
                    .unwrap_or_else(|| {
                        let i = self.next;
                        self.next = (i + 1) % FILES;
                        i
                    });
                self.files[i] = Some(FileRuns {
                    ino,
                    runs: Vec::new(),
                });
                i
            }
        };
        let Some(file) = self.files[slot].as_mut() else {
            return;
        };
        let mut run = run;
        let mut i = file.runs.partition_point(|r| r.end() <= run.first);
        if let Some(r) = file.runs.get(i)
            && r.first <= run.first
        {
            // Its front is kept already.
            let cut = r.end() - run.first;
            if cut >= run.len {
                return;
            }
            run = Run {
                first: run.first + cut,
                disk: run.disk + cut,
                len: run.len - cut,
            };
            i += 1;
        }
        if let Some(next) = file.runs.get(i)
            && next.first < run.end()
        {
            run.len = next.first - run.first;
            if run.len == 0 {
                return;
            }
        }
        let continues = |a: &Run, b: &Run| a.end() == b.first && a.disk + a.len == b.disk;
        if i > 0 && continues(&file.runs[i - 1], &run) {
            file.runs[i - 1].len += run.len;
            if i < file.runs.len() && continues(&file.runs[i - 1], &file.runs[i]) {
                file.runs[i - 1].len += file.runs[i].len;
                file.runs.remove(i);
            }
            return;
        }
        if let Some(next) = file.runs.get_mut(i)
            && continues(&run, next)
        {
            *next = Run {
                len: run.len + next.len,
                ..run
            };
            return;
        }
        if file.runs.len() >= RUNS_PER_FILE {
            file.runs.clear();
            file.runs.push(run);
            return;
        }
        // Room is made without failing (a kernel heap that cannot grow the list leaves
        // the run out; it is found again next time).
        if file.runs.try_reserve(1).is_ok() {
            file.runs.insert(i, run);
        }
    }

    /// Forget every run of file `ino`.
    pub fn forget(&mut self, ino: u32) {
        for f in &mut self.files {
            if f.as_ref().is_some_and(|f| f.ino == ino) {
                *f = None;
            }
        }
    }

    fn file(&self, ino: u32) -> Option<&FileRuns> {
        self.files.iter().flatten().find(|f| f.ino == ino)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(first: u64, disk: u64, len: u64) -> Run {
        Run { first, disk, len }
    }

    /// Runs kept, all files together.
    fn kept(c: &RunCache) -> usize {
        c.files.iter().flatten().map(|f| f.runs.len()).sum()
    }

    #[test]
    fn a_block_is_found_in_the_run_that_holds_it() {
        let mut c = RunCache::default();
        c.remember(7, run(100, 5000, 10));
        c.remember(7, run(12, 900, 50));
        c.remember(7, run(62, 2000, 1));
        assert_eq!(c.lookup(7, 12), Some(run(12, 900, 50)));
        assert_eq!(c.lookup(7, 61), Some(run(12, 900, 50)));
        assert_eq!(c.lookup(7, 62), Some(run(62, 2000, 1)));
        assert_eq!(c.lookup(7, 63), None, "between runs");
        assert_eq!(c.lookup(7, 109), Some(run(100, 5000, 10)));
        assert_eq!(c.lookup(7, 110), None, "past the last");
        assert_eq!(c.lookup(7, 11), None, "before the first");
        assert_eq!(c.lookup(8, 12), None, "another file");
    }

    #[test]
    fn an_overlapping_run_keeps_its_part_in_the_gap() {
        let mut c = RunCache::default();
        c.remember(1, run(10, 100, 10));
        c.remember(1, run(40, 900, 10));
        // Overlaps the front: blocks 20..30 are new.
        c.remember(1, run(15, 105, 15));
        assert_eq!(c.lookup(1, 25), Some(run(10, 100, 20)), "merged on");
        // Overlaps the back: blocks 32..40 are new.
        c.remember(1, run(32, 600, 12));
        assert_eq!(c.lookup(1, 35), Some(run(32, 600, 8)));
        assert_eq!(c.lookup(1, 40), Some(run(40, 900, 10)));
        // Wholly kept already, empty, or overflowing: nothing changes.
        c.remember(1, run(12, 102, 4));
        c.remember(1, run(30, 0, 0));
        c.remember(1, run(u64::MAX - 1, 5, 4));
        assert_eq!(c.lookup(1, 30), None);
        assert_eq!(c.lookup(1, 9), None);
        assert_eq!(kept(&c), 3);
    }

    #[test]
    fn a_forgotten_files_slot_is_taken_first() {
        let mut c = RunCache::default();
        for ino in 1..=FILES as u32 {
            c.remember(ino, run(0, ino as u64, 1));
        }
        c.forget(3);
        c.remember(9, run(0, 90, 1));
        assert!(
            (1..=FILES as u32)
                .filter(|&i| i != 3)
                .all(|i| c.lookup(i, 0).is_some())
        );
        assert_eq!(c.lookup(9, 0), Some(run(0, 90, 1)));
    }

    #[test]
    fn runs_that_continue_each_other_merge() {
        let mut c = RunCache::default();
        c.remember(3, run(0, 100, 4));
        c.remember(3, run(8, 108, 4));
        c.remember(3, run(4, 104, 4)); // joins both
        assert_eq!(c.lookup(3, 11), Some(run(0, 100, 12)));
        c.remember(3, run(20, 500, 2));
        c.remember(3, run(18, 498, 2)); // joins the next one
        assert_eq!(c.lookup(3, 18), Some(run(18, 498, 4)));
        c.remember(3, run(12, 300, 2)); // next in the file, not on the disk
        assert_eq!(c.lookup(3, 12), Some(run(12, 300, 2)));
        assert_eq!(c.lookup(3, 0), Some(run(0, 100, 12)));
        assert_eq!(kept(&c), 3);
    }

    #[test]
    fn forgetting_a_file_keeps_the_others() {
        let mut c = RunCache::default();
        c.remember(1, run(0, 100, 4));
        c.remember(2, run(0, 200, 4));
        c.forget(1);
        assert_eq!(c.lookup(1, 0), None);
        assert_eq!(c.lookup(2, 3), Some(run(0, 200, 4)));
        c.remember(1, run(0, 300, 4));
        assert_eq!(c.lookup(1, 0), Some(run(0, 300, 4)));
    }

    #[test]
    fn the_oldest_file_makes_room_and_a_full_file_starts_over() {
        let mut c = RunCache::default();
        for ino in 1..=FILES as u32 + 1 {
            c.remember(ino, run(0, ino as u64 * 10, 1));
        }
        assert_eq!(c.lookup(1, 0), None, "the oldest went");
        assert!((2..=FILES as u32 + 1).all(|ino| c.lookup(ino, 0).is_some()));
        for k in 0..RUNS_PER_FILE as u64 - 1 {
            c.remember(2, run(10 + 2 * k, 5000 + 3 * k, 1));
        }
        assert_eq!(c.lookup(2, 10), Some(run(10, 5000, 1)));
        c.remember(2, run(1_000_000, 1, 1));
        assert_eq!(c.lookup(2, 10), None, "started over");
        assert_eq!(c.lookup(2, 1_000_000), Some(run(1_000_000, 1, 1)));
    }
}
