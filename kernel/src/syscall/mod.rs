//! System calls with the Linux x86-64 ABI: numbers, argument order, errno values and
//! structure layouts, so the tools are ordinary static Linux binaries.
//!
//! One module per family; each family's `dispatch` returns `None` for numbers it does not
//! own. Unknown numbers return ENOSYS and are logged once.

pub mod errno;
pub mod fs;
