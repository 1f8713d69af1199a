//! `sysfuzz [-n CALLS] [-s SEED] [-d DIR] [-x NR[,NR...]] [-k I[-J][,...]] [-u] [-v]`:
//! a system call fuzzer for the AliasOS kernel.
//!
//! **NEVER RUN THIS ON A LINUX HOST.** It makes random system calls with random
//! arguments as whoever runs it: on a real machine, as root, that can change
//! the clock, the host name, scheduling and resource settings, file modes and
//! extended attributes, and create or truncate files anywhere a random path
//! happens to lead. It is meant for AliasOS only, where the worst outcome is a
//! kernel bug found. It refuses to start when it sees a Linux kernel
//! (`uname` says Linux and `/proc/sys/kernel` exists); the only way past that
//! is `--in-a-throwaway-linux-vm`, for checking the fuzzer itself against
//! Linux inside a disposable virtual machine.
//!
//! It makes CALLS (default 100000) system calls, deterministic from SEED
//! (default 1) and the set of numbers the kernel implements: numbers 0..=335
//! mostly, some of 336..=511, and a few huge or odd ones (`0xffffffff`,
//! `1 << 63`, x32-flagged numbers, ...). First it probes every number 0..=511
//! once with all-zero (made safe) arguments; afterwards a number that answered
//! ENOSYS gets only one pick in eight, so the calls go mostly to what the
//! kernel implements (`-u`: no such preference). Arguments come
//! from pools of interesting values: 0, 1, -1, small and boundary integers,
//! file descriptors it holds (its pool, see below) and bad ones, page-aligned
//! and unaligned addresses inside its own buffers, a buffer that runs into a
//! guard page, a read-only page, a hole in the address space, NULL, kernel-half
//! addresses (`0xffff800000000000`, ...), non-canonical addresses, huge lengths
//! and offsets, open flags, modes, and paths (names in its scratch directory,
//! `/`, `.`, a 300-byte name, a 4 KiB path, a string running into a guard
//! page). For about 140 common calls a signature picks the right kind of value
//! for each argument three times out of four.
//!
//! What it avoids, so that it tests the kernel rather than killing or wedging
//! itself (or the shell that runs it, PID 1):
//! * never made: exit, exit_group, execve, execveat, rt_sigreturn, pause,
//!   rt_sigsuspend, kill, tkill, tgkill, rt_sigqueueinfo, rt_tgsigqueueinfo,
//!   pidfd_send_signal, ptrace, process_vm_writev, alarm, setitimer,
//!   timer_settime, setrlimit, seccomp, rseq, uretprobe (335), reboot,
//!   kexec_load, kexec_file_load, init/finit/delete_module, mount, umount2,
//!   move_mount, mount_setattr, pivot_root, chroot, swapon, swapoff, vhangup,
//!   uselib, semop, perf_event_open, io_uring_*, clone3, close_range,
//!   landlock_restrict_self, futex_waitv, futex_wait, and the calls that
//!   change its identity (setuid, setgid, setreuid, setregid, setgroups,
//!   setresuid, setresgid, setfsuid, setfsgid, capset: without root it could
//!   not clean up);
//! * fork, vfork and clone are made once in a while only (clone with fork or
//!   vfork flags): the child exits at once (in the same asm block, before
//!   touching memory) and the parent reaps it;
//! * everything that can block gets a tiny timeout: poll and epoll_wait get
//!   0..10 ms; select, pselect6, ppoll, epoll_pwait2, nanosleep,
//!   clock_nanosleep, futex, rt_sigtimedwait, semtimedop, mq_timed*,
//!   io_getevents, io_pgetevents and recvmmsg get a pointer to a small (or
//!   invalid) timespec on a page of their own, never NULL; msgsnd/msgrcv get
//!   IPC_NOWAIT; syslog's blocking READ becomes READ_ALL;
//! * file descriptors: fds 0, 1 and 2 are `/dev/null` (so nothing reads the
//!   console or writes to the caller's output), the real stdout and stderr
//!   live at fds 900 and 901 and no argument ever names fds 900..909; close,
//!   dup2 and dup3 only ever close or replace fds above the pool; every new fd
//!   a call returns (and the two of a pipe or socketpair) is closed right away,
//!   so no pipe or socket ever lingers to block a read;
//! * memory: munmap, mprotect, pkey_mprotect, madvise, mremap,
//!   remap_file_pages, mseal, shmdt and `mmap(MAP_FIXED)` only touch its
//!   scratch region (or ranges that are invalid outright, such as ones that
//!   wrap or leave user space); brk stays at or above its start; shmat lets
//!   the kernel choose; mappings a call creates elsewhere are unmapped again;
//! * signals: rt_sigaction only queries, F_SETFL loses O_ASYNC, F_SETLEASE and
//!   F_NOTIFY become F_GETFD, prctl never sets seccomp, the mm fields or
//!   syscall user dispatch, arch_prctl never enables shadow stacks;
//! * mknod never makes FIFOs or device nodes (a FIFO would block open);
//! * sendfile, copy_file_range, splice and tee move at most 4 MiB; mmap of
//!   more than 16 MiB loses MAP_POPULATE and MAP_LOCKED, mlockall loses
//!   MCL_FUTURE (filling memory that way ends in Linux's OOM killer);
//! * chdir/fchdir are undone after each call; prlimit64 only queries;
//! * clock_nanosleep never sleeps on a CPU-time clock (which would not advance);
//! * pkey_free never frees key 0 (Linux lets it, and the next execute-only
//!   mprotect would then make all ordinary memory inaccessible).
//!
//! Every 1000 calls it resets: removes everything in its scratch directory
//! (`DIR/sysfuzz.tmp`, DIR defaults to the current directory), recreates its
//! files, reopens the fd pool, remaps the scratch region, refills its buffers
//! and checks that its read-only page is unchanged (a kernel that writes into
//! read-only user memory fails the run). At the end it removes the scratch
//! directory.
//!
//! Output (stdout): a start line, a progress line every 10000 calls with
//! counts of the commonest results, and finally
//! `sysfuzz: N calls, seed S, OK` (exit status 0). `-v` writes every call and
//! its result to stderr before/after making it (to find the call that brings a
//! kernel down); `-x` excludes system call numbers; `-k` makes only the calls
//! with the given indices (as `-v` numbers them: `-k 3000-3999,4100`), the others
//! being generated but not made, so the same seed gives the same calls: that
//! bisects a failure down to the few calls that cause it.
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

extern crate alloc;

use core::arch::asm;
use core::ffi::CStr;
use core::fmt::Write;
use sys::io::StackWriter;
use sys::raw::{syscall1, syscall2, syscall3, syscall4, syscall6};
use tools::rng::Rng;

const PAGE: u64 = 4096;

/// fds the fuzzer keeps for itself; no generated argument names them.
const PRIV_LO: u64 = 900;
const PRIV_HI: u64 = 910;
const LOG_FD: i32 = 900;
const ERR_FD: i32 = 901;
const SCRATCH_FD: i32 = 902;
const PARENT_FD: i32 = 903;

const SCRATCH_NAME: &CStr = c"sysfuzz.tmp";

/// The fd pool: fds 0..POOL_END, reopened at every reset. Relative paths are
/// in the scratch directory.
const POOL: [(&CStr, usize); 11] = [
    (c"/dev/null", sys::O_RDONLY),
    (c"/dev/null", sys::O_WRONLY),
    (c"/dev/null", sys::O_WRONLY),
    (c"f", sys::O_RDWR | sys::O_CREAT),
    (c"g", sys::O_RDONLY),
    (c".", sys::O_RDONLY | sys::O_DIRECTORY),
    (c"d", sys::O_RDONLY | sys::O_DIRECTORY),
    (c"/dev/zero", sys::O_RDONLY),
    (c"f", sys::O_WRONLY | sys::O_APPEND),
    (c"/proc/meminfo", sys::O_RDONLY),
    (c"/dev/urandom", sys::O_RDONLY),
];
const POOL_END: i32 = POOL.len() as i32;

/// Buffer region A: `A_PAGES` read/write pages followed by two PROT_NONE pages.
const A_PAGES: u64 = 16;
const A_LEN: u64 = A_PAGES * PAGE;
/// Scratch region S: the only place the memory-management calls may change.
const S_PAGES: u64 = 64;
const S_LEN: u64 = S_PAGES * PAGE;
/// Unmapped space kept on both sides of S.
const S_GAP: u64 = 16 * PAGE;

/// Offsets in A (and, for the names, in the read-only page R).
const IOV_OFF: u64 = 0x800;
const POLL_OFF: u64 = 0x900;
const NAMES_OFF: u64 = 0xa00;
const LONG_NAME_OFF: u64 = 0x1000;
const LONG_PATH_OFF: u64 = 0x2000;
const DATA_OFF: u64 = 0x4000;
/// Short paths (relative ones are in the scratch directory), 32 bytes apart.
#[rustfmt::skip]
const NAMES: [&[u8]; 14] = [
    b"f", b"g", b"d", b"d/h", b"x", b"y", b"d/z", b".", b"/", b"", b"nonexistent/x", b"f/x",
    b"d/", b"h",
];

#[rustfmt::skip]
const KERNEL_ADDRS: [u64; 6] = [
    0xffff_8000_0000_0000, 0xffff_ffff_8000_0000, 0xffff_ffff_ff60_0000, 0xffff_ffff_ffff_f000,
    0xffff_ffff_ffff_fff8, 0xffff_8880_0000_0000,
];
#[rustfmt::skip]
const NONCANONICAL: [u64; 5] = [
    0x0000_8000_0000_0000, 0x8000_0000_0000_0000, 0x1234_5678_9abc_def0, 0x0001_0000_0000_0000,
    0x7fff_ffff_ffff_ffff,
];
#[rustfmt::skip]
const INTS: [u64; 38] = [
    0, 1, 2, 3, 4, 5, 7, 8, 16, 31, 32, 63, 64, 127, 128, 255, 256, 511, 512, 1023, 1024, 4095,
    4096, 4097, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff,
    0x1_0000_0000, i64::MAX as u64, 1 << 63, u64::MAX, u64::MAX - 1, u64::MAX - 4094,
    (-100i64) as u64,
];
#[rustfmt::skip]
const LENS: [u64; 27] = [
    0, 1, 2, 7, 8, 15, 16, 64, 511, 512, 4095, 4096, 4097, 8192, 65535, 65536, A_LEN, A_LEN + 1,
    1 << 20, (1 << 31) - 1, 1 << 31, 1 << 32, (1 << 32) + 1, i64::MAX as u64, u64::MAX,
    u64::MAX - 4095, 0x7fff_f000,
];
#[rustfmt::skip]
const OFFSETS: [u64; 16] = [
    0, 1, 511, 512, 4095, 4096, 1 << 20, 1 << 31, 1 << 32, 1 << 40, 1 << 62, i64::MAX as u64,
    i64::MAX as u64 - 4095, u64::MAX, (-4096i64) as u64, 1 << 63,
];
const OPEN_BITS: [u64; 18] = [
    0o1,        // O_WRONLY
    0o2,        // O_RDWR
    0o100,      // O_CREAT
    0o200,      // O_EXCL
    0o400,      // O_NOCTTY
    0o1000,     // O_TRUNC
    0o2000,     // O_APPEND
    0o4000,     // O_NONBLOCK
    0o10000,    // O_DSYNC
    0o40000,    // O_DIRECT
    0o100000,   // O_LARGEFILE
    0o200000,   // O_DIRECTORY
    0o400000,   // O_NOFOLLOW
    0o1000000,  // O_NOATIME
    0o2000000,  // O_CLOEXEC
    0o4010000,  // O_SYNC
    0o10000000, // O_PATH
    0o20200000, // O_TMPFILE
];
#[rustfmt::skip]
const MODES: [u64; 9] = [
    0, 0o644, 0o755, 0o777, 0o7777, 0o4755, 0o100644, 0o40755, 0xffff_ffff,
];
/// Bad fds (none of them names a pool or private fd in its low 32 bits).
#[rustfmt::skip]
const BAD_FDS: [u64; 11] = [
    u64::MAX, 0xffff_ffff, (-100i64) as u64, 0xffff_ff9c, POOL_END as u64, POOL_END as u64 + 1,
    63, 1023, 1024, 1 << 20, i32::MAX as u64,
];
/// Numbers past 511: all must fail with ENOSYS (their low 32 bits, which is all
/// Linux looks at, never name a call from the `NEVER` list).
#[rustfmt::skip]
const HUGE_NRS: [u64; 15] = [
    512, 600, 1000, 1024, 4096, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0x4000_0000 | 39,
    0x4000_0000 | 63, 0x4000_0000 | 1000, (1 << 32) | 39, u64::MAX, (1 << 32) | 0xffff,
    0xdead_beef_0000_ffff,
];

/// Calls never made (see the module comment).
const NEVER: &[u32] = &[
    15,  // rt_sigreturn
    34,  // pause
    37,  // alarm
    38,  // setitimer
    59,  // execve
    60,  // exit
    62,  // kill
    65,  // semop (blocks, no timeout)
    101, // ptrace
    105, // setuid: losing root would keep it from cleaning up (so the rest too)
    106, // setgid
    113, // setreuid
    114, // setregid
    116, // setgroups
    117, // setresuid
    119, // setresgid
    122, // setfsuid
    123, // setfsgid
    126, // capset
    129, // rt_sigqueueinfo
    130, // rt_sigsuspend
    134, // uselib (maps a file at an address it names)
    153, // vhangup
    155, // pivot_root
    160, // setrlimit
    161, // chroot
    165, // mount
    166, // umount2
    167, // swapon
    168, // swapoff
    169, // reboot
    175, // init_module
    176, // delete_module
    200, // tkill
    223, // timer_settime
    231, // exit_group
    234, // tgkill
    246, // kexec_load
    297, // rt_tgsigqueueinfo
    298, // perf_event_open (can send SIGTRAP)
    311, // process_vm_writev
    313, // finit_module
    317, // seccomp
    320, // kexec_file_load
    322, // execveat
    334, // rseq (a bad rseq area is SIGSEGV)
    335, // uretprobe (SIGILL outside a uretprobe trampoline)
    424, // pidfd_send_signal
    425, // io_uring_setup
    426, // io_uring_enter
    427, // io_uring_register
    429, // move_mount
    435, // clone3
    436, // close_range
    442, // mount_setattr
    446, // landlock_restrict_self
    449, // futex_waitv
    455, // futex_wait
];
/// Calls that store two new fds in memory.
const PIPE_LIKE: [u32; 3] = [22, 53, 293];

/// Argument kinds for the signatures: f fd, b buffer, l length, p path,
/// i integer, o offset, F open flags, m mode, a address for memory calls,
/// t timeout pointer, v iovec pointer, anything else: any kind.
fn signature(nr: u32) -> &'static [u8] {
    match nr {
        0 | 1 => b"fbl",
        2 => b"pFm",
        3 => b"f",
        4 | 6 => b"pb",
        5 => b"fb",
        7 => b"bii",
        8 => b"foi",
        9 => b"alFFfo",
        10 => b"ali",
        11 => b"al",
        12 => b"a",
        13 | 14 => b"ibbi",
        16 => b"fib",
        17 | 18 => b"fblo",
        19 | 20 => b"fvi",
        21 => b"pi",
        22 => b"b",
        23 => b"ibbbt",
        25 => b"allFa",
        26 | 28 => b"ali",
        27 => b"alb",
        32 => b"f",
        33 => b"ff",
        35 => b"tb",
        40 => b"ffbl",
        41 => b"iii",
        53 => b"iiib",
        61 => b"ibib",
        63 | 99 | 100 => b"b",
        72 => b"fib",
        73 => b"fi",
        74 | 75 | 81 | 306 => b"f",
        76 => b"po",
        77 => b"fo",
        78 | 217 => b"fbl",
        79 => b"bl",
        80 | 84 | 87 => b"p",
        82 | 86 | 88 => b"pp",
        83 | 90 => b"pm",
        85 => b"pm",
        89 => b"pbl",
        91 => b"fm",
        92 | 94 => b"pii",
        93 => b"fii",
        95 => b"m",
        96 => b"bb",
        97 | 98 => b"ib",
        132 | 235 => b"pb",
        133 => b"pmi",
        137 => b"pb",
        138 => b"fb",
        187 => b"fol",
        188 | 189 => b"ppbli",
        190 => b"fpbli",
        191 | 192 => b"ppbl",
        193 => b"fpbl",
        194 | 195 => b"pbl",
        196 => b"fbl",
        197 | 198 => b"pp",
        199 => b"fp",
        201 => b"b",
        202 => b"biitbi",
        221 => b"foli",
        228 | 229 => b"ib",
        230 => b"iitb",
        257 => b"fpFm",
        258 => b"fpm",
        259 => b"fpmi",
        260 => b"fpiii",
        262 => b"fpbi",
        263 => b"fpi",
        264 => b"fpfp",
        265 => b"fpfpi",
        266 => b"pfp",
        267 => b"fpbl",
        268 => b"fpm",
        269 | 439 => b"fpii",
        270 => b"ibbbtb",
        271 => b"bitbi",
        275 => b"fbfbli",
        276 => b"ffli",
        277 => b"fooi",
        280 => b"fpbi",
        285 => b"fiol",
        292 => b"ffi",
        293 => b"bi",
        295 | 296 => b"fvio",
        316 => b"fpfpi",
        318 => b"bli",
        319 => b"pi",
        326 => b"fbfbli",
        327 | 328 => b"fvioi",
        332 => b"fpiib",
        437 => b"fpbl",
        452 => b"fpmi",
        _ => b"",
    }
}

// ---------------------------------------------------------------------------

#[derive(Default, Clone, Copy)]
struct Stats {
    calls: u64,
    ok: u64,
    enosys: u64,
    efault: u64,
    einval: u64,
    ebadf: u64,
    other: u64,
    forks: u64,
}

struct Fuzzer {
    rng: Rng,
    /// Region A (buffers), the read-only page R, the timeout page T, the
    /// scratch region S and an unmapped hole.
    a: u64,
    r: u64,
    t: u64,
    s: u64,
    hole: u64,
    brk0: u64,
    exclude: [u32; 64],
    n_exclude: usize,
    /// Numbers 0..=511 that did not answer ENOSYS when probed.
    implemented: [bool; 512],
    probed: bool,
    /// `-u`: no preference for implemented numbers.
    uniform: bool,
    /// `-k`: make only the calls with these indices (inclusive ranges).
    only: [(u64, u64); 32],
    n_only: usize,
    verbose: bool,
    stats: Stats,
}

fn raw_open(dirfd: i32, path: &CStr, flags: usize, mode: usize) -> i64 {
    // SAFETY: the kernel only reads `path`, a NUL-terminated `CStr` alive for the call.
    (unsafe {
        syscall4(
            sys::nr::OPENAT,
            dirfd as usize,
            path.as_ptr() as usize,
            flags | sys::O_CLOEXEC,
            mode,
        )
    }) as i64
}

fn close(fd: i32) {
    // SAFETY: no pointer arguments.
    unsafe { syscall1(sys::nr::CLOSE, fd as usize) };
}

fn dup2(old: i32, new: i32) -> i64 {
    // SAFETY: no pointer arguments.
    (unsafe { syscall2(sys::nr::DUP2, old as usize, new as usize) }) as i64
}

fn fchdir(fd: i32) {
    // SAFETY: no pointer arguments (81 is fchdir).
    unsafe { syscall1(81, fd as usize) };
}

fn mmap(addr: u64, len: u64, prot: usize, flags: usize) -> i64 {
    // SAFETY: callers map where the kernel chooses, with MAP_FIXED_NOREPLACE, or with MAP_FIXED
    // only over S, which holds no Rust data; a fresh anonymous mapping invalidates nothing.
    (unsafe {
        syscall6(
            sys::nr::MMAP,
            addr as usize,
            len as usize,
            prot,
            flags,
            usize::MAX,
            0,
        )
    }) as i64
}

fn munmap(addr: u64, len: u64) {
    // SAFETY: callers only unmap the fuzzer's own raw regions (the gaps around S, the hole and
    // `find_hole`'s probe, what a fuzzed call just mapped outside S), which no Rust reference
    // points into.
    unsafe { syscall2(sys::nr::MUNMAP, addr as usize, len as usize) };
}

fn mprotect(addr: u64, len: u64, prot: usize) -> i64 {
    // SAFETY: callers only reprotect the guard pages after A and the page R, which the fuzzer
    // reaches through raw pointers only.
    (unsafe { syscall3(sys::nr::MPROTECT, addr as usize, len as usize, prot) }) as i64
}

fn is_err(ret: i64) -> bool {
    (-4095..0).contains(&ret)
}

fn fd_write(fd: i32, msg: core::fmt::Arguments) {
    let mut w = StackWriter::<512>::new(fd);
    let _ = w.write_fmt(msg);
}

macro_rules! out {
    ($($a:tt)*) => { fd_write(LOG_FD, format_args!($($a)*)) };
}
macro_rules! err {
    ($($a:tt)*) => { fd_write(ERR_FD, format_args!($($a)*)) };
}

/// Write `bytes` (NUL-terminated) at address `at`.
unsafe fn put_str(at: u64, bytes: &[u8]) {
    // SAFETY: callers pass `at` with `bytes.len() + 1` writable bytes in the fuzzer's own raw
    // regions (A, or R before it is made read-only), which `bytes` cannot overlap.
    unsafe {
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), at as *mut u8, bytes.len());
        *((at + bytes.len() as u64) as *mut u8) = 0;
    }
}

unsafe fn put_u64(at: u64, v: u64) {
    // SAFETY: callers pass 8 writable bytes in the fuzzer's own raw regions (A or T); the write
    // may be unaligned.
    unsafe { core::ptr::write_unaligned(at as *mut u64, v) };
}

/// Remove everything in directory `dirfd` (not the directory itself).
fn rm_contents(dirfd: i32, depth: u32) {
    let mut buf = [0u8; 4096];
    for _pass in 0..64 {
        // SAFETY: no pointer arguments.
        unsafe { syscall3(sys::nr::LSEEK, dirfd as usize, 0, sys::SEEK_SET) };
        let mut removed = 0;
        let mut seen = 0;
        loop {
            let n = match sys::getdents64(dirfd, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for d in sys::DirentIter::new(&buf[..n]) {
                if d.name == b"." || d.name == b".." || d.name.len() > 255 {
                    continue;
                }
                seen += 1;
                let mut name = [0u8; 257];
                name[..d.name.len()].copy_from_slice(d.name);
                let cname = CStr::from_bytes_until_nul(&name).unwrap_or(c"");
                if rm_entry(dirfd, cname, depth) {
                    removed += 1;
                }
            }
        }
        if seen == 0 || removed == 0 {
            break;
        }
    }
}

/// Remove one entry of `dirfd` (a directory recursively); true if it is gone.
fn rm_entry(dirfd: i32, name: &CStr, depth: u32) -> bool {
    if sys::unlinkat(dirfd, name, 0).is_ok() {
        return true;
    }
    let fd = raw_open(
        dirfd,
        name,
        sys::O_RDONLY | sys::O_NOFOLLOW | sys::O_NONBLOCK,
        0,
    );
    if fd >= 0 {
        // Clear the immutable and append-only flags (FS_IOC_SETFLAGS) the
        // fuzzing may have set, then retry.
        let zero = 0u64;
        // SAFETY: FS_IOC_SETFLAGS only reads the flags from `zero`, a live local.
        unsafe {
            syscall3(
                sys::nr::IOCTL,
                fd as usize,
                0x4008_6602,
                &zero as *const u64 as usize,
            )
        };
        let is_dir = sys::fstat(fd as i32).is_ok_and(|s| s.is_dir());
        if is_dir && depth < 16 {
            rm_contents(fd as i32, depth + 1);
        }
        close(fd as i32);
    }
    sys::unlinkat(dirfd, name, 0).is_ok() || sys::unlinkat(dirfd, name, sys::AT_REMOVEDIR).is_ok()
}

/// Create `name` in the scratch directory holding `len` pattern bytes.
fn make_file(name: &CStr, len: usize) {
    let fd = raw_open(
        SCRATCH_FD,
        name,
        sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC,
        0o644,
    );
    if fd < 0 {
        return;
    }
    let mut block = [0u8; 512];
    for (i, b) in block.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len());
        if sys::write_all(fd as i32, &block[..n]).is_err() {
            break;
        }
        left -= n;
    }
    close(fd as i32);
}

impl Fuzzer {
    // --- value pools -------------------------------------------------------

    fn int(&mut self) -> u64 {
        match self.rng.below(8) {
            0 => self.rng.below(64),
            1 => self.rng.next_u64(),
            2 => 1 << self.rng.below(64),
            _ => self.rng.pick(&INTS),
        }
    }

    fn len(&mut self) -> u64 {
        match self.rng.below(4) {
            0 => self.rng.below(0x2_0000),
            _ => self.rng.pick(&LENS),
        }
    }

    fn offset(&mut self) -> u64 {
        match self.rng.below(4) {
            0 => self.rng.below(1 << 20),
            _ => self.rng.pick(&OFFSETS),
        }
    }

    fn flags(&mut self) -> u64 {
        match self.rng.below(6) {
            0 => 0,
            1 => self.rng.next_u64() & 0xffff_ffff,
            2 => self.rng.next_u64(),
            _ => {
                let mut f = self.rng.below(3); // access mode
                for b in OPEN_BITS {
                    if self.rng.one_in(5) {
                        f |= b;
                    }
                }
                f
            }
        }
    }

    fn mode(&mut self) -> u64 {
        match self.rng.below(3) {
            0 => self.rng.next_u64() & 0o7777,
            1 => self.rng.next_u64() & 0xffff_ffff,
            _ => self.rng.pick(&MODES),
        }
    }

    fn fd(&mut self) -> u64 {
        if self.rng.below(5) < 4 {
            self.rng.below(POOL_END as u64)
        } else {
            self.rng.pick(&BAD_FDS)
        }
    }

    fn bad_addr(&mut self) -> u64 {
        match self.rng.below(6) {
            0 => 0,
            1 => self.hole + self.rng.below(PAGE),
            2 => self.rng.pick(&[1, 0xfff, 0x1000, 0x10000]),
            3 | 4 => self.rng.pick(&KERNEL_ADDRS),
            _ => self.rng.pick(&NONCANONICAL),
        }
    }

    fn buf(&mut self) -> u64 {
        let a = self.a;
        match self.rng.below(16) {
            0..=5 => a + DATA_OFF + (self.rng.below(A_LEN - DATA_OFF) & !7),
            6 => a + DATA_OFF + self.rng.below(A_LEN - DATA_OFF),
            7 => {
                a + self
                    .rng
                    .pick(&[0, 1, 7, 8, IOV_OFF, POLL_OFF, DATA_OFF, DATA_OFF + 1])
            }
            8 => a + A_LEN - self.rng.pick(&[1, 2, 8, 100, 4096]),
            9 => self.r + self.rng.pick(&[0, 1, 64, 4000]),
            10 => self.s + self.rng.below(S_PAGES) * PAGE,
            11 => self.t + 0x800 + (self.rng.below(0x100) & !7),
            _ => self.bad_addr(),
        }
    }

    fn path(&mut self) -> u64 {
        let name = NAMES_OFF + 32 * self.rng.below(NAMES.len() as u64);
        match self.rng.below(16) {
            0..=8 => self.a + name,
            9 | 10 => self.r + name,
            11 => self.a + LONG_NAME_OFF,
            12 => self.a + LONG_PATH_OFF,
            13 => self.a + A_LEN - 16, // no NUL before the guard page
            14 => self.a + DATA_OFF + self.rng.below(A_LEN - DATA_OFF),
            _ => self.bad_addr(),
        }
    }

    fn iov(&mut self) -> u64 {
        match self.rng.below(8) {
            0..=4 => self.a + IOV_OFF + 16 * self.rng.below(6),
            5 => self.buf(),
            _ => self.bad_addr(),
        }
    }

    fn timeout(&mut self) -> u64 {
        match self.rng.below(10) {
            0..=5 => self.t,
            6 => self.t + 16,
            7 => self.t + self.rng.pick(&[32, 48, 64]),
            8 => self.rng.pick(&KERNEL_ADDRS),
            _ => self.rng.pick(&NONCANONICAL),
        }
    }

    /// An address for the memory-management calls: in S or in no mapping.
    fn s_addr(&mut self) -> u64 {
        match self.rng.below(12) {
            0..=7 => self.s + self.rng.below(S_PAGES) * PAGE,
            8 => self.s + self.rng.below(S_LEN),
            9 => self.hole + self.rng.pick(&[0, 1, PAGE]),
            10 => self.rng.pick(&KERNEL_ADDRS),
            _ => self.rng.pick(&NONCANONICAL) & !(PAGE - 1),
        }
    }

    /// A length for a memory call at `addr`. From an address in S: a length
    /// inside S, or one that wraps around the address space (rejected before
    /// anything is touched). Linux's mprotect and madvise change one mapping
    /// after the other until they meet a gap, and only then fail, so a huge
    /// length that does not wrap is only used where nothing is mapped: the
    /// hole, kernel and non-canonical addresses.
    fn s_len(&mut self, addr: u64) -> u64 {
        let s_end = self.s + S_LEN;
        let wrapping = [
            u64::MAX,
            u64::MAX - 4095,
            (0u64).wrapping_sub(addr),
            (0u64).wrapping_sub(addr) + PAGE,
        ];
        if addr >= self.s && addr <= s_end {
            let room = s_end - addr;
            match self.rng.below(10) {
                0 => 0,
                1..=5 => self.rng.below(room / PAGE + 1) * PAGE,
                6 => room,
                7 if room > 0 => self.rng.below(room) + 1,
                _ => self.rng.pick(&wrapping),
            }
        } else if addr >= self.s - S_GAP && addr < s_end + S_GAP {
            // In a gap next to S (unaligned addresses near S): stay in it.
            self.rng.pick(&[0, 1, PAGE])
        } else {
            match self.rng.below(4) {
                0 => self.rng.pick(&wrapping),
                1 => self.rng.below(64) * PAGE,
                // Beyond even a 57-bit (5-level paging) user space.
                _ => self.rng.pick(&[1 << 60, 1 << 63, i64::MAX as u64]),
            }
        }
    }

    /// An address and a length from [`Self::s_addr`] and [`Self::s_len`].
    fn s_range(&mut self) -> (u64, u64) {
        let addr = self.s_addr();
        (addr, self.s_len(addr))
    }

    fn brk_value(&mut self) -> u64 {
        let b = self.brk0;
        match self.rng.below(10) {
            0 => 0,
            1 => b,
            2 => b + 1,
            3 => b + (1 << 30),
            4 => self.rng.pick(&KERNEL_ADDRS),
            5 => self.rng.pick(&NONCANONICAL),
            6 => u64::MAX,
            _ => b + self.rng.below(1024) * PAGE,
        }
    }

    /// An fd that close/dup2/dup3 may close or replace: above the pool, or bad.
    fn spare_fd(&mut self) -> u64 {
        self.rng.pick(&[
            POOL_END as u64,
            POOL_END as u64 + 1,
            POOL_END as u64 + 5,
            63,
            1023,
            1024,
            u64::MAX,
            0xffff_ffff,
            i32::MAX as u64,
            1 << 20,
        ])
    }

    fn any(&mut self) -> u64 {
        let k = self.rng.pick(b"fblpiioFmav");
        self.arg(k)
    }

    fn arg(&mut self, kind: u8) -> u64 {
        match kind {
            b'f' => self.fd(),
            b'b' => self.buf(),
            b'l' => self.len(),
            b'p' => self.path(),
            b'i' => self.int(),
            b'o' => self.offset(),
            b'F' => self.flags(),
            b'm' => self.mode(),
            b'a' => {
                if self.rng.one_in(2) {
                    self.s_addr()
                } else {
                    self.buf()
                }
            }
            b't' => self.timeout(),
            b'v' => self.iov(),
            _ => self.any(),
        }
    }

    // --- one call ------------------------------------------------------------

    fn pick_nr(&mut self) -> u64 {
        let mut nr = 0;
        for _ in 0..8 {
            nr = match self.rng.below(100) {
                0..=89 => self.rng.below(336),
                90..=95 => 336 + self.rng.below(176),
                _ => self.rng.pick(&HUGE_NRS),
            };
            // Numbers the kernel does not implement get one pick in eight.
            let unimplemented = nr < 512 && self.probed && !self.implemented[nr as usize];
            if !unimplemented || self.rng.one_in(8) {
                break;
            }
        }
        nr
    }

    /// Learn which of the numbers 0..=511 the kernel implements: each once, with
    /// all-zero arguments made safe by `fixup` (fork, vfork and clone are taken as
    /// implemented without a call). Uses an RNG of its own, so the calls that follow
    /// depend only on the seed and on which numbers are implemented. Returns how many are.
    fn probe(&mut self) -> usize {
        let main_rng = core::mem::replace(&mut self.rng, Rng(0x0070_7262_6521));
        for nr in 0..512u32 {
            let mut a = [0u64; 6];
            let ok = match nr {
                56..=58 => true,
                _ => match self.fixup(nr, &mut a) {
                    None | Some(true) => false,
                    Some(false) => {
                        self.fill_timeouts();
                        // SAFETY: a probe is a fuzz call the kernel must validate: zero arguments
                        // made safe by `fixup`, whose pointers are into its own T and S or invalid.
                        let ret = (unsafe {
                            syscall6(
                                nr as usize,
                                a[0] as usize,
                                a[1] as usize,
                                a[2] as usize,
                                a[3] as usize,
                                a[4] as usize,
                                a[5] as usize,
                            )
                        }) as i64;
                        if self.verbose {
                            err!("sysfuzz: probe {:#x} = {:#x} ({})\n", nr, ret, ret);
                        }
                        self.after(Some(nr), ret, &a, false);
                        ret != -38
                    }
                },
            };
            self.implemented[nr as usize] = ok;
        }
        self.rng = main_rng;
        self.probed = !self.uniform;
        self.implemented.iter().filter(|&&b| b).count()
    }

    /// The call a number may run: Linux looks at the low 32 bits only, and a
    /// kernel might (wrongly) drop the x32 flag, so rules go by both.
    fn effective(nr: u64) -> Option<u32> {
        let low = (nr & 0xffff_ffff) as u32 & !0x4000_0000;
        (low <= 511).then_some(low)
    }

    /// Make `args` safe for call `nr` (see the module comment); `None` skips
    /// the call, `Some(true)` marks a fork-like call.
    fn fixup(&mut self, nr: u32, a: &mut [u64; 6]) -> Option<bool> {
        const MAP_FIXED: u64 = 0x10;
        const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
        const MAP_POPULATE: u64 = 0x8000;
        const MAP_LOCKED: u64 = 0x2000;
        const IPC_NOWAIT: u64 = 0o4000;
        const O_ASYNC: u64 = 0o20000;
        const CAP: u64 = 4 << 20;
        if NEVER.contains(&nr) || self.exclude[..self.n_exclude].contains(&nr) {
            return None;
        }
        match nr {
            56..=58 => {
                if !self.rng.one_in(64) {
                    return None;
                }
                if nr == 56 {
                    // clone: fork or vfork semantics, same stack, no TLS/tid
                    // pointers.
                    a[0] = if self.rng.one_in(2) {
                        sys::SIGCHLD as u64
                    } else {
                        (sys::CLONE_VM | sys::CLONE_VFORK | sys::SIGCHLD) as u64
                    };
                    a[1] = 0;
                    a[2] = 0;
                    a[3] = 0;
                    a[4] = 0;
                }
                return Some(true);
            }
            3 => a[0] = self.spare_fd(),
            33 => a[1] = self.spare_fd(),
            292 => a[1] = self.spare_fd(),
            7 => a[2] = self.rng.pick(&[0, 1, 2, 10]),
            232 | 281 => a[3] = self.rng.pick(&[0, 1, 10]),
            // select's timeout is a timeval: {0, 1000000000} there is 1000 s.
            23 => {
                a[4] = self.timeout();
                if a[4] == self.t + 32 {
                    a[4] = self.t + 48;
                }
            }
            270 => a[4] = self.timeout(),
            271 => a[2] = self.timeout(),
            441 => a[3] = self.timeout(),
            35 => a[0] = self.timeout(),
            230 => {
                // A CPU-time clock (2, 3, or negative: another process's or
                // thread's) never advances while the fuzzer sleeps on it.
                let clock = a[0] as i32;
                if clock < 0 || clock == 2 || clock == 3 {
                    a[0] = 1;
                }
                a[2] = self.timeout();
            }
            202 => a[3] = self.timeout(),
            128 => a[2] = self.timeout(),
            220 => a[3] = self.timeout(),
            242 | 243 => a[4] = self.timeout(),
            208 | 333 | 299 => a[4] = self.timeout(),
            69 => a[3] |= IPC_NOWAIT,
            70 => a[4] |= IPC_NOWAIT,
            13 => a[1] = 0,
            302 => a[2] = 0,
            103 => {
                if a[0] as u32 == 2 {
                    a[0] = 3;
                }
            }
            72 => {
                match a[1] as u32 {
                    1024 | 1026 => a[1] = 1,
                    4 => a[2] &= !O_ASYNC,
                    _ => {}
                }
                // The low 32 bits are the command (an int).
            }
            157 => {
                if matches!(a[0] as u32, 22 | 35 | 59) {
                    a[0] = 16; // PR_GET_NAME
                }
            }
            158 => {
                if (0x5001..=0x5005).contains(&(a[0] as u32)) {
                    a[0] = 0x1003; // ARCH_GET_FS
                }
            }
            // pkey_free(0) succeeds on Linux; the next execute-only mprotect
            // then gets key 0 and PKRU denies the stack.
            331 => {
                if a[0] as u32 == 0 {
                    a[0] = 16;
                }
            }
            133 => a[1] = safe_mode(a[1]),
            259 => a[2] = safe_mode(a[2]),
            40 => a[3] %= CAP,
            326 | 275 => a[4] %= CAP,
            276 => a[2] %= CAP,
            // (Random values are drawn whether or not they are used: arguments may be
            // addresses, which differ from run to run, and the calls that follow
            // must not.)
            9 => {
                let (addr, len) = self.s_range();
                if a[3] & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0 {
                    a[0] = addr;
                    a[1] = len;
                }
                // Populating (or locking) a huge mapping is a legitimate way to
                // run out of memory, which Linux answers with the OOM killer.
                if a[1] > 16 << 20 {
                    a[3] &= !(MAP_POPULATE | MAP_LOCKED);
                }
            }
            // mlockall(MCL_FUTURE) would make every later mapping populated.
            151 => a[0] &= !2,
            10 | 11 | 28 | 216 | 329 | 462 => {
                a[0] = self.s_addr();
                a[1] = self.s_len(a[0]);
            }
            25 => {
                (a[0], a[1]) = self.s_range();
                let (to, len) = self.s_range();
                if a[3] & 2 != 0 {
                    // MREMAP_FIXED: the target is in S too.
                    a[4] = to;
                    a[2] = len;
                }
            }
            12 => a[0] = self.brk_value(),
            30 => a[1] = 0,
            67 => a[0] = self.s_addr(),
            _ => {}
        }
        Some(false)
    }

    fn gen_args(&mut self, nr: u64) -> [u64; 6] {
        let sig = match Self::effective(nr) {
            Some(e) if self.rng.below(4) < 3 => signature(e),
            _ => b"",
        };
        let mut a = [0u64; 6];
        for (i, slot) in a.iter_mut().enumerate() {
            let kind = sig.get(i).copied().unwrap_or(b'?');
            *slot = if kind != b'?' && self.rng.one_in(10) {
                self.any()
            } else {
                self.arg(kind)
            };
            // Never name a private fd (fd arguments are ints: low 32 bits).
            let low = *slot & 0xffff_ffff;
            if (PRIV_LO..PRIV_HI).contains(&low) {
                *slot += PRIV_HI - low;
            }
        }
        a
    }

    /// One system call; false if it was skipped.
    fn step(&mut self) -> bool {
        let nr = self.pick_nr();
        let eff = Self::effective(nr);
        let mut a = self.gen_args(nr);
        let fork_like = match eff {
            Some(e) => match self.fixup(e, &mut a) {
                None => return false,
                Some(f) => f,
            },
            None => false,
        };
        self.fill_timeouts();
        let index = self.stats.calls;
        if self.n_only > 0
            && !self.only[..self.n_only]
                .iter()
                .any(|&(lo, hi)| (lo..=hi).contains(&index))
        {
            // Generated (so the calls after it are the same) but not made.
            self.stats.calls += 1;
            return true;
        }
        if self.verbose {
            err!(
                "sysfuzz: #{} {:#x}({:#x}, {:#x}, {:#x}, {:#x}, {:#x}, {:#x})\n",
                self.stats.calls,
                nr,
                a[0],
                a[1],
                a[2],
                a[3],
                a[4],
                a[5]
            );
        }
        let ret = if fork_like {
            self.stats.forks += 1;
            // SAFETY: the child exits inside `fork_like_call` without touching memory (clone gets
            // only fork/vfork flags from `fixup`); the parent reaps it in `after`.
            unsafe { fork_like_call(nr, &a) }
        } else {
            // SAFETY: the fuzzer's purpose: `nr` and `a` are random; the kernel must validate them.
            // Generated pointers are into its own mapped buffers (A, R, T, S) or invalid, and
            // `fixup` confines the memory calls to S, so no memory holding Rust data is unmapped.
            (unsafe {
                syscall6(
                    nr as usize,
                    a[0] as usize,
                    a[1] as usize,
                    a[2] as usize,
                    a[3] as usize,
                    a[4] as usize,
                    a[5] as usize,
                )
            }) as i64
        };
        if self.verbose {
            err!("sysfuzz:   = {:#x} ({})\n", ret, ret);
        }
        self.count(ret);
        self.after(eff, ret, &a, fork_like);
        if let Err(e) = self.check_read_only() {
            out!(
                "sysfuzz: FAILED at call {}: {:#x}({:#x}, {:#x}, {:#x}, {:#x}, {:#x}, {:#x}) = {:#x}: {}\n",
                self.stats.calls,
                nr,
                a[0],
                a[1],
                a[2],
                a[3],
                a[4],
                a[5],
                ret,
                e
            );
            self.dump_maps();
            sys::rt::exit(1);
        }
        true
    }

    fn count(&mut self, ret: i64) {
        let s = &mut self.stats;
        s.calls += 1;
        match ret {
            -38 => s.enosys += 1,
            -14 => s.efault += 1,
            -22 => s.einval += 1,
            -9 => s.ebadf += 1,
            r if is_err(r) => s.other += 1,
            _ => s.ok += 1,
        }
    }

    /// Undo what a successful call left behind that could hurt the next ones.
    fn after(&mut self, eff: Option<u32>, ret: i64, a: &[u64; 6], fork_like: bool) {
        if is_err(ret) {
            return;
        }
        let Some(nr) = eff else {
            return;
        };
        if fork_like {
            if ret > 0 {
                const WALL: usize = 0x4000_0000;
                let mut st = 0i32;
                // SAFETY: the kernel writes one `i32` into `st`, a local; the rusage pointer is 0.
                unsafe {
                    syscall4(
                        sys::nr::WAIT4,
                        ret as usize,
                        &mut st as *mut i32 as usize,
                        WALL,
                        0,
                    )
                };
            }
            return;
        }
        // A new fd above the pool: close it (harmless EBADF if it was a count).
        if ret >= POOL_END as i64 && ret < 1 << 20 && !(PRIV_LO..PRIV_HI).contains(&(ret as u64)) {
            close(ret as i32);
        }
        if PIPE_LIKE.contains(&nr) {
            for fd in POOL_END..POOL_END + 8 {
                close(fd);
            }
        }
        let in_s = |x: u64| x >= self.s && x < self.s + S_LEN;
        let r = ret as u64;
        match nr {
            9 | 453 if !in_s(r) => munmap(r, a[1]),
            25 if !in_s(r) => munmap(r, a[2]),
            30 => {
                // SAFETY: 67 is shmdt of `r`, the segment shmat just attached; nothing uses it.
                unsafe { syscall1(67, r as usize) };
            }
            80 | 81 => fchdir(SCRATCH_FD),
            _ => {}
        }
    }

    /// The timespecs the timeout arguments point to (calls may rewrite them).
    fn fill_timeouts(&mut self) {
        let t = self.t;
        // SAFETY: T is the fuzzer's own read/write page (memory calls only touch S) and the ten
        // words fit in it.
        unsafe {
            for (i, v) in [0u64, 1000, 0, 0, 0, 1_000_000_000, u64::MAX, 0, 0, 1]
                .iter()
                .enumerate()
            {
                put_u64(t + 8 * i as u64, *v);
            }
        }
    }

    // --- setup and reset -------------------------------------------------------

    /// Map the regions (once).
    fn map_regions(&mut self) -> Result<(), &'static str> {
        let rw = sys::PROT_READ | sys::PROT_WRITE;
        let anon = sys::MAP_PRIVATE | sys::MAP_ANONYMOUS;
        let a = mmap(0, A_LEN + 2 * PAGE, rw, anon);
        if is_err(a) {
            return Err("mmap of the buffer region failed");
        }
        self.a = a as u64;
        if is_err(mprotect(self.a + A_LEN, 2 * PAGE, 0)) {
            return Err("mprotect of the guard pages failed");
        }
        let r = mmap(0, PAGE, rw, anon);
        let t = mmap(0, PAGE, rw, anon);
        // S with an unmapped gap on either side.
        let s = mmap(0, S_GAP + S_LEN + S_GAP, rw, anon);
        if [r, t, s].iter().any(|&x| is_err(x)) {
            return Err("mmap failed");
        }
        (self.r, self.t, self.s) = (r as u64, t as u64, s as u64 + S_GAP);
        munmap(s as u64, S_GAP);
        munmap(self.s + S_LEN, S_GAP);
        self.hole = find_hole().ok_or("no unmapped address for the hole")?;
        // SAFETY: R is a fresh read/write page (made read-only below); each name plus NUL fits its
        // 32-byte slot from NAMES_OFF, inside the page.
        unsafe {
            for (i, n) in NAMES.iter().enumerate() {
                put_str(self.r + NAMES_OFF + 32 * i as u64, n);
            }
        }
        if is_err(mprotect(self.r, PAGE, sys::PROT_READ)) {
            return Err("mprotect of the read-only page failed");
        }
        // SAFETY: brk(0) only reports the current break; no pointer arguments.
        self.brk0 = unsafe { syscall1(sys::nr::BRK, 0) } as u64;
        Ok(())
    }

    /// Buffer region A: random bytes with iovecs, pollfds and paths in it.
    fn fill_a(&mut self) {
        let a = self.a;
        // SAFETY: every write lands in A's `A_LEN` read/write bytes (the long path ends below
        // DATA_OFF); A is reached through raw pointers only and memory calls only touch S.
        unsafe {
            let mut off = 0;
            while off < A_LEN {
                put_u64(a + off, self.rng.next_u64());
                off += 8;
            }
            let iovs: [(u64, u64); 6] = [
                (a + 0x1000, 16),
                (a + DATA_OFF, 4096),
                (a + DATA_OFF + 0x3001, 1),
                (KERNEL_ADDRS[0], 16),
                (a + DATA_OFF + 0x8000, u64::MAX / 2),
                (0, 0),
            ];
            for (i, (base, len)) in iovs.iter().enumerate() {
                put_u64(a + IOV_OFF + 16 * i as u64, *base);
                put_u64(a + IOV_OFF + 16 * i as u64 + 8, *len);
            }
            let polls: [(i32, u16); 6] =
                [(0, 1), (3, 5), (4, 1), (-1, 1), (9999, 1), (POOL_END, 4)];
            for (i, (fd, ev)) in polls.iter().enumerate() {
                let at = a + POLL_OFF + 8 * i as u64;
                core::ptr::write_unaligned(at as *mut i32, *fd);
                core::ptr::write_unaligned((at + 4) as *mut u16, *ev);
                core::ptr::write_unaligned((at + 6) as *mut u16, 0);
            }
            for (i, n) in NAMES.iter().enumerate() {
                put_str(a + NAMES_OFF + 32 * i as u64, n);
            }
            let long_name = [b'n'; 300];
            put_str(a + LONG_NAME_OFF, &long_name);
            let mut p = a + LONG_PATH_OFF;
            for _ in 0..2100 {
                put_str(p, b"a/");
                p += 2;
            }
            *(p as *mut u8) = 0;
            // The last 16 bytes: a string with no NUL before the guard page.
            core::ptr::write_bytes((a + A_LEN - 16) as *mut u8, b'f', 16);
        }
    }

    /// Put back the fds 0..POOL_END.
    fn open_pool(&mut self) {
        for (slot, (path, flags)) in POOL.iter().enumerate() {
            let slot = slot as i32;
            let mut fd = raw_open(SCRATCH_FD, path, *flags, 0o644);
            if fd < 0 {
                fd = raw_open(SCRATCH_FD, c".", sys::O_RDONLY | sys::O_DIRECTORY, 0);
            }
            if fd < 0 {
                fd = dup2(SCRATCH_FD, slot);
            }
            if fd >= 0 && fd as i32 != slot {
                dup2(fd as i32, slot);
                close(fd as i32);
            }
        }
    }

    /// Back to a known state (see the module comment). Err if the kernel wrote
    /// into the read-only page.
    fn reset(&mut self) -> Result<(), &'static str> {
        fchdir(SCRATCH_FD);
        // SAFETY: umask takes no pointer; rt_sigprocmask only reads the 8-byte local `zero`;
        // brk goes back to its start, and no Rust data lives there (the allocator uses mmap).
        unsafe {
            syscall1(95, 0o022); // umask
            let zero = 0u64;
            syscall4(14, 2, &zero as *const u64 as usize, 0, 8); // SIG_SETMASK
            syscall1(152, 0); // munlockall
            syscall1(sys::nr::BRK, self.brk0 as usize);
        }
        for fd in POOL_END..POOL_END + 64 {
            close(fd);
        }
        rm_contents(SCRATCH_FD, 0);
        make_file(c"f", 8192);
        make_file(c"g", 4096 + 100);
        let _ = sys::mkdirat(SCRATCH_FD, c"d", 0o755);
        make_file(c"d/h", 10);
        self.open_pool();
        let rw = sys::PROT_READ | sys::PROT_WRITE;
        let fixed = sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | 0x10;
        mmap(self.s, S_LEN, rw, fixed);
        munmap(self.s - S_GAP, S_GAP);
        munmap(self.s + S_LEN, S_GAP);
        munmap(self.hole, PAGE);
        self.fill_a();
        self.fill_timeouts();
        self.check_read_only()
    }

    /// On failure: where everything is (and `/proc/self/maps` where there is one).
    fn dump_maps(&self) {
        err!(
            "sysfuzz: buffers {:#x}, read-only page {:#x}, timeouts {:#x}, scratch {:#x}..{:#x}, hole {:#x}, brk {:#x}\n",
            self.a,
            self.r,
            self.t,
            self.s,
            self.s + S_LEN,
            self.hole,
            self.brk0
        );
        if let Ok(maps) = sys::read_file(c"/proc/self/maps") {
            let _ = sys::write_all(ERR_FD, &maps);
        }
    }

    /// The read-only page still holds what was written before it was made
    /// read-only.
    fn check_read_only(&self) -> Result<(), &'static str> {
        for (i, n) in NAMES.iter().enumerate() {
            let at = (self.r + NAMES_OFF + 32 * i as u64) as *const u8;
            // SAFETY: R stays mapped readable (memory calls only touch S) and each name and its
            // NUL lie inside it; nothing writes R while `held` lives (barring the bug it detects).
            let held = unsafe { core::slice::from_raw_parts(at, n.len() + 1) };
            if &held[..n.len()] != *n || held[n.len()] != 0 {
                return Err("the kernel wrote into a read-only page");
            }
        }
        Ok(())
    }

    fn progress(&self, total: u64) {
        let s = &self.stats;
        out!(
            "sysfuzz: {}/{} calls (ok {}, ENOSYS {}, EINVAL {}, EFAULT {}, EBADF {}, other {}, forks {})\n",
            s.calls,
            total,
            s.ok,
            s.enosys,
            s.einval,
            s.efault,
            s.ebadf,
            s.other,
            s.forks
        );
    }
}

/// An address far from every mapping (nothing mapped there, and nothing
/// mapped above it for a long way, so a huge length from it fails at once).
fn find_hole() -> Option<u64> {
    const MAP_FIXED_NOREPLACE: usize = 0x10_0000;
    for cand in [
        0x1000_0000_0000u64,
        0x2000_0000_0000,
        0x0800_0000_0000,
        0x0100_0000_0000,
    ] {
        let got = mmap(
            cand,
            PAGE,
            0,
            sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
        );
        if is_err(got) {
            continue;
        }
        munmap(got as u64, PAGE);
        if got as u64 == cand {
            return Some(cand);
        }
    }
    None
}

fn safe_mode(m: u64) -> u64 {
    const S_IFMT: u64 = 0o170000;
    match m & S_IFMT {
        // FIFO, character device, block device, socket: make it a regular file.
        0o010000 | 0o020000 | 0o060000 | 0o140000 => (m & !S_IFMT) | 0o100000,
        _ => m,
    }
}

/// fork, vfork or clone: the child (return value 0) calls exit_group(0)
/// straight away, without touching memory (after vfork it shares ours).
unsafe fn fork_like_call(nr: u64, a: &[u64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: the child (rax 0) calls exit_group(0) at once without touching memory, so a shared
    // address space (vfork, CLONE_VM) is left as it was; rdi, rcx and r11 are declared clobbered.
    unsafe {
        asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov eax, 231",
            "xor edi, edi",
            "syscall",
            "ud2",
            "2:",
            inlateout("rax") nr as i64 => ret,
            inlateout("rdi") a[0] => _,
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            out("rcx") _,
            out("r11") _,
            options(nostack),
        );
    }
    ret
}

/// True on a Linux kernel: `uname` says Linux and `/proc/sys/kernel` exists
/// (AliasOS has no `/proc/sys`).
fn on_linux() -> bool {
    let linux_name = sys::uname().is_ok_and(|u| u.sysname.starts_with(b"Linux\0"));
    linux_name && sys::stat(c"/proc/sys/kernel").is_ok()
}

fn parse_num(s: &[u8]) -> Option<u64> {
    let (digits, radix) = match s.strip_prefix(b"0x") {
        Some(h) => (h, 16),
        None => (s, 10),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &c in digits {
        let d = (c as char).to_digit(radix)? as u64;
        n = n.checked_mul(radix as u64)?.checked_add(d)?;
    }
    Some(n)
}

const USAGE: &str =
    "usage: sysfuzz [-n CALLS] [-s SEED] [-d DIR] [-x NR[,NR...]] [-k I[-J][,I[-J]...]] [-u] [-v]";

fn main() -> i32 {
    // First of all: never on a Linux host (see the module comment).
    let vm_ok = sys::rt::args().any(|a| a.to_bytes() == b"--in-a-throwaway-linux-vm");
    if on_linux() && !vm_ok {
        sys::eprintln!(
            "sysfuzz: refusing to run on Linux: this fuzzer makes random system calls and is \
             meant for AliasOS only"
        );
        return 2;
    }
    let mut calls: u64 = 100_000;
    let mut seed: u64 = 1;
    let mut dir: &CStr = c".";
    let mut fz = Fuzzer {
        rng: Rng(0),
        a: 0,
        r: 0,
        t: 0,
        s: 0,
        hole: 0,
        brk0: 0,
        exclude: [0; 64],
        n_exclude: 0,
        only: [(0, 0); 32],
        n_only: 0,
        implemented: [false; 512],
        probed: false,
        uniform: false,
        verbose: false,
        stats: Stats::default(),
    };
    let args: alloc::vec::Vec<&CStr> = sys::rt::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_bytes();
        let val = args.get(i + 1).map(|v| v.to_bytes());
        match a {
            b"--in-a-throwaway-linux-vm" => {}
            b"-v" => fz.verbose = true,
            b"-u" => fz.uniform = true,
            b"-n" | b"-s" | b"-d" | b"-x" | b"-k" => {
                let Some(v) = val else {
                    tools::die(
                        2,
                        format_args!("{} needs a value\n{}", sys::io::Bytes(a), USAGE),
                    );
                };
                match a {
                    b"-n" => calls = parse_num(v).unwrap_or_else(|| bad(a)),
                    b"-s" => seed = parse_num(v).unwrap_or_else(|| bad(a)),
                    b"-d" => dir = args[i + 1],
                    b"-k" => {
                        for part in v.split(|&c| c == b',') {
                            let (lo, hi) = match part.iter().position(|&c| c == b'-') {
                                Some(d) => (&part[..d], &part[d + 1..]),
                                None => (part, part),
                            };
                            let lo = parse_num(lo).unwrap_or_else(|| bad(a));
                            let hi = parse_num(hi).unwrap_or_else(|| bad(a));
                            if fz.n_only < fz.only.len() {
                                fz.only[fz.n_only] = (lo, hi);
                                fz.n_only += 1;
                            }
                        }
                    }
                    _ => {
                        for part in v.split(|&c| c == b',') {
                            let nr = parse_num(part).unwrap_or_else(|| bad(a));
                            if fz.n_exclude < fz.exclude.len() {
                                fz.exclude[fz.n_exclude] = nr as u32;
                                fz.n_exclude += 1;
                            }
                        }
                    }
                }
                i += 1;
            }
            _ => tools::die(
                2,
                format_args!("unknown argument '{}'\n{}", sys::io::Bytes(a), USAGE),
            ),
        }
        i += 1;
    }
    fz.rng = Rng(seed ^ 0x5eed_5eed_5eed_5eed);

    // Private fds: the real stdout and stderr, the scratch directory and its parent.
    sys::io::flush();
    if dup2(1, LOG_FD) < 0 {
        return 1;
    }
    let _ = dup2(2, ERR_FD);
    let parent = raw_open(sys::AT_FDCWD, dir, sys::O_RDONLY | sys::O_DIRECTORY, 0);
    if parent < 0 {
        err!(
            "sysfuzz: {}: cannot open ({})\n",
            sys::io::Bytes(dir.to_bytes()),
            -parent
        );
        return 1;
    }
    dup2(parent as i32, PARENT_FD);
    close(parent as i32);
    rm_entry(PARENT_FD, SCRATCH_NAME, 0);
    if let Err(e) = sys::mkdirat(PARENT_FD, SCRATCH_NAME, 0o755) {
        err!("sysfuzz: cannot create the scratch directory: {}\n", e);
        return 1;
    }
    let scratch = raw_open(PARENT_FD, SCRATCH_NAME, sys::O_RDONLY | sys::O_DIRECTORY, 0);
    if scratch < 0 {
        err!(
            "sysfuzz: cannot open the scratch directory ({})\n",
            -scratch
        );
        return 1;
    }
    dup2(scratch as i32, SCRATCH_FD);
    close(scratch as i32);
    if let Err(e) = fz.map_regions() {
        err!("sysfuzz: {}\n", e);
        return 1;
    }
    if fz.verbose {
        fz.dump_maps();
    }
    if let Err(e) = fz.reset() {
        err!("sysfuzz: {}\n", e);
        return 1;
    }
    let implemented = fz.probe();
    out!(
        "sysfuzz: {} calls, seed {}, pid {}; {} of the numbers 0..=511 implemented\n",
        calls,
        seed,
        sys::getpid(),
        implemented
    );
    if let Err(e) = fz.reset() {
        err!("sysfuzz: {}\n", e);
        return 1;
    }
    while fz.stats.calls < calls {
        if !fz.step() {
            continue;
        }
        let done = fz.stats.calls;
        if (done.is_multiple_of(1000) || done == calls)
            && let Err(e) = fz.reset()
        {
            out!("sysfuzz: FAILED after {} calls: {}\n", done, e);
            fz.dump_maps();
            return 1;
        }
        if done.is_multiple_of(10_000) {
            fz.progress(calls);
        }
    }
    fchdir(PARENT_FD);
    for fd in 0..POOL_END {
        close(fd);
    }
    rm_contents(SCRATCH_FD, 0);
    close(SCRATCH_FD);
    let _ = sys::unlinkat(PARENT_FD, SCRATCH_NAME, sys::AT_REMOVEDIR);
    out!("sysfuzz: {} calls, seed {}, OK\n", fz.stats.calls, seed);
    0
}

fn bad(opt: &[u8]) -> u64 {
    tools::die(
        2,
        format_args!("bad value for {}\n{}", sys::io::Bytes(opt), USAGE),
    )
}

sys::entry!(main);
