//! Memory: brk, anonymous mmap, munmap, mprotect, madvise, copy-on-write after fork.

use alloc::format;

use sys::errno::*;

use crate::ensure;
use crate::util::*;

#[rustfmt::skip]
pub const CASES: &[Case] = &[
    ("memory: brk grows and shrinks; new memory reads zero", brk_cases),
    ("memory: anonymous private mmap is zeroed and writable; munmap then access -> SIGSEGV", mmap_anon),
    ("memory: munmap of the middle page splits the mapping", munmap_middle),
    ("memory: MAP_FIXED replaces a mapping; a free hint is honoured", mmap_fixed),
    ("memory: mprotect read-only: loads work, a store kills the child (SIGSEGV)", mprotect_ro),
    ("memory: mprotect PROT_NONE then back keeps the contents", mprotect_none_keeps),
    ("memory: mmap/munmap/mprotect/madvise/msync argument errors", mmap_errors),
    ("memory: mmap and mprotect accept PROT_SEM like Linux", prot_sem),
    ("memory: COW after fork: parent and child each see their own writes", cow_basic),
    ("memory: COW of an 8 MiB region, child rewrites half", cow_big),
    ("memory: read-only page at fork, child makes it writable: no leak to the parent", cow_mprotect_after_fork),
    ("memory: MAP_SHARED|MAP_ANONYMOUS is shared with a forked child", shared_anon),
    ("memory: 200 fork+COW+exit+wait cycles do not leak memory", fork_many),
    ("memory: MADV_DONTNEED makes private anonymous pages read zero", madv_dontneed),
    ("memory: 64 MiB anonymous mapping, one store per page, munmap", big_mapping),
    ("memory: the stack grows to 4 MiB below the stack pointer; 16 MiB below is SIGSEGV", stack_growth),
    ("memory: no execution without PROT_EXEC (anonymous memory, the stack)", nx),
];

fn brk_cases() -> Res {
    let b0 = sc(nr::BRK, &[0]).unwrap_or(0);
    ensure!(b0 != 0, "brk(0) returned 0");
    let len = 100_000;
    let b1 = sc(nr::BRK, &[b0 + len]).unwrap_or(0);
    ensure!(b1 == b0 + len, "brk({:#x}) returned {b1:#x}", b0 + len);
    let start = (b0 + 7) & !7;
    all_zero(start, (b0 + len - start) & !7).map_err(|e| format!("fresh heap: {e}"))?;
    for i in (0..len).step_by(PAGE) {
        poke(b0 + i, 0x5a);
    }
    poke(b0 + len - 1, 0x5a);
    let b2 = sc(nr::BRK, &[b0]).unwrap_or(0);
    ensure!(b2 == b0, "shrinking brk to {b0:#x} returned {b2:#x}");
    // The released pages are gone: touching them kills a child.
    let probe = (b0 + PAGE + PAGE - 1) & !(PAGE - 1);
    dies_by("store above a shrunk break", SIGSEGV, || {
        poke(probe + PAGE, 1)
    })?;
    let b3 = sc(nr::BRK, &[b0 + len]).unwrap_or(0);
    ensure!(b3 == b0 + len, "regrowing brk returned {b3:#x}");
    // Everything above the old break (page-rounded) must be zero again.
    let first_fresh = (b0 + PAGE - 1) & !(PAGE - 1);
    all_zero(first_fresh, (b0 + len - first_fresh) & !7)
        .map_err(|e| format!("regrown heap: {e}"))?;
    // Below the initial break, or absurdly far: brk leaves the break alone.
    let b4 = sc(nr::BRK, &[b0 - 0x10_0000]).unwrap_or(0);
    ensure!(
        b4 == b0 + len,
        "brk below its start returned {b4:#x}, expected {:#x}",
        b0 + len
    );
    let b5 = sc(nr::BRK, &[0x7fff_0000_0000]).unwrap_or(0);
    ensure!(
        b5 == b0 + len,
        "brk(128 TiB) returned {b5:#x}, expected {:#x}",
        b0 + len
    );
    ensure!(sc(nr::BRK, &[b0]).unwrap_or(0) == b0, "final shrink failed");
    Ok(())
}

fn mmap_anon() -> Res {
    let len = 16 * PAGE;
    let a = anon(len)?;
    ensure!(a % PAGE == 0, "mmap returned unaligned {a:#x}");
    all_zero(a, len)?;
    fill64(a, len, |i| i as u64 ^ 0xdead_beef);
    check64(a, len, |i| i as u64 ^ 0xdead_beef)?;
    ok("munmap", munmap(a, len))?;
    dies_by("load after munmap", SIGSEGV, || {
        peek(a);
    })?;
    dies_by("store after munmap", SIGSEGV, || poke(a + 5 * PAGE, 1))?;
    // Remapped memory is zero again (nothing of the old contents leaks).
    let b = anon(len)?;
    all_zero(b, len)
}

fn munmap_middle() -> Res {
    let a = anon(3 * PAGE)?;
    poke(a, 1);
    poke(a + PAGE, 2);
    poke(a + 2 * PAGE, 3);
    ok("munmap middle page", munmap(a + PAGE, PAGE))?;
    ensure!(
        peek(a) == 1 && peek(a + 2 * PAGE) == 3,
        "neighbours of the hole changed"
    );
    dies_by("load from the hole", SIGSEGV, || {
        peek(a + PAGE);
    })?;
    // munmap of a range that is already (partly) free is fine.
    ok("munmap over a hole", munmap(a, 3 * PAGE))?;
    ok("munmap of nothing", munmap(a, 3 * PAGE)).map(|_| ())
}

fn mmap_fixed() -> Res {
    let a = anon(2 * PAGE)?;
    poke(a, 0x11);
    poke(a + PAGE, 0x22);
    let r = ok(
        "mmap MAP_FIXED over the second page",
        mmap(
            a + PAGE,
            PAGE,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
            MAP_FAILED_FD,
            0,
        ),
    )?;
    ensure!(
        r == a + PAGE,
        "MAP_FIXED returned {r:#x}, asked for {:#x}",
        a + PAGE
    );
    ensure!(peek(a) == 0x11, "first page changed");
    ensure!(
        peek(a + PAGE) == 0,
        "the replaced page still holds {:#x}",
        peek(a + PAGE)
    );
    ok("munmap", munmap(a, 2 * PAGE))?;
    // The hole just freed is a free hint: Linux uses it.
    let r = ok(
        "mmap with a free hint",
        mmap(
            a,
            PAGE,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            MAP_FAILED_FD,
            0,
        ),
    )?;
    ensure!(r == a, "hint {a:#x} not honoured: got {r:#x}");
    Ok(())
}

fn mprotect_ro() -> Res {
    let a = anon(2 * PAGE)?;
    poke(a, 0x77);
    ok("mprotect(PROT_READ)", mprotect(a, 2 * PAGE, PROT_READ))?;
    ensure!(peek(a) == 0x77, "contents changed by mprotect");
    ensure!(peek(a + PAGE) == 0, "untouched read-only page is not zero");
    dies_by(
        "store to a read-only page (touched before)",
        SIGSEGV,
        || poke(a, 1),
    )?;
    dies_by("store to a read-only page (never touched)", SIGSEGV, || {
        poke(a + PAGE, 1)
    })?;
    // The kernel must not write there for us either.
    want(
        "clock_gettime into a read-only page",
        sc(nr::CLOCK_GETTIME, &[1, a]),
        EFAULT,
    )?;
    ensure!(
        peek(a) == 0x77,
        "clock_gettime wrote into the read-only page"
    );
    // Writable again.
    ok(
        "mprotect(PROT_READ|PROT_WRITE)",
        mprotect(a, 2 * PAGE, PROT_READ | PROT_WRITE),
    )?;
    poke(a, 0x78);
    ensure!(peek(a) == 0x78, "store after re-enabling writes lost");
    Ok(())
}

fn mprotect_none_keeps() -> Res {
    let a = anon(2 * PAGE)?;
    fill64(a, 2 * PAGE, |i| 0x1111_0000 + i as u64);
    ok("mprotect(PROT_NONE)", mprotect(a, 2 * PAGE, PROT_NONE))?;
    dies_by("load from PROT_NONE", SIGSEGV, || {
        peek(a);
    })?;
    ok(
        "mprotect back to read/write",
        mprotect(a, 2 * PAGE, PROT_READ | PROT_WRITE),
    )?;
    check64(a, 2 * PAGE, |i| 0x1111_0000 + i as u64)
        .map_err(|e| format!("after PROT_NONE and back: {e}"))
}

fn mmap_errors() -> Res {
    let anon_flags = MAP_PRIVATE | MAP_ANONYMOUS;
    let rw = PROT_READ | PROT_WRITE;
    want(
        "mmap len 0",
        mmap(0, 0, rw, anon_flags, MAP_FAILED_FD, 0),
        EINVAL,
    )?;
    want(
        "mmap without SHARED or PRIVATE",
        mmap(0, PAGE, rw, MAP_ANONYMOUS, MAP_FAILED_FD, 0),
        EINVAL,
    )?;
    want(
        "mmap MAP_FIXED at an unaligned address",
        mmap(
            0x1000_0001,
            PAGE,
            rw,
            anon_flags | MAP_FIXED,
            MAP_FAILED_FD,
            0,
        ),
        EINVAL,
    )?;
    want(
        "mmap len 2^47",
        mmap(0, 1 << 47, rw, anon_flags, MAP_FAILED_FD, 0),
        ENOMEM,
    )?;
    want(
        "mmap of fd -1 without MAP_ANONYMOUS",
        mmap(0, PAGE, rw, MAP_PRIVATE, MAP_FAILED_FD, 0),
        EBADF,
    )?;
    want(
        "mmap of fd 999 without MAP_ANONYMOUS",
        mmap(0, PAGE, rw, MAP_PRIVATE, 999, 0),
        EBADF,
    )?;
    want("munmap unaligned", munmap(0x1000_0001, PAGE), EINVAL)?;
    want("munmap len 0", munmap(0x1000_0000, 0), EINVAL)?;
    want("munmap of kernel memory", munmap(KERNEL_BASE, PAGE), EINVAL)?;
    let a = anon(PAGE)?;
    want("mprotect with prot 0x10", mprotect(a, PAGE, 0x10), EINVAL)?;
    want(
        "mprotect unaligned",
        mprotect(a + 1, PAGE, PROT_READ),
        EINVAL,
    )?;
    ok("munmap", munmap(a, PAGE))?;
    want(
        "mprotect of unmapped memory",
        mprotect(a, PAGE, PROT_READ),
        ENOMEM,
    )?;
    ok("mprotect len 0", mprotect(a, 0, PROT_READ))?;
    let b = anon(PAGE)?;
    want(
        "madvise advice 9999",
        sc(nr::MADVISE, &[b, PAGE, 9999]),
        EINVAL,
    )?;
    want(
        "madvise unaligned",
        sc(nr::MADVISE, &[b + 1, PAGE, 4]),
        EINVAL,
    )?;
    want("msync unaligned", sc(nr::MSYNC, &[b + 1, PAGE, 4]), EINVAL)?;
    want(
        "msync MS_ASYNC|MS_SYNC",
        sc(nr::MSYNC, &[b, PAGE, 1 | 4]),
        EINVAL,
    )?;
    want(
        "msync flags 0x100",
        sc(nr::MSYNC, &[b, PAGE, 0x100]),
        EINVAL,
    )?;
    ok(
        "msync MS_SYNC of anonymous memory",
        sc(nr::MSYNC, &[b, PAGE, 4]),
    )?;
    ok("munmap", munmap(b, PAGE))?;
    want(
        "msync of unmapped memory",
        sc(nr::MSYNC, &[b, PAGE, 4]),
        ENOMEM,
    )?;
    Ok(())
}

fn prot_sem() -> Res {
    // PROT_SEM (0x8) is a valid protection bit on x86-64 Linux (arch_validate_prot).
    let a = ok(
        "mmap(PROT_READ|PROT_WRITE|PROT_SEM)",
        mmap(
            0,
            PAGE,
            PROT_READ | PROT_WRITE | 8,
            MAP_PRIVATE | MAP_ANONYMOUS,
            MAP_FAILED_FD,
            0,
        ),
    )?;
    ok(
        "mprotect(PROT_READ|PROT_SEM)",
        mprotect(a, PAGE, PROT_READ | 8),
    )?;
    Ok(())
}

fn cow_basic() -> Res {
    let len = 4 * PAGE;
    let a = anon(len)?;
    fill64(a, len, |i| 0xaaaa_0000_0000 + i as u64);
    // A static and a stack value too: every kind of private page is copy-on-write.
    static mut STATIC_WORD: u64 = 0x5757;
    let stat = &raw mut STATIC_WORD as usize;
    poke64(stat, 0x5151);
    let stack = [0x1234_5678u64; 4];
    let stack_addr = stack.as_ptr() as usize;
    let pid = fork()?;
    if pid == 0 {
        let r = (|| -> Res {
            check64(a, len, |i| 0xaaaa_0000_0000 + i as u64)
                .map_err(|e| format!("child before its writes: {e}"))?;
            fill64(a, len, |i| 0xcccc_0000_0000 + i as u64);
            poke64(stat, 0xc1c1);
            poke64(stack_addr, 0xc2c2);
            check64(a, len, |i| 0xcccc_0000_0000 + i as u64)
                .map_err(|e| format!("child after its writes: {e}"))?;
            ensure!(
                peek64(stat) == 0xc1c1 && peek64(stack_addr) == 0xc2c2,
                "child's own static/stack stores lost"
            );
            Ok(())
        })();
        if let Err(e) = r {
            crate::say!("#   child: {e}\n");
            exit(1);
        }
        exit(0);
    }
    let st = wait_pid(pid)?;
    expect_exit("child", st, 0)?;
    check64(a, len, |i| 0xaaaa_0000_0000 + i as u64)
        .map_err(|e| format!("parent after the child's writes: {e}"))?;
    ensure!(
        peek64(stat) == 0x5151,
        "parent's static changed to {:#x}",
        peek64(stat)
    );
    ensure!(
        peek64(stack_addr) == 0x1234_5678,
        "parent's stack changed to {:#x}",
        peek64(stack_addr)
    );
    // The parent writes now (its pages may have been kept as the only reference).
    fill64(a, len, |i| 0xbbbb_0000_0000 + i as u64);
    check64(a, len, |i| 0xbbbb_0000_0000 + i as u64)
}

fn cow_big() -> Res {
    let len = 8 << 20;
    let a = anon(len)?;
    let pat = |i: usize| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    fill64(a, len, pat);
    let free_before = mem_free_kib();
    let pid = fork()?;
    if pid == 0 {
        let half = len / 2;
        fill64(a, half, |i| !pat(i));
        let r = check64(a, half, |i| !pat(i))
            .and_then(|_| check64(a + half, half, |i| pat(i + half / 8)));
        if let Err(e) = r {
            crate::say!("#   child's view: {e}\n");
            exit(1);
        }
        exit(0);
    }
    expect_exit("child", wait_pid(pid)?, 0)?;
    check64(a, len, pat).map_err(|e| format!("parent after the child: {e}"))?;
    ok("munmap", munmap(a, len))?;
    if let (Some(b), Some(a)) = (free_before, mem_free_kib()) {
        ensure!(
            a + 1024 >= b,
            "MemFree went from {b} KiB to {a} KiB after the child exited and the region was unmapped"
        );
    }
    Ok(())
}

fn cow_mprotect_after_fork() -> Res {
    // A read-only private page is shared with the child at fork; when the child makes it
    // writable and stores, the parent must not see the store (and vice versa).
    let a = anon(PAGE)?;
    poke64(a, 0xa0a0);
    ok("mprotect(PROT_READ)", mprotect(a, PAGE, PROT_READ))?;
    let pid = fork()?;
    if pid == 0 {
        if mprotect(a, PAGE, PROT_READ | PROT_WRITE).is_err() {
            exit(2);
        }
        poke64(a, 0xc0c0);
        exit(if peek64(a) == 0xc0c0 { 0 } else { 3 });
    }
    expect_exit("child", wait_pid(pid)?, 0)?;
    ensure!(
        peek64(a) == 0xa0a0,
        "the child's store reached the parent's page: {:#x}",
        peek64(a)
    );
    // Same in the other direction: the parent writes after fork, the child checks later.
    let pid = fork()?;
    if pid == 0 {
        sleep_ms(100);
        exit(if peek64(a) == 0xa0a0 { 0 } else { 4 });
    }
    ok(
        "mprotect(RW) in the parent",
        mprotect(a, PAGE, PROT_READ | PROT_WRITE),
    )?;
    poke64(a, 0xb0b0);
    expect_exit(
        "child (4: it saw the parent's later store)",
        wait_pid(pid)?,
        0,
    )
}

fn shared_anon() -> Res {
    let a = ok(
        "mmap MAP_SHARED|MAP_ANONYMOUS",
        mmap(
            0,
            2 * PAGE,
            PROT_READ | PROT_WRITE,
            MAP_SHARED | MAP_ANONYMOUS,
            MAP_FAILED_FD,
            0,
        ),
    )?;
    all_zero(a, 2 * PAGE)?;
    poke64(a, 1);
    let pid = fork()?;
    if pid == 0 {
        if peek64(a) != 1 {
            exit(2);
        }
        poke64(a, 0x5eed);
        poke64(a + PAGE, 0x5eee); // a page nobody touched before the fork
        exit(0);
    }
    expect_exit("child", wait_pid(pid)?, 0)?;
    ensure!(
        peek64(a) == 0x5eed && peek64(a + PAGE) == 0x5eee,
        "parent sees {:#x} / {:#x}, expected the child's stores 0x5eed / 0x5eee",
        peek64(a),
        peek64(a + PAGE)
    );
    Ok(())
}

fn fork_many() -> Res {
    let len = 4 << 20;
    let a = anon(len)?;
    fill64(a, len, |i| i as u64);
    let before = mem_free_kib();
    for round in 0..200 {
        let pid = fork().map_err(|e| format!("round {round}: {e}"))?;
        if pid == 0 {
            // Break COW on half the region: 512 pages copied per child.
            let mut i = 0;
            while i < len / 2 {
                poke64(a + i, round as u64);
                i += PAGE;
            }
            exit(0);
        }
        let st = wait_pid(pid).map_err(|e| format!("round {round}: {e}"))?;
        expect_exit(&format!("round {round}"), st, 0)?;
    }
    check64(a, len, |i| i as u64).map_err(|e| format!("parent after 200 children: {e}"))?;
    match (before, mem_free_kib()) {
        (Some(b), Some(a)) => {
            // Allow 2 MiB of slack (kernel heap growth, page tables cached).
            ensure!(
                a + 2048 >= b,
                "MemFree dropped from {b} KiB to {a} KiB over 200 fork cycles"
            );
            crate::say!("#   MemFree {b} KiB before, {a} KiB after\n");
        }
        _ => crate::say!("#   /proc/meminfo unavailable: checked by survival only\n"),
    }
    Ok(())
}

fn madv_dontneed() -> Res {
    let len = 4 * PAGE;
    let a = anon(len)?;
    fill64(a, len, |_| 0xffff_ffff_ffff_ffff);
    ok("madvise(MADV_DONTNEED)", sc(nr::MADVISE, &[a, len, 4]))?;
    all_zero(a, len).map_err(|e| format!("after MADV_DONTNEED: {e}"))?;
    // Still mapped and writable.
    poke(a, 1);
    ensure!(peek(a) == 1, "store after MADV_DONTNEED lost");
    Ok(())
}

fn big_mapping() -> Res {
    let len = 64 << 20;
    let a = anon(len)?;
    let mut i = 0;
    while i < len {
        poke64(a + i, i as u64);
        i += PAGE;
    }
    let mut i = 0;
    while i < len {
        let v = peek64(a + i);
        ensure!(v == i as u64, "page at offset {i:#x} holds {v:#x}");
        i += PAGE;
    }
    ok("munmap 64 MiB", munmap(a, len))?;
    Ok(())
}

fn stack_growth() -> Res {
    let st = in_child(|| {
        let sp: usize;
        // SAFETY: reads the stack pointer only.
        unsafe { core::arch::asm!("mov {}, rsp", out(reg) sp) };
        let mut off = PAGE;
        while off <= 4 << 20 {
            poke(sp - off, 1);
            off += PAGE;
        }
        0
    })?;
    expect_exit("child touching 4 MiB of stack", st, 0)?;
    // Far past the 8 MiB stack limit: a fault, not memory.
    dies_by("store 16 MiB below the stack pointer", SIGSEGV, || {
        let sp: usize;
        // SAFETY: reads the stack pointer only.
        unsafe { core::arch::asm!("mov {}, rsp", out(reg) sp) };
        poke(sp - (16 << 20), 1);
    })
}

/// Call the code at `addr` (a `ret`).
fn call(addr: usize) {
    // SAFETY: `addr` holds a `ret`, or the call faults in a child meant to die.
    unsafe { core::arch::asm!("call {}", in(reg) addr, clobber_abi("C")) }
}

fn nx() -> Res {
    let a = anon(PAGE)?;
    poke(a, 0xc3); // ret
    dies_by("call into PROT_READ|PROT_WRITE memory", SIGSEGV, || call(a))?;
    ok(
        "mprotect(PROT_READ|PROT_EXEC)",
        mprotect(a, PAGE, PROT_READ | PROT_EXEC),
    )?;
    let st = in_child(|| {
        call(a);
        0
    })?;
    expect_exit("call into PROT_READ|PROT_EXEC memory", st, 0)?;
    let stack = [0xc3u8; 16];
    let s = stack.as_ptr() as usize;
    dies_by("call into the stack", SIGSEGV, || call(s))
}
