//! Rewrapping: moving a file's key to new recipients without touching anything signed
//! (FORMAT.md §6).
//!
//! The new stanzas go into the file's *inactive* slot with the next generation, in one write.
//! A crash can tear only that write: the torn slot fails its checksum and the old, active slot
//! still opens the file; once the write is durable the new slot is the active one. The cost is
//! one RSA unwrap, one wrap per recipient and one slot-sized write, whatever the file's size.

use std::io::{self, Seek, SeekFrom, Write};

use crate::error::{Error, Result};
use crate::keys::{Fingerprint, Identity, PublicKey};

use super::open::Prelude;
use super::slots::{Stanza, encode_slot};

/// A new recipient slot for one file, ready to be written.
#[derive(Debug, Clone)]
pub struct Rewrap {
    /// Where in the file the slot goes: the start of the inactive slot.
    pub offset: u64,
    /// The whole slot, `recipient_slot_size` bytes.
    pub slot: Vec<u8>,
    pub generation: u64,
    /// Who can open the file after the rewrap.
    pub recipients: Vec<Fingerprint>,
}

impl Prelude {
    /// Plans a rewrap to `recipients`, keeping the stanzas of `keep` (recovery keys) and of
    /// kinds this version does not know. Needs an identity that opens the file now.
    pub fn plan_rewrap(
        &self,
        identities: &[&dyn Identity],
        recipients: &[PublicKey],
        keep: &[Fingerprint],
    ) -> Result<Rewrap> {
        let (active_index, slot) = self.active_slot()?;
        let h = &self.header;
        let (file_key, keys, _) =
            slot.unlock(identities, &h.salt, &h.key_commitment, &self.header_hash)?;
        let mut stanzas: Vec<Stanza> = Vec::new();
        for r in recipients {
            if !stanzas.iter().any(
                |s| matches!(s, Stanza::RsaOaep { recipient, .. } if *recipient == r.fingerprint()),
            ) {
                stanzas.push(Stanza::wrap(r, &file_key)?);
            }
        }
        for s in &slot.stanzas {
            let kept =
                match s {
                    Stanza::RsaOaep { recipient, .. } => keep.contains(recipient)
                        && !stanzas.iter().any(
                            |n| matches!(n, Stanza::RsaOaep { recipient: r, .. } if r == recipient),
                        ),
                    Stanza::Unknown { .. } => true,
                };
            if kept {
                stanzas.push(s.clone());
            }
        }
        let generation = slot
            .generation
            .checked_add(1)
            .ok_or_else(|| Error::malformed("slot generation exhausted"))?;
        let bytes = encode_slot(generation, &stanzas, h.slot_size, &keys, &self.header_hash)?;
        let inactive = 1 - active_index as u64;
        Ok(Rewrap {
            offset: self.slots_offset + inactive * u64::from(h.slot_size),
            slot: bytes,
            generation,
            recipients: stanzas
                .iter()
                .filter_map(|s| match s {
                    Stanza::RsaOaep { recipient, .. } => Some(*recipient),
                    Stanza::Unknown { .. } => None,
                })
                .collect(),
        })
    }
}

impl Rewrap {
    /// Writes the slot in place. The caller makes it durable (`File::sync_all`).
    pub fn apply(&self, file: &mut (impl Write + Seek)) -> io::Result<()> {
        file.seek(SeekFrom::Start(self.offset))?;
        file.write_all(&self.slot)?;
        file.flush()
    }
}
