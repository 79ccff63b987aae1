//! Verifying a file's origin and integrity with the creator's public key alone and, with a
//! private key, proving it decrypts — writing no plaintext anywhere.

use std::path::PathBuf;

use pgseal_core::Detected;
use pgseal_core::Fingerprint;
use pgseal_core::detect::DETECT_LEN;
use pgseal_core::keys::Identity;
use pgseal_core::legacy::hybrid;
use pgseal_core::v2::SlotState;
use pgseal_store::Action;

use crate::decrypt::record_signature_outcome;
use crate::error::{Error, Result};
use crate::files::Input;
use crate::keys;
use crate::open::{Held, Sealed, legacy_signer, recognise};
use crate::secret::{Cached, Secret};
use crate::session::Session;

/// Where the keys for a verification come from.
pub struct VerifyKeys<'a> {
    /// The creator's public key files; empty: the store's user keys.
    pub signers: &'a [PathBuf],
    /// A private key file to also prove the file decrypts.
    pub identity: Option<&'a std::path::Path>,
    /// Also prove the file decrypts, with the store's server keys.
    pub decrypt_check: bool,
    /// Unlocks the private key.
    pub server_password: &'a dyn Secret,
}

/// What a verification proved.
#[derive(Debug, Clone)]
pub enum Proof {
    /// A v2 file: both signatures hold and every sealed chunk is intact.
    V2 {
        /// The creator key whose signatures hold.
        signer: Fingerprint,
        /// Sealed chunks.
        chunks: u64,
        /// Bytes of sealed chunks.
        payload_bytes: u64,
        /// BLAKE3 over the sealed chunks, covered by the final signature.
        digest: [u8; 32],
        /// The key that also decrypted the whole file (into nothing), when one was at hand.
        decrypted_with: Option<Fingerprint>,
        /// The inactive slot when it is not empty (index and state): a wrapping a rewrap
        /// superseded and has not wiped, or damage.
        superseded: Option<(usize, SlotState)>,
        /// What the signed header says the file holds: the database it was dumped from
        /// ([`crate::globals::NAME`] for a cluster's globals) and the dump's format.
        source_database: Option<String>,
        /// The dump's format ([`crate::globals::FORMAT`] for a cluster's globals).
        dump_format: Option<String>,
        /// The signed header allows only hybrid (RSA + ML-KEM-768) wrappings, and the active
        /// slot holds only those (else the verification failed as a downgrade).
        post_quantum: bool,
    },
    /// A legacy hybrid file: its signature over the ciphertext holds.
    LegacyHybrid {
        /// The creator key whose signature holds.
        signer: Fingerprint,
        /// The creator's user id (from the unauthenticated header).
        user_id: u64,
        /// SHA-256 of the ciphertext and tag, which the signature covers.
        digest: [u8; 32],
        /// Whether the file was also decrypted (into nothing).
        decrypted: bool,
    },
}

/// A verification's outcome, with what was verified.
#[derive(Debug)]
pub struct Verification {
    /// The input's name.
    pub input: String,
    /// The format its first bytes show (`v2`, `legacy-hybrid`, `legacy-symmetric`,
    /// `plain-pg_dump`, `unknown`), when they could be read.
    pub format: Option<&'static str>,
    /// What was proven, or why not.
    pub result: Result<Proof>,
}

/// Verifies `input` (a path, `-` for standard input, or an `s3://` location the session
/// reaches), audited as `VERIFY`.
pub fn verify(session: &mut Session, input: &str, keys: &VerifyKeys<'_>) -> Verification {
    session.audit(Action::Verify).backup_file = Some(input.to_owned());
    catalogued(session, input);
    let mut format = None;
    let observer = session.observer().clone();
    let result = Input::open_in(&crate::repo::reach(session), input).and_then(|mut input| {
        let _shown = input.watch(observer.as_ref(), &input.name.clone());
        format = Some(format_name(&input.peek(DETECT_LEN)?));
        match recognise(&mut input)? {
            Sealed::V2(prelude, raw) => verify_v2(session, *prelude, &raw, &mut input, keys),
            Sealed::LegacyHybrid(header) => verify_legacy_hybrid(session, header, &mut input, keys),
            Sealed::LegacySymmetric => Err(Error::invalid(
                "legacy symmetric files carry no signature, so there is nothing to verify with \
                 a public key; decrypting checks their tag with the password",
            )),
        }
    });
    record_signature_outcome(session, result.as_ref().map(drop), true);
    Verification {
        input: if input == "-" {
            "standard input".to_owned()
        } else {
            input.to_owned()
        },
        format,
        result,
    }
}

fn format_name(prefix: &[u8]) -> &'static str {
    match pgseal_core::detect(prefix) {
        Detected::Pgseal { .. } => "v2",
        Detected::LegacyHybrid => "legacy-hybrid",
        Detected::LegacySymmetric => "legacy-symmetric",
        Detected::PlainDump => "plain-pg_dump",
        Detected::Unknown => "unknown",
    }
}

fn verify_v2(
    session: &mut Session,
    prelude: pgseal_core::v2::Prelude,
    raw: &[u8],
    input: &mut Input,
    keys: &VerifyKeys<'_>,
) -> Result<Proof> {
    let (signers, creator) = keys::v2_signers(session, keys.signers, &prelude.header.signer)?;
    if let Some(a) = session.audit_mut() {
        a.backup_creator_id =
            creator.or(prelude.header.metadata.creator_user_id.map(|id| id as i64));
    }
    let identity: Option<Held> = match (keys.identity, keys.decrypt_check) {
        (Some(path), _) => Some(Held::Key(keys::load_private(
            session.observer().as_ref(),
            path,
            keys.server_password,
        )?)),
        (None, true) => {
            let password = Cached::new(keys.server_password);
            crate::open::v2_held(session, &prelude, raw, &[], &password)?
                .into_iter()
                .next()
        }
        (None, false) => None,
    };
    let superseded = prelude
        .superseded_slot()
        .map(|(index, state)| (index, state.clone()));
    let source_database = prelude.header.metadata.source_database.clone();
    let dump_format = prelude.header.metadata.dump_format.clone();
    let post_quantum = prelude.header.hybrid;
    let report = prelude.verify(
        input,
        &signers,
        identity.as_ref().map(|k| k as &dyn Identity),
    )?;
    Ok(Proof::V2 {
        signer: report.signer,
        chunks: report.chunks,
        payload_bytes: report.payload_bytes,
        digest: report.ciphertext_digest,
        decrypted_with: report.decrypted_with,
        superseded,
        source_database,
        dump_format,
        post_quantum,
    })
}

fn verify_legacy_hybrid(
    session: &mut Session,
    header: hybrid::LegacyHeader,
    input: &mut Input,
    keys: &VerifyKeys<'_>,
) -> Result<Proof> {
    if let Some(a) = session.audit_mut() {
        a.backup_creator_id = i64::try_from(header.user_id).ok();
    }
    let signers = keys::legacy_signers(session, keys.signers, header.user_id)?;
    if signers.is_empty() {
        return Err(pgseal_core::Error::MissingLegacySigner(header.user_id).into());
    }
    let identities = match (keys.identity, keys.decrypt_check) {
        (Some(path), _) => vec![keys::load_private(
            session.observer().as_ref(),
            path,
            keys.server_password,
        )?],
        (None, true) => {
            let password = Cached::new(keys.server_password);
            keys::legacy_identities(session, &[], &password)?
        }
        (None, false) => Vec::new(),
    };
    let (digest, decrypted) = if identities.is_empty() {
        (hybrid::body_digest(input)?, false)
    } else {
        let key = identities
            .iter()
            .find(|k| k.unwrap_file_key(&header.wrapped_key).is_ok())
            .ok_or(pgseal_core::Error::SessionKeyUnwrap)?;
        let opened = hybrid::decrypt(&header, input, std::io::sink(), key)?;
        (opened.ciphertext_digest, true)
    };
    let signer = legacy_signer(&header, &signers, &digest)?.fingerprint();
    Ok(Proof::LegacyHybrid {
        signer,
        user_id: header.user_id,
        digest,
        decrypted,
    })
}

/// Records which catalogued backup `input` is, when the store knows it (see
/// [`crate::copy::record_backup`]). A store that cannot be read here is left for the
/// verification itself to report.
fn catalogued(session: &mut Session, input: &str) {
    let reach = crate::repo::reach(session);
    let Some(location) = crate::restore::catalogued(&reach, input) else {
        return;
    };
    if let Ok(Some((entry, _))) = crate::copy::alternatives(session, &location) {
        crate::copy::record_backup(session.audit_mut(), &entry);
    }
}
