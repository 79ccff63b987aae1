//! The schema, as one ordered list of migrations for both backends.
//!
//! Each migration runs once, in a transaction, under a lock that keeps two processes opening a
//! new store at the same moment from both migrating it. Type placeholders (`{id}`, `{ts}`,
//! `{json}`) are filled per backend by [`Dialect::render`](crate::db::Dialect::render).
//!
//! The legacy system's tables map as follows, every column kept with its meaning:
//! `tenancy_server_key` → `pgseal_server_keys` (`is_active` now derived from `status`, so the
//! database itself allows one active key), `auth_user` key columns → `pgseal_users` (mirroring
//! the user's active key) plus the full history in `pgseal_user_keys`,
//! `tenancy_encryption_audit_log` → `pgseal_audit_log` (`user_id` is now the person acting; the
//! OS user and host are recorded too; `seq`, `prev_hash` and `entry_hash` chain every entry to
//! the one before, see docs/AUDIT.md).

use crate::db::{Db, Dialect, in_transaction};
use crate::error::{Result, StoreError};
use pgseal_core::time::Timestamp;

/// One step of the schema.
pub struct Migration {
    /// Its number: migrations run in this order, each once.
    pub version: i64,
    /// What it adds, recorded in `pgseal_schema`.
    pub name: &'static str,
    /// Its SQL, with type placeholders for [`Dialect::render`].
    pub sql: &'static str,
    /// What SQL cannot do, run after `sql` in the same transaction: rewriting existing rows.
    pub data: Option<fn(&mut dyn Db) -> Result<()>>,
    /// SQL run after `data` (dropping what the rows were rewritten from).
    pub after: &'static str,
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "users, server keys, user keys, audit log",
        sql: r#"
CREATE TABLE pgseal_users (
    id {id},
    username TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'auditor')),
    is_active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at {ts} NOT NULL,
    disabled_at {ts},
    public_key_pem TEXT,
    key_generated_at {ts},
    key_last_rotated {ts}
);

CREATE TABLE pgseal_server_keys (
    id {id},
    fingerprint TEXT NOT NULL UNIQUE,
    legacy_fingerprint TEXT,
    private_key_pem TEXT NOT NULL,
    public_key_pem TEXT NOT NULL,
    key_size INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'rotated', 'retired')),
    is_active BOOLEAN GENERATED ALWAYS AS (status = 'active') STORED,
    created_at {ts} NOT NULL,
    rotated_from_id {bigint} REFERENCES pgseal_server_keys (id),
    retired_at {ts},
    notes TEXT
);
CREATE UNIQUE INDEX pgseal_server_keys_one_active ON pgseal_server_keys (status)
    WHERE status = 'active';

CREATE TABLE pgseal_user_keys (
    id {id},
    user_id {bigint} NOT NULL REFERENCES pgseal_users (id),
    fingerprint TEXT NOT NULL UNIQUE,
    legacy_fingerprint TEXT,
    public_key_pem TEXT NOT NULL,
    key_size INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'retired')),
    created_at {ts} NOT NULL,
    retired_at {ts},
    rotated_from_id {bigint} REFERENCES pgseal_user_keys (id)
);
CREATE UNIQUE INDEX pgseal_user_keys_one_active ON pgseal_user_keys (user_id)
    WHERE status = 'active';

CREATE TABLE pgseal_audit_log (
    id {id},
    action TEXT NOT NULL,
    user_id {bigint} REFERENCES pgseal_users (id),
    os_user TEXT,
    backup_creator_id {bigint} REFERENCES pgseal_users (id),
    backup_file TEXT,
    success BOOLEAN NOT NULL,
    signature_valid BOOLEAN,
    "timestamp" {ts} NOT NULL,
    host TEXT,
    ip_address TEXT,
    details {json} NOT NULL,
    seq {bigint} NOT NULL,
    prev_hash TEXT NOT NULL,
    entry_hash TEXT NOT NULL,
    imported BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE UNIQUE INDEX pgseal_audit_seq ON pgseal_audit_log (seq);
CREATE UNIQUE INDEX pgseal_audit_prev ON pgseal_audit_log (prev_hash);
CREATE INDEX pgseal_audit_action_time ON pgseal_audit_log (action, "timestamp");
CREATE INDEX pgseal_audit_user_time ON pgseal_audit_log (user_id, "timestamp");
CREATE INDEX pgseal_audit_success_time ON pgseal_audit_log (success, "timestamp");
"#,
        data: None,
        after: "",
    },
    Migration {
        version: 2,
        name: "backup catalog",
        sql: r#"
CREATE TABLE pgseal_backups (
    id {id},
    database TEXT NOT NULL,
    path TEXT NOT NULL,
    host TEXT NOT NULL,
    size_bytes {bigint} NOT NULL,
    created_at {ts} NOT NULL,
    creator_user_id {bigint} REFERENCES pgseal_users (id),
    creator_key_fingerprint TEXT NOT NULL,
    server_key_fingerprints TEXT NOT NULL,
    format_version INTEGER NOT NULL,
    ciphertext_blake3 TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'pruned')),
    pruned_at {ts}
);
CREATE INDEX pgseal_backups_db_time ON pgseal_backups (database, created_at);
CREATE UNIQUE INDEX pgseal_backups_live_path ON pgseal_backups (host, path) WHERE status = 'ok';
"#,
        data: None,
        after: "",
    },
    Migration {
        version: 3,
        name: "rows imported from the legacy system",
        sql: r#"
CREATE TABLE pgseal_legacy_imports (
    kind TEXT NOT NULL,
    legacy_id {bigint} NOT NULL,
    imported_at {ts} NOT NULL,
    PRIMARY KEY (kind, legacy_id)
);
"#,
        data: None,
        after: "",
    },
    Migration {
        version: 4,
        name: "backup locations",
        // A backup's place is one URL (`file://HOST/PATH`, later `s3://BUCKET/KEY`) instead
        // of a path and the host whose filesystem holds it. SQLite cannot add a NOT NULL
        // column without a default: the default is the empty text, which no row keeps (every
        // row gets its location below, and pgseal reads an empty one as corrupt).
        sql: r#"
ALTER TABLE pgseal_backups ADD COLUMN location TEXT NOT NULL DEFAULT '';
"#,
        data: Some(locations_from_paths),
        after: r#"
DROP INDEX pgseal_backups_live_path;
ALTER TABLE pgseal_backups DROP COLUMN path;
ALTER TABLE pgseal_backups DROP COLUMN host;
CREATE UNIQUE INDEX pgseal_backups_live_location ON pgseal_backups (location)
    WHERE status = 'ok';
"#,
    },
    Migration {
        version: 5,
        name: "copies of backups",
        // A row is one stored copy of a backup; a copy made by `pgseal copy` names the row
        // first catalogued for that backup (never another copy), so one backup's copies are
        // that row and those naming it. Each copy keeps its own location, status and server
        // keys: it is pruned and rewrapped on its own.
        sql: r#"
ALTER TABLE pgseal_backups ADD COLUMN copy_of {bigint} REFERENCES pgseal_backups (id);
CREATE INDEX pgseal_backups_copy_of ON pgseal_backups (copy_of);
"#,
        data: None,
        after: "",
    },
    Migration {
        version: 6,
        name: "service roles",
        // What a user may ask of the key-custody service (`pgseal serve`): one row per role
        // granted. A user with none may ask it nothing.
        sql: r#"
CREATE TABLE pgseal_user_roles (
    user_id {bigint} NOT NULL REFERENCES pgseal_users (id),
    role TEXT NOT NULL CHECK (role IN ('restore', 'rewrap', 'admin', 'auditor')),
    granted_at {ts} NOT NULL,
    PRIMARY KEY (user_id, role)
);
"#,
        data: None,
        after: "",
    },
    Migration {
        version: 7,
        name: "second factors",
        // A user's TOTP secret (RFC 6238), sealed to a server key (RSA-OAEP): only a process
        // holding that key — the key-custody service — can check a code. `last_step` is the
        // time step of the last code accepted, so a code is accepted once.
        sql: r#"
CREATE TABLE pgseal_totp (
    user_id {bigint} PRIMARY KEY REFERENCES pgseal_users (id),
    secret_sealed TEXT NOT NULL,
    sealed_to TEXT NOT NULL,
    enrolled_at {ts} NOT NULL,
    last_step {bigint} NOT NULL DEFAULT 0
);
"#,
        data: None,
        after: "",
    },
];

/// Migration 4: each catalog row's location, from the path and host it recorded. A path
/// that is not absolute (pgseal never wrote one) becomes a single name holding `/`, which no
/// repository takes for one of its files.
fn locations_from_paths(db: &mut dyn Db) -> Result<()> {
    let rows = db.query("SELECT id, host, path FROM pgseal_backups", &[])?;
    for row in rows {
        let (id, host, path) = (row.int(0)?, row.text(1)?, row.text(2)?);
        let location = crate::Location::file(&host, std::path::Path::new(&path))
            .unwrap_or_else(|_| crate::Location::file_unplaced(&host, &path));
        db.execute(
            "UPDATE pgseal_backups SET location = $1 WHERE id = $2",
            &[location.as_str().into(), id.into()],
        )?;
    }
    Ok(())
}

/// The newest schema version this build knows.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The version of the schema a database holds: `None` when it holds no pgseal schema at all
/// (no `pgseal_schema` table, or one with no migration recorded).
pub fn schema_version(db: &mut dyn Db) -> Result<Option<i64>> {
    let exists_sql = match db.dialect() {
        Dialect::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'pgseal_schema'"
        }
        Dialect::Postgres => {
            "SELECT COUNT(*) FROM pg_catalog.pg_class \
             WHERE oid = to_regclass('pgseal_schema')"
        }
    };
    let exists = db
        .query(exists_sql, &[])?
        .first()
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0)
        > 0;
    if !exists {
        return Ok(None);
    }
    let version = db
        .query("SELECT COALESCE(MAX(version), 0) FROM pgseal_schema", &[])?
        .first()
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0);
    Ok((version > 0).then_some(version))
}

/// Brings the store's schema up to date. A store already current is only read: no
/// transaction, no lock, no write.
pub fn migrate(db: &mut dyn Db) -> Result<()> {
    match schema_version(db)? {
        Some(v) if v == latest() => return Ok(()),
        Some(v) if v > latest() => {
            return Err(StoreError::SchemaTooNew {
                found: v,
                known: latest(),
            });
        }
        _ => {}
    }
    let dialect = db.dialect();
    in_transaction(db, |db| {
        db.lock_for_migration()?;
        db.batch(&dialect.render(
            "CREATE TABLE IF NOT EXISTS pgseal_schema (
                version {bigint} PRIMARY KEY,
                name TEXT NOT NULL,
                applied_at {ts} NOT NULL
            )",
        ))?;
        let current = db
            .query("SELECT COALESCE(MAX(version), 0) FROM pgseal_schema", &[])?
            .first()
            .map(|r| r.int(0))
            .transpose()?
            .unwrap_or(0);
        if current > latest() {
            return Err(StoreError::SchemaTooNew {
                found: current,
                known: latest(),
            });
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            db.batch(&dialect.render(m.sql))?;
            if let Some(data) = m.data {
                data(db)?;
            }
            if !m.after.is_empty() {
                db.batch(&dialect.render(m.after))?;
            }
            db.execute(
                "INSERT INTO pgseal_schema (version, name, applied_at) VALUES ($1, $2, $3)",
                &[m.version.into(), m.name.into(), Timestamp::now().into()],
            )?;
        }
        Ok(())
    })
}
