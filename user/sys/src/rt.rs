//! Process runtime: entry point, argv/envp, panic handler and the C memory
//! functions `core` calls (`memcpy`, `memmove`, `memset`, `memcmp`, `bcmp`, `strlen`).
//!
//! A tool's `main.rs` is `#![no_std] #![no_main]` and ends with
//! `sys::entry!(main);` where `fn main() -> i32`. The kernel (Linux or AliasOS)
//! enters `_start` with `rsp` pointing at `argc`, then `argv[0..argc]`, NULL,
//! `envp[..]`, NULL, auxv.

use core::ffi::{CStr, c_char, c_void};
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

static ARGC: AtomicUsize = AtomicUsize::new(0);
static ARGV: AtomicPtr<*const c_char> = AtomicPtr::new(core::ptr::null_mut());
static ENVP: AtomicPtr<*const c_char> = AtomicPtr::new(core::ptr::null_mut());

/// Define the process entry `_start` calling `$main: fn() -> i32`; the return
/// value becomes the exit status (after flushing stdout).
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        #[unsafe(naked)]
        pub unsafe extern "C" fn _start() -> ! {
            core::arch::naked_asm!(
                "xor ebp, ebp",
                "mov rdi, rsp",
                "and rsp, -16",
                "call {start}",
                "ud2",
                start = sym $crate::rt::start_rust,
            )
        }

        #[unsafe(no_mangle)]
        pub extern "Rust" fn __aliasos_user_main() -> i32 {
            $main()
        }
    };
}

unsafe extern "Rust" {
    safe fn __aliasos_user_main() -> i32;
}

/// Called by `_start` with the initial stack pointer.
///
/// # Safety
/// `sp` must be the initial process stack as laid out by the kernel.
pub unsafe extern "C" fn start_rust(sp: *const usize) -> ! {
    // SAFETY: per the contract `sp` is the kernel-built initial stack: argc, then argc argv
    // pointers and a NULL, then envp; all reads and `add`s stay inside that block.
    unsafe {
        let argc = *sp;
        let argv = sp.add(1) as *mut *const c_char;
        let envp = argv.add(argc + 1);
        ARGC.store(argc, Ordering::Relaxed);
        ARGV.store(argv, Ordering::Relaxed);
        ENVP.store(envp, Ordering::Relaxed);
    }
    let code = __aliasos_user_main();
    exit(code)
}

/// Flush stdout and exit the process.
pub fn exit(code: i32) -> ! {
    crate::io::flush();
    crate::exit_group(code)
}

/// Number of arguments including `argv[0]`.
pub fn argc() -> usize {
    ARGC.load(Ordering::Relaxed)
}

/// `argv[i]`.
pub fn arg(i: usize) -> Option<&'static CStr> {
    if i >= argc() {
        return None;
    }
    // SAFETY: `i < argc`, so this reads one of the argv slots `start_rust` recorded; a non-NULL
    // entry is a NUL-terminated string on the initial stack, which lives as long as the process.
    unsafe {
        let p = *ARGV.load(Ordering::Relaxed).add(i);
        if p.is_null() {
            None
        } else {
            Some(CStr::from_ptr(p))
        }
    }
}

/// Iterator over all arguments (including `argv[0]`).
pub fn args() -> impl Iterator<Item = &'static CStr> {
    (0..argc()).filter_map(arg)
}

/// The raw NULL-terminated environment array (for `execve`).
pub fn environ() -> *const *const c_char {
    ENVP.load(Ordering::Relaxed)
}

/// Iterator over `NAME=value` environment strings.
pub fn env_vars() -> impl Iterator<Item = &'static [u8]> {
    let mut p = environ();
    // SAFETY: `p` walks the kernel-built envp array and stops at its NULL (or if `p` is NULL);
    // each entry is a NUL-terminated string on the initial stack, alive as long as the process.
    core::iter::from_fn(move || unsafe {
        if p.is_null() || (*p).is_null() {
            return None;
        }
        let s = CStr::from_ptr(*p).to_bytes();
        p = p.add(1);
        Some(s)
    })
}

/// Value of environment variable `name`.
pub fn env(name: &str) -> Option<&'static [u8]> {
    let name = name.as_bytes();
    env_vars().find_map(|v| {
        if v.len() > name.len() && v.starts_with(name) && v[name.len()] == b'=' {
            Some(&v[name.len() + 1..])
        } else {
            None
        }
    })
}

/// The program name for messages: the basename of `argv[0]`.
pub fn prog_name() -> &'static str {
    arg(0)
        .map(|a| crate::basename(a.to_bytes()))
        .and_then(|b| core::str::from_utf8(b).ok())
        .unwrap_or("?")
}

#[cfg(not(test))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    crate::io::flush();
    crate::eprintln!("{}: panic: {}", prog_name(), info);
    crate::exit_group(101)
}

// ---------------------------------------------------------------------------
// C memory functions. On x86_64-unknown-linux-gnu, compiler_builtins leaves
// these to libc, which we do not link.

/// # Safety
/// C `memcpy` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void {
    // SAFETY: by the C `memcpy` contract `dst`/`src` are valid for `n` bytes and do not overlap;
    // `rep movsb` copies exactly `n` bytes forwards (DF is clear per the ABI); rcx/rdi/rsi are
    // declared.
    unsafe {
        core::arch::asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _,
                         inout("rsi") src => _, options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// C `memmove` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void {
    let (dst, src) = (dst as *mut u8, src as *const u8);
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // No harmful overlap: copy forwards.
        // SAFETY: `dst - src >= n` (wrapping): `dst` is below `src` or `n`+ bytes above it, so
        // `memcpy`'s forward byte copy never overwrites an unread byte; both valid for `n` bytes.
        unsafe { memcpy(dst.cast(), src.cast(), n) }
    } else {
        // SAFETY: here `n > 0` and `dst` lies in `src..src+n`, so copy downwards from the last
        // byte (std); both ranges are valid for `n` bytes (C contract); cld restores DF (ABI).
        unsafe {
            core::arch::asm!("std", "rep movsb", "cld",
                             inout("rcx") n => _, inout("rdi") dst.add(n).wrapping_sub(1) => _,
                             inout("rsi") src.add(n).wrapping_sub(1) => _, options(nostack));
        }
        dst.cast()
    }
}

/// # Safety
/// C `memset` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut c_void, c: i32, n: usize) -> *mut c_void {
    // SAFETY: by the C `memset` contract `dst` is valid for `n` bytes of writes; `rep stosb`
    // stores exactly `n` bytes forwards (DF is clear per the ABI); rcx/rdi are declared.
    unsafe {
        core::arch::asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _,
                         in("al") c as u8, options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// C `memcmp` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const c_void, b: *const c_void, n: usize) -> i32 {
    let (a, b) = (a as *const u8, b as *const u8);
    let mut i = 0;
    while i < n {
        // SAFETY: `i < n`, and by the C `memcmp` contract `a` and `b` are valid for `n` bytes.
        let (x, y) = unsafe {
            (
                core::ptr::read_volatile(a.add(i)),
                core::ptr::read_volatile(b.add(i)),
            )
        };
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

/// # Safety
/// C `bcmp` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const c_void, b: *const c_void, n: usize) -> i32 {
    // SAFETY: `bcmp` has `memcmp`'s contract: `a` and `b` are valid for `n` bytes of reads.
    unsafe { memcmp(a, b, n) }
}

/// # Safety
/// C `strlen` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strlen(s: *const c_char) -> usize {
    let mut n = 0;
    // SAFETY: by the C `strlen` contract `s` is NUL-terminated, so every byte read, up to and
    // including the NUL, is in bounds.
    unsafe {
        while core::ptr::read_volatile(s.add(n)) != 0 {
            n += 1;
        }
    }
    n
}

/// The precompiled `alloc`/`core` for the host target reference the unwinding
/// personality routine from their unwind tables; with `panic = "abort"` it is
/// never called.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}

/// Landing pads in the precompiled `alloc` call this; nothing ever unwinds
/// (`panic = "abort"`), so reaching it is a bug.
#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_Resume() -> ! {
    crate::exit_group(134)
}
