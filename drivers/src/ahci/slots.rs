//! Command-slot bookkeeping: which slots hold a command and of which kind, which must
//! wait for the HBA to let go of a stale one, and when the next request may be issued.
//! Pure.
//!
//! Queued (NCQ) and non-queued commands never share the port (AHCI forbids mixing them:
//! the device would not know which protocol to follow): a non-queued command waits until no
//! queued one is outstanding, and the other way round.

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
    /// Slots an NCQ command may use (its tag is its slot): the lowest `min(nslots,
    /// queue depth of the device)`.
    ncq_slots: u32,
    busy: u32,
    /// The busy slots that hold queued (NCQ) commands.
    queued: u32,
    zombie: u32,
    /// While non-zero, commands are issued one at a time; it counts the commands still
    /// to run that way (after an error that could not be pinned on one command).
    serial_left: u32,
}

/// The two kinds of command a port runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// READ/WRITE FPDMA QUEUED: finishes when the device clears its PxSACT bit.
    Queued,
    /// Any other command: finishes when the HBA clears its PxCI bit.
    NonQueued,
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
    /// `nslots` slots (clamped to `1..=32`), all free; NCQ commands use the lowest
    /// `ncq_depth` of them (clamped to `nslots`).
    pub fn new(nslots: u32, ncq_depth: u32) -> SlotTable {
        let nslots = nslots.clamp(1, 32);
        let depth = ncq_depth.min(nslots);
        SlotTable {
            nslots,
            ncq_slots: if depth == 32 {
                u32::MAX
            } else {
                (1 << depth) - 1
            },
            busy: 0,
            queued: 0,
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

    /// Busy slots holding queued (NCQ) commands.
    pub fn queued(&self) -> u32 {
        self.queued
    }

    /// Slots waiting for the HBA to drop a stale command.
    pub fn zombies(&self) -> u32 {
        self.zombie
    }

    /// Whether a command of `kind` may be issued now, and into which slot (the lowest
    /// free one). Not while commands of the other kind are outstanding; in serial mode,
    /// only when nothing else is in flight.
    pub fn next_free(&self, kind: Kind) -> Option<u8> {
        if self.serial_left > 0 && (self.busy | self.zombie) != 0 {
            return None;
        }
        let (other, usable) = match kind {
            Kind::Queued => (self.busy & !self.queued, self.ncq_slots),
            Kind::NonQueued => (self.queued, self.all()),
        };
        if other != 0 {
            return None;
        }
        let free = usable & !(self.busy | self.zombie);
        if free == 0 {
            None
        } else {
            Some(free.trailing_zeros() as u8)
        }
    }

    /// Marks `slot` as holding a command of `kind`.
    pub fn take(&mut self, slot: u8, kind: Kind) {
        self.busy |= 1 << slot;
        if kind == Kind::Queued {
            self.queued |= 1 << slot;
        }
    }

    /// A command left `slot` (completed, failed or taken back).
    pub fn release(&mut self, slot: u8) {
        self.busy &= !(1 << slot);
        self.queued &= !(1 << slot);
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
        self.queued = 0;
    }

    /// Given PxCI and PxSACT, the busy slots whose commands finished (a non-queued one
    /// once its PxCI bit is clear, a queued one once its PxSACT bit is clear too), and
    /// the zombies that the HBA has now let go of (those are freed here).
    ///
    /// A queued command whose PxSACT bit is clear finished *well*: a device that fails
    /// an NCQ command leaves its bit set.
    pub fn finished(&mut self, ci: u32, sact: u32) -> u32 {
        self.zombie &= ci;
        (self.busy & !self.queued & !ci) | (self.queued & !(ci | sact))
    }

    /// Forget everything (port reset or gone).
    pub fn clear(&mut self) {
        self.busy = 0;
        self.queued = 0;
        self.zombie = 0;
        self.serial_left = 0;
    }
}
