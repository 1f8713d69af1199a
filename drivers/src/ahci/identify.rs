//! Parsing the 512-byte IDENTIFY DEVICE data (ATA8-ACS section 7.16, "IDENTIFY DEVICE
//! data"). Pure: works on a byte buffer, so host tests feed it synthetic data.

use alloc::string::String;

/// Words in IDENTIFY data.
pub const IDENTIFY_WORDS: usize = 256;

/// What the driver needs from IDENTIFY DEVICE.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identify {
    /// Capacity in logical sectors (LBA48 words 100..103 if LBA48 is supported and
    /// they are set, else LBA28 words 60..61).
    pub sectors: u64,
    /// LBA addressing supported (word 49 bit 9).
    pub lba: bool,
    /// 48-bit addressing supported (word 83 bit 10).
    pub lba48: bool,
    /// DMA supported (word 49 bit 8).
    pub dma: bool,
    /// Model number (words 27..46), byte-swapped back into order and trimmed.
    pub model: String,
    /// Serial number (words 10..19).
    pub serial: String,
    /// Firmware revision (words 23..26).
    pub firmware: String,
    /// A volatile write cache exists (word 82 bit 5).
    pub write_cache_supported: bool,
    /// The write cache is enabled (word 85 bit 5; if words 85..87 are not valid, taken
    /// to be enabled when supported, the power-on default).
    pub write_cache_enabled: bool,
    /// FLUSH CACHE supported (word 83 bit 12).
    pub flush: bool,
    /// FLUSH CACHE EXT supported (word 83 bit 13).
    pub flush_ext: bool,
    /// Logical sector size in bytes (words 106, 117..118; 512 unless reported).
    pub logical_sector_size: u32,
    /// Native command queuing: the queue depth, if supported (words 75, 76).
    pub ncq_depth: Option<u8>,
    /// Word 255 holds a checksum (signature 0xA5) and it does not add up.
    pub bad_checksum: bool,
}

/// A word-validity field: bits 15..14 of words 83, 84, 87 and 106 must read `01`.
const fn valid(w: u16) -> bool {
    w & 0xC000 == 0x4000
}

fn word(data: &[u8; 512], i: usize) -> u16 {
    u16::from_le_bytes([data[2 * i], data[2 * i + 1]])
}

/// ATA strings: two characters per word, the first in the high byte. Trailing and
/// leading spaces (and NULs) are trimmed; non-printable bytes become `?`.
pub fn ata_string(data: &[u8; 512], first: usize, last: usize) -> String {
    let mut s = String::with_capacity(2 * (last - first + 1));
    for i in first..=last {
        let w = word(data, i);
        for b in [(w >> 8) as u8, w as u8] {
            s.push(if b == 0 {
                ' '
            } else if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            });
        }
    }
    String::from(s.trim())
}

impl Identify {
    /// Parses IDENTIFY DEVICE data as the device returned it (little-endian words).
    pub fn parse(data: &[u8; 512]) -> Identify {
        let w = |i| word(data, i);
        let caps = w(49);
        let cmd_set_2 = w(83); // bits 15..14 validate 82..84
        let enabled_valid = valid(w(87)); // validates 85..87
        let sets_valid = valid(cmd_set_2);
        let lba48 = sets_valid && cmd_set_2 & (1 << 10) != 0;
        let lba28 = u64::from(w(60)) | (u64::from(w(61)) << 16);
        let lba48_sectors = (0..4).fold(0u64, |acc, k| acc | (u64::from(w(100 + k)) << (16 * k)));
        let sectors = if lba48 && lba48_sectors != 0 {
            lba48_sectors
        } else {
            lba28
        };

        let w106 = w(106);
        let logical_sector_size = if valid(w106) && w106 & (1 << 12) != 0 {
            // Words 117..118: logical sector size in words.
            let words = u32::from(w(117)) | (u32::from(w(118)) << 16);
            words.saturating_mul(2)
        } else {
            512
        };

        let ncq_depth = if w(76) != 0xFFFF && w(76) & (1 << 8) != 0 {
            Some((w(75) & 0x1F) as u8 + 1)
        } else {
            None
        };

        let write_cache_supported = sets_valid && w(82) & (1 << 5) != 0;
        let write_cache_enabled = if enabled_valid {
            w(85) & (1 << 5) != 0
        } else {
            write_cache_supported
        };
        let w255 = w(255);
        let bad_checksum =
            w255 & 0xFF == 0xA5 && data.iter().fold(0u8, |a, b| a.wrapping_add(*b)) != 0;

        Identify {
            sectors,
            lba: caps & (1 << 9) != 0,
            lba48,
            dma: caps & (1 << 8) != 0,
            model: ata_string(data, 27, 46),
            serial: ata_string(data, 10, 19),
            firmware: ata_string(data, 23, 26),
            write_cache_supported,
            write_cache_enabled,
            flush: sets_valid && cmd_set_2 & (1 << 12) != 0,
            flush_ext: sets_valid && cmd_set_2 & (1 << 13) != 0,
            logical_sector_size,
            ncq_depth,
            bad_checksum,
        }
    }

    /// Whether the device has an enabled volatile write cache and a command to flush it.
    pub fn has_flushable_cache(&self) -> bool {
        self.write_cache_enabled && (self.flush || self.flush_ext)
    }
}
