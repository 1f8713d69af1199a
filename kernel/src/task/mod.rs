//! Tasks and the scheduler: one task per process, kernel tasks (ring-0 loops such as
//! the writeback task), and the idle task (the boot stack); a round-robin run queue,
//! wait queues and sleeping.
//!
//! The kernel is not preempted: a task runs in the kernel until it returns to user mode or
//! blocks (waits for a disk, a child, a pipe, the keyboard, a timer). The timer preempts
//! tasks only on their way back to ring 3. So a lock can only be found taken when its
//! holder is blocked; waiters then yield (see `mm::sync`) instead of spinning forever.
//! Run queue and wait queue lists are touched only with interrupts disabled, because
//! interrupt handlers wake tasks.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};

use spin::Mutex;

use crate::arch::context::{self, FpuState, TaskContext};
use crate::arch::trap::{self, TrapFrame};
use crate::arch::{cpu, syscall};

/// Ticks (at `time::HZ`) a task runs before the timer preempts it on return to user mode.
const TIME_SLICE_TICKS: u64 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Runnable = 0,
    Blocked = 1,
    Dead = 2,
}

/// A schedulable thread of execution.
pub struct Task {
    pub id: u64,
    ctx: TaskContext,
    state: AtomicU8,
    /// User FPU/SSE registers while switched out.
    fpu: Mutex<FpuState>,
    /// User FS base (thread pointer) while switched out.
    fs_base: AtomicU64,
    /// The process this task runs, if any (the idle task and kernel tasks have none).
    process: Option<Arc<dyn TaskOwner>>,
    /// A kernel task's name (for messages); empty for process tasks.
    pub name: &'static str,
    /// What the profiler tags this task's samples with (its program or task name).
    profile_image: AtomicU32,
}

/// What a user task runs on behalf of: its process. The task layer asks it only for its
/// page tables and whether a fatal signal is pending; the process layer gets its own type
/// back with [`Task::process`].
pub trait TaskOwner: Any + Send + Sync {
    /// The physical address of its top-level page table (loaded into CR3 on a switch).
    fn page_table_root(&self) -> u64;
    /// Whether a fatal signal is pending. Called with interrupts off: takes no lock.
    fn kill_pending(&self) -> bool;
}

impl Task {
    /// The process this task runs, as the process layer's type `P`.
    pub fn process<P: TaskOwner>(&self) -> Option<Arc<P>> {
        let owner: Arc<dyn Any + Send + Sync> = self.process.clone()?;
        owner.downcast().ok()
    }

    /// Whether the task runs a process (has user state to save and restore).
    pub fn is_user(&self) -> bool {
        self.process.is_some()
    }

    fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            0 => State::Runnable,
            1 => State::Blocked,
            _ => State::Dead,
        }
    }

    fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::Release);
    }
}

struct Scheduler {
    current: Arc<Task>,
    idle: Arc<Task>,
    run_queue: VecDeque<Arc<Task>>,
    /// A dead task switched away from; dropped by whoever runs next (its stack was in use
    /// until the switch).
    reap: Option<Arc<Task>>,
    slice_left: u64,
}

static SCHED: Mutex<Option<Scheduler>> = Mutex::new(None);
static NEED_RESCHED: AtomicBool = AtomicBool::new(false);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn with_sched<R>(f: impl FnOnce(&mut Scheduler) -> R) -> Option<R> {
    cpu::without_interrupts(|| SCHED.lock().as_mut().map(f))
}

/// Make the code running on the boot stack the idle task and start scheduling.
pub fn init() {
    context::enable_fpu();
    crate::arch::kstack::init();
    let idle = Arc::new(Task {
        id: 0,
        ctx: TaskContext::boot(),
        state: AtomicU8::new(State::Runnable as u8),
        fpu: Mutex::new(FpuState::initial()),
        fs_base: AtomicU64::new(0),
        process: None,
        name: "idle",
        profile_image: AtomicU32::new(crate::profile::image("idle")),
    });
    cpu::without_interrupts(|| {
        *SCHED.lock() = Some(Scheduler {
            current: idle.clone(),
            idle,
            run_queue: VecDeque::new(),
            reap: None,
            slice_left: TIME_SLICE_TICKS,
        })
    });
    crate::time::set_scheduler(tick, current_profile_image);
    mm::lock_order::set_hooks(mm::lock_order::Hooks {
        context: || current().map_or(0, |t| t.id),
        backtrace: crate::arch::backtrace::here,
    });
    if crate::cmdline::value("lockcheck") == Some("0") {
        mm::lock_order::set_enabled(false);
    }
    crate::arch::acpi::before_poweroff(|| {
        if mm::lock_order::enabled() {
            crate::kprintln!(
                "lock order: checked, {} ordered pairs recorded, no violation",
                mm::lock_order::recorded_pairs()
            );
            // `lockcheck=dump`: every pair, to read the kernel's actual lock order.
            if crate::cmdline::value("lockcheck") == Some("dump") {
                mm::lock_order::each_recorded_pair(|held, taken| {
                    crate::kprintln!("lock order: {held} -> {taken}");
                });
            }
        }
    });
    context::set_task_started_hook(task_started);
    trap::set_return_to_user_hook(return_to_user);
    mm::sync::set_relax_hook(relax);
    mm::sync::set_wait_hooks(mm::sync::WaitHooks {
        wait: lock_wait,
        wake: lock_wake,
    });
}

/// Wait queues for sleeping locks (`mm::sync::Mutex`), shared by hashing the lock's
/// address: a wake-up meant for another lock in the same bucket is merely spurious.
static LOCK_QUEUES: [WaitQueue; 32] = [const { WaitQueue::new() }; 32];

fn lock_queue(key: usize) -> &'static WaitQueue {
    &LOCK_QUEUES[(key >> 4).wrapping_mul(0x9E37_79B9) % LOCK_QUEUES.len()]
}

fn lock_wait(key: usize, cond: &mut dyn FnMut() -> bool) {
    if !cpu::interrupts_enabled() || trap::in_interrupt() {
        return; // may not sleep here: the caller spins instead
    }
    lock_queue(key).wait_until(cond);
}

fn lock_wake(key: usize) {
    lock_queue(key).wake_all();
}

/// The running task.
pub fn current() -> Option<Arc<Task>> {
    with_sched(|s| s.current.clone())
}

/// Whether the running code is the idle task (the boot stack), which never blocks.
pub fn in_idle() -> bool {
    with_sched(|s| Arc::ptr_eq(&s.current, &s.idle)).unwrap_or(true)
}

/// Create a task for `process` that starts in user mode with registers `frame`, and make
/// it runnable.
pub fn spawn_user(
    process: Arc<dyn TaskOwner>,
    name: &str,
    frame: &TrapFrame,
    fpu: FpuState,
    fs_base: u64,
) -> Result<Arc<Task>, mm::frame_alloc::AllocError> {
    let image = crate::profile::image(name);
    let task = Arc::new(Task {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        ctx: TaskContext::new_user(frame)?,
        state: AtomicU8::new(State::Runnable as u8),
        fpu: Mutex::new(fpu),
        fs_base: AtomicU64::new(fs_base),
        profile_image: AtomicU32::new(image),
        process: Some(process),
        name: "",
    });
    with_sched(|s| s.run_queue.push_back(task.clone()));
    Ok(task)
}

/// Start a kernel task running `body` (which never returns) in ring 0, on a stack of its
/// own, with the page tables of whatever ran before it (the kernel half is the same in
/// every address space). It is scheduled like any task: it runs until it blocks or
/// yields.
pub fn spawn_kernel(
    name: &'static str,
    body: fn() -> !,
) -> Result<Arc<Task>, mm::frame_alloc::AllocError> {
    let task = Arc::new(Task {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        ctx: TaskContext::new_kernel(body)?,
        state: AtomicU8::new(State::Runnable as u8),
        fpu: Mutex::new(FpuState::initial()),
        fs_base: AtomicU64::new(0),
        process: None,
        name,
        profile_image: AtomicU32::new(crate::profile::image(name)),
    });
    with_sched(|s| s.run_queue.push_back(task.clone()));
    Ok(task)
}

/// Wake `t` if it is blocked, wherever it waits. Every wait re-checks its condition
/// when woken: an interruptible one (sleeps, pipes, the terminal, wait4) sees the fatal
/// signal that prompted this and returns; any other simply blocks again.
pub fn wake(t: &Arc<Task>) {
    cpu::without_interrupts(|| {
        if t.state() == State::Blocked {
            t.set_state(State::Runnable);
            if let Some(s) = SCHED.lock().as_mut() {
                s.run_queue.push_back(t.clone());
            }
        }
    })
}

/// The profiler's image id of the running task (from the timer interrupt: never waits).
pub fn current_profile_image() -> u32 {
    SCHED
        .try_lock()
        .and_then(|g| {
            g.as_ref()
                .map(|s| s.current.profile_image.load(Ordering::Relaxed))
        })
        .unwrap_or(crate::profile::kernel_image())
}

/// The running task's program changed (execve): tag its samples with `name`.
pub fn set_profile_image(name: &str) {
    if crate::profile::enabled()
        && let Some(t) = current()
    {
        t.profile_image
            .store(crate::profile::image(name), Ordering::Relaxed);
    }
}

/// Whether another task is waiting to run.
fn others_runnable() -> bool {
    with_sched(|s| !s.run_queue.is_empty()).unwrap_or(false)
}

/// The idle task's wait: run whatever is runnable, else halt until the next interrupt.
/// Called with interrupts disabled (so a wake-up between the caller's check and the
/// halt is not lost: `sti; hlt` takes the interrupt only after the halt begins).
fn idle_wait() {
    if others_runnable() {
        schedule();
    } else {
        cpu::enable_interrupts_and_halt();
    }
}

/// The idle loop's step: halt until something happens, then run what became runnable.
pub fn idle_step() {
    x86_64::instructions::interrupts::disable();
    idle_wait();
    schedule();
}

/// Switch to the next runnable task (or idle). The current task stays runnable unless it
/// marked itself blocked or dead first. Returns when the current task runs again (never,
/// for a dead one).
pub fn schedule() {
    schedule_next(false);
}

/// [`schedule`], but with `to_idle` the idle task runs next (the current task stays
/// runnable, at the back of the queue).
fn schedule_next(to_idle: bool) {
    let was_enabled = cpu::interrupts_enabled();
    x86_64::instructions::interrupts::disable();
    let switch = {
        let mut guard = SCHED.lock();
        let Some(s) = guard.as_mut() else {
            drop(guard);
            if was_enabled {
                cpu::enable_interrupts();
            }
            return;
        };
        let cur = s.current.clone();
        let idle = Arc::ptr_eq(&cur, &s.idle);
        if cur.state() == State::Runnable && !idle {
            s.run_queue.push_back(cur.clone());
        }
        let next = if to_idle {
            s.idle.clone()
        } else {
            s.run_queue.pop_front().unwrap_or_else(|| s.idle.clone())
        };
        s.slice_left = TIME_SLICE_TICKS;
        NEED_RESCHED.store(false, Ordering::Relaxed);
        if Arc::ptr_eq(&next, &cur) {
            None
        } else {
            if let Some(top) = next.ctx.stack_top() {
                syscall::set_kernel_stack(top);
            }
            if let Some(p) = &next.process {
                crate::arch::paging::activate_root(p.page_table_root());
            }
            s.current = next.clone();
            Some((cur, next))
        }
    };
    if let Some((cur, next)) = switch {
        if cur.process.is_some() {
            cur.fpu.lock().save();
            cur.fs_base.store(syscall::fs_base(), Ordering::Relaxed);
        }
        let to = next.ctx.resume_point();
        // The scheduler's `current` keeps `next` alive; no reference of ours needs to.
        drop(next);
        if cur.state() == State::Dead {
            // Its stack is in use until the switch; whoever runs next frees it.
            with_sched(|s| s.reap = Some(cur));
            context::switch_dead(to);
        }
        context::switch(&cur.ctx, to);
        // Back in `cur`: restore its user state, free a task that died meanwhile.
        resumed(&cur);
    }
    if was_enabled {
        cpu::enable_interrupts();
    }
}

fn resumed(t: &Task) {
    if t.process.is_some() {
        t.fpu.lock().restore();
        syscall::set_fs_base(t.fs_base.load(Ordering::Relaxed));
    }
    let dead = with_sched(|s| s.reap.take()).flatten();
    drop(dead);
}

/// First code of a new task, on its own stack, before it enters user mode.
fn task_started() {
    if let Some(t) = current() {
        resumed(&t);
    }
}

/// What acts on a pending fatal signal on the way back to user mode (the process layer
/// installs its exit path).
static SIGNAL_CHECK: spin::Once<fn()> = spin::Once::new();

/// Install the check [`return_to_user`] runs last (only the first call takes effect).
pub fn set_signal_check(f: fn()) {
    SIGNAL_CHECK.call_once(|| f);
}

/// Whether a fatal signal is pending for the running task's process (false for kernel
/// tasks). Called from wait conditions with interrupts off: takes no lock beyond the
/// scheduler's.
pub fn kill_pending() -> bool {
    current()
        .and_then(|t| t.process.as_ref().map(|p| p.kill_pending()))
        .unwrap_or(false)
}

/// Preemption point on every return to user mode (interrupts disabled).
fn return_to_user(_frame: &mut TrapFrame) {
    if NEED_RESCHED.load(Ordering::Relaxed) {
        schedule();
    }
    if let Some(check) = SIGNAL_CHECK.get() {
        check();
    }
}

/// Timer tick (from the timer interrupt): account the time slice, wake sleepers.
pub fn tick() {
    if let Some(mut g) = SCHED.try_lock()
        && let Some(s) = g.as_mut()
    {
        s.slice_left = s.slice_left.saturating_sub(1);
        if s.slice_left == 0 && !s.run_queue.is_empty() {
            NEED_RESCHED.store(true, Ordering::Relaxed);
        }
    }
    if SLEEPERS.load(Ordering::Relaxed) > 0 {
        TIMER_QUEUE.wake_all();
    }
}

/// Give the CPU to another runnable task, if there is one.
pub fn yield_now() {
    schedule();
}

/// The relax hook of `mm::sync`: called while waiting for a lock or a page held by a
/// blocked task.
fn relax() {
    if !cpu::interrupts_enabled() || trap::in_interrupt() {
        core::hint::spin_loop();
        return;
    }
    // The idle task may yield too: it is resumed whenever nothing else can run.
    if others_runnable() {
        yield_now();
    } else {
        // Nobody else can run: the holder waits for an interrupt, so do we.
        cpu::enable_interrupts_and_halt();
        // The holder may be the idle task itself (boot code and kernel test suites run
        // on it, and it waits for disks by running other tasks): it is in no run queue,
        // so hand it the CPU or it would never get it back while we stay runnable.
        if !in_idle() {
            schedule_next(true);
        }
    }
}

/// Tasks waiting for something; woken by whoever makes it happen (an interrupt handler, a
/// process exiting, a pipe being written). Waiting is always "until a condition holds":
/// the condition is re-checked after every wake-up, so spurious wake-ups are harmless.
pub struct WaitQueue {
    waiters: Mutex<Vec<Arc<Task>>>,
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitQueue {
    pub const fn new() -> WaitQueue {
        WaitQueue {
            waiters: Mutex::new(Vec::new()),
        }
    }

    /// Block the calling task until `cond()` returns true. `cond` runs with interrupts
    /// disabled, so a wake-up between the check and the sleep is not lost. The idle task
    /// (boot-time code, kernel tests) halts between checks instead of blocking. Must not
    /// be called from an interrupt handler.
    pub fn wait_until(&self, mut cond: impl FnMut() -> bool) {
        let was_enabled = cpu::interrupts_enabled();
        loop {
            x86_64::instructions::interrupts::disable();
            if cond() {
                break;
            }
            let me = with_sched(|s| (!Arc::ptr_eq(&s.current, &s.idle)).then(|| s.current.clone()))
                .flatten();
            match me {
                Some(t) => {
                    t.set_state(State::Blocked);
                    self.waiters.lock().push(t);
                    schedule();
                }
                None => idle_wait(),
            }
        }
        if was_enabled {
            cpu::enable_interrupts();
        }
    }

    /// Wake every task waiting here (callable from interrupt handlers).
    pub fn wake_all(&self) {
        cpu::without_interrupts(|| {
            let woken: Vec<Arc<Task>> = core::mem::take(&mut *self.waiters.lock());
            if woken.is_empty() {
                return;
            }
            let mut g = SCHED.lock();
            if let Some(s) = g.as_mut() {
                for t in woken {
                    if t.state() == State::Blocked {
                        t.set_state(State::Runnable);
                        s.run_queue.push_back(t);
                    }
                }
            }
        });
    }
}

static TIMER_QUEUE: WaitQueue = WaitQueue::new();
static SLEEPERS: AtomicU64 = AtomicU64::new(0);

/// Sleep for at least `ns` nanoseconds (other tasks run meanwhile); a fatal signal sent
/// to the sleeping process ends the sleep early.
pub fn sleep_ns(ns: u64) {
    let until = crate::time::now_ns().saturating_add(ns);
    SLEEPERS.fetch_add(1, Ordering::Relaxed);
    TIMER_QUEUE.wait_until(|| crate::time::now_ns() >= until || kill_pending());
    SLEEPERS.fetch_sub(1, Ordering::Relaxed);
}

/// Wake every sleeping task so it re-checks why it sleeps (a kill arrived).
pub fn wake_sleepers() {
    TIMER_QUEUE.wake_all();
}

/// Mark the running task dead and switch away for good.
pub fn exit_current() -> ! {
    if let Some(t) = current() {
        t.set_state(State::Dead);
    }
    drop(current());
    schedule();
    unreachable!("a dead task was scheduled again");
}
