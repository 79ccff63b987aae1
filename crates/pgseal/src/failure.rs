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
        Failure::new(code, e.to_string())
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
