use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};
use spin::Mutex;

use super::*;

fn info() -> DeviceInfo {
    DeviceInfo {
        sectors: 1000,
        max_segments: 4,
        max_bytes: 64 * 1024,
        ..DeviceInfo::default()
    }
}

fn req(op: Op, sector: u64, segs: &[(u64, u32)]) -> Request {
    Request::new(
        op,
        sector,
        segs.iter()
            .map(|&(phys, len)| Segment { phys, len })
            .collect(),
        Box::new(|_| {}),
    )
}

#[test]
fn validation_rules() {
    let i = info();
    assert_eq!(
        validate(&i, &req(Op::Read, 0, &[(0x1000, 4096), (0x9000, 512)])),
        Ok(4608)
    );
    assert_eq!(
        validate(&i, &req(Op::Read, 0, &[])),
        Err(BlockError::ZeroLength)
    );
    assert_eq!(
        validate(&i, &req(Op::Read, 0, &[(0x1000, 0)])),
        Err(BlockError::ZeroLength)
    );
    assert_eq!(
        validate(&i, &req(Op::Read, 0, &[(0x1001, 512)])),
        Err(BlockError::Misaligned)
    );
    assert_eq!(
        validate(&i, &req(Op::Read, 0, &[(0x1000, 100)])),
        Err(BlockError::Misaligned)
    );
    assert_eq!(validate(&i, &req(Op::Read, 999, &[(0x1000, 512)])), Ok(512));
    assert_eq!(
        validate(&i, &req(Op::Read, 999, &[(0x1000, 1024)])),
        Err(BlockError::OutOfRange)
    );
    assert_eq!(
        validate(&i, &req(Op::Read, u64::MAX, &[(0x1000, 512)])),
        Err(BlockError::OutOfRange)
    );
    assert_eq!(
        validate(&i, &req(Op::Read, 0, &[(0, 512); 5])),
        Err(BlockError::TooLarge)
    );
    assert_eq!(
        validate(&i, &req(Op::Read, 0, &[(0, 65536), (0, 512)])),
        Err(BlockError::TooLarge)
    );
    assert_eq!(validate(&i, &req(Op::Flush, 0, &[])), Ok(0));
    let ro = DeviceInfo {
        read_only: true,
        ..info()
    };
    assert_eq!(
        validate(&ro, &req(Op::Write, 0, &[(0x1000, 512)])),
        Err(BlockError::ReadOnly)
    );
    assert_eq!(
        validate(&ro, &req(Op::Flush, 0, &[])),
        Err(BlockError::ReadOnly)
    );
    assert_eq!(validate(&ro, &req(Op::Read, 0, &[(0x1000, 512)])), Ok(512));
}

#[test]
fn copies_are_checked_against_the_device_limits() {
    let copy = |to: u64, src: &[(u64, u32)]| {
        Request::copy(
            to,
            src.iter()
                .map(|&(sector, sectors)| SectorRange { sector, sectors })
                .collect(),
            Box::new(|_| {}),
        )
    };
    // No copy limits: the device cannot copy.
    assert_eq!(
        validate(&info(), &copy(0, &[(8, 8)])),
        Err(BlockError::Unsupported)
    );
    let i = DeviceInfo {
        copy: Some(CopyLimits {
            max_ranges: 2,
            max_range_sectors: 16,
            max_sectors: 24,
        }),
        ..info()
    };
    assert_eq!(validate(&i, &copy(500, &[(8, 16), (100, 8)])), Ok(24 * 512));
    assert_eq!(
        validate(&i, &copy(0, &[(0, 1), (1, 1), (2, 1)])),
        Err(BlockError::TooLarge)
    );
    assert_eq!(
        validate(&i, &copy(0, &[(0, 17)])),
        Err(BlockError::TooLarge)
    );
    assert_eq!(
        validate(&i, &copy(0, &[(0, 16), (20, 16)])),
        Err(BlockError::TooLarge)
    );
    assert_eq!(validate(&i, &copy(0, &[])), Err(BlockError::ZeroLength));
    assert_eq!(
        validate(&i, &copy(0, &[(0, 0)])),
        Err(BlockError::ZeroLength)
    );
    assert_eq!(
        validate(&i, &copy(0, &[(0, 8), (9, 0)])),
        Err(BlockError::ZeroLength)
    );
    assert_eq!(
        validate(&i, &copy(0, &[(995, 8)])),
        Err(BlockError::OutOfRange)
    );
    assert_eq!(
        validate(&i, &copy(995, &[(0, 8)])),
        Err(BlockError::OutOfRange)
    );
    let ro = DeviceInfo {
        read_only: true,
        ..i
    };
    assert_eq!(
        validate(&ro, &copy(0, &[(8, 8)])),
        Err(BlockError::ReadOnly)
    );
}

#[test]
fn discards_are_checked() {
    let discard = |r: &[(u64, u32)]| {
        Request::discard(
            r.iter()
                .map(|&(sector, sectors)| SectorRange { sector, sectors })
                .collect(),
            Box::new(|_| {}),
        )
    };
    assert_eq!(
        validate(&info(), &discard(&[(0, 8)])),
        Err(BlockError::Unsupported)
    );
    let i = DeviceInfo {
        discard: Some(2),
        ..info()
    };
    assert_eq!(validate(&i, &discard(&[(0, 8), (992, 8)])), Ok(16 * 512));
    assert_eq!(
        validate(&i, &discard(&[(0, 1), (2, 1), (4, 1)])),
        Err(BlockError::TooLarge)
    );
    assert_eq!(
        validate(&i, &discard(&[(993, 8)])),
        Err(BlockError::OutOfRange)
    );
    assert_eq!(
        validate(&i, &discard(&[(0, 8), (9, 0)])),
        Err(BlockError::ZeroLength)
    );
    assert_eq!(validate(&i, &discard(&[])), Err(BlockError::ZeroLength));
}

#[test]
fn errno_values_match_linux() {
    assert_eq!(BlockError::Io.errno(), 5);
    assert_eq!(BlockError::ReadOnly.errno(), 30);
    assert_eq!(BlockError::OutOfRange.errno(), 22);
}

/// A device that completes requests when told to, to check the completion contract and
/// `sync_io`.
struct FakeDevice {
    info: DeviceInfo,
    queue: Mutex<Vec<Request>>,
}

impl BlockDevice for FakeDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }
    fn submit(&self, req: Request) -> Result<(), BlockError> {
        validate(&self.info, &req)?;
        self.queue.lock().push(req);
        Ok(())
    }
    fn handle_interrupt(&self) {
        let done: Vec<Request> = core::mem::take(&mut *self.queue.lock());
        for r in done {
            let n = r.bytes();
            let result = if r.sector == 13 {
                Err(BlockError::Io)
            } else {
                Ok(n)
            };
            r.complete(result);
        }
    }
    fn in_flight(&self) -> usize {
        self.queue.lock().len()
    }
}

struct PollingWaiter<'a>(&'a FakeDevice);

impl Waiter for PollingWaiter<'_> {
    fn wait_until(&self, cond: &dyn Fn() -> bool) {
        while !cond() {
            self.0.handle_interrupt();
        }
    }
}

#[test]
fn completion_runs_once_and_owns_its_buffers() {
    let dev = FakeDevice {
        info: info(),
        queue: Mutex::new(Vec::new()),
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let keepalive = Arc::new(());
    let (c, k) = (calls.clone(), keepalive.clone());
    let r = Request::new(
        Op::Write,
        0,
        vec![Segment { phys: 0, len: 512 }],
        Box::new(move |comp| {
            assert_eq!(comp.result, Ok(512));
            let _held = &k;
            c.fetch_add(1, Ordering::SeqCst);
        }),
    );
    dev.submit(r).unwrap();
    assert_eq!(
        Arc::strong_count(&keepalive),
        2,
        "the in-flight request keeps the buffer owner alive"
    );
    dev.handle_interrupt();
    dev.handle_interrupt();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        Arc::strong_count(&keepalive),
        1,
        "completion released the buffer owner"
    );
}

#[test]
fn rejected_request_drops_its_callback_without_calling_it() {
    let dev = FakeDevice {
        info: info(),
        queue: Mutex::new(Vec::new()),
    };
    let keepalive = Arc::new(());
    let k = keepalive.clone();
    let r = Request::new(
        Op::Read,
        5000,
        vec![Segment { phys: 0, len: 512 }],
        Box::new(move |_| {
            let _ = &k;
            panic!("completion of a rejected request");
        }),
    );
    assert_eq!(dev.submit(r), Err(BlockError::OutOfRange));
    assert_eq!(Arc::strong_count(&keepalive), 1);
}

#[test]
fn sync_io_returns_bytes_or_the_device_error() {
    let dev = FakeDevice {
        info: info(),
        queue: Mutex::new(Vec::new()),
    };
    let w = PollingWaiter(&dev);
    let segs = vec![Segment {
        phys: 0x2000,
        len: 1024,
    }];
    assert_eq!(sync_io(&dev, &w, Op::Read, 0, segs.clone()), Ok(1024));
    assert_eq!(
        sync_io(&dev, &w, Op::Read, 13, segs.clone()),
        Err(BlockError::Io)
    );
    assert_eq!(
        sync_io(&dev, &w, Op::Read, 999, segs),
        Err(BlockError::OutOfRange)
    );
    let before = stats::get("blk_requests").unwrap();
    assert_eq!(sync_io(&dev, &w, Op::Flush, 0, Vec::new()), Ok(0));
    assert!(stats::get("blk_requests").unwrap() > before);
}

/// Counts its drops; stands for a frame reference a request owns.
struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_request_owns_its_buffers_until_its_completion_has_run() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let seen_in_callback = Arc::new(AtomicUsize::new(usize::MAX));
    let (d, s) = (dropped.clone(), seen_in_callback.clone());
    let r = Request::new(
        Op::Read,
        0,
        vec![Segment {
            phys: 0x1000,
            len: 512,
        }],
        Box::new(move |_| s.store(d.load(Ordering::SeqCst), Ordering::SeqCst)),
    )
    .owning(vec![Held(dropped.clone()), Held(dropped.clone())]);
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        0,
        "released before completion"
    );
    r.complete(Ok(512));
    assert_eq!(
        seen_in_callback.load(Ordering::SeqCst),
        0,
        "the buffers were gone when the completion ran"
    );
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        2,
        "not released after completion"
    );
    // A request dropped without being completed (refused at submission) lets go too.
    let r = req(Op::Read, 0, &[(0x1000, 512)]).owning(Held(dropped.clone()));
    drop(r);
    assert_eq!(dropped.load(Ordering::SeqCst), 3);
}
