//! What every command runs with: the configuration, the store (opened on first use), and the
//! audit entry the command fills in as it learns who, what and how it went.
//!
//! The entry is written when the command ends, whatever the outcome — failures (a wrong
//! password, a bad signature, a missing key) are recorded like successes. Without a store
//! (store-less use with key files only) there is nowhere to write, and nothing is recorded.

use pgseal_core::time::Timestamp;
use pgseal_store::{
    Action, NewAuditEntry, NoStore, NoStoreReason, Store, StoreError, User, Username,
};
use serde_json::{Map, Value};

use crate::config::Config;
use crate::failure::{CliResult, Failure};

pub struct Context {
    pub config: Option<Config>,
    /// The global `--store` flag as given (for `init`, which makes a new configuration).
    pub store_flag: Option<String>,
    store: Option<Store>,
    /// Whether `store` was opened read-only ([`Context::read_store`]).
    store_read_only: bool,
    audit: Option<Audit>,
    /// The entry [`Context::audit_before_commit`] wrote, kept in case the operation then fails.
    written_early: Option<Audit>,
}

/// The audit entry of the running command.
#[derive(Debug, Clone)]
pub struct Audit {
    pub action: Action,
    /// The pgseal user acting; else `$PGSEAL_USER` is looked up when the entry is written.
    pub user_id: Option<i64>,
    pub backup_creator_id: Option<i64>,
    pub backup_file: Option<String>,
    pub signature_valid: Option<bool>,
    pub details: Map<String, Value>,
}

impl Audit {
    /// A new entry for `action`, nothing else known yet.
    pub fn new(action: Action) -> Self {
        Audit {
            action,
            user_id: None,
            backup_creator_id: None,
            backup_file: None,
            signature_valid: None,
            details: Map::new(),
        }
    }

    pub fn detail(&mut self, key: &str, value: impl Into<Value>) {
        self.details.insert(key.to_owned(), value.into());
    }
}

impl Context {
    pub fn new(config: Option<Config>, store_flag: Option<String>) -> Self {
        Context {
            config,
            store_flag,
            store: None,
            store_read_only: false,
            audit: None,
            written_early: None,
        }
    }

    /// The configuration, or an error that says how to make one.
    pub fn config(&self) -> CliResult<&Config> {
        self.config.as_ref().ok_or_else(no_store)
    }

    /// The store, opened and migrated on first use (reopened for writing if a read-only
    /// command opened it first). It must exist: a missing, empty (0-byte) or schema-less store
    /// is refused (exit 2), never silently re-created — only `init` and `import-django` make
    /// one ([`create_store`](Self::create_store)).
    pub fn store(&mut self) -> CliResult<&mut Store> {
        match self.existing_store()? {
            Ok(store) => Ok(store),
            Err(absent) => Err(no_store_there(&absent)),
        }
    }

    /// The store if it exists; `Ok(Err(..))` says why there is none (for `audit verify`, which
    /// reports a missing or emptied store as a finding). Other failures to open it are errors.
    pub fn existing_store(&mut self) -> CliResult<Result<&mut Store, NoStore>> {
        if self.store.is_none() || self.store_read_only {
            let url = self.config()?.store.clone();
            match Store::open_existing(&url) {
                Ok(store) => {
                    self.store = Some(store);
                    self.store_read_only = false;
                }
                Err(StoreError::NoStore(absent)) => return Ok(Err(absent)),
                Err(e) => return Err(open_failure(&url, e)),
            }
        }
        Ok(Ok(self.store.as_mut().expect("opened just above")))
    }

    /// The store for a command that only reads: opened read-only (nothing created, migrated
    /// or written), so it works on a store the caller may read but not write.
    pub fn read_store(&mut self) -> CliResult<&mut Store> {
        if self.store.is_none() {
            let url = self.config()?.store.clone();
            let store = Store::open_read_only(&url).map_err(|e| match e {
                StoreError::NoStore(absent) => no_store_there(&absent),
                e => open_failure(&url, e),
            })?;
            self.store = Some(store);
            self.store_read_only = true;
        }
        Ok(self.store.as_mut().expect("opened just above"))
    }

    /// Opens the configured store, creating it if there is none: for the commands that make a
    /// store (`init`, `import-django`).
    pub fn create_store(&mut self) -> CliResult<&mut Store> {
        if self.store.is_none() || self.store_read_only {
            let url = self.config()?.store.clone();
            let store = Store::open(&url).map_err(|e| open_failure(&url, e))?;
            self.store = Some(store);
            self.store_read_only = false;
        }
        Ok(self.store.as_mut().expect("opened just above"))
    }

    /// The store if one is configured; `None` for store-less use.
    pub fn store_if_configured(&mut self) -> CliResult<Option<&mut Store>> {
        if self.config.is_none() {
            return Ok(None);
        }
        self.store().map(Some)
    }

    /// The audit log's head, for a new file's header (`None` without a store or entries).
    pub fn audit_anchor(&mut self) -> CliResult<Option<pgseal_core::v2::AuditAnchor>> {
        let Some(store) = self.store_if_configured()? else {
            return Ok(None);
        };
        let head = store.audit_head().map_err(|e| match e {
            StoreError::MalformedAuditHash { seq } => Failure::invalid(format!(
                "the audit log holds a malformed hash at entry {seq}"
            )),
            e => store_failure(e),
        })?;
        let Some((seq, hash)) = head else {
            return Ok(None);
        };
        Ok(Some(pgseal_core::v2::AuditAnchor {
            seq: seq as u64,
            entry_hash: hash.into(),
        }))
    }

    /// Starts the audit entry for this command.
    pub fn audit(&mut self, action: Action) -> &mut Audit {
        self.audit.insert(Audit::new(action))
    }

    /// The audit entry being filled, if the command started one.
    pub fn audit_mut(&mut self) -> Option<&mut Audit> {
        self.audit.as_mut()
    }

    /// The entry that will record how the command ended: the one being filled, or, once that
    /// was written before committing, the copy a later failure is recorded from.
    pub fn outcome_audit_mut(&mut self) -> Option<&mut Audit> {
        self.audit.as_mut().or(self.written_early.as_mut())
    }

    /// Writes the command's audit entry with its outcome. Fail closed: an operation whose entry
    /// cannot be written is reported failed (exit 1), even if it otherwise succeeded.
    pub fn finish(mut self, result: CliResult) -> CliResult {
        let Some(audit) = self.audit.take() else {
            // Its entry was written before it committed, as a success; it failed after all
            // (pg_restore refused the data, a signal stopped it): say so in a second entry.
            if let (Some(mut early), Err(_)) = (self.written_early.take(), &result) {
                early.detail("after_entry_written_before_commit", true);
                let _ = self.record(early, &result);
            }
            return result;
        };
        match (self.record(audit, &result), result) {
            (_, Err(f)) => Err(f),
            (Err(audit_failure), Ok(())) => Err(Failure::new(
                crate::failure::ExitCode::Io,
                format!(
                    "the operation completed but its audit entry could not be written ({}); \
                     treat it as failed",
                    audit_failure.message
                ),
            )),
            (Ok(()), Ok(())) => Ok(()),
        }
    }

    /// Writes this command's audit entry now, as a success, before its output is made final:
    /// if the entry cannot be written, the caller does not commit (decrypted files, restores).
    pub fn audit_before_commit(&mut self) -> CliResult {
        match self.audit.take() {
            Some(audit) => {
                let copy = audit.clone();
                self.record(audit, &Ok(()))?;
                self.written_early = Some(copy);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Writes, now, a separate entry `action` saying the running command has begun something
    /// that cannot be taken back (plaintext streaming out as it verifies), with the command's
    /// who and what so far. Fail closed: if it cannot be written the caller must not begin.
    /// The command's own entry, with the outcome, is still written when it ends.
    pub fn audit_start(&mut self, action: Action) -> CliResult {
        let Some(current) = self.audit.as_ref() else {
            return Ok(());
        };
        let start = Audit {
            action,
            user_id: current.user_id,
            backup_creator_id: current.backup_creator_id,
            backup_file: current.backup_file.clone(),
            signature_valid: None,
            details: current.details.clone(),
        };
        self.record(start, &Ok(()))
    }

    /// Records one operation of a multi-operation command (`backup --all`, `rewrap`) as it ends,
    /// failing it closed: an operation whose entry cannot be written counts as failed.
    pub fn record_outcome<T>(&mut self, audit: Audit, result: CliResult<T>) -> CliResult<T> {
        let outcome = match &result {
            Ok(_) => Ok(()),
            Err(f) => Err(Failure::new(f.code, f.message.clone())),
        };
        match (self.record(audit, &outcome), result) {
            (Err(f), Ok(_)) => Err(f),
            (_, r) => r,
        }
    }

    /// Writes one audit entry now (commands that are several operations, like `backup --all`,
    /// record each as it ends).
    pub fn record(&mut self, mut audit: Audit, result: &CliResult) -> CliResult {
        if self.config.is_none() {
            return Ok(());
        }
        if let Err(f) = result {
            audit.detail("error", f.message.clone());
            audit.detail("exit_code", f.code as i32);
        }
        if result.is_err()
            && let Ok(Err(absent)) = self.existing_store()
        {
            // The command failed for want of its store (that is its error): there is nowhere to
            // record it, and saying so twice helps no one.
            return Err(no_store_there(&absent));
        }
        let written = self.store().and_then(|store| {
            let user_id = match audit.user_id {
                Some(id) => Some(id),
                None => acting_user(store)?.map(|u| u.id),
            };
            let entry = NewAuditEntry {
                action: audit.action.clone(),
                user_id,
                os_user: os_user(),
                backup_creator_id: audit.backup_creator_id,
                backup_file: audit.backup_file.clone(),
                success: result.is_ok(),
                signature_valid: audit.signature_valid,
                timestamp: Timestamp::now(),
                host: host_name(),
                ip_address: Some(ip_address()),
                details: Value::Object(audit.details.clone()).to_string(),
            };
            store
                .append_audit(&entry)
                .map_err(|e| Failure::new(crate::failure::ExitCode::Io, e.to_string()))
        });
        written.map(|_| ()).map_err(|f| {
            eprintln!("pgseal: error: the audit entry could not be written: {f}");
            f
        })
    }
}

/// The pgseal user named by `$PGSEAL_USER`, if set.
pub fn acting_user(store: &mut Store) -> CliResult<Option<User>> {
    match std::env::var("PGSEAL_USER").ok().filter(|v| !v.is_empty()) {
        Some(name) => {
            let name = username(&name).map_err(|f| Failure::usage(format!("PGSEAL_USER: {f}")))?;
            Ok(Some(store.user(&name).map_err(store_failure)?))
        }
        None => Ok(None),
    }
}

/// A user name from outside (the command line, the environment), checked before it is used:
/// an invalid one is a usage error that says what names may hold.
pub fn username(text: &str) -> CliResult<Username> {
    Username::parse(text)
        .map_err(|e| Failure::usage(format!("{e}; {}", pgseal_store::username::RULE)))
}

fn open_failure(url: &pgseal_store::StoreUrl, e: StoreError) -> Failure {
    let code = match e {
        StoreError::BadUrl(_) => crate::failure::ExitCode::Usage,
        _ => crate::failure::ExitCode::Io,
    };
    let hint = match e {
        StoreError::SchemaTooOld { .. } => {
            ": run a command that writes (`pgseal user add`, a backup) with write access to the \
             store first"
        }
        _ => "",
    };
    // `url` displays without its password.
    Failure::new(code, format!("opening the store {url}: {e}{hint}"))
}

/// A configured store that is not there (missing, empty, no schema): the user's to fix.
pub fn no_store_there(absent: &NoStore) -> Failure {
    Failure::usage(no_store_message(absent))
}

/// What is missing where, and what to do about it.
pub fn no_store_message(absent: &NoStore) -> String {
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

pub fn no_store() -> Failure {
    Failure::usage(
        "no pgseal store is configured: run `pgseal init --dir DIR`, or point at one with \
         --config FILE, PGSEAL_CONFIG or --store URL",
    )
}

/// Maps store errors to exit codes — conflicts and missing things are the user's to fix — and
/// adds the command that fixes them, where there is one.
pub fn store_failure(e: pgseal_store::StoreError) -> Failure {
    use pgseal_store::StoreError as E;
    let code = match &e {
        E::Conflict(_)
        | E::NotFound(_)
        | E::UnknownUser(_)
        | E::ActiveServerKeyExists(_)
        | E::ActiveUserKeyExists(_)
        | E::BadUrl(_)
        | E::NoStore(_) => crate::failure::ExitCode::Usage,
        _ => crate::failure::ExitCode::Io,
    };
    let message = match &e {
        E::UnknownUser(name) => format!("{e}; add one with `pgseal user add {name}`"),
        E::ActiveServerKeyExists(_) => {
            format!("{e}; rotate it with `pgseal server-key rotate`")
        }
        E::ActiveUserKeyExists(_) => format!("{e}; rotate it with `pgseal user-key rotate`"),
        E::NoStore(absent) => no_store_message(absent),
        _ => e.to_string(),
    };
    Failure::new(code, message)
}

pub fn os_user() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
}

pub fn host_name() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
        .filter(|h| !h.is_empty())
}

/// The SSH client's address in an SSH session, else this host's first non-loopback address.
pub fn ip_address() -> String {
    for var in ["SSH_CONNECTION", "SSH_CLIENT"] {
        if let Some(ip) = std::env::var(var)
            .ok()
            .and_then(|v| v.split_whitespace().next().map(str::to_owned))
            .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        {
            return ip;
        }
    }
    let mut v6 = None;
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let Some(addr) = a.address else { continue };
            if let Some(sin) = addr.as_sockaddr_in() {
                let ip = sin.ip();
                if !ip.is_loopback() {
                    return ip.to_string();
                }
            } else if let Some(sin6) = addr.as_sockaddr_in6() {
                let ip = sin6.ip();
                if !ip.is_loopback() && v6.is_none() {
                    v6 = Some(ip.to_string());
                }
            }
        }
    }
    v6.unwrap_or_else(|| "127.0.0.1".into())
}

/// JSON for an optional value.
pub fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map_or(Value::Null, Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::ExitCode;
    use pgseal_core::Fingerprint;
    use pgseal_store::StoreUrl;

    /// The store says what is wrong; the CLI adds the command that fixes it, so the messages
    /// read as they always have.
    #[test]
    fn store_errors_get_the_command_that_fixes_them() {
        let carol = Username::parse("carol").unwrap();
        let f = store_failure(StoreError::UnknownUser(carol));
        assert_eq!(f.code, ExitCode::Usage);
        assert_eq!(
            f.message,
            "no user named carol; add one with `pgseal user add carol`"
        );

        let fp = Fingerprint::from_bytes([1; 32]);
        let f = store_failure(StoreError::ActiveServerKeyExists(fp));
        assert_eq!(f.code, ExitCode::Usage);
        assert_eq!(
            f.message,
            format!(
                "an active server key already exists ({fp}); rotate it with `pgseal server-key rotate`"
            )
        );
        let f = store_failure(StoreError::ActiveUserKeyExists(fp));
        assert_eq!(f.code, ExitCode::Usage);
        assert_eq!(
            f.message,
            format!(
                "the user already has an active key ({fp}); rotate it with `pgseal user-key rotate`"
            )
        );
    }

    #[test]
    fn a_missing_store_says_how_to_make_or_find_one() {
        let absent = |reason| NoStore {
            store: "sqlite:/srv/pgseal/pgseal.db".into(),
            reason,
        };
        let missing = absent(NoStoreReason::Missing);
        let expected = "no store file at sqlite:/srv/pgseal/pgseal.db: pgseal never creates a \
                        store by accident; `pgseal init` makes a new site, or point --store (or \
                        the config) at the existing store";
        assert_eq!(no_store_there(&missing).message, expected);
        let f = store_failure(StoreError::NoStore(missing));
        assert_eq!((f.code, f.message.as_str()), (ExitCode::Usage, expected));
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
        let f = open_failure(&url, StoreError::SchemaTooOld { found: 2, known: 3 });
        assert_eq!(f.code, ExitCode::Io);
        assert_eq!(
            f.message,
            "opening the store sqlite:/srv/pgseal/pgseal.db: the store's schema is version 2, \
             older than this pgseal's (3); reading does not upgrade it: run a command that writes \
             (`pgseal user add`, a backup) with write access to the store first"
        );
    }
}
