//! Planning device-side copies: extents (source, destination, length) cut into copy
//! requests a device takes ([`CopyLimits`]). Pure.
//!
//! One copy request writes one contiguous destination run, read from up to
//! `max_ranges` source ranges one after the other (the shape of NVMe's Copy command), so
//! extents that follow each other at the destination share a request, and an extent
//! longer than a range or a request is cut.

use alloc::vec::Vec;

use super::{CopyLimits, SectorRange};

/// `sectors` sectors to copy from `from` to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyExtent {
    pub from: u64,
    pub to: u64,
    pub sectors: u64,
}

/// One copy request: its destination's first sector and its source ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyCommand {
    pub to: u64,
    pub sources: Vec<SectorRange>,
}

impl CopyCommand {
    /// Sectors the request copies.
    pub fn sectors(&self) -> u64 {
        self.sources.iter().map(|s| u64::from(s.sectors)).sum()
    }
}

/// Cut `extents` into pieces of at most `max` (>= 1) sectors, in order (for copies that
/// move each piece as one read and one write: `kernel::transit`).
pub fn split_extents(extents: &[CopyExtent], max: u64) -> Vec<CopyExtent> {
    let max = max.max(1);
    let mut out = Vec::new();
    for e in extents {
        let mut done = 0;
        while done < e.sectors {
            let n = (e.sectors - done).min(max);
            out.push(CopyExtent {
                from: e.from + done,
                to: e.to + done,
                sectors: n,
            });
            done += n;
        }
    }
    out
}

/// Cut `extents`, in the order given, into requests within `limits` (each limit at
/// least 1). The requests copy exactly the extents' sectors, in the same order.
pub fn plan_copies(extents: &[CopyExtent], limits: &CopyLimits) -> Vec<CopyCommand> {
    let max_range = u64::from(limits.max_range_sectors.max(1));
    let max_ranges = limits.max_ranges.max(1);
    let max_sectors = limits.max_sectors.max(1);
    let mut out: Vec<CopyCommand> = Vec::new();
    // The request being filled, and its sectors so far.
    let mut cur: Option<(CopyCommand, u64)> = None;
    for e in extents {
        let (mut from, mut to, mut left) = (e.from, e.to, e.sectors);
        while left > 0 {
            let continues = matches!(&cur, Some((c, n)) if c.to + n == to && *n < max_sectors);
            if !continues {
                out.extend(cur.take().map(|(c, _)| c));
                cur = Some((
                    CopyCommand {
                        to,
                        sources: Vec::new(),
                    },
                    0,
                ));
            }
            let Some((c, total)) = cur.as_mut() else {
                break;
            };
            let room = max_sectors - *total;
            let ranges = c.sources.len();
            let n = match c.sources.last_mut() {
                // Contiguous with the last range at the source: that range grows.
                Some(last)
                    if last.sector + u64::from(last.sectors) == from
                        && u64::from(last.sectors) < max_range =>
                {
                    let n = left.min(room).min(max_range - u64::from(last.sectors));
                    last.sectors += n as u32;
                    n
                }
                _ if ranges < max_ranges => {
                    let n = left.min(room).min(max_range);
                    c.sources.push(SectorRange {
                        sector: from,
                        sectors: n as u32,
                    });
                    n
                }
                // No range left in this request: the next one takes over.
                _ => {
                    out.extend(cur.take().map(|(c, _)| c));
                    continue;
                }
            };
            *total += n;
            from += n;
            to += n;
            left -= n;
        }
    }
    out.extend(cur.map(|(c, _)| c));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(ranges: usize, range: u32, total: u64) -> CopyLimits {
        CopyLimits {
            max_ranges: ranges,
            max_range_sectors: range,
            max_sectors: total,
        }
    }

    fn ext(from: u64, to: u64, sectors: u64) -> CopyExtent {
        CopyExtent { from, to, sectors }
    }

    /// Every destination sector, in order, with the source sector it comes from.
    fn expand_extents(e: &[CopyExtent]) -> Vec<(u64, u64)> {
        e.iter()
            .flat_map(|e| (0..e.sectors).map(move |i| (e.to + i, e.from + i)))
            .collect()
    }

    fn expand_commands(c: &[CopyCommand]) -> Vec<(u64, u64)> {
        c.iter()
            .flat_map(|c| {
                c.sources
                    .iter()
                    .flat_map(|s| (0..u64::from(s.sectors)).map(move |i| s.sector + i))
                    .enumerate()
                    .map(move |(i, from)| (c.to + i as u64, from))
            })
            .collect()
    }

    fn check(e: &[CopyExtent], l: &CopyLimits) -> Vec<CopyCommand> {
        let c = plan_copies(e, l);
        assert_eq!(expand_commands(&c), expand_extents(e));
        for cmd in &c {
            assert!(!cmd.sources.is_empty() && cmd.sources.len() <= l.max_ranges);
            assert!(cmd.sectors() <= l.max_sectors);
            for s in &cmd.sources {
                assert!(s.sectors >= 1 && s.sectors <= l.max_range_sectors);
            }
        }
        c
    }

    #[test]
    fn split_extents_cuts_in_order() {
        let p = split_extents(&[ext(0, 100, 5), ext(50, 105, 2)], 2);
        let got: Vec<(u64, u64, u64)> = p.iter().map(|x| (x.from, x.to, x.sectors)).collect();
        assert_eq!(got, [(0, 100, 2), (2, 102, 2), (4, 104, 1), (50, 105, 2)]);
    }

    #[test]
    fn contiguous_extents_merge_into_one_range() {
        let c = check(&[ext(100, 500, 8), ext(108, 508, 8)], &limits(4, 64, 256));
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].sources,
            [SectorRange {
                sector: 100,
                sectors: 16
            }]
        );
    }

    #[test]
    fn scattered_sources_share_a_request_while_the_destination_continues() {
        let c = check(
            &[ext(100, 0, 8), ext(300, 8, 8), ext(50, 16, 8)],
            &limits(4, 64, 256),
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].sources.len(), 3);
        // A gap at the destination starts a new request.
        let c = check(&[ext(100, 0, 8), ext(300, 9, 8)], &limits(4, 64, 256));
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].to, 9);
    }

    #[test]
    fn long_extents_are_cut_at_every_limit() {
        // Range limit.
        let c = check(&[ext(0, 1000, 100)], &limits(8, 16, 1 << 20));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].sources.len(), 7);
        // Range count.
        let c = check(&[ext(0, 1000, 100)], &limits(2, 16, 1 << 20));
        assert_eq!(c.len(), 4);
        // Request size.
        let c = check(&[ext(0, 1000, 100)], &limits(8, 64, 30));
        assert_eq!(c.len(), 4);
        assert_eq!(c[3].sectors(), 10);
    }

    #[test]
    fn random_extents_keep_every_sector_in_order() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for _ in 0..300 {
            let mut to = next(1000);
            let mut e = Vec::new();
            for _ in 0..1 + next(12) {
                let sectors = 1 + next(40);
                e.push(ext(next(100_000), to, sectors));
                to += sectors + if next(4) == 0 { next(5) } else { 0 };
            }
            let l = limits(1 + next(5) as usize, 1 + next(20) as u32, 1 + next(60));
            check(&e, &l);
        }
    }
}
