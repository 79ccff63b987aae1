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
//!
//! `pgseal status` does not use this table: its exit code is a Nagios plugin state (0 OK, 1
//! WARNING, 2 CRITICAL, 3 UNKNOWN), and every failure of it is UNKNOWN (`cmd::status::main`,
//! which `main` runs apart from the other commands).

use pgseal_ops::ErrorKind;

/// A command's failure: the operations layer's error, kept whole (its kind, its source).
pub use pgseal_ops::Error as Failure;

/// A command's result.
pub type CliResult<T = ()> = Result<T, Failure>;

/// Process exit codes (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Io = 1,
    Usage = 2,
    Invalid = 3,
    Authentication = 4,
    Key = 5,
    Database = 6,
    /// Stopped by SIGHUP.
    Hangup = 129,
    /// Stopped by SIGINT.
    Interrupted = 130,
    /// Stopped by SIGTERM.
    Terminated = 143,
}

impl ExitCode {
    /// The exit code of a failure: the one place error kinds become exit codes.
    pub fn of(failure: &Failure) -> ExitCode {
        match failure.kind() {
            ErrorKind::Io => ExitCode::Io,
            ErrorKind::Usage => ExitCode::Usage,
            ErrorKind::Invalid => ExitCode::Invalid,
            ErrorKind::Authentication => ExitCode::Authentication,
            ErrorKind::Key => ExitCode::Key,
            ErrorKind::Database => ExitCode::Database,
            ErrorKind::Interrupted(1) => ExitCode::Hangup,
            ErrorKind::Interrupted(15) => ExitCode::Terminated,
            ErrorKind::Interrupted(_) => ExitCode::Interrupted,
        }
    }

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

/// A failure as the CLI says it: the error's message plus, where the CLI has one, the flag or
/// variable that fixes it — the libraries name no flags, since their callers have none.
pub fn message(failure: &Failure) -> String {
    use pgseal_core::Error as E;
    use pgseal_core::error::LegacyTagCause;
    match failure {
        Failure::Core(e) => match e {
            E::UnknownSigner(_) | E::MissingLegacySigner(_) => {
                format!("{e}; pass it with --signer PUB.pem (or, knowingly, --no-verify)")
            }
            E::NoMatchingIdentity(_) => format!(
                "{e}. Pass the matching private key with --identity (a retired server key counts)"
            ),
            E::SessionKeyUnwrap => format!(
                "{e}. Check that --identity is the server key the backup was made for (old \
                 backups need the old key)"
            ),
            // The hint belongs inside the sentence, next to the cause it explains.
            E::LegacyTagMismatch(LegacyTagCause::WrongPasswordOrDamaged) => {
                "the authentication tag does not match: wrong password \
                 (BACKUP_ENCRYPTION_PASSWORD), or the file is damaged or was tampered with"
                    .to_owned()
            }
            _ => e.to_string(),
        },
        Failure::Missing(m) => missing_message(m),
        Failure::Refused(r) => refused_message(r),
        Failure::Store(e) => store_message(e),
        Failure::OpenStore { url, source } => {
            let hint = match source {
                pgseal_store::StoreError::SchemaTooOld { .. } => {
                    ": run a command that writes (`pgseal user add`, a backup) with write access \
                     to the store first"
                }
                _ => "",
            };
            format!("opening the store {url}: {}{hint}", store_message(source))
        }
        Failure::Repository(e) => repository_message(e),
        Failure::Exists(_) => format!("{failure}; pass --force to replace it"),
        Failure::NoSite => format!(
            "{failure}: run `pgseal init --dir DIR`, or point at one with --config FILE, \
             PGSEAL_CONFIG or --store URL"
        ),
        Failure::ToolUnavailable { .. } => format!(
            "{failure} (install the PostgreSQL client tools, or point --pg-bin / \
             POSTGRESQL_BIN_PATH at them)"
        ),
        Failure::Abandoned(inner) => format!(
            "{} — the restore was abandoned and nothing was committed",
            message(inner)
        ),
        Failure::SignatureWaiverRefused => "--no-verify is refused: the configuration requires \
                                            signatures (BACKUP_SIGNATURE_REQUIRED / \
                                            backup.signature_required)"
            .to_owned(),
        Failure::Unaudited(inner) => format!(
            "the operation completed but its audit entry could not be written ({}); treat it \
             as failed",
            message(inner)
        ),
        other => other.to_string(),
    }
}

/// A repository's error, with what to check where the cause is the front end's configuration.
fn repository_message(e: &pgseal_ops::repo::RepoError) -> String {
    use pgseal_ops::repo::RepoError as R;
    match e {
        R::BadCredentials { .. } => format!(
            "{e}: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or \
             AWS_PROFILE and ~/.aws/credentials"
        ),
        R::AccessDenied { .. } => format!(
            "{e}: check that the credentials (AWS_ACCESS_KEY_ID, or AWS_PROFILE) are right and \
             may read, write and delete objects in the bucket"
        ),
        R::Unreachable { .. } => {
            format!("{e}: check AWS_ENDPOINT_URL and that the object store is up")
        }
        R::NoSuchBucket { .. } => format!(
            "{e}: create it, or fix the repository URL (--repo, PGSEAL_REPOSITORY or \
             [repository] url) or AWS_ENDPOINT_URL"
        ),
        _ => e.to_string(),
    }
}

/// The JSON error object a `--json` command prints when it fails:
/// `{"error": {"message": ..., "exit_code": N, "kind": ...}}`.
pub fn to_json(failure: &Failure) -> serde_json::Value {
    let code = ExitCode::of(failure);
    serde_json::json!({
        "error": {
            "message": message(failure),
            "exit_code": code as i32,
            "kind": code.kind(),
        }
    })
}

/// What is missing, and the flag or command that gives it.
fn missing_message(m: &pgseal_ops::Missing) -> String {
    use pgseal_ops::Missing as M;
    match m {
        M::Identity => {
            format!("{m}: pass --identity KEY.pem, or configure the pgseal store that holds it")
        }
        M::StoredIdentity(_) => format!("{m}. Pass the matching private key with --identity"),
        M::ServerKeyPassword(what) => format!(
            "Failed to decrypt session key: {what} does not open with SERVER_KEY_PASSWORD (wrong \
             password?)"
        ),
        M::ActiveServerKey => {
            format!("{m}: generate one with `pgseal server-key generate`")
        }
        M::UserKey(name) => format!("{m}; generate one with `pgseal user-key generate {name}`"),
        M::SigningKey { .. } => format!("{m}: pass --sign-key with their private key"),
        M::NotActiveKey { user, .. } => {
            format!("{m}: pass --sign-key with {user}'s current key")
        }
        M::Creator => "pass --sign-key KEY.pem, or --user NAME with a pgseal store".to_owned(),
        M::Recipient => {
            "pass --recipient PUB.pem (or configure a store with an active server key)".to_owned()
        }
        M::CurrentServerKeyPassword(fp) => format!(
            "the current password (SERVER_KEY_PASSWORD) does not open server key {fp}; nothing \
             was changed"
        ),
        _ => m.to_string(),
    }
}

/// A refused key-administration request, with the command or variable that resolves it.
fn refused_message(r: &pgseal_ops::Refused) -> String {
    use pgseal_ops::Refused as R;
    match r {
        R::ActiveUserKey { user, .. } => {
            format!("{r}; rotate it with `pgseal user-key rotate {user}`")
        }
        R::RetireActive(_) => "that is the active server key: rotate first (`pgseal server-key \
                               rotate`), then rewrap and retire"
            .to_owned(),
        R::StillHeld { key, holding } => format!(
            "{} backups still hold {key} in a recipient slot; rewrap them first (`pgseal rewrap \
             --all`, or `pgseal rewrap FILE` for those the catalog does not list; it also wipes \
             superseded slots):\n{}",
            holding.len(),
            pgseal_ops::error::holding_list(holding)
        ),
        R::AdminNeeded => {
            "--force needs an admin: set PGSEAL_USER to the name of an active admin".to_owned()
        }
        _ => r.to_string(),
    }
}

/// A store error with the command that fixes it, where there is one.
fn store_message(e: &pgseal_store::StoreError) -> String {
    use pgseal_store::StoreError as E;
    match e {
        E::UnknownUser(name) => format!("{e}; add one with `pgseal user add {name}`"),
        E::ActiveServerKeyExists(_) => format!("{e}; rotate it with `pgseal server-key rotate`"),
        E::ActiveUserKeyExists(_) => format!("{e}; rotate it with `pgseal user-key rotate`"),
        E::NoStore(absent) => no_store_message(absent),
        _ => e.to_string(),
    }
}

/// What is missing where, and what to do about it.
pub fn no_store_message(absent: &pgseal_store::NoStore) -> String {
    use pgseal_store::NoStoreReason;
    let advice = match absent.reason {
        NoStoreReason::Missing => {
            "pgseal never creates a store by accident; `pgseal init` makes a new site, or point \
             --store (or the config) at the existing store"
        }
        NoStoreReason::Empty | NoStoreReason::NoSchema => {
            "a pgseal store always holds its schema and audit log, so this one was truncated, \
             emptied or never initialised; restore it from a copy (`pgseal init` makes a new \
             site)"
        }
    };
    format!("{absent}: {advice}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgseal_core::Fingerprint;
    use pgseal_store::{NoStore, NoStoreReason, StoreError, StoreUrl, Username};

    fn said(f: Failure) -> (ExitCode, String) {
        (ExitCode::of(&f), message(&f))
    }

    /// The store says what is wrong; the CLI adds the command that fixes it, so the messages
    /// read as they always have.
    #[test]
    fn store_errors_get_the_command_that_fixes_them() {
        let carol = Username::parse("carol").unwrap();
        assert_eq!(
            said(StoreError::UnknownUser(carol).into()),
            (
                ExitCode::Usage,
                "no user named carol; add one with `pgseal user add carol`".into()
            )
        );
        let fp = Fingerprint::from_bytes([1; 32]);
        assert_eq!(
            said(StoreError::ActiveServerKeyExists(fp).into()),
            (
                ExitCode::Usage,
                format!(
                    "an active server key already exists ({fp}); rotate it with `pgseal \
                     server-key rotate`"
                )
            )
        );
        assert_eq!(
            said(StoreError::ActiveUserKeyExists(fp).into()),
            (
                ExitCode::Usage,
                format!(
                    "the user already has an active key ({fp}); rotate it with `pgseal user-key \
                     rotate`"
                )
            )
        );
    }

    /// Key administration refuses in the operations layer's terms; the CLI names the command
    /// or variable that resolves it, so the messages read as they always have.
    #[test]
    fn key_administration_refusals_get_the_command_that_resolves_them() {
        use pgseal_ops::{Missing, Refused};
        let fp = Fingerprint::from_bytes([2; 32]);
        let alice = Username::parse("alice").unwrap();
        assert_eq!(
            said(
                Refused::ActiveUserKey {
                    user: alice,
                    active: fp
                }
                .into()
            ),
            (
                ExitCode::Usage,
                format!(
                    "user alice already has an active key ({fp}); rotate it with `pgseal \
                     user-key rotate alice`"
                )
            )
        );
        assert_eq!(
            said(Refused::RetireActive(fp).into()),
            (
                ExitCode::Usage,
                "that is the active server key: rotate first (`pgseal server-key rotate`), then \
                 rewrap and retire"
                    .into()
            )
        );
        let holding = (0..22)
            .map(|i| (format!("/srv/b/{i:02}.pgseal"), "active slot A".to_owned()))
            .collect::<std::collections::BTreeMap<_, _>>();
        let (code, text) = said(Refused::StillHeld { key: fp, holding }.into());
        assert_eq!(code, ExitCode::Usage);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "22 backups still hold {fp} in a recipient slot; rewrap them first (`pgseal \
                 rewrap --all`, or `pgseal rewrap FILE` for those the catalog does not list; it \
                 also wipes superseded slots):"
            )
        );
        assert_eq!(lines[1], "  /srv/b/00.pgseal (active slot A)");
        assert_eq!(lines.len(), 22);
        assert_eq!(lines[21], "  ... and 2 more");
        assert_eq!(
            said(Refused::AdminNeeded.into()),
            (
                ExitCode::Usage,
                "--force needs an admin: set PGSEAL_USER to the name of an active admin".into()
            )
        );
        assert_eq!(
            said(Missing::CurrentServerKeyPassword(fp).into()),
            (
                ExitCode::Key,
                format!(
                    "the current password (SERVER_KEY_PASSWORD) does not open server key {fp}; \
                     nothing was changed"
                )
            )
        );
    }

    #[test]
    fn a_missing_store_says_how_to_make_or_find_one() {
        let absent = |reason| NoStore {
            store: "sqlite:/srv/pgseal/pgseal.db".into(),
            reason,
        };
        let expected = "no store file at sqlite:/srv/pgseal/pgseal.db: pgseal never creates a \
                        store by accident; `pgseal init` makes a new site, or point --store (or \
                        the config) at the existing store";
        assert_eq!(
            said(StoreError::NoStore(absent(NoStoreReason::Missing)).into()),
            (ExitCode::Usage, expected.into())
        );
        assert_eq!(
            no_store_message(&absent(NoStoreReason::Empty)),
            "an empty (0-byte) store file at sqlite:/srv/pgseal/pgseal.db: a pgseal store always \
             holds its schema and audit log, so this one was truncated, emptied or never \
             initialised; restore it from a copy (`pgseal init` makes a new site)"
        );
        assert!(
            no_store_message(&absent(NoStoreReason::NoSchema))
                .starts_with("no pgseal schema at sqlite:/srv/pgseal/pgseal.db: a pgseal store")
        );
    }

    #[test]
    fn a_store_too_old_to_read_says_how_to_upgrade_it() {
        let url = StoreUrl::Sqlite("/srv/pgseal/pgseal.db".into());
        let f = Failure::OpenStore {
            url: url.to_string(),
            source: StoreError::SchemaTooOld { found: 2, known: 3 },
        };
        assert_eq!(
            said(f),
            (
                ExitCode::Io,
                "opening the store sqlite:/srv/pgseal/pgseal.db: the store's schema is version 2, \
                 older than this pgseal's (3); reading does not upgrade it: run a command that \
                 writes (`pgseal user add`, a backup) with write access to the store first"
                    .into()
            )
        );
    }
}
