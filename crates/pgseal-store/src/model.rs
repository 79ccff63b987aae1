//! What the store holds, as Rust types.

use std::fmt;
use std::str::FromStr;

use pgseal_core::Fingerprint;
use pgseal_core::time::Timestamp;

use crate::error::StoreError;
use crate::username::Username;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything, including key operations and forcing what others cannot.
    Admin,
    /// Backups, restores, their own keys.
    Operator,
    /// Reads the audit log and verifies; decrypts nothing.
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
        }
    }
}

impl FromStr for Role {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "auditor" => Ok(Role::Auditor),
            other => Err(StoreError::Corrupt(format!("unknown role {other}"))),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A person or job that makes or opens backups. Ids are never reused: legacy files carry them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: Username,
    pub role: Role,
    pub is_active: bool,
    pub created_at: Timestamp,
    pub disabled_at: Option<Timestamp>,
}

/// Where a server key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKeyStatus {
    /// New backups are encrypted to it. At most one, enforced by the database.
    Active,
    /// Replaced by a newer key; still opens the backups made for it.
    Rotated,
    /// No catalogued backup needs it any more.
    Retired,
}

impl ServerKeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerKeyStatus::Active => "active",
            ServerKeyStatus::Rotated => "rotated",
            ServerKeyStatus::Retired => "retired",
        }
    }
}

impl FromStr for ServerKeyStatus {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "active" => Ok(ServerKeyStatus::Active),
            "rotated" => Ok(ServerKeyStatus::Rotated),
            "retired" => Ok(ServerKeyStatus::Retired),
            other => Err(StoreError::Corrupt(format!(
                "unknown server key status {other}"
            ))),
        }
    }
}

/// A server key pair; the private half is encrypted PKCS#8 PEM (under `SERVER_KEY_PASSWORD`).
#[derive(Debug, Clone)]
pub struct ServerKeyRecord {
    pub id: i64,
    pub fingerprint: Fingerprint,
    pub legacy_fingerprint: Option<String>,
    pub private_key_pem: String,
    pub public_key_pem: String,
    pub key_size: i64,
    pub status: ServerKeyStatus,
    pub created_at: Timestamp,
    pub rotated_from_id: Option<i64>,
    pub retired_at: Option<Timestamp>,
    pub notes: Option<String>,
}

/// A server key about to be stored.
#[derive(Debug, Clone)]
pub struct NewServerKey {
    pub fingerprint: Fingerprint,
    pub legacy_fingerprint: Option<String>,
    pub private_key_pem: String,
    pub public_key_pem: String,
    pub key_size: i64,
    pub notes: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserKeyStatus {
    /// The key the user signs with now. At most one per user, enforced by the database.
    Active,
    /// Replaced; kept forever so old signatures still verify.
    Retired,
}

impl UserKeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserKeyStatus::Active => "active",
            UserKeyStatus::Retired => "retired",
        }
    }
}

impl FromStr for UserKeyStatus {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "active" => Ok(UserKeyStatus::Active),
            "retired" => Ok(UserKeyStatus::Retired),
            other => Err(StoreError::Corrupt(format!(
                "unknown user key status {other}"
            ))),
        }
    }
}

/// A user's public key (the private half stays with the user).
#[derive(Debug, Clone)]
pub struct UserKeyRecord {
    pub id: i64,
    pub user_id: i64,
    pub fingerprint: Fingerprint,
    pub legacy_fingerprint: Option<String>,
    pub public_key_pem: String,
    pub key_size: i64,
    pub status: UserKeyStatus,
    pub created_at: Timestamp,
    pub retired_at: Option<Timestamp>,
    pub rotated_from_id: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewUserKey {
    pub fingerprint: Fingerprint,
    pub legacy_fingerprint: Option<String>,
    pub public_key_pem: String,
    pub key_size: i64,
}

/// The kinds of operation the audit log records (the legacy five, and pgseal's own).
pub mod actions {
    pub const ENCRYPT: &str = "ENCRYPT";
    pub const DECRYPT: &str = "DECRYPT";
    /// A decryption began releasing plaintext to a stream (standard output, a FIFO, a device),
    /// written before its first byte; its outcome follows as a `DECRYPT` entry.
    pub const DECRYPT_START: &str = "DECRYPT_START";
    pub const VERIFY: &str = "VERIFY";
    pub const KEY_GEN: &str = "KEY_GEN";
    pub const KEY_ROTATE: &str = "KEY_ROTATE";
    pub const KEY_EXPORT: &str = "KEY_EXPORT";
    pub const USER_ADD: &str = "USER_ADD";
    pub const USER_DISABLE: &str = "USER_DISABLE";
    pub const INIT: &str = "INIT";
    pub const BACKUP: &str = "BACKUP";
    pub const RESTORE: &str = "RESTORE";
    pub const PRUNE: &str = "PRUNE";
    pub const REWRAP: &str = "REWRAP";
    pub const KEY_RETIRE: &str = "KEY_RETIRE";
    pub const IMPORT: &str = "IMPORT";
}

/// One audit entry to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    pub action: String,
    /// The pgseal user acting (who ran the command), if known.
    pub user_id: Option<i64>,
    /// The operating-system account that ran pgseal.
    pub os_user: Option<String>,
    /// Who made the backup concerned (from its header), if any.
    pub backup_creator_id: Option<i64>,
    pub backup_file: Option<String>,
    pub success: bool,
    /// `None` when no signature was involved or checked.
    pub signature_valid: Option<bool>,
    pub timestamp: Timestamp,
    pub host: Option<String>,
    pub ip_address: Option<String>,
    /// A JSON object.
    pub details: String,
}

/// A stored audit entry, with its place in the hash chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub entry: NewAuditEntry,
    /// Position in the chain: 1, 2, 3… with no gaps.
    pub seq: i64,
    /// Hex SHA-256 of the previous entry (all zeros for the first).
    pub prev_hash: String,
    /// Hex SHA-256 over this entry's canonical encoding (crate::chain).
    pub entry_hash: String,
    /// Brought over from the legacy system's log by `import-django`.
    pub imported: bool,
}

/// A backup pgseal made and knows about.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupRecord {
    pub id: i64,
    pub entry: NewBackup,
    pub status: BackupStatus,
    pub pruned_at: Option<Timestamp>,
}

/// What the catalog records of a new backup.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBackup {
    pub database: String,
    /// Absolute path of the sealed file.
    pub path: String,
    /// The host whose filesystem holds `path`.
    pub host: String,
    pub size_bytes: i64,
    pub created_at: Timestamp,
    pub creator_user_id: Option<i64>,
    pub creator_key: Fingerprint,
    /// The keys the file key is wrapped to (server key, recovery keys).
    pub server_keys: Vec<Fingerprint>,
    pub format_version: i64,
    /// Hex BLAKE3 over the sealed chunks (what the final signature covers).
    pub ciphertext_blake3: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupStatus {
    Ok,
    /// Deleted by `pgseal prune`; the row stays as history.
    Pruned,
}

impl BackupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupStatus::Ok => "ok",
            BackupStatus::Pruned => "pruned",
        }
    }
}

impl FromStr for BackupStatus {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "ok" => Ok(BackupStatus::Ok),
            "pruned" => Ok(BackupStatus::Pruned),
            other => Err(StoreError::Corrupt(format!(
                "unknown backup status {other}"
            ))),
        }
    }
}

/// Which audit entries to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    /// The acting pgseal user.
    pub user_id: Option<i64>,
    pub since: Option<Timestamp>,
    pub failed_only: bool,
    /// Only entries where a signature was checked and did not hold.
    pub invalid_signature: bool,
    /// The newest this many (all when `None`).
    pub limit: Option<i64>,
}
