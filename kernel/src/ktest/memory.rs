//! Frame allocator, frame descriptors, heap and address spaces on the real machine.

use alloc::boxed::Box;
use alloc::vec::Vec;

use mm::frame::{FRAME_SIZE, Pfn};
use mm::frame_alloc::AllocError;
use mm::frame_table::{FrameFlags, Owner};

use super::TestResult;
use crate::arch::heap;
use crate::arch::paging::{self, Access, AddressSpace};
use crate::ensure;
use crate::memory::frames;

const NIL: u64 = u64::MAX;

/// Allocate every free frame, chaining them through their own first 8 bytes (so the test
/// needs no heap and proves every frame is writable RAM), then free them all.
pub fn frame_alloc_exhaustion() -> TestResult {
    let fa = frames();
    let free_before = fa.free_frames();
    let mut head = NIL;
    let mut count = 0u64;
    let exhausted = loop {
        match fa.alloc(Owner::Test) {
            Ok(pfn) => {
                super::frame_write(pfn, 0, &head.to_le_bytes());
                super::frame_write(pfn, FRAME_SIZE - 8, &pfn.0.to_le_bytes());
                head = pfn.0;
                count += 1;
            }
            Err(e) => break e,
        }
    };
    let free_at_bottom = fa.free_frames();
    // Walk the chain back, checking each frame kept its own tag, and free it.
    let mut walked = 0u64;
    let mut corrupt = 0u64;
    while head != NIL {
        let pfn = Pfn(head);
        let mut next = [0u8; 8];
        let mut tag = [0u8; 8];
        super::frame_read(pfn, 0, &mut next);
        super::frame_read(pfn, FRAME_SIZE - 8, &mut tag);
        if u64::from_le_bytes(tag) != pfn.0 {
            corrupt += 1;
        }
        let _ = fa.put(pfn);
        head = u64::from_le_bytes(next);
        walked += 1;
    }
    ensure!(
        exhausted == AllocError::OutOfMemory,
        "allocation ended with {exhausted:?}"
    );
    ensure!(
        count == free_before,
        "allocated {count} frames, {free_before} were free"
    );
    ensure!(
        free_at_bottom == 0,
        "{free_at_bottom} frames still free after exhaustion"
    );
    ensure!(
        walked == count && corrupt == 0,
        "walked {walked}/{count}, {corrupt} frames lost their tag"
    );
    ensure!(
        fa.free_frames() == free_before,
        "after freeing: {} free, expected {free_before}",
        fa.free_frames()
    );
    Ok(())
}

/// A freed frame is handed out again, and its descriptor reflects each state.
pub fn frame_alloc_reuse() -> TestResult {
    let fa = frames();
    let a = fa
        .alloc(Owner::Test)
        .map_err(|e| alloc::format!("alloc: {e}"))?;
    let desc = fa.table().get(a).ok_or("no descriptor")?;
    ensure!(
        desc.refcount() == 1 && desc.owner() == Owner::Test,
        "fresh frame: refs {} owner {:?}",
        desc.refcount(),
        desc.owner()
    );
    ensure!(
        fa.put(a) == Ok(true),
        "put of the only reference did not free"
    );
    ensure!(
        desc.flags().contains(FrameFlags::FREE) || desc.refcount() == 0,
        "freed frame still referenced"
    );
    // LIFO reuse is not promised, so look for it among the next few allocations.
    let mut got = Vec::new();
    let mut found = false;
    for _ in 0..64 {
        let p = fa
            .alloc(Owner::Test)
            .map_err(|e| alloc::format!("alloc: {e}"))?;
        got.push(p);
        if p == a {
            found = true;
            break;
        }
    }
    for p in got {
        let _ = fa.put(p);
    }
    ensure!(found, "frame {a:?} was not reused within 64 allocations");
    Ok(())
}

/// Contiguous runs: naturally aligned, exactly the requested size taken, physically
/// contiguous (a pattern written through the physical map reads back across the run).
pub fn frame_alloc_contiguous_runs() -> TestResult {
    let fa = frames();
    let before = fa.free_frames();
    for frames_wanted in [1u64, 2, 3, 8, 17, 64, 100, 512, 1024] {
        let start = fa
            .alloc_contiguous(frames_wanted, Owner::Dma)
            .map_err(|e| alloc::format!("{frames_wanted}: {e}"))?;
        let align = frames_wanted.next_power_of_two();
        ensure!(
            start.0 % align == 0,
            "run of {frames_wanted} at pfn {} not aligned to {align}",
            start.0
        );
        ensure!(
            fa.free_frames() == before - frames_wanted,
            "run of {frames_wanted} took {}",
            before - fa.free_frames()
        );
        for i in 0..frames_wanted {
            super::frame_write(start.add(i), 0, &(start.0 + i).to_le_bytes());
        }
        for i in 0..frames_wanted {
            let mut b = [0u8; 8];
            super::frame_read(start.add(i), 0, &mut b);
            ensure!(
                u64::from_le_bytes(b) == start.0 + i,
                "frame {i} of the run lost its tag"
            );
            let d = fa.table().get(start.add(i)).ok_or("no descriptor")?;
            ensure!(
                d.refcount() == 1,
                "frame {i} of the run has {} refs",
                d.refcount()
            );
        }
        fa.free_contiguous(start, frames_wanted)
            .map_err(|e| alloc::format!("free: {e}"))?;
        ensure!(
            fa.free_frames() == before,
            "free count not restored after run of {frames_wanted}"
        );
    }
    ensure!(
        fa.alloc_contiguous(1 << 20, Owner::Dma) == Err(AllocError::TooLarge),
        "a 4 GiB run was not refused"
    );
    Ok(())
}

/// References and pins are counted apart; a frame returns only when both are zero.
pub fn frame_refs_and_pins() -> TestResult {
    let fa = frames();
    let before = fa.free_frames();
    let p = fa
        .alloc(Owner::Test)
        .map_err(|e| alloc::format!("alloc: {e}"))?;
    let d = fa.table().get(p).ok_or("no descriptor")?;
    fa.pin(p).map_err(|e| alloc::format!("pin: {e}"))?;
    fa.get(p).map_err(|e| alloc::format!("get: {e}"))?;
    ensure!(
        d.refcount() == 2 && d.pincount() == 1,
        "refs {} pins {}",
        d.refcount(),
        d.pincount()
    );
    ensure!(
        fa.put(p) == Ok(false) && fa.put(p) == Ok(false),
        "frame freed while pinned"
    );
    ensure!(
        fa.free_frames() == before - 1,
        "pinned frame counted as free"
    );
    ensure!(fa.unpin(p) == Ok(true), "last unpin did not free the frame");
    ensure!(fa.free_frames() == before, "free count not restored");
    ensure!(
        fa.put(p).is_err() && fa.unpin(p).is_err(),
        "misuse of a free frame was accepted"
    );
    ensure!(fa.free_frames() == before, "misuse changed the free count");
    Ok(())
}

/// Random sizes and lifetimes, every allocation filled and verified before it is freed.
pub fn heap_stress() -> TestResult {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (_, used_before) = heap::stats();
    let mut live: Vec<(Box<[u8]>, u8)> = Vec::new();
    for i in 0..20_000u32 {
        let r = next();
        if live.len() < 400 && (r & 3 != 0 || live.is_empty()) {
            let size = match r >> 60 {
                0 => (r >> 8) as usize % (256 << 10) + 1,
                1..=4 => (r >> 8) as usize % 8192 + 1,
                _ => (r >> 8) as usize % 256 + 1,
            };
            let tag = (i % 251) as u8;
            live.push((alloc::vec![tag; size].into_boxed_slice(), tag));
        } else {
            let idx = (r >> 16) as usize % live.len();
            let (buf, tag) = live.swap_remove(idx);
            ensure!(
                buf.iter().all(|&b| b == tag),
                "allocation of {} bytes was corrupted",
                buf.len()
            );
        }
    }
    for (buf, tag) in &live {
        ensure!(
            buf.iter().all(|b| b == tag),
            "allocation of {} bytes was corrupted",
            buf.len()
        );
    }
    drop(live);
    let (_, used_after) = heap::stats();
    ensure!(
        used_after == used_before,
        "heap use {used_before} before, {used_after} after: leak"
    );
    Ok(())
}

/// A 32 MiB allocation exceeds the initial heap: the heap maps more frames.
pub fn heap_grows_on_demand() -> TestResult {
    let (mapped_before, _) = heap::stats();
    let size = 32 << 20;
    let mut v: Vec<u64> = Vec::new();
    v.try_reserve_exact(size / 8)
        .map_err(|e| alloc::format!("reserve: {e:?}"))?;
    v.extend((0..size as u64 / 8).map(|i| i.wrapping_mul(0x9E37_79B9)));
    let ok = v
        .iter()
        .enumerate()
        .all(|(i, &x)| x == (i as u64).wrapping_mul(0x9E37_79B9));
    let (mapped_after, _) = heap::stats();
    ensure!(ok, "32 MiB vector content wrong");
    ensure!(
        mapped_after >= mapped_before + size as u64,
        "heap mapped {mapped_before} -> {mapped_after}"
    );
    Ok(())
}

/// A fresh address space: map a frame in the lower half, translate, switch to it and read
/// the frame through the user address, unmap, and free the page tables on drop.
pub fn address_space_map_translate_unmap() -> TestResult {
    let fa = frames();
    let before = fa.free_frames();
    let frame = fa
        .alloc(Owner::Test)
        .map_err(|e| alloc::format!("alloc: {e}"))?;
    super::frame_write(frame, 0, &[0x5A; FRAME_SIZE]);
    super::frame_write(frame, 0x123, b"AliasOS");
    let va = 0x0000_4000_0000_0000u64;
    {
        let mut asp = AddressSpace::new().map_err(|e| alloc::format!("new: {e:?}"))?;
        ensure!(
            asp.translate(va).is_none(),
            "fresh address space maps {va:#x}"
        );
        asp.map(
            va,
            frame,
            Access {
                write: true,
                user: true,
                execute: false,
            },
        )
        .map_err(|e| alloc::format!("map: {e:?}"))?;
        ensure!(
            asp.map(
                va,
                frame,
                Access {
                    write: true,
                    user: true,
                    execute: false
                }
            ) == Err(paging::MapError::AlreadyMapped),
            "double map accepted"
        );
        ensure!(
            asp.translate(va + 0x123) == Some(frame.addr() + 0x123),
            "translate gave {:?}",
            asp.translate(va + 0x123)
        );
        ensure!(
            asp.map(
                0xffff_8000_0000_0000,
                frame,
                Access {
                    write: false,
                    user: true,
                    execute: false
                }
            )
            .is_err(),
            "kernel-half map accepted"
        );
        asp.activate();
        let seen = crate::arch::selftest::read_user_bytes(&mut asp, va + 0x123);
        paging::activate_kernel();
        ensure!(
            seen == Some(*b"AliasOS\x5A"),
            "read {seen:?} through the new mapping"
        );
        ensure!(asp.unmap(va) == Ok(frame), "unmap did not return the frame");
        ensure!(asp.translate(va).is_none(), "still mapped after unmap");
        ensure!(
            asp.unmap(va) == Err(paging::MapError::NotMapped),
            "second unmap accepted"
        );
    }
    let _ = fa.put(frame);
    ensure!(
        fa.free_frames() == before,
        "page tables leaked: {} free, expected {before}",
        fa.free_frames()
    );
    Ok(())
}
