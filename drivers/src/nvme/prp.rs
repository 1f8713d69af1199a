//! Physical region pages (NVMe base specification 2.0, section 4.1.1): how a request's
//! segments become PRP entry 1, PRP entry 2 and, for more than two pages, a PRP list.
//! Pure.
//!
//! PRPs describe a buffer as memory pages: only the first entry may start inside a page,
//! and every page but the last is used to its end. A request whose segments break that
//! (a segment after the first starting inside a page, or one before the last ending
//! inside a page: scattered 512-byte pieces, say) is carried by several commands, one per
//! run of segments PRPs can describe ([`pieces`]), as Linux's block layer splits at the
//! device's "virtual boundary". Requests from pinned user ranges, page-cache pages and
//! kernel buffers are one piece.

use alloc::vec::Vec;

use crate::block::{BlockError, Segment};

/// The memory page size the driver configures (CC.MPS 0).
pub const PAGE: u64 = 4096;
/// Entries in one PRP list page.
pub const LIST_ENTRIES: usize = (PAGE / 8) as usize;

/// The data pointer of one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prp<'a> {
    /// One or two pages.
    Direct {
        /// PRP entry 1: the first page (from an offset).
        prp1: u64,
        /// PRP entry 2: the second page, 0 when unused.
        prp2: u64,
    },
    /// More pages.
    List {
        /// PRP entry 1: the first page (from an offset).
        prp1: u64,
        /// The other pages, for the list page PRP entry 2 points to (borrowed from the
        /// piece's page list: nothing is copied until it goes into the list page).
        list: &'a [u64],
    },
}

/// A part of a request that one command carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Bytes from the start of the request.
    pub offset: u64,
    /// Bytes.
    pub bytes: u64,
    /// Its pages (see [`pages`]).
    pub pages: Vec<u64>,
}

/// `segments` cut into the fewest pieces of at most `max_bytes` (a multiple of 4 KiB, at
/// most a list page's worth) each that PRPs can describe, in order. A piece ends where a
/// segment ends or starts inside a page, or where it is full (inside a segment, then).
pub fn pieces(segments: &[Segment], max_bytes: u64) -> Result<Vec<Piece>, BlockError> {
    let max = (max_bytes / PAGE * PAGE).clamp(PAGE, LIST_ENTRIES as u64 * PAGE);
    let mut out: Vec<Piece> = Vec::new();
    let mut cur: Vec<Segment> = Vec::new();
    let mut cur_bytes = 0u64;
    let mut offset = 0u64;
    let mut flush = |cur: &mut Vec<Segment>, cur_bytes: &mut u64, end: u64| {
        if !cur.is_empty() {
            out.push(Piece {
                offset: end - *cur_bytes,
                bytes: *cur_bytes,
                pages: pages(cur)?,
            });
            cur.clear();
            *cur_bytes = 0;
        }
        Ok::<(), BlockError>(())
    };
    for s in segments {
        let mut s = *s;
        loop {
            if let Some(prev) = cur.last() {
                let prev_end = prev.phys + prev.len as u64;
                if !prev_end.is_multiple_of(PAGE)
                    || !s.phys.is_multiple_of(PAGE)
                    || cur_bytes == max
                {
                    flush(&mut cur, &mut cur_bytes, offset)?;
                }
            }
            let room = max - cur_bytes;
            if s.len as u64 <= room {
                cur_bytes += s.len as u64;
                offset += s.len as u64;
                cur.push(s);
                break;
            }
            // Full inside this segment: the rest starts the next piece.
            cur.push(Segment {
                phys: s.phys,
                len: room as u32,
            });
            cur_bytes += room;
            offset += room;
            flush(&mut cur, &mut cur_bytes, offset)?;
            s = Segment {
                phys: s.phys + room,
                len: s.len - room as u32,
            };
        }
    }
    flush(&mut cur, &mut cur_bytes, offset)?;
    Ok(out)
}

/// The page addresses `segments` cover, in order: the first may start inside its page,
/// every other is a page address.
pub fn pages(segments: &[Segment]) -> Result<Vec<u64>, BlockError> {
    let last = segments.len().saturating_sub(1);
    let mut out = Vec::new();
    for (i, s) in segments.iter().enumerate() {
        let start = s.phys;
        let end = start
            .checked_add(s.len as u64)
            .ok_or(BlockError::Misaligned)?;
        if s.len == 0
            || !start.is_multiple_of(4)
            || (i > 0 && !start.is_multiple_of(PAGE))
            || (i < last && !end.is_multiple_of(PAGE))
        {
            return Err(BlockError::Misaligned);
        }
        out.push(start);
        let mut page = start - start % PAGE + PAGE;
        while page < end {
            out.push(page);
            page += PAGE;
        }
    }
    Ok(out)
}

/// The data pointer for `pages` (see [`pages`]): [`BlockError::TooLarge`] beyond what one
/// list page holds (the driver's request size keeps below that), [`BlockError::ZeroLength`]
/// for none.
pub fn plan(pages: &[u64]) -> Result<Prp<'_>, BlockError> {
    match pages {
        [] => Err(BlockError::ZeroLength),
        [p] => Ok(Prp::Direct { prp1: *p, prp2: 0 }),
        [p, q] => Ok(Prp::Direct { prp1: *p, prp2: *q }),
        [p, rest @ ..] if rest.len() <= LIST_ENTRIES => Ok(Prp::List {
            prp1: *p,
            list: rest,
        }),
        _ => Err(BlockError::TooLarge),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn seg(phys: u64, len: u32) -> Segment {
        Segment { phys, len }
    }

    #[test]
    fn one_and_two_pages() {
        assert_eq!(pages(&[seg(0x1000, 512)]), Ok(vec![0x1000]));
        assert_eq!(
            plan(&pages(&[seg(0x1000, 4096)]).unwrap()),
            Ok(Prp::Direct {
                prp1: 0x1000,
                prp2: 0
            })
        );
        // 4 KiB starting inside a page spans two pages.
        let p = pages(&[seg(0x1200, 4096)]).unwrap();
        assert_eq!(p, vec![0x1200, 0x2000]);
        assert_eq!(
            plan(&p),
            Ok(Prp::Direct {
                prp1: 0x1200,
                prp2: 0x2000
            })
        );
    }

    #[test]
    fn contiguous_and_scattered_pages_make_a_list() {
        // 1 MiB from an offset: 257 pages, PRP1 and a list of 256.
        let p = pages(&[seg(0x10_0200, 1 << 20)]).unwrap();
        assert_eq!(p.len(), 257);
        assert_eq!(p[1], 0x10_1000);
        match plan(&p).unwrap() {
            Prp::List { prp1, list } => {
                assert_eq!(prp1, 0x10_0200);
                assert_eq!(list.len(), 256);
                assert_eq!(*list.last().unwrap(), 0x20_0000);
            }
            other => panic!("{other:?}"),
        }
        // A pinned user range: first piece from an offset, whole pages, a short last one.
        let p = pages(&[seg(0x5e00, 512), seg(0x9000, 8192), seg(0x3000, 1024)]).unwrap();
        assert_eq!(p, vec![0x5e00, 0x9000, 0xa000, 0x3000]);
    }

    #[test]
    fn requests_are_cut_where_prps_cannot_go_on() {
        // One contiguous buffer: one piece.
        let one = pieces(
            &[seg(0x1200, 0xe00), seg(0x2000, 8192), seg(0x4000, 1024)],
            1 << 20,
        )
        .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].offset, one[0].bytes), (0, 0xe00 + 8192 + 1024));
        // Scattered 512-byte pieces (the multi-segment round trip of the block suite):
        // a command each where a segment ends or starts inside a page.
        let segs = [
            seg(0x1000, 512),
            seg(0x3200, 512),
            seg(0x5000, 4096),
            seg(0x6000, 512),
        ];
        let p = pieces(&segs, 1 << 20).unwrap();
        let cut: Vec<(u64, u64)> = p.iter().map(|p| (p.offset, p.bytes)).collect();
        assert_eq!(cut, vec![(0, 512), (512, 512), (1024, 4096 + 512)]);
        assert_eq!(p[2].pages, vec![0x5000, 0x6000]);
        for piece in &p {
            assert!(plan(&piece.pages).is_ok());
        }
        assert_eq!(pieces(&[], 1 << 20).unwrap(), vec![]);
        // A request larger than one command may carry (QEMU's MDTS: 512 KiB): 256 page
        // segments of writeback, and one contiguous MiB, both cut at 512 KiB.
        let pages256: Vec<Segment> = (0..256)
            .map(|i| seg(0x10_0000 + 2 * i * 4096, 4096))
            .collect();
        let p = pieces(&pages256, 512 << 10).unwrap();
        let cut: Vec<(u64, u64, usize)> = p
            .iter()
            .map(|p| (p.offset, p.bytes, p.pages.len()))
            .collect();
        assert_eq!(cut, vec![(0, 512 << 10, 128), (512 << 10, 512 << 10, 128)]);
        let p = pieces(&[seg(0x20_0200, 1 << 20)], 512 << 10).unwrap();
        let cut: Vec<(u64, u64)> = p.iter().map(|p| (p.offset, p.bytes)).collect();
        assert_eq!(cut, vec![(0, 512 << 10), (512 << 10, 512 << 10)]);
        assert_eq!(p[1].pages[0], 0x20_0200 + (512 << 10));
        for piece in &p {
            assert!(plan(&piece.pages).is_ok());
        }
    }

    #[test]
    fn segments_prps_cannot_describe_are_refused() {
        // Second segment starting inside a page.
        assert_eq!(
            pages(&[seg(0x1000, 4096), seg(0x3200, 512)]),
            Err(BlockError::Misaligned)
        );
        // First segment ending inside a page, with more after it.
        assert_eq!(
            pages(&[seg(0x1000, 512), seg(0x3000, 512)]),
            Err(BlockError::Misaligned)
        );
        assert_eq!(pages(&[seg(0x1002, 512)]), Err(BlockError::Misaligned));
        assert_eq!(plan(&[]), Err(BlockError::ZeroLength));
        let too_many: Vec<u64> = (0..LIST_ENTRIES as u64 + 2).map(|i| i * PAGE).collect();
        assert_eq!(plan(&too_many), Err(BlockError::TooLarge));
        assert!(plan(&too_many[..LIST_ENTRIES + 1]).is_ok());
    }
}
