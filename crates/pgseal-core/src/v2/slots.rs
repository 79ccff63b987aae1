//! The two recipient slots (FORMAT.md §6): wrapped copies of the file key, addressed by
//! fingerprint, outside the signatures so that rewrapping needs no creator, and doubled so that
//! rewrapping in place survives a crash at any instant.

use crate::byte_reader::ByteReader;
use crate::error::{Error, FormatError, Result};
use crate::hash::{Sha256, sha256};
use crate::keys::{Fingerprint, Identity, PublicKey};
use crate::pq::{self, CIPHERTEXT_LEN, HybridWrap, WRAP_LEN};
use crate::secret::FileKey;

use super::stream::FileKeys;

/// Recipients per slot, at most.
pub const MAX_RECIPIENTS: usize = 16;
/// The slot size pgseal writes unless the recipients need more.
pub const DEFAULT_SLOT_SIZE: u32 = 4096;

const KIND_RSA_OAEP: u16 = 0x0001;
const KIND_HYBRID: u16 = 0x0002;
/// A hybrid body's bytes besides `C_rsa`: two fingerprints, `C_pq` and `W` (FORMAT.md §6a).
const HYBRID_FIXED: usize = 32 + 32 + CIPHERTEXT_LEN + WRAP_LEN;
const FIXED_PART: usize = 10; // generation + count
const TRAILER: usize = 64; // MAC + checksum

/// One wrapped copy of the file key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stanza {
    /// RSA-OAEP-SHA256 to the key with this fingerprint.
    RsaOaep {
        /// The fingerprint of the key the file key is wrapped to.
        recipient: Fingerprint,
        /// The RSA-OAEP ciphertext, as long as the recipient's modulus.
        wrapped: Vec<u8>,
    },
    /// RSA-OAEP + ML-KEM-768 to the hybrid key with these two fingerprints (FORMAT.md §6a).
    Hybrid {
        /// The fingerprint of the recipient's RSA key.
        recipient: Fingerprint,
        /// The fingerprint of the recipient's ML-KEM-768 key.
        pq_recipient: Fingerprint,
        /// The two ciphertexts and the wrapped file key.
        wrap: HybridWrap,
    },
    /// A kind this version does not know; skipped, and kept by a rewrap.
    Unknown {
        /// The stanza kind.
        kind: u16,
        /// The stanza's bytes after its kind and length.
        body: Vec<u8>,
    },
}

impl Stanza {
    /// Wraps `file_key` to `recipient`: a hybrid stanza when the key has an ML-KEM-768 half,
    /// else an RSA-OAEP one.
    pub fn wrap(recipient: &PublicKey, file_key: &FileKey) -> Result<Self> {
        Ok(match recipient.pq() {
            Some(pq) => Stanza::Hybrid {
                recipient: recipient.fingerprint(),
                pq_recipient: pq.fingerprint(),
                wrap: pq::hybrid_wrap(
                    recipient.fingerprint(),
                    |secret| recipient.wrap_file_key(secret),
                    pq,
                    file_key,
                )?,
            },
            None => Stanza::RsaOaep {
                recipient: recipient.fingerprint(),
                wrapped: recipient.wrap_file_key(file_key)?,
            },
        })
    }

    /// The (RSA) fingerprint of the key this stanza is addressed to; `None` for unknown kinds.
    pub fn recipient(&self) -> Option<Fingerprint> {
        match self {
            Stanza::RsaOaep { recipient, .. } | Stanza::Hybrid { recipient, .. } => {
                Some(*recipient)
            }
            Stanza::Unknown { .. } => None,
        }
    }

    /// Recovers the file key with `identity`, which the stanza names: RSA-OAEP, or both halves of
    /// a hybrid key and the combiner (FORMAT.md §6a). The commitment and the slot MAC are the
    /// caller's to check.
    pub fn unwrap_with<I: Identity + ?Sized>(&self, identity: &I) -> Result<FileKey> {
        match self {
            Stanza::RsaOaep { wrapped, .. } => identity.unwrap_file_key(wrapped),
            Stanza::Hybrid {
                recipient,
                pq_recipient,
                wrap,
            } => {
                let found = identity.pq_fingerprint();
                if found != Some(*pq_recipient) {
                    return Err(Error::PqHalf {
                        key: *recipient,
                        wanted: *pq_recipient,
                        found,
                    });
                }
                let rsa_secret = identity.unwrap_file_key(&wrap.rsa_ciphertext)?;
                let pq_secret = identity.decapsulate(&wrap.pq_ciphertext)?;
                pq::hybrid_unwrap(wrap, (recipient, pq_recipient), &rsa_secret, &pq_secret)
            }
            Stanza::Unknown { kind, .. } => Err(Error::InvalidParameter(format!(
                "stanza kind 0x{kind:04x} is not one this pgseal can unwrap"
            ))),
        }
    }

    /// The stanza's kind and its body, in the order the format lays it out.
    fn parts(&self) -> (u16, [&[u8]; 5]) {
        match self {
            Stanza::RsaOaep { recipient, wrapped } => (
                KIND_RSA_OAEP,
                [recipient.as_bytes(), wrapped, &[], &[], &[]],
            ),
            Stanza::Hybrid {
                recipient,
                pq_recipient,
                wrap,
            } => (
                KIND_HYBRID,
                [
                    recipient.as_bytes(),
                    pq_recipient.as_bytes(),
                    &wrap.rsa_ciphertext,
                    &wrap.pq_ciphertext,
                    &wrap.wrapped_key,
                ],
            ),
            Stanza::Unknown { kind, body } => (*kind, [body, &[], &[], &[], &[]]),
        }
    }

    fn encoded_len(&self) -> usize {
        4 + self.parts().1.iter().map(|p| p.len()).sum::<usize>()
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        let (kind, parts) = self.parts();
        let len: usize = parts.iter().map(|p| p.len()).sum();
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&(len as u16).to_be_bytes());
        for part in parts {
            out.extend_from_slice(part);
        }
    }
}

/// A parsed, structurally valid slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Counts rewraps from 1; the valid slot with the higher generation is the active one.
    pub generation: u64,
    /// The wrapped copies of the file key, 1 to [`MAX_RECIPIENTS`].
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
    /// A complete slot whose checksum holds (its MAC is checked when a key unlocks it).
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
    /// The (RSA) fingerprints this slot is addressed to.
    pub fn recipients(&self) -> Vec<Fingerprint> {
        self.stanzas.iter().filter_map(Stanza::recipient).collect()
    }

    /// Whether any stanza is an RSA-only wrapping: in a file whose header says hybrid, a
    /// downgrade (FORMAT.md §6a).
    pub fn has_rsa_only(&self) -> bool {
        self.stanzas
            .iter()
            .any(|s| matches!(s, Stanza::RsaOaep { .. }))
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
            let Some(recipient) = stanza.recipient() else {
                continue;
            };
            let Some(identity) = identities.iter().find(|i| i.fingerprint() == recipient) else {
                continue;
            };
            let file_key = identity.unwrap_stanza(stanza)?;
            let keys = FileKeys::derive(&file_key, salt)?;
            if !keys.commitment_matches(commitment) {
                return Err(Error::KeyCommitmentMismatch);
            }
            let mac = keys.slot_mac(header_hash, &self.body);
            if aws_lc_rs::constant_time::verify_slices_are_equal(&mac, &self.mac).is_err() {
                return Err(Error::RecipientMacMismatch);
            }
            return Ok((file_key, keys, recipient));
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
        Err(damage) => SlotState::Damaged(Damage {
            reason: damage.to_string(),
            raw: raw.to_vec(),
        }),
    }
}

/// Why a slot that is not all zeros is not valid either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum SlotDamage {
    #[error("slot too small")]
    TooSmall,
    #[error("checksum mismatch (torn write or damage)")]
    Checksum,
    #[error("generation 0 in a non-empty slot")]
    GenerationZero,
    #[error("{0} stanzas (allowed: 1 to {MAX_RECIPIENTS})")]
    StanzaCount(u16),
    #[error("stanza header runs past the slot")]
    StanzaHeaderPastEnd,
    #[error("stanza runs past the slot")]
    StanzaPastEnd,
    #[error("RSA-OAEP stanza too short")]
    RsaOaepTooShort,
    #[error("hybrid stanza too short")]
    HybridTooShort,
    #[error("non-zero bytes after the stanzas")]
    TrailingBytes,
}

/// `body (S − 64) || mac (32) || checksum (32)`, the body being `generation (u64 BE) ||
/// count (u16 BE) || count × stanza || zero padding`.
fn parse_nonempty(raw: &[u8]) -> std::result::Result<Slot, SlotDamage> {
    let mut r = ByteReader::new(raw);
    let body_len = raw
        .len()
        .checked_sub(TRAILER)
        .filter(|len| *len >= FIXED_PART)
        .ok_or(SlotDamage::TooSmall)?;
    let (Some(body), Some(mac), Some(checksum)) = (r.take(body_len), r.array(), r.array()) else {
        return Err(SlotDamage::TooSmall);
    };
    let mut covered = Sha256::new();
    covered.update(body);
    covered.update(&mac);
    if covered.finish() != checksum {
        return Err(SlotDamage::Checksum);
    }

    let mut b = ByteReader::new(body);
    let (Some(generation), Some(count)) = (b.u64_be(), b.u16_be()) else {
        return Err(SlotDamage::TooSmall);
    };
    if generation == 0 {
        return Err(SlotDamage::GenerationZero);
    }
    if count == 0 || usize::from(count) > MAX_RECIPIENTS {
        return Err(SlotDamage::StanzaCount(count));
    }
    let mut stanzas = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let (Some(kind), Some(len)) = (b.u16_be(), b.u16_be()) else {
            return Err(SlotDamage::StanzaHeaderPastEnd);
        };
        let stanza_body = b.take(usize::from(len)).ok_or(SlotDamage::StanzaPastEnd)?;
        stanzas.push(match kind {
            KIND_RSA_OAEP => {
                let mut s = ByteReader::new(stanza_body);
                let recipient = s.array().ok_or(SlotDamage::RsaOaepTooShort)?;
                if s.is_empty() {
                    return Err(SlotDamage::RsaOaepTooShort);
                }
                Stanza::RsaOaep {
                    recipient: Fingerprint::from_bytes(recipient),
                    wrapped: s.rest().to_vec(),
                }
            }
            KIND_HYBRID => {
                let mut s = ByteReader::new(stanza_body);
                let rsa_len = stanza_body
                    .len()
                    .checked_sub(HYBRID_FIXED)
                    .filter(|len| *len > 0)
                    .ok_or(SlotDamage::HybridTooShort)?;
                // The length was checked above, so every take succeeds.
                match (
                    s.array(),
                    s.array(),
                    s.take(rsa_len),
                    s.take(CIPHERTEXT_LEN),
                    s.array(),
                ) {
                    (Some(recipient), Some(pq_recipient), Some(rsa), Some(pq), Some(wrapped)) => {
                        Stanza::Hybrid {
                            recipient: Fingerprint::from_bytes(recipient),
                            pq_recipient: Fingerprint::from_bytes(pq_recipient),
                            wrap: HybridWrap {
                                rsa_ciphertext: rsa.to_vec(),
                                pq_ciphertext: pq.to_vec(),
                                wrapped_key: wrapped,
                            },
                        }
                    }
                    _ => return Err(SlotDamage::HybridTooShort),
                }
            }
            kind => Stanza::Unknown {
                kind,
                body: stanza_body.to_vec(),
            },
        });
    }
    if b.rest().iter().any(|byte| *byte != 0) {
        return Err(SlotDamage::TrailingBytes);
    }
    Ok(Slot {
        generation,
        stanzas,
        mac,
        body: body.to_vec(),
    })
}

/// Which of the two slots is active (FORMAT.md §6).
pub fn active_slot(a: &SlotState, b: &SlotState) -> Result<(usize, Slot)> {
    match (a, b) {
        // The same slot written twice (a copy, or a wipe torn where the bytes it had not yet
        // zeroed made a damaged copy whole again): one slot, nothing ambiguous.
        (SlotState::Valid(x), SlotState::Valid(y)) if x == y => Ok((0, x.clone())),
        (SlotState::Valid(x), SlotState::Valid(y)) if x.generation == y.generation => {
            Err(FormatError::SameGeneration.into())
        }
        (SlotState::Valid(x), SlotState::Valid(y)) => Ok(if x.generation > y.generation {
            (0, x.clone())
        } else {
            (1, y.clone())
        }),
        (SlotState::Valid(x), _) => Ok((0, x.clone())),
        (_, SlotState::Valid(y)) => Ok((1, y.clone())),
        (a, b) => Err(FormatError::NoValidSlot {
            a: describe(a),
            b: describe(b),
        }
        .into()),
    }
}

fn describe(s: &SlotState) -> String {
    match s {
        SlotState::Empty => "empty".into(),
        SlotState::Valid(_) => "valid".into(),
        SlotState::Damaged(damage) => damage.reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: usize = 512;

    /// A slot of `SIZE` bytes around `body` (padded with zeros), any MAC, a correct checksum.
    fn slot(body: &[u8]) -> Vec<u8> {
        let mut out = body.to_vec();
        out.resize(SIZE - TRAILER, 0);
        out.extend_from_slice(&[0x5A; 32]);
        let checksum = sha256(&out);
        out.extend_from_slice(&checksum);
        out
    }

    fn body(generation: u64, stanzas: &[(u16, &[u8])]) -> Vec<u8> {
        let mut out = generation.to_be_bytes().to_vec();
        out.extend_from_slice(&(stanzas.len() as u16).to_be_bytes());
        for (kind, bytes) in stanzas {
            out.extend_from_slice(&kind.to_be_bytes());
            out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        out
    }

    fn damage(raw: &[u8]) -> String {
        match parse_slot(raw) {
            SlotState::Damaged(d) => d.reason,
            other => panic!("expected damage, got {other:?}"),
        }
    }

    #[test]
    fn a_well_formed_slot_parses_field_by_field() {
        let wrapped = [7u8; 256];
        let rsa: Vec<u8> = [[1u8; 32].as_slice(), &wrapped].concat();
        let raw = slot(&body(3, &[(KIND_RSA_OAEP, &rsa), (0x7777, b"future")]));
        let SlotState::Valid(s) = parse_slot(&raw) else {
            panic!("not valid")
        };
        assert_eq!(s.generation, 3);
        assert_eq!(
            s.stanzas,
            vec![
                Stanza::RsaOaep {
                    recipient: Fingerprint::from_bytes([1; 32]),
                    wrapped: wrapped.to_vec(),
                },
                Stanza::Unknown {
                    kind: 0x7777,
                    body: b"future".to_vec(),
                },
            ]
        );
        assert_eq!(s.mac, [0x5A; 32]);
        assert_eq!(s.body, raw[..SIZE - TRAILER]);
        assert_eq!(parse_slot(&[0; SIZE]), SlotState::Empty);
    }

    #[test]
    fn each_kind_of_damage_is_named() {
        let rsa: Vec<u8> = [[1u8; 32].as_slice(), &[7; 256]].concat();
        let good = body(1, &[(KIND_RSA_OAEP, &rsa)]);

        assert_eq!(damage(&[1; FIXED_PART + TRAILER - 1]), "slot too small");
        let mut torn = slot(&good);
        torn[100] ^= 1;
        assert_eq!(damage(&torn), "checksum mismatch (torn write or damage)");
        assert_eq!(
            damage(&slot(&body(0, &[(KIND_RSA_OAEP, &rsa)]))),
            "generation 0 in a non-empty slot"
        );
        assert_eq!(damage(&slot(&body(1, &[]))), "0 stanzas (allowed: 1 to 16)");
        let mut many = body(1, &[(KIND_RSA_OAEP, &rsa)]);
        many[8..10].copy_from_slice(&17u16.to_be_bytes());
        assert_eq!(damage(&slot(&many)), "17 stanzas (allowed: 1 to 16)");
        assert_eq!(
            damage(&slot(&body(1, &[(KIND_RSA_OAEP, &[1; 32])]))),
            "RSA-OAEP stanza too short"
        );
        assert_eq!(
            damage(&slot(&body(1, &[(KIND_RSA_OAEP, &[1; 31])]))),
            "RSA-OAEP stanza too short"
        );
        // A stanza length that reaches past the body, into the MAC.
        let mut long = good.clone();
        long[12..14].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(damage(&slot(&long)), "stanza runs past the slot");
        // A count that promises a second stanza whose header would start in the MAC.
        let filler = vec![9u8; SIZE - TRAILER - FIXED_PART - 4 - 2];
        let mut cut = body(1, &[(0x7777, &filler)]);
        cut[8..10].copy_from_slice(&2u16.to_be_bytes());
        assert_eq!(damage(&slot(&cut)), "stanza header runs past the slot");
        let mut trailing = good.clone();
        trailing.push(1);
        assert_eq!(damage(&slot(&trailing)), "non-zero bytes after the stanzas");
    }
}
