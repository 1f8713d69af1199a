//! Checked access to user memory. Every address and length from a system call goes through
//! here: addresses in the kernel half, non-canonical ones, unmapped ones and ranges that
//! wrap fail with EFAULT; pages not yet present are faulted in (demand paging,
//! copy-on-write breaks for writes) exactly as a user access would.
//!
//! The `*_chunks` forms hand the caller kernel views of the user pages themselves, one
//! page piece at a time, so a read() can copy straight from a page-cache frame into the
//! user's frame with no intermediate buffer.

use alloc::vec::Vec;

use crate::syscall::errno::Errno;

/// Copy `dst.len()` bytes from user address `src`.
pub fn copy_from_user(src: u64, dst: &mut [u8]) -> Result<(), Errno> {
    let _ = (src, dst);
    Err(Errno::EFAULT)
}

/// Copy `src` to user address `dst`.
pub fn copy_to_user(dst: u64, src: &[u8]) -> Result<(), Errno> {
    let _ = (dst, src);
    Err(Errno::EFAULT)
}

/// A NUL-terminated string at `src`, without the NUL; ENAMETOOLONG when no NUL within
/// `max` bytes.
pub fn read_cstr(src: u64, max: usize) -> Result<Vec<u8>, Errno> {
    let _ = (src, max);
    Err(Errno::EFAULT)
}

/// Fill user memory `[va, va + len)`: `f` gets kernel views of successive pieces (each
/// inside one page) and returns how many bytes it wrote; a short count stops the walk.
/// Returns the total written; an error before any byte is returned as the error, an error
/// after some bytes ends the walk with the count so far (like a short read).
pub fn fill_user(
    va: u64,
    len: usize,
    f: impl FnMut(&mut [u8]) -> Result<usize, Errno>,
) -> Result<usize, Errno> {
    let _ = (va, len, f);
    Err(Errno::EFAULT)
}

/// Consume user memory `[va, va + len)` piece by piece, as [`fill_user`] but read-only.
pub fn drain_user(
    va: u64,
    len: usize,
    f: impl FnMut(&[u8]) -> Result<usize, Errno>,
) -> Result<usize, Errno> {
    let _ = (va, len, f);
    Err(Errno::EFAULT)
}
