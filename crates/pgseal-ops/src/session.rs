//! What every operation runs with: the site (where its store and files are), the store (opened
//! on first use), who is acting, and the audit entry the operation fills in as it learns who,
//! what and how it went.
//!
//! The entry is written when the operation ends, whatever the outcome — failures (a wrong
//! password, a bad signature, a missing key) are recorded like successes — and an operation
//! whose entry cannot be written has failed (fail closed). Without a site (store-less use with
//! key files only) there is nowhere to write, and nothing is recorded.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use pgseal_core::time::Timestamp;
use pgseal_store::{Action, NewAuditEntry, NoStore, Store, StoreError, StoreUrl, User, Username};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::observe::Observer;

/// A pgseal site: its store and the places its files live, as the front end configured them.
#[derive(Debug, Clone)]
pub struct Site {
    /// The store.
    pub store: StoreUrl,
    /// Where backups are written when no repository URL is given (a local repository).
    pub backup_dir: PathBuf,
    /// The repository the front end chose, as a URL (`file:///DIR`, `s3://BUCKET/PREFIX`);
    /// `None`: the backup directory.
    pub repository: Option<String>,
    /// Where users' private keys are written and looked for (`NAME.key.pem`).
    pub user_keys_dir: PathBuf,
    /// Where exported server public keys go.
    pub server_keys_dir: PathBuf,
    /// Whether a caller may waive signature checks (`false` refuses every waiver).
    pub signature_required: bool,
    /// The RSA key size of new keys, in bits.
    pub rsa_key_size: u32,
    /// Whether new server keys get an ML-KEM-768 half (hybrid, FORMAT.md §6a).
    pub pq_keys: bool,
    /// How long backups are kept by default, in days.
    pub retention_days: u32,
}

/// Who is acting, as the front end knows it: recorded in every audit entry.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// The pgseal user acting (the CLI: `$PGSEAL_USER`; the custody service: the user whose key
    /// signed the request). An operation that knows better (the creator of a backup) says so
    /// in its entry.
    pub user: Option<Username>,
    /// The operating-system account.
    pub os_user: Option<String>,
    /// The host the operation runs on.
    pub host: Option<String>,
    /// Where the request came from (an SSH client's address, a TLS peer), else this host's.
    pub address: Option<String>,
}

/// The audit entry of an operation, filled in as it goes.
#[derive(Debug, Clone)]
pub struct Operation {
    /// What was done.
    pub action: Action,
    /// The pgseal user acting, when the operation knows it better than the [`Actor`].
    pub user_id: Option<i64>,
    /// The creator of the backup concerned.
    pub backup_creator_id: Option<i64>,
    /// The backup concerned.
    pub backup_file: Option<String>,
    /// Whether a signature was checked and held (`Some(false)`: it did not).
    pub signature_valid: Option<bool>,
    /// Everything else worth recording.
    pub details: Map<String, Value>,
    /// The address the request came from, when the operation serves one from elsewhere (the
    /// key-custody service); else the [`Actor`]'s.
    pub address: Option<String>,
    /// When the operation began ([`Operation::new`]): its entry records the time from then to
    /// the moment it is written as the detail `duration_ms`.
    pub started: Instant,
}

impl Operation {
    /// An entry for `action`.
    pub fn new(action: Action) -> Self {
        Operation {
            action,
            user_id: None,
            backup_creator_id: None,
            backup_file: None,
            signature_valid: None,
            details: Map::new(),
            address: None,
            started: Instant::now(),
        }
    }

    /// Records a detail.
    pub fn detail(&mut self, key: &str, value: impl Into<Value>) {
        self.details.insert(key.to_owned(), value.into());
    }
}

/// How a failure is recorded in its audit entry: the message and the front end's code for it
/// (the CLI's exit code), so the log says what the user was told.
pub type Describe = fn(&Error) -> (String, i32);

/// An operation's context (see the module docs).
pub struct Session {
    site: Option<Site>,
    actor: Actor,
    observer: Arc<dyn Observer>,
    describe: Describe,
    store: Option<Store>,
    /// Whether `store` was opened read-only ([`Session::read_store`]).
    store_read_only: bool,
    audit: Option<Operation>,
    /// The entry [`Session::audit_before_commit`] wrote, kept in case the operation then fails.
    written_early: Option<Operation>,
    /// Where scratch files go (unnamed where the system allows; never plaintext but the
    /// private archive a parallel restore needs).
    scratch_dir: PathBuf,
    /// Access to object stores, when the front end configured it.
    s3: Option<Arc<crate::repo::S3Access>>,
    /// The key-custody service that holds the server keys, when the front end named one.
    custody: Option<Arc<crate::custody::CustodyClient>>,
    /// The `seq` of the last audit entry this session wrote.
    last_written: Option<i64>,
}

impl Session {
    /// A session on `site` (`None`: store-less), acting as `actor`, reporting to `observer`,
    /// recording failures as `describe` says them.
    pub fn new(
        site: Option<Site>,
        actor: Actor,
        observer: Arc<dyn Observer>,
        describe: Describe,
    ) -> Self {
        Session {
            site,
            actor,
            observer,
            describe,
            store: None,
            store_read_only: false,
            audit: None,
            written_early: None,
            scratch_dir: PathBuf::from("/tmp"),
            s3: None,
            custody: None,
            last_written: None,
        }
    }

    /// Gives the session access to object stores through a connection already made:
    /// `s3:` locations are then within reach ([`crate::repo::reach`]).
    pub fn with_s3(self, connection: Arc<crate::repo::s3::S3Connection>) -> Self {
        self.with_s3_access(crate::repo::S3Access::ready(connection))
    }

    /// Gives the session access to object stores through `access` (the CLI's makes its
    /// connection from the AWS configuration the first time an `s3:` location is reached).
    pub fn with_s3_access(mut self, access: Arc<crate::repo::S3Access>) -> Self {
        self.s3 = Some(access);
        self
    }

    /// Access to object stores, if the front end gave it.
    pub fn s3(&self) -> Option<&Arc<crate::repo::S3Access>> {
        self.s3.as_ref()
    }

    /// Has the key-custody service `client` reaches open files in place of the stored server
    /// keys: decrypt, restore, verify's decryption check and rewrap then never need the server
    /// password.
    pub fn with_custody(mut self, client: Arc<crate::custody::CustodyClient>) -> Self {
        self.custody = Some(client);
        self
    }

    /// Sets the key-custody service (see [`with_custody`](Self::with_custody)).
    pub fn set_custody(&mut self, client: Arc<crate::custody::CustodyClient>) {
        self.custody = Some(client);
    }

    /// The `seq` of the last audit entry this session wrote, if it wrote one.
    pub fn last_written(&self) -> Option<i64> {
        self.last_written
    }

    /// The key-custody service, if the front end named one.
    pub fn custody(&self) -> Option<&Arc<crate::custody::CustodyClient>> {
        self.custody.as_ref()
    }

    /// Sets where scratch files go (the CLI: the system's temporary directory, `$TMPDIR`).
    pub fn with_scratch_dir(mut self, dir: PathBuf) -> Self {
        self.scratch_dir = dir;
        self
    }

    /// Where scratch files go.
    pub fn scratch_dir(&self) -> &std::path::Path {
        &self.scratch_dir
    }

    /// The site, if there is one.
    pub fn site_opt(&self) -> Option<&Site> {
        self.site.as_ref()
    }

    /// The site, or [`Error::NoSite`].
    pub fn site(&self) -> Result<&Site> {
        self.site.as_ref().ok_or(Error::NoSite)
    }

    /// Replaces the site (a new one was just made).
    pub fn set_site(&mut self, site: Site) {
        self.site = Some(site);
        self.store = None;
    }

    /// Who is acting.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// Where the operation reports warnings and progress.
    pub fn observer(&self) -> &Arc<dyn Observer> {
        &self.observer
    }

    /// The store, opened and migrated on first use (reopened for writing if a read-only
    /// operation opened it first). It must exist: a missing, empty (0-byte) or schema-less
    /// store is refused, never silently re-created — only making a site creates one
    /// ([`create_store`](Self::create_store)).
    pub fn store(&mut self) -> Result<&mut Store> {
        match self.existing_store()? {
            Ok(store) => Ok(store),
            Err(absent) => Err(StoreError::NoStore(absent).into()),
        }
    }

    /// The store if it exists; `Ok(Err(..))` says why there is none (for `audit verify`, which
    /// reports a missing or emptied store as a finding). Other failures to open it are errors.
    pub fn existing_store(&mut self) -> Result<std::result::Result<&mut Store, NoStore>> {
        if self.store.is_none() || self.store_read_only {
            let url = self.site()?.store.clone();
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

    /// The store for an operation that only reads: opened read-only (nothing created, migrated
    /// or written), so it works on a store the caller may read but not write.
    pub fn read_store(&mut self) -> Result<&mut Store> {
        if self.store.is_none() {
            let url = self.site()?.store.clone();
            let store = Store::open_read_only(&url).map_err(|e| match e {
                StoreError::NoStore(absent) => StoreError::NoStore(absent).into(),
                e => open_failure(&url, e),
            })?;
            self.store = Some(store);
            self.store_read_only = true;
        }
        Ok(self.store.as_mut().expect("opened just above"))
    }

    /// Opens the site's store, creating it if there is none: for the operations that make a
    /// store (making a site, importing the legacy system).
    pub fn create_store(&mut self) -> Result<&mut Store> {
        if self.store.is_none() || self.store_read_only {
            let url = self.site()?.store.clone();
            let store = Store::open(&url).map_err(|e| open_failure(&url, e))?;
            self.store = Some(store);
            self.store_read_only = false;
        }
        Ok(self.store.as_mut().expect("opened just above"))
    }

    /// The store if there is a site; `None` for store-less use.
    pub fn store_if_configured(&mut self) -> Result<Option<&mut Store>> {
        if self.site.is_none() {
            return Ok(None);
        }
        self.store().map(Some)
    }

    /// The audit log's head, for a new file's header (`None` without a store or entries).
    pub fn audit_anchor(&mut self) -> Result<Option<pgseal_core::v2::AuditAnchor>> {
        let Some(store) = self.store_if_configured()? else {
            return Ok(None);
        };
        let head = store.audit_head().map_err(|e| match e {
            StoreError::MalformedAuditHash { seq } => Error::invalid(format!(
                "the audit log holds a malformed hash at entry {seq}"
            )),
            e => e.into(),
        })?;
        let Some((seq, hash)) = head else {
            return Ok(None);
        };
        Ok(Some(pgseal_core::v2::AuditAnchor {
            seq: seq as u64,
            entry_hash: hash.into(),
        }))
    }

    /// Starts the audit entry for this operation.
    pub fn audit(&mut self, action: Action) -> &mut Operation {
        self.audit.insert(Operation::new(action))
    }

    /// The audit entry being filled, if the operation started one.
    pub fn audit_mut(&mut self) -> Option<&mut Operation> {
        self.audit.as_mut()
    }

    /// The entry that will record how the operation ended: the one being filled, or, once that
    /// was written before committing, the copy a later failure is recorded from.
    pub fn outcome_audit_mut(&mut self) -> Option<&mut Operation> {
        self.audit.as_mut().or(self.written_early.as_mut())
    }

    /// Writes the operation's audit entry with its outcome. Fail closed: an operation whose
    /// entry cannot be written is reported failed ([`Error::Unaudited`]), even if it otherwise
    /// succeeded.
    /// The operation ends here: a later one in the same session starts afresh (`restore
    /// --check --latest` finishes one restore per database).
    pub fn finish(&mut self, result: Result<()>) -> Result<()> {
        let early = self.written_early.take();
        let Some(audit) = self.audit.take() else {
            // Its entry was written before it committed, as a success; it failed after all
            // (pg_restore refused the data, a signal stopped it): say so in a second entry.
            if let (Some(mut early), Err(_)) = (early, &result) {
                early.detail("after_entry_written_before_commit", true);
                let _ = self.record(early, result.as_ref().err());
            }
            return result;
        };
        match (self.record(audit, result.as_ref().err()), result) {
            (_, Err(f)) => Err(f),
            (Err(audit_failure), Ok(())) => Err(Error::Unaudited(Box::new(audit_failure))),
            (Ok(()), Ok(())) => Ok(()),
        }
    }

    /// Writes this operation's audit entry now, as a success, before its output is made final:
    /// if the entry cannot be written, the caller does not commit (decrypted files, restores).
    pub fn audit_before_commit(&mut self) -> Result<()> {
        match self.audit.take() {
            Some(audit) => {
                let copy = audit.clone();
                self.record(audit, None)?;
                self.written_early = Some(copy);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Writes, now, a separate entry `action` saying the running operation has begun something
    /// that cannot be taken back (plaintext streaming out as it verifies), with the operation's
    /// who and what so far. Fail closed: if it cannot be written the caller must not begin.
    /// The operation's own entry, with the outcome, is still written when it ends.
    pub fn audit_start(&mut self, action: Action) -> Result<()> {
        let Some(current) = self.audit.as_ref() else {
            return Ok(());
        };
        let start = Operation {
            action,
            user_id: current.user_id,
            backup_creator_id: current.backup_creator_id,
            backup_file: current.backup_file.clone(),
            signature_valid: None,
            details: current.details.clone(),
            address: current.address.clone(),
            started: current.started,
        };
        self.record(start, None)
    }

    /// Records one operation of several (`backup --all`, `rewrap`) as it ends, failing it
    /// closed: an operation whose entry cannot be written counts as failed.
    pub fn record_outcome<T>(&mut self, audit: Operation, result: Result<T>) -> Result<T> {
        match (self.record(audit, result.as_ref().err()), result) {
            (Err(f), Ok(_)) => Err(f),
            (_, r) => r,
        }
    }

    /// Writes one audit entry now, for an operation that failed with `failure` or succeeded.
    pub fn record(&mut self, mut audit: Operation, failure: Option<&Error>) -> Result<()> {
        if self.site.is_none() {
            return Ok(());
        }
        // From the operation's start to now, whatever it was (`pgseal status` shows a backup's).
        let elapsed = u64::try_from(audit.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        audit.detail("duration_ms", elapsed);
        if let Some(f) = failure {
            let (message, code) = (self.describe)(f);
            audit.detail("error", message);
            audit.detail("exit_code", code);
        }
        if failure.is_some()
            && let Ok(Err(absent)) = self.existing_store()
        {
            // The operation failed for want of its store (that is its error): there is nowhere
            // to record it, and saying so twice helps no one.
            return Err(StoreError::NoStore(absent).into());
        }
        let actor = self.actor.clone();
        let written = self.store().and_then(|store| {
            let user_id = match audit.user_id {
                Some(id) => Some(id),
                None => acting_user(store, &actor)?.map(|u| u.id),
            };
            let entry = NewAuditEntry {
                action: audit.action.clone(),
                user_id,
                os_user: actor.os_user.clone(),
                backup_creator_id: audit.backup_creator_id,
                backup_file: audit.backup_file.clone(),
                success: failure.is_none(),
                signature_valid: audit.signature_valid,
                timestamp: Timestamp::now(),
                host: actor.host.clone(),
                ip_address: audit.address.clone().or_else(|| actor.address.clone()),
                details: Value::Object(audit.details.clone()).to_string(),
            };
            store.append_audit(&entry).map_err(Error::AuditUnwritable)
        });
        if let Ok(seq) = &written {
            self.last_written = Some(*seq);
        }
        written.map(|_| ()).inspect_err(|f| {
            self.observer
                .error(&format!("the audit entry could not be written: {f}"));
        })
    }
}

/// The acting pgseal user's record, if the actor names one.
pub fn acting_user(store: &mut Store, actor: &Actor) -> Result<Option<User>> {
    match &actor.user {
        Some(name) => Ok(Some(store.user(name)?)),
        None => Ok(None),
    }
}

fn open_failure(url: &StoreUrl, e: StoreError) -> Error {
    Error::OpenStore {
        // Displays without its password.
        url: url.to_string(),
        source: e,
    }
}
