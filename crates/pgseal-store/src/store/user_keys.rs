//! User keys: the public halves of the keys users sign backups with, every one kept (old
//! signatures must keep verifying).

use pgseal_core::Fingerprint;
use pgseal_core::time::Timestamp;

use super::{Store, fingerprint, one};
use crate::db::{Row, in_transaction};
use crate::error::{Result, StoreError};
use crate::model::{NewUserKey, UserKeyRecord};

const USER_KEY_COLUMNS: &str = "id, user_id, fingerprint, legacy_fingerprint, public_key_pem, \
     key_size, status, created_at, retired_at, rotated_from_id";

impl Store {
    /// Stores a user's first (or next, after retirement) active public key, and mirrors it
    /// into the user row's legacy columns, in one transaction. Refused while the user has an
    /// active key ([`StoreError::ActiveUserKeyExists`]) and for a fingerprint already stored.
    pub fn add_user_key(&mut self, user_id: i64, key: &NewUserKey) -> Result<UserKeyRecord> {
        let now = Timestamp::now();
        let result =
            in_transaction(self.db.as_mut(), |db| {
                let rows = db.query(
                    &format!(
                        "INSERT INTO pgseal_user_keys (user_id, fingerprint, legacy_fingerprint, \
                     public_key_pem, key_size, status, created_at) \
                     VALUES ($1, $2, $3, $4, $5, 'active', $6) RETURNING {USER_KEY_COLUMNS}"
                    ),
                    &[
                        user_id.into(),
                        key.fingerprint.to_string().into(),
                        key.legacy_fingerprint.clone().into(),
                        key.public_key_pem.as_str().into(),
                        key.key_size.into(),
                        now.into(),
                    ],
                )?;
                let record = one(rows, user_key_from_row)?;
                db.execute(
                "UPDATE pgseal_users SET public_key_pem = $1, key_generated_at = $2 WHERE id = $3",
                &[key.public_key_pem.as_str().into(), now.into(), user_id.into()],
            )?;
                Ok(record)
            });
        match result {
            Err(StoreError::Conflict(_)) => Err(match self.active_user_key(user_id)? {
                Some(k) => StoreError::ActiveUserKeyExists(k.fingerprint),
                None => StoreError::Conflict(format!(
                    "a key with fingerprint {} is already stored",
                    key.fingerprint
                )),
            }),
            other => other,
        }
    }

    /// Retires the user's active key (`expected_active`; kept forever, so old signatures still
    /// verify) and makes `new` active, in one transaction; the user row's legacy columns follow.
    pub fn rotate_user_key(
        &mut self,
        user_id: i64,
        expected_active: i64,
        new: &NewUserKey,
    ) -> Result<UserKeyRecord> {
        let now = Timestamp::now();
        in_transaction(self.db.as_mut(), |db| {
            let n = db.execute(
                "UPDATE pgseal_user_keys SET status = 'retired', retired_at = $1 \
                 WHERE id = $2 AND user_id = $3 AND status = 'active'",
                &[now.into(), expected_active.into(), user_id.into()],
            )?;
            if n != 1 {
                return Err(StoreError::Conflict(
                    "the user's active key changed during the rotation; nothing was changed".into(),
                ));
            }
            let rows = db.query(
                &format!(
                    "INSERT INTO pgseal_user_keys (user_id, fingerprint, legacy_fingerprint, \
                     public_key_pem, key_size, status, created_at, rotated_from_id) \
                     VALUES ($1, $2, $3, $4, $5, 'active', $6, $7) RETURNING {USER_KEY_COLUMNS}"
                ),
                &[
                    user_id.into(),
                    new.fingerprint.to_string().into(),
                    new.legacy_fingerprint.clone().into(),
                    new.public_key_pem.as_str().into(),
                    new.key_size.into(),
                    now.into(),
                    expected_active.into(),
                ],
            )?;
            let record = one(rows, user_key_from_row)?;
            db.execute(
                "UPDATE pgseal_users SET public_key_pem = $1, key_last_rotated = $2 WHERE id = $3",
                &[
                    new.public_key_pem.as_str().into(),
                    now.into(),
                    user_id.into(),
                ],
            )?;
            Ok(record)
        })
    }

    /// The key the user signs with now, if they have one.
    pub fn active_user_key(&mut self, user_id: i64) -> Result<Option<UserKeyRecord>> {
        let rows = self.db.query(
            &format!(
                "SELECT {USER_KEY_COLUMNS} FROM pgseal_user_keys \
                 WHERE user_id = $1 AND status = 'active'"
            ),
            &[user_id.into()],
        )?;
        rows.first().map(user_key_from_row).transpose()
    }

    /// Any user key by fingerprint, retired ones included (old signatures must keep verifying).
    pub fn user_key(&mut self, fingerprint: &Fingerprint) -> Result<Option<UserKeyRecord>> {
        let rows = self.db.query(
            &format!("SELECT {USER_KEY_COLUMNS} FROM pgseal_user_keys WHERE fingerprint = $1"),
            &[fingerprint.to_string().into()],
        )?;
        rows.first().map(user_key_from_row).transpose()
    }

    /// Every key a user has had, oldest first.
    pub fn user_keys(&mut self, user_id: i64) -> Result<Vec<UserKeyRecord>> {
        let rows = self.db.query(
            &format!(
                "SELECT {USER_KEY_COLUMNS} FROM pgseal_user_keys WHERE user_id = $1 ORDER BY id"
            ),
            &[user_id.into()],
        )?;
        rows.iter().map(user_key_from_row).collect()
    }
}

fn user_key_from_row(r: &Row) -> Result<UserKeyRecord> {
    Ok(UserKeyRecord {
        id: r.int(0)?,
        user_id: r.int(1)?,
        fingerprint: fingerprint(r.text(2)?)?,
        legacy_fingerprint: r.opt_text(3)?,
        public_key_pem: r.text(4)?,
        key_size: r.int(5)?,
        status: r.text(6)?.parse()?,
        created_at: r.time(7)?,
        retired_at: r.opt_time(8)?,
        rotated_from_id: r.opt_int(9)?,
    })
}
