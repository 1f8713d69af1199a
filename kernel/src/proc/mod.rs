//! Processes: one task each, an address space ([`vm::MemoryMap`]), open files, a parent
//! and children; fork (copy-on-write), execve (static ELF), exit, wait4, and what happens
//! when user code faults.

pub mod elf;
pub mod oom;
pub mod rmap;
pub mod vm;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use mm::sync::Mutex;

use self::vm::MemoryMap;
use crate::arch::context::FpuState;
use crate::arch::trap::{self, TrapFrame};
use crate::arch::{cpu, syscall as arch_syscall};
use crate::errno::Errno;
use crate::task::{self, WaitQueue};
use crate::vfs::{ProcessFiles, load_executable};

/// Signal numbers the kernel itself raises.
pub const SIGILL: u32 = 4;
pub const SIGTRAP: u32 = 5;
pub const SIGBUS: u32 = 7;
pub const SIGFPE: u32 = 8;
pub const SIGKILL: u32 = 9;
pub const SIGSEGV: u32 = 11;

/// Signal dispositions as recorded by rt_sigaction (delivery is minimal: fatal signals
/// raised by the kernel terminate the process).
#[derive(Clone)]
pub struct Signals {
    /// `struct sigaction` (kernel layout, 32 bytes) per signal 1..=64.
    pub actions: [[u8; 32]; 64],
    pub mask: u64,
    /// `stack_t` (24 bytes).
    pub altstack: [u8; 24],
}

impl Default for Signals {
    fn default() -> Self {
        Signals {
            actions: [[0; 32]; 64],
            mask: 0,
            altstack: [
                0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        }
    }
}

/// A process (AliasOS has no threads: one task per process).
pub struct Process {
    pub pid: u32,
    pub ppid: AtomicU32,
    /// Open files and the working directory.
    pub files: Mutex<ProcessFiles>,
    /// Address space and areas.
    pub mem: Mutex<MemoryMap>,
    /// Root page table of `mem` (for the scheduler, which cannot take `mem`'s lock).
    cr3: AtomicU64,
    /// The program's name (for messages).
    pub name: spin::Mutex<String>,
    /// Wait status once it has exited (a zombie until its parent waits).
    exit_status: spin::Mutex<Option<i32>>,
    children: spin::Mutex<Vec<Arc<Process>>>,
    /// Woken when a child exits.
    child_exit: WaitQueue,
    pub signals: spin::Mutex<Signals>,
    pub clear_child_tid: AtomicU64,
    /// A fatal signal sent by kill(), acted on when the process next returns to user mode.
    pending_kill: AtomicU32,
    /// Set when this process execs or exits: a parent blocked in vfork may continue.
    vfork_released: AtomicBool,
    vfork_wq: WaitQueue,
    /// Pages mapped in its address space (the counter of the current one; replaced by
    /// execve), readable without the memory lock.
    resident: spin::Mutex<Arc<AtomicU64>>,
    /// The memory map's queue of stale file mappings (replaced with it at exec), so the
    /// return to user mode can tell without its lock whether there is work.
    stale: spin::Mutex<Arc<rmap::StaleQueue>>,
    /// The task running it, to wake it when a fatal signal arrives.
    task: spin::Mutex<Weak<task::Task>>,
}

impl Process {
    /// The root page table the CPU must use for this process.
    pub fn cr3(&self) -> u64 {
        self.cr3.load(Ordering::Acquire)
    }

    pub fn is_zombie(&self) -> bool {
        self.exit_status.lock().is_some()
    }

    /// Pages its address space maps right now (its resident set).
    pub fn resident_pages(&self) -> u64 {
        self.resident.lock().load(Ordering::Relaxed)
    }

    /// Whether a fatal signal is waiting to be acted on.
    pub fn kill_pending(&self) -> bool {
        self.pending_kill.load(Ordering::Acquire) != 0
    }

    /// Make fatal signal `sig` pending (the first one sent wins) and wake the process
    /// wherever it waits, so it dies on its way back to user mode.
    fn post_kill(&self, sig: u32) {
        let _ = self
            .pending_kill
            .compare_exchange(0, sig, Ordering::AcqRel, Ordering::Relaxed);
        if let Some(t) = self.task.lock().upgrade() {
            task::wake(&t);
        }
        self.child_exit.wake_all();
    }
}

static PROCESSES: spin::Mutex<BTreeMap<u32, Weak<Process>>> = spin::Mutex::new(BTreeMap::new());
static NEXT_PID: AtomicU32 = AtomicU32::new(1);

impl task::TaskOwner for Process {
    fn page_table_root(&self) -> u64 {
        self.cr3()
    }

    fn kill_pending(&self) -> bool {
        Process::kill_pending(self)
    }
}

/// [`crate::uaccess`]'s resolver: the frame behind `va` in the running process, faulted
/// in as an access would, with a reference taken for the caller.
fn resolve_user_page(va: u64, write: bool) -> Result<mm::FrameRef, Errno> {
    let p = try_current().ok_or(Errno::EFAULT)?;
    let mut mem = p.mem.lock();
    mem.resolve(va, write)
}

/// [`crate::uaccess`]'s pinner: the pages from `va` on in the running process, faulted
/// in as an access would and pinned for DMA.
fn pin_user_pages(
    va: u64,
    count: usize,
    write: bool,
    out: &mut mm::PinnedRange,
) -> Result<(), Errno> {
    let p = try_current().ok_or(Errno::EFAULT)?;
    p.mem.lock().pin_pages(va, count, write, out)
}

/// The process whose system call (or fault) is running. Panics outside process context.
pub fn current() -> Arc<Process> {
    try_current().expect("no current process")
}

/// The running process, if the running task has one.
pub fn try_current() -> Option<Arc<Process>> {
    task::current().and_then(|t| t.process::<Process>())
}

/// Number of live (not yet reaped) processes.
pub fn count() -> usize {
    PROCESSES
        .lock()
        .values()
        .filter(|w| w.strong_count() > 0)
        .count()
}

fn new_process(
    ppid: u32,
    files: ProcessFiles,
    mem: MemoryMap,
    name: String,
    signals: Signals,
) -> Arc<Process> {
    let pid = NEXT_PID.fetch_add(1, Ordering::Relaxed);
    let cr3 = mem.space.root();
    let resident = mem.space.resident().clone();
    let stale = mem.stale_queue();
    let p = Arc::new(Process {
        pid,
        ppid: AtomicU32::new(ppid),
        files: Mutex::new(files),
        mem: Mutex::new(mem),
        cr3: AtomicU64::new(cr3),
        name: spin::Mutex::new(name),
        exit_status: spin::Mutex::new(None),
        children: spin::Mutex::new(Vec::new()),
        child_exit: WaitQueue::new(),
        signals: spin::Mutex::new(signals),
        clear_child_tid: AtomicU64::new(0),
        pending_kill: AtomicU32::new(0),
        vfork_released: AtomicBool::new(false),
        vfork_wq: WaitQueue::new(),
        resident: spin::Mutex::new(resident),
        stale: spin::Mutex::new(stale),
        task: spin::Mutex::new(Weak::new()),
    });
    PROCESSES.lock().insert(pid, Arc::downgrade(&p));
    p
}

/// Every live process (zombies included).
fn all_processes() -> Vec<Arc<Process>> {
    PROCESSES
        .lock()
        .values()
        .filter_map(Weak::upgrade)
        .collect()
}

/// The process with `pid`, if it is alive (or a zombie).
fn find(pid: u32) -> Option<Arc<Process>> {
    PROCESSES.lock().get(&pid).and_then(Weak::upgrade)
}

fn user_frame(entry: u64, sp: u64) -> TrapFrame {
    TrapFrame {
        rip: entry,
        rsp: sp,
        cs: 0x23,
        ss: 0x1b,
        rflags: 0x202,
        ..TrapFrame::default()
    }
}

fn program_name(path: &[u8]) -> String {
    let base = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    String::from_utf8_lossy(base).into_owned()
}

/// Start the first process (PID 1) running `path` with `argv`; it runs once the caller
/// (the idle task) lets the scheduler run.
pub fn start_init(path: &str, argv: &[&str]) -> Result<u32, Errno> {
    install_fault_handlers();
    let files = ProcessFiles::new_console()?;
    let image = load_executable(&files, path.as_bytes())?;
    let argv: Vec<Vec<u8>> = argv.iter().map(|a| a.as_bytes().to_vec()).collect();
    let envp: Vec<Vec<u8>> = ["PATH=/bin", "HOME=/", "TERM=vt100"]
        .iter()
        .map(|e| e.as_bytes().to_vec())
        .collect();
    let loaded = elf::load(&image, &argv, &envp, path.as_bytes())?;
    let p = new_process(
        0,
        files,
        loaded.mem,
        program_name(path.as_bytes()),
        Signals::default(),
    );
    let pid = p.pid;
    let t = task::spawn_user(
        p.clone(),
        &program_name(path.as_bytes()),
        &user_frame(loaded.entry, loaded.sp),
        FpuState::initial(),
        0,
    )
    .map_err(|_| Errno::ENOMEM)?;
    *p.task.lock() = Arc::downgrade(&t);
    Ok(pid)
}

/// Install what the layers below call up into (at boot, before any process or test):
/// the OOM killer, the return-to-user check, user-address resolution for user copies,
/// and the reverse map's hook for file pages that moved.
pub fn init() {
    oom::install();
    task::set_signal_check(on_return_to_user);
    crate::uaccess::set_resolver(resolve_user_page, pin_user_pages);
    crate::memory::page_cache().set_moved_hook(rmap::page_moved);
}

/// On the way back to user mode (interrupts off): drop stale mappings, then act on a
/// fatal signal.
fn on_return_to_user() {
    let Some(p) = try_current() else { return };
    while p.stale.lock().pending() {
        // Nothing else holds a process's memory lock for long; never sleep here.
        match p.mem.try_lock() {
            Some(mut mem) => {
                mem.drop_stale_mappings();
            }
            None => task::yield_now(),
        }
    }
    let sig = p.pending_kill.load(Ordering::Acquire);
    drop(p); // `exit` does not return
    if sig != 0 {
        exit(killed_by(sig));
    }
}

/// fork: a child with a copy-on-write copy of the memory, the same open files, and the
/// caller's registers except `rax` = 0. Returns the child's PID. With `vfork` the caller
/// is suspended until the child execs or exits, as on Linux (the memory is still a
/// copy-on-write copy, which a correct vfork child cannot tell apart).
pub fn fork(frame: &TrapFrame, vfork: bool) -> Result<u64, Errno> {
    let parent = current();
    let mem = parent.mem.lock().fork()?;
    let files = parent.files.lock().fork();
    let name = parent.name.lock().clone();
    let signals = parent.signals.lock().clone();
    let child = new_process(parent.pid, files, mem, name, signals);
    let mut regs = frame.clone();
    regs.rax = 0;
    let mut fpu = FpuState::initial();
    fpu.save();
    parent.children.lock().push(child.clone());
    let pid = child.pid;
    let name = child.name.lock().clone();
    match task::spawn_user(child.clone(), &name, &regs, fpu, arch_syscall::fs_base()) {
        Ok(t) => *child.task.lock() = Arc::downgrade(&t),
        Err(_) => {
            parent.children.lock().retain(|c| c.pid != pid);
            PROCESSES.lock().remove(&pid);
            return Err(Errno::ENOMEM);
        }
    }
    drop(parent);
    if vfork {
        child
            .vfork_wq
            .wait_until(|| child.vfork_released.load(Ordering::Acquire));
    }
    Ok(pid as u64)
}

/// execve: replace the program. On success the registers in `frame` start the new one.
pub fn execve(
    frame: &mut TrapFrame,
    path: &[u8],
    argv: Vec<Vec<u8>>,
    envp: Vec<Vec<u8>>,
) -> Result<(), Errno> {
    let p = current();
    let image = {
        let files = p.files.lock();
        load_executable(&files, path)?
    };
    let loaded = elf::load(&image, &argv, &envp, path)?;
    drop(image);
    {
        let mut mem = p.mem.lock();
        let old = core::mem::replace(&mut *mem, loaded.mem);
        p.cr3.store(mem.space.root(), Ordering::Release);
        *p.resident.lock() = mem.space.resident().clone();
        *p.stale.lock() = mem.stale_queue();
        mem.space.activate();
        drop(old);
    }
    p.files.lock().exec_cleanup();
    *p.name.lock() = program_name(argv.first().map(|a| a.as_slice()).unwrap_or(path));
    task::set_profile_image(&program_name(path));
    {
        let mut s = p.signals.lock();
        for a in s.actions.iter_mut() {
            // Handlers reset to default; ignored signals stay ignored (SIG_IGN = 1).
            if u64::from_le_bytes(a[..8].try_into().unwrap_or([0; 8])) > 1 {
                *a = [0; 32];
            }
        }
        s.altstack = Signals::default().altstack;
    }
    arch_syscall::set_fs_base(0);
    FpuState::initial().restore();
    release_vfork_parent(&p);
    *frame = user_frame(loaded.entry, loaded.sp);
    Ok(())
}

/// Terminate the calling process with wait status `status` (see [`exit_code`],
/// [`killed_by`]). Never returns.
pub fn exit(status: i32) -> ! {
    {
        let p = current();
        cpu::enable_interrupts();
        p.files.lock().close_all();
        p.mem.lock().clear();
        // Orphans go to init.
        let orphans: Vec<Arc<Process>> = core::mem::take(&mut *p.children.lock());
        if !orphans.is_empty() {
            let init = PROCESSES.lock().get(&1).and_then(Weak::upgrade);
            match init {
                Some(init) if init.pid != p.pid => {
                    for c in orphans {
                        c.ppid.store(1, Ordering::Relaxed);
                        init.children.lock().push(c);
                    }
                    init.child_exit.wake_all();
                }
                _ => drop(orphans),
            }
        }
        *p.exit_status.lock() = Some(status);
        release_vfork_parent(&p);
        log::debug!(
            "pid {} ({}) exited with status {status:#x}",
            p.pid,
            p.name.lock()
        );
        if p.pid == 1 {
            init_exited(status);
        }
        let parent = PROCESSES
            .lock()
            .get(&p.ppid.load(Ordering::Relaxed))
            .and_then(Weak::upgrade);
        if let Some(parent) = parent {
            parent.child_exit.wake_all();
        }
    }
    task::exit_current()
}

fn release_vfork_parent(p: &Process) {
    p.vfork_released.store(true, Ordering::Release);
    p.vfork_wq.wake_all();
}

/// Wait status of a normal exit with `code`.
pub fn exit_code(code: i32) -> i32 {
    (code & 0xff) << 8
}

/// Wait status of a process killed by signal `sig`.
pub fn killed_by(sig: u32) -> i32 {
    (sig & 0x7f) as i32
}

/// PID 1 ended: the machine powers off (status 0) or reports failure.
///
/// The final sync is bounded: if it has not finished within [`SHUTDOWN_SYNC_NS`] (a
/// disk that stopped answering, memory so short that writeback cannot proceed), the
/// timer gives up on it and ends the run with a failure status. The machine never hangs.
fn init_exited(status: i32) -> ! {
    if status != 0 {
        crate::kprintln!("init exited with wait status {status:#x}; syncing");
    }
    SHUTDOWN_DEADLINE.store(crate::time::now_ns() + SHUTDOWN_SYNC_NS, Ordering::Release);
    crate::time::on_every_second(shutdown_watchdog);
    sync_all_mappings();
    if let Err(e) = crate::vfs::sync_all() {
        log::error!("sync at shutdown failed: {e:?}");
    }
    if status == 0 {
        crate::kprintln!("init exited; powering off");
        crate::arch::acpi::poweroff();
    }
    crate::kprintln!("init exited with wait status {status:#x}");
    crate::profile::dump();
    cpu::fail_exit(cpu::ExitCode::TestFailed)
}

/// How long the sync after PID 1's exit may take.
const SHUTDOWN_SYNC_NS: u64 = 30_000_000_000;
/// When the shutdown sync must be done by (0: no shutdown in progress).
static SHUTDOWN_DEADLINE: AtomicU64 = AtomicU64::new(0);

/// Timer hook during shutdown: give up on a sync that takes too long.
fn shutdown_watchdog() {
    let deadline = SHUTDOWN_DEADLINE.load(Ordering::Acquire);
    if deadline != 0 && crate::time::now_ns() >= deadline {
        crate::console::emergency(format_args!(
            "\nshutdown: the final sync did not finish within {} s; stopping without it\n",
            SHUTDOWN_SYNC_NS / 1_000_000_000
        ));
        cpu::fail_exit(cpu::ExitCode::TestFailed)
    }
}

/// wait4: reap a child that has exited (`pid` -1: any; > 0: that one). `nohang`: return
/// Ok(None) instead of blocking while children are still running.
pub fn wait(pid: i64, nohang: bool) -> Result<Option<(u32, i32)>, Errno> {
    let p = current();
    let matches = |c: &Arc<Process>| pid == -1 || pid == 0 || c.pid as i64 == pid;
    loop {
        let mut found = None;
        let mut any = false;
        let mut killed = false;
        p.child_exit.wait_until(|| {
            let children = p.children.lock();
            any = children.iter().any(matches);
            found = children
                .iter()
                .find(|c| matches(c) && c.is_zombie())
                .map(|c| c.pid);
            killed = p.pending_kill.load(Ordering::Acquire) != 0;
            !any || found.is_some() || nohang || killed
        });
        if killed && found.is_none() {
            return Err(Errno::EINTR);
        }
        if !any {
            return Err(Errno::ECHILD);
        }
        let Some(cpid) = found else {
            if nohang {
                return Ok(None);
            }
            continue;
        };
        let child = {
            let mut children = p.children.lock();
            let i = children.iter().position(|c| c.pid == cpid);
            i.map(|i| children.remove(i))
        };
        if let Some(c) = child {
            let status = c.exit_status.lock().unwrap_or(0);
            PROCESSES.lock().remove(&cpid);
            return Ok(Some((cpid, status)));
        }
    }
}

/// kill(pid, sig): send `sig` to process `pid`. Signal handlers are not run (delivery is
/// minimal): a signal whose disposition is "ignore" (SIG_IGN, or default-ignore signals
/// like SIGCHLD) does nothing, any other terminates the target when it next returns to
/// user mode (at once if it is the caller).
pub fn send_signal(pid: u32, sig: u32) -> Result<(), Errno> {
    let target = PROCESSES
        .lock()
        .get(&pid)
        .and_then(Weak::upgrade)
        .filter(|p| !p.is_zombie())
        .ok_or(Errno::ESRCH)?;
    // Like Linux, init gets only signals it has handlers for, and it runs no handlers.
    if sig == 0 || target.pid == 1 {
        return Ok(());
    }
    // SIGCHLD, SIGCONT, SIGURG, SIGWINCH are ignored by default; SIGSTOP/SIGTSTP/SIGTTIN/
    // SIGTTOU would stop, which AliasOS does not do.
    if matches!(sig, 17 | 18 | 19 | 20 | 21 | 22 | 23 | 28) {
        return Ok(());
    }
    let ignored = sig != SIGKILL && {
        let s = target.signals.lock();
        u64::from_le_bytes(
            s.actions[sig as usize - 1][..8]
                .try_into()
                .unwrap_or([0; 8]),
        ) == 1
    };
    if ignored {
        return Ok(());
    }
    // The target wakes wherever it waits (a sleep, wait4, a pipe, the terminal) and dies
    // on its way out; a disk wait ends first.
    target.post_kill(sig);
    Ok(())
}

/// On the way back to user mode: act on a fatal signal sent by kill().
pub fn check_pending_kill() {
    let sig = match try_current() {
        Some(p) => p.pending_kill.load(Ordering::Acquire),
        None => return,
    };
    if sig != 0 {
        exit(killed_by(sig));
    }
}

/// Log the processes that are still alive (at poweroff: what did not exit).
pub fn log_survivors() {
    for p in all_processes() {
        log::info!(
            "pid {} ({}) still {} at shutdown",
            p.pid,
            p.name.lock(),
            if p.is_zombie() { "a zombie" } else { "running" }
        );
    }
}

/// Hand every process's stores through shared file mappings (the PTE dirty bits) to the
/// page cache, so fsync, sync and shutdown write them.
pub fn sync_all_mappings() {
    for p in all_processes() {
        if !p.is_zombie() {
            p.mem.lock().sync_shared(0, crate::arch::paging::USER_END);
        }
    }
}

/// Kill the current process because of an exception it caused in user mode.
fn kill_for_fault(frame: &TrapFrame, sig: u32) -> ! {
    {
        // Scoped: exit() never returns, so nothing owned may live on this stack past it.
        let p = current();
        crate::kprintln!(
            "pid {} ({}): {} at rip {:#x} (address {:#x}, error {:#x}): killed by signal {sig}",
            p.pid,
            p.name.lock(),
            trap::exception_name(frame.vector),
            frame.rip,
            cpu::cr2(),
            frame.error_code
        );
    }
    exit(killed_by(sig))
}

fn user_page_fault(frame: &mut TrapFrame) -> bool {
    if !frame.from_user() {
        return false;
    }
    let addr = cpu::cr2();
    let write = frame.error_code & 2 != 0;
    let exec = frame.error_code & 0x10 != 0;
    cpu::enable_interrupts();
    let r = current().mem.lock().fault(addr, write, exec);
    x86_64::instructions::interrupts::disable();
    match r {
        Ok(()) => true,
        Err(Errno::ENXIO) | Err(Errno::EIO) => kill_for_fault(frame, SIGBUS),
        // Out of memory: the OOM killer chose this process (or it was already dying);
        // as on Linux it dies of SIGKILL.
        Err(Errno::ENOMEM) => {
            {
                let p = current();
                crate::kprintln!(
                    "pid {} ({}): out of memory at address {:#x}: killed by signal {SIGKILL}",
                    p.pid,
                    p.name.lock(),
                    addr
                );
            }
            exit(killed_by(SIGKILL))
        }
        Err(_) => kill_for_fault(frame, SIGSEGV),
    }
}

fn user_exception(frame: &mut TrapFrame) -> bool {
    if !frame.from_user() {
        return false;
    }
    let sig = match frame.vector {
        0 | 16 | 19 => SIGFPE,
        1 | 3 => SIGTRAP,
        6 => SIGILL,
        12 | 17 => SIGBUS,
        _ => SIGSEGV,
    };
    kill_for_fault(frame, sig)
}

fn install_fault_handlers() {
    trap::set_handler(14, user_page_fault);
    for v in [0u8, 1, 3, 4, 5, 6, 7, 10, 11, 12, 13, 16, 17, 19] {
        trap::set_handler(v, user_exception);
    }
}
