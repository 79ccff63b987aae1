//! The one place pgseal tells its formats apart and opens them.
//!
//! [`recognise`] reads a file's first bytes and its header: a v2 file, a legacy hybrid file or
//! a legacy symmetric file (anything else is refused, saying what it is). [`prepare`] then finds
//! every key the file needs — from files the caller named or from the store — and checks all that
//! can be checked before any data is read: the creator's header signature (v2), the file key
//! (v2: unwrap, commitment and slot MAC; legacy hybrid: the unwrap). The [`Opener`] it returns
//! opens the data, releasing plaintext only as it verifies (v2) or only after the whole message
//! has (the legacy formats are one GCM message each: callers verify in a first pass).
//!
//! decrypt, verify, restore and rewrap all go through here.

use std::io::{Read, Write};
use std::path::PathBuf;

use pgseal_core::detect::DETECT_LEN;
use pgseal_core::keys::Identity;
use pgseal_core::legacy::{hybrid, symmetric};
use pgseal_core::v2::{self, Prelude, SignerCheck};
use pgseal_core::{Detected, Fingerprint, Password, PrivateKey, PublicKey, detect};

use crate::error::{Error, Result};
use crate::files::Input;
use crate::keys;
use crate::secret::{Cached, Secret};
use crate::session::Session;

/// A sealed file whose format is known and whose header has been read (not yet trusted).
#[derive(Debug)]
pub enum Sealed {
    /// The v2 format: everything before the chunks, and the bytes it was read from (what a
    /// key-custody service is sent).
    V2(Box<Prelude>, Vec<u8>),
    /// The legacy `PGBACKUP_HYBRID_V1` format: its (unauthenticated) header.
    LegacyHybrid(hybrid::LegacyHeader),
    /// The legacy `PGBACKUP_AES256_V1` format: its header is read with the data.
    LegacySymmetric,
}

/// The formats, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// pgseal's own.
    V2,
    /// The legacy system's hybrid format.
    LegacyHybrid,
    /// The legacy system's password format.
    LegacySymmetric,
}

impl Format {
    /// The name used in reports: `v2`, `legacy-hybrid`, `legacy-symmetric`.
    pub fn name(self) -> &'static str {
        match self {
            Format::V2 => "v2",
            Format::LegacyHybrid => "legacy-hybrid",
            Format::LegacySymmetric => "legacy-symmetric",
        }
    }
}

impl Sealed {
    /// Which format.
    pub fn format(&self) -> Format {
        match self {
            Sealed::V2(..) => Format::V2,
            Sealed::LegacyHybrid(_) => Format::LegacyHybrid,
            Sealed::LegacySymmetric => Format::LegacySymmetric,
        }
    }

    /// The creator's user id, as the header says it (unverified).
    pub fn creator_id(&self) -> Option<i64> {
        match self {
            Sealed::V2(p, _) => p.header.metadata.creator_user_id.map(|id| id as i64),
            Sealed::LegacyHybrid(h) => i64::try_from(h.user_id).ok(),
            Sealed::LegacySymmetric => None,
        }
    }
}

/// The format a file's first bytes show, without reading on (`None`: not a file pgseal opens).
pub fn detect_format(prefix: &[u8]) -> std::result::Result<Format, Detected> {
    match detect(prefix) {
        Detected::Pgseal {
            version: v2::VERSION,
        } => Ok(Format::V2),
        Detected::LegacyHybrid => Ok(Format::LegacyHybrid),
        Detected::LegacySymmetric => Ok(Format::LegacySymmetric),
        other => Err(other),
    }
}

/// Recognises `input`'s format and reads its header. After it, `input` is where the data to
/// open starts (for a legacy symmetric file: the start, since its header is read with it).
pub fn recognise(input: &mut Input) -> Result<Sealed> {
    let prefix = input.peek(DETECT_LEN)?;
    match detect_format(&prefix) {
        Ok(Format::V2) => {
            let mut raw = Vec::new();
            let prelude = v2::read_prelude(&mut crate::files::Tee {
                reader: &mut *input,
                copy: &mut raw,
            })?;
            Ok(Sealed::V2(Box::new(prelude), raw))
        }
        Ok(Format::LegacyHybrid) => {
            let len = input.len;
            Ok(Sealed::LegacyHybrid(hybrid::read_header(input, len)?))
        }
        Ok(Format::LegacySymmetric) => Ok(Sealed::LegacySymmetric),
        Err(Detected::Pgseal { version }) => {
            Err(pgseal_core::Error::UnsupportedVersion(version).into())
        }
        Err(Detected::PlainDump) => {
            Err(pgseal_core::Error::NotEncrypted("it is a plain pg_dump archive").into())
        }
        Err(_) => Err(Error::invalid(format!(
            "{} is neither a pgseal file nor a legacy backup (unrecognised header)",
            input.name
        ))),
    }
}

/// Where the keys to open a file come from.
#[derive(Clone, Copy)]
pub struct OpenKeys<'a> {
    /// Private key files; empty: the store's server keys.
    pub identities: &'a [PathBuf],
    /// The creator's public key files; empty: the store's user keys.
    pub signers: &'a [PathBuf],
    /// Unlocks the private keys (files or stored).
    pub server_password: &'a dyn Secret,
    /// Opens legacy symmetric files.
    pub legacy_password: &'a dyn Secret,
    /// Whether the creator's signatures are checked; `false` is a waiver the caller has made
    /// knowingly (refused when the site requires signatures).
    pub verify: bool,
}

/// A file's keys, found and checked: opens its data.
pub enum Opener {
    /// A v2 file.
    V2 {
        /// Its prelude.
        prelude: Box<Prelude>,
        /// The keys its active slot names that are at hand.
        identities: Vec<Held>,
        /// The creator's public keys.
        signers: Vec<PublicKey>,
        /// Whether signatures are checked.
        verify: bool,
        /// The key that unwrapped the file key.
        recipient: Fingerprint,
    },
    /// A legacy hybrid file.
    LegacyHybrid {
        /// Its header.
        header: hybrid::LegacyHeader,
        /// The server key that unwraps its session key.
        identity: PrivateKey,
        /// The creator's public keys (all they have had: the file names none).
        signers: Vec<PublicKey>,
        /// Whether the signature is checked.
        verify: bool,
    },
    /// A legacy symmetric file, with its password.
    LegacySymmetric(Password),
}

/// A key that opens a v2 file's active slot: a server private key at hand, or the file key a
/// key-custody service unwrapped for this file.
pub enum Held {
    /// A private key.
    Key(PrivateKey),
    /// The service's answer.
    Custody(crate::custody::CustodyKey),
}

impl Identity for Held {
    fn fingerprint(&self) -> Fingerprint {
        match self {
            Held::Key(k) => k.fingerprint(),
            Held::Custody(k) => k.fingerprint(),
        }
    }

    fn unwrap_file_key(&self, wrapped: &[u8]) -> pgseal_core::Result<pgseal_core::secret::FileKey> {
        match self {
            Held::Key(k) => k.unwrap_file_key(wrapped),
            Held::Custody(k) => k.unwrap_file_key(wrapped),
        }
    }

    fn pq_fingerprint(&self) -> Option<Fingerprint> {
        match self {
            Held::Key(k) => Identity::pq_fingerprint(k),
            Held::Custody(k) => k.pq_fingerprint(),
        }
    }

    fn decapsulate(&self, ciphertext: &[u8]) -> pgseal_core::Result<zeroize::Zeroizing<[u8; 32]>> {
        match self {
            Held::Key(k) => Identity::decapsulate(k, ciphertext),
            Held::Custody(k) => k.decapsulate(ciphertext),
        }
    }

    fn unwrap_stanza(
        &self,
        stanza: &pgseal_core::v2::Stanza,
    ) -> pgseal_core::Result<pgseal_core::secret::FileKey> {
        match self {
            Held::Key(k) => k.unwrap_stanza(stanza),
            Held::Custody(k) => k.unwrap_stanza(stanza),
        }
    }
}

/// What opening the data established.
#[derive(Debug, Clone)]
pub struct Opened {
    /// Plaintext bytes released.
    pub plaintext_bytes: u64,
    /// The creator key whose signature held, when signatures were checked (legacy symmetric
    /// files have none).
    pub signer: Option<Fingerprint>,
}

/// Refuses a waiver of signature checks (`verify == false`) that the site does not allow.
pub fn check_waiver(session: &Session, verify: bool) -> Result<()> {
    if !verify && session.site_opt().is_some_and(|s| s.signature_required) {
        return Err(Error::SignatureWaiverRefused);
    }
    Ok(())
}

/// Finds the keys `sealed` needs and checks what can be checked before its data: the creator
/// (recorded in the session's audit entry), the v2 header signature, the file key. A waiver of
/// the signature checks is warned about (callers check it is allowed: [`check_waiver`]).
pub fn prepare(session: &mut Session, sealed: Sealed, keys: &OpenKeys<'_>) -> Result<Opener> {
    if !keys.verify && !matches!(sealed, Sealed::LegacySymmetric) {
        session.observer().warn(
            "the creator's signature is NOT checked (waived): who made this file is unproven",
        );
    }
    let password = Cached::new(keys.server_password);
    match sealed {
        Sealed::V2(prelude, raw) => {
            let (signers, creator) =
                keys::v2_signers(session, keys.signers, &prelude.header.signer)?;
            if let Some(a) = session.audit_mut() {
                a.backup_creator_id =
                    creator.or(prelude.header.metadata.creator_user_id.map(|id| id as i64));
            }
            if keys.verify {
                // Before any password is asked: a file whose origin fails is refused first.
                prelude.verify_header_signature(&signers)?;
            }
            let identities = v2_held(session, &prelude, &raw, keys.identities, &password)?;
            let refs: Vec<&dyn Identity> = identities.iter().map(|k| k as &dyn Identity).collect();
            let recipient = prelude.check_key(&refs)?;
            Ok(Opener::V2 {
                prelude,
                identities,
                signers,
                verify: keys.verify,
                recipient,
            })
        }
        Sealed::LegacyHybrid(header) => {
            if let Some(a) = session.audit_mut() {
                a.backup_creator_id = i64::try_from(header.user_id).ok();
            }
            let signers = keys::legacy_signers(session, keys.signers, header.user_id)?;
            if keys.verify && signers.is_empty() {
                return Err(pgseal_core::Error::MissingLegacySigner(header.user_id).into());
            }
            // Legacy files name no key: the identity whose OAEP unwrap succeeds.
            let identity = keys::legacy_identities(session, keys.identities, &password)?
                .into_iter()
                .find(|k| k.unwrap_file_key(&header.wrapped_key).is_ok())
                .ok_or(pgseal_core::Error::SessionKeyUnwrap)?;
            Ok(Opener::LegacyHybrid {
                header,
                identity,
                signers,
                verify: keys.verify,
            })
        }
        Sealed::LegacySymmetric => {
            session.observer().warn(
                "a legacy symmetric file carries no signature, so who made it cannot be verified",
            );
            Ok(Opener::LegacySymmetric(keys.legacy_password.get()?))
        }
    }
}

/// The keys that open a v2 file: the key files given; else, with a key-custody service, the
/// file key it unwraps (the service checks the header signature and the caller's role); else
/// the stored server keys the active slot names.
pub fn v2_held(
    session: &mut Session,
    prelude: &Prelude,
    raw: &[u8],
    files: &[PathBuf],
    password: &dyn Secret,
) -> Result<Vec<Held>> {
    if files.is_empty()
        && let Some(custody) = session.custody().cloned()
    {
        let file = session.audit_mut().and_then(|a| a.backup_file.clone());
        let key = custody.unwrap(raw, file.as_deref())?;
        if let Some(a) = session.audit_mut() {
            a.detail("custody", custody.describe());
        }
        return Ok(vec![Held::Custody(key)]);
    }
    let (_, slot) = prelude.active_slot()?;
    Ok(
        keys::v2_identities(session, files, password, &slot.recipients())?
            .into_iter()
            .map(Held::Key)
            .collect(),
    )
}

impl Opener {
    /// Opens the data that follows the header in `body` into `out`, verifying everything.
    /// v2 plaintext reaches `out` only from chunks whose tags verified; the legacy formats
    /// write unverified plaintext until they return `Ok` (see [`needs_first_pass`](
    /// Self::needs_first_pass)). On error, discard what `out` received.
    pub fn open(&self, body: impl Read + Send, out: impl Write + Send) -> Result<Opened> {
        match self {
            Opener::V2 {
                prelude,
                identities,
                signers,
                verify,
                ..
            } => {
                let refs: Vec<&dyn Identity> =
                    identities.iter().map(|k| k as &dyn Identity).collect();
                let check = if *verify {
                    SignerCheck::Require(signers)
                } else {
                    SignerCheck::Skip
                };
                let summary = prelude.decrypt(body, out, &refs, check)?;
                Ok(Opened {
                    plaintext_bytes: summary.plaintext_bytes,
                    signer: summary.verified_signer,
                })
            }
            Opener::LegacyHybrid {
                header,
                identity,
                signers,
                verify,
            } => {
                let mut out = out;
                let opened = hybrid::decrypt(header, body, &mut out, identity)?;
                let signer = if *verify {
                    Some(legacy_signer(header, signers, &opened.ciphertext_digest)?.fingerprint())
                } else {
                    None
                };
                Ok(Opened {
                    plaintext_bytes: opened.plaintext_bytes,
                    signer,
                })
            }
            Opener::LegacySymmetric(password) => Ok(Opened {
                plaintext_bytes: symmetric::decrypt(body, out, password)?,
                signer: None,
            }),
        }
    }

    /// Reads the file again from its start (`input`), checks it is the file prepared (the
    /// same format; for v2 the same signed header), and opens it: for a second pass.
    pub fn reopen(&self, mut input: Input, out: impl Write + Send) -> Result<Opened> {
        let sealed = recognise(&mut input)?;
        let same = match (self, &sealed) {
            (Opener::V2 { prelude, .. }, Sealed::V2(again, _)) => {
                prelude.header_hash == again.header_hash
            }
            (Opener::LegacyHybrid { header, .. }, Sealed::LegacyHybrid(again)) => header == again,
            (Opener::LegacySymmetric(_), Sealed::LegacySymmetric) => true,
            _ => false,
        };
        if !same {
            return Err(Error::Authentication(format!(
                "{} changed while it was being opened",
                input.name
            )));
        }
        self.open(input, out)
    }

    /// Whether the format is one message whose tag comes last, so that its plaintext may be
    /// used only after a first pass has verified it whole.
    pub fn needs_first_pass(&self) -> bool {
        !matches!(self, Opener::V2 { .. })
    }

    /// The server key that opens the file, when one does.
    pub fn server_key(&self) -> Option<Fingerprint> {
        match self {
            Opener::V2 { recipient, .. } => Some(*recipient),
            Opener::LegacyHybrid { identity, .. } => Some(identity.fingerprint()),
            Opener::LegacySymmetric(_) => None,
        }
    }

    /// Whether the creator's signatures are checked.
    pub fn verifies(&self) -> bool {
        match self {
            Opener::V2 { verify, .. } | Opener::LegacyHybrid { verify, .. } => *verify,
            Opener::LegacySymmetric(_) => false,
        }
    }
}

/// The first of `signers` whose signature over the legacy file holds.
pub fn legacy_signer<'k>(
    header: &hybrid::LegacyHeader,
    signers: &'k [PublicKey],
    digest: &[u8; 32],
) -> Result<&'k PublicKey> {
    signers
        .iter()
        .find(|k| hybrid::check_signature(header, k, digest).is_ok())
        .ok_or_else(|| pgseal_core::Error::SignatureInvalid("legacy").into())
}
