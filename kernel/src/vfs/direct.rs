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

use drivers::block::{BlockError, Op};
use mm::page_cache::{CachedFile, pages_of};

use crate::block::{Disk, PinnedParts};
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

/// Before a direct read of `len` bytes at `offset` of a file cached in `cache`: the
/// range's dirty cached pages reach the disk first.
pub fn sync_before_read(cache: &CachedFile, offset: u64, len: usize) -> Result<(), Errno> {
    let (first, last) = pages_of(offset, len);
    cache.sync_range(first, last).map_err(Errno::from)
}

/// A direct write of `len` bytes at `offset` of a file cached in `cache`, kept coherent
/// with it: the range's cached pages are written back and dropped first (if one cannot
/// be dropped, being mapped, EOPNOTSUPP: the caller writes through the page cache, as
/// Linux falls back to buffered I/O), `plan` pins the user's pages and names the disk
/// ranges, the transfer runs, then the pages a racing read brought in meanwhile are
/// dropped (or read again in place, if mapped). The bytes written.
pub fn write_coherently(
    cache: &CachedFile,
    offset: u64,
    len: usize,
    plan: impl FnOnce() -> Result<DirectIo, Errno>,
) -> Result<usize, Errno> {
    let (first, last) = pages_of(offset, len);
    if cache.invalidate_range(first, last).map_err(Errno::from)? > 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    let result = plan()?.run();
    let stale = cache.refresh_after_write(first, last);
    if stale > 0 {
        log::warn!(
            "direct write: {stale} pages of file {} stored to meanwhile keep the stores",
            cache.id()
        );
    }
    result
}

/// A direct transfer ready to start: the user's pages pinned and the disk ranges they go
/// to or come from, in order. Or one already over: a file system that must do work
/// after the data moved (ext2's direct writes: the size, the page cache) does the
/// transfer while planning it and hands back its result.
pub struct DirectIo {
    kind: Kind,
    /// The result reports at most this many bytes (a read ending at a file's end
    /// transfers whole sectors).
    limit: usize,
    /// Kept until the transfer is over (e.g. what tells a file that a read of its blocks
    /// is in flight).
    guard: Option<Box<dyn Send>>,
}

enum Kind {
    Pending {
        disk: Arc<Disk>,
        op: Op,
        parts: PinnedParts,
        bytes: usize,
    },
    Done(Result<usize, Errno>),
}

impl DirectIo {
    /// `op` between `disk` and the pinned ranges, each at its start sector (no parts: a
    /// transfer of nothing, as a read at the end of the device).
    pub fn new(disk: Arc<Disk>, op: Op, parts: PinnedParts) -> DirectIo {
        let bytes = parts.iter().map(|(_, r)| r.bytes()).sum();
        DirectIo {
            kind: Kind::Pending {
                disk,
                op,
                parts,
                bytes,
            },
            limit: usize::MAX,
            guard: None,
        }
    }

    /// Keep `guard` until the transfer is over.
    pub fn holding(mut self, guard: impl Send + 'static) -> DirectIo {
        self.guard = Some(Box::new(guard));
        self
    }

    /// A transfer already over, with `result`.
    pub fn done(result: Result<usize, Errno>) -> DirectIo {
        DirectIo {
            kind: Kind::Done(result),
            limit: usize::MAX,
            guard: None,
        }
    }

    /// Report at most `limit` bytes.
    pub fn clip(mut self, limit: usize) -> DirectIo {
        self.limit = self.limit.min(limit);
        self
    }

    /// Append `other` (the next part of a vectored transfer); false, leaving both as they
    /// were, unless both are pending on the same disk for the same operation, unclipped.
    pub fn append(&mut self, other: &mut DirectIo) -> bool {
        let (
            Kind::Pending {
                disk,
                op,
                parts,
                bytes,
            },
            Kind::Pending {
                disk: d2,
                op: o2,
                parts: p2,
                bytes: b2,
            },
        ) = (&mut self.kind, &mut other.kind)
        else {
            return false;
        };
        if !Arc::ptr_eq(disk, d2)
            || op != o2
            || self.limit != usize::MAX
            || other.limit != usize::MAX
            || other.guard.is_some()
        {
            return false;
        }
        parts.append(p2);
        *bytes += core::mem::take(b2);
        true
    }

    /// Bytes the transfer reports if it all succeeds.
    pub fn bytes(&self) -> usize {
        let n = match &self.kind {
            Kind::Pending { bytes, .. } => *bytes,
            Kind::Done(r) => *r.as_ref().unwrap_or(&0),
        };
        n.min(self.limit)
    }

    /// Run it and wait: the bytes moved (short after a failure past the start), or the
    /// error of its first request.
    pub fn run(self) -> Result<usize, Errno> {
        let limit = self.limit;
        let _guard = self.guard;
        match self.kind {
            Kind::Done(r) => r,
            Kind::Pending { bytes: 0, .. } => Ok(0),
            Kind::Pending {
                disk, op, parts, ..
            } => disk
                .io_pinned(op, parts)
                .map(|n| n as usize)
                .map_err(blk_errno),
        }
        .map(|n| n.min(limit))
    }

    /// Start it; `done` runs once at completion (from the interrupt handler, or from this
    /// call), with what [`DirectIo::run`] would return.
    pub fn start(self, done: Box<dyn FnOnce(Result<usize, Errno>) + Send>) {
        let limit = self.limit;
        let guard = self.guard;
        match self.kind {
            Kind::Done(r) => done(r.map(|n| n.min(limit))),
            Kind::Pending {
                disk, op, parts, ..
            } => disk.submit_pinned(op, parts, move |r: Result<u64, BlockError>| {
                done(r.map(|n| (n as usize).min(limit)).map_err(blk_errno));
                drop(guard);
            }),
        }
    }
}
