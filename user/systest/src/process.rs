//! Processes: ids, fork, wait4, execve, exit statuses, deaths by signal, unknown calls.

use alloc::vec::Vec;
use core::ffi::CStr;

use sys::errno::*;

use crate::util::*;
use crate::{ensure, say};
use alloc::format;

#[rustfmt::skip]
pub const CASES: &[Case] = &[
    ("process: getpid/getppid/gettid", ids),
    ("process: fork returns 0 in the child and its pid in the parent", fork_returns),
    ("process: wait4 returns the pid and WEXITSTATUS", wait4_status),
    ("process: wait4 with no children gives ECHILD", wait4_echild),
    ("process: wait4 WNOHANG with a running child gives 0", wait4_wnohang),
    ("process: wait4(-1) reaps two children, then ECHILD", wait4_any),
    ("process: wait4 bad options EINVAL, bad status pointer EFAULT", wait4_errors),
    ("process: exit status 0..255 round trip (and 256 -> 0)", exit_statuses),
    ("process: exit (60) and exit_group (231) both end the process", exit_both),
    ("process: execve of a missing path gives ENOENT", execve_enoent),
    ("process: execve of a non-ELF or empty file gives ENOEXEC", execve_enoexec),
    ("process: execve of a directory gives EACCES", execve_eacces),
    ("process: execve with bad pointers gives EFAULT", execve_efault),
    ("process: execve with a 300 KB argument gives E2BIG", execve_e2big),
    ("process: execve passes argv (exit code from argv)", execve_argv),
    ("process: execve passes exact argv and envp", execve_argv_envp),
    ("process: execve drops the old address space", execve_fresh_memory),
    ("process: execve resets caught signals and the FS base", execve_resets),
    ("process: vfork + execve / _exit", vfork_cases),
    ("process: vfork suspends the parent until the child exits", vfork_suspends),
    ("process: clone(SIGCHLD) behaves like fork", clone_fork),
    ("process: store to NULL kills the child with SIGSEGV", segv_null),
    ("process: ud2/int3/div0 give SIGILL/SIGTRAP/SIGFPE", other_faults),
    ("process: privileged instructions give SIGSEGV", privileged),
    ("process: kill(self) with SIGTERM, sig 0, bad sig, missing pid", kill_cases),
    ("process: kill(child, SIGKILL) kills the child", kill_child),
    (
        "process: a CPU-bound child is preempted (the parent runs, kills it)",
        kill_spinning_child,
    ),
    ("process: kill(self) with ignored signals (SIG_IGN, SIGCHLD/SIGURG/SIGWINCH) does nothing", kill_ignored),
    ("process: an orphan is re-parented to PID 1", orphan),
    ("process: unknown syscall numbers give ENOSYS", enosys),
    ("process: syscalls preserve rbx rbp rdi rsi rdx r8-r10 r12-r15 xmm8 (also across fork)", registers_preserved),
    ("process: registers survive context switches between processes", sse_across_switches),
];

/// `execve(path, argv, envp)` with NULL-terminated arrays built here; only returns on error.
pub fn execve(path: &CStr, argv: &[&CStr], envp: &[&CStr]) -> Errno {
    let mut a: Vec<usize> = argv.iter().map(|s| cs(s)).collect();
    a.push(0);
    let mut e: Vec<usize> = envp.iter().map(|s| cs(s)).collect();
    e.push(0);
    match sc(
        nr::EXECVE,
        &[cs(path), a.as_ptr() as usize, e.as_ptr() as usize],
    ) {
        Err(e) => e,
        Ok(_) => EIO,
    }
}

pub const SELF: &CStr = c"/mnt/bin/systest";

fn ids() -> Res {
    let pid = sys::getpid();
    let ppid = sys::getppid();
    ensure!(pid > 0, "getpid returned {pid}");
    ensure!(ppid >= 0, "getppid returned {ppid}");
    let tid = ok("gettid", sc(nr::GETTID, &[]))? as i32;
    ensure!(tid == pid, "gettid {tid} != getpid {pid} (single-threaded)");
    ensure!(sys::getpid() == pid, "getpid changed between calls");
    child_check("child ids", || {
        ensure!(
            sys::getppid() == pid,
            "getppid {} != parent pid {pid}",
            sys::getppid()
        );
        ensure!(
            sys::getpid() != pid,
            "child pid equals the parent's ({pid})"
        );
        Ok(())
    })
}

fn fork_returns() -> Res {
    let me = sys::getpid();
    let pid = fork()?;
    if pid == 0 {
        // Report our pid's low byte; the parent compares it with what fork returned.
        if sys::getppid() != me {
            exit(255);
        }
        exit(sys::getpid() & 0xff);
    }
    ensure!(pid > 0, "fork returned {pid} in the parent");
    ensure!(pid != me, "fork returned the parent's own pid {pid}");
    let st = wait_pid(pid)?;
    ensure!(
        !(wifexited(st) && wexitstatus(st) == 255),
        "child's getppid was not the parent's pid"
    );
    expect_exit("child", st, pid & 0xff)
}

fn wait4_status() -> Res {
    let pid = fork()?;
    if pid == 0 {
        exit(42);
    }
    let mut status: i32 = -1;
    let mut rusage = [0xffu8; 144];
    let got = ok(
        "wait4 with rusage",
        sc(
            nr::WAIT4,
            &[
                pid as usize,
                &mut status as *mut i32 as usize,
                0,
                rusage.as_mut_ptr() as usize,
            ],
        ),
    )? as i32;
    ensure!(got == pid, "wait4 returned {got}, child is {pid}");
    ensure!(wifexited(status), "status {status:#x} is not WIFEXITED");
    ensure!(
        wexitstatus(status) == 42,
        "WEXITSTATUS {} != 42",
        wexitstatus(status)
    );
    ensure!(status == 42 << 8, "raw status {status:#x} != 0x2a00");
    // A NULL status pointer is allowed.
    let pid = fork()?;
    if pid == 0 {
        exit(1);
    }
    let got = ok(
        "wait4 with NULL status",
        sc(nr::WAIT4, &[pid as usize, 0, 0, 0]),
    )? as i32;
    ensure!(
        got == pid,
        "wait4(NULL status) returned {got}, child is {pid}"
    );
    Ok(())
}

fn wait4_echild() -> Res {
    want(
        "wait4(-1) with no children",
        wait4(-1, 0).map(|_| 0),
        ECHILD,
    )?;
    want(
        "wait4(-1, WNOHANG) with no children",
        wait4(-1, WNOHANG).map(|_| 0),
        ECHILD,
    )?;
    // The parent (the runner) is not our child.
    want(
        "wait4(parent pid)",
        wait4(sys::getppid(), 0).map(|_| 0),
        ECHILD,
    )?;
    // A reaped child cannot be waited for twice.
    let pid = fork()?;
    if pid == 0 {
        exit(0);
    }
    wait_pid(pid)?;
    want(
        "wait4 of an already reaped child",
        wait4(pid, 0).map(|_| 0),
        ECHILD,
    )
}

fn wait4_wnohang() -> Res {
    let pid = fork()?;
    if pid == 0 {
        // Long enough that the parent's WNOHANG call surely comes first.
        sleep_ms(1000);
        exit(7);
    }
    let r = wait4(pid, WNOHANG);
    match r {
        Ok((0, _)) => {}
        Ok((p, st)) => {
            let _ = wait4(pid, 0);
            return Err(alloc::format!(
                "WNOHANG while the child sleeps returned pid {p} status {st:#x}, expected 0"
            ));
        }
        Err(e) => return Err(alloc::format!("wait4 WNOHANG: {}", ename(e))),
    }
    let st = wait_pid(pid)?;
    expect_exit("child", st, 7)
}

fn wait4_any() -> Res {
    let a = fork()?;
    if a == 0 {
        exit(3);
    }
    let b = fork()?;
    if b == 0 {
        sleep_ms(20);
        exit(4);
    }
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (p, st) = ok("wait4(-1)", wait4(-1, 0))?;
        let code = if p == a {
            3
        } else if p == b {
            4
        } else {
            return Err(alloc::format!(
                "wait4(-1) returned unknown pid {p} (children {a}, {b})"
            ));
        };
        expect_exit(&alloc::format!("child {p}"), st, code)?;
        seen.push(p);
    }
    ensure!(
        seen[0] != seen[1],
        "wait4(-1) returned pid {} twice",
        seen[0]
    );
    want("third wait4(-1)", wait4(-1, 0).map(|_| 0), ECHILD)
}

fn wait4_errors() -> Res {
    let pid = fork()?;
    if pid == 0 {
        sleep_ms(50);
        exit(5);
    }
    want(
        "wait4 with options 0x100000",
        sc(nr::WAIT4, &[pid as usize, 0, 0x10_0000, 0]),
        EINVAL,
    )?;
    // A status pointer into the kernel: EFAULT (Linux reaps the child and then fails the
    // copy-out).
    want(
        "wait4 with a kernel status pointer",
        sc(nr::WAIT4, &[pid as usize, KERNEL_BASE, 0, 0]),
        EFAULT,
    )?;
    // Whatever happened to the child, do not leave it behind.
    let _ = wait4(pid, 0);
    Ok(())
}

fn exit_statuses() -> Res {
    for code in 0..=255i32 {
        let st = in_child(|| code)?;
        expect_exit(&alloc::format!("exit({code})"), st, code)?;
    }
    for (code, want_code) in [(256, 0), (257, 1), (-1, 255), (0x1234, 0x34)] {
        let st = in_child(|| code)?;
        expect_exit(&alloc::format!("exit({code})"), st, want_code)?;
    }
    Ok(())
}

fn exit_both() -> Res {
    let st = in_child(|| {
        let _ = sc(nr::EXIT, &[9]);
        98
    })?;
    expect_exit("exit(9) via syscall 60", st, 9)?;
    let st = in_child(|| {
        let _ = sc(nr::EXIT_GROUP, &[10]);
        98
    })?;
    expect_exit("exit_group(10)", st, 10)
}

fn execve_enoent() -> Res {
    let e = execve(c"/mnt/no/such/program", &[c"x"], &[]);
    ensure!(
        e == ENOENT,
        "execve(/mnt/no/such/program): expected ENOENT, got {}",
        ename(e)
    );
    let e = execve(c"/mnt/bin/no-such-program", &[c"x"], &[]);
    ensure!(
        e == ENOENT,
        "execve(/mnt/bin/no-such-program): expected ENOENT, got {}",
        ename(e)
    );
    let e = execve(c"", &[c"x"], &[]);
    ensure!(
        e == ENOENT,
        "execve(\"\"): expected ENOENT, got {}",
        ename(e)
    );
    // The failed calls left this process intact.
    ensure!(sys::getpid() > 0, "process broken after failed execve");
    Ok(())
}

fn execve_enoexec() -> Res {
    let e = execve(c"/mnt/data/notelf.txt", &[c"notelf"], &[]);
    ensure!(
        e == ENOEXEC,
        "execve(text file): expected ENOEXEC, got {}",
        ename(e)
    );
    let e = execve(c"/mnt/data/empty", &[c"empty"], &[]);
    ensure!(
        e == ENOEXEC,
        "execve(empty file): expected ENOEXEC, got {}",
        ename(e)
    );
    Ok(())
}

fn execve_eacces() -> Res {
    let e = execve(c"/mnt/bin", &[c"bin"], &[]);
    ensure!(
        e == EACCES,
        "execve(/mnt/bin): expected EACCES, got {}",
        ename(e)
    );
    Ok(())
}

fn execve_efault() -> Res {
    let argv_ok = [cs(c"systest"), cs(c"--child-exec"), cs(c"1"), 0usize];
    let env_ok = [0usize];
    let mut bad_entry = argv_ok;
    bad_entry[1] = KERNEL_BASE;
    let cases: [(&str, usize, usize, usize); 7] = [
        (
            "NULL path",
            0,
            argv_ok.as_ptr() as usize,
            env_ok.as_ptr() as usize,
        ),
        (
            "kernel path",
            KERNEL_TEXT,
            argv_ok.as_ptr() as usize,
            env_ok.as_ptr() as usize,
        ),
        ("argv = 1", cs(SELF), 1, env_ok.as_ptr() as usize),
        (
            "argv in the kernel",
            cs(SELF),
            KERNEL_BASE,
            env_ok.as_ptr() as usize,
        ),
        (
            "argv non-canonical",
            cs(SELF),
            NONCANON_LOW,
            env_ok.as_ptr() as usize,
        ),
        (
            "argv[1] in the kernel",
            cs(SELF),
            bad_entry.as_ptr() as usize,
            env_ok.as_ptr() as usize,
        ),
        (
            "envp in the kernel",
            cs(SELF),
            argv_ok.as_ptr() as usize,
            KERNEL_BASE,
        ),
    ];
    for (what, path, argv, envp) in cases {
        want(
            &alloc::format!("execve with {what}"),
            sc(nr::EXECVE, &[path, argv, envp]),
            EFAULT,
        )?;
    }
    Ok(())
}

fn execve_argv() -> Res {
    for code in [0, 42, 255] {
        let arg = alloc::format!("{code}\0");
        let arg = CStr::from_bytes_with_nul(arg.as_bytes()).map_err(|_| "cstr")?;
        let st = in_child(|| {
            let e = execve(SELF, &[c"systest", c"--child-exec", arg], &[]);
            say!(
                "#   execve({}) failed: {}\n",
                SELF.to_str().unwrap_or("?"),
                ename(e)
            );
            120
        })?;
        expect_exit(
            &alloc::format!("exec'd `systest --child-exec {code}`"),
            st,
            code,
        )?;
    }
    Ok(())
}

fn execve_argv_envp() -> Res {
    let st = in_child(|| {
        let e = execve(
            SELF,
            &[c"systest", c"--child-args", c"a", c"bb", c"", c"dddd"],
            &[c"SYSTEST_ENV=xyz", c"SECOND=2"],
        );
        say!("#   execve failed: {}\n", ename(e));
        120
    })?;
    // 37 = all good; 10+argc: wrong argc; 70+i: argv[2+i] wrong; 80+n: wrong envp (n vars).
    expect_exit("exec'd `systest --child-args a bb '' dddd`", st, 37)
}

fn execve_fresh_memory() -> Res {
    let a = anon(PAGE)?;
    poke(a, 1);
    let arg = alloc::format!("{a}\0");
    let arg = CStr::from_bytes_with_nul(arg.as_bytes()).map_err(|_| "cstr")?;
    let st = in_child(|| {
        let e = execve(SELF, &[c"systest", c"--child-mem", arg], &[]);
        say!("#   execve failed: {}\n", ename(e));
        120
    })?;
    // 0: mprotect on the old address gives ENOMEM (nothing mapped there any more).
    expect_exit(
        "exec'd `systest --child-mem` (old mapping must be gone)",
        st,
        0,
    )
}

fn execve_resets() -> Res {
    // SIGUSR1 gets a handler, SIGUSR2 is ignored; exec must reset the first only.
    let handler = execve_resets as *const () as usize;
    let act = [handler as u64, 0x0400_0000, handler as u64, 0];
    ok(
        "rt_sigaction(SIGUSR1)",
        sc(nr::RT_SIGACTION, &[10, act.as_ptr() as usize, 0, 8]),
    )?;
    let ign = [1u64, 0, 0, 0];
    ok(
        "rt_sigaction(SIGUSR2, SIG_IGN)",
        sc(nr::RT_SIGACTION, &[12, ign.as_ptr() as usize, 0, 8]),
    )?;
    let st = in_child(|| {
        let e = execve(SELF, &[c"systest", c"--child-sig"], &[]);
        say!("#   execve failed: {}\n", ename(e));
        120
    })?;
    // 1: SIGUSR1's handler survived exec; 2: SIGUSR2's SIG_IGN was lost.
    expect_exit("exec'd `systest --child-sig`", st, 0)?;
    let tls = [0u64; 4];
    ok(
        "arch_prctl(ARCH_SET_FS)",
        sc(nr::ARCH_PRCTL, &[0x1002, tls.as_ptr() as usize]),
    )?;
    let st = in_child(|| {
        let e = execve(SELF, &[c"systest", c"--child-fs"], &[]);
        say!("#   execve failed: {}\n", ename(e));
        120
    })?;
    expect_exit("exec'd `systest --child-fs` (FS base must be 0)", st, 0)
}

fn vfork_cases() -> Res {
    let pid = ok("vfork", sc(nr::VFORK, &[]))? as i32;
    if pid == 0 {
        let e = execve(SELF, &[c"systest", c"--child-exec", c"9"], &[]);
        let _ = e;
        let _ = sc(nr::EXIT, &[120]);
        exit(120)
    }
    expect_exit("vfork + execve(--child-exec 9)", wait_pid(pid)?, 9)?;
    let pid = ok("vfork", sc(nr::VFORK, &[]))? as i32;
    if pid == 0 {
        let _ = sc(nr::EXIT, &[5]);
        exit(120)
    }
    expect_exit("vfork + _exit(5)", wait_pid(pid)?, 5)
}

fn clone_fork() -> Res {
    let pid = ok("clone(SIGCHLD)", sc(nr::CLONE, &[sys::SIGCHLD, 0, 0, 0, 0]))? as i32;
    if pid == 0 {
        exit(6);
    }
    expect_exit("clone child", wait_pid(pid)?, 6)
}

fn segv_null() -> Res {
    dies_by("store to address 0", SIGSEGV, || poke(0, 1))?;
    dies_by("load from address 0", SIGSEGV, || {
        peek(0);
    })?;
    dies_by("store to address 0x1000", SIGSEGV, || poke(0x1000, 1))
}

fn other_faults() -> Res {
    // SAFETY: runs in a child that is meant to die right here; touches no memory.
    dies_by("ud2", SIGILL, || unsafe { core::arch::asm!("ud2") })?;
    // SAFETY: as above.
    dies_by("int3", SIGTRAP, || unsafe { core::arch::asm!("int3") })?;
    // SAFETY: as above.
    dies_by("divide by zero", SIGFPE, || unsafe {
        core::arch::asm!("xor edx, edx", "xor ecx, ecx", "mov eax, 1", "div ecx",
                         out("eax") _, out("ecx") _, out("edx") _)
    })
}

fn privileged() -> Res {
    // SAFETY: runs in a child that is meant to die at the instruction.
    dies_by("hlt", SIGSEGV, || unsafe { core::arch::asm!("hlt") })?;
    // SAFETY: as above.
    dies_by("cli", SIGSEGV, || unsafe { core::arch::asm!("cli") })?;
    // SAFETY: as above.
    dies_by("in al, 0x60", SIGSEGV, || unsafe {
        core::arch::asm!("in al, 0x60", out("al") _)
    })?;
    // SAFETY: as above, the child is meant to die at the instruction, which touches no memory.
    dies_by("out 0xf4, al (isa-debug-exit)", SIGSEGV, || unsafe {
        core::arch::asm!("mov al, 0x10", "out 0xf4, al", out("al") _)
    })?;
    // SAFETY: as above, the child is meant to die at the instruction, which touches no memory.
    dies_by("rdmsr", SIGSEGV, || unsafe {
        core::arch::asm!("mov ecx, 0xc0000082", "rdmsr", out("eax") _, out("ecx") _, out("edx") _)
    })?;
    // SAFETY: as above, the child is meant to die at the instruction, which touches no memory.
    dies_by("mov rax, cr3", SIGSEGV, || unsafe {
        core::arch::asm!("mov rax, cr3", out("rax") _)
    })?;
    // SAFETY: as above, the child is meant to die here; the operand is `d`, a live local.
    dies_by("lgdt", SIGSEGV, || unsafe {
        let d = [0u64; 2];
        core::arch::asm!("lgdt [{}]", in(reg) d.as_ptr())
    })
}

fn kill_cases() -> Res {
    ok("kill(self, 0)", sc(nr::KILL, &[sys::getpid() as usize, 0]))?;
    want(
        "kill(self, 65)",
        sc(nr::KILL, &[sys::getpid() as usize, 65]),
        EINVAL,
    )?;
    want("kill(999999, 0)", sc(nr::KILL, &[999_999, 0]), ESRCH)?;
    let st = in_child(|| {
        let _ = sc(nr::KILL, &[sys::getpid() as usize, SIGTERM as usize]);
        sleep_ms(100);
        98
    })?;
    expect_signal("kill(self, SIGTERM)", st, SIGTERM)?;
    let st = in_child(|| {
        let _ = sc(nr::KILL, &[sys::getpid() as usize, SIGKILL as usize]);
        sleep_ms(100);
        98
    })?;
    expect_signal("kill(self, SIGKILL)", st, SIGKILL)
}

fn enosys() -> Res {
    for n in [1000usize, 511, 4096, 0x7fff_ffff, usize::MAX] {
        want(&alloc::format!("syscall {n:#x}"), sc(n, &[]), ENOSYS)?;
    }
    Ok(())
}

fn kill_child() -> Res {
    let pid = fork()?;
    if pid == 0 {
        loop {
            sleep_ms(1000);
        }
    }
    sleep_ms(20);
    let r = sc(nr::KILL, &[pid as usize, SIGKILL as usize]);
    if let Err(e) = r {
        // Do not leave the child behind: it would keep this case from ending.
        return Err(format!(
            "kill(child {pid}, SIGKILL): {} (the child keeps sleeping)",
            ename(e)
        ));
    }
    expect_signal("child after kill(SIGKILL)", wait_pid(pid)?, SIGKILL)
}

fn kill_spinning_child() -> Res {
    // The child never makes a system call: only the timer can give the parent the CPU
    // back, and the kill takes effect when the child is next preempted.
    let pid = fork()?;
    if pid == 0 {
        let mut x = 0u64;
        loop {
            x = core::hint::black_box(x.wrapping_add(1));
        }
    }
    sleep_ms(30);
    if let Err(e) = sc(nr::KILL, &[pid as usize, SIGKILL as usize]) {
        return Err(format!("kill(spinning child {pid}, SIGKILL): {}", ename(e)));
    }
    expect_signal(
        "spinning child after kill(SIGKILL)",
        wait_pid(pid)?,
        SIGKILL,
    )
}

fn kill_ignored() -> Res {
    // SIGUSR1 set to SIG_IGN, and SIGCHLD/SIGURG/SIGWINCH whose default is to ignore:
    // kill(self, sig) returns 0 and the process carries on.
    let st = in_child(|| {
        let ign = [1u64, 0, 0, 0];
        if sc(nr::RT_SIGACTION, &[10, ign.as_ptr() as usize, 0, 8]).is_err() {
            return 2;
        }
        for sig in [10usize, 17, 23, 28] {
            if sc(nr::KILL, &[sys::getpid() as usize, sig]).is_err() {
                return 3;
            }
        }
        0
    })?;
    expect_exit("child sending itself ignored signals", st, 0)
}

fn orphan() -> Res {
    // The child forks a grandchild and exits; the grandchild is re-parented to PID 1 and
    // reports what getppid says through a pipe.
    let mut fds = [-1i32; 2];
    ok("pipe2", sc(nr::PIPE2, &[fds.as_mut_ptr() as usize, 0]))?;
    let [r, w] = fds;
    let pid = fork()?;
    if pid == 0 {
        let _ = close(r);
        let g = sc(nr::FORK, &[]);
        if g == Ok(0) {
            let parent = sys::getppid();
            for _ in 0..200 {
                if sys::getppid() != parent {
                    break;
                }
                sleep_ms(10);
            }
            let now = sys::getppid();
            let _ = write(w, alloc::format!("{now}").as_bytes());
            exit(0);
        }
        exit(if g.is_ok() { 0 } else { 1 });
    }
    let _ = close(w);
    expect_exit("child", wait_pid(pid)?, 0)?;
    let got = ok("read the grandchild's report", read_to_end(r))?;
    let got = alloc::string::String::from_utf8_lossy(&got);
    ensure!(
        got == "1",
        "orphaned grandchild's getppid is {got:?}, expected 1 (init)"
    );
    Ok(())
}

fn execve_e2big() -> Res {
    // One 300 KB argument: over Linux's 128 KiB per-string limit and AliasOS's ARG_MAX.
    let mut big = alloc::vec![b'x'; 300 * 1024];
    big.push(0);
    let big = CStr::from_bytes_with_nul(&big).map_err(|_| "cstr")?;
    let e = execve(SELF, &[c"systest", big], &[]);
    ensure!(
        e == E2BIG,
        "execve with a 300 KB argument: expected E2BIG, got {}",
        ename(e)
    );
    let e = execve(SELF, &[c"systest"], &[big]);
    ensure!(
        e == E2BIG,
        "execve with a 300 KB environment string: expected E2BIG, got {}",
        ename(e)
    );
    Ok(())
}

/// Values loaded into the registers a syscall must preserve, in the order `regs_across`
/// stores them: rbx rbp rdi rsi rdx r8 r9 r10 r12 r13 r14 r15, then xmm8 (low, high).
const REG_PATTERN: [u64; 14] = [
    0x0b0b_0b0b_0000_0001,
    0x0b0b_0b0b_0000_0002,
    0x0b0b_0b0b_0000_0003,
    0x0b0b_0b0b_0000_0004,
    0x0b0b_0b0b_0000_0005,
    0x0b0b_0b0b_0000_0006,
    0x0b0b_0b0b_0000_0007,
    0x0b0b_0b0b_0000_0008,
    0x0b0b_0b0b_0000_0009,
    0x0b0b_0b0b_0000_000a,
    0x0b0b_0b0b_0000_000b,
    0x0b0b_0b0b_0000_000c,
    0x0b0b_0b0b_0000_000d,
    0x0b0b_0b0b_0000_000d,
];

/// Load `REG_PATTERN` (+ `salt`) into the registers, run syscall `nr` (no arguments: the
/// argument registers hold the pattern), store the registers afterwards into `out`.
/// Returns rax.
fn regs_across(nr: usize, salt: u64, out: &mut [u64; 14]) -> u64 {
    let mut v = REG_PATTERN;
    for x in v.iter_mut() {
        *x ^= salt;
    }
    let ret: u64;
    // SAFETY: every register the block changes is declared, rbx/rbp are saved and
    // restored by hand; the syscalls used take no pointer arguments.
    unsafe {
        core::arch::asm!(
            "push rbx",
            "push rbp",
            "push r11",
            "mov rbx, [rcx]",
            "mov rbp, [rcx + 8]",
            "mov rdi, [rcx + 16]",
            "mov rsi, [rcx + 24]",
            "mov rdx, [rcx + 32]",
            "mov r8, [rcx + 40]",
            "mov r9, [rcx + 48]",
            "mov r10, [rcx + 56]",
            "mov r12, [rcx + 64]",
            "mov r13, [rcx + 72]",
            "mov r14, [rcx + 80]",
            "mov r15, [rcx + 88]",
            "movdqu xmm8, [rcx + 96]",
            "syscall",
            "mov rcx, [rsp]",
            "mov [rcx], rbx",
            "mov [rcx + 8], rbp",
            "mov [rcx + 16], rdi",
            "mov [rcx + 24], rsi",
            "mov [rcx + 32], rdx",
            "mov [rcx + 40], r8",
            "mov [rcx + 48], r9",
            "mov [rcx + 56], r10",
            "mov [rcx + 64], r12",
            "mov [rcx + 72], r13",
            "mov [rcx + 80], r14",
            "mov [rcx + 88], r15",
            "movdqu [rcx + 96], xmm8",
            "pop rcx",
            "pop rbp",
            "pop rbx",
            inout("rcx") v.as_ptr() => _,
            inout("r11") out.as_mut_ptr() => _,
            inlateout("rax") nr as u64 => ret,
            lateout("rdx") _, lateout("rsi") _, lateout("rdi") _,
            lateout("r8") _, lateout("r9") _, lateout("r10") _,
            lateout("r12") _, lateout("r13") _, lateout("r14") _, lateout("r15") _,
            lateout("xmm8") _,
        )
    };
    ret
}

fn check_regs(what: &str, salt: u64, out: &[u64; 14]) -> Res {
    const NAMES: [&str; 14] = [
        "rbx", "rbp", "rdi", "rsi", "rdx", "r8", "r9", "r10", "r12", "r13", "r14", "r15",
        "xmm8.lo", "xmm8.hi",
    ];
    for i in 0..14 {
        ensure!(
            out[i] == REG_PATTERN[i] ^ salt,
            "{what}: {} is {:#x} afterwards, was {:#x}",
            NAMES[i],
            out[i],
            REG_PATTERN[i] ^ salt
        );
    }
    Ok(())
}

fn registers_preserved() -> Res {
    let mut out = [0u64; 14];
    let pid = regs_across(nr::GETPID, 0, &mut out);
    ensure!(pid as i32 == sys::getpid(), "getpid returned {pid:#x}");
    check_regs("getpid", 0, &out)?;
    let r = regs_across(nr::SCHED_YIELD, 0x10, &mut out);
    ensure!(r == 0, "sched_yield returned {r:#x}");
    check_regs("sched_yield", 0x10, &out)?;
    let r = regs_across(1000, 0x20, &mut out);
    ensure!(r as i64 == -38, "syscall 1000 returned {r:#x}");
    check_regs("an unknown syscall", 0x20, &out)?;
    // fork: both sides come back with the same registers (rax aside).
    let r = regs_across(nr::FORK, 0x30, &mut out);
    if r == 0 {
        exit(if check_regs("fork (child)", 0x30, &out).is_ok() {
            0
        } else {
            1
        });
    }
    ensure!((r as i64) > 0, "fork returned {r:#x}");
    check_regs("fork (parent)", 0x30, &out)?;
    expect_exit(
        "child checking its registers after fork",
        wait_pid(r as i32)?,
        0,
    )
}

fn sse_across_switches() -> Res {
    // xmm8 keeps its value while this process sleeps and other processes run, and a
    // forked child starts with the parent's value.
    let pid = fork()?;
    if pid == 0 {
        // A busy sibling using xmm8 too.
        let mut out = [0u64; 14];
        for i in 0..50u64 {
            let _ = regs_across(nr::SCHED_YIELD, 0x5a5a_0000 + i, &mut out);
            if check_regs("sibling", 0x5a5a_0000 + i, &out).is_err() {
                exit(1);
            }
        }
        exit(0);
    }
    let mut out = [0u64; 14];
    for i in 0..50u64 {
        regs_across(nr::SCHED_YIELD, 0xa5a5_0000 + i, &mut out);
        check_regs(&format!("sched_yield round {i}"), 0xa5a5_0000 + i, &out)?;
    }
    expect_exit("sibling", wait_pid(pid)?, 0)
}

fn vfork_suspends() -> Res {
    // Linux: the parent does not return from vfork until the child has exited or exec'd.
    let t0 = now_ns(sys::CLOCK_MONOTONIC)?;
    let pid = ok("vfork", sc(nr::VFORK, &[]))? as i32;
    if pid == 0 {
        let ts = Timespec {
            sec: 0,
            nsec: 200_000_000,
        };
        let _ = sc(nr::NANOSLEEP, &[&ts as *const Timespec as usize, 0]);
        let _ = sc(nr::EXIT, &[0]);
        exit(120)
    }
    let waited = now_ns(sys::CLOCK_MONOTONIC)?.saturating_sub(t0);
    let st = wait_pid(pid)?;
    expect_exit("vfork child", st, 0)?;
    ensure!(
        waited >= 200_000_000,
        "vfork returned to the parent after {} ms, while the child was still sleeping (200 ms)",
        waited / 1_000_000
    );
    Ok(())
}
