//! A lock-order checker (after Linux's lockdep, much reduced): every lock built with
//! [`crate::sync::Mutex`] or [`crate::sync::SpinMutex`] belongs to a *class*, the place in
//! the source that constructed it (all per-file page-cache state locks are one class).
//! Whenever a task takes a lock of class B while it holds one of class A, the pair A → B is
//! recorded; if B → … → A was recorded before, some two tasks can deadlock, and the
//! checker stops the kernel with both acquisition stacks, before any deadlock happens.
//!
//! Not checked: the order of two locks of the same class (the caller orders those, e.g.
//! by address), and locks that are not built on the two types above (interrupt-masking
//! spin locks of the frame allocator, the scheduler, the console).
//!
//! It runs in debug builds (which the tests boot) unless switched off at run time
//! ([`set_enabled`]; the benchmarks do, the kernel command line says `lockcheck=0`). The
//! kernel installs who the running task is and how to take a backtrace ([`set_hooks`]).
//! At poweroff it prints how many pairs it recorded; `lockcheck=dump` lists them.
//!
//! ## The kernel's lock order
//!
//! Outermost first: a task holding a lock of one row may take locks of the rows below it,
//! never of a row above. This is what the checker recorded over the test suites (the
//! `syscalls` conformance run with `lockcheck=dump`, which covers files, pipes, `mmap`,
//! fork and exec); it fails the run on any acquisition against it.
//!
//! | # | lock (where it is made) | serialises | taken inside it |
//! |---|---|---|---|
//! | 1 | process file table (`proc::Process::files`) | fd allocation, close, dup | 2–8 |
//! | 2 | open description's position (`vfs::file::File::pos`) | read/write/lseek on one description; sendfile/copy_file_range hold two, in address order | 3, 4, 6, 7, 8 |
//! | 3 | ext2 inode write lock (`vfs::ext2`, `write_lock`) | writes and truncates of one file; a copy between files holds both (address order) | 4, 6, 8 |
//! | 4 | process memory map (`proc::Process::mem`) | page faults, mmap/munmap/mprotect/brk, user copies | 5, 8 |
//! | 5 | shared anonymous object (`proc::vm::SharedMemory::pages`) | its page index | — |
//! | 6 | ext2 file system (`vfs::ext2`, `fs`) | block and inode allocation, metadata, the block map | — |
//! | 7 | pipe state; ramfs directory → ramfs node | the pipe's ring; a ramfs directory's entries | 4 (pipe: user copies) |
//! | 8 | page cache: `files`, `lru`, then a file's `state` (spin locks) | the index of cached files; the eviction queue; one file's page index, dirty and writeback bits | — |
//!
//! Sharing a frame between files: only a copy between files (sendfile, `copy_file_range`)
//! adds a sharer, and it holds both files' write locks (3) while it does; every change to a
//! page's bytes (a write, a truncate, a writable mapping's fault) decides whether to break
//! the share under the changing file's `state` (8), holding that file's write lock or, for a
//! fault, the memory map (4) while the source's mapped frames are never shared (a mapped
//! source page is refused as an alias source). So no share can be added between that
//! decision and the change: the write locks stand in for a per-frame lock.
//!
//! Two orders follow from it that the memory model must keep: a page fault holds the
//! memory map (4) and then takes a file's page-cache `state` (8), and a write holds the
//! inode write lock (3) while its user copy may fault (4). Anything that must reach a
//! process's mappings from the page cache (unmapping a frame after a copy-on-write break)
//! therefore cannot wait for a memory-map lock while holding `state`.

use core::panic::Location;
use core::sync::atomic::{AtomicBool, Ordering};

/// Lock classes the checker tells apart; further classes go unchecked.
pub const MAX_CLASSES: usize = 256;
/// Tasks that may hold checked locks at the same time.
const CONTEXTS: usize = 64;
/// Locks one task may hold at once and still be checked.
const MAX_HELD: usize = 16;
/// Recorded pairs whose first acquisition stack is kept.
const STACKED_EDGES: usize = 1024;
/// Frames of a kept stack.
pub const STACK_DEPTH: usize = 10;

const WORDS: usize = MAX_CLASSES / 64;

/// The kernel's side: the running task's id (any number, stable while it runs; 0 for the
/// boot context) and a backtrace of the caller into a buffer (returns the frames filled).
#[derive(Clone, Copy)]
pub struct Hooks {
    /// The running task's id.
    pub context: fn() -> u64,
    /// Return addresses of the caller's stack, innermost first.
    pub backtrace: fn(&mut [u64]) -> usize,
}

#[derive(Clone, Copy)]
struct Held {
    context: u64,
    len: u8,
    /// Held classes plus one (0 = the slot is unused), oldest first.
    classes: [u16; MAX_HELD],
}

#[derive(Clone, Copy)]
struct EdgeStack {
    from: u16,
    to: u16,
    frames: [u64; STACK_DEPTH],
}

/// The checker's state: classes, the recorded order graph, what each task holds.
pub struct LockOrder {
    classes: [Option<&'static Location<'static>>; MAX_CLASSES],
    nclasses: usize,
    /// after[a] has bit b: a lock of class b was taken while one of class a was held.
    after: [[u64; WORDS]; MAX_CLASSES],
    held: [Held; CONTEXTS],
    stacks: [EdgeStack; STACKED_EDGES],
    nstacks: usize,
}

/// A cycle found: the pair that closed it, the path that was already recorded, and the
/// stacks.
#[derive(Debug, Clone)]
pub struct Violation {
    /// Where the lock being taken was made.
    pub taking: &'static Location<'static>,
    /// Where the held lock was made.
    pub holding: &'static Location<'static>,
    /// The recorded chain from `taking` back to `holding` (classes' construction sites).
    pub chain: alloc::vec::Vec<&'static Location<'static>>,
    /// The stack of this acquisition.
    pub now: alloc::vec::Vec<u64>,
    /// The stack that first recorded the chain's first pair (`taking` → next).
    pub before: alloc::vec::Vec<u64>,
}

impl core::fmt::Display for Violation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(
            f,
            "lock order violated: taking the lock made at {} while holding the one made at {}",
            self.taking, self.holding
        )?;
        write!(f, "  already recorded in the other order:")?;
        for (i, l) in self.chain.iter().enumerate() {
            write!(f, "{}{l}", if i == 0 { " " } else { " -> " })?;
        }
        writeln!(f)?;
        write!(f, "  this acquisition's stack:")?;
        for a in &self.now {
            write!(f, " {a:#x}")?;
        }
        writeln!(f)?;
        write!(f, "  stack that recorded the other order:")?;
        for a in &self.before {
            write!(f, " {a:#x}")?;
        }
        Ok(())
    }
}

impl Default for LockOrder {
    fn default() -> Self {
        Self::new()
    }
}

impl LockOrder {
    /// No classes, no pairs, nothing held.
    pub const fn new() -> LockOrder {
        LockOrder {
            classes: [None; MAX_CLASSES],
            nclasses: 0,
            after: [[0; WORDS]; MAX_CLASSES],
            held: [Held {
                context: 0,
                len: 0,
                classes: [0; MAX_HELD],
            }; CONTEXTS],
            stacks: [EdgeStack {
                from: 0,
                to: 0,
                frames: [0; STACK_DEPTH],
            }; STACKED_EDGES],
            nstacks: 0,
        }
    }

    /// The class of locks made at `site` (registered on first sight), if there is room.
    fn class(&mut self, site: &'static Location<'static>) -> Option<u16> {
        let same = |l: &&'static Location<'static>| {
            core::ptr::eq(*l, site)
                || (l.line() == site.line()
                    && l.column() == site.column()
                    && l.file() == site.file())
        };
        if let Some(i) = self.classes[..self.nclasses]
            .iter()
            .position(|c| c.as_ref().is_some_and(same))
        {
            return Some(i as u16);
        }
        if self.nclasses == MAX_CLASSES {
            return None;
        }
        self.classes[self.nclasses] = Some(site);
        self.nclasses += 1;
        Some((self.nclasses - 1) as u16)
    }

    fn slot(&mut self, context: u64, create: bool) -> Option<usize> {
        let start = (context % CONTEXTS as u64) as usize;
        let mut free = None;
        for k in 0..CONTEXTS {
            let i = (start + k) % CONTEXTS;
            let h = &self.held[i];
            if h.len > 0 && h.context == context {
                return Some(i);
            }
            if h.len == 0 && free.is_none() {
                free = Some(i);
            }
        }
        if create {
            let i = free?;
            self.held[i].context = context;
            Some(i)
        } else {
            None
        }
    }

    fn has_edge(&self, a: u16, b: u16) -> bool {
        self.after[a as usize][b as usize / 64] & (1 << (b % 64)) != 0
    }

    /// A recorded path from `from` to `to`, as classes (breadth first, so the shortest).
    fn path(&self, from: u16, to: u16) -> Option<alloc::vec::Vec<u16>> {
        let mut prev = [u16::MAX; MAX_CLASSES];
        let mut queue = [0u16; MAX_CLASSES];
        let (mut head, mut tail) = (0, 0);
        queue[tail] = from;
        tail += 1;
        prev[from as usize] = from;
        while head < tail {
            let c = queue[head];
            head += 1;
            if c == to {
                let mut out = alloc::vec![to];
                let mut at = to;
                while at != from {
                    at = prev[at as usize];
                    out.push(at);
                }
                out.reverse();
                return Some(out);
            }
            for (w, &word) in self.after[c as usize].iter().enumerate() {
                let mut bits = word;
                while bits != 0 {
                    let n = (w * 64 + bits.trailing_zeros() as usize) as u16;
                    bits &= bits - 1;
                    if prev[n as usize] == u16::MAX {
                        prev[n as usize] = c;
                        queue[tail] = n;
                        tail += 1;
                    }
                }
            }
        }
        None
    }

    fn stack_of(&self, from: u16, to: u16) -> alloc::vec::Vec<u64> {
        self.stacks[..self.nstacks]
            .iter()
            .find(|e| e.from == from && e.to == to)
            .map(|e| e.frames.iter().copied().take_while(|&a| a != 0).collect())
            .unwrap_or_default()
    }

    /// `context` is about to take (or, with `trylock`, took) a lock made at `site`. Records
    /// the order against every lock it holds; a recorded opposite order is a violation.
    /// `backtrace` is only called when a new pair is recorded or a violation found.
    pub fn acquire(
        &mut self,
        context: u64,
        site: &'static Location<'static>,
        trylock: bool,
        backtrace: &mut dyn FnMut(&mut [u64]) -> usize,
    ) -> Result<(), Violation> {
        let Some(class) = self.class(site) else {
            return Ok(());
        };
        let Some(slot) = self.slot(context, true) else {
            return Ok(());
        };
        let held = self.held[slot];
        // A try-lock cannot wait, so it cannot close a deadlock: no pairs from it.
        if !trylock {
            for &h in &held.classes[..held.len.min(MAX_HELD as u8) as usize] {
                let h = h - 1;
                if h == class || self.has_edge(h, class) {
                    continue;
                }
                if let Some(chain) = self.path(class, h) {
                    let mut now = [0u64; STACK_DEPTH];
                    let n = backtrace(&mut now);
                    let site_of = |c: u16| self.classes[c as usize].expect("registered class");
                    return Err(Violation {
                        taking: site,
                        holding: site_of(h),
                        before: self.stack_of(chain[0], chain[1]),
                        chain: chain.iter().map(|&c| site_of(c)).collect(),
                        now: now[..n].to_vec(),
                    });
                }
                self.after[h as usize][class as usize / 64] |= 1 << (class % 64);
                if self.nstacks < STACKED_EDGES {
                    let mut frames = [0u64; STACK_DEPTH];
                    backtrace(&mut frames);
                    self.stacks[self.nstacks] = EdgeStack {
                        from: h,
                        to: class,
                        frames,
                    };
                    self.nstacks += 1;
                }
            }
        }
        let h = &mut self.held[slot];
        if (h.len as usize) < MAX_HELD {
            h.classes[h.len as usize] = class + 1;
        }
        h.len = h.len.saturating_add(1);
        Ok(())
    }

    /// `context` released a lock made at `site` (in any order).
    pub fn release(&mut self, context: u64, site: &'static Location<'static>) {
        let Some(class) = self.class(site) else {
            return;
        };
        let Some(slot) = self.slot(context, false) else {
            return;
        };
        let h = &mut self.held[slot];
        let n = (h.len as usize).min(MAX_HELD);
        if (h.len as usize) > MAX_HELD {
            // The newest locks were not recorded; they are released first in practice.
            h.len -= 1;
            return;
        }
        if let Some(i) = h.classes[..n].iter().rposition(|&c| c == class + 1) {
            h.classes.copy_within(i + 1..n, i);
            h.classes[n - 1] = 0;
            h.len -= 1;
        }
    }

    /// Locks `context` holds now (for tests).
    pub fn held_count(&mut self, context: u64) -> usize {
        self.slot(context, false)
            .map_or(0, |s| self.held[s].len as usize)
    }

    /// Every recorded pair (held, then taken) as the two classes' construction sites.
    pub fn each_pair(
        &self,
        mut f: impl FnMut(&'static Location<'static>, &'static Location<'static>),
    ) {
        for a in 0..self.nclasses {
            for b in 0..self.nclasses {
                if self.has_edge(a as u16, b as u16)
                    && let (Some(x), Some(y)) = (self.classes[a], self.classes[b])
                {
                    f(x, y);
                }
            }
        }
    }

    /// Number of recorded ordered pairs.
    pub fn pairs(&self) -> usize {
        self.after[..self.nclasses]
            .iter()
            .map(|row| row.iter().map(|w| w.count_ones() as usize).sum::<usize>())
            .sum()
    }
}

static ENABLED: AtomicBool = AtomicBool::new(cfg!(debug_assertions));
static HOOKS: spin::Once<Hooks> = spin::Once::new();
static STATE: spin::Mutex<LockOrder> = spin::Mutex::new(LockOrder::new());

/// Install the kernel's hooks (only the first call takes effect). Without them nothing is
/// checked (host tests of other modules).
pub fn set_hooks(hooks: Hooks) {
    HOOKS.call_once(|| hooks);
}

/// Switch the checker on or off (on by default in debug builds).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether locks are being checked.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed) && HOOKS.get().is_some()
}

/// Ordered pairs recorded so far (shown in `/proc/lockorder`-style reports and tests).
pub fn recorded_pairs() -> usize {
    crate::sync::without_interrupts(|| STATE.lock().pairs())
}

/// Call `f` for every recorded pair (held, then taken), as construction sites.
pub fn each_recorded_pair(f: impl FnMut(&'static Location<'static>, &'static Location<'static>)) {
    crate::sync::without_interrupts(|| STATE.lock().each_pair(f))
}

/// A lock made at `site` is about to be taken (or was taken by a try-lock). Panics on a
/// violation: the report names both construction sites and carries both stacks.
#[inline]
pub(crate) fn on_acquire(site: &'static Location<'static>, trylock: bool) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let Some(h) = HOOKS.get() else { return };
    let context = (h.context)();
    let bt = h.backtrace;
    let r = crate::sync::without_interrupts(|| {
        STATE
            .lock()
            .acquire(context, site, trylock, &mut |buf| bt(buf))
    });
    if let Err(v) = r {
        ENABLED.store(false, Ordering::Relaxed);
        panic!("{v}");
    }
}

/// A lock made at `site` was released.
#[inline]
pub(crate) fn on_release(site: &'static Location<'static>) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let Some(h) = HOOKS.get() else { return };
    let context = (h.context)();
    crate::sync::without_interrupts(|| STATE.lock().release(context, site));
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;

    #[track_caller]
    fn site() -> &'static Location<'static> {
        Location::caller()
    }

    fn no_bt(_: &mut [u64]) -> usize {
        0
    }

    fn checker() -> Box<LockOrder> {
        Box::new(LockOrder::new())
    }

    #[test]
    fn opposite_order_is_reported_with_both_sites() {
        let (a, b) = (site(), site());
        let mut lo = checker();
        lo.acquire(1, a, false, &mut no_bt).unwrap();
        lo.acquire(1, b, false, &mut |f| {
            f[0] = 0xaaaa;
            1
        })
        .unwrap();
        lo.release(1, b);
        lo.release(1, a);
        assert_eq!(lo.held_count(1), 0);
        // Another task, the other way round.
        lo.acquire(2, b, false, &mut no_bt).unwrap();
        let v = lo
            .acquire(2, a, false, &mut |f| {
                f[0] = 0xbbbb;
                1
            })
            .unwrap_err();
        assert!(core::ptr::eq(v.taking, a) && core::ptr::eq(v.holding, b));
        assert_eq!(v.now, [0xbbbb]);
        assert_eq!(v.before, [0xaaaa]);
        let text = alloc::format!("{v}");
        assert!(text.contains("lock order violated"), "{text}");
    }

    #[test]
    fn longer_cycles_are_found() {
        let (a, b, c) = (site(), site(), site());
        let mut lo = checker();
        for (x, y) in [(a, b), (b, c)] {
            lo.acquire(7, x, false, &mut no_bt).unwrap();
            lo.acquire(7, y, false, &mut no_bt).unwrap();
            lo.release(7, y);
            lo.release(7, x);
        }
        assert_eq!(lo.pairs(), 2);
        let mut seen = alloc::vec::Vec::new();
        lo.each_pair(|x, y| seen.push((x.line(), y.line())));
        assert_eq!(seen, [(a.line(), b.line()), (b.line(), c.line())]);
        lo.acquire(8, c, false, &mut no_bt).unwrap();
        let v = lo.acquire(8, a, false, &mut no_bt).unwrap_err();
        assert_eq!(v.chain.len(), 3, "a -> b -> c");
    }

    #[test]
    fn consistent_order_same_class_and_trylocks_pass() {
        let (a, b) = (site(), site());
        let mut lo = checker();
        for ctx in 0..100 {
            lo.acquire(ctx, a, false, &mut no_bt).unwrap();
            lo.acquire(ctx, a, false, &mut no_bt).unwrap(); // same class: not ordered
            lo.acquire(ctx, b, false, &mut no_bt).unwrap();
            // Out of order release.
            lo.release(ctx, a);
            lo.release(ctx, b);
            lo.release(ctx, a);
            assert_eq!(lo.held_count(ctx), 0);
        }
        // A try-lock in the other order records nothing and reports nothing.
        lo.acquire(5, b, false, &mut no_bt).unwrap();
        lo.acquire(5, a, true, &mut no_bt).unwrap();
        assert_eq!(lo.held_count(5), 2);
        assert_eq!(lo.pairs(), 1);
    }

    #[test]
    fn nested_holds_beyond_the_limit_stay_balanced() {
        // One site: twenty locks of one class held at once (more than a task's record).
        let sites: alloc::vec::Vec<_> = (0..20).map(|_| site()).collect();
        let mut lo = checker();
        for s in &sites {
            lo.acquire(3, s, false, &mut no_bt).unwrap();
        }
        for s in sites.iter().rev() {
            lo.release(3, s);
        }
        assert_eq!(lo.held_count(3), 0);
    }
}
