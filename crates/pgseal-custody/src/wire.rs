//! The JSON bodies of the service's routes (version 1, under `/v1/`; docs/CUSTODY.md). Binary
//! fields are standard base64. Every body is small: the service refuses one over
//! [`MAX_BODY`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// The path prefix of this version of the API.
pub const PREFIX: &str = "/v1";

/// The largest request body the service reads: a prelude is at most a few KiB (a header, its
/// signature, two slots); anything far beyond is refused unread.
pub const MAX_BODY: usize = 256 * 1024;

/// The routes, as paths.
pub mod path {
    /// `GET`: whether the service is up (no authentication).
    pub const HEALTH: &str = "/v1/health";
    /// `GET`: Prometheus metrics (no authentication).
    pub const METRICS: &str = "/metrics";
    /// `GET`: the server keys' public halves.
    pub const PUBLIC_KEYS: &str = "/v1/public-keys";
    /// `POST` [`super::UnwrapRequest`] → [`super::UnwrapResponse`].
    pub const UNWRAP: &str = "/v1/unwrap";
    /// `POST` [`super::RewrapRequest`] → [`super::RewrapResponse`].
    pub const REWRAP: &str = "/v1/rewrap";

    /// `POST` [`super::RotateRequest`] → [`super::RotateResponse`]: role `admin` and a fresh
    /// second-factor code.
    pub const ROTATE: &str = "/v1/admin/rotate";
    /// `POST` [`super::RetireRequest`] → [`super::RetireResponse`]: role `admin` and a fresh
    /// second-factor code.
    pub const RETIRE: &str = "/v1/admin/retire";
    /// `GET` → [`super::AuditHead`]: role `auditor`.
    pub const AUDIT_HEAD: &str = "/v1/audit/head";
    /// Every route. The transport labels its metrics by these paths (anything else is counted
    /// as `other`, so that a scanner cannot grow the label set): add a new route here.
    pub const ROUTES: &[&str] = &[
        HEALTH,
        METRICS,
        PUBLIC_KEYS,
        UNWRAP,
        REWRAP,
        ROTATE,
        RETIRE,
        AUDIT_HEAD,
    ];
}

/// Binary data as standard base64 in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Bytes(#[serde(with = "b64")] pub Vec<u8>);

mod b64 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// Unwrap: open a v2 file's active slot and return its file key sealed to the caller's
/// one-time key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnwrapRequest {
    /// The file's prelude as stored: from its first byte to the end of its second recipient
    /// slot (header, header signature, both slots). The service parses it itself.
    pub prelude: Bytes,
    /// The caller's one-time X25519 public key (32 bytes).
    pub client_key: Bytes,
    /// What the file is called where the caller found it (for the audit log only).
    #[serde(default)]
    pub file: Option<String>,
}

/// The file key, sealed ([`crate::seal`]); the context is the SHA-256 of the prelude sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnwrapResponse {
    /// The service's one-time X25519 public key.
    pub service_key: Bytes,
    /// The sealed file key.
    pub sealed_key: Bytes,
    /// The server key that opened the slot.
    pub opened_with: String,
}

/// Rewrap: plan moving a v2 file to the active server key; the file key never leaves the
/// service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewrapRequest {
    /// The file's prelude, as for [`UnwrapRequest::prelude`].
    pub prelude: Bytes,
    /// Recovery keys' stanzas to keep (fingerprints, `SHA256:…`).
    #[serde(default)]
    pub keep: Vec<String>,
    /// What the file is called where the caller found it (for the audit log only).
    #[serde(default)]
    pub file: Option<String>,
}

/// One slot write of a rewrap, to apply in order, each durable before the next.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SlotWrite {
    /// `install` or `wipe`.
    pub step: String,
    /// 0 = slot A, 1 = slot B.
    pub slot: usize,
    /// Where the slot starts in the file.
    pub offset: u64,
    /// The slot's new bytes.
    pub bytes: Bytes,
}

/// The rewrap plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewrapResponse {
    /// The writes, in order.
    pub writes: Vec<SlotWrite>,
    /// The active slot's generation once they are done.
    pub generation: u64,
    /// Who can open the file once they are done.
    pub recipients: Vec<String>,
}

/// Key administration: rotate the server key the service holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// The new key's size in bits (default: the site's).
    #[serde(default)]
    pub key_size: Option<u32>,
    /// Whether the new key gets an ML-KEM-768 half (default: the site's `[keys] pq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pq: Option<bool>,
}

/// What a rotation did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateResponse {
    /// The key that was active.
    pub old: String,
    /// The new active key.
    pub new: String,
}

/// Key administration: retire a rotated server key (refused while backups hold it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetireRequest {
    /// Its full fingerprint.
    pub fingerprint: String,
}

/// What a retirement did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetireResponse {
    /// The key, now retired (and no longer held by the service).
    pub retired: String,
}

/// The newest audit entry the service wrote: the chain must still hold it, or the log was cut
/// back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditHead {
    /// Its position in the chain.
    pub seq: i64,
    /// Its hash (hex).
    pub entry_hash: String,
}

/// A server key's public half.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyInfo {
    /// `SHA256:…`.
    pub fingerprint: String,
    /// `active`, `rotated` or `retired`.
    pub status: String,
    /// The SubjectPublicKeyInfo, PEM.
    pub public_key_pem: String,
}

/// An error, as every route reports one (with an HTTP status that says its class).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub message: String,
    /// A stable name: `unauthenticated`, `forbidden`, `bad_request`, `not_found`,
    /// `second_factor`, `throttled`, `unaudited`, `key`, `invalid`, `internal`.
    pub kind: String,
}
