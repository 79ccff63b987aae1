//! Typed errors for every way sealing, opening or key loading can fail.
//!
//! Each error says what went wrong and, where there is one, what to do about it. [`ErrorKind`]
//! groups them so a caller (the CLI) can map them to exit codes without matching every variant.
//! No variant ever carries a password, a key or plaintext.

use std::fmt;

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
///
/// Messages say what is wrong in the library's own terms; they name no command-line flag or
/// environment variable (a front end adds its own hint, e.g. which flag passes a key).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing failed; `context` says what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done: "reading input", "writing output", ...
        context: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The input ended inside the named part of the file.
    #[error("the file ends early: {0} is incomplete (truncated or still being written)")]
    Truncated(&'static str),

    /// The bytes do not follow the format: see [`FormatError`] for each way.
    #[error("malformed file: {0}")]
    Format(#[from] FormatError),

    /// A pgseal file of a format version this build does not read.
    #[error(
        "unsupported pgseal format version {0}: this file was written by a newer pgseal; upgrade to read it"
    )]
    UnsupportedVersion(u8),

    /// A v2 header field marked critical whose tag this build does not know.
    #[error(
        "the header has a critical field this pgseal does not understand (tag 0x{0:04x}); upgrade pgseal to read it"
    )]
    UnknownCriticalField(u16),

    /// The input is not encrypted at all (the payload says what it is instead).
    #[error(
        "this is not an encrypted backup ({0}); nothing to decrypt. If it should be encrypted, it was never sealed"
    )]
    NotEncrypted(&'static str),

    /// A signature (`"header"`, `"final"` or `"legacy"`) did not verify.
    #[error(
        "Signature verification failed: the {0} signature does not match; the file was tampered with, damaged, or signed by a different key"
    )]
    SignatureInvalid(&'static str),

    /// The v2 header names a signer whose public key the caller did not supply.
    #[error(
        "Signature verification failed: the signer's public key (fingerprint {0}) was not given"
    )]
    UnknownSigner(Fingerprint),

    /// A legacy hybrid file's creator (by user id) has no public key among those supplied.
    #[error("Signature verification failed: no public key given for the creator (user id {0})")]
    MissingLegacySigner(u64),

    /// None of the supplied private keys is a recipient of the file; lists the recipients.
    #[error("no key given can open this file; it is encrypted to: {}", list_fingerprints(.0))]
    NoMatchingIdentity(Vec<Fingerprint>),

    /// RSA-OAEP unwrapping of the file (or session) key failed with the key given.
    #[error(
        "Failed to decrypt session key: the server key does not match this file, or the file is corrupt"
    )]
    SessionKeyUnwrap,

    /// A file whose signed header says it was made for hybrid recipients has an RSA-only
    /// wrapping in its active recipient slot (FORMAT.md §6a).
    #[error(
        "post-quantum downgrade: the signed header says this file was sealed for hybrid (RSA + ML-KEM-768) recipients only, but its active recipient slot holds an RSA-only wrapping; the recipient area was tampered with"
    )]
    HybridDowngrade,

    /// A wrap of a post-quantum file (or a seal for hybrid recipients) was asked for a key
    /// without an ML-KEM-768 half.
    #[error(
        "key {0} has no ML-KEM-768 half, and this file may only be wrapped to hybrid (RSA + ML-KEM-768) keys"
    )]
    NotHybrid(Fingerprint),

    /// The file key is wrapped to a hybrid key whose RSA half is at hand, but the key at hand
    /// lacks the ML-KEM-768 half the stanza names (or has another one).
    #[error(
        "the file key is wrapped to the hybrid key {key} with the ML-KEM-768 key {wanted}, but the key at hand {}",
        match .found { Some(fp) => format!("has another ML-KEM-768 half ({fp})"), None => "has no ML-KEM-768 half (a hybrid key file holds it in a second PEM block)".to_owned() }
    )]
    PqHalf {
        /// The RSA fingerprint both name.
        key: Fingerprint,
        /// The ML-KEM fingerprint the stanza names.
        wanted: Fingerprint,
        /// The ML-KEM fingerprint of the key at hand, if it has a half.
        found: Option<Fingerprint>,
    },

    /// The unwrapped v2 file key does not match the signed header's commitment.
    #[error(
        "the unwrapped file key does not match the key commitment in the signed header: the recipient stanza was tampered with"
    )]
    KeyCommitmentMismatch,

    /// The v2 recipient slot's MAC does not verify under the unwrapped file key.
    #[error("the recipient slot's MAC does not verify: the recipient area was tampered with")]
    RecipientMacMismatch,

    /// A v2 chunk's AES-GCM tag did not verify.
    #[error(
        "chunk {index} failed authentication: the data was tampered with, reordered, truncated or damaged"
    )]
    ChunkAuthentication {
        /// The chunk's position in the file, from 0.
        index: u64,
    },

    /// A legacy file's single AES-GCM tag did not verify.
    #[error("the authentication tag does not match: {0}")]
    LegacyTagMismatch(LegacyTagCause),

    /// A private key's password is wrong; names the key (a path or a role), never the password.
    #[error("wrong password for {0} (or the key file is damaged)")]
    WrongPassword(String),

    /// A key could not be used: not RSA, too small, not PEM, the wrong half...
    #[error("unusable key in {what}: {reason}")]
    KeyRejected {
        /// Which key: a path, a role, "public key".
        what: String,
        /// Why it was refused.
        reason: String,
    },

    /// The zstd stream inside a v2 file does not decompress.
    #[error("decompression failed: {0}")]
    Decompress(String),

    /// The caller asked for something impossible (a bad chunk size, too many recipients...).
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),

    /// The crypto library failed where it should not; names the operation.
    #[error("cryptographic operation failed unexpectedly: {0}")]
    Crypto(&'static str),
}

/// Why a legacy file's authentication tag may not match: what the file format lets us tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LegacyTagCause {
    /// Hybrid files: the session key unwrapped, so the data itself was changed.
    #[error("the encrypted data was damaged or tampered with")]
    Damaged,
    /// Symmetric files: a wrong password and a damaged file look the same.
    #[error("wrong password, or the file is damaged or was tampered with")]
    WrongPasswordOrDamaged,
}

/// A legacy hybrid header field that carries a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyField {
    /// The RSA-OAEP-wrapped session key.
    WrappedKey,
    /// The creator's RSA-PSS signature.
    Signature,
}

impl fmt::Display for LegacyField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LegacyField::WrappedKey => "wrapped key",
            LegacyField::Signature => "signature",
        })
    }
}

/// Every way the bytes of a file can break its format (FORMAT.md, legacy-formats.md). All are
/// [`ErrorKind::Invalid`]; none says anything about the file's origin, only its shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The first seven bytes are not `PGSEAL\0`.
    #[error("not a pgseal file (bad magic)")]
    NotPgseal,
    /// The first twenty bytes are not `PGBACKUP_HYBRID_V1\0\0`.
    #[error("not a PGBACKUP_HYBRID_V1 file")]
    NotLegacyHybrid,
    /// The first eighteen bytes are not `PGBACKUP_AES256_V1`.
    #[error("not a PGBACKUP_AES256_V1 file")]
    NotLegacySymmetric,

    /// The v2 header body is longer than [`MAX_HEADER_LEN`](crate::v2::MAX_HEADER_LEN).
    #[error("header length {len} exceeds the 65,536-byte limit")]
    HeaderTooLong {
        /// The length the file declares (or the body handed in).
        len: u64,
    },
    /// Fewer than the six bytes of a field's tag and length are left in the header.
    #[error("header field cut short")]
    FieldCutShort,
    /// Tags must strictly increase: one encoding per header.
    #[error("header fields out of order or repeated at tag 0x{tag:04x}")]
    FieldOutOfOrder {
        /// The tag that is not greater than the one before it.
        tag: u16,
    },
    /// A field's length runs past the end of the header body.
    #[error("header field 0x{tag:04x} runs past the header")]
    FieldPastEnd {
        /// The field's tag.
        tag: u16,
    },
    /// A fixed-size field has another length.
    #[error("header field 0x{tag:04x} must be {expected} bytes, found {found}")]
    FieldLength {
        /// The field's tag.
        tag: u16,
        /// The length FORMAT.md gives it.
        expected: usize,
        /// The length the file gives it.
        found: usize,
    },
    /// A text field is not UTF-8.
    #[error("header field 0x{tag:04x} is not UTF-8")]
    FieldNotUtf8 {
        /// The field's tag.
        tag: u16,
    },
    /// A required field is absent; names it as FORMAT.md does.
    #[error("header lacks the required field {0}")]
    MissingField(&'static str),
    /// The algorithm suite is not one this build knows.
    #[error("unknown algorithm suite {0}")]
    UnknownSuite(u8),
    /// The `hybrid_recipients` field holds a value other than 1.
    #[error("invalid hybrid_recipients value {0} (only 1 is defined)")]
    InvalidHybridFlag(u8),
    /// The compression method is not one this build knows.
    #[error("unknown compression method {0}")]
    UnknownCompression(u8),
    /// The chunk size is not a power of two from 1 KiB to 16 MiB.
    #[error("invalid chunk size {0}")]
    InvalidChunkSize(u32),
    /// The recipient slot size is not a multiple of 64 from 512 to 65,536.
    #[error("invalid recipient slot size {0}")]
    InvalidSlotSize(u32),
    /// The declared signature length is not from 256 to 1,024 bytes.
    #[error("invalid signature length {0}")]
    InvalidSignatureLength(u16),
    /// The header signature's length prefix disagrees with the header.
    #[error("header signature is {found} bytes but the header says {declared}")]
    SignatureLengthMismatch {
        /// The length before the signature.
        found: u16,
        /// The header's `signature_length`.
        declared: u16,
    },
    /// The header's `signature_length` is not what the named signer's key produces.
    #[error(
        "the header declares {declared}-byte signatures but the signer's key makes {key_makes}-byte ones"
    )]
    SignerKeyLength {
        /// The header's `signature_length`.
        declared: u16,
        /// The signer's modulus length in bytes.
        key_makes: usize,
    },

    /// Neither recipient slot is valid, so no key can open the file.
    #[error(
        "no valid recipient slot (A: {a}, B: {b}): no key can open this file; its data may be \
         intact (the slots are outside the signatures), so a copy made before the damage opens"
    )]
    NoValidSlot {
        /// What slot A holds: "empty", or why it is damaged.
        a: String,
        /// What slot B holds: "empty", or why it is damaged.
        b: String,
    },
    /// Both slots are valid with one generation: no rewrap writes that.
    #[error("both recipient slots claim the same generation")]
    SameGeneration,
    /// The active slot's generation is `u64::MAX`; there is no next one.
    #[error("slot generation exhausted")]
    GenerationExhausted,

    /// A chunk follows the one marked last.
    #[error("data after the last chunk")]
    DataAfterLastChunk,
    /// An empty last chunk follows data (only an empty payload has an empty last chunk).
    #[error("an empty last chunk after data (not canonical)")]
    EmptyLastChunk,
    /// An unwrapped file key is not 32 bytes.
    #[error("a file key must be 32 bytes, found {0}")]
    FileKeyLength(usize),

    /// A legacy hybrid version other than 1.
    #[error("legacy hybrid version {0} is unknown (only 1 exists)")]
    LegacyVersion(u32),
    /// A legacy length field outside 1 to 1,024 bytes (an RSA block of at most 8,192 bits).
    #[error(
        "legacy {field} length {len} is impossible (1 to {max} bytes)",
        max = crate::legacy::hybrid::MAX_RSA_BYTES
    )]
    LegacyLengthImpossible {
        /// Which field.
        field: LegacyField,
        /// The length it claims.
        len: u32,
    },
    /// A legacy length field claims more bytes than the file holds.
    #[error("legacy {field} length {len} runs past the end of the {file_len}-byte file")]
    LegacyLengthPastEnd {
        /// Which field.
        field: LegacyField,
        /// The length it claims.
        len: u32,
        /// The file's size.
        file_len: u64,
    },
    /// A legacy file is one GCM message, which holds at most 2^32 − 2 blocks.
    #[error("a legacy file cannot hold more than 64 GiB")]
    LegacyTooLarge,
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
            | Error::Format(_)
            | Error::UnsupportedVersion(_)
            | Error::UnknownCriticalField(_)
            | Error::NotEncrypted(_)
            | Error::Decompress(_)
            | Error::InvalidParameter(_)
            | Error::Crypto(_) => ErrorKind::Invalid,
            Error::SignatureInvalid(_)
            | Error::KeyCommitmentMismatch
            | Error::RecipientMacMismatch
            | Error::HybridDowngrade
            | Error::ChunkAuthentication { .. }
            | Error::LegacyTagMismatch(_) => ErrorKind::Authentication,
            Error::UnknownSigner(_)
            | Error::MissingLegacySigner(_)
            | Error::NoMatchingIdentity(_)
            | Error::SessionKeyUnwrap
            | Error::NotHybrid(_)
            | Error::PqHalf { .. }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_format_error() -> Vec<(FormatError, &'static str)> {
        use FormatError as F;
        vec![
            (F::NotPgseal, "not a pgseal file (bad magic)"),
            (F::NotLegacyHybrid, "not a PGBACKUP_HYBRID_V1 file"),
            (F::NotLegacySymmetric, "not a PGBACKUP_AES256_V1 file"),
            (
                F::HeaderTooLong { len: 70_000 },
                "header length 70000 exceeds the 65,536-byte limit",
            ),
            (F::FieldCutShort, "header field cut short"),
            (
                F::FieldOutOfOrder { tag: 0x11 },
                "header fields out of order or repeated at tag 0x0011",
            ),
            (
                F::FieldPastEnd { tag: 0x8003 },
                "header field 0x8003 runs past the header",
            ),
            (
                F::FieldLength {
                    tag: 0x8002,
                    expected: 4,
                    found: 5,
                },
                "header field 0x8002 must be 4 bytes, found 5",
            ),
            (
                F::FieldNotUtf8 { tag: 0x0013 },
                "header field 0x0013 is not UTF-8",
            ),
            (
                F::MissingField("salt"),
                "header lacks the required field salt",
            ),
            (F::UnknownSuite(2), "unknown algorithm suite 2"),
            (F::UnknownCompression(7), "unknown compression method 7"),
            (F::InvalidChunkSize(1000), "invalid chunk size 1000"),
            (F::InvalidSlotSize(100), "invalid recipient slot size 100"),
            (F::InvalidSignatureLength(10), "invalid signature length 10"),
            (
                F::SignatureLengthMismatch {
                    found: 256,
                    declared: 512,
                },
                "header signature is 256 bytes but the header says 512",
            ),
            (
                F::SignerKeyLength {
                    declared: 256,
                    key_makes: 512,
                },
                "the header declares 256-byte signatures but the signer's key makes 512-byte ones",
            ),
            (
                F::NoValidSlot {
                    a: "checksum mismatch (torn write or damage)".into(),
                    b: "empty".into(),
                },
                "no valid recipient slot (A: checksum mismatch (torn write or damage), B: empty): \
                 no key can open this file; its data may be intact (the slots are outside the \
                 signatures), so a copy made before the damage opens",
            ),
            (
                F::SameGeneration,
                "both recipient slots claim the same generation",
            ),
            (F::GenerationExhausted, "slot generation exhausted"),
            (F::DataAfterLastChunk, "data after the last chunk"),
            (
                F::EmptyLastChunk,
                "an empty last chunk after data (not canonical)",
            ),
            (
                F::FileKeyLength(31),
                "a file key must be 32 bytes, found 31",
            ),
            (
                F::LegacyVersion(2),
                "legacy hybrid version 2 is unknown (only 1 exists)",
            ),
            (
                F::LegacyLengthImpossible {
                    field: LegacyField::WrappedKey,
                    len: 0,
                },
                "legacy wrapped key length 0 is impossible (1 to 1024 bytes)",
            ),
            (
                F::LegacyLengthPastEnd {
                    field: LegacyField::Signature,
                    len: 512,
                    file_len: 400,
                },
                "legacy signature length 512 runs past the end of the 400-byte file",
            ),
            (
                F::LegacyTooLarge,
                "a legacy file cannot hold more than 64 GiB",
            ),
        ]
    }

    /// Core errors say what is wrong; which flag or environment variable fixes it is for the
    /// front end to say (the CLI appends it), since a library caller has neither.
    #[test]
    fn no_message_names_a_command_line_flag_or_environment_variable() {
        let fp = Fingerprint::from_bytes([1; 32]);
        let mut errors = vec![
            Error::io("reading input", std::io::Error::other("boom")),
            Error::Truncated("the header"),
            Error::UnsupportedVersion(3),
            Error::UnknownCriticalField(0x8009),
            Error::NotEncrypted("it is a plain pg_dump archive"),
            Error::SignatureInvalid("header"),
            Error::UnknownSigner(fp),
            Error::MissingLegacySigner(7),
            Error::NoMatchingIdentity(vec![]),
            Error::NoMatchingIdentity(vec![fp, fp]),
            Error::SessionKeyUnwrap,
            Error::KeyCommitmentMismatch,
            Error::RecipientMacMismatch,
            Error::ChunkAuthentication { index: 3 },
            Error::LegacyTagMismatch(LegacyTagCause::Damaged),
            Error::LegacyTagMismatch(LegacyTagCause::WrongPasswordOrDamaged),
            Error::WrongPassword("server key".into()),
            Error::KeyRejected {
                what: "public key".into(),
                reason: "too small".into(),
            },
            Error::Decompress("bad frame".into()),
            Error::InvalidParameter("chunk size".into()),
            Error::Crypto("RSA-PSS signing"),
        ];
        errors.extend(every_format_error().into_iter().map(|(e, _)| e.into()));
        for e in errors {
            let message = e.to_string();
            assert!(!message.contains("--"), "names a flag: {message}");
            for variable in [
                "BACKUP_ENCRYPTION_PASSWORD",
                "SERVER_KEY_PASSWORD",
                "PGSEAL_",
            ] {
                assert!(!message.contains(variable), "names {variable}: {message}");
            }
        }
    }

    /// The wording users, scripts and the CLI tests know is kept, behind "malformed file: ".
    #[test]
    fn format_errors_read_as_before_and_are_invalid_input() {
        for (e, text) in every_format_error() {
            let e = Error::from(e);
            assert_eq!(e.to_string(), format!("malformed file: {text}"));
            assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
        }
    }
}
