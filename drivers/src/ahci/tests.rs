//! Host tests: encodings, IDENTIFY parsing, slot bookkeeping, and the whole driver
//! against the simulated HBA of [`super::testing`].

use std::boxed::Box;
use std::string::String;
use std::sync::{Arc, Mutex};
use std::vec;
use std::vec::Vec;

use super::fis::*;
use super::identify::{Identify, ata_string};
use super::slots::{Kind, SlotTable, bits};
use super::testing::{self, ErrorModel, FakeDisk, FakeHal, FakeHba, IdentifySpec};
use super::*;
use crate::block::{BlockDevice, BlockError, Op, Request, Segment, stats};

// ---------------------------------------------------------------------------------------
// FIS, command header, PRDT

#[test]
fn read_dma_ext_fis() {
    let c = AtaCommand::read_write(Op::Read, 0x0000_1234_5678_9ABC, 8, true).unwrap();
    assert_eq!(
        c.to_fis(),
        [
            0x27, 0x80, 0x25, 0, 0xBC, 0x9A, 0x78, 0x40, 0x56, 0x34, 0x12, 0, 8, 0, 0, 0, 0, 0, 0,
            0
        ]
    );
    assert!(!c.is_write());
    let w = AtaCommand::read_write(Op::Write, 7, 65536, true).unwrap();
    let f = w.to_fis();
    assert_eq!(
        (f[2], f[4], f[12], f[13]),
        (ATA_WRITE_DMA_EXT, 7, 0, 0),
        "65536 sectors is count 0"
    );
    assert!(w.is_write());
    let w = AtaCommand::read_write(Op::Write, 0, 256, true).unwrap();
    assert_eq!((w.to_fis()[12], w.to_fis()[13]), (0, 1));
}

#[test]
fn lba28_fis() {
    let c = AtaCommand::read_write(Op::Read, 0x0ABC_DEF1, 256, false).unwrap();
    let f = c.to_fis();
    assert_eq!(f[2], ATA_READ_DMA);
    assert_eq!((f[4], f[5], f[6]), (0xF1, 0xDE, 0xBC));
    assert_eq!(f[7], 0x40 | 0x0A, "LBA bits 24..28 in the device register");
    assert_eq!((f[8], f[9], f[10]), (0, 0, 0), "no high LBA bytes");
    assert_eq!((f[12], f[13]), (0, 0), "256 sectors is count 0");
    let w = AtaCommand::read_write(Op::Write, 5, 3, false).unwrap();
    assert_eq!((w.to_fis()[2], w.to_fis()[12]), (ATA_WRITE_DMA, 3));
}

#[test]
fn command_limits() {
    use BlockError::*;
    assert_eq!(
        AtaCommand::read_write(Op::Read, 0, 0, true),
        Err(ZeroLength)
    );
    assert_eq!(
        AtaCommand::read_write(Op::Read, 0, 65537, true),
        Err(TooLarge)
    );
    assert_eq!(
        AtaCommand::read_write(Op::Read, 0, 257, false),
        Err(TooLarge)
    );
    assert_eq!(
        AtaCommand::read_write(Op::Read, (1 << 48) - 1, 2, true),
        Err(OutOfRange)
    );
    assert!(AtaCommand::read_write(Op::Read, (1 << 48) - 1, 1, true).is_ok());
    assert_eq!(
        AtaCommand::read_write(Op::Read, (1 << 28) - 1, 2, false),
        Err(OutOfRange)
    );
    assert_eq!(
        AtaCommand::read_write(Op::Read, u64::MAX, 1, true),
        Err(OutOfRange)
    );
    assert_eq!(
        AtaCommand::read_write(Op::Flush, 0, 1, true),
        Err(Unsupported)
    );
}

#[test]
fn flush_and_identify_fis() {
    let f = AtaCommand::flush(true).to_fis();
    assert_eq!(&f[..4], &[0x27, 0x80, 0xEA, 0]);
    assert!(
        f[4..].iter().all(|&b| b == 0),
        "no LBA, count or device bits"
    );
    assert_eq!(AtaCommand::flush(false).to_fis()[2], 0xE7);
    let i = AtaCommand::simple(ATA_IDENTIFY).to_fis();
    assert_eq!(&i[..3], &[0x27, 0x80, 0xEC]);
    assert_eq!(le_dwords::<5>(&i)[0], 0x00EC_8027);
}

#[test]
fn command_header_encoding() {
    let h = command_header(true, 3, 0x1_2345_6780);
    assert_eq!(h, [5 | (1 << 6) | (3 << 16), 0, 0x2345_6780, 1]);
    assert_eq!(command_header(false, 0, 0x1000)[0], 5);
}

#[test]
fn prdt_one_entry_per_segment() {
    let p = build_prdt(&[(0x1000, 4096), (0x8_0000_0200, 512)], 8).unwrap();
    assert_eq!(
        p,
        vec![
            Prd {
                addr: 0x1000,
                bytes: 4096,
                interrupt: false
            },
            Prd {
                addr: 0x8_0000_0200,
                bytes: 512,
                interrupt: false
            },
        ]
    );
    assert_eq!(p[0].encode(), [0x1000, 0, 0, 4095]);
    assert_eq!(p[1].encode(), [0x200, 8, 0, 511]);
    let irq = Prd {
        addr: 0x2000,
        bytes: PRD_MAX_BYTES,
        interrupt: true,
    };
    assert_eq!(
        irq.encode()[3],
        (1 << 31) | 0x3F_FFFF,
        "4 MiB is DBC 0x3fffff, I in bit 31"
    );
}

#[test]
fn prdt_splits_at_4_mib() {
    let nine = 9 * 1024 * 1024;
    let p = build_prdt(&[(0x100_0000, nine)], 8).unwrap();
    let parts: Vec<(u64, u32)> = p.iter().map(|e| (e.addr, e.bytes)).collect();
    assert_eq!(
        parts,
        [
            (0x100_0000, PRD_MAX_BYTES),
            (0x140_0000, PRD_MAX_BYTES),
            (0x180_0000, 1024 * 1024)
        ]
    );
    assert!(p.iter().all(|e| !e.interrupt));
    assert_eq!(
        build_prdt(&[(0x100_0000, nine)], 2),
        Err(BlockError::TooLarge)
    );
    assert_eq!(
        build_prdt(&[(0x1000, 512); 3], 2),
        Err(BlockError::TooLarge)
    );
}

#[test]
fn prdt_rejects_odd_and_empty() {
    assert_eq!(build_prdt(&[(0x1001, 512)], 8), Err(BlockError::Misaligned));
    assert_eq!(build_prdt(&[(0x1000, 511)], 8), Err(BlockError::Misaligned));
    assert_eq!(build_prdt(&[(0x1000, 0)], 8), Err(BlockError::ZeroLength));
    assert_eq!(
        build_prdt(&[(u64::MAX - 1, 4)], 8),
        Err(BlockError::OutOfRange)
    );
    assert_eq!(build_prdt(&[], 8), Ok(vec![]));
}

#[test]
fn bounce_decision() {
    let seg = |phys, len| Segment { phys, len };
    assert!(reachable(&seg(0xFFFF_F000, 4096), false));
    assert!(!reachable(&seg(0xFFFF_F000, 8192), false), "crosses 4 GiB");
    assert!(!reachable(&seg(0x1_0000_0000, 512), false));
    assert!(reachable(&seg(0x1_0000_0000, 512), true));
    assert!(reachable(&seg(u64::MAX - 511, 512), true));
}

// ---------------------------------------------------------------------------------------
// IDENTIFY

#[test]
fn identify_lba48_disk() {
    let spec = IdentifySpec {
        sectors: 0x1_2345_6789,
        ..IdentifySpec::default()
    };
    let id = Identify::parse(&spec.build());
    assert_eq!(id.sectors, 0x1_2345_6789);
    assert!(id.lba48 && id.lba && id.dma);
    assert_eq!(id.model, "QEMU HARDDISK");
    assert_eq!(id.serial, "QM00005");
    assert_eq!(id.firmware, "2.5+");
    assert!(id.write_cache_supported && id.write_cache_enabled && id.flush && id.flush_ext);
    assert!(id.has_flushable_cache());
    assert_eq!(id.logical_sector_size, 512);
    assert_eq!(id.ncq_depth, Some(32));
    assert!(!id.bad_checksum);
}

#[test]
fn identify_lba28_disk() {
    let spec = IdentifySpec {
        sectors: 0x00AB_CDEF,
        lba48: false,
        flush_ext: false,
        ncq_depth: None,
        ..IdentifySpec::default()
    };
    let mut data = spec.build();
    // Junk in the LBA48 words must be ignored without the LBA48 bit.
    data[200] = 0xFF;
    data[201] = 0xFF;
    let id = Identify::parse(&data);
    assert!(!id.lba48);
    assert_eq!(id.sectors, 0x00AB_CDEF);
    assert!(id.flush && !id.flush_ext && id.has_flushable_cache());
    assert_eq!(id.ncq_depth, None);
    assert!(id.bad_checksum, "the junk broke the checksum");
}

#[test]
fn identify_lba48_words_zero_falls_back_to_lba28() {
    let mut data = IdentifySpec {
        sectors: 1000,
        ..IdentifySpec::default()
    }
    .build();
    for b in &mut data[200..208] {
        *b = 0;
    }
    assert_eq!(Identify::parse(&data).sectors, 1000);
}

#[test]
fn identify_strings_are_swapped_and_trimmed() {
    let mut data = [0u8; 512];
    // Word 27 = "AB" is stored as bytes 'B','A'.
    let model = b"  WDC WD10EZEX-08WN4A0                   ";
    for (i, pair) in model[..40].chunks(2).enumerate() {
        data[54 + 2 * i] = pair[1];
        data[54 + 2 * i + 1] = pair[0];
    }
    assert_eq!(ata_string(&data, 27, 46), "WDC WD10EZEX-08WN4A0");
    data[54] = 0x07; // a control character
    assert!(
        ata_string(&data, 27, 46).ends_with("WN4A0") && ata_string(&data, 27, 46).contains('?')
    );
    assert_eq!(ata_string(&[0u8; 512], 10, 19), "", "NULs are blanks");
}

#[test]
fn identify_cache_and_sector_size_bits() {
    let id = Identify::parse(
        &IdentifySpec {
            write_cache: false,
            ..IdentifySpec::default()
        }
        .build(),
    );
    assert!(!id.write_cache_enabled && !id.has_flushable_cache());
    let id = Identify::parse(
        &IdentifySpec {
            logical_sector_size: 4096,
            ..IdentifySpec::default()
        }
        .build(),
    );
    assert_eq!(id.logical_sector_size, 4096);
    // Word 83 not valid (bits 15..14 != 01): nothing of 82..84 is believed.
    let mut data = IdentifySpec::default().build();
    data[167] = 0xC0;
    let id = Identify::parse(&data);
    assert!(!id.lba48 && !id.flush_ext && !id.write_cache_supported);
    // Word 87 not valid: enabled falls back to supported.
    let mut data = IdentifySpec::default().build();
    data[174] = 0;
    data[175] = 0;
    data[170] = 0;
    assert!(Identify::parse(&data).write_cache_enabled);
}

// ---------------------------------------------------------------------------------------
// Slots

const Q: Kind = Kind::Queued;
const N: Kind = Kind::NonQueued;

#[test]
fn slots_lowest_free_first() {
    let mut t = SlotTable::new(4, 32);
    assert_eq!(t.next_free(N), Some(0));
    t.take(0, N);
    t.take(1, N);
    assert_eq!(t.next_free(N), Some(2));
    t.take(2, N);
    t.take(3, N);
    assert_eq!(t.next_free(N), None);
    t.release(1);
    assert_eq!(t.next_free(N), Some(1));
    assert_eq!(
        t.finished(0b1101 & !0b0100, 0),
        0b0100,
        "slot 2 cleared in PxCI"
    );
    assert_eq!(SlotTable::new(40, 32).nslots(), 32);
    let mut full = SlotTable::new(32, 32);
    for s in 0..32 {
        full.take(s, N);
    }
    assert_eq!(full.next_free(N), None);
    assert_eq!(bits(0x8000_0005).collect::<Vec<_>>(), [0, 2, 31]);
}

#[test]
fn slots_serial_mode_and_zombies() {
    let mut t = SlotTable::new(8, 32);
    t.take(0, N);
    t.take(1, N);
    t.take(2, N);
    // Stopped with slots 1 and 2 still in PxCI (a QEMU-like HBA).
    t.stopped(0b110);
    assert_eq!((t.busy(), t.zombies()), (0, 0b110));
    t.enter_serial(3);
    assert_eq!(t.next_free(N), None, "serial mode waits for zombies too");
    assert_eq!(t.finished(0b100, 0), 0);
    assert_eq!(t.zombies(), 0b100);
    assert_eq!(t.finished(0, 0), 0);
    assert_eq!(t.zombies(), 0);
    assert_eq!(t.next_free(N), Some(0));
    t.take(0, N);
    assert_eq!(t.next_free(N), None, "one at a time");
    t.release(0);
    t.command_finished();
    t.command_finished();
    t.command_finished();
    assert_eq!(t.serial_left(), 0);
    t.take(0, N);
    assert_eq!(t.next_free(N), Some(1));
}

#[test]
fn slots_queued_and_non_queued_never_mix() {
    let mut t = SlotTable::new(8, 4);
    assert_eq!(t.next_free(Q), Some(0));
    t.take(0, Q);
    t.take(1, Q);
    assert_eq!(
        t.next_free(N),
        None,
        "a non-queued command waits for the queued ones"
    );
    assert_eq!(t.queued(), 0b11);
    t.take(2, Q);
    t.take(3, Q);
    assert_eq!(
        t.next_free(Q),
        None,
        "tags only below the device's queue depth"
    );
    // Slot 1 was sent (PxCI clear) but is still outstanding (PxSACT set); slot 2 is done.
    assert_eq!(t.finished(0b1000, 0b1011), 0b0100);
    t.release(2);
    t.release(0);
    t.release(1);
    t.release(3);
    assert_eq!((t.busy(), t.queued()), (0, 0));
    assert_eq!(t.next_free(N), Some(0));
    t.take(0, N);
    assert_eq!(
        t.next_free(Q),
        None,
        "a queued command waits for the non-queued one"
    );
    assert_eq!(t.next_free(N), Some(1));
    // A non-queued command finishes with PxCI alone: a stale PxSACT bit does not matter.
    assert_eq!(t.finished(0, 0b1), 0b1);
    t.take(5, N);
    t.stopped(0);
    assert_eq!((t.busy(), t.queued()), (0, 0));
    assert_eq!(SlotTable::new(32, 32).next_free(Q), Some(0));
}

// ---------------------------------------------------------------------------------------
// The driver against the simulated HBA

type Ctrl = AhciController<FakeHal, FakeHba>;
type Disk = AhciDisk<FakeHal, FakeHba>;
type Results = Arc<Mutex<Vec<(u64, Result<u64, BlockError>)>>>;

/// An HBA with interrupts and without NCQ: the tests outside the NCQ_TESTS section are of
/// non-queued commands.
fn hba(nslots: u32, model: ErrorModel, disks: Vec<Option<FakeDisk>>) -> (FakeHba, Arc<Ctrl>) {
    hba_with(nslots, model, disks, false)
}

fn hba_with(
    nslots: u32,
    model: ErrorModel,
    disks: Vec<Option<FakeDisk>>,
    ncq: bool,
) -> (FakeHba, Arc<Ctrl>) {
    testing::reset_memory();
    let n = disks.len().max(1);
    let fake = FakeHba::new(n, nslots, true, disks);
    fake.with(|s| s.model = model);
    let ctrl = Ctrl::init(fake.clone(), String::from("test"), true, ncq).expect("init");
    (fake, ctrl)
}

fn one_disk(nslots: u32, model: ErrorModel) -> (FakeHba, Arc<Ctrl>, Arc<Disk>) {
    let (fake, ctrl) = hba(
        nslots,
        model,
        vec![Some(FakeDisk::new(&IdentifySpec::default()))],
    );
    let disk = ctrl.disks().pop().expect("a disk");
    (fake, ctrl, disk)
}

/// A request whose completion is recorded in `out` under `tag`.
fn request(op: Op, sector: u64, segs: &[(u64, u32)], out: &Results, tag: u64) -> Request {
    let out = out.clone();
    Request::new(
        op,
        sector,
        segs.iter()
            .map(|&(phys, len)| Segment { phys, len })
            .collect(),
        Box::new(move |c| out.lock().unwrap().push((tag, c.result))),
    )
}

fn results() -> Results {
    Arc::new(Mutex::new(Vec::new()))
}

/// The fake disk's initial content of `sector`.
fn sector_pattern(sector: u64) -> Vec<u8> {
    let mut v = vec![0u8; 512];
    v[..8].copy_from_slice(&sector.to_le_bytes());
    v[8] = 0xD5;
    v
}

fn sorted(r: &Results) -> Vec<(u64, Result<u64, BlockError>)> {
    let mut v = r.lock().unwrap().clone();
    v.sort_by_key(|x| x.0);
    v
}

#[test]
fn probe_sets_up_ports_with_ata_disks() {
    let mut atapi = FakeDisk::new(&IdentifySpec::default());
    atapi.sig = SIG_ATAPI_FOR_TEST;
    let big = IdentifySpec {
        sectors: 3 << 30,
        model: "BIG DISK",
        serial: "S2",
        ..IdentifySpec::default()
    };
    let (fake, ctrl) = hba(
        32,
        ErrorModel::Qemu,
        vec![
            Some(FakeDisk::new(&IdentifySpec::default())),
            None,
            Some(atapi),
            Some(FakeDisk::new(&big)),
        ],
    );
    let disks = ctrl.disks();
    assert_eq!(disks.iter().map(|d| d.port()).collect::<Vec<_>>(), [0, 3]);
    assert!(ctrl.uses_interrupts());
    let i = disks[0].info();
    assert_eq!(i.name, "");
    assert_eq!(
        (i.model.as_str(), i.serial.as_str(), i.sectors),
        ("QEMU HARDDISK", "QM00005", 64 * 2048)
    );
    assert_eq!(
        (i.queue_depth, i.max_segments, i.max_bytes),
        (32, MAX_SEGMENTS, 32 << 20)
    );
    assert!(i.flush && !i.read_only);
    for want in ["32 slots", "NCQ off", "64-bit DMA", "flush", "LBA48"] {
        assert!(i.features.contains(want), "{want} in {}", i.features);
    }
    assert_eq!(disks[1].info().sectors, 3 << 30);
    assert_eq!(disks[1].info().model, "BIG DISK");
    // Running ports have interrupts enabled and ST|FRE; the others are left alone.
    for p in [0, 3] {
        assert_eq!(fake.ie(p), regs::IE_MASK);
        assert_eq!(
            fake.cmd(p) & (regs::CMD_ST | regs::CMD_FRE),
            regs::CMD_ST | regs::CMD_FRE
        );
    }
    assert_eq!(fake.ie(2), 0);
    assert_eq!(fake.cmd(2) & regs::CMD_ST, 0);
    assert_eq!(fake.with(|s| s.resets), 2, "HBA reset once by the driver");
    assert!(!fake.irq(), "nothing pending after probe");
}

const SIG_ATAPI_FOR_TEST: u32 = regs::SIG_ATAPI;

#[test]
fn read_and_write_round_trip() {
    let (fake, ctrl, disk) = one_disk(32, ErrorModel::Qemu);
    let out = results();
    // Two segments, not adjacent, above 4 GiB (the HBA has S64A: no bounce).
    testing::buffer(0x2_0000_0000, 4096);
    testing::buffer(0x3_0000_1000, 512);
    let before = stats::get("bounce_bytes").unwrap();
    disk.submit(request(
        Op::Read,
        10,
        &[(0x2_0000_0000, 4096), (0x3_0000_1000, 512)],
        &out,
        1,
    ))
    .unwrap();
    assert_eq!(disk.in_flight(), 1);
    assert!(fake.irq());
    assert!(ctrl.handle_interrupt());
    assert_eq!(sorted(&out), [(1, Ok(4608))]);
    assert_eq!(disk.in_flight(), 0);
    for s in 0..8 {
        assert_eq!(
            testing::peek(0x2_0000_0000 + s * 512, 512),
            sector_pattern(10 + s)
        );
    }
    assert_eq!(testing::peek(0x3_0000_1000, 512), sector_pattern(18));
    assert_eq!(
        stats::get("bounce_bytes").unwrap(),
        before,
        "no bounce with 64-bit DMA"
    );

    testing::buffer(0x5000_0000, 1024);
    testing::poke(0x5000_0000, &[0xAB; 1024]);
    disk.submit(request(Op::Write, 100, &[(0x5000_0000, 1024)], &out, 2))
        .unwrap();
    ctrl.handle_interrupt();
    assert_eq!(sorted(&out)[1], (2, Ok(1024)));
    fake.disk(0, |d| {
        assert!(d.data[100 * 512..102 * 512].iter().all(|&b| b == 0xAB))
    });
    let log = fake.disk(0, |d| d.log.clone());
    assert_eq!(log.last(), Some(&(0, ATA_WRITE_DMA_EXT, 100, 2, false)));
    assert!(!fake.irq());
}

#[test]
fn requests_beyond_the_slots_wait_and_use_every_slot() {
    let (fake, ctrl, disk) = one_disk(4, ErrorModel::Qemu);
    fake.with(|s| s.auto = false);
    let out = results();
    let base = 0x4000_0000u64;
    testing::buffer(base, 20 * 512);
    for i in 0..20u64 {
        disk.submit(request(
            Op::Read,
            1000 + i,
            &[(base + i * 512, 512)],
            &out,
            i,
        ))
        .unwrap();
    }
    assert_eq!(fake.ci(0), 0b1111, "four slots in PxCI at once");
    assert_eq!(disk.in_flight(), 20);
    for _ in 0..20 {
        fake.step(0);
        ctrl.handle_interrupt();
    }
    let r = sorted(&out);
    assert_eq!(r.len(), 20);
    assert!(r.iter().all(|(_, res)| *res == Ok(512)));
    for i in 0..20 {
        assert_eq!(testing::peek(base + i * 512, 512), sector_pattern(1000 + i));
    }
    assert_eq!(disk.in_flight(), 0);
    assert_eq!(fake.ci(0), 0);
    // Completions reaped in batches while the HBA ran several.
    let slots_used: std::collections::BTreeSet<u8> =
        fake.disk(0, |d| d.log.iter().map(|e| e.0).collect());
    assert_eq!(slots_used.len(), 4);
}

#[test]
fn big_segments_are_split_into_prds() {
    let spec = IdentifySpec {
        sectors: 1 << 20,
        ..IdentifySpec::default()
    };
    let (fake, ctrl) = hba(8, ErrorModel::Qemu, vec![Some(FakeDisk::new(&spec))]);
    let disk = &ctrl.disks()[0];
    let out = results();
    let len = 9u32 << 20;
    testing::buffer(0x1_0000_0000, len as usize);
    disk.submit(request(Op::Read, 0, &[(0x1_0000_0000, len)], &out, 0))
        .unwrap();
    ctrl.handle_interrupt();
    assert_eq!(sorted(&out), [(0, Ok(u64::from(len)))]);
    assert_eq!(
        testing::peek(0x1_0000_0000 + (len as u64) - 512, 512),
        sector_pattern(u64::from(len / 512) - 1)
    );
    assert_eq!(
        fake.disk(0, |d| d.log.last().copied()),
        Some((0, ATA_READ_DMA_EXT, 0, len / 512, false))
    );
}

#[test]
fn flush_goes_to_the_device_or_is_refused() {
    let out = results();
    {
        let (fake, ctrl, disk) = one_disk(32, ErrorModel::Qemu);
        disk.submit(request(Op::Flush, 0, &[], &out, 0)).unwrap();
        ctrl.handle_interrupt();
        assert_eq!(sorted(&out), [(0, Ok(0))]);
        assert_eq!(fake.disk(0, |d| d.flushes), 1);
    }

    let spec = IdentifySpec {
        write_cache: false,
        ..IdentifySpec::default()
    };
    let (_fake, ctrl) = hba(32, ErrorModel::Qemu, vec![Some(FakeDisk::new(&spec))]);
    let disk = &ctrl.disks()[0];
    assert!(!disk.info().flush);
    assert_eq!(
        disk.submit(request(Op::Flush, 0, &[], &out, 1)),
        Err(BlockError::Unsupported)
    );
    assert_eq!(
        out.lock().unwrap().len(),
        1,
        "rejected request not completed"
    );
}

#[test]
fn invalid_requests_are_rejected_before_the_hardware() {
    let (fake, _ctrl, disk) = one_disk(32, ErrorModel::Qemu);
    let out = results();
    let n = disk.info().sectors;
    assert_eq!(
        disk.submit(request(Op::Read, n, &[(0x1000, 512)], &out, 0)),
        Err(BlockError::OutOfRange)
    );
    assert_eq!(
        disk.submit(request(Op::Read, 0, &[(0x1100, 100)], &out, 0)),
        Err(BlockError::Misaligned)
    );
    assert_eq!(
        disk.submit(request(Op::Read, 0, &[], &out, 0)),
        Err(BlockError::ZeroLength)
    );
    let many: Vec<(u64, u32)> = (0..MAX_SEGMENTS as u64 + 1)
        .map(|i| (0x10_0000 + i * 512, 512))
        .collect();
    assert_eq!(
        disk.submit(request(Op::Read, 0, &many, &out, 0)),
        Err(BlockError::TooLarge)
    );
    assert!(out.lock().unwrap().is_empty());
    assert_eq!(
        fake.disk(0, |d| d.log.len()),
        1,
        "only IDENTIFY reached the device"
    );
}

#[test]
fn lba28_disk_uses_the_short_commands() {
    let spec = IdentifySpec {
        sectors: 5000,
        lba48: false,
        flush_ext: false,
        ..IdentifySpec::default()
    };
    let (fake, ctrl) = hba(32, ErrorModel::Qemu, vec![Some(FakeDisk::new(&spec))]);
    let disk = &ctrl.disks()[0];
    assert_eq!(disk.info().max_bytes, 256 * 512);
    assert!(disk.info().features.contains("LBA28"));
    let out = results();
    testing::buffer(0x6000_0000, 4096);
    disk.submit(request(Op::Read, 4990, &[(0x6000_0000, 4096)], &out, 0))
        .unwrap();
    disk.submit(request(Op::Flush, 0, &[], &out, 1)).unwrap();
    ctrl.handle_interrupt();
    assert_eq!(sorted(&out), [(0, Ok(4096)), (1, Ok(0))]);
    assert_eq!(testing::peek(0x6000_0000, 512), sector_pattern(4990));
    let log: Vec<_> = fake.disk(0, |d| d.log.iter().map(|e| (e.1, e.2, e.3)).collect());
    assert_eq!(
        log,
        [
            (ATA_IDENTIFY, 0, 0),
            (ATA_READ_DMA, 4990, 8),
            (ATA_FLUSH_CACHE, 0, 0)
        ]
    );
}

fn error_with_one_outstanding(model: ErrorModel) {
    let (fake, ctrl, disk) = one_disk(32, model);
    fake.disk(0, |d| {
        d.bad.insert(2048);
    });
    let out = results();
    testing::buffer(0x7000_0000, 8192);
    disk.submit(request(Op::Read, 2048, &[(0x7000_0000, 512)], &out, 0))
        .unwrap();
    ctrl.handle_interrupt();
    assert_eq!(sorted(&out), [(0, Err(BlockError::Io))]);
    assert_eq!(fake.comresets(0), 0, "the device was idle: no COMRESET");
    // Still usable, including the sectors around the bad one.
    disk.submit(request(Op::Read, 2040, &[(0x7000_0000, 4096)], &out, 1))
        .unwrap();
    ctrl.handle_interrupt();
    assert_eq!(sorted(&out)[1], (1, Ok(4096)));
    assert_eq!(
        testing::peek(0x7000_0000 + 7 * 512, 512),
        sector_pattern(2047)
    );
    assert_eq!(disk.in_flight(), 0);
    assert_eq!(
        fake.disk(0, |d| d.log.iter().filter(|e| e.4).count()),
        1,
        "a device error is not retried"
    );
}

#[test]
fn error_with_one_outstanding_qemu() {
    error_with_one_outstanding(ErrorModel::Qemu);
}

#[test]
fn error_with_one_outstanding_spec() {
    error_with_one_outstanding(ErrorModel::Spec);
}

/// Submits `n` one-sector reads of sectors `sector..`, into `base + 512 * i`, tagged
/// `tag + i`.
fn submit_reads(disk: &Disk, out: &Results, base: u64, sector: u64, n: u64, tag: u64) {
    for i in 0..n {
        disk.submit(request(
            Op::Read,
            sector + i,
            &[(base + i * 512, 512)],
            out,
            tag + i,
        ))
        .unwrap();
    }
}

/// The `n` reads of [`submit_reads`] (tags from 0) all completed: the one tagged `bad`
/// with `Io`, the others with the sector's data.
fn check_reads(out: &Results, base: u64, sector: u64, n: u64, bad: u64) {
    let r = sorted(out);
    assert_eq!(r.len(), n as usize, "{r:?}");
    for (tag, res) in r {
        if tag == bad {
            assert_eq!(res, Err(BlockError::Io));
        } else {
            assert_eq!(res, Ok(512), "request {tag}");
            assert_eq!(
                testing::peek(base + tag * 512, 512),
                sector_pattern(sector + tag)
            );
        }
    }
}

fn error_among_many(model: ErrorModel) {
    let (fake, ctrl, disk) = one_disk(8, model);
    fake.with(|s| s.auto = false);
    fake.disk(0, |d| {
        d.bad.insert(3000 + 5);
    });
    let out = results();
    let base = 0x8000_0000u64;
    testing::buffer(base, 12 * 512);
    submit_reads(&disk, &out, base, 3000, 12, 0);
    assert_eq!(fake.ci(0), 0xFF);
    // The HBA runs everything it can; the driver sorts it out.
    for _ in 0..100 {
        fake.run(0);
        ctrl.handle_interrupt();
        if out.lock().unwrap().len() == 12 {
            break;
        }
    }
    check_reads(&out, base, 3000, 12, 5);
    assert_eq!(disk.in_flight(), 0);
    assert_eq!(fake.ci(0), 0);
    // Nothing stale is left: new requests work and use all slots again.
    submit_reads(&disk, &out, base, 4000, 8, 100);
    assert_eq!(fake.ci(0), 0xFF);
    fake.run(0);
    ctrl.handle_interrupt();
    assert_eq!(out.lock().unwrap().len(), 20);
    assert!(sorted(&out)[12..].iter().all(|(_, r)| *r == Ok(512)));
}

#[test]
fn error_among_many_qemu() {
    error_among_many(ErrorModel::Qemu);
}

#[test]
fn error_among_many_spec() {
    error_among_many(ErrorModel::Spec);
}

#[test]
fn qemu_stale_slots_are_neutralised() {
    // QEMU model, an error, and slots still in PxCI when the port restarts: they must
    // run as no-data commands, not as the old reads.
    let (fake, ctrl, disk) = one_disk(8, ErrorModel::Qemu);
    fake.with(|s| s.auto = false);
    fake.disk(0, |d| {
        d.bad.insert(10);
    });
    let out = results();
    testing::buffer(0x9000_0000, 4 * 512);
    for i in 0..4u64 {
        disk.submit(request(
            Op::Read,
            10 + i,
            &[(0x9000_0000 + i * 512, 512)],
            &out,
            i,
        ))
        .unwrap();
    }
    fake.step(0); // slot 0 fails, 1..3 stay in PxCI
    ctrl.handle_interrupt();
    fake.run(0);
    for _ in 0..10 {
        ctrl.handle_interrupt();
        fake.run(0);
    }
    let r = sorted(&out);
    assert_eq!(
        r,
        [
            (0, Err(BlockError::Io)),
            (1, Ok(512)),
            (2, Ok(512)),
            (3, Ok(512))
        ]
    );
    let log = fake.disk(0, |d| d.log.clone());
    let check_power = log.iter().filter(|e| e.1 == ATA_CHECK_POWER_MODE).count();
    assert_eq!(
        check_power, 3,
        "the three stale slots ran neutralised: {log:?}"
    );
    let reads_of = |lba| {
        log.iter()
            .filter(|e| e.1 == ATA_READ_DMA_EXT && e.2 == lba)
            .count()
    };
    assert_eq!(
        (reads_of(11), reads_of(12), reads_of(13)),
        (1, 1, 1),
        "{log:?}"
    );
}

#[test]
fn bounce_buffers_only_for_unreachable_segments() {
    testing::reset_memory();
    let fake = FakeHba::new(
        1,
        32,
        false,
        vec![Some(FakeDisk::new(&IdentifySpec::default()))],
    );
    testing::set_dma_base(0x10_0000);
    let ctrl = Ctrl::init(fake.clone(), String::from("test32"), false, false).unwrap();
    let disk = &ctrl.disks()[0];
    assert!(disk.info().features.contains("32-bit DMA"));
    let out = results();
    testing::buffer(0x1_2000_0000, 8192); // above 4 GiB
    testing::buffer(0x3000_0000, 512); // below
    let before = stats::get("bounce_bytes").unwrap();
    let pages = testing::dma_pages();
    disk.submit(request(
        Op::Read,
        50,
        &[(0x1_2000_0000, 8192), (0x3000_0000, 512)],
        &out,
        0,
    ))
    .unwrap();
    ctrl.poll();
    assert_eq!(sorted(&out), [(0, Ok(8704))]);
    assert_eq!(testing::peek(0x1_2000_0000 + 512, 512), sector_pattern(51));
    assert_eq!(testing::peek(0x3000_0000, 512), sector_pattern(66));
    assert!(stats::get("bounce_bytes").unwrap() >= before + 8192);
    assert_eq!(testing::dma_pages(), pages, "bounce buffer freed");

    testing::poke(0x1_2000_0000, &[0x5A; 8192]);
    disk.submit(request(Op::Write, 60, &[(0x1_2000_0000, 8192)], &out, 1))
        .unwrap();
    ctrl.poll();
    assert_eq!(sorted(&out)[1], (1, Ok(8192)));
    fake.disk(0, |d| {
        assert!(d.data[60 * 512..76 * 512].iter().all(|&b| b == 0x5A))
    });
    assert!(stats::get("bounce_bytes").unwrap() >= before + 16384);
    assert_eq!(testing::dma_pages(), pages);
}

#[test]
fn hba_without_64bit_refuses_high_dma_memory() {
    testing::reset_memory();
    let fake = FakeHba::new(
        1,
        32,
        false,
        vec![Some(FakeDisk::new(&IdentifySpec::default()))],
    );
    testing::set_dma_base(0x2_0000_0000);
    let ctrl = Ctrl::init(fake, String::from("high"), false, false).unwrap();
    assert!(ctrl.disks().is_empty());
    assert_eq!(testing::dma_pages(), 0, "port memory given back");
}

#[test]
fn out_of_dma_memory_skips_the_port() {
    testing::reset_memory();
    let fake = FakeHba::new(
        1,
        32,
        true,
        vec![Some(FakeDisk::new(&IdentifySpec::default()))],
    );
    testing::fail_dma_alloc(true);
    let ctrl = Ctrl::init(fake, String::from("nomem"), false, false).unwrap();
    testing::fail_dma_alloc(false);
    assert!(ctrl.disks().is_empty());
}

#[test]
fn non_512_byte_sectors_are_refused() {
    let spec = IdentifySpec {
        logical_sector_size: 4096,
        ..IdentifySpec::default()
    };
    let (fake, ctrl) = hba(32, ErrorModel::Qemu, vec![Some(FakeDisk::new(&spec))]);
    assert!(ctrl.disks().is_empty());
    assert_eq!(
        fake.cmd(0) & (regs::CMD_ST | regs::CMD_FRE),
        0,
        "refused port stopped"
    );
    assert_eq!(testing::dma_pages(), 0);
}

fn timeout(model: ErrorModel, others: u64) {
    let (fake, ctrl, disk) = one_disk(8, model);
    fake.disk(0, |d| {
        d.hang.insert(777);
    });
    let out = results();
    testing::buffer(0xA000_0000, 16 * 512);
    disk.submit(request(Op::Read, 777, &[(0xA000_0000, 512)], &out, 0))
        .unwrap();
    for i in 1..=others {
        disk.submit(request(
            Op::Read,
            100 + i,
            &[(0xA000_0000 + i * 512, 512)],
            &out,
            i,
        ))
        .unwrap();
    }
    ctrl.handle_interrupt();
    assert!(
        out.lock().unwrap().is_empty(),
        "all wait behind the hung command"
    );
    let s = 1_000_000_000;
    ctrl.check_timeouts(5 * s);
    ctrl.check_timeouts(20 * s);
    assert!(out.lock().unwrap().is_empty(), "not yet");
    let mut now = 40 * s;
    for _ in 0..10 {
        ctrl.check_timeouts(now);
        ctrl.handle_interrupt();
        now += 40 * s;
        if out.lock().unwrap().len() as u64 == others + 1 {
            break;
        }
    }
    let r = sorted(&out);
    assert_eq!(r[0], (0, Err(BlockError::Timeout)));
    for i in 1..=others {
        assert_eq!(r[i as usize], (i, Ok(512)));
        assert_eq!(
            testing::peek(0xA000_0000 + i * 512, 512),
            sector_pattern(100 + i)
        );
    }
    assert!(fake.comresets(0) >= 1, "the busy device was reset");
    // Usable afterwards.
    fake.disk(0, |d| d.hang.clear());
    disk.submit(request(Op::Read, 777, &[(0xA000_0000, 512)], &out, 99))
        .unwrap();
    ctrl.handle_interrupt();
    assert_eq!(out.lock().unwrap().last(), Some(&(99, Ok(512))));
    assert_eq!(disk.in_flight(), 0);
}

#[test]
fn timeout_single_qemu() {
    timeout(ErrorModel::Qemu, 0);
}

#[test]
fn timeout_with_others_waiting_qemu() {
    timeout(ErrorModel::Qemu, 3);
}

#[test]
fn timeout_with_others_waiting_spec() {
    timeout(ErrorModel::Spec, 3);
}

#[test]
fn slow_but_progressing_port_does_not_time_out() {
    let (fake, ctrl, disk) = one_disk(8, ErrorModel::Qemu);
    fake.with(|s| s.auto = false);
    let out = results();
    testing::buffer(0xA800_0000, 6 * 512);
    for i in 0..6u64 {
        disk.submit(request(
            Op::Read,
            i,
            &[(0xA800_0000 + i * 512, 512)],
            &out,
            i,
        ))
        .unwrap();
    }
    // One command finishes every 20 s: 120 s in all, but never 30 s without progress.
    let s = 1_000_000_000;
    for k in 0..8u64 {
        ctrl.check_timeouts(k * 20 * s);
        fake.step(0);
        ctrl.handle_interrupt();
    }
    let r = sorted(&out);
    assert_eq!(r.len(), 6);
    assert!(r.iter().all(|(_, res)| *res == Ok(512)), "{r:?}");
    assert_eq!(fake.comresets(0), 0);
}

#[test]
fn unplugged_disk_fails_everything_and_refuses_new_requests() {
    let (fake, ctrl, disk) = one_disk(8, ErrorModel::Qemu);
    fake.with(|s| s.auto = false);
    let out = results();
    testing::buffer(0xB000_0000, 4096);
    for i in 0..10u64 {
        disk.submit(request(Op::Read, i, &[(0xB000_0000, 512)], &out, i))
            .unwrap();
    }
    fake.unplug(0);
    ctrl.handle_interrupt();
    let r = sorted(&out);
    assert_eq!(r.len(), 10);
    assert!(
        r.iter().all(|(_, res)| *res == Err(BlockError::Io)),
        "{r:?}"
    );
    assert_eq!(disk.in_flight(), 0);
    assert_eq!(
        disk.submit(request(Op::Read, 0, &[(0xB000_0000, 512)], &out, 50)),
        Err(BlockError::Io)
    );
    assert_eq!(fake.ie(0), 0);
}

#[test]
fn any_disk_handler_services_the_whole_hba() {
    // One MSI per HBA: whichever disk's handler the kernel wires to it must reap the
    // other ports too.
    let (fake, ctrl) = hba(
        8,
        ErrorModel::Qemu,
        vec![
            Some(FakeDisk::new(&IdentifySpec::default())),
            Some(FakeDisk::new(&IdentifySpec::default())),
        ],
    );
    let disks = ctrl.disks();
    let out = results();
    testing::buffer(0xC800_0000, 1024);
    disks[0]
        .submit(request(Op::Read, 1, &[(0xC800_0000, 512)], &out, 0))
        .unwrap();
    disks[1]
        .submit(request(Op::Read, 2, &[(0xC800_0200, 512)], &out, 1))
        .unwrap();
    assert!(fake.irq());
    disks[1].handle_interrupt();
    assert_eq!(sorted(&out), [(0, Ok(512)), (1, Ok(512))]);
    assert!(!fake.irq());
    drop(ctrl);
    // A disk outliving its controller and siblings still works on its own.
    let d0 = disks[0].clone();
    drop(disks);
    d0.submit(request(Op::Read, 3, &[(0xC800_0000, 512)], &out, 2))
        .unwrap();
    d0.handle_interrupt();
    assert_eq!(sorted(&out)[2], (2, Ok(512)));
}

#[test]
fn completion_may_submit_again() {
    let (_fake, ctrl, disk) = one_disk(2, ErrorModel::Qemu);
    let out = results();
    testing::buffer(0xC000_0000, 512);
    let d2 = disk.clone();
    let out2 = out.clone();
    let chained = Request::new(
        Op::Read,
        1,
        vec![Segment {
            phys: 0xC000_0000,
            len: 512,
        }],
        Box::new(move |c| {
            out2.lock().unwrap().push((0, c.result));
            // A callback runs without the port lock: submitting from it must not deadlock.
            d2.submit(request(Op::Read, 2, &[(0xC000_0000, 512)], &out2, 1))
                .unwrap();
        }),
    );
    disk.submit(chained).unwrap();
    ctrl.handle_interrupt();
    ctrl.handle_interrupt();
    assert_eq!(sorted(&out), [(0, Ok(512)), (1, Ok(512))]);
}

#[test]
fn interrupt_while_the_lock_is_held_is_not_lost() {
    let (fake, _ctrl, disk) = one_disk(4, ErrorModel::Qemu);
    fake.with(|s| s.auto = false);
    let out = results();
    testing::buffer(0xD000_0000, 512);
    disk.submit(request(Op::Read, 3, &[(0xD000_0000, 512)], &out, 0))
        .unwrap();
    fake.run(0);
    disk.with_lock_held(|| {
        // An interrupt arriving now (same CPU) must neither spin nor be forgotten.
        disk.handle_interrupt();
        assert!(out.lock().unwrap().is_empty());
    });
    // The holder would service it when unlocking; here the next entry point does.
    disk.handle_interrupt();
    assert_eq!(sorted(&out), [(0, Ok(512))]);
}

#[test]
fn dropping_the_controller_stops_ports_and_frees_memory() {
    let (fake, ctrl, disk) = one_disk(8, ErrorModel::Qemu);
    fake.with(|s| s.auto = false);
    let out = results();
    testing::buffer(0xE000_0000, 512);
    disk.submit(request(Op::Read, 3, &[(0xE000_0000, 512)], &out, 0))
        .unwrap();
    assert!(testing::dma_pages() > 0);
    drop(ctrl);
    assert!(
        out.lock().unwrap().is_empty(),
        "the kernel still holds the disk"
    );
    drop(disk);
    assert_eq!(sorted(&out), [(0, Err(BlockError::Io))]);
    assert_eq!(fake.cmd(0) & (regs::CMD_ST | regs::CMD_FRE), 0);
    assert_eq!(testing::dma_pages(), 0);
}

// ---------------------------------------------------------------------------------------
// NCQ_TESTS: native command queuing

/// One disk with NCQ on (depth 32 unless `spec` says otherwise).
fn ncq_disk(
    nslots: u32,
    model: ErrorModel,
    spec: &IdentifySpec,
) -> (FakeHba, Arc<Ctrl>, Arc<Disk>) {
    let (fake, ctrl) = hba_with(nslots, model, vec![Some(FakeDisk::new(spec))], true);
    let disk = ctrl.disks().pop().expect("a disk");
    (fake, ctrl, disk)
}

#[test]
fn fpdma_fis() {
    let r = AtaCommand::queued(Op::Read, 0x0102_0304_0506, 65536, 7).unwrap();
    assert!(r.is_queued() && !r.is_write());
    let f = r.to_fis();
    assert_eq!(f[2], ATA_READ_FPDMA_QUEUED);
    assert_eq!(
        (f[3], f[11]),
        (0, 0),
        "65536 sectors wrap to 0 in the features"
    );
    assert_eq!((f[4], f[5], f[6], f[8], f[9], f[10]), (6, 5, 4, 3, 2, 1));
    assert_eq!((f[7], f[12], f[13]), (DEVICE_LBA, 7 << 3, 0));
    let w = AtaCommand::queued(Op::Write, 9, 0x1234, 31).unwrap();
    assert!(w.is_queued() && w.is_write());
    let f = w.to_fis();
    assert_eq!(
        (f[2], f[3], f[11], f[12]),
        (ATA_WRITE_FPDMA_QUEUED, 0x34, 0x12, 31 << 3)
    );
    assert_eq!(
        AtaCommand::queued(Op::Flush, 0, 1, 0),
        Err(BlockError::Unsupported)
    );
    assert_eq!(
        AtaCommand::queued(Op::Read, 0, 0, 0),
        Err(BlockError::ZeroLength)
    );
    assert_eq!(
        AtaCommand::queued(Op::Read, 0, 65537, 0),
        Err(BlockError::TooLarge)
    );
    assert_eq!(
        AtaCommand::queued(Op::Read, (1 << 48) - 1, 2, 0),
        Err(BlockError::OutOfRange)
    );
    assert_eq!(
        AtaCommand::queued(Op::Read, 0, 1, 32),
        Err(BlockError::OutOfRange)
    );
    assert!(
        !AtaCommand::read_write(Op::Read, 0, 1, true)
            .unwrap()
            .is_queued()
    );
}

#[test]
fn ncq_commands_finish_out_of_order_by_sact() {
    let (fake, ctrl, disk) = ncq_disk(32, ErrorModel::Qemu, &IdentifySpec::default());
    assert_eq!(disk.ncq_depth(), 32);
    fake.with(|s| {
        s.hold_ncq = true;
        s.writes.clear();
    });
    let out = results();
    let base = 0x6000_0000u64;
    testing::buffer(base, 8 * 4096);
    testing::poke(base + 4 * 4096, &[0x5A; 4096]);
    for i in 0..4u64 {
        disk.submit(request(
            Op::Read,
            200 + 8 * i,
            &[(base + i * 4096, 4096)],
            &out,
            i,
        ))
        .unwrap();
    }
    disk.submit(request(Op::Write, 900, &[(base + 4 * 4096, 4096)], &out, 4))
        .unwrap();
    // The disk took all five: PxCI is clear, PxSACT still shows them outstanding.
    assert_eq!(fake.held(0), [0, 1, 2, 3, 4]);
    assert_eq!((fake.ci(0), fake.sact(0)), (0, 0b11111));
    let writes = fake.with(|s| s.writes.clone());
    let sact_at = writes
        .iter()
        .position(|&(r, v)| r == regs::port_reg(0, regs::PX_SACT) && v == 1);
    let ci_at = writes
        .iter()
        .position(|&(r, v)| r == regs::port_reg(0, regs::PX_CI) && v == 1);
    assert!(
        sact_at.unwrap() < ci_at.unwrap(),
        "PxSACT before PxCI: {writes:x?}"
    );
    ctrl.handle_interrupt();
    assert!(
        out.lock().unwrap().is_empty(),
        "PxCI clear is not completion"
    );
    assert_eq!(disk.in_flight(), 5);
    // The disk finishes them in its own order.
    fake.finish_ncq(0, &[3, 4]);
    ctrl.handle_interrupt();
    assert_eq!(sorted(&out), [(3, Ok(4096)), (4, Ok(4096))]);
    fake.finish_ncq(0, &[]);
    ctrl.handle_interrupt();
    let r = sorted(&out);
    assert_eq!(r.len(), 5);
    assert!(r.iter().all(|(t, res)| *res == Ok(4096) && *t < 5), "{r:?}");
    for i in 0..4 {
        assert_eq!(
            testing::peek(base + i * 4096 + 512, 512),
            sector_pattern(200 + 8 * i + 1)
        );
    }
    fake.disk(0, |d| {
        assert!(d.data[900 * 512..908 * 512].iter().all(|&b| b == 0x5A));
        // In the order the disk finished them: tags 3 and 4, then 0, 1, 2.
        let cmds: Vec<(u8, u8)> = d.log.iter().skip(1).map(|e| (e.0, e.1)).collect();
        let (r, w) = (ATA_READ_FPDMA_QUEUED, ATA_WRITE_FPDMA_QUEUED);
        assert_eq!(cmds, [(3, r), (4, w), (0, r), (1, r), (2, r)]);
    });
    assert_eq!((disk.in_flight(), fake.sact(0)), (0, 0));
    assert!(!fake.irq());
}

#[test]
fn flush_waits_for_queued_commands_and_holds_back_later_ones() {
    let (fake, ctrl, disk) = ncq_disk(32, ErrorModel::Qemu, &IdentifySpec::default());
    fake.with(|s| s.hold_ncq = true);
    let out = results();
    let base = 0x6100_0000u64;
    testing::buffer(base, 3 * 512);
    disk.submit(request(Op::Write, 10, &[(base, 512)], &out, 0))
        .unwrap();
    disk.submit(request(Op::Write, 11, &[(base + 512, 512)], &out, 1))
        .unwrap();
    disk.submit(request(Op::Flush, 0, &[], &out, 2)).unwrap();
    disk.submit(request(Op::Read, 12, &[(base + 1024, 512)], &out, 3))
        .unwrap();
    // The flush may not join the queued writes, and the read may not pass the flush.
    assert_eq!(fake.held(0), [0, 1]);
    assert_eq!(fake.disk(0, |d| d.flushes), 0);
    fake.finish_ncq(0, &[1]);
    ctrl.handle_interrupt();
    assert_eq!(
        fake.disk(0, |d| d.flushes),
        0,
        "one write still outstanding"
    );
    fake.finish_ncq(0, &[]);
    ctrl.handle_interrupt();
    // The flush ran (non-queued, auto mode) and then the read went out queued.
    assert_eq!(fake.disk(0, |d| d.flushes), 1);
    assert_eq!(fake.held(0), [0]);
    fake.finish_ncq(0, &[]);
    ctrl.handle_interrupt();
    assert_eq!(
        sorted(&out),
        [(0, Ok(512)), (1, Ok(512)), (2, Ok(0)), (3, Ok(512))]
    );
    let order: Vec<u8> = fake.disk(0, |d| d.log.iter().skip(1).map(|e| e.1).collect());
    assert_eq!(
        order,
        [
            ATA_WRITE_FPDMA_QUEUED,
            ATA_WRITE_FPDMA_QUEUED,
            ATA_FLUSH_CACHE_EXT,
            ATA_READ_FPDMA_QUEUED
        ]
    );
}

#[test]
fn ncq_only_where_hba_and_disk_support_it_and_wanted() {
    let out = results();
    {
        let (_fake, _ctrl, disk) = ncq_disk(8, ErrorModel::Qemu, &IdentifySpec::default());
        assert_eq!(disk.ncq_depth(), 8, "tags only up to the HBA's slots");
        assert!(disk.info().features.contains("NCQ depth 8"));
    }
    {
        // Offered by both, not wanted (`ahci_ncq=off`).
        let (fake, ctrl, disk) = one_disk(32, ErrorModel::Qemu);
        assert_eq!(disk.ncq_depth(), 0);
        assert!(disk.info().features.contains("NCQ off"));
        testing::buffer(0x6200_0000, 512);
        disk.submit(request(Op::Read, 5, &[(0x6200_0000, 512)], &out, 0))
            .unwrap();
        ctrl.handle_interrupt();
        assert_eq!(
            fake.disk(0, |d| d.log.last().map(|e| e.1)),
            Some(ATA_READ_DMA_EXT)
        );
    }
    let no_ncq = IdentifySpec {
        ncq_depth: None,
        ..IdentifySpec::default()
    };
    let (fake, ctrl, disk) = ncq_disk(32, ErrorModel::Qemu, &no_ncq);
    assert_eq!(disk.ncq_depth(), 0, "the disk has no NCQ");
    assert!(disk.info().features.contains("NCQ no"));
    testing::buffer(0x6200_0000, 512);
    disk.submit(request(Op::Read, 5, &[(0x6200_0000, 512)], &out, 1))
        .unwrap();
    ctrl.handle_interrupt();
    assert_eq!(
        fake.disk(0, |d| d.log.last().map(|e| e.1)),
        Some(ATA_READ_DMA_EXT)
    );
    assert_eq!(sorted(&out), [(0, Ok(512)), (1, Ok(512))]);
}

/// `nslots` + 4 queued reads, the one under tag `bad` on a bad sector: tags 1 and `bad`
/// finish before the driver looks. The failed read alone gets `Io`; the port is reset
/// (queued commands were outstanding), the rest re-run one at a time, and no command of
/// before the reset moves data afterwards (the reset drops them).
fn ncq_error_among_many(model: ErrorModel, nslots: u32, bad: u64) {
    let (fake, ctrl, disk) = ncq_disk(nslots, model, &IdentifySpec::default());
    fake.with(|s| s.hold_ncq = true);
    fake.disk(0, |d| {
        d.bad.insert(3000 + bad);
    });
    let out = results();
    let base = 0x8000_0000u64;
    let n = u64::from(nslots) + 4;
    let all = if nslots == 32 {
        u32::MAX
    } else {
        (1 << nslots) - 1
    };
    testing::buffer(base, n as usize * 512);
    submit_reads(&disk, &out, base, 3000, n, 0);
    assert_eq!(fake.sact(0), all);
    fake.finish_ncq(0, &[1, bad as u8]);
    ctrl.handle_interrupt();
    assert_eq!(fake.comresets(0), 1, "queued commands were outstanding");
    assert!(sorted(&out).contains(&(1, Ok(512))), "{:?}", sorted(&out));
    assert!(
        fake.held(0).len() <= 1,
        "the reset dropped the queued commands; one is re-issued: {:?}",
        fake.held(0)
    );
    for _ in 0..200 {
        if out.lock().unwrap().len() == n as usize {
            break;
        }
        // Tag 1, then the others taken back, one at a time; then the four that waited
        // for a slot.
        let completed = out.lock().unwrap().len();
        assert!(
            completed >= nslots as usize || fake.held(0).len() <= 1,
            "one at a time: {:?}",
            fake.held(0)
        );
        fake.finish_ncq(0, &[]);
        ctrl.handle_interrupt();
    }
    check_reads(&out, base, 3000, n, bad);
    let failed = fake.disk(0, |d| d.log.iter().filter(|e| e.4).count());
    assert_eq!(
        failed, 2,
        "the bad read failed once queued and once alone, never again"
    );
    assert_eq!((disk.in_flight(), fake.sact(0)), (0, 0));
    // Back to full queueing.
    submit_reads(&disk, &out, base, 4000, u64::from(nslots), 100);
    assert_eq!(fake.sact(0), all);
    fake.finish_ncq(0, &[]);
    ctrl.handle_interrupt();
    assert_eq!(out.lock().unwrap().len(), (n + u64::from(nslots)) as usize);
    assert!(
        sorted(&out)[n as usize..]
            .iter()
            .all(|(_, r)| *r == Ok(512))
    );
}

#[test]
fn ncq_error_among_many_under_each_model() {
    for (model, nslots, bad) in [
        (ErrorModel::Qemu, 8, 5),
        (ErrorModel::OldQemu, 8, 5),
        // PxSERR's low 16 bits are error bits on AHCI; older QEMUs use all 32 for tags.
        (ErrorModel::OldQemu, 32, 20),
        (ErrorModel::Spec, 8, 5),
    ] {
        eprintln!("{model:?}, {nslots} slots, failing tag {bad}");
        ncq_error_among_many(model, nslots, bad);
    }
}

#[test]
fn ncq_timeout_resets_and_fails_the_hung_command() {
    let (fake, ctrl, disk) = ncq_disk(8, ErrorModel::Qemu, &IdentifySpec::default());
    fake.with(|s| s.hold_ncq = true);
    fake.disk(0, |d| {
        d.hang.insert(77);
    });
    let out = results();
    testing::buffer(0x6300_0000, 3 * 512);
    for (i, sector) in [77u64, 78, 79].into_iter().enumerate() {
        let buf = 0x6300_0000 + 512 * i as u64;
        disk.submit(request(Op::Read, sector, &[(buf, 512)], &out, i as u64))
            .unwrap();
    }
    // The hung read and one other are outstanding on the disk, the third is done.
    fake.finish_ncq(0, &[0, 2]);
    ctrl.handle_interrupt();
    assert_eq!(sorted(&out), [(2, Ok(512))]);
    assert_eq!((fake.sact(0), fake.held(0)), (0b011, vec![1]));
    let t0 = 1_000_000_000;
    disk.check_timeouts(t0);
    disk.check_timeouts(t0 + COMMAND_TIMEOUT_NS);
    // Two outstanding: which one hangs is unknown. Reset, then one at a time.
    assert_eq!(fake.comresets(0), 1);
    assert!(out.lock().unwrap().len() == 1, "{:?}", sorted(&out));
    assert_eq!(fake.held(0), [0], "the older one re-issued alone");
    fake.finish_ncq(0, &[]);
    ctrl.handle_interrupt();
    // It hangs again; alone, it is the one to blame.
    disk.check_timeouts(t0 + COMMAND_TIMEOUT_NS + 1);
    disk.check_timeouts(t0 + 2 * COMMAND_TIMEOUT_NS + 1);
    assert_eq!(fake.comresets(0), 2);
    fake.finish_ncq(0, &[]);
    ctrl.handle_interrupt();
    assert_eq!(
        sorted(&out),
        [(0, Err(BlockError::Timeout)), (1, Ok(512)), (2, Ok(512))]
    );
    assert_eq!((disk.in_flight(), fake.sact(0)), (0, 0));
}

#[test]
fn dropping_a_disk_with_queued_commands_resets_the_port() {
    let (fake, ctrl, disk) = ncq_disk(8, ErrorModel::Qemu, &IdentifySpec::default());
    fake.with(|s| s.hold_ncq = true);
    let out = results();
    testing::buffer(0xE100_0000, 512);
    disk.submit(request(Op::Read, 3, &[(0xE100_0000, 512)], &out, 0))
        .unwrap();
    assert_eq!(fake.held(0), [0]);
    drop(ctrl);
    drop(disk);
    assert_eq!(sorted(&out), [(0, Err(BlockError::Io))]);
    assert_eq!(
        fake.comresets(0),
        1,
        "QEMU keeps queued commands running after ST"
    );
    assert!(fake.held(0).is_empty());
    assert_eq!(testing::dma_pages(), 0);
}

#[test]
fn bios_handoff_is_requested() {
    testing::reset_memory();
    let fake = FakeHba::new(
        1,
        32,
        true,
        vec![Some(FakeDisk::new(&IdentifySpec::default()))],
    );
    fake.with(|s| {
        s.cap2 = regs::CAP2_BOH;
        s.bohc = regs::BOHC_BOS;
        s.bios_release_after = 3;
    });
    let ctrl = Ctrl::init(fake.clone(), String::from("boh"), false, false).unwrap();
    assert_eq!(
        fake.with(|s| s.bohc & (regs::BOHC_BOS | regs::BOHC_OOS)),
        regs::BOHC_OOS
    );
    assert_eq!(ctrl.disks().len(), 1);
}

#[test]
fn polled_controller_leaves_interrupts_off() {
    testing::reset_memory();
    let fake = FakeHba::new(
        1,
        32,
        true,
        vec![Some(FakeDisk::new(&IdentifySpec::default()))],
    );
    let ctrl = Ctrl::init(fake.clone(), String::from("poll"), false, false).unwrap();
    assert!(!ctrl.uses_interrupts());
    assert!(!fake.with(|s| {
        s.writes
            .iter()
            .any(|&(o, v)| o == regs::GHC && v & regs::GHC_IE != 0)
    }));
    let out = results();
    testing::buffer(0xF000_0000, 512);
    ctrl.disks()[0]
        .submit(request(Op::Read, 9, &[(0xF000_0000, 512)], &out, 0))
        .unwrap();
    assert!(!fake.irq());
    ctrl.poll();
    assert_eq!(sorted(&out), [(0, Ok(512))]);
}

// ---------------------------------------------------------------------------------------
// probe() against a PCI function

mod probe {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;
    use crate::pci::{Bar, Bdf, CAP_ID_MSI, ConfigAccess, PciFunction};

    struct Config(RefCell<HashMap<u16, u32>>);

    impl ConfigAccess for Config {
        fn read32(&self, _: Bdf, offset: u16) -> u32 {
            self.0.borrow().get(&offset).copied().unwrap_or(0)
        }
        fn write32(&self, _: Bdf, offset: u16, value: u32) {
            let mut regs = self.0.borrow_mut();
            // The status half of 0x04 is read-only / write-one-to-clear.
            let value = if offset == 0x04 {
                (regs.get(&0x04).copied().unwrap_or(0) & 0xFFFF_0000) | (value & 0xFFFF)
            } else {
                value
            };
            regs.insert(offset, value);
        }
    }

    fn function(class: (u8, u8, u8), bar5: Option<Bar>) -> PciFunction {
        let mut bars = [None; 6];
        bars[5] = bar5;
        PciFunction {
            bdf: Bdf::new(0, 0x1F, 2).unwrap(),
            vendor: 0x8086,
            device: 0x2922,
            class: class.0,
            subclass: class.1,
            prog_if: class.2,
            revision: 2,
            header_type: 0x80,
            irq_line: 10,
            irq_pin: 1,
            subsystem: None,
            bars,
        }
    }

    #[test]
    fn probe_checks_class_and_bar() {
        let cfg = Config(RefCell::new(HashMap::new()));
        let not = function((1, 1, 0x80), None);
        assert_eq!(
            AhciController::<FakeHal>::probe(&cfg, &not, None, true).err(),
            Some(AhciError::NotAhci)
        );
        let nobar = function((1, 6, 1), None);
        assert_eq!(
            AhciController::<FakeHal>::probe(&cfg, &nobar, None, true).err(),
            Some(AhciError::NoAbar)
        );
        let io = function(
            (1, 6, 1),
            Some(Bar::Io {
                port: 0xC000,
                size: 32,
            }),
        );
        assert_eq!(
            AhciController::<FakeHal>::probe(&cfg, &io, None, true).err(),
            Some(AhciError::NoAbar)
        );
        assert!(cfg.0.borrow().is_empty(), "nothing written");
    }

    #[test]
    fn probe_programs_pci_and_msi_then_resets() {
        // ABAR is plain host memory: GHC.HR never clears, so the reset times out, but
        // everything before it is visible.
        let mut abar = vec![0u32; 1024];
        abar[0] = 0x4000_1F05; // CAP
        let func = function(
            (1, 6, 1),
            Some(Bar::Memory {
                addr: abar.as_mut_ptr() as u64,
                size: 4096,
                prefetchable: false,
                is64: false,
            }),
        );
        let cfg = Config(RefCell::new(HashMap::new()));
        cfg.0.borrow_mut().extend([
            (0x04, 0x0010_0000),
            (0x34, 0x80),
            (0x80, u32::from(CAP_ID_MSI)),
        ]);
        let r = AhciController::<FakeHal>::probe(&cfg, &func, Some((0xFEE0_0000, 0x33)), true);
        assert_eq!(r.err(), Some(AhciError::ResetTimeout));
        let c = cfg.0.borrow();
        assert_eq!(c[&0x04] & 0x406, 0x406, "memory, bus master, INTx off");
        assert_eq!(c[&0x80] >> 16 & 1, 1, "MSI enabled");
        assert_eq!((c[&0x84], c[&0x88] & 0xFFFF), (0xFEE0_0000, 0x33));
        assert_eq!(abar[1] & 1, 1, "GHC.HR written");
    }
}
