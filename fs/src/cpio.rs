//! cpio "newc" archives (magic `070701`, and `070702` with its checksum), the format of
//! Linux initramfs images and of the AliasOS initramfs.
//!
//! [`Reader`] walks an archive in place: entries borrow their name and data from the
//! input, nothing is copied. Concatenated archives (each ending in `TRAILER!!!`, with
//! zero padding between them) are read as one, as Linux does for initramfs. Malformed
//! input ends the walk with a [`CpioError`] value; nothing here panics on any input.
//!
//! Layout of one entry: a 110-byte ASCII header (6 bytes of magic, then 13 fields of 8
//! hex digits: ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
//! rdevmajor, rdevminor, namesize, check), the name with its NUL (`namesize` bytes),
//! padding to a multiple of 4, the data (`filesize` bytes), padding to a multiple of 4.

use core::fmt;

/// Size of a newc header.
pub const HEADER_LEN: usize = 110;
/// Magic of the plain newc format.
pub const MAGIC_NEWC: &[u8; 6] = b"070701";
/// Magic of the newc format with a checksum of the data.
pub const MAGIC_CRC: &[u8; 6] = b"070702";
/// Name of the entry that ends an archive.
pub const TRAILER: &[u8] = b"TRAILER!!!";

/// File type bits of `mode` (as in `st_mode`).
pub const S_IFMT: u32 = 0o170000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Symbolic link (the data is the target).
pub const S_IFLNK: u32 = 0o120000;

/// Why an archive could not be read. `offset` is where the bad entry starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpioError {
    /// The input ends inside an entry (or before any trailer).
    Truncated { offset: usize },
    /// No newc magic where an entry should start.
    BadMagic { offset: usize },
    /// A header field is not 8 hex digits.
    BadField { offset: usize },
    /// The name size is 0 or the name lacks its NUL.
    BadName { offset: usize },
    /// A `070702` entry whose data does not match its checksum.
    BadChecksum { offset: usize },
}

impl fmt::Display for CpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpioError::Truncated { offset } => write!(f, "archive truncated at byte {offset}"),
            CpioError::BadMagic { offset } => write!(f, "no cpio newc magic at byte {offset}"),
            CpioError::BadField { offset } => write!(f, "bad header field at byte {offset}"),
            CpioError::BadName { offset } => write!(f, "bad entry name at byte {offset}"),
            CpioError::BadChecksum { offset } => {
                write!(f, "data checksum mismatch in entry at byte {offset}")
            }
        }
    }
}

/// One archive member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Path inside the archive, without the NUL (usually relative, like `bin/sh` or
    /// `./bin/sh`).
    pub name: &'a [u8],
    pub ino: u32,
    /// Type and permission bits (`S_IF*` | 0o7777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    /// The file's contents (a symbolic link's target).
    pub data: &'a [u8],
}

impl Entry<'_> {
    /// The `S_IF*` type bits.
    pub fn file_type(&self) -> u32 {
        self.mode & S_IFMT
    }

    pub fn is_dir(&self) -> bool {
        self.file_type() == S_IFDIR
    }

    pub fn is_file(&self) -> bool {
        self.file_type() == S_IFREG
    }

    pub fn is_symlink(&self) -> bool {
        self.file_type() == S_IFLNK
    }
}

/// Iterator over the entries of (concatenated) newc archives in `data`. The trailers
/// are not returned. After an error the iterator ends.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// A trailer was read and no entry since: the input may end here.
    at_end_of_archive: bool,
    done: bool,
}

impl<'a> Reader<'a> {
    /// Read the archive(s) in `data`. An empty input holds no entries.
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader {
            data,
            pos: 0,
            at_end_of_archive: true,
            done: false,
        }
    }

    /// Byte offset of the next entry.
    pub fn offset(&self) -> usize {
        self.pos
    }
}

fn hex_field(h: &[u8], index: usize, offset: usize) -> Result<u32, CpioError> {
    let start = 6 + 8 * index;
    let digits = h
        .get(start..start + 8)
        .ok_or(CpioError::Truncated { offset })?;
    let mut v: u32 = 0;
    for &d in digits {
        let nibble = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err(CpioError::BadField { offset }),
        };
        v = (v << 4) | nibble as u32;
    }
    Ok(v)
}

fn align4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|v| v & !3)
}

impl<'a> Reader<'a> {
    /// Parse the entry at `self.pos`; `Ok(None)` for a trailer.
    fn parse(&mut self) -> Result<Option<Entry<'a>>, CpioError> {
        let offset = self.pos;
        let header = self
            .data
            .get(offset..offset.saturating_add(HEADER_LEN))
            .ok_or(CpioError::Truncated { offset })?;
        let magic = &header[..6];
        let crc = if magic == MAGIC_NEWC {
            false
        } else if magic == MAGIC_CRC {
            true
        } else {
            return Err(CpioError::BadMagic { offset });
        };
        let f = |i| hex_field(header, i, offset);
        let (ino, mode, uid, gid, nlink, mtime) = (f(0)?, f(1)?, f(2)?, f(3)?, f(4)?, f(5)?);
        let filesize = f(6)? as usize;
        let (dev_major, dev_minor, rdev_major, rdev_minor) = (f(7)?, f(8)?, f(9)?, f(10)?);
        let namesize = f(11)? as usize;
        let check = f(12)?;
        if namesize == 0 {
            return Err(CpioError::BadName { offset });
        }
        let name_start = offset + HEADER_LEN;
        let name_end = name_start
            .checked_add(namesize)
            .ok_or(CpioError::Truncated { offset })?;
        let name_nul = self
            .data
            .get(name_start..name_end)
            .ok_or(CpioError::Truncated { offset })?;
        let (&last, name) = name_nul.split_last().ok_or(CpioError::BadName { offset })?;
        if last != 0 || name.contains(&0) {
            return Err(CpioError::BadName { offset });
        }
        let data_start = align4(name_end).ok_or(CpioError::Truncated { offset })?;
        let data_end = data_start
            .checked_add(filesize)
            .ok_or(CpioError::Truncated { offset })?;
        let data = self
            .data
            .get(data_start..data_end)
            .ok_or(CpioError::Truncated { offset })?;
        if crc {
            let sum = data.iter().fold(0u32, |s, &b| s.wrapping_add(b as u32));
            if sum != check {
                return Err(CpioError::BadChecksum { offset });
            }
        }
        // The padding after the data may be cut off at the very end of the input.
        self.pos = align4(data_end)
            .ok_or(CpioError::Truncated { offset })?
            .min(self.data.len());
        if name == TRAILER {
            return Ok(None);
        }
        Ok(Some(Entry {
            name,
            ino,
            mode,
            uid,
            gid,
            nlink,
            mtime,
            dev_major,
            dev_minor,
            rdev_major,
            rdev_minor,
            data,
        }))
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Entry<'a>, CpioError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            if self.at_end_of_archive {
                // Zero padding between (or after) archives.
                let rest = self.data.get(self.pos..).unwrap_or(&[]);
                let zeros = rest.iter().take_while(|&&b| b == 0).count();
                self.pos += zeros;
                if self.pos >= self.data.len() {
                    self.done = true;
                    return None;
                }
            }
            match self.parse() {
                Ok(Some(e)) => {
                    self.at_end_of_archive = false;
                    return Some(Ok(e));
                }
                Ok(None) => self.at_end_of_archive = true,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// A minimal newc writer for the tests.
    struct Writer {
        out: Vec<u8>,
        crc: bool,
    }

    impl Writer {
        fn new() -> Writer {
            Writer {
                out: Vec::new(),
                crc: false,
            }
        }

        fn entry(&mut self, name: &[u8], mode: u32, ino: u32, nlink: u32, data: &[u8]) {
            let check = if self.crc {
                data.iter().fold(0u32, |s, &b| s.wrapping_add(b as u32))
            } else {
                0
            };
            let magic = if self.crc { "070702" } else { "070701" };
            let fields = [
                ino,
                mode,
                0,
                0,
                nlink,
                1_700_000_000,
                data.len() as u32,
                0,
                0,
                0,
                0,
                name.len() as u32 + 1,
                check,
            ];
            self.out.extend_from_slice(magic.as_bytes());
            for f in fields {
                self.out.extend_from_slice(format!("{f:08X}").as_bytes());
            }
            self.out.extend_from_slice(name);
            self.out.push(0);
            while !self.out.len().is_multiple_of(4) {
                self.out.push(0);
            }
            self.out.extend_from_slice(data);
            while !self.out.len().is_multiple_of(4) {
                self.out.push(0);
            }
        }

        fn trailer(&mut self) {
            self.entry(TRAILER, 0, 0, 1, b"");
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = Writer::new();
        w.entry(b".", S_IFDIR | 0o755, 1, 2, b"");
        w.entry(b"bin", S_IFDIR | 0o755, 2, 2, b"");
        w.entry(b"bin/sh", S_IFREG | 0o755, 3, 1, b"\x7fELF and so on");
        w.entry(b"bin/ls-link", S_IFLNK | 0o777, 4, 1, b"sh");
        w.entry(b"empty", S_IFREG | 0o644, 5, 1, b"");
        w.entry(b"abc", S_IFREG | 0o600, 6, 1, b"abc");
        w.trailer();
        w.out
    }

    fn all(data: &[u8]) -> Result<Vec<Entry<'_>>, CpioError> {
        Reader::new(data).collect()
    }

    #[test]
    fn reads_every_entry_with_its_data() {
        let data = sample();
        let e = all(&data).unwrap();
        let names: Vec<&[u8]> = e.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                &b"."[..],
                b"bin",
                b"bin/sh",
                b"bin/ls-link",
                b"empty",
                b"abc"
            ]
        );
        assert!(e[0].is_dir() && e[2].is_file() && e[3].is_symlink());
        assert_eq!(e[2].data, b"\x7fELF and so on");
        assert_eq!(e[2].mode & 0o7777, 0o755);
        assert_eq!(e[3].data, b"sh");
        assert_eq!(e[4].data, b"");
        assert_eq!(e[5].data, b"abc");
        assert_eq!(e[5].ino, 6);
        assert_eq!(e[5].mtime, 1_700_000_000);
    }

    #[test]
    fn empty_input_has_no_entries() {
        assert_eq!(all(&[]).unwrap().len(), 0);
        assert_eq!(all(&[0; 512]).unwrap().len(), 0);
    }

    #[test]
    fn concatenated_archives_with_padding() {
        let mut a = sample();
        a.extend_from_slice(&[0; 512]);
        let mut w = Writer::new();
        w.entry(b"second", S_IFREG | 0o644, 1, 1, b"2");
        w.trailer();
        a.extend_from_slice(&w.out);
        a.extend_from_slice(&[0; 100]);
        let e = all(&a).unwrap();
        assert_eq!(e.len(), 7);
        assert_eq!(e[6].name, b"second");
        assert_eq!(e[6].data, b"2");
    }

    #[test]
    fn crc_format_is_checked() {
        let mut w = Writer::new();
        w.crc = true;
        w.entry(b"f", S_IFREG | 0o644, 1, 1, b"hello");
        w.trailer();
        assert_eq!(all(&w.out).unwrap()[0].data, b"hello");
        let mut bad = w.out.clone();
        let at = bad.windows(5).position(|x| x == b"hello").unwrap();
        bad[at] = b'j';
        assert_eq!(all(&bad), Err(CpioError::BadChecksum { offset: 0 }));
    }

    #[test]
    fn missing_trailer_is_truncation() {
        let mut w = Writer::new();
        w.entry(b"f", S_IFREG | 0o644, 1, 1, b"x");
        let r: Vec<_> = Reader::new(&w.out).collect();
        assert_eq!(r.len(), 2);
        assert!(r[0].is_ok());
        assert!(matches!(r[1], Err(CpioError::Truncated { .. })));
    }

    #[test]
    fn every_prefix_is_an_error_or_a_clean_end_never_a_panic() {
        let data = sample();
        for len in 0..data.len() {
            let r: Vec<_> = Reader::new(&data[..len]).collect();
            // A prefix never yields an entry with the wrong contents.
            for (i, e) in r.iter().filter_map(|e| e.as_ref().ok()).enumerate() {
                assert_eq!(*e, all(&data).unwrap()[i]);
            }
            if len > 0 && len < data.len() - 3 {
                assert!(
                    r.last().is_some_and(|x| x.is_err()),
                    "prefix {len} accepted"
                );
            }
        }
    }

    #[test]
    fn corrupt_headers_are_errors() {
        let data = sample();
        let mut bad = data.clone();
        bad[0] = b'1';
        assert_eq!(all(&bad), Err(CpioError::BadMagic { offset: 0 }));
        let mut bad = data.clone();
        bad[10] = b'g';
        assert_eq!(all(&bad), Err(CpioError::BadField { offset: 0 }));
        // namesize 0
        let mut bad = data.clone();
        bad[94..102].copy_from_slice(b"00000000");
        assert_eq!(all(&bad), Err(CpioError::BadName { offset: 0 }));
        // a huge file size
        let mut bad = data.clone();
        bad[54..62].copy_from_slice(b"FFFFFFFF");
        assert_eq!(all(&bad), Err(CpioError::Truncated { offset: 0 }));
        // name without its NUL
        let mut bad = data.clone();
        bad[HEADER_LEN + 1] = b'x';
        assert_eq!(all(&bad), Err(CpioError::BadName { offset: 0 }));
    }

    #[test]
    fn random_mutations_never_panic() {
        let data = sample();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut d = data.clone();
            for _ in 0..(rnd() % 4 + 1) {
                let i = (rnd() as usize) % d.len();
                d[i] = rnd() as u8;
            }
            let cut = (rnd() as usize) % (d.len() + 1);
            for e in Reader::new(&d[..cut]).flatten() {
                assert!(e.data.len() <= cut && e.name.len() <= cut);
            }
        }
    }

    /// Archives written by GNU cpio (`cpio -o -H newc`), when the tool is installed.
    #[test]
    fn parses_gnu_cpio_output() {
        use std::process::{Command, Stdio};
        if Command::new("cpio").arg("--version").output().is_err() {
            eprintln!("cpio not installed; skipping");
            return;
        }
        let dir = std::env::temp_dir().join(format!("aliasos-cpio-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let big: Vec<u8> = (0..100_003u32).map(|i| (i * 7 + i / 251) as u8).collect();
        std::fs::write(dir.join("bin/big"), &big).unwrap();
        std::fs::write(dir.join("hello.txt"), b"hello\n").unwrap();
        std::fs::write(dir.join("odd"), b"12345").unwrap();
        std::os::unix::fs::symlink("bin/big", dir.join("link")).unwrap();
        std::fs::hard_link(dir.join("odd"), dir.join("odd2")).unwrap();
        let list = "bin\nbin/big\nhello.txt\nodd\nodd2\nlink\n";
        let mut child = Command::new("cpio")
            .args(["-o", "-H", "newc", "--quiet"])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(list.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let _ = std::fs::remove_dir_all(&dir);
        let e = all(&out.stdout).unwrap();
        let find = |n: &[u8]| *e.iter().find(|x| x.name == n).unwrap();
        assert!(find(b"bin").is_dir());
        assert_eq!(find(b"bin/big").data, &big[..]);
        assert_eq!(find(b"hello.txt").data, b"hello\n");
        assert!(find(b"link").is_symlink());
        assert_eq!(find(b"link").data, b"bin/big");
        // GNU cpio stores a hard-linked file's data with the last of its names.
        let (a, b) = (find(b"odd"), find(b"odd2"));
        assert_eq!(a.ino, b.ino);
        assert_eq!(a.nlink, 2);
        assert_eq!([a.data, b.data].concat(), b"12345");
    }
}
