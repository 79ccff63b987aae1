//! Users: people and jobs that make or open backups.

use pgseal_core::Fingerprint;
use pgseal_core::time::Timestamp;

use super::{Store, one};
use crate::db::{Row, in_transaction};
use crate::error::{Result, StoreError};
use crate::model::{Role, ServiceRole, TotpRecord, User};
use crate::username::Username;

const USER_COLUMNS: &str = "id, username, role, is_active, created_at, disabled_at";

impl Store {
    /// Adds a user. Names are unique (and valid: [`Username`]); ids are assigned once and never
    /// reused.
    pub fn add_user(&mut self, username: &Username, role: Role) -> Result<User> {
        let rows = self
            .db
            .query(
                &format!(
                    "INSERT INTO pgseal_users (username, role, is_active, created_at) \
                     VALUES ($1, $2, $3, $4) RETURNING {USER_COLUMNS}"
                ),
                &[
                    username.as_str().into(),
                    role.as_str().into(),
                    true.into(),
                    Timestamp::now().into(),
                ],
            )
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("a user named {username} already exists"))
                }
                other => other,
            })?;
        one(rows, user_from_row)
    }

    /// The user named `username`; [`StoreError::UnknownUser`] if there is none.
    pub fn user(&mut self, username: &Username) -> Result<User> {
        let rows = self.db.query(
            &format!("SELECT {USER_COLUMNS} FROM pgseal_users WHERE username = $1"),
            &[username.as_str().into()],
        )?;
        rows.first()
            .map(user_from_row)
            .transpose()?
            .ok_or_else(|| StoreError::UnknownUser(username.clone()))
    }

    /// The user with id `id`, if there is one.
    pub fn user_by_id(&mut self, id: i64) -> Result<Option<User>> {
        let rows = self.db.query(
            &format!("SELECT {USER_COLUMNS} FROM pgseal_users WHERE id = $1"),
            &[id.into()],
        )?;
        rows.first().map(user_from_row).transpose()
    }

    /// Every user, in id order.
    pub fn users(&mut self) -> Result<Vec<User>> {
        let rows = self.db.query(
            &format!("SELECT {USER_COLUMNS} FROM pgseal_users ORDER BY id"),
            &[],
        )?;
        rows.iter().map(user_from_row).collect()
    }

    /// Grants `role` to the user `user_id`; `false` if they had it already.
    pub fn grant_role(&mut self, user_id: i64, role: ServiceRole) -> Result<bool> {
        if self.roles(user_id)?.contains(&role) {
            return Ok(false);
        }
        self.db.execute(
            "INSERT INTO pgseal_user_roles (user_id, role, granted_at) VALUES ($1, $2, $3)",
            &[
                user_id.into(),
                role.as_str().into(),
                Timestamp::now().into(),
            ],
        )?;
        Ok(true)
    }

    /// Revokes `role` from the user `user_id`; `false` if they did not have it.
    pub fn revoke_role(&mut self, user_id: i64, role: ServiceRole) -> Result<bool> {
        let n = self.db.execute(
            "DELETE FROM pgseal_user_roles WHERE user_id = $1 AND role = $2",
            &[user_id.into(), role.as_str().into()],
        )?;
        Ok(n > 0)
    }

    /// The service roles of the user `user_id`, in [`ServiceRole::ALL`] order.
    pub fn roles(&mut self, user_id: i64) -> Result<Vec<ServiceRole>> {
        let rows = self.db.query(
            "SELECT role FROM pgseal_user_roles WHERE user_id = $1",
            &[user_id.into()],
        )?;
        let mut roles = rows
            .iter()
            .map(|r| r.text(0)?.parse())
            .collect::<Result<Vec<ServiceRole>>>()?;
        roles.sort();
        Ok(roles)
    }

    /// Enrols (or re-enrols, replacing the old one) the user's TOTP secret, sealed to the
    /// server key `sealed_to`.
    pub fn set_totp(&mut self, user_id: i64, sealed: &[u8], sealed_to: &Fingerprint) -> Result<()> {
        use base64::Engine;
        let sealed = base64::engine::general_purpose::STANDARD.encode(sealed);
        in_transaction(self.db.as_mut(), |db| {
            db.execute(
                "DELETE FROM pgseal_totp WHERE user_id = $1",
                &[user_id.into()],
            )?;
            db.execute(
                "INSERT INTO pgseal_totp (user_id, secret_sealed, sealed_to, enrolled_at, \
                 last_step) VALUES ($1, $2, $3, $4, 0)",
                &[
                    user_id.into(),
                    sealed.into(),
                    sealed_to.to_string().into(),
                    Timestamp::now().into(),
                ],
            )?;
            Ok(())
        })
    }

    /// The user's second factor, if they enrolled one.
    pub fn totp(&mut self, user_id: i64) -> Result<Option<TotpRecord>> {
        use base64::Engine;
        let rows = self.db.query(
            "SELECT user_id, secret_sealed, sealed_to, enrolled_at, last_step FROM pgseal_totp \
             WHERE user_id = $1",
            &[user_id.into()],
        )?;
        rows.first()
            .map(|r| {
                let sealed = base64::engine::general_purpose::STANDARD
                    .decode(r.text(1)?)
                    .map_err(|e| StoreError::Corrupt(format!("a TOTP secret: {e}")))?;
                Ok(TotpRecord {
                    user_id: r.int(0)?,
                    secret_sealed: sealed,
                    sealed_to: super::fingerprint(r.text(2)?)?,
                    enrolled_at: r.time(3)?,
                    last_step: r.int(4)?,
                })
            })
            .transpose()
    }

    /// Marks the TOTP time step `step` used by the user: `false` if a code of that step or a
    /// later one was accepted already (a code is accepted once, even by racing requests).
    pub fn use_totp_step(&mut self, user_id: i64, step: i64) -> Result<bool> {
        let n = self.db.execute(
            // SQLite numbers parameters in order of first appearance: $1 comes first.
            "UPDATE pgseal_totp SET last_step = $1 WHERE last_step < $1 AND user_id = $2",
            &[step.into(), user_id.into()],
        )?;
        Ok(n == 1)
    }

    /// Disables a user: they can no longer sign new backups; their keys stay for verification.
    pub fn disable_user(&mut self, username: &Username) -> Result<User> {
        let rows = self.db.query(
            &format!(
                "UPDATE pgseal_users SET is_active = $1, disabled_at = $2 \
                 WHERE username = $3 RETURNING {USER_COLUMNS}"
            ),
            &[
                false.into(),
                Timestamp::now().into(),
                username.as_str().into(),
            ],
        )?;
        rows.first()
            .map(user_from_row)
            .transpose()?
            .ok_or_else(|| StoreError::UnknownUser(username.clone()))
    }
}

fn user_from_row(r: &Row) -> Result<User> {
    let id = r.int(0)?;
    // pgseal writes only valid names; anything else was put there behind its back.
    let username = Username::parse(&r.text(1)?)
        .map_err(|e| StoreError::Corrupt(format!("user {id}: {e} ({})", crate::username::RULE)))?;
    Ok(User {
        id,
        username,
        role: r.text(2)?.parse()?,
        is_active: r.bool(3)?,
        created_at: r.time(4)?,
        disabled_at: r.opt_time(5)?,
    })
}
