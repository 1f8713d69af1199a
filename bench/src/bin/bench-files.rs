//! `make bench-files`: buffered file I/O from user space, AliasOS against a Linux guest on
//! the same QEMU machine (q35, TCG, 512 MiB by default) and the same ext2 image (4 KiB
//! blocks, a 256 MiB random `src.bin`), once on virtio-blk and once on AHCI.
//!
//! Both run the same static program, `fbench` (user/tools/src/bin/fbench.rs), from the
//! data disk: cold buffered sequential read, write + fsync, a copy by a read/write loop
//! with a 1 MiB buffer and a copy by the system's own `cp` (each copy including the final
//! sync), every run after `drop_caches`, three runs each. AliasOS runs it from the disk's
//! `/etc/rc`; Linux (Debian's kernel, ext4.ko serving the ext2 mount, busybox) from the
//! peer's `/init` (bench/linux-peer). The table (median, min–max, ratio AliasOS/Linux)
//! goes to `target/bench-files.md` and a bar chart to `target/bench-files.svg`.
//!
//! `--direct` (`make bench-direct`) runs the direct-I/O workloads instead: `O_DIRECT` on
//! `src.bin` in place (a preallocated file) and on a second, raw disk (`-r auto`: vdb or
//! sdb), sequential 1 MiB reads and writes at queue depth 1, random 4 KiB reads at depth
//! 1 (`pread`) and 32 (Linux AIO), with `dma_pinned_bytes` per byte moved and
//! `bounce_bytes` (AliasOS); into `target/bench-direct.md`.
//!
//! `--profile` boots AliasOS with the sampling profiler on and writes, per bus,
//! `target/bench-files/profile-<bus>.txt` (flat top 30) and `.svg` (flame graph); that
//! is `make profile`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use bench::{End, Limits, Run, Watch, bus_name, linux_peer, parse_buses, run_qemu};
use boot::{Bus, DirectKernel, Disk, Qemu, Serial, exit_code};

const WORKLOADS: [(&str, &str); 8] = [
    ("read", "cold buffered sequential read, 1 MiB reads"),
    ("write", "write 256 MiB in 1 MiB writes + fsync"),
    (
        "copy_rw",
        "256 MiB copy, read/write loop with a 1 MiB buffer, + sync",
    ),
    ("copy_cp", "256 MiB copy by the system's cp, + sync"),
    ("copy_sendfile", "256 MiB copy by sendfile calls, + sync"),
    ("copy_cfr", "256 MiB copy by copy_file_range calls, + sync"),
    (
        "copy_cfr_cache",
        "copy_cfr through the page cache (AliasOS: /proc/sys/vm/copy_offload 0, the alias path)",
    ),
    (
        "copy_device",
        "256 MiB copy by the disk itself (NVMe Copy), + sync: AliasOS copy_file_range, \
         Linux Copy commands by passthrough ioctl on the files' FIEMAP extents \
         (target written beforehand, not timed); NVMe only",
    ),
];
const DIRECT_WORKLOADS: [(&str, &str); 8] = [
    (
        "dread",
        "src.bin, O_DIRECT sequential 1 MiB reads, QD1 (MiB/s)",
    ),
    (
        "dwrite",
        "src.bin overwritten in place, O_DIRECT 1 MiB writes, QD1, + fsync (MiB/s)",
    ),
    (
        "drand_iops",
        "src.bin, O_DIRECT 4 KiB random reads, QD1 pread (IOPS)",
    ),
    (
        "drand32_iops",
        "src.bin, O_DIRECT 4 KiB random reads, QD32 Linux AIO (IOPS)",
    ),
    (
        "raw_read",
        "raw disk, O_DIRECT sequential 1 MiB reads, QD1 (MiB/s)",
    ),
    (
        "raw_write",
        "raw disk, O_DIRECT sequential 1 MiB writes, QD1, + fsync (MiB/s)",
    ),
    (
        "raw_rand_iops",
        "raw disk, O_DIRECT 4 KiB random reads, QD1 pread (IOPS)",
    ),
    (
        "raw_rand32_iops",
        "raw disk, O_DIRECT 4 KiB random reads, QD32 Linux AIO (IOPS)",
    ),
];
const XDISK_WORKLOADS: [(&str, &str); 3] = [
    (
        "xdisk_sendfile",
        "256 MiB copy by sendfile calls from src.bin to a file on the second disk, + sync",
    ),
    (
        "xdisk_rw",
        "the same copy by a read/write loop with a 1 MiB buffer, + sync",
    ),
    (
        "xdisk_direct",
        "the same copy by O_DIRECT 1 MiB reads and writes (page-aligned buffer), + fsync",
    ),
];
/// Size of the second disk of `--target-bus` (not the benchmark disk's size, which the
/// Linux peer picks its benchmark disk by).
const TARGET_MIB: u64 = 768;
/// Size of the raw disk of the direct workloads (they use its first 256 MiB).
const RAW_MIB: u64 = 320;
const SRC_MIB: u64 = 256;
const IMAGE_MIB: u64 = 1024;

const USAGE: &str = "\
usage: bench-files [options]
  --bus LIST      buses, comma-separated: virtio,ahci,nvme (default virtio,ahci)
  --runs N        runs per workload (default 3)
  --mem SIZE      guest RAM (default 512M)
  --workloads L   read,write,copy_rw,copy_cp,copy_sendfile,copy_cfr,copy_cfr_cache,
                  copy_device (default all)
  --no-linux      skip the Linux guest
  --no-aliasos    skip AliasOS
  --direct        the direct-I/O workloads (O_DIRECT, AIO) on src.bin and a raw disk
  --name NAME     write target/NAME.md and .svg (default bench-files, bench-direct with
                  --direct, bench-xdisk-<B> with --target-bus B)
  --target-bus B  copies between disks: an empty ext2 second disk on bus B (mounted at
                  b/ beside src.bin), workloads xdisk_sendfile,xdisk_rw,xdisk_direct; the source's
                  bus must come first in probe order (virtio, ahci, nvme)
  --profile       AliasOS with the sampling profiler; profile-<bus>.txt/.svg in target/bench-files
  --kernel-args A added to AliasOS's command line, e.g. ahci_ncq=off or nvme_sgl=off (A/B runs)
  -v, --verbose   echo every serial line";

struct Options {
    buses: Vec<Bus>,
    runs: u32,
    mem: String,
    workloads: Vec<String>,
    linux: bool,
    aliasos: bool,
    profile: bool,
    kernel_args: String,
    verbose: bool,
    direct: bool,
    target_bus: Option<Bus>,
    name: Option<String>,
}

impl Options {
    /// The workloads of the mode, with their descriptions.
    fn catalog(&self) -> &'static [(&'static str, &'static str)] {
        if self.direct {
            &DIRECT_WORKLOADS
        } else if self.target_bus.is_some() {
            &XDISK_WORKLOADS
        } else {
            &WORKLOADS
        }
    }
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        buses: vec![Bus::Virtio, Bus::Ahci],
        runs: 3,
        mem: "512M".into(),
        workloads: WORKLOADS.iter().map(|(w, _)| w.to_string()).collect(),
        linux: true,
        aliasos: true,
        profile: false,
        kernel_args: String::new(),
        verbose: false,
        direct: false,
        target_bus: None,
        name: None,
    };
    let mut chosen: Option<Vec<String>> = None;
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
            "--runs" => o.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--mem" => o.mem = value()?,
            "--workloads" => chosen = Some(value()?.split(',').map(String::from).collect()),
            "--direct" => o.direct = true,
            "--target-bus" => o.target_bus = Some(value()?.parse()?),
            "--name" => o.name = Some(value()?),
            "--no-linux" => o.linux = false,
            "--no-aliasos" => o.aliasos = false,
            "--profile" => o.profile = true,
            "--kernel-args" => o.kernel_args = value()?,
            "-v" | "--verbose" => o.verbose = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option '{other}'\n{USAGE}")),
        }
    }
    if o.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    o.workloads =
        chosen.unwrap_or_else(|| o.catalog().iter().map(|(w, _)| w.to_string()).collect());
    for w in &o.workloads {
        if !o.catalog().iter().any(|(n, _)| n == w) {
            return Err(format!("unknown workload {w}"));
        }
    }
    Ok(o)
}

fn run_cmd(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// The ext2 image both systems start from: `src.bin` (random, made once), `fbench`, and
/// the `/etc/rc` AliasOS runs. Rebuilt when fbench or the rc changes.
fn base_image(dir: &Path, fbench: &Path, rc: &str) -> Result<PathBuf, String> {
    let src = random_file(dir, "src.bin", SRC_MIB)?;
    let fbench_bytes = std::fs::read(fbench).map_err(|e| format!("{}: {e}", fbench.display()))?;
    let stamp = format!(
        "{:x}-{}",
        simple_hash(&fbench_bytes),
        simple_hash(rc.as_bytes())
    );
    let img = dir.join("base.img");
    let stamp_path = dir.join("base.stamp");
    if img.exists() && std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(&stamp) {
        return Ok(img);
    }
    let tree = dir.join("tree");
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(tree.join("etc")).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(tree.join("b")).map_err(|e| e.to_string())?;
    std::fs::hard_link(&src, tree.join("src.bin"))
        .or_else(|_| std::fs::copy(&src, tree.join("src.bin")).map(|_| ()))
        .map_err(|e| format!("src.bin into the tree: {e}"))?;
    std::fs::write(tree.join("fbench"), &fbench_bytes).map_err(|e| e.to_string())?;
    std::fs::write(tree.join("etc/rc"), rc).map_err(|e| e.to_string())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tree.join("fbench"), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    make_ext2(&img, IMAGE_MIB, Some(&tree))?;
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::write(&stamp_path, stamp).map_err(|e| e.to_string())?;
    Ok(img)
}

/// `dir/name`: `mib` MiB of random data, made once (kept while its size is right).
fn random_file(dir: &Path, name: &str, mib: u64) -> Result<PathBuf, String> {
    let path = dir.join(name);
    if std::fs::metadata(&path).map(|m| m.len()).ok() != Some(mib << 20) {
        println!(
            "bench-files: making {} ({mib} MiB of random data, once)",
            path.display()
        );
        run_cmd(
            Command::new("dd")
                .arg("if=/dev/urandom")
                .arg(format!("of={}", path.display()))
                .args(["bs=1M", &format!("count={mib}"), "status=none"]),
        )?;
    }
    Ok(path)
}

fn simple_hash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// An empty ext2 image of [`TARGET_MIB`] MiB: the second disk of the copies between
/// disks.
fn target_image(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let img = dir.join(format!("{name}.img"));
    make_ext2(&img, TARGET_MIB, None)?;
    Ok(img)
}

/// A fresh sparse `mib` MiB ext2 image (4 KiB blocks) at `img`, holding `tree` if given.
fn make_ext2(img: &Path, mib: u64, tree: Option<&Path>) -> Result<(), String> {
    let _ = std::fs::remove_file(img);
    let f = std::fs::File::create(img).map_err(|e| e.to_string())?;
    f.set_len(mib << 20).map_err(|e| e.to_string())?;
    drop(f);
    let mut mke2fs = Command::new("mke2fs");
    mke2fs.args(["-q", "-F", "-t", "ext2", "-b", "4096"]);
    if let Some(tree) = tree {
        mke2fs.arg("-d").arg(tree);
    }
    run_cmd(mke2fs.arg(img))
}

/// The name both systems give the second disk, on `second`, when the first is on
/// `first` (virtio `vd*`, SATA `sd*`, NVMe `nvme<i>n1`, each counted on its own).
fn second_disk_name(first: Bus, second: Bus) -> String {
    let nth = usize::from(first == second);
    match second {
        Bus::Virtio => format!("vd{}", (b'a' + nth as u8) as char),
        Bus::Ahci => format!("sd{}", (b'a' + nth as u8) as char),
        Bus::Nvme => format!("nvme{nth}n1"),
    }
}

/// A fresh copy of the base image for one run (sparse).
fn run_image(base: &Path, dir: &Path, name: &str) -> Result<PathBuf, String> {
    let img = dir.join(format!("{name}.img"));
    run_cmd(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(base)
            .arg(&img),
    )?;
    // The copy is written out before the guest boots: otherwise the guest's first fsync
    // (a flush, which QEMU turns into the host's fdatasync of the whole image) would also
    // write out whatever part of this copy the host had not yet, a cost that depends on
    // how long ago the copy was made, not on the guest.
    std::fs::File::open(&img)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("sync {}: {e}", img.display()))?;
    Ok(img)
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

/// Per workload, the values of every run.
type Results = BTreeMap<String, Vec<f64>>;
/// Suffix of a workload's key for its CPU-copied bytes per MiB.
const CPU: &str = "@cpu";
/// Suffixes of a direct workload's keys for its DMA-pinned bytes per byte moved and its
/// bounce bytes.
const DMA: &str = "@dma";
const BOUNCE: &str = "@bounce";
/// Result-key suffixes: disk interrupts and device notifications per request (AliasOS).
const IRQS: &str = "@irqs";
const NOTIFIES: &str = "@notifies";
/// Result-key suffixes of a direct write workload (both systems): MiB/s of the writes
/// alone, and seconds of the `fsync` after them.
const WRITES: &str = "@writes";
const FSYNC: &str = "@fsync";
/// A chart row: label, AliasOS median, Linux median.
type ChartRow = (String, Option<f64>, Option<f64>);

/// Run one guest; collect `FBENCH` (AliasOS) or `BENCH-FILES <bus>` (Linux) lines.
fn run_guest(
    os: Os,
    bus: &str,
    q: &Qemu,
    log: &Path,
    verbose: bool,
) -> Result<(Results, Run), String> {
    let watch = |line: &str, t: Duration| {
        if verbose
            || line.contains("FBENCH")
            || line.contains("BENCH")
            || line.starts_with("fbench:")
        {
            println!("  [{:6.1}s] {line}", t.as_secs_f64());
        }
        if line.contains("BENCH done") {
            Watch::Stop {
                grace: Duration::from_secs(30),
                reason: "done".into(),
            }
        } else if line.contains("Kernel panic") || line.contains("KERNEL PANIC") {
            Watch::Stop {
                grace: Duration::from_secs(2),
                reason: line.to_string(),
            }
        } else {
            Watch::Continue
        }
    };
    let limits = Limits {
        total: Duration::from_secs(1800),
        silence: Duration::from_secs(300),
    };
    let run = run_qemu(q, log, limits, watch)?;
    let mut res: Results = BTreeMap::new();
    for line in run.serial.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        // `FBENCH-CPU w n`: bytes the CPU copied per MiB (AliasOS counts them).
        let (w, v) = match (os, words.as_slice()) {
            (Os::AliasOs, [.., "FBENCH", w, v]) => (w.to_string(), *v),
            (Os::AliasOs, [.., "FBENCH-CPU", w, v]) => (format!("{w}{CPU}"), *v),
            (Os::AliasOs, [.., "FBENCH-DMA", w, v, bounce]) => {
                if let Ok(b) = bounce.parse::<f64>() {
                    res.entry(format!("{w}{BOUNCE}")).or_default().push(b);
                }
                (format!("{w}{DMA}"), *v)
            }
            (Os::AliasOs, [.., "FBENCH-IRQ", w, irqs, notifies]) => {
                if let Ok(n) = notifies.parse::<f64>() {
                    res.entry(format!("{w}{NOTIFIES}")).or_default().push(n);
                }
                (format!("{w}{IRQS}"), *irqs)
            }
            (Os::Linux, [.., "BENCH-FILES", b, w, v]) if *b == bus => (w.to_string(), *v),
            (_, [.., "FBENCH-WRITES", w, rate, sync]) => {
                if let Ok(s) = sync.parse::<f64>() {
                    res.entry(format!("{w}{FSYNC}")).or_default().push(s);
                }
                (format!("{w}{WRITES}"), *rate)
            }
            _ => continue,
        };
        if let Ok(v) = v.parse::<f64>() {
            res.entry(w).or_default().push(v);
        }
    }
    match &run.end {
        End::Exited(Some(0)) => {}
        End::Finished(r) if r == "done" => {}
        End::Exited(Some(c)) if *c == exit_code::PANIC => {
            return Err(format!(
                "{} on {bus}: kernel panic (log {})",
                os.name(),
                log.display()
            ));
        }
        other => {
            return Err(format!(
                "{} on {bus} ended with {other:?} (log {})",
                os.name(),
                log.display()
            ));
        }
    }
    Ok((res, run))
}

fn median(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    Some((s[s.len() / 2], s[0], s[s.len() - 1]))
}

fn cell(v: Option<&Vec<f64>>) -> String {
    match v.and_then(|v| median(v)) {
        Some((m, lo, hi)) => format!("{m:.1} ({lo:.1}–{hi:.1})"),
        None => "n/a".into(),
    }
}

/// The Markdown table and the rows for the chart: (label, AliasOS, Linux) medians.
fn table(
    o: &Options,
    results: &BTreeMap<(String, &'static str), Results>,
) -> (String, Vec<ChartRow>) {
    let unit = if o.direct { "MiB/s or IOPS" } else { "MiB/s" };
    let mut t = format!(
        "| workload | bus | AliasOS {unit} | Linux {unit} | ratio | AliasOS CPU-copied bytes/MiB |{}\n|---|---|---:|---:|---:|---:|{}\n",
        if o.direct {
            " AliasOS DMA-pinned bytes per byte moved | AliasOS bounce bytes | AliasOS interrupts / notifications per request |"
        } else {
            ""
        },
        if o.direct { "---:|---:|---:|" } else { "" },
    );
    let mut chart = Vec::new();
    let mut fsyncs = Vec::new();
    for w in &o.workloads {
        for &b in &o.buses {
            let bus = bus_name(b);
            let bus_key = bus;
            let a = results
                .get(&(bus.to_string(), "AliasOS"))
                .and_then(|r| r.get(w));
            let l = results
                .get(&(bus.to_string(), "Linux"))
                .and_then(|r| r.get(w));
            let (am, lm) = (a.and_then(|v| median(v)), l.and_then(|v| median(v)));
            let ratio = match (am, lm) {
                (Some((x, ..)), Some((y, ..))) if y > 0.0 => format!("{:.2}x", x / y),
                _ => "n/a".into(),
            };
            let cpu = results
                .get(&(bus.to_string(), "AliasOS"))
                .and_then(|r| r.get(&format!("{w}{CPU}")))
                .and_then(|v| median(v))
                .map_or("n/a".to_string(), |(m, ..)| format!("{m:.0}"));
            let aliasos_stat = |suffix: &str| {
                results
                    .get(&(bus.to_string(), "AliasOS"))
                    .and_then(|r| r.get(&format!("{w}{suffix}")))
                    .and_then(|v| median(v))
                    .map_or("n/a".to_string(), |(m, ..)| format!("{m}"))
            };
            let dma = if o.direct {
                format!(
                    " {} | {} | {} / {} |",
                    aliasos_stat(DMA),
                    aliasos_stat(BOUNCE),
                    aliasos_stat(IRQS),
                    aliasos_stat(NOTIFIES)
                )
            } else {
                String::new()
            };
            let bus = match o.target_bus {
                Some(t) => format!("{bus}→{}", bus_name(t)),
                None => bus.to_string(),
            };
            t.push_str(&format!(
                "| {w} | {bus} | {} | {} | {ratio} | {cpu} |{dma}\n",
                cell(a),
                cell(l)
            ));
            chart.push((format!("{w} {bus}"), am.map(|m| m.0), lm.map(|m| m.0)));
            // A direct write: its writes alone, and what the fsync after them cost.
            let of = |os: &'static str, suffix: &str| -> Option<&Vec<f64>> {
                results
                    .get(&(bus_key.to_string(), os))
                    .and_then(|r| r.get(&format!("{w}{suffix}")))
            };
            if of("AliasOS", WRITES).is_some() || of("Linux", WRITES).is_some() {
                let (aw, lw) = (of("AliasOS", WRITES), of("Linux", WRITES));
                let ratio = match (aw.and_then(|v| median(v)), lw.and_then(|v| median(v))) {
                    (Some((x, ..)), Some((y, ..))) if y > 0.0 => format!("{:.2}x", x / y),
                    _ => "n/a".into(),
                };
                let blanks = if o.direct { " | | |" } else { "" };
                t.push_str(&format!(
                    "| {w}: writes before the fsync | {bus} | {} | {} | {ratio} | |{blanks}\n",
                    cell(aw),
                    cell(lw)
                ));
                let secs = |os: &'static str| {
                    of(os, FSYNC)
                        .and_then(|v| median(v))
                        .map_or("n/a".to_string(), |(m, ..)| format!("{m:.3} s"))
                };
                fsyncs.push(format!(
                    "- `{w}` on {bus}: the `fsync` after the writes took {} on AliasOS, {} on \
                     Linux (medians).\n",
                    secs("AliasOS"),
                    secs("Linux")
                ));
            }
        }
    }
    if !fsyncs.is_empty() {
        t.push('\n');
        t.extend(fsyncs);
    }
    (t, chart)
}

/// A grouped bar chart (SVG, hand-written: two bars per row).
fn chart_svg(rows: &[ChartRow]) -> String {
    let (w, row_h, left, top) = (760.0, 34.0, 170.0, 40.0);
    let max = rows
        .iter()
        .flat_map(|(_, a, l)| [a.unwrap_or(0.0), l.unwrap_or(0.0)])
        .fold(1.0f64, f64::max);
    let h = top + rows.len() as f64 * row_h + 40.0;
    let scale = (w - left - 90.0) / max;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"20\" font-size=\"14\">Buffered file I/O, MiB/s (median of runs): \
         <tspan fill=\"#c0392b\">AliasOS</tspan> vs <tspan fill=\"#2c3e50\">Linux</tspan></text>\n"
    );
    for (i, (label, a, l)) in rows.iter().enumerate() {
        let y = top + i as f64 * row_h;
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{label}</text>\n",
            left - 8.0,
            y + 18.0
        ));
        for (j, (v, color)) in [(a, "#c0392b"), (l, "#2c3e50")].into_iter().enumerate() {
            let by = y + 4.0 + j as f64 * 13.0;
            let v = v.unwrap_or(0.0);
            s.push_str(&format!(
                "<rect x=\"{left}\" y=\"{by}\" width=\"{:.1}\" height=\"12\" fill=\"{color}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{v:.1}</text>\n",
                v * scale,
                left + v * scale + 4.0,
                by + 10.0
            ));
        }
    }
    s.push_str("</svg>\n");
    s
}

fn real_main() -> Result<bool, String> {
    let o = options()?;
    let root = bench::workspace_root();
    let target = boot::target_dir();
    let dir = target.join("bench-files");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let dir = dir.canonicalize().unwrap_or(dir);
    boot::initramfs::set_verbose(false);
    let tools = boot::initramfs::build_user_tools()?;
    let fbench = tools
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == "fbench"))
        .ok_or("no fbench among the user tools")?
        .clone();
    let wl = o.workloads.join(",");
    let raw_arg = if o.direct { " -r auto" } else { "" };
    let args = format!("-n {} -w {wl} -c /bin/cp{raw_arg} src.bin", o.runs);
    let raw_base = if o.direct {
        Some(random_file(&dir, "raw-base.img", RAW_MIB)?)
    } else {
        None
    };
    let rc_for = |b: Bus| {
        let mount = match o.target_bus {
            Some(t) => format!("mount /dev/{} b\n", second_disk_name(b, t)),
            None => String::new(),
        };
        format!("{mount}./fbench {args}\necho BENCH done\npoweroff\n")
    };
    if let Some(t) = o.target_bus
        && o.buses.iter().any(|&b| (b as u8) > (t as u8))
    {
        return Err("--target-bus must not probe before the source's bus".into());
    }
    let linux = if o.linux {
        let (kernel, initrd, _) = linux_peer(&root)?;
        Some((kernel, initrd))
    } else {
        None
    };
    let mut results: BTreeMap<(String, &'static str), Results> = BTreeMap::new();
    let mut failures = Vec::new();
    let t0 = std::time::Instant::now();
    for &b in &o.buses {
        let bus = bus_name(b);
        let base = base_image(&dir, &fbench, &rc_for(b))?;
        let second = o.target_bus.map(|t| (t, second_disk_name(b, t)));
        for os in [Os::Linux, Os::AliasOs] {
            let mut q = Qemu {
                mem: o.mem.clone(),
                serial: Serial::Capture,
                headless: true,
                timeout: None,
                ..Qemu::default()
            };
            match os {
                Os::Linux => {
                    let Some((kernel, initrd)) = &linux else {
                        continue;
                    };
                    q.direct_kernel = Some(DirectKernel {
                        kernel: kernel.clone(),
                        initrd: initrd.clone(),
                        append: format!(
                            "console=ttyS0 quiet panic=-1 bench_disk_sectors={} bench_files={}{}",
                            IMAGE_MIB << 11,
                            args.replace(' ', "+"),
                            second
                                .as_ref()
                                .map(|(_, n)| format!(" bench_mount_b={n}"))
                                .unwrap_or_default()
                        ),
                    });
                }
                Os::AliasOs => {
                    if !o.aliasos {
                        continue;
                    }
                    // The lock-order checker (on in the debug build the tests boot) is off
                    // while measuring.
                    q.cmdline = Some(format!(
                        "lockcheck=0{} {}",
                        if o.profile { " profile" } else { "" },
                        o.kernel_args
                    ));
                }
            }
            let img = run_image(&base, &dir, &format!("{}-{bus}", os.name().to_lowercase()))?;
            q.disks = vec![Disk::new(&img, b)];
            let raw = match &raw_base {
                Some(base) => {
                    let r = run_image(
                        base,
                        &dir,
                        &format!("{}-{bus}-raw", os.name().to_lowercase()),
                    )?;
                    q.disks.push(Disk::new(&r, b));
                    Some(r)
                }
                None => None,
            };
            let target_img = match &second {
                Some((t, _)) => {
                    let img =
                        target_image(&dir, &format!("{}-{bus}-target", os.name().to_lowercase()))?;
                    q.disks.push(Disk::new(&img, *t));
                    Some(img)
                }
                None => None,
            };
            let log = dir.join(format!("{}-{bus}.log", os.name().to_lowercase()));
            println!("bench-files: {} on {bus} ...", os.name());
            match run_guest(os, bus, &q, &log, o.verbose) {
                Ok((r, run)) => {
                    if r.is_empty() {
                        failures.push(format!(
                            "{} on {bus}: no results (log {})",
                            os.name(),
                            log.display()
                        ));
                    }
                    results.insert((bus.to_string(), os.name()), r);
                    if os == Os::AliasOs && o.profile {
                        profile_report(&run.serial, &dir, bus)?;
                    }
                }
                Err(e) => {
                    eprintln!("bench-files: {e}");
                    failures.push(e);
                }
            }
            let _ = std::fs::remove_file(&img);
            if let Some(r) = raw {
                let _ = std::fs::remove_file(&r);
            }
            if let Some(t) = target_img {
                let _ = std::fs::remove_file(&t);
            }
        }
    }
    let (t, chart) = table(&o, &results);
    println!();
    print!("{t}");
    let name = match (&o.name, o.target_bus) {
        (Some(n), _) => n.clone(),
        (None, _) if o.direct => "bench-direct".into(),
        (None, Some(t)) => format!("bench-xdisk-{}", bus_name(t)),
        (None, None) => "bench-files".into(),
    };
    let mut md = String::from(if o.direct {
        "# Direct I/O (O_DIRECT, AIO): AliasOS vs Linux\n\n"
    } else if o.target_bus.is_some() {
        "# Copies between two disks: AliasOS vs Linux\n\n"
    } else {
        "# Buffered file I/O: AliasOS vs Linux\n\n"
    });
    md.push_str(&format!(
        "Same QEMU machine for both (q35, TCG, `-cpu max`, 1 vCPU, {} RAM), same ext2 image \
         (4 KiB blocks, {SRC_MIB} MiB random `src.bin`) on the bus named, cache=writeback. \
         The same static program (`fbench`, user/tools) runs on both; every run starts \
         with `sync` and `drop_caches`; median (min–max) of {} runs, MiB/s. Linux: Debian's \
         kernel with ext4.ko serving the ext2 mount, busybox `cp` (which uses sendfile). \
         ratio = AliasOS / Linux.\n\n",
        o.mem, o.runs
    ));
    if o.direct {
        md.push_str(&format!(
            "Direct mode: the raw disk is a second {RAW_MIB} MiB disk on the same bus; both \
             systems run `fbench -r auto`; Linux's direct I/O goes through its block layer \
             and (for src.bin) ext4.ko's ext2.\n\n"
        ));
    }
    for (w, d) in o.catalog() {
        md.push_str(&format!("- `{w}`: {d}\n"));
    }
    md.push('\n');
    md.push_str(&t);
    if !failures.is_empty() {
        md.push_str("\nFailures:\n\n");
        for f in &failures {
            md.push_str(&format!("- {f}\n"));
        }
    }
    md.push_str(&format!("\nLogs: `{}`.\n", dir.join("*.log").display()));
    let md_path = target.join(format!("{name}.md"));
    std::fs::write(&md_path, &md).map_err(|e| format!("write {}: {e}", md_path.display()))?;
    let svg_path = target.join(format!("{name}.svg"));
    std::fs::write(&svg_path, chart_svg(&chart))
        .map_err(|e| format!("{}: {e}", svg_path.display()))?;
    println!(
        "\nbench-files: wrote {} and {} in {:.0} s",
        md_path.display(),
        svg_path.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(failures.is_empty())
}

/// Symbolize the profile in `serial` into `profile-<bus>.txt`, `.folded` (one stack per
/// line, as flamegraph tools read them) and `.svg`.
fn profile_report(serial: &str, dir: &Path, bus: &str) -> Result<(), String> {
    let samples = boot::profile::parse(serial)?;
    let mut sym =
        boot::profile::Symbolizer::new(&boot::kernel_elf(), &boot::profile::user_tools_dir());
    let r = boot::profile::report(&samples, &mut sym);
    let txt = dir.join(format!("profile-{bus}.txt"));
    let svg = dir.join(format!("profile-{bus}.svg"));
    std::fs::write(&txt, r.flat_text(30)).map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join(format!("profile-{bus}.folded")),
        r.folded.join("\n") + "\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        &svg,
        r.flame_graph(&format!("AliasOS bench-files on {bus}"))?,
    )
    .map_err(|e| e.to_string())?;
    print!("{}", r.flat_text(30));
    println!("profile: {} and {}", txt.display(), svg.display());
    Ok(())
}

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench-files: error: {e}");
            ExitCode::from(2)
        }
    }
}
