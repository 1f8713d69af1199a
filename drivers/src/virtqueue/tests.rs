//! The split virtqueue against a simulated device that walks the rings in the same
//! memory, as QEMU's virtio code does.

use std::collections::BTreeMap;
use std::vec::Vec;

use super::*;
use crate::ahci::testing::{FakeHal, dma_pages, fail_dma_alloc, peek, poke, reset_memory};

fn rd16(phys: u64) -> u16 {
    u16::from_le_bytes(peek(phys, 2).try_into().unwrap())
}
fn rd32(phys: u64) -> u32 {
    u32::from_le_bytes(peek(phys, 4).try_into().unwrap())
}
fn rd64(phys: u64) -> u64 {
    u64::from_le_bytes(peek(phys, 8).try_into().unwrap())
}

/// The device side of a split queue: reads the available ring and descriptors, writes
/// the used ring, and decides interrupts as a device does.
struct Device {
    desc: u64,
    avail: u64,
    used: u64,
    size: u16,
    event_idx: bool,
    last_avail: u16,
    used_idx: u16,
    /// The used index at the last interrupt.
    signalled: u16,
}

impl Device {
    fn new(q: &SplitQueue<FakeHal>, event_idx: bool) -> Device {
        let (desc, avail, used) = q.addresses();
        Device {
            desc,
            avail,
            used,
            size: q.size(),
            event_idx,
            last_avail: 0,
            used_idx: 0,
            signalled: 0,
        }
    }

    /// The next chain the driver made available: its head and buffers.
    fn take(&mut self) -> Option<(u16, Vec<Buffer>)> {
        if rd16(self.avail + 2) == self.last_avail {
            return None;
        }
        let slot = (self.last_avail % self.size) as u64;
        let head = rd16(self.avail + 4 + 2 * slot);
        self.last_avail = self.last_avail.wrapping_add(1);
        let mut bufs = Vec::new();
        let mut d = head;
        loop {
            assert!(d < self.size, "descriptor {d} out of range");
            assert!(bufs.len() < self.size as usize, "descriptor loop");
            let at = self.desc + 16 * d as u64;
            let flags = rd16(at + 12);
            bufs.push(Buffer {
                phys: rd64(at),
                len: rd32(at + 8),
                device_writes: flags & DESC_F_WRITE != 0,
            });
            if flags & DESC_F_NEXT == 0 {
                break;
            }
            d = rd16(at + 14);
        }
        Some((head, bufs))
    }

    /// Mark chain `head` used; whether an interrupt is due.
    fn complete(&mut self, head: u16, written: u32) -> bool {
        let slot = (self.used_idx % self.size) as u64;
        poke(self.used + 4 + 8 * slot, &(head as u32).to_le_bytes());
        poke(self.used + 8 + 8 * slot, &written.to_le_bytes());
        self.used_idx = self.used_idx.wrapping_add(1);
        poke(self.used + 2, &self.used_idx.to_le_bytes());
        if !self.event_idx {
            return true;
        }
        let used_event = rd16(self.avail + 4 + 2 * self.size as u64);
        // As QEMU: compare with the index at the last interrupt, so that entries added
        // before the driver asks again raise none.
        let due = need_event(used_event, self.used_idx, self.signalled);
        if due {
            self.signalled = self.used_idx;
        }
        due
    }

    /// Ask to be notified when the available index passes `idx`.
    fn set_avail_event(&self, idx: u16) {
        poke(self.used + 4 + 8 * self.size as u64, &idx.to_le_bytes());
    }

    fn set_no_notify(&self, on: bool) {
        poke(self.used, &(on as u16).to_le_bytes());
    }
}

fn chain(n: usize, base: u64) -> Vec<Buffer> {
    (0..n)
        .map(|i| Buffer {
            phys: base + 0x1000 * i as u64,
            len: 512 * (i as u32 + 1),
            device_writes: i % 2 == 1,
        })
        .collect()
}

#[test]
fn need_event_is_modulo_two_to_the_sixteen() {
    // The event index lies in [old, new): due.
    assert!(need_event(5, 6, 5));
    assert!(need_event(5, 9, 3));
    assert!(!need_event(5, 5, 3));
    assert!(!need_event(9, 6, 5));
    // Across the wrap.
    assert!(need_event(65535, 0, 65535));
    assert!(need_event(65534, 2, 65530));
    assert!(need_event(1, 2, 65530));
    assert!(!need_event(2, 2, 65530));
    assert!(!need_event(65529, 2, 65530));
    // Nothing published: never due.
    assert!(!need_event(7, 7, 7));
}

#[test]
fn the_device_sees_each_chain_as_added() {
    reset_memory();
    let mut q = SplitQueue::<FakeHal>::new(8, true).unwrap();
    let mut dev = Device::new(&q, true);
    let a = chain(3, 0x4000_0000);
    let b = chain(1, 0x5000_0000);
    let ta = q.add(a.iter().copied()).unwrap();
    let tb = q.add(b.iter().copied()).unwrap();
    assert_ne!(ta, tb);
    assert_eq!(q.free_descriptors(), 4);
    assert_eq!(q.in_flight(), 2);
    assert_eq!(dev.take(), Some((ta, a)));
    assert_eq!(dev.take(), Some((tb, b)));
    assert_eq!(dev.take(), None);
    // Out of order.
    dev.complete(tb, 7);
    dev.complete(ta, 1536);
    assert_eq!(
        q.pop_used(),
        Some(Used {
            head: tb,
            written: 7
        })
    );
    assert_eq!(
        q.pop_used(),
        Some(Used {
            head: ta,
            written: 1536
        })
    );
    assert_eq!(q.pop_used(), None);
    assert_eq!(q.free_descriptors(), 8);
    assert_eq!(q.in_flight(), 0);
}

#[test]
fn a_chain_longer_than_the_free_descriptors_is_refused_whole() {
    reset_memory();
    let mut q = SplitQueue::<FakeHal>::new(8, false).unwrap();
    let mut dev = Device::new(&q, false);
    q.add(chain(3, 0x1_0000_0000)).unwrap();
    q.add(chain(3, 0x2_0000_0000)).unwrap();
    assert_eq!(q.add(chain(3, 0x3_0000_0000)), Err(AddError::Full));
    assert_eq!(q.add(Vec::new()), Err(AddError::Empty));
    assert_eq!(q.free_descriptors(), 2);
    // Nothing of the refused chains reached the ring.
    assert!(dev.take().is_some());
    assert!(dev.take().is_some());
    assert_eq!(dev.take(), None);
    let c = chain(2, 0x4_0000_0000);
    let t = q.add(c.iter().copied()).unwrap();
    assert_eq!(dev.take(), Some((t, c)));
    assert_eq!(q.free_descriptors(), 0);
}

/// Random chains, completed in random order, over more than 2^16 indices: every chain
/// reaches the device as added, no descriptor is in two chains, and all come back.
#[test]
fn random_chains_completed_out_of_order_across_the_index_wrap() {
    reset_memory();
    let mut q = SplitQueue::<FakeHal>::new(16, true).unwrap();
    let mut dev = Device::new(&q, true);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut added: BTreeMap<u16, Vec<Buffer>> = BTreeMap::new();
    let mut at_device: Vec<u16> = Vec::new();
    let mut completed = 0u64;
    let mut serial = 0u64;
    while completed < 70_000 {
        match rand(3) {
            0 => {
                let n = 1 + rand(5) as usize;
                serial += 1;
                let c = chain(n, serial << 24);
                match q.add(c.iter().copied()) {
                    Ok(t) => assert!(added.insert(t, c).is_none(), "token {t} reused in flight"),
                    Err(AddError::Full) => assert!(q.free_descriptors() < n),
                    Err(e) => panic!("{e:?}"),
                }
            }
            1 => {
                while let Some((head, bufs)) = dev.take() {
                    assert_eq!(added.get(&head), Some(&bufs), "chain {head} as added");
                    at_device.push(head);
                }
            }
            _ => {
                if !at_device.is_empty() {
                    let i = rand(at_device.len() as u64) as usize;
                    let head = at_device.swap_remove(i);
                    dev.complete(head, head as u32);
                }
                while let Some(u) = q.pop_used() {
                    assert_eq!(u.written, u.head as u32);
                    assert!(
                        added.remove(&u.head).is_some(),
                        "{} was not in flight",
                        u.head
                    );
                    completed += 1;
                }
            }
        }
        let in_chains: usize = added.values().map(Vec::len).sum();
        assert_eq!(q.free_descriptors() + in_chains, 16);
        assert_eq!(q.in_flight(), added.len());
    }
}

#[test]
fn with_event_indices_the_driver_notifies_only_when_the_device_asked() {
    reset_memory();
    let mut q = SplitQueue::<FakeHal>::new(8, true).unwrap();
    let mut dev = Device::new(&q, true);
    // Asks when the index passes 0 (the first chain).
    assert!(q.add(chain(1, 0x1000)).is_ok());
    assert!(q.should_notify());
    // Nothing added since: nothing to say.
    assert!(!q.should_notify());
    // The device is busy with the first chain and asks at index 3: the second and third
    // chains go without a notification, the fourth (index 3 -> 4) with one.
    dev.set_avail_event(3);
    q.add(chain(1, 0x2000)).unwrap();
    assert!(!q.should_notify());
    q.add(chain(1, 0x3000)).unwrap();
    assert!(!q.should_notify());
    q.add(chain(1, 0x4000)).unwrap();
    assert!(q.should_notify());
    // A batch that passes the event index in its middle: one notification.
    for _ in 0..4 {
        let u = dev.take().unwrap();
        dev.complete(u.0, 0);
        q.pop_used().unwrap();
    }
    dev.set_avail_event(5);
    for i in 0..3 {
        q.add(chain(1, 0x5000 + i * 0x1000)).unwrap();
    }
    assert!(q.should_notify());
}

#[test]
fn notification_decisions_across_the_index_wrap() {
    reset_memory();
    let mut q = SplitQueue::<FakeHal>::new(4, true).unwrap();
    let mut dev = Device::new(&q, true);
    for i in 0..70_000u32 {
        let before = i as u16;
        // The device asks at a varying distance ahead (or behind).
        let ahead = (i % 5) as u16;
        let event = before.wrapping_add(ahead).wrapping_sub(1);
        dev.set_avail_event(event);
        q.add(chain(1, 0x10_0000)).unwrap();
        assert_eq!(
            q.should_notify(),
            event == before,
            "at index {before}, event {event}"
        );
        let (head, _) = dev.take().unwrap();
        dev.complete(head, 0);
        assert_eq!(q.pop_used().map(|u| u.head), Some(head));
    }
}

#[test]
fn without_event_indices_the_no_notify_flag_is_honoured() {
    reset_memory();
    let mut q = SplitQueue::<FakeHal>::new(8, false).unwrap();
    let dev = Device::new(&q, false);
    q.add(chain(1, 0x1000)).unwrap();
    assert!(q.should_notify());
    dev.set_no_notify(true);
    q.add(chain(1, 0x2000)).unwrap();
    assert!(!q.should_notify());
    dev.set_no_notify(false);
    q.add(chain(1, 0x3000)).unwrap();
    assert!(q.should_notify());
}

#[test]
fn interrupts_are_asked_for_at_the_next_entry_and_none_is_lost() {
    reset_memory();
    let mut q = SplitQueue::<FakeHal>::new(8, true).unwrap();
    let mut dev = Device::new(&q, true);
    for i in 0..6 {
        q.add(chain(1, 0x1000 * (i + 1))).unwrap();
    }
    let heads: Vec<u16> = (0..6).map(|_| dev.take().unwrap().0).collect();
    // The driver has asked for the first entry (used_event 0): the first completion
    // interrupts, the next ones, before the driver reaps, do not.
    assert!(dev.complete(heads[0], 0));
    assert!(!dev.complete(heads[1], 0));
    assert!(!dev.complete(heads[2], 0));
    // The handler reaps all three and asks again: nothing arrived meanwhile.
    let mut reaped = 0;
    loop {
        while q.pop_used().is_some() {
            reaped += 1;
        }
        if !q.enable_interrupts() {
            break;
        }
    }
    assert_eq!(reaped, 3);
    assert!(dev.complete(heads[3], 0));
    // A completion between the last pop and the new wish: enable_interrupts reports it,
    // since its interrupt was suppressed.
    assert!(q.pop_used().is_some());
    assert!(!dev.complete(heads[4], 0));
    assert!(q.enable_interrupts());
    assert!(q.pop_used().is_some());
    assert!(!q.enable_interrupts());
    assert!(dev.complete(heads[5], 0));
}

#[test]
fn a_used_entry_naming_no_chain_in_flight_is_skipped() {
    reset_memory();
    let mut q = SplitQueue::<FakeHal>::new(8, false).unwrap();
    let mut dev = Device::new(&q, false);
    let t = q.add(chain(2, 0x1000)).unwrap();
    dev.take().unwrap();
    dev.complete(5, 0);
    dev.complete(900, 0);
    dev.complete(t, 3);
    assert_eq!(
        q.pop_used(),
        Some(Used {
            head: t,
            written: 3
        })
    );
    assert_eq!(q.pop_used(), None);
    assert_eq!(q.free_descriptors(), 8);
}

#[test]
fn reset_forgets_every_chain_and_clears_the_rings() {
    reset_memory();
    let mut q = SplitQueue::<FakeHal>::new(8, true).unwrap();
    let mut dev = Device::new(&q, true);
    q.add(chain(3, 0x1000)).unwrap();
    q.add(chain(2, 0x9000)).unwrap();
    dev.take().unwrap();
    q.reset();
    assert_eq!(q.free_descriptors(), 8);
    assert_eq!(q.in_flight(), 0);
    let (desc, _, used) = q.addresses();
    assert!(
        peek(desc, (used - desc) as usize + 4 + 8 * 8 + 2)
            .iter()
            .all(|&b| b == 0)
    );
    // A fresh device sees the queue from index 0.
    let mut dev = Device::new(&q, true);
    let c = chain(4, 0x20_0000);
    let t = q.add(c.iter().copied()).unwrap();
    assert_eq!(dev.take(), Some((t, c)));
}

#[test]
fn sizes_memory_and_its_return() {
    reset_memory();
    assert!(SplitQueue::<FakeHal>::new(12, true).is_none());
    assert!(SplitQueue::<FakeHal>::new(0, true).is_none());
    fail_dma_alloc(true);
    assert!(SplitQueue::<FakeHal>::new(8, true).is_none());
    fail_dma_alloc(false);
    let before = dma_pages();
    let q = SplitQueue::<FakeHal>::new(256, true).unwrap();
    // 4096 + 520 + 2054 bytes: two pages.
    assert_eq!(dma_pages(), before + 2);
    let (desc, avail, used) = q.addresses();
    // The used ring 4-aligned after the available ring's 4 + 512 + 2 bytes.
    assert_eq!((avail - desc, used - desc), (4096, 4616));
    drop(q);
    assert_eq!(dma_pages(), before);
}

#[test]
fn a_used_index_running_past_the_queue_stops_reaping() {
    reset_memory();
    let mut q = SplitQueue::<FakeHal>::new(8, true).unwrap();
    let mut dev = Device::new(&q, true);
    let t = q.add(chain(1, 0x1000)).unwrap();
    dev.take().unwrap();
    dev.complete(t, 0);
    // The device claims 20 more entries than it could have written.
    poke(dev.used + 2, &21u16.to_le_bytes());
    assert_eq!(q.pop_used(), None);
    assert_eq!(q.in_flight(), 1, "nothing was completed from stale entries");
    // A reset clears the state; the queue works again.
    q.reset();
    let mut dev = Device::new(&q, true);
    let t = q.add(chain(1, 0x2000)).unwrap();
    dev.take().unwrap();
    dev.complete(t, 4);
    assert_eq!(
        q.pop_used(),
        Some(Used {
            head: t,
            written: 4
        })
    );
}

#[test]
fn without_event_indices_enable_interrupts_still_reports_late_entries() {
    reset_memory();
    let mut q = SplitQueue::<FakeHal>::new(8, false).unwrap();
    let mut dev = Device::new(&q, false);
    let t = q.add(chain(1, 0x1000)).unwrap();
    dev.take().unwrap();
    assert!(!q.enable_interrupts());
    dev.complete(t, 0);
    assert!(q.enable_interrupts());
    assert!(q.pop_used().is_some());
    assert!(!q.enable_interrupts());
    // No used_event is written without event indices.
    let (_, avail, _) = q.addresses();
    assert_eq!(peek(avail + 4 + 2 * 8, 2), vec![0, 0]);
}
