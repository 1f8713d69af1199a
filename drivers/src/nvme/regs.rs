//! Controller registers (NVMe base specification 2.0, section 3.1) and the decoding of
//! CAP. Pure.

/// Controller Capabilities (64-bit).
pub const CAP: usize = 0x00;
/// Version.
pub const VS: usize = 0x08;
/// Controller Configuration.
pub const CC: usize = 0x14;
/// Controller Status.
pub const CSTS: usize = 0x1C;
/// Admin Queue Attributes.
pub const AQA: usize = 0x24;
/// Admin Submission Queue base (64-bit).
pub const ASQ: usize = 0x28;
/// Admin Completion Queue base (64-bit).
pub const ACQ: usize = 0x30;
/// First doorbell.
pub const DOORBELLS: usize = 0x1000;

/// CC.EN.
pub const CC_EN: u32 = 1;
/// CC with EN set, the NVM command set (CSS 0), 4 KiB pages (MPS 0), round-robin
/// arbitration, 64-byte submission entries (IOSQES 6) and 16-byte completion entries
/// (IOCQES 4).
pub const CC_ENABLE: u32 = CC_EN | (6 << 16) | (4 << 20);
/// CSTS.RDY.
pub const CSTS_RDY: u32 = 1;
/// CSTS.CFS (controller fatal status).
pub const CSTS_CFS: u32 = 1 << 1;
/// CC.SHN: normal shutdown notification.
pub const CC_SHN_NORMAL: u32 = 1 << 14;
/// CSTS.SHST mask, and its "shutdown processing complete" value.
pub const CSTS_SHST_MASK: u32 = 3 << 2;
/// CSTS.SHST: shutdown processing complete.
pub const CSTS_SHST_COMPLETE: u32 = 2 << 2;

/// The fields of CAP the driver uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    /// Largest queue the controller supports, in entries (MQES + 1).
    pub max_queue_entries: u32,
    /// Worst-case time for CSTS.RDY to follow CC.EN, in milliseconds (TO × 500).
    pub ready_timeout_ms: u32,
    /// Bytes between doorbells (4 << DSTRD).
    pub doorbell_stride: usize,
    /// The NVM command set is supported (CSS bit 0).
    pub nvm_command_set: bool,
    /// Smallest memory page size, in bytes (4 KiB << MPSMIN).
    pub min_page: u64,
}

impl Cap {
    /// Decode CAP's 64-bit value.
    pub fn decode(v: u64) -> Cap {
        Cap {
            max_queue_entries: (v & 0xFFFF) as u32 + 1,
            ready_timeout_ms: ((v >> 24) & 0xFF) as u32 * 500,
            doorbell_stride: 4 << ((v >> 32) & 0xF),
            nvm_command_set: (v >> 37) & 1 == 1,
            min_page: 4096 << ((v >> 48) & 0xF),
        }
    }
}

/// Offset of queue `qid`'s submission-queue tail doorbell.
pub fn sq_tail_doorbell(qid: u16, stride: usize) -> usize {
    DOORBELLS + (2 * qid as usize) * stride
}

/// Offset of queue `qid`'s completion-queue head doorbell.
pub fn cq_head_doorbell(qid: u16, stride: usize) -> usize {
    DOORBELLS + (2 * qid as usize + 1) * stride
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_of_qemu_nvme() {
        // QEMU 7.2's nvme: MQES 0x7ff, CQR, TO 0xf, DSTRD 0, NSSRS, CSS NVM (+ others),
        // MPSMIN 0, MPSMAX 4.
        let cap = Cap::decode(0x0040_2060_0f01_07ff | (1 << 37));
        assert_eq!(cap.max_queue_entries, 2048);
        assert_eq!(cap.ready_timeout_ms, 7500);
        assert_eq!(cap.doorbell_stride, 4);
        assert!(cap.nvm_command_set);
        assert_eq!(cap.min_page, 4096);
        assert_eq!(sq_tail_doorbell(0, 4), 0x1000);
        assert_eq!(cq_head_doorbell(0, 4), 0x1004);
        assert_eq!(sq_tail_doorbell(1, 4), 0x1008);
        assert_eq!(cq_head_doorbell(1, 16), 0x1000 + 3 * 16);
    }
}
