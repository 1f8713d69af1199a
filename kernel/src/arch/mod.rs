//! Architecture support. AliasOS runs on x86-64 only; everything privileged lives here.
pub mod x86_64;
pub use self::x86_64::*;
