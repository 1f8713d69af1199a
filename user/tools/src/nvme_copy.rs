//! A file copy done by an NVMe disk itself through Linux's passthrough ioctl: the
//! baseline of `fbench`'s `copy_device` workload on the Linux peer, which has no
//! device-side copy of its own for files. Both files' extents come from `FIEMAP`; each
//! piece of the source is paired with the target's blocks at the same file offset, and
//! the pieces go to the disk as NVMe Copy commands (`NVME_IOCTL_IO_CMD`, opcode 0x19,
//! source range descriptors in format 0), each within the namespace's limits (MSSRL,
//! MCL, MSRC from Identify Namespace), one command at a time as the ioctl waits for each.
//! Linux only: AliasOS has neither ioctl (it copies by `copy_file_range` on the device).

use alloc::vec;
use alloc::vec::Vec;

use sys::Errno;
use sys::errno::{EINVAL, EIO, EOPNOTSUPP};

/// `FS_IOC_FIEMAP`: `_IOWR('f', 11, struct fiemap)`.
const FS_IOC_FIEMAP: usize = 0xC020_660B;
/// `NVME_IOCTL_ID`: `_IO('N', 0x40)`, the namespace identifier.
const NVME_IOCTL_ID: usize = 0x4E40;
/// `NVME_IOCTL_ADMIN_CMD`: `_IOWR('N', 0x41, struct nvme_admin_cmd)`.
const NVME_IOCTL_ADMIN_CMD: usize = 0xC048_4E41;
/// `NVME_IOCTL_IO_CMD`: `_IOWR('N', 0x43, struct nvme_passthru_cmd)`.
const NVME_IOCTL_IO_CMD: usize = 0xC048_4E43;
const SYS_IOCTL: usize = 16;
/// Extents asked for per `FIEMAP` call.
const FIEMAP_BATCH: usize = 256;
const FIEMAP_FLAG_SYNC: u32 = 1;
const FIEMAP_EXTENT_LAST: u32 = 1;
/// Extents whose blocks are not plainly where FIEMAP says (UNKNOWN, DELALLOC, ENCODED,
/// NOT_ALIGNED, DATA_INLINE, DATA_TAIL, UNWRITTEN): a device copy of them would be wrong.
const FIEMAP_EXTENT_NOT_PLAIN: u32 = 0x2 | 0x4 | 0x8 | 0x100 | 0x200 | 0x400 | 0x800;
/// The descriptor page holds at most this many source ranges.
const MAX_RANGES: usize = 128;

/// `struct nvme_passthru_cmd` (and `nvme_admin_cmd`, the same layout).
#[repr(C)]
#[derive(Default)]
struct PassthruCmd {
    opcode: u8,
    flags: u8,
    rsvd1: u16,
    nsid: u32,
    cdw2: u32,
    cdw3: u32,
    metadata: u64,
    addr: u64,
    metadata_len: u32,
    data_len: u32,
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
    cdw13: u32,
    cdw14: u32,
    cdw15: u32,
    timeout_ms: u32,
    result: u32,
}

/// A piece of a file on the disk: `len` bytes at file offset `logical`, device byte
/// offset `physical`.
#[derive(Clone, Copy, Debug)]
pub struct Extent {
    pub logical: u64,
    pub physical: u64,
    pub len: u64,
}

/// What one Copy command may carry, in 512-byte logical blocks.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub ranges: usize,
    pub range_blocks: u64,
    pub command_blocks: u64,
}

fn ioctl(fd: i32, cmd: usize, arg: usize) -> Result<usize, Errno> {
    // SAFETY: `arg` points to a structure of this module (a FIEMAP request or a
    // passthrough command, with any buffer it names) that lives across the call.
    unsafe { sys::syscall(SYS_IOCTL, [fd as usize, cmd, arg, 0, 0, 0]) }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from(le32(b, at)) | u64::from(le32(b, at + 4)) << 32
}

/// The extents of open file `fd`, in file order (`FIEMAP`, after writing it back);
/// EINVAL if one is not plainly on the disk (delayed, unwritten, inline...).
pub fn extents(fd: i32) -> Result<Vec<Extent>, Errno> {
    let mut out: Vec<Extent> = Vec::new();
    let mut start = 0u64;
    loop {
        // struct fiemap (32 bytes) and FIEMAP_BATCH struct fiemap_extent (56 bytes each).
        let mut buf = vec![0u8; 32 + 56 * FIEMAP_BATCH];
        buf[0..8].copy_from_slice(&start.to_le_bytes());
        buf[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        buf[16..20].copy_from_slice(&FIEMAP_FLAG_SYNC.to_le_bytes());
        buf[24..28].copy_from_slice(&(FIEMAP_BATCH as u32).to_le_bytes());
        ioctl(fd, FS_IOC_FIEMAP, buf.as_mut_ptr() as usize)?;
        let mapped = le32(&buf, 20) as usize;
        if mapped == 0 {
            return Ok(out);
        }
        for i in 0..mapped.min(FIEMAP_BATCH) {
            let e = &buf[32 + 56 * i..32 + 56 * (i + 1)];
            if le32(e, 40) & FIEMAP_EXTENT_NOT_PLAIN != 0 {
                return Err(EINVAL);
            }
            let x = Extent {
                logical: le64(e, 0),
                physical: le64(e, 8),
                len: le64(e, 16),
            };
            start = x.logical + x.len;
            out.push(x);
            if le32(e, 40) & FIEMAP_EXTENT_LAST != 0 {
                return Ok(out);
            }
        }
    }
}

/// Whether the file system holding `file` (open) is the whole of the block device at
/// `dev_path` (FIEMAP's physical offsets are then the device's).
pub fn on_device(file: i32, dev_path: &core::ffi::CStr) -> bool {
    match (sys::fstat(file), sys::stat(dev_path)) {
        (Ok(f), Ok(d)) => d.st_rdev != 0 && f.st_dev == d.st_rdev,
        _ => false,
    }
}

/// The namespace of the NVMe block device open as `dev`.
pub fn namespace(dev: i32) -> Result<u32, Errno> {
    ioctl(dev, NVME_IOCTL_ID, 0).map(|n| n as u32)
}

/// An Identify page (`cns` 1: the controller, 0: namespace `nsid`).
fn identify(dev: i32, nsid: u32, cns: u32) -> Result<Vec<u8>, Errno> {
    let mut page = vec![0u8; 4096];
    let mut cmd = PassthruCmd {
        opcode: 0x06,
        nsid,
        addr: page.as_mut_ptr() as u64,
        data_len: 4096,
        cdw10: cns,
        ..PassthruCmd::default()
    };
    passthru(dev, NVME_IOCTL_ADMIN_CMD, &mut cmd)?;
    Ok(page)
}

/// Issue `cmd` through the passthrough ioctl `request`: EIO if the command completed with
/// an NVMe status (the ioctl's positive result).
fn passthru(dev: i32, request: usize, cmd: &mut PassthruCmd) -> Result<(), Errno> {
    match ioctl(dev, request, cmd as *mut PassthruCmd as usize)? {
        0 => Ok(()),
        _ => Err(EIO),
    }
}

/// The Copy limits of namespace `nsid` (EOPNOTSUPP if the controller has no Copy).
pub fn limits(dev: i32, nsid: u32) -> Result<Limits, Errno> {
    let ctrl = identify(dev, 0, 1)?;
    let oncs = u16::from_le_bytes([ctrl[520], ctrl[521]]);
    let ocfs = u16::from_le_bytes([ctrl[534], ctrl[535]]);
    // Copy, with source range descriptors in format 0.
    if oncs & 1 << 8 == 0 || (ocfs != 0 && ocfs & 1 == 0) {
        return Err(EOPNOTSUPP);
    }
    let ns = identify(dev, nsid, 0)?;
    let mssrl = u64::from(u16::from_le_bytes([ns[74], ns[75]]));
    let mcl = u64::from(le32(&ns, 76));
    if mssrl == 0 || mcl == 0 {
        return Err(EOPNOTSUPP);
    }
    Ok(Limits {
        ranges: (ns[80] as usize + 1).min(MAX_RANGES),
        range_blocks: mssrl,
        command_blocks: mcl,
    })
}

/// One Copy command: `ranges` (first block, blocks) to the blocks from `to` on.
fn copy_command(dev: i32, nsid: u32, to: u64, ranges: &[(u64, u64)]) -> Result<(), Errno> {
    let mut desc = vec![0u8; 32 * ranges.len()];
    for (d, &(from, n)) in desc.chunks_mut(32).zip(ranges) {
        d[8..16].copy_from_slice(&from.to_le_bytes());
        d[16..18].copy_from_slice(&((n - 1) as u16).to_le_bytes());
    }
    let mut cmd = PassthruCmd {
        opcode: 0x19,
        nsid,
        addr: desc.as_mut_ptr() as u64,
        data_len: desc.len() as u32,
        cdw10: to as u32,
        cdw11: (to >> 32) as u32,
        cdw12: (ranges.len() - 1) as u32,
        ..PassthruCmd::default()
    };
    passthru(dev, NVME_IOCTL_IO_CMD, &mut cmd)
}

/// Copy the first `bytes` of the file whose extents are `src` over the blocks of the
/// file whose extents are `dst` (allocated, at least as long), on NVMe device `dev`:
/// pieces paired by file offset, consecutive at the target in one command while the
/// limits allow. Returns the number of commands.
pub fn copy(
    dev: i32,
    nsid: u32,
    src: &[Extent],
    dst: &[Extent],
    bytes: u64,
    limits: &Limits,
) -> Result<usize, Errno> {
    let find = |ext: &[Extent], at: u64| {
        ext.iter()
            .find(|e| e.logical <= at && at < e.logical + e.len)
            .copied()
    };
    let mut commands = 0;
    // The command being filled: its first target block, its ranges, its blocks.
    let mut to = 0u64;
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut total = 0u64;
    let mut at = 0u64;
    while at < bytes {
        let (Some(s), Some(d)) = (find(src, at), find(dst, at)) else {
            return Err(EINVAL); // a hole on either side
        };
        let len = (s.logical + s.len - at)
            .min(d.logical + d.len - at)
            .min(bytes - at)
            .next_multiple_of(512);
        let (mut from, mut dst_blk) = (
            (s.physical + at - s.logical) / 512,
            (d.physical + at - d.logical) / 512,
        );
        let mut left = len / 512;
        while left > 0 {
            let continues = !ranges.is_empty()
                && to + total == dst_blk
                && ranges.len() < limits.ranges
                && total < limits.command_blocks;
            if !continues && !ranges.is_empty() {
                copy_command(dev, nsid, to, &ranges)?;
                commands += 1;
                ranges.clear();
                total = 0;
            }
            if ranges.is_empty() {
                to = dst_blk;
            }
            let n = left
                .min(limits.range_blocks)
                .min(limits.command_blocks - total);
            ranges.push((from, n));
            total += n;
            from += n;
            dst_blk += n;
            left -= n;
        }
        at += len;
    }
    if !ranges.is_empty() {
        copy_command(dev, nsid, to, &ranges)?;
        commands += 1;
    }
    Ok(commands)
}
