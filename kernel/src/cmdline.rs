//! The kernel command line: `key=value` words from QEMU's fw_cfg file
//! `opt/aliasos/cmdline` (empty on real hardware).

use alloc::string::String;
use spin::Once;

static CMDLINE: Once<String> = Once::new();

/// Read the command line once.
pub fn init() -> &'static str {
    CMDLINE.call_once(|| {
        crate::arch::fw_cfg::read_file("opt/aliasos/cmdline")
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .trim_end_matches('\0')
                    .trim()
                    .into()
            })
            .unwrap_or_default()
    })
}

/// The whole command line.
pub fn get() -> &'static str {
    CMDLINE.get().map(String::as_str).unwrap_or("")
}

/// The value of `key=value`, or `Some("")` for a bare `key`.
pub fn value(key: &str) -> Option<&'static str> {
    get()
        .split_whitespace()
        .take_while(|w| *w != "--")
        .find_map(|w| match w.split_once('=') {
            Some((k, v)) if k == key => Some(v),
            None if w == key => Some(""),
            _ => None,
        })
}

/// The words after a lone `--`: extra arguments for the first program (as Linux passes
/// them to init).
pub fn init_args() -> impl Iterator<Item = &'static str> {
    get().split_whitespace().skip_while(|w| *w != "--").skip(1)
}
