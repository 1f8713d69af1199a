//! The host half of the kernel's sampling profiler: read the `PROFILE-*` lines a kernel
//! booted with `profile` printed at poweroff, symbolize every address (kernel addresses
//! with the kernel ELF, user addresses with the user tool's unstripped ELF from
//! `target/release/`), and produce a flat profile (top functions by samples where they
//! were running, and by samples in which they were on the stack) and folded stacks, which
//! `inferno` turns into a flame graph SVG.
//!
//! The kernel is a position-independent ELF loaded at [`KERNEL_BASE`]; the user tools are
//! static non-PIE executables, so their addresses are the ELF's own.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where the kernel is loaded (kernel::KERNEL_BASE).
pub const KERNEL_BASE: u64 = 0xffff_8000_0000_0000;

/// One distinct stack the kernel reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stack {
    pub count: u64,
    pub image: String,
    pub user: bool,
    /// Innermost first: the interrupted address, then return addresses.
    pub frames: Vec<u64>,
}

/// Everything between `PROFILE-BEGIN` and `PROFILE-END`.
#[derive(Debug, Default)]
pub struct Samples {
    pub hz: u64,
    pub total: u64,
    pub dropped: u64,
    pub stacks: Vec<Stack>,
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Parse the profile out of a serial log (other lines are ignored; the kernel's log
/// prefix before a marker is tolerated).
pub fn parse(serial: &str) -> Result<Samples, String> {
    let mut s = Samples::default();
    let mut images: HashMap<u32, String> = HashMap::new();
    let mut raw: Vec<(u64, u32, bool, Vec<u64>)> = Vec::new();
    let (mut begun, mut ended) = (false, false);
    for line in serial.lines() {
        let Some(at) = line.find("PROFILE-") else {
            continue;
        };
        let line = line[at..].trim_end();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("PROFILE-BEGIN") => {
                begun = true;
                s.hz = field(line, "hz").and_then(|v| v.parse().ok()).unwrap_or(0);
                s.total = field(line, "samples")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                s.dropped = field(line, "dropped")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
            }
            Some("PROFILE-IMAGE") => {
                let id = words.next().and_then(|v| v.parse().ok());
                let name = words.next();
                if let (Some(id), Some(name)) = (id, name) {
                    images.insert(id, name.to_string());
                }
            }
            Some("PROFILE-STACK") => {
                let parsed = (|| {
                    let count: u64 = words.next()?.parse().ok()?;
                    let image: u32 = words.next()?.parse().ok()?;
                    let user = words.next()? == "u";
                    let frames = words
                        .next()?
                        .split(',')
                        .map(|f| u64::from_str_radix(f, 16).ok())
                        .collect::<Option<Vec<u64>>>()?;
                    Some((count, image, user, frames))
                })();
                raw.push(parsed.ok_or_else(|| format!("malformed line: {line}"))?);
            }
            Some("PROFILE-END") => ended = true,
            _ => {}
        }
    }
    if !begun {
        return Err("no PROFILE-BEGIN line: was the kernel booted with `profile`?".into());
    }
    if !ended {
        return Err("no PROFILE-END line: the output was cut off".into());
    }
    s.stacks = raw
        .into_iter()
        .map(|(count, image, user, frames)| Stack {
            count,
            image: images
                .get(&image)
                .cloned()
                .unwrap_or_else(|| format!("image{image}")),
            user,
            frames,
        })
        .collect();
    Ok(s)
}

/// Turns addresses into function names, one loader per ELF, memoised.
pub struct Symbolizer {
    kernel: Option<addr2line::Loader>,
    user_dir: PathBuf,
    users: HashMap<String, Option<addr2line::Loader>>,
    cache: HashMap<(String, u64), String>,
}

impl Symbolizer {
    /// Kernel symbols from `kernel_elf`, user programs from `user_dir/<name>`.
    pub fn new(kernel_elf: &Path, user_dir: &Path) -> Symbolizer {
        Symbolizer {
            kernel: addr2line::Loader::new(kernel_elf).ok(),
            user_dir: user_dir.to_path_buf(),
            users: HashMap::new(),
            cache: HashMap::new(),
        }
    }

    /// The function at `addr` of `image` (return addresses should be passed minus one),
    /// or a hex address in brackets when there is no symbol.
    pub fn name(&mut self, image: &str, addr: u64) -> String {
        let kernel = addr >= KERNEL_BASE;
        let key = (
            if kernel {
                String::new()
            } else {
                image.to_string()
            },
            addr,
        );
        if let Some(n) = self.cache.get(&key) {
            return n.clone();
        }
        let loader = if kernel {
            self.kernel.as_ref()
        } else {
            self.users
                .entry(image.to_string())
                .or_insert_with(|| addr2line::Loader::new(self.user_dir.join(image)).ok())
                .as_ref()
        };
        let probe = if kernel { addr - KERNEL_BASE } else { addr };
        let name = loader
            .and_then(|l| l.find_symbol(probe))
            .map(|raw| {
                let full = format!("{:#}", rustc_demangle::demangle(raw));
                tidy(&full)
            })
            .unwrap_or_else(|| format!("[{}{addr:#x}]", if kernel { "kernel " } else { "" }));
        self.cache.insert(key, name.clone());
        name
    }
}

/// Shorten a demangled Rust path for reading: generic arguments go (a `<` right after a
/// name opens them, as in `Vec<T>` or `f::<T>`), while the angle brackets of a
/// qualified path (`<Foo as Bar>::f`, `<Foo>::f`) stay.
fn tidy(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    // For every open bracket: whether it is being skipped.
    let mut stack: Vec<bool> = Vec::new();
    let mut prev = ' ';
    for c in name.chars() {
        let skipping = stack.last().copied().unwrap_or(false);
        match c {
            '<' => {
                let generic = skipping || prev.is_alphanumeric() || prev == '_' || prev == ':';
                stack.push(generic);
                if !generic {
                    out.push(c);
                }
            }
            '>' => {
                if stack.pop() == Some(false) {
                    out.push(c);
                }
            }
            _ if !skipping => out.push(c),
            _ => {}
        }
        prev = c;
    }
    out.replace("::::", "::").trim_end_matches("::").to_string()
}

/// A symbolized profile.
pub struct Report {
    pub samples: u64,
    pub hz: u64,
    pub dropped: u64,
    /// (function, self samples, total samples), by self samples, largest first.
    pub flat: Vec<(String, u64, u64)>,
    /// `frame;frame;... count` lines, outermost first, rooted at the program name.
    pub folded: Vec<String>,
}

/// Symbolize `samples`.
pub fn report(samples: &Samples, sym: &mut Symbolizer) -> Report {
    let mut self_counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut total_counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut folded: BTreeMap<String, u64> = BTreeMap::new();
    let mut n = 0;
    for st in &samples.stacks {
        n += st.count;
        let names: Vec<String> = st
            .frames
            .iter()
            .enumerate()
            .map(|(i, &a)| sym.name(&st.image, if i == 0 { a } else { a.saturating_sub(1) }))
            .collect();
        if let Some(leaf) = names.first() {
            *self_counts.entry(leaf.clone()).or_default() += st.count;
        }
        let mut seen: Vec<&String> = Vec::new();
        for name in &names {
            if !seen.contains(&name) {
                seen.push(name);
                *total_counts.entry(name.clone()).or_default() += st.count;
            }
        }
        let mut line = format!("{} ({})", st.image, if st.user { "user" } else { "kernel" });
        for name in names.iter().rev() {
            line.push(';');
            line.push_str(&name.replace(';', ":"));
        }
        *folded.entry(line).or_default() += st.count;
    }
    let mut flat: Vec<(String, u64, u64)> = self_counts
        .into_iter()
        .map(|(f, c)| {
            let t = total_counts.get(&f).copied().unwrap_or(c);
            (f, c, t)
        })
        .collect();
    // Functions that were never the leaf still show up by their total.
    for (f, t) in &total_counts {
        if !flat.iter().any(|(g, _, _)| g == f) {
            flat.push((f.clone(), 0, *t));
        }
    }
    flat.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
    Report {
        samples: n,
        hz: samples.hz,
        dropped: samples.dropped,
        flat,
        folded: folded
            .into_iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect(),
    }
}

impl Report {
    /// The flat profile's first `top` rows as text.
    pub fn flat_text(&self, top: usize) -> String {
        let mut t = String::new();
        let secs = if self.hz > 0 {
            self.samples as f64 / self.hz as f64
        } else {
            0.0
        };
        let _ = writeln!(
            t,
            "{} samples at {} Hz ({secs:.1} s of CPU), {} dropped",
            self.samples, self.hz, self.dropped
        );
        let _ = writeln!(t, "{:>7} {:>7}  function", "self%", "total%");
        for (f, s, tot) in self.flat.iter().take(top) {
            let pct = |v: u64| 100.0 * v as f64 / self.samples.max(1) as f64;
            let _ = writeln!(t, "{:>6.2}% {:>6.2}%  {f}", pct(*s), pct(*tot));
        }
        t
    }

    /// A flame graph of the folded stacks (SVG).
    pub fn flame_graph(&self, title: &str) -> Result<Vec<u8>, String> {
        let mut opts = inferno::flamegraph::Options::default();
        opts.title = title.to_string();
        opts.count_name = "samples".into();
        let mut out = Vec::new();
        inferno::flamegraph::from_lines(
            &mut opts,
            self.folded.iter().map(String::as_str),
            &mut out,
        )
        .map_err(|e| format!("flame graph: {e}"))?;
        Ok(out)
    }
}

/// Where the unstripped user tools are (`cargo build -p user-tools --release`).
pub fn user_tools_dir() -> PathBuf {
    crate::target_dir().join("release")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
boot noise
PROFILE-BEGIN hz=1000 samples=7 dropped=1
PROFILE-IMAGE 0 kernel
PROFILE-IMAGE 3 dd
PROFILE-STACK 4 3 u 401000,401200
[  1.0] PROFILE-STACK 3 0 k ffff800000001000
PROFILE-END
";

    #[test]
    fn parses_the_kernel_format() {
        let s = parse(LOG).unwrap();
        assert_eq!((s.hz, s.total, s.dropped), (1000, 7, 1));
        assert_eq!(
            s.stacks,
            vec![
                Stack {
                    count: 4,
                    image: "dd".into(),
                    user: true,
                    frames: vec![0x401000, 0x401200]
                },
                Stack {
                    count: 3,
                    image: "kernel".into(),
                    user: false,
                    frames: vec![0xffff_8000_0000_1000]
                },
            ]
        );
        assert!(parse("PROFILE-BEGIN hz=1").is_err(), "cut off");
        assert!(parse("nothing").is_err());
        assert!(parse("PROFILE-BEGIN\nPROFILE-STACK x\nPROFILE-END").is_err());
    }

    #[test]
    fn folds_and_counts_without_symbols() {
        let s = parse(LOG).unwrap();
        let mut sym = Symbolizer::new(Path::new("/nonexistent"), Path::new("/nonexistent"));
        let r = report(&s, &mut sym);
        assert_eq!(r.samples, 7);
        assert_eq!(r.flat[0], ("[0x401000]".to_string(), 4, 4));
        assert!(
            r.folded
                .contains(&"dd (user);[0x4011ff];[0x401000] 4".to_string())
        );
        assert!(r.flame_graph("t").unwrap().starts_with(b"<?xml"));
        assert!(r.flat_text(30).contains("57.14%"));
    }

    #[test]
    fn tidies_generic_arguments() {
        assert_eq!(tidy("alloc::vec::Vec<T>::push"), "alloc::vec::Vec::push");
        assert_eq!(
            tidy("core::ptr::drop_in_place::<kernel::Foo>"),
            "core::ptr::drop_in_place"
        );
        assert_eq!(
            tidy("<alloc::x::NodeRef<a::M, u64, b::Page<T>>>::search_tree"),
            "<alloc::x::NodeRef>::search_tree"
        );
        assert_eq!(
            tidy("<fs::Ext2 as fs::Dev>::read"),
            "<fs::Ext2 as fs::Dev>::read"
        );
    }
}
