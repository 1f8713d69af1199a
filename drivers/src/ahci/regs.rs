//! AHCI 1.3.1 register offsets and bits (HBA memory registers, section 3).

// Generic host control.
/// Host capabilities.
pub const CAP: usize = 0x00;
/// Global host control.
pub const GHC: usize = 0x04;
/// Interrupt status (one bit per port, write one to clear).
pub const IS: usize = 0x08;
/// Ports implemented.
pub const PI: usize = 0x0C;
/// Version.
pub const VS: usize = 0x10;
/// Host capabilities extended.
pub const CAP2: usize = 0x24;
/// BIOS/OS handoff control and status.
pub const BOHC: usize = 0x28;

/// CAP: number of ports minus one (bits 0..5).
pub const CAP_NP_MASK: u32 = 0x1F;
/// CAP: number of command slots minus one (bits 8..13).
pub const CAP_NCS_SHIFT: u32 = 8;
/// CAP: interface speed support (bits 20..24).
pub const CAP_ISS_SHIFT: u32 = 20;
/// CAP: supports staggered spin-up (PxCMD.SUD must be set to spin a device up).
pub const CAP_SSS: u32 = 1 << 27;
/// CAP: supports native command queuing.
pub const CAP_SNCQ: u32 = 1 << 30;
/// CAP: supports 64-bit addressing.
pub const CAP_S64A: u32 = 1 << 31;

/// GHC: HBA reset (self-clearing).
pub const GHC_HR: u32 = 1 << 0;
/// GHC: interrupt enable.
pub const GHC_IE: u32 = 1 << 1;
/// GHC: AHCI enable.
pub const GHC_AE: u32 = 1 << 31;

/// CAP2: BIOS/OS handoff supported.
pub const CAP2_BOH: u32 = 1 << 0;
/// BOHC: BIOS owned semaphore.
pub const BOHC_BOS: u32 = 1 << 0;
/// BOHC: OS owned semaphore.
pub const BOHC_OOS: u32 = 1 << 1;
/// BOHC: BIOS busy.
pub const BOHC_BB: u32 = 1 << 4;

// Port registers.
/// Offset of port 0's registers; port `n` is at `PORT_BASE + n * PORT_STRIDE`.
pub const PORT_BASE: usize = 0x100;
/// Size of one port's register block.
pub const PORT_STRIDE: usize = 0x80;
/// Most ports an HBA has.
pub const MAX_PORTS: usize = 32;

/// Command list base address (1 KiB aligned), low dword.
pub const PX_CLB: usize = 0x00;
/// Command list base address, high dword.
pub const PX_CLBU: usize = 0x04;
/// FIS receive area base (256-byte aligned), low dword.
pub const PX_FB: usize = 0x08;
/// FIS receive area base, high dword.
pub const PX_FBU: usize = 0x0C;
/// Interrupt status (write one to clear).
pub const PX_IS: usize = 0x10;
/// Interrupt enable.
pub const PX_IE: usize = 0x14;
/// Command and status.
pub const PX_CMD: usize = 0x18;
/// Task file data: status (bits 0..8) and error (bits 8..16).
pub const PX_TFD: usize = 0x20;
/// Device signature.
pub const PX_SIG: usize = 0x24;
/// SATA status (SStatus).
pub const PX_SSTS: usize = 0x28;
/// SATA control (SControl).
pub const PX_SCTL: usize = 0x2C;
/// SATA error (SError, write one to clear).
pub const PX_SERR: usize = 0x30;
/// SATA active (NCQ tags outstanding).
pub const PX_SACT: usize = 0x34;
/// Command issue: one bit per slot.
pub const PX_CI: usize = 0x38;

/// PxCMD: start (process the command list).
pub const CMD_ST: u32 = 1 << 0;
/// PxCMD: spin-up device.
pub const CMD_SUD: u32 = 1 << 1;
/// PxCMD: power on device.
pub const CMD_POD: u32 = 1 << 2;
/// PxCMD: FIS receive enable.
pub const CMD_FRE: u32 = 1 << 4;
/// PxCMD: current command slot (bits 8..13), valid while ST is set.
pub const CMD_CCS_SHIFT: u32 = 8;
/// PxCMD: FIS receive running.
pub const CMD_FR: u32 = 1 << 14;
/// PxCMD: command list running.
pub const CMD_CR: u32 = 1 << 15;
/// PxCMD: cold presence detection supported.
pub const CMD_CPD: u32 = 1 << 20;
/// PxCMD: interface communication control (bits 28..32).
pub const CMD_ICC_MASK: u32 = 0xF << 28;
/// PxCMD.ICC value: go to the active state.
pub const CMD_ICC_ACTIVE: u32 = 1 << 28;

/// PxIS: device to host register FIS received (a non-queued command finished).
pub const IS_DHRS: u32 = 1 << 0;
/// PxIS: PIO setup FIS received.
pub const IS_PSS: u32 = 1 << 1;
/// PxIS: DMA setup FIS received.
pub const IS_DSS: u32 = 1 << 2;
/// PxIS: set device bits FIS received.
pub const IS_SDBS: u32 = 1 << 3;
/// PxIS: unknown FIS.
pub const IS_UFS: u32 = 1 << 4;
/// PxIS: descriptor processed (a PRD with the I bit).
pub const IS_DPS: u32 = 1 << 5;
/// PxIS: port connect change (cleared through SERR.DIAG.X).
pub const IS_PCS: u32 = 1 << 6;
/// PxIS: PhyRdy change (cleared through SERR.DIAG.N).
pub const IS_PRCS: u32 = 1 << 22;
/// PxIS: overflow (the device sent more data than the PRDT holds).
pub const IS_OFS: u32 = 1 << 24;
/// PxIS: interface non-fatal error.
pub const IS_INFS: u32 = 1 << 26;
/// PxIS: interface fatal error.
pub const IS_IFS: u32 = 1 << 27;
/// PxIS: host bus data error.
pub const IS_HBDS: u32 = 1 << 28;
/// PxIS: host bus fatal error (e.g. a bad DMA address).
pub const IS_HBFS: u32 = 1 << 29;
/// PxIS: task file error (the device set ERR in its status).
pub const IS_TFES: u32 = 1 << 30;

/// Interrupts the driver enables on a port.
pub const IE_MASK: u32 = IS_DHRS
    | IS_PSS
    | IS_DSS
    | IS_SDBS
    | IS_UFS
    | IS_PCS
    | IS_PRCS
    | IS_OFS
    | IS_INFS
    | IS_IFS
    | IS_HBDS
    | IS_HBFS
    | IS_TFES;

/// PxIS bits after which the port must be stopped and recovered.
pub const IS_ERRORS: u32 =
    IS_UFS | IS_PCS | IS_PRCS | IS_OFS | IS_IFS | IS_HBDS | IS_HBFS | IS_TFES;

/// Task file status: error.
pub const TFD_STS_ERR: u32 = 1 << 0;
/// Task file status: data transfer requested.
pub const TFD_STS_DRQ: u32 = 1 << 3;
/// Task file status: busy.
pub const TFD_STS_BSY: u32 = 1 << 7;

/// SSTS.DET (bits 0..4): device present and PHY communication established.
pub const SSTS_DET_PRESENT: u32 = 3;
/// SSTS.IPM (bits 8..12): interface in the active state.
pub const SSTS_IPM_ACTIVE: u32 = 1;

/// Signature of an ATA disk.
pub const SIG_ATA: u32 = 0x0000_0101;
/// Signature of an ATAPI device.
pub const SIG_ATAPI: u32 = 0xEB14_0101;
/// Signature of an enclosure management bridge.
pub const SIG_SEMB: u32 = 0xC33C_0101;
/// Signature of a port multiplier.
pub const SIG_PM: u32 = 0x9669_0101;

/// Offset of register `reg` of port `port`.
pub const fn port_reg(port: usize, reg: usize) -> usize {
    PORT_BASE + port * PORT_STRIDE + reg
}

/// SSTS.DET.
pub const fn ssts_det(ssts: u32) -> u32 {
    ssts & 0xF
}

/// SSTS.SPD: negotiated speed generation (1, 2, 3; 0 none).
pub const fn ssts_spd(ssts: u32) -> u32 {
    (ssts >> 4) & 0xF
}

/// SSTS.IPM.
pub const fn ssts_ipm(ssts: u32) -> u32 {
    (ssts >> 8) & 0xF
}
