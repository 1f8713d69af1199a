//! Direct I/O (`O_DIRECT`, DESIGN.md "Raw I/O"): the disk DMAs straight to or from the
//! caller's own pages, pinned for the duration (`mm::pin`), with no page cache and no
//! bounce buffer in between.
//!
//! A node that can do it plans the transfer ([`super::Node::direct`]): it checks Linux's
//! alignment rule, pins the user memory and names the disk ranges, giving a [`DirectIo`].
//! The caller runs it and waits (`read`, `pwrite`, `preadv2`...), or starts it and is told
//! at completion (Linux AIO). The pins ride with the block requests, so the frames stay
//! allocated until the device is done with them whatever the process does meanwhile
//! (`munmap`, `exit`).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

use drivers::block::{BlockError, Op};
use mm::PinnedRange;

use crate::block::Disk;
use crate::errno::Errno;

/// The logical block size of every disk AliasOS drives: offsets, lengths and buffer
/// addresses of direct I/O are multiples of it (EINVAL otherwise).
pub const LOGICAL_BLOCK: u64 = 512;

/// Most bytes one [`DirectIo`] pins: longer transfers are done a piece at a time, so a
/// huge buffer never has to be resident all at once.
pub const MAX_DIRECT_BYTES: usize = 8 << 20;

/// Linux's rule for direct I/O: the file offset, the buffer address and the length are
/// multiples of the logical block size.
pub fn check_alignment(offset: u64, va: u64, len: usize) -> Result<(), Errno> {
    if !offset.is_multiple_of(LOGICAL_BLOCK)
        || !va.is_multiple_of(LOGICAL_BLOCK)
        || !(len as u64).is_multiple_of(LOGICAL_BLOCK)
    {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// The errno a user sees for a failed block request.
pub fn blk_errno(e: BlockError) -> Errno {
    match e {
        BlockError::ReadOnly => Errno::EROFS,
        BlockError::OutOfRange => Errno::ENOSPC,
        BlockError::Misaligned | BlockError::ZeroLength | BlockError::TooLarge => Errno::EINVAL,
        _ => Errno::EIO,
    }
}

/// A direct transfer ready to start: the user's pages pinned and the disk ranges they go
/// to or come from, in order.
pub struct DirectIo {
    disk: Arc<Disk>,
    op: Op,
    parts: Vec<(u64, PinnedRange)>,
    bytes: usize,
}

impl DirectIo {
    /// `op` between `disk` and the pinned ranges, each at its start sector (no parts: a
    /// transfer of nothing, as a read at the end of the device).
    pub fn new(disk: Arc<Disk>, op: Op, parts: Vec<(u64, PinnedRange)>) -> DirectIo {
        let bytes = parts.iter().map(|(_, r)| r.bytes()).sum();
        DirectIo {
            disk,
            op,
            parts,
            bytes,
        }
    }

    /// Append `other` (the next part of a vectored transfer); false, leaving both as they
    /// were, if it is another disk's or another operation.
    pub fn append(&mut self, other: &mut DirectIo) -> bool {
        if !Arc::ptr_eq(&self.disk, &other.disk) || self.op != other.op {
            return false;
        }
        self.parts.append(&mut other.parts);
        self.bytes += core::mem::take(&mut other.bytes);
        true
    }

    /// Bytes the transfer moves if it all succeeds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Run it and wait: the bytes moved (short after a failure past the start), or the
    /// error of its first request.
    pub fn run(self) -> Result<usize, Errno> {
        if self.bytes == 0 {
            return Ok(0);
        }
        self.disk
            .io_pinned(self.op, self.parts)
            .map(|n| n as usize)
            .map_err(blk_errno)
    }

    /// Start it; `done` runs once at completion (from the interrupt handler, or from this
    /// call), with what [`DirectIo::run`] would return.
    pub fn start(self, done: Box<dyn FnOnce(Result<usize, Errno>) + Send>) {
        self.disk.submit_pinned(
            self.op,
            self.parts,
            Box::new(move |r| done(r.map(|n| n as usize).map_err(blk_errno))),
        );
    }
}
