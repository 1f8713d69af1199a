//! The rest of what a static program (Rust without libc, or musl) calls: uname, clocks,
//! sleeping, getrandom, reboot, arch_prctl, set_tid_address, signal bookkeeping, ids.

use core::sync::atomic::Ordering;

use crate::arch::paging::USER_END;
use crate::arch::{cpu, syscall as arch_syscall};
use crate::errno::{Errno, SysResult};
use crate::proc;
use crate::uaccess;
use crate::{task, time};

pub fn dispatch(nr: u64, a: &[u64; 6]) -> Option<SysResult> {
    Some(match nr {
        63 => uname(a[0]),
        228 => clock_gettime(a[0], a[1]),
        229 => clock_getres(a[0], a[1]),
        96 => gettimeofday(a[0]),
        201 => {
            let t = time::wall_ns() / 1_000_000_000;
            if a[0] != 0 {
                uaccess::write_u64(a[0], t).map(|_| t)
            } else {
                Ok(t)
            }
        }
        35 => nanosleep(a[0]),
        230 => clock_nanosleep(a),
        318 => getrandom(a),
        169 => reboot(a),
        158 => arch_prctl(a),
        218 => {
            let p = proc::current();
            p.clear_child_tid.store(a[0], Ordering::Relaxed);
            Ok(p.pid as u64)
        }
        13 => rt_sigaction(a),
        14 => rt_sigprocmask(a),
        131 => sigaltstack(a),
        102 | 104 | 107 | 108 => Ok(0),
        95 => {
            let p = proc::current();
            let mut files = p.files.lock();
            let old = files.umask();
            files.set_umask(a[0] as u32 & 0o777);
            Ok(old as u64)
        }
        24 => {
            task::yield_now();
            Ok(0)
        }
        273 => Ok(0), // set_robust_list: recorded nowhere (no threads)
        109 | 112 => Ok(proc::current().pid as u64), // setpgid/setsid: one session
        111 | 121 | 124 => Ok(1), // getpgrp/getpgid/getsid
        _ => return None,
    })
}

fn field(s: &str) -> [u8; 65] {
    let mut f = [0u8; 65];
    f[..s.len()].copy_from_slice(s.as_bytes());
    f
}

fn uname(buf: u64) -> SysResult {
    let mut u = [0u8; 65 * 6];
    for (i, s) in [
        "AliasOS",
        "aliasos",
        crate::VERSION,
        "#1 AliasOS zero-copy storage unikernel",
        "x86_64",
        "(none)",
    ]
    .iter()
    .enumerate()
    {
        u[i * 65..(i + 1) * 65].copy_from_slice(&field(s));
    }
    uaccess::copy_to_user(buf, &u)?;
    Ok(0)
}

fn timespec_bytes(ns: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
    b[8..].copy_from_slice(&(ns % 1_000_000_000).to_le_bytes());
    b
}

fn clock_ns(clock: u64) -> Result<u64, Errno> {
    match clock {
        0 | 5 | 8 | 11 => Ok(time::wall_ns()), // REALTIME, _COARSE, _ALARM, TAI
        1 | 4 | 6 | 7 | 9 => Ok(time::now_ns()), // MONOTONIC, _RAW, _COARSE, BOOTTIME
        2 | 3 => Ok(time::now_ns()),           // CPU time: approximated by elapsed time
        _ => Err(Errno::EINVAL),
    }
}

fn clock_gettime(clock: u64, ts: u64) -> SysResult {
    let ns = clock_ns(clock)?;
    uaccess::copy_to_user(ts, &timespec_bytes(ns))?;
    Ok(0)
}

fn clock_getres(clock: u64, ts: u64) -> SysResult {
    clock_ns(clock)?;
    if ts != 0 {
        uaccess::copy_to_user(ts, &timespec_bytes(1))?;
    }
    Ok(0)
}

fn gettimeofday(tv: u64) -> SysResult {
    if tv != 0 {
        let ns = time::wall_ns();
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
        b[8..].copy_from_slice(&((ns % 1_000_000_000) / 1000).to_le_bytes());
        uaccess::copy_to_user(tv, &b)?;
    }
    Ok(0)
}

/// A user `struct timespec` as nanoseconds (EINVAL for a negative or out-of-range one).
pub(super) fn read_timespec(va: u64) -> Result<u64, Errno> {
    let mut b = [0u8; 16];
    uaccess::copy_from_user(va, &mut b)?;
    let sec = i64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
    let nsec = i64::from_le_bytes(b[8..].try_into().unwrap_or([0; 8]));
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    Ok((sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(nsec as u64))
}

fn nanosleep(req: u64) -> SysResult {
    let ns = read_timespec(req)?;
    task::sleep_ns(ns);
    Ok(0)
}

fn clock_nanosleep(a: &[u64; 6]) -> SysResult {
    let (clock, flags, req) = (a[0], a[1], a[2]);
    clock_ns(clock)?;
    if clock == 2 || clock == 3 {
        return Err(Errno::EOPNOTSUPP);
    }
    let ns = read_timespec(req)?;
    if flags & 1 != 0 {
        // TIMER_ABSTIME
        let now = clock_ns(clock)?;
        task::sleep_ns(ns.saturating_sub(now));
    } else {
        task::sleep_ns(ns);
    }
    Ok(0)
}

fn getrandom(a: &[u64; 6]) -> SysResult {
    let (buf, len, flags) = (a[0], a[1] as usize, a[2]);
    // GRND_NONBLOCK 1, GRND_RANDOM 2, GRND_INSECURE 4 (not with GRND_RANDOM).
    if flags & !7 != 0 || flags & 6 == 6 {
        return Err(Errno::EINVAL);
    }
    let len = len.min(32 << 20);
    let n = uaccess::fill_user(buf, len, |chunk| {
        cpu::random_bytes(chunk);
        Ok(chunk.len())
    })?;
    Ok(n as u64)
}

fn reboot(a: &[u64; 6]) -> SysResult {
    const MAGIC1: u64 = 0xfee1_dead;
    const MAGIC2: [u64; 4] = [672_274_793, 85_072_278, 369_367_448, 537_993_216];
    if a[0] as u32 as u64 != MAGIC1 || !MAGIC2.contains(&(a[1] as u32 as u64)) {
        return Err(Errno::EINVAL);
    }
    match a[2] as u32 {
        0x4321_fedc | 0xcdef_0123 => {
            sync_everything();
            crate::kprintln!("poweroff");
            crate::arch::acpi::poweroff()
        }
        0x0123_4567 => {
            sync_everything();
            crate::kprintln!("restart");
            cpu::reset()
        }
        0x89ab_cdef | 0 => Ok(0), // CAD_ON / CAD_OFF
        _ => Err(Errno::EINVAL),
    }
}

fn sync_everything() {
    proc::log_survivors();
    proc::sync_all_mappings();
    if let Err(e) = crate::vfs::sync_all() {
        log::error!("sync before reboot/poweroff failed: {e:?}");
    }
}

fn arch_prctl(a: &[u64; 6]) -> SysResult {
    const ARCH_SET_FS: u64 = 0x1002;
    const ARCH_GET_FS: u64 = 0x1003;
    match a[0] {
        ARCH_SET_FS => {
            if a[1] >= USER_END {
                return Err(Errno::EPERM);
            }
            arch_syscall::set_fs_base(a[1]);
            Ok(0)
        }
        ARCH_GET_FS => uaccess::write_u64(a[1], arch_syscall::fs_base()).map(|_| 0),
        _ => Err(Errno::EINVAL),
    }
}

fn check_signal(sig: u64) -> Result<usize, Errno> {
    if (1..=64).contains(&sig) {
        Ok(sig as usize - 1)
    } else {
        Err(Errno::EINVAL)
    }
}

fn rt_sigaction(a: &[u64; 6]) -> SysResult {
    let (sig, act, oact, size) = (a[0], a[1], a[2], a[3]);
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let i = check_signal(sig)?;
    if act != 0 && (sig == 9 || sig == 19) {
        return Err(Errno::EINVAL);
    }
    let mut new = [0u8; 32];
    if act != 0 {
        uaccess::copy_from_user(act, &mut new)?;
        // sa_mask (bytes 24..32): SIGKILL and SIGSTOP can never be blocked.
        let mask = u64::from_le_bytes(new[24..32].try_into().unwrap_or([0; 8]));
        let mask = mask & !((1 << 8) | (1 << 18));
        new[24..32].copy_from_slice(&mask.to_le_bytes());
    }
    let p = proc::current();
    let old = p.signals.lock().actions[i];
    if oact != 0 {
        uaccess::copy_to_user(oact, &old)?;
    }
    if act != 0 {
        p.signals.lock().actions[i] = new;
    }
    Ok(0)
}

fn rt_sigprocmask(a: &[u64; 6]) -> SysResult {
    let (how, set, oset, size) = (a[0], a[1], a[2], a[3]);
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let p = proc::current();
    let old = p.signals.lock().mask;
    let new = if set != 0 {
        let s = uaccess::read_u64(set)?;
        // SIGKILL and SIGSTOP cannot be blocked.
        let s = s & !((1 << 8) | (1 << 18));
        Some(match how {
            0 => old | s,
            1 => old & !s,
            2 => s,
            _ => return Err(Errno::EINVAL),
        })
    } else {
        None
    };
    if oset != 0 {
        uaccess::write_u64(oset, old)?;
    }
    if let Some(n) = new {
        p.signals.lock().mask = n;
    }
    Ok(0)
}

fn sigaltstack(a: &[u64; 6]) -> SysResult {
    let (ss, oss) = (a[0], a[1]);
    let mut new = [0u8; 24];
    if ss != 0 {
        uaccess::copy_from_user(ss, &mut new)?;
        let flags = i32::from_le_bytes(new[8..12].try_into().unwrap_or([0; 4]));
        let size = u64::from_le_bytes(new[16..24].try_into().unwrap_or([0; 8]));
        if flags != 0 && flags != 2 {
            return Err(Errno::EINVAL);
        }
        if flags == 0 && size < 2048 {
            return Err(Errno::ENOMEM);
        }
    }
    let p = proc::current();
    let old = p.signals.lock().altstack;
    if oss != 0 {
        uaccess::copy_to_user(oss, &old)?;
    }
    if ss != 0 {
        p.signals.lock().altstack = new;
    }
    Ok(0)
}
