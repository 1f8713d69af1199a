//! `make bench-blk`: raw block-device workloads on AliasOS and on a Linux guest, on the same
//! QEMU machine (q35, TCG, same CPU, memory and disk options), one run per OS and bus, and a
//! table comparing them (printed and written to `target/bench-blk.md`).
//!
//! AliasOS boots its usual image with the command line `bench=blk`; Linux (Debian's kernel,
//! busybox and fio, built by `bench/linux-peer/build.sh`) boots with `-kernel/-initrd`.
//! Both print `BENCH <bus> <workload> <value> <unit>` lines and power off.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use bench::{
    End, Limits, Measurement, Run, Watch, bus_name, linux_peer, parse, parse_buses, rows, run_qemu,
    table,
};
use boot::{Bus, DirectKernel, Disk, Qemu, Serial, exit_code};

const WORKLOADS: [&str; 4] = [
    "seq_read_1m",
    "seq_write_1m",
    "randread_4k_qd1",
    "randread_4k_qd32",
];
const DISK_BYTES: u64 = 1 << 30;
/// The command line AliasOS gets: run the block benchmarks on every disk, then power off.
/// The lock-order checker (on in the debug build the tests boot) is off while measuring.
const ALIASOS_CMDLINE: &str = "bench=blk lockcheck=0";

const USAGE: &str = "\
usage: bench-blk [options]
  --bus LIST        buses to measure, comma-separated: virtio,ahci,nvme (default all three)
  --runtime SECS    Linux: measured seconds per workload, after 1 s ramp-up (default 5)
  --workloads LIST  Linux: workloads (default seq_read_1m,seq_write_1m,randread_4k_qd1,randread_4k_qd32)
  --mem SIZE        guest RAM (default 512M)
  --cpus N          virtual CPUs (default 1)
  --linux-append S  extra words for the Linux kernel command line (e.g. mitigations=off)
  --icount          deterministic instruction counting (-icount shift=0,sleep=off)
  --no-linux        skip the Linux guest
  --no-aliasos      skip AliasOS
  --timeout SECS    kill a guest after this long (default: AliasOS 600, Linux from the runtime)
  -v, --verbose     echo every serial line";

struct Options {
    buses: Vec<Bus>,
    runtime: u32,
    workloads: Vec<String>,
    mem: String,
    cpus: u32,
    icount: bool,
    linux_append: String,
    linux: bool,
    aliasos: bool,
    timeout: Option<u64>,
    verbose: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        buses: vec![Bus::Virtio, Bus::Ahci, Bus::Nvme],
        runtime: 5,
        workloads: WORKLOADS.iter().map(|s| s.to_string()).collect(),
        mem: "512M".into(),
        cpus: 1,
        icount: false,
        linux_append: String::new(),
        linux: true,
        aliasos: true,
        timeout: None,
        verbose: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--bus" => o.buses = parse_buses(&value()?)?,
            "--runtime" => o.runtime = value()?.parse().map_err(|e| format!("--runtime: {e}"))?,
            "--workloads" => o.workloads = value()?.split(',').map(String::from).collect(),
            "--mem" => o.mem = value()?,
            "--cpus" => o.cpus = value()?.parse().map_err(|e| format!("--cpus: {e}"))?,
            "--icount" => o.icount = true,
            "--linux-append" => o.linux_append = value()?,
            "--no-linux" => o.linux = false,
            "--no-aliasos" => o.aliasos = false,
            "--timeout" => {
                o.timeout = Some(value()?.parse().map_err(|e| format!("--timeout: {e}"))?)
            }
            "-v" | "--verbose" => o.verbose = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option '{other}'\n{USAGE}")),
        }
    }
    if o.runtime == 0 {
        return Err("--runtime must be at least 1".into());
    }
    Ok(o)
}

/// The 1 GiB data disk, filled with random data once (reads must never hit holes).
fn data_disk(dir: &Path) -> Result<PathBuf, String> {
    let path = dir.join("disk.img");
    let filled = dir.join("disk.img.filled");
    let ok = std::fs::metadata(&path).is_ok_and(|m| m.len() == DISK_BYTES) && filled.exists();
    if ok {
        return Ok(path);
    }
    println!(
        "bench-blk: writing {} (1 GiB of random data, once)",
        path.display()
    );
    let tmp = dir.join("disk.img.tmp");
    let status = Command::new("dd")
        .arg("if=/dev/urandom")
        .arg(format!("of={}", tmp.display()))
        .args([
            "bs=1M",
            &format!("count={}", DISK_BYTES >> 20),
            "status=none",
        ])
        .status()
        .map_err(|e| format!("cannot run dd: {e}"))?;
    if !status.success() {
        return Err(format!("dd writing {} failed: {status}", tmp.display()));
    }
    std::fs::rename(&tmp, &path).map_err(|e| format!("rename {}: {e}", tmp.display()))?;
    std::fs::write(&filled, "").map_err(|e| format!("write {}: {e}", filled.display()))?;
    Ok(path)
}

#[derive(Clone, Copy, PartialEq)]
enum Os {
    AliasOs,
    Linux,
}

impl Os {
    fn name(self) -> &'static str {
        match self {
            Os::AliasOs => "AliasOS",
            Os::Linux => "Linux",
        }
    }
}

/// What one run gave.
struct Outcome {
    results: Vec<Measurement>,
    /// Something went wrong (the run counts as failed).
    failure: Option<String>,
    /// Worth reporting, but not a failure.
    notes: Vec<String>,
    /// The guest's own description line (`bench: Linux ...`).
    about: Option<String>,
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn run_one(
    os: Os,
    label: &str,
    q: &Qemu,
    log: &Path,
    limits: Limits,
    verbose: bool,
) -> Result<Outcome, String> {
    let watch = |line: &str, t: Duration| {
        let show = line.contains("BENCH")
            || line.starts_with("bench:")
            || line.starts_with("benchmarking");
        if verbose || show {
            println!("  [{:6.1}s] {}", t.as_secs_f64(), line);
        }
        if line.contains("BENCH done") {
            // Both kernels power off right after this line.
            Watch::Stop {
                grace: Duration::from_secs(15),
                reason: "done".into(),
            }
        } else if line.contains("Kernel panic") {
            Watch::Stop {
                grace: Duration::from_secs(2),
                reason: format!("Linux: {line}"),
            }
        } else if os == Os::AliasOs && line.contains("boot complete in") && line.contains("idle") {
            Watch::Stop {
                grace: Duration::from_millis(500),
                reason: "idle".into(),
            }
        } else {
            Watch::Continue
        }
    };
    let run: Run = run_qemu(q, log, limits, watch)?;
    let parsed = parse(&run.serial);
    let mut o = Outcome {
        results: parsed.results,
        failure: None,
        notes: parsed.problems,
        about: run
            .serial
            .lines()
            .find(|l| l.starts_with("bench: Linux"))
            .map(|l| l.trim_start_matches("bench: ").trim().to_string()),
    };
    let what = |why: String| {
        format!(
            "{label} failed: {why} after {:.0} s (log: {})",
            run.elapsed.as_secs_f64(),
            log.display(),
        )
    };
    match &run.end {
        End::Exited(Some(0)) => {}
        End::Finished(r) if r == "done" => {
            o.notes.push(format!("{} printed `BENCH done` but did not power off", os.name()))
        }
        End::Finished(r) if r == "idle" => o.notes.push(format!(
            "{}: the kernel went idle without printing BENCH lines (`{ALIASOS_CMDLINE}` not implemented yet?)",
            os.name()
        )),
        End::Finished(r) => o.failure = Some(what(r.clone())),
        End::Exited(Some(c)) if *c == exit_code::PANIC => o.failure = Some(what("kernel panic".into())),
        End::Exited(Some(c)) if *c == exit_code::EXCEPTION => {
            o.failure = Some(what("unhandled CPU exception".into()))
        }
        End::Exited(Some(c)) if *c == exit_code::TEST_FAILED => {
            o.failure = Some(what("the kernel reported failure".into()))
        }
        End::Exited(c) => o.failure = Some(what(format!("QEMU exited with {c:?}"))),
        End::TimedOut(t) => o.failure = Some(what(format!("timed out ({} s limit)", t.as_secs()))),
        End::Silent(t) => {
            o.failure = Some(what(format!("no serial output for {} s", t.as_secs())))
        }
    }
    if o.failure.is_none() && o.results.is_empty() && os == Os::Linux {
        o.failure = Some(what("no BENCH lines".into()));
    }
    if let Some(f) = &o.failure {
        let last = if run.serial.trim().is_empty() {
            "    (no serial output)".to_string()
        } else {
            tail(&run.serial, 12)
        };
        eprintln!("bench-blk: {f}; last serial lines:\n{last}");
        if !run.stderr.trim().is_empty() {
            eprintln!("  qemu stderr: {}", run.stderr.trim());
        }
    }
    Ok(o)
}

/// The host's 1-minute load average and core count: TCG guests compete for the host CPUs,
/// so a busy host makes every figure lower and noisier.
fn host_load() -> (f64, usize) {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (load, cores)
}

fn real_main() -> Result<bool, String> {
    let o = options()?;
    let root = bench::workspace_root();
    let out_dir = boot::target_dir().join("bench-blk");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("create {}: {e}", out_dir.display()))?;
    let out_dir = out_dir.canonicalize().unwrap_or(out_dir);
    let linux = if o.linux {
        Some(linux_peer(&root)?)
    } else {
        None
    };
    let disk = data_disk(&out_dir)?;

    let base = Qemu {
        mem: o.mem.clone(),
        cpus: o.cpus,
        icount: o.icount,
        cmdline: Some(ALIASOS_CMDLINE.into()),
        serial: Serial::Capture,
        headless: true,
        timeout: None,
        ..Qemu::default()
    };
    let mut results: [Vec<Measurement>; 2] = [Vec::new(), Vec::new()];
    let mut failures: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut about_linux: Option<String> = None;
    let t0 = std::time::Instant::now();
    let (load, cores) = host_load();
    if load >= cores as f64 * 0.75 {
        let n = format!(
            "host busy at the start (load {load:.1} on {cores} cores): the figures are lower and noisier than on an idle host"
        );
        println!("bench-blk: warning: {n}");
        notes.push(n);
    }
    for &bus in &o.buses {
        for os in [Os::Linux, Os::AliasOs] {
            let mut q = Qemu {
                disks: vec![Disk::new(&disk, bus)],
                ..base.clone()
            };
            let limits = match os {
                Os::Linux => {
                    let Some((kernel, initrd, _)) = &linux else {
                        continue;
                    };
                    let append = format!(
                        "console=ttyS0 quiet panic=-1 bench_runtime={} bench_workloads={} bench_disk_sectors={}",
                        o.runtime,
                        o.workloads.join(","),
                        DISK_BYTES / 512
                    );
                    let append = format!("{append} {}", o.linux_append).trim().to_string();
                    q.direct_kernel = Some(DirectKernel {
                        kernel: kernel.clone(),
                        initrd: initrd.clone(),
                        append,
                    });
                    let per = u64::from(o.runtime) + 1;
                    Limits {
                        total: Duration::from_secs(
                            o.timeout
                                .unwrap_or(240 + 4 * per * o.workloads.len() as u64),
                        ),
                        silence: Duration::from_secs(120 + 4 * per),
                    }
                }
                Os::AliasOs => {
                    if !o.aliasos {
                        continue;
                    }
                    Limits {
                        total: Duration::from_secs(o.timeout.unwrap_or(600)),
                        silence: Duration::from_secs(120),
                    }
                }
            };
            let log = out_dir.join(format!(
                "{}-{}.log",
                os.name().to_lowercase(),
                bus_name(bus)
            ));
            println!("bench-blk: {} on {} ...", os.name(), bus_name(bus));
            let label = format!("{} on {}", os.name(), bus_name(bus));
            let out = run_one(os, &label, &q, &log, limits, o.verbose)?;
            if os == Os::Linux && about_linux.is_none() {
                about_linux = out.about.clone();
            }
            for n in out.notes {
                println!("  note: {n}");
                notes.push(format!("{} on {}: {n}", os.name(), bus_name(bus)));
            }
            if let Some(f) = out.failure {
                failures.push(f);
            }
            // Keep only the results for the bus under test (a guest could see other disks).
            let idx = usize::from(os == Os::Linux);
            results[idx].extend(out.results.into_iter().filter(|m| m.bus == bus_name(bus)));
        }
    }

    let buses: Vec<&str> = o.buses.iter().map(|&b| bus_name(b)).collect();
    let wl: Vec<&str> = o.workloads.iter().map(String::as_str).collect();
    let rows = rows(&wl, &buses, &results[0], &results[1]);
    let t = table(&rows);
    println!();
    print!("{t}");

    let qemu_version = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(String::from)
        })
        .unwrap_or_else(|| "QEMU".into());
    let mut md = String::from("# Block benchmarks: AliasOS vs Linux\n\n");
    md.push_str(&format!(
        "{qemu_version}; machine q35, TCG, `-cpu max`, {} vCPU, {} RAM{}; one {} MiB raw disk \
         (cache=writeback, random data) on each bus, one guest run per OS and bus.\n\n",
        o.cpus,
        o.mem,
        if o.icount {
            ", `-icount shift=0,sleep=off`"
        } else {
            ""
        },
        DISK_BYTES >> 20
    ));
    md.push_str(&format!(
        "- AliasOS: kernel command line `{ALIASOS_CMDLINE}`.\n"
    ));
    if let Some((_, _, package)) = &linux {
        md.push_str(&format!(
            "- Linux: Debian `{package}` ({}), fio with libaio and O_DIRECT on the raw device, \
             {} s per workload after 1 s of ramp-up{}.\n",
            about_linux.as_deref().unwrap_or("no report"),
            o.runtime,
            if o.linux_append.is_empty() {
                String::new()
            } else {
                format!("; extra kernel arguments `{}`", o.linux_append)
            }
        ));
    }
    md.push_str("- ratio = AliasOS / Linux: above 1 means AliasOS is faster.\n\n");
    md.push_str(&t);
    if !failures.is_empty() || !notes.is_empty() {
        md.push_str("\nNotes:\n\n");
        for n in failures.iter().chain(&notes) {
            md.push_str(&format!("- {n}\n"));
        }
    }
    md.push_str(&format!(
        "\nSerial logs (first line: the QEMU command): `{}`.\n",
        out_dir.join("*.log").display()
    ));
    let md_path = out_dir.with_file_name("bench-blk.md");
    std::fs::write(&md_path, &md).map_err(|e| format!("write {}: {e}", md_path.display()))?;
    println!(
        "\nbench-blk: wrote {} in {:.0} s{}",
        md_path.display(),
        t0.elapsed().as_secs_f64(),
        if failures.is_empty() {
            String::new()
        } else {
            format!(
                "; {} run(s) FAILED:\n  {}",
                failures.len(),
                failures.join("\n  ")
            )
        }
    );
    Ok(failures.is_empty())
}

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench-blk: error: {e}");
            ExitCode::from(2)
        }
    }
}
