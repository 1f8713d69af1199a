//! Processes: address spaces, ELF loading, fork/exec/exit/wait.
//!
//! (Skeleton: the API below is what the VFS and the syscalls use; the implementation is
//! being written.)

pub mod user;

use alloc::sync::Arc;

use mm::sync::Mutex;

/// A process (one task each: AliasOS has no threads).
pub struct Process {
    pub pid: u32,
    /// Open files and the working directory.
    pub files: Mutex<crate::vfs::ProcessFiles>,
}

/// The process whose system call is running. Panics outside process context (system
/// calls always run in it).
pub fn current() -> Arc<Process> {
    unimplemented!("process context")
}
