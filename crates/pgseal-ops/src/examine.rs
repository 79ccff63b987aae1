//! What a backup's own bytes prove: its signed header, read from its prelude alone.
//!
//! The catalog (the store's backup rows) says which backups exist, where and when; whoever can
//! write the store can make it say anything. What only a backup's creator can make is the
//! file's signed header. So `audit verify` finds its anchors by reading every object in the
//! repository, catalogued or not, and `prune` deletes an object only if its signed header
//! matches the catalog entry. Both read a file's prelude only (header, header signature,
//! recipient slots), never its data.

use std::io::{BufReader, Cursor, Read};

use pgseal_core::detect::{DETECT_LEN, Detected, detect};
use pgseal_core::v2::{Header, Prelude, read_prelude};
use pgseal_core::{Fingerprint, PublicKey};
use pgseal_store::NewBackup;

use crate::error::Result;
use crate::session::Session;

/// What a file's first bytes and signed header establish.
pub enum Examined {
    /// A v2 file whose header signature verified with its creator's key from the store.
    Signed(Box<Prelude>),
    /// A legacy-format file: no signed header to check here, no anchor.
    Legacy(&'static str),
    /// Not a pgseal file at all.
    Foreign(&'static str),
    /// A pgseal file that pgseal cannot vouch for: damaged, of an unknown version, signed by a
    /// key the store does not know, or with a header signature that does not verify.
    Unvouched {
        /// Why not.
        reason: String,
        /// The anchor the header claims (unverified), to show what the file would prove.
        claimed_anchor: Option<u64>,
    },
}

/// Reads the prelude of `input` (never more) and checks its header signature with the key
/// `signer_key` finds for the fingerprint the header names. Errors only when looking the key
/// up fails; anything wrong with the file is an [`Examined`] answer.
pub fn examine(
    input: impl Read,
    signer_key: &mut dyn FnMut(&Fingerprint) -> Result<Option<PublicKey>>,
) -> Result<Examined> {
    let mut input = BufReader::new(input);
    let mut prefix = Vec::with_capacity(DETECT_LEN);
    if let Err(e) = (&mut input)
        .take(DETECT_LEN as u64)
        .read_to_end(&mut prefix)
    {
        return Ok(Examined::Unvouched {
            reason: format!("cannot be read: {e}"),
            claimed_anchor: None,
        });
    }
    match detect(&prefix) {
        Detected::Pgseal {
            version: pgseal_core::v2::VERSION,
        } => {}
        Detected::Pgseal { version } => {
            return Ok(Examined::Unvouched {
                reason: format!(
                    "a pgseal file of format version {version}, which this pgseal cannot check"
                ),
                claimed_anchor: None,
            });
        }
        d @ (Detected::LegacyHybrid | Detected::LegacySymmetric) => {
            return Ok(Examined::Legacy(d.name()));
        }
        d => return Ok(Examined::Foreign(d.name())),
    }
    let prelude = match read_prelude(&mut Cursor::new(prefix).chain(input)) {
        Ok(p) => p,
        Err(e) => {
            return Ok(Examined::Unvouched {
                reason: format!("a damaged pgseal file: {e}"),
                claimed_anchor: None,
            });
        }
    };
    let claimed_anchor = prelude.header.metadata.audit_anchor.map(|a| a.seq);
    let Some(key) = signer_key(&prelude.header.signer)? else {
        return Ok(Examined::Unvouched {
            reason: format!(
                "signed by {}, a key this store does not know (the store re-created or its keys \
                 deleted, or a file from elsewhere)",
                prelude.header.signer
            ),
            claimed_anchor,
        });
    };
    Ok(
        match prelude.verify_header_signature(std::slice::from_ref(&key)) {
            Ok(_) => Examined::Signed(Box::new(prelude)),
            Err(pgseal_core::Error::SignatureInvalid(_)) => Examined::Unvouched {
                reason: "its header signature does not verify: the file is forged or damaged"
                    .into(),
                claimed_anchor,
            },
            Err(e) => Examined::Unvouched {
                reason: format!("its header signature cannot be checked: {e}"),
                claimed_anchor,
            },
        },
    )
}

/// The creator's public key the store holds for `fingerprint` (retired keys included), to
/// check a header signature with ([`examine`]); `None` when the store knows no such key.
pub fn store_signer(session: &mut Session, fingerprint: &Fingerprint) -> Result<Option<PublicKey>> {
    match session.store()?.user_key(fingerprint)? {
        Some(k) => Ok(Some(PublicKey::from_pem(&k.public_key_pem)?)),
        None => Ok(None),
    }
}

/// Where a signed header disagrees with the catalog entry that names its file, if it does: the
/// signer, the creator, the time and the database must all be the ones recorded.
pub fn header_mismatch(header: &Header, entry: &NewBackup) -> Option<String> {
    let m = &header.metadata;
    if header.signer != entry.creator_key {
        return Some(format!(
            "the file is signed by {}, the catalog says {}",
            header.signer, entry.creator_key
        ));
    }
    let header_creator = m.creator_user_id.and_then(|id| i64::try_from(id).ok());
    if header_creator != entry.creator_user_id {
        let show = |id: Option<i64>| id.map_or_else(|| "none".to_owned(), |id| id.to_string());
        return Some(format!(
            "the file's creator is user id {}, the catalog says {}",
            show(header_creator),
            show(entry.creator_user_id)
        ));
    }
    if i64::try_from(m.created_at_ms).ok() != Some(entry.created_at.millis()) {
        let signed = i64::try_from(m.created_at_ms)
            .map(|ms| pgseal_core::time::Timestamp(ms).rfc3339())
            .unwrap_or_else(|_| m.created_at_ms.to_string());
        return Some(format!(
            "the file was made at {signed}, the catalog says {}",
            entry.created_at.rfc3339()
        ));
    }
    if m.source_database.as_deref() != Some(entry.database.as_str()) {
        return Some(format!(
            "the file is a backup of {:?}, the catalog says {:?}",
            m.source_database.as_deref().unwrap_or(""),
            entry.database
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgseal_core::time::Timestamp;
    use pgseal_core::v2::{AuditAnchor, Compression, Metadata};

    fn header(meta: Metadata, signer: Fingerprint) -> Header {
        Header {
            metadata: meta,
            chunk_size: 65536,
            salt: [0; 32],
            key_commitment: [0; 32],
            compression: Compression::Zstd,
            slot_size: 1024,
            signer,
            signature_len: 256,
            hybrid: false,
            unknown: Vec::new(),
        }
    }

    #[test]
    fn a_signed_header_must_match_its_catalog_entry_in_signer_creator_time_and_database() {
        let signer = Fingerprint::from_bytes([7; 32]);
        let meta = Metadata {
            created_at_ms: 1_767_225_600_123,
            creator_user_id: Some(3),
            source_database: Some("shop".into()),
            audit_anchor: Some(AuditAnchor {
                seq: 4,
                entry_hash: [1; 32],
            }),
            ..Metadata::default()
        };
        let entry = NewBackup {
            database: "shop".into(),
            location: pgseal_store::Location::parse("file://h/b/shop.pgseal").unwrap(),
            size_bytes: 1,
            created_at: Timestamp(1_767_225_600_123),
            creator_user_id: Some(3),
            creator_key: signer,
            server_keys: Vec::new(),
            format_version: 2,
            ciphertext_blake3: None,
        };
        let h = header(meta.clone(), signer);
        assert_eq!(header_mismatch(&h, &entry), None);

        let older = NewBackup {
            created_at: Timestamp(1_700_000_000_000),
            ..entry.clone()
        };
        assert!(header_mismatch(&h, &older).unwrap().contains("made at"));
        let other_db = NewBackup {
            database: "payroll".into(),
            ..entry.clone()
        };
        assert!(header_mismatch(&h, &other_db).unwrap().contains("payroll"));
        let other_user = NewBackup {
            creator_user_id: Some(4),
            ..entry.clone()
        };
        assert!(
            header_mismatch(&h, &other_user)
                .unwrap()
                .contains("user id")
        );
        let other_key = header(meta, Fingerprint::from_bytes([8; 32]));
        assert!(
            header_mismatch(&other_key, &entry)
                .unwrap()
                .contains("signed by")
        );
    }
}
