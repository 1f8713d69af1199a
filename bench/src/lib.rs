//! Benchmarks of AliasOS against a Linux guest on the same QEMU machine.
//!
//! Both kernels print one line per measurement on the serial console:
//!
//! ```text
//! BENCH <bus> <workload> <value> <unit>        e.g. BENCH virtio seq_read_1m 812.4 MiB/s
//! BENCH done                                   (optional) the last line before poweroff
//! ```
//!
//! This crate runs the guests ([`run_qemu`] streams the serial output, with a total and an
//! inactivity timeout), parses those lines ([`parse`]) and renders the comparison table
//! ([`table`]). The Linux guest is built by `bench/linux-peer/build.sh`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use boot::Qemu;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

/// One `BENCH` line.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    pub bus: String,
    pub workload: String,
    /// The number, or what the kernel printed instead of one (e.g. `error ...`).
    pub value: Result<f64, String>,
    pub unit: String,
}

impl Measurement {
    /// The value with its unit, `n/a` or the error.
    pub fn display(&self) -> String {
        match &self.value {
            Ok(v) => format!("{} {}", format_value(*v, &self.unit), self.unit),
            Err(e) => e.clone(),
        }
    }
}

/// MiB/s with one decimal, counts (IOPS) as integers.
pub fn format_value(v: f64, unit: &str) -> String {
    if unit == "IOPS" {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// What the serial output of one run said.
#[derive(Debug, Default)]
pub struct Parsed {
    pub results: Vec<Measurement>,
    /// `BENCH done` was seen.
    pub done: bool,
    /// Other `BENCH...` lines (errors such as `BENCH-ERROR ...` or `BENCH none no-disk`).
    pub problems: Vec<String>,
}

/// The text from `BENCH` on, if the line has the marker (anything before it, e.g. a
/// kernel log prefix or an interleaved message, is ignored).
fn bench_part(line: &str) -> Option<&str> {
    let i = line.find("BENCH")?;
    Some(line[i..].trim_end_matches(['\r', '\n']).trim())
}

/// Parse every `BENCH` line of a serial log.
pub fn parse(serial: &str) -> Parsed {
    let mut p = Parsed::default();
    for line in serial.lines() {
        let Some(b) = bench_part(line) else { continue };
        let words: Vec<&str> = b.split_whitespace().collect();
        match words.as_slice() {
            ["BENCH", "done"] => p.done = true,
            ["BENCH", bus, workload, value, unit] if value.parse::<f64>().is_ok() => {
                p.results.push(Measurement {
                    bus: bus.to_string(),
                    workload: workload.to_string(),
                    value: Ok(value.parse().unwrap()),
                    unit: unit.to_string(),
                })
            }
            // `BENCH <bus> <workload> error <what...>`
            ["BENCH", bus, workload, "error", rest @ ..] => p.results.push(Measurement {
                bus: bus.to_string(),
                workload: workload.to_string(),
                value: Err(format!("error {}", rest.join(" ")).trim().to_string()),
                unit: String::new(),
            }),
            _ => p.problems.push(b.to_string()),
        }
    }
    p
}

/// How a streamed QEMU run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// QEMU exited by itself with this status (`None`: killed by a signal).
    Exited(Option<i32>),
    /// The guest said it was finished (see [`Watch`]); QEMU was stopped.
    Finished(String),
    /// The total time limit passed.
    TimedOut(Duration),
    /// No serial output for this long.
    Silent(Duration),
}

/// What [`run_qemu`] should do after a serial line.
pub enum Watch {
    Continue,
    /// The guest is done (or will never do more): stop QEMU after `grace`, with a reason.
    Stop {
        grace: Duration,
        reason: String,
    },
}

/// Limits for one run.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub total: Duration,
    /// Longest stretch without any serial output.
    pub silence: Duration,
}

/// The result of [`run_qemu`].
#[derive(Debug)]
pub struct Run {
    pub end: End,
    pub serial: String,
    /// QEMU's own stderr (warnings, errors).
    pub stderr: String,
    pub elapsed: Duration,
}

/// Run QEMU with exactly `q.args()`, streaming its serial output (the `Qemu` must capture
/// serial): every line goes to `log` (whose first line is the QEMU command) and to `watch`,
/// which may end the run early. QEMU is killed at `limits`.
pub fn run_qemu(
    q: &Qemu,
    log: &Path,
    limits: Limits,
    mut watch: impl FnMut(&str, Duration) -> Watch,
) -> Result<Run, String> {
    let args = q.args()?;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let mut logf = File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
    let _ = writeln!(logf, "# qemu-system-x86_64 {}", shell_words(&args));
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-x86_64: {e} (run `make deps`)"))?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match out.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(String::from_utf8_lossy(&buf).into_owned()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut err = child.stderr.take().expect("piped stderr");
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });

    let mut serial = String::new();
    let mut last_output = Instant::now();
    let mut stop_at: Option<(Instant, String)> = None;
    let mut take_line = |line: String, serial: &mut String, stop_at: &mut Option<_>| {
        let _ = logf.write_all(line.as_bytes());
        serial.push_str(&line);
        if stop_at.is_none()
            && let Watch::Stop { grace, reason } = watch(line.trim_end(), start.elapsed())
        {
            *stop_at = Some((Instant::now() + grace, reason));
        }
    };
    let end = loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                last_output = Instant::now();
                take_line(line, &mut serial, &mut stop_at);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // stdout closed: QEMU is exiting.
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Some(status) = child
            .try_wait()
            .map_err(|e| format!("waiting for qemu: {e}"))?
        {
            break End::Exited(status.code());
        }
        let end = if let Some((at, reason)) = &stop_at
            && Instant::now() >= *at
        {
            Some(End::Finished(reason.clone()))
        } else if start.elapsed() > limits.total {
            Some(End::TimedOut(limits.total))
        } else if last_output.elapsed() > limits.silence {
            Some(End::Silent(limits.silence))
        } else {
            None
        };
        if let Some(end) = end {
            let _ = child.kill();
            let _ = child.wait();
            break end;
        }
    };
    let _ = out_thread.join();
    while let Ok(line) = rx.try_recv() {
        take_line(line, &mut serial, &mut stop_at);
    }
    let stderr = err_thread.join().unwrap_or_default();
    if !stderr.is_empty() {
        let _ = writeln!(logf, "# qemu stderr:\n{stderr}");
    }
    let _ = writeln!(
        logf,
        "# end: {end:?} after {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(Run {
        end,
        serial,
        stderr,
        elapsed: start.elapsed(),
    })
}

/// Arguments joined for a shell, quoted where needed.
pub fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_=,./:+@".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One row of the comparison.
#[derive(Debug, Clone)]
pub struct Row {
    pub workload: String,
    pub bus: String,
    pub aliasos: Option<Measurement>,
    pub linux: Option<Measurement>,
}

impl Row {
    /// AliasOS / Linux (higher is better for every workload here).
    pub fn ratio(&self) -> Option<f64> {
        let a = self.aliasos.as_ref()?.value.as_ref().ok()?;
        let l = self.linux.as_ref()?.value.as_ref().ok()?;
        (*l > 0.0 && self.aliasos.as_ref()?.unit == self.linux.as_ref()?.unit).then(|| a / l)
    }
}

/// Rows for `workloads` × `buses` in that order, then any other (bus, workload) pair
/// either side reported.
pub fn rows(
    workloads: &[&str],
    buses: &[&str],
    aliasos: &[Measurement],
    linux: &[Measurement],
) -> Vec<Row> {
    let key = |m: &Measurement| (m.workload.clone(), m.bus.clone());
    let a: BTreeMap<_, _> = aliasos.iter().map(|m| (key(m), m.clone())).collect();
    let l: BTreeMap<_, _> = linux.iter().map(|m| (key(m), m.clone())).collect();
    let mut keys: Vec<(String, String)> = Vec::new();
    for w in workloads {
        for b in buses {
            keys.push((w.to_string(), b.to_string()));
        }
    }
    for k in a.keys().chain(l.keys()) {
        if !keys.contains(k) {
            keys.push(k.clone());
        }
    }
    keys.into_iter()
        .map(|k| Row {
            aliasos: a.get(&k).cloned(),
            linux: l.get(&k).cloned(),
            workload: k.0,
            bus: k.1,
        })
        .collect()
}

/// The comparison as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let show = |m: &Option<Measurement>| m.as_ref().map_or("n/a".into(), |m| m.display());
            [
                r.workload.clone(),
                r.bus.clone(),
                show(&r.aliasos),
                show(&r.linux),
                r.ratio().map_or("n/a".into(), |x| format!("{x:.2}x")),
            ]
        })
        .collect();
    let head = ["workload", "bus", "AliasOS", "Linux", "ratio"];
    let mut width = head.map(str::len);
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let line = |c: &[String; 5]| {
        let mut s = String::from("|");
        for (i, (w, x)) in width.iter().zip(c).enumerate() {
            // Text columns left-aligned, numbers right-aligned.
            if i < 2 {
                s.push_str(&format!(" {x:<w$} |"));
            } else {
                s.push_str(&format!(" {x:>w$} |"));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(&head.map(String::from));
    out.push('|');
    for (i, w) in width.iter().enumerate() {
        out.push_str(&if i < 2 {
            format!(" {} |", "-".repeat(*w))
        } else {
            format!(" {}: |", "-".repeat(w - 1))
        });
    }
    out.push('\n');
    for c in &cells {
        out.push_str(&line(c));
    }
    out
}

/// The bus's name in tables and logs.
pub fn bus_name(b: boot::Bus) -> &'static str {
    match b {
        boot::Bus::Virtio => "virtio",
        boot::Bus::Ahci => "ahci",
        boot::Bus::Nvme => "nvme",
    }
}

/// A comma-separated list of buses (`virtio,ahci`).
pub fn parse_buses(list: &str) -> Result<Vec<boot::Bus>, String> {
    list.split(',').map(str::parse).collect()
}

/// Build (or find cached) the Linux peer: its kernel, initramfs and kernel package name
/// (`bench/linux-peer/build.sh`).
pub fn linux_peer(root: &Path) -> Result<(PathBuf, PathBuf, String), String> {
    let script = root.join("bench/linux-peer/build.sh");
    let status = Command::new("bash")
        .arg(&script)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !status.success() {
        return Err(format!("{} failed ({status})", script.display()));
    }
    let cache = root.join("bench/linux-peer/cache");
    let package = std::fs::read_to_string(cache.join("stamp"))
        .ok()
        .and_then(|s| s.lines().nth(1).map(String::from))
        .unwrap_or_else(|| "linux-image (Debian)".into());
    Ok((
        cache.join("vmlinuz"),
        cache.join("initramfs.cpio.gz"),
        package,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bench_lines_and_ignores_the_rest() {
        let serial = "\
[    4.5] Run /init as init process\r
BENCH virtio seq_read_1m 812.4 MiB/s\r
noise BENCH ahci randread_4k_qd32 5972 IOPS
BENCH virtio seq_write_1m error I/O error at sector 8
BENCH-ERROR ahci randread_4k_qd1 fio failed: boom
BENCH none no-disk
BENCH done
";
        let p = parse(serial);
        assert!(p.done);
        assert_eq!(p.results.len(), 3);
        assert_eq!(p.results[0].bus, "virtio");
        assert_eq!(p.results[0].workload, "seq_read_1m");
        assert_eq!(p.results[0].value, Ok(812.4));
        assert_eq!(p.results[0].unit, "MiB/s");
        assert_eq!(p.results[1].display(), "5972 IOPS");
        assert_eq!(
            p.results[2].value,
            Err("error I/O error at sector 8".to_string())
        );
        assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
    }

    #[test]
    fn table_has_every_requested_row_and_ratios() {
        let m = |bus: &str, w: &str, v: f64, unit: &str| Measurement {
            bus: bus.into(),
            workload: w.into(),
            value: Ok(v),
            unit: unit.into(),
        };
        let linux = [
            m("virtio", "seq_read_1m", 1600.0, "MiB/s"),
            m("ahci", "seq_read_1m", 800.0, "MiB/s"),
        ];
        let aliasos = [
            m("virtio", "seq_read_1m", 2400.0, "MiB/s"),
            m("nvme", "x", 1.0, "IOPS"),
        ];
        let r = rows(&["seq_read_1m"], &["virtio", "ahci"], &aliasos, &linux);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].ratio(), Some(1.5));
        assert_eq!(r[1].ratio(), None);
        assert_eq!(r[2].bus, "nvme");
        let t = table(&r);
        assert!(t.starts_with("| workload "), "{t}");
        assert!(
            t.contains("| seq_read_1m | virtio | 2400.0 MiB/s | 1600.0 MiB/s | 1.50x |"),
            "{t}"
        );
        assert!(t.contains("|          n/a |  800.0 MiB/s |   n/a |"), "{t}");
    }

    #[test]
    fn shell_words_quotes_what_needs_it() {
        let a = ["-append".to_string(), "console=ttyS0 quiet".to_string()];
        assert_eq!(shell_words(&a), "-append 'console=ttyS0 quiet'");
    }
}
