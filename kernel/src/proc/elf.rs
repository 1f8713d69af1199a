//! Loading static ELF64 executables (non-PIE and static-PIE) and building the initial
//! stack in the Linux layout: argc, argv, envp, auxv, then the strings.

use alloc::vec::Vec;

use xmas_elf::ElfFile;
use xmas_elf::header::{Class, Data, Machine, Type};
use xmas_elf::program::{ProgramHeader, Type as PType};

use super::vm::{Kind, MemoryMap, PAGE, Prot, STACK_SIZE, STACK_TOP, USER_MIN};
use crate::arch::paging::USER_END;
use crate::errno::Errno;

/// Where static-PIE executables are loaded.
const PIE_BASE: u64 = 0x0000_5555_5555_4000;
/// Most loadable segments, and most bytes they may span in total.
const MAX_SEGMENTS: usize = 64;
const MAX_IMAGE: u64 = 1 << 30;
/// Most bytes of argument and environment strings (Linux's ARG_MAX is similar).
pub const ARG_MAX: usize = 256 * 1024;

/// A loaded program: its memory, entry point and initial stack pointer.
pub struct Loaded {
    pub mem: MemoryMap,
    pub entry: u64,
    pub sp: u64,
}

const AT_NULL: u64 = 0;
const AT_PHDR: u64 = 3;
const AT_PHENT: u64 = 4;
const AT_PHNUM: u64 = 5;
const AT_PAGESZ: u64 = 6;
const AT_BASE: u64 = 7;
const AT_FLAGS: u64 = 8;
const AT_ENTRY: u64 = 9;
const AT_UID: u64 = 11;
const AT_EUID: u64 = 12;
const AT_GID: u64 = 13;
const AT_EGID: u64 = 14;
const AT_PLATFORM: u64 = 15;
const AT_HWCAP: u64 = 16;
const AT_CLKTCK: u64 = 17;
const AT_SECURE: u64 = 23;
const AT_RANDOM: u64 = 25;
const AT_EXECFN: u64 = 31;

struct Segment {
    vaddr: u64,
    memsz: u64,
    offset: u64,
    filesz: u64,
    prot: Prot,
}

/// Load `image` into a fresh address space with `argv` and `envp`. Errors: ENOEXEC for
/// anything that is not a static x86-64 executable we can place, E2BIG for too many
/// argument bytes, ENOMEM.
pub fn load(
    image: &[u8],
    argv: &[Vec<u8>],
    envp: &[Vec<u8>],
    execfn: &[u8],
) -> Result<Loaded, Errno> {
    let elf = ElfFile::new(image).map_err(|_| Errno::ENOEXEC)?;
    let h = &elf.header;
    if h.pt1.class() != Class::SixtyFour
        || h.pt1.data() != Data::LittleEndian
        || h.pt2.machine().as_machine() != Machine::X86_64
    {
        return Err(Errno::ENOEXEC);
    }
    // xmas-elf trusts the program header table's position and entry size: check them
    // here, so a malformed file is ENOEXEC rather than an out-of-bounds slice.
    let (phoff, phentsize, phnum) = (h.pt2.ph_offset(), h.pt2.ph_entry_size(), h.pt2.ph_count());
    let table_end = (phnum as u64)
        .checked_mul(56)
        .and_then(|n| n.checked_add(phoff))
        .ok_or(Errno::ENOEXEC)?;
    if phentsize != 56 || phnum == 0 || table_end > image.len() as u64 {
        return Err(Errno::ENOEXEC);
    }
    let base = match h.pt2.type_().as_type() {
        Type::Executable => 0,
        Type::SharedObject => PIE_BASE,
        _ => return Err(Errno::ENOEXEC),
    };
    let mut segments = Vec::new();
    let mut phdr_vaddr = None;
    for ph in elf.program_iter() {
        let ProgramHeader::Ph64(p) = ph else {
            return Err(Errno::ENOEXEC);
        };
        match ph.get_type().map_err(|_| Errno::ENOEXEC)? {
            PType::Interp => return Err(Errno::ENOEXEC), // dynamically linked
            PType::Phdr => phdr_vaddr = Some(p.virtual_addr),
            PType::Load => {
                let f = ph.flags();
                segments.push(Segment {
                    vaddr: p.virtual_addr.checked_add(base).ok_or(Errno::ENOEXEC)?,
                    memsz: p.mem_size,
                    offset: p.offset,
                    filesz: p.file_size,
                    prot: Prot {
                        read: f.is_read(),
                        write: f.is_write(),
                        exec: f.is_execute(),
                    },
                });
            }
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(Errno::ENOEXEC);
    }
    if segments.len() > MAX_SEGMENTS {
        return Err(Errno::ENOEXEC);
    }
    // Check every segment, then cut the address space into intervals at every segment's
    // page boundaries; an interval's protection is the union of the segments covering it
    // (two segments may share a page).
    let mut total = 0u64;
    let mut top = 0;
    let mut cuts = Vec::with_capacity(segments.len() * 2);
    for s in &segments {
        let end = s.vaddr.checked_add(s.memsz).ok_or(Errno::ENOEXEC)?;
        let file_end = s.offset.checked_add(s.filesz).ok_or(Errno::ENOEXEC)?;
        if s.filesz > s.memsz
            || file_end > image.len() as u64
            || s.vaddr < USER_MIN
            || end > STACK_TOP - STACK_SIZE
        {
            return Err(Errno::ENOEXEC);
        }
        total = total.saturating_add(s.memsz);
        if total > MAX_IMAGE {
            return Err(Errno::ENOMEM);
        }
        cuts.push(s.vaddr & !(PAGE - 1));
        cuts.push((end + PAGE - 1) & !(PAGE - 1));
        top = top.max(end);
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut mem = MemoryMap::new()?;
    let mut run: Option<(u64, u64, Prot)> = None;
    for w in cuts.windows(2) {
        let (lo, hi) = (w[0], w[1]);
        let mut prot = Prot {
            read: false,
            write: false,
            exec: false,
        };
        let mut covered = false;
        for s in &segments {
            let (ps, pe) = (
                s.vaddr & !(PAGE - 1),
                (s.vaddr + s.memsz + PAGE - 1) & !(PAGE - 1),
            );
            if ps < hi && lo < pe {
                covered = true;
                prot.read |= s.prot.read;
                prot.write |= s.prot.write;
                prot.exec |= s.prot.exec;
            }
        }
        if !covered {
            continue;
        }
        match run {
            Some((rs, re, rp)) if re == lo && rp == prot => run = Some((rs, hi, rp)),
            _ => {
                if let Some((rs, re, rp)) = run {
                    mem.add_area(rs, re, rp, Kind::Anon)?;
                }
                run = Some((lo, hi, prot));
            }
        }
    }
    if let Some((rs, re, rp)) = run {
        mem.add_area(rs, re, rp, Kind::Anon)?;
    }
    for s in &segments {
        let data = &image[s.offset as usize..(s.offset + s.filesz) as usize];
        mem.write_bytes(s.vaddr, data)?;
    }
    let brk = (top + PAGE - 1) & !(PAGE - 1);
    mem.brk_base = brk;
    mem.brk = brk;

    // Program headers in memory: PT_PHDR, else inside the segment holding them.
    let phdr = match phdr_vaddr {
        Some(v) => v.checked_add(base).ok_or(Errno::ENOEXEC)?,
        None => segments
            .iter()
            .find(|s| phoff >= s.offset && phoff < s.offset + s.filesz)
            .map(|s| s.vaddr + (phoff - s.offset))
            .unwrap_or(0),
    };
    let entry = h
        .pt2
        .entry_point()
        .checked_add(base)
        .ok_or(Errno::ENOEXEC)?;
    if entry >= USER_END {
        return Err(Errno::ENOEXEC);
    }
    let sp = build_stack(
        &mut mem,
        argv,
        envp,
        execfn,
        &[
            (AT_PHDR, phdr),
            (AT_PHENT, h.pt2.ph_entry_size() as u64),
            (AT_PHNUM, h.pt2.ph_count() as u64),
            (AT_PAGESZ, PAGE),
            (AT_BASE, 0),
            (AT_FLAGS, 0),
            (AT_ENTRY, entry),
            (AT_UID, 0),
            (AT_EUID, 0),
            (AT_GID, 0),
            (AT_EGID, 0),
            (AT_HWCAP, crate::arch::cpu::cpuid(1).3 as u64),
            (AT_CLKTCK, 100),
            (AT_SECURE, 0),
        ],
    )?;
    Ok(Loaded { mem, entry, sp })
}

/// Lay out the initial stack; returns the stack pointer (16-byte aligned, at argc).
fn build_stack(
    mem: &mut MemoryMap,
    argv: &[Vec<u8>],
    envp: &[Vec<u8>],
    execfn: &[u8],
    aux: &[(u64, u64)],
) -> Result<u64, Errno> {
    let strings: usize =
        argv.iter().chain(envp).map(|s| s.len() + 1).sum::<usize>() + execfn.len() + 1;
    if strings > ARG_MAX {
        return Err(Errno::E2BIG);
    }
    mem.add_area(STACK_TOP - STACK_SIZE, STACK_TOP, Prot::RW, Kind::Anon)?;
    let mut sp = STACK_TOP;
    let mut push_bytes = |mem: &mut MemoryMap, bytes: &[u8], nul: bool| -> Result<u64, Errno> {
        sp -= bytes.len() as u64 + nul as u64;
        mem.write_bytes(sp, bytes)?;
        if nul {
            mem.write_bytes(sp + bytes.len() as u64, &[0])?;
        }
        Ok(sp)
    };
    let execfn_at = push_bytes(mem, execfn, true)?;
    let mut env_at = Vec::with_capacity(envp.len());
    for e in envp {
        env_at.push(push_bytes(mem, e, true)?);
    }
    let mut arg_at = Vec::with_capacity(argv.len());
    for a in argv {
        arg_at.push(push_bytes(mem, a, true)?);
    }
    let platform_at = push_bytes(mem, b"x86_64", true)?;
    let mut random = [0u8; 16];
    crate::arch::cpu::random_bytes(&mut random);
    let random_at = push_bytes(mem, &random, false)?;

    let mut words: Vec<u64> = Vec::new();
    words.push(argv.len() as u64);
    words.extend(&arg_at);
    words.push(0);
    words.extend(&env_at);
    words.push(0);
    for &(k, v) in aux {
        words.push(k);
        words.push(v);
    }
    words.extend([
        AT_RANDOM,
        random_at,
        AT_PLATFORM,
        platform_at,
        AT_EXECFN,
        execfn_at,
        AT_NULL,
        0,
    ]);
    sp &= !15;
    sp -= words.len() as u64 * 8;
    sp &= !15;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    mem.write_bytes(sp, &bytes)?;
    Ok(sp)
}
