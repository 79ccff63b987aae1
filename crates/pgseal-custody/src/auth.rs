//! Request authentication: every request but the health check and the metrics carries its
//! caller's name, a time, a fresh nonce and an RSA-PSS signature by the caller's pgseal user key
//! over all of them and over the request itself (method, path, body digest, second factor).
//!
//! The service checks, in this order: the headers are well-formed ([`Credentials::from_headers`]),
//! the time is within [`MAX_SKEW_MS`] of its own clock ([`Credentials::check_time`]), the
//! signature verifies with the user's active key from the store ([`Credentials::verify`]), and
//! the nonce has not been seen within the window ([`NonceCache`]). A captured request can thus
//! be replayed neither later nor twice, and no part of it can be changed.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pgseal_core::keys::{PssSalt, PublicKey, Signer};

/// The header naming the caller (a pgseal user name).
pub const USER: &str = "x-pgseal-user";
/// The header holding the request's time, in milliseconds since the Unix epoch.
pub const TIMESTAMP: &str = "x-pgseal-timestamp";
/// The header holding the request's nonce: 16 random bytes as 32 lowercase hex digits.
pub const NONCE: &str = "x-pgseal-nonce";
/// The header holding a second-factor code (TOTP), when the caller sends one.
pub const TOTP: &str = "x-pgseal-totp";
/// The header holding the signature, standard base64.
pub const SIGNATURE: &str = "x-pgseal-signature";

/// How far a request's time may be from the service's clock, either way: five minutes.
pub const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

/// The first line of every signed text: what it is, and the protocol's version.
const DOMAIN: &str = "pgseal-custody-v1";

/// The longest user name accepted in a header (the store's own limit is lower).
const MAX_USER: usize = 150;
/// The longest signature accepted (an RSA-8192 signature is 1024 bytes).
const MAX_SIGNATURE: usize = 1024;

/// Why a request's credentials were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// A header is missing.
    #[error("the request carries no {0} header")]
    Missing(&'static str),
    /// A header is not what the protocol allows.
    #[error("the {header} header is malformed: {why}")]
    Malformed {
        /// Which.
        header: &'static str,
        /// How.
        why: &'static str,
    },
    /// The request's time is too far from the service's.
    #[error(
        "the request's time is {skew_ms} ms from the service's clock (at most {MAX_SKEW_MS} allowed): check both clocks"
    )]
    Stale {
        /// How far, in milliseconds (positive: the request is from the future).
        skew_ms: i64,
    },
    /// The signature does not verify with the user's active key.
    #[error("the request's signature does not verify with the user's active key")]
    BadSignature,
    /// The nonce was used before, within the window.
    #[error("the request's nonce was used before: a replayed request")]
    Replayed,
}

/// A request's credentials, as its headers carry them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The caller: a pgseal user name (checked by the service against the store).
    pub user: String,
    /// When the request was made, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// 16 random bytes, as 32 lowercase hex digits.
    pub nonce: String,
    /// A second-factor code, if the caller sent one.
    pub totp: Option<String>,
    /// RSA-PSS (SHA-256, 32-byte salt) over [`signed_text`].
    pub signature: Vec<u8>,
}

/// The text a request's signature covers: the protocol's name, the method, the path (with its
/// query, exactly as sent), the SHA-256 of the body in hex, the time, the nonce, the user and
/// the second-factor code (empty when none), each on its own line. A header value cannot hold a
/// line break (`from_headers` refuses one), so no two requests share a text.
pub fn signed_text(
    method: &str,
    path: &str,
    body: &[u8],
    user: &str,
    timestamp_ms: i64,
    nonce: &str,
    totp: Option<&str>,
) -> Vec<u8> {
    format!(
        "{DOMAIN}\n{method}\n{path}\n{}\n{timestamp_ms}\n{nonce}\n{user}\n{}\n",
        hex::encode(pgseal_core::hash::sha256(body)),
        totp.unwrap_or("")
    )
    .into_bytes()
}

impl Credentials {
    /// Signs a request as `user` with `key` (the user's active key), at `now_ms`, with a fresh
    /// nonce.
    pub fn sign(
        key: &dyn Signer,
        user: &str,
        method: &str,
        path: &str,
        body: &[u8],
        totp: Option<&str>,
        now_ms: i64,
    ) -> pgseal_core::Result<Self> {
        let mut nonce = [0u8; 16];
        pgseal_core::secret::fill_random(&mut nonce)?;
        let nonce = hex::encode(nonce);
        let text = signed_text(method, path, body, user, now_ms, &nonce, totp);
        Ok(Credentials {
            user: user.to_owned(),
            timestamp_ms: now_ms,
            nonce,
            totp: totp.map(str::to_owned),
            signature: key.sign_pss(PssSalt::Digest, &text)?,
        })
    }

    /// The headers that carry these credentials.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            (USER, self.user.clone()),
            (TIMESTAMP, self.timestamp_ms.to_string()),
            (NONCE, self.nonce.clone()),
            (SIGNATURE, STANDARD.encode(&self.signature)),
        ];
        if let Some(code) = &self.totp {
            h.push((TOTP, code.clone()));
        }
        h
    }

    /// Reads credentials from a request's headers (`header` looks one up by its lowercase
    /// name), refusing anything the protocol does not allow — before any of it is used.
    pub fn from_headers<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Result<Self, AuthError> {
        let need = |name: &'static str| header(name).ok_or(AuthError::Missing(name));
        let malformed =
            |header: &'static str, why: &'static str| AuthError::Malformed { header, why };

        let user = need(USER)?;
        if user.is_empty() || user.len() > MAX_USER {
            return Err(malformed(USER, "empty or too long"));
        }
        if user.chars().any(char::is_control) {
            return Err(malformed(USER, "holds a control character"));
        }

        let timestamp = need(TIMESTAMP)?;
        if timestamp.is_empty()
            || timestamp.len() > 18
            || !timestamp.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(malformed(TIMESTAMP, "not milliseconds since the epoch"));
        }
        let timestamp_ms: i64 = timestamp
            .parse()
            .map_err(|_| malformed(TIMESTAMP, "not milliseconds since the epoch"))?;

        let nonce = need(NONCE)?;
        if nonce.len() != 32
            || !nonce
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(malformed(NONCE, "not 32 lowercase hex digits"));
        }

        let totp = match header(TOTP) {
            None => None,
            Some(code)
                if (6..=8).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Some(code.to_owned())
            }
            Some(_) => return Err(malformed(TOTP, "not 6 to 8 digits")),
        };

        let signature = need(SIGNATURE)?;
        if signature.len() > MAX_SIGNATURE.div_ceil(3) * 4 {
            return Err(malformed(SIGNATURE, "too long"));
        }
        let signature = STANDARD
            .decode(signature)
            .map_err(|_| malformed(SIGNATURE, "not base64"))?;

        Ok(Credentials {
            user: user.to_owned(),
            timestamp_ms,
            nonce: nonce.to_owned(),
            totp,
            signature,
        })
    }

    /// Refuses a request whose time is more than [`MAX_SKEW_MS`] from `now_ms`.
    pub fn check_time(&self, now_ms: i64) -> Result<(), AuthError> {
        let skew_ms = self.timestamp_ms.saturating_sub(now_ms);
        if skew_ms.abs() > MAX_SKEW_MS {
            return Err(AuthError::Stale { skew_ms });
        }
        Ok(())
    }

    /// Checks the signature over the request with `key` (the user's active key).
    pub fn verify(
        &self,
        key: &PublicKey,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(), AuthError> {
        let text = signed_text(
            method,
            path,
            body,
            &self.user,
            self.timestamp_ms,
            &self.nonce,
            self.totp.as_deref(),
        );
        if key.verify_pss(PssSalt::Digest, &text, &self.signature) {
            Ok(())
        } else {
            Err(AuthError::BadSignature)
        }
    }
}

/// The nonces of the requests accepted within the window, per user: a nonce seen again before
/// its request's time has left the window is a replay. Memory is bounded by the window: an
/// entry is forgotten once its request could no longer pass [`Credentials::check_time`].
#[derive(Debug, Default)]
pub struct NonceCache {
    seen: HashMap<(String, String), i64>,
    /// Forget-after times, for pruning in order.
    expiries: BTreeMap<i64, Vec<(String, String)>>,
}

impl NonceCache {
    /// Records the nonce of `credentials` (already checked for time and signature) at `now_ms`;
    /// [`AuthError::Replayed`] if it was seen within the window.
    pub fn admit(&mut self, credentials: &Credentials, now_ms: i64) -> Result<(), AuthError> {
        self.prune(now_ms);
        let key = (credentials.user.clone(), credentials.nonce.clone());
        if self.seen.contains_key(&key) {
            return Err(AuthError::Replayed);
        }
        // The request could pass the time check until its own time plus the window.
        let forget_at = credentials
            .timestamp_ms
            .saturating_add(MAX_SKEW_MS)
            .max(now_ms);
        self.seen.insert(key.clone(), forget_at);
        self.expiries.entry(forget_at).or_default().push(key);
        Ok(())
    }

    /// How many nonces are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn prune(&mut self, now_ms: i64) {
        while let Some(entry) = self.expiries.first_entry() {
            if *entry.key() >= now_ms {
                break;
            }
            for key in entry.remove() {
                self.seen.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgseal_core::PrivateKey;
    use pgseal_core::keys::KeyBits;

    fn key() -> PrivateKey {
        PrivateKey::generate(KeyBits::from_bits(2048).unwrap()).unwrap()
    }

    fn parse(creds: &Credentials) -> Result<Credentials, AuthError> {
        let headers = creds.headers();
        Credentials::from_headers(|name| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        })
    }

    #[test]
    fn a_signed_request_round_trips_through_its_headers_and_verifies() {
        let k = key();
        let now = 1_764_547_200_000;
        let c = Credentials::sign(
            &k,
            "alice",
            "POST",
            "/v1/unwrap",
            b"{}",
            Some("123456"),
            now,
        )
        .unwrap();
        let back = parse(&c).unwrap();
        assert_eq!(back, c);
        back.verify(k.public(), "POST", "/v1/unwrap", b"{}")
            .unwrap();
        back.check_time(now + MAX_SKEW_MS).unwrap();
    }

    #[test]
    fn any_change_to_the_request_breaks_the_signature() {
        let k = key();
        let c = Credentials::sign(&k, "alice", "POST", "/v1/unwrap", b"{}", None, 1000).unwrap();
        let pk = k.public();
        assert_eq!(
            c.verify(pk, "GET", "/v1/unwrap", b"{}"),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            c.verify(pk, "POST", "/v1/rewrap", b"{}"),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            c.verify(pk, "POST", "/v1/unwrap", b"{ }"),
            Err(AuthError::BadSignature)
        );
        for change in [
            |c: &mut Credentials| c.user = "mallory".into(),
            |c: &mut Credentials| c.timestamp_ms += 1,
            |c: &mut Credentials| c.nonce = "0".repeat(32),
            |c: &mut Credentials| c.totp = Some("000000".into()),
            |c: &mut Credentials| c.signature[10] ^= 1,
        ] {
            let mut changed = c.clone();
            change(&mut changed);
            assert_eq!(
                changed.verify(pk, "POST", "/v1/unwrap", b"{}"),
                Err(AuthError::BadSignature)
            );
        }
        // Another user's key does not verify it either.
        assert_eq!(
            c.verify(key().public(), "POST", "/v1/unwrap", b"{}"),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn a_request_outside_the_window_is_stale() {
        let k = key();
        let c =
            Credentials::sign(&k, "alice", "GET", "/v1/public-keys", b"", None, 1_000_000).unwrap();
        assert!(matches!(
            c.check_time(1_000_000 + MAX_SKEW_MS + 1),
            Err(AuthError::Stale { skew_ms }) if skew_ms < 0
        ));
        assert!(matches!(
            c.check_time(1_000_000 - MAX_SKEW_MS - 1),
            Err(AuthError::Stale { skew_ms }) if skew_ms > 0
        ));
    }

    #[test]
    fn malformed_headers_are_refused_before_use() {
        let good = [
            (USER, "alice"),
            (TIMESTAMP, "1000"),
            (NONCE, "00112233445566778899aabbccddeeff"),
            (SIGNATURE, "AAAA"),
        ];
        let with = |name: &'static str, value: Option<&'static str>| {
            let mut h: Vec<(&str, &str)> =
                good.iter().copied().filter(|(n, _)| *n != name).collect();
            if let Some(v) = value {
                h.push((name, v));
            }
            Credentials::from_headers(|n| h.iter().find(|(k, _)| *k == n).map(|(_, v)| *v))
        };
        assert!(with(USER, Some("alice")).is_ok());
        assert_eq!(with(USER, None), Err(AuthError::Missing(USER)));
        assert!(with(USER, Some("")).is_err());
        assert!(with(USER, Some("a\nb")).is_err());
        assert!(with(TIMESTAMP, Some("-5")).is_err());
        assert!(with(TIMESTAMP, Some("12a")).is_err());
        assert!(with(TIMESTAMP, Some("99999999999999999999")).is_err());
        assert!(with(NONCE, Some("00112233445566778899AABBCCDDEEFF")).is_err());
        assert!(with(NONCE, Some("0011")).is_err());
        assert!(with(SIGNATURE, Some("!!!")).is_err());
        assert!(with(TOTP, Some("12345")).is_err());
        assert!(with(TOTP, Some("12345a")).is_err());
        assert!(with(TOTP, Some("123456")).is_ok());
    }

    #[test]
    fn a_nonce_is_accepted_once_within_the_window_and_forgotten_after() {
        let k = key();
        let mut cache = NonceCache::default();
        let c =
            Credentials::sign(&k, "alice", "GET", "/v1/public-keys", b"", None, 10_000).unwrap();
        cache.admit(&c, 10_000).unwrap();
        assert_eq!(cache.admit(&c, 10_001), Err(AuthError::Replayed));
        // The same nonce from another user is another request.
        let mut other = c.clone();
        other.user = "bob".into();
        cache.admit(&other, 10_002).unwrap();
        assert_eq!(cache.len(), 2);
        // Once the request is too old to pass the time check, its nonce is forgotten.
        let later = 10_000 + MAX_SKEW_MS + 1;
        let fresh = Credentials::sign(&k, "alice", "GET", "/", b"", None, later).unwrap();
        cache.admit(&fresh, later).unwrap();
        assert_eq!(cache.len(), 1);
    }
}
