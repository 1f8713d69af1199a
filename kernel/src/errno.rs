//! Linux errno values. System calls return `Result<u64, Errno>`; the entry code turns an
//! error into the negative value in `rax` that the Linux ABI specifies.

use ::fs::error::FsError;

/// A Linux errno value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Errno {
    EPERM = 1,
    ENOENT = 2,
    ESRCH = 3,
    EINTR = 4,
    EIO = 5,
    ENXIO = 6,
    E2BIG = 7,
    ENOEXEC = 8,
    EBADF = 9,
    ECHILD = 10,
    EAGAIN = 11,
    ENOMEM = 12,
    EACCES = 13,
    EFAULT = 14,
    ENOTBLK = 15,
    EBUSY = 16,
    EEXIST = 17,
    EXDEV = 18,
    ENODEV = 19,
    ENOTDIR = 20,
    EISDIR = 21,
    EINVAL = 22,
    ENFILE = 23,
    EMFILE = 24,
    ENOTTY = 25,
    ETXTBSY = 26,
    EFBIG = 27,
    ENOSPC = 28,
    ESPIPE = 29,
    EROFS = 30,
    EMLINK = 31,
    EPIPE = 32,
    ERANGE = 34,
    ENAMETOOLONG = 36,
    ENOSYS = 38,
    ENOTEMPTY = 39,
    ELOOP = 40,
    EOVERFLOW = 75,
    EOPNOTSUPP = 95,
}

/// What a system call returns: a non-negative value, or an errno.
pub type SysResult = Result<u64, Errno>;

impl Errno {
    /// The value for `rax`: `-errno`.
    pub fn to_ret(self) -> u64 {
        (-(self as i64)) as u64
    }
}

/// A page-cache I/O error as a user sees it: no space and too big as themselves,
/// anything else (the device failed, no memory for a page) EIO, as ext2 reports them.
impl From<mm::page_cache::IoError> for Errno {
    fn from(e: mm::page_cache::IoError) -> Errno {
        match e.0 {
            28 => Errno::ENOSPC,
            27 => Errno::EFBIG,
            _ => Errno::EIO,
        }
    }
}

impl From<FsError> for Errno {
    fn from(e: FsError) -> Errno {
        match e {
            FsError::NotFound => Errno::ENOENT,
            FsError::Exists => Errno::EEXIST,
            FsError::NotDir => Errno::ENOTDIR,
            FsError::IsDir => Errno::EISDIR,
            FsError::NotEmpty => Errno::ENOTEMPTY,
            FsError::NoSpace => Errno::ENOSPC,
            FsError::FileTooBig => Errno::EFBIG,
            FsError::NameTooLong => Errno::ENAMETOOLONG,
            FsError::ReadOnly => Errno::EROFS,
            FsError::Invalid => Errno::EINVAL,
            FsError::TooManyLinks => Errno::EMLINK,
            FsError::Loop => Errno::ELOOP,
            FsError::NotPermitted => Errno::EPERM,
            FsError::Busy => Errno::EBUSY,
            FsError::Unsupported => Errno::EOPNOTSUPP,
            FsError::Io | FsError::Corrupt => Errno::EIO,
        }
    }
}
