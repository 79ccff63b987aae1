//! The key-custody service's operations (`pgseal serve`; docs/CUSTODY.md): the server keys,
//! unlocked once when the service starts and held only in its memory, used on request for
//! callers the service has authenticated and authorised — every request, answered or refused,
//! an audit entry written before any answer leaves (fail closed).
//!
//! A request is checked in this order: the caller's address is not throttled; its credentials
//! are well-formed, timely, signed by the named user's active key and not replayed
//! ([`pgseal_custody::auth`]); the user is active and holds the route's service role. Then the
//! route's work: an unwrap verifies the file's header signature with its creator's key from the
//! store (a file this site made), opens its active slot with a held key and returns the file
//! key sealed to the caller's one-time key ([`pgseal_custody::seal`]); a rewrap returns only
//! the new slot bytes for the active key — the file key never leaves.
//!
//! The held keys are aws-lc's RSA keys, whose memory aws-lc clears when they are freed; the
//! front end keeps the process from dumping core.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pgseal_core::keys::Identity;
use pgseal_core::time::Timestamp;
use pgseal_core::v2::{self, Prelude};
use pgseal_core::{Fingerprint, PrivateKey, PublicKey};
use pgseal_custody::auth::{AuthError, Credentials, NonceCache};
use pgseal_custody::seal;
use pgseal_custody::wire::{
    AuditHead, Bytes, PublicKeyInfo, RewrapRequest, RewrapResponse, SlotWrite, UnwrapRequest,
    UnwrapResponse,
};
use pgseal_store::{Action, ServiceRole, User, Username};

use crate::error::{Error, Result};
use crate::examine::store_signer;
use crate::secret::Secret;
use crate::session::{Operation, Session};

/// How the service treats callers.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Proxies whose `X-Forwarded-For` header is believed: a request from one of them is
    /// recorded (and throttled) under the address it forwards for. From anyone else the header
    /// is ignored.
    pub trusted_proxies: Vec<IpAddr>,
    /// Failed authentications from one address or for one user name before they are refused
    /// for a while.
    pub max_failures: u32,
    /// How long an address or user name is refused after too many failures (and how long
    /// failures are remembered).
    pub lockout: Duration,
    /// Whether an unwrap needs a fresh second-factor code too (key administration always does).
    pub second_factor_for_unwrap: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            trusted_proxies: Vec::new(),
            max_failures: 5,
            lockout: Duration::from_secs(60),
            second_factor_for_unwrap: false,
        }
    }
}

/// One request, as the front end received it.
pub struct Call<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The path, with its query, exactly as sent (it is signed).
    pub path: &'a str,
    /// Looks a header up by its lowercase name.
    pub header: &'a dyn Fn(&str) -> Option<&'a str>,
    /// The body.
    pub body: &'a [u8],
    /// The peer's IP address; `None` over a Unix socket.
    pub peer: Option<IpAddr>,
    /// The peer as recorded when it has no IP address (`unix:uid=N`).
    pub peer_label: String,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user.
    pub user: User,
    /// Their service roles.
    pub roles: Vec<ServiceRole>,
    /// The second-factor code the request carried, if any.
    pub totp: Option<String>,
}

/// Why a request was refused; each maps to one HTTP status in the front end.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The credentials are missing, malformed, stale, replayed or do not verify, or name no
    /// active user with an active key.
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// Too many failed authentications from this address or for this user name.
    #[error("too many failed authentications from {who}: try again in {retry_after_secs} s")]
    Throttled {
        /// The address or user name.
        who: String,
        /// When to try again.
        retry_after_secs: u64,
    },
    /// The caller lacks the route's service role.
    #[error(
        "user {user} does not hold the service role {role} (pgseal user role {user} --add {role})"
    )]
    Forbidden {
        /// Who.
        user: String,
        /// The role needed.
        role: ServiceRole,
    },
    /// The route needs a second factor and the request's did not pass.
    #[error("second factor: {0}")]
    SecondFactor(crate::totp::SecondFactor),
    /// The body is not what the route takes.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The audit entry could not be written, so nothing was answered.
    #[error("the request was refused because its audit entry could not be written: {0}")]
    Unaudited(String),
    /// The work itself failed (a file this site did not make, no held key opens it, …).
    #[error(transparent)]
    Failed(#[from] Error),
}

impl From<pgseal_store::StoreError> for Refusal {
    fn from(e: pgseal_store::StoreError) -> Self {
        Refusal::Failed(e.into())
    }
}

impl Refusal {
    /// A stable name for the refusal (in the audit entry and the error body).
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Unauthenticated(_) => "unauthenticated",
            Refusal::Throttled { .. } => "throttled",
            Refusal::Forbidden { .. } => "forbidden",
            Refusal::SecondFactor(_) => "second_factor",
            Refusal::BadRequest(_) => "bad_request",
            Refusal::Unaudited(_) => "unaudited",
            Refusal::Failed(e) => match e.kind() {
                crate::error::ErrorKind::Key => "key",
                crate::error::ErrorKind::Invalid | crate::error::ErrorKind::Authentication => {
                    "invalid"
                }
                _ => "internal",
            },
        }
    }

    /// As an operation error, for the audit entry.
    fn as_error(&self) -> Error {
        match self {
            Refusal::Failed(e) => Error::Invalid(e.to_string()),
            other => Error::Authentication(other.to_string()),
        }
    }
}

/// Failed authentications per address and per user name, remembered for the lockout time.
#[derive(Debug, Default)]
struct Throttle {
    failures: HashMap<String, Vec<Instant>>,
}

impl Throttle {
    /// When `who` may try again, if it is locked out now.
    fn locked(&mut self, who: &str, policy: &Policy, now: Instant) -> Option<Duration> {
        let list = self.failures.get_mut(who)?;
        list.retain(|t| now.duration_since(*t) < policy.lockout);
        if list.len() < policy.max_failures as usize {
            return None;
        }
        let oldest = list[list.len() - policy.max_failures as usize];
        Some(policy.lockout.saturating_sub(now.duration_since(oldest)))
    }

    fn fail(&mut self, who: &str, now: Instant) {
        if self.failures.len() > 100_000 {
            // A flood of distinct names: forget the oldest half of what is remembered rather
            // than grow without bound (the lockout still holds for the rest).
            let mut keys: Vec<_> = self.failures.keys().cloned().collect();
            keys.truncate(keys.len() / 2);
            for k in keys {
                self.failures.remove(&k);
            }
        }
        self.failures.entry(who.to_owned()).or_default().push(now);
    }
}

/// The service: the held keys and what it remembers of requests (see the module docs).
pub struct Custody {
    keys: std::sync::RwLock<BTreeMap<Fingerprint, std::sync::Arc<PrivateKey>>>,
    /// The server password, kept for key administration: a rotation protects the new key
    /// (and re-protects the old ones) under it. Zeroed on drop.
    password: pgseal_core::Password,
    nonces: Mutex<NonceCache>,
    throttle: Mutex<Throttle>,
    policy: Policy,
    /// Held while one of the service's requests appends its audit entry.
    appending: Mutex<()>,
    /// The newest audit entry this service wrote, published before it is kept.
    written: Mutex<Option<AuditHead>>,
    /// The entry the head file holds (durable): held while the file is written.
    head: Mutex<Option<AuditHead>>,
    /// Its `seq`, readable without waiting for a write in progress (0 before the first).
    kept: std::sync::atomic::AtomicI64,
    /// Where the head is kept.
    head_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Custody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Custody")
            .field("keys", &self.held())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Custody {
    /// Unlocks every stored server key with `password`, audited as `CUSTODY_START` (the entry
    /// written before this returns): a wrong password, a store with no server key, or an audit
    /// log that cannot be written fails here and the service does not start.
    ///
    /// With `head_file`, the service keeps there the audit chain head it last wrote (durably,
    /// after every entry), and refuses to start when the store's chain no longer holds the head
    /// the file names: entries were cut off the log (docs/CUSTODY.md, "Closing the audit tail").
    pub fn start(
        session: &mut Session,
        password: &dyn Secret,
        policy: Policy,
        head_file: Option<&std::path::Path>,
    ) -> Result<Custody> {
        session.audit(Action::CustodyStart);
        let head = match head_file {
            Some(path) => {
                let head = read_head(path)?;
                if let Some(h) = &head {
                    check_head(session, h, path)?;
                }
                head
            }
            None => None,
        };
        let stored = session.store()?.server_keys()?;
        if stored.is_empty() {
            return Err(Error::key(
                "the store holds no server key: there is nothing to hold",
            ));
        }
        let pw = password.get()?;
        let mut keys = BTreeMap::new();
        for k in stored {
            let key = PrivateKey::from_pem(
                &k.private_key_pem,
                &format!("server key {}", k.fingerprint),
                || Ok(pw.clone()),
            )?;
            keys.insert(k.fingerprint, std::sync::Arc::new(key));
        }
        if let Some(a) = session.audit_mut() {
            a.detail(
                "keys",
                keys.keys().map(ToString::to_string).collect::<Vec<_>>(),
            );
        }
        // Written now (the service runs until stopped), and fail closed: a service that cannot
        // audit does not start.
        session.audit_before_commit()?;
        let custody = Custody {
            keys: std::sync::RwLock::new(keys),
            password: pw,
            kept: std::sync::atomic::AtomicI64::new(head.as_ref().map_or(0, |h| h.seq)),
            appending: Mutex::new(()),
            written: Mutex::new(head.clone()),
            head: Mutex::new(head),
            head_file: head_file.map(std::path::Path::to_path_buf),
            nonces: Mutex::new(NonceCache::default()),
            throttle: Mutex::new(Throttle::default()),
            policy,
        };
        // Its own start entry is the first head it keeps.
        custody.keep_head(session)?;
        Ok(custody)
    }

    /// Records the entry `session` last wrote as the head, if it is newer than the one kept,
    /// in the head file (written whole and durably) when there is one.
    ///
    /// A group commit: the entry is first published as written; then whoever holds the head
    /// file's lock writes the newest entry published so far, so every request that was waiting
    /// for the lock meanwhile finds its entry covered and returns without writing. Under load
    /// one write (two fsyncs) covers many answers; each answer still leaves only once a head at
    /// least as new as its own entry is durable.
    fn keep_head(&self, session: &mut Session) -> Result<()> {
        let (Some(path), Some(seq)) = (&self.head_file, session.last_written()) else {
            return Ok(());
        };
        if self.kept_seq() >= seq {
            return Ok(());
        }
        let entry = session
            .store()?
            .audit_entry(seq)?
            .ok_or_else(|| Error::invalid(format!("audit entry {seq}, just written, is gone")))?;
        {
            // A poisoned lock only means a thread panicked while publishing: the head stands.
            let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
            if written.as_ref().is_none_or(|h| h.seq < seq) {
                *written = Some(AuditHead {
                    seq,
                    entry_hash: entry.entry_hash.to_string(),
                });
            }
        }
        let mut head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        if head.as_ref().is_some_and(|h| h.seq >= seq) {
            // Written, while this request waited, by a request whose entry came later.
            return Ok(());
        }
        let new = self
            .written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .expect("published above");
        let text = serde_json::to_vec(&new).expect("an AuditHead always serializes");
        let mut file = crate::files::AtomicFile::create(path, true)?;
        file.set_mode(0o600);
        std::io::Write::write_all(&mut file, &text)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        file.commit()?;
        self.kept
            .store(new.seq, std::sync::atomic::Ordering::Release);
        *head = Some(new);
        Ok(())
    }

    /// The sequence number of the head kept durably (0 before the first).
    fn kept_seq(&self) -> i64 {
        self.kept.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The newest audit entry the service wrote, if it keeps one.
    pub fn head(&self) -> Option<AuditHead> {
        self.head.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The audit chain head the service last wrote, for an authenticated caller holding
    /// `auditor`, audited as `CUSTODY_AUDIT`.
    pub fn audit_head(
        &self,
        session: &mut Session,
        call: &Call<'_>,
    ) -> std::result::Result<Option<AuditHead>, Refusal> {
        self.serve_as(
            session,
            call,
            Action::CustodyAudit,
            Some(ServiceRole::Auditor),
            |this, _, _| Ok(this.head()),
        )
    }

    /// The fingerprints of the keys held.
    pub fn held(&self) -> Vec<Fingerprint> {
        self.held_keys().iter().map(|k| k.fingerprint()).collect()
    }

    /// The keys held now (a rotation or retirement through the service changes them).
    fn held_keys(&self) -> Vec<std::sync::Arc<PrivateKey>> {
        // A poisoned lock only means a thread panicked while changing the map: it holds keys.
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// `f` given the keys held now, as identities that open slots.
    fn with_held<T>(&self, f: impl FnOnce(&[&dyn Identity]) -> T) -> T {
        let keys = self.held_keys();
        let held: Vec<&dyn Identity> = keys.iter().map(|k| k.as_ref() as &dyn Identity).collect();
        f(&held)
    }

    /// The address a call is recorded under: its peer, or — from a trusted proxy — the nearest
    /// address in `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn address(&self, call: &Call<'_>) -> String {
        let Some(peer) = call.peer else {
            return call.peer_label.clone();
        };
        if !self.policy.trusted_proxies.contains(&peer) {
            return peer.to_string();
        }
        let forwarded = (call.header)("x-forwarded-for").unwrap_or("");
        forwarded
            .rsplit(',')
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .find(|a| !self.policy.trusted_proxies.contains(a))
            .map_or_else(|| peer.to_string(), |a| a.to_string())
    }

    /// Unwraps a file key for an authenticated caller holding `restore`, audited as
    /// `CUSTODY_UNWRAP`.
    pub fn unwrap(
        &self,
        session: &mut Session,
        call: &Call<'_>,
    ) -> std::result::Result<UnwrapResponse, Refusal> {
        self.serve_as(
            session,
            call,
            Action::CustodyUnwrap,
            Some(ServiceRole::Restore),
            |this, session, audit| {
                let request: UnwrapRequest = parse_body(call.body)?;
                name_file(audit, request.file.as_deref());
                let prelude = this.verified_prelude(session, audit, &request.prelude.0)?;
                let (file_key, opened_with) = this
                    .with_held(|held| prelude.unlock_file_key(held))
                    .map_err(|e| Refusal::Failed(e.into()))?;
                let context = seal::prelude_context(&request.prelude.0);
                let sealed = seal::seal(&request.client_key.0, &file_key, &context)
                    .map_err(|e| Refusal::BadRequest(e.to_string()))?;
                audit.detail("opened_with", opened_with.to_string());
                Ok(UnwrapResponse {
                    service_key: Bytes(sealed.service_public.to_vec()),
                    sealed_key: Bytes(sealed.ciphertext),
                    opened_with: opened_with.to_string(),
                })
            },
        )
    }

    /// Plans a file's rewrap to the active server key for an authenticated caller holding
    /// `rewrap`, audited as `CUSTODY_REWRAP`. The file key never leaves the service.
    pub fn rewrap(
        &self,
        session: &mut Session,
        call: &Call<'_>,
    ) -> std::result::Result<RewrapResponse, Refusal> {
        self.serve_as(
            session,
            call,
            Action::CustodyRewrap,
            Some(ServiceRole::Rewrap),
            |this, session, audit| {
                let request: RewrapRequest = parse_body(call.body)?;
                name_file(audit, request.file.as_deref());
                let keep = request
                    .keep
                    .iter()
                    .map(|f| {
                        f.parse::<Fingerprint>()
                            .map_err(|_| Refusal::BadRequest(format!("{f:?} is no fingerprint")))
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let prelude = this.verified_prelude(session, audit, &request.prelude.0)?;
                let active = session
                    .store()?
                    .active_server_key()?
                    .ok_or_else(|| Error::key("the store has no active server key"))?;
                let active = PublicKey::from_pem(&active.public_key_pem).map_err(Error::from)?;
                let plan = this
                    .with_held(|held| {
                        prelude.plan_rewrap(held, std::slice::from_ref(&active), &keep)
                    })
                    .map_err(|e| Refusal::Failed(e.into()))?;
                audit.detail("to", active.fingerprint().to_string());
                Ok(RewrapResponse {
                    writes: plan
                        .writes
                        .into_iter()
                        .map(|w| SlotWrite {
                            step: w.step.name().to_owned(),
                            slot: w.slot,
                            offset: w.offset,
                            bytes: Bytes(w.bytes),
                        })
                        .collect(),
                    generation: plan.generation,
                    recipients: plan.recipients.iter().map(ToString::to_string).collect(),
                })
            },
        )
    }

    /// The server keys' public halves, for any authenticated caller, audited as
    /// `CUSTODY_KEYS`.
    pub fn public_keys(
        &self,
        session: &mut Session,
        call: &Call<'_>,
    ) -> std::result::Result<Vec<PublicKeyInfo>, Refusal> {
        self.serve_as(session, call, Action::CustodyKeys, None, |_, session, _| {
            Ok(session
                .store()?
                .server_keys()?
                .into_iter()
                .map(|k| PublicKeyInfo {
                    fingerprint: k.fingerprint.to_string(),
                    status: k.status.as_str().to_owned(),
                    public_key_pem: k.public_key_pem,
                })
                .collect())
        })
    }

    /// Rotates the server key for an authenticated caller holding `admin` and a fresh second
    /// factor, audited as `CUSTODY_ADMIN` (and the rotation as `KEY_ROTATE`): the new key is
    /// made, stored under the server password the service holds, and held from then on.
    pub fn rotate(
        &self,
        session: &mut Session,
        call: &Call<'_>,
    ) -> std::result::Result<pgseal_custody::wire::RotateResponse, Refusal> {
        self.serve_as(
            session,
            call,
            Action::CustodyAdmin,
            Some(ServiceRole::Admin),
            |this, session, audit| {
                let request: pgseal_custody::wire::RotateRequest = parse_body(call.body)?;
                audit.detail("operation", "rotate");
                let password = crate::secret::Given(this.password.clone());
                let by = audit
                    .details
                    .get("user")
                    .and_then(|u| u.as_str())
                    .unwrap_or("?")
                    .to_owned();
                let notes = format!("rotated through the key-custody service by {by}");
                let rotated = crate::server_keys::rotate(
                    session,
                    &crate::server_keys::Rotate {
                        bits: request.key_size,
                        pq: request.pq,
                        current_password: &password,
                        new_password: &password,
                        notes: Some(&notes),
                    },
                );
                let made = rotated.as_ref().ok().map(|r| (r.old, r.new.clone()));
                // The rotation's own entry (KEY_ROTATE), written now.
                session.finish(rotated.map(drop))?;
                let (old, new) = made.expect("finish passed the rotation's success on");
                let key = PrivateKey::from_pem(
                    &new.private_key_pem,
                    &format!("server key {}", new.fingerprint),
                    || Ok(this.password.clone()),
                )
                .map_err(Error::from)?;
                this.keys
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(new.fingerprint, std::sync::Arc::new(key));
                audit.detail("new", new.fingerprint.to_string());
                Ok(pgseal_custody::wire::RotateResponse {
                    old: old.to_string(),
                    new: new.fingerprint.to_string(),
                })
            },
        )
    }

    /// Retires a rotated server key for an authenticated caller holding `admin` and a fresh
    /// second factor, audited as `CUSTODY_ADMIN` (and the retirement as `KEY_RETIRE`): refused
    /// while any backup holds the key; the service then no longer holds it.
    pub fn retire(
        &self,
        session: &mut Session,
        call: &Call<'_>,
    ) -> std::result::Result<pgseal_custody::wire::RetireResponse, Refusal> {
        self.serve_as(
            session,
            call,
            Action::CustodyAdmin,
            Some(ServiceRole::Admin),
            |this, session, audit| {
                let request: pgseal_custody::wire::RetireRequest = parse_body(call.body)?;
                audit.detail("operation", "retire");
                audit.detail("fingerprint", request.fingerprint.clone());
                let retired = crate::server_keys::retire(
                    session,
                    &crate::server_keys::Retire {
                        fingerprint: &request.fingerprint,
                        force: None,
                    },
                );
                let fingerprint = retired.as_ref().map(|r| r.record.fingerprint).ok();
                // The retirement's own entry (KEY_RETIRE), written now.
                session.finish(retired.map(drop))?;
                let fingerprint = fingerprint.expect("finish passed the retirement's success on");
                this.keys
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&fingerprint);
                Ok(pgseal_custody::wire::RetireResponse {
                    retired: fingerprint.to_string(),
                })
            },
        )
    }

    /// Authenticates the call, checks `role`, does `work`, and records the outcome: the answer
    /// leaves only once its entry is written.
    fn serve_as<T>(
        &self,
        session: &mut Session,
        call: &Call<'_>,
        action: Action,
        role: Option<ServiceRole>,
        work: impl FnOnce(&Self, &mut Session, &mut Operation) -> std::result::Result<T, Refusal>,
    ) -> std::result::Result<T, Refusal> {
        let mut audit = Operation::new(action.clone());
        let address = self.address(call);
        audit.address = Some(address.clone());
        audit.detail("route", call.path.to_owned());
        let result = self
            .authenticate(session, call, &address)
            .and_then(|caller| {
                audit.user_id = Some(caller.user.id);
                audit.detail("user", caller.user.username.to_string());
                if let Some(role) = role
                    && !caller.roles.contains(&role)
                {
                    return Err(Refusal::Forbidden {
                        user: caller.user.username.to_string(),
                        role,
                    });
                }
                if self.needs_second_factor(&action) {
                    self.second_factor(session, &caller, &mut audit)?;
                }
                work(self, session, &mut audit)
            });
        // One append at a time from this service: its requests queue here, each woken as the
        // one before it is done, instead of all polling SQLite's write lock through its busy
        // handler, which sleeps up to 100 ms between tries and serves no one in order — under
        // load some requests waited seconds while others passed them.
        let appending = self.appending.lock().unwrap_or_else(|p| p.into_inner());
        let outcome = match result {
            Ok(answer) => match session.record(audit, None) {
                Ok(()) => Ok(answer),
                Err(e) => Err(Refusal::Unaudited(e.to_string())),
            },
            Err(refusal) => {
                audit.detail("refused", refusal.kind());
                match session.record(audit, Some(&refusal.as_error())) {
                    Ok(()) => Err(refusal),
                    Err(e) => Err(Refusal::Unaudited(format!("{e} (refusing: {refusal})"))),
                }
            }
        };
        drop(appending);
        // The head is kept before the answer leaves: an answer whose entry could be cut off
        // the log unnoticed is not given.
        match self.keep_head(session) {
            Ok(()) => outcome,
            Err(e) => Err(Refusal::Unaudited(format!("keeping the audit head: {e}"))),
        }
    }

    fn needs_second_factor(&self, action: &Action) -> bool {
        match action {
            Action::CustodyAdmin => true,
            Action::CustodyUnwrap => self.policy.second_factor_for_unwrap,
            _ => false,
        }
    }

    /// Checks the caller's second-factor code (accepted once), recording the outcome.
    fn second_factor(
        &self,
        session: &mut Session,
        caller: &Caller,
        audit: &mut Operation,
    ) -> std::result::Result<(), Refusal> {
        let checked = self.with_held(|held| {
            crate::totp::check(
                session,
                caller.user.id,
                caller.user.username.as_str(),
                caller.totp.as_deref(),
                held,
                Timestamp::now(),
            )
        })?;
        match checked {
            Ok(()) => {
                audit.detail("second_factor", "accepted");
                Ok(())
            }
            Err(why) => {
                audit.detail("second_factor", why.to_string());
                Err(Refusal::SecondFactor(why))
            }
        }
    }

    /// Who is calling, or why they are refused (see the module docs for the order).
    fn authenticate(
        &self,
        session: &mut Session,
        call: &Call<'_>,
        address: &str,
    ) -> std::result::Result<Caller, Refusal> {
        let now = Instant::now();
        let locked = {
            // A poisoned lock only means a thread panicked while counting: the counts stand.
            let mut throttle = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
            throttle.locked(address, &self.policy, now)
        };
        if let Some(wait) = locked {
            return Err(Refusal::Throttled {
                who: address.to_owned(),
                retry_after_secs: wait.as_secs().max(1),
            });
        }
        let result = self.check_credentials(session, call);
        if let Err(Refusal::Unauthenticated(_)) = &result {
            let mut throttle = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
            throttle.fail(address, now);
            if let Some(user) = (call.header)(pgseal_custody::auth::USER) {
                throttle.fail(&format!("user {user}"), now);
            }
        }
        let caller = result?;
        let by_name = format!("user {}", caller.user.username);
        let locked = {
            let mut throttle = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
            throttle.locked(&by_name, &self.policy, now)
        };
        if let Some(wait) = locked {
            return Err(Refusal::Throttled {
                who: by_name,
                retry_after_secs: wait.as_secs().max(1),
            });
        }
        Ok(caller)
    }

    fn check_credentials(
        &self,
        session: &mut Session,
        call: &Call<'_>,
    ) -> std::result::Result<Caller, Refusal> {
        let unauthenticated = |e: AuthError| Refusal::Unauthenticated(e.to_string());
        let credentials = Credentials::from_headers(call.header).map_err(unauthenticated)?;
        let now = Timestamp::now().millis();
        credentials.check_time(now).map_err(unauthenticated)?;
        let name = Username::parse(&credentials.user)
            .map_err(|e| Refusal::Unauthenticated(format!("the user name is not one: {e}")))?;
        let store = session.store()?;
        let user = match store.user(&name) {
            Ok(u) => u,
            Err(pgseal_store::StoreError::UnknownUser(_)) => {
                return Err(Refusal::Unauthenticated(format!("no user {name}")));
            }
            Err(e) => return Err(Refusal::Failed(e.into())),
        };
        if !user.is_active {
            return Err(Refusal::Unauthenticated(format!("user {name} is disabled")));
        }
        let key = store
            .active_user_key(user.id)?
            .ok_or_else(|| Refusal::Unauthenticated(format!("user {name} has no active key")))?;
        let key = PublicKey::from_pem(&key.public_key_pem).map_err(Error::from)?;
        credentials
            .verify(&key, call.method, call.path, call.body)
            .map_err(unauthenticated)?;
        self.nonces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(&credentials, now)
            .map_err(unauthenticated)?;
        let roles = store.roles(user.id)?;
        Ok(Caller {
            user,
            roles,
            totp: credentials.totp,
        })
    }

    /// Parses a prelude sent by a caller and verifies its header signature with its creator's
    /// key from the store: the service opens only files this site's users made.
    fn verified_prelude(
        &self,
        session: &mut Session,
        audit: &mut Operation,
        raw: &[u8],
    ) -> std::result::Result<Prelude, Refusal> {
        let prelude = v2::read_prelude(&mut &raw[..])
            .map_err(|e| Refusal::BadRequest(format!("the prelude is not a v2 prelude: {e}")))?;
        audit.detail("header_sha256", hex::encode(prelude.header_hash));
        let signer = store_signer(session, &prelude.header.signer)?.ok_or_else(|| {
            Error::Invalid(format!(
                "the file is signed by {}, a key this site's store does not know",
                prelude.header.signer
            ))
        })?;
        if let Some(user) = session.store()?.user_key(&prelude.header.signer)? {
            audit.backup_creator_id = Some(user.user_id);
        }
        let verified = prelude.verify_header_signature(std::slice::from_ref(&signer));
        audit.signature_valid = Some(verified.is_ok());
        verified.map_err(|e| Refusal::Failed(e.into()))?;
        Ok(prelude)
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> std::result::Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| Refusal::BadRequest(format!("the body: {e}")))
}

/// Records the file the caller names (their word only: at most 1024 characters, no control
/// characters).
fn name_file(audit: &mut Operation, file: Option<&str>) {
    if let Some(file) = file {
        let shown: String = file
            .chars()
            .filter(|c| !c.is_control())
            .take(1024)
            .collect();
        audit.backup_file = Some(shown);
    }
}

/// A response, ready for the transport.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: Vec<u8>,
}

impl Answer {
    fn json(status: u16, value: &impl serde::Serialize) -> Self {
        Answer {
            status,
            body: serde_json::to_vec(value).expect("the wire types always serialize"),
        }
    }

    fn error(status: u16, kind: &str, message: String) -> Self {
        Answer::json(
            status,
            &pgseal_custody::wire::ErrorBody {
                message,
                kind: kind.to_owned(),
            },
        )
    }
}

impl Custody {
    /// Routes one request (docs/CUSTODY.md lists the routes and statuses). The health check
    /// needs no credentials and is not audited (monitors ask it every few seconds); an unknown
    /// route is a 404 and not audited either; every other request is audited, answered or
    /// refused.
    pub fn respond(&self, session: &mut Session, call: &Call<'_>) -> Answer {
        use pgseal_custody::wire::path;
        let route = call.path.split('?').next().unwrap_or("");
        let result = match (call.method, route) {
            ("GET", path::HEALTH) => {
                return Answer::json(
                    200,
                    &serde_json::json!({ "status": "ok", "api": "v1", "keys": self.held().len() }),
                );
            }
            ("GET", path::PUBLIC_KEYS) => self
                .public_keys(session, call)
                .map(|a| Answer::json(200, &a)),
            ("POST", path::UNWRAP) => self.unwrap(session, call).map(|a| Answer::json(200, &a)),
            ("POST", path::REWRAP) => self.rewrap(session, call).map(|a| Answer::json(200, &a)),
            ("POST", path::ROTATE) => self.rotate(session, call).map(|a| Answer::json(200, &a)),
            ("POST", path::RETIRE) => self.retire(session, call).map(|a| Answer::json(200, &a)),
            ("GET", path::AUDIT_HEAD) => self
                .audit_head(session, call)
                .map(|a| Answer::json(200, &a)),
            (
                _,
                path::HEALTH
                | path::PUBLIC_KEYS
                | path::UNWRAP
                | path::REWRAP
                | path::ROTATE
                | path::RETIRE
                | path::AUDIT_HEAD,
            ) => {
                return Answer::error(
                    405,
                    "bad_request",
                    format!("{} is not a method of {route}", call.method),
                );
            }
            _ => {
                return Answer::error(404, "not_found", format!("no route {route}"));
            }
        };
        result.unwrap_or_else(|refusal| {
            let status = match &refusal {
                Refusal::Unauthenticated(_) | Refusal::SecondFactor(_) => 401,
                Refusal::Throttled { .. } => 429,
                Refusal::Forbidden { .. } => 403,
                Refusal::BadRequest(_) => 400,
                Refusal::Unaudited(_) => 503,
                Refusal::Failed(e) => match e.kind() {
                    crate::error::ErrorKind::Key
                    | crate::error::ErrorKind::Invalid
                    | crate::error::ErrorKind::Authentication
                    | crate::error::ErrorKind::Usage => 422,
                    _ => 500,
                },
            };
            Answer::error(status, refusal.kind(), refusal.to_string())
        })
    }
}

/// The head a head file holds; `None` when there is no file yet (a first start).
fn read_head(path: &std::path::Path) -> Result<Option<AuditHead>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::invalid(format!(
                "{} is not the custody service's audit head: {e}",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Refuses a store whose chain no longer holds `head` (the entry cut off, or rewritten).
fn check_head(session: &mut Session, head: &AuditHead, path: &std::path::Path) -> Result<()> {
    let problem = match session.store()?.audit_entry(head.seq)? {
        None => format!(
            "the audit log was cut back: this service wrote entry {} ({}), which the store no \
             longer holds",
            head.seq,
            path.display()
        ),
        Some(e) if e.entry_hash.to_string() != head.entry_hash => format!(
            "the audit log was rewritten: entry {} is not the one this service wrote ({})",
            head.seq,
            path.display()
        ),
        Some(_) => return Ok(()),
    };
    Err(Error::Authentication(problem))
}

/// Checks a store's chain against the head a custody service reports it wrote (for
/// `audit verify`): `None` when the chain holds it, else what is wrong.
pub fn head_problem(
    session: &mut Session,
    head: &AuditHead,
    source: &str,
) -> Result<Option<String>> {
    Ok(match session.store()?.audit_entry(head.seq)? {
        None => Some(format!(
            "entry {} is gone, but the custody service {source} wrote it: the log was cut back \
             after it",
            head.seq
        )),
        Some(e) if e.entry_hash.to_string() != head.entry_hash => Some(format!(
            "entry {} differs from the one the custody service {source} wrote: the log was \
             rewritten",
            head.seq
        )),
        Some(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use pgseal_custody::auth::Credentials;
    use pgseal_custody::wire::path;

    use super::*;
    use crate::observe::Silent;
    use crate::session::Actor;
    use crate::testsite::{TestSite, password};

    fn session(t: &TestSite) -> Session {
        let actor = Actor {
            user: None,
            os_user: Some("tester".into()),
            host: Some("custody-test".into()),
            address: Some("10.0.0.1".into()),
        };
        Session::new(Some(t.site.clone()), actor, Arc::new(Silent), |e| {
            (e.to_string(), 1)
        })
    }

    fn entries(probe: &mut Session, action: &Action) -> Vec<i64> {
        probe
            .store()
            .unwrap()
            .audit_entries(10_000)
            .unwrap()
            .into_iter()
            .filter(|e| &e.entry.action == action)
            .map(|e| e.seq)
            .collect()
    }

    /// Requests whose entries are written while the head file is being written wait for that
    /// write, and are then all covered by one write of the newest head (a group commit), not a
    /// write (two fsyncs) each.
    #[test]
    fn requests_waiting_on_a_head_write_are_all_covered_by_one_more_write() {
        use rustix::fs::inotify;
        let t = TestSite::new();
        let head_file = t.path("custody-head.json");
        let mut start = session(&t);
        let custody = Arc::new(
            Custody::start(&mut start, &password(), Policy::default(), Some(&head_file)).unwrap(),
        );
        start.finish(Ok(())).unwrap();
        let watch =
            inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).unwrap();
        // The head file is replaced by a rename. (Watching other events too keeps the kernel
        // from merging consecutive renames to the same name into one event.)
        inotify::add_watch(
            &watch,
            t.tmp.path(),
            inotify::WatchFlags::MOVED_TO | inotify::WatchFlags::CREATE,
        )
        .unwrap();

        // A head write in progress: its lock held.
        let writing = custody.head.lock().unwrap();
        const WAITING: usize = 6;
        let mut probe = session(&t);
        let threads: Vec<_> = (1..=WAITING)
            .map(|n| {
                let credentials = Credentials::sign(
                    &t.signer,
                    "system_backup",
                    "GET",
                    path::PUBLIC_KEYS,
                    b"",
                    None,
                    Timestamp::now().millis(),
                )
                .unwrap();
                let (custody, mut session) = (custody.clone(), session(&t));
                let thread = std::thread::spawn(move || {
                    let headers = credentials.headers();
                    let header = |name: &str| crate::custody::tests::header_in(&headers, name);
                    let call = Call {
                        method: "GET",
                        path: path::PUBLIC_KEYS,
                        header: &header,
                        body: b"",
                        peer: Some("192.0.2.7".parse().unwrap()),
                        peer_label: String::new(),
                    };
                    custody.respond(&mut session, &call).status
                });
                // One after the other: each entry written before the next request starts.
                while entries(&mut probe, &Action::CustodyKeys).len() < n {
                    std::thread::sleep(Duration::from_millis(5));
                }
                thread
            })
            .collect();
        // Let them all reach the head: each has written its entry and now waits.
        std::thread::sleep(Duration::from_millis(200));
        drop(writing);
        for thread in threads {
            assert_eq!(thread.join().unwrap(), 200);
        }

        let mut buffer = [std::mem::MaybeUninit::uninit(); 4096];
        let mut reader = inotify::Reader::new(&watch, &mut buffer);
        let mut writes = 0;
        while let Ok(event) = reader.next() {
            if event
                .file_name()
                .is_some_and(|n| n.to_bytes() == b"custody-head.json")
            {
                writes += 1;
            }
        }
        assert_eq!(writes, 1, "the head file was written {writes} times");
        let newest = *entries(&mut probe, &Action::CustodyKeys).last().unwrap();
        let head = read_head(&head_file).unwrap().unwrap();
        assert_eq!(head.seq, newest);
        assert_eq!(custody.head().unwrap().seq, newest);
    }
}
