//! Copies of backups in other repositories (`pgseal copy`, `backup --copy-to`): the object
//! streamed from one repository into a new object of another, then read back from there and
//! verified — both signatures with the creator's key from the store, every chunk, and the
//! ciphertext digest against the catalog — before the copy is catalogued as a copy of the
//! backup ([`pgseal_store::Store::add_copy`]). A copy that does not verify is deleted again and
//! never catalogued; one left behind by a killed copy (written, not yet catalogued) is found,
//! verified and catalogued by the next run instead of being written twice.
//!
//! Each copy is its own catalog entry, with its own location, status and wrapping: prune
//! applies retention in each repository on its own, rewrap and retire see every copy, and a
//! restore can use any copy of a backup ([`alternatives`]).

use pgseal_core::v2::Prelude;
use pgseal_store::{Action, BackupRecord, NewBackup};

use crate::error::{Error, Result};
use crate::examine::{header_mismatch, store_signer};
use crate::files::Input;
use crate::open::{Sealed, recognise};
use crate::repo::{Location, Repository};
use crate::session::{Operation, Session};

/// What to copy.
pub struct CopyRequest<'a> {
    /// The repository the backups are in.
    pub from: &'a dyn Repository,
    /// The repository the copies go to.
    pub to: &'a dyn Repository,
    /// Only backups of this database.
    pub database: Option<&'a str>,
    /// Only say what would be copied.
    pub dry_run: bool,
}

/// What became of one backup.
#[derive(Debug)]
pub enum Outcome {
    /// Copied and verified; the copy's catalog entry.
    Copied(BackupRecord),
    /// A copy left by an earlier run (written, never catalogued) verified and was catalogued.
    Adopted(BackupRecord),
    /// The destination already holds a catalogued copy: this entry.
    Present(BackupRecord),
    /// A dry run: would be copied.
    WouldCopy,
    /// Not copied, and nothing left in the destination: why.
    Failed(Error),
}

/// What a copy run did, backup by backup (oldest first).
#[derive(Debug)]
pub struct CopyReport {
    /// The source repository, as shown.
    pub from: String,
    /// The destination repository, as shown.
    pub to: String,
    /// Each backup of the source (its catalog entry there) and what became of it.
    pub items: Vec<(BackupRecord, Outcome)>,
}

impl CopyReport {
    /// The run's verdict: it fails if any copy failed ([`verdict`]).
    pub fn result(&self) -> Result<()> {
        verdict(&self.items)
    }
}

/// Whether a run of copies failed: [`Error::Several`] of the first failure's kind if any did.
pub fn verdict(items: &[(BackupRecord, Outcome)]) -> Result<()> {
    let failures: Vec<&Error> = items
        .iter()
        .filter_map(|(_, o)| match o {
            Outcome::Failed(e) => Some(e),
            _ => None,
        })
        .collect();
    match failures.first() {
        None => Ok(()),
        Some(first) => Err(Error::Several {
            failed: failures.len(),
            total: items.len(),
            what: "backups could not be copied",
            kind: first.kind(),
        }),
    }
}

/// Copies every live backup of `request.from` (of one database, when given) that has no live
/// copy in `request.to` yet, audited as `COPY` (the run's entry, with its counts) and each
/// backup copied its own `COPY` entry. Fails only when the catalog cannot be read; each
/// backup's failure is in the report ([`CopyReport::result`]).
pub fn copy(session: &mut Session, request: &CopyRequest<'_>) -> Result<CopyReport> {
    let audit = session.audit(Action::Copy);
    audit.detail("from", request.from.describe());
    audit.detail("to", request.to.describe());
    audit.detail("dry_run", request.dry_run);
    if let Some(db) = request.database {
        audit.detail("database", db.to_owned());
    }
    let entries = session
        .read_store()?
        .backups(request.database)?
        .into_iter()
        .filter(|e| request.from.contains(&e.entry.location))
        .collect();
    let items = copy_entries(session, request.from, request.to, entries, request.dry_run)?;
    if let Some(a) = session.audit_mut() {
        let count = |f: fn(&Outcome) -> bool| items.iter().filter(|(_, o)| f(o)).count();
        a.detail(
            "copied",
            count(|o| matches!(o, Outcome::Copied(_) | Outcome::Adopted(_))),
        );
        a.detail("present", count(|o| matches!(o, Outcome::Present(_))));
        a.detail("failed", count(|o| matches!(o, Outcome::Failed(_))));
    }
    Ok(CopyReport {
        from: request.from.describe(),
        to: request.to.describe(),
        items,
    })
}

/// Copies each of `entries` (catalog entries of objects in `from`) that has no live copy in
/// `to` yet, each its own `COPY` audit entry, going on past failures (each said to the
/// observer as it happens); with `dry_run` only says which it would copy.
pub fn copy_entries(
    session: &mut Session,
    from: &dyn Repository,
    to: &dyn Repository,
    entries: Vec<BackupRecord>,
    dry_run: bool,
) -> Result<Vec<(BackupRecord, Outcome)>> {
    let mut items = Vec::new();
    for entry in entries {
        let present = session
            .read_store()?
            .copies(entry.id)?
            .into_iter()
            .find(|c| to.contains(&c.entry.location));
        let outcome = match present {
            Some(copy) => Outcome::Present(copy),
            None if dry_run => Outcome::WouldCopy,
            None => {
                let mut audit = Operation::new(Action::Copy);
                let result = copy_one(from, to, session, &entry, &mut audit);
                match session.record_outcome(audit, result) {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        session
                            .observer()
                            .failed(&format!("copy of {}", entry.entry.location.shown()), &e);
                        Outcome::Failed(e)
                    }
                }
            }
        };
        items.push((entry, outcome));
    }
    Ok(items)
}

/// Copies the backup `entry` (an object of `from`) into `to`, verifies the copy and catalogues
/// it, filling `audit`; returns [`Outcome::Copied`] or [`Outcome::Adopted`].
pub fn copy_one(
    from: &dyn Repository,
    to: &dyn Repository,
    session: &mut Session,
    entry: &BackupRecord,
    audit: &mut Operation,
) -> Result<Outcome> {
    let source = &entry.entry.location;
    audit.backup_file = Some(source.shown());
    audit.backup_creator_id = entry.entry.creator_user_id;
    audit.detail("database", entry.entry.database.clone());
    audit.detail("to", to.describe());
    let name = object_name(source)?;

    // A copy a killed run wrote and never catalogued: verified and adopted, not written twice.
    // Anything else under that name (another backup, damage) is left alone: the copy gets a
    // free name beside it.
    let target = to.location(&name)?;
    if session.read_store()?.backup_at(&target)?.is_none()
        && let Some(existing) = to.open(&target)?
        && let Ok(copy) = check_copy(session, existing, entry)
    {
        audit.detail("copy", target.shown());
        audit.detail("adopted", true);
        let record = session.store()?.add_copy(entry.id, &copy)?;
        return Ok(Outcome::Adopted(record));
    }

    let mut object = from
        .open(source)?
        .ok_or_else(|| Error::from(crate::repo::RepoError::NotFound(source.clone())))?;
    let mut new = to.create(&name)?;
    let progress = crate::observe::Progress {
        total: Some(object.size),
        ..Default::default()
    };
    let shown = session
        .observer()
        .transfer(&format!("copy of {}", source.shown()), &progress);
    let mut counted = crate::observe::CountingReader {
        inner: &mut object,
        counter: progress.read.clone(),
    };
    let copied = std::io::copy(&mut counted, &mut new);
    drop(shown);
    copied.map_err(|e| {
        Error::io(
            format!("copying {} to {}", source.shown(), to.describe()),
            e,
        )
    })?;
    let written = new.commit()?;
    audit.detail("copy", written.shown());
    crate::crashpoint::reached("copy:written");

    let copy = to
        .open(&written)?
        .ok_or_else(|| Error::from(crate::repo::RepoError::NotFound(written.clone())))
        .and_then(|object| check_copy(session, object, entry));
    let copy = match copy {
        Ok(c) => c,
        Err(e) => {
            // The copy is not the backup: it goes again, and is never catalogued.
            if let Err(d) = to.delete(&written, None) {
                session.observer().warn(&format!(
                    "the copy at {} did not verify and could not be deleted: {d}",
                    written.shown()
                ));
            }
            return Err(e.context(format!(
                "the copy at {} did not verify, so it was deleted",
                written.shown()
            )));
        }
    };
    let record = session.store()?.add_copy(entry.id, &copy)?;
    Ok(Outcome::Copied(record))
}

/// Reads the object in full and proves it is the backup `entry` describes: a v2 file whose
/// header signature and final signature verify with the creator's key from the store, whose
/// signed header matches the entry and whose ciphertext digest is the one catalogued. Returns
/// the copy's catalog entry (its own location, size and recipients).
fn check_copy(
    session: &mut Session,
    object: crate::repo::Object,
    entry: &BackupRecord,
) -> Result<NewBackup> {
    let location = object.location.clone();
    let size = object.size;
    let mut input = Input::object(location.shown(), object);
    let observer = session.observer().clone();
    let _shown = input.watch(observer.as_ref(), &format!("checking {}", location.shown()));
    let prelude: Prelude = match recognise(&mut input)? {
        Sealed::V2(p, _) => *p,
        _ => {
            return Err(Error::invalid(format!(
                "{} is not a pgseal v2 backup",
                location.shown()
            )));
        }
    };
    if let Some(why) = header_mismatch(&prelude.header, &entry.entry) {
        return Err(Error::invalid(format!(
            "{} is not the catalogued backup: {why}",
            location.shown()
        )));
    }
    let key = store_signer(session, &prelude.header.signer)?.ok_or_else(|| {
        Error::key(format!(
            "the store holds no key {} to verify {} with",
            prelude.header.signer,
            location.shown()
        ))
    })?;
    let recipients = prelude.active_slot()?.1.recipients();
    let report = prelude.verify(&mut input, std::slice::from_ref(&key), None)?;
    let digest: pgseal_store::Hash32 = report.ciphertext_digest.into();
    if let Some(catalogued) = entry.entry.ciphertext_blake3
        && catalogued != digest
    {
        return Err(Error::invalid(format!(
            "{} holds other data than the catalogued backup (ciphertext digest {digest}, \
             catalogued {catalogued})",
            location.shown()
        )));
    }
    Ok(NewBackup {
        location,
        size_bytes: size as i64,
        server_keys: recipients,
        ciphertext_blake3: Some(digest),
        ..entry.entry.clone()
    })
}

/// The object's name (the last segment of its location): what its copy is called.
fn object_name(location: &Location) -> Result<String> {
    location
        .segments()
        .pop()
        .and_then(|s| String::from_utf8(s).ok())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::invalid(format!("{} names no object", location.shown())))
}

/// The catalog entry of the backup at `location` and its other live copies, in catalog order
/// (for a restore to fall back on when `location` cannot be read or does not verify); `None`
/// when the catalog does not know `location` or there is no store.
pub fn alternatives(
    session: &mut Session,
    location: &Location,
) -> Result<Option<(BackupRecord, Vec<BackupRecord>)>> {
    let Some(store) = session.store_if_configured()? else {
        return Ok(None);
    };
    let Some(entry) = store.backup_at(location)? else {
        return Ok(None);
    };
    let others = store
        .copies(entry.id)?
        .into_iter()
        .filter(|c| c.id != entry.id)
        .collect();
    Ok(Some((entry, others)))
}

/// Records in `audit` which catalogued backup an operation concerns — `backup_id` (its first
/// catalog entry, the same for every copy) and `database` — whatever path or copy it was named
/// by: what `pgseal status` finds a backup's checks and verifications by.
pub fn record_backup(audit: Option<&mut crate::session::Operation>, entry: &BackupRecord) {
    if let Some(a) = audit {
        a.detail("backup_id", entry.copy_of.unwrap_or(entry.id));
        a.detail("database", entry.entry.database.clone());
    }
}
