//! The store's rules, written once over [`Db`].

use pgseal_core::Fingerprint;
use pgseal_core::time::Timestamp;

use crate::db::{Db, Row, Value, in_transaction};
use crate::error::{Result, StoreError};
use crate::model::*;
use crate::postgres::PostgresDb;
use crate::sqlite::SqliteDb;
use crate::username::Username;
use crate::{NoStoreReason, StoreUrl, chain, migrations};

/// An open, migrated store.
pub struct Store {
    db: Box<dyn Db>,
    url: StoreUrl,
}

const USER_COLUMNS: &str = "id, username, role, is_active, created_at, disabled_at";
const SERVER_KEY_COLUMNS: &str = "id, fingerprint, legacy_fingerprint, private_key_pem, \
     public_key_pem, key_size, status, created_at, rotated_from_id, retired_at, notes";
const USER_KEY_COLUMNS: &str = "id, user_id, fingerprint, legacy_fingerprint, public_key_pem, \
     key_size, status, created_at, retired_at, rotated_from_id";
const BACKUP_COLUMNS: &str = "id, database, path, host, size_bytes, created_at, creator_user_id, \
     creator_key_fingerprint, server_key_fingerprints, format_version, ciphertext_blake3, status, \
     pruned_at";
const AUDIT_COLUMNS: &str = "id, action, user_id, os_user, backup_creator_id, backup_file, \
     success, signature_valid, \"timestamp\", host, ip_address, details, seq, prev_hash, \
     entry_hash, imported";

impl Store {
    /// Opens and migrates the store at `url`, **creating** it if there is none (a new SQLite
    /// file, or the schema in an empty PostgreSQL database). For what makes a store: `pgseal
    /// init`, `import-django`, tests. Everything else uses [`open_existing`](Self::open_existing).
    pub fn open(url: &StoreUrl) -> Result<Self> {
        let mut db: Box<dyn Db> = match url {
            StoreUrl::Sqlite(path) => Box::new(SqliteDb::open(path, true)?),
            StoreUrl::Postgres(conn) => Box::new(PostgresDb::connect(conn)?),
        };
        migrations::migrate(db.as_mut())?;
        Ok(Store {
            db,
            url: url.clone(),
        })
    }

    /// Opens (and migrates) a store that exists, refusing with [`StoreError::NoStore`] a
    /// missing or 0-byte SQLite file and a database that holds no pgseal schema: a store that
    /// was deleted, truncated or emptied must be noticed, never silently replaced by a new one.
    pub fn open_existing(url: &StoreUrl) -> Result<Self> {
        let mut db: Box<dyn Db> = match url {
            StoreUrl::Sqlite(path) => {
                sqlite_file_present(url, path)?;
                Box::new(SqliteDb::open(path, false)?)
            }
            StoreUrl::Postgres(conn) => Box::new(PostgresDb::connect(conn)?),
        };
        if migrations::schema_version(db.as_mut())?.is_none() {
            return Err(absent(url, NoStoreReason::NoSchema));
        }
        migrations::migrate(db.as_mut())?;
        Ok(Store {
            db,
            url: url.clone(),
        })
    }

    /// Opens an existing, current store for reading only: nothing is created, migrated or
    /// written (a SQLite file is opened read-only, a PostgreSQL session is read-only), so it
    /// works where the caller may read the store but not write it. Refuses like
    /// [`open_existing`](Self::open_existing), and a schema that would need an upgrade.
    pub fn open_read_only(url: &StoreUrl) -> Result<Self> {
        let mut db: Box<dyn Db> = match url {
            StoreUrl::Sqlite(path) => {
                sqlite_file_present(url, path)?;
                Box::new(SqliteDb::open_read_only(path)?)
            }
            StoreUrl::Postgres(conn) => Box::new(PostgresDb::connect_read_only(conn)?),
        };
        let (found, known) = (
            migrations::schema_version(db.as_mut())?,
            migrations::latest(),
        );
        match found {
            None => return Err(absent(url, NoStoreReason::NoSchema)),
            Some(found) if found > known => {
                return Err(StoreError::SchemaTooNew { found, known });
            }
            Some(found) if found < known => {
                return Err(StoreError::SchemaTooOld { found, known });
            }
            Some(_) => {}
        }
        Ok(Store {
            db,
            url: url.clone(),
        })
    }

    pub fn url(&self) -> &StoreUrl {
        &self.url
    }

    // ---- users ----

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

    pub fn user(&mut self, username: &Username) -> Result<User> {
        let rows = self.db.query(
            &format!("SELECT {USER_COLUMNS} FROM pgseal_users WHERE username = $1"),
            &[username.as_str().into()],
        )?;
        rows.first().map(user_from_row).transpose()?.ok_or_else(|| {
            StoreError::NotFound(format!(
                "no user named {username}; add one with `pgseal user add {username}`"
            ))
        })
    }

    pub fn user_by_id(&mut self, id: i64) -> Result<Option<User>> {
        let rows = self.db.query(
            &format!("SELECT {USER_COLUMNS} FROM pgseal_users WHERE id = $1"),
            &[id.into()],
        )?;
        rows.first().map(user_from_row).transpose()
    }

    pub fn users(&mut self) -> Result<Vec<User>> {
        let rows = self.db.query(
            &format!("SELECT {USER_COLUMNS} FROM pgseal_users ORDER BY id"),
            &[],
        )?;
        rows.iter().map(user_from_row).collect()
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
            .ok_or_else(|| StoreError::NotFound(format!("no user named {username}")))
    }

    // ---- server keys ----

    /// Stores a new *active* server key. Refused while another key is active — by the
    /// database's unique index, so two racing processes cannot both succeed.
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
                Some(active) => StoreError::Conflict(format!(
                    "an active server key already exists ({}); rotate it with `pgseal server-key rotate`",
                    active.fingerprint
                )),
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

    pub fn server_keys(&mut self) -> Result<Vec<ServerKeyRecord>> {
        let rows = self.db.query(
            &format!("SELECT {SERVER_KEY_COLUMNS} FROM pgseal_server_keys ORDER BY id"),
            &[],
        )?;
        rows.iter().map(server_key_from_row).collect()
    }

    // ---- user keys ----

    /// Stores a user's first (or next, after retirement) active public key, and mirrors it
    /// into the user row's legacy columns, in one transaction.
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
            Err(StoreError::Conflict(_)) => Err(StoreError::Conflict(
                match self.active_user_key(user_id)? {
                    Some(k) => format!(
                        "the user already has an active key ({}); rotate it with `pgseal user-key rotate`",
                        k.fingerprint
                    ),
                    None => format!(
                        "a key with fingerprint {} is already stored",
                        key.fingerprint
                    ),
                },
            )),
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

    // ---- audit ----

    /// Appends one audit entry to the chain; returns its `seq`.
    pub fn append_audit(&mut self, e: &NewAuditEntry) -> Result<i64> {
        self.append_audit_as(e, false)
    }

    /// Appends an entry imported from the legacy system (marked as such, chained like any other).
    pub fn append_imported_audit(&mut self, e: &NewAuditEntry) -> Result<i64> {
        self.append_audit_as(e, true)
    }

    fn append_audit_as(&mut self, e: &NewAuditEntry, imported: bool) -> Result<i64> {
        in_transaction(self.db.as_mut(), |db| append_in(db, e, imported))
    }

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
            if dialect == crate::db::Dialect::Postgres {
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

    /// The chain's head: the last entry's `seq` and hash (what backups anchor).
    pub fn audit_head(&mut self) -> Result<Option<(i64, String)>> {
        let rows = self.db.query(
            "SELECT seq, entry_hash FROM pgseal_audit_log ORDER BY seq DESC LIMIT 1",
            &[],
        )?;
        rows.first()
            .map(|r| Ok((r.int(0)?, r.text(1)?)))
            .transpose()
    }

    /// The entry at `seq`, if the log has one.
    pub fn audit_entry(&mut self, seq: i64) -> Result<Option<AuditEntry>> {
        let rows = self.db.query(
            &format!("SELECT {AUDIT_COLUMNS} FROM pgseal_audit_log WHERE seq = $1"),
            &[seq.into()],
        )?;
        rows.first().map(audit_from_row).transpose()
    }

    /// Walks the whole chain; returns the number of entries, or the first place it breaks:
    /// an edited entry (hash mismatch), a deleted or inserted one (seq gap, link mismatch), or
    /// entries out of order.
    pub fn verify_audit_chain(&mut self) -> Result<std::result::Result<i64, chain::ChainBreak>> {
        let rows = self.db.query(
            &format!("SELECT {AUDIT_COLUMNS} FROM pgseal_audit_log ORDER BY seq, id"),
            &[],
        )?;
        let mut expected_seq = 1;
        let mut prev = chain::GENESIS.to_owned();
        let mut last_id = i64::MIN;
        for row in &rows {
            let e = audit_from_row(row)?;
            let broken = |reason: String| Ok(Err(chain::ChainBreak { seq: e.seq, reason }));
            if e.seq != expected_seq {
                return broken(format!(
                    "entry {expected_seq} is missing (the next entry is {}): deleted or renumbered",
                    e.seq
                ));
            }
            if e.prev_hash != prev {
                return broken(
                    "does not link to the entry before it: inserted, deleted or reordered".into(),
                );
            }
            if chain::entry_hash(e.seq, &e.prev_hash, e.imported, &e.entry) != e.entry_hash {
                return broken("its contents do not match its hash: edited".into());
            }
            if e.id < last_id {
                return broken("stored out of order: reordered".into());
            }
            last_id = e.id;
            prev = e.entry_hash;
            expected_seq += 1;
        }
        Ok(Ok(expected_seq - 1))
    }

    /// The newest `limit` entries, newest last.
    pub fn audit_entries(&mut self, limit: i64) -> Result<Vec<AuditEntry>> {
        self.audit_query(&AuditFilter {
            limit: Some(limit),
            ..AuditFilter::default()
        })
    }

    /// The entries matching `f`, oldest first (the newest `f.limit` of them).
    pub fn audit_query(&mut self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut conditions = Vec::new();
        let mut params: Vec<Value> = Vec::new();
        let mut bind = |cond: &str, v: Value, params: &mut Vec<Value>| {
            params.push(v);
            conditions.push(cond.replace('?', &format!("${}", params.len())));
        };
        if let Some(a) = &f.action {
            bind("action = ?", a.as_str().into(), &mut params);
        }
        if let Some(u) = f.user_id {
            bind("user_id = ?", u.into(), &mut params);
        }
        if let Some(t) = f.since {
            bind("\"timestamp\" >= ?", t.into(), &mut params);
        }
        if f.failed_only {
            bind("success = ?", false.into(), &mut params);
        }
        if f.invalid_signature {
            bind("signature_valid = ?", false.into(), &mut params);
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let limit = match f.limit {
            Some(n) => {
                params.push(n.into());
                format!("LIMIT ${}", params.len())
            }
            None => String::new(),
        };
        let rows = self.db.query(
            &format!(
                "SELECT {AUDIT_COLUMNS} FROM (SELECT {AUDIT_COLUMNS} FROM pgseal_audit_log \
                 {filter} ORDER BY seq DESC {limit}) recent ORDER BY seq"
            ),
            &params,
        )?;
        rows.iter().map(audit_from_row).collect()
    }
}

impl Store {
    // ---- backup catalog ----

    /// Records a backup that has just been written.
    pub fn add_backup(&mut self, b: &NewBackup) -> Result<BackupRecord> {
        let keys: Vec<String> = b.server_keys.iter().map(ToString::to_string).collect();
        let rows = self.db.query(
            &format!(
                "INSERT INTO pgseal_backups (database, path, host, size_bytes, created_at, \
                 creator_user_id, creator_key_fingerprint, server_key_fingerprints, \
                 format_version, ciphertext_blake3, status) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'ok') RETURNING {BACKUP_COLUMNS}"
            ),
            &[
                b.database.as_str().into(),
                b.path.as_str().into(),
                b.host.as_str().into(),
                b.size_bytes.into(),
                b.created_at.into(),
                b.creator_user_id.into(),
                b.creator_key.to_string().into(),
                keys.join(" ").into(),
                b.format_version.into(),
                b.ciphertext_blake3.as_str().into(),
            ],
        )?;
        one(rows, backup_from_row)
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

    /// The live catalog entry for a file on a host, if any.
    pub fn backup_by_path(&mut self, host: &str, path: &str) -> Result<Option<BackupRecord>> {
        let rows = self.db.query(
            &format!(
                "SELECT {BACKUP_COLUMNS} FROM pgseal_backups WHERE status = 'ok' \
                 AND host = $1 AND path = $2"
            ),
            &[host.into(), path.into()],
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

/// Appends `e` to the chain inside the caller's transaction.
fn append_in(db: &mut dyn Db, e: &NewAuditEntry, imported: bool) -> Result<i64> {
    db.lock_audit_chain()?;
    let head = db.query(
        "SELECT seq, entry_hash FROM pgseal_audit_log ORDER BY seq DESC LIMIT 1",
        &[],
    )?;
    let (seq, prev) = match head.first() {
        Some(r) => (r.int(0)? + 1, r.text(1)?),
        None => (1, chain::GENESIS.to_owned()),
    };
    let hash = chain::entry_hash(seq, &prev, imported, e);
    db.execute(
        "INSERT INTO pgseal_audit_log (action, user_id, os_user, backup_creator_id, \
         backup_file, success, signature_valid, \"timestamp\", host, ip_address, details, \
         seq, prev_hash, entry_hash, imported) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        &[
            e.action.as_str().into(),
            e.user_id.into(),
            e.os_user.clone().into(),
            e.backup_creator_id.into(),
            e.backup_file.clone().into(),
            e.success.into(),
            e.signature_valid.into(),
            e.timestamp.into(),
            e.host.clone().into(),
            e.ip_address.clone().into(),
            e.details.as_str().into(),
            seq.into(),
            prev.into(),
            hash.into(),
            imported.into(),
        ],
    )?;
    Ok(seq)
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

fn backup_from_row(r: &Row) -> Result<BackupRecord> {
    let keys = r
        .text(8)?
        .split_whitespace()
        .map(|s| fingerprint(s.to_owned()))
        .collect::<Result<Vec<_>>>()?;
    Ok(BackupRecord {
        id: r.int(0)?,
        entry: NewBackup {
            database: r.text(1)?,
            path: r.text(2)?,
            host: r.text(3)?,
            size_bytes: r.int(4)?,
            created_at: r.time(5)?,
            creator_user_id: r.opt_int(6)?,
            creator_key: fingerprint(r.text(7)?)?,
            server_keys: keys,
            format_version: r.int(9)?,
            ciphertext_blake3: r.text(10)?,
        },
        status: r.text(11)?.parse()?,
        pruned_at: r.opt_time(12)?,
    })
}

fn one<T>(rows: Vec<Row>, f: impl Fn(&Row) -> Result<T>) -> Result<T> {
    rows.first()
        .map(f)
        .transpose()?
        .ok_or_else(|| StoreError::Corrupt("a statement returned no row".into()))
}

fn fingerprint(s: String) -> Result<Fingerprint> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("bad fingerprint {s}")))
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

fn audit_from_row(r: &Row) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: r.int(0)?,
        entry: NewAuditEntry {
            action: r.text(1)?,
            user_id: r.opt_int(2)?,
            os_user: r.opt_text(3)?,
            backup_creator_id: r.opt_int(4)?,
            backup_file: r.opt_text(5)?,
            success: r.bool(6)?,
            signature_valid: r.opt_bool(7)?,
            timestamp: r.time(8)?,
            host: r.opt_text(9)?,
            ip_address: r.opt_text(10)?,
            details: r.text(11)?,
        },
        seq: r.int(12)?,
        prev_hash: r.text(13)?,
        entry_hash: r.text(14)?,
        imported: r.bool(15)?,
    })
}

fn absent(url: &StoreUrl, reason: NoStoreReason) -> StoreError {
    StoreError::NoStore(crate::NoStore {
        store: url.to_string(),
        reason,
    })
}

/// A SQLite store file must exist and hold something before it is opened without creating.
fn sqlite_file_present(url: &StoreUrl, path: &std::path::Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == 0 => Err(absent(url, NoStoreReason::Empty)),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(absent(url, NoStoreReason::Missing))
        }
        Err(e) => Err(StoreError::Backend {
            backend: "sqlite",
            message: format!("{}: {e}", path.display()),
        }),
    }
}
