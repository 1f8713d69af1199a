//! Aliased page-cache pages seen through real address spaces: a file page that moves to
//! another frame (its share broken by a write) must not stay visible through a mapping of
//! the old frame (the reverse map drops it, the next access refaults).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use mm::FrameRef;
use mm::frame::{FRAME_SIZE, Pfn};
use mm::page_cache::{CachedFile, IoError, PageIo};

use super::TestResult;
use crate::ensure;
use crate::memory::{frames, page_cache};
use crate::proc::rmap;
use crate::proc::vm::{Kind, MappedFile, MemoryMap, Prot};

const PAGE: u64 = FRAME_SIZE as u64;
const PAGES: u64 = 4;
const SIZE: u64 = PAGES * PAGE;

/// A file whose blocks read as `fill` bytes and whose writes go nowhere.
struct Filled(u8);

impl PageIo for Filled {
    fn read_pages(&self, _first: u64, frames: Vec<FrameRef>) -> Result<(), IoError> {
        for f in &frames {
            f.whole().write(0, &[self.0; FRAME_SIZE]);
        }
        Ok(())
    }
    fn write_pages(&self, _first: u64, _frames: Vec<FrameRef>) -> Result<(), IoError> {
        Ok(())
    }
}

struct Mapped(Arc<CachedFile>);

impl MappedFile for Mapped {
    fn cache(&self) -> &Arc<CachedFile> {
        &self.0
    }
    fn size(&self) -> u64 {
        SIZE
    }
}

fn byte_at(map: &mut MemoryMap, va: u64) -> Result<(Pfn, u8), alloc::string::String> {
    let frame = map
        .resolve(va, false)
        .map_err(|e| alloc::format!("resolve {va:#x}: {e:?}"))?;
    let mut b = [0u8; 1];
    frame.piece((va % PAGE) as usize, 1).read(0, &mut b);
    Ok((frame.pfn(), b[0]))
}

/// B's page 1 aliases A's; one address space maps B shared read-only, another privately.
/// Writing B moves B's page to a copy; both mappings must then show B's new bytes, while
/// A keeps the old frame and bytes. A private page already copied by its own write keeps
/// its copy.
pub fn stale_mapping_of_a_moved_page_refaults() -> TestResult {
    let pc = page_cache();
    let a = pc.open(Box::new(Filled(0xAA)));
    let b = pc.open(Box::new(Filled(0xBB)));
    b.alias_page(1, &a, 1, SIZE)
        .map_err(|e| alloc::format!("alias: {e:?}"))?;
    let shared = a.frame_of(1).ok_or("A's page 1 not cached")?;
    ensure!(b.frame_of(1) == Some(shared), "no alias made");

    let file: Arc<dyn MappedFile> = Arc::new(Mapped(b.clone()));
    let ro = Prot::from_bits(1).map_err(|_| "prot")?;
    let rw = Prot::from_bits(3).map_err(|_| "prot")?;
    let mut viewer = MemoryMap::new().map_err(|_| "address space")?;
    let va = viewer
        .mmap(
            0,
            SIZE,
            ro,
            false,
            Kind::File {
                file: file.clone(),
                pgoff: 0,
                shared: true,
                may_write: false,
            },
        )
        .map_err(|e| alloc::format!("mmap: {e:?}"))?;
    let mut private = MemoryMap::new().map_err(|_| "address space")?;
    let pva = private
        .mmap(
            0,
            SIZE,
            rw,
            false,
            Kind::File {
                file: file.clone(),
                pgoff: 0,
                shared: false,
                may_write: false,
            },
        )
        .map_err(|e| alloc::format!("mmap: {e:?}"))?;
    ensure!(
        rmap::mappers_of(b.id()) >= 2,
        "the reverse map does not know the two spaces"
    );
    let (seen, byte) = byte_at(&mut viewer, va + PAGE + 7)?;
    ensure!(
        seen == shared && byte == 0xAA,
        "the mapping does not show the alias"
    );
    let (pseen, _) = byte_at(&mut private, pva + PAGE)?;
    ensure!(
        pseen == shared,
        "the private mapping does not map the alias"
    );
    // The private mapping's page 2 gets a private copy by a store of its own.
    let copy = private
        .resolve(pva + 2 * PAGE, true)
        .map_err(|e| alloc::format!("private write: {e:?}"))?;
    copy.piece(0, 1).write(0, &[0x11]);
    let copy = copy.pfn();

    // Write B: its page leaves the shared frame.
    b.write(PAGE + 7, &[0x42], SIZE)
        .map_err(|e| alloc::format!("write B: {e:?}"))?;
    let moved = b.frame_of(1).ok_or("B's page 1 gone")?;
    ensure!(moved != shared, "B's page did not move");
    ensure!(a.frame_of(1) == Some(shared), "A's page moved");

    let (now, byte) = byte_at(&mut viewer, va + PAGE + 7)?;
    ensure!(
        now == moved && byte == 0x42,
        "the shared mapping still shows the old frame ({now:?}, byte {byte:#x})"
    );
    let (pnow, _) = byte_at(&mut private, pva + PAGE)?;
    ensure!(
        pnow == moved,
        "the private mapping still maps the old frame"
    );
    let (pcopy, pbyte) = byte_at(&mut private, pva + 2 * PAGE)?;
    ensure!(
        pcopy == copy && pbyte == 0x11,
        "the private copy was dropped"
    );
    let mut old = vec![0u8; 8];
    FrameRef::new(frames(), shared)
        .map_err(|e| alloc::format!("A's frame: {e}"))?
        .piece(FRAME_SIZE - 8, 8)
        .read(0, &mut old);
    ensure!(old.iter().all(|&x| x == 0xAA), "A's bytes changed");
    drop(viewer);
    drop(private);
    ensure!(
        frames()
            .table()
            .get(shared)
            .is_some_and(|d| d.refcount() == 1),
        "references to the old frame leaked"
    );
    Ok(())
}

/// Fork of a process mapping an alias: the child inherits the mapping of the shared frame
/// (and is known to the reverse map); after a write moves B's page, parent and child
/// both refault onto B's new frame, A keeps its bytes, and once both spaces are gone the
/// shared frame is held by A's page alone.
pub fn fork_of_a_mapping_of_an_alias_refaults_in_both() -> TestResult {
    let pc = page_cache();
    let a = pc.open(Box::new(Filled(0xA1)));
    let b = pc.open(Box::new(Filled(0xB1)));
    b.alias_page(1, &a, 1, SIZE)
        .map_err(|e| alloc::format!("alias: {e:?}"))?;
    let shared = a.frame_of(1).ok_or("A's page 1 not cached")?;
    let file: Arc<dyn MappedFile> = Arc::new(Mapped(b.clone()));
    let ro = Prot::from_bits(1).map_err(|_| "prot")?;
    let mut parent = MemoryMap::new().map_err(|_| "address space")?;
    let va = parent
        .mmap(
            0,
            SIZE,
            ro,
            false,
            Kind::File {
                file,
                pgoff: 0,
                shared: true,
                may_write: false,
            },
        )
        .map_err(|e| alloc::format!("mmap: {e:?}"))?;
    let (seen, byte) = byte_at(&mut parent, va + PAGE + 3)?;
    ensure!(
        seen == shared && byte == 0xA1,
        "the parent does not map the alias"
    );
    let mappers = rmap::mappers_of(b.id());
    let mut child = parent.fork().map_err(|e| alloc::format!("fork: {e:?}"))?;
    ensure!(
        rmap::mappers_of(b.id()) == mappers + 1,
        "the reverse map does not know the child"
    );
    let mappings = frames().table().get(shared).map_or(0, |d| d.mappings());
    ensure!(
        mappings == 2,
        "the shared frame has {mappings} mappings after fork, not 2"
    );

    b.write(PAGE + 3, &[0x42], SIZE)
        .map_err(|e| alloc::format!("write B: {e:?}"))?;
    let moved = b.frame_of(1).ok_or("B's page 1 gone")?;
    ensure!(moved != shared, "B's page did not move");
    for (who, map) in [("parent", &mut parent), ("child", &mut child)] {
        let (now, byte) = byte_at(map, va + PAGE + 3)?;
        ensure!(
            now == moved && byte == 0x42,
            "the {who} still sees the old frame ({now:?}, byte {byte:#x})"
        );
    }
    let mut old = [0u8; 4];
    FrameRef::new(frames(), shared)
        .map_err(|e| alloc::format!("A's frame: {e}"))?
        .piece(0, 4)
        .read(0, &mut old);
    ensure!(old == [0xA1; 4], "A's bytes changed");
    drop(child);
    drop(parent);
    let d = frames().table().get(shared).ok_or("no descriptor")?;
    ensure!(
        d.refcount() == 1 && d.mappings() == 0 && d.sharers() == 1,
        "the old frame is held by more than A's page (refs {}, mappings {}, sharers {})",
        d.refcount(),
        d.mappings(),
        d.sharers()
    );
    Ok(())
}
