//! User-memory safety: the kernel never reads or writes memory the caller did not offer
//! (kernel addresses, non-canonical ones, unmapped or read-only pages, wrapping ranges,
//! copy-on-write shares), and user code cannot reach the kernel or another process.

use alloc::format;

use sys::errno::*;

use crate::util::*;
use crate::{ensure, say};

#[rustfmt::skip]
pub const CASES: &[Case] = &[
    ("safety: write() from kernel addresses gives EFAULT", write_kernel),
    ("safety: write() from non-canonical addresses gives EFAULT", write_noncanonical),
    ("safety: write() from unmapped user memory gives EFAULT", write_unmapped),
    ("safety: address + length that wraps or leaves user space gives EFAULT", write_wrap),
    ("safety: read() into kernel memory gives EFAULT", read_kernel),
    ("safety: read() running into a read-only page stops there (short count)", read_short),
    ("safety: syscalls writing results to kernel addresses give EFAULT", outputs_to_kernel),
    ("safety: NULL and kernel path pointers give EFAULT", null_paths),
    ("safety: loads/stores/jumps to kernel and non-canonical addresses kill with SIGSEGV", touch_kernel),
    ("safety: no upper-half 512 GiB slot is readable from user mode", probe_upper_half),
    ("safety: the kernel does not write into read-only text", no_write_to_text),
    ("safety: kernel writes into COW-shared pages do not reach the parent", kernel_write_cow),
    ("safety: a child does not see the parent's stores after fork", secret_after_fork),
];

fn write_kernel() -> Res {
    for addr in [KERNEL_BASE, KERNEL_TEXT, 0xffff_ffff_ffff_f000] {
        want(
            &format!("write(1, {addr:#x}, 10)"),
            sc(nr::WRITE, &[1, addr, 10]),
            EFAULT,
        )?;
    }
    Ok(())
}

fn write_noncanonical() -> Res {
    for addr in [NONCANON_LOW, NONCANON_HIGH, 0x0000_8000_0000_0000] {
        want(
            &format!("write(1, {addr:#x}, 10)"),
            sc(nr::WRITE, &[1, addr, 10]),
            EFAULT,
        )?;
    }
    Ok(())
}

fn write_unmapped() -> Res {
    let a = anon(PAGE)?;
    ok("munmap", munmap(a, PAGE))?;
    for addr in [0, 0x1000, a] {
        want(
            &format!("write(1, {addr:#x}, 10)"),
            sc(nr::WRITE, &[1, addr, 10]),
            EFAULT,
        )?;
    }
    Ok(())
}

fn write_wrap() -> Res {
    let buf = [b'x'; 16];
    let p = buf.as_ptr() as usize;
    // p + len wraps around to 16.
    let len = usize::MAX - p + 17;
    want(
        &format!("write(1, {p:#x}, {len:#x})"),
        sc(nr::WRITE, &[1, p, len]),
        EFAULT,
    )?;
    want(
        "write(1, buf, usize::MAX)",
        sc(nr::WRITE, &[1, p, usize::MAX]),
        EFAULT,
    )?;
    // Ends past the top of user space without wrapping.
    let len = 0x0000_8000_0000_0000 - p + 16;
    want(
        &format!("write(1, {p:#x}, {len:#x})"),
        sc(nr::WRITE, &[1, p, len]),
        EFAULT,
    )?;
    Ok(())
}

fn read_kernel() -> Res {
    let fd = ok("open /dev/zero", open(c"/dev/zero", sys::O_RDONLY, 0))?;
    for addr in [KERNEL_BASE, KERNEL_TEXT, NONCANON_LOW, 0] {
        want(
            &format!("read(/dev/zero, {addr:#x}, 16)"),
            sc(nr::READ, &[fd as usize, addr, 16]),
            EFAULT,
        )?;
    }
    // The kernel must not have written anything it was not asked to.
    let mut b = [0xa5u8; 16];
    let n = ok("read(/dev/zero) into a real buffer", read(fd, &mut b))?;
    ensure!(n == 16 && b == [0; 16], "read {n} bytes: {b:?}");
    Ok(())
}

fn outputs_to_kernel() -> Res {
    for addr in [KERNEL_BASE, KERNEL_TEXT, NONCANON_LOW] {
        want(
            &format!("clock_gettime(MONOTONIC, {addr:#x})"),
            sc(nr::CLOCK_GETTIME, &[1, addr]),
            EFAULT,
        )?;
        want(&format!("uname({addr:#x})"), sc(nr::UNAME, &[addr]), EFAULT)?;
        want(
            &format!("getrandom({addr:#x}, 16, 0)"),
            sc(nr::GETRANDOM, &[addr, 16, 0]),
            EFAULT,
        )?;
        want(
            &format!("nanosleep({addr:#x}, NULL)"),
            sc(nr::NANOSLEEP, &[addr, 0]),
            EFAULT,
        )?;
        want(
            &format!("arch_prctl(ARCH_GET_FS, {addr:#x})"),
            sc(nr::ARCH_PRCTL, &[0x1003, addr]),
            EFAULT,
        )?;
        want(
            &format!("rt_sigprocmask(SIG_BLOCK, NULL, {addr:#x})"),
            sc(nr::RT_SIGPROCMASK, &[0, 0, addr, 8]),
            EFAULT,
        )?;
        want(
            &format!("rt_sigaction(SIGUSR1, NULL, {addr:#x})"),
            sc(nr::RT_SIGACTION, &[10, 0, addr, 8]),
            EFAULT,
        )?;
    }
    Ok(())
}

fn null_paths() -> Res {
    let at = sys::AT_FDCWD as isize as usize;
    for p in [0, KERNEL_BASE, NONCANON_LOW] {
        want(
            &format!("openat(AT_FDCWD, {p:#x})"),
            sc(nr::OPENAT, &[at, p, 0, 0]),
            EFAULT,
        )?;
        want(&format!("open({p:#x})"), sc(nr::OPEN, &[p, 0, 0]), EFAULT)?;
        let mut st = sys::Stat::default();
        want(
            &format!("stat({p:#x})"),
            sc(nr::STAT, &[p, &mut st as *mut sys::Stat as usize]),
            EFAULT,
        )?;
        want(
            &format!("mkdir({p:#x})"),
            sc(nr::MKDIR, &[p, 0o755]),
            EFAULT,
        )?;
        want(&format!("chdir({p:#x})"), sc(nr::CHDIR, &[p]), EFAULT)?;
        want(&format!("unlink({p:#x})"), sc(nr::UNLINK, &[p]), EFAULT)?;
    }
    // A good path with a bad stat buffer.
    want(
        "stat(\"/\", kernel buffer)",
        sc(nr::STAT, &[cs(c"/"), KERNEL_BASE]),
        EFAULT,
    )?;
    Ok(())
}

fn touch_kernel() -> Res {
    for addr in [KERNEL_BASE, KERNEL_TEXT, KERNEL_BASE + 0x1000] {
        dies_by(&format!("load from {addr:#x}"), SIGSEGV, || {
            peek(addr);
        })?;
        dies_by(&format!("store to {addr:#x}"), SIGSEGV, || poke(addr, 0))?;
    }
    for addr in [NONCANON_LOW, NONCANON_HIGH] {
        dies_by(
            &format!("load from non-canonical {addr:#x}"),
            SIGSEGV,
            || {
                peek(addr);
            },
        )?;
    }
    dies_by("jump to the kernel base", SIGSEGV, || {
        // SAFETY: runs in a child that must die at the jump.
        unsafe { core::arch::asm!("jmp {}", in(reg) KERNEL_BASE) }
    })?;
    dies_by("call to the kernel text", SIGSEGV, || {
        // SAFETY: as above.
        unsafe { core::arch::asm!("call {}", in(reg) KERNEL_TEXT) }
    })
}

fn probe_upper_half() -> Res {
    // Every level-4 slot of the upper half, at offset 0: the kernel image, its heap and the
    // physical-memory map all start at such a slot (the bootloader places them by slot).
    let mut readable = alloc::vec::Vec::new();
    for slot in 256..512usize {
        let addr = 0xffff_0000_0000_0000 | (slot << 39);
        let st = in_child(|| {
            peek(addr);
            99
        })?;
        if wifexited(st) && wexitstatus(st) == 99 {
            readable.push(addr);
        } else {
            expect_signal(&format!("load from {addr:#x}"), st, SIGSEGV)?;
        }
    }
    ensure!(readable.is_empty(), "user mode could read {readable:#x?}");
    Ok(())
}

fn no_write_to_text() -> Res {
    let text = no_write_to_text as *const () as usize;
    let before = [peek64(text), peek64(text + 8)];
    want(
        "clock_gettime into our own code",
        sc(nr::CLOCK_GETTIME, &[1, text]),
        EFAULT,
    )?;
    want(
        "getrandom into our own code",
        sc(nr::GETRANDOM, &[text, 16, 0]),
        EFAULT,
    )?;
    ensure!(
        [peek64(text), peek64(text + 8)] == before,
        "the code bytes changed"
    );
    dies_by("store into our own code", SIGSEGV, || poke(text, 0xcc))
}

fn kernel_write_cow() -> Res {
    let a = anon(2 * PAGE)?;
    fill64(a, 2 * PAGE, |i| 0x0101_0101_0101_0101 * (i as u64 & 0xff));
    let stack = [0x4242_4242_4242_4242u64; 64];
    let s = stack.as_ptr() as usize;
    let pid = fork()?;
    if pid == 0 {
        // The kernel stores into pages shared copy-on-write with the parent.
        let _ = sc(nr::GETRANDOM, &[a + 100, 2000, 0]);
        let _ = sc(nr::CLOCK_GETTIME, &[1, a + PAGE + 8]);
        let _ = sc(nr::UNAME, &[s]);
        exit(0);
    }
    expect_exit("child", wait_pid(pid)?, 0)?;
    check64(a, 2 * PAGE, |i| 0x0101_0101_0101_0101 * (i as u64 & 0xff))
        .map_err(|e| format!("parent's buffer after the child's getrandom/clock_gettime: {e}"))?;
    for (i, w) in stack.iter().enumerate() {
        let v = peek64(s + i * 8);
        ensure!(
            v == 0x4242_4242_4242_4242,
            "parent's stack word {i} is {v:#x} after the child's uname ({w:#x})"
        );
    }
    Ok(())
}

fn secret_after_fork() -> Res {
    let a = anon(PAGE)?;
    poke64(a, 0x0123);
    static mut SECRET: u64 = 0x0123;
    let g = &raw mut SECRET as usize;
    let pid = fork()?;
    if pid == 0 {
        // Watch for 300 ms while the parent stores its secret.
        for _ in 0..30 {
            if peek64(a) != 0x0123 || peek64(g) != 0x0123 {
                say!("#   child saw {:#x} / {:#x}\n", peek64(a), peek64(g));
                exit(1);
            }
            sleep_ms(10);
        }
        exit(0);
    }
    poke64(a, 0x5ec2_e75e_c2e7);
    poke64(g, 0x5ec2_e75e_c2e7);
    expect_exit(
        "child watching the parent's memory (1: it saw the secret)",
        wait_pid(pid)?,
        0,
    )
}

fn read_short() -> Res {
    // Two pages: the first writable, the second read-only. read() may fill the first and
    // must stop there: a short count, and the read-only page untouched.
    let a = anon(2 * PAGE)?;
    poke(a + PAGE, 0x77);
    ok(
        "mprotect second page read-only",
        mprotect(a + PAGE, PAGE, PROT_READ),
    )?;
    fill64(a, PAGE, |_| u64::MAX);
    let fd = ok("open /dev/zero", open(c"/dev/zero", sys::O_RDONLY, 0))?;
    let n = ok(
        "read(/dev/zero, 8192) across into the read-only page",
        sc(nr::READ, &[fd as usize, a, 2 * PAGE]),
    )?;
    ensure!(
        n == PAGE,
        "read returned {n}, expected the {PAGE} bytes that fit"
    );
    all_zero(a, PAGE).map_err(|e| format!("first page: {e}"))?;
    ensure!(peek(a + PAGE) == 0x77, "the read-only page changed");
    want(
        "read(/dev/zero) into the read-only page only",
        sc(nr::READ, &[fd as usize, a + PAGE, 16]),
        EFAULT,
    )?;
    ensure!(peek(a + PAGE) == 0x77, "the read-only page changed");
    Ok(())
}
