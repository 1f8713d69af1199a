//! Pure encodings: ATA commands as Register Host-to-Device FISes, command headers,
//! physical region descriptor tables, and the bounce decision. No hardware here.

use alloc::vec::Vec;

use crate::block::{BlockError, Op, Segment};

/// FIS type of a Register Host to Device FIS.
pub const FIS_TYPE_REG_H2D: u8 = 0x27;
/// Length of a Register H2D FIS in dwords (the command header's CFL field).
pub const FIS_H2D_DWORDS: u32 = 5;

/// ATA: READ DMA EXT (LBA48).
pub const ATA_READ_DMA_EXT: u8 = 0x25;
/// ATA: WRITE DMA EXT (LBA48).
pub const ATA_WRITE_DMA_EXT: u8 = 0x35;
/// ATA: READ DMA (LBA28).
pub const ATA_READ_DMA: u8 = 0xC8;
/// ATA: WRITE DMA (LBA28).
pub const ATA_WRITE_DMA: u8 = 0xCA;
/// ATA: READ FPDMA QUEUED (NCQ).
pub const ATA_READ_FPDMA_QUEUED: u8 = 0x60;
/// ATA: WRITE FPDMA QUEUED (NCQ).
pub const ATA_WRITE_FPDMA_QUEUED: u8 = 0x61;
/// ATA: CHECK POWER MODE (no data; used to neutralise a stale slot).
pub const ATA_CHECK_POWER_MODE: u8 = 0xE5;
/// ATA: FLUSH CACHE (LBA28 devices).
pub const ATA_FLUSH_CACHE: u8 = 0xE7;
/// ATA: FLUSH CACHE EXT.
pub const ATA_FLUSH_CACHE_EXT: u8 = 0xEA;
/// ATA: IDENTIFY DEVICE (PIO data-in, 512 bytes).
pub const ATA_IDENTIFY: u8 = 0xEC;

/// Device register: LBA addressing.
pub const DEVICE_LBA: u8 = 1 << 6;

/// Most sectors one LBA48 DMA command moves (the count field 0 means 65536).
pub const LBA48_MAX_SECTORS: u32 = 65536;
/// Most sectors one LBA28 DMA command moves (the count field 0 means 256).
pub const LBA28_MAX_SECTORS: u32 = 256;
/// Sectors addressable with LBA28.
pub const LBA28_LIMIT: u64 = 1 << 28;

/// Most bytes one PRD entry describes.
pub const PRD_MAX_BYTES: u32 = 4 * 1024 * 1024;
/// Size of one PRD entry.
pub const PRD_SIZE: usize = 16;
/// Offset of the PRDT in a command table (after CFIS, ACMD and the reserved area).
pub const PRDT_OFFSET: usize = 0x80;
/// Size of one command header in the command list.
pub const CMD_HEADER_SIZE: usize = 32;

/// An ATA command, as the task-file registers it sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AtaCommand {
    /// Command register.
    pub command: u8,
    /// Features (16 bits for LBA48 commands).
    pub features: u16,
    /// LBA (48 bits used).
    pub lba: u64,
    /// Sector count (16 bits; what the device reads as 0 means the maximum).
    pub count: u16,
    /// Device register.
    pub device: u8,
}

impl AtaCommand {
    /// A command with no parameters (IDENTIFY, FLUSH CACHE...).
    pub const fn simple(command: u8) -> AtaCommand {
        AtaCommand {
            command,
            features: 0,
            lba: 0,
            count: 0,
            device: 0,
        }
    }

    /// The READ or WRITE DMA command for `sectors` sectors at `lba`: the EXT (LBA48)
    /// form if `lba48`, else the LBA28 one. Errors if the range does not fit the form.
    pub fn read_write(
        op: Op,
        lba: u64,
        sectors: u32,
        lba48: bool,
    ) -> Result<AtaCommand, BlockError> {
        let write = match op {
            Op::Read => false,
            Op::Write => true,
            Op::Flush | Op::Copy | Op::Discard => return Err(BlockError::Unsupported),
        };
        if sectors == 0 {
            return Err(BlockError::ZeroLength);
        }
        let end = lba
            .checked_add(u64::from(sectors))
            .ok_or(BlockError::OutOfRange)?;
        if lba48 {
            if sectors > LBA48_MAX_SECTORS {
                return Err(BlockError::TooLarge);
            }
            if end > 1 << 48 {
                return Err(BlockError::OutOfRange);
            }
            Ok(AtaCommand {
                command: if write {
                    ATA_WRITE_DMA_EXT
                } else {
                    ATA_READ_DMA_EXT
                },
                features: 0,
                lba,
                // 65536 wraps to 0, which the device reads as 65536.
                count: sectors as u16,
                device: DEVICE_LBA,
            })
        } else {
            if sectors > LBA28_MAX_SECTORS {
                return Err(BlockError::TooLarge);
            }
            if end > LBA28_LIMIT {
                return Err(BlockError::OutOfRange);
            }
            Ok(AtaCommand {
                command: if write { ATA_WRITE_DMA } else { ATA_READ_DMA },
                features: 0,
                // Bits 24..28 go in the device register; the high LBA bytes stay 0.
                lba: lba & 0xFF_FFFF,
                // 256 becomes 0 in the 8-bit count register, meaning 256.
                count: (sectors & 0xFF) as u16,
                device: DEVICE_LBA | ((lba >> 24) & 0xF) as u8,
            })
        }
    }

    /// The NCQ form of a read or write: READ/WRITE FPDMA QUEUED for `sectors` sectors
    /// at `lba` under `tag` (the command slot, `0..32`). The sector count goes in the
    /// features field, the tag in bits 3..8 of the count field.
    pub fn queued(op: Op, lba: u64, sectors: u32, tag: u8) -> Result<AtaCommand, BlockError> {
        if tag >= 32 {
            return Err(BlockError::OutOfRange);
        }
        // The same checks and LBA as the plain LBA48 form.
        let plain = Self::read_write(op, lba, sectors, true)?;
        Ok(AtaCommand {
            command: if plain.is_write() {
                ATA_WRITE_FPDMA_QUEUED
            } else {
                ATA_READ_FPDMA_QUEUED
            },
            // The sector count moves to the features field (65536 stays 0).
            features: plain.count,
            count: u16::from(tag) << 3,
            ..plain
        })
    }

    /// Whether this is a queued (NCQ) command: it completes through PxSACT.
    pub const fn is_queued(&self) -> bool {
        matches!(self.command, ATA_READ_FPDMA_QUEUED | ATA_WRITE_FPDMA_QUEUED)
    }

    /// The flush command: FLUSH CACHE EXT if the device has it, else FLUSH CACHE.
    pub const fn flush(ext: bool) -> AtaCommand {
        AtaCommand::simple(if ext {
            ATA_FLUSH_CACHE_EXT
        } else {
            ATA_FLUSH_CACHE
        })
    }

    /// Whether this command moves data from memory to the device.
    pub const fn is_write(&self) -> bool {
        matches!(
            self.command,
            ATA_WRITE_DMA_EXT | ATA_WRITE_DMA | ATA_WRITE_FPDMA_QUEUED
        )
    }

    /// The Register Host to Device FIS (20 bytes) that issues this command.
    pub fn to_fis(&self) -> [u8; 20] {
        let l = self.lba.to_le_bytes();
        let mut f = [0u8; 20];
        f[0] = FIS_TYPE_REG_H2D;
        f[1] = 0x80; // C: this FIS updates the command register; PM port 0
        f[2] = self.command;
        f[3] = self.features as u8;
        f[4] = l[0];
        f[5] = l[1];
        f[6] = l[2];
        f[7] = self.device;
        f[8] = l[3];
        f[9] = l[4];
        f[10] = l[5];
        f[11] = (self.features >> 8) as u8;
        f[12] = self.count as u8;
        f[13] = (self.count >> 8) as u8;
        // 14: ICC, 15: control, 16..20: reserved.
        f
    }
}

/// Packs bytes into little-endian dwords (`bytes.len()` a multiple of 4).
pub fn le_dwords<const N: usize>(bytes: &[u8]) -> [u32; N] {
    let mut out = [0u32; N];
    for (dw, chunk) in out.iter_mut().zip(bytes.as_chunks::<4>().0) {
        *dw = u32::from_le_bytes(*chunk);
    }
    out
}

/// The first four dwords of a command header: DW0 (CFL, W, PRDTL), DW1 (PRDBC, reset
/// to 0), DW2/DW3 (command table base, 128-byte aligned).
pub fn command_header(write: bool, prdtl: u16, table: u64) -> [u32; 4] {
    let dw0 = FIS_H2D_DWORDS | (u32::from(write) << 6) | (u32::from(prdtl) << 16);
    [dw0, 0, table as u32, (table >> 32) as u32]
}

/// One physical region descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prd {
    /// Data base address (word aligned).
    pub addr: u64,
    /// Bytes (even, `1..=PRD_MAX_BYTES`).
    pub bytes: u32,
    /// Interrupt on completion of this entry (sets PxIS.DPS).
    pub interrupt: bool,
}

impl Prd {
    /// The entry as the HBA reads it: DBA, DBAU, reserved, DBC (`bytes - 1`) with the
    /// I bit in bit 31.
    pub fn encode(&self) -> [u32; 4] {
        let dbc = self.bytes.saturating_sub(1) & (PRD_MAX_BYTES - 1);
        [
            self.addr as u32,
            (self.addr >> 32) as u32,
            0,
            dbc | (u32::from(self.interrupt) << 31),
        ]
    }
}

/// Builds the PRDT for physically contiguous `ranges` `(addr, len)`, one entry per range,
/// splitting ranges above [`PRD_MAX_BYTES`]. No entry asks for an interrupt: the
/// device's Register D2H FIS (PxIS.DHRS) signals completion, or for a queued command its
/// Set Device Bits FIS (PxIS.SDBS).
///
/// Errors: `Misaligned` for an odd address or length (AHCI needs word alignment and an
/// even byte count), `ZeroLength` for an empty range, `TooLarge` past `max_entries`.
pub fn build_prdt(ranges: &[(u64, u32)], max_entries: usize) -> Result<Vec<Prd>, BlockError> {
    let mut prdt = Vec::with_capacity(ranges.len());
    for &(addr, len) in ranges {
        if !addr.is_multiple_of(2) || !len.is_multiple_of(2) {
            return Err(BlockError::Misaligned);
        }
        if len == 0 {
            return Err(BlockError::ZeroLength);
        }
        if addr.checked_add(u64::from(len)).is_none() {
            return Err(BlockError::OutOfRange);
        }
        let mut done = 0u32;
        while done < len {
            let bytes = (len - done).min(PRD_MAX_BYTES);
            if prdt.len() == max_entries {
                return Err(BlockError::TooLarge);
            }
            prdt.push(Prd {
                addr: addr + u64::from(done),
                bytes,
                interrupt: false,
            });
            done += bytes;
        }
    }
    Ok(prdt)
}

/// Whether the HBA can reach `seg` directly: always with 64-bit addressing (S64A),
/// otherwise only if the whole segment lies below 4 GiB.
pub fn reachable(seg: &Segment, s64a: bool) -> bool {
    s64a || seg
        .phys
        .checked_add(u64::from(seg.len))
        .is_some_and(|end| end <= 1 << 32)
}
