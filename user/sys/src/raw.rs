//! The x86-64 `syscall` instruction: number in `rax`, arguments in
//! `rdi, rsi, rdx, r10, r8, r9`; `rcx` and `r11` are clobbered; the result
//! (or `-errno`) comes back in `rax`.

use core::arch::asm;

/// Linux x86-64 system call numbers.
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
    pub const IOCTL: usize = 16;
    pub const PREAD64: usize = 17;
    pub const PWRITE64: usize = 18;
    pub const PIPE: usize = 22;
    pub const FCNTL: usize = 72;
    pub const DUP: usize = 32;
    pub const DUP2: usize = 33;
    pub const NANOSLEEP: usize = 35;
    pub const GETPID: usize = 39;
    pub const CLONE: usize = 56;
    pub const FORK: usize = 57;
    pub const VFORK: usize = 58;
    pub const EXECVE: usize = 59;
    pub const EXIT: usize = 60;
    pub const WAIT4: usize = 61;
    pub const UNAME: usize = 63;
    pub const FSYNC: usize = 74;
    pub const FTRUNCATE: usize = 77;
    pub const GETCWD: usize = 79;
    pub const CHDIR: usize = 80;
    pub const RENAME: usize = 82;
    pub const MKDIR: usize = 83;
    pub const RMDIR: usize = 84;
    pub const UNLINK: usize = 87;
    pub const READLINK: usize = 89;
    pub const GETPPID: usize = 110;
    pub const SYNC: usize = 162;
    pub const MOUNT: usize = 165;
    pub const UMOUNT2: usize = 166;
    pub const REBOOT: usize = 169;
    pub const GETDENTS64: usize = 217;
    pub const CLOCK_GETTIME: usize = 228;
    pub const EXIT_GROUP: usize = 231;
    pub const OPENAT: usize = 257;
    pub const MKDIRAT: usize = 258;
    pub const NEWFSTATAT: usize = 262;
    pub const UNLINKAT: usize = 263;
    pub const RENAMEAT: usize = 264;
    pub const READLINKAT: usize = 267;
    pub const DUP3: usize = 292;
    pub const PIPE2: usize = 293;
    pub const SENDFILE: usize = 40;
    pub const COPY_FILE_RANGE: usize = 326;
    pub const PREADV2: usize = 327;
    pub const PWRITEV2: usize = 328;
}

/// # Safety
/// The caller must uphold the kernel's contract for system call `n`.
#[inline]
pub unsafe fn syscall0(n: usize) -> isize {
    let ret: isize;
    // SAFETY: `syscall` per the x86-64 ABI: arguments in the declared registers, rcx/r11
    // declared clobbered, no user stack use, no `nomem` (the compiler assumes memory may
    // change). What the call does to memory is the caller's contract (`# Safety` above).
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret,
             out("rcx") _, out("r11") _, options(nostack))
    };
    ret
}

/// # Safety
/// See [`syscall0`].
#[inline]
pub unsafe fn syscall1(n: usize, a1: usize) -> isize {
    let ret: isize;
    // SAFETY: `syscall` per the x86-64 ABI: arguments in the declared registers, rcx/r11
    // declared clobbered, no user stack use, no `nomem` (the compiler assumes memory may
    // change). What the call does to memory is the caller's contract (`# Safety` above).
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a1,
             out("rcx") _, out("r11") _, options(nostack))
    };
    ret
}

/// # Safety
/// See [`syscall0`].
#[inline]
pub unsafe fn syscall2(n: usize, a1: usize, a2: usize) -> isize {
    let ret: isize;
    // SAFETY: `syscall` per the x86-64 ABI: arguments in the declared registers, rcx/r11
    // declared clobbered, no user stack use, no `nomem` (the compiler assumes memory may
    // change). What the call does to memory is the caller's contract (`# Safety` above).
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a1, in("rsi") a2,
             out("rcx") _, out("r11") _, options(nostack))
    };
    ret
}

/// # Safety
/// See [`syscall0`].
#[inline]
pub unsafe fn syscall3(n: usize, a1: usize, a2: usize, a3: usize) -> isize {
    let ret: isize;
    // SAFETY: `syscall` per the x86-64 ABI: arguments in the declared registers, rcx/r11
    // declared clobbered, no user stack use, no `nomem` (the compiler assumes memory may
    // change). What the call does to memory is the caller's contract (`# Safety` above).
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a1, in("rsi") a2,
             in("rdx") a3, out("rcx") _, out("r11") _, options(nostack))
    };
    ret
}

/// # Safety
/// See [`syscall0`].
#[inline]
pub unsafe fn syscall4(n: usize, a1: usize, a2: usize, a3: usize, a4: usize) -> isize {
    let ret: isize;
    // SAFETY: `syscall` per the x86-64 ABI: arguments in the declared registers, rcx/r11
    // declared clobbered, no user stack use, no `nomem` (the compiler assumes memory may
    // change). What the call does to memory is the caller's contract (`# Safety` above).
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a1, in("rsi") a2,
             in("rdx") a3, in("r10") a4, out("rcx") _, out("r11") _, options(nostack))
    };
    ret
}

/// # Safety
/// See [`syscall0`].
#[inline]
pub unsafe fn syscall5(n: usize, a1: usize, a2: usize, a3: usize, a4: usize, a5: usize) -> isize {
    let ret: isize;
    // SAFETY: `syscall` per the x86-64 ABI: arguments in the declared registers, rcx/r11
    // declared clobbered, no user stack use, no `nomem` (the compiler assumes memory may
    // change). What the call does to memory is the caller's contract (`# Safety` above).
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a1, in("rsi") a2,
             in("rdx") a3, in("r10") a4, in("r8") a5, out("rcx") _, out("r11") _,
             options(nostack))
    };
    ret
}

/// # Safety
/// See [`syscall0`].
#[inline]
pub unsafe fn syscall6(
    n: usize,
    a1: usize,
    a2: usize,
    a3: usize,
    a4: usize,
    a5: usize,
    a6: usize,
) -> isize {
    let ret: isize;
    // SAFETY: `syscall` per the x86-64 ABI: arguments in the declared registers, rcx/r11
    // declared clobbered, no user stack use, no `nomem` (the compiler assumes memory may
    // change). What the call does to memory is the caller's contract (`# Safety` above).
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a1, in("rsi") a2,
             in("rdx") a3, in("r10") a4, in("r8") a5, in("r9") a6, out("rcx") _,
             out("r11") _, options(nostack))
    };
    ret
}
