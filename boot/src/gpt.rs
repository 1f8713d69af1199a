//! Make the UEFI image reproducible: the bootloader crate gives its GPT a random disk GUID
//! and a random partition GUID on every build (everything else in the image already depends
//! only on its inputs). [`fix_guids`] replaces both with fixed values and recomputes the
//! CRC32s of the primary and backup headers and partition entry arrays.

use std::path::Path;

/// The disk GUID of every AliasOS UEFI image (on-disk byte order).
pub const DISK_GUID: [u8; 16] = *b"AliasOS-uefi-img";
/// The unique GUID of partition `i` is this with its last byte replaced by `i`.
pub const PARTITION_GUID: [u8; 16] = *b"AliasOS-esp-part";

const SECTOR: usize = 512;

/// CRC-32 (IEEE 802.3, reflected, as in GPT and zlib).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn u32_at(d: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(o..o + 4)?.try_into().ok()?))
}

fn u64_at(d: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(o..o + 8)?.try_into().ok()?))
}

/// Rewrite the GPT header at `lba` and its entry array with the fixed GUIDs.
fn fix_header(img: &mut [u8], lba: u64) -> Option<()> {
    let h = usize::try_from(lba).ok()?.checked_mul(SECTOR)?;
    if img.get(h..h + 8)? != b"EFI PART" {
        return None;
    }
    let header_size = u32_at(img, h + 12)? as usize;
    if !(92..=SECTOR).contains(&header_size) {
        return None;
    }
    let entries = usize::try_from(u64_at(img, h + 72)?)
        .ok()?
        .checked_mul(SECTOR)?;
    let count = u32_at(img, h + 80)? as usize;
    let size = u32_at(img, h + 84)? as usize;
    if size < 128 {
        return None;
    }
    let array = img.get_mut(entries..entries.checked_add(count.checked_mul(size)?)?)?;
    for (i, e) in array.chunks_exact_mut(size).enumerate() {
        // An unused entry has an all-zero type GUID.
        if e[..16].iter().any(|&b| b != 0) {
            let mut guid = PARTITION_GUID;
            guid[15] = i as u8;
            e[16..32].copy_from_slice(&guid);
        }
    }
    let array_crc = crc32(array);
    img[h + 56..h + 72].copy_from_slice(&DISK_GUID);
    img[h + 88..h + 92].copy_from_slice(&array_crc.to_le_bytes());
    img[h + 16..h + 20].fill(0);
    let header_crc = crc32(&img[h..h + header_size]);
    img[h + 16..h + 20].copy_from_slice(&header_crc.to_le_bytes());
    Some(())
}

/// Give the GPT disk image `img` (in memory) fixed GUIDs and valid CRCs.
pub fn fix_guids_in(img: &mut [u8]) -> Result<(), String> {
    fix_header(img, 1).ok_or("no valid primary GPT header at LBA 1")?;
    let backup = u64_at(img, SECTOR + 32).ok_or("short image")?;
    fix_header(img, backup).ok_or_else(|| format!("no valid backup GPT header at LBA {backup}"))
}

/// Give the GPT disk image at `path` fixed GUIDs and valid CRCs.
pub fn fix_guids(path: &Path) -> Result<(), String> {
    let mut img = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    fix_guids_in(&mut img)?;
    std::fs::write(path, &img).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    /// A minimal GPT (primary at LBA 1, entries at LBA 2, backup entries and header at the
    /// end) with random-looking GUIDs comes out with the fixed ones and consistent CRCs.
    #[test]
    fn guids_are_fixed_and_crcs_valid() {
        let sectors = 64u64;
        let mut img = vec![0u8; sectors as usize * SECTOR];
        let header = |img: &mut [u8], lba: u64, alt: u64, entries: u64| {
            let h = lba as usize * SECTOR;
            img[h..h + 8].copy_from_slice(b"EFI PART");
            img[h + 12..h + 16].copy_from_slice(&92u32.to_le_bytes());
            img[h + 24..h + 32].copy_from_slice(&lba.to_le_bytes());
            img[h + 32..h + 40].copy_from_slice(&alt.to_le_bytes());
            img[h + 56..h + 72].copy_from_slice(&[0x5a; 16]);
            img[h + 72..h + 80].copy_from_slice(&entries.to_le_bytes());
            img[h + 80..h + 84].copy_from_slice(&4u32.to_le_bytes());
            img[h + 84..h + 88].copy_from_slice(&128u32.to_le_bytes());
            let e = entries as usize * SECTOR;
            img[e..e + 16].copy_from_slice(&[0xc1; 16]);
            img[e + 16..e + 32].copy_from_slice(&[0x77; 16]);
        };
        header(&mut img, 1, sectors - 1, 2);
        header(&mut img, sectors - 1, 1, sectors - 2);
        let mut again = img.clone();
        again[SECTOR + 56] = 0x11; // a different random disk GUID
        fix_guids_in(&mut img).unwrap();
        fix_guids_in(&mut again).unwrap();
        assert_eq!(img, again, "the result no longer depends on the GUIDs");
        for (h, e) in [(SECTOR, 2 * SECTOR), (63 * SECTOR, 62 * SECTOR)] {
            assert_eq!(img[h + 56..h + 72], DISK_GUID);
            let mut part = PARTITION_GUID;
            part[15] = 0;
            assert_eq!(img[e + 16..e + 32], part);
            assert!(
                img[e + 128..e + 512].iter().all(|&b| b == 0),
                "unused entries stay empty"
            );
            assert_eq!(u32_at(&img, h + 88).unwrap(), crc32(&img[e..e + 512]));
            let mut hdr = img[h..h + 92].to_vec();
            hdr[16..20].fill(0);
            assert_eq!(u32_at(&img, h + 16).unwrap(), crc32(&hdr));
        }
        assert!(fix_guids_in(&mut [0u8; 4096]).is_err());
    }
}
