//! Bringing the legacy Django system's rows in (`import-django`): once each, users with
//! their legacy ids, server keys as they were, audit rows chained and marked as imported.

use pgseal_core::time::Timestamp;

use super::Store;
use super::audit::append_in;
use crate::db::{Db, Dialect, in_transaction};
use crate::error::{Result, StoreError};
use crate::model::{NewAuditEntry, NewServerKey, Role, ServerKeyStatus};
use crate::username::Username;

impl Store {
    /// Appends a legacy audit row once: a re-run of the import finds it marked and skips it.
    /// Returns whether it was appended.
    pub fn import_audit_row(&mut self, legacy_id: i64, e: &NewAuditEntry) -> Result<bool> {
        in_transaction(self.db.as_mut(), |db| {
            if !mark_imported(db, "audit", legacy_id)? {
                return Ok(false);
            }
            append_in(db, e, true)?;
            Ok(true)
        })
    }

    /// Whether a legacy row of `kind` was imported before.
    pub fn was_imported(&mut self, kind: &str, legacy_id: i64) -> Result<bool> {
        Ok(!self
            .db
            .query(
                "SELECT 1 FROM pgseal_legacy_imports WHERE kind = $1 AND legacy_id = $2",
                &[kind.into(), legacy_id.into()],
            )?
            .is_empty())
    }

    /// Adds a user with the id the legacy system gave them (legacy files carry it). Returns
    /// `false` if that user is already here; a different user under that id or name is a
    /// conflict.
    pub fn import_user(
        &mut self,
        id: i64,
        username: &Username,
        role: Role,
        is_active: bool,
    ) -> Result<bool> {
        if let Some(existing) = self.user_by_id(id)? {
            if existing.username == *username {
                return Ok(false);
            }
            return Err(StoreError::Conflict(format!(
                "user id {id} is {} here but {username} in the legacy system; ids must match",
                existing.username
            )));
        }
        let dialect = self.db.dialect();
        in_transaction(self.db.as_mut(), |db| {
            db.execute(
                "INSERT INTO pgseal_users (id, username, role, is_active, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[id.into(), username.as_str().into(), role.as_str().into(), is_active.into(), Timestamp::now().into()],
            )
            .map_err(|e| match e {
                StoreError::Conflict(_) => StoreError::Conflict(format!(
                    "a user named {username} already exists here with another id than the legacy {id}"
                )),
                other => other,
            })?;
            if dialect == Dialect::Postgres {
                // Explicit ids do not advance the sequence; new users must never reuse one.
                db.query(
                    "SELECT setval(pg_get_serial_sequence('pgseal_users', 'id'), \
                     (SELECT MAX(id) FROM pgseal_users))",
                    &[],
                )?;
            }
            Ok(true)
        })
    }

    /// Adds a legacy server key as it is (private half still under the legacy password), with
    /// the status given. Returns `false` if a key with that fingerprint is already stored.
    pub fn import_server_key(
        &mut self,
        key: &NewServerKey,
        status: ServerKeyStatus,
        created_at: Timestamp,
    ) -> Result<bool> {
        if self.server_key(&key.fingerprint)?.is_some() {
            return Ok(false);
        }
        self.db.execute(
            "INSERT INTO pgseal_server_keys (fingerprint, legacy_fingerprint, private_key_pem, \
             public_key_pem, key_size, status, created_at, notes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                key.fingerprint.to_string().into(),
                key.legacy_fingerprint.clone().into(),
                key.private_key_pem.as_str().into(),
                key.public_key_pem.as_str().into(),
                key.key_size.into(),
                status.as_str().into(),
                created_at.into(),
                key.notes.clone().into(),
            ],
        )?;
        Ok(true)
    }
}

/// Records a legacy row as imported; `false` if it already was.
fn mark_imported(db: &mut dyn Db, kind: &str, legacy_id: i64) -> Result<bool> {
    let seen = db.query(
        "SELECT 1 FROM pgseal_legacy_imports WHERE kind = $1 AND legacy_id = $2",
        &[kind.into(), legacy_id.into()],
    )?;
    if !seen.is_empty() {
        return Ok(false);
    }
    db.execute(
        "INSERT INTO pgseal_legacy_imports (kind, legacy_id, imported_at) VALUES ($1, $2, $3)",
        &[kind.into(), legacy_id.into(), Timestamp::now().into()],
    )?;
    Ok(true)
}
