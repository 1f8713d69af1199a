//! Mount an arbitrary image read-only from memory and walk/read everything.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((mut fs, _dev)) = fs_fuzz::mount(data, true) {
        fs_fuzz::walk(&mut fs);
        let _ = fs.sync();
    }
});
