//! Reading the legacy Django system's tables (legacy-formats.md §4) for `pgseal import-django`.

use pgseal_core::time::Timestamp;

use crate::db::Db;
use crate::error::{Result, StoreError};
use crate::postgres::PostgresDb;

/// A row of `auth_user`, with the three columns the legacy system added.
#[derive(Debug, Clone)]
pub struct DjangoUser {
    /// `id`: kept as the pgseal user's id (legacy files carry it).
    pub id: i64,
    /// `username`, as Django stored it (not yet checked against pgseal's rule).
    pub username: String,
    /// `is_active`.
    pub is_active: bool,
    /// `is_superuser`: superusers become admins.
    pub is_superuser: bool,
    /// `public_key_pem`: the user's signing public key, if they had one.
    pub public_key_pem: Option<String>,
    /// `key_generated_at`.
    pub key_generated_at: Option<Timestamp>,
}

/// A row of `tenancy_server_key`.
#[derive(Debug, Clone)]
pub struct DjangoServerKey {
    /// `id`.
    pub id: i64,
    /// `private_key_pem`: encrypted under the legacy `SERVER_KEY_PASSWORD`.
    pub private_key_pem: String,
    /// `public_key_pem`.
    pub public_key_pem: String,
    /// `key_size` (4096 when `NULL`).
    pub key_size: i64,
    /// `fingerprint`: the legacy system's fingerprint.
    pub fingerprint: String,
    /// `is_active` (`false` when `NULL`).
    pub is_active: bool,
    /// `created_at` (the epoch when `NULL`).
    pub created_at: Timestamp,
    /// `rotated_from_id`.
    pub rotated_from_id: Option<i64>,
    /// `notes`.
    pub notes: Option<String>,
}

/// A row of `tenancy_encryption_audit_log`.
#[derive(Debug, Clone)]
pub struct DjangoAuditRow {
    /// `id`: recorded so a re-run imports the row once.
    pub id: i64,
    /// `action`, whatever text it holds (pgseal's chain keeps it exactly).
    pub action: String,
    /// `user_id`.
    pub user_id: Option<i64>,
    /// `backup_creator_id`.
    pub backup_creator_id: Option<i64>,
    /// `backup_file`.
    pub backup_file: Option<String>,
    /// `success` (`true` when `NULL`).
    pub success: bool,
    /// `signature_valid`.
    pub signature_valid: Option<bool>,
    /// `timestamp` (the epoch when `NULL`).
    pub timestamp: Timestamp,
    /// `ip_address`, as text.
    pub ip_address: Option<String>,
    /// `details` as JSON text (`{}` when `NULL`).
    pub details: String,
}

/// Everything `import-django` reads.
#[derive(Debug, Clone, Default)]
pub struct DjangoExport {
    /// `auth_user`, by id.
    pub users: Vec<DjangoUser>,
    /// `tenancy_server_key`, by id.
    pub server_keys: Vec<DjangoServerKey>,
    /// `tenancy_encryption_audit_log`, by id.
    pub audit: Vec<DjangoAuditRow>,
}

/// Reads the three tables from the legacy system's PostgreSQL database at `url`.
pub fn read(url: &str) -> Result<DjangoExport> {
    let mut db = PostgresDb::connect(url)?;
    let missing = |table: &str, e: StoreError| match e {
        StoreError::NoSuchTable { message, .. } => StoreError::NotFound(format!(
            "{table} not found: is this the legacy system's database? ({message})"
        )),
        other => other,
    };
    let users = db
        .query(
            "SELECT id::bigint, username, is_active, is_superuser, public_key_pem, key_generated_at \
             FROM auth_user ORDER BY id",
            &[],
        )
        .map_err(|e| missing("auth_user", e))?
        .iter()
        .map(|r| {
            Ok(DjangoUser {
                id: r.int(0)?,
                username: r.text(1)?,
                is_active: r.bool(2)?,
                is_superuser: r.bool(3)?,
                public_key_pem: r.opt_text(4)?,
                key_generated_at: r.opt_time(5)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let server_keys = db
        .query(
            "SELECT id::bigint, private_key_pem, public_key_pem, key_size::bigint, fingerprint, \
             is_active, created_at, rotated_from_id::bigint, notes \
             FROM tenancy_server_key ORDER BY id",
            &[],
        )
        .map_err(|e| missing("tenancy_server_key", e))?
        .iter()
        .map(|r| {
            Ok(DjangoServerKey {
                id: r.int(0)?,
                private_key_pem: r.text(1)?,
                public_key_pem: r.text(2)?,
                key_size: r.opt_int(3)?.unwrap_or(4096),
                fingerprint: r.text(4)?,
                is_active: r.opt_bool(5)?.unwrap_or(false),
                created_at: r.opt_time(6)?.unwrap_or(Timestamp(0)),
                rotated_from_id: r.opt_int(7)?,
                notes: r.opt_text(8)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let audit = db
        .query(
            "SELECT id::bigint, action, user_id::bigint, backup_creator_id::bigint, backup_file, \
             success, signature_valid, \"timestamp\", host(ip_address), COALESCE(details::text, '{}') \
             FROM tenancy_encryption_audit_log ORDER BY id",
            &[],
        )
        .map_err(|e| missing("tenancy_encryption_audit_log", e))?
        .iter()
        .map(|r| {
            Ok(DjangoAuditRow {
                id: r.int(0)?,
                action: r.text(1)?,
                user_id: r.opt_int(2)?,
                backup_creator_id: r.opt_int(3)?,
                backup_file: r.opt_text(4)?,
                success: r.opt_bool(5)?.unwrap_or(true),
                signature_valid: r.opt_bool(6)?,
                timestamp: r.opt_time(7)?.unwrap_or(Timestamp(0)),
                ip_address: r.opt_text(8)?,
                details: r.text(9)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(DjangoExport {
        users,
        server_keys,
        audit,
    })
}
