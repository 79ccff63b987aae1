//! Restoring a backup into a database, with nothing reaching the database unless the backup is
//! authentic.
//!
//! v2: the header signature and the file key are checked before pg_restore starts; the data
//! then streams, chunk by chunk as each verifies, into `pg_restore --single-transaction`, with
//! the last MiB held back until every chunk and the final signature have verified — pg_restore
//! cannot commit without the end of its archive, so a bad backup leaves the database as it was.
//! Legacy files (one GCM message each) are verified in a first pass and streamed in a second.
//! With more than one job the archive is verified into an unnamed private file first, which
//! pg_restore opens through `/proc/PID/fd/N`.
//!
//! A cluster's globals ([`crate::globals`], `Destination::Globals`) are decrypted into memory
//! and verified whole — both signatures, every chunk — before psql runs any of it; only a file
//! whose signed header says it holds globals is applied so, and only so.
//!
//! Into an existing database, the target must be empty unless the caller says to merge into
//! what it holds. When the front end interrupts the restore ([`crate::cancel`]), pg_restore is
//! stopped, the database the restore created is dropped, and the interruption is audited. A
//! check marks its scratch database and holds an advisory lock while it exists; the next check
//! drops scratch databases whose lock nobody holds, which only a killed process leaves.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use pgseal_store::Action;

use crate::cancel::{self, Checked};
use crate::decrypt::record_signature_outcome;
use crate::error::{Error, ErrorKind, Result, signal_name};
use crate::files::{Holdback, Input, PrivateScratch};
use crate::observe::Observer;
use crate::open::{OpenKeys, Opener, Sealed, check_waiver, prepare, recognise};
use crate::pgtools::{PgTools, RestoreOptions, Target, quote_ident, quote_literal};
use crate::session::Session;
use crate::show;

/// Plaintext held back from pg_restore until the whole backup has verified.
const HOLDBACK: usize = 1024 * 1024;

/// The start of the comment a check puts on its scratch database: with the name pattern and
/// the owner, what marks a database as pgseal's to remove.
const SCRATCH_MARKER: &str = "pgseal restore --check scratch database";

/// The first key of the advisory lock a check holds while its scratch database exists (the
/// second is the database's random tag): "pgse".
const SCRATCH_LOCK_CLASS: i32 = 0x7067_7365;

/// Where a backup is restored.
#[derive(Debug, Clone)]
pub enum Destination {
    /// Into `database`: created first (`create`, refused if it exists) or existing (refused
    /// unless empty, or `merge`).
    Into {
        /// The database, by name (never a connection string).
        database: String,
        /// Create it (and drop it again if the restore fails or is interrupted).
        create: bool,
        /// Into an existing database that holds objects: merge.
        merge: bool,
    },
    /// Into a scratch database that is counted and dropped: the monthly restore test.
    Check,
    /// A cluster's globals, applied with psql to the server (its `postgres` database): the
    /// roles, memberships and tablespaces, then the empty databases with owners and grants.
    Globals,
}

/// A restore to run.
pub struct Restore<'a> {
    /// The backup: a path, or an `s3://BUCKET/KEY` location the session reaches.
    pub file: &'a Path,
    /// Where its keys come from.
    pub keys: OpenKeys<'a>,
    /// Where it goes.
    pub destination: Destination,
    /// `pg_restore --clean --if-exists`.
    pub clean: bool,
    /// Parallel pg_restore jobs (1: one transaction).
    pub jobs: u32,
    /// The PostgreSQL tools.
    pub tools: &'a PgTools,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub enum Restored {
    /// Restored into this database.
    Into(String),
    /// Restored into a scratch database (dropped again) holding these tables and row counts.
    Checked(Vec<(String, i64)>),
    /// A cluster's globals applied.
    Globals {
        /// Roles the server had already: their `CREATE ROLE` left out, their attributes,
        /// settings and memberships applied.
        existing_roles: Vec<String>,
        /// The databases created (empty, with their owners, settings and grants): restore
        /// each one's backup into it.
        databases: Vec<String>,
    },
}

/// What a restore did, and from which copy.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// Where it went.
    pub restored: Restored,
    /// The copy restored in place of the backup named, when that one could not be read or did
    /// not verify (a location the catalog knows as another copy of the same backup).
    pub from_copy: Option<String>,
}

/// The catalog picks each database's newest backup for [`check_latest`]; its file's signed
/// header must say the same — database, time, creator and signer — or whoever can write the
/// store could steer the monthly check to an older (good) backup while the newest goes
/// untested. Reads the prelude only; a file that cannot be opened here is left to the restore
/// (which falls back on copies and says what is wrong), a legacy file has no header to check.
fn signed_as_catalogued(
    session: &mut Session,
    repository: &dyn crate::repo::Repository,
    record: &pgseal_store::BackupRecord,
) -> Result<()> {
    let Ok(Some(object)) = repository.open(&record.entry.location) else {
        return Ok(());
    };
    let shown = record.entry.location.shown();
    let examined =
        crate::examine::examine(object, &mut |fp| crate::examine::store_signer(session, fp))?;
    match examined {
        crate::examine::Examined::Signed(prelude) => {
            match crate::examine::header_mismatch(&prelude.header, &record.entry) {
                None => Ok(()),
                Some(why) => Err(Error::Authentication(format!(
                    "the catalog names {shown} as the newest backup of {}, but its signed \
                     header disagrees: {why}; the catalog cannot be trusted there, so it was \
                     not checked",
                    show::name(&record.entry.database)
                ))),
            }
        }
        crate::examine::Examined::Unvouched { reason, .. } => {
            Err(Error::Authentication(format!("{shown}: {reason}")))
        }
        crate::examine::Examined::Legacy(_) | crate::examine::Examined::Foreign(_) => Ok(()),
    }
}

/// One database's check in [`check_latest`].
#[derive(Debug)]
pub struct LatestCheck {
    /// The database.
    pub database: String,
    /// The backup checked: its location as the catalog shows it.
    pub backup: String,
    /// What came of it.
    pub result: Result<RestoreReport>,
}

/// `restore --check --latest`: the newest live catalogued backup of each database in
/// `repository` (a cluster's globals excepted; by the catalog's time, which the file's signed
/// header must confirm; each restore then checks the file's signatures before
/// anything is restored), each checked into a scratch database like [`restore`] with
/// [`Destination::Check`], and each audited as its own `RESTORE` entry (detail `latest`).
/// Goes on past failures; stops at a signal. An empty catalog is a usage error: nothing to
/// check is not a passed check.
pub fn check_latest<G>(
    session: &mut Session,
    repository: &dyn crate::repo::Repository,
    keys: OpenKeys<'_>,
    tools: &PgTools,
    guard: impl Fn() -> Result<G>,
) -> Result<Vec<LatestCheck>> {
    let mut newest: std::collections::BTreeMap<String, pgseal_store::BackupRecord> =
        std::collections::BTreeMap::new();
    for record in crate::catalog::list(session, None)? {
        // A cluster's globals are no database to restore into a scratch one (`restore
        // --check` refuses them): `verify` checks them.
        if !repository.contains(&record.entry.location)
            || record.entry.database == crate::globals::NAME
        {
            continue;
        }
        let newer = newest
            .get(&record.entry.database)
            .is_none_or(|n| record.entry.created_at >= n.entry.created_at);
        if newer {
            newest.insert(record.entry.database.clone(), record);
        }
    }
    if newest.is_empty() {
        return Err(Error::usage(format!(
            "the catalog names no backup in {}: nothing to check",
            repository.describe()
        )));
    }
    let reach = crate::repo::reach(session);
    let mut checks = Vec::new();
    for (database, record) in newest {
        let shown = record.entry.location.shown();
        let result = match reachable_spec(&reach, &record.entry.location) {
            None => {
                session.audit(Action::Restore).backup_file = Some(shown.clone());
                Err(Error::usage(format!(
                    "{shown} cannot be reached from this host"
                )))
            }
            Some(spec) => match signed_as_catalogued(session, repository, &record) {
                Err(e) => {
                    session.audit(Action::Restore).backup_file = Some(shown.clone());
                    Err(e)
                }
                Ok(()) => {
                    let file = std::path::PathBuf::from(spec);
                    let request = Restore {
                        file: &file,
                        keys,
                        destination: Destination::Check,
                        clean: false,
                        jobs: 1,
                        tools,
                    };
                    restore(session, &request, &guard)
                }
            },
        };
        if let Some(a) = session.outcome_audit_mut() {
            a.detail("latest", true);
            a.detail("database", database.clone());
        }
        // Each check is an operation of its own: its entry is written now, with its outcome.
        let result = match result {
            Ok(report) => session.finish(Ok(())).map(|()| report),
            Err(e) => Err(session
                .finish(Err(e))
                .expect_err("finishing a failure fails")),
        };
        if let Err(e) = &result {
            session
                .observer()
                .failed(&format!("restore check of {}", show::name(&database)), e);
        }
        checks.push(LatestCheck {
            database,
            backup: shown,
            result,
        });
        if cancel::received().is_some() {
            break;
        }
    }
    Ok(checks)
}

/// What every step of one restore shares.
struct Job<'a> {
    /// What the backup is opened through (again, for a second pass): an `s3://` location.
    reach: crate::repo::Reach,
    scratch_dir: std::path::PathBuf,
    file: &'a Path,
    opener: &'a Opener,
    tools: &'a PgTools,
    observer: Arc<dyn Observer>,
    clean: bool,
    jobs: u32,
}

/// How the target database is reached.
#[derive(Clone, Copy)]
enum How<'a> {
    New { comment: Option<&'a str> },
    Existing { merge: bool },
}

/// Restores, audited as `RESTORE`. `guard` is called once every key is unlocked and before any
/// database work, and what it returns is held until the restore ends: the CLI installs its
/// signal handling there, so that a Ctrl-C at a password prompt still simply ends it.
pub fn restore<G>(
    session: &mut Session,
    request: &Restore<'_>,
    guard: impl FnOnce() -> Result<G>,
) -> Result<RestoreReport> {
    let audit = session.audit(Action::Restore);
    audit.backup_file = Some(request.file.display().to_string());
    let mut guard = Some(guard);
    let mut held = None;
    let result = (|| {
        check_waiver(session, request.keys.verify)?;
        let reach = crate::repo::reach(session);
        let requested = request.file.display().to_string();
        // The other copies of the backup, when the catalog knows the one asked for: a copy
        // that cannot be read or does not verify before anything was committed gives way to
        // the next.
        let (expected, mut others) = match catalogued(&reach, &requested) {
            Some(location) => match crate::copy::alternatives(session, &location)? {
                Some((entry, others)) => (Some(entry), others.into_iter()),
                None => (None, Vec::new().into_iter()),
            },
            None => (None, Vec::new().into_iter()),
        };
        if let Some(entry) = &expected {
            crate::copy::record_backup(session.audit_mut(), entry);
        }
        let mut spec = requested;
        let mut failed = Vec::new();
        loop {
            let attempt = attempt(
                session,
                request,
                &reach,
                &spec,
                (!failed.is_empty()).then_some(expected.as_ref()).flatten(),
                &mut || {
                    if held.is_none() {
                        let make = guard.take().expect("the guard is made once, then held");
                        held = Some(make()?);
                    }
                    Ok(())
                },
            );
            let error = match attempt {
                Ok(restored) => {
                    let from_copy = (!failed.is_empty()).then(|| spec.clone());
                    if let Some(copy) = &from_copy
                        && let Some(a) = session.audit_mut()
                    {
                        a.detail("restored_from", copy.clone());
                        a.detail("failed_copies", failed.clone());
                    }
                    return Ok(RestoreReport {
                        restored,
                        from_copy,
                    });
                }
                Err(e) => e,
            };
            // Another copy only while nothing was committed (the entry is still unwritten)
            // and for what another copy can mend: an unreadable or damaged copy.
            let mendable = matches!(
                error.kind(),
                ErrorKind::Io | ErrorKind::Invalid | ErrorKind::Authentication
            );
            let next = others
                .by_ref()
                .find_map(|c| reachable_spec(&reach, &c.entry.location));
            match next {
                Some(next) if mendable && session.audit_mut().is_some() => {
                    session.observer().warn(&format!(
                        "{spec} could not be restored ({error}); trying its copy {next}"
                    ));
                    failed.push(serde_json::json!({"copy": spec, "error": error.to_string()}));
                    spec = next;
                }
                _ => return Err(error),
            }
        }
    })();
    if let (Err(_), Some(signal)) = (&result, cancel::received())
        && let Some(a) = session.outcome_audit_mut()
    {
        a.detail("interrupted", signal_name(signal));
    }
    record_signature_outcome(session, result.as_ref().map(drop), request.keys.verify);
    result
}

/// One restore of the copy `spec`; with `expected`, a copy the catalog named in place of the
/// one asked for, whose signed header must be that backup's.
fn attempt(
    session: &mut Session,
    request: &Restore<'_>,
    reach: &crate::repo::Reach,
    spec: &str,
    expected: Option<&pgseal_store::BackupRecord>,
    guard: &mut dyn FnMut() -> Result<()>,
) -> Result<Restored> {
    let mut input = Input::open_in(reach, spec)?;
    let sealed = recognise(&mut input)?;
    if let Some(entry) = expected {
        let why = match &sealed {
            Sealed::V2(prelude, _) => {
                crate::examine::header_mismatch(&prelude.header, &entry.entry)
            }
            _ => Some("it is not a pgseal v2 backup".to_owned()),
        };
        if let Some(why) = why {
            return Err(Error::invalid(format!(
                "{spec} is not a copy of the backup asked for: {why}"
            )));
        }
    }
    let kind = match &sealed {
        Sealed::V2(prelude, _) => crate::globals::kind(&prelude.header.metadata)?,
        _ => crate::globals::Kind::Other,
    };
    match (&request.destination, kind) {
        (Destination::Globals, crate::globals::Kind::Other) => {
            return Err(Error::usage(format!(
                "{spec} is not a cluster's globals (its signed header says so only of the \
                 backup `backup --all` catalogues as {}): restore a database's backup with \
                 --target-db or --check",
                crate::globals::NAME
            )));
        }
        (Destination::Globals, _) if !request.keys.verify => {
            return Err(Error::usage(
                "a cluster's globals are applied only once their signatures verify: drop \
                 --no-verify",
            ));
        }
        (Destination::Into { .. } | Destination::Check, crate::globals::Kind::Globals) => {
            return Err(Error::usage(format!(
                "{spec} holds a cluster's globals (roles, tablespaces, the databases' owners \
                 and grants), not a database: apply it with restore --globals"
            )));
        }
        _ => {}
    }
    let opener = prepare(session, sealed, &request.keys)?;
    guard()?;
    let file = Path::new(spec);
    let job = Job {
        reach: reach.clone(),
        scratch_dir: session.scratch_dir().to_path_buf(),
        file,
        opener: &opener,
        tools: request.tools,
        observer: session.observer().clone(),
        clean: request.clean,
        jobs: request.jobs,
    };
    match &request.destination {
        Destination::Check => check(&job, session).map(Restored::Checked),
        Destination::Globals => apply_globals(&job, session),
        Destination::Into {
            database,
            create,
            merge,
        } => {
            if let Some(a) = session.audit_mut() {
                a.detail("target_db", database.clone());
            }
            let how = if *create {
                How::New { comment: None }
            } else {
                How::Existing { merge: *merge }
            };
            restore_into(&job, database, how, Some(session))?;
            Ok(Restored::Into(database.clone()))
        }
    }
}

/// The location `spec` (a path or an `s3://` location) names, as the catalog would spell it:
/// a path need not exist any more (a deleted copy is what its other copies are for).
pub(crate) fn catalogued(reach: &crate::repo::Reach, spec: &str) -> Option<crate::repo::Location> {
    if spec.starts_with("s3://") {
        return crate::repo::Location::parse(spec).ok();
    }
    if spec == "-" {
        return None;
    }
    let path = std::fs::canonicalize(spec)
        .or_else(|_| std::path::absolute(spec))
        .ok()?;
    crate::repo::Location::file(reach.host(), &path).ok()
}

/// How `location` is opened from here (a path on this host, an `s3://` location when object
/// stores are reached), or `None` when it is out of reach.
fn reachable_spec(reach: &crate::repo::Reach, location: &crate::repo::Location) -> Option<String> {
    if !reach.reaches(location) {
        return None;
    }
    match location.scheme() {
        "s3" => Some(location.as_str().to_owned()),
        _ => location.file_path().map(|p| p.display().to_string()),
    }
}

/// Restores into `target`, created first or existing (see [`How`]). With `session`,
/// the audit entry is written before the restore may commit (fail closed).
fn restore_into(
    job: &Job<'_>,
    target: &str,
    how: How<'_>,
    session: Option<&mut Session>,
) -> Result<()> {
    let tools = job.tools;
    let maintenance = Target::Name("postgres".into());
    let shown = show::name(target);
    let created = match how {
        How::New { comment } => {
            cancel::check("nothing was created")?;
            if database_exists(tools, target)? {
                return Err(Error::usage(format!(
                    "database {shown} already exists; drop it, or restore into it without --create"
                )));
            }
            tools.execute(
                &maintenance,
                &format!("CREATE DATABASE {};", quote_ident(target)),
            )?;
            if let Some(comment) = comment {
                let commented = tools.execute(
                    &maintenance,
                    &format!(
                        "COMMENT ON DATABASE {} IS {};",
                        quote_ident(target),
                        quote_literal(comment)
                    ),
                );
                if let Err(f) = commented {
                    drop_created(job, target);
                    return Err(f);
                }
            }
            true
        }
        How::Existing { merge } => {
            if !merge && !database_is_empty(tools, target)? {
                return Err(Error::usage(format!(
                    "database {shown} already holds objects (tables, schemas, functions, types \
                     or extensions): the backup would be merged into them. Pass \
                     --into-existing to do that, or restore into a new database with --create"
                )));
            }
            false
        }
    };
    let result = restore_archive(job, target, session);
    let dropped = result.is_err() && created && drop_created(job, target);
    cancel::overrule(result, || {
        if dropped {
            format!("the restore was stopped, and {shown}, which it had created, was dropped")
        } else if created {
            format!("the restore was stopped; {shown}, which it had created, is still there")
        } else if job.jobs > 1 {
            format!(
                "the restore was stopped; with --jobs it is not one transaction, so {shown} \
                 holds what had been restored"
            )
        } else {
            format!("the restore was stopped, and nothing was committed to {shown}")
        }
    })
}

/// Drops a database this run created; warns (and returns false) if it cannot.
fn drop_created(job: &Job<'_>, name: &str) -> bool {
    match drop_database(job.tools, name) {
        Ok(()) => true,
        Err(f) => {
            job.observer.warn(&format!(
                "could not drop {}, which this restore created: {f}; drop it by hand",
                show::name(name)
            ));
            false
        }
    }
}

fn drop_database(tools: &PgTools, name: &str) -> Result<()> {
    tools.execute(
        &Target::Name("postgres".into()),
        &format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE);",
            quote_ident(name)
        ),
    )
}

fn database_exists(tools: &PgTools, name: &str) -> Result<bool> {
    let rows = tools.rows(
        &Target::Name("postgres".into()),
        &format!(
            "SELECT 1 FROM pg_database WHERE datname = {};",
            quote_literal(name)
        ),
        1,
    )?;
    Ok(!rows.is_empty())
}

/// Whether `name` holds nothing of its own: no schema but `public`, no table, view, sequence,
/// index, function, type, extension (but plpgsql) or large object.
fn database_is_empty(tools: &PgTools, name: &str) -> Result<bool> {
    const OBJECTS: &str = r"SELECT
  (SELECT count(*) FROM pg_namespace
    WHERE nspname NOT IN ('public', 'information_schema') AND nspname NOT LIKE 'pg\_%')
+ (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%')
+ (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema'))
+ (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
      AND t.typrelid = 0 AND t.typelem = 0)
+ (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql')
+ (SELECT count(*) FROM pg_largeobject_metadata);";
    let rows = tools.rows(&Target::Name(name.to_owned()), OBJECTS, 1)?;
    match rows.as_slice() {
        [row] if row.len() == 1 => Ok(row[0] == "0"),
        _ => Err(Error::invalid(format!(
            "unexpected answer counting the objects in {}",
            show::name(name)
        ))),
    }
}

fn restore_archive(job: &Job<'_>, target: &str, mut session: Option<&mut Session>) -> Result<()> {
    // Fail closed: without its audit entry, the restore does not commit.
    let audit_first = |session: &mut Option<&mut Session>| -> Result<()> {
        match session {
            Some(s) => {
                if let Some(a) = s.audit_mut() {
                    a.signature_valid = job.opener.verifies().then_some(true);
                }
                s.audit_before_commit()
            }
            None => Ok(()),
        }
    };
    let open = |out: &mut (dyn Write + Send)| -> Result<()> {
        let spec = job.file.display().to_string();
        let input = Input::open_in(&job.reach, &spec)?;
        let _shown = input.watch(job.observer.as_ref(), &spec);
        job.opener.reopen(input, out)?;
        Ok(())
    };
    let db = Target::Name(target.to_owned());
    let options = RestoreOptions {
        clean: job.clean,
        jobs: job.jobs,
    };
    if job.jobs > 1 {
        // pg_restore needs a seekable file for parallel jobs: verify into a private one. An
        // unnamed file where the system allows it, handed to pg_restore as /proc/PID/fd/N, so
        // even a kill -9 leaves no plaintext behind; else a 0600 file in a 0700 directory.
        let scratch = PrivateScratch::create(&job.scratch_dir)?;
        open(&mut Checked(scratch.file()))?;
        let file = scratch.file();
        file.sync_all()
            .map_err(|e| Error::io("writing the temporary archive", e))?;
        audit_first(&mut session)?;
        let result = job
            .tools
            .restore(&db, Some(scratch.path()), &options)?
            .wait();
        drop(scratch);
        return result;
    }
    if job.opener.needs_first_pass() {
        open(&mut Checked(std::io::sink()))?;
    }
    let mut pg = job.tools.restore(&db, None, &options)?;
    let stdin = pg.child.stdin.take().expect("pg_restore's stdin is piped");
    let mut held = Checked(Holdback::new(stdin, HOLDBACK));
    let opened = open(&mut held).and_then(|()| audit_first(&mut session));
    match opened {
        Ok(()) => {
            let stdin = held
                .0
                .release()
                .map_err(|e| Error::io("writing to pg_restore", e));
            match stdin {
                Ok(stdin) => {
                    drop(stdin);
                    pg.wait()
                }
                Err(f) => {
                    // pg_restore stopped reading: its own error says why.
                    pg.wait().and(Err(f))
                }
            }
        }
        Err(f) if f.kind() == ErrorKind::Io => {
            drop(held);
            pg.wait().and(Err(f))
        }
        Err(f) => {
            drop(held);
            pg.abort();
            Err(Error::Abandoned(Box::new(f)))
        }
    }
}

/// `restore --globals`: the whole script decrypted and verified into memory, checked
/// ([`crate::globals::Script::prepare`]), the audit entry written, and only then run by psql
/// (`ON_ERROR_STOP`: the first failing statement ends it) on the server's `postgres` database.
/// `CREATE DATABASE` cannot run in a transaction, so a statement that fails leaves the ones
/// before it applied (psql's error says which).
fn apply_globals(job: &Job<'_>, session: &mut Session) -> Result<Restored> {
    let mut script = Checked(crate::globals::Capped(Vec::new()));
    job.opener.reopen(
        Input::open_in(&job.reach, &job.file.display().to_string())?,
        &mut script,
    )?;
    let maintenance = Target::Name("postgres".into());
    let existing: std::collections::BTreeSet<String> = job
        .tools
        .rows(&maintenance, "SELECT rolname FROM pg_roles ORDER BY 1;", 1)?
        .into_iter()
        .flatten()
        .collect();
    let script = crate::globals::Script::prepare(script.0.0, &existing)?;
    if let Some(a) = session.audit_mut() {
        a.detail("globals", true);
        a.detail("existing_roles", script.existing_roles.clone());
        a.detail("databases", script.databases.clone());
        a.signature_valid = Some(true);
    }
    cancel::check("nothing was applied")?;
    session.audit_before_commit()?;
    job.tools.execute(&maintenance, &script.sql)?;
    Ok(Restored::Globals {
        existing_roles: script.existing_roles,
        databases: script.databases,
    })
}

/// `restore --check`: into a throwaway database, count rows, drop it.
fn check(job: &Job<'_>, session: &mut Session) -> Result<Vec<(String, i64)>> {
    let tools = job.tools;
    let maintenance = Target::Name("postgres".into());
    let removed = remove_abandoned_scratch(job, &maintenance);
    let mut tag = [0u8; 4];
    pgseal_core::secret::fill_random(&mut tag)?;
    let tag = u32::from_be_bytes(tag);
    let name = format!("pgseal_check_{tag:08x}");
    if let Some(a) = session.audit_mut() {
        a.detail("check", true);
        a.detail("target_db", name.clone());
        if !removed.is_empty() {
            a.detail("removed_abandoned", removed);
        }
    }
    // Held for as long as the scratch database may exist (the session ends with pgseal, even
    // a killed one): another run's cleanup sees the lock and leaves the database alone.
    let _lock = tools.session(
        &maintenance,
        &format!(
            "SELECT pg_advisory_lock({SCRATCH_LOCK_CLASS}, {});",
            tag as i32
        ),
    )?;
    let comment = format!(
        "{SCRATCH_MARKER} (host {}, pid {}, {}); dropped by the next restore --check if left \
         behind",
        session.actor().host.clone().unwrap_or_default(),
        std::process::id(),
        pgseal_core::time::Timestamp::now().rfc3339()
    );
    let how = How::New {
        comment: Some(&comment),
    };
    restore_into(job, &name, how, None)?;
    let counts = cancel::check("the check was stopped").and_then(|()| row_counts(tools, &name));
    let dropped = drop_created(job, &name);
    cancel::overrule(counts, || {
        if dropped {
            format!("the check was stopped, and its scratch database {name} was dropped")
        } else {
            format!("the check was stopped; its scratch database {name} is still there")
        }
    })
}

/// Drops the scratch databases that killed `restore --check` runs left behind, and returns
/// their names. Only provably abandoned ones: named `pgseal_check_` and 8 hex digits, owned by
/// the role pgseal connects as, carrying [`SCRATCH_MARKER`] — and whose advisory lock nobody
/// holds, which means the run that made it is gone (a live one holds it from before it creates
/// the database until after it drops it). The lock is taken for the drop, so no run can start
/// using that name meanwhile. Failing to clean up only warns: it does not stop this check.
fn remove_abandoned_scratch(job: &Job<'_>, maintenance: &Target) -> Vec<String> {
    let tools = job.tools;
    let candidates = tools.rows(
        maintenance,
        &format!(
            "SELECT d.datname FROM pg_database d \
             WHERE d.datname ~ '^pgseal_check_[0-9a-f]{{8}}$' \
               AND d.datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user) \
               AND starts_with(coalesce(shobj_description(d.oid, 'pg_database'), ''), {}) \
             ORDER BY 1;",
            quote_literal(SCRATCH_MARKER)
        ),
        1,
    );
    let candidates: Vec<(String, u32)> = match candidates {
        Ok(rows) => rows
            .into_iter()
            .flatten()
            .filter_map(|n| {
                let tag = u32::from_str_radix(n.strip_prefix("pgseal_check_")?, 16).ok()?;
                Some((n, tag))
            })
            .collect(),
        Err(f) => {
            job.observer.warn(&format!(
                "could not look for abandoned scratch databases: {f}"
            ));
            return Vec::new();
        }
    };
    if candidates.is_empty() {
        return Vec::new();
    }
    let mut script = String::new();
    for (name, tag) in &candidates {
        let key = format!("{SCRATCH_LOCK_CLASS}, {}", *tag as i32);
        script.push_str(&format!(
            "SELECT pg_try_advisory_lock({key}) AS pgseal_free \\gset\n\
             \\if :pgseal_free\n\
             DROP DATABASE IF EXISTS {} WITH (FORCE);\n\
             SELECT pg_advisory_unlock({key}) AS pgseal_unlocked \\gset\n\
             \\echo dropped {name}\n\
             \\endif\n",
            quote_ident(name)
        ));
    }
    let out = tools.script_output(maintenance, &script);
    let dropped: Vec<String> = match out {
        Ok(text) => text
            .lines()
            .filter_map(|l| l.strip_prefix("dropped "))
            .map(str::to_owned)
            .collect(),
        Err(f) => {
            job.observer
                .warn(&format!("could not drop abandoned scratch databases: {f}"));
            Vec::new()
        }
    };
    for name in &dropped {
        job.observer.note(&format!(
            "dropped {name}, left behind by a restore --check that was killed"
        ));
    }
    dropped
}

/// Exact row counts of every user table in `db`.
pub fn row_counts(tools: &PgTools, db: &str) -> Result<Vec<(String, i64)>> {
    let sql = r"SELECT format('SELECT %L, count(*) FROM %I.%I', n.nspname || '.' || c.relname, n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
ORDER BY 1
\gexec
";
    tools
        .rows(&Target::Name(db.to_owned()), sql, 2)?
        .into_iter()
        .map(|row| {
            let n = row[1].parse().map_err(|_| {
                Error::invalid(format!(
                    "unexpected row count for {}: {}",
                    show::name(&row[0]),
                    show::name(&row[1])
                ))
            })?;
            Ok((row[0].clone(), n))
        })
        .collect()
}
