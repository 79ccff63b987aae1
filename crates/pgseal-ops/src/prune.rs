//! Retention: which catalogued backups go, checked against what their own bytes prove before
//! anything is deleted.
//!
//! The catalog picks the candidates (the newest N of each database to keep, or those older than
//! a cutoff); a candidate is deleted only if it is an object of the repository (on this host,
//! directly in the backup directory, no `..`, no symbolic link) whose signed header — checked
//! with the creator's key from the store — matches the catalog entry: signer, creator, time and
//! database ([`examine::header_mismatch`]). Any other entry is refused with the reason, and the
//! rest is still pruned; whoever can write the store cannot make prune delete anything else.
//! Entries of other repositories (other hosts' files, copies elsewhere) are left alone and do
//! not count towards what a repository keeps; a file that is already gone
//! has its entry marked pruned.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use pgseal_core::time::Timestamp;
use pgseal_store::BackupRecord;
use serde_json::json;

use crate::error::{Error, ErrorKind, Result};
use crate::examine::{Examined, examine, header_mismatch, store_signer};
use crate::repo::{RepoError, Repository, Version};
use crate::session::Session;

/// Which backups a prune removes.
#[derive(Debug, Clone, Copy)]
pub enum Retention {
    /// All but the newest N of each database in the repository, counting only backups whose
    /// signed files are there.
    KeepLast(usize),
    /// Those made more than this many milliseconds ago.
    OlderThan(i64),
}

/// What to prune.
#[derive(Debug, Clone)]
pub struct PruneRequest {
    /// Only backups of this database.
    pub database: Option<String>,
    /// Which go.
    pub retention: Retention,
    /// Delete (otherwise only say what would be deleted).
    pub delete: bool,
}

/// Why prune will not touch the object a catalog entry names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The location's path is not plain: not absolute, `.` or `..`, a name holding `/`.
    NotPlain(&'static str),
    /// The backup directory does not exist.
    NoRepository(String),
    /// The file is not directly in the backup directory (after resolving symbolic links).
    Outside(String),
    /// The name is a symbolic link.
    Symlink,
    /// A directory, device, FIFO or socket.
    NotRegular,
    /// It cannot be read.
    Unreadable(String),
    /// A file that is not a pgseal v2 backup.
    NotPgseal(&'static str),
    /// A pgseal file whose signed header pgseal cannot vouch for.
    Unvouched(String),
    /// A genuine pgseal file, but not the backup the catalog entry describes.
    Mismatch(String),
    /// Another catalog entry names the same object.
    Duplicate(i64),
    /// The name pointed at another object by the time it was to be deleted.
    Changed,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotPlain(why) => write!(f, "the catalog path {why}"),
            Refusal::NoRepository(dir) => write!(f, "the backup directory {dir} does not exist"),
            Refusal::Outside(dir) => write!(
                f,
                "not in the backup directory {dir}: prune deletes only there (delete it yourself \
                 if it should go; prune then marks the entry pruned)"
            ),
            Refusal::Symlink => f.write_str("a symbolic link, not a backup pgseal wrote"),
            Refusal::NotRegular => f.write_str("not a regular file"),
            Refusal::Unreadable(e) => write!(f, "cannot be read: {e}"),
            Refusal::NotPgseal(kind) => {
                write!(f, "not a pgseal v2 backup (it looks like: {kind})")
            }
            Refusal::Unvouched(why) => f.write_str(why),
            Refusal::Mismatch(why) => write!(
                f,
                "its signed header does not match the catalog entry: {why}"
            ),
            Refusal::Duplicate(id) => write!(f, "catalog entry {id} names the same file"),
            Refusal::Changed => f.write_str("the file changed while it was being checked"),
        }
    }
}

/// What happened to one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// In another repository (another host's): not this one's to check or delete.
    Elsewhere,
    /// Refused, with why.
    Refused(Refusal),
    /// The object is gone (a dry run: nothing was changed).
    AlreadyGone,
    /// The object was gone; its entry is now marked pruned (or, `Some`, could not be).
    Uncatalogued(Option<String>),
    /// Would be deleted (a dry run).
    WouldDelete,
    /// Deleted; its entry marked pruned (or, `Some`, could not be).
    Deleted(Option<String>),
    /// Deleting failed.
    Failed(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unmarked = |f: &mut fmt::Formatter<'_>, done: &str, e: &Option<String>| match e {
            None => f.write_str(done),
            Some(e) => write!(f, "{done}, but the catalog was not updated: {e}"),
        };
        match self {
            Outcome::Elsewhere => f.write_str("skipped: on another host"),
            Outcome::Refused(_) => f.write_str("REFUSED"),
            Outcome::AlreadyGone => f.write_str("already gone"),
            Outcome::Uncatalogued(e) => unmarked(f, "already gone; uncatalogued", e),
            Outcome::WouldDelete => f.write_str("would delete"),
            Outcome::Deleted(e) => unmarked(f, "deleted", e),
            Outcome::Failed(e) => write!(f, "FAILED: {e}"),
        }
    }
}

/// What a prune did, candidate by candidate, oldest first.
#[derive(Debug)]
pub struct PruneReport {
    /// Each candidate and what happened to it.
    pub items: Vec<(BackupRecord, Outcome)>,
    /// The repository pruned, as shown.
    pub repository: String,
}

impl PruneReport {
    /// The refused candidates, as the audit entry records them.
    pub fn refused(&self) -> Vec<serde_json::Value> {
        self.items
            .iter()
            .filter_map(|(b, o)| match o {
                Outcome::Refused(r) => Some(json!({
                    "id": b.id,
                    "path": b.entry.location.shown(),
                    "location": b.entry.location.as_str(),
                    "reason": r.to_string(),
                })),
                _ => None,
            })
            .collect()
    }

    /// How many were deleted.
    pub fn deleted(&self) -> usize {
        self.items
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Deleted(_)))
            .count()
    }

    /// The prune's verdict: refused entries fail it (the catalog cannot be trusted there), and
    /// so do deletions that failed; the rest was pruned either way.
    pub fn result(&self) -> Result<()> {
        let refused: Vec<(&BackupRecord, &Refusal)> = self
            .items
            .iter()
            .filter_map(|(b, o)| match o {
                Outcome::Refused(r) => Some((b, r)),
                _ => None,
            })
            .collect();
        if let Some((b, why)) = refused.first() {
            return Err(Error::Authentication(format!(
                "{} catalog entries were refused: no backup in {} with a matching signed header \
                 backs them, so the catalog cannot be trusted there (first: {}: {why}); the \
                 rest was pruned",
                refused.len(),
                self.repository,
                b.entry.location.shown(),
            )));
        }
        let failed = self
            .items
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Failed(_)))
            .count();
        if failed > 0 {
            return Err(Error::Several {
                failed,
                total: failed,
                what: "backups could not be deleted",
                kind: ErrorKind::Io,
            });
        }
        Ok(())
    }
}

/// What checking a catalog entry against its object found.
enum Verdict {
    /// In another repository.
    Elsewhere,
    /// The object is no longer there.
    Gone,
    /// The object is a backup pgseal made and the entry describes: it may be deleted.
    Genuine(Version),
    Refused(Refusal),
}

/// Prunes `repo` as `request` says, recording what it did in the session's audit entry (which
/// the caller started). Refusals are in the report ([`PruneReport::result`] says whether the
/// prune as a whole failed); an error here means nothing was deleted.
pub fn prune(
    session: &mut Session,
    repo: &dyn Repository,
    request: &PruneRequest,
) -> Result<PruneReport> {
    let backups = session.store()?.backups(request.database.as_deref())?;
    let mut doomed: Vec<(BackupRecord, Verdict)> = match request.retention {
        Retention::KeepLast(keep) => {
            // Only backups whose signed files are here count as kept: catalog rows nothing
            // backs cannot push real backups out of the newest N.
            let mut checked = Vec::new();
            for b in &backups {
                checked.push((b.clone(), check(session, repo, b)?));
            }
            refuse_duplicates(&mut checked);
            // Retention is per repository: only this repository's objects count (entries of
            // other repositories — other hosts', copies elsewhere — are never deleted here).
            let mut kept = BTreeMap::<&str, usize>::new();
            let mut newest_first: Vec<&(BackupRecord, Verdict)> = checked.iter().collect();
            newest_first.sort_by_key(|(b, _)| std::cmp::Reverse((b.entry.created_at, b.id)));
            let mut keep_ids = BTreeSet::new();
            for (b, verdict) in newest_first {
                if matches!(verdict, Verdict::Genuine(_)) {
                    let n = kept.entry(b.entry.database.as_str()).or_default();
                    if *n < keep {
                        *n += 1;
                        keep_ids.insert(b.id);
                    }
                }
            }
            checked
                .into_iter()
                .filter(|(b, _)| !keep_ids.contains(&b.id))
                .collect()
        }
        Retention::OlderThan(age) => {
            let cutoff = Timestamp::now().millis() - age;
            // The catalog's time picks the candidates; a candidate is deleted only if its
            // signed header carries that same time.
            let mut checked = Vec::new();
            for b in backups
                .iter()
                .filter(|b| b.entry.created_at.millis() < cutoff)
            {
                checked.push((b.clone(), check(session, repo, b)?));
            }
            refuse_duplicates(&mut checked);
            checked
        }
    };
    doomed.sort_by_key(|(b, _)| (b.entry.created_at, b.id));

    let mut items = Vec::new();
    for (b, verdict) in doomed {
        let outcome = match verdict {
            Verdict::Elsewhere => Outcome::Elsewhere,
            Verdict::Refused(r) => Outcome::Refused(r),
            Verdict::Gone if !request.delete => Outcome::AlreadyGone,
            Verdict::Gone => Outcome::Uncatalogued(mark(session, b.id)),
            Verdict::Genuine(_) if !request.delete => Outcome::WouldDelete,
            Verdict::Genuine(version) => match repo.delete(&b.entry.location, Some(&version)) {
                Ok(()) => Outcome::Deleted(mark(session, b.id)),
                Err(Error::Repository(RepoError::NotFound(_))) => {
                    Outcome::Uncatalogued(mark(session, b.id))
                }
                Err(e) => match refusal(&e) {
                    Some(r) => Outcome::Refused(r),
                    None => Outcome::Failed(e.to_string()),
                },
            },
        };
        items.push((b, outcome));
    }
    let report = PruneReport {
        items,
        repository: repo.describe(),
    };
    if let Some(a) = session.audit_mut() {
        a.detail("candidates", report.items.len());
        a.detail("deleted", report.deleted());
        let refused = report.refused();
        if !refused.is_empty() {
            a.detail("refused", refused);
        }
    }
    Ok(report)
}

/// Checks a catalog entry against the object it names: an object of the repository whose
/// signed header (verified with the creator's key) matches the entry. Errors only when the
/// store cannot be read.
fn check(session: &mut Session, repo: &dyn Repository, b: &BackupRecord) -> Result<Verdict> {
    let object = match repo.open(&b.entry.location) {
        Ok(Some(object)) => object,
        Ok(None) => return Ok(Verdict::Gone),
        Err(Error::Repository(RepoError::Elsewhere { .. })) => return Ok(Verdict::Elsewhere),
        // A copy in another directory of this host is another repository's, not a stray path.
        Err(Error::Repository(RepoError::Outside { .. })) if is_copy(session, b)? => {
            return Ok(Verdict::Elsewhere);
        }
        Err(e) => {
            return Ok(Verdict::Refused(
                refusal(&e).unwrap_or_else(|| Refusal::Unreadable(e.to_string())),
            ));
        }
    };
    let version = object.version.clone();
    Ok(
        match examine(object, &mut |fp| store_signer(session, fp))? {
            Examined::Signed(prelude) => match header_mismatch(&prelude.header, &b.entry) {
                Some(why) => Verdict::Refused(Refusal::Mismatch(why)),
                None => Verdict::Genuine(version),
            },
            Examined::Legacy(kind) | Examined::Foreign(kind) => {
                Verdict::Refused(Refusal::NotPgseal(kind))
            }
            Examined::Unvouched { reason, .. } => Verdict::Refused(Refusal::Unvouched(reason)),
        },
    )
}

/// Whether the entry is one of several copies of a backup (`pgseal copy`).
fn is_copy(session: &mut Session, b: &BackupRecord) -> Result<bool> {
    Ok(b.copy_of.is_some() || session.store()?.copies(b.id)?.len() > 1)
}

/// The refusal a repository's answer amounts to, if it is one.
fn refusal(e: &Error) -> Option<Refusal> {
    let Error::Repository(e) = e else {
        return None;
    };
    Some(match e {
        RepoError::NotPlain { why, .. } => Refusal::NotPlain(why),
        RepoError::Missing(dir) => Refusal::NoRepository(dir.clone()),
        RepoError::Outside { repository, .. } => Refusal::Outside(repository.clone()),
        RepoError::Symlink(_) => Refusal::Symlink,
        RepoError::NotRegular(_) => Refusal::NotRegular,
        RepoError::Changed(_) => Refusal::Changed,
        _ => return None,
    })
}

/// Two entries naming one object (through another spelling of its location): the first keeps
/// it.
fn refuse_duplicates(checked: &mut [(BackupRecord, Verdict)]) {
    let mut seen: BTreeMap<Version, i64> = BTreeMap::new();
    for (b, verdict) in checked.iter_mut() {
        if let Verdict::Genuine(version) = verdict {
            match seen.get(version) {
                Some(first) => *verdict = Verdict::Refused(Refusal::Duplicate(*first)),
                None => {
                    seen.insert(version.clone(), b.id);
                }
            }
        }
    }
}

/// Marks a backup pruned; says why not if that failed.
fn mark(session: &mut Session, id: i64) -> Option<String> {
    match session
        .store()
        .and_then(|s| s.mark_pruned(id).map_err(Error::from))
    {
        Ok(()) => None,
        Err(e) => Some(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;

    use pgseal_core::keys::KeyBits;
    use pgseal_core::v2::{Metadata, SealParams, seal};
    use pgseal_core::{PrivateKey, PublicKey};
    use pgseal_store::{Action, Location, NewBackup, NewUserKey, Role, Store, StoreUrl, Username};

    use crate::observe::Silent;
    use crate::repo::local::LocalRepository;
    use crate::session::{Actor, Session, Site};

    fn describe(e: &Error) -> (String, i32) {
        (e.to_string(), 1)
    }

    /// Through the operations' API alone, on a real store and directory: in a catalog shared
    /// with another host, prune deletes this host's genuine old backup, leaves the other
    /// host's entry for the same path alone, and refuses (and audits) a row pointed at a file
    /// outside the backup directory.
    #[test]
    fn prune_deletes_only_its_own_hosts_genuine_backups_in_a_shared_catalog() {
        let tmp = tempfile::tempdir().unwrap();
        let url = StoreUrl::Sqlite(tmp.path().join("pgseal.db"));
        let mut store = Store::open(&url).unwrap();
        let user = store
            .add_user(&Username::parse("system_backup").unwrap(), Role::Operator)
            .unwrap();
        let signer = PrivateKey::generate(KeyBits::from_bits(2048).unwrap()).unwrap();
        let public = signer.public();
        store
            .add_user_key(
                user.id,
                &NewUserKey {
                    fingerprint: public.fingerprint(),
                    legacy_fingerprint: None,
                    public_key_pem: public.to_pem(),
                    key_size: 2048,
                },
            )
            .unwrap();
        let server: PublicKey = PrivateKey::generate(KeyBits::from_bits(2048).unwrap())
            .unwrap()
            .public()
            .clone();

        let backups = tmp.path().join("backups");
        let repo = LocalRepository::create_dir(&backups, "db1").unwrap();
        let created = Timestamp(1_700_000_000_000);
        let recipients = [server];
        let mut params = SealParams::new(&signer, &recipients);
        params.metadata = Metadata {
            created_at_ms: created.millis() as u64,
            creator_user_id: Some(user.id as u64),
            source_database: Some("shop".into()),
            ..Metadata::default()
        };
        let mut new = repo.create("shop_1.pgseal").unwrap();
        seal(&b"a dump"[..], &mut new, &params).unwrap();
        new.flush().unwrap();
        let genuine = new.commit().unwrap();
        let entry = NewBackup {
            database: "shop".into(),
            location: genuine.clone(),
            size_bytes: 1,
            created_at: created,
            creator_user_id: Some(user.id),
            creator_key: public.fingerprint(),
            server_keys: Vec::new(),
            format_version: 2,
            ciphertext_blake3: None,
        };
        let mine = store.add_backup(&entry).unwrap();
        let path = genuine.file_path().unwrap();
        let theirs = store
            .add_backup(&NewBackup {
                location: Location::file("db2", &path).unwrap(),
                ..entry.clone()
            })
            .unwrap();
        let victim = tmp.path().join("passwd");
        std::fs::write(&victim, "root").unwrap();
        let forged = store
            .add_backup(&NewBackup {
                location: Location::file("db1", &victim).unwrap(),
                ..entry.clone()
            })
            .unwrap();
        drop(store);

        let site = Site {
            store: url.clone(),
            backup_dir: backups,
            repository: None,
            user_keys_dir: tmp.path().join("keys"),
            server_keys_dir: tmp.path().join("keys"),
            signature_required: true,
            rsa_key_size: 2048,
            retention_days: 30,
        };
        let actor = Actor {
            host: Some("db1".into()),
            ..Actor::default()
        };
        let mut session = Session::new(Some(site), actor, Arc::new(Silent), describe);
        session.audit(Action::Prune);
        let report = prune(
            &mut session,
            &repo,
            &PruneRequest {
                database: None,
                retention: Retention::OlderThan(86_400_000),
                delete: true,
            },
        )
        .unwrap();
        let outcome = |id: i64| {
            report
                .items
                .iter()
                .find(|(b, _)| b.id == id)
                .map(|(_, o)| o.clone())
                .unwrap()
        };
        assert_eq!(outcome(mine.id), Outcome::Deleted(None));
        assert_eq!(outcome(theirs.id), Outcome::Elsewhere);
        assert!(
            matches!(outcome(forged.id), Outcome::Refused(Refusal::Outside(_))),
            "{:?}",
            outcome(forged.id)
        );
        assert!(!path.exists(), "the genuine old backup was not deleted");
        assert!(
            victim.exists(),
            "a file outside the backup directory was deleted"
        );
        let refused = report.result().unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Authentication);
        assert_eq!(
            session.audit_mut().unwrap().details["refused"][0]["id"],
            forged.id
        );
        let live: Vec<i64> = session
            .store()
            .unwrap()
            .backups(None)
            .unwrap()
            .iter()
            .map(|b| b.id)
            .collect();
        assert_eq!(live, vec![theirs.id, forged.id]);
    }

    #[test]
    fn outcomes_read_as_before() {
        assert_eq!(Outcome::Deleted(None).to_string(), "deleted");
        assert_eq!(
            Outcome::Uncatalogued(Some("locked".into())).to_string(),
            "already gone; uncatalogued, but the catalog was not updated: locked"
        );
        assert_eq!(Outcome::Elsewhere.to_string(), "skipped: on another host");
        assert_eq!(
            Refusal::NotPlain("holds `.` or `..`").to_string(),
            "the catalog path holds `.` or `..`"
        );
    }
}
