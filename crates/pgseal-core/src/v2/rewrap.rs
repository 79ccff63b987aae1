//! Rewrapping: moving a file's key to new recipients without touching anything signed, and
//! wiping what the move supersedes (FORMAT.md §6).
//!
//! A rewrap is two slot-sized writes, each made durable before the next:
//!
//! 1. *install*: the new stanzas go into the file's inactive slot with the next generation. A
//!    crash can tear only that write: the torn slot fails its checksum and the old, active slot
//!    still opens the file; once the write is durable the new slot is the active one.
//! 2. *wipe*: the slot it superseded is overwritten with zeros (the empty encoding), so the keys
//!    it named open the file no more. A crash before or during the wipe leaves a file the new
//!    slot opens; the wipe is then still owed, and [`Prelude::plan_wipe`] finishes it.
//!
//! The cost is one RSA unwrap, one wrap per recipient and two slot-sized writes, whatever the
//! file's size. Planning is pure; [`Rewrap::apply`] only writes.

use std::io::{self, Seek, SeekFrom, Write};

use crate::error::{Error, FormatError, Result};
use crate::keys::{Fingerprint, Identity, PublicKey};

use super::open::Prelude;
use super::slots::{SlotState, Stanza, encode_slot};

/// What one write of a rewrap does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Writes the new active slot.
    Install,
    /// Overwrites a superseded slot with zeros.
    Wipe,
}

impl Step {
    /// A short name for messages and audit details.
    pub fn name(self) -> &'static str {
        match self {
            Step::Install => "install",
            Step::Wipe => "wipe",
        }
    }
}

/// One write of a rewrap: a whole slot's bytes at its offset.
#[derive(Debug, Clone)]
pub struct SlotWrite {
    /// Whether this write installs the new slot or wipes an old one.
    pub step: Step,
    /// Which slot: 0 = A, 1 = B.
    pub slot: usize,
    /// Where the slot starts in the file.
    pub offset: u64,
    /// The slot's new content, `recipient_slot_size` bytes.
    pub bytes: Vec<u8>,
}

/// The writes that move one file to new recipients, ready to apply.
#[derive(Debug, Clone)]
pub struct Rewrap {
    /// In order; each must be durable before the next is made.
    pub writes: Vec<SlotWrite>,
    /// The active slot's generation once the writes are done.
    pub generation: u64,
    /// Who can open the file once the writes are done.
    pub recipients: Vec<Fingerprint>,
}

impl Prelude {
    /// Plans a rewrap to `recipients`, keeping the stanzas of `keep` (recovery keys) and of
    /// kinds this version does not know: the new slot goes into the inactive slot, then the
    /// active one is wiped. Needs an identity that opens the file now.
    pub fn plan_rewrap(
        &self,
        identities: &[&dyn Identity],
        recipients: &[PublicKey],
        keep: &[Fingerprint],
    ) -> Result<Rewrap> {
        let (active_index, slot) = self.active_slot()?;
        let h = &self.header;
        // A post-quantum file stays post-quantum (FORMAT.md §6a); an RSA-only one may be
        // upgraded by wrapping it to hybrid keys.
        if h.hybrid
            && let Some(r) = recipients.iter().find(|r| r.pq().is_none())
        {
            return Err(Error::NotHybrid(r.fingerprint()));
        }
        let (file_key, keys, _) =
            slot.unlock(identities, &h.salt, &h.key_commitment, &self.header_hash)?;
        let mut stanzas: Vec<Stanza> = Vec::new();
        for r in recipients {
            if !stanzas
                .iter()
                .any(|s| s.recipient() == Some(r.fingerprint()))
            {
                stanzas.push(Stanza::wrap(r, &file_key)?);
            }
        }
        for s in &slot.stanzas {
            let kept = match s.recipient() {
                Some(recipient) => {
                    keep.contains(&recipient)
                        && !stanzas.iter().any(|n| n.recipient() == Some(recipient))
                }
                None => true,
            };
            if kept {
                stanzas.push(s.clone());
            }
        }
        let generation = slot
            .generation
            .checked_add(1)
            .ok_or(FormatError::GenerationExhausted)?;
        let bytes = encode_slot(generation, &stanzas, h.slot_size, &keys, &self.header_hash)?;
        let inactive = 1 - active_index;
        Ok(Rewrap {
            writes: vec![
                SlotWrite {
                    step: Step::Install,
                    slot: inactive,
                    offset: self.slot_offset(inactive),
                    bytes,
                },
                self.wipe(active_index),
            ],
            generation,
            recipients: stanzas.iter().filter_map(Stanza::recipient).collect(),
        })
    }

    /// The inactive slot when it is not empty — a wrapping a rewrap superseded but has not wiped
    /// yet (the rewrap was interrupted, or made by a pgseal that did not wipe), or a damaged
    /// slot — with its index. `None` when the file has no active slot.
    pub fn superseded_slot(&self) -> Option<(usize, &SlotState)> {
        let (active, _) = self.active_slot().ok()?;
        let inactive = 1 - active;
        match &self.slots[inactive] {
            SlotState::Empty => None,
            state => Some((inactive, state)),
        }
    }

    /// Plans the wipe still owed by an earlier rewrap: the inactive slot overwritten with
    /// zeros, leaving the active slot alone. Needs no key. `None` when there is nothing to wipe.
    pub fn plan_wipe(&self) -> Result<Option<Rewrap>> {
        let (_, active) = self.active_slot()?;
        Ok(self.superseded_slot().map(|(index, _)| Rewrap {
            writes: vec![self.wipe(index)],
            generation: active.generation,
            recipients: active.recipients(),
        }))
    }

    fn wipe(&self, slot: usize) -> SlotWrite {
        SlotWrite {
            step: Step::Wipe,
            slot,
            offset: self.slot_offset(slot),
            bytes: vec![0; self.header.slot_size as usize],
        }
    }

    fn slot_offset(&self, slot: usize) -> u64 {
        self.slots_offset + slot as u64 * u64::from(self.header.slot_size)
    }
}

impl Rewrap {
    /// Makes the writes in order, calling `durable` after each: it must make the write durable
    /// (`File::sync_data`) before returning, or the crash-safety argument above does not hold.
    pub fn apply<F: Write + Seek>(
        &self,
        file: &mut F,
        mut durable: impl FnMut(&mut F, &SlotWrite) -> io::Result<()>,
    ) -> io::Result<()> {
        for write in &self.writes {
            file.seek(SeekFrom::Start(write.offset))?;
            file.write_all(&write.bytes)?;
            file.flush()?;
            durable(file, write)?;
        }
        Ok(())
    }

    /// Whether the plan only wipes (the active slot already named the right keys).
    pub fn wipe_only(&self) -> bool {
        self.writes.iter().all(|w| w.step == Step::Wipe)
    }
}
