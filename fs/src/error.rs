//! File-system errors as values, with their Linux errno numbers.

use core::fmt;

/// Every way an `fs` operation can fail. Corrupt disk content and device errors
/// are ordinary values here, never panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FsError {
    /// ENOENT: no such file or directory.
    NotFound,
    /// EIO: the device reported an error (or a request was out of range).
    Io,
    /// EEXIST: the name already exists.
    Exists,
    /// ENOTDIR: a directory was needed.
    NotDir,
    /// EISDIR: the operation does not apply to a directory.
    IsDir,
    /// EINVAL: an invalid argument (bad name, moving a directory into itself, ...).
    Invalid,
    /// EFBIG: the file would grow past what the file system can address.
    FileTooBig,
    /// ENOSPC: no free blocks or inodes.
    NoSpace,
    /// EROFS: the file system is mounted read-only.
    ReadOnly,
    /// EMLINK: too many links.
    TooManyLinks,
    /// ENAMETOOLONG: a name longer than 255 bytes, or a path/target too long.
    NameTooLong,
    /// ENOTEMPTY: the directory is not empty.
    NotEmpty,
    /// ELOOP: too many symbolic links while resolving a path.
    Loop,
    /// EUCLEAN: the on-disk structures are inconsistent.
    Corrupt,
    /// EINVAL: the file system uses a feature this driver does not implement.
    Unsupported,
    /// EPERM: the operation is not permitted (e.g. a hard link to a directory).
    NotPermitted,
    /// EBUSY: the target is in use (e.g. renaming the root directory).
    Busy,
}

impl FsError {
    /// The Linux errno number for this error.
    pub const fn errno(self) -> i32 {
        match self {
            FsError::NotPermitted => 1,
            FsError::NotFound => 2,
            FsError::Io => 5,
            FsError::Busy => 16,
            FsError::Exists => 17,
            FsError::NotDir => 20,
            FsError::IsDir => 21,
            FsError::Invalid | FsError::Unsupported => 22,
            FsError::FileTooBig => 27,
            FsError::NoSpace => 28,
            FsError::ReadOnly => 30,
            FsError::TooManyLinks => 31,
            FsError::NameTooLong => 36,
            FsError::NotEmpty => 39,
            FsError::Loop => 40,
            FsError::Corrupt => 117,
        }
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            FsError::NotFound => "no such file or directory",
            FsError::Io => "I/O error",
            FsError::Exists => "file exists",
            FsError::NotDir => "not a directory",
            FsError::IsDir => "is a directory",
            FsError::Invalid => "invalid argument",
            FsError::FileTooBig => "file too large",
            FsError::NoSpace => "no space left on device",
            FsError::ReadOnly => "read-only file system",
            FsError::TooManyLinks => "too many links",
            FsError::NameTooLong => "file name too long",
            FsError::NotEmpty => "directory not empty",
            FsError::Loop => "too many levels of symbolic links",
            FsError::Corrupt => "file system corrupt",
            FsError::Unsupported => "unsupported file system feature",
            FsError::NotPermitted => "operation not permitted",
            FsError::Busy => "resource busy",
        };
        write!(f, "{s} (errno {})", self.errno())
    }
}

/// Shorthand used throughout the crate.
pub type Result<T> = core::result::Result<T, FsError>;
