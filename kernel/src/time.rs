//! Time: the local APIC timer's fixed tick and the hooks it calls, sleeping, the wall
//! clock; the monotonic clock itself is the platform's (`arch::clock`, re-exported).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use crate::arch::clock::{calibrate, mark_boot, now_ns, spin_us, tsc_hz};
use crate::arch::trap::{self, TrapFrame};
use crate::arch::{apic, cpu, ioapic, pit};

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
///
/// With the profiler on, samples come from the PIT's interrupt delivered as an NMI, at
/// the profiler's rate: an NMI also lands in code that runs with interrupts off
/// (interrupt handlers, spin-locked sections, a device register access QEMU serves
/// synchronously), which a timer interrupt would only see once interrupts are back on,
/// charging it to the wrong code (the idle loop, for interrupt handlers). Without an
/// IOAPIC, or with `profile_clock=timer`, the timer itself runs at the profiler's rate (a
/// multiple of [`HZ`]) and every interrupt takes a sample; the scheduler's tick still
/// comes at [`HZ`].
pub fn start_timer() {
    trap::set_handler(trap::VECTOR_TIMER, on_tick);
    let profile_hz = crate::profile::init();
    let by_nmi = profile_hz > 0
        && crate::cmdline::value("profile_clock") != Some("timer")
        && start_nmi_sampling(profile_hz);
    let per_tick = if by_nmi { 1 } else { (profile_hz / HZ).max(1) };
    SUBTICKS.store(per_tick, Ordering::Relaxed);
    let hz = apic::start_timer(trap::VECTOR_TIMER, HZ * per_tick, tsc_hz());
    APIC_TIMER_HZ.store(hz, Ordering::Relaxed);
}

/// NMIs are the PIT's sampling ticks (once [`start_nmi_sampling`] has routed them).
static NMI_SAMPLING: AtomicBool = AtomicBool::new(false);

/// Take a profiler sample of the code an NMI interrupted. Every NMI counts as a sampling
/// tick once the PIT sends them (a hardware NMI while profiling is taken for one).
fn on_nmi(frame: &mut TrapFrame) -> bool {
    if !NMI_SAMPLING.load(Ordering::Relaxed) {
        return false;
    }
    let image = SAMPLE_IMAGE
        .get()
        .map_or_else(crate::profile::kernel_image, |f| f());
    crate::profile::sample(frame, image);
    true
}

/// Route the PIT's IRQ 0 to this CPU as an NMI at `hz`; false where there is no IOAPIC
/// input for it.
fn start_nmi_sampling(hz: u64) -> bool {
    let (gsi, _) = ioapic::isa_irq(0);
    trap::set_nmi_handler(on_nmi);
    NMI_SAMPLING.store(true, Ordering::Relaxed);
    if ioapic::count() == 0 || !ioapic::route_nmi(gsi, apic::id()) {
        NMI_SAMPLING.store(false, Ordering::Relaxed);
        return false;
    }
    let rate = pit::start_periodic(hz);
    crate::kprintln!("profile: samples by NMI from the PIT (IRQ 0, GSI {gsi}) at {rate} Hz");
    true
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
