//! `poweroff [-f]`: sync and power the machine off (`reboot(LINUX_REBOOT_CMD_POWER_OFF)`).
//! `-r` reboots instead. Needs CAP_SYS_BOOT on Linux.
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

fn main() -> i32 {
    let (flags, _) = tools::parse_flags("fr", "poweroff [-r]");
    sys::sync();
    let cmd = if flags.contains(&b'r') {
        sys::LINUX_REBOOT_CMD_RESTART
    } else {
        sys::LINUX_REBOOT_CMD_POWER_OFF
    };
    match sys::reboot(cmd) {
        Ok(_) => 0,
        Err(e) => {
            tools::warn(b"reboot", e);
            1
        }
    }
}

sys::entry!(main);
