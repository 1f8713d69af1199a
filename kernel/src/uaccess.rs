//! Checked access to user memory. Every address and length from a system call goes through
//! here: addresses in the kernel half, non-canonical ones, unmapped ones and ranges that
//! wrap fail with EFAULT; pages not yet present are faulted in (demand paging,
//! copy-on-write breaks for writes) exactly as a user access would. The kernel never
//! dereferences a user address: it finds the frame through the process's page tables and
//! reaches it through the physical-memory map.
//!
//! The `*_user` chunk forms hand the caller kernel views of the user pages themselves, one
//! page piece at a time, so a read() can copy straight from a page-cache frame into the
//! user's frame with no intermediate buffer.
//!
//! This layer sits below the file system, which copies to and from user memory; finding a
//! user page is the process layer's business (its address space, demand paging), so that
//! layer installs the resolver ([`set_resolver`]).

use alloc::vec::Vec;

use mm::frame::FRAME_SIZE;
use mm::phys::FramePiece;

use crate::arch::paging::USER_END;
use crate::errno::Errno;

const PAGE: u64 = FRAME_SIZE as u64;

/// Finds the frame behind a user address of the running process, faulting it in as an
/// access would (`write`: for writing); the frame comes back as a handle holding a
/// reference of its own, so it stays valid while the kernel copies.
pub type Resolver = fn(va: u64, write: bool) -> Result<mm::FrameRef, Errno>;

/// Pins `count` consecutive pages from the page-aligned `va` of the running process for
/// DMA, each resolved as [`Resolver`] would, appended to `out` as whole pages in order; on
/// an error, the pages before the failing one are in `out`.
pub type RangePinner =
    fn(va: u64, count: usize, write: bool, out: &mut mm::PinnedRange) -> Result<(), Errno>;

static RESOLVER: spin::Once<Resolver> = spin::Once::new();
static RANGE_PINNER: spin::Once<RangePinner> = spin::Once::new();

/// Install the resolvers (the process layer does, before the first process runs).
pub fn set_resolver(page: Resolver, range: RangePinner) {
    RESOLVER.call_once(|| page);
    RANGE_PINNER.call_once(|| range);
}

/// Check that `[va, va + len)` is a user range.
pub fn check_range(va: u64, len: usize) -> Result<(), Errno> {
    let end = va.checked_add(len as u64).ok_or(Errno::EFAULT)?;
    if end > USER_END {
        return Err(Errno::EFAULT);
    }
    Ok(())
}

/// Walk `[va, va + len)` a page piece at a time: `f(piece)` returns how many bytes it
/// handled; a short count stops the walk. The frame is referenced while `f` runs.
fn walk(
    va: u64,
    len: usize,
    write: bool,
    mut f: impl FnMut(FramePiece<'_>) -> Result<usize, Errno>,
) -> Result<usize, Errno> {
    check_range(va, len)?;
    let resolve = RESOLVER.get().ok_or(Errno::EFAULT)?;
    let mut done = 0usize;
    while done < len {
        let at = va + done as u64;
        let off = (at % PAGE) as usize;
        let n = (len - done).min(FRAME_SIZE - off);
        let frame = match resolve(at, write) {
            Ok(frame) => frame,
            Err(e) if done == 0 => return Err(e),
            Err(_) => return Ok(done),
        };
        match f(frame.piece(off, n)) {
            Ok(k) => {
                done += k.min(n);
                if k < n {
                    break;
                }
            }
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(done)
}

/// Copy `dst.len()` bytes from user address `src`: the error finding the first page,
/// EFAULT if a later one cannot be read.
pub fn copy_from_user(src: u64, dst: &mut [u8]) -> Result<(), Errno> {
    UserReader::new().read(src, dst)
}

/// Reads of user memory that keep the last page they found: small reads from one page
/// (the iocbs of an `io_submit`, which programs keep in one array) find it once. For the
/// length of one system call: the page is referenced, so it stays valid, and a page that
/// another thread unmaps, protects or remaps meanwhile is read as it was, as if that
/// came later. While kept, the page's extra reference makes a write to it a
/// copy-on-write break even if it was this process's alone, after which this reader
/// still sees the frame from before: whoever writes user memory in between calls
/// [`UserReader::forget`] first.
#[derive(Default)]
pub struct UserReader {
    page: Option<(u64, mm::FrameRef)>,
}

impl UserReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Let the kept page go: the next read finds its page afresh.
    pub fn forget(&mut self) {
        self.page = None;
    }

    /// Copy `dst.len()` bytes from user address `src`, as [`copy_from_user`].
    pub fn read(&mut self, src: u64, dst: &mut [u8]) -> Result<(), Errno> {
        check_range(src, dst.len())?;
        let resolve = RESOLVER.get().ok_or(Errno::EFAULT)?;
        let mut done = 0;
        while done < dst.len() {
            let at = src + done as u64;
            let (page, off) = (at - at % PAGE, (at % PAGE) as usize);
            let n = (dst.len() - done).min(FRAME_SIZE - off);
            let frame = match &self.page {
                Some((p, frame)) if *p == page => frame,
                _ => match resolve(page, false) {
                    Ok(frame) => &self.page.insert((page, frame)).1,
                    Err(e) if done == 0 => return Err(e),
                    Err(_) => return Err(Errno::EFAULT),
                },
            };
            frame.piece(off, n).read(0, &mut dst[done..done + n]);
            done += n;
        }
        Ok(())
    }
}

/// Copy `src` to user address `dst`.
pub fn copy_to_user(dst: u64, src: &[u8]) -> Result<(), Errno> {
    if copy_to_user_prefix(dst, src)? == src.len() {
        Ok(())
    } else {
        Err(Errno::EFAULT)
    }
}

/// Copy as much of `src` to user address `dst` as can be written: the bytes copied, up to
/// the first page that cannot be (EFAULT if that is the first).
pub fn copy_to_user_prefix(dst: u64, src: &[u8]) -> Result<usize, Errno> {
    let mut at = 0;
    walk(dst, src.len(), true, |p| {
        let n = p.len();
        p.write(0, &src[at..at + n]);
        at += n;
        Ok(n)
    })
}

/// Read a little-endian u64 at `va`.
pub fn read_u64(va: u64) -> Result<u64, Errno> {
    let mut b = [0u8; 8];
    copy_from_user(va, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Write a little-endian u64 at `va`.
pub fn write_u64(va: u64, v: u64) -> Result<(), Errno> {
    copy_to_user(va, &v.to_le_bytes())
}

/// Write a little-endian i32 at `va`.
pub fn write_i32(va: u64, v: i32) -> Result<(), Errno> {
    copy_to_user(va, &v.to_le_bytes())
}

/// A NUL-terminated string at `src`, without the NUL; ENAMETOOLONG when no NUL within
/// `max` bytes.
pub fn read_cstr(src: u64, max: usize) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::new();
    let mut at = src;
    loop {
        // Up to the end of this page, so an unmapped next page is not touched needlessly.
        let n = (PAGE - at % PAGE) as usize;
        let mut piece = [0u8; 256];
        let n = n.min(piece.len());
        check_range(at, n)?;
        let got = walk(at, n, false, |p| {
            let k = p.len();
            p.read(0, &mut piece[..k]);
            Ok(k)
        })?;
        if got == 0 {
            return Err(Errno::EFAULT);
        }
        if let Some(z) = piece[..got].iter().position(|&b| b == 0) {
            out.extend_from_slice(&piece[..z]);
            if out.len() > max {
                return Err(Errno::ENAMETOOLONG);
            }
            return Ok(out);
        }
        out.extend_from_slice(&piece[..got]);
        if out.len() > max {
            return Err(Errno::ENAMETOOLONG);
        }
        at += got as u64;
    }
}

/// A NULL-terminated array of string pointers (argv, envp); E2BIG past `max_total` bytes
/// or `max_count` entries.
pub fn read_cstr_array(
    mut va: u64,
    max_count: usize,
    max_total: usize,
) -> Result<Vec<Vec<u8>>, Errno> {
    let mut out = Vec::new();
    if va == 0 {
        return Ok(out);
    }
    let mut total = 0;
    loop {
        let p = read_u64(va)?;
        if p == 0 {
            return Ok(out);
        }
        if out.len() >= max_count {
            return Err(Errno::E2BIG);
        }
        let s = read_cstr(p, max_total - total).map_err(|e| {
            if e == Errno::ENAMETOOLONG {
                Errno::E2BIG
            } else {
                e
            }
        })?;
        total += s.len() + 1;
        if total > max_total {
            return Err(Errno::E2BIG);
        }
        out.push(s);
        va = va.checked_add(8).ok_or(Errno::EFAULT)?;
    }
}

/// Fill user memory `[va, va + len)`: `f` gets kernel views of successive pieces (each
/// inside one page) and returns how many bytes it wrote; a short count stops the walk.
/// Returns the total written; an error before any byte is returned as the error, an error
/// after some bytes ends the walk with the count so far (like a short read).
pub fn fill_user(
    va: u64,
    len: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, Errno>,
) -> Result<usize, Errno> {
    user_frames(va, len, true, |p| p.with_bytes_mut(&mut f))
}

/// Walk user memory `[va, va + len)` as [`fill_user`] (`write`, or read-only), but hand
/// `f` each piece as a frame piece rather than a slice, for copies whose other side
/// may be the same frame (a page-cache page that the user also maps): see
/// [`mm::phys::copy_piece`].
pub fn user_frames(
    va: u64,
    len: usize,
    write: bool,
    f: impl FnMut(FramePiece<'_>) -> Result<usize, Errno>,
) -> Result<usize, Errno> {
    walk(va, len, write, f)
}

/// Pin user memory `[va, va + len)` for DMA (`write`: the device writes it, so each page
/// is faulted in for writing, breaking copy-on-write first): every page is resolved as a
/// user access would resolve it, then pinned. EFAULT if any page cannot be, with nothing
/// left pinned.
pub fn pin_user(va: u64, len: usize, write: bool) -> Result<mm::PinnedRange, Errno> {
    check_range(va, len)?;
    if len == 0 {
        return Ok(mm::PinnedRange::new());
    }
    let pin_pages = RANGE_PINNER.get().ok_or(Errno::EFAULT)?;
    let first = va - va % PAGE;
    let pages = (va % PAGE + len as u64).div_ceil(PAGE) as usize;
    let mut range = mm::PinnedRange::try_with_capacity(pages).ok_or(Errno::ENOMEM)?;
    // A batch at a time: one lock of the address space per batch, so a long buffer does
    // not keep the address space locked throughout.
    const BATCH: usize = 256;
    let mut done = 0;
    while done < pages {
        let n = (pages - done).min(BATCH);
        pin_pages(first + done as u64 * PAGE, n, write, &mut range)?;
        done += n;
    }
    // The buffer's own start and end inside its first and last pages.
    range.narrow((va % PAGE) as usize, len);
    Ok(range)
}
