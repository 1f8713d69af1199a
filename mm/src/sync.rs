//! Waiting without spinning forever: a hook the kernel installs so that code in `mm` (and
//! the kernel's locks built on [`Mutex`]) gives the CPU to another task instead of spinning
//! while the thing it waits for belongs to a task that is blocked on I/O.
//!
//! On a single CPU with a kernel that is not preempted, a lock can only be found taken when
//! its holder went to sleep while holding it (waiting for a disk), so spinning would never
//! end; yielding lets the holder finish. On the host (unit tests) the hook is unset and
//! waiting is a plain spin.

static HOOK: spin::Once<fn()> = spin::Once::new();

/// Install the function called by [`relax`] (the kernel's "yield if allowed"). Only the
/// first call takes effect.
pub fn set_relax_hook(hook: fn()) {
    HOOK.call_once(|| hook);
}

/// Wait a little: run another task when the kernel allows it, else spin once.
#[inline]
pub fn relax() {
    match HOOK.get() {
        Some(f) => f(),
        None => core::hint::spin_loop(),
    }
}

/// The relax strategy of [`Mutex`]: [`relax`].
pub struct YieldRelax;

impl spin::RelaxStrategy for YieldRelax {
    #[inline]
    fn relax() {
        relax();
    }
}

/// A spin lock whose waiters yield to other tasks through [`relax`].
pub type Mutex<T> = spin::mutex::Mutex<T, YieldRelax>;
/// Its guard.
pub type MutexGuard<'a, T> = spin::mutex::MutexGuard<'a, T>;

/// How the kernel masks interrupts: `disable` turns them off and says whether they were
/// on; `restore` puts back what `disable` reported.
#[derive(Clone, Copy)]
pub struct InterruptHooks {
    /// Disable interrupts; returns whether they were enabled.
    pub disable: fn() -> bool,
    /// Re-enable interrupts if the argument says they were enabled.
    pub restore: fn(bool),
}

static IRQ: spin::Once<InterruptHooks> = spin::Once::new();

/// Install the kernel's interrupt masking (only the first call takes effect).
pub fn set_interrupt_hooks(hooks: InterruptHooks) {
    IRQ.call_once(|| hooks);
}

/// Run `f` with interrupts masked (on the host, where there are none, just run it).
/// Locks that interrupt handlers may also take (the frame allocator's: a handler may
/// grow the heap) are only ever held inside this, so a handler can never spin on a
/// lock the code it interrupted holds.
#[inline]
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    match IRQ.get() {
        Some(h) => {
            let was = (h.disable)();
            let r = f();
            (h.restore)(was);
            r
        }
        None => f(),
    }
}
