//! Helpers shared by the cases: raw system calls, errno checks, unbuffered output,
//! children (fork + wait) and the wait-status decoding, deliberate faults in inline
//! assembly, and small memory helpers.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::arch::asm;
use core::ffi::CStr;

use sys::Errno;

/// What a case returns: `Err(detail)` makes it `not ok`.
pub type Res = Result<(), String>;

/// One case: its name and its body.
pub type Case = (&'static str, fn() -> Res);

/// Linux x86-64 system call numbers the cases use (user-sys's `nr` has only some).
#[allow(dead_code)]
pub mod nr {
    pub const READ: usize = 0;
    pub const WRITE: usize = 1;
    pub const OPEN: usize = 2;
    pub const CLOSE: usize = 3;
    pub const STAT: usize = 4;
    pub const FSTAT: usize = 5;
    pub const LSTAT: usize = 6;
    pub const LSEEK: usize = 8;
    pub const MMAP: usize = 9;
    pub const MPROTECT: usize = 10;
    pub const MUNMAP: usize = 11;
    pub const BRK: usize = 12;
    pub const RT_SIGACTION: usize = 13;
    pub const RT_SIGPROCMASK: usize = 14;
    pub const IOCTL: usize = 16;
    pub const PREAD64: usize = 17;
    pub const PWRITE64: usize = 18;
    pub const READV: usize = 19;
    pub const WRITEV: usize = 20;
    pub const PIPE: usize = 22;
    pub const SCHED_YIELD: usize = 24;
    pub const MSYNC: usize = 26;
    pub const MADVISE: usize = 28;
    pub const DUP: usize = 32;
    pub const DUP2: usize = 33;
    pub const NANOSLEEP: usize = 35;
    pub const CLONE: usize = 56;
    pub const FORK: usize = 57;
    pub const VFORK: usize = 58;
    pub const EXECVE: usize = 59;
    pub const GETPID: usize = 39;
    pub const EXIT: usize = 60;
    pub const WAIT4: usize = 61;
    pub const KILL: usize = 62;
    pub const UNAME: usize = 63;
    pub const FCNTL: usize = 72;
    pub const FSYNC: usize = 74;
    pub const FDATASYNC: usize = 75;
    pub const FTRUNCATE: usize = 77;
    pub const GETCWD: usize = 79;
    pub const CHDIR: usize = 80;
    pub const RENAME: usize = 82;
    pub const MKDIR: usize = 83;
    pub const RMDIR: usize = 84;
    pub const LINK: usize = 86;
    pub const UNLINK: usize = 87;
    pub const SYMLINK: usize = 88;
    pub const READLINK: usize = 89;
    pub const SIGALTSTACK: usize = 131;
    pub const ARCH_PRCTL: usize = 158;
    pub const SYNC: usize = 162;
    pub const MOUNT: usize = 165;
    pub const UMOUNT2: usize = 166;
    pub const GETTID: usize = 186;
    pub const GETDENTS64: usize = 217;
    pub const SET_TID_ADDRESS: usize = 218;
    pub const CLOCK_GETTIME: usize = 228;
    pub const CLOCK_GETRES: usize = 229;
    pub const EXIT_GROUP: usize = 231;
    pub const OPENAT: usize = 257;
    pub const NEWFSTATAT: usize = 262;
    pub const DUP3: usize = 292;
    pub const PIPE2: usize = 293;
    pub const GETRANDOM: usize = 318;
    pub const SENDFILE: usize = 40;
    pub const IO_SETUP: usize = 206;
    pub const IO_DESTROY: usize = 207;
    pub const IO_GETEVENTS: usize = 208;
    pub const IO_SUBMIT: usize = 209;
    pub const IO_CANCEL: usize = 210;
    pub const PREADV: usize = 295;
    pub const PWRITEV: usize = 296;
    pub const COPY_FILE_RANGE: usize = 326;
    pub const PREADV2: usize = 327;
    pub const PWRITEV2: usize = 328;
}

/// Addresses a user program must never reach.
pub const KERNEL_BASE: usize = 0xffff_8000_0000_0000;
pub const KERNEL_TEXT: usize = 0xffff_ffff_8000_0000;
pub const NONCANON_LOW: usize = 0x0000_9000_0000_0000;
pub const NONCANON_HIGH: usize = 0x8000_0000_0000_0000;

pub const PAGE: usize = 4096;

pub const SIGILL: i32 = 4;
pub const SIGTRAP: i32 = 5;
pub const SIGBUS: i32 = 7;
pub const SIGFPE: i32 = 8;
pub const SIGKILL: i32 = 9;
pub const SIGSEGV: i32 = 11;
pub const SIGPIPE: i32 = 13;
pub const SIGTERM: i32 = 15;

pub const PROT_NONE: usize = 0;
pub const PROT_READ: usize = 1;
pub const PROT_WRITE: usize = 2;
pub const PROT_EXEC: usize = 4;
pub const MAP_SHARED: usize = 0x01;
pub const MAP_PRIVATE: usize = 0x02;
pub const MAP_FIXED: usize = 0x10;
pub const MAP_ANONYMOUS: usize = 0x20;
pub const MAP_FAILED_FD: usize = usize::MAX;

pub const WNOHANG: usize = 1;

/// `return Err(format!(...))` unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($c:expr, $($arg:tt)*) => {
        if !$c {
            return Err(alloc::format!($($arg)*));
        }
    };
}

/// Print a line (unbuffered: a single write(1) per call, so forks never duplicate it).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::util::out(&alloc::format!($($arg)*)) };
}

/// Write `s` to fd 1 at once.
pub fn out(s: &str) {
    let _ = sys::write_all(1, s.as_bytes());
}

/// The raw system call: the result or `-errno` as the kernel returned it.
pub fn raw(n: usize, a: &[usize]) -> isize {
    let g = |i: usize| a.get(i).copied().unwrap_or(0);
    // SAFETY: the cases choose every argument on purpose, bad pointers included: the
    // kernel must reject those rather than touch memory the process did not offer.
    unsafe { sys::raw::syscall6(n, g(0), g(1), g(2), g(3), g(4), g(5)) }
}

/// A system call as `Result` (values in -4095..0 are errors, as the ABI says).
pub fn sc(n: usize, a: &[usize]) -> Result<usize, Errno> {
    let r = raw(n, a);
    if (-4095..0).contains(&r) {
        Err(Errno(-r as i32))
    } else {
        Ok(r as usize)
    }
}

/// The errno's name, or its number when user-sys does not know it.
pub fn ename(e: Errno) -> String {
    match e.name() {
        "E?" => format!("errno {}", e.0),
        n => String::from(n),
    }
}

/// A successful call or a failure text naming the call and the errno seen.
pub fn ok<T>(what: &str, r: Result<T, Errno>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {}", ename(e)))
}

/// The call must fail with exactly `want`.
pub fn want(what: &str, r: Result<usize, Errno>, want: Errno) -> Res {
    match r {
        Err(e) if e == want => Ok(()),
        Err(e) => Err(format!(
            "{what}: expected {}, got {}",
            ename(want),
            ename(e)
        )),
        Ok(v) => Err(format!(
            "{what}: expected {}, got success ({v:#x})",
            ename(want)
        )),
    }
}

/// Address of a C string literal.
pub fn cs(s: &CStr) -> usize {
    s.as_ptr() as usize
}

/// A NUL-terminated copy of `s` (for paths built at run time).
pub fn cstr(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

// ---------------------------------------------------------------------------
// Processes.

/// `fork()` as a case sees it.
pub fn fork() -> Result<i32, String> {
    ok("fork", sc(nr::FORK, &[])).map(|p| p as i32)
}

/// End this process now (no flushing: the cases never buffer output).
pub fn exit(code: i32) -> ! {
    sys::exit_group(code)
}

/// `wait4(pid, &status, options, NULL)`.
pub fn wait4(pid: i32, options: usize) -> Result<(i32, i32), Errno> {
    let mut st: i32 = 0;
    let r = sc(
        nr::WAIT4,
        &[
            pid as isize as usize,
            &mut st as *mut i32 as usize,
            options,
            0,
        ],
    )?;
    Ok((r as i32, st))
}

/// Reap `pid` (blocking); its raw wait status.
pub fn wait_pid(pid: i32) -> Result<i32, String> {
    let (got, st) = ok("wait4", wait4(pid, 0))?;
    ensure!(got == pid, "wait4({pid}) returned pid {got}");
    Ok(st)
}

/// Run `f` in a forked child that exits with its return value; the raw wait status.
pub fn in_child(f: impl FnOnce() -> i32) -> Result<i32, String> {
    let pid = fork()?;
    if pid == 0 {
        let code = f();
        exit(code);
    }
    wait_pid(pid)
}

/// Run a check in a forked child: it must exit 0. A failing check prints its detail as a
/// `#` comment line (the child has no other way to hand text to its parent) and exits 1.
pub fn child_check(what: &str, f: impl FnOnce() -> Res) -> Res {
    let st = in_child(|| match f() {
        Ok(()) => 0,
        Err(d) => {
            say!("#   in child ({what}): {d}\n");
            1
        }
    })?;
    ensure!(st == 0, "{what}: child {}", status_str(st));
    Ok(())
}

pub fn wifexited(st: i32) -> bool {
    st & 0x7f == 0
}

pub fn wexitstatus(st: i32) -> i32 {
    (st >> 8) & 0xff
}

pub fn wifsignaled(st: i32) -> bool {
    let s = st & 0x7f;
    s != 0 && s != 0x7f
}

pub fn wtermsig(st: i32) -> i32 {
    st & 0x7f
}

pub fn signame(sig: i32) -> &'static str {
    match sig {
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => "signal",
    }
}

/// A wait status in words.
pub fn status_str(st: i32) -> String {
    if wifexited(st) {
        format!("exited with status {}", wexitstatus(st))
    } else if wifsignaled(st) {
        let s = wtermsig(st);
        format!("was killed by signal {s} ({})", signame(s))
    } else {
        format!("has odd wait status {st:#x}")
    }
}

pub fn expect_exit(what: &str, st: i32, code: i32) -> Res {
    ensure!(
        wifexited(st) && wexitstatus(st) == code,
        "{what}: expected exit status {code}, child {} (raw {st:#x})",
        status_str(st)
    );
    Ok(())
}

pub fn expect_signal(what: &str, st: i32, sig: i32) -> Res {
    ensure!(
        wifsignaled(st) && wtermsig(st) == sig,
        "{what}: expected death by signal {sig} ({}), child {} (raw {st:#x})",
        signame(sig),
        status_str(st)
    );
    Ok(())
}

/// A child that does `f` (which should fault) must die by `sig`.
pub fn dies_by(what: &str, sig: i32, f: impl FnOnce()) -> Res {
    let st = in_child(|| {
        f();
        // Still alive: the access was allowed.
        99
    })?;
    if wifexited(st) && wexitstatus(st) == 99 {
        return Err(format!(
            "{what}: the access succeeded (expected death by {})",
            signame(sig)
        ));
    }
    expect_signal(what, st, sig)
}

// ---------------------------------------------------------------------------
// Deliberate memory accesses: inline assembly, so the compiler neither removes nor
// reorders them and no Rust reference ever points at a bad address.

/// Load one byte from `addr`.
pub fn peek(addr: usize) -> u8 {
    let v: u8;
    // SAFETY: a deliberate (possibly faulting) load; it touches no Rust-visible state.
    unsafe {
        asm!("mov {v}, byte ptr [{a}]", a = in(reg) addr, v = out(reg_byte) v,
             options(nostack, readonly, preserves_flags))
    };
    v
}

/// Store one byte at `addr`.
pub fn poke(addr: usize, v: u8) {
    // SAFETY: a deliberate (possibly faulting) store into memory no Rust reference
    // covers while it runs.
    unsafe {
        asm!("mov byte ptr [{a}], {v}", a = in(reg) addr, v = in(reg_byte) v,
             options(nostack, preserves_flags))
    };
}

/// Load a u64 from `addr`.
pub fn peek64(addr: usize) -> u64 {
    let v: u64;
    // SAFETY: as for `peek`.
    unsafe {
        asm!("mov {v}, qword ptr [{a}]", a = in(reg) addr, v = out(reg) v,
             options(nostack, readonly, preserves_flags))
    };
    v
}

/// Store a u64 at `addr`.
pub fn poke64(addr: usize, v: u64) {
    // SAFETY: as for `poke`.
    unsafe {
        asm!("mov qword ptr [{a}], {v}", a = in(reg) addr, v = in(reg) v,
             options(nostack, preserves_flags))
    };
}

// ---------------------------------------------------------------------------
// Memory.

/// `mmap` with every argument given.
pub fn mmap(
    addr: usize,
    len: usize,
    prot: usize,
    flags: usize,
    fd: usize,
    off: usize,
) -> Result<usize, Errno> {
    sc(nr::MMAP, &[addr, len, prot, flags, fd, off])
}

/// A private anonymous read/write mapping of `len` bytes.
pub fn anon(len: usize) -> Result<usize, String> {
    ok(
        "mmap anonymous",
        mmap(
            0,
            len,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            MAP_FAILED_FD,
            0,
        ),
    )
}

pub fn munmap(addr: usize, len: usize) -> Result<usize, Errno> {
    sc(nr::MUNMAP, &[addr, len])
}

pub fn mprotect(addr: usize, len: usize, prot: usize) -> Result<usize, Errno> {
    sc(nr::MPROTECT, &[addr, len, prot])
}

/// Fill `len` bytes at `addr` with `f(i)` (u64 words; `len` a multiple of 8).
pub fn fill64(addr: usize, len: usize, f: impl Fn(usize) -> u64) {
    for i in 0..len / 8 {
        poke64(addr + i * 8, f(i));
    }
}

/// Check `len` bytes at `addr` against `f(i)` (u64 words); the first mismatch.
pub fn check64(addr: usize, len: usize, f: impl Fn(usize) -> u64) -> Res {
    for i in 0..len / 8 {
        let v = peek64(addr + i * 8);
        if v != f(i) {
            return Err(format!(
                "word {i} (address {:#x}) holds {v:#x}, expected {:#x}",
                addr + i * 8,
                f(i)
            ));
        }
    }
    Ok(())
}

/// Every byte of `[addr, addr + len)` is zero.
pub fn all_zero(addr: usize, len: usize) -> Res {
    for i in (0..len).step_by(8) {
        let v = peek64(addr + i);
        if v != 0 {
            return Err(format!("non-zero bytes at {:#x}: {v:#x}", addr + i));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Time.

#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: i64,
}

pub fn now_ns(clock: usize) -> Result<u64, String> {
    let mut ts = Timespec::default();
    ok(
        "clock_gettime",
        sc(
            nr::CLOCK_GETTIME,
            &[clock, &mut ts as *mut Timespec as usize],
        ),
    )?;
    Ok(ts.sec as u64 * 1_000_000_000 + ts.nsec as u64)
}

/// Sleep `ms` milliseconds.
pub fn sleep_ms(ms: u64) {
    let ts = Timespec {
        sec: (ms / 1000) as i64,
        nsec: ((ms % 1000) * 1_000_000) as i64,
    };
    let _ = sc(nr::NANOSLEEP, &[&ts as *const Timespec as usize, 0]);
}

// ---------------------------------------------------------------------------
// Files.

/// `openat(AT_FDCWD, path, flags, mode)` without adding `O_CLOEXEC`.
pub fn open(path: &CStr, flags: usize, mode: usize) -> Result<i32, Errno> {
    sc(
        nr::OPENAT,
        &[sys::AT_FDCWD as isize as usize, cs(path), flags, mode],
    )
    .map(|f| f as i32)
}

/// As [`open`] with a run-time path.
pub fn open_s(path: &str, flags: usize, mode: usize) -> Result<i32, Errno> {
    let p = cstr(path);
    sc(
        nr::OPENAT,
        &[
            sys::AT_FDCWD as isize as usize,
            p.as_ptr() as usize,
            flags,
            mode,
        ],
    )
    .map(|f| f as i32)
}

pub fn close(fd: i32) -> Result<usize, Errno> {
    sc(nr::CLOSE, &[fd as isize as usize])
}

pub fn write(fd: i32, b: &[u8]) -> Result<usize, Errno> {
    sc(
        nr::WRITE,
        &[fd as isize as usize, b.as_ptr() as usize, b.len()],
    )
}

pub fn read(fd: i32, b: &mut [u8]) -> Result<usize, Errno> {
    sc(
        nr::READ,
        &[fd as isize as usize, b.as_mut_ptr() as usize, b.len()],
    )
}

pub fn lseek(fd: i32, off: i64, whence: usize) -> Result<usize, Errno> {
    sc(nr::LSEEK, &[fd as isize as usize, off as usize, whence])
}

/// Write all of `b` (a short write is an error here).
pub fn write_all(what: &str, fd: i32, b: &[u8]) -> Res {
    let n = ok(what, write(fd, b))?;
    ensure!(n == b.len(), "{what}: wrote {n} of {} bytes", b.len());
    Ok(())
}

/// Read until EOF.
pub fn read_to_end(fd: i32) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = read(fd, &mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// The contents of `path`.
pub fn read_path(path: &str) -> Result<Vec<u8>, String> {
    let fd = ok(&format!("open {path}"), open_s(path, sys::O_RDONLY, 0))?;
    let r = read_to_end(fd);
    let _ = close(fd);
    ok(&format!("read {path}"), r)
}

/// Create (truncate) `path` holding `data`.
pub fn write_path(path: &str, data: &[u8]) -> Res {
    let fd = ok(
        &format!("create {path}"),
        open_s(path, sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC, 0o644),
    )?;
    let r = write_all(&format!("write {path}"), fd, data);
    let _ = close(fd);
    r
}

pub fn fstat(fd: i32) -> Result<sys::Stat, Errno> {
    let mut st = sys::Stat::default();
    sc(
        nr::FSTAT,
        &[fd as isize as usize, &mut st as *mut sys::Stat as usize],
    )?;
    Ok(st)
}

pub fn stat_s(path: &str) -> Result<sys::Stat, Errno> {
    let p = cstr(path);
    let mut st = sys::Stat::default();
    sc(
        nr::STAT,
        &[p.as_ptr() as usize, &mut st as *mut sys::Stat as usize],
    )?;
    Ok(st)
}

pub fn lstat_s(path: &str) -> Result<sys::Stat, Errno> {
    let p = cstr(path);
    let mut st = sys::Stat::default();
    sc(
        nr::LSTAT,
        &[p.as_ptr() as usize, &mut st as *mut sys::Stat as usize],
    )?;
    Ok(st)
}

/// A path-taking call with one run-time path.
pub fn path1(n: usize, path: &str, rest: &[usize]) -> Result<usize, Errno> {
    let p = cstr(path);
    let mut a = alloc::vec![p.as_ptr() as usize];
    a.extend_from_slice(rest);
    sc(n, &a)
}

/// A path-taking call with two run-time paths.
pub fn path2(n: usize, a: &str, b: &str) -> Result<usize, Errno> {
    let (pa, pb) = (cstr(a), cstr(b));
    sc(n, &[pa.as_ptr() as usize, pb.as_ptr() as usize])
}

/// The value of `name:` / `name ` in a `/proc` file.
pub fn proc_field(text: &[u8], name: &str) -> Option<u64> {
    for line in text.split(|&c| c == b'\n') {
        let n = name.len();
        if line.len() > n
            && line.starts_with(name.as_bytes())
            && (line[n] == b':' || line[n] == b' ')
        {
            let digits: Vec<u8> = line[n + 1..]
                .iter()
                .copied()
                .skip_while(|c| *c == b' ' || *c == b'\t')
                .take_while(|c| c.is_ascii_digit())
                .collect();
            if digits.is_empty() {
                return None;
            }
            return Some(digits.iter().fold(0u64, |a, &c| a * 10 + (c - b'0') as u64));
        }
    }
    None
}

/// Counter `name` of `/proc/vmstat` (None on a system without it, as Linux for
/// AliasOS' own counters).
pub fn vmstat(name: &str) -> Option<u64> {
    proc_field(&read_path("/proc/vmstat").ok()?, name)
}

/// `MemFree` from `/proc/meminfo`, in KiB (None if `/proc` is not there).
pub fn mem_free_kib() -> Option<u64> {
    let fd = open(c"/proc/meminfo", sys::O_RDONLY, 0).ok()?;
    let text = read_to_end(fd).ok();
    let _ = close(fd);
    proc_field(&text?, "MemFree")
}

/// Whether `path` names something (`stat` succeeds).
pub fn exists(path: &str) -> bool {
    stat_s(path).is_ok()
}

/// The disk `/mnt` is on: the first of `disks` whose `st_rdev` is `/mnt`'s `st_dev`.
pub fn mnt_disk<'a>(disks: &[&'a str]) -> Option<&'a str> {
    let dev = stat_s("/mnt").ok()?.st_dev;
    disks
        .iter()
        .copied()
        .find(|d| stat_s(d).is_ok_and(|s| s.st_rdev == dev))
}

/// The second disk: the raw scratch disk of the `direct` cases (`/dev/vdb`, or
/// `/dev/nvme1n1` where `/mnt` is on `/dev/nvme0n1`: the test's disks are NVMe
/// namespaces; never an NVMe drive that merely exists, as on a Linux machine), or None.
pub fn scratch_disk() -> Option<&'static str> {
    if exists("/dev/vdb") {
        Some("/dev/vdb")
    } else if mnt_disk(&["/dev/nvme0n1"]).is_some() && exists("/dev/nvme1n1") {
        Some("/dev/nvme1n1")
    } else {
        None
    }
}
