//! Waiting without spinning forever: a hook the kernel installs so that code in `mm` (and
//! the kernel's locks built on [`Mutex`]) gives the CPU to another task instead of spinning
//! while the thing it waits for belongs to a task that is blocked on I/O.
//!
//! On a single CPU with a kernel that is not preempted, a lock can only be found taken when
//! its holder went to sleep while holding it (waiting for a disk), so spinning would never
//! end; yielding lets the holder finish. On the host (unit tests) the hook is unset and
//! waiting is a plain spin.

use core::panic::Location;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::lock_order;

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

/// How tasks sleep on a lock and are woken: the kernel installs its wait queues here
/// (hashed by the lock's address). `wait(key, cond)` blocks the caller until `cond()`
/// holds (checking it so that a wake-up in between is not lost) and returns at once when
/// the caller may not sleep (interrupt context, interrupts off); `wake(key)` wakes every
/// task waiting on `key`.
#[derive(Clone, Copy)]
pub struct WaitHooks {
    /// Block until the condition holds.
    pub wait: fn(usize, &mut dyn FnMut() -> bool),
    /// Wake the waiters of a key.
    pub wake: fn(usize),
}

static WAIT: spin::Once<WaitHooks> = spin::Once::new();

/// Install the kernel's wait queues for [`Mutex`] (only the first call takes effect).
pub fn set_wait_hooks(hooks: WaitHooks) {
    WAIT.call_once(|| hooks);
}

/// A lock whose waiters sleep: a task that finds it taken blocks until the holder
/// releases it (the holder may itself be blocked on a disk, holding it across I/O), so
/// no CPU time goes to spinning. Without the kernel's hooks (host tests) it spins.
pub struct Mutex<T: ?Sized> {
    /// Tasks sleeping for the lock (the unlocker wakes them only if there are any).
    sleepers: AtomicU32,
    /// Where it was made: its class for the lock-order checker.
    site: &'static Location<'static>,
    inner: spin::Mutex<T>,
}

/// The guard of a [`Mutex`]; dropping it releases the lock and wakes sleepers.
pub struct MutexGuard<'a, T: ?Sized> {
    lock: &'a Mutex<T>,
    guard: Option<spin::MutexGuard<'a, T>>,
}

impl<T> Mutex<T> {
    /// An unlocked mutex holding `value`; the caller's source location names its class
    /// for the lock-order checker.
    #[track_caller]
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            sleepers: AtomicU32::new(0),
            site: Location::caller(),
            inner: spin::Mutex::new(value),
        }
    }
}

impl<T: ?Sized> Mutex<T> {
    fn key(&self) -> usize {
        self as *const Self as *const u8 as usize
    }

    /// Take the lock, sleeping while another task holds it.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        lock_order::on_acquire(self.site, false);
        loop {
            if let Some(g) = self.inner.try_lock() {
                return MutexGuard {
                    lock: self,
                    guard: Some(g),
                };
            }
            match WAIT.get() {
                Some(h) => {
                    self.sleepers.fetch_add(1, Ordering::AcqRel);
                    (h.wait)(self.key(), &mut || !self.inner.is_locked());
                    self.sleepers.fetch_sub(1, Ordering::AcqRel);
                    // The wait returns at once where sleeping is not allowed.
                    if self.inner.is_locked() {
                        relax();
                    }
                }
                None => relax(),
            }
        }
    }

    /// Take the lock if it is free.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        let g = self.inner.try_lock()?;
        lock_order::on_acquire(self.site, true);
        Some(MutexGuard {
            lock: self,
            guard: Some(g),
        })
    }

    /// Whether some task holds the lock.
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// The value, through a unique reference (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }
}

impl<T: Default> Default for Mutex<T> {
    #[track_caller]
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T: ?Sized> core::ops::Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_ref().expect("guard is live until drop")
    }
}

impl<T: ?Sized> core::ops::DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_mut().expect("guard is live until drop")
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        drop(self.guard.take());
        lock_order::on_release(self.lock.site);
        if self.lock.sleepers.load(Ordering::Acquire) > 0
            && let Some(h) = WAIT.get()
        {
            (h.wake)(self.lock.key());
        }
    }
}

/// A spin lock that takes part in the lock-order checker (for state held only briefly and
/// never across a sleep, such as the page cache's per-file state). Interrupts are not
/// masked: a lock an interrupt handler takes must not be one of these.
pub struct SpinMutex<T: ?Sized> {
    site: &'static Location<'static>,
    inner: spin::Mutex<T>,
}

/// The guard of a [`SpinMutex`].
pub struct SpinMutexGuard<'a, T: ?Sized> {
    site: &'static Location<'static>,
    guard: spin::MutexGuard<'a, T>,
}

impl<T> SpinMutex<T> {
    /// An unlocked lock holding `value`; the caller's source location names its class.
    #[track_caller]
    pub const fn new(value: T) -> SpinMutex<T> {
        SpinMutex {
            site: Location::caller(),
            inner: spin::Mutex::new(value),
        }
    }
}

impl<T: ?Sized> SpinMutex<T> {
    /// Take the lock, spinning (through [`relax`]) while it is held.
    pub fn lock(&self) -> SpinMutexGuard<'_, T> {
        lock_order::on_acquire(self.site, false);
        loop {
            if let Some(guard) = self.inner.try_lock() {
                return SpinMutexGuard {
                    site: self.site,
                    guard,
                };
            }
            relax();
        }
    }

    /// Take the lock if it is free.
    pub fn try_lock(&self) -> Option<SpinMutexGuard<'_, T>> {
        let guard = self.inner.try_lock()?;
        lock_order::on_acquire(self.site, true);
        Some(SpinMutexGuard {
            site: self.site,
            guard,
        })
    }

    /// Whether the lock is held.
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// The value, through a unique reference (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }
}

impl<T: ?Sized> core::ops::Deref for SpinMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: ?Sized> core::ops::DerefMut for SpinMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T: ?Sized> Drop for SpinMutexGuard<'_, T> {
    fn drop(&mut self) {
        lock_order::on_release(self.site);
    }
}

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

/// Block until `cond()` holds, sleeping on `key` (any number naming what is awaited; the
/// page cache uses a frame's physical address) until [`wake`] is called for it. Without
/// the kernel's hooks, or where sleeping is not allowed, spins through [`relax`].
pub fn wait_on(key: usize, mut cond: impl FnMut() -> bool) {
    while !cond() {
        match WAIT.get() {
            Some(h) => {
                (h.wait)(key, &mut cond);
                if !cond() {
                    relax();
                }
            }
            None => relax(),
        }
    }
}

/// Wake everything waiting in [`wait_on`] for `key` (callable from interrupt handlers).
pub fn wake(key: usize) {
    if let Some(h) = WAIT.get() {
        (h.wake)(key);
    }
}
