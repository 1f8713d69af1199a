//! Mount an arbitrary image read-write and run a short operation sequence.
//!
//! Input layout: `image ++ ops ++ [ops.len()]` (at most 64 op bytes), so a
//! plain image is still a valid input (its last byte is taken as a length).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_last() else {
        return;
    };
    let k = (k as usize % 65).min(rest.len());
    let (image, ops) = rest.split_at(rest.len() - k);
    if let Some((mut fs, dev)) = fs_fuzz::mount(image, false) {
        fs_fuzz::walk(&mut fs);
        fs_fuzz::run_ops(&mut fs, ops);
        fs_fuzz::walk(&mut fs);
        let _ = fs.unmount();
        // What was written must mount and walk again without panicking.
        if let Some((mut fs, _)) = fs_fuzz::mount(&dev.contents(), true) {
            fs_fuzz::walk(&mut fs);
        }
    }
});
