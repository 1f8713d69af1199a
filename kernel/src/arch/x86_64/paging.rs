//! Page tables: the bootloader's physical-memory map (every frame is reachable at
//! `PHYS_OFFSET + phys`), the kernel's own mappings (heap), and address spaces for
//! processes that share the kernel's upper half.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use mm::frame::{FRAME_SIZE, Pfn};
use mm::frame_alloc::FrameError;
use mm::frame_table::{FrameDescriptor, Owner};
use mm::{Pin, PinnedRange};
use spin::Mutex;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::mapper::{MapToError, TranslateResult, UnmapError};
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame, Size4KiB,
    Translate,
};
use x86_64::{PhysAddr, VirtAddr};

use super::physmem::Gfp;

pub use x86_64::structures::paging::PageTableFlags as PteFlags;

static PHYS_OFFSET: AtomicU64 = AtomicU64::new(0);
static PHYS_MAP_END: AtomicU64 = AtomicU64::new(0);
static KERNEL_P4: AtomicU64 = AtomicU64::new(0);

/// The kernel's view of its own page tables (upper half), for mapping kernel pages.
static KERNEL_MAPPER: Mutex<Option<OffsetPageTable<'static>>> = Mutex::new(None);

/// Record the physical-memory map offset and the active (bootloader-built) page table.
pub fn init(phys_offset: u64, phys_map_end: u64) {
    PHYS_OFFSET.store(phys_offset, Ordering::Relaxed);
    PHYS_MAP_END.store(phys_map_end, Ordering::Relaxed);
    let (frame, _) = Cr3::read();
    KERNEL_P4.store(frame.start_address().as_u64(), Ordering::Relaxed);
    // SAFETY: the bootloader maps all physical memory at `phys_offset`, and CR3 points at
    // the live level-4 table; only this mapper (behind its lock) modifies the kernel's
    // tables from now on.
    let mapper = unsafe {
        OffsetPageTable::new(
            &mut *table_ptr(frame.start_address().as_u64()),
            VirtAddr::new(phys_offset),
        )
    };
    *KERNEL_MAPPER.lock() = Some(mapper);
}

/// The virtual address of physical address `phys`: through the physical-memory map, or,
/// for device memory above it (64-bit BARs that firmware placed high), through a mapping
/// made by [`map_mmio`].
#[inline]
pub fn phys_to_virt(phys: u64) -> u64 {
    if phys < PHYS_MAP_END.load(Ordering::Relaxed) {
        return PHYS_OFFSET.load(Ordering::Relaxed) + phys;
    }
    mmio_lookup(phys).unwrap_or_else(|| {
        log::error!("physical address {phys:#x} is neither RAM nor mapped device memory");
        PHYS_OFFSET.load(Ordering::Relaxed) + phys
    })
}

/// A device-memory range mapped outside the physical-memory map.
#[derive(Clone, Copy)]
struct MmioRegion {
    phys: u64,
    size: u64,
    virt: u64,
}

struct MmioWindow {
    regions: alloc::vec::Vec<MmioRegion>,
    /// Next free address in the window's level-4 slot (0: no slot yet).
    next: u64,
    end: u64,
}

static MMIO: Mutex<MmioWindow> = Mutex::new(MmioWindow {
    regions: alloc::vec::Vec::new(),
    next: 0,
    end: 0,
});

fn mmio_lookup(phys: u64) -> Option<u64> {
    crate::arch::cpu::without_interrupts(|| {
        MMIO.lock()
            .regions
            .iter()
            .find(|r| phys >= r.phys && phys - r.phys < r.size)
            .map(|r| r.virt + (phys - r.phys))
    })
}

/// Make device memory `[phys, phys + size)` reachable through [`phys_to_virt`]: ranges
/// inside the physical-memory map already are; ranges above it get an uncached mapping in
/// a kernel slot of their own.
pub fn map_mmio(phys: u64, size: u64) -> Result<u64, MapError> {
    let end = phys.checked_add(size).ok_or(MapError::BadAddress)?;
    if end <= PHYS_MAP_END.load(Ordering::Relaxed) {
        return Ok(phys_to_virt(phys));
    }
    if let Some(v) = mmio_lookup(phys).filter(|_| mmio_lookup(end - 1).is_some()) {
        return Ok(v);
    }
    let first = phys & !(FRAME_SIZE as u64 - 1);
    let pages = (end - first).div_ceil(FRAME_SIZE as u64);
    let base = crate::arch::cpu::without_interrupts(|| -> Result<u64, MapError> {
        let mut w = MMIO.lock();
        if w.next == 0 {
            drop(w);
            let slot = reserve_kernel_slot().ok_or(MapError::OutOfMemory)?;
            w = MMIO.lock();
            w.next = slot;
            w.end = slot + (1 << 39);
        }
        let base = w.next;
        if base + pages * FRAME_SIZE as u64 > w.end {
            return Err(MapError::OutOfMemory);
        }
        w.next = base + (pages + 1) * FRAME_SIZE as u64; // plus a guard page
        Ok(base)
    })?;
    let flags = PageTableFlags::PRESENT
        | PageTableFlags::WRITABLE
        | PageTableFlags::NO_EXECUTE
        | PageTableFlags::NO_CACHE
        | PageTableFlags::WRITE_THROUGH;
    {
        let mut guard = KERNEL_MAPPER.lock();
        let mapper = guard.as_mut().ok_or(MapError::BadAddress)?;
        for i in 0..pages {
            let page =
                Page::<Size4KiB>::containing_address(VirtAddr::new(base + i * FRAME_SIZE as u64));
            let frame = PhysFrame::containing_address(PhysAddr::new(first + i * FRAME_SIZE as u64));
            // SAFETY: the virtual range is fresh, in a kernel slot reserved for device
            // memory; the physical range is a device BAR, not RAM, so no Rust object aliases it.
            unsafe { mapper.map_to(page, frame, flags, &mut TableFrames(Gfp::Atomic)) }
                .map_err(map_err)?
                .flush();
        }
    }
    let virt = base + (phys - first);
    crate::arch::cpu::without_interrupts(|| {
        MMIO.lock().regions.push(MmioRegion { phys, size, virt })
    });
    log::debug!("mmio {phys:#x}+{size:#x} mapped at {virt:#x}");
    Ok(virt)
}

/// The physical address behind `virt` if it lies in the physical-memory map.
pub fn virt_to_phys_map(virt: u64) -> Option<u64> {
    let offset = PHYS_OFFSET.load(Ordering::Relaxed);
    let end = offset.checked_add(PHYS_MAP_END.load(Ordering::Relaxed))?;
    (virt >= offset && virt < end).then(|| virt - offset)
}

fn table_ptr(phys: u64) -> *mut PageTable {
    phys_to_virt(phys) as *mut PageTable
}

/// Turn `count` descriptors' worth of physical memory at `phys` into the frame descriptor
/// table, every record initialised as reserved.
///
/// # Safety
/// `count * size_of::<FrameDescriptor>()` bytes at `phys` are usable RAM under the
/// physical-memory map that nothing else uses, now or later (they are never given to the
/// frame allocator).
pub unsafe fn frame_table_storage(phys: u64, count: usize) -> &'static [FrameDescriptor] {
    let ptr = phys_to_virt(phys) as *mut FrameDescriptor;
    // SAFETY: the caller's contract: the memory is mapped, exclusively ours and lives
    // forever; every record is written before the slice is created.
    unsafe {
        for i in 0..count {
            ptr.add(i).write(FrameDescriptor::new_reserved());
        }
        core::slice::from_raw_parts(ptr, count)
    }
}

/// Page-table frames come from the kernel's frame allocator, under the policy of the
/// address space they serve: `Atomic` for the kernel's (mapped with its locks held),
/// `User` for a process's (which may reclaim, like the process's own pages).
struct TableFrames(Gfp);

// SAFETY: every frame returned is freshly allocated, unused and owned by the page table
// that receives it (the mapper zeroes new tables before use).
unsafe impl FrameAllocator<Size4KiB> for TableFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let pfn = super::physmem::alloc_frame(Owner::PageTable, self.0).ok()?;
        Some(PhysFrame::containing_address(PhysAddr::new(pfn.addr())))
    }
}

/// Page permissions for [`AddressSpace::map`] and [`map_kernel_page`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub write: bool,
    pub user: bool,
    pub execute: bool,
}

impl Access {
    fn flags(self) -> PageTableFlags {
        let mut f = PageTableFlags::PRESENT;
        if self.write {
            f |= PageTableFlags::WRITABLE;
        }
        if self.user {
            f |= PageTableFlags::USER_ACCESSIBLE;
        }
        if !self.execute {
            f |= PageTableFlags::NO_EXECUTE;
        }
        f
    }
}

/// Why a mapping could not be made or removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// No frame for a page table.
    OutOfMemory,
    /// The page is already mapped.
    AlreadyMapped,
    /// The page is not mapped.
    NotMapped,
    /// The address is not in the part of the address space the operation may touch.
    BadAddress,
}

fn map_err(e: MapToError<Size4KiB>) -> MapError {
    match e {
        MapToError::FrameAllocationFailed => MapError::OutOfMemory,
        MapToError::PageAlreadyMapped(_) | MapToError::ParentEntryHugePage => {
            MapError::AlreadyMapped
        }
    }
}

/// End of the user half (exclusive).
pub const USER_END: u64 = 0x0000_8000_0000_0000;

/// Lowest address of the kernel's half.
pub const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;

/// An upper-half level-4 slot that the bootloader left empty, for a kernel region
/// (512 GiB of virtual space). Creates its level-3 table so that every address space made
/// afterwards shares whatever is mapped in it later.
pub fn reserve_kernel_slot() -> Option<u64> {
    let mut guard = KERNEL_MAPPER.lock();
    let mapper = guard.as_mut()?;
    let p4 = mapper.level_4_table_mut();
    let idx = (256..512).rev().find(|&i| p4[i].is_unused())?;
    let pfn = super::physmem::alloc_frame(Owner::PageTable, Gfp::Atomic).ok()?;
    // SAFETY: a page table just allocated here, not yet linked into any table.
    unsafe { mm::phys::zero(pfn, 0, FRAME_SIZE) };
    p4[idx].set_addr(
        PhysAddr::new(pfn.addr()),
        PageTableFlags::PRESENT | PageTableFlags::WRITABLE,
    );
    // Sign-extend the 48-bit address.
    Some(0xffff_0000_0000_0000 | ((idx as u64) << 39))
}

/// Map `pfn` at kernel address `va`.
pub fn map_kernel_page(va: u64, pfn: Pfn, access: Access) -> Result<(), MapError> {
    // Interrupts off while the kernel mapper is locked: an interrupt handler growing the
    // heap takes the same lock.
    crate::arch::cpu::without_interrupts(|| map_kernel_page_locked(va, pfn, access))
}

fn map_kernel_page_locked(va: u64, pfn: Pfn, access: Access) -> Result<(), MapError> {
    if va < KERNEL_HALF {
        return Err(MapError::BadAddress);
    }
    let mut guard = KERNEL_MAPPER.lock();
    let mapper = guard.as_mut().ok_or(MapError::BadAddress)?;
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
    let frame = PhysFrame::containing_address(PhysAddr::new(pfn.addr()));
    // SAFETY: `va` is in the kernel half inside a slot reserved for kernel regions, so the
    // new mapping cannot alias memory that Rust code already references.
    let flush =
        unsafe { mapper.map_to(page, frame, access.flags(), &mut TableFrames(Gfp::Atomic)) }
            .map_err(map_err)?;
    flush.flush();
    Ok(())
}

/// Remove the kernel mapping at `va`, returning the frame that was mapped there.
pub fn unmap_kernel_page(va: u64) -> Result<Pfn, MapError> {
    crate::arch::cpu::without_interrupts(|| unmap_kernel_page_locked(va))
}

fn unmap_kernel_page_locked(va: u64) -> Result<Pfn, MapError> {
    if va < KERNEL_HALF {
        return Err(MapError::BadAddress);
    }
    let mut guard = KERNEL_MAPPER.lock();
    let mapper = guard.as_mut().ok_or(MapError::BadAddress)?;
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
    let (frame, flush) = mapper.unmap(page).map_err(|e| match e {
        UnmapError::PageNotMapped => MapError::NotMapped,
        _ => MapError::BadAddress,
    })?;
    flush.flush();
    Ok(Pfn::from_addr(frame.start_address().as_u64()))
}

/// A user address space: its own lower half, the kernel's upper half shared.
pub struct AddressSpace {
    p4: Pfn,
    /// Pages mapped in the lower half (the resident set), shared with whoever needs to
    /// read it without this address space's lock (the OOM killer).
    resident: Arc<AtomicU64>,
}

impl AddressSpace {
    /// A new address space with an empty lower half.
    pub fn new() -> Result<AddressSpace, MapError> {
        let pfn = super::physmem::alloc_frame(Owner::PageTable, Gfp::User)
            .map_err(|_| MapError::OutOfMemory)?;
        // SAFETY: a page table just allocated here, not yet loaded or linked anywhere.
        unsafe { mm::phys::zero(pfn, 0, FRAME_SIZE) };
        let kernel = table_ptr(KERNEL_P4.load(Ordering::Relaxed));
        let new = table_ptr(pfn.addr());
        // SAFETY: both tables are mapped by the physical-memory map; the new one is ours
        // alone; the kernel's upper-half entries are only read (their lower levels are
        // shared, which is the point).
        unsafe {
            let (new, kernel) = (&mut *new, &*kernel);
            for i in 256..512 {
                new[i] = kernel[i].clone();
            }
        }
        Ok(AddressSpace {
            p4: pfn,
            resident: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The counter of pages mapped in this address space (its resident set).
    pub fn resident(&self) -> &Arc<AtomicU64> {
        &self.resident
    }

    fn mapper(&mut self) -> OffsetPageTable<'_> {
        // SAFETY: `p4` is this address space's level-4 table, reached through the
        // physical-memory map; `&mut self` makes this the only mapper for it.
        unsafe {
            OffsetPageTable::new(
                &mut *table_ptr(self.p4.addr()),
                VirtAddr::new(PHYS_OFFSET.load(Ordering::Relaxed)),
            )
        }
    }

    /// Map `pfn` at user address `va` (must be in the lower half).
    pub fn map(&mut self, va: u64, pfn: Pfn, access: Access) -> Result<(), MapError> {
        self.map_flags(va, pfn, access.flags())
    }

    /// Map `pfn` at user address `va` with exactly `flags` (plus PRESENT).
    pub fn map_flags(&mut self, va: u64, pfn: Pfn, flags: PageTableFlags) -> Result<(), MapError> {
        if va >= USER_END {
            return Err(MapError::BadAddress);
        }
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
        let frame = PhysFrame::containing_address(PhysAddr::new(pfn.addr()));
        let flags = flags | PageTableFlags::PRESENT;
        let parents =
            PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::USER_ACCESSIBLE;
        // SAFETY: lower-half pages of a user address space are never referenced by kernel
        // Rust code except through explicit, checked copies.
        let flush = unsafe {
            self.mapper().map_to_with_table_flags(
                page,
                frame,
                flags,
                parents,
                &mut TableFrames(Gfp::User),
            )
        }
        .map_err(map_err)?;
        self.resident.fetch_add(1, Ordering::Relaxed);
        // The caller's reference becomes the mapping's: counted apart (frames that are
        // not managed RAM, which tests may map, have no count).
        let _ = super::physmem::frames().add_mapping(pfn);
        if self.is_active() {
            flush.flush();
        } else {
            flush.ignore();
        }
        Ok(())
    }

    /// Remove the mapping at `va`, returning the frame that was mapped.
    pub fn unmap(&mut self, va: u64) -> Result<Pfn, MapError> {
        if va >= 0x0000_8000_0000_0000 {
            return Err(MapError::BadAddress);
        }
        let active = self.is_active();
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
        let (frame, flush) = self.mapper().unmap(page).map_err(|e| match e {
            UnmapError::PageNotMapped => MapError::NotMapped,
            _ => MapError::BadAddress,
        })?;
        self.resident.fetch_sub(1, Ordering::Relaxed);
        if active {
            flush.flush();
        } else {
            flush.ignore();
        }
        let pfn = Pfn::from_addr(frame.start_address().as_u64());
        // The mapping's reference goes back to the caller, who puts it.
        let _ = super::physmem::frames().remove_mapping(pfn);
        Ok(pfn)
    }

    /// The physical address `va` maps to, if any.
    pub fn translate(&mut self, va: u64) -> Option<u64> {
        match self.mapper().translate(VirtAddr::new(va)) {
            TranslateResult::Mapped { frame, offset, .. } => {
                Some(frame.start_address().as_u64() + offset)
            }
            _ => None,
        }
    }

    /// The frame and flags of the page mapped at `va`, if any.
    pub fn lookup(&mut self, va: u64) -> Option<(Pfn, PageTableFlags)> {
        if va >= USER_END {
            return None;
        }
        match self.mapper().translate(VirtAddr::new(va)) {
            TranslateResult::Mapped { frame, flags, .. } => {
                Some((Pfn::from_addr(frame.start_address().as_u64()), flags))
            }
            _ => None,
        }
    }

    /// The 4 KiB pages mapped from the page-aligned user address `va` on, in order, handed
    /// to `f` as (frame, flags) while `f` returns true: at most `max` pages, and never past
    /// the end of `va`'s leaf table (2 MiB). Stops at the first page not mapped. Returns the
    /// pages `f` accepted.
    ///
    /// The leaf table is reached once for the whole run, where [`AddressSpace::lookup`]
    /// walks all four levels for each page: pinning a 1 MiB buffer for DMA costs 256
    /// entry reads instead of 1024.
    fn leaf_run(
        &mut self,
        va: u64,
        max: usize,
        mut f: impl FnMut(Pfn, PageTableFlags) -> bool,
    ) -> usize {
        if va >= USER_END || !va.is_multiple_of(FRAME_SIZE as u64) {
            return 0;
        }
        let mut table = self.p4.addr();
        for level in [4u64, 3, 2] {
            let i = ((va >> (12 + 9 * (level - 1))) & 511) as usize;
            // SAFETY: `table` is a page table of this address space (the root, or a
            // table a present non-huge entry of it points to) reached through the
            // physical-memory map; `&mut self` excludes writers while we read.
            let entry = unsafe { &(&*table_ptr(table))[i] };
            let flags = entry.flags();
            if !flags.contains(PageTableFlags::PRESENT) || flags.contains(PageTableFlags::HUGE_PAGE)
            {
                return 0;
            }
            table = entry.addr().as_u64();
        }
        let first = ((va >> 12) & 511) as usize;
        let n = max.min(512 - first);
        // SAFETY: as above: the leaf table of `va`, only read.
        let leaf = unsafe { &*table_ptr(table) };
        let mut accepted = 0;
        for entry in leaf.iter().skip(first).take(n) {
            let flags = entry.flags();
            if !flags.contains(PageTableFlags::PRESENT)
                || !f(Pfn::from_addr(entry.addr().as_u64()), flags)
            {
                break;
            }
            accepted += 1;
        }
        accepted
    }

    /// Pin for DMA, whole, into `out`, the pages mapped from the page-aligned user address
    /// `va` on whose entries `serves` accepts, as [`AddressSpace::leaf_run`] walks them
    /// (at most `max`, inside one leaf table): the pages pinned, or the first error.
    pub fn pin_run(
        &mut self,
        va: u64,
        max: usize,
        serves: impl Fn(PageTableFlags) -> bool,
        out: &mut PinnedRange,
    ) -> Result<usize, FrameError> {
        let frames = super::physmem::frames();
        let mut failed = None;
        let pinned = self.leaf_run(va, max, |pfn, flags| {
            if !serves(flags) {
                return false;
            }
            // SAFETY: a present entry of this address space maps `pfn` and owns a
            // reference to it (every user mapping does), and `&mut self` keeps the entry,
            // and so the frame, in place until the pin is taken.
            match unsafe { Pin::mapped(frames, pfn) } {
                Ok(pin) => {
                    out.push(pin, 0, FRAME_SIZE);
                    true
                }
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        });
        failed.map_or(Ok(pinned), Err)
    }

    /// Replace the flags of the page mapped at `va` (PRESENT is kept).
    pub fn set_flags(&mut self, va: u64, flags: PageTableFlags) -> Result<(), MapError> {
        if va >= USER_END {
            return Err(MapError::BadAddress);
        }
        let active = self.is_active();
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
        let flags = flags | PageTableFlags::PRESENT;
        // SAFETY: changing permissions of a lower-half user page; kernel Rust code holds
        // no references into user pages.
        let flush =
            unsafe { self.mapper().update_flags(page, flags) }.map_err(|_| MapError::NotMapped)?;
        if active {
            flush.flush();
        } else {
            flush.ignore();
        }
        Ok(())
    }

    /// The first `limit` present user mappings in `[start, end)`: (address, frame, flags),
    /// in address order. Callers walk big ranges in chunks, so the kernel heap never has
    /// to hold a whole address space's worth of entries.
    pub fn mappings(
        &mut self,
        start: u64,
        end: u64,
        limit: usize,
    ) -> alloc::vec::Vec<(u64, Pfn, PageTableFlags)> {
        let mut out = alloc::vec::Vec::with_capacity(limit.min(512));
        let end = end.min(USER_END);
        fn walk(
            table: u64,
            level: u8,
            base: u64,
            start: u64,
            end: u64,
            limit: usize,
            out: &mut alloc::vec::Vec<(u64, Pfn, PageTableFlags)>,
        ) {
            let span = 1u64 << (12 + 9 * (level as u64 - 1));
            let t = table_ptr(table);
            // From the entry that covers `start` (the ones before it end below it).
            let first = start.saturating_sub(base) / span;
            for i in first.min(512)..512u64 {
                let lo = base + i * span;
                if lo >= end || lo.checked_add(span).is_none() || out.len() >= limit {
                    break;
                }
                // SAFETY: `table` is a page table of this address space reached through the
                // physical-memory map; `&mut self` on the address space excludes writers.
                let entry = unsafe { &(&*t)[i as usize] };
                if entry.is_unused() || !entry.flags().contains(PageTableFlags::PRESENT) {
                    continue;
                }
                if level == 1 {
                    out.push((lo, Pfn::from_addr(entry.addr().as_u64()), entry.flags()));
                } else if !entry.flags().contains(PageTableFlags::HUGE_PAGE) {
                    walk(entry.addr().as_u64(), level - 1, lo, start, end, limit, out);
                }
            }
        }
        walk(self.p4.addr(), 4, 0, start, end, limit, &mut out);
        out
    }

    /// Flush this address space's TLB entries (if it is the live one).
    pub fn flush_all(&self) {
        if self.is_active() {
            x86_64::instructions::tlb::flush_all();
        }
    }

    /// Physical address of the root table (the CR3 value).
    pub fn root(&self) -> u64 {
        self.p4.addr()
    }

    /// Whether this is the address space the CPU is using.
    pub fn is_active(&self) -> bool {
        Cr3::read().0.start_address().as_u64() == self.p4.addr()
    }

    /// Switch the CPU to this address space.
    pub fn activate(&self) {
        let frame = PhysFrame::containing_address(PhysAddr::new(self.p4.addr()));
        // SAFETY: the upper half (kernel code, data, stacks, physical map) is identical in
        // every address space, so kernel execution continues unaffected.
        unsafe { Cr3::write(frame, Cr3Flags::empty()) }
    }
}

/// Switch the CPU to the address space whose root table is at `root` (from
/// [`AddressSpace::root`]), if it is not the live one already.
pub fn activate_root(root: u64) {
    if Cr3::read().0.start_address().as_u64() == root {
        return;
    }
    let frame = PhysFrame::containing_address(PhysAddr::new(root));
    // SAFETY: `root` is the level-4 table of a live AddressSpace (the scheduler takes it
    // from the process it switches to, which keeps its address space alive); the upper
    // half is identical in every address space.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) }
}

/// Switch the CPU back to the kernel's own address space.
pub fn activate_kernel() {
    let frame = PhysFrame::containing_address(PhysAddr::new(KERNEL_P4.load(Ordering::Relaxed)));
    // SAFETY: the kernel's table maps everything the kernel uses.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) }
}

impl Drop for AddressSpace {
    /// Frees the lower half's page-table frames and the level-4 table. Frames still mapped
    /// belong to whoever mapped them and are not touched.
    fn drop(&mut self) {
        if self.is_active() {
            activate_kernel();
        }
        let frames = super::physmem::frames();
        fn free_level(frames: &mm::frame_alloc::FrameAllocator, table: u64, level: u8) {
            let t = table_ptr(table);
            for i in 0..512 {
                // SAFETY: `table` is a page table of this address space, reachable through
                // the physical-memory map; nothing else uses it during drop.
                let entry = unsafe { &(&*t)[i] };
                if entry.is_unused() || entry.flags().contains(PageTableFlags::HUGE_PAGE) {
                    continue;
                }
                if level > 2 {
                    free_level(frames, entry.addr().as_u64(), level - 1);
                }
                if level > 1 {
                    let _ = frames.put(Pfn::from_addr(entry.addr().as_u64()));
                }
            }
        }
        let p4 = table_ptr(self.p4.addr());
        for i in 0..256 {
            // SAFETY: as above.
            let entry = unsafe { &(&*p4)[i] };
            if !entry.is_unused() {
                free_level(frames, entry.addr().as_u64(), 3);
                let _ = frames.put(Pfn::from_addr(entry.addr().as_u64()));
            }
        }
        let _ = frames.put(self.p4);
    }
}

/// The bootloader's ramdisk (the initramfs) as bytes, from the boot information the
/// bootloader handed to the kernel's entry point (`ramdisk_addr`: where it mapped it,
/// `ramdisk_len`: its exact length).
pub fn ramdisk(boot_info: &bootloader_api::BootInfo) -> &'static [u8] {
    let addr = boot_info.ramdisk_addr.into_option().unwrap_or(0);
    let len = boot_info.ramdisk_len;
    if addr == 0 || len == 0 || addr < KERNEL_HALF {
        return &[];
    }
    // The bootloader mapped the ramdisk at `addr` (in the upper half, which every address
    // space shares) and marked its frames as used, so the frame allocator never hands them out.
    // SAFETY: mapped, never reused and never written: a shared slice for the rest of the
    // kernel's life is sound.
    unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) }
}

/// Read the aligned 8-byte word at virtual address `va` as the page tables active right
/// now map it, without ever faulting: the four levels are walked by hand (huge pages
/// included) and None comes back for anything not present or not RAM. For the sampling
/// profiler's frame-pointer walks from the timer interrupt, where a stray frame pointer
/// must not take the kernel down and no lock may be taken.
pub fn read_mapped_u64(va: u64) -> Option<u64> {
    if !va.is_multiple_of(8) {
        return None;
    }
    let canonical = (va as i64) << 16 >> 16 == va as i64;
    if !canonical {
        return None;
    }
    let end = PHYS_MAP_END.load(Ordering::Relaxed);
    let read = |phys: u64| -> Option<u64> {
        if phys.checked_add(8)? > end {
            return None;
        }
        // SAFETY: `phys` is 8-aligned RAM below the end of the physical-memory map,
        // which maps every such address; the read is a plain load of a u64 that may be
        // concurrently changed (it is only used as a hint).
        Some(unsafe { core::ptr::read_volatile(phys_to_virt(phys) as *const u64) })
    };
    let (root, _) = Cr3::read_raw();
    let mut table = root.start_address().as_u64();
    for level in (1..=4u32).rev() {
        let index = (va >> (12 + 9 * (level - 1))) & 0x1ff;
        let entry = read(table + index * 8)?;
        if entry & 1 == 0 {
            return None;
        }
        let addr = entry & 0x000f_ffff_ffff_f000;
        let huge = entry & (1 << 7) != 0 && (level == 2 || level == 3);
        if level == 1 || huge {
            let page = 1u64 << (12 + 9 * (level - 1));
            let base = if huge { addr & !(page - 1) } else { addr };
            return read(base + (va & (page - 1)));
        }
        table = addr;
    }
    None
}
