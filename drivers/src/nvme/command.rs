//! Submission and completion queue entries (NVMe base specification 2.0, section 4.2,
//! 4.6; NVM command set 1.0, section 3), the commands the driver issues, and what their
//! status codes mean to the block layer. Pure.

use crate::block::BlockError;

/// Admin: Create I/O Submission Queue.
pub const ADMIN_CREATE_SQ: u8 = 0x01;
/// Admin: Create I/O Completion Queue.
pub const ADMIN_CREATE_CQ: u8 = 0x05;
/// Admin: Identify.
pub const ADMIN_IDENTIFY: u8 = 0x06;
/// Admin: Set Features.
pub const ADMIN_SET_FEATURES: u8 = 0x09;
/// Feature: Number of Queues.
pub const FEATURE_NUMBER_OF_QUEUES: u32 = 0x07;
/// NVM: Flush.
pub const IO_FLUSH: u8 = 0x00;
/// NVM: Write.
pub const IO_WRITE: u8 = 0x01;
/// NVM: Read.
pub const IO_READ: u8 = 0x02;
/// NVM: Dataset Management.
pub const IO_DSM: u8 = 0x09;
/// Bytes of one Dataset Management range.
pub const DSM_RANGE_BYTES: usize = 16;
/// NVM: Copy (NVM command set 1.0, section 3.2.2).
pub const IO_COPY: u8 = 0x19;
/// Bytes of one Copy source range entry in descriptor format 0.
pub const COPY_DESCRIPTOR_BYTES: usize = 32;

/// Identify CNS: the namespace named by NSID.
pub const CNS_NAMESPACE: u32 = 0;
/// Identify CNS: the controller.
pub const CNS_CONTROLLER: u32 = 1;

/// A 64-byte submission queue entry, as 16 little-endian dwords.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sqe(pub [u32; 16]);

impl Sqe {
    /// An entry for `opcode` with command identifier `cid` on namespace `nsid`.
    pub fn new(opcode: u8, cid: u16, nsid: u32) -> Sqe {
        let mut d = [0u32; 16];
        d[0] = opcode as u32 | (cid as u32) << 16;
        d[1] = nsid;
        Sqe(d)
    }

    /// The data pointer: PRP entry 1 and 2.
    pub fn with_prp(mut self, prp1: u64, prp2: u64) -> Sqe {
        self.0[6] = prp1 as u32;
        self.0[7] = (prp1 >> 32) as u32;
        self.0[8] = prp2 as u32;
        self.0[9] = (prp2 >> 32) as u32;
        self
    }

    /// The data pointer as SGL entry 1 (PSDT 01b: SGLs for the data, the metadata
    /// pointer, unused, an address).
    pub fn with_sgl(mut self, descriptor: [u32; 4]) -> Sqe {
        self.0[0] = self.0[0] & !(3 << 14) | 1 << 14;
        self.0[6..10].copy_from_slice(&descriptor);
        self
    }

    /// Command dwords 10 to 15 (`cdw[0]` is CDW10).
    pub fn with_cdw(mut self, cdw: [u32; 6]) -> Sqe {
        self.0[10..16].copy_from_slice(&cdw);
        self
    }

    /// The command identifier.
    pub fn cid(&self) -> u16 {
        (self.0[0] >> 16) as u16
    }

    /// Read or Write of `blocks` logical blocks (1..=65536) from `lba`.
    pub fn rw(write: bool, cid: u16, nsid: u32, lba: u64, blocks: u32) -> Sqe {
        let opcode = if write { IO_WRITE } else { IO_READ };
        Sqe::new(opcode, cid, nsid).with_cdw([
            lba as u32,
            (lba >> 32) as u32,
            blocks.saturating_sub(1) & 0xFFFF,
            0,
            0,
            0,
        ])
    }

    /// Copy `ranges` (1..=256) source ranges, described at `descriptors` (format 0, see
    /// [`copy_descriptors`]), to the logical blocks from `to` on.
    pub fn copy(cid: u16, nsid: u32, to: u64, ranges: usize, descriptors: u64) -> Sqe {
        Sqe::new(IO_COPY, cid, nsid)
            .with_prp(descriptors, 0)
            .with_cdw([
                to as u32,
                (to >> 32) as u32,
                // NR, zero-based, in bits 7:0; descriptor format 0 in bits 11:8.
                (ranges.saturating_sub(1) as u32) & 0xFF,
                0,
                0,
                0,
            ])
    }

    /// Dataset Management, deallocate, of `ranges` (1..=256) ranges described at
    /// `list` (see [`dsm_ranges`]).
    pub fn deallocate(cid: u16, nsid: u32, ranges: usize, list: u64) -> Sqe {
        Sqe::new(IO_DSM, cid, nsid).with_prp(list, 0).with_cdw([
            // NR, zero-based.
            (ranges.saturating_sub(1) as u32) & 0xFF,
            // AD: deallocate.
            1 << 2,
            0,
            0,
            0,
            0,
        ])
    }

    /// Identify with `cns` into the page at `buf`.
    pub fn identify(cid: u16, nsid: u32, cns: u32, buf: u64) -> Sqe {
        Sqe::new(ADMIN_IDENTIFY, cid, nsid)
            .with_prp(buf, 0)
            .with_cdw([cns, 0, 0, 0, 0, 0])
    }

    /// Set Features, Number of Queues: one I/O submission and one completion queue (the
    /// counts are zero-based).
    pub fn one_queue_pair(cid: u16) -> Sqe {
        Sqe::new(ADMIN_SET_FEATURES, cid, 0).with_cdw([FEATURE_NUMBER_OF_QUEUES, 0, 0, 0, 0, 0])
    }

    /// Create I/O completion queue `qid` of `entries` at `base` (physically contiguous),
    /// interrupting on MSI-X vector `vector` if `interrupts`.
    pub fn create_cq(
        cid: u16,
        qid: u16,
        entries: u16,
        base: u64,
        vector: u16,
        interrupts: bool,
    ) -> Sqe {
        let flags = 1 | if interrupts { 2 } else { 0 }; // PC, IEN
        Sqe::new(ADMIN_CREATE_CQ, cid, 0)
            .with_prp(base, 0)
            .with_cdw([
                (entries as u32 - 1) << 16 | qid as u32,
                (vector as u32) << 16 | flags,
                0,
                0,
                0,
                0,
            ])
    }

    /// Create I/O submission queue `qid` of `entries` at `base` (physically contiguous),
    /// completing into completion queue `cqid`.
    pub fn create_sq(cid: u16, qid: u16, entries: u16, base: u64, cqid: u16) -> Sqe {
        Sqe::new(ADMIN_CREATE_SQ, cid, 0)
            .with_prp(base, 0)
            .with_cdw([
                (entries as u32 - 1) << 16 | qid as u32,
                (cqid as u32) << 16 | 1, // PC
                0,
                0,
                0,
                0,
            ])
    }
}

/// The source range entries of a Copy command in descriptor format 0, as dwords: per
/// range 32 bytes, the first logical block at byte 8 and the count (zero-based) at 16.
pub fn copy_descriptors(sources: &[crate::block::SectorRange]) -> alloc::vec::Vec<u32> {
    sources
        .iter()
        .flat_map(|s| {
            [
                0,
                0,
                s.sector as u32,
                (s.sector >> 32) as u32,
                s.sectors.saturating_sub(1) & 0xFFFF,
                0,
                0,
                0,
            ]
        })
        .collect()
}

/// Dataset Management ranges, as dwords: per range 16 bytes, context attributes (0),
/// the length in logical blocks (not zero-based), the first logical block.
pub fn dsm_ranges(ranges: &[crate::block::SectorRange]) -> alloc::vec::Vec<u32> {
    ranges
        .iter()
        .flat_map(|r| [0, r.sectors, r.sector as u32, (r.sector >> 32) as u32])
        .collect()
}

/// A 16-byte completion queue entry, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cqe {
    /// Command-specific dword 0.
    pub result: u32,
    /// Where the controller's submission queue head is now.
    pub sq_head: u16,
    /// The command identifier of the command that completed.
    pub cid: u16,
    /// The phase tag: flips each time the controller wraps the queue.
    pub phase: bool,
    /// Status code type (bits 27:25 of dword 3).
    pub sct: u8,
    /// Status code (bits 24:17 of dword 3).
    pub sc: u8,
}

impl Cqe {
    /// Decode an entry from its four dwords.
    pub fn decode(d: [u32; 4]) -> Cqe {
        Cqe {
            result: d[0],
            sq_head: d[2] as u16,
            cid: d[3] as u16,
            phase: (d[3] >> 16) & 1 == 1,
            sc: (d[3] >> 17) as u8,
            sct: ((d[3] >> 25) & 0x7) as u8,
        }
    }

    /// Whether the command succeeded.
    pub fn ok(&self) -> bool {
        self.sct == 0 && self.sc == 0
    }

    /// What the status means to the block layer (`Ok` on success).
    pub fn status(&self) -> Result<(), BlockError> {
        match (self.sct, self.sc) {
            (0, 0) => Ok(()),
            // Generic: invalid opcode, invalid field.
            (0, 0x01) | (0, 0x02) => Err(BlockError::Unsupported),
            // Generic: LBA out of range, capacity exceeded.
            (0, 0x80) | (0, 0x81) => Err(BlockError::OutOfRange),
            // Generic: namespace write protected (and not ready).
            (0, 0x20) => Err(BlockError::ReadOnly),
            // Command specific: Copy over the namespace's limits (MSSRL, MCL, MSRC).
            (1, 0x83) => Err(BlockError::TooLarge),
            // Media and data integrity errors, path errors, the rest.
            _ => Err(BlockError::Io),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sgl_data_pointer_sets_psdt_and_the_descriptor() {
        let d = [0x2000, 1, 0x4000, 0x3000_0000];
        let r = Sqe::rw(true, 9, 1, 0, 8).with_sgl(d);
        // PSDT (CDW0 bits 15:14) 01b; opcode and command identifier kept.
        assert_eq!(r.0[0] >> 14 & 3, 1);
        assert_eq!(r.0[0] & 0xff, IO_WRITE as u32);
        assert_eq!(r.cid(), 9);
        assert_eq!(r.0[6..10], d);
    }

    #[test]
    fn read_and_write_entries() {
        let r = Sqe::rw(false, 7, 1, 0x1_2345_6789, 8).with_prp(0x1000, 0x2000);
        assert_eq!(r.0[0], 0x02 | 7 << 16);
        assert_eq!(r.cid(), 7);
        assert_eq!(r.0[1], 1);
        assert_eq!((r.0[6], r.0[7], r.0[8], r.0[9]), (0x1000, 0, 0x2000, 0));
        assert_eq!((r.0[10], r.0[11], r.0[12]), (0x2345_6789, 1, 7));
        let w = Sqe::rw(true, 0xffff, 2, 0, 65536);
        assert_eq!(w.0[0], 0x01 | 0xffff << 16);
        assert_eq!(w.0[12], 0xffff, "NLB is zero-based");
    }

    #[test]
    fn queue_creation_entries() {
        let cq = Sqe::create_cq(1, 1, 64, 0x8000, 0, true);
        assert_eq!(cq.0[0] & 0xff, 0x05);
        assert_eq!(cq.0[10], 63 << 16 | 1);
        assert_eq!(cq.0[11], 0b11);
        assert_eq!(cq.0[6], 0x8000);
        let polled = Sqe::create_cq(1, 1, 64, 0x8000, 0, false);
        assert_eq!(polled.0[11], 0b01);
        let sq = Sqe::create_sq(2, 1, 64, 0x9000, 1);
        assert_eq!(sq.0[0] & 0xff, 0x01);
        assert_eq!(sq.0[10], 63 << 16 | 1);
        assert_eq!(sq.0[11], 1 << 16 | 1);
        let nq = Sqe::one_queue_pair(4);
        assert_eq!((nq.0[0], nq.0[10], nq.0[11]), (0x09 | 4 << 16, 0x07, 0));
        let id = Sqe::identify(3, 0, CNS_CONTROLLER, 0xa000);
        assert_eq!((id.0[0] & 0xff, id.0[10], id.0[6]), (0x06, 1, 0xa000));
    }

    #[test]
    fn copy_entries() {
        use crate::block::SectorRange;
        let c = Sqe::copy(9, 1, 0x1_0000_0010, 3, 0x5000);
        assert_eq!(c.0[0], 0x19 | 9 << 16);
        assert_eq!((c.0[1], c.0[6], c.0[10], c.0[11]), (1, 0x5000, 0x10, 1));
        assert_eq!(c.0[12], 2, "NR is zero-based, format 0");
        let d = copy_descriptors(&[
            SectorRange {
                sector: 0x2_0000_0003,
                sectors: 8,
            },
            SectorRange {
                sector: 40,
                sectors: 65536,
            },
        ]);
        assert_eq!(d.len() * 4, 2 * COPY_DESCRIPTOR_BYTES);
        assert_eq!(&d[..8], &[0, 0, 3, 2, 7, 0, 0, 0]);
        assert_eq!(&d[8..], &[0, 0, 40, 0, 0xFFFF, 0, 0, 0]);
        let limit = Cqe::decode([0, 0, 0, 0x83 << 17 | 1 << 25]);
        assert_eq!(limit.status(), Err(BlockError::TooLarge));
    }

    #[test]
    fn deallocate_entries() {
        use crate::block::SectorRange;
        let d = Sqe::deallocate(5, 1, 2, 0x6000);
        assert_eq!(
            (d.0[0], d.0[6], d.0[10], d.0[11]),
            (0x09 | 5 << 16, 0x6000, 1, 4)
        );
        let r = dsm_ranges(&[SectorRange {
            sector: 0x1_0000_0002,
            sectors: 16,
        }]);
        assert_eq!(r.len() * 4, DSM_RANGE_BYTES);
        assert_eq!(r, [0, 16, 2, 1], "the length is not zero-based");
    }

    #[test]
    fn completion_entries_and_status() {
        let ok = Cqe::decode([5, 0, 3 | 1 << 16, 9 | 1 << 16]);
        assert_eq!((ok.result, ok.sq_head, ok.cid, ok.phase), (5, 3, 9, true));
        assert!(ok.ok() && ok.status().is_ok());
        // LBA out of range: SCT 0, SC 0x80.
        let oor = Cqe::decode([0, 0, 0, 4 | 0x80 << 17]);
        assert!(!oor.phase);
        assert_eq!(oor.status(), Err(BlockError::OutOfRange));
        // Unrecovered read error: SCT 2 (media), SC 0x81.
        let media = Cqe::decode([0, 0, 0, 4 | 1 << 16 | 0x81 << 17 | 2 << 25]);
        assert_eq!((media.sct, media.sc), (2, 0x81));
        assert_eq!(media.status(), Err(BlockError::Io));
        let invalid = Cqe::decode([0, 0, 0, 0x01 << 17]);
        assert_eq!(invalid.status(), Err(BlockError::Unsupported));
    }
}
