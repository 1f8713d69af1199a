//! The memory-management counters of `/proc/vmstat`.
//!
//! Each counter is bumped where the event happens, never computed after the fact.

use core::sync::atomic::{AtomicU64, Ordering};

/// A `/proc/vmstat` counter owned by `mm`.
#[repr(usize)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Counter {
    /// File or block data copied by the CPU between buffers.
    DataCopyBytes,
    /// Page-cache pages created as aliases by sendfile/copy_file_range.
    AliasPages,
    /// Aliases or copy-on-write shares broken by a write.
    CowBreaks,
    /// Bytes moved by DMA directly to/from pinned user pages.
    DmaPinnedBytes,
    /// Pages in the page cache right now.
    PagecachePages,
    /// Page-cache lookups that found the page.
    PagecacheHits,
    /// Page-cache lookups that did not find the page.
    PagecacheMisses,
    /// Pages evicted from the page cache.
    PagecacheEvictions,
    /// Frames pinned right now (pin count above zero).
    PinnedPages,
    /// File-system metadata (superblock, bitmaps, inodes, directories, indirect blocks)
    /// copied between the metadata cache and DMA frames. Kept apart from
    /// `data_copy_bytes`, which is about file and block *data*.
    MetadataCopyBytes,
    /// Page-cache pages that must be written back (a gauge).
    NrDirty,
    /// Page-cache pages whose writeback is in flight (a gauge).
    NrWriteback,
    /// Pages the reclaim scan looked at.
    Pgscan,
    /// Pages reclaim freed.
    Pgsteal,
    /// Processes killed because memory ran out.
    OomKill,
    /// Times a writer waited because too much of memory was dirty (dirty throttling).
    DirtyThrottled,
    /// Bytes copied between two disks through transit frames (disk to frame to disk by
    /// DMA), counted when written.
    TransitBytes,
}

impl Counter {
    /// Every counter, in `/proc/vmstat` order.
    pub const ALL: [Counter; 17] = [
        Counter::DataCopyBytes,
        Counter::AliasPages,
        Counter::CowBreaks,
        Counter::DmaPinnedBytes,
        Counter::PagecachePages,
        Counter::PagecacheHits,
        Counter::PagecacheMisses,
        Counter::PagecacheEvictions,
        Counter::PinnedPages,
        Counter::MetadataCopyBytes,
        Counter::NrDirty,
        Counter::NrWriteback,
        Counter::Pgscan,
        Counter::Pgsteal,
        Counter::OomKill,
        Counter::DirtyThrottled,
        Counter::TransitBytes,
    ];

    /// The counter's name as printed in `/proc/vmstat`.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::DataCopyBytes => "data_copy_bytes",
            Counter::AliasPages => "alias_pages",
            Counter::CowBreaks => "cow_breaks",
            Counter::DmaPinnedBytes => "dma_pinned_bytes",
            Counter::PagecachePages => "pagecache_pages",
            Counter::PagecacheHits => "pagecache_hits",
            Counter::PagecacheMisses => "pagecache_misses",
            Counter::PagecacheEvictions => "pagecache_evictions",
            Counter::PinnedPages => "pinned_pages",
            Counter::MetadataCopyBytes => "metadata_copy_bytes",
            Counter::NrDirty => "nr_dirty",
            Counter::NrWriteback => "nr_writeback",
            Counter::Pgscan => "pgscan",
            Counter::Pgsteal => "pgsteal",
            Counter::OomKill => "oom_kill",
            Counter::DirtyThrottled => "dirty_throttled",
            Counter::TransitBytes => "transit_bytes",
        }
    }
}

static COUNTERS: [AtomicU64; Counter::ALL.len()] =
    [const { AtomicU64::new(0) }; Counter::ALL.len()];

/// Adds `n` to counter `c`.
pub fn add(c: Counter, n: u64) {
    COUNTERS[c as usize].fetch_add(n, Ordering::Relaxed);
}

/// Subtracts `n` from counter `c` (for gauges such as `pinned_pages`).
pub fn sub(c: Counter, n: u64) {
    COUNTERS[c as usize].fetch_sub(n, Ordering::Relaxed);
}

/// Current value of counter `c`.
pub fn get(c: Counter) -> u64 {
    COUNTERS[c as usize].load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_discriminant_order_with_unique_names() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            assert!(Counter::ALL[..i].iter().all(|o| o.name() != c.name()));
        }
    }

    #[test]
    fn add_sub_get() {
        // No other code touches cow_breaks in this crate's tests.
        let before = get(Counter::CowBreaks);
        add(Counter::CowBreaks, 5);
        sub(Counter::CowBreaks, 2);
        assert_eq!(get(Counter::CowBreaks), before + 3);
    }
}
