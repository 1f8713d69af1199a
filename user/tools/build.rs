//! Link the tools as plain static non-PIE executables without libc or C start
//! files: `_start` comes from `sys::entry!`. Only the `bins` get these
//! arguments, so the host integration tests link normally.
//!
//! rustc still emits `-pie` for the (PIC by default) host target; the later
//! `-no-pie` wins, and PIC code links fine into a non-PIE executable, so the
//! result has no dynamic relocations and no interpreter.
fn main() {
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,--gc-sections",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
