//! `audit verify`'s look at the backups: the anchors their signed headers hold, and where the
//! catalog and the repository disagree.
//!
//! Every object in the repository is read (its prelude only, by ranged reads), catalogued or
//! not, and so is every catalogued backup this host can reach and every file the caller names
//! (`--anchor`): a signed header that verifies with its creator's key from the store gives an
//! anchor — where the audit chain stood when the backup was made — which the log must still
//! hold, unchanged. Files pgseal cannot vouch for are findings. See docs/AUDIT.md.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use pgseal_core::{Fingerprint, PublicKey};
use pgseal_store::{BackupStatus, Hash32, NoStore};

use crate::error::{Error, Result};
use crate::examine::{Examined, examine, store_signer};
use crate::repo::{Listing, Location, Reach, RepoError, Repository, prelude};
use crate::session::Session;

/// An anchor read from a signed header: where the chain stood when a file was made.
#[derive(Debug, Clone)]
pub struct Anchor {
    /// The file, as shown.
    pub file: String,
    /// The entry it anchors.
    pub seq: i64,
    /// That entry's hash, as the file saw it.
    pub hash: Hash32,
}

/// Where a file read came from.
#[derive(Debug, Default, Clone, Copy)]
struct Sources {
    /// In the repository.
    repository: bool,
    /// Named by a live catalog entry this host can reach.
    catalog: bool,
    /// Named by the caller (`--anchor`).
    given: bool,
}

/// What the repository and the other files read hold.
#[derive(Debug, Default)]
pub struct Findings {
    /// The anchors of signed files.
    pub anchors: Vec<Anchor>,
    /// Signed (verified) pgseal files in the repository, anchored or not.
    pub signed: usize,
    /// pgseal (v2) files in the repository, vouched for or not.
    pub pgseal_files: Vec<String>,
    /// Legacy-format files in the repository (never catalogued, no anchors).
    pub legacy: usize,
    /// What the repository holds that is not a pgseal file, and entries never read.
    pub ignored: Vec<String>,
    /// Files pgseal cannot vouch for: tampering findings.
    pub problems: Vec<String>,
    /// The newest anchor a file claims without proof (no store, or an unknown signer).
    pub claimed: Option<u64>,
    /// Notes on `--anchor` and catalogued files that anchor nothing.
    pub skipped: Vec<String>,
}

/// Where the catalog and the repository disagree: reported, for a person to look at.
#[derive(Debug, Default)]
pub struct Discrepancies {
    /// Live entries of this host whose file is gone.
    pub missing: Vec<String>,
    /// pgseal files in the repository that the catalog says were pruned.
    pub pruned_but_present: Vec<String>,
    /// pgseal files in the repository that no catalog entry names.
    pub uncatalogued: Vec<String>,
}

/// What `audit verify` found.
#[derive(Debug)]
pub struct VerifyReport {
    /// The store, as shown (no password).
    pub store: String,
    /// Why there is no store, if there is none: then only the files were read, and the log
    /// cannot be shown intact (the front end says so first, in its own words).
    pub no_store: Option<NoStore>,
    /// Entries in the audit chain (0 when it is broken or there is no store).
    pub entries: i64,
    /// The anchors that were checked against the log.
    pub anchors: Vec<Anchor>,
    /// What the files hold.
    pub found: Findings,
    /// Why the log cannot be shown intact (empty: it can).
    pub problems: Vec<String>,
    /// Where the catalog and the repository disagree.
    pub catalog: Discrepancies,
    /// The repository read, as shown.
    pub repository: String,
    /// Whether it exists.
    pub repository_exists: bool,
    /// The audit chain heads key-custody services said they wrote, checked against the log:
    /// each service (as shown) and the entry.
    pub service_heads: Vec<(String, i64)>,
}

/// Checks the audit chain, and the anchors the backups in `repo`, the catalogued backups
/// `reach` reaches and the files `given` hold.
pub fn verify(
    session: &mut Session,
    repo: &dyn Repository,
    reach: &Reach,
    given: &[PathBuf],
) -> Result<VerifyReport> {
    let listing = repo.list()?;
    let store = session.site()?.store.to_string();
    let report = |no_store, entries, anchors, found, problems, catalog| VerifyReport {
        store: store.clone(),
        no_store,
        entries,
        anchors,
        found,
        problems,
        catalog,
        repository: repo.describe(),
        repository_exists: repo.exists(),
        service_heads: Vec::new(),
    };

    if let Some(absent) = session.existing_store()?.err() {
        // No store to verify against: what the repository claims is still said.
        let mut skipped = Vec::new();
        let files = files_to_read(&listing, &BTreeMap::new(), given, reach, &mut skipped);
        let mut found = read_files(repo, reach, &files, &mut |_| Ok(None))?;
        found.ignore_unread(&listing);
        let mut problems = Vec::new();
        if !found.pgseal_files.is_empty() {
            problems.push(format!(
                "the backup directory {} holds {}{} (unverified: the keys that would verify \
                 them were in the store)",
                repo.describe(),
                plural(found.pgseal_files.len(), "pgseal file", "pgseal files"),
                found
                    .claimed
                    .map(|seq| format!(" anchoring the log up to entry {seq}"))
                    .unwrap_or_default()
            ));
        }
        return Ok(report(
            Some(absent),
            0,
            Vec::new(),
            found,
            problems,
            Discrepancies::default(),
        ));
    }

    let s = session.store()?;
    let chain = s.verify_audit_chain()?;
    let history = s.backup_history()?;
    let mut problems: Vec<String> = Vec::new();
    let entries = match &chain {
        Ok(n) => *n,
        Err(b) => {
            problems.push(format!("entry {}: {}", b.seq, b.reason));
            0
        }
    };
    if chain.is_ok() && entries == 0 {
        problems.push(format!(
            "the audit log of {store} is empty: a pgseal store records at least the command \
             that made it, so this log was emptied or the store re-created"
        ));
    }

    // The catalogued backups this host reaches, by their location in the repository's own
    // spelling.
    let mut live = BTreeMap::new();
    let mut pruned = BTreeSet::new();
    let mut missing = Vec::new();
    for b in &history {
        let location = &b.entry.location;
        let found = match reach.repository_of(location) {
            Ok(None) => continue,
            Ok(Some(holder)) => holder.open(location).map(|o| o.map(|o| o.location)),
            Err(e) => Err(e),
        };
        match (b.status, found) {
            (BackupStatus::Ok, Ok(Some(canonical))) => {
                live.insert(canonical, b.id);
            }
            (BackupStatus::Ok, Ok(None)) => missing.push(location.shown()),
            (BackupStatus::Ok, Err(e)) => {
                problems.push(format!("{}: {}", location.shown(), unreadable(&e)));
            }
            (BackupStatus::Pruned, Ok(Some(canonical))) => {
                pruned.insert(canonical.shown());
            }
            (BackupStatus::Pruned, _) => {}
        }
    }
    let mut skipped = Vec::new();
    let files = files_to_read(&listing, &live, given, reach, &mut skipped);
    let mut found = read_files(repo, reach, &files, &mut |fp| store_signer(session, fp))?;
    found.skipped.splice(0..0, skipped);
    found.ignore_unread(&listing);
    problems.append(&mut found.problems);

    let live: BTreeSet<String> = live.keys().map(Location::shown).collect();
    let mut catalog = Discrepancies {
        missing,
        ..Discrepancies::default()
    };
    for file in &found.pgseal_files {
        if live.contains(file) {
            continue;
        }
        if pruned.contains(file) {
            catalog.pruned_but_present.push(file.clone());
        } else {
            catalog.uncatalogued.push(file.clone());
        }
    }

    if chain.is_ok() {
        for a in &found.anchors {
            match session.store()?.audit_entry(a.seq)? {
                None => problems.push(format!(
                    "entry {} is gone, but {} (signed) anchors the log there: the log was cut \
                     back (or the store re-created)",
                    a.seq, a.file
                )),
                Some(e) if e.entry_hash != a.hash => problems.push(format!(
                    "entry {} differs from the one {} (signed) anchors: the log was rewritten \
                     (or the store re-created)",
                    a.seq, a.file
                )),
                Some(_) => {}
            }
        }
    }
    let anchors = std::mem::take(&mut found.anchors);
    Ok(report(None, entries, anchors, found, problems, catalog))
}

impl Findings {
    /// Counts what the repository holds besides objects (never read): directories, links,
    /// devices, and unfinished writes.
    fn ignore_unread(&mut self, listing: &Listing) {
        self.ignored.extend(
            listing
                .other
                .iter()
                .chain(&listing.partial)
                .map(Location::shown),
        );
    }
}

/// The files to read: the repository's objects, the catalogued backups this host reaches,
/// and the files given — each once, by its location in the holding repository's spelling.
fn files_to_read(
    listing: &Listing,
    catalogued: &BTreeMap<Location, i64>,
    given: &[PathBuf],
    reach: &Reach,
    skipped: &mut Vec<String>,
) -> BTreeMap<Location, Sources> {
    let mut files: BTreeMap<Location, Sources> = BTreeMap::new();
    for o in &listing.objects {
        files.entry(o.location.clone()).or_default().repository = true;
    }
    for l in catalogued.keys() {
        files.entry(l.clone()).or_default().catalog = true;
    }
    for p in given {
        match reach.file(p) {
            Ok(l) => files.entry(l).or_default().given = true,
            Err(Error::Io { source, .. }) => skipped.push(format!("{}: {source}", p.display())),
            Err(e) => skipped.push(format!("{}: {e}", p.display())),
        }
    }
    files
}

/// Reads every file's prelude (never more) and sorts them into anchors and findings.
fn read_files(
    repo: &dyn Repository,
    reach: &Reach,
    files: &BTreeMap<Location, Sources>,
    signer_key: &mut dyn FnMut(&Fingerprint) -> Result<Option<PublicKey>>,
) -> Result<Findings> {
    let mut found = Findings::default();
    for (location, from) in files {
        let shown = location.shown();
        let input = match open(repo, reach, location, from) {
            Ok(input) => input,
            Err(why) => {
                if from.repository || from.catalog {
                    found.problems.push(format!("{shown}: {why}"));
                } else {
                    found.skipped.push(format!("{shown}: {why}"));
                }
                continue;
            }
        };
        match examine(input, signer_key)? {
            Examined::Signed(prelude) => {
                if from.repository {
                    found.signed += 1;
                    found.pgseal_files.push(shown.clone());
                }
                match prelude.header.metadata.audit_anchor {
                    Some(a) => found.anchors.push(Anchor {
                        file: shown,
                        seq: a.seq as i64,
                        hash: Hash32(a.entry_hash),
                    }),
                    None if from.given => {
                        found
                            .skipped
                            .push(format!("{shown}: its header holds no anchor"));
                    }
                    None => {}
                }
            }
            Examined::Legacy(kind) => {
                if from.repository {
                    found.legacy += 1;
                }
                if from.given {
                    found
                        .skipped
                        .push(format!("{shown}: {kind}, which holds no anchor"));
                }
            }
            Examined::Foreign(kind) => {
                if from.repository {
                    found.ignored.push(shown.clone());
                }
                if from.catalog {
                    found.skipped.push(format!(
                        "{shown}: catalogued, but not a pgseal file ({kind})"
                    ));
                } else if from.given {
                    found
                        .skipped
                        .push(format!("{shown}: not a pgseal file ({kind})"));
                }
            }
            Examined::Unvouched {
                reason,
                claimed_anchor,
            } => {
                if from.repository {
                    found.pgseal_files.push(shown.clone());
                }
                found.claimed = found.claimed.max(claimed_anchor);
                let claim = claimed_anchor
                    .map(|seq| format!("; it claims to anchor entry {seq}"))
                    .unwrap_or_default();
                found.problems.push(format!("{shown}: {reason}{claim}"));
            }
        }
    }
    Ok(found)
}

/// A reader of the start of a file: through the repository that holds it, or, for a file
/// named by the caller that no repository holds, the file itself (if it is a regular file).
/// Why not, if it cannot be read.
fn open<'a>(
    repo: &'a dyn Repository,
    reach: &Reach,
    location: &Location,
    from: &Sources,
) -> std::result::Result<Box<dyn Read + 'a>, String> {
    if from.repository {
        return Ok(Box::new(
            prelude(repo, location).map_err(|e| unreadable(&e))?,
        ));
    }
    if from.catalog
        && let Some(holder) = reach.repository_of(location).map_err(|e| unreadable(&e))?
    {
        // Read now, while the holding repository is open: the prelude, never more.
        let mut head = Vec::new();
        prelude(holder.as_ref(), location)
            .map_err(|e| unreadable(&e))?
            .take(crate::repo::PRELUDE_READ as u64)
            .read_to_end(&mut head)
            .map_err(|e| format!("cannot be read: {e}"))?;
        return Ok(Box::new(std::io::Cursor::new(head)));
    }
    let path = location
        .file_path()
        .ok_or_else(|| format!("{location} is not a file"))?;
    Ok(Box::new(open_regular(&path)?))
}

/// Opens a file only if it is a regular file (a FIFO would block, a device never ends).
fn open_regular(path: &Path) -> std::result::Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| format!("cannot be read: {e}"))?;
    match file.metadata() {
        Ok(m) if m.is_file() => Ok(file),
        Ok(_) => Err("not a regular file".into()),
        Err(e) => Err(format!("cannot be read: {e}")),
    }
}

/// Why a file could not be read, as a finding says it.
fn unreadable(e: &Error) -> String {
    match e {
        Error::Repository(RepoError::NotRegular(_)) => "not a regular file".into(),
        Error::Repository(RepoError::Symlink(_)) => {
            "a symbolic link, not a backup pgseal wrote".into()
        }
        Error::Io { source, .. } => format!("cannot be read: {source}"),
        other => format!("cannot be read: {other}"),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}
