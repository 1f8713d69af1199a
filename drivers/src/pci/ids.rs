//! Vendor, device and class numbers the drivers look for.

use super::class::ClassCode;

/// Red Hat / virtio vendor ID.
pub const VENDOR_VIRTIO: u16 = 0x1AF4;
/// virtio-blk, modern (virtio 1.0) device ID: `0x1040 + 2`.
pub const DEVICE_VIRTIO_BLK_MODERN: u16 = 0x1042;
/// virtio-blk, transitional (legacy-capable) device ID.
pub const DEVICE_VIRTIO_BLK_TRANSITIONAL: u16 = 0x1001;

/// Base class: mass storage controller.
pub const CLASS_MASS_STORAGE: u8 = 0x01;
/// Base class: network controller.
pub const CLASS_NETWORK: u8 = 0x02;
/// Base class: display controller.
pub const CLASS_DISPLAY: u8 = 0x03;
/// Base class: bridge.
pub const CLASS_BRIDGE: u8 = 0x06;
/// Base class: serial bus controller.
pub const CLASS_SERIAL_BUS: u8 = 0x0C;

/// Mass storage subclass: SCSI.
pub const SUBCLASS_SCSI: u8 = 0x00;
/// Mass storage subclass: IDE.
pub const SUBCLASS_IDE: u8 = 0x01;
/// Mass storage subclass: SATA.
pub const SUBCLASS_SATA: u8 = 0x06;
/// Mass storage subclass: non-volatile memory.
pub const SUBCLASS_NVM: u8 = 0x08;
/// Bridge subclass: host bridge.
pub const SUBCLASS_HOST_BRIDGE: u8 = 0x00;
/// Bridge subclass: ISA bridge.
pub const SUBCLASS_ISA_BRIDGE: u8 = 0x01;
/// Bridge subclass: PCI-to-PCI bridge.
pub const SUBCLASS_PCI_BRIDGE: u8 = 0x04;
/// Serial bus subclass: USB.
pub const SUBCLASS_USB: u8 = 0x03;
/// Serial bus subclass: SMBus.
pub const SUBCLASS_SMBUS: u8 = 0x05;

/// SATA programming interface: AHCI 1.0.
pub const PROG_IF_AHCI: u8 = 0x01;
/// Non-volatile memory programming interface: NVM Express.
pub const PROG_IF_NVME: u8 = 0x02;

/// AHCI SATA controller: class `01/06/01`.
pub const CLASS_AHCI: ClassCode = ClassCode::new(CLASS_MASS_STORAGE, SUBCLASS_SATA, PROG_IF_AHCI);
/// NVMe controller: class `01/08/02`.
pub const CLASS_NVME: ClassCode = ClassCode::new(CLASS_MASS_STORAGE, SUBCLASS_NVM, PROG_IF_NVME);

/// Whether `vendor:device` is a virtio-blk device (modern or transitional).
pub const fn is_virtio_blk(vendor: u16, device: u16) -> bool {
    vendor == VENDOR_VIRTIO
        && (device == DEVICE_VIRTIO_BLK_MODERN || device == DEVICE_VIRTIO_BLK_TRANSITIONAL)
}
