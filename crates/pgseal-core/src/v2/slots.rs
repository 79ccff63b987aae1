//! The two recipient slots (FORMAT.md §6): wrapped copies of the file key, addressed by
//! fingerprint, outside the signatures so that rewrapping needs no creator, and doubled so that
//! rewrapping in place survives a crash at any instant.

use crate::error::{Error, Result};
use crate::keys::{Fingerprint, Identity, PublicKey};
use crate::secret::FileKey;

use super::stream::FileKeys;

/// Recipients per slot, at most.
pub const MAX_RECIPIENTS: usize = 16;
/// The slot size pgseal writes unless the recipients need more.
pub const DEFAULT_SLOT_SIZE: u32 = 4096;

const KIND_RSA_OAEP: u16 = 0x0001;
const FIXED_PART: usize = 10; // generation + count
const TRAILER: usize = 64; // MAC + checksum

/// One wrapped copy of the file key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stanza {
    /// RSA-OAEP-SHA256 to the key with this fingerprint.
    RsaOaep {
        recipient: Fingerprint,
        wrapped: Vec<u8>,
    },
    /// A kind this version does not know; skipped.
    Unknown { kind: u16, body: Vec<u8> },
}

impl Stanza {
    /// Wraps `file_key` to `recipient`.
    pub fn wrap(recipient: &PublicKey, file_key: &FileKey) -> Result<Self> {
        Ok(Stanza::RsaOaep {
            recipient: recipient.fingerprint(),
            wrapped: recipient.wrap_file_key(file_key)?,
        })
    }

    fn encoded_len(&self) -> usize {
        4 + match self {
            Stanza::RsaOaep { wrapped, .. } => 32 + wrapped.len(),
            Stanza::Unknown { body, .. } => body.len(),
        }
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        let (kind, parts): (u16, [&[u8]; 2]) = match self {
            Stanza::RsaOaep { recipient, wrapped } => {
                (KIND_RSA_OAEP, [recipient.as_bytes(), wrapped])
            }
            Stanza::Unknown { kind, body } => (*kind, [body, &[]]),
        };
        let len = parts[0].len() + parts[1].len();
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(parts[0]);
        out.extend_from_slice(parts[1]);
    }
}

/// A parsed, structurally valid slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub generation: u64,
    pub stanzas: Vec<Stanza>,
    mac: [u8; 32],
    /// The bytes the MAC covers: `slot[0 .. S-64]`.
    body: Vec<u8>,
}

/// What a slot holds on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState {
    /// All zero: never written, or wiped after a rewrap superseded it.
    Empty,
    Valid(Slot),
    /// Not empty and not valid: a torn write or damage.
    Damaged(Damage),
}

impl SlotState {
    /// Whether the slot may still hold a wrapping of the file key to `key`: a valid slot that
    /// names it, or a damaged one whose bytes still contain its fingerprint (a torn or damaged
    /// slot can keep an intact stanza). Empty slots hold nothing.
    pub fn mentions(&self, key: &Fingerprint) -> bool {
        match self {
            SlotState::Empty => false,
            SlotState::Valid(slot) => slot.recipients().contains(key),
            SlotState::Damaged(damage) => damage
                .raw
                .windows(key.as_bytes().len())
                .any(|w| w == key.as_bytes()),
        }
    }
}

/// A slot that is neither empty nor valid, with its bytes: only a wipe makes it hold nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct Damage {
    /// Why the slot is not valid, for people.
    pub reason: String,
    raw: Vec<u8>,
}

impl std::fmt::Debug for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Damage")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl Slot {
    /// The fingerprints this slot is addressed to.
    pub fn recipients(&self) -> Vec<Fingerprint> {
        self.stanzas
            .iter()
            .filter_map(|s| match s {
                Stanza::RsaOaep { recipient, .. } => Some(*recipient),
                Stanza::Unknown { .. } => None,
            })
            .collect()
    }

    /// Unwraps the file key with the first identity a stanza names, checks it against the
    /// header's commitment and this slot's MAC, and returns it with its derived keys.
    pub(crate) fn unlock(
        &self,
        identities: &[&dyn Identity],
        salt: &[u8; 32],
        commitment: &[u8; 32],
        header_hash: &[u8; 32],
    ) -> Result<(FileKey, FileKeys, Fingerprint)> {
        for stanza in &self.stanzas {
            let Stanza::RsaOaep { recipient, wrapped } = stanza else {
                continue;
            };
            let Some(identity) = identities.iter().find(|i| i.fingerprint() == *recipient) else {
                continue;
            };
            let file_key = identity.unwrap_file_key(wrapped)?;
            let keys = FileKeys::derive(&file_key, salt)?;
            if !keys.commitment_matches(commitment) {
                return Err(Error::KeyCommitmentMismatch);
            }
            let mac = keys.slot_mac(header_hash, &self.body);
            if aws_lc_rs::constant_time::verify_slices_are_equal(&mac, &self.mac).is_err() {
                return Err(Error::RecipientMacMismatch);
            }
            return Ok((file_key, keys, *recipient));
        }
        Err(Error::NoMatchingIdentity(self.recipients()))
    }
}

/// The smallest slot size (a multiple of 64, at least [`DEFAULT_SLOT_SIZE`]) that holds `stanzas`.
pub fn slot_size_for(stanzas: &[Stanza]) -> Result<u32> {
    if stanzas.is_empty() || stanzas.len() > MAX_RECIPIENTS {
        return Err(Error::InvalidParameter(format!(
            "a file needs 1 to {MAX_RECIPIENTS} recipients, got {}",
            stanzas.len()
        )));
    }
    let size = needed_len(stanzas).div_ceil(64) * 64;
    let size = size.max(DEFAULT_SLOT_SIZE as usize);
    u32::try_from(size)
        .ok()
        .filter(|s| *s <= 65_536)
        .ok_or_else(|| Error::InvalidParameter("recipients do not fit in a 64 KiB slot".into()))
}

fn needed_len(stanzas: &[Stanza]) -> usize {
    FIXED_PART + stanzas.iter().map(Stanza::encoded_len).sum::<usize>() + TRAILER
}

/// Encodes a full slot of `slot_size` bytes.
pub(crate) fn encode_slot(
    generation: u64,
    stanzas: &[Stanza],
    slot_size: u32,
    keys: &FileKeys,
    header_hash: &[u8; 32],
) -> Result<Vec<u8>> {
    let size = slot_size as usize;
    if stanzas.is_empty() || stanzas.len() > MAX_RECIPIENTS {
        return Err(Error::InvalidParameter(format!(
            "a slot holds 1 to {MAX_RECIPIENTS} recipients, got {}",
            stanzas.len()
        )));
    }
    if needed_len(stanzas) > size {
        return Err(Error::InvalidParameter(format!(
            "the recipients need {} bytes but the file's slots hold {size}",
            needed_len(stanzas)
        )));
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&generation.to_be_bytes());
    out.extend_from_slice(&(stanzas.len() as u16).to_be_bytes());
    for stanza in stanzas {
        stanza.encode_into(&mut out);
    }
    out.resize(size - TRAILER, 0);
    let mac = keys.slot_mac(header_hash, &out);
    out.extend_from_slice(&mac);
    let checksum = sha256(&out);
    out.extend_from_slice(&checksum);
    Ok(out)
}

/// Parses one slot's raw bytes.
pub fn parse_slot(raw: &[u8]) -> SlotState {
    if raw.iter().all(|b| *b == 0) {
        return SlotState::Empty;
    }
    match parse_nonempty(raw) {
        Ok(slot) => SlotState::Valid(slot),
        Err(reason) => SlotState::Damaged(Damage {
            reason,
            raw: raw.to_vec(),
        }),
    }
}

fn parse_nonempty(raw: &[u8]) -> std::result::Result<Slot, String> {
    let size = raw.len();
    if size < FIXED_PART + TRAILER {
        return Err("slot too small".into());
    }
    let (covered, checksum) = raw.split_at(size - 32);
    if sha256(covered) != checksum {
        return Err("checksum mismatch (torn write or damage)".into());
    }
    let (body, mac) = covered.split_at(size - TRAILER);
    let generation = u64::from_be_bytes(body[..8].try_into().expect("slice of 8 bytes"));
    if generation == 0 {
        return Err("generation 0 in a non-empty slot".into());
    }
    let count = u16::from_be_bytes([body[8], body[9]]) as usize;
    if count == 0 || count > MAX_RECIPIENTS {
        return Err(format!("{count} stanzas (allowed: 1 to {MAX_RECIPIENTS})"));
    }
    let mut rest = &body[FIXED_PART..];
    let mut stanzas = Vec::with_capacity(count);
    for _ in 0..count {
        if rest.len() < 4 {
            return Err("stanza header runs past the slot".into());
        }
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let stanza_body = rest.get(4..4 + len).ok_or("stanza runs past the slot")?;
        stanzas.push(match kind {
            KIND_RSA_OAEP => {
                if len <= 32 {
                    return Err("RSA-OAEP stanza too short".into());
                }
                Stanza::RsaOaep {
                    recipient: Fingerprint::from_bytes(
                        stanza_body[..32].try_into().expect("slice of 32 bytes"),
                    ),
                    wrapped: stanza_body[32..].to_vec(),
                }
            }
            kind => Stanza::Unknown {
                kind,
                body: stanza_body.to_vec(),
            },
        });
        rest = &rest[4 + len..];
    }
    if rest.iter().any(|b| *b != 0) {
        return Err("non-zero bytes after the stanzas".into());
    }
    Ok(Slot {
        generation,
        stanzas,
        mac: mac.try_into().expect("slice of 32 bytes"),
        body: body.to_vec(),
    })
}

/// Which of the two slots is active (FORMAT.md §6).
pub fn active_slot(a: &SlotState, b: &SlotState) -> Result<(usize, Slot)> {
    match (a, b) {
        (SlotState::Valid(x), SlotState::Valid(y)) if x.generation == y.generation => Err(
            Error::malformed("both recipient slots claim the same generation"),
        ),
        (SlotState::Valid(x), SlotState::Valid(y)) => Ok(if x.generation > y.generation {
            (0, x.clone())
        } else {
            (1, y.clone())
        }),
        (SlotState::Valid(x), _) => Ok((0, x.clone())),
        (_, SlotState::Valid(y)) => Ok((1, y.clone())),
        (a, b) => Err(Error::malformed(format!(
            "no valid recipient slot (A: {}, B: {}): no key can open this file; its data may be \
             intact (the slots are outside the signatures), so a copy made before the damage opens",
            describe(a),
            describe(b)
        ))),
    }
}

fn describe(s: &SlotState) -> String {
    match s {
        SlotState::Empty => "empty".into(),
        SlotState::Valid(_) => "valid".into(),
        SlotState::Damaged(damage) => damage.reason.clone(),
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    d.as_ref().try_into().expect("SHA-256 output is 32 bytes")
}
