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
pub enum Prp {
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
        /// The other pages, for the list page PRP entry 2 points to.
        list: Vec<u64>,
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

/// `segments` cut into the fewest runs PRPs can describe, in order, each of at most one
/// list page's worth of pages.
pub fn pieces(segments: &[Segment]) -> Result<Vec<Piece>, BlockError> {
    let mut out: Vec<Piece> = Vec::new();
    let mut run_start = 0;
    let mut offset = 0u64;
    let mut run_offset = 0u64;
    let mut run_pages = 0usize;
    for (i, s) in segments.iter().enumerate() {
        let seg_pages = (s.phys % PAGE + s.len as u64).div_ceil(PAGE) as usize;
        if i > run_start {
            let prev = &segments[i - 1];
            let prev_end = prev.phys + prev.len as u64;
            if !prev_end.is_multiple_of(PAGE)
                || !s.phys.is_multiple_of(PAGE)
                || run_pages + seg_pages > LIST_ENTRIES + 1
            {
                out.push(Piece {
                    offset: run_offset,
                    bytes: offset - run_offset,
                    pages: pages(&segments[run_start..i])?,
                });
                run_start = i;
                run_offset = offset;
                run_pages = 0;
            }
        }
        run_pages += seg_pages;
        offset += s.len as u64;
    }
    if run_start < segments.len() {
        out.push(Piece {
            offset: run_offset,
            bytes: offset - run_offset,
            pages: pages(&segments[run_start..])?,
        });
    }
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
pub fn plan(pages: &[u64]) -> Result<Prp, BlockError> {
    match pages {
        [] => Err(BlockError::ZeroLength),
        [p] => Ok(Prp::Direct { prp1: *p, prp2: 0 }),
        [p, q] => Ok(Prp::Direct { prp1: *p, prp2: *q }),
        [p, rest @ ..] if rest.len() <= LIST_ENTRIES => Ok(Prp::List {
            prp1: *p,
            list: rest.to_vec(),
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
        let one = pieces(&[seg(0x1200, 0xe00), seg(0x2000, 8192), seg(0x4000, 1024)]).unwrap();
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
        let p = pieces(&segs).unwrap();
        let cut: Vec<(u64, u64)> = p.iter().map(|p| (p.offset, p.bytes)).collect();
        assert_eq!(cut, vec![(0, 512), (512, 512), (1024, 4096 + 512)]);
        assert_eq!(p[2].pages, vec![0x5000, 0x6000]);
        for piece in &p {
            assert!(plan(&piece.pages).is_ok());
        }
        assert_eq!(pieces(&[]).unwrap(), vec![]);
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
