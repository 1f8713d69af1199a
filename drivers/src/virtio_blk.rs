//! virtio-blk over PCI. The `virtio-drivers` crate provides the PCI transport and the split
//! virtqueue; this driver builds its own requests so that every segment of a block request
//! becomes its own descriptor pointing at the caller's physical frames (the crate's
//! `VirtIOBlk` takes one contiguous buffer per request, which would force a copy).
//!
//! Several requests are in flight at once (as many as the ring's descriptors allow); more
//! wait in a software queue. Completion is by MSI-X when the kernel supplies a message,
//! otherwise by polling [`BlockDevice::handle_interrupt`].

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::marker::PhantomData;

use bitflags::bitflags;
use spin::Mutex;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{
    ConfigurationAccess as VirtioCam, DeviceFunction, PciRoot,
};
use virtio_drivers::transport::{DeviceStatus, Transport};

use crate::block::{
    BlockDevice, BlockError, DeviceInfo, Op, Request, SECTOR_SIZE, Segment, validate,
};
use crate::hal::Hal;
use crate::mmio::RegisterWindow;
use crate::pci::{Bar, ConfigAccess, PciFunction};

/// Ring size. QEMU offers 256 by default; 128 fits every virtio-blk seen in practice.
const QUEUE_SIZE: usize = 128;
/// A request uses one descriptor for the header, one for the status byte, and one per
/// segment (no indirect descriptors: the crate allocates those on the heap, which is not
/// physically contiguous).
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
/// Size of the common configuration structure (virtio 1.x, 4.1.4.3).
const COMMON_CFG_SIZE: usize = 0x38;
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

struct Inner<H: virtio_drivers::Hal> {
    transport: PciTransport,
    queue: VirtQueue<H, QUEUE_SIZE>,
    cells_phys: u64,
    free_cells: Vec<usize>,
    active: BTreeMap<u16, Active>,
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

/// Requests of up to this many segments list their buffers on the stack; longer ones
/// in a `Vec`.
const INLINE_SEGMENTS: usize = 4;

/// A request's data segment as the slice the virtqueue takes (it turns it back into the
/// physical address).
fn segment_slice<H: Hal>(s: &Segment) -> &'static mut [u8] {
    // SAFETY: each segment is physical memory the request's owner keeps alive (the
    // completion callback holds it) and does not touch until completion; the slice is only
    // handed to the virtqueue, which turns it back into a physical address.
    unsafe { core::slice::from_raw_parts_mut(H::phys_to_virt(s.phys), s.len as usize) }
}

/// Runs `f` with a request's buffers as the virtqueue takes them: the device reads the
/// header (and a write's data), and writes a read's data and the status byte. The lists
/// are on the stack for up to [`INLINE_SEGMENTS`] segments: no allocation per request.
fn with_buffers<H: Hal, R>(
    hdr: &[u8],
    status: &mut [u8],
    op: Op,
    segments: &[Segment],
    f: impl for<'a> FnOnce(&'a [&'a [u8]], &'a mut [&'a mut [u8]]) -> R,
) -> R {
    let write = op == Op::Write;
    let n = segments.len();
    if n > INLINE_SEGMENTS {
        let mut inputs: Vec<&[u8]> = alloc::vec![hdr];
        let mut outputs: Vec<&mut [u8]> = Vec::with_capacity(n + 1);
        for seg in segments {
            let slice = segment_slice::<H>(seg);
            if write {
                inputs.push(slice);
            } else {
                outputs.push(slice);
            }
        }
        outputs.push(status);
        return f(&inputs, &mut outputs);
    }
    let mut inputs: [&[u8]; INLINE_SEGMENTS + 1] = [&[]; INLINE_SEGMENTS + 1];
    let mut outputs: [&mut [u8]; INLINE_SEGMENTS + 1] =
        core::array::from_fn(|_| <&mut [u8]>::default());
    inputs[0] = hdr;
    let (mut ni, mut no) = (1, 0);
    for seg in segments {
        let slice = segment_slice::<H>(seg);
        if write {
            inputs[ni] = slice;
            ni += 1;
        } else {
            outputs[no] = slice;
            no += 1;
        }
    }
    outputs[no] = status;
    f(&inputs[..ni], &mut outputs[..=no])
}

impl<H: virtio_drivers::Hal + Hal> VirtioBlk<H> {
    /// Set up the virtio-blk function `func`. With `msix = Some((address, data))` the
    /// queue interrupt is delivered as that MSI-X message (table entry 0).
    pub fn probe<A: ConfigAccess + ?Sized>(
        access: &A,
        func: &PciFunction,
        msix: Option<(u64, u32)>,
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
                | Features::VERSION_1,
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
        let queue = VirtQueue::<H, QUEUE_SIZE>::new(&mut transport, 0, false, false)
            .map_err(|e| VirtioBlkError::Transport(format!("queue: {e:?}")))?;
        let cell_pages = (QUEUE_SIZE * CELL).div_ceil(4096);
        let cells_phys = <H as Hal>::dma_alloc(cell_pages).ok_or(VirtioBlkError::NoMemory)?;

        let mut msix_ok = false;
        let common_cfg = Self::common_cfg(access, func);
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
                "{}{}queue {QUEUE_SIZE}, {max_segments} segments/request, {}",
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
                cells_phys,
                free_cells: (0..QUEUE_SIZE).rev().collect(),
                active: BTreeMap::new(),
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

    /// The physical address of the common configuration structure (found from the
    /// vendor capability), if the device has a usable one.
    fn common_cfg<A: ConfigAccess + ?Sized>(access: &A, func: &PciFunction) -> Option<u64> {
        let config = func.config(access);
        let common = config.capabilities().find(|c| {
            c.id == crate::pci::CAP_ID_VENDOR && access.read8(func.bdf, c.offset + 3) == 1 // common cfg
        })?;
        let bar = access.read8(func.bdf, common.offset + 4) as usize;
        let offset = access.read32(func.bdf, common.offset + 8) as u64;
        let Some(Some(Bar::Memory { addr, .. })) = func.bars.get(bar) else {
            return None;
        };
        Some(addr + offset)
    }

    /// Point queue `queue`'s interrupt at MSI-X entry 0 and turn configuration-change
    /// interrupts off, through the common configuration structure at `base`. Returns
    /// whether the device accepted the vector.
    fn set_queue_vector(base: u64, queue: u16) -> bool {
        // `base` is the common configuration structure in the device's memory BAR (as its
        // capability says), mapped by the HAL.
        let regs = H::phys_to_virt(base) as usize;
        // SAFETY: device registers (just above) that no Rust reference aliases.
        let common = unsafe { RegisterWindow::new(regs, COMMON_CFG_SIZE) };
        common.write::<u16>(COMMON_MSIX_CONFIG, VIRTIO_NO_VECTOR)
            && common.write::<u16>(COMMON_QUEUE_SELECT, queue)
            && common.write::<u16>(COMMON_QUEUE_MSIX_VECTOR, 0)
            && common.read::<u16>(COMMON_QUEUE_MSIX_VECTOR) == Some(0)
    }

    /// Whether completions arrive by MSI-X (otherwise they must be polled).
    pub fn uses_interrupts(&self) -> bool {
        self.msix
    }

    fn cell_ptr(inner: &Inner<H>, cell: usize) -> *mut u8 {
        H::phys_to_virt(inner.cells_phys + (cell * CELL) as u64)
    }

    /// Start as many queued requests as the ring has room for.
    fn kick(inner: &mut Inner<H>) {
        let mut added = false;
        while let Some(front) = inner.pending.front() {
            if inner.free_cells.is_empty()
                || inner.queue.available_desc() < front.segments.len() + 2
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
            let p = Self::cell_ptr(inner, cell);
            let mut header = [0u8; 16];
            header[..4].copy_from_slice(&kind.to_le_bytes());
            header[8..].copy_from_slice(&sector.to_le_bytes());
            // SAFETY: the cell is a free 32-byte slot of this driver's DMA page: header at
            // +0 (16 bytes), status at +16; no request uses it until it is freed again.
            let (hdr, status) = unsafe {
                core::ptr::copy_nonoverlapping(header.as_ptr(), p, 16);
                p.add(16).write_volatile(0xFF);
                (
                    core::slice::from_raw_parts(p, 16),
                    core::slice::from_raw_parts_mut(p.add(16), 1),
                )
            };
            let queue = &mut inner.queue;
            // The header/status cell is reserved and the request stored in `active` keeps its
            // data frames alive until the device hands the token back.
            let token = with_buffers::<H, _>(hdr, status, req.op, &req.segments, |ins, outs| {
                // SAFETY: the buffers stay valid and untouched until pop_used returns the token.
                unsafe { queue.add(ins, outs) }
            });
            match token {
                Ok(token) => {
                    let bytes = req.bytes();
                    inner.active.insert(token, Active { req, cell, bytes });
                    added = true;
                }
                Err(e) => {
                    log::error!("virtio-blk: queue refused a request: {e:?}");
                    inner.free_cells.push(cell);
                    inner.pending.push_front(req);
                    break;
                }
            }
        }
        if added && inner.queue.should_notify() {
            inner.transport.notify(0);
            crate::block::stats::add_notify();
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
        for (token, a) in &inner.active {
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
        let revived = reset_done
            && Self::negotiate(&mut inner.transport, self.features).is_ok()
            && match VirtQueue::<H, QUEUE_SIZE>::new(&mut inner.transport, 0, false, false) {
                Ok(q) => {
                    // The device was reset: it no longer reads the old ring, which is
                    // freed here.
                    inner.queue = q;
                    true
                }
                Err(e) => {
                    log::error!("virtio-blk: new queue after reset: {e:?}");
                    false
                }
            };
        if revived {
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
        let stuck = core::mem::take(&mut inner.active);
        inner.free_cells = (0..QUEUE_SIZE).rev().collect();
        for (_, a) in stuck {
            done.push((a.req, Err(BlockError::Timeout)));
        }
        if inner.dead {
            done.extend(inner.pending.drain(..).map(|r| (r, Err(BlockError::Io))));
        }
    }

    /// Collect finished requests (under the lock); they are completed by the caller after
    /// the lock is dropped, since a completion may submit more work.
    fn reap(inner: &mut Inner<H>, done: &mut Vec<Done>) {
        while let Some(token) = inner.queue.peek_used() {
            let Some(active) = inner.active.remove(&token) else {
                log::error!("virtio-blk: device completed unknown token {token}");
                break;
            };
            let p = Self::cell_ptr(inner, active.cell);
            // SAFETY: the same cell and frames that were added with this token.
            let (hdr, status) = unsafe {
                (
                    core::slice::from_raw_parts(p, 16),
                    core::slice::from_raw_parts_mut(p.add(16), 1),
                )
            };
            let queue = &mut inner.queue;
            let popped = with_buffers::<H, _>(
                hdr,
                status,
                active.req.op,
                &active.req.segments,
                |ins, outs| {
                    // SAFETY: the buffers match the descriptors of `token` exactly.
                    unsafe { queue.pop_used(token, ins, outs) }
                },
            );
            // SAFETY: the device has finished with the cell (the token was used).
            let status = unsafe { p.add(16).read_volatile() };
            inner.free_cells.push(active.cell);
            let result = match (popped, status) {
                (Err(e), _) => {
                    log::error!("virtio-blk: pop_used: {e:?}");
                    Err(BlockError::Io)
                }
                (Ok(_), VIRTIO_BLK_S_OK) => Ok(active.bytes),
                (Ok(_), VIRTIO_BLK_S_UNSUPP) => Err(BlockError::Unsupported),
                (Ok(_), _) => Err(BlockError::Io),
            };
            inner.progressed = true;
            done.push((active.req, result));
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
