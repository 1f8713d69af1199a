//! The kernel's module graph: which top-level modules of `kernel/src` refer to which, and
//! the cycles in it. A reference is a `crate::x` path (including the items of a
//! `use crate::{x, y::z}` group) or a call of a macro that another module exports with
//! `#[macro_export]` (`kprintln!` belongs to `console`). `make lint` fails on any cycle:
//! the kernel's modules form the layering the README's layout section describes, and a
//! lower layer reaches a higher one only through a hook or a narrow trait it defines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level modules and the references between them.
#[derive(Debug, Default)]
pub struct ModuleGraph {
    pub modules: BTreeSet<String>,
    /// from → to → the files (relative to the source folder) that make the reference.
    pub edges: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

/// The crate roots, which declare the modules and are no layer of their own.
const ROOTS: [&str; 2] = ["lib", "main"];

/// The top-level module a source file belongs to (`arch/x86_64/trap.rs` → `arch`).
fn module_of(rel: &str) -> String {
    let first = rel.split('/').next().unwrap_or(rel);
    first.strip_suffix(".rs").unwrap_or(first).to_string()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `src` without comments (line, block and doc comments) and with string contents blanked.
fn strip_comments(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            if c == b'\\' && i + 1 < b.len() {
                out.push_str("  ");
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            } else {
                let ch = src[i..].chars().next().unwrap_or(' ');
                out.push(' ');
                i += ch.len_utf8();
                continue;
            }
        } else if c == b'"' && !(i > 0 && b[i - 1] == b'\'' && b.get(i + 1) == Some(&b'\'')) {
            in_str = true;
        } else if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
            continue;
        }
        let ch = src[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The first path segment of each item in a `{a, b::c, d::{e, f}}` group (without braces).
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut item = String::new();
    for c in group.chars().chain([',']) {
        match c {
            '{' => {
                depth += 1;
                item.push(c);
            }
            '}' => {
                depth -= 1;
                item.push(c);
            }
            ',' if depth == 0 => {
                let head: String = item.trim().chars().take_while(|&c| is_ident(c)).collect();
                if !head.is_empty() {
                    heads.push(head);
                }
                item.clear();
            }
            _ => item.push(c),
        }
    }
    heads
}

/// The names that follow each `crate::` in `src` (comments already stripped).
fn crate_references(src: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in src.match_indices("crate::") {
        let before = src[..at].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue;
        }
        let rest = &src[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(i, _)| i)
                .unwrap_or(group.len());
            names.extend(group_heads(&group[..end]));
        } else {
            let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            if !name.is_empty() {
                names.push(name);
            }
        }
    }
    names
}

/// Macros a file exports to the crate root: `#[macro_export]` followed by `macro_rules!`.
fn exported_macros(src: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in src.match_indices("#[macro_export]") {
        let rest = &src[at..];
        if let Some(m) = rest.find("macro_rules!") {
            let name: String = rest[m + "macro_rules!".len()..]
                .trim_start()
                .chars()
                .take_while(|&c| is_ident(c))
                .collect();
            names.push(name);
        }
    }
    names
}

/// Whether `src` invokes macro `name!` by its bare name (not as a path's later segment).
fn invokes_macro(src: &str, name: &str) -> bool {
    let pat = format!("{name}!");
    src.match_indices(&pat).any(|(at, _)| {
        let before = src[..at].chars().next_back();
        !before.is_some_and(|c| is_ident(c) || c == ':')
    })
}

impl ModuleGraph {
    /// The graph of `files`: (path relative to the source folder, text) pairs.
    pub fn from_sources(files: &[(String, String)]) -> ModuleGraph {
        let mut g = ModuleGraph::default();
        let stripped: Vec<(String, String, String)> = files
            .iter()
            .map(|(rel, text)| (rel.clone(), module_of(rel), strip_comments(text)))
            .collect();
        let mut macros: BTreeMap<String, String> = BTreeMap::new();
        for (_, module, text) in &stripped {
            if !ROOTS.contains(&module.as_str()) {
                g.modules.insert(module.clone());
            }
            for m in exported_macros(text) {
                macros.insert(m, module.clone());
            }
        }
        for (rel, from, text) in &stripped {
            if ROOTS.contains(&from.as_str()) {
                continue;
            }
            let mut targets: Vec<String> = crate_references(text)
                .into_iter()
                .filter_map(|n| {
                    if g.modules.contains(&n) {
                        Some(n)
                    } else {
                        macros.get(&n).cloned()
                    }
                })
                .collect();
            for (name, module) in &macros {
                if invokes_macro(text, name) {
                    targets.push(module.clone());
                }
            }
            for to in targets {
                if &to != from && g.modules.contains(&to) {
                    g.edges
                        .entry(from.clone())
                        .or_default()
                        .entry(to)
                        .or_default()
                        .insert(rel.clone());
                }
            }
        }
        g
    }

    /// The graph of the `.rs` files under `dir`.
    pub fn scan(dir: &Path) -> Result<ModuleGraph, String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) -> Result<(), String> {
            let mut entries: Vec<_> = std::fs::read_dir(dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .collect();
            entries.sort();
            for p in entries {
                if p.is_dir() {
                    walk(&p, base, out)?;
                } else if p.extension().is_some_and(|e| e == "rs") {
                    let text =
                        std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                    let rel = p.strip_prefix(base).unwrap_or(&p);
                    out.push((rel.to_string_lossy().replace('\\', "/"), text));
                }
            }
            Ok(())
        }
        let mut files = Vec::new();
        walk(dir, dir, &mut files)?;
        Ok(ModuleGraph::from_sources(&files))
    }

    /// The strongly connected components with more than one module (Tarjan), each sorted.
    pub fn cycles(&self) -> Vec<Vec<String>> {
        struct Tarjan<'a> {
            g: &'a ModuleGraph,
            index: BTreeMap<&'a str, usize>,
            low: BTreeMap<&'a str, usize>,
            stack: Vec<&'a str>,
            on_stack: BTreeSet<&'a str>,
            out: Vec<Vec<String>>,
        }
        impl<'a> Tarjan<'a> {
            fn visit(&mut self, v: &'a str) {
                let i = self.index.len();
                self.index.insert(v, i);
                self.low.insert(v, i);
                self.stack.push(v);
                self.on_stack.insert(v);
                if let Some(targets) = self.g.edges.get(v) {
                    for w in targets.keys() {
                        let w = w.as_str();
                        if !self.index.contains_key(w) {
                            self.visit(w);
                            let lw = self.low[w];
                            let lv = self.low.get_mut(v).expect("visited");
                            *lv = (*lv).min(lw);
                        } else if self.on_stack.contains(w) {
                            let iw = self.index[w];
                            let lv = self.low.get_mut(v).expect("visited");
                            *lv = (*lv).min(iw);
                        }
                    }
                }
                if self.low[v] == self.index[v] {
                    let mut scc = Vec::new();
                    while let Some(w) = self.stack.pop() {
                        self.on_stack.remove(w);
                        scc.push(w.to_string());
                        if w == v {
                            break;
                        }
                    }
                    if scc.len() > 1 {
                        scc.sort();
                        self.out.push(scc);
                    }
                }
            }
        }
        let mut t = Tarjan {
            g: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            out: Vec::new(),
        };
        for m in &self.modules {
            if !t.index.contains_key(m.as_str()) {
                t.visit(m);
            }
        }
        t.out
    }

    /// A report of every cycle: its modules and the references among them, with files.
    pub fn cycle_report(&self) -> String {
        let mut s = String::new();
        for scc in self.cycles() {
            s += &format!("import cycle among {}:\n", scc.join(", "));
            for a in &scc {
                for b in &scc {
                    if let Some(files) = self.edges.get(a).and_then(|t| t.get(b)) {
                        let files: Vec<&str> = files.iter().map(String::as_str).collect();
                        s += &format!("  {a} -> {b}  ({})\n", files.join(", "));
                    }
                }
            }
        }
        s
    }

    /// One line per module with what it uses, lowest layers first when there is no cycle.
    pub fn layers(&self) -> String {
        let mut s = String::new();
        let mut placed: Vec<&str> = Vec::new();
        let mut left: BTreeSet<&str> = self.modules.iter().map(String::as_str).collect();
        while !left.is_empty() {
            let ready: Vec<&str> = left
                .iter()
                .copied()
                .filter(|m| {
                    self.edges
                        .get(*m)
                        .is_none_or(|t| t.keys().all(|d| placed.contains(&d.as_str())))
                })
                .collect();
            let next = if ready.is_empty() {
                left.iter().copied().collect()
            } else {
                ready
            };
            for m in next {
                left.remove(m);
                placed.push(m);
                let uses: Vec<&str> = self
                    .edges
                    .get(m)
                    .map(|t| t.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                s += &format!("{m:>10} uses {}\n", uses.join(" "));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(files: &[(&str, &str)]) -> ModuleGraph {
        let files: Vec<(String, String)> = files
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect();
        ModuleGraph::from_sources(&files)
    }

    #[test]
    fn paths_groups_and_macros_make_edges() {
        let g = graph(&[
            (
                "lib.rs",
                "pub mod a; pub mod b; pub mod c; use crate::a::x;",
            ),
            (
                "a.rs",
                "use crate::{b::{x, y}, c};\nfn f() { let s = \"crate::d\"; }",
            ),
            ("b/mod.rs", "#[macro_export]\nmacro_rules! say { () => {} }"),
            ("c.rs", "fn g() { say!(); }"),
            (
                "d.rs",
                "// crate::a in a comment\n/* crate::b */ fn h() { x::say!(); }",
            ),
        ]);
        let edges: Vec<(String, String)> = g
            .edges
            .iter()
            .flat_map(|(a, t)| t.keys().map(move |b| (a.clone(), b.clone())))
            .collect();
        let want = [("a", "b"), ("a", "c"), ("c", "b")];
        assert_eq!(
            edges,
            want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
        );
        assert!(g.cycles().is_empty());
        assert!(!g.modules.contains("lib"));
    }

    #[test]
    fn finds_a_cycle_and_reports_its_files() {
        let g = graph(&[
            ("x.rs", "use crate::y::f;"),
            ("y/inner.rs", "fn f() { crate::z::g() }"),
            ("z.rs", "use crate::x;"),
            ("w.rs", "use crate::x;"),
        ]);
        assert_eq!(g.cycles(), vec![vec!["x", "y", "z"]]);
        let r = g.cycle_report();
        assert!(r.contains("y -> z  (y/inner.rs)"), "{r}");
        assert!(!r.contains("w ->"), "{r}");
    }

    /// The kernel itself: its top-level modules form a DAG.
    #[test]
    fn kernel_modules_have_no_cycle() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel/src");
        let g = ModuleGraph::scan(&dir).expect("scan kernel/src");
        assert!(g.modules.contains("arch") && g.modules.contains("vfs"));
        assert!(g.cycles().is_empty(), "{}", g.cycle_report());
    }
}
