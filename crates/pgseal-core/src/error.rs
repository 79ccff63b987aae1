//! Typed errors for every way sealing, opening or key loading can fail.
//!
//! Each error says what went wrong and, where there is one, what to do about it. [`ErrorKind`]
//! groups them so a caller (the CLI) can map them to exit codes without matching every variant.
//! No variant ever carries a password, a key or plaintext.

use crate::keys::Fingerprint;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The broad class of an [`Error`]: what kind of problem the user has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Reading or writing failed (disk full, broken pipe, permissions).
    Io,
    /// The input is not a file we can read: corrupt, truncated, unsupported, or not encrypted.
    Invalid,
    /// Authentication failed: a signature, tag or commitment does not match. Tampering or damage.
    Authentication,
    /// A key or password is missing, wrong or unusable.
    Key,
}

/// Everything that can go wrong in pgseal-core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("the file ends early: {0} is incomplete (truncated or still being written)")]
    Truncated(&'static str),

    #[error("malformed file: {0}")]
    Malformed(String),

    #[error(
        "unsupported pgseal format version {0}: this file was written by a newer pgseal; upgrade to read it"
    )]
    UnsupportedVersion(u8),

    #[error(
        "the header has a critical field this pgseal does not understand (tag 0x{0:04x}); upgrade pgseal to read it"
    )]
    UnknownCriticalField(u16),

    #[error(
        "this is not an encrypted backup ({0}); nothing to decrypt. If it should be encrypted, it was never sealed"
    )]
    NotEncrypted(&'static str),

    #[error(
        "Signature verification failed: the {0} signature does not match; the file was tampered with, damaged, or signed by a different key"
    )]
    SignatureInvalid(&'static str),

    #[error(
        "Signature verification failed: the signer's public key (fingerprint {0}) was not given; pass it with --signer PUB.pem (or, knowingly, --no-verify)"
    )]
    UnknownSigner(Fingerprint),

    #[error(
        "Signature verification failed: no public key given for the creator (user id {0}); pass it with --signer PUB.pem (or, knowingly, --no-verify)"
    )]
    MissingLegacySigner(u64),

    #[error("no key given can open this file; it is encrypted to: {}. Pass the matching private key with --identity (a retired server key counts)", list_fingerprints(.0))]
    NoMatchingIdentity(Vec<Fingerprint>),

    #[error(
        "Failed to decrypt session key: the server key does not match this file, or the file is corrupt. Check that --identity is the server key the backup was made for (old backups need the old key)"
    )]
    SessionKeyUnwrap,

    #[error(
        "the unwrapped file key does not match the key commitment in the signed header: the recipient stanza was tampered with"
    )]
    KeyCommitmentMismatch,

    #[error("the recipient slot's MAC does not verify: the recipient area was tampered with")]
    RecipientMacMismatch,

    #[error(
        "chunk {index} failed authentication: the data was tampered with, reordered, truncated or damaged"
    )]
    ChunkAuthentication { index: u64 },

    #[error("the authentication tag does not match: {0}")]
    LegacyTagMismatch(&'static str),

    #[error("wrong password for {0} (or the key file is damaged)")]
    WrongPassword(String),

    #[error("unusable key in {what}: {reason}")]
    KeyRejected { what: String, reason: String },

    #[error("decompression failed: {0}")]
    Decompress(String),

    #[error("invalid parameter: {0}")]
    InvalidParameter(String),

    #[error("cryptographic operation failed unexpectedly: {0}")]
    Crypto(&'static str),
}

fn list_fingerprints(fps: &[Fingerprint]) -> String {
    if fps.is_empty() {
        return "no recipient this pgseal understands".to_owned();
    }
    fps.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Error {
    /// The class of this error, for exit codes and reporting.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::Truncated(_)
            | Error::Malformed(_)
            | Error::UnsupportedVersion(_)
            | Error::UnknownCriticalField(_)
            | Error::NotEncrypted(_)
            | Error::Decompress(_)
            | Error::InvalidParameter(_)
            | Error::Crypto(_) => ErrorKind::Invalid,
            Error::SignatureInvalid(_)
            | Error::KeyCommitmentMismatch
            | Error::RecipientMacMismatch
            | Error::ChunkAuthentication { .. }
            | Error::LegacyTagMismatch(_) => ErrorKind::Authentication,
            Error::UnknownSigner(_)
            | Error::MissingLegacySigner(_)
            | Error::NoMatchingIdentity(_)
            | Error::SessionKeyUnwrap
            | Error::WrongPassword(_)
            | Error::KeyRejected { .. } => ErrorKind::Key,
        }
    }

    /// Wraps an I/O error with what was being done when it happened.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn malformed(msg: impl Into<String>) -> Self {
        Error::Malformed(msg.into())
    }
}
