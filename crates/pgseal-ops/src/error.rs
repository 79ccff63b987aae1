//! The operations' errors, and the one place their kinds are decided.
//!
//! Every error keeps what it came from (a core format error, a store error, an I/O error with
//! what was being done) so that a front end can tell cases apart by type, never by message.
//! [`Error::kind`] sorts them into the few kinds a front end answers differently: the CLI maps
//! each to an exit code, the custody service to an HTTP status.

use std::fmt;

/// The broad class of an [`Error`]: what the user has to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Reading or writing failed (disk full, broken pipe, permission denied), or the audit log
    /// could not record an operation.
    Io,
    /// The request cannot be carried out as asked: a name, a flag's value, a target that
    /// exists, a refusal the caller must resolve.
    Usage,
    /// The input is not a file pgseal can read: corrupt, truncated, unsupported, not encrypted.
    Invalid,
    /// Something did not verify: a signature, a tag, a commitment, the audit chain.
    Authentication,
    /// A key or password is missing, wrong or unusable.
    Key,
    /// A PostgreSQL tool failed or a database is unreachable.
    Database,
    /// The operation was stopped by a signal (its number).
    Interrupted(i32),
}

/// Everything an operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An output would replace an existing file, and the caller did not allow it.
    #[error("{} already exists", .0.display())]
    Exists(std::path::PathBuf),
    /// The operation needs a site (a store), and none is configured.
    #[error("no pgseal store is configured")]
    NoSite,
    /// A waiver of signature checks, which the site's configuration forbids.
    #[error("skipping signature checks is refused: the configuration requires signatures")]
    SignatureWaiverRefused,
    /// A key the operation needs is not at hand.
    #[error(transparent)]
    Missing(#[from] Missing),
    /// A key-administration request refused until the caller resolves something first.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The legacy system's database could not be read (`import-django`).
    #[error("reading the legacy database: {0}")]
    LegacyDatabase(#[source] pgseal_store::StoreError),
    /// A format, key or crypto error from pgseal-core.
    #[error(transparent)]
    Core(#[from] pgseal_core::Error),
    /// A store error.
    #[error(transparent)]
    Store(#[from] pgseal_store::StoreError),
    /// The store could not be opened.
    #[error("opening the store {url}: {source}")]
    OpenStore {
        /// The store, as shown to users (no password).
        url: String,
        /// Why.
        #[source]
        source: pgseal_store::StoreError,
    },
    /// Reading or writing failed while doing `context`.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. "writing backups/x.pgseal".
        context: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A repository refused or failed an operation on a location.
    #[error(transparent)]
    Repository(crate::repo::RepoError),
    /// A PostgreSQL tool failed (its message carries the end of the tool's error output).
    #[error("{0}")]
    Tool(String),
    /// A PostgreSQL tool could not be started.
    #[error("cannot run {tool}: {reason}")]
    ToolUnavailable {
        /// pg_dump, pg_restore or psql.
        tool: &'static str,
        /// Why: not found, not executable...
        reason: String,
    },
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Usage(String),
    /// Input that is not what it must be.
    #[error("{0}")]
    Invalid(String),
    /// Something that must verify did not.
    #[error("{0}")]
    Authentication(String),
    /// A key or password problem.
    #[error("{0}")]
    Key(String),
    /// Stopped by a signal while doing `during`.
    #[error("interrupted by {}: {during}", signal_name(*.signal))]
    Interrupted {
        /// The signal's number.
        signal: i32,
        /// What was stopped.
        during: String,
    },
    /// The audit log refused an entry (whatever the store's reason): the operation it records
    /// cannot count as done.
    #[error("{0}")]
    AuditUnwritable(pgseal_store::StoreError),
    /// The operation itself succeeded but its audit entry could not be written, so it counts
    /// as failed (fail closed).
    #[error(
        "the operation completed but its audit entry could not be written ({0}); treat it as \
         failed"
    )]
    Unaudited(Box<Error>),
    /// `message`, said of `source`, whose kind it keeps.
    #[error("{message}")]
    Context {
        /// The whole message: what failed, said in the terms of the operation.
        message: String,
        /// The error it came from.
        #[source]
        source: Box<Error>,
    },
    /// A restore abandoned because the backup failed to verify or open part-way: pg_restore was
    /// stopped before it could commit.
    #[error("{0} — the restore was abandoned and nothing was committed")]
    Abandoned(Box<Error>),
    /// Some of several operations (`backup --all`, `rewrap FILE...`) failed; each was reported
    /// and audited on its own.
    #[error("{failed} of {total} {what}")]
    Several {
        /// How many failed.
        failed: usize,
        /// How many were tried.
        total: usize,
        /// What happened to them ("backups failed", "files could not be rewrapped"...).
        what: &'static str,
        /// The kind the whole command answers with.
        kind: ErrorKind,
    },
}

/// A key an operation needs that is not at hand, and why: front ends add how to give it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Missing {
    /// No private key to open a file: none given, and no store to find one in.
    #[error("decrypting needs the private key the file is encrypted to")]
    Identity,
    /// The store holds no server key that opens the file.
    #[error("no server key in the store can open this file; it is encrypted to: {}", list(.0))]
    StoredIdentity(Vec<pgseal_core::Fingerprint>),
    /// A stored server key does not open with the password given.
    #[error(
        "Failed to decrypt session key: {0} does not open with the server key password (wrong password?)"
    )]
    ServerKeyPassword(String),
    /// The site has no active server key.
    #[error("No active server key found")]
    ActiveServerKey,
    /// A user has no active key.
    #[error("User has no RSA key: {0} has no active key")]
    UserKey(pgseal_store::Username),
    /// A user's private key is not where it is looked for.
    #[error("no signing key for {user} at {}", .path.display())]
    SigningKey {
        /// Whose.
        user: pgseal_store::Username,
        /// Where it was looked for.
        path: std::path::PathBuf,
    },
    /// The private key given is not the user's active key.
    #[error("{} holds key {found}, but {user}'s active key is {active}", .path.display())]
    NotActiveKey {
        /// The key file.
        path: std::path::PathBuf,
        /// The key it holds.
        found: pgseal_core::Fingerprint,
        /// Whose key it should be.
        user: pgseal_store::Username,
        /// The user's active key.
        active: pgseal_core::Fingerprint,
    },
    /// No creator to sign a file: neither a key nor a user named.
    #[error("a sealed file needs a creator to sign it: a signing key, or a pgseal user")]
    Creator,
    /// No recipient: no public key given, and no store with an active server key.
    #[error("a sealed file needs a recipient: a public key, or a store with an active server key")]
    Recipient,
    /// The current server key password, given to rotate, does not open a stored server key.
    #[error("the current server key password does not open server key {0}; nothing was changed")]
    CurrentServerKeyPassword(pgseal_core::Fingerprint),
}

/// A key-administration request refused, and what stands in the way: front ends add the
/// command that resolves it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// The user already has an active key: generating is for a first key (rotate instead).
    #[error("user {user} already has an active key ({active})")]
    ActiveUserKey {
        /// Whose.
        user: pgseal_store::Username,
        /// Their active key.
        active: pgseal_core::Fingerprint,
    },
    /// The server key to retire is the active one.
    #[error("that is the active server key: rotate first, then rewrap and retire")]
    RetireActive(pgseal_core::Fingerprint),
    /// Backups still hold the server key to retire in a recipient slot.
    #[error(
        "{} backups still hold {key} in a recipient slot; rewrap them first (a rewrap also \
         wipes superseded slots):\n{}",
        .holding.len(),
        holding_list(.holding)
    )]
    StillHeld {
        /// The key.
        key: pgseal_core::Fingerprint,
        /// The backups holding it (as shown), each with where: "active slot A", "superseded
        /// slot B", "per the catalog".
        holding: std::collections::BTreeMap<String, String>,
    },
    /// The retirement was forced, but the fingerprint given to confirm it is not the key's.
    #[error("the fingerprint typed does not match; nothing was retired")]
    NotConfirmed,
    /// A user's key may be replaced without the old one only by an active admin, acting as
    /// themselves.
    #[error("replacing a user's key without the old one needs an active admin as the acting user")]
    AdminNeeded,
}

/// The first 20 backups of a [`Refused::StillHeld`], one a line (`  LOCATION (WHERE)`), and how
/// many more there are.
pub fn holding_list(holding: &std::collections::BTreeMap<String, String>) -> String {
    let mut lines: Vec<String> = holding
        .iter()
        .take(20)
        .map(|(location, why)| format!("  {location} ({why})"))
        .collect();
    let more = holding.len().saturating_sub(20);
    if more > 0 {
        lines.push(format!("  ... and {more} more"));
    }
    lines.join("\n")
}

fn list(fps: &[pgseal_core::Fingerprint]) -> String {
    fps.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Result alias for the operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What kind of problem this is.
    pub fn kind(&self) -> ErrorKind {
        use pgseal_core::ErrorKind as Core;
        use pgseal_store::StoreError as S;
        match self {
            Error::Core(e) => match e.kind() {
                Core::Io => ErrorKind::Io,
                Core::Invalid => ErrorKind::Invalid,
                Core::Authentication => ErrorKind::Authentication,
                Core::Key => ErrorKind::Key,
            },
            Error::Store(
                S::Conflict(_)
                | S::NotFound(_)
                | S::UnknownUser(_)
                | S::ActiveServerKeyExists(_)
                | S::ActiveUserKeyExists(_)
                | S::BadUrl(_)
                | S::NoStore(_),
            )
            | Error::OpenStore {
                source: S::BadUrl(_),
                ..
            } => ErrorKind::Usage,
            Error::OpenStore { .. } => ErrorKind::Io,
            Error::Store(_)
            | Error::Io { .. }
            | Error::Unaudited(_)
            | Error::AuditUnwritable(_) => ErrorKind::Io,
            Error::Repository(e) => e.kind(),
            Error::Tool(_) | Error::ToolUnavailable { .. } | Error::LegacyDatabase(_) => {
                ErrorKind::Database
            }
            Error::Refused(_) => ErrorKind::Usage,
            Error::Usage(_)
            | Error::Exists(_)
            | Error::NoSite
            | Error::SignatureWaiverRefused
            | Error::Missing(Missing::Creator | Missing::Recipient) => ErrorKind::Usage,
            Error::Missing(_) => ErrorKind::Key,
            Error::Invalid(_) => ErrorKind::Invalid,
            Error::Authentication(_) => ErrorKind::Authentication,
            Error::Key(_) => ErrorKind::Key,
            Error::Interrupted { signal, .. } => ErrorKind::Interrupted(*signal),
            Error::Context { source, .. } | Error::Abandoned(source) => source.kind(),
            Error::Several { kind, .. } => *kind,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            context: context.to_string(),
            source,
        }
    }

    /// The request cannot be carried out as asked.
    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage(message.into())
    }

    /// Input that is not what it must be.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }

    /// A key or password problem.
    pub fn key(message: impl Into<String>) -> Self {
        Error::Key(message.into())
    }

    /// Says this error again in the operation's terms (`message` should include it), keeping
    /// its kind and its source.
    pub fn context(self, message: impl Into<String>) -> Self {
        Error::Context {
            message: message.into(),
            source: Box::new(self),
        }
    }

    /// The error at the bottom of any [`Error::Context`] wrapping: what actually went wrong.
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } | Error::Abandoned(source) => source.root(),
            other => other,
        }
    }

    /// Whether a signature was checked and did not hold (as opposed to: no key to check it).
    pub fn is_bad_signature(&self) -> bool {
        matches!(
            self.root(),
            Error::Core(pgseal_core::Error::SignatureInvalid(_))
        )
    }
}

/// The name of a signal pgseal handles, for messages.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        15 => "SIGTERM",
        _ => "a signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_kind_and_source() {
        let e = Error::from(pgseal_core::Error::SignatureInvalid("header"))
            .context("the backup could not be restored");
        assert_eq!(e.kind(), ErrorKind::Authentication);
        assert!(e.is_bad_signature());
        assert_eq!(e.to_string(), "the backup could not be restored");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn kinds_of_store_errors() {
        let conflict = Error::from(pgseal_store::StoreError::Conflict("x".into()));
        assert_eq!(conflict.kind(), ErrorKind::Usage);
        let interrupted = Error::Interrupted {
            signal: 15,
            during: "the restore".into(),
        };
        assert_eq!(interrupted.kind(), ErrorKind::Interrupted(15));
        assert_eq!(
            interrupted.to_string(),
            "interrupted by SIGTERM: the restore"
        );
    }
}
