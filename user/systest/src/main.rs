//! `systest`: the syscall conformance test (issue 5 item 6).
//!
//! Run as PID 1 (`init=/mnt/bin/systest`) from an ext2 disk mounted at `/mnt` (see
//! tests/tests/syscalls.rs, which makes that disk and checks what this program wrote).
//! Prints a TAP plan and `ok N - name` / `not ok N - name: detail` for every case, and
//! exits 1 if any failed. The same binary runs on a Linux host (as an ordinary process),
//! where every case should pass given the same `/mnt` layout.
//!
//! Each case runs in a forked child, so one that crashes, hangs or leaves odd state behind
//! (a changed directory, a mapping, a TLS base) cannot disturb the others; the runner waits
//! for it with `WNOHANG` polling and gives up on it after a timeout. If fork itself fails
//! the cases run in the runner.
//!
//! The cases that can bring the whole kernel down (last.rs) run at the end, after a
//! `sync`, so a kernel panic there costs neither the other cases nor the files the host
//! checks.
//!
//! Arguments: `systest [SUBSTRING...]` runs only the cases whose names contain one of the
//! substrings (`_` also matches a space: the kernel command line splits words on spaces, e.g.
//! `init=/mnt/bin/systest -- memory: COW_after`). `--child-*` arguments are the modes the
//! cases exec this binary in (argv passing, close-on-exec, state reset by exec).
#![cfg(not(test))]
#![no_std]
#![no_main]

extern crate alloc;

mod copies;
mod direct;
mod files;
mod last;
mod memory;
mod misc;
mod process;
mod safety;
mod util;

use alloc::vec::Vec;
use core::ffi::CStr;

use util::{Case, Res, nr, sc};

/// Exit status of a case process that has printed its own `not ok` line.
const REPORTED: i32 = 77;
/// How long one case may run.
const CASE_TIMEOUT_MS: u64 = 120_000;

sys::entry!(main);

fn main() -> i32 {
    if let Some(mode) = sys::rt::arg(1)
        && mode.to_bytes().starts_with(b"--child-")
    {
        return child_mode(mode.to_bytes());
    }
    let filters: Vec<&'static CStr> = sys::rt::args().skip(1).collect();
    let all: Vec<Case> = [
        process::CASES,
        memory::CASES,
        safety::CASES,
        misc::CASES,
        files::CASES,
        copies::CASES,
        direct::CASES,
        last::CASES,
    ]
    .concat();
    let cases: Vec<Case> = all
        .into_iter()
        .filter(|(name, _)| {
            filters.is_empty()
                || filters.iter().any(|f| {
                    // `_` in a filter may also stand for a space (the command line splits
                    // words on spaces).
                    let raw = f.to_bytes();
                    let spaced: Vec<u8> = raw
                        .iter()
                        .map(|&c| if c == b'_' { b' ' } else { c })
                        .collect();
                    let has =
                        |pat: &[u8]| name.as_bytes().windows(pat.len().max(1)).any(|w| w == pat);
                    has(raw) || has(&spaced)
                })
        })
        .collect();
    say!("# systest: pid {}, {} cases\n", sys::getpid(), cases.len());
    say!("1..{}\n", cases.len());
    let mut failed = 0;
    let mut synced = false;
    for (i, (name, f)) in cases.iter().enumerate() {
        if name.starts_with("last:") && !synced {
            // The last cases may panic the kernel: put what the others wrote on disk
            // first, so the host can still check it.
            synced = true;
            if let Err(e) = sc(nr::SYNC, &[]) {
                say!("# sync before the last cases: {}\n", util::ename(e));
            }
        }
        if !run_case(i + 1, name, *f) {
            failed += 1;
        }
    }
    say!(
        "# systest: {} of {} cases passed, {failed} failed\n",
        cases.len() - failed,
        cases.len()
    );
    if failed > 0 { 1 } else { 0 }
}

/// Run case `n` in a child; print its line; true if it passed.
fn run_case(n: usize, name: &str, f: fn() -> Res) -> bool {
    let pid = match sc(nr::FORK, &[]) {
        Ok(0) => match f() {
            Ok(()) => util::exit(0),
            Err(d) => {
                say!("not ok {n} - {name}: {d}\n");
                util::exit(REPORTED)
            }
        },
        Ok(pid) => pid as i32,
        Err(e) => {
            say!(
                "# fork failed ({}): running case {n} in the runner\n",
                util::ename(e)
            );
            return report(n, name, f());
        }
    };
    let start = util::now_ns(sys::CLOCK_MONOTONIC).ok();
    let mut polls: u64 = 0;
    let mut nap = 1;
    let st = loop {
        match util::wait4(pid, util::WNOHANG) {
            Ok((0, _)) => {
                polls += 1;
                let waited_ms = match (start, util::now_ns(sys::CLOCK_MONOTONIC).ok()) {
                    (Some(a), Some(b)) => b.saturating_sub(a) / 1_000_000,
                    _ => polls * nap,
                };
                if waited_ms > CASE_TIMEOUT_MS {
                    // Try to end it (so it holds nothing); reaping it later does not matter.
                    let _ = sc(nr::KILL, &[pid as usize, 9]);
                    say!(
                        "not ok {n} - {name}: timed out after {} s (case process {pid} sent SIGKILL)\n",
                        waited_ms / 1000
                    );
                    return false;
                }
                util::sleep_ms(nap);
                nap = (nap * 2).min(16);
            }
            Ok((p, st)) if p == pid => break st,
            Ok((p, _)) => {
                say!("not ok {n} - {name}: wait4({pid}, WNOHANG) returned pid {p}\n");
                return false;
            }
            Err(e) => {
                say!(
                    "not ok {n} - {name}: wait4({pid}, WNOHANG): {}\n",
                    util::ename(e)
                );
                return false;
            }
        }
    };
    if util::wifexited(st) && util::wexitstatus(st) == 0 {
        say!("ok {n} - {name}\n");
        true
    } else if util::wifexited(st) && util::wexitstatus(st) == REPORTED {
        false
    } else {
        say!(
            "not ok {n} - {name}: the case process {} (raw status {st:#x})\n",
            util::status_str(st)
        );
        false
    }
}

fn report(n: usize, name: &str, r: Res) -> bool {
    match r {
        Ok(()) => {
            say!("ok {n} - {name}\n");
            true
        }
        Err(d) => {
            say!("not ok {n} - {name}: {d}\n");
            false
        }
    }
}

fn parse_num(s: Option<&CStr>) -> Option<i64> {
    let b = s?.to_bytes();
    let (neg, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits.iter().fold(0i64, |a, &c| a * 10 + (c - b'0') as i64);
    Some(if neg { -v } else { v })
}

/// The modes the cases exec this program in; each exits with a code the case checks.
fn child_mode(mode: &[u8]) -> i32 {
    let arg = sys::rt::arg;
    match mode {
        // Exit with the number given: proves argv reached the new program.
        b"--child-exec" => parse_num(arg(2)).map_or(100, |v| v as i32),
        // Exact argv and envp.
        b"--child-args" => {
            let want: [&[u8]; 4] = [b"a", b"bb", b"", b"dddd"];
            if sys::rt::argc() != 6 {
                return 10 + sys::rt::argc().min(50) as i32;
            }
            for (i, w) in want.iter().enumerate() {
                if arg(i + 2).map(|a| a.to_bytes()) != Some(*w) {
                    return 70 + i as i32;
                }
            }
            let envs: Vec<&[u8]> = sys::rt::env_vars().collect();
            if envs != [&b"SYSTEST_ENV=xyz"[..], &b"SECOND=2"[..]] {
                return 80 + envs.len().min(9) as i32;
            }
            37
        }
        // `--child-fd CLOSED KEPT`: CLOSED had FD_CLOEXEC, KEPT did not.
        b"--child-fd" => {
            let (Some(closed), Some(kept)) = (parse_num(arg(2)), parse_num(arg(3))) else {
                return 100;
            };
            match sc(nr::FCNTL, &[closed as usize, 1]) {
                Err(sys::errno::EBADF) => {}
                Ok(_) => return 1,
                Err(_) => return 2,
            }
            match sc(nr::FCNTL, &[kept as usize, 1]) {
                Ok(0) => 0,
                Ok(_) => 3,
                Err(_) => 4,
            }
        }
        // exec resets the FS base.
        b"--child-fs" => {
            let mut fs: u64 = 1;
            match sc(nr::ARCH_PRCTL, &[0x1003, &mut fs as *mut u64 as usize]) {
                Ok(_) if fs == 0 => 0,
                Ok(_) => 1,
                Err(_) => 2,
            }
        }
        // exec resets caught signals to SIG_DFL and keeps ignored ones ignored:
        // SIGUSR1 (10) had a handler, SIGUSR2 (12) was SIG_IGN.
        b"--child-sig" => {
            let mut old = [0u64; 4];
            let mut get = |sig: usize| -> Option<u64> {
                sc(nr::RT_SIGACTION, &[sig, 0, old.as_mut_ptr() as usize, 8]).ok()?;
                Some(old[0])
            };
            match (get(10), get(12)) {
                (Some(0), Some(1)) => 0,
                (Some(_), Some(1)) => 1,
                (Some(0), Some(_)) => 2,
                _ => 3,
            }
        }
        // `--child-mem ADDR`: the old program's mapping at ADDR is gone after exec.
        b"--child-mem" => {
            let Some(addr) = parse_num(arg(2)) else {
                return 100;
            };
            match util::mprotect(addr as usize, util::PAGE, util::PROT_READ) {
                Err(sys::errno::ENOMEM) => 0,
                Ok(_) => 1,
                Err(_) => 2,
            }
        }
        _ => 100,
    }
}
