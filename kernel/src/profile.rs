//! The sampling profiler. With `profile` on the kernel command line (`profile=HZ` picks
//! the rate, default 1000; `profile_samples=N` the buffer, default 200000), the timer
//! interrupt runs at that rate and records, for each tick, the interrupted instruction
//! pointer and a frame-pointer backtrace of up to [`DEPTH`] frames, of kernel or user
//! code, with the program (or kernel task) that was running. The kernel and the user
//! tools are built with frame pointers for this.
//!
//! At poweroff (or when PID 1 ends the run) the samples are folded into distinct stacks
//! and printed on the serial console between `PROFILE-BEGIN` and `PROFILE-END`:
//!
//! ```text
//! PROFILE-BEGIN hz=1000 samples=12345 dropped=0
//! PROFILE-IMAGE <id> <name>               a program (or kernel task) samples refer to
//! PROFILE-STACK <count> <image> <k|u> <hex ip>,<hex return address>,...
//! PROFILE-END
//! ```
//!
//! `cargo run -p boot -- profile LOG` (see the README) symbolizes them with the kernel
//! and user ELFs, prints a flat top 30 and writes a flame graph.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use spin::Mutex;

use crate::arch::paging::{self, KERNEL_HALF};
use crate::arch::trap::TrapFrame;
use crate::{cmdline, kprintln};

/// Frames recorded per sample (the interrupted address included).
pub const DEPTH: usize = 12;

#[derive(Clone, Copy)]
struct Sample {
    image: u32,
    user: bool,
    depth: u8,
    frames: [u64; DEPTH],
}

struct Profile {
    samples: Vec<Sample>,
    /// Program and kernel-task names, indexed by image id.
    images: Vec<String>,
}

static ON: AtomicBool = AtomicBool::new(false);
static HZ: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static PROFILE: Mutex<Option<Profile>> = Mutex::new(None);
/// Image id of kernel code running outside any process or named task.
const KERNEL_IMAGE: u32 = 0;

/// The sampling rate the command line asks for (0: profiling off). Read before the
/// timer starts; allocates the sample buffer.
pub fn init() -> u64 {
    let Some(v) = cmdline::value("profile") else {
        return 0;
    };
    let hz = v.parse().unwrap_or(1000).clamp(100, 10_000);
    let cap = cmdline::value("profile_samples")
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000usize);
    let mut samples = Vec::new();
    if samples.try_reserve_exact(cap).is_err() {
        log::error!("profile: no memory for {cap} samples; profiling off");
        return 0;
    }
    crate::arch::cpu::without_interrupts(|| {
        *PROFILE.lock() = Some(Profile {
            samples,
            images: alloc::vec![String::from("kernel")],
        })
    });
    HZ.store(hz, Ordering::Relaxed);
    ON.store(true, Ordering::Release);
    // The samples go out on the console before the machine stops.
    crate::arch::acpi::before_poweroff(dump);
    kprintln!("profile: sampling at {hz} Hz, room for {cap} samples");
    hz
}

/// Whether the profiler is sampling.
pub fn enabled() -> bool {
    ON.load(Ordering::Acquire)
}

/// An image id for `name` (a program just started by execve, or a kernel task), for
/// [`sample`] to tag what runs. 0 when profiling is off.
pub fn image(name: &str) -> u32 {
    if !enabled() {
        return 0;
    }
    crate::arch::cpu::without_interrupts(|| {
        let mut g = PROFILE.lock();
        let Some(p) = g.as_mut() else { return 0 };
        if let Some(i) = p.images.iter().position(|n| n == name) {
            return i as u32;
        }
        p.images.push(String::from(name));
        (p.images.len() - 1) as u32
    })
}

/// Record one sample of the code `frame` interrupted (from the timer interrupt, with
/// `image` the id of what runs).
pub fn sample(frame: &TrapFrame, image: u32) {
    if !enabled() {
        return;
    }
    let user = frame.from_user();
    let mut frames = [0u64; DEPTH];
    frames[0] = frame.rip;
    // Frames live on the interrupted stack, above its stack pointer.
    let (lo, hi) = if user {
        (frame.rsp, paging::USER_END)
    } else {
        (
            frame.rsp.max(KERNEL_HALF),
            frame.rsp.saturating_add(1 << 20),
        )
    };
    let depth = 1 + crate::arch::backtrace::walk(&mut frames[1..], frame.rbp, lo, hi);
    let s = Sample {
        image,
        user,
        depth: depth as u8,
        frames,
    };
    // Only the sampling tick (an NMI, or the timer interrupt) adds samples, and it never
    // waits for the lock: an NMI may have interrupted its holder (`image`, the dump),
    // and then the sample is dropped and counted.
    match PROFILE.try_lock() {
        Some(mut g) => match g.as_mut() {
            Some(p) if p.samples.len() < p.samples.capacity() => p.samples.push(s),
            _ => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        },
        None => {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

static DUMPED: AtomicU32 = AtomicU32::new(0);

/// Stop sampling and print the folded samples on the console (once).
pub fn dump() {
    if !enabled() || DUMPED.swap(1, Ordering::AcqRel) != 0 {
        return;
    }
    ON.store(false, Ordering::Release);
    let Some(p) = crate::arch::cpu::without_interrupts(|| PROFILE.lock().take()) else {
        return;
    };
    let mut folded: BTreeMap<(u32, bool, Vec<u64>), u64> = BTreeMap::new();
    for s in &p.samples {
        *folded
            .entry((s.image, s.user, s.frames[..s.depth as usize].to_vec()))
            .or_default() += 1;
    }
    kprintln!(
        "PROFILE-BEGIN hz={} samples={} dropped={}",
        HZ.load(Ordering::Relaxed),
        p.samples.len(),
        DROPPED.load(Ordering::Relaxed)
    );
    for (i, name) in p.images.iter().enumerate() {
        kprintln!("PROFILE-IMAGE {i} {name}");
    }
    for ((image, user, frames), count) in folded {
        let mut line = alloc::format!(
            "PROFILE-STACK {count} {image} {}",
            if user { 'u' } else { 'k' }
        );
        for (i, f) in frames.iter().enumerate() {
            line.push(if i == 0 { ' ' } else { ',' });
            line.push_str(&alloc::format!("{f:x}"));
        }
        kprintln!("{line}");
    }
    kprintln!("PROFILE-END");
}

/// The image id of kernel code with no process and no task name.
pub const fn kernel_image() -> u32 {
    KERNEL_IMAGE
}
