//! Memory-mapped device registers, through the `volatile` crate's typed pointers. A
//! [`RegisterWindow`] is a range of registers someone vouched for once (its `unsafe`
//! constructor); every access after that is checked against the window and made through a
//! `VolatilePtr` built in one place, [`RegisterWindow::reg`].

use core::ptr::NonNull;

use volatile::VolatilePtr;

use crate::hal::Hal;
use crate::pci::Bar;

/// A window of device registers at a virtual address.
#[derive(Clone, Debug)]
pub struct RegisterWindow {
    /// Virtual address of the first register.
    base: usize,
    /// Window size in bytes.
    size: usize,
}

impl RegisterWindow {
    /// A window of `size` bytes at virtual address `base`.
    ///
    /// # Safety
    /// `base..base + size` must be mapped device registers (or memory standing in for
    /// them) that stay mapped for as long as this value and its clones live, and that no
    /// Rust reference aliases.
    pub const unsafe fn new(base: usize, size: usize) -> RegisterWindow {
        RegisterWindow { base, size }
    }

    /// The memory BAR `bar`, mapped through `H::phys_to_virt`. `None` for an I/O BAR, an
    /// unassigned one (address 0) or one too large to address.
    pub fn from_bar<H: Hal>(bar: Bar) -> Option<RegisterWindow> {
        match bar {
            Bar::Memory { addr, size, .. } if addr != 0 && size != 0 => {
                let size = usize::try_from(size).ok()?;
                addr.checked_add(size as u64)?;
                // A memory BAR decoded from the function's configuration space holds device
                // registers, not RAM with Rust objects; the HAL's `phys_to_virt` reaches it.
                let base = H::phys_to_virt(addr) as usize;
                // SAFETY: mapped device registers (just above) that no Rust reference aliases.
                let window = unsafe { RegisterWindow::new(base, size) };
                Some(window)
            }
            _ => None,
        }
    }

    /// Size of the window in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The `T`-sized register at byte `offset`: `None` when its address is not aligned for
    /// `T` or it is not wholly inside the window.
    pub fn reg<T: Copy>(&self, offset: usize) -> Option<VolatilePtr<'_, T>> {
        let size = core::mem::size_of::<T>();
        if !(self.base.wrapping_add(offset)).is_multiple_of(core::mem::align_of::<T>())
            || offset.checked_add(size)? > self.size
        {
            return None;
        }
        let ptr = NonNull::new((self.base + offset) as *mut T)?;
        // SAFETY: the register lies inside the window, which `new`'s caller vouched for as
        // mapped registers that no Rust reference aliases, and is naturally aligned; the
        // pointer cannot outlive the window (it borrows it).
        Some(unsafe { VolatilePtr::new(ptr) })
    }

    /// Read the `T`-sized register at `offset` (`None` outside the window).
    pub fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        self.reg::<T>(offset).map(|r| r.read())
    }

    /// Write the `T`-sized register at `offset`; false (and nothing written) outside the
    /// window.
    pub fn write<T: Copy>(&self, offset: usize, value: T) -> bool {
        self.reg::<T>(offset).map(|r| r.write(value)).is_some()
    }
}

/// The clock device waits are timed by (nanoseconds since boot), installed by the kernel
/// before it probes devices ([`set_clock`]).
static CLOCK: spin::Once<fn() -> u64> = spin::Once::new();

/// Time the drivers' bounded waits by `now_ns` (a monotonic clock that runs with
/// interrupts off, such as the TSC). Without one (host tests), a wait counts two polls
/// per microsecond instead.
pub fn set_clock(now_ns: fn() -> u64) {
    CLOCK.call_once(|| now_ns);
}

/// Polls `cond` (a device register, a DMA'd status) until it holds or `timeout_ns` have
/// passed; whether it held. A clock that does not advance still ends the wait after
/// `timeout_ns` polls.
pub(crate) fn spin_until(timeout_ns: u64, mut cond: impl FnMut() -> bool) -> bool {
    let Some(now) = CLOCK.get() else {
        for _ in 0..timeout_ns / 500 {
            if cond() {
                return true;
            }
            core::hint::spin_loop();
        }
        return cond();
    };
    let end = now().saturating_add(timeout_ns);
    for _ in 0..timeout_ns {
        if cond() {
            return true;
        }
        if now() >= end {
            break;
        }
        core::hint::spin_loop();
    }
    cond()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn accesses_stay_inside_the_window_and_aligned() {
        let mut mem = vec![0u32; 4];
        // SAFETY: ordinary memory standing in for registers, alive for the test, only
        // reached through the window meanwhile.
        let w = unsafe { RegisterWindow::new(mem.as_mut_ptr() as usize, 16) };
        assert!(w.write::<u32>(4, 0xdead_beef));
        assert_eq!(w.read::<u32>(4), Some(0xdead_beef));
        assert!(w.write::<u16>(14, 0x1234));
        assert_eq!(w.read::<u16>(14), Some(0x1234));
        assert_eq!(w.read::<u32>(16), None, "past the end");
        assert_eq!(w.read::<u32>(2), None, "misaligned");
        assert!(!w.write::<u64>(12, 0), "straddles the end");
        assert_eq!(w.read::<u8>(usize::MAX), None);
        assert_eq!(mem[1], 0xdead_beef);
    }
}
