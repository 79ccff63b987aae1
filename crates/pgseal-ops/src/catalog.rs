//! The backup catalog as it reads: what pgseal made and where it is (retention, which deletes,
//! is [`crate::prune`]).
//!
//! The catalog is store data: whoever can write the store can make it say anything. It is a
//! list to show, never a reason to trust a file — operations that act on a backup check its
//! signed header first.

use pgseal_store::BackupRecord;

use crate::error::Result;
use crate::session::Session;

/// The live catalog entries (of `database` only, when given), oldest first; the store is
/// opened read-only.
pub fn list(session: &mut Session, database: Option<&str>) -> Result<Vec<BackupRecord>> {
    Ok(session.read_store()?.backups(database)?)
}

/// The catalog beside what a repository holds (`list --remote`): names only — what a file
/// holds is for `verify` and `audit verify` to check.
#[derive(Debug, Default)]
pub struct Comparison {
    /// The repository, as shown.
    pub repository: String,
    /// Live catalog entries whose object is in the repository.
    pub present: Vec<BackupRecord>,
    /// Live catalog entries of this repository whose object is gone.
    pub missing: Vec<BackupRecord>,
    /// Objects in the repository no live catalog entry names (backups made elsewhere, copied
    /// in by hand, or written by someone else: check them with `verify` before trusting them).
    pub uncatalogued: Vec<crate::repo::Listed>,
    /// Unfinished writes (incomplete uploads, partial files).
    pub unfinished: usize,
}

/// Compares the live catalog entries (of `database` only, when given) that belong to
/// `repository` with what it lists; every object no live entry names is reported.
pub fn compare(
    session: &mut Session,
    repository: &dyn crate::repo::Repository,
    database: Option<&str>,
) -> Result<Comparison> {
    let listing = repository.list()?;
    let entries = list(session, database)?;
    let mut seen = std::collections::BTreeSet::new();
    let mut comparison = Comparison {
        repository: repository.describe(),
        unfinished: listing.partial.len(),
        ..Comparison::default()
    };
    let listed: std::collections::BTreeSet<_> =
        listing.objects.iter().map(|o| &o.location).collect();
    for entry in entries {
        let location = &entry.entry.location;
        if !repository.contains(location) {
            continue;
        }
        seen.insert(location.clone());
        if listed.contains(location) {
            comparison.present.push(entry);
        } else {
            comparison.missing.push(entry);
        }
    }
    // Which database an uncatalogued object holds is in its signed header, not its name:
    // every one is reported, whatever `database` says.
    comparison.uncatalogued = listing
        .objects
        .into_iter()
        .filter(|o| !seen.contains(&o.location))
        .collect();
    Ok(comparison)
}
