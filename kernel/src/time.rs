//! Time: the local APIC timer's fixed tick and the hooks it calls, sleeping, the wall
//! clock; the monotonic clock itself is the platform's (`arch::clock`, re-exported).

use core::sync::atomic::{AtomicU64, Ordering};

pub use crate::arch::clock::{calibrate, mark_boot, now_ns, spin_us, tsc_hz};
use crate::arch::trap::{self, TrapFrame};
use crate::arch::{apic, cpu};

/// Timer interrupts per second.
pub const HZ: u64 = 100;

static APIC_TIMER_HZ: AtomicU64 = AtomicU64::new(0);
static TICKS: AtomicU64 = AtomicU64::new(0);

/// Local APIC timer input frequency in Hz.
pub fn apic_timer_hz() -> u64 {
    APIC_TIMER_HZ.load(Ordering::Relaxed)
}

/// Timer ticks since the timer started.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Functions the timer interrupt calls: every tick, and once a second.
struct Hooks {
    every_tick: [Option<fn()>; 4],
    every_second: [Option<fn()>; 4],
}

static HOOKS: spin::Mutex<Hooks> = spin::Mutex::new(Hooks {
    every_tick: [None; 4],
    every_second: [None; 4],
});

fn add_hook(pick: impl FnOnce(&mut Hooks) -> &mut [Option<fn()>; 4], f: fn()) {
    cpu::without_interrupts(|| {
        let mut h = HOOKS.lock();
        match pick(&mut h).iter_mut().find(|s| s.is_none()) {
            Some(slot) => *slot = Some(f),
            None => log::error!("time: no free timer hook slot"),
        }
    })
}

/// Call `f` from the timer interrupt on every tick. It runs in interrupt context: it
/// must not block or take a lock that code with interrupts enabled holds.
pub fn on_every_tick(f: fn()) {
    add_hook(|h| &mut h.every_tick, f);
}

/// Call `f` from the timer interrupt once a second (same rules as [`on_every_tick`]).
pub fn on_every_second(f: fn()) {
    add_hook(|h| &mut h.every_second, f);
}

/// The scheduler's tick, installed by the task layer.
static SCHEDULER_TICK: spin::Once<fn()> = spin::Once::new();
/// The profiler image of the running task, installed by the task layer.
static SAMPLE_IMAGE: spin::Once<fn() -> u32> = spin::Once::new();

/// Call `tick` first on every timer tick (the scheduler's time slice and sleepers), and
/// tag profiler samples with `image()` (the running task's program). Interrupt context:
/// neither may block.
pub fn set_scheduler(tick: fn(), image: fn() -> u32) {
    SCHEDULER_TICK.call_once(|| tick);
    SAMPLE_IMAGE.call_once(|| image);
}

/// Timer interrupts per tick: more than one while the profiler samples faster than HZ.
static SUBTICKS: AtomicU64 = AtomicU64::new(1);
static SUBTICK: AtomicU64 = AtomicU64::new(0);

fn on_tick(frame: &mut TrapFrame) -> bool {
    let per_tick = SUBTICKS.load(Ordering::Relaxed);
    if per_tick > 1 {
        let image = SAMPLE_IMAGE
            .get()
            .map_or_else(crate::profile::kernel_image, |f| f());
        crate::profile::sample(frame, image);
        if !(SUBTICK.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(per_tick) {
            return true;
        }
    }
    let t = TICKS.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(tick) = SCHEDULER_TICK.get() {
        tick();
    }
    // Registration holds the lock only with interrupts off, so it is never held here.
    let hooks = HOOKS.try_lock().map(|h| (h.every_tick, h.every_second));
    if let Some((tick, second)) = hooks {
        tick.iter().flatten().for_each(|f| f());
        if t.is_multiple_of(HZ) {
            second.iter().flatten().for_each(|f| f());
        }
    }
    true
}

/// Start the periodic local APIC timer at [`HZ`].
/// With the profiler on, the timer runs at its rate (a multiple of [`HZ`]) and every
/// interrupt takes a sample; the scheduler's tick still comes at [`HZ`].
pub fn start_timer() {
    trap::set_handler(trap::VECTOR_TIMER, on_tick);
    let profile_hz = crate::profile::init();
    let per_tick = (profile_hz / HZ).max(1);
    SUBTICKS.store(per_tick, Ordering::Relaxed);
    let hz = apic::start_timer(trap::VECTOR_TIMER, HZ * per_tick, tsc_hz());
    APIC_TIMER_HZ.store(hz, Ordering::Relaxed);
}

/// Sleep (halting the CPU) for at least `n` timer ticks. Needs interrupts enabled.
pub fn sleep_ticks(n: u64) {
    let until = ticks() + n;
    while ticks() < until {
        cpu::enable_interrupts_and_halt();
    }
}

static BOOT_UNIX: AtomicU64 = AtomicU64::new(0);

/// Read the wall clock once (at boot); later reads add the monotonic clock to it.
pub fn init_wall_clock() {
    if let Some(t) = crate::arch::rtc::unix_time() {
        BOOT_UNIX.store(
            t.saturating_sub(now_ns() / 1_000_000_000),
            Ordering::Relaxed,
        );
    }
}

/// Nanoseconds since the Unix epoch (0-based at boot if the CMOS clock was unusable).
pub fn wall_ns() -> u64 {
    BOOT_UNIX.load(Ordering::Relaxed) * 1_000_000_000 + now_ns()
}
