//! Command-slot bookkeeping: which slots hold a command, which must wait for the HBA to
//! let go of a stale one, and when the next queued request may be issued. Pure.

/// The slots of one port.
///
/// - *busy*: holds one of our commands (its bit was written to PxCI and the command is
///   not reaped yet);
/// - *zombie*: after error recovery, the HBA still shows the slot in PxCI although the
///   command was taken back (some HBAs, e.g. QEMU's, do not clear PxCI when PxCMD.ST is
///   cleared). Its command table was rewritten to a harmless no-data command and the slot
///   is reused only once the HBA has cleared its PxCI bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotTable {
    nslots: u32,
    busy: u32,
    zombie: u32,
    /// While non-zero, commands are issued one at a time; it counts the commands still
    /// to run that way (after an error that could not be pinned on one command).
    serial_left: u32,
}

/// Iterates over the set bits of `mask`, lowest first.
pub fn bits(mut mask: u32) -> impl Iterator<Item = u8> {
    core::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let bit = mask.trailing_zeros() as u8;
        mask &= mask - 1;
        Some(bit)
    })
}

impl SlotTable {
    /// `nslots` slots (clamped to `1..=32`), all free.
    pub fn new(nslots: u32) -> SlotTable {
        SlotTable {
            nslots: nslots.clamp(1, 32),
            busy: 0,
            zombie: 0,
            serial_left: 0,
        }
    }

    /// Number of slots.
    pub fn nslots(&self) -> u32 {
        self.nslots
    }

    fn all(&self) -> u32 {
        if self.nslots == 32 {
            u32::MAX
        } else {
            (1 << self.nslots) - 1
        }
    }

    /// Slots holding one of our commands.
    pub fn busy(&self) -> u32 {
        self.busy
    }

    /// Slots waiting for the HBA to drop a stale command.
    pub fn zombies(&self) -> u32 {
        self.zombie
    }

    /// Whether a queued command may be issued now, and into which slot (the lowest
    /// free one). In serial mode, only when nothing else is in flight.
    pub fn next_free(&self) -> Option<u8> {
        if self.serial_left > 0 && (self.busy | self.zombie) != 0 {
            return None;
        }
        let free = self.all() & !(self.busy | self.zombie);
        if free == 0 {
            None
        } else {
            Some(free.trailing_zeros() as u8)
        }
    }

    /// Marks `slot` as holding a command.
    pub fn take(&mut self, slot: u8) {
        self.busy |= 1 << slot;
    }

    /// A command left `slot` (completed, failed or taken back).
    pub fn release(&mut self, slot: u8) {
        self.busy &= !(1 << slot);
    }

    /// One command ran to an end (completed or failed) while in serial mode.
    pub fn command_finished(&mut self) {
        self.serial_left = self.serial_left.saturating_sub(1);
    }

    /// Run the next `n` commands one at a time.
    pub fn enter_serial(&mut self, n: u32) {
        self.serial_left = self.serial_left.max(n);
    }

    /// Commands still to run one at a time.
    pub fn serial_left(&self) -> u32 {
        self.serial_left
    }

    /// After the port was stopped: `stale` slots (busy or zombie) are still set in
    /// PxCI. Every busy slot is released; exactly the stale ones are zombies now.
    pub fn stopped(&mut self, stale: u32) {
        self.zombie = stale & self.all();
        self.busy = 0;
    }

    /// Given PxCI, the busy slots whose commands finished, and the zombies that the HBA
    /// has now let go of (those are freed here).
    pub fn finished(&mut self, ci: u32) -> u32 {
        self.zombie &= ci;
        self.busy & !ci
    }

    /// Forget everything (port reset or gone).
    pub fn clear(&mut self) {
        self.busy = 0;
        self.zombie = 0;
        self.serial_left = 0;
    }
}
