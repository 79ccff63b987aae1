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
