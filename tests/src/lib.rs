//! Shared helpers for the tests that boot AliasOS in QEMU: scratch disks, running a
//! kernel test suite, and turning its serial output into a clear pass/fail.

use std::path::PathBuf;
use std::time::Duration;

pub use boot::{Bus, Disk, Firmware, Machine, Outcome, Qemu, exit_code};

/// A fresh, sparse scratch disk image of `mib` MiB under `target/test-disks/`.
pub fn scratch_disk(name: &str, mib: u64) -> PathBuf {
    let dir = boot::target_dir().join("test-disks");
    std::fs::create_dir_all(&dir).expect("create target/test-disks");
    let path = dir.join(format!("{name}.img"));
    let f = std::fs::File::create(&path).expect("create scratch disk");
    f.set_len(mib << 20).expect("size scratch disk");
    path
}

/// A QEMU run of kernel suite `suite` with the serial output captured.
pub fn suite(suite: &str, firmware: Firmware, machine: Machine) -> Qemu {
    let machine_name = match machine {
        Machine::Q35 => "q35",
        Machine::Pc => "pc",
    };
    Qemu {
        firmware,
        machine,
        cmdline: Some(format!("test={suite} machine={machine_name}")),
        timeout: Some(Duration::from_secs(180)),
        ..Qemu::default()
    }
}

/// Add words to the kernel command line.
pub fn with_args(mut q: Qemu, args: &str) -> Qemu {
    let cmd = q.cmdline.take().unwrap_or_default();
    q.cmdline = Some(format!("{cmd} {args}").trim().to_string());
    q
}

/// Run QEMU; a failure to even start it fails the test.
pub fn run(q: &Qemu) -> Outcome {
    match q.run() {
        Ok(o) => o,
        Err(e) => panic!("could not run QEMU: {e}"),
    }
}

fn describe(o: &Outcome) -> String {
    format!(
        "QEMU {} after {:.1}s; serial output:\n{}\n",
        if o.timed_out {
            "timed out".to_string()
        } else {
            format!("exited with {:?}", o.status)
        },
        o.elapsed.as_secs_f64(),
        o.serial
    )
}

/// The suite ran to its summary, every test passed, and QEMU exited 0 (ACPI poweroff).
/// Returns the names of the tests that passed.
pub fn assert_suite_passed(o: &Outcome) -> Vec<String> {
    let failed: Vec<&str> = o
        .serial
        .lines()
        .filter(|l| l.starts_with("test ") && l.contains(" ... FAILED"))
        .collect();
    assert!(
        failed.is_empty(),
        "kernel tests failed: {failed:#?}\n{}",
        describe(o)
    );
    assert!(!o.timed_out, "{}", describe(o));
    assert!(
        o.serial.contains("test result: ok."),
        "no passing summary line\n{}",
        describe(o)
    );
    assert_eq!(o.status, Some(0), "{}", describe(o));
    o.serial
        .lines()
        .filter_map(|l| {
            l.strip_prefix("test ")?
                .split_once(" ... ok")
                .map(|(n, _)| n.to_string())
        })
        .collect()
}

/// QEMU exited with `status` and the serial output contains every one of `needles`.
pub fn assert_ended_with(o: &Outcome, status: i32, needles: &[&str]) {
    assert!(!o.timed_out, "{}", describe(o));
    assert_eq!(o.status, Some(status), "{}", describe(o));
    for n in needles {
        assert!(
            o.serial.contains(n),
            "serial output lacks {n:?}\n{}",
            describe(o)
        );
    }
}
