//! QEMU's firmware configuration device (ports 0x510/0x511): how the host passes the
//! kernel command line (`-fw_cfg name=opt/aliasos/cmdline,string=...`). Absent on real
//! hardware, where [`read_file`] returns `None`.

use alloc::vec::Vec;
use x86_64::instructions::port::Port;

const SELECTOR: u16 = 0x510;
const DATA: u16 = 0x511;
const KEY_SIGNATURE: u16 = 0x0000;
const KEY_FILE_DIR: u16 = 0x0019;

fn select(key: u16) {
    // SAFETY: 0x510 is fw_cfg's selector port under QEMU; on real PCs it is unclaimed and
    // writes are ignored.
    unsafe { Port::<u16>::new(SELECTOR).write(key) }
}

fn read_bytes(buf: &mut [u8]) {
    for b in buf {
        // SAFETY: 0x511 is fw_cfg's data port; reads of an unclaimed port return 0xFF.
        *b = unsafe { Port::<u8>::new(DATA).read() };
    }
}

/// Whether QEMU's fw_cfg device is present.
pub fn present() -> bool {
    select(KEY_SIGNATURE);
    let mut sig = [0u8; 4];
    read_bytes(&mut sig);
    &sig == b"QEMU"
}

/// The contents of fw_cfg file `name`, if the device and the file exist.
pub fn read_file(name: &str) -> Option<Vec<u8>> {
    if !present() {
        return None;
    }
    select(KEY_FILE_DIR);
    let mut count = [0u8; 4];
    read_bytes(&mut count);
    let count = u32::from_be_bytes(count).min(4096);
    for _ in 0..count {
        let mut entry = [0u8; 64];
        read_bytes(&mut entry);
        let size = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]) as usize;
        let key = u16::from_be_bytes([entry[4], entry[5]]);
        let raw = &entry[8..];
        let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
        if &raw[..end] == name.as_bytes() {
            let mut data = alloc::vec![0u8; size.min(1 << 20)];
            select(key);
            read_bytes(&mut data);
            return Some(data);
        }
    }
    None
}
