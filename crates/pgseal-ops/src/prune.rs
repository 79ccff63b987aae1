//! Retention: which catalogued backups go, checked against what their own bytes prove before
//! anything is deleted.
//!
//! Every catalog entry of the repository is checked against its object first: it counts only
//! if it is an object of the repository (on this host, directly in the backup directory, no
//! `..`, no symbolic link) whose signed header — checked with the creator's key from the store
//! — matches the entry (signer, creator, time and database: [`examine::header_mismatch`]) and
//! whose final signature verifies over the ciphertext digest the catalog recorded. The
//! retention policy ([`crate::retention`]) then sees only those, with the time from their
//! signed header, database by database: a catalog row nothing backs, a file signed by a key
//! the store does not know or a header that disagrees with its row can take no kept backup's
//! place. Any other entry is refused with the reason (and never deleted), and the rest is
//! still pruned; whoever can write the store cannot make prune delete anything else. Entries
//! of other repositories (other hosts' files, copies elsewhere) are not this prune's; an entry
//! whose object is already gone has its entry marked pruned.

use std::collections::BTreeMap;
use std::fmt;

use pgseal_core::time::Timestamp;
use pgseal_store::BackupRecord;
use serde_json::json;

use crate::error::{Error, ErrorKind, Result};
use crate::examine::{Examined, examine, header_mismatch, store_signer};
use crate::repo::{RepoError, Repository, Version};
use crate::retention::{Counted, Policy, Reason, decide};
use crate::session::Session;

/// What to prune.
#[derive(Debug, Clone)]
pub struct PruneRequest {
    /// Only backups of this database.
    pub database: Option<String>,
    /// What to keep of each database's backups.
    pub policy: Policy,
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
    /// The catalog entry records no ciphertext digest to check the final signature against.
    NoDigest,
    /// The final signature does not verify over the digest the catalog recorded.
    FinalSignature(String),
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
            Refusal::NoDigest => f.write_str(
                "the catalog entry records no ciphertext digest, so its final signature cannot \
                 be checked",
            ),
            Refusal::FinalSignature(why) => write!(
                f,
                "its final signature does not verify over the ciphertext digest the catalog \
                 recorded ({why}): the file or its catalog entry was altered, or the file is \
                 damaged"
            ),
            Refusal::Duplicate(id) => write!(f, "catalog entry {id} names the same file"),
            Refusal::Changed => f.write_str("the file changed while it was being checked"),
        }
    }
}

/// What happened to one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Kept, by these rules.
    Kept(Vec<Reason>),
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
            Outcome::Kept(_) => f.write_str("kept"),
            Outcome::Refused(_) => f.write_str("REFUSED"),
            Outcome::AlreadyGone => f.write_str("already gone"),
            Outcome::Uncatalogued(e) => unmarked(f, "already gone; uncatalogued", e),
            Outcome::WouldDelete => f.write_str("would delete"),
            Outcome::Deleted(e) => unmarked(f, "deleted", e),
            Outcome::Failed(e) => write!(f, "FAILED: {e}"),
        }
    }
}

/// What a prune did, entry by entry of the repository, oldest first.
#[derive(Debug)]
pub struct PruneReport {
    /// Each of the repository's catalog entries and what happened to it.
    pub items: Vec<(BackupRecord, Outcome)>,
    /// The repository pruned, as shown.
    pub repository: String,
    /// The policy applied.
    pub policy: Policy,
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

    /// How many were kept.
    pub fn kept(&self) -> usize {
        self.items
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Kept(_)))
            .count()
    }

    /// Every decision, as the audit entry records them: the entry, the rules that kept it
    /// (none when it went) and what happened.
    pub fn decisions(&self) -> Vec<serde_json::Value> {
        self.items
            .iter()
            .map(|(b, o)| {
                let kept_by: Vec<String> = match o {
                    Outcome::Kept(reasons) => reasons.iter().map(Reason::to_string).collect(),
                    _ => Vec::new(),
                };
                json!({
                    "id": b.id,
                    "database": b.entry.database,
                    "created_at": b.entry.created_at.rfc3339(),
                    "kept_by": kept_by,
                    "outcome": o.to_string(),
                })
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
                "{} catalog entries were refused: no backup in {} whose signatures match them \
                 backs them, so the catalog cannot be trusted there (first: {}: {why}); they \
                 were neither counted nor deleted, and the rest was pruned",
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
    /// The object is a backup pgseal made and the entry describes, made at this signed time: it
    /// counts, and may be deleted.
    Genuine(Version, Timestamp),
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
    let mut checked = Vec::new();
    for b in backups {
        let verdict = check(session, repo, &b)?;
        // Entries of other repositories are theirs: not checked, counted or shown here.
        if !matches!(verdict, Verdict::Elsewhere) {
            checked.push((b, verdict));
        }
    }
    refuse_duplicates(&mut checked);
    // Retention is per database (and, being a repository's prune, per repository): only
    // the genuine objects count, at the time their signed header carries.
    let mut counted = BTreeMap::<&str, Vec<Counted>>::new();
    for (b, verdict) in &checked {
        if let Verdict::Genuine(_, time) = verdict {
            counted
                .entry(b.entry.database.as_str())
                .or_default()
                .push(Counted {
                    id: b.id,
                    time: *time,
                });
        }
    }
    let now = Timestamp::now();
    let kept: BTreeMap<i64, Vec<Reason>> = counted
        .values()
        .flat_map(|backups| decide(&request.policy, now, backups))
        .filter(|d| d.kept())
        .map(|d| (d.id, d.kept_by))
        .collect();
    checked.sort_by_key(|(b, _)| (b.entry.created_at, b.id));

    let mut items = Vec::new();
    for (b, verdict) in checked {
        let outcome = match verdict {
            Verdict::Elsewhere => continue,
            Verdict::Genuine(_, _) if kept.contains_key(&b.id) => {
                Outcome::Kept(kept[&b.id].clone())
            }
            Verdict::Refused(r) => Outcome::Refused(r),
            Verdict::Gone if !request.delete => Outcome::AlreadyGone,
            Verdict::Gone => Outcome::Uncatalogued(mark(session, b.id)),
            Verdict::Genuine(..) if !request.delete => Outcome::WouldDelete,
            Verdict::Genuine(version, _) => match repo.delete(&b.entry.location, Some(&version)) {
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
        policy: request.policy.clone(),
    };
    if let Some(a) = session.audit_mut() {
        a.detail("policy", report.policy.to_string());
        a.detail("kept", report.kept());
        a.detail("candidates", report.items.len() - report.kept());
        a.detail("deleted", report.deleted());
        a.detail("decisions", report.decisions());
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
    let (version, size) = (object.version.clone(), object.size);
    Ok(
        match examine(object, &mut |fp| store_signer(session, fp))? {
            Examined::Signed(prelude) => match header_mismatch(&prelude.header, &b.entry) {
                Some(why) => Verdict::Refused(Refusal::Mismatch(why)),
                None => match final_signature(session, repo, b, &prelude, size)? {
                    Some(refused) => Verdict::Refused(refused),
                    None => Verdict::Genuine(version, signed_time(&prelude.header)),
                },
            },
            Examined::Legacy(kind) | Examined::Foreign(kind) => {
                Verdict::Refused(Refusal::NotPgseal(kind))
            }
            Examined::Unvouched { reason, .. } => Verdict::Refused(Refusal::Unvouched(reason)),
        },
    )
}

/// The time a backup's signed header carries (the header names it in milliseconds since 1970;
/// a time beyond what a catalog can hold is the latest a catalog can).
fn signed_time(header: &pgseal_core::v2::Header) -> Timestamp {
    Timestamp(i64::try_from(header.metadata.created_at_ms).unwrap_or(i64::MAX))
}

/// Checks the object's final signature (its last bytes, read alone) over the ciphertext digest
/// the catalog recorded: what the creator signed when the backup was complete. `None` when it
/// verifies. The header has been checked already; its time is the entry's.
fn final_signature(
    session: &mut Session,
    repo: &dyn Repository,
    b: &BackupRecord,
    prelude: &pgseal_core::v2::Prelude,
    size: u64,
) -> Result<Option<Refusal>> {
    let Some(digest) = &b.entry.ciphertext_blake3 else {
        return Ok(Some(Refusal::NoDigest));
    };
    let Some(signer) = store_signer(session, &prelude.header.signer)? else {
        return Ok(Some(Refusal::Unvouched(format!(
            "signed by {}, a key this store no longer knows",
            prelude.header.signer
        ))));
    };
    let len = usize::from(prelude.header.signature_len);
    let Some(at) = size.checked_sub(len as u64) else {
        return Ok(Some(Refusal::FinalSignature(
            "the file is shorter than a signature".into(),
        )));
    };
    let tail = match repo.read_at(&b.entry.location, at, len) {
        Ok(tail) if tail.len() == len => tail,
        Ok(_) => return Ok(Some(Refusal::Changed)),
        Err(e) => {
            return Ok(Some(
                refusal(&e).unwrap_or_else(|| Refusal::Unreadable(e.to_string())),
            ));
        }
    };
    Ok(prelude
        .check_final_signature(&signer, digest.as_bytes(), &tail)
        .err()
        .map(|e| Refusal::FinalSignature(e.to_string())))
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
        if let Verdict::Genuine(version, _) = verdict {
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
    use std::collections::BTreeSet;
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::Arc;

    use pgseal_core::keys::KeyBits;
    use pgseal_core::v2::{Metadata, SealParams, seal};
    use pgseal_core::{PrivateKey, PublicKey};
    use pgseal_store::{
        Action, Hash32, Location, NewBackup, NewUserKey, Role, Store, StoreUrl, User, Username,
    };

    use crate::observe::Silent;
    use crate::repo::local::LocalRepository;
    use crate::session::{Actor, Session, Site};

    const DAY: i64 = 86_400_000;

    fn describe(e: &Error) -> (String, i32) {
        (e.to_string(), 1)
    }

    /// A store with one operator whose key signs backups, a server key, and a backup
    /// directory on host `db1`.
    struct Bench {
        tmp: tempfile::TempDir,
        url: StoreUrl,
        user: User,
        signer: PrivateKey,
        server: PublicKey,
        repo: LocalRepository,
    }

    impl Bench {
        fn new() -> Bench {
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
            let server = PrivateKey::generate(KeyBits::from_bits(2048).unwrap())
                .unwrap()
                .public()
                .clone();
            let repo = LocalRepository::create_dir(&tmp.path().join("backups"), "db1").unwrap();
            Bench {
                tmp,
                url,
                user,
                signer,
                server,
                repo,
            }
        }

        /// Seals a backup of `db` signed by `signer` at `created` into the repository; the
        /// catalog entry describing it as made (not yet added).
        fn seal(&self, name: &str, db: &str, created: Timestamp, signer: &PrivateKey) -> NewBackup {
            let recipients = [self.server.clone()];
            let mut params = SealParams::new(signer, &recipients);
            params.metadata = Metadata {
                created_at_ms: created.millis() as u64,
                creator_user_id: Some(self.user.id as u64),
                source_database: Some(db.into()),
                ..Metadata::default()
            };
            let mut new = self.repo.create(name).unwrap();
            let sealed = seal(&b"a dump"[..], &mut new, &params).unwrap();
            new.flush().unwrap();
            NewBackup {
                database: db.into(),
                location: new.commit().unwrap(),
                size_bytes: sealed.output_bytes as i64,
                created_at: created,
                creator_user_id: Some(self.user.id),
                creator_key: signer.public().fingerprint(),
                server_keys: Vec::new(),
                format_version: 2,
                ciphertext_blake3: Some(Hash32(sealed.ciphertext_digest)),
            }
        }

        fn add(&self, entry: &NewBackup) -> i64 {
            Store::open(&self.url)
                .unwrap()
                .add_backup(entry)
                .unwrap()
                .id
        }

        fn session(&self) -> Session {
            let site = Site {
                store: self.url.clone(),
                backup_dir: self.tmp.path().join("backups"),
                repository: None,
                user_keys_dir: self.tmp.path().join("keys"),
                server_keys_dir: self.tmp.path().join("keys"),
                signature_required: true,
                rsa_key_size: 2048,
                pq_keys: false,
                retention_days: 30,
            };
            let actor = Actor {
                host: Some("db1".into()),
                ..Actor::default()
            };
            Session::new(Some(site), actor, Arc::new(Silent), describe)
        }

        fn prune(&self, policy: Policy) -> (PruneReport, Session) {
            let mut session = self.session();
            session.audit(Action::Prune);
            let request = PruneRequest {
                database: None,
                policy,
                delete: true,
            };
            let report = prune(&mut session, &self.repo, &request).unwrap();
            (report, session)
        }
    }

    fn outcome(report: &PruneReport, id: i64) -> Option<Outcome> {
        report
            .items
            .iter()
            .find(|(b, _)| b.id == id)
            .map(|(_, o)| o.clone())
    }

    fn path(entry: &NewBackup) -> PathBuf {
        entry.location.file_path().unwrap()
    }

    fn days_ago(n: i64) -> Timestamp {
        Timestamp(Timestamp::now().millis() - n * DAY)
    }

    /// Through the operations' API alone, on a real store and directory: in a catalog shared
    /// with another host, prune deletes this host's genuine old backup, leaves the other
    /// host's entry for the same path alone (not this repository's: not even shown), keeps the
    /// newest, and refuses (and audits) a row pointed at a file outside the backup directory.
    #[test]
    fn prune_deletes_only_its_own_hosts_genuine_backups_in_a_shared_catalog() {
        let b = Bench::new();
        let old = b.seal("shop_1.pgseal", "shop", days_ago(3), &b.signer);
        let mine = b.add(&old);
        let newest = b.seal("shop_2.pgseal", "shop", days_ago(0), &b.signer);
        let newest_id = b.add(&newest);
        let theirs = b.add(&NewBackup {
            location: Location::file("db2", &path(&old)).unwrap(),
            ..old.clone()
        });
        let victim = b.tmp.path().join("passwd");
        std::fs::write(&victim, "root").unwrap();
        let forged = b.add(&NewBackup {
            location: Location::file("db1", &victim).unwrap(),
            ..old.clone()
        });

        let (report, mut session) = b.prune(Policy {
            younger_than_ms: Some(DAY),
            ..Policy::default()
        });
        assert_eq!(outcome(&report, mine), Some(Outcome::Deleted(None)));
        assert_eq!(
            outcome(&report, newest_id),
            Some(Outcome::Kept(vec![Reason::Newest, Reason::YoungerThan]))
        );
        assert_eq!(
            outcome(&report, theirs),
            None,
            "another host's entry was shown"
        );
        assert!(
            matches!(
                outcome(&report, forged),
                Some(Outcome::Refused(Refusal::Outside(_)))
            ),
            "{:?}",
            outcome(&report, forged)
        );
        assert!(
            !path(&old).exists(),
            "the genuine old backup was not deleted"
        );
        assert!(path(&newest).exists());
        assert!(
            victim.exists(),
            "a file outside the backup directory was deleted"
        );
        let refused = report.result().unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Authentication);
        let details = &session.audit_mut().unwrap().details;
        assert_eq!(details["refused"][0]["id"], forged);
        assert_eq!(details["policy"], "delete older than 1d");
        let decision = |id: i64| {
            details["decisions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["id"] == id)
                .cloned()
                .unwrap()
        };
        assert_eq!(decision(mine)["outcome"], "deleted");
        assert_eq!(decision(mine)["kept_by"], json!([]));
        assert_eq!(
            decision(newest_id)["kept_by"],
            json!(["newest", "younger than --older-than"])
        );
        let live: BTreeSet<i64> = session
            .store()
            .unwrap()
            .backups(None)
            .unwrap()
            .iter()
            .map(|b| b.id)
            .collect();
        assert_eq!(live, BTreeSet::from([newest_id, theirs, forged]));
    }

    /// Backups whose times are forged — a file signed by a key the store does not know, a
    /// catalog row whose time disagrees with the signed header, a row whose digest was
    /// altered — count for nothing: the verified backups are kept as if they were not there,
    /// and they are refused, never deleted.
    #[test]
    fn forged_future_or_past_times_never_displace_a_verified_backup() {
        let b = Bench::new();
        let genuine: Vec<NewBackup> = (1..=3)
            .map(|n| {
                b.seal(
                    &format!("shop_{n}.pgseal"),
                    "shop",
                    days_ago(4 - n),
                    &b.signer,
                )
            })
            .collect();
        let ids: Vec<i64> = genuine.iter().map(|e| b.add(e)).collect();
        // Signed by a stranger, a year in the future (and another a year in the past).
        let stranger = PrivateKey::generate(KeyBits::from_bits(2048).unwrap()).unwrap();
        let future = b.seal("shop_f.pgseal", "shop", days_ago(-365), &stranger);
        let future_id = b.add(&future);
        let past = b.seal("shop_p.pgseal", "shop", days_ago(365), &stranger);
        let past_id = b.add(&past);
        // Signed by the real key ten days ago; the catalog says an hour from now.
        let mut misdated = b.seal("shop_m.pgseal", "shop", days_ago(10), &b.signer);
        misdated.created_at = Timestamp(Timestamp::now().millis() + 3_600_000);
        let misdated_id = b.add(&misdated);
        // A genuine file whose catalog digest was replaced.
        let mut redigested = b.seal("shop_d.pgseal", "shop", days_ago(-1), &b.signer);
        redigested.ciphertext_blake3 = Some(Hash32([7; 32]));
        let redigested_id = b.add(&redigested);

        let (report, _) = b.prune(Policy {
            last: Some(1),
            ..Policy::default()
        });
        assert_eq!(
            outcome(&report, ids[2]),
            Some(Outcome::Kept(vec![Reason::Newest, Reason::Last]))
        );
        assert_eq!(outcome(&report, ids[0]), Some(Outcome::Deleted(None)));
        assert_eq!(outcome(&report, ids[1]), Some(Outcome::Deleted(None)));
        for id in [future_id, past_id] {
            assert!(
                matches!(
                    outcome(&report, id),
                    Some(Outcome::Refused(Refusal::Unvouched(_)))
                ),
                "{:?}",
                outcome(&report, id)
            );
        }
        assert!(matches!(
            outcome(&report, misdated_id),
            Some(Outcome::Refused(Refusal::Mismatch(_)))
        ));
        assert!(matches!(
            outcome(&report, redigested_id),
            Some(Outcome::Refused(Refusal::FinalSignature(_)))
        ));
        assert!(path(&genuine[2]).exists());
        for forged in [&future, &past, &misdated, &redigested] {
            assert!(
                path(forged).exists(),
                "prune deleted a file it could not vouch for"
            );
        }
        assert_eq!(
            report.result().unwrap_err().kind(),
            ErrorKind::Authentication
        );
    }

    /// A genuine backup from a host whose clock runs a year fast is kept and takes no rule's
    /// place; a backup whose file is cut short fails its final signature and is refused.
    #[test]
    fn a_clock_skewed_backup_is_kept_apart_and_a_truncated_one_is_refused() {
        let b = Bench::new();
        let real = b.seal("shop_1.pgseal", "shop", days_ago(0), &b.signer);
        let real_id = b.add(&real);
        let older = b.seal("shop_0.pgseal", "shop", days_ago(1), &b.signer);
        let older_id = b.add(&older);
        let skewed = b.seal("shop_9.pgseal", "shop", days_ago(-365), &b.signer);
        let skewed_id = b.add(&skewed);
        let cut = b.seal("shop_c.pgseal", "shop", days_ago(2), &b.signer);
        let cut_id = b.add(&cut);
        let len = std::fs::metadata(path(&cut)).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(path(&cut))
            .unwrap()
            .set_len(len - 1)
            .unwrap();

        let (report, _) = b.prune(Policy {
            daily: Some(1),
            ..Policy::default()
        });
        assert_eq!(
            outcome(&report, skewed_id),
            Some(Outcome::Kept(vec![Reason::Future]))
        );
        assert!(matches!(
            outcome(&report, real_id),
            Some(Outcome::Kept(reasons)) if reasons.contains(&Reason::Newest)
        ));
        assert_eq!(outcome(&report, older_id), Some(Outcome::Deleted(None)));
        assert!(matches!(
            outcome(&report, cut_id),
            Some(Outcome::Refused(Refusal::FinalSignature(_)))
        ));
        assert!(path(&cut).exists() && path(&skewed).exists() && !path(&older).exists());
    }

    /// Retention is per database: each keeps its own newest.
    #[test]
    fn each_database_keeps_its_own() {
        let b = Bench::new();
        let shop: Vec<i64> = (0..2)
            .map(|n| b.add(&b.seal(&format!("shop_{n}.pgseal"), "shop", days_ago(n), &b.signer)))
            .collect();
        let pay: Vec<i64> = (0..2)
            .map(|n| {
                b.add(&b.seal(
                    &format!("pay_{n}.pgseal"),
                    "pay",
                    days_ago(n + 5),
                    &b.signer,
                ))
            })
            .collect();
        let (report, _) = b.prune(Policy::default());
        for kept in [shop[0], pay[0]] {
            assert!(matches!(outcome(&report, kept), Some(Outcome::Kept(_))));
        }
        for gone in [shop[1], pay[1]] {
            assert_eq!(outcome(&report, gone), Some(Outcome::Deleted(None)));
        }
        report.result().unwrap();
        assert_eq!(report.kept(), 2);
        assert_eq!(report.deleted(), 2);
    }

    #[test]
    fn outcomes_read_as_before() {
        assert_eq!(Outcome::Deleted(None).to_string(), "deleted");
        assert_eq!(
            Outcome::Uncatalogued(Some("locked".into())).to_string(),
            "already gone; uncatalogued, but the catalog was not updated: locked"
        );
        assert_eq!(Outcome::Kept(vec![Reason::Newest]).to_string(), "kept");
        assert_eq!(
            Refusal::NotPlain("holds `.` or `..`").to_string(),
            "the catalog path holds `.` or `..`"
        );
    }
}
