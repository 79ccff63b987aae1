//! Sealing any file or stream to recipients' public keys, signed by its creator: the v2 format,
//! or the legacy hybrid format for sites still running the old tools.

use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use pgseal_core::legacy::hybrid;
use pgseal_core::v2::{self, Compression, Metadata, SealParams};
use pgseal_core::{Fingerprint, PrivateKey, PublicKey};
use pgseal_store::{Action, User, Username};

use crate::error::{Error, Missing, Result};
use crate::files::{Input, Output, check_output, scratch_file};
use crate::keys;
use crate::secret::Secret;
use crate::session::Session;

/// Who signs a sealed file.
pub enum Creator<'a> {
    /// A pgseal user: their active key, from `sign_key` or the site's user keys directory,
    /// checked against the store.
    User {
        /// The user.
        name: Username,
        /// Their private key file, if not in the user keys directory.
        sign_key: Option<&'a Path>,
    },
    /// A private key file, with or without a store (with one, the file is attributed to the
    /// key's owner if the store knows the key).
    Key(&'a Path),
}

/// How to seal.
#[derive(Debug, Clone, Copy)]
pub enum Layout {
    /// The v2 format.
    V2 {
        /// How to compress before encrypting.
        compression: Compression,
        /// The zstd level.
        zstd_level: i32,
        /// zstd worker threads.
        zstd_workers: u32,
        /// The chunk size.
        chunk_size: u32,
    },
    /// The legacy hybrid format: one recipient, no compression, no authenticated header.
    LegacyHybrid,
}

/// A file to seal.
pub struct Encrypt<'a> {
    /// A path, or `-` for standard input.
    pub input: &'a str,
    /// A path, or `-` for standard output.
    pub output: &'a str,
    /// Replace an existing regular file at `output`.
    pub force: bool,
    /// Who signs (`None`: refused; a creator is needed).
    pub creator: Option<Creator<'a>>,
    /// Unlocks the creator's key.
    pub creator_password: &'a dyn Secret,
    /// Recipients' public key files; empty: the store's active server key.
    pub recipients: &'a [PathBuf],
    /// The format.
    pub layout: Layout,
    /// The creator's user id to record, if not the creator's own.
    pub user_id: Option<u64>,
    /// The creator's name to record, if not the creator's own.
    pub username: Option<Username>,
    /// The host to record as the file's source.
    pub source_host: Option<String>,
}

/// What sealing produced.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// `v2` or `v1`.
    pub format: &'static str,
    /// Plaintext bytes read.
    pub input_bytes: u64,
    /// Bytes written (v2).
    pub output_bytes: Option<u64>,
    /// Sealed chunks (v2).
    pub chunks: Option<u64>,
    /// The compression used (v2).
    pub compression: Option<&'static str>,
    /// The signer.
    pub signer: Fingerprint,
    /// Who can open it.
    pub recipients: Vec<Fingerprint>,
    /// The creator's user id recorded (v1).
    pub user_id: Option<u64>,
    /// The digest the signature covers: BLAKE3 of the sealed chunks (v2), SHA-256 of the
    /// ciphertext and tag (v1).
    pub digest: [u8; 32],
    /// Whether the sealed file went to standard output.
    pub to_stdout: bool,
}

/// zstd worker threads: one per core, at most four. They overlap with the reading thread and
/// the crypto stage, which wait on I/O as much as they compute.
pub fn zstd_workers() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get().clamp(1, 4) as u32)
        .unwrap_or(1)
}

/// Seals, audited as `ENCRYPT`.
pub fn encrypt(session: &mut Session, request: Encrypt<'_>) -> Result<Sealed> {
    let audit = session.audit(Action::Encrypt);
    audit.backup_file = Some(request.output.to_owned());
    audit.detail(
        "format",
        match request.layout {
            Layout::V2 { .. } => "v2",
            Layout::LegacyHybrid => "v1",
        },
    );
    // The input and the output are checked before any key is unlocked.
    let mut input = Input::open(request.input)?;
    if request.output != "-" {
        check_output(Path::new(request.output), request.force, Some(&input))?;
    }
    let (key, user) = creator(session, &request)?;
    let recipients = recipients(session, request.recipients)?;
    if let Some(a) = session.audit_mut() {
        a.user_id = user.as_ref().map(|u| u.id);
        a.backup_creator_id = user.as_ref().map(|u| u.id);
        a.detail("signer", key.fingerprint().to_string());
        a.detail(
            "recipients",
            recipients
                .iter()
                .map(|r| r.fingerprint().to_string())
                .collect::<Vec<_>>(),
        );
    }
    let user_id = request.user_id.or(user.as_ref().map(|u| u.id as u64));
    if let Layout::LegacyHybrid = request.layout {
        if recipients.len() != 1 {
            return Err(Error::usage(
                "legacy hybrid (v1) files have exactly one recipient",
            ));
        }
        if user_id.is_none() {
            return Err(Error::usage(
                "legacy hybrid (v1) files need the creator's user id (the old system looks the \
                 signer up by it)",
            ));
        }
        if let Some(r) = recipients.iter().find(|r| r.pq().is_some()) {
            return Err(Error::usage(format!(
                "{} is a post-quantum (RSA + ML-KEM-768) key, and legacy hybrid (v1) files can \
                 only wrap to RSA: the file would silently lose its post-quantum protection; \
                 write v2, or pass the RSA public key alone",
                r.fingerprint()
            )));
        }
    }
    let mut output = Output::create(request.output, request.force, Some(&input))?;
    let sealed = match request.layout {
        Layout::V2 {
            compression,
            zstd_level,
            zstd_workers,
            chunk_size,
        } => {
            let mut params = SealParams::new(&key, &recipients);
            params.compression = compression;
            params.zstd_level = zstd_level;
            params.zstd_workers = zstd_workers;
            params.chunk_size = chunk_size;
            params.metadata = Metadata {
                creator_user_id: user_id,
                creator_username: request
                    .username
                    .as_ref()
                    .or(user.as_ref().map(|u| &u.username))
                    .map(ToString::to_string),
                source_host: request.source_host.clone(),
                content_name: input.file_name(),
                audit_anchor: session.audit_anchor()?,
                ..Metadata::now()
            };
            let summary = v2::seal(&mut input, &mut output, &params)?;
            Sealed {
                format: "v2",
                input_bytes: summary.input_bytes,
                output_bytes: Some(summary.output_bytes),
                chunks: Some(summary.chunks),
                compression: Some(summary.header.compression.name()),
                signer: summary.header.signer,
                recipients: summary.recipients,
                user_id: None,
                digest: summary.ciphertext_digest,
                to_stdout: output.is_stdout(),
            }
        }
        Layout::LegacyHybrid => legacy_hybrid(
            session.scratch_dir(),
            &mut input,
            &mut output,
            &recipients[0],
            &key,
            user_id.expect("checked above"),
        )?,
    };
    output.commit()?;
    Ok(sealed)
}

fn legacy_hybrid(
    scratch_dir: &Path,
    input: &mut Input,
    output: &mut Output,
    recipient: &PublicKey,
    key: &PrivateKey,
    user_id: u64,
) -> Result<Sealed> {
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let to_stdout = output.is_stdout();
    let sealed = match output {
        Output::File(file) => hybrid::encrypt(input, file, recipient, key, user_id, created)?,
        stream => {
            // The signature sits before the data it covers: seal into a scratch file (ciphertext
            // only), then stream that out.
            let mut scratch = scratch_file(scratch_dir)?;
            let sealed = hybrid::encrypt(input, &mut scratch, recipient, key, user_id, created)?;
            scratch
                .seek(SeekFrom::Start(0))
                .and_then(|_| io::copy(&mut scratch, stream))
                .map_err(|e| Error::io("writing the output", e))?;
            sealed
        }
    };
    Ok(Sealed {
        format: "v1",
        input_bytes: sealed.plaintext_bytes,
        output_bytes: None,
        chunks: None,
        compression: None,
        signer: key.fingerprint(),
        recipients: vec![recipient.fingerprint()],
        user_id: Some(user_id),
        digest: sealed.ciphertext_digest,
        to_stdout,
    })
}

/// The signing key, and the pgseal user it belongs to when known.
fn creator(session: &mut Session, request: &Encrypt<'_>) -> Result<(PrivateKey, Option<User>)> {
    match &request.creator {
        None => Err(Missing::Creator.into()),
        Some(Creator::User { name, sign_key }) => {
            let (key, user) =
                keys::signing_key_for_user(session, name, *sign_key, request.creator_password)?;
            Ok((key, Some(user)))
        }
        Some(Creator::Key(path)) => {
            let key =
                keys::load_private(session.observer().as_ref(), path, request.creator_password)?;
            // With a store, attribute the file to the key's owner if the key is known.
            let user = match session.store_if_configured()? {
                Some(store) => match store.user_key(&key.fingerprint())? {
                    Some(k) => store.user_by_id(k.user_id)?,
                    None => None,
                },
                None => None,
            };
            Ok((key, user))
        }
    }
}

/// The recipients: the given public key files, else the store's active server key.
fn recipients(session: &mut Session, files: &[PathBuf]) -> Result<Vec<PublicKey>> {
    if !files.is_empty() {
        return keys::load_publics(files);
    }
    if session.site_opt().is_none() {
        return Err(Missing::Recipient.into());
    }
    Ok(vec![keys::active_server_key(session)?.1])
}
