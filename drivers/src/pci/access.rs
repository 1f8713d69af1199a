//! Naming a function ([`Bdf`]) and reaching its configuration space
//! ([`ConfigAccess`]).

use core::fmt;

/// Devices per bus: device numbers are `0..DEVICES_PER_BUS`.
pub const DEVICES_PER_BUS: u8 = 32;
/// Functions per device: function numbers are `0..FUNCTIONS_PER_DEVICE`.
pub const FUNCTIONS_PER_DEVICE: u8 = 8;

/// The address of one PCI function: bus, device (`0..32`) and function
/// (`0..8`), within one PCI segment.
///
/// The fields are private so that a `Bdf` is always in range; build one with
/// [`Bdf::new`]. It prints like `lspci` does: `00:1f.2`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Bdf {
    bus: u8,
    device: u8,
    function: u8,
}

impl Bdf {
    /// Returns the address, or `None` if `device >= 32` or `function >= 8`.
    pub const fn new(bus: u8, device: u8, function: u8) -> Option<Bdf> {
        if device < DEVICES_PER_BUS && function < FUNCTIONS_PER_DEVICE {
            Some(Bdf {
                bus,
                device,
                function,
            })
        } else {
            None
        }
    }

    /// The bus number.
    pub const fn bus(&self) -> u8 {
        self.bus
    }

    /// The device number, `0..32`.
    pub const fn device(&self) -> u8 {
        self.device
    }

    /// The function number, `0..8`.
    pub const fn function(&self) -> u8 {
        self.function
    }

    /// Byte offset of register `reg` of this function from the start of an
    /// ECAM (memory-mapped configuration) region whose first bus is bus 0:
    /// `(bus << 20) | (device << 15) | (function << 12) | reg`.
    ///
    /// `reg` is taken modulo 4096, so the result always lies inside this
    /// function's own 4 KiB window (the whole region for buses `0..=255` is
    /// 256 MiB). If the MCFG entry starts at bus `s`, the caller subtracts
    /// `s << 20` and must check that the bus lies in the entry's range.
    pub const fn ecam_offset(&self, reg: u16) -> usize {
        ((self.bus as usize) << 20)
            | ((self.device as usize) << 15)
            | ((self.function as usize) << 12)
            | (reg as usize & 0xFFF)
    }

    /// The value to write to the legacy `CONFIG_ADDRESS` port (`0xCF8`) to
    /// reach the dword containing register `reg`:
    /// `0x8000_0000 | bus << 16 | device << 11 | function << 8 | (reg & 0xFC)`.
    ///
    /// Legacy access reaches only the first 256 bytes: an implementation must
    /// check `reg < 256` itself (this helper keeps only bits `2..8` of `reg`).
    pub const fn legacy_address(&self, reg: u16) -> u32 {
        0x8000_0000
            | ((self.bus as u32) << 16)
            | ((self.device as u32) << 11)
            | ((self.function as u32) << 8)
            | (reg as u32 & 0xFC)
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{:x}",
            self.bus, self.device, self.function
        )
    }
}

/// Access to PCI configuration space, supplied by the kernel.
///
/// Only the dword accessors are required. Contract for implementations:
///
/// - `offset` is a byte offset that callers in this module always pass
///   dword-aligned (`offset % 4 == 0`); an implementation should ignore the
///   low two bits rather than misbehave if it ever gets an unaligned one.
/// - Reads of a function that does not exist, of a bus outside the reachable
///   range (e.g. outside the MCFG bus range), or of an offset the mechanism
///   cannot reach (`>= 256` for port I/O, `>= 4096` for ECAM) return
///   `0xFFFF_FFFF`, as the hardware does for an unclaimed configuration read;
///   writes to such places are ignored. They must never panic.
/// - Accesses are not atomic with respect to each other: callers serialise
///   (the kernel wraps the port pair in a lock).
///
/// The narrower accessors are provided on top of the dword ones and may be
/// overridden with native 8/16-bit accesses.
pub trait ConfigAccess {
    /// Reads the dword at `offset` (a multiple of 4) of `bdf`.
    fn read32(&self, bdf: Bdf, offset: u16) -> u32;

    /// Writes the dword at `offset` (a multiple of 4) of `bdf`.
    fn write32(&self, bdf: Bdf, offset: u16, value: u32);

    /// Reads the 16-bit register at `offset`, which must be 2-byte aligned
    /// (bit 0 of an odd offset is ignored: it reads the aligned word below).
    fn read16(&self, bdf: Bdf, offset: u16) -> u16 {
        let dword = self.read32(bdf, offset & !3);
        (dword >> ((offset & 2) * 8)) as u16
    }

    /// Reads the byte at `offset` (any alignment).
    fn read8(&self, bdf: Bdf, offset: u16) -> u8 {
        let dword = self.read32(bdf, offset & !3);
        (dword >> ((offset & 3) * 8)) as u8
    }

    /// Writes the 16-bit register at `offset`, which must be 2-byte aligned
    /// (bit 0 of an odd offset is ignored).
    ///
    /// The default implementation is a read-modify-write of the containing
    /// dword, so it also writes back the other half as it was read. Beware of
    /// write-one-to-clear halves: writing the command register this way would
    /// clear any error bits set in the status register next to it (the
    /// command helpers of [`super::ConfigSpace`] avoid this). Implementations
    /// with native 16-bit accesses should override it.
    fn write16(&self, bdf: Bdf, offset: u16, value: u16) {
        let aligned = offset & !3;
        let shift = (offset & 2) * 8;
        let old = self.read32(bdf, aligned);
        let new = (old & !(0xFFFF << shift)) | (u32::from(value) << shift);
        self.write32(bdf, aligned, new);
    }
}

impl<T: ConfigAccess + ?Sized> ConfigAccess for &T {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        (**self).read32(bdf, offset)
    }

    fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
        (**self).write32(bdf, offset, value)
    }

    fn read16(&self, bdf: Bdf, offset: u16) -> u16 {
        (**self).read16(bdf, offset)
    }

    fn read8(&self, bdf: Bdf, offset: u16) -> u8 {
        (**self).read8(bdf, offset)
    }

    fn write16(&self, bdf: Bdf, offset: u16, value: u16) {
        (**self).write16(bdf, offset, value)
    }
}
