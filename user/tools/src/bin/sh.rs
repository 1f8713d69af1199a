//! `sh [-v] [-x] [-c COMMAND | FILE]` or `sh --boot`: a small shell.
//!
//! Reads commands from FILE, from `-c COMMAND`, or line by line from stdin
//! (prompt `CWD $ ` when stdin is a terminal). Supported:
//! * words with `'single'` and `"double"` quotes and `\` escapes; `#` comments;
//! * `$?`, `$$`, `$NAME`, `${NAME}` (outside single quotes; no field splitting);
//! * redirections `> FILE`, `>> FILE`, `< FILE`, `N> FILE`, `N>> FILE`, `N>&M`;
//! * pipelines `a | b | c`; lists with `;`, `&&`, `||`;
//! * builtins `cd [DIR]`, `pwd`, `exit [N]`, `echo [-n] ...`, `true`, `false`,
//!   `export NAME=VALUE`, `NAME=VALUE`;
//! * other commands run with fork + execve + wait4, found via `$PATH`
//!   (default `/bin:/usr/bin:/sbin:/usr/sbin`); `$?` is the exit status
//!   (128 + signal when killed), 127 when not found.
//!
//! `-v` writes each input line to stderr before running it, `-x` writes
//! `+ WORDS` for each simple command.
//!
//! `--boot [RC [DIR]]` is how the kernel starts the shell as PID 1: it makes sure fds
//! 0, 1 and 2 are open (on `/dev/console` if not), sets `PATH=/bin:...` and
//! `HOME=/` when they are missing, prints `/etc/motd` if present, and if the
//! data disk holds `/etc/rc` (seen as `/mnt/etc/rc`) runs it from `/mnt`
//! (RC and DIR, for tests, replace these two),
//! writing `+ LINE` to stdout before each command line's output (`exit` in the
//! rc ends the rc, not the shell). Then it offers the interactive prompt,
//! always (the console may not answer the terminal ioctl). As PID 1 it reaps
//! orphaned children after every line. At the end of input it exits, and the
//! kernel powers the machine off.
//!
//! Line editing is the terminal's (canonical mode); on top of that, a line
//! read from the prompt ends at `\r` as well as `\n`, and backspace/DEL erase
//! a character and ^U the whole line, in case the console passes them raw.
// Built only as a real binary: `--all-targets` would otherwise also compile a
// test harness (with std) against the no_std runtime.
#![cfg(not(test))]
#![no_std]
#![no_main]

extern crate alloc;

use alloc::ffi::CString;
use alloc::vec::Vec;
use core::ffi::CStr;
use core::fmt::Write;
use sys::io::{Bytes, STDERR, StackWriter};
use sys::{eprint, eprintln, print, println};

#[derive(Debug, PartialEq)]
enum Tok {
    Word(Vec<u8>),
    Pipe,
    Semi,
    And,
    Or,
    /// `[N]>` / `[N]>>`
    Out(i32, bool),
    /// `[N]<`
    In(i32),
    /// `N>&M`
    Dup(i32, i32),
}

enum Redir {
    Out(i32, CString, bool),
    In(i32, CString),
    Dup(i32, i32),
}

#[derive(Default)]
struct Cmd {
    argv: Vec<Vec<u8>>,
    redirs: Vec<Redir>,
}

struct Shell {
    status: i32,
    /// Exported environment, `NAME=VALUE`.
    env: Vec<Vec<u8>>,
    verbose: bool,
    xtrace: bool,
    /// Write `+ LINE` to stdout before running each line (the boot rc).
    echo: bool,
    /// Running the boot rc: `exit` ends the rc instead of the shell.
    in_rc: bool,
    /// Set by `exit` inside the rc: stop running its lines.
    rc_exit: bool,
}

fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

impl Shell {
    fn var(&self, name: &[u8]) -> Option<&[u8]> {
        self.env.iter().find_map(|v| {
            (v.len() > name.len() && v.starts_with(name) && v[name.len()] == b'=')
                .then(|| &v[name.len() + 1..])
        })
    }

    fn set_var(&mut self, assignment: &[u8]) {
        let eq = assignment
            .iter()
            .position(|&c| c == b'=')
            .unwrap_or(assignment.len());
        let name = &assignment[..eq];
        self.env
            .retain(|v| !(v.len() > name.len() && v.starts_with(name) && v[name.len()] == b'='));
        self.env.push(assignment.to_vec());
    }

    /// Expand `$...` at `s[i]` (which is `$`) into `out`; returns the new index.
    fn expand(&self, s: &[u8], i: usize, out: &mut Vec<u8>) -> usize {
        let mut j = i + 1;
        let num = |n: i64, out: &mut Vec<u8>| {
            let mut w = alloc::string::String::new();
            let _ = write!(w, "{}", n);
            out.extend_from_slice(w.as_bytes());
        };
        match s.get(j) {
            Some(b'?') => {
                num(self.status as i64, out);
                j + 1
            }
            Some(b'$') => {
                num(sys::getpid() as i64, out);
                j + 1
            }
            Some(b'{') => {
                let end = s[j..].iter().position(|&c| c == b'}').map(|p| j + p);
                match end {
                    Some(e) => {
                        if let Some(v) = self.var(&s[j + 1..e]) {
                            out.extend_from_slice(v);
                        }
                        e + 1
                    }
                    None => {
                        out.push(b'$');
                        j
                    }
                }
            }
            Some(&c) if is_name_byte(c) && !c.is_ascii_digit() => {
                while j < s.len() && is_name_byte(s[j]) {
                    j += 1;
                }
                if let Some(v) = self.var(&s[i + 1..j]) {
                    out.extend_from_slice(v);
                }
                j
            }
            _ => {
                out.push(b'$');
                j
            }
        }
    }

    /// Tokenize (and expand) `s` from `start` up to and including the first
    /// list separator (`;`, `&&`, `||`); returns the tokens and where to resume
    /// (`s.len()` at the end or after a comment). Expansion happens here, so a
    /// later command of the same line sees the `$?` of the earlier ones.
    fn tokenize(&self, s: &[u8], start: usize) -> Result<(Vec<Tok>, usize), &'static str> {
        let mut toks = Vec::new();
        let mut i = start;
        let mut word = Vec::new();
        let mut in_word = false;
        // Digits-only unquoted word so far (an fd number for `2>`).
        let mut plain_digits = true;
        macro_rules! end_word {
            () => {
                if in_word {
                    toks.push(Tok::Word(core::mem::take(&mut word)));
                    in_word = false;
                    plain_digits = true;
                }
            };
        }
        while i < s.len() {
            let c = s[i];
            match c {
                b' ' | b'\t' | b'\r' | b'\n' => {
                    end_word!();
                    i += 1;
                }
                b'#' if !in_word => {
                    i = s.len();
                    break;
                }
                b'\'' => {
                    let end = s[i + 1..]
                        .iter()
                        .position(|&c| c == b'\'')
                        .ok_or("unterminated '")?;
                    word.extend_from_slice(&s[i + 1..i + 1 + end]);
                    in_word = true;
                    plain_digits = false;
                    i += end + 2;
                }
                b'"' => {
                    in_word = true;
                    plain_digits = false;
                    i += 1;
                    loop {
                        match s.get(i) {
                            None => return Err("unterminated \""),
                            Some(b'"') => {
                                i += 1;
                                break;
                            }
                            Some(b'\\')
                                if matches!(s.get(i + 1), Some(b'"' | b'\\' | b'$' | b'`')) =>
                            {
                                word.push(s[i + 1]);
                                i += 2;
                            }
                            Some(b'$') => i = self.expand(s, i, &mut word),
                            Some(&c) => {
                                word.push(c);
                                i += 1;
                            }
                        }
                    }
                }
                b'\\' => {
                    if let Some(&n) = s.get(i + 1) {
                        word.push(n);
                    }
                    in_word = true;
                    plain_digits = false;
                    i += 2;
                }
                b'$' => {
                    i = self.expand(s, i, &mut word);
                    in_word = true;
                    plain_digits = false;
                }
                b'|' | b';' | b'&' | b'<' | b'>' => {
                    let fd = if in_word && plain_digits && c != b'|' && c != b';' && c != b'&' {
                        let n = word.iter().fold(0i32, |a, &d| {
                            a.saturating_mul(10).saturating_add((d - b'0') as i32)
                        });
                        word.clear();
                        in_word = false;
                        Some(n)
                    } else {
                        end_word!();
                        None
                    };
                    let next = s.get(i + 1).copied();
                    match (c, next) {
                        (b'|', Some(b'|')) => {
                            toks.push(Tok::Or);
                            return Ok((toks, i + 2));
                        }
                        (b'|', _) => {
                            toks.push(Tok::Pipe);
                            i += 1;
                        }
                        (b';', _) => {
                            toks.push(Tok::Semi);
                            return Ok((toks, i + 1));
                        }
                        (b'&', Some(b'&')) => {
                            toks.push(Tok::And);
                            return Ok((toks, i + 2));
                        }
                        (b'&', _) => return Err("background jobs (&) are not supported"),
                        (b'<', _) => {
                            toks.push(Tok::In(fd.unwrap_or(0)));
                            i += 1;
                        }
                        (b'>', Some(b'>')) => {
                            toks.push(Tok::Out(fd.unwrap_or(1), true));
                            i += 2;
                        }
                        (b'>', Some(b'&')) => {
                            let start = i + 2;
                            let mut j = start;
                            while j < s.len() && s[j].is_ascii_digit() {
                                j += 1;
                            }
                            if j == start {
                                return Err("bad fd after >&");
                            }
                            let m = s[start..j].iter().fold(0i32, |a, &d| {
                                a.saturating_mul(10).saturating_add((d - b'0') as i32)
                            });
                            toks.push(Tok::Dup(fd.unwrap_or(1), m));
                            i = j;
                        }
                        _ => {
                            toks.push(Tok::Out(fd.unwrap_or(1), false));
                            i += 1;
                        }
                    }
                }
                _ => {
                    if !c.is_ascii_digit() {
                        plain_digits = false;
                    }
                    word.push(c);
                    in_word = true;
                    i += 1;
                }
            }
        }
        if in_word {
            toks.push(Tok::Word(word));
        }
        Ok((toks, i.max(s.len())))
    }

    /// Run one input line.
    fn run_line(&mut self, line: &[u8]) {
        if self.verbose {
            eprintln!("{}", Bytes(line));
        }
        if self.echo {
            let t = trim(line);
            if !t.is_empty() && t[0] != b'#' {
                sys::io::out_bytes(b"+ ");
                sys::io::out_bytes(t);
                sys::io::out_bytes(b"\n");
                sys::io::flush();
            }
        }
        let mut pos = 0;
        let mut skip = false;
        while pos < line.len() && !self.rc_exit {
            let (toks, next) = match self.tokenize(line, pos) {
                Ok(t) => t,
                Err(e) => return self.syntax(e),
            };
            pos = next;
            let mut cmds: Vec<Cmd> = alloc::vec![Cmd::default()];
            let mut sep = None;
            let mut iter = toks.into_iter();
            while let Some(t) = iter.next() {
                let cur = cmds.last_mut().unwrap();
                match t {
                    Tok::Word(w) => cur.argv.push(w),
                    Tok::Pipe => cmds.push(Cmd::default()),
                    Tok::Semi | Tok::And | Tok::Or => {
                        sep = Some(t);
                        break;
                    }
                    Tok::Out(fd, app) => match iter.next() {
                        Some(Tok::Word(w)) => cur.redirs.push(Redir::Out(fd, sys::cpath(&w), app)),
                        _ => return self.syntax("missing file after >"),
                    },
                    Tok::In(fd) => match iter.next() {
                        Some(Tok::Word(w)) => cur.redirs.push(Redir::In(fd, sys::cpath(&w))),
                        _ => return self.syntax("missing file after <"),
                    },
                    Tok::Dup(a, b) => cur.redirs.push(Redir::Dup(a, b)),
                }
            }
            let empty = cmds
                .iter()
                .all(|c| c.argv.is_empty() && c.redirs.is_empty());
            if empty && (cmds.len() > 1 || sep.is_some() && sep != Some(Tok::Semi)) {
                return self.syntax("empty command");
            }
            if !skip && !empty {
                self.run_pipeline(cmds);
            }
            skip = match sep {
                Some(Tok::And) => self.status != 0,
                Some(Tok::Or) => self.status == 0,
                _ => false,
            };
        }
    }

    fn syntax(&mut self, msg: &str) {
        eprintln!("sh: syntax error: {}", msg);
        self.status = 2;
    }

    fn is_builtin(name: &[u8]) -> bool {
        matches!(
            name,
            b"cd" | b"pwd" | b"exit" | b"echo" | b"true" | b"false" | b"export"
        ) || Self::is_assignment(name)
    }

    fn is_assignment(w: &[u8]) -> bool {
        match w.iter().position(|&c| c == b'=') {
            Some(eq) if eq > 0 => {
                w[..eq].iter().all(|&c| is_name_byte(c)) && !w[0].is_ascii_digit()
            }
            _ => false,
        }
    }

    /// Run a builtin in this process; returns its status.
    fn builtin(&mut self, argv: &[Vec<u8>]) -> i32 {
        let args = &argv[1..];
        match argv[0].as_slice() {
            b"cd" => {
                let home = self.var(b"HOME").unwrap_or(b"/").to_vec();
                let dir = args.first().cloned().unwrap_or(home);
                match sys::chdir(&sys::cpath(&dir)) {
                    Ok(_) => 0,
                    Err(e) => {
                        eprintln!("sh: cd: {}: {}", Bytes(&dir), e);
                        1
                    }
                }
            }
            b"pwd" => {
                let mut buf = [0u8; 4096];
                match sys::getcwd(&mut buf) {
                    Ok(n) => {
                        let n = buf[..n].iter().position(|&c| c == 0).unwrap_or(n);
                        println!("{}", Bytes(&buf[..n]));
                        0
                    }
                    Err(e) => {
                        eprintln!("sh: pwd: {}", e);
                        1
                    }
                }
            }
            b"exit" => {
                let code = match args.first() {
                    Some(a) => core::str::from_utf8(a)
                        .ok()
                        .and_then(|s| s.parse::<i32>().ok())
                        .unwrap_or(2),
                    None => self.status,
                };
                if self.in_rc {
                    self.rc_exit = true;
                    return code & 0xff;
                }
                sys::rt::exit(code & 0xff)
            }
            b"echo" => {
                let (newline, rest) = match args.first() {
                    Some(a) if a == b"-n" => (false, &args[1..]),
                    _ => (true, args),
                };
                for (i, a) in rest.iter().enumerate() {
                    if i > 0 {
                        print!(" ");
                    }
                    sys::io::out_bytes(a);
                }
                if newline {
                    println!();
                }
                sys::io::flush();
                0
            }
            b"true" => 0,
            b"false" => 1,
            b"export" => {
                for a in args {
                    if Self::is_assignment(a) {
                        self.set_var(a);
                    }
                }
                0
            }
            _ => {
                for a in argv {
                    if Self::is_assignment(a) {
                        self.set_var(a);
                    }
                }
                0
            }
        }
    }

    /// Find an executable for `name` via `$PATH`.
    fn lookup(&self, name: &[u8]) -> Option<CString> {
        if name.contains(&b'/') {
            return Some(sys::cpath(name));
        }
        let path = self
            .var(b"PATH")
            .unwrap_or(b"/bin:/usr/bin:/sbin:/usr/sbin");
        for dir in path.split(|&c| c == b':') {
            let dir = if dir.is_empty() { &b"."[..] } else { dir };
            let p = sys::join(dir, name);
            if sys::stat(&p)
                .map(|s| s.is_reg() && s.st_mode & 0o111 != 0)
                .unwrap_or(false)
            {
                return Some(p);
            }
        }
        None
    }

    fn run_pipeline(&mut self, cmds: Vec<Cmd>) {
        if self.xtrace {
            for c in &cmds {
                let mut w = StackWriter::<512>::new(STDERR);
                w.bytes(b"+");
                for a in &c.argv {
                    let _ = write!(w, " {}", Bytes(a));
                }
                w.bytes(b"\n");
            }
        }
        // A single builtin runs in the shell itself (so `cd`, `exit` work).
        if cmds.len() == 1 && cmds[0].argv.first().is_some_and(|n| Self::is_builtin(n)) {
            let cmd = &cmds[0];
            let mut saved = Vec::new();
            sys::io::flush();
            for r in &cmd.redirs {
                let fd = match r {
                    Redir::Out(fd, ..) | Redir::In(fd, _) | Redir::Dup(fd, _) => *fd,
                };
                saved.push((fd, sys::dup(fd).ok()));
            }
            self.status = match apply_redirs(&cmd.redirs) {
                Ok(()) => self.builtin(&cmd.argv),
                Err(()) => 1,
            };
            sys::io::flush();
            for (fd, s) in saved.into_iter().rev() {
                match s {
                    Some(s) => {
                        let _ = sys::dup2(s, fd);
                        let _ = sys::close(s);
                    }
                    None => {
                        let _ = sys::close(fd);
                    }
                }
            }
            return;
        }
        // Prepare everything before forking.
        let env: Vec<CString> = self.env.iter().map(|v| sys::cpath(v)).collect();
        let mut envp: Vec<*const u8> = env.iter().map(|c| c.as_ptr() as *const u8).collect();
        envp.push(core::ptr::null());
        sys::io::flush();
        let n = cmds.len();
        let mut pids = Vec::new();
        let mut prev_read: Option<i32> = None;
        for (i, cmd) in cmds.iter().enumerate() {
            let pipe = if i + 1 < n {
                match sys::pipe2(sys::O_CLOEXEC) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        eprintln!("sh: pipe: {}", e);
                        break;
                    }
                }
            } else {
                None
            };
            let argv: Vec<CString> = cmd.argv.iter().map(|a| sys::cpath(a)).collect();
            let mut argvp: Vec<*const u8> = argv.iter().map(|c| c.as_ptr() as *const u8).collect();
            argvp.push(core::ptr::null());
            let builtin = cmd.argv.first().is_some_and(|n| Self::is_builtin(n));
            let prog = if builtin {
                None
            } else {
                cmd.argv.first().and_then(|n| self.lookup(n))
            };
            // SAFETY: the shell is single-threaded, so the child gets a consistent copy of the
            // heap and of the stdout buffer (flushed above); it sets up fds, then runs a builtin
            // or `execve` and exits.
            match unsafe { sys::fork() } {
                Err(e) => {
                    eprintln!("sh: fork: {}", e);
                    break;
                }
                Ok(0) => {
                    // Child.
                    if let Some(r) = prev_read {
                        let _ = sys::dup2(r, 0);
                    }
                    if let Some([_, w]) = pipe {
                        let _ = sys::dup2(w, 1);
                    }
                    if apply_redirs(&cmd.redirs).is_err() {
                        sys::exit(1);
                    }
                    if cmd.argv.is_empty() {
                        sys::exit(0);
                    }
                    if builtin {
                        let st = self.builtin(&cmd.argv);
                        sys::rt::exit(st);
                    }
                    let Some(prog) = prog else {
                        eprintln!("sh: {}: not found", Bytes(&cmd.argv[0]));
                        sys::exit(127);
                    };
                    let e = sys::execve(&prog, &argvp, &envp);
                    eprintln!("sh: {}: {}", Bytes(&cmd.argv[0]), e);
                    sys::exit(if e == sys::errno::ENOENT { 127 } else { 126 });
                }
                Ok(pid) => pids.push(pid),
            }
            if let Some(r) = prev_read.take() {
                let _ = sys::close(r);
            }
            if let Some([r, w]) = pipe {
                let _ = sys::close(w);
                prev_read = Some(r);
            }
        }
        if let Some(r) = prev_read {
            let _ = sys::close(r);
        }
        let last = pids.last().copied();
        for pid in pids {
            loop {
                match sys::wait4(pid, 0) {
                    Ok((_, st)) => {
                        if Some(pid) == last {
                            self.status = sys::wait_status_code(st);
                        }
                        break;
                    }
                    Err(sys::errno::EINTR) => {}
                    Err(e) => {
                        eprintln!("sh: wait: {}", e);
                        break;
                    }
                }
            }
        }
        if last.is_none() {
            self.status = 1;
        }
    }
}

fn apply_redirs(redirs: &[Redir]) -> Result<(), ()> {
    for r in redirs {
        let res = match r {
            Redir::Out(fd, path, append) => {
                let flags = sys::O_WRONLY
                    | sys::O_CREAT
                    | if *append { sys::O_APPEND } else { sys::O_TRUNC };
                sys::open(path, flags, 0o666).map(|f| (*fd, f, path.as_c_str()))
            }
            Redir::In(fd, path) => {
                sys::open(path, sys::O_RDONLY, 0).map(|f| (*fd, f, path.as_c_str()))
            }
            Redir::Dup(a, b) => {
                if let Err(e) = sys::dup2(*b, *a) {
                    eprintln!("sh: {}: {}", b, e);
                    return Err(());
                }
                continue;
            }
        };
        match res {
            Ok((fd, f, _)) => {
                if f != fd {
                    let _ = sys::dup2(f, fd);
                    let _ = sys::close(f);
                }
            }
            Err(e) => {
                let p: &CStr = match r {
                    Redir::Out(_, p, _) | Redir::In(_, p) => p,
                    Redir::Dup(..) => c"?",
                };
                eprintln!("sh: {}: {}", Bytes(p.to_bytes()), e);
                return Err(());
            }
        }
    }
    Ok(())
}

/// Read one line from stdin byte by byte (so commands that read stdin see
/// the rest); `None` at end of file. With `edit` (a prompt is shown), `\r`
/// also ends the line, backspace/DEL erase the last byte and ^U the line.
fn read_line(buf: &mut Vec<u8>, edit: bool) -> Option<()> {
    buf.clear();
    let mut b = [0u8; 1];
    loop {
        match sys::read(0, &mut b) {
            Ok(0) => return if buf.is_empty() { None } else { Some(()) },
            Ok(_) => match b[0] {
                b'\n' => return Some(()),
                b'\r' if edit => return Some(()),
                0x08 | 0x7f if edit => {
                    buf.pop();
                }
                0x15 if edit => buf.clear(),
                c => buf.push(c),
            },
            Err(sys::errno::EINTR) => {}
            Err(_) => return None,
        }
    }
}

/// `s` without leading and trailing blanks.
fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end]
}

/// The current directory (for the prompt), `?` if unknown.
fn cwd() -> Vec<u8> {
    let mut buf = [0u8; 4096];
    match sys::getcwd(&mut buf) {
        Ok(n) => {
            let n = buf[..n].iter().position(|&c| c == 0).unwrap_or(n);
            buf[..n].to_vec()
        }
        Err(_) => b"?".to_vec(),
    }
}

/// `wait4(-1, WNOHANG)` until no exited child is left: PID 1 inherits orphans.
fn reap_orphans() {
    const WNOHANG: usize = 1;
    while let Ok((pid, _)) = sys::wait4(-1, WNOHANG) {
        if pid <= 0 {
            break;
        }
    }
}

/// Open `/dev/console` on whichever of fds 0, 1, 2 is not open.
fn ensure_console_fds() {
    if (0..3).all(|fd| sys::fstat(fd).is_ok()) {
        return;
    }
    let Ok(con) = sys::open(c"/dev/console", sys::O_RDWR, 0) else {
        return;
    };
    let mut keep = false;
    for fd in 0..3 {
        if fd == con {
            keep = true;
        } else if sys::fstat(fd).is_err() {
            let _ = sys::dup2(con, fd);
        }
    }
    if !keep {
        let _ = sys::close(con);
    }
}

/// Run the lines of `text` until its end or (in the rc) `exit`.
fn run_script(sh: &mut Shell, text: &[u8], reap: bool) {
    for line in text.split(|&b| b == b'\n') {
        sh.run_line(line);
        if reap {
            reap_orphans();
        }
        if sh.rc_exit {
            break;
        }
    }
}

/// PID 1: motd, the data disk's rc (`rc`, run from `dir`), then the
/// interactive prompt.
fn boot(sh: &mut Shell, rc: &CStr, dir: &CStr) -> i32 {
    ensure_console_fds();
    if sh.var(b"PATH").is_none() {
        sh.set_var(b"PATH=/bin:/usr/bin:/sbin:/usr/sbin");
    }
    if sh.var(b"HOME").is_none() {
        sh.set_var(b"HOME=/");
    }
    if let Ok(motd) = sys::read_file(c"/etc/motd") {
        sys::io::out_bytes(&motd);
        if !motd.is_empty() && !motd.ends_with(b"\n") {
            println!();
        }
        sys::io::flush();
    }
    if sys::stat(rc).is_ok_and(|s| s.is_reg()) {
        let name = Bytes(rc.to_bytes());
        match sys::read_file(rc) {
            Ok(text) => {
                if let Err(e) = sys::chdir(dir) {
                    eprintln!("sh: cd {}: {}", Bytes(dir.to_bytes()), e);
                }
                println!("sh: running {}", name);
                sys::io::flush();
                sh.echo = true;
                sh.in_rc = true;
                run_script(sh, &text, true);
                sh.echo = false;
                sh.in_rc = false;
                sh.rc_exit = false;
                println!("sh: {} done (status {})", name, sh.status);
                sys::io::flush();
            }
            Err(e) => eprintln!("sh: {}: {}", name, e),
        }
    }
    interactive(sh, true, true);
    sh.status
}

/// Read commands from stdin; with `prompt`, show `CWD $ ` before each line.
fn interactive(sh: &mut Shell, prompt: bool, reap: bool) {
    let mut line = Vec::new();
    loop {
        if prompt {
            eprint!("{} $ ", Bytes(&cwd()));
        }
        if read_line(&mut line, prompt).is_none() {
            break;
        }
        sh.run_line(&line);
        if reap {
            reap_orphans();
        }
    }
    if prompt {
        eprintln!("exit");
    }
}

fn main() -> i32 {
    let mut sh = Shell {
        status: 0,
        env: sys::rt::env_vars().map(|v| v.to_vec()).collect(),
        verbose: false,
        xtrace: false,
        echo: false,
        in_rc: false,
        rc_exit: false,
    };
    let args: Vec<&'static CStr> = sys::rt::args().skip(1).collect();
    let mut i = 0;
    let mut command: Option<&[u8]> = None;
    while i < args.len() {
        match args[i].to_bytes() {
            b"-v" => sh.verbose = true,
            b"-x" => sh.xtrace = true,
            b"--boot" => {
                // Undocumented operands for host tests: the rc file and its directory.
                let rc = args.get(i + 1).copied().unwrap_or(c"/mnt/etc/rc");
                let dir = args.get(i + 2).copied().unwrap_or(c"/mnt");
                return boot(&mut sh, rc, dir);
            }
            b"-c" => {
                let Some(c) = args.get(i + 1) else {
                    tools::die(2, format_args!("-c: option requires an argument"));
                };
                command = Some(c.to_bytes());
                i += 1;
            }
            _ => break,
        }
        i += 1;
    }
    if let Some(c) = command {
        for line in c.split(|&b| b == b'\n') {
            sh.run_line(line);
        }
        return sh.status;
    }
    if let Some(file) = args.get(i) {
        let text = match sys::read_file(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("sh: {}: {}", Bytes(file.to_bytes()), e);
                return 127;
            }
        };
        run_script(&mut sh, &text, false);
        return sh.status;
    }
    interactive(&mut sh, sys::isatty(0), false);
    sh.status
}

sys::entry!(main);
