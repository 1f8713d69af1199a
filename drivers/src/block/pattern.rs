//! A self-describing data pattern for block tests: every 512-byte sector says which
//! sector it is and which run wrote it, so a host can check a disk image after the guest
//! wrote it, and a read-back can tell a misplaced sector from a corrupt one.

use super::SECTOR_SIZE;

/// Magic at the start of every pattern sector.
pub const MAGIC: &[u8; 8] = b"ALIASBLK";

/// Fill `buf` (a 512-byte sector) with the pattern for `sector` and `seed`.
pub fn fill_sector(buf: &mut [u8], sector: u64, seed: u64) {
    debug_assert_eq!(buf.len(), SECTOR_SIZE);
    buf[..8].copy_from_slice(MAGIC);
    buf[8..16].copy_from_slice(&sector.to_le_bytes());
    buf[16..24].copy_from_slice(&seed.to_le_bytes());
    let mut x = sector.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed ^ 0xD1B5_4A32_D192_ED03;
    for chunk in buf[24..].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// Whether `buf` holds exactly the pattern for `sector` and `seed`.
pub fn check_sector(buf: &[u8], sector: u64, seed: u64) -> bool {
    let mut want = [0u8; SECTOR_SIZE];
    fill_sector(&mut want, sector, seed);
    buf == want
}

/// Fill `buf` with the bytes at byte `offset` of a stream made of consecutive pattern
/// sectors (sector `n` at byte `512 n`), for file tests with unaligned pieces.
pub fn fill_range(buf: &mut [u8], offset: u64, seed: u64) {
    let mut sector = [0u8; SECTOR_SIZE];
    let mut done = 0usize;
    while done < buf.len() {
        let pos = offset + done as u64;
        let s = pos / SECTOR_SIZE as u64;
        let at = (pos % SECTOR_SIZE as u64) as usize;
        fill_sector(&mut sector, s, seed);
        let n = (SECTOR_SIZE - at).min(buf.len() - done);
        buf[done..done + n].copy_from_slice(&sector[at..at + n]);
        done += n;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges_match_sectors() {
        let mut whole = [0u8; 3 * SECTOR_SIZE];
        for s in 0..3 {
            fill_sector(
                &mut whole[s * SECTOR_SIZE..(s + 1) * SECTOR_SIZE],
                s as u64,
                9,
            );
        }
        let mut part = [0u8; 700];
        fill_range(&mut part, 300, 9);
        assert_eq!(&part[..], &whole[300..1000]);
    }

    use super::*;

    #[test]
    fn sectors_differ_and_check() {
        let mut a = [0u8; SECTOR_SIZE];
        let mut b = [0u8; SECTOR_SIZE];
        fill_sector(&mut a, 7, 1);
        fill_sector(&mut b, 8, 1);
        assert_ne!(a, b);
        assert!(check_sector(&a, 7, 1));
        assert!(!check_sector(&a, 7, 2));
        assert!(!check_sector(&a, 8, 1));
    }
}
