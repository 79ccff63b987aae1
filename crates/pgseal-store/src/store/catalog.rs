//! The backup catalog: what backups pgseal made, where, for whom. Store data, so trusted for
//! nothing the signed files themselves can say.

use pgseal_core::Fingerprint;
use pgseal_core::time::Timestamp;

use super::{Store, fingerprint, one};
use crate::db::Row;
use crate::error::{Result, StoreError};
use crate::hash::Hash32;
use crate::location::Location;
use crate::model::{BackupRecord, NewBackup};

const BACKUP_COLUMNS: &str = "id, database, location, size_bytes, created_at, creator_user_id, \
     creator_key_fingerprint, server_key_fingerprints, format_version, ciphertext_blake3, status, \
     pruned_at, copy_of";

impl Store {
    /// Records a backup that has just been written.
    pub fn add_backup(&mut self, b: &NewBackup) -> Result<BackupRecord> {
        self.insert_backup(b, None)
    }

    fn insert_backup(&mut self, b: &NewBackup, copy_of: Option<i64>) -> Result<BackupRecord> {
        let keys: Vec<String> = b.server_keys.iter().map(ToString::to_string).collect();
        let rows = self.db.query(
            &format!(
                "INSERT INTO pgseal_backups (database, location, size_bytes, created_at, \
                 creator_user_id, creator_key_fingerprint, server_key_fingerprints, \
                 format_version, ciphertext_blake3, status, copy_of) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'ok', $10) RETURNING {BACKUP_COLUMNS}"
            ),
            &[
                b.database.as_str().into(),
                b.location.as_str().into(),
                b.size_bytes.into(),
                b.created_at.into(),
                b.creator_user_id.into(),
                b.creator_key.to_string().into(),
                keys.join(" ").into(),
                b.format_version.into(),
                // The column is NOT NULL: an entry with no digest keeps the empty text.
                b.ciphertext_blake3
                    .map_or_else(String::new, |h| h.to_string())
                    .into(),
                copy_of.into(),
            ],
        )?;
        one(rows, backup_from_row)
    }

    /// Records a verified copy of the backup `of` (a live entry, or a copy of one) at
    /// `copy.location`: the new entry names the backup's first entry. The copy's own fields
    /// (location, size, server keys) are its own; its database, time, creator and digest must
    /// be the backup's.
    pub fn add_copy(&mut self, of: i64, copy: &NewBackup) -> Result<BackupRecord> {
        let original = self.backup(of)?;
        let root = original.copy_of.unwrap_or(original.id);
        let same = |a: &NewBackup, b: &NewBackup| {
            a.database == b.database
                && a.created_at == b.created_at
                && a.creator_key == b.creator_key
                && a.ciphertext_blake3 == b.ciphertext_blake3
        };
        if !same(&original.entry, copy) {
            return Err(StoreError::Conflict(format!(
                "backup {of} and the copy at {} are not the same backup",
                copy.location.as_str()
            )));
        }
        self.insert_backup(copy, Some(root))
    }

    /// The catalog entry `id`, live or pruned.
    pub fn backup(&mut self, id: i64) -> Result<BackupRecord> {
        let rows = self.db.query(
            &format!("SELECT {BACKUP_COLUMNS} FROM pgseal_backups WHERE id = $1"),
            &[id.into()],
        )?;
        rows.first()
            .map(backup_from_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("no backup with id {id}")))
    }

    /// The live copies of the backup entry `id` belongs to (its first entry and every copy),
    /// `id`'s own entry included when it is live, oldest entry first.
    pub fn copies(&mut self, id: i64) -> Result<Vec<BackupRecord>> {
        let entry = self.backup(id)?;
        let root = entry.copy_of.unwrap_or(entry.id);
        let rows = self.db.query(
            &format!(
                "SELECT {BACKUP_COLUMNS} FROM pgseal_backups WHERE status = 'ok' \
                 AND (id = $1 OR copy_of = $1) ORDER BY id"
            ),
            &[root.into()],
        )?;
        rows.iter().map(backup_from_row).collect()
    }

    /// Live (not pruned) backups, oldest first, optionally of one database.
    pub fn backups(&mut self, database: Option<&str>) -> Result<Vec<BackupRecord>> {
        let rows = match database {
            Some(db) => self.db.query(
                &format!(
                    "SELECT {BACKUP_COLUMNS} FROM pgseal_backups WHERE status = 'ok' \
                     AND database = $1 ORDER BY created_at, id"
                ),
                &[db.into()],
            )?,
            None => self.db.query(
                &format!(
                    "SELECT {BACKUP_COLUMNS} FROM pgseal_backups WHERE status = 'ok' \
                     ORDER BY created_at, id"
                ),
                &[],
            )?,
        };
        rows.iter().map(backup_from_row).collect()
    }

    /// Every catalog entry, pruned ones included, oldest first.
    pub fn backup_history(&mut self) -> Result<Vec<BackupRecord>> {
        let rows = self.db.query(
            &format!("SELECT {BACKUP_COLUMNS} FROM pgseal_backups ORDER BY created_at, id"),
            &[],
        )?;
        rows.iter().map(backup_from_row).collect()
    }

    /// The live catalog entry for the backup at `location`, if any (locations are compared as
    /// written: a file location names its host and its path).
    pub fn backup_at(&mut self, location: &Location) -> Result<Option<BackupRecord>> {
        let rows = self.db.query(
            &format!(
                "SELECT {BACKUP_COLUMNS} FROM pgseal_backups WHERE status = 'ok' \
                 AND location = $1"
            ),
            &[location.as_str().into()],
        )?;
        rows.first().map(backup_from_row).transpose()
    }

    /// Records who a rewrapped backup is now encrypted to.
    pub fn set_backup_server_keys(&mut self, id: i64, keys: &[Fingerprint]) -> Result<()> {
        let keys: Vec<String> = keys.iter().map(ToString::to_string).collect();
        self.db.execute(
            "UPDATE pgseal_backups SET server_key_fingerprints = $1 WHERE id = $2",
            &[keys.join(" ").into(), id.into()],
        )?;
        Ok(())
    }

    /// Marks a backup pruned (its file has been deleted).
    pub fn mark_pruned(&mut self, id: i64) -> Result<()> {
        let n = self.db.execute(
            "UPDATE pgseal_backups SET status = 'pruned', pruned_at = $1 \
             WHERE id = $2 AND status = 'ok'",
            &[Timestamp::now().into(), id.into()],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("no live backup with id {id}")));
        }
        Ok(())
    }
}

fn backup_from_row(r: &Row) -> Result<BackupRecord> {
    let keys = r
        .text(7)?
        .split_whitespace()
        .map(|s| fingerprint(s.to_owned()))
        .collect::<Result<Vec<_>>>()?;
    let id = r.int(0)?;
    let location = Location::parse(&r.text(2)?)
        .map_err(|e| StoreError::Corrupt(format!("backup {id}: location {e}")))?;
    let ciphertext_blake3 =
        match r.text(9)?.as_str() {
            "" => None,
            text => Some(Hash32::parse(text).map_err(|e| {
                StoreError::Corrupt(format!("backup {id}: ciphertext_blake3 is {e}"))
            })?),
        };
    Ok(BackupRecord {
        id,
        entry: NewBackup {
            database: r.text(1)?,
            location,
            size_bytes: r.int(3)?,
            created_at: r.time(4)?,
            creator_user_id: r.opt_int(5)?,
            creator_key: fingerprint(r.text(6)?)?,
            server_keys: keys,
            format_version: r.int(8)?,
            ciphertext_blake3,
        },
        status: r.text(10)?.parse()?,
        pruned_at: r.opt_time(11)?,
        copy_of: r.opt_int(12)?,
    })
}
