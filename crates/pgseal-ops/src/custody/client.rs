//! The caller's side of the key-custody service: requests signed with the caller's pgseal user
//! key, file keys received sealed to a one-time key, errors mapped back to the operations' own.

use std::sync::Arc;

use pgseal_core::keys::Identity;
use pgseal_core::secret::FileKey;
use pgseal_core::time::Timestamp;
use pgseal_core::v2::{Rewrap, SlotWrite, Step};
use pgseal_core::{Fingerprint, PrivateKey};
use pgseal_custody::auth::Credentials;
use pgseal_custody::seal::{OneTimeKey, SealedKey};
use pgseal_custody::wire::{
    self, Bytes, ErrorBody, PublicKeyInfo, RewrapRequest, RewrapResponse, UnwrapRequest,
    UnwrapResponse,
};

use crate::error::{Error, Result};

/// How requests reach the service: the front end's HTTP transport (TLS or a Unix socket), or,
/// in tests, the service itself in the same process.
pub trait Link: Send + Sync {
    /// Sends one request; returns the response's status and body. An error means no answer
    /// came (the service is down, unreachable or not trusted).
    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<(u16, Vec<u8>)>;

    /// The service as shown in messages (its URL).
    fn describe(&self) -> String;
}

/// A caller of the key-custody service: who they are (a pgseal user and their unlocked key)
/// and how the service is reached.
pub struct CustodyClient {
    link: Box<dyn Link>,
    user: String,
    key: PrivateKey,
    totp: Option<String>,
}

impl std::fmt::Debug for CustodyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustodyClient")
            .field("service", &self.link.describe())
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl CustodyClient {
    /// Calls the service over `link` as `user`, signing with `key` (their active key).
    pub fn new(link: Box<dyn Link>, user: &str, key: PrivateKey) -> Arc<Self> {
        Arc::new(CustodyClient {
            link,
            user: user.to_owned(),
            key,
            totp: None,
        })
    }

    /// Calls the service over `link` as `user`, signing with `key`, sending the second-factor
    /// `totp` code with each request.
    pub fn with_totp(link: Box<dyn Link>, user: &str, key: PrivateKey, totp: String) -> Arc<Self> {
        Arc::new(CustodyClient {
            link,
            user: user.to_owned(),
            key,
            totp: Some(totp),
        })
    }

    /// The service, as shown in messages.
    pub fn describe(&self) -> String {
        self.link.describe()
    }

    /// Has the service unwrap the file key of the v2 file whose prelude is `raw` (as read from
    /// the file): the key comes back sealed to a one-time key made for this request, and is
    /// returned with the server key that opened the slot. `file` names the file for the
    /// service's audit log.
    pub fn unwrap(&self, raw: &[u8], file: Option<&str>) -> Result<CustodyKey> {
        let one_time = OneTimeKey::generate().map_err(|e| Error::key(e.to_string()))?;
        let request = UnwrapRequest {
            prelude: Bytes(raw.to_vec()),
            client_key: Bytes(one_time.public().to_vec()),
            file: file.map(str::to_owned),
        };
        let answer: UnwrapResponse = self.call("POST", wire::path::UNWRAP, &request)?;
        let service_public = answer.service_key.0.as_slice().try_into().map_err(|_| {
            Error::Authentication("the custody service's one-time key is not 32 bytes".into())
        })?;
        let sealed = SealedKey {
            service_public,
            ciphertext: answer.sealed_key.0,
        };
        let key = one_time
            .open(&sealed, &pgseal_custody::seal::prelude_context(raw))
            .map_err(|e| Error::Authentication(format!("the custody service's answer: {e}")))?;
        let recipient = answer.opened_with.parse().map_err(|_| {
            Error::Authentication("the custody service named no key that opened the file".into())
        })?;
        Ok(CustodyKey { recipient, key })
    }

    /// Has the service plan the rewrap of the v2 file whose prelude is `raw` to its active key,
    /// keeping the stanzas of `keep`; the file key never leaves the service.
    pub fn rewrap(&self, raw: &[u8], keep: &[Fingerprint], file: Option<&str>) -> Result<Rewrap> {
        let request = RewrapRequest {
            prelude: Bytes(raw.to_vec()),
            keep: keep.iter().map(ToString::to_string).collect(),
            file: file.map(str::to_owned),
        };
        let answer: RewrapResponse = self.call("POST", wire::path::REWRAP, &request)?;
        let bad =
            |why: &str| Error::Authentication(format!("the custody service's rewrap plan: {why}"));
        let writes = answer
            .writes
            .into_iter()
            .map(|w| {
                let step = match w.step.as_str() {
                    "install" => Step::Install,
                    "wipe" => Step::Wipe,
                    _ => return Err(bad("an unknown step")),
                };
                Ok(SlotWrite {
                    step,
                    slot: w.slot,
                    offset: w.offset,
                    bytes: w.bytes.0,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let recipients = answer
            .recipients
            .iter()
            .map(|f| {
                f.parse()
                    .map_err(|_| bad("a recipient that is no fingerprint"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Rewrap {
            writes,
            generation: answer.generation,
            recipients,
        })
    }

    /// Has the service rotate the server key it holds (role `admin`, and a second-factor code).
    pub fn rotate(&self, key_size: Option<u32>, pq: Option<bool>) -> Result<wire::RotateResponse> {
        self.call(
            "POST",
            wire::path::ROTATE,
            &wire::RotateRequest { key_size, pq },
        )
    }

    /// Has the service retire a rotated server key (role `admin`, and a second-factor code).
    pub fn retire(&self, fingerprint: &str) -> Result<wire::RetireResponse> {
        self.call(
            "POST",
            wire::path::RETIRE,
            &wire::RetireRequest {
                fingerprint: fingerprint.to_owned(),
            },
        )
    }

    /// The audit chain head the service last wrote (role `auditor`).
    pub fn audit_head(&self) -> Result<Option<wire::AuditHead>> {
        self.call_get(wire::path::AUDIT_HEAD)
    }

    /// The server keys' public halves, as the service has them.
    pub fn public_keys(&self) -> Result<Vec<PublicKeyInfo>> {
        self.call_get(wire::path::PUBLIC_KEYS)
    }

    fn call<Q: serde::Serialize, A: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        request: &Q,
    ) -> Result<A> {
        let body = serde_json::to_vec(request)
            .map_err(|e| Error::invalid(format!("encoding the request: {e}")))?;
        self.exchange(method, path, &body)
    }

    fn call_get<A: serde::de::DeserializeOwned>(&self, path: &str) -> Result<A> {
        self.exchange("GET", path, b"")
    }

    fn exchange<A: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<A> {
        let credentials = Credentials::sign(
            &self.key,
            &self.user,
            method,
            path,
            body,
            self.totp.as_deref(),
            Timestamp::now().millis(),
        )?;
        let mut headers = credentials.headers();
        headers.push(("content-type", "application/json".to_owned()));
        let (status, answer) = self.link.send(method, path, &headers, body)?;
        if status == 200 {
            return serde_json::from_slice(&answer).map_err(|e| {
                Error::invalid(format!(
                    "the custody service's answer is not what v1 sends: {e}"
                ))
            });
        }
        let described = serde_json::from_slice::<ErrorBody>(&answer).ok();
        let message = match &described {
            Some(b) => format!(
                "the custody service {} refused: {}",
                self.describe(),
                b.message
            ),
            None => format!(
                "the custody service {} answered HTTP {status}",
                self.describe()
            ),
        };
        Err(match described.as_ref().map(|b| b.kind.as_str()) {
            Some("unauthenticated" | "forbidden" | "second_factor" | "throttled") => {
                Error::Authentication(message)
            }
            Some("key") => Error::Key(message),
            Some("invalid" | "bad_request") => Error::Invalid(message),
            _ => Error::Io {
                context: message,
                source: std::io::Error::other(format!("HTTP {status}")),
            },
        })
    }
}

/// A file key the service unwrapped, standing in for the server key that opened it: an
/// [`Identity`] for that one file.
pub struct CustodyKey {
    /// The server key that opened the slot.
    pub recipient: Fingerprint,
    key: FileKey,
}

impl Identity for CustodyKey {
    fn fingerprint(&self) -> Fingerprint {
        self.recipient
    }

    fn unwrap_file_key(&self, _wrapped: &[u8]) -> pgseal_core::Result<FileKey> {
        // The slot's commitment and MAC are checked against this key by the caller.
        FileKey::from_slice(self.key.expose())
    }

    fn unwrap_stanza(&self, _stanza: &pgseal_core::v2::Stanza) -> pgseal_core::Result<FileKey> {
        // Whatever the stanza's kind (RSA-OAEP or hybrid), the service unwrapped it; the caller
        // checks the commitment and the slot MAC against this key.
        FileKey::from_slice(self.key.expose())
    }
}

/// The custody service as a [`KeyHolder`](crate::keyholder::KeyHolder) for `rewrap`: it plans
/// each v2 file's rewrap where the keys are; this process never sees a private key or a file
/// key.
pub struct CustodyHolder {
    client: Arc<CustodyClient>,
    held: std::collections::BTreeSet<Fingerprint>,
}

impl CustodyHolder {
    /// The service `client` reaches, holding the keys it lists.
    pub fn new(client: Arc<CustodyClient>) -> Result<Self> {
        let held = client
            .public_keys()?
            .iter()
            .filter_map(|k| k.fingerprint.parse().ok())
            .collect();
        Ok(CustodyHolder { client, held })
    }
}

impl crate::keyholder::KeyHolder for CustodyHolder {
    fn holds(&self) -> std::collections::BTreeSet<Fingerprint> {
        self.held.clone()
    }

    fn plan_rewrap(
        &mut self,
        _prelude: &pgseal_core::v2::Prelude,
        raw: &[u8],
        _opener: &Fingerprint,
        recipients: &[pgseal_core::PublicKey],
        keep: &[Fingerprint],
    ) -> Result<Rewrap> {
        let plan = self.client.rewrap(raw, keep, None)?;
        // The service rewraps to its own active key: it must be the one this site's store
        // names, or the two disagree about which key is active.
        let wanted: Vec<Fingerprint> = recipients.iter().map(|k| k.fingerprint()).collect();
        if !wanted.iter().all(|f| plan.recipients.contains(f)) {
            return Err(Error::key(format!(
                "the custody service {} rewraps to {:?}, but the store's active server key is {:?}: \
                 the service and this store disagree (restart the service after a rotation)",
                self.client.describe(),
                plan.recipients
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
                wanted.iter().map(ToString::to_string).collect::<Vec<_>>()
            )));
        }
        Ok(plan)
    }

    fn rewrap_legacy(
        &mut self,
        _wrapped: &[u8],
        _to: &pgseal_core::PublicKey,
    ) -> Result<crate::keyholder::LegacyRewrap> {
        Err(Error::usage(
            "legacy hybrid files are rewrapped with the stored server keys and their password, \
             not through the custody service",
        ))
    }
}
