//! Process system calls: fork, vfork, clone (fork-like only), execve, exit, exit_group,
//! wait4, getpid, getppid, gettid, kill (of oneself or a child, fatal only).

use crate::arch::trap::TrapFrame;
use crate::errno::{Errno, SysResult};
use crate::proc::{self, elf};
use crate::uaccess;

const CLONE_VM: u64 = 0x100;
const CLONE_VFORK: u64 = 0x4000;
const CLONE_THREAD: u64 = 0x10000;
const CSIGNAL: u64 = 0xff;
const WNOHANG: u64 = 1;
const PATH_MAX: usize = 4096;

pub fn dispatch(nr: u64, a: &[u64; 6], frame: &mut TrapFrame) -> Option<SysResult> {
    Some(match nr {
        57 => proc::fork(frame, false),
        58 => proc::fork(frame, true),
        56 => clone(a, frame),
        59 => execve(a, frame),
        60 | 231 => proc::exit(proc::exit_code(a[0] as i32)),
        61 => wait4(a),
        39 | 186 => Ok(proc::current().pid as u64),
        110 => Ok(proc::current()
            .ppid
            .load(core::sync::atomic::Ordering::Relaxed) as u64),
        62 => kill(a),
        _ => return None,
    })
}

/// clone: only the fork-like forms (no shared address space, no threads).
fn clone(a: &[u64; 6], frame: &TrapFrame) -> SysResult {
    let flags = a[0];
    if flags & CLONE_THREAD != 0 || (flags & CLONE_VM != 0 && flags & CLONE_VFORK == 0) {
        return Err(Errno::ENOSYS);
    }
    if a[1] != 0 {
        // A new stack for the child only makes sense with a shared address space.
        return Err(Errno::EINVAL);
    }
    let _ = flags & CSIGNAL;
    proc::fork(frame, flags & CLONE_VFORK != 0)
}

fn execve(a: &[u64; 6], frame: &mut TrapFrame) -> SysResult {
    let path = uaccess::read_cstr(a[0], PATH_MAX)?;
    let argv = uaccess::read_cstr_array(a[1], 65536, elf::ARG_MAX)?;
    let envp = uaccess::read_cstr_array(a[2], 65536, elf::ARG_MAX)?;
    proc::execve(frame, &path, argv, envp)?;
    Ok(0)
}

fn wait4(a: &[u64; 6]) -> SysResult {
    let (pid, status_ptr, options) = (a[0] as i32 as i64, a[1], a[2]);
    if options & !(WNOHANG | 2 | 8 | 0x4000_0000 | 0x8000_0000 | 0x2000_0000) != 0 {
        return Err(Errno::EINVAL);
    }
    if pid < -1 {
        // Process groups are not kept; treat -pgid as "any".
    }
    if status_ptr != 0 {
        uaccess::check_range(status_ptr, 4)?;
    }
    match proc::wait(if pid < -1 { -1 } else { pid }, options & WNOHANG != 0)? {
        None => Ok(0),
        Some((cpid, status)) => {
            if status_ptr != 0 {
                uaccess::write_i32(status_ptr, status)?;
            }
            if a[3] != 0 {
                // struct rusage: zeroed (no accounting yet).
                uaccess::copy_to_user(a[3], &[0u8; 144])?;
            }
            Ok(cpid as u64)
        }
    }
}

fn kill(a: &[u64; 6]) -> SysResult {
    let (pid, sig) = (a[0] as i32, a[1]);
    if sig > 64 {
        return Err(Errno::EINVAL);
    }
    let me = proc::current().pid;
    // Process groups are not kept: 0 and -1 mean the caller only (never "everyone").
    let target = match pid {
        0 | -1 => me,
        p if p < -1 => p.unsigned_abs(),
        p => p as u32,
    };
    proc::send_signal(target, sig as u32)?;
    if target == me {
        proc::check_pending_kill();
    }
    Ok(0)
}
