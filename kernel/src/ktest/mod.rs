//! In-kernel test suites, selected with `test=SUITE` on the kernel command line and run
//! by `make test` in QEMU. Each test prints a libtest-style line on the console; the run
//! ends with a summary line, then ACPI poweroff (QEMU exits 0) if everything passed, or
//! the test-failure exit code otherwise.
//!
//! Suites: `core` (memory, interrupts, timer, platform, PCI); `blk` (block devices); `fs` and `fs_big` (ext2 through the page cache); crash suites that must end
//! in a reported fault (`page_fault`, `double_fault`, `panic`); and `fail`/`hang`, which
//! check that the harness notices a failing or hanging kernel.

mod aliases;
mod block;
mod crash;
mod files;
mod interrupts;
mod memory;
mod platform;
mod vfs;

use alloc::string::String;

use crate::arch::acpi;
use crate::arch::cpu::{self, ExitCode};
use crate::{kprintln, time};

/// A test's outcome: `Err` carries the failure message.
pub type TestResult = Result<(), String>;

/// A handle to frame `pfn`, which the test allocated (a reference taken for the access:
/// tests reach frame bytes through handles like everyone else).
fn held(pfn: mm::Pfn) -> mm::FrameRef {
    mm::FrameRef::new(crate::memory::frames(), pfn).expect("a test's frame is allocated")
}

/// Copy `data` into frame `pfn` at `offset`.
fn frame_write(pfn: mm::Pfn, offset: usize, data: &[u8]) {
    held(pfn).piece(offset, data.len()).write(0, data);
}

/// Copy bytes of frame `pfn` at `offset` into `buf`.
fn frame_read(pfn: mm::Pfn, offset: usize, buf: &mut [u8]) {
    held(pfn).piece(offset, buf.len()).read(0, buf);
}

/// Zero frame `pfn`.
fn frame_zero(pfn: mm::Pfn) {
    held(pfn).whole().zero();
}

/// One named kernel test.
pub struct Test {
    pub name: &'static str,
    pub run: fn() -> TestResult,
}

/// Fail the current test with a message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(alloc::format!("{} (at {}:{})", format_args!($($msg)+), file!(), line!()));
        }
    };
}

const SOAK: &[Test] = &[Test {
    name: "soak_random_reads_qd32",
    run: block::soak_random_reads_qd32,
}];

const CORE: &[Test] = &[
    Test {
        name: "frame_alloc_exhaustion",
        run: memory::frame_alloc_exhaustion,
    },
    Test {
        name: "frame_alloc_reuse",
        run: memory::frame_alloc_reuse,
    },
    Test {
        name: "frame_alloc_contiguous_runs",
        run: memory::frame_alloc_contiguous_runs,
    },
    Test {
        name: "frame_refs_and_pins",
        run: memory::frame_refs_and_pins,
    },
    Test {
        name: "heap_stress",
        run: memory::heap_stress,
    },
    Test {
        name: "heap_grows_on_demand",
        run: memory::heap_grows_on_demand,
    },
    Test {
        name: "address_space_map_translate_unmap",
        run: memory::address_space_map_translate_unmap,
    },
    Test {
        name: "stale_mapping_of_a_moved_page_refaults",
        run: aliases::stale_mapping_of_a_moved_page_refaults,
    },
    Test {
        name: "fork_of_a_mapping_of_an_alias_refaults_in_both",
        run: aliases::fork_of_a_mapping_of_an_alias_refaults_in_both,
    },
    Test {
        name: "breakpoint_resumes_with_frame_intact",
        run: interrupts::breakpoint_resumes_with_frame_intact,
    },
    Test {
        name: "timer_ticks_advance",
        run: interrupts::timer_ticks_advance,
    },
    Test {
        name: "tsc_agrees_with_timer",
        run: interrupts::tsc_agrees_with_timer,
    },
    Test {
        name: "ioapic_routes_rtc_interrupt",
        run: interrupts::ioapic_routes_rtc_interrupt,
    },
    Test {
        name: "acpi_describes_platform",
        run: platform::acpi_describes_platform,
    },
    Test {
        name: "cmdline_from_fw_cfg",
        run: platform::cmdline_from_fw_cfg,
    },
    Test {
        name: "pci_finds_exactly_the_storage_controllers",
        run: platform::pci_finds_exactly_the_storage_controllers,
    },
    Test {
        name: "framebuffer_console_draws",
        run: platform::framebuffer_console_draws,
    },
];

const BLK: &[Test] = &[
    Test {
        name: "blk_disks_found_with_capacity",
        run: block::disks_found_with_capacity,
    },
    Test {
        name: "blk_multi_segment_round_trip",
        run: block::multi_segment_round_trip,
    },
    Test {
        name: "blk_many_requests_in_flight",
        run: block::many_requests_in_flight,
    },
    Test {
        name: "blk_plugged_batch_reaches_the_disk",
        run: block::plugged_batch_reaches_the_disk,
    },
    Test {
        name: "blk_flush_completes",
        run: block::flush_completes,
    },
    Test {
        name: "blk_invalid_requests_are_refused",
        run: block::invalid_requests_are_refused,
    },
    Test {
        name: "blk_read_only_disk_refuses_writes",
        run: block::read_only_disk_refuses_writes,
    },
    Test {
        name: "blk_injected_io_errors_are_reported",
        run: block::injected_io_errors_are_reported,
    },
    Test {
        name: "blk_sequential_64mib_write",
        run: block::sequential_64mib_write,
    },
];

const FS: &[Test] = &[
    Test {
        name: "fs_preloaded_file_reads_back",
        run: files::preloaded_file_reads_back,
    },
    Test {
        name: "fs_create_write_read",
        run: files::create_write_read,
    },
    Test {
        name: "fs_truncate_and_holes",
        run: files::truncate_and_holes,
    },
    Test {
        name: "fs_rename_and_unlink",
        run: files::rename_and_unlink,
    },
    Test {
        name: "fs_fsync_and_sync",
        run: files::fsync_and_sync,
    },
];

const FS_BIG: &[Test] = &[Test {
    name: "fs_file_larger_than_memory",
    run: files::file_larger_than_memory,
}];

const FAIL: &[Test] = &[
    Test {
        name: "passes",
        run: || Ok(()),
    },
    Test {
        name: "fails_on_purpose",
        run: || Err("this test fails on purpose".into()),
    },
];

fn run_tests(suite: &str, tests: &[Test]) -> ! {
    kprintln!("\nrunning {} kernel tests (suite {suite})", tests.len());
    let start = time::now_ns();
    let mut failed = 0;
    for t in tests {
        let t0 = time::now_ns();
        let result = (t.run)();
        let ms = (time::now_ns() - t0) / 1_000_000;
        match result {
            Ok(()) => kprintln!("test {} ... ok ({ms} ms)", t.name),
            Err(msg) => {
                failed += 1;
                kprintln!("test {} ... FAILED ({ms} ms)\n    {msg}", t.name);
            }
        }
    }
    let passed = tests.len() - failed;
    let secs = (time::now_ns() - start) as f64 / 1e9;
    kprintln!(
        "\ntest result: {}. {passed} passed; {failed} failed; finished in {secs:.2}s",
        if failed == 0 { "ok" } else { "FAILED" }
    );
    if failed == 0 {
        acpi::poweroff()
    } else {
        cpu::fail_exit(ExitCode::TestFailed)
    }
}

/// Run `suite` and end the machine accordingly.
pub fn run(suite: &str) -> ! {
    match suite {
        "core" => run_tests(suite, CORE),
        "blk" => run_tests(suite, BLK),
        "fs" => run_tests(suite, FS),
        "fs_big" => run_tests(suite, FS_BIG),
        "soak" => run_tests(suite, SOAK),
        "vfs" => run_tests(suite, vfs::TESTS),
        "fail" => run_tests(suite, FAIL),
        "hang" => {
            kprintln!("hanging on purpose");
            cpu::halt_forever()
        }
        "page_fault" => crash::page_fault(),
        "double_fault" => crash::double_fault(),
        "panic" => crash::panic(),
        "lock_order" => crash::lock_order(),
        other => {
            kprintln!("unknown test suite '{other}'");
            cpu::fail_exit(ExitCode::TestFailed)
        }
    }
}
