//! A process's memory: its address space, the areas (VMAs) that say what may be mapped
//! where, demand paging, copy-on-write after fork, brk, mmap/munmap/mprotect.
//!
//! Pages are mapped lazily: an area says what a page *would* contain; the first access
//! faults and [`MemoryMap::fault`] maps a zeroed frame (anonymous memory) or a copy-on-write
//! break. After fork both processes map the same frames read-only with [`COW`] set; the
//! first write copies the frame unless this address space holds its only reference (then
//! it becomes writable in place). A frame pinned for DMA is never shared this way: fork
//! copies it eagerly (the GUP-after-fork lesson, CVE-2020-29374). Whether a share is
//! broken is decided from the frame's reference count under the process's memory lock,
//! never from a sticky flag (the Dirty COW lesson).

use alloc::collections::BTreeMap;
use alloc::sync::Arc;

use mm::page_cache::CachedFile;

use mm::counters::{self, Counter};
use mm::frame::{FRAME_SIZE, Pfn};
use mm::frame_table::Owner;
use mm::{FrameRef, Pin, PinnedRange};

use super::rmap::StaleQueue;
use crate::arch::paging::{AddressSpace, MapError, PteFlags, USER_END};
use crate::errno::Errno;
use crate::memory::frames;

pub const PAGE: u64 = FRAME_SIZE as u64;

/// Software PTE bit: this page is a copy-on-write share (read-only until written).
pub const COW: PteFlags = PteFlags::BIT_9;

/// Lowest address user mappings may use (NULL and the page above it stay unmapped).
pub const USER_MIN: u64 = 0x10000;
/// Top of the initial stack.
pub const STACK_TOP: u64 = 0x0000_7fff_ffff_f000;
/// Maximum stack size.
pub const STACK_SIZE: u64 = 8 << 20;
/// mmap places mappings below this address, top-down.
const MMAP_TOP: u64 = 0x0000_7f00_0000_0000;
/// End of the addresses user mappings may use: the last page below the canonical hole
/// stays unmapped, so no user instruction or return address can run into it.
pub const USER_LIMIT: u64 = STACK_TOP;
/// Largest program break growth.
const BRK_MAX: u64 = 1 << 32;

/// Page protections (PROT_READ/WRITE/EXEC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prot {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

impl Prot {
    pub const RW: Prot = Prot {
        read: true,
        write: true,
        exec: false,
    };

    /// From the PROT_* bits of mmap/mprotect.
    pub fn from_bits(bits: u64) -> Result<Prot, Errno> {
        // PROT_SEM (8) is accepted and means nothing here, as on x86-64 Linux.
        if bits & !0xF != 0 {
            return Err(Errno::EINVAL);
        }
        Ok(Prot {
            read: bits & 1 != 0,
            write: bits & 2 != 0,
            exec: bits & 4 != 0,
        })
    }

    /// PTE flags for this protection. PROT_NONE keeps the page present for the kernel's
    /// bookkeeping but not user-accessible, so its contents survive a later mprotect.
    fn pte(self, writable: bool) -> PteFlags {
        if !self.accessible() {
            return PteFlags::PRESENT | PteFlags::NO_EXECUTE;
        }
        let mut f = PteFlags::PRESENT | PteFlags::USER_ACCESSIBLE;
        if writable {
            f |= PteFlags::WRITABLE;
        }
        if !self.exec {
            f |= PteFlags::NO_EXECUTE;
        }
        f
    }

    fn accessible(self) -> bool {
        self.read || self.write || self.exec
    }
}

/// The pages of a shared anonymous mapping, shared by every process that maps it (after
/// fork). Each page holds one frame reference; the last mapping's end frees them.
pub struct SharedMemory {
    pages: mm::sync::Mutex<BTreeMap<u64, Pfn>>,
}

impl SharedMemory {
    pub fn new() -> SharedMemory {
        SharedMemory {
            pages: mm::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Page `index` (zero-filled the first time), with a frame reference for the caller.
    fn page(&self, index: u64) -> Result<FrameRef, Errno> {
        let mut pages = self.pages.lock();
        let pfn = match pages.get(&index) {
            Some(&p) => p,
            None => {
                let frame = alloc_anon()?;
                frame.whole().zero();
                let p = frame.into_raw();
                pages.insert(index, p);
                p
            }
        };
        FrameRef::new(frames(), pfn).map_err(|_| Errno::EFAULT)
    }
}

impl Default for SharedMemory {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        for (_, pfn) in core::mem::take(&mut *self.pages.lock()) {
            let _ = frames().put(pfn);
        }
    }
}

/// A file that can be mapped: its page-cache index and current size.
pub trait MappedFile: Send + Sync {
    fn cache(&self) -> &Arc<CachedFile>;
    fn size(&self) -> u64;
}

/// What an area's pages hold before they are written.
#[derive(Clone)]
pub enum Kind {
    /// Zero-filled on first touch (heap, stack, bss, anonymous mmap); private: copied on
    /// write after fork.
    Anon,
    /// Zero-filled on first touch and shared with forked children (MAP_SHARED|MAP_ANONYMOUS):
    /// the pages live in `obj` from page `pgoff`, so a page first touched after the fork
    /// is shared too.
    SharedAnon { obj: Arc<SharedMemory>, pgoff: u64 },
    /// Pages of a file's page cache, starting at page `pgoff` of the file. Shared: the
    /// page-cache frames themselves are mapped, and stores reach the file. Private: the
    /// frames are mapped read-only and a write copies (copy-on-write).
    File {
        file: Arc<dyn MappedFile>,
        pgoff: u64,
        shared: bool,
        /// The file was opened for writing (a shared mapping may be made writable).
        may_write: bool,
    },
}

impl Kind {
    /// Whether stores are seen by every process mapping the page (no copy-on-write).
    fn is_shared(&self) -> bool {
        matches!(
            self,
            Kind::SharedAnon { .. } | Kind::File { shared: true, .. }
        )
    }

    fn shared_file(&self) -> Option<(&Arc<dyn MappedFile>, u64)> {
        match self {
            Kind::File {
                file,
                pgoff,
                shared: true,
                ..
            } => Some((file, *pgoff)),
            _ => None,
        }
    }
}

impl core::fmt::Debug for Kind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Kind::Anon => write!(f, "anon"),
            Kind::SharedAnon { pgoff, .. } => write!(f, "shared anon+{pgoff}"),
            Kind::File { pgoff, shared, .. } => write!(f, "file+{pgoff} shared={shared}"),
        }
    }
}

/// A contiguous range of user addresses with one protection and backing.
#[derive(Clone, Debug)]
pub struct Area {
    pub start: u64,
    pub end: u64,
    pub prot: Prot,
    pub kind: Kind,
}

/// A process's address space and areas.
pub struct MemoryMap {
    pub space: AddressSpace,
    areas: BTreeMap<u64, Area>,
    pub brk_base: u64,
    pub brk: u64,
    /// File pages whose mappings here went stale (see [`super::rmap`]).
    stale: Arc<StaleQueue>,
}

fn map_errno(e: MapError) -> Errno {
    match e {
        MapError::OutOfMemory => Errno::ENOMEM,
        _ => Errno::EFAULT,
    }
}

fn page_down(a: u64) -> u64 {
    a & !(PAGE - 1)
}

fn page_up(a: u64) -> Option<u64> {
    a.checked_add(PAGE - 1).map(page_down)
}

/// Page-table entries are visited in chunks of this many.
const CHUNK: usize = 256;

impl MemoryMap {
    /// The present pages in `[start, end)`, a chunk at a time: `f` sees each chunk's
    /// entries and may change the mappings of the pages it was given.
    fn for_each_chunk(
        &mut self,
        start: u64,
        end: u64,
        mut f: impl FnMut(&mut Self, &[(u64, Pfn, PteFlags)]) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        let mut at = start;
        while at < end {
            let chunk = self.space.mappings(at, end, CHUNK);
            let Some(&(last, _, _)) = chunk.last() else {
                break;
            };
            f(self, &chunk)?;
            at = last + PAGE;
        }
        Ok(())
    }

    pub fn new() -> Result<MemoryMap, Errno> {
        Ok(MemoryMap {
            space: AddressSpace::new().map_err(map_errno)?,
            areas: BTreeMap::new(),
            brk_base: 0,
            brk: 0,
            stale: StaleQueue::new(),
        })
    }

    /// The queue of stale file mappings (see [`super::rmap`]).
    pub fn stale_queue(&self) -> Arc<StaleQueue> {
        self.stale.clone()
    }

    /// Drop the mappings that still point at frames their file pages left (copy-on-write
    /// breaks, stable-page copies: [`super::rmap`]); the next access refaults onto the
    /// page's current frame. Cheap when nothing is queued. Returns the mappings dropped.
    pub fn drop_stale_mappings(&mut self) -> usize {
        if !self.stale.pending() {
            return 0;
        }
        let mut dropped = 0;
        for (file, index, old) in self.stale.take() {
            let vas: alloc::vec::Vec<(u64, bool)> = self
                .areas
                .values()
                .filter_map(|a| match &a.kind {
                    Kind::File {
                        file: f,
                        pgoff,
                        shared,
                        ..
                    } if f.cache().id() == file
                        && index >= *pgoff
                        && index - pgoff < (a.end - a.start) / PAGE =>
                    {
                        Some((a.start + (index - pgoff) * PAGE, *shared))
                    }
                    _ => None,
                })
                .collect();
            for (va, shared) in vas {
                let Some((pfn, flags)) = self.space.lookup(va) else {
                    continue;
                };
                if pfn != old {
                    continue; // refaulted already, or a private copy of its own
                }
                if shared && flags.contains(PteFlags::DIRTY) {
                    // Cannot happen: a page mapped writable is never moved while mapped.
                    log::error!("vm: stores through a stale mapping at {va:#x} are lost");
                }
                // The TLB entry goes with it (unmap flushes it when this space is
                // active; an inactive space's entries went with its last CR3 switch).
                if self.space.unmap(va).is_ok() {
                    let _ = frames().put(old);
                    dropped += 1;
                }
            }
        }
        dropped
    }

    /// The area containing `va`.
    pub fn area(&self, va: u64) -> Option<&Area> {
        self.areas
            .range(..=va)
            .next_back()
            .map(|(_, a)| a)
            .filter(|a| va < a.end)
    }

    /// Whether any area overlaps `[start, end)`.
    pub fn is_mapped(&self, start: u64, end: u64) -> bool {
        self.overlaps(start, end)
    }

    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.areas
            .range(..end)
            .next_back()
            .is_some_and(|(_, a)| a.end > start)
    }

    /// Add an area over `[start, end)` (page-aligned, free).
    pub fn add_area(&mut self, start: u64, end: u64, prot: Prot, kind: Kind) -> Result<(), Errno> {
        if !start.is_multiple_of(PAGE)
            || !end.is_multiple_of(PAGE)
            || start >= end
            || start < USER_MIN
            || end > USER_LIMIT
        {
            return Err(Errno::EINVAL);
        }
        if self.overlaps(start, end) {
            return Err(Errno::ENOMEM);
        }
        if let Kind::File { file, .. } = &kind {
            super::rmap::register(file.cache().id(), &self.stale);
        }
        self.areas.insert(
            start,
            Area {
                start,
                end,
                prot,
                kind,
            },
        );
        Ok(())
    }

    /// Split areas so that `at` is a boundary.
    fn split_at(&mut self, at: u64) {
        if let Some(a) = self.area(at).cloned()
            && a.start < at
        {
            let mut upper = Area {
                start: at,
                ..a.clone()
            };
            if let Kind::File { pgoff, .. } | Kind::SharedAnon { pgoff, .. } = &mut upper.kind {
                *pgoff += (at - a.start) / PAGE;
            }
            self.areas.insert(a.start, Area { end: at, ..a });
            self.areas.insert(at, upper);
        }
    }

    /// Resolve a fault at `va`: map a zeroed page on first touch, break copy-on-write on a
    /// write. EFAULT when the access is not allowed (the caller turns that into SIGSEGV or
    /// an EFAULT return).
    pub fn fault(&mut self, va: u64, write: bool, exec: bool) -> Result<(), Errno> {
        self.drop_stale_mappings();
        let area = self.area(va).cloned().ok_or(Errno::EFAULT)?;
        if (write && !area.prot.write) || (exec && !area.prot.exec) || !area.prot.accessible() {
            return Err(Errno::EFAULT);
        }
        let page = page_down(va);
        match self.space.lookup(page) {
            None => {
                let (frame, flags) = match &area.kind {
                    Kind::Anon => {
                        let frame = alloc_anon()?;
                        frame.whole().zero();
                        (frame, area.prot.pte(area.prot.write))
                    }
                    Kind::SharedAnon { obj, pgoff } => {
                        let frame = obj.page(pgoff + (page - area.start) / PAGE)?;
                        (frame, area.prot.pte(area.prot.write))
                    }
                    Kind::File {
                        file,
                        pgoff,
                        shared,
                        ..
                    } => {
                        let index = pgoff + (page - area.start) / PAGE;
                        let size = file.size();
                        if index >= size.div_ceil(PAGE) {
                            // Past the end of the file: SIGBUS for the user.
                            return Err(Errno::ENXIO);
                        }
                        // A writable shared mapping's stores reach the file: its frame
                        // must be the file's own, not one aliased with another file.
                        let writable = *shared && area.prot.write;
                        let frame = file
                            .cache()
                            .map_page(index, size, writable)
                            .map_err(|_| Errno::EIO)?;
                        let flags = if *shared {
                            area.prot.pte(area.prot.write)
                        } else if area.prot.write {
                            area.prot.pte(false) | COW
                        } else {
                            area.prot.pte(false)
                        };
                        (frame, flags)
                    }
                };
                map_frame(&mut self.space, page, frame, flags)
            }
            Some((pfn, flags)) => {
                if write && !flags.contains(PteFlags::WRITABLE) {
                    if area.kind.is_shared() && aliased(pfn) {
                        // A file page whose frame another file's page shares (an alias
                        // made by a copy): stores must not reach the other file. Drop
                        // the read-only mapping; the refault asks the page cache for a
                        // writable page, which breaks the share first.
                        if self.space.unmap(page).is_ok() {
                            let _ = frames().put(pfn);
                        }
                        return self.fault(va, write, exec);
                    }
                    if area.kind.is_shared() {
                        return self
                            .space
                            .set_flags(page, area.prot.pte(true))
                            .map_err(map_errno);
                    }
                    self.break_cow(page, pfn, area.prot)
                } else {
                    // Another path mapped it meanwhile, or a stale TLB entry.
                    self.space.flush_all();
                    Ok(())
                }
            }
        }
    }

    /// A write to a copy-on-write share: keep the frame if we hold its only reference,
    /// else copy it.
    fn break_cow(&mut self, page: u64, pfn: Pfn, prot: Prot) -> Result<(), Errno> {
        if exclusively_ours(pfn) {
            self.space
                .set_flags(page, prot.pte(true))
                .map_err(map_errno)?;
            return Ok(());
        }
        let new = alloc_anon()?;
        // The mapping's reference to the old frame, handed back by the unmap below.
        let old = FrameRef::new(frames(), pfn).map_err(|_| Errno::EFAULT)?;
        new.copy_from(&old);
        counters::add(Counter::CowBreaks, 1);
        counters::add(Counter::DataCopyBytes, PAGE);
        if self.space.unmap(page).is_ok() {
            let _ = frames().put(pfn);
        }
        drop(old);
        map_frame(&mut self.space, page, new, prot.pte(true))
    }

    /// The frame behind user address `va` after making it accessible as a user access
    /// would (faulting it in; for `write`, breaking copy-on-write, and for a shared file
    /// page, marking it dirty as the CPU would).
    pub fn resolve(&mut self, va: u64, write: bool) -> Result<FrameRef, Errno> {
        self.drop_stale_mappings();
        if !(USER_MIN..USER_LIMIT).contains(&va) {
            return Err(Errno::EFAULT);
        }
        let (prot, shared_file) = {
            let a = self.area(va).ok_or(Errno::EFAULT)?;
            (a.prot, a.kind.shared_file().is_some())
        };
        if !prot.read && !write {
            return Err(Errno::EFAULT);
        }
        if !prot.accessible() {
            return Err(Errno::EFAULT);
        }
        let page = page_down(va);
        // For a write the page must end up writable: a first fault on a private file page
        // maps the page-cache frame read-only (copy-on-write), and only the next write
        // fault gives the process its own copy. Never hand out the shared frame.
        let mut tries = 0;
        let (pfn, flags) = loop {
            match self.space.lookup(page) {
                Some((pfn, f)) if !write || f.contains(PteFlags::WRITABLE) => break (pfn, f),
                _ if tries < 3 => {
                    self.fault(va, write, false)?;
                    tries += 1;
                }
                _ => return Err(Errno::EFAULT),
            }
        };
        if write && shared_file && !flags.contains(PteFlags::DIRTY) {
            self.space
                .set_flags(page, flags | PteFlags::DIRTY)
                .map_err(map_errno)?;
        }
        FrameRef::new(frames(), pfn).map_err(|_| Errno::EFAULT)
    }

    /// Pin the `count` pages from `va` (page-aligned) on for DMA, each resolved as
    /// [`MemoryMap::resolve`] resolves it (`write`: the device writes it), appended to
    /// `out` as whole pages in order. Stops at the first page that cannot be resolved,
    /// with its error; the pages before it are in `out`.
    ///
    /// A page already mapped as the access needs is pinned straight from its page-table
    /// entry ([`AddressSpace::pin_run`]: one walk per leaf table, no reference taken and
    /// dropped); the lock on this map keeps the mapping, and so the frame, in place
    /// meanwhile. Any other page is faulted in by [`MemoryMap::resolve`] first.
    pub fn pin_pages(
        &mut self,
        va: u64,
        count: usize,
        write: bool,
        out: &mut PinnedRange,
    ) -> Result<(), Errno> {
        let mut page = page_down(va);
        let mut left = count;
        while left > 0 {
            // A fault may have slept, and a mapping gone stale meanwhile (cheap when none
            // has); the areas are looked up again for the same reason.
            self.drop_stale_mappings();
            let (end, as_is, shared_file) = {
                let a = self.area(page).ok_or(Errno::EFAULT)?;
                let as_is = (a.prot.read || write) && a.prot.accessible();
                (a.end, as_is, a.kind.shared_file().is_some())
            };
            // The run of pages one leaf table maps inside this area.
            let in_table = 512 - ((page / PAGE) % 512) as usize;
            let run = left.min(((end - page) / PAGE) as usize).min(in_table);
            // Writable if the device writes; a shared file page also dirty, or the store
            // would not reach the file (`resolve` marks it).
            let serves = |f: PteFlags| {
                !write
                    || (f.contains(PteFlags::WRITABLE)
                        && (!shared_file || f.contains(PteFlags::DIRTY)))
            };
            let fast = if as_is {
                self.space
                    .pin_run(page, run, serves, out)
                    .map_err(|_| Errno::EFAULT)?
            } else {
                0
            };
            page += fast as u64 * PAGE;
            left -= fast;
            if fast < run {
                // Not mapped as the access needs (or not accessible at all): the slow
                // path faults it in, or gives the error a user access would get.
                let frame = self.resolve(page, write)?;
                out.push(Pin::new(&frame).map_err(|_| Errno::EFAULT)?, 0, FRAME_SIZE);
                page += PAGE;
                left -= 1;
            }
        }
        Ok(())
    }

    /// The frame behind `va` for the kernel to fill (exec): mapped with its area's
    /// protection, allocated zeroed if absent; the PTE's write permission is not needed.
    pub fn populate(&mut self, va: u64) -> Result<FrameRef, Errno> {
        let area = self.area(va).cloned().ok_or(Errno::EFAULT)?;
        let page = page_down(va);
        if let Some((pfn, _)) = self.space.lookup(page) {
            return FrameRef::new(frames(), pfn).map_err(|_| Errno::EFAULT);
        }
        let frame = alloc_anon()?;
        frame.whole().zero();
        let pfn = frame.pfn();
        map_frame(&mut self.space, page, frame, area.prot.pte(area.prot.write))?;
        FrameRef::new(frames(), pfn).map_err(|_| Errno::EFAULT)
    }

    /// Write `data` at `va` from the kernel (exec: segments and the initial stack).
    pub fn write_bytes(&mut self, mut va: u64, mut data: &[u8]) -> Result<(), Errno> {
        while !data.is_empty() {
            let off = (va % PAGE) as usize;
            let n = data.len().min(FRAME_SIZE - off);
            self.populate(va)?.piece(off, n).write(0, &data[..n]);
            va += n as u64;
            data = &data[n..];
        }
        Ok(())
    }

    /// A copy-on-write duplicate for a forked child.
    pub fn fork(&mut self) -> Result<MemoryMap, Errno> {
        self.drop_stale_mappings();
        let mut child = MemoryMap::new()?;
        child.areas = self.areas.clone();
        for a in child.areas.values() {
            if let Kind::File { file, .. } = &a.kind {
                super::rmap::register(file.cache().id(), &child.stale);
            }
        }
        child.brk_base = self.brk_base;
        child.brk = self.brk;
        self.for_each_chunk(0, USER_END, |this, chunk| {
            this.fork_chunk(&mut child, chunk)
        })?;
        self.space.flush_all();
        Ok(child)
    }

    fn fork_chunk(
        &mut self,
        child: &mut MemoryMap,
        chunk: &[(u64, Pfn, PteFlags)],
    ) -> Result<(), Errno> {
        for &(va, pfn, flags) in chunk {
            let desc = frames().table().get(pfn).ok_or(Errno::EFAULT)?;
            if self.area(va).is_some_and(|a| a.kind.is_shared()) {
                // Shared pages stay shared: both map the same frame.
                frames().get(pfn).map_err(|_| Errno::EFAULT)?;
                if let Err(e) = child.space.map_flags(va, pfn, flags) {
                    let _ = frames().put(pfn);
                    return Err(map_errno(e));
                }
                continue;
            }
            // Every private page becomes a copy-on-write share, even a read-only one: a
            // later mprotect must not make a shared frame writable in place.
            if desc.pincount() > 0 {
                // Under DMA: the child gets its own copy now, the parent keeps the frame.
                let new = alloc_anon()?;
                new.copy_from(&FrameRef::new(frames(), pfn).map_err(|_| Errno::EFAULT)?);
                counters::add(Counter::DataCopyBytes, PAGE);
                map_frame(&mut child.space, va, new, flags)?;
                continue;
            }
            let shared = (flags - PteFlags::WRITABLE) | COW;
            frames().get(pfn).map_err(|_| Errno::EFAULT)?;
            if let Err(e) = child.space.map_flags(va, pfn, shared) {
                let _ = frames().put(pfn);
                return Err(map_errno(e));
            }
            if shared != flags {
                self.space.set_flags(va, shared).map_err(map_errno)?;
            }
        }
        Ok(())
    }

    /// Pages of shared file mappings in `[start, end)` that were stored to since the last
    /// look (the CPU set their PTE dirty bit) become dirty page-cache pages. Returns the
    /// files touched.
    pub fn sync_shared(&mut self, start: u64, end: u64) -> alloc::vec::Vec<Arc<dyn MappedFile>> {
        let mut files: alloc::vec::Vec<Arc<dyn MappedFile>> = alloc::vec::Vec::new();
        let _ = self.for_each_chunk(start, end, |this, chunk| {
            this.sync_shared_chunk(chunk, &mut files);
            Ok(())
        });
        self.space.flush_all();
        files
    }

    fn sync_shared_chunk(
        &mut self,
        chunk: &[(u64, Pfn, PteFlags)],
        files: &mut alloc::vec::Vec<Arc<dyn MappedFile>>,
    ) {
        for &(va, pfn, flags) in chunk {
            if !flags.contains(PteFlags::DIRTY) {
                continue;
            }
            let Some(area) = self.area(va) else { continue };
            let Some((file, pgoff)) = area.kind.shared_file() else {
                continue;
            };
            let index = pgoff + (va - area.start) / PAGE;
            let file = file.clone();
            file.cache().mapped_page_dirtied(index, pfn);
            let _ = self.space.set_flags(va, flags - PteFlags::DIRTY);
            if !files.iter().any(|f| Arc::ptr_eq(f, &file)) {
                files.push(file);
            }
        }
    }

    /// Unmap `[start, end)` (page-aligned) and drop the frames' references.
    fn unmap_range(&mut self, start: u64, end: u64) {
        self.sync_shared(start, end);
        let _ = self.for_each_chunk(start, end, |this, chunk| {
            for &(va, _, _) in chunk {
                if let Ok(pfn) = this.space.unmap(va) {
                    let _ = frames().put(pfn);
                }
            }
            Ok(())
        });
    }

    /// munmap: remove areas and pages in `[addr, addr + len)`.
    pub fn munmap(&mut self, addr: u64, len: u64) -> Result<(), Errno> {
        if !addr.is_multiple_of(PAGE) || len == 0 {
            return Err(Errno::EINVAL);
        }
        let end = page_up(addr.checked_add(len).ok_or(Errno::EINVAL)?).ok_or(Errno::EINVAL)?;
        if end > USER_END {
            return Err(Errno::EINVAL);
        }
        self.split_at(addr);
        self.split_at(end);
        // Pages first (shared ones hand their dirty state to the page cache, which needs
        // the areas), then the areas.
        self.unmap_range(addr, end);
        let starts: alloc::vec::Vec<u64> = self.areas.range(addr..end).map(|(s, _)| *s).collect();
        for s in starts {
            self.areas.remove(&s);
        }
        Ok(())
    }

    /// mprotect: change the protection of every page in `[addr, addr + len)`, which must be
    /// fully covered by areas (else ENOMEM, as Linux).
    pub fn mprotect(&mut self, addr: u64, len: u64, prot: Prot) -> Result<(), Errno> {
        if !addr.is_multiple_of(PAGE) {
            return Err(Errno::EINVAL);
        }
        let end = page_up(addr.checked_add(len).ok_or(Errno::ENOMEM)?).ok_or(Errno::ENOMEM)?;
        if end > USER_END {
            return Err(Errno::ENOMEM);
        }
        let mut at = addr;
        while at < end {
            let a = self.area(at).ok_or(Errno::ENOMEM)?;
            if prot.write
                && let Kind::File {
                    shared: true,
                    may_write: false,
                    ..
                } = a.kind
            {
                // A shared mapping of a file opened read-only stays read-only.
                return Err(Errno::EACCES);
            }
            at = a.end;
        }
        self.split_at(addr);
        self.split_at(end);
        for (_, a) in self.areas.range_mut(addr..end) {
            a.prot = prot;
        }
        self.for_each_chunk(addr, end, |this, chunk| this.protect_chunk(chunk, prot))?;
        self.space.flush_all();
        Ok(())
    }

    fn protect_chunk(&mut self, chunk: &[(u64, Pfn, PteFlags)], prot: Prot) -> Result<(), Errno> {
        for &(va, pfn, flags) in chunk {
            let shared = self.area(va).is_some_and(|a| a.kind.is_shared());
            let f = if shared {
                // Shared pages keep their dirty bit (stores not yet seen by msync). An
                // aliased file frame stays read-only: the first store faults and breaks
                // the share.
                prot.pte(prot.write && !aliased(pfn)) | (flags & PteFlags::DIRTY)
            } else {
                // A private page becomes writable in place only if this address space
                // holds its frame's only reference; otherwise the next write faults and
                // copies (decided from the frame's state, never from a sticky flag).
                let mut f = prot.pte(prot.write && exclusively_ours(pfn));
                if flags.contains(COW) {
                    f |= COW;
                }
                f
            };
            self.space.set_flags(va, f).map_err(map_errno)?;
        }
        Ok(())
    }

    /// mmap of anonymous memory: `len` bytes at `hint` (exactly there with `fixed`, else
    /// the highest free range below the mmap top).
    pub fn mmap_anon(
        &mut self,
        hint: u64,
        len: u64,
        prot: Prot,
        fixed: bool,
    ) -> Result<u64, Errno> {
        self.mmap(hint, len, prot, fixed, Kind::Anon)
    }

    /// mmap: `len` bytes of `kind` at `hint` (exactly there with `fixed`, else the highest
    /// free range below the mmap top).
    pub fn mmap(
        &mut self,
        hint: u64,
        len: u64,
        prot: Prot,
        fixed: bool,
        kind: Kind,
    ) -> Result<u64, Errno> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_up(len).ok_or(Errno::ENOMEM)?;
        if len > USER_LIMIT {
            return Err(Errno::ENOMEM);
        }
        let start = if fixed {
            if !hint.is_multiple_of(PAGE)
                || hint < USER_MIN
                || hint.checked_add(len).is_none_or(|e| e > USER_LIMIT)
            {
                return Err(Errno::EINVAL);
            }
            self.munmap(hint, len)?;
            hint
        } else {
            self.free_range(len).ok_or(Errno::ENOMEM)?
        };
        self.add_area(start, start + len, prot, kind)?;
        Ok(start)
    }

    /// The highest free range of `len` bytes below the mmap top.
    fn free_range(&self, len: u64) -> Option<u64> {
        let mut top = MMAP_TOP;
        for (_, a) in self.areas.range(..MMAP_TOP).rev() {
            if a.end <= top && top - a.end >= len {
                return Some(top - len);
            }
            top = top.min(a.start);
        }
        (top >= USER_MIN + len).then(|| top - len)
    }

    /// brk: move the program break (never below its base, never over another area);
    /// returns the break now in effect.
    pub fn set_brk(&mut self, new: u64) -> u64 {
        if new < self.brk_base || new - self.brk_base > BRK_MAX {
            return self.brk;
        }
        let (Some(old_end), Some(new_end)) = (page_up(self.brk), page_up(new)) else {
            return self.brk;
        };
        if new_end > old_end {
            if self.overlaps(old_end, new_end) {
                return self.brk;
            }
            // Extend the heap area (or start it).
            let base = page_up(self.brk_base).unwrap_or(self.brk_base);
            if let Some(a) = self.areas.get_mut(&base).filter(|a| a.end == old_end) {
                a.end = new_end;
            } else if self
                .add_area(old_end, new_end, Prot::RW, Kind::Anon)
                .is_err()
            {
                return self.brk;
            }
        } else if new_end < old_end {
            let _ = self.munmap(new_end, old_end - new_end);
        }
        self.brk = new;
        new
    }

    /// Discard the pages of `[addr, addr + len)` (MADV_DONTNEED): private pages read back
    /// as zero (anonymous) or as the file's contents; shared file pages are written to the
    /// page cache first.
    pub fn discard(&mut self, addr: u64, len: u64) -> Result<(), Errno> {
        let end = page_up(addr.checked_add(len).ok_or(Errno::EINVAL)?).ok_or(Errno::EINVAL)?;
        if !addr.is_multiple_of(PAGE) || end > USER_END {
            return Err(Errno::EINVAL);
        }
        self.unmap_range(addr, end);
        Ok(())
    }

    /// Drop every mapping and area (exec and exit).
    pub fn clear(&mut self) {
        self.unmap_range(0, USER_END);
        self.areas.clear();
    }
}

impl Drop for MemoryMap {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Whether the mapping holding `pfn` is its only user: a private anonymous frame with one
/// reference and no DMA pin. Page-cache frames are never ours alone while cached (the
/// cache holds a reference).
/// Whether `pfn` is shared by page-cache pages of two or more files (an alias).
fn aliased(pfn: Pfn) -> bool {
    frames().table().get(pfn).is_some_and(|d| d.sharers() > 1)
}

fn exclusively_ours(pfn: Pfn) -> bool {
    frames()
        .table()
        .get(pfn)
        .is_some_and(|d| d.refcount() == 1 && d.pincount() == 0)
}

/// A frame for anonymous user memory, under the `User` allocation policy: clean
/// page-cache pages are dropped and dirty ones written back before the OOM killer is
/// called; ENOMEM when the caller's own process is the one to go.
fn alloc_anon() -> Result<FrameRef, Errno> {
    crate::memory::alloc_frame_ref(Owner::Anon, crate::memory::Gfp::User).map_err(|_| Errno::ENOMEM)
}

/// Map `frame` at `page`: the page-table entry takes over the handle's reference (it is
/// dropped if the mapping fails).
fn map_frame(
    space: &mut AddressSpace,
    page: u64,
    frame: FrameRef,
    flags: PteFlags,
) -> Result<(), Errno> {
    let pfn = frame.into_raw();
    space.map_flags(page, pfn, flags).map_err(|e| {
        let _ = frames().put(pfn);
        map_errno(e)
    })
}
