//! Base address registers: sizing and decoding.

use super::access::ConfigAccess;
use super::header::{Command, ConfigSpace};
use super::{ids, regs};

/// Most BAR slots a header has (type 0).
pub const MAX_BARS: usize = 6;

/// Bit 0 of a BAR: 1 for I/O space.
const BAR_IO: u32 = 0x1;
/// Address bits of an I/O BAR.
const IO_ADDR_MASK: u32 = !0x3;
/// Address bits of the low dword of a memory BAR.
const MEM_ADDR_MASK: u32 = !0xF;
/// Memory BAR: prefetchable.
const MEM_PREFETCHABLE: u32 = 0x8;
/// Memory BAR: the type field (bits 1..3), shifted down.
const MEM_TYPE_32: u32 = 0b00;
const MEM_TYPE_BELOW_1M: u32 = 0b01;
const MEM_TYPE_64: u32 = 0b10;

/// A decoded, implemented base address register.
///
/// Addresses are what firmware (or an earlier owner) programmed; an address
/// of 0 means the BAR is implemented but not assigned. Sizes are powers of
/// two.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Bar {
    /// A memory-space BAR.
    Memory {
        /// Physical base address.
        addr: u64,
        /// Size in bytes.
        size: u64,
        /// Reads have no side effects (may be mapped write-combining).
        prefetchable: bool,
        /// A 64-bit BAR: it also uses the next slot for the high dword.
        is64: bool,
    },
    /// An I/O-space BAR.
    Io {
        /// First port.
        port: u32,
        /// Number of ports.
        size: u32,
    },
}

impl Bar {
    /// The base address (memory address or first port).
    pub const fn address(&self) -> u64 {
        match *self {
            Bar::Memory { addr, .. } => addr,
            Bar::Io { port, .. } => port as u64,
        }
    }

    /// The size in bytes (or ports).
    pub const fn size(&self) -> u64 {
        match *self {
            Bar::Memory { size, .. } => size,
            Bar::Io { size, .. } => size as u64,
        }
    }

    /// Whether this is a memory BAR.
    pub const fn is_memory(&self) -> bool {
        matches!(self, Bar::Memory { .. })
    }

    /// Whether this is an I/O BAR.
    pub const fn is_io(&self) -> bool {
        matches!(self, Bar::Io { .. })
    }
}

/// The lowest set bit of `mask`: the size encoded by a sizing read-back.
const fn lowest_bit(mask: u64) -> u64 {
    mask.isolate_lowest_one()
}

/// The size a sizing read-back encodes, or 0 if the BAR is not implemented or
/// the read-back is not believable. `addr_mask` is the set of address bits the
/// BAR can have; `base` and `sizing` are already masked with it.
///
/// Like Linux's `pci_size`: if the BAR did not change at all on the all-ones
/// write (`base == sizing`), it is only believable if every bit from the size
/// up is set.
const fn decode_size(base: u64, sizing: u64, addr_mask: u64) -> u64 {
    let size = lowest_bit(sizing & addr_mask);
    if size == 0 {
        return 0;
    }
    if base == sizing && (base | (size - 1)) & addr_mask != addr_mask {
        return 0;
    }
    size
}

/// Decodes `slots` BARs from their original values and the values read back
/// after writing all-ones. 64-bit BARs fill their first slot and leave the
/// second `None`. Problems are logged, and the BAR is `None`.
fn decode_bars(
    space_name: &dyn core::fmt::Display,
    slots: usize,
    orig: &[u32; MAX_BARS],
    sizing: &[u32; MAX_BARS],
) -> [Option<Bar>; MAX_BARS] {
    let mut bars = [None; MAX_BARS];
    let slots = if slots < MAX_BARS { slots } else { MAX_BARS };
    let mut i = 0;
    while i < slots {
        let (lo, lo_sizing) = (orig[i], sizing[i]);
        if lo == u32::MAX || lo_sizing == u32::MAX {
            // Nobody answered (function gone) or a broken BAR.
            log::warn!("pci {space_name}: BAR{i} reads all-ones, ignored");
            i += 1;
            continue;
        }
        if lo & BAR_IO != 0 {
            let size = decode_size(
                (lo & IO_ADDR_MASK) as u64,
                (lo_sizing & IO_ADDR_MASK) as u64,
                IO_ADDR_MASK as u64,
            );
            if size != 0 && size <= u32::MAX as u64 {
                bars[i] = Some(Bar::Io {
                    port: lo & IO_ADDR_MASK,
                    size: size as u32,
                });
            }
            i += 1;
            continue;
        }
        let prefetchable = lo & MEM_PREFETCHABLE != 0;
        match (lo >> 1) & 0b11 {
            MEM_TYPE_32 | MEM_TYPE_BELOW_1M => {
                let base = (lo & MEM_ADDR_MASK) as u64;
                let size = decode_size(
                    base,
                    (lo_sizing & MEM_ADDR_MASK) as u64,
                    MEM_ADDR_MASK as u64,
                );
                if size != 0 {
                    bars[i] = Some(Bar::Memory {
                        addr: base,
                        size,
                        prefetchable,
                        is64: false,
                    });
                }
                i += 1;
            }
            MEM_TYPE_64 => {
                if i + 1 >= slots {
                    log::warn!("pci {space_name}: 64-bit BAR{i} in the last slot, ignored");
                    i += 1;
                    continue;
                }
                let (hi, hi_sizing) = (orig[i + 1], sizing[i + 1]);
                let base = ((hi as u64) << 32) | (lo & MEM_ADDR_MASK) as u64;
                let sizing = ((hi_sizing as u64) << 32) | (lo_sizing & MEM_ADDR_MASK) as u64;
                let addr_mask = !0xFu64;
                let size = decode_size(base, sizing, addr_mask);
                if size != 0 {
                    bars[i] = Some(Bar::Memory {
                        addr: base,
                        size,
                        prefetchable,
                        is64: true,
                    });
                }
                i += 2;
            }
            _ => {
                log::warn!("pci {space_name}: BAR{i} has the reserved memory type, ignored");
                i += 1;
            }
        }
    }
    bars
}

impl<A: ConfigAccess + ?Sized> ConfigSpace<'_, A> {
    /// Sizes and decodes the BARs: six for type 0 headers, two for type 1
    /// (bridges), one for type 2 (CardBus), none for unknown layouts.
    ///
    /// Slot `n` of the result is BAR `n`. A 64-bit BAR is reported in its
    /// first slot and the next slot is `None`; unimplemented BARs (size 0),
    /// BARs of the reserved memory type, 64-bit BARs starting in the last
    /// slot and BARs that read all-ones are `None`.
    ///
    /// Sizing is the standard probe: memory and I/O decoding are turned off
    /// in the command register, each BAR is written with all-ones, read back
    /// and written with its original value, and then the command register is
    /// restored. Nothing is logged while decoding is off (the console may
    /// live behind one of these BARs). Host bridges (class `06/00`) keep
    /// decoding on, as Linux does: turning it off can cut off RAM on some
    /// chipsets.
    ///
    /// The probe briefly moves the BARs: call it before a driver uses the
    /// device, not while it may be doing I/O, and not concurrently with
    /// other configuration accesses to this function.
    pub fn bars(&self) -> [Option<Bar>; MAX_BARS] {
        let slots = self.header_kind().bar_slots();
        let mut orig = [0u32; MAX_BARS];
        let mut sizing = [0u32; MAX_BARS];
        if slots == 0 {
            return [None; MAX_BARS];
        }
        let bdf = self.bdf();
        let access = self.access();
        let class = self.class_code();
        let is_host_bridge =
            class.class == ids::CLASS_BRIDGE && class.subclass == ids::SUBCLASS_HOST_BRIDGE;

        let command = self.command();
        let decode = Command::MEMORY_SPACE | Command::IO_SPACE;
        let toggle = !is_host_bridge && command.intersects(decode);
        if toggle {
            self.set_command(command.difference(decode));
        }
        let pairs = orig.iter_mut().zip(sizing.iter_mut()).take(slots);
        for (slot, (orig, sizing)) in pairs.enumerate() {
            let offset = regs::BAR0 + 4 * slot as u16;
            *orig = access.read32(bdf, offset);
            access.write32(bdf, offset, u32::MAX);
            *sizing = access.read32(bdf, offset);
            access.write32(bdf, offset, *orig);
        }
        if toggle {
            self.set_command(command);
        }

        decode_bars(&bdf, slots, &orig, &sizing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(slots: usize, orig: [u32; 6], sizing: [u32; 6]) -> [Option<Bar>; 6] {
        decode_bars(&"test", slots, &orig, &sizing)
    }

    #[test]
    fn decodes_each_kind() {
        let bars = decode(
            6,
            [0xC001, 0xFEB0_0000, 0xE000_000C, 0x1, 0, 0xFFFF_FFFF],
            [0xFFFF_FFE1, 0xFFFF_F000, 0xFFFF_C00C, 0xFFFF_FFFF, 0, 0],
        );
        assert_eq!(
            bars[0],
            Some(Bar::Io {
                port: 0xC000,
                size: 0x20
            })
        );
        assert_eq!(
            bars[1],
            Some(Bar::Memory {
                addr: 0xFEB0_0000,
                size: 0x1000,
                prefetchable: false,
                is64: false
            })
        );
        assert_eq!(
            bars[2],
            Some(Bar::Memory {
                addr: 0x1_E000_0000,
                size: 0x4000,
                prefetchable: true,
                is64: true
            })
        );
        assert_eq!(bars[3], None, "high half of the 64-bit BAR");
        assert_eq!(bars[4], None, "unimplemented");
        assert_eq!(bars[5], None, "all-ones");
    }

    #[test]
    fn huge_64bit_bar() {
        // 64 GiB BAR at 0x40_0000_0000: low sizing bits all zero.
        let bars = decode(
            2,
            [0x0000_000C, 0x40, 0, 0, 0, 0],
            [0xC, 0xFFFF_FFF0, 0, 0, 0, 0],
        );
        assert_eq!(
            bars[0],
            Some(Bar::Memory {
                addr: 0x40_0000_0000,
                size: 0x10_0000_0000,
                prefetchable: true,
                is64: true
            })
        );
    }

    #[test]
    fn odd_bars_are_none() {
        // 64-bit BAR in the last slot of a bridge; reserved type in a type 0.
        let bars = decode(
            2,
            [0, 0xF000_0004, 0, 0, 0, 0],
            [0, 0xFFFF_0004, 0, 0, 0, 0],
        );
        assert_eq!(bars, [None; 6]);
        let bars = decode(6, [0x6, 0, 0, 0, 0, 0], [0xFFFF_0006, 0, 0, 0, 0, 0]);
        assert_eq!(bars, [None; 6]);
        // Slots beyond the header's count are ignored even if they look valid.
        let bars = decode(1, [0, 0x1001, 0, 0, 0, 0], [0, 0xFFFF_FFF1, 0, 0, 0, 0]);
        assert_eq!(bars, [None; 6]);
        // A hardwired BAR that ignores the write: only believable if all
        // bits from the size up are set.
        let bars = decode(
            6,
            [0x0010_0000, 0, 0, 0, 0, 0],
            [0x0010_0000, 0, 0, 0, 0, 0],
        );
        assert_eq!(bars, [None; 6]);
        let bars = decode(
            6,
            [0xFFF0_0000, 0, 0, 0, 0, 0],
            [0xFFF0_0000, 0, 0, 0, 0, 0],
        );
        assert_eq!(
            bars[0],
            Some(Bar::Memory {
                addr: 0xFFF0_0000,
                size: 0x10_0000,
                prefetchable: false,
                is64: false
            })
        );
    }

    #[test]
    fn accessors() {
        let io = Bar::Io {
            port: 0x700,
            size: 64,
        };
        assert!(io.is_io() && !io.is_memory());
        assert_eq!((io.address(), io.size()), (0x700, 64));
        let mem = Bar::Memory {
            addr: 0xFE00_0000,
            size: 0x4000,
            prefetchable: true,
            is64: true,
        };
        assert!(mem.is_memory() && !mem.is_io());
        assert_eq!((mem.address(), mem.size()), (0xFE00_0000, 0x4000));
    }
}
