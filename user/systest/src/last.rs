//! Cases that can bring the whole kernel down rather than one process (bad input to the
//! ELF loader, odd register states at syscall and exception entry/exit). A kernel panic
//! ends every later case too, so these run after everything else; the ones that have
//! already panicked AliasOS come at the very end.

use alloc::format;
use core::ffi::CStr;

use sys::errno::*;

use crate::ensure;
use crate::process::execve;
use crate::util::*;

#[rustfmt::skip]
pub const CASES: &[Case] = &[
    ("last: syscall with rsp = 0 / kernel / non-canonical returns normally", syscall_bad_rsp),
    ("last: a push through a bad rsp kills only the process (SIGBUS/SIGSEGV)", fault_bad_rsp),
    ("last: a syscall at the top of user space (return RIP non-canonical) only kills the process", sysret_noncanonical),
    ("last: execve of an ELF with e_phnum 65535 gives ENOEXEC", elf_phnum),
    ("last: execve of an ELF with e_phentsize 1 gives ENOEXEC", elf_phentsize),
    ("last: execve of an ELF with e_phoff past the end gives ENOEXEC", elf_phoff),
    ("last: execve of a truncated ELF (first 100 bytes) gives ENOEXEC", elf_truncated),
];

fn syscall_bad_rsp() -> Res {
    for sp in [0usize, KERNEL_BASE + 0x1000, NONCANON_LOW] {
        let st = in_child(|| {
            // SAFETY: no stack is used between loading rsp and exit_group.
            unsafe {
                core::arch::asm!(
                    "mov rsp, {sp}",
                    "mov eax, 39",
                    "syscall",
                    "mov edi, 42",
                    "mov eax, 231",
                    "syscall",
                    "ud2",
                    sp = in(reg) sp,
                    options(noreturn)
                )
            }
        })?;
        expect_exit(
            &format!("getpid + exit_group(42) with rsp = {sp:#x}"),
            st,
            42,
        )?;
    }
    Ok(())
}

fn push_with_rsp(sp: usize) {
    // SAFETY: runs in a child that must die at the push.
    unsafe {
        core::arch::asm!("mov rsp, {sp}", "push rax", "ud2", sp = in(reg) sp, options(noreturn))
    }
}

fn fault_bad_rsp() -> Res {
    // A non-canonical stack address raises #SS on hardware (Linux: SIGBUS) but #GP under
    // QEMU's TCG (SIGSEGV): either signal will do, as long as only the process dies.
    let st = in_child(|| {
        push_with_rsp(NONCANON_LOW);
        99
    })?;
    if expect_signal("push with rsp non-canonical", st, SIGBUS).is_err() {
        expect_signal("push with rsp non-canonical", st, SIGSEGV)?;
    }
    dies_by("push with rsp in the kernel", SIGSEGV, || {
        push_with_rsp(KERNEL_BASE + 0x1000)
    })?;
    dies_by("push with rsp = 0", SIGSEGV, || push_with_rsp(0))
}

fn sysret_noncanonical() -> Res {
    // `mov eax, 39; syscall` ending exactly at 0x8000_0000_0000: the syscall returns to
    // a non-canonical RIP. Linux refuses to map the last page at all.
    let last = 0x7fff_ffff_f000usize;
    let r = mmap(
        last,
        PAGE,
        PROT_READ | PROT_WRITE | PROT_EXEC,
        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
        MAP_FAILED_FD,
        0,
    );
    match r {
        Err(ENOMEM) | Err(EINVAL) => return Ok(()),
        Err(e) => return Err(format!("mmap of the last user page: {}", ename(e))),
        Ok(a) => ensure!(a == last, "MAP_FIXED returned {a:#x}"),
    }
    let code = [0xb8u8, 39, 0, 0, 0, 0x0f, 0x05];
    let at = 0x8000_0000_0000usize - code.len();
    for (i, &b) in code.iter().enumerate() {
        poke(at + i, b);
    }
    let st = in_child(|| {
        // SAFETY: jumps to the code above; the child never comes back.
        unsafe { core::arch::asm!("jmp {}", in(reg) at, options(noreturn)) }
    })?;
    crate::say!("#   the last user page can be mapped (Linux refuses it)\n");
    expect_signal("returning to RIP 0x800000000000", st, SIGSEGV)
}

fn exec_bad(path: &CStr) -> Res {
    let e = execve(path, &[c"bad"], &[]);
    ensure!(
        e == ENOEXEC,
        "execve({}): expected ENOEXEC, got {}",
        path.to_str().unwrap_or("?"),
        ename(e)
    );
    Ok(())
}

fn elf_phentsize() -> Res {
    exec_bad(c"/mnt/data/phentsize.elf")
}

fn elf_phnum() -> Res {
    exec_bad(c"/mnt/data/phnum.elf")
}

fn elf_phoff() -> Res {
    exec_bad(c"/mnt/data/phoff.elf")
}

fn elf_truncated() -> Res {
    exec_bad(c"/mnt/data/truncated.elf")
}
