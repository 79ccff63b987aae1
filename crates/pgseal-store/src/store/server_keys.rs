//! Server keys: the keys backups are encrypted to, with their history (active, rotated,
//! retired).

use pgseal_core::Fingerprint;
use pgseal_core::time::Timestamp;

use super::{Store, fingerprint, one};
use crate::db::{Row, in_transaction};
use crate::error::{Result, StoreError};
use crate::model::{NewServerKey, ServerKeyRecord};

const SERVER_KEY_COLUMNS: &str = "id, fingerprint, legacy_fingerprint, private_key_pem, \
     public_key_pem, key_size, status, created_at, rotated_from_id, retired_at, notes";

impl Store {
    /// Stores a new *active* server key. Refused while another key is active
    /// ([`StoreError::ActiveServerKeyExists`]) — by the database's unique index, so two racing
    /// processes cannot both succeed.
    pub fn add_server_key(&mut self, key: &NewServerKey) -> Result<ServerKeyRecord> {
        let result = in_transaction(self.db.as_mut(), |db| {
            let rows = db.query(
                &format!(
                    "INSERT INTO pgseal_server_keys (fingerprint, legacy_fingerprint, \
                     private_key_pem, public_key_pem, key_size, status, created_at, notes) \
                     VALUES ($1, $2, $3, $4, $5, 'active', $6, $7) RETURNING {SERVER_KEY_COLUMNS}"
                ),
                &[
                    key.fingerprint.to_string().into(),
                    key.legacy_fingerprint.clone().into(),
                    key.private_key_pem.as_str().into(),
                    key.public_key_pem.as_str().into(),
                    key.key_size.into(),
                    Timestamp::now().into(),
                    key.notes.clone().into(),
                ],
            )?;
            one(rows, server_key_from_row)
        });
        match result {
            Err(StoreError::Conflict(_)) => Err(match self.active_server_key()? {
                Some(active) => StoreError::ActiveServerKeyExists(active.fingerprint),
                None => StoreError::Conflict(format!(
                    "a server key with fingerprint {} is already stored",
                    key.fingerprint
                )),
            }),
            other => other,
        }
    }

    /// Rotation in one transaction: the active key (`expected_active`) becomes `rotated`, every
    /// stored private key is replaced by its copy under the new password (`reprotected`, which
    /// must cover them all), and `new` becomes the active key. If another rotation got there
    /// first, nothing changes and the result is a conflict.
    pub fn rotate_server_key(
        &mut self,
        expected_active: i64,
        reprotected: &[(i64, String)],
        new: &NewServerKey,
    ) -> Result<ServerKeyRecord> {
        in_transaction(self.db.as_mut(), |db| {
            let n = db.execute(
                "UPDATE pgseal_server_keys SET status = 'rotated' WHERE id = $1 AND status = 'active'",
                &[expected_active.into()],
            )?;
            if n != 1 {
                return Err(StoreError::Conflict(
                    "another rotation changed the active server key first; nothing was changed"
                        .into(),
                ));
            }
            let total = db
                .query("SELECT COUNT(*) FROM pgseal_server_keys", &[])?
                .first()
                .map(|r| r.int(0))
                .transpose()?
                .unwrap_or(0);
            if total != reprotected.len() as i64 {
                return Err(StoreError::Conflict(
                    "the set of server keys changed during the rotation; nothing was changed"
                        .into(),
                ));
            }
            for (id, pem) in reprotected {
                db.execute(
                    "UPDATE pgseal_server_keys SET private_key_pem = $1 WHERE id = $2",
                    &[pem.as_str().into(), (*id).into()],
                )?;
            }
            let rows = db.query(
                &format!(
                    "INSERT INTO pgseal_server_keys (fingerprint, legacy_fingerprint, \
                     private_key_pem, public_key_pem, key_size, status, created_at, \
                     rotated_from_id, notes) \
                     VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8) RETURNING {SERVER_KEY_COLUMNS}"
                ),
                &[
                    new.fingerprint.to_string().into(),
                    new.legacy_fingerprint.clone().into(),
                    new.private_key_pem.as_str().into(),
                    new.public_key_pem.as_str().into(),
                    new.key_size.into(),
                    Timestamp::now().into(),
                    expected_active.into(),
                    new.notes.clone().into(),
                ],
            )?;
            one(rows, server_key_from_row)
        })
    }

    /// The key new backups are encrypted to, if there is one.
    pub fn active_server_key(&mut self) -> Result<Option<ServerKeyRecord>> {
        let rows = self.db.query(
            &format!("SELECT {SERVER_KEY_COLUMNS} FROM pgseal_server_keys WHERE status = 'active'"),
            &[],
        )?;
        rows.first().map(server_key_from_row).transpose()
    }

    /// Any server key by fingerprint, rotated and retired ones included.
    pub fn server_key(&mut self, fingerprint: &Fingerprint) -> Result<Option<ServerKeyRecord>> {
        let rows = self.db.query(
            &format!("SELECT {SERVER_KEY_COLUMNS} FROM pgseal_server_keys WHERE fingerprint = $1"),
            &[fingerprint.to_string().into()],
        )?;
        rows.first().map(server_key_from_row).transpose()
    }

    /// Every server key, in the order they were stored.
    pub fn server_keys(&mut self) -> Result<Vec<ServerKeyRecord>> {
        let rows = self.db.query(
            &format!("SELECT {SERVER_KEY_COLUMNS} FROM pgseal_server_keys ORDER BY id"),
            &[],
        )?;
        rows.iter().map(server_key_from_row).collect()
    }

    /// Marks a non-active server key retired: no catalogued backup needs it any more.
    pub fn retire_server_key(&mut self, fingerprint: &Fingerprint) -> Result<ServerKeyRecord> {
        let rows = self.db.query(
            &format!(
                "UPDATE pgseal_server_keys SET status = 'retired', retired_at = $1 \
                 WHERE fingerprint = $2 AND status = 'rotated' RETURNING {SERVER_KEY_COLUMNS}"
            ),
            &[Timestamp::now().into(), fingerprint.to_string().into()],
        )?;
        rows.first().map(server_key_from_row).transpose()?.ok_or_else(|| {
            StoreError::Conflict(format!(
                "{fingerprint} is not a rotated server key (only keys replaced by a rotation can be retired)"
            ))
        })
    }
}

fn server_key_from_row(r: &Row) -> Result<ServerKeyRecord> {
    Ok(ServerKeyRecord {
        id: r.int(0)?,
        fingerprint: fingerprint(r.text(1)?)?,
        legacy_fingerprint: r.opt_text(2)?,
        private_key_pem: r.text(3)?,
        public_key_pem: r.text(4)?,
        key_size: r.int(5)?,
        status: r.text(6)?.parse()?,
        created_at: r.time(7)?,
        rotated_from_id: r.opt_int(8)?,
        retired_at: r.opt_time(9)?,
        notes: r.opt_text(10)?,
    })
}
