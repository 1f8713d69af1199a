//! Scatter gather lists (NVMe base specification 2.0, section 4.1.2): a command's data as
//! (address, length) descriptors instead of pages. Pure.
//!
//! Where the controller offers SGLs (Identify Controller SGLS), they describe what PRPs
//! describe badly: one 16-byte Data Block descriptor carries a physically contiguous run
//! of any length (a 1 MiB transit buffer, a pinned user range the allocator kept
//! contiguous) where PRPs need an entry per 4 KiB page, and segments that start or end
//! inside a page go in one command where PRPs need one command per run
//! ([`super::prp::pieces`]). [`prefer`] is the policy, after Linux's `sgl_threshold`:
//! SGLs for requests whose segments average 32 KiB or more, or that PRPs would cut into
//! more commands than their size needs; PRPs (cheaper for the controller to walk,
//! 8 bytes a page) for the rest.
//!
//! A command with one segment carries it in SGL entry 1 itself; more go in the slot's
//! list page as Data Block descriptors, with a Last Segment descriptor in SGL entry 1
//! pointing at them.

use alloc::vec::Vec;

use crate::block::{BlockError, SECTOR_SIZE, Segment};

/// Bytes of one descriptor.
pub const DESCRIPTOR_BYTES: usize = 16;
/// Descriptors in one list page.
pub const LIST_DESCRIPTORS: usize = 4096 / DESCRIPTOR_BYTES;
/// Average segment size from which SGLs are preferred (Linux's `sgl_threshold` default).
pub const THRESHOLD_BYTES: u64 = 32 << 10;

/// Descriptor type Data Block, sub type Address (byte 15).
const DATA_BLOCK: u32 = 0x00;
/// Descriptor type Last Segment, sub type Address.
const LAST_SEGMENT: u32 = 0x30;

/// What the controller allows (Identify Controller SGLS bits 1:0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Support {
    /// No SGLs for NVM commands.
    #[default]
    None,
    /// Any address and length.
    Any,
    /// Data Block addresses and lengths in whole dwords.
    Dword,
}

impl Support {
    /// From the SGLS field.
    pub fn from_sgls(sgls: u32) -> Support {
        match sgls & 3 {
            1 => Support::Any,
            2 => Support::Dword,
            _ => Support::None,
        }
    }
}

/// A descriptor as four little-endian dwords.
pub type Descriptor = [u32; 4];

/// A Data Block descriptor for `len` bytes at `addr`.
pub fn data_block(addr: u64, len: u32) -> Descriptor {
    [addr as u32, (addr >> 32) as u32, len, DATA_BLOCK << 24]
}

/// A Last Segment descriptor for `n` Data Block descriptors at `list`.
pub fn last_segment(list: u64, n: usize) -> Descriptor {
    [
        list as u32,
        (list >> 32) as u32,
        (n * DESCRIPTOR_BYTES) as u32,
        LAST_SEGMENT << 24,
    ]
}

/// A part of a request that one command carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Bytes from the start of the request.
    pub offset: u64,
    /// Bytes (whole sectors).
    pub bytes: u64,
    /// The memory, one descriptor each.
    pub segments: Vec<Segment>,
}

/// Whether a request of `segments` goes better by SGLs than by PRPs (see the module
/// comment); `prp_commands` is how many commands PRPs would take, `max_bytes` a
/// command's limit.
pub fn prefer(segments: &[Segment], prp_commands: usize, max_bytes: u64) -> bool {
    let bytes: u64 = segments.iter().map(|s| s.len as u64).sum();
    if segments.is_empty() || bytes == 0 {
        return false;
    }
    bytes / segments.len() as u64 >= THRESHOLD_BYTES
        || prp_commands > bytes.div_ceil(max_bytes.max(1)) as usize
}

/// `segments` cut into pieces of whole sectors, each at most `max_bytes` (a multiple of
/// 4 KiB) and [`LIST_DESCRIPTORS`] descriptors, in order. A piece ends where it is full;
/// one full of descriptors ends at its last whole sector, the sector's bytes left going
/// first in the next. [`BlockError::Misaligned`] for what `support` does not allow (or
/// 256 descriptors that do not make a sector).
pub fn pieces(
    segments: &[Segment],
    max_bytes: u64,
    support: Support,
) -> Result<Vec<Piece>, BlockError> {
    let sector = SECTOR_SIZE as u64;
    let max = (max_bytes / 4096 * 4096).max(4096);
    let mut out = Vec::new();
    let mut cur: Vec<Segment> = Vec::new();
    let (mut cur_bytes, mut offset) = (0u64, 0u64);
    let mut carry: Vec<Segment> = Vec::new();
    for s in segments {
        let dword = s.phys.is_multiple_of(4) && s.len.is_multiple_of(4);
        if s.len == 0 || support == Support::None || (support == Support::Dword && !dword) {
            return Err(BlockError::Misaligned);
        }
    }
    let mut input = segments.iter().copied();
    loop {
        let s = match carry.pop() {
            Some(s) => s,
            None => match input.next() {
                Some(s) => s,
                None => break,
            },
        };
        let take = (s.len as u64).min(max - cur_bytes);
        cur.push(Segment {
            phys: s.phys,
            len: take as u32,
        });
        cur_bytes += take;
        if take < s.len as u64 {
            carry.push(Segment {
                phys: s.phys + take,
                len: s.len - take as u32,
            });
        }
        let full = cur_bytes == max || cur.len() == LIST_DESCRIPTORS;
        if full && cur_bytes.is_multiple_of(sector) {
            flush(&mut out, &mut cur, &mut cur_bytes, &mut offset);
        } else if full {
            // Out of descriptors inside a sector: its bytes start the next piece.
            let mut extra = cur_bytes % sector;
            while extra > 0 {
                let last = cur.pop().ok_or(BlockError::Misaligned)?;
                if last.len as u64 <= extra {
                    extra -= last.len as u64;
                    cur_bytes -= last.len as u64;
                    carry.push(last);
                } else {
                    let keep = last.len - extra as u32;
                    cur.push(Segment {
                        phys: last.phys,
                        len: keep,
                    });
                    carry.push(Segment {
                        phys: last.phys + keep as u64,
                        len: extra as u32,
                    });
                    cur_bytes -= extra;
                    extra = 0;
                }
            }
            if cur.is_empty() {
                return Err(BlockError::Misaligned);
            }
            flush(&mut out, &mut cur, &mut cur_bytes, &mut offset);
        }
    }
    if !cur.is_empty() {
        if !cur_bytes.is_multiple_of(sector) {
            return Err(BlockError::Misaligned);
        }
        flush(&mut out, &mut cur, &mut cur_bytes, &mut offset);
    }
    Ok(out)
}

fn flush(out: &mut Vec<Piece>, cur: &mut Vec<Segment>, cur_bytes: &mut u64, offset: &mut u64) {
    out.push(Piece {
        offset: *offset,
        bytes: *cur_bytes,
        segments: core::mem::take(cur),
    });
    *offset += *cur_bytes;
    *cur_bytes = 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn seg(phys: u64, len: u32) -> Segment {
        Segment { phys, len }
    }

    /// Every piece is whole sectors within the limits, and the pieces hold the segments'
    /// bytes in order, end to end.
    fn check_cover(segments: &[Segment], pieces: &[Piece], max: u64) {
        // The memory as runs, adjacent segments merged.
        let flat = |segs: &[Segment]| -> Vec<(u64, u64)> {
            let mut runs: Vec<(u64, u64)> = Vec::new();
            for s in segs {
                match runs.last_mut() {
                    Some((a, n)) if *a + *n == s.phys => *n += s.len as u64,
                    _ => runs.push((s.phys, s.len as u64)),
                }
            }
            runs
        };
        let mut got = Vec::new();
        let mut offset = 0;
        for p in pieces {
            got.extend(p.segments.iter().copied());
            assert_eq!(p.offset, offset);
            assert!(p.bytes > 0 && p.bytes <= max && p.bytes.is_multiple_of(512));
            assert!(p.segments.len() <= LIST_DESCRIPTORS);
            assert_eq!(
                p.segments.iter().map(|s| s.len as u64).sum::<u64>(),
                p.bytes
            );
            offset += p.bytes;
        }
        assert_eq!(flat(&got), flat(segments));
    }

    #[test]
    fn descriptors_encode_as_the_specification_says() {
        assert_eq!(
            data_block(0x1_2345_6000, 0x10_0000),
            [0x2345_6000, 1, 0x10_0000, 0]
        );
        // Last Segment: type 3 in the high nibble of byte 15, the length in bytes.
        assert_eq!(last_segment(0x8000, 3), [0x8000, 0, 48, 0x3000_0000]);
        assert_eq!(Support::from_sgls(0x0010_0001), Support::Any);
        assert_eq!(Support::from_sgls(2), Support::Dword);
        assert_eq!(Support::from_sgls(0), Support::None);
        assert_eq!(Support::from_sgls(3), Support::None);
    }

    #[test]
    fn a_contiguous_run_is_one_descriptor_per_command() {
        // 1 MiB contiguous from inside a page: PRPs need 257 entries, SGLs one.
        let segs = [seg(0x10_0200, 1 << 20)];
        let p = pieces(&segs, 1 << 20, Support::Any).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].segments, segs.to_vec());
        // Cut at the command limit.
        let p = pieces(&segs, 512 << 10, Support::Any).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].segments, vec![seg(0x10_0200 + (512 << 10), 512 << 10)]);
        check_cover(&segs, &p, 512 << 10);
    }

    #[test]
    fn scattered_sub_page_segments_go_in_one_command() {
        // The block suite's multi-segment round trip: PRPs take three commands.
        let segs = [
            seg(0x1000, 512),
            seg(0x3200, 512),
            seg(0x5000, 4096),
            seg(0x6000, 512),
        ];
        let p = pieces(&segs, 1 << 20, Support::Any).unwrap();
        assert_eq!(p.len(), 1);
        check_cover(&segs, &p, 1 << 20);
        assert!(prefer(&segs, 3, 1 << 20));
        // Page-sized segments PRPs describe in one command stay with PRPs.
        let pages: Vec<Segment> = (0..64).map(|i| seg(0x10_0000 + 0x2000 * i, 4096)).collect();
        assert!(!prefer(&pages, 1, 1 << 20));
        // Large segments go by SGLs.
        assert!(prefer(
            &[seg(0x10_0000, 64 << 10), seg(0x40_0000, 64 << 10)],
            1,
            1 << 20
        ));
        assert!(!prefer(&[], 0, 1 << 20));
    }

    #[test]
    fn a_piece_out_of_descriptors_ends_at_a_sector() {
        // A request that is not whole sectors is refused: 300 segments of 200 bytes
        // (60,000 bytes; the first 256 make 100 sectors, the 8,800 after them do not).
        let segs: Vec<Segment> = (0..300)
            .map(|i| seg(0x100_0000 + 0x1000 * i, 200))
            .collect();
        assert_eq!(
            pieces(&segs, 1 << 20, Support::Any),
            Err(BlockError::Misaligned)
        );
        // 1001-byte segments: 256 of them end 256 bytes into a sector; the piece stops at
        // 256,000 bytes and the next begins with the cut segment's tail.
        let segs: Vec<Segment> = (0..512)
            .map(|i| seg(0x100_0000 + 0x1000 * i, 1001))
            .collect();
        let p = pieces(&segs, 1 << 20, Support::Any).unwrap();
        check_cover(&segs, &p, 1 << 20);
        assert_eq!(p[0].bytes, 256_000);
        assert_eq!(p[0].segments.len(), 256);
        assert_eq!(p[0].segments[255].len, 1001 - 256);
        assert_eq!(p[1].segments[0], seg(0x100_0000 + 0x1000 * 255 + 745, 256));
        // Random segmentations of whole-sector totals cover their bytes.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200 {
            let mut segs = Vec::new();
            let mut total = 0u64;
            let n = 1 + (x % 700) as usize;
            for i in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let len = 4 * (1 + x % 3000) as u32;
                segs.push(seg(
                    0x1000_0000 + (i as u64) * 0x4000 + 4 * (x >> 40 & 0xff),
                    len,
                ));
                total += len as u64;
            }
            let pad = (512 - total % 512) % 512;
            if pad > 0 {
                segs.push(seg(0x9000_0000, pad as u32));
            }
            let max = 4096 * (1 + x % 300);
            let p = pieces(&segs, max, Support::Dword).unwrap();
            check_cover(&segs, &p, max);
        }
    }

    #[test]
    fn what_the_controller_does_not_allow_is_refused() {
        assert_eq!(
            pieces(&[seg(0x1001, 512)], 1 << 20, Support::Dword),
            Err(BlockError::Misaligned)
        );
        assert!(pieces(&[seg(0x1001, 512)], 1 << 20, Support::Any).is_ok());
        assert_eq!(
            pieces(&[seg(0x1000, 512)], 1 << 20, Support::None),
            Err(BlockError::Misaligned)
        );
        assert_eq!(
            pieces(&[seg(0x1000, 0), seg(0x2000, 512)], 1 << 20, Support::Any),
            Err(BlockError::Misaligned)
        );
        assert_eq!(
            pieces(&[seg(0x1000, 500)], 1 << 20, Support::Any),
            Err(BlockError::Misaligned)
        );
    }
}
