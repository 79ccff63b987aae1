//! Discarding unfinished writes ([`Unfinished`]): `pgseal repo cleanup`, and every backup for
//! those old enough that no running write can own them.
//!
//! A write in progress is unfinished too — a backup streaming into its multipart upload right
//! now — so only writes started more than an age ago are discarded: long enough that none is
//! still running (a day by default, in the front end's configuration). Each run is one
//! `REPO_CLEANUP` audit entry naming every write it discarded and every one it could not.

use std::time::{Duration, SystemTime};

use pgseal_store::Action;
use serde_json::json;

use crate::Error;
use crate::error::Result;
use crate::repo::{Repository, Unfinished};
use crate::session::{Operation, Session};

/// What a cleanup found and did.
#[derive(Debug, Default)]
pub struct Cleaned {
    /// The repository, as shown.
    pub repository: String,
    /// Discarded (or, in a dry run, to be discarded).
    pub discarded: Vec<Unfinished>,
    /// Left alone: started less than the age ago, or when is not known.
    pub kept: Vec<Unfinished>,
    /// Could not be discarded, and why.
    pub failed: Vec<(Unfinished, Error)>,
}

impl Cleaned {
    /// The run's verdict: the first write that could not be discarded.
    pub fn result(self) -> Result<()> {
        match self.failed.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }
}

/// Discards the unfinished writes in `repository` started more than `older_than` ago (those
/// whose start is not known are kept), audited as `REPO_CLEANUP` (the command's entry). With
/// `dry_run`, only says what it would discard.
pub fn cleanup(
    session: &mut Session,
    repository: &dyn Repository,
    older_than: Duration,
    dry_run: bool,
) -> Result<Cleaned> {
    let audit = session.audit(Action::RepoCleanup);
    audit.detail("repository", repository.describe());
    audit.detail("older_than_seconds", older_than.as_secs());
    audit.detail("dry_run", dry_run);
    let cleaned = run(repository, older_than, dry_run)?;
    if let Some(a) = session.audit_mut() {
        describe(a, &cleaned);
    }
    Ok(cleaned)
}

/// The sweep a backup makes of its repository after it is written: discards what is older than
/// `older_than`, records a `REPO_CLEANUP` entry of its own when there was anything to
/// discard, and reports a failure as a warning (the backup itself succeeded).
pub fn sweep(session: &mut Session, repository: &dyn Repository, older_than: Duration) {
    let cleaned = match run(repository, older_than, false) {
        Ok(c) => c,
        Err(e) => {
            session.observer().warn(&format!(
                "could not look for unfinished uploads in {}: {e}",
                repository.describe()
            ));
            return;
        }
    };
    if cleaned.discarded.is_empty() && cleaned.failed.is_empty() {
        return;
    }
    let mut audit = Operation::new(Action::RepoCleanup);
    audit.detail("repository", repository.describe());
    audit.detail("older_than_seconds", older_than.as_secs());
    audit.detail("after_backup", true);
    describe(&mut audit, &cleaned);
    let failure = cleaned.failed.first().map(|(_, e)| e);
    for (u, e) in &cleaned.failed {
        session.observer().warn(&format!(
            "could not discard the unfinished upload to {}: {e}",
            u.location.shown()
        ));
    }
    // The entry is written fail-closed like any other; a backup that could not record its
    // sweep still wrote its backup, so the failure is a warning here too.
    if let Err(e) = session.record(audit, failure) {
        session.observer().warn(&format!(
            "the cleanup's audit entry could not be written: {e}"
        ));
    }
}

fn run(repository: &dyn Repository, older_than: Duration, dry_run: bool) -> Result<Cleaned> {
    let before = SystemTime::now()
        .checked_sub(older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut cleaned = Cleaned {
        repository: repository.describe(),
        ..Cleaned::default()
    };
    for u in repository.unfinished()? {
        if u.started.is_none_or(|t| t >= before) {
            cleaned.kept.push(u);
        } else if dry_run {
            cleaned.discarded.push(u);
        } else {
            match repository.discard(&u) {
                Ok(()) => cleaned.discarded.push(u),
                Err(e) => cleaned.failed.push((u, e)),
            }
        }
    }
    Ok(cleaned)
}

fn describe(audit: &mut Operation, cleaned: &Cleaned) {
    let named = |u: &Unfinished| json!({ "location": u.location.as_str(), "id": u.id });
    audit.detail(
        "discarded",
        cleaned.discarded.iter().map(named).collect::<Vec<_>>(),
    );
    audit.detail("kept", cleaned.kept.len());
    if !cleaned.failed.is_empty() {
        audit.detail(
            "failed",
            cleaned
                .failed
                .iter()
                .map(|(u, e)| json!({ "location": u.location.as_str(), "error": e.to_string() }))
                .collect::<Vec<_>>(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::local::{LocalRepository, PARTIAL_PREFIX};
    use crate::testsite::TestSite;

    /// A partial file a killed write left in a directory is discarded once it is old enough,
    /// and never anything else.
    #[test]
    fn cleanup_discards_old_partial_files_only() {
        let mut t = TestSite::new();
        let dir = t.site.backup_dir.clone();
        let repo = LocalRepository::create_dir(&dir, "db1").unwrap();
        let partial = dir.join(format!("{PARTIAL_PREFIX}abc"));
        std::fs::write(&partial, b"half a backup").unwrap();
        std::fs::write(dir.join("shop_1.pgseal"), b"a backup").unwrap();

        let young = cleanup(&mut t.session, &repo, Duration::from_secs(3600), false).unwrap();
        assert_eq!((young.discarded.len(), young.kept.len()), (0, 1));
        assert!(partial.exists());

        let dry = cleanup(&mut t.session, &repo, Duration::ZERO, true).unwrap();
        assert_eq!(dry.discarded.len(), 1);
        assert!(partial.exists(), "a dry run discards nothing");

        let done = cleanup(&mut t.session, &repo, Duration::ZERO, false).unwrap();
        assert_eq!(done.discarded.len(), 1);
        assert!(!partial.exists());
        assert!(dir.join("shop_1.pgseal").exists());

        let not_partial = Unfinished {
            location: repo.location("shop_1.pgseal").unwrap(),
            id: "shop_1.pgseal".into(),
            started: None,
        };
        assert!(repo.discard(&not_partial).is_err());
        assert!(dir.join("shop_1.pgseal").exists());
    }
}
