//! Time, uname, getrandom, arch_prctl (TLS), signal bookkeeping, small id calls.

use alloc::format;

use sys::errno::*;

use crate::ensure;
use crate::util::*;

#[rustfmt::skip]
pub const CASES: &[Case] = &[
    ("misc: CLOCK_MONOTONIC advances >= 20 ms across nanosleep(20 ms)", monotonic_sleep),
    ("misc: clocks: REALTIME plausible, MONOTONIC never goes back, clock_getres", clocks),
    ("misc: clock_gettime with a bad clock id gives EINVAL", clock_bad_id),
    ("misc: nanosleep with bad timespecs gives EINVAL/EFAULT", nanosleep_errors),
    ("misc: uname fills sysname, release and machine", uname),
    ("misc: getrandom fills the buffer and rejects bad flags", getrandom),
    ("misc: arch_prctl(ARCH_SET_FS): %fs:0 reads the TLS block, fork keeps it", tls),
    ("misc: arch_prctl errors (kernel address EPERM, bad code EINVAL)", arch_prctl_errors),
    ("misc: rt_sigaction validates sig and sigsetsize, reads back", sigaction),
    ("misc: rt_sigprocmask validates how and size, cannot block SIGKILL", sigprocmask),
    ("misc: sigaltstack validates flags and size", sigaltstack),
    ("misc: sched_yield, set_tid_address, umask", small_calls),
];

fn monotonic_sleep() -> Res {
    let t0 = now_ns(sys::CLOCK_MONOTONIC)?;
    let req = Timespec {
        sec: 0,
        nsec: 20_000_000,
    };
    let mut rem = Timespec { sec: 77, nsec: 77 };
    ok(
        "nanosleep(20 ms)",
        sc(
            nr::NANOSLEEP,
            &[
                &req as *const Timespec as usize,
                &mut rem as *mut Timespec as usize,
            ],
        ),
    )?;
    let t1 = now_ns(sys::CLOCK_MONOTONIC)?;
    let d = t1.saturating_sub(t0);
    ensure!(
        d >= 20_000_000,
        "MONOTONIC advanced only {d} ns across nanosleep(20 ms)"
    );
    ensure!(d < 5_000_000_000, "nanosleep(20 ms) took {d} ns");
    Ok(())
}

fn clocks() -> Res {
    let rt = now_ns(sys::CLOCK_REALTIME)?;
    // 2020-01-01 .. 2100-01-01.
    ensure!(
        (1_577_836_800_000_000_000..4_102_444_800_000_000_000).contains(&rt),
        "CLOCK_REALTIME {} s is not a date between 2020 and 2100",
        rt / 1_000_000_000
    );
    let mut last = now_ns(sys::CLOCK_MONOTONIC)?;
    for i in 0..2000 {
        let t = now_ns(sys::CLOCK_MONOTONIC)?;
        ensure!(t >= last, "MONOTONIC went back at read {i}: {last} -> {t}");
        last = t;
    }
    for clock in [
        4usize, /* MONOTONIC_RAW */
        7,      /* BOOTTIME */
        5,      /* REALTIME_COARSE */
        6,
    ] {
        now_ns(clock).map_err(|e| format!("clock {clock}: {e}"))?;
    }
    let mut res = Timespec { sec: -1, nsec: -1 };
    ok(
        "clock_getres(MONOTONIC)",
        sc(nr::CLOCK_GETRES, &[1, &mut res as *mut Timespec as usize]),
    )?;
    ensure!(
        res.sec == 0 && res.nsec > 0 && res.nsec <= 10_000_000,
        "clock_getres(MONOTONIC) = {res:?}"
    );
    want(
        "clock_getres(100)",
        sc(nr::CLOCK_GETRES, &[100, &mut res as *mut Timespec as usize]),
        EINVAL,
    )?;
    Ok(())
}

fn clock_bad_id() -> Res {
    let mut ts = Timespec::default();
    let p = &mut ts as *mut Timespec as usize;
    for id in [12usize, 16, 100, 1000] {
        want(
            &format!("clock_gettime({id})"),
            sc(nr::CLOCK_GETTIME, &[id, p]),
            EINVAL,
        )?;
    }
    want(
        "clock_gettime(MONOTONIC, NULL)",
        sc(nr::CLOCK_GETTIME, &[1, 0]),
        EFAULT,
    )?;
    Ok(())
}

fn nanosleep_errors() -> Res {
    let bad = [
        Timespec {
            sec: 0,
            nsec: 1_000_000_000,
        },
        Timespec { sec: 0, nsec: -1 },
        Timespec { sec: -1, nsec: 0 },
        Timespec {
            sec: 0,
            nsec: i64::MAX,
        },
    ];
    for ts in bad {
        want(
            &format!("nanosleep({{{}, {}}})", ts.sec, ts.nsec),
            sc(nr::NANOSLEEP, &[&ts as *const Timespec as usize, 0]),
            EINVAL,
        )?;
    }
    want("nanosleep(NULL)", sc(nr::NANOSLEEP, &[0, 0]), EFAULT)?;
    let zero = Timespec::default();
    ok(
        "nanosleep({0, 0})",
        sc(nr::NANOSLEEP, &[&zero as *const Timespec as usize, 0]),
    )?;
    Ok(())
}

fn field(f: &[u8; 65]) -> Result<&str, alloc::string::String> {
    let n = f
        .iter()
        .position(|&b| b == 0)
        .ok_or("field not NUL-terminated")?;
    core::str::from_utf8(&f[..n]).map_err(|_| "field is not UTF-8".into())
}

fn uname() -> Res {
    let mut u = sys::Utsname {
        sysname: [0xff; 65],
        ..Default::default()
    };
    ok(
        "uname",
        sc(nr::UNAME, &[&mut u as *mut sys::Utsname as usize]),
    )?;
    let sysname = field(&u.sysname)?;
    ensure!(!sysname.is_empty(), "empty sysname");
    ensure!(
        sysname.bytes().all(|b| b.is_ascii_graphic()),
        "sysname {sysname:?} is not printable"
    );
    let release = field(&u.release)?;
    ensure!(!release.is_empty(), "empty release");
    field(&u.nodename)?;
    field(&u.version)?;
    field(&u.domainname)?;
    let machine = field(&u.machine)?;
    ensure!(
        machine == "x86_64",
        "machine {machine:?}, expected \"x86_64\""
    );
    crate::say!("#   uname: sysname {sysname:?}, release {release:?}\n");
    Ok(())
}

fn getrandom() -> Res {
    let mut a = [0u8; 256];
    let n = ok(
        "getrandom(256)",
        sc(nr::GETRANDOM, &[a.as_mut_ptr() as usize, 256, 0]),
    )?;
    ensure!(n == 256, "getrandom returned {n}, expected 256");
    ensure!(a.iter().any(|&b| b != 0), "256 random bytes are all zero");
    let distinct = {
        let mut seen = [false; 256];
        a.iter().for_each(|&b| seen[b as usize] = true);
        seen.iter().filter(|s| **s).count()
    };
    ensure!(
        distinct > 64,
        "only {distinct} distinct byte values in 256 random bytes"
    );
    let mut b = [0u8; 64];
    ok(
        "getrandom(GRND_NONBLOCK)",
        sc(nr::GETRANDOM, &[b.as_mut_ptr() as usize, 64, 1]),
    )?;
    ensure!(b[..] != a[..64], "two draws gave the same 64 bytes");
    // Only the requested bytes are written.
    let mut c = [0xeeu8; 32];
    ok(
        "getrandom(16)",
        sc(nr::GETRANDOM, &[c.as_mut_ptr() as usize, 16, 0]),
    )?;
    ensure!(
        c[16..].iter().all(|&x| x == 0xee),
        "getrandom(16) wrote past 16 bytes"
    );
    let n = ok(
        "getrandom(len 0)",
        sc(nr::GETRANDOM, &[c.as_mut_ptr() as usize, 0, 0]),
    )?;
    ensure!(n == 0, "getrandom(len 0) returned {n}");
    want(
        "getrandom flags 0x100",
        sc(nr::GETRANDOM, &[b.as_mut_ptr() as usize, 8, 0x100]),
        EINVAL,
    )?;
    want(
        "getrandom GRND_RANDOM|GRND_INSECURE",
        sc(nr::GETRANDOM, &[b.as_mut_ptr() as usize, 8, 2 | 4]),
        EINVAL,
    )?;
    Ok(())
}

fn read_fs(off: usize) -> u64 {
    let v: u64;
    // SAFETY: reads through the FS base the case just set to a live block.
    unsafe {
        match off {
            0 => {
                core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) v, options(nostack, readonly))
            }
            _ => {
                core::arch::asm!("mov {}, qword ptr fs:[8]", out(reg) v, options(nostack, readonly))
            }
        }
    }
    v
}

fn tls() -> Res {
    // A minimal x86-64 TLS block: the first word points to itself (the TCB convention).
    let block = anon(PAGE)?;
    poke64(block, block as u64);
    poke64(block + 8, 0x7e57_7e57);
    ok(
        "arch_prctl(ARCH_SET_FS)",
        sc(nr::ARCH_PRCTL, &[0x1002, block]),
    )?;
    let (w0, w1) = (read_fs(0), read_fs(8));
    ensure!(w0 == block as u64, "%fs:0 = {w0:#x}, expected {block:#x}");
    ensure!(w1 == 0x7e57_7e57, "%fs:8 = {w1:#x}, expected 0x7e577e57");
    let mut got: u64 = 0;
    ok(
        "arch_prctl(ARCH_GET_FS)",
        sc(nr::ARCH_PRCTL, &[0x1003, &mut got as *mut u64 as usize]),
    )?;
    ensure!(
        got == block as u64,
        "ARCH_GET_FS = {got:#x}, expected {block:#x}"
    );
    // Survives a context switch (sleep) and is inherited by fork.
    sleep_ms(5);
    ensure!(read_fs(0) == block as u64, "%fs:0 changed across a sleep");
    let st = in_child(|| {
        if read_fs(0) == block as u64 && read_fs(8) == 0x7e57_7e57 {
            0
        } else {
            1
        }
    })?;
    expect_exit("child reading %fs:0", st, 0)
}

fn arch_prctl_errors() -> Res {
    for addr in [KERNEL_BASE, NONCANON_LOW] {
        want(
            &format!("ARCH_SET_FS {addr:#x}"),
            sc(nr::ARCH_PRCTL, &[0x1002, addr]),
            EPERM,
        )?;
    }
    want(
        "arch_prctl code 0x9999",
        sc(nr::ARCH_PRCTL, &[0x9999, 0]),
        EINVAL,
    )?;
    Ok(())
}

fn sigaction() -> Res {
    let mut old = [0u64; 4];
    let o = old.as_mut_ptr() as usize;
    let act = [
        sigaction as *const () as u64,
        0x0400_0000 | 0x1000_0000,
        sigaction as *const () as u64,
        u64::MAX,
    ];
    let a = act.as_ptr() as usize;
    want(
        "rt_sigaction(0)",
        sc(nr::RT_SIGACTION, &[0, a, o, 8]),
        EINVAL,
    )?;
    want(
        "rt_sigaction(65)",
        sc(nr::RT_SIGACTION, &[65, a, o, 8]),
        EINVAL,
    )?;
    want(
        "rt_sigaction(SIGUSR1, sigsetsize 4)",
        sc(nr::RT_SIGACTION, &[10, a, o, 4]),
        EINVAL,
    )?;
    want(
        "rt_sigaction(SIGUSR1, sigsetsize 16)",
        sc(nr::RT_SIGACTION, &[10, a, o, 16]),
        EINVAL,
    )?;
    want(
        "rt_sigaction(SIGKILL, act)",
        sc(nr::RT_SIGACTION, &[9, a, 0, 8]),
        EINVAL,
    )?;
    want(
        "rt_sigaction(SIGSTOP, act)",
        sc(nr::RT_SIGACTION, &[19, a, 0, 8]),
        EINVAL,
    )?;
    ok(
        "rt_sigaction(SIGKILL, NULL, &old)",
        sc(nr::RT_SIGACTION, &[9, 0, o, 8]),
    )?;
    want(
        "rt_sigaction with act in the kernel",
        sc(nr::RT_SIGACTION, &[10, KERNEL_BASE, 0, 8]),
        EFAULT,
    )?;
    ok(
        "rt_sigaction(SIGUSR1, act)",
        sc(nr::RT_SIGACTION, &[10, a, 0, 8]),
    )?;
    ok(
        "rt_sigaction(SIGUSR1, NULL, &old)",
        sc(nr::RT_SIGACTION, &[10, 0, o, 8]),
    )?;
    ensure!(
        old[0] == act[0],
        "handler read back as {:#x}, set {:#x}",
        old[0],
        act[0]
    );
    ensure!(
        old[1] == act[1],
        "flags read back as {:#x}, set {:#x}",
        old[1],
        act[1]
    );
    ensure!(
        old[2] == act[2],
        "restorer read back as {:#x}, set {:#x}",
        old[2],
        act[2]
    );
    // SIGKILL and SIGSTOP can never be in sa_mask.
    let mask = !((1u64 << 8) | (1 << 18));
    ensure!(
        old[3] == mask,
        "sa_mask read back as {:#x}, expected {mask:#x}",
        old[3]
    );
    Ok(())
}

fn sigprocmask() -> Res {
    let usr1: u64 = 1 << 9;
    let mut old: u64 = 0xdead;
    let op = &mut old as *mut u64 as usize;
    want(
        "rt_sigprocmask(how 3)",
        sc(
            nr::RT_SIGPROCMASK,
            &[3, &usr1 as *const u64 as usize, op, 8],
        ),
        EINVAL,
    )?;
    want(
        "rt_sigprocmask(size 4)",
        sc(
            nr::RT_SIGPROCMASK,
            &[0, &usr1 as *const u64 as usize, op, 4],
        ),
        EINVAL,
    )?;
    ok(
        "SIG_SETMASK 0",
        sc(nr::RT_SIGPROCMASK, &[2, &0u64 as *const u64 as usize, 0, 8]),
    )?;
    ok(
        "SIG_BLOCK SIGUSR1",
        sc(
            nr::RT_SIGPROCMASK,
            &[0, &usr1 as *const u64 as usize, op, 8],
        ),
    )?;
    ensure!(old == 0, "old mask {old:#x}, expected 0");
    let kill_stop: u64 = (1 << 8) | (1 << 18);
    ok(
        "SIG_BLOCK SIGKILL|SIGSTOP",
        sc(
            nr::RT_SIGPROCMASK,
            &[0, &kill_stop as *const u64 as usize, 0, 8],
        ),
    )?;
    ok("read mask", sc(nr::RT_SIGPROCMASK, &[0, 0, op, 8]))?;
    ensure!(
        old == usr1,
        "mask {old:#x}, expected only SIGUSR1 ({usr1:#x})"
    );
    ok(
        "SIG_UNBLOCK SIGUSR1",
        sc(nr::RT_SIGPROCMASK, &[1, &usr1 as *const u64 as usize, 0, 8]),
    )?;
    ok("read mask", sc(nr::RT_SIGPROCMASK, &[0, 0, op, 8]))?;
    ensure!(old == 0, "mask {old:#x} after unblocking, expected 0");
    Ok(())
}

fn sigaltstack() -> Res {
    // stack_t: ss_sp (u64), ss_flags (i32 + pad), ss_size (u64).
    let mut old = [0u64; 3];
    ok(
        "sigaltstack(NULL, &old)",
        sc(nr::SIGALTSTACK, &[0, old.as_mut_ptr() as usize]),
    )?;
    ensure!(
        old[1] as u32 == 2,
        "initial ss_flags {:#x}, expected SS_DISABLE (2)",
        old[1] as u32
    );
    let mem = anon(4 * PAGE)?;
    let small = [mem as u64, 0, 100];
    want(
        "sigaltstack size 100",
        sc(nr::SIGALTSTACK, &[small.as_ptr() as usize, 0]),
        ENOMEM,
    )?;
    let bad = [mem as u64, 7, 4 * PAGE as u64];
    want(
        "sigaltstack flags 7",
        sc(nr::SIGALTSTACK, &[bad.as_ptr() as usize, 0]),
        EINVAL,
    )?;
    let good = [mem as u64, 0, 4 * PAGE as u64];
    ok(
        "sigaltstack(16 KiB)",
        sc(nr::SIGALTSTACK, &[good.as_ptr() as usize, 0]),
    )?;
    ok(
        "sigaltstack(NULL, &old)",
        sc(nr::SIGALTSTACK, &[0, old.as_mut_ptr() as usize]),
    )?;
    ensure!(
        old[0] == mem as u64 && old[1] as u32 == 0 && old[2] == 4 * PAGE as u64,
        "read back {old:#x?}"
    );
    Ok(())
}

fn small_calls() -> Res {
    ok("sched_yield", sc(nr::SCHED_YIELD, &[]))?;
    let mut tid_word = 0u32;
    let t = ok(
        "set_tid_address",
        sc(nr::SET_TID_ADDRESS, &[&mut tid_word as *mut u32 as usize]),
    )?;
    ensure!(
        t as i32 == sys::getpid(),
        "set_tid_address returned {t}, pid {}",
        sys::getpid()
    );
    // umask returns the previous mask (PID 1 starts with 022, as on Linux).
    let m0 = ok("umask(027)", sc(95, &[0o027]))?;
    ensure!(m0 == 0o022, "initial umask {m0:#o}, expected 022");
    let m1 = ok("umask(022)", sc(95, &[0o022]))?;
    ensure!(
        m1 == 0o027,
        "umask returned {m1:#o}, expected the 027 just set"
    );
    Ok(())
}
