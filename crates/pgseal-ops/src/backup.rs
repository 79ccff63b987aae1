//! Backups: pg_dump → zstd → encrypt + sign → a new object in the repository (locally: an
//! unnamed file in the backup directory → fsync → linked under its final name) → its location
//! catalogued. No plaintext ever touches the disk: the dump only ever exists in a pipe and in
//! memory, a chunk at a time, and a failed dump leaves no object.
//!
//! One database ([`backup`]) or every database but the excluded ones ([`backup_all`]), each
//! its own audited operation, going on past failures; `backup_all` then seals the cluster's
//! globals ([`crate::globals`]: roles, memberships, tablespaces, and the shells — owner,
//! settings, grants — of the databases it backed up) through the same path, as one more backup
//! catalogued under [`crate::globals::NAME`]. The active server key is looked up for every
//! backup, so a long run picks up a rotation and never encrypts to a retired key.

use std::io::Read;
use std::path::Path;

use pgseal_core::PrivateKey;
use pgseal_core::time::Timestamp;
use pgseal_core::v2::{self, Compression, Metadata, SealParams};
use pgseal_store::{Action, BackupRecord, NewBackup, User, Username};

use crate::encrypt::zstd_workers;
use crate::error::{Error, ErrorKind, Result};
use crate::globals;
use crate::keys;
use crate::observe::{CountingReader, CountingWriter, Progress};
use crate::pgtools::{PgTools, Running, Target};
use crate::repo::Repository;
use crate::secret::Secret;
use crate::session::{Operation, Session};
use crate::show;

/// The databases a backup of every database skips when the caller names none to exclude.
pub const DEFAULT_EXCLUDES: [&str; 3] = ["template0", "template1", "postgres"];

/// Who makes a backup and how: what every backup of one run shares.
pub struct Backup<'a> {
    /// The pgseal user making the backup, as given (checked here, so a bad name is refused
    /// and, for one database, audited); signs with their active key.
    pub creator: &'a str,
    /// Their private key file, if not in the site's user keys directory.
    pub sign_key: Option<&'a Path>,
    /// Unlocks it.
    pub creator_password: &'a dyn Secret,
    /// pg_dump and psql.
    pub tools: &'a PgTools,
    /// Where the backup goes.
    pub repository: &'a dyn Repository,
    /// Dump only these schemas (none: all).
    pub schemas: &'a [String],
    /// The host to record as the dump's source (the front end knows it: the CLI takes
    /// `PGHOST` when it names a host, else this host's name).
    pub source_host: Option<String>,
    /// After a run, discard the repository's unfinished writes (a killed backup's incomplete
    /// upload) older than this ([`crate::cleanup::sweep`]); `None`: leave them.
    pub sweep_older_than: Option<std::time::Duration>,
}

/// The database one backup dumps.
#[derive(Debug, Clone)]
pub enum Source {
    /// A database by name (host, port and user from the tools' libpq environment): only ever
    /// a name, whatever it looks like.
    Name(String),
    /// A connection string or URI, as the user gave it.
    Conninfo {
        /// The connection string.
        conninfo: String,
        /// The database's name to record; `None`: asked of the server (`current_database()`).
        name: Option<String>,
    },
}

/// Which databases a backup of every database takes: all but templates and the excluded ones.
#[derive(Debug, Clone, Copy)]
pub struct All<'a> {
    /// Where to list them (and connect for each, database replaced); `None`: the `postgres`
    /// database through the libpq environment.
    pub conninfo: Option<&'a str>,
    /// Databases to skip; empty: [`DEFAULT_EXCLUDES`].
    pub excludes: &'a [String],
    /// Keep the roles' passwords (their hashes) in the globals backup; without it pg_dumpall
    /// runs with `--no-role-passwords`.
    pub with_role_passwords: bool,
}

/// What a backup of every database did, database by database, in name order, and then the
/// cluster's globals.
#[derive(Debug)]
pub struct AllReport {
    /// Each database and its backup, or why it failed (reported and audited on its own); the
    /// last entry is the globals' ([`crate::globals::NAME`]).
    pub results: Vec<(String, Result<BackupRecord>)>,
}

impl AllReport {
    /// How many backups failed.
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|(_, r)| r.is_err()).count()
    }

    /// The run's verdict: it fails ([`Error::Several`], a database kind) if any backup failed.
    pub fn result(&self) -> Result<()> {
        match self.failed() {
            0 => Ok(()),
            failed => Err(Error::Several {
                failed,
                total: self.results.len(),
                what: "backups failed",
                kind: ErrorKind::Database,
            }),
        }
    }
}

/// Backs up one database, audited as `BACKUP`; returns its catalog entry.
pub fn backup(session: &mut Session, request: &Backup<'_>, source: Source) -> Result<BackupRecord> {
    let audit = session.audit(Action::Backup);
    audit.detail("user", request.creator.to_owned());
    // Named now, so that a failure before the dump starts is still that database's.
    if let Source::Name(name) = &source {
        audit.detail("database", name.clone());
    }
    let (key, user, _) = creator(session, request)?;
    let job = Job {
        request,
        key: &key,
        user: &user,
    };
    let (target, name) = match source {
        Source::Name(name) => (Target::Name(name.clone()), name),
        Source::Conninfo { conninfo, name } => {
            let target = Target::Conninfo(conninfo);
            let name = match name {
                Some(name) => name,
                None => current_database(request.tools, &target)?,
            };
            if let Some(a) = session.audit_mut() {
                a.detail("database", name.clone());
            }
            (target, name)
        }
    };
    let record = job.backup(session, Payload::Database(&target), &name)?;
    if let Some(age) = request.sweep_older_than {
        crate::cleanup::sweep(session, request.repository, age);
    }
    Ok(record)
}

/// Backs up every database but templates and the excluded ones, each its own operation with
/// its own audit entry, going on past failures (each said to the observer as it happens), then
/// the cluster's globals with the shells of the databases backed up (one more operation, its
/// audit entry's `globals` detail true). Fails only if none is left to back up or the creator's
/// key cannot be had; the backups' own failures, the globals' included, are in the report
/// ([`AllReport::result`]), and a failed one takes nothing from the others.
pub fn backup_all(session: &mut Session, request: &Backup<'_>, all: All<'_>) -> Result<AllReport> {
    let (key, user, acting) = creator(session, request)?;
    let job = Job {
        request,
        key: &key,
        user: &user,
    };
    let maintenance = match all.conninfo {
        Some(conn) => Target::Conninfo(conn.to_owned()),
        None => Target::Name("postgres".into()),
    };
    let excludes: Vec<String> = if all.excludes.is_empty() {
        DEFAULT_EXCLUDES.iter().map(|s| (*s).to_owned()).collect()
    } else {
        all.excludes.to_vec()
    };
    let databases: Vec<String> = request
        .tools
        .databases(&maintenance)?
        .into_iter()
        .filter(|d| !excludes.contains(d))
        .collect();
    if databases.is_empty() {
        return Err(Error::usage("no databases to back up (all excluded?)"));
    }
    let mut results = Vec::new();
    for db in databases {
        let mut audit = Operation {
            user_id: acting,
            ..Operation::new(Action::Backup)
        };
        audit.detail("user", request.creator.to_owned());
        audit.detail("database", db.clone());
        let target = maintenance.with_database(&db);
        let result = job.backup(session, Payload::Database(&target), &db);
        if let Ok(r) = &result {
            audit.backup_file = Some(r.entry.location.shown());
            crate::copy::record_backup(Some(&mut audit), r);
        }
        let result = session.record_outcome(audit, result);
        if let Err(f) = &result {
            session
                .observer()
                .failed(&format!("backup of {}", show::name(&db)), f);
        }
        results.push((db, result));
    }
    let backed_up: Vec<&str> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(db, _)| db.as_str())
        .collect();
    // PostgreSQL's tools refuse to write a `\connect` to a name holding a line break (pg_dump
    // and pg_restore: "shell command argument contains a newline or carriage return"), so such
    // a database can have no shell in the globals: its backup restores with --create.
    let (backed_up, unshelled): (Vec<&str>, Vec<&str>) = backed_up
        .into_iter()
        .partition(|db| !db.contains(['\n', '\r']));
    for db in &unshelled {
        session.observer().warn(&format!(
            "the name of database {} holds a line break, which PostgreSQL's tools cannot \
             write in a \\connect: its owner, grants and settings are not in the cluster's \
             globals (restore its backup with --create, then set them)",
            show::name(db)
        ));
    }
    let mut audit = Operation {
        user_id: acting,
        ..Operation::new(Action::Backup)
    };
    audit.detail("user", request.creator.to_owned());
    audit.detail("database", globals::NAME);
    audit.detail("globals", true);
    audit.detail("role_passwords", all.with_role_passwords);
    audit.detail("database_shells", backed_up.clone());
    if !unshelled.is_empty() {
        audit.detail("databases_without_shell", unshelled.clone());
    }
    let result = globals_script(
        request.tools,
        &maintenance,
        &backed_up,
        all.with_role_passwords,
    )
    .and_then(|script| job.backup(session, Payload::Globals(script), globals::NAME));
    if let Ok(r) = &result {
        audit.backup_file = Some(r.entry.location.shown());
    }
    let result = session.record_outcome(audit, result);
    if let Err(f) = &result {
        session
            .observer()
            .failed("backup of the cluster's globals", f);
    }
    results.push((globals::NAME.to_owned(), result));
    if let Some(age) = request.sweep_older_than {
        crate::cleanup::sweep(session, request.repository, age);
    }
    Ok(AllReport { results })
}

/// The globals script: pg_dumpall's, then the shell of each database in `databases`.
fn globals_script(
    tools: &PgTools,
    maintenance: &Target,
    databases: &[&str],
    with_role_passwords: bool,
) -> Result<Vec<u8>> {
    let mut script = tools.globals(maintenance, with_role_passwords)?;
    for db in databases {
        let shell = tools
            .database_shell(&maintenance.with_database(db))
            .map_err(|e| {
                let message = format!("the shell of database {}: {e}", show::name(db));
                e.context(message)
            })?;
        script.extend_from_slice(b"\n");
        script.extend_from_slice(&shell);
    }
    Ok(script)
}

/// What one backup seals.
enum Payload<'t> {
    /// pg_dump's archive of a database.
    Database(&'t Target),
    /// A cluster's globals script, made beforehand ([`globals_script`]).
    Globals(Vec<u8>),
}

/// The creator's signing key and record, and the id whatever fails from here on is audited
/// under (the user who ran the backup, when the store knows them).
fn creator(session: &mut Session, request: &Backup<'_>) -> Result<(PrivateKey, User, Option<i64>)> {
    let name = Username::parse(request.creator)
        .map_err(|e| Error::usage(format!("{e}; {}", pgseal_store::username::RULE)))?;
    let acting = session.store()?.user(&name).ok().map(|u| u.id);
    if let Some(a) = session.audit_mut() {
        a.user_id = acting;
    }
    let (key, user) =
        keys::signing_key_for_user(session, &name, request.sign_key, request.creator_password)?;
    Ok((key, user, acting))
}

/// What every backup of one run shares.
struct Job<'a> {
    request: &'a Backup<'a>,
    key: &'a PrivateKey,
    user: &'a User,
}

impl Job<'_> {
    /// One database (or the globals) into a new object, catalogued; fills the session's audit
    /// entry, if one is being filled (one database), with what was made.
    fn backup(
        &self,
        session: &mut Session,
        payload: Payload<'_>,
        database: &str,
    ) -> Result<BackupRecord> {
        let request = self.request;
        let (format, stem) = match &payload {
            Payload::Database(_) => {
                globals::check_database_name(database)?;
                (globals::DATABASE_FORMAT, database)
            }
            Payload::Globals(_) => (globals::FORMAT, "cluster-globals"),
        };
        // Looked up for every backup, so a long run picks up a rotation.
        let (server, server_key) = keys::active_server_key(session)?;
        let recipients = [server_key];
        let created = Timestamp::now();
        let mut object = request.repository.create(&file_name(stem, created))?;

        let mut params = SealParams::new(self.key, &recipients);
        params.compression = Compression::Zstd;
        params.zstd_workers = zstd_workers();
        params.metadata = Metadata {
            created_at_ms: created.millis() as u64,
            creator_user_id: Some(self.user.id as u64),
            creator_username: Some(self.user.username.to_string()),
            source_database: Some(database.to_owned()),
            source_host: request.source_host.clone(),
            dump_format: Some(format.into()),
            audit_anchor: session.audit_anchor()?,
            ..Metadata::now()
        };

        let progress = Progress::default();
        let shown = session
            .observer()
            .transfer(&show::name(database), &progress);
        let (mut dump, input): (Option<Running>, Box<dyn Read + Send>) = match payload {
            Payload::Database(target) => {
                let mut dump = request.tools.dump(target, request.schemas)?;
                let stdout = dump.stdout.take().expect("pg_dump's stdout is piped");
                (Some(dump), Box::new(stdout))
            }
            Payload::Globals(script) => (None, Box::new(std::io::Cursor::new(script))),
        };
        let sealed = v2::seal(
            CountingReader {
                inner: input,
                counter: progress.read.clone(),
            },
            CountingWriter {
                inner: &mut object,
                counter: progress.written.clone(),
            },
            &params,
        );
        drop(shown);
        let summary = match sealed {
            Ok(s) => s,
            Err(e) => {
                if let Some(dump) = dump.take() {
                    dump.abort();
                }
                return Err(e.into());
            }
        };
        // pg_dump's verdict decides: a failed dump leaves no object (dropping it abandons it).
        if let Some(dump) = dump {
            dump.wait()?;
        }
        let location = object.commit()?;
        let record = session
            .store()?
            .add_backup(&NewBackup {
                database: database.to_owned(),
                location: location.clone(),
                size_bytes: summary.output_bytes as i64,
                created_at: created,
                creator_user_id: Some(self.user.id),
                creator_key: self.key.fingerprint(),
                server_keys: summary.recipients.clone(),
                format_version: v2::VERSION as i64,
                ciphertext_blake3: Some(summary.ciphertext_digest.into()),
            })
            .map_err(|e| {
                let message = format!(
                    "the backup was written to {} but could not be catalogued: {e}",
                    location.shown()
                );
                Error::from(e).context(message)
            })?;
        if let Some(a) = session.audit_mut() {
            a.user_id = Some(self.user.id);
            a.backup_creator_id = Some(self.user.id);
            a.backup_file = Some(record.entry.location.shown());
            a.detail("database", database.to_owned());
            a.detail("backup_id", record.id);
            a.detail("dump_bytes", summary.input_bytes);
            a.detail("file_bytes", summary.output_bytes);
            a.detail("server_key", server.to_string());
        }
        Ok(record)
    }
}

/// A backup's object name: `{db}_{UTC yyyymmddTHHMMSS.mmmZ}.pgseal`, every character of the
/// database's name that is not a letter, a digit, `-`, `_` or `.` replaced by `_`.
pub fn file_name(database: &str, at: Timestamp) -> String {
    let safe: String = database
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let stamp: String = at
        .rfc3339()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{safe}_{stamp}.pgseal")
}

/// The database a connection string leads to, as the server names it.
fn current_database(tools: &PgTools, target: &Target) -> Result<String> {
    tools
        .rows(target, "SELECT current_database();", 1)?
        .into_iter()
        .flatten()
        .next()
        .ok_or_else(|| Error::invalid("psql did not say which database it connected to"))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use pgseal_core::Fingerprint;
    use pgseal_store::{Store, StoreUrl};
    use pgseal_testkit::TestCluster;

    use super::*;
    use crate::observe::Observer;
    use crate::repo::local::LocalRepository;
    use crate::testsite::{HOST, TestSite, key, new_server_key, password};

    /// Records what a run reports, and rotates the site's server key (through a store handle
    /// of its own, as another process would) when the first transfer starts.
    struct Rotating {
        /// The site's store, once there is one.
        store: Mutex<Option<StoreUrl>>,
        rotated_to: Mutex<Option<Fingerprint>>,
        transfers: Mutex<Vec<String>>,
        failed: Mutex<Vec<String>>,
    }

    impl Observer for Rotating {
        fn warn(&self, _message: &str) {}

        fn transfer(&self, label: &str, _progress: &Progress) -> Box<dyn Send> {
            self.transfers.lock().unwrap().push(label.to_owned());
            let mut rotated = self.rotated_to.lock().unwrap();
            if rotated.is_none() {
                let url = self.store.lock().unwrap().clone().unwrap();
                let mut store = Store::open(&url).unwrap();
                let active = store.active_server_key().unwrap().unwrap();
                let kept = [(active.id, active.private_key_pem.clone())];
                let new = key();
                store
                    .rotate_server_key(active.id, &kept, &new_server_key(&new))
                    .unwrap();
                *rotated = Some(new.fingerprint());
            }
            Box::new(())
        }

        fn failed(&self, what: &str, _error: &Error) {
            self.failed.lock().unwrap().push(what.to_owned());
        }
    }

    /// Through the operations' API on a cluster of its own: every database but the templates
    /// and `postgres` is backed up as its own audited operation, past one that refuses
    /// connections; and a rotation during the run reaches the databases after it.
    #[test]
    fn backup_all_goes_past_failures_and_picks_up_a_rotation() {
        let cluster = TestCluster::start().unwrap();
        for db in ["a_first", "b_closed", "c_last"] {
            cluster
                .psql("postgres", &format!("CREATE DATABASE {db};"))
                .unwrap();
        }
        cluster
            .psql("a_first", "CREATE TABLE t AS SELECT 1 AS x;")
            .unwrap();
        cluster
            .psql(
                "postgres",
                "ALTER DATABASE b_closed ALLOW_CONNECTIONS false;",
            )
            .unwrap();
        let observer = Arc::new(Rotating {
            store: Mutex::new(None),
            rotated_to: Mutex::new(None),
            transfers: Mutex::new(Vec::new()),
            failed: Mutex::new(Vec::new()),
        });
        let mut t = TestSite::observed(observer.clone());
        *observer.store.lock().unwrap() = Some(t.site.store.clone());
        let first_key = t.server.fingerprint();
        let tools = PgTools {
            bin: cluster.bin_dir().to_path_buf(),
            setpriv: None,
            scrub: Vec::new(),
            env: cluster
                .env()
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            observer: observer.clone(),
        };
        let repository = LocalRepository::create_dir(&t.site.backup_dir, HOST).unwrap();
        let pw = password();
        let request = Backup {
            creator: "system_backup",
            sign_key: None,
            creator_password: &pw,
            tools: &tools,
            repository: &repository,
            schemas: &[],
            source_host: Some("db.example".into()),
            sweep_older_than: None,
        };
        let all = All {
            conninfo: None,
            excludes: &[],
            with_role_passwords: false,
        };
        let report = backup_all(&mut t.session, &request, all).unwrap();

        let names: Vec<&str> = report.results.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(names, ["a_first", "b_closed", "c_last", globals::NAME]);
        assert!(report.results[1].1.is_err());
        let verdict = report.result().unwrap_err();
        assert_eq!(verdict.kind(), ErrorKind::Database);
        assert_eq!(*observer.failed.lock().unwrap(), ["backup of b_closed"]);
        assert_eq!(
            *observer.transfers.lock().unwrap(),
            ["a_first", "b_closed", "c_last", globals::NAME]
        );
        // The globals hold the shells of the databases backed up, not of the one that failed.
        let globals = report.results[3].1.as_ref().unwrap();
        let path = globals.entry.location.file_path().unwrap();
        let prelude = v2::read_prelude(&mut std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(
            globals::kind(&prelude.header.metadata).unwrap(),
            globals::Kind::Globals
        );
        assert!(
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("cluster-globals_")
        );

        // The first backup went to the key active when it started, the last to the new one.
        let rotated = observer.rotated_to.lock().unwrap().unwrap();
        let keys: Vec<Vec<Fingerprint>> = [0, 2]
            .iter()
            .map(|&i| {
                report.results[i]
                    .1
                    .as_ref()
                    .unwrap()
                    .entry
                    .server_keys
                    .clone()
            })
            .collect();
        assert_eq!(keys, [vec![first_key], vec![rotated]]);
        for i in [0, 2] {
            let record = report.results[i].1.as_ref().unwrap();
            let path = record.entry.location.file_path().unwrap();
            let prelude = v2::read_prelude(&mut std::fs::File::open(&path).unwrap()).unwrap();
            assert_eq!(
                prelude.header.metadata.source_database.as_deref(),
                Some(report.results[i].0.as_str())
            );
            assert_eq!(
                prelude.header.metadata.source_host.as_deref(),
                Some("db.example")
            );
            assert_eq!(prelude.active_slot().unwrap().1.recipients(), keys[i / 2]);
        }

        // One entry per database, with its outcome.
        let entries = t.session.store().unwrap().audit_entries(10).unwrap();
        let summary: Vec<(Action, String, bool)> = entries
            .iter()
            .map(|e| {
                let details: serde_json::Value = serde_json::from_str(&e.entry.details).unwrap();
                (
                    e.entry.action.clone(),
                    details["database"].as_str().unwrap().to_owned(),
                    e.entry.success,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (Action::Backup, "a_first".to_owned(), true),
                (Action::Backup, "b_closed".to_owned(), false),
                (Action::Backup, "c_last".to_owned(), true),
                (Action::Backup, globals::NAME.to_owned(), true),
            ]
        );
        assert!(entries.iter().all(|e| e.entry.user_id == Some(t.user.id)));
    }

    #[test]
    fn file_names_keep_only_safe_characters() {
        let at = Timestamp(1_764_413_095_123);
        assert_eq!(
            file_name("shop", at),
            format!("shop_{}.pgseal", at.rfc3339().replace(['-', ':'], ""))
        );
        assert!(file_name("shop", at).starts_with("shop_20251129T"));
        assert!(file_name("shop", at).ends_with("Z.pgseal"));
        let hostile = file_name("../../etc/passwd\n-x y", at);
        assert!(hostile.starts_with(".._.._etc_passwd_-x_y_"), "{hostile}");
        assert!(!hostile.contains('/'));
        crate::repo::check_name(&hostile).unwrap();
        // Letters of any script are kept.
        assert!(file_name("Ünïcode", at).starts_with("Ünïcode_"));
    }
}
