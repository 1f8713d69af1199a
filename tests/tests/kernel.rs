//! Boot the kernel in QEMU and run its test suites: on BIOS and UEFI, on q35 and pc, with
//! data disks on every bus, and the crash suites that must be caught and reported.

use tests::*;

/// PCI ids of the storage controllers: the chipset's own and the ones the disks add.
const ICH9_AHCI: &str = "8086:2922";
const PIIX3_IDE: &str = "8086:7010";
const VIRTIO_BLK: &str = "1af4:1042";
const QEMU_NVME: &str = "1b36:0010";

fn core_suite(firmware: Firmware, machine: Machine) -> Outcome {
    core_suite_with(firmware, machine, "", "")
}

/// The core suite, `extra` added to the command line, `tag` to the scratch files' names.
fn core_suite_with(firmware: Firmware, machine: Machine, extra: &str, tag: &str) -> Outcome {
    let tag = format!("{firmware}-{machine:?}{tag}").to_lowercase();
    let disks = vec![
        Disk::new(scratch_disk(&format!("core-{tag}-vd"), 16), Bus::Virtio),
        Disk::new(scratch_disk(&format!("core-{tag}-sd"), 16), Bus::Ahci),
        Disk::new(scratch_disk(&format!("core-{tag}-nvme"), 16), Bus::Nvme),
    ];
    let chipset = if machine == Machine::Q35 {
        ICH9_AHCI
    } else {
        PIIX3_IDE
    };
    // One extra AHCI controller is added for the SATA disk.
    let expect = format!("pci_expect={chipset},{VIRTIO_BLK},{ICH9_AHCI},{QEMU_NVME} {extra}");
    let q = Qemu {
        disks,
        ..with_args(suite("core", firmware, machine), &expect)
    };
    let o = run(&q);
    let passed = assert_suite_passed(&o);
    // Every data disk has a driver, on every firmware and machine.
    for disk in [
        "disk vda: 16 MiB",
        "disk sda: 16 MiB",
        "disk nvme0n1: 16 MiB",
    ] {
        assert!(
            o.serial.contains(disk),
            "no \"{disk}\" in the boot log:\n{}",
            o.serial
        );
    }
    for name in [
        "stale_mapping_of_a_moved_page_refaults",
        "fork_of_a_mapping_of_an_alias_refaults_in_both",
    ] {
        assert!(passed.contains(&name.to_string()), "{name}: {passed:?}");
    }
    assert!(
        passed.len() >= 17,
        "only {} kernel tests passed: {passed:?}",
        passed.len()
    );
    o
}

/// The sampling profiler takes its samples by NMI (the PIT's interrupt): NMIs that land
/// anywhere (interrupt handlers, system call entry, context switches, spin-locked
/// sections) must not disturb the kernel, and the samples reach the console.
#[test]
fn core_suite_under_the_nmi_profiler() {
    let o = core_suite_with(Firmware::Bios, Machine::Q35, "profile=2000", "-profiled");
    assert!(
        o.serial.contains("profile: samples by NMI from the PIT"),
        "the profiler did not sample by NMI:\n{}",
        o.serial
    );
    let begin = o
        .serial
        .lines()
        .find(|l| l.starts_with("PROFILE-BEGIN"))
        .unwrap_or_else(|| panic!("no profile dump:\n{}", o.serial));
    let samples: u64 = begin
        .split_whitespace()
        .find_map(|w| w.strip_prefix("samples="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(samples >= 100, "{samples} samples: {begin}");
    assert!(o.serial.contains("PROFILE-END"), "the dump was cut short");
}

#[test]
fn core_suite_bios_q35() {
    core_suite(Firmware::Bios, Machine::Q35);
}

#[test]
fn core_suite_uefi_q35() {
    core_suite(Firmware::Uefi, Machine::Q35);
}

#[test]
fn core_suite_bios_pc() {
    core_suite(Firmware::Bios, Machine::Pc);
}

#[test]
fn core_suite_uefi_pc() {
    core_suite(Firmware::Uefi, Machine::Pc);
}

#[test]
fn page_fault_is_reported_with_cr2_and_registers() {
    let o = run(&suite("page_fault", Firmware::Bios, Machine::Q35));
    assert_ended_with(
        &o,
        exit_code::EXCEPTION,
        &[
            "EXCEPTION #PF page fault (vector 14)",
            "not-present page on read in kernel mode",
            "CR2=0x000000deadbee000",
            "RIP=0xffff",
            "R15=",
        ],
    );
}

#[test]
fn stack_overflow_double_faults_onto_its_own_stack() {
    let o = run(&suite("double_fault", Firmware::Bios, Machine::Q35));
    assert_ended_with(
        &o,
        exit_code::EXCEPTION,
        &["EXCEPTION #DF double fault (vector 8)"],
    );
}

#[test]
fn panic_prints_message_and_location() {
    let o = run(&suite("panic", Firmware::Bios, Machine::Q35));
    assert_ended_with(
        &o,
        exit_code::PANIC,
        &[
            "KERNEL PANIC",
            "deliberate panic for the test suite",
            "ktest/crash.rs",
        ],
    );
}

#[test]
fn lock_order_inversion_stops_the_kernel_with_both_sites() {
    let o = run(&suite("lock_order", Firmware::Bios, Machine::Q35));
    assert_ended_with(
        &o,
        exit_code::PANIC,
        &[
            "took FIRST then SECOND; now SECOND then FIRST",
            "KERNEL PANIC",
            "lock order violated",
            "ktest/crash.rs",
            "this acquisition's stack: 0xffff",
            "stack that recorded the other order: 0xffff",
        ],
    );
}

#[test]
fn failing_kernel_test_fails_the_run() {
    let o = run(&suite("fail", Firmware::Bios, Machine::Q35));
    assert_ended_with(
        &o,
        exit_code::TEST_FAILED,
        &[
            "test passes ... ok",
            "test fails_on_purpose ... FAILED",
            "test result: FAILED. 1 passed; 1 failed",
        ],
    );
}

#[test]
fn hanging_kernel_is_stopped_at_the_timeout() {
    let q = Qemu {
        timeout: Some(std::time::Duration::from_secs(20)),
        ..suite("hang", Firmware::Bios, Machine::Q35)
    };
    let o = run(&q);
    assert!(
        o.timed_out && o.status.is_none(),
        "expected a timeout, got {:?}",
        o.status
    );
    assert!(
        o.serial.contains("hanging on purpose"),
        "serial: {}",
        o.serial
    );
}

#[test]
fn poweroff_ends_qemu_with_status_zero() {
    for machine in [Machine::Q35, Machine::Pc] {
        let q = Qemu {
            cmdline: Some("poweroff".into()),
            ..Qemu {
                machine,
                ..Qemu::default()
            }
        };
        let o = run(&q);
        assert_ended_with(&o, 0, &["AliasOS", "poweroff requested"]);
    }
}

#[test]
fn unknown_suite_is_an_error() {
    let o = run(&suite("no_such_suite", Firmware::Bios, Machine::Q35));
    assert_ended_with(
        &o,
        exit_code::TEST_FAILED,
        &["unknown test suite 'no_such_suite'"],
    );
}
