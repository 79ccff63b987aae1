//! What the store holds, as Rust types.

use std::fmt;
use std::str::FromStr;

use pgseal_core::Fingerprint;
use pgseal_core::time::Timestamp;

use crate::action::Action;
use crate::error::StoreError;
use crate::hash::Hash32;
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
    /// The text the store keeps (`admin`, `operator`, `auditor`).
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

/// What a user may ask of the key-custody service (`pgseal serve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceRole {
    /// Have file keys unwrapped: decrypt, restore, verify with decryption.
    Restore,
    /// Have files rewrapped to the active server key.
    Rewrap,
    /// Administer the server keys held by the service (rotate, retire).
    Admin,
    /// Read what the service knows of the audit log.
    Auditor,
}

impl ServiceRole {
    /// Every role.
    pub const ALL: [ServiceRole; 4] = [
        ServiceRole::Restore,
        ServiceRole::Rewrap,
        ServiceRole::Admin,
        ServiceRole::Auditor,
    ];

    /// The text the store keeps.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceRole::Restore => "restore",
            ServiceRole::Rewrap => "rewrap",
            ServiceRole::Admin => "admin",
            ServiceRole::Auditor => "auditor",
        }
    }
}

impl FromStr for ServiceRole {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        ServiceRole::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown service role {s}")))
    }
}

impl fmt::Display for ServiceRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user's second factor: their TOTP secret, sealed to a server key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpRecord {
    /// Whose.
    pub user_id: i64,
    /// The secret, RSA-OAEP-wrapped to `sealed_to`.
    pub secret_sealed: Vec<u8>,
    /// The server key it is wrapped to.
    pub sealed_to: Fingerprint,
    /// When it was enrolled.
    pub enrolled_at: Timestamp,
    /// The time step of the last code accepted (0: none yet).
    pub last_step: i64,
}

/// A person or job that makes or opens backups. Ids are never reused: legacy files carry them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user's id, assigned once (or kept from the legacy system) and never reused.
    pub id: i64,
    /// The user's unique name.
    pub username: Username,
    /// What the user may do.
    pub role: Role,
    /// `false` once disabled: the user signs no new backups.
    pub is_active: bool,
    /// When the user was added.
    pub created_at: Timestamp,
    /// When the user was disabled, if they were.
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
    /// The text the store keeps (`active`, `rotated`, `retired`).
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
    /// The key's row id.
    pub id: i64,
    /// `SHA256:` fingerprint of the public key (what files' recipient slots name).
    pub fingerprint: Fingerprint,
    /// The legacy system's fingerprint of the key, if it came from there or is known.
    pub legacy_fingerprint: Option<String>,
    /// The private key: encrypted PKCS#8 PEM.
    pub private_key_pem: String,
    /// The public key: SubjectPublicKeyInfo PEM.
    pub public_key_pem: String,
    /// RSA modulus size in bits.
    pub key_size: i64,
    /// Where the key is in its life.
    pub status: ServerKeyStatus,
    /// When the key was stored (or, imported, made).
    pub created_at: Timestamp,
    /// The key this one replaced by rotation.
    pub rotated_from_id: Option<i64>,
    /// When the key was retired.
    pub retired_at: Option<Timestamp>,
    /// Free text (where an imported key came from).
    pub notes: Option<String>,
}

/// A server key about to be stored.
#[derive(Debug, Clone)]
pub struct NewServerKey {
    /// `SHA256:` fingerprint of the public key.
    pub fingerprint: Fingerprint,
    /// The legacy system's fingerprint of the key.
    pub legacy_fingerprint: Option<String>,
    /// The private key: encrypted PKCS#8 PEM.
    pub private_key_pem: String,
    /// The public key: SubjectPublicKeyInfo PEM.
    pub public_key_pem: String,
    /// RSA modulus size in bits.
    pub key_size: i64,
    /// Free text.
    pub notes: Option<String>,
}

/// Where a user's key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserKeyStatus {
    /// The key the user signs with now. At most one per user, enforced by the database.
    Active,
    /// Replaced; kept forever so old signatures still verify.
    Retired,
}

impl UserKeyStatus {
    /// The text the store keeps (`active`, `retired`).
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
    /// The key's row id.
    pub id: i64,
    /// The user whose key it is.
    pub user_id: i64,
    /// `SHA256:` fingerprint of the public key (what signed files name as their signer).
    pub fingerprint: Fingerprint,
    /// The legacy system's fingerprint of the key (over its PEM text).
    pub legacy_fingerprint: Option<String>,
    /// The public key: SubjectPublicKeyInfo PEM.
    pub public_key_pem: String,
    /// RSA modulus size in bits.
    pub key_size: i64,
    /// Where the key is in its life.
    pub status: UserKeyStatus,
    /// When the key was stored.
    pub created_at: Timestamp,
    /// When the key was retired (replaced by a rotation).
    pub retired_at: Option<Timestamp>,
    /// The key this one replaced by rotation.
    pub rotated_from_id: Option<i64>,
}

/// A user's public key about to be stored.
#[derive(Debug, Clone)]
pub struct NewUserKey {
    /// `SHA256:` fingerprint of the public key.
    pub fingerprint: Fingerprint,
    /// The legacy system's fingerprint of the key.
    pub legacy_fingerprint: Option<String>,
    /// The public key: SubjectPublicKeyInfo PEM.
    pub public_key_pem: String,
    /// RSA modulus size in bits.
    pub key_size: i64,
}

/// One audit entry to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    /// What was done.
    pub action: Action,
    /// The pgseal user acting (who ran the command), if known.
    pub user_id: Option<i64>,
    /// The operating-system account that ran pgseal.
    pub os_user: Option<String>,
    /// Who made the backup concerned (from its header), if any.
    pub backup_creator_id: Option<i64>,
    /// The backup file concerned, if any.
    pub backup_file: Option<String>,
    /// Whether the operation succeeded.
    pub success: bool,
    /// `None` when no signature was involved or checked.
    pub signature_valid: Option<bool>,
    /// When the operation ended (UTC).
    pub timestamp: Timestamp,
    /// The host pgseal ran on.
    pub host: Option<String>,
    /// The SSH client's address in an SSH session, else the host's.
    pub ip_address: Option<String>,
    /// A JSON object.
    pub details: String,
}

/// A stored audit entry, with its place in the hash chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// The row's id (the order entries were stored in).
    pub id: i64,
    /// The entry's fields.
    pub entry: NewAuditEntry,
    /// Position in the chain: 1, 2, 3… with no gaps.
    pub seq: i64,
    /// SHA-256 of the previous entry ([`chain::GENESIS`](crate::chain::GENESIS), all zeros,
    /// for the first).
    pub prev_hash: Hash32,
    /// SHA-256 over this entry's canonical encoding ([`chain::entry_hash`](crate::chain::entry_hash)).
    pub entry_hash: Hash32,
    /// Brought over from the legacy system's log by `import-django`.
    pub imported: bool,
}

/// A backup pgseal made and knows about.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupRecord {
    /// The catalog entry's id.
    pub id: i64,
    /// What was recorded when the backup was made.
    pub entry: NewBackup,
    /// For a copy made from another repository, the entry of the backup as first catalogued
    /// (the copy of a copy names that same entry); `None` for the first.
    pub copy_of: Option<i64>,
    /// Live or pruned.
    pub status: BackupStatus,
    /// When it was pruned, if it was.
    pub pruned_at: Option<Timestamp>,
}

/// What the catalog records of a new backup.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBackup {
    /// The database backed up.
    pub database: String,
    /// Where the sealed file is: `file://HOST/PATH` for a file in a host's backup directory
    /// (see [`Location`](crate::Location)).
    pub location: crate::Location,
    /// The sealed file's size in bytes.
    pub size_bytes: i64,
    /// When the backup was made.
    pub created_at: Timestamp,
    /// The pgseal user who made it, if known.
    pub creator_user_id: Option<i64>,
    /// The key that signed it.
    pub creator_key: Fingerprint,
    /// The keys the file key is wrapped to (server key, recovery keys).
    pub server_keys: Vec<Fingerprint>,
    /// The file's format version.
    pub format_version: i64,
    /// BLAKE3 over the sealed chunks (what the final signature covers); `None` if the entry
    /// records none.
    pub ciphertext_blake3: Option<Hash32>,
}

/// Whether a catalogued backup's file is still there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupStatus {
    /// Live: the file was written and has not been pruned.
    Ok,
    /// Deleted by `pgseal prune`; the row stays as history.
    Pruned,
}

impl BackupStatus {
    /// The text the store keeps (`ok`, `pruned`).
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
    /// Only entries recording this action.
    pub action: Option<Action>,
    /// The acting pgseal user.
    pub user_id: Option<i64>,
    /// Only entries at or after this time.
    pub since: Option<Timestamp>,
    /// Only failures.
    pub failed_only: bool,
    /// Only entries where a signature was checked and did not hold.
    pub invalid_signature: bool,
    /// The newest this many (all when `None`).
    pub limit: Option<i64>,
}
