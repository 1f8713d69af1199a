//! virtio-blk over PCI. The `virtio-drivers` crate provides the PCI transport (feature
//! negotiation, device status, configuration space); the split virtqueue is this crate's
//! own ([`crate::virtqueue`]), so that every segment of a block request becomes a
//! descriptor pointing straight at the caller's physical frames (the crate's `VirtIOBlk`
//! takes one contiguous buffer per request, which would force a copy), with event indices
//! (`VIRTIO_F_EVENT_IDX`) where the device offers them. The queue is notified by one write
//! to its notify register, whose address is worked out once at probe time.
//!
//! Several requests are in flight at once (as many as the ring's descriptors allow); more
//! wait in a software queue. Completion is by MSI-X when the kernel supplies a message,
//! otherwise by polling [`BlockDevice::handle_interrupt`].

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::marker::PhantomData;

use bitflags::bitflags;
use spin::Mutex;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{
    ConfigurationAccess as VirtioCam, DeviceFunction, PciRoot,
};
use virtio_drivers::transport::{DeviceStatus, Transport};

use crate::block::{BlockDevice, BlockError, DeviceInfo, Op, Request, SECTOR_SIZE, validate};
use crate::hal::Hal;
use crate::mmio::RegisterWindow;
use crate::pci::{Bar, ConfigAccess, PciFunction};
use crate::virtqueue::{Buffer, SplitQueue};

/// Ring size. QEMU offers 256 by default; 128 fits every virtio-blk seen in practice.
const QUEUE_SIZE: usize = 128;
/// A request uses one descriptor for the header, one for the status byte, and one per
/// segment (no indirect descriptors).
const MAX_SEGMENTS: usize = QUEUE_SIZE - 2;
/// Bytes per header/status cell in the driver's DMA page(s).
const CELL: usize = 32;

const VIRTIO_BLK_T_IN: u32 = 0;
const VIRTIO_BLK_T_OUT: u32 = 1;
const VIRTIO_BLK_T_FLUSH: u32 = 4;
const VIRTIO_BLK_S_OK: u8 = 0;
const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// Offsets in `virtio_pci_common_cfg` that the transport crate does not expose.
const COMMON_MSIX_CONFIG: usize = 0x10;
const COMMON_QUEUE_SELECT: usize = 0x16;
const COMMON_QUEUE_MSIX_VECTOR: usize = 0x1A;
const COMMON_QUEUE_NOTIFY_OFF: usize = 0x1E;
/// Size of the common configuration structure (virtio 1.x, 4.1.4.3).
const COMMON_CFG_SIZE: usize = 0x38;
/// `cfg_type` of the vendor capabilities (4.1.4): common configuration, notifications.
const PCI_CAP_COMMON_CFG: u8 = 1;
const PCI_CAP_NOTIFY_CFG: u8 = 2;
const VIRTIO_NO_VECTOR: u16 = 0xFFFF;

bitflags! {
    /// Feature bits this driver understands.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Features: u64 {
        const SIZE_MAX = 1 << 1;
        const SEG_MAX = 1 << 2;
        const RO = 1 << 5;
        const BLK_SIZE = 1 << 6;
        const FLUSH = 1 << 9;
        const EVENT_IDX = 1 << 29;
        const VERSION_1 = 1 << 32;
    }
}

/// Why probing failed.
#[derive(Debug)]
pub enum VirtioBlkError {
    /// The transport could not be set up.
    Transport(String),
    /// The device is unusable (e.g. a block size other than 512).
    Unsupported(String),
    /// No memory for the ring or the request headers.
    NoMemory,
}

/// Lets `virtio-drivers` reach configuration space through the kernel's access method.
struct CamAdapter<'a, A: ConfigAccess + ?Sized>(&'a A);

impl<A: ConfigAccess + ?Sized> VirtioCam for CamAdapter<'_, A> {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        match crate::pci::Bdf::new(df.bus, df.device, df.function) {
            Some(bdf) => self.0.read32(bdf, offset as u16),
            None => u32::MAX,
        }
    }
    fn write_word(&mut self, df: DeviceFunction, offset: u8, data: u32) {
        if let Some(bdf) = crate::pci::Bdf::new(df.bus, df.device, df.function) {
            self.0.write32(bdf, offset as u16, data)
        }
    }
    unsafe fn unsafe_clone(&self) -> Self {
        CamAdapter(self.0)
    }
}

struct Active {
    req: Request,
    cell: usize,
    bytes: u64,
}

/// The requests the device holds, by token (the head descriptor of their chain, below
/// the queue size): one slot per descriptor, so starting and finishing a request is an
/// index, with no search and no allocation.
struct ActiveTable {
    slots: Vec<Option<Active>>,
}

impl ActiveTable {
    fn new(size: usize) -> ActiveTable {
        ActiveTable {
            slots: (0..size).map(|_| None).collect(),
        }
    }

    /// Record the request of `token`, which the queue has just handed out: below the
    /// queue size and not in flight. Were it either, the request it would lose is
    /// leaked, never completed: the device may still be using its frames.
    fn insert(&mut self, token: u16, active: Active) {
        let Some(slot) = self.slots.get_mut(token as usize) else {
            log::error!("virtio-blk: token {token} out of range; its request is leaked");
            core::mem::forget(active);
            return;
        };
        if let Some(old) = slot.replace(active) {
            log::error!("virtio-blk: token {token} was in flight; its request is leaked");
            core::mem::forget(old);
        }
    }

    fn remove(&mut self, token: u16) -> Option<Active> {
        self.slots.get_mut(token as usize)?.take()
    }

    /// Requests held (a scan of the slots: for the watchdog and statistics, not the data
    /// path).
    fn len(&self) -> usize {
        self.iter().count()
    }

    fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    fn iter(&self) -> impl Iterator<Item = (usize, &Active)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(t, a)| a.as_ref().map(|a| (t, a)))
    }

    /// Hand every request to `f`, taking it out (after a device reset).
    fn take_each(&mut self, mut f: impl FnMut(Active)) {
        self.slots
            .iter_mut()
            .filter_map(Option::take)
            .for_each(&mut f);
    }
}

/// Where the queue's notifications are written: a window over its notify register, or,
/// if the notify capability could not be read, the transport's own (slower) method.
enum Notify {
    Register(RegisterWindow),
    Transport,
}

struct Inner<H: Hal> {
    transport: PciTransport,
    queue: SplitQueue<H>,
    notify: Notify,
    /// The header/status cells (see [`CELL`]): a window over their DMA page(s).
    cells: RegisterWindow,
    cells_phys: u64,
    free_cells: Vec<usize>,
    active: ActiveTable,
    pending: VecDeque<Request>,
    /// A request completed since the watchdog last looked.
    progressed: bool,
    /// Since when (watchdog clock) requests have been outstanding without progress.
    stall_since: Option<u64>,
    /// The device could not be brought back after a reset: everything fails.
    dead: bool,
}

/// One virtio-blk disk.
pub struct VirtioBlk<H: virtio_drivers::Hal + Hal> {
    info: DeviceInfo,
    inner: Mutex<Inner<H>>,
    msix: bool,
    /// The features negotiated at probe time (negotiated again after a reset).
    features: Features,
    /// Physical address of the common configuration structure (to point the queue's
    /// interrupt at MSI-X entry 0 again after a reset).
    common_cfg: Option<u64>,
    _hal: PhantomData<H>,
}

impl<H: virtio_drivers::Hal + Hal> VirtioBlk<H> {
    /// Set up the virtio-blk function `func`. With `msix = Some((address, data))` the
    /// queue interrupt is delivered as that MSI-X message (table entry 0).
    /// With `event_idx` false, `VIRTIO_F_EVENT_IDX` is not negotiated (the device is
    /// notified unless it sets `NO_NOTIFY`, and interrupts for every completion).
    pub fn probe<A: ConfigAccess + ?Sized>(
        access: &A,
        func: &PciFunction,
        msix: Option<(u64, u32)>,
        event_idx: bool,
    ) -> Result<Arc<VirtioBlk<H>>, VirtioBlkError> {
        let config = func.config(access);
        config.enable_memory_space();
        config.enable_bus_master();
        let mut root = PciRoot::new(CamAdapter(access));
        let df = DeviceFunction {
            bus: func.bdf.bus(),
            device: func.bdf.device(),
            function: func.bdf.function(),
        };
        let mut transport = PciTransport::new::<H, _>(&mut root, df)
            .map_err(|e| VirtioBlkError::Transport(format!("{e:?}")))?;
        let features = Self::negotiate(
            &mut transport,
            Features::SIZE_MAX
                | Features::SEG_MAX
                | Features::RO
                | Features::BLK_SIZE
                | Features::FLUSH
                | Features::VERSION_1
                | if event_idx {
                    Features::EVENT_IDX
                } else {
                    Features::empty()
                },
        )?;
        let cfg32 = |off: usize| transport.read_config_space::<u32>(off).unwrap_or(0);
        let sectors = cfg32(0) as u64 | (cfg32(4) as u64) << 32;
        let seg_max = if features.contains(Features::SEG_MAX) {
            cfg32(12) as usize
        } else {
            MAX_SEGMENTS
        };
        let blk_size = if features.contains(Features::BLK_SIZE) {
            cfg32(20)
        } else {
            512
        };
        if blk_size != SECTOR_SIZE as u32 && blk_size != 0 {
            return Err(VirtioBlkError::Unsupported(format!(
                "logical block size {blk_size}"
            )));
        }
        let max = transport.max_queue_size(0);
        if max < QUEUE_SIZE as u32 {
            return Err(VirtioBlkError::Unsupported(format!(
                "queue 0 holds {max} entries, fewer than {QUEUE_SIZE}"
            )));
        }
        let cell_pages = (QUEUE_SIZE * CELL).div_ceil(4096);
        let cells_phys = <H as Hal>::dma_alloc(cell_pages).ok_or(VirtioBlkError::NoMemory)?;
        let cells_base = H::phys_to_virt(cells_phys) as usize;
        // SAFETY: DMA pages just allocated for the cells, mapped by `phys_to_virt`, reached
        // only through this window and by the device; the driver never frees them.
        let cells = unsafe { RegisterWindow::new(cells_base, cell_pages * 4096) };
        let Some(queue) =
            SplitQueue::<H>::new(QUEUE_SIZE as u16, features.contains(Features::EVENT_IDX))
        else {
            <H as Hal>::dma_free(cells_phys, cell_pages);
            return Err(VirtioBlkError::NoMemory);
        };
        let (desc, driver, device) = queue.addresses();
        transport.queue_set(0, QUEUE_SIZE as u32, desc, driver, device);

        let mut msix_ok = false;
        let common_cfg = Self::vendor_cap(access, func, PCI_CAP_COMMON_CFG).map(|(a, _)| a);
        let notify = match Self::notify_register(access, func, common_cfg) {
            Some(w) => Notify::Register(w),
            None => {
                log::warn!(
                    "virtio-blk {}: notify register not found; notifying through the transport",
                    func.bdf
                );
                Notify::Transport
            }
        };
        if let Some((address, data)) = msix
            && crate::pci::msi::enable_msix::<H>(access, func, 0, address, data)
        {
            msix_ok = common_cfg.is_some_and(|base| Self::set_queue_vector(base, 0));
            if !msix_ok {
                log::warn!(
                    "virtio-blk {}: the device refused MSI-X vector 0; polling",
                    func.bdf
                );
            }
        } else if msix.is_some() {
            log::warn!(
                "virtio-blk {}: no usable MSI-X capability; polling",
                func.bdf
            );
        }
        transport.finish_init();

        let max_segments = seg_max.clamp(1, MAX_SEGMENTS);
        let info = DeviceInfo {
            name: String::new(),
            sectors,
            read_only: features.contains(Features::RO),
            flush: features.contains(Features::FLUSH),
            model: String::from("virtio-blk"),
            serial: String::new(),
            features: format!(
                "{}{}queue {QUEUE_SIZE}, {max_segments} segments/request, {}, {}",
                if features.contains(Features::FLUSH) {
                    "flush, "
                } else {
                    ""
                },
                if features.contains(Features::RO) {
                    "read-only, "
                } else {
                    ""
                },
                if features.contains(Features::EVENT_IDX) {
                    "event index"
                } else if event_idx {
                    "no event index"
                } else {
                    "event index off"
                },
                if msix_ok { "MSI-X" } else { "polled" }
            ),
            queue_depth: QUEUE_SIZE / 3,
            max_segments,
            max_bytes: (max_segments as u64) << 22,
            copy: None,
            discard: None,
        };
        Ok(Arc::new(VirtioBlk {
            info,
            inner: Mutex::new(Inner {
                transport,
                queue,
                notify,
                cells,
                cells_phys,
                free_cells: (0..QUEUE_SIZE).rev().collect(),
                active: ActiveTable::new(QUEUE_SIZE),
                pending: VecDeque::new(),
                progressed: false,
                stall_since: None,
                dead: false,
            }),
            msix: msix_ok,
            features,
            common_cfg,
            _hal: PhantomData,
        }))
    }

    /// Feature negotiation (virtio 1.x, 3.1.1), done here rather than by the transport's
    /// `begin_init` so that the feature type stays this crate's own.
    fn negotiate(
        transport: &mut PciTransport,
        wanted: Features,
    ) -> Result<Features, VirtioBlkError> {
        transport.set_status(DeviceStatus::empty());
        transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        let negotiated = Features::from_bits_truncate(transport.read_device_features()) & wanted;
        transport.write_driver_features(negotiated.bits());
        transport.set_status(
            DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK,
        );
        if !transport.get_status().contains(DeviceStatus::FEATURES_OK) {
            return Err(VirtioBlkError::Unsupported(format!(
                "device refused features {negotiated:?}"
            )));
        }
        Ok(negotiated)
    }

    /// The physical address of the structure a virtio vendor capability of `cfg_type`
    /// points at, and the capability's offset in configuration space, if the device has a
    /// usable one.
    fn vendor_cap<A: ConfigAccess + ?Sized>(
        access: &A,
        func: &PciFunction,
        cfg_type: u8,
    ) -> Option<(u64, u16)> {
        let config = func.config(access);
        let cap = config.capabilities().find(|c| {
            c.id == crate::pci::CAP_ID_VENDOR && access.read8(func.bdf, c.offset + 3) == cfg_type
        })?;
        let bar = access.read8(func.bdf, cap.offset + 4) as usize;
        let offset = access.read32(func.bdf, cap.offset + 8) as u64;
        let Some(Some(Bar::Memory { addr, .. })) = func.bars.get(bar) else {
            return None;
        };
        Some((addr.checked_add(offset)?, cap.offset))
    }

    /// A window over queue 0's notify register (4.1.4.4): the notify structure's address
    /// plus the queue's `queue_notify_off` times the capability's multiplier.
    fn notify_register<A: ConfigAccess + ?Sized>(
        access: &A,
        func: &PciFunction,
        common_cfg: Option<u64>,
    ) -> Option<RegisterWindow> {
        let (base, cap) = Self::vendor_cap(access, func, PCI_CAP_NOTIFY_CFG)?;
        let length = access.read32(func.bdf, cap + 12) as u64;
        let multiplier = access.read32(func.bdf, cap + 16) as u64;
        let common = Self::common_window(common_cfg?);
        if !common.write::<u16>(COMMON_QUEUE_SELECT, 0) {
            return None;
        }
        let off = common.read::<u16>(COMMON_QUEUE_NOTIFY_OFF)? as u64;
        let within = off.checked_mul(multiplier)?;
        // The register must lie inside the notify structure, as the capability sizes it
        // (and that inside its BAR, which `vendor_cap` found to be a memory BAR).
        if within.checked_add(2)? > length {
            log::warn!(
                "virtio-blk {}: queue notify offset {within} outside the notify structure ({length} bytes)",
                func.bdf
            );
            return None;
        }
        let addr = base.checked_add(within)?;
        let reg = H::phys_to_virt(addr) as usize;
        // SAFETY: the queue's 16-bit notify register inside the notify structure of the
        // device's memory BAR (4.1.4.4), mapped by the HAL; no Rust reference aliases it.
        Some(unsafe { RegisterWindow::new(reg, 2) })
    }

    /// A window over the common configuration structure at physical address `base` (as
    /// [`Self::vendor_cap`] found it).
    fn common_window(base: u64) -> RegisterWindow {
        // `base` is the common configuration structure in the device's memory BAR (as its
        // capability says), mapped by the HAL.
        let regs = H::phys_to_virt(base) as usize;
        // SAFETY: device registers (just above) that no Rust reference aliases.
        unsafe { RegisterWindow::new(regs, COMMON_CFG_SIZE) }
    }

    /// Tell the device queue 0 has new requests.
    fn notify(inner: &mut Inner<H>) {
        match &inner.notify {
            Notify::Register(w) => {
                w.write::<u16>(0, 0);
            }
            Notify::Transport => inner.transport.notify(0),
        }
        crate::block::stats::add_notify();
    }

    /// Point queue `queue`'s interrupt at MSI-X entry 0 and turn configuration-change
    /// interrupts off, through the common configuration structure at `base`. Returns
    /// whether the device accepted the vector.
    fn set_queue_vector(base: u64, queue: u16) -> bool {
        let common = Self::common_window(base);
        common.write::<u16>(COMMON_MSIX_CONFIG, VIRTIO_NO_VECTOR)
            && common.write::<u16>(COMMON_QUEUE_SELECT, queue)
            && common.write::<u16>(COMMON_QUEUE_MSIX_VECTOR, 0)
            && common.read::<u16>(COMMON_QUEUE_MSIX_VECTOR) == Some(0)
    }

    /// Whether completions arrive by MSI-X (otherwise they must be polled).
    pub fn uses_interrupts(&self) -> bool {
        self.msix
    }

    /// The physical address of header/status cell `cell`.
    fn cell_phys(inner: &Inner<H>, cell: usize) -> u64 {
        inner.cells_phys + (cell * CELL) as u64
    }

    /// Start as many queued requests as the ring has room for.
    fn kick(inner: &mut Inner<H>) {
        while let Some(front) = inner.pending.front() {
            if inner.free_cells.is_empty()
                || inner.queue.free_descriptors() < front.segments.len() + 2
            {
                break;
            }
            let req = inner.pending.pop_front().expect("front exists");
            let cell = inner.free_cells.pop().expect("checked above");
            let (kind, sector) = match req.op {
                Op::Read => (VIRTIO_BLK_T_IN, req.sector),
                Op::Write => (VIRTIO_BLK_T_OUT, req.sector),
                Op::Flush => (VIRTIO_BLK_T_FLUSH, 0),
                // Never queued: `validate` refuses copies and discards (this driver
                // offers neither), so this arm only keeps the match whole.
                Op::Copy | Op::Discard => (VIRTIO_BLK_T_FLUSH, 0),
            };
            // The cell: header at +0 (type, reserved, sector), status byte at +16.
            let at = cell * CELL;
            inner.cells.write::<u32>(at, kind.to_le());
            inner.cells.write::<u32>(at + 4, 0);
            inner.cells.write::<u64>(at + 8, sector.to_le());
            inner.cells.write::<u8>(at + 16, 0xFF);
            let phys = Self::cell_phys(inner, cell);
            let device_writes_data = req.op == Op::Read;
            let buffers = core::iter::once(Buffer {
                phys,
                len: 16,
                device_writes: false,
            })
            .chain(req.segments.iter().map(|s| Buffer {
                phys: s.phys,
                len: s.len,
                device_writes: device_writes_data,
            }))
            .chain(core::iter::once(Buffer {
                phys: phys + 16,
                len: 1,
                device_writes: true,
            }));
            // The request, kept in `active` until the device hands the token back, keeps
            // its data frames alive; the cell stays reserved as long.
            match inner.queue.add(buffers) {
                Ok(token) => {
                    let bytes = req.bytes();
                    inner.active.insert(token, Active { req, cell, bytes });
                }
                Err(e) => {
                    log::error!("virtio-blk: queue refused a request: {e:?}");
                    inner.free_cells.push(cell);
                    inner.pending.push_front(req);
                    break;
                }
            }
        }
        if inner.queue.should_notify() {
            Self::notify(inner);
        }
    }

    /// The watchdog found requests stuck: log them, reset the device (which makes it
    /// drop every request and stop touching their buffers), set it up again with a
    /// fresh ring, and fail the stuck requests with [`BlockError::Timeout`]. Requests
    /// still waiting in the software queue are issued afterwards.
    fn reset(&self, inner: &mut Inner<H>, done: &mut Vec<Done>) {
        log::warn!(
            "virtio-blk: no request completed for {} s with {} outstanding; resetting the device",
            crate::block::REQUEST_TIMEOUT_NS / 1_000_000_000,
            inner.active.len()
        );
        for (token, a) in inner.active.iter() {
            log::warn!(
                "virtio-blk:   descriptor {token}: {:?} sector {} ({} bytes), status cell {}, not returned by the device",
                a.req.op,
                a.req.sector,
                a.bytes,
                a.cell
            );
        }
        inner.transport.set_status(DeviceStatus::empty());
        let mut reset_done = false;
        for _ in 0..1_000_000 {
            if inner.transport.get_status().is_empty() {
                reset_done = true;
                break;
            }
            core::hint::spin_loop();
        }
        let renegotiated = if reset_done {
            Self::negotiate(&mut inner.transport, self.features).ok()
        } else {
            None
        };
        if let Some(features) = renegotiated {
            // The device was reset: it no longer reads the ring, which starts afresh, with
            // event indices only if the device still offers them.
            inner.queue.reset();
            inner
                .queue
                .set_event_idx(features.contains(Features::EVENT_IDX));
            let (desc, driver, device) = inner.queue.addresses();
            inner
                .transport
                .queue_set(0, inner.queue.size() as u32, desc, driver, device);
            if self.msix
                && !self
                    .common_cfg
                    .is_some_and(|base| Self::set_queue_vector(base, 0))
            {
                log::error!("virtio-blk: MSI-X vector refused after reset");
            }
            inner.transport.finish_init();
        } else {
            log::error!("virtio-blk: the device did not come back after a reset; it is offline");
            inner.dead = true;
        }
        inner
            .active
            .take_each(|a| done.push((a.req, Err(BlockError::Timeout))));
        inner.free_cells = (0..QUEUE_SIZE).rev().collect();
        if inner.dead {
            done.extend(inner.pending.drain(..).map(|r| (r, Err(BlockError::Io))));
        }
    }

    /// Collect finished requests (under the lock); they are completed by the caller after
    /// the lock is dropped, since a completion may submit more work.
    fn reap(inner: &mut Inner<H>, done: &mut Vec<Done>) {
        loop {
            while let Some(used) = inner.queue.pop_used() {
                let Some(active) = inner.active.remove(used.head) else {
                    log::error!("virtio-blk: device completed unknown token {}", used.head);
                    continue;
                };
                // The device has finished with the cell (its chain was used).
                let status = inner
                    .cells
                    .read::<u8>(active.cell * CELL + 16)
                    .unwrap_or(0xFF);
                inner.free_cells.push(active.cell);
                let result = match status {
                    VIRTIO_BLK_S_OK => Ok(active.bytes),
                    VIRTIO_BLK_S_UNSUPP => Err(BlockError::Unsupported),
                    _ => Err(BlockError::Io),
                };
                inner.progressed = true;
                done.push((active.req, result));
            }
            // Ask for the next interrupt; completions that slipped in meanwhile may have
            // had theirs suppressed, so they are reaped now.
            if !inner.queue.enable_interrupts() {
                break;
            }
        }
    }
}

/// A finished request and its result, completed after the lock is released.
type Done = (Request, Result<u64, BlockError>);

impl<H: virtio_drivers::Hal + Hal> BlockDevice for VirtioBlk<H> {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn submit(&self, req: Request) -> Result<(), BlockError> {
        validate(&self.info, &req)?;
        if req.op == Op::Flush && !self.info.flush {
            // No FLUSH feature: the device has no volatile cache, writes are already durable.
            req.complete(Ok(0));
            return Ok(());
        }
        let mut inner = self.inner.lock();
        if inner.dead {
            drop(inner);
            req.complete(Err(BlockError::Io));
            return Ok(());
        }
        inner.pending.push_back(req);
        Self::kick(&mut inner);
        Ok(())
    }

    /// Every request of the batch into the ring, then one notification.
    fn submit_many(&self, reqs: Vec<Request>) {
        let mut refused = Vec::new();
        {
            let mut inner = self.inner.lock();
            for req in reqs {
                match validate(&self.info, &req) {
                    Err(e) => refused.push((req, Err(e))),
                    Ok(_) if inner.dead => refused.push((req, Err(BlockError::Io))),
                    Ok(_) if req.op == Op::Flush && !self.info.flush => {
                        refused.push((req, Ok(0)));
                    }
                    Ok(_) => inner.pending.push_back(req),
                }
            }
            Self::kick(&mut inner);
        }
        for (req, result) in refused {
            req.complete(result);
        }
    }

    fn check_timeouts(&self, now_ns: u64) {
        let mut done = Vec::new();
        {
            let mut inner = self.inner.lock();
            Self::reap(&mut inner, &mut done);
            if inner.active.is_empty() {
                inner.stall_since = None;
            } else if inner.progressed || inner.stall_since.is_none() {
                inner.stall_since = Some(now_ns);
            } else if inner
                .stall_since
                .is_some_and(|t| now_ns.saturating_sub(t) >= crate::block::REQUEST_TIMEOUT_NS)
            {
                self.reset(&mut inner, &mut done);
                inner.stall_since = None;
                if !inner.dead {
                    Self::kick(&mut inner);
                }
            }
            inner.progressed = false;
        }
        for (req, result) in done {
            req.complete(result);
        }
    }

    fn handle_interrupt(&self) {
        let mut done = Vec::new();
        {
            let mut inner = self.inner.lock();
            if !self.msix {
                // INTx/polled: reading the ISR acknowledges the interrupt.
                let _ = inner.transport.ack_interrupt();
            }
            Self::reap(&mut inner, &mut done);
            Self::kick(&mut inner);
        }
        for (req, result) in done {
            req.complete(result);
        }
    }

    fn in_flight(&self) -> usize {
        self.inner.lock().active.len()
    }
}
