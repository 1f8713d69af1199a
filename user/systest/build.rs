//! Link `systest` as a plain static non-PIE executable without libc or C start files
//! (`_start` comes from `sys::entry!`), exactly like the user tools (user/tools/build.rs).
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
