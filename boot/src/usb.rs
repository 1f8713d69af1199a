//! Writing a boot image to a USB stick, with the checks a careful person would make.

use std::io::{BufRead, Write};
use std::path::Path;

/// What the kernel's sysfs says about a block device.
pub struct BlockDevice {
    /// e.g. `sdb`
    pub name: String,
    pub size_bytes: u64,
    pub model: String,
    pub removable: bool,
}

/// Look up `/dev/NAME` in `/sys/block`. Refuses partitions and unknown devices.
pub fn describe(dev: &Path) -> Result<BlockDevice, String> {
    let name = dev
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{} is not a device path", dev.display()))?
        .to_string();
    let sys = Path::new("/sys/block").join(&name);
    if !sys.exists() {
        return Err(format!(
            "{} is not a whole block device (no /sys/block/{name}); give the disk, not a partition",
            dev.display()
        ));
    }
    let read = |f: &str| std::fs::read_to_string(sys.join(f)).map(|s| s.trim().to_string());
    let sectors: u64 = read("size").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let model = read("device/model").unwrap_or_else(|_| "(unknown model)".into());
    let vendor = read("device/vendor").unwrap_or_default();
    let removable = read("removable").map(|s| s == "1").unwrap_or(false);
    Ok(BlockDevice {
        name,
        size_bytes: sectors * 512,
        model: format!("{vendor} {model}").trim().to_string(),
        removable,
    })
}

/// Write `image` to `dev` after showing what the device is and asking for confirmation.
pub fn write_image(image: &Path, dev: &Path, assume_yes: bool) -> Result<(), String> {
    let info = describe(dev)?;
    let img_len = std::fs::metadata(image)
        .map_err(|e| format!("{}: {e}", image.display()))?
        .len();
    if info.size_bytes < img_len {
        return Err(format!(
            "{} holds {} bytes, the image needs {img_len}",
            dev.display(),
            info.size_bytes
        ));
    }
    let mounted = std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with(&format!("/dev/{}", info.name)));
    println!("Device:    {}", dev.display());
    println!("Model:     {}", info.model);
    println!(
        "Size:      {:.1} GiB",
        info.size_bytes as f64 / (1u64 << 30) as f64
    );
    println!(
        "Removable: {}",
        if info.removable {
            "yes"
        } else {
            "NO (this looks like an internal disk)"
        }
    );
    if mounted {
        return Err(format!(
            "{} (or a partition of it) is mounted; unmount it first",
            dev.display()
        ));
    }
    println!("Image:     {} ({img_len} bytes)", image.display());
    println!("Everything on {} will be destroyed.", dev.display());
    if !assume_yes {
        print!("Type the device name ({}) to continue: ", info.name);
        std::io::stdout().flush().ok();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|e| e.to_string())?;
        if answer.trim() != info.name && answer.trim() != dev.display().to_string() {
            return Err("not confirmed; nothing written".into());
        }
    }
    let data = std::fs::read(image).map_err(|e| format!("{}: {e}", image.display()))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(dev)
        .map_err(|e| format!("{}: {e}", dev.display()))?;
    f.write_all(&data)
        .map_err(|e| format!("writing {}: {e}", dev.display()))?;
    f.sync_all()
        .map_err(|e| format!("sync {}: {e}", dev.display()))?;
    println!(
        "Wrote {img_len} bytes to {}; it can be removed now.",
        dev.display()
    );
    Ok(())
}
