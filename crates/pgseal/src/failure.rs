//! The CLI's error type and the exit codes it maps to.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | I/O or other failure (disk full, permission denied, broken pipe) |
//! | 2 | usage error (bad flags or arguments) |
//! | 3 | invalid input: corrupt, truncated, unsupported or not encrypted |
//! | 4 | authentication failed: bad signature, bad tag, tampering |
//! | 5 | key or password problem: missing, wrong or unusable |
//! | 6 | a PostgreSQL tool failed (pg_dump, pg_restore, psql) or the database is unreachable |
//! | 129, 130, 143 | interrupted by SIGHUP, SIGINT or SIGTERM (128 + the signal's number) |

use std::fmt;

use pgseal_core::ErrorKind;

/// Process exit codes (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Io = 1,
    Usage = 2,
    Invalid = 3,
    Authentication = 4,
    Key = 5,
    Database = 6,
    /// Stopped by SIGHUP (see `interrupt`).
    Hangup = 129,
    /// Stopped by SIGINT.
    Interrupted = 130,
    /// Stopped by SIGTERM.
    Terminated = 143,
}

impl ExitCode {
    /// The code's name in the JSON error object (`--json`): io, usage, invalid,
    /// authentication, key, database, interrupted.
    pub fn kind(self) -> &'static str {
        match self {
            ExitCode::Io => "io",
            ExitCode::Usage => "usage",
            ExitCode::Invalid => "invalid",
            ExitCode::Authentication => "authentication",
            ExitCode::Key => "key",
            ExitCode::Database => "database",
            ExitCode::Hangup | ExitCode::Interrupted | ExitCode::Terminated => "interrupted",
        }
    }
}

/// A failure of a command: a message for the user and its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: ExitCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Usage, message)
    }

    pub fn key(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Key, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Invalid, message)
    }

    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Self {
        Self::new(ExitCode::Io, format!("{context}: {err}"))
    }
}

impl From<pgseal_core::Error> for Failure {
    fn from(e: pgseal_core::Error) -> Self {
        let code = match e.kind() {
            ErrorKind::Io => ExitCode::Io,
            ErrorKind::Invalid => ExitCode::Invalid,
            ErrorKind::Authentication => ExitCode::Authentication,
            ErrorKind::Key => ExitCode::Key,
        };
        Failure::new(code, with_cli_hint(&e))
    }
}

/// The core error's message plus, where the CLI has one, the flag or variable that fixes it:
/// core names no flags, since a library caller has none.
fn with_cli_hint(e: &pgseal_core::Error) -> String {
    use pgseal_core::Error as E;
    use pgseal_core::error::LegacyTagCause;
    match e {
        E::UnknownSigner(_) | E::MissingLegacySigner(_) => {
            format!("{e}; pass it with --signer PUB.pem (or, knowingly, --no-verify)")
        }
        E::NoMatchingIdentity(_) => {
            format!(
                "{e}. Pass the matching private key with --identity (a retired server key counts)"
            )
        }
        E::SessionKeyUnwrap => format!(
            "{e}. Check that --identity is the server key the backup was made for (old backups \
             need the old key)"
        ),
        // The hint belongs inside the sentence, next to the cause it explains.
        E::LegacyTagMismatch(LegacyTagCause::WrongPasswordOrDamaged) => {
            "the authentication tag does not match: wrong password (BACKUP_ENCRYPTION_PASSWORD), \
             or the file is damaged or was tampered with"
                .to_owned()
        }
        _ => e.to_string(),
    }
}

impl Failure {
    /// The JSON error object a `--json` command prints when it fails:
    /// `{"error": {"message": ..., "exit_code": N, "kind": ...}}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "exit_code": self.code as i32,
                "kind": self.code.kind(),
            }
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub type CliResult<T = ()> = Result<T, Failure>;

#[cfg(test)]
mod tests {
    use pgseal_core::error::LegacyTagCause;
    use pgseal_core::{Error, Fingerprint};

    use super::*;

    fn message(e: Error) -> String {
        Failure::from(e).message
    }

    /// The CLI's messages for key problems still say which flag or variable to use.
    #[test]
    fn key_errors_carry_the_cli_hint() {
        let fp = Fingerprint::from_bytes([1; 32]);
        assert_eq!(
            message(Error::UnknownSigner(fp)),
            format!(
                "Signature verification failed: the signer's public key (fingerprint {fp}) was \
                 not given; pass it with --signer PUB.pem (or, knowingly, --no-verify)"
            )
        );
        assert_eq!(
            message(Error::MissingLegacySigner(7)),
            "Signature verification failed: no public key given for the creator (user id 7); \
             pass it with --signer PUB.pem (or, knowingly, --no-verify)"
        );
        assert_eq!(
            message(Error::NoMatchingIdentity(vec![fp])),
            format!(
                "no key given can open this file; it is encrypted to: {fp}. Pass the matching \
                 private key with --identity (a retired server key counts)"
            )
        );
        assert_eq!(
            message(Error::SessionKeyUnwrap),
            "Failed to decrypt session key: the server key does not match this file, or the \
             file is corrupt. Check that --identity is the server key the backup was made for \
             (old backups need the old key)"
        );
        assert_eq!(
            message(Error::LegacyTagMismatch(
                LegacyTagCause::WrongPasswordOrDamaged
            )),
            "the authentication tag does not match: wrong password (BACKUP_ENCRYPTION_PASSWORD), \
             or the file is damaged or was tampered with"
        );
        assert_eq!(
            message(Error::LegacyTagMismatch(LegacyTagCause::Damaged)),
            "the authentication tag does not match: the encrypted data was damaged or tampered \
             with"
        );
    }

    /// Exit codes still come from the error's kind alone.
    #[test]
    fn exit_codes_follow_the_kind() {
        let fp = Fingerprint::from_bytes([1; 32]);
        for (e, code) in [
            (Error::UnknownSigner(fp), ExitCode::Key),
            (Error::SessionKeyUnwrap, ExitCode::Key),
            (
                Error::LegacyTagMismatch(LegacyTagCause::WrongPasswordOrDamaged),
                ExitCode::Authentication,
            ),
            (
                Error::Format(pgseal_core::FormatError::NotPgseal),
                ExitCode::Invalid,
            ),
            (Error::Truncated("the header"), ExitCode::Invalid),
        ] {
            assert_eq!(Failure::from(e).code, code);
        }
    }
}
