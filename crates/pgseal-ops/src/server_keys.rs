//! The site's server key pairs, kept in the store (private halves encrypted under the server
//! key password): generate the first one, rotate (a new active key; every key, old and new,
//! re-protected under a new password), list, export, and retire a rotated key once no backup
//! holds it any more.
//!
//! Each operation that changes or hands out a key starts and fills its own audit entry
//! (`KEY_GEN`, `KEY_ROTATE`, `KEY_EXPORT`, `KEY_RETIRE`). Passwords are asked only once nothing
//! stands in the way, and before the slow key generation.

use std::collections::BTreeMap;

use pgseal_core::keys::KeyBits;
use pgseal_core::{Fingerprint, Password, PrivateKey};
use pgseal_store::{Action, NewServerKey, ServerKeyRecord, ServerKeyStatus, StoreError};

use crate::error::{Error, Missing, Refused, Result};
use crate::secret::Secret;
use crate::session::Session;

/// The first server key of a site.
pub struct Generate<'a> {
    /// Its size in bits; `None`: the site's `rsa_key_size`.
    pub bits: Option<u32>,
    /// The password that will protect it (asked as a new password).
    pub password: &'a dyn Secret,
    /// A note stored with it.
    pub notes: Option<&'a str>,
}

/// Generates the site's server key, audited as `KEY_GEN`. Refused (before the password is
/// asked) while an active key exists: a rotation replaces it.
pub fn generate(session: &mut Session, request: &Generate<'_>) -> Result<ServerKeyRecord> {
    session.audit(Action::KeyGen).detail("kind", "server");
    let bits = key_bits(session, request.bits)?;
    if let Some(active) = session.store()?.active_server_key()? {
        return Err(StoreError::ActiveServerKeyExists(active.fingerprint).into());
    }
    let password = request.password.get_new()?;
    generate_active(session, bits, &password, request.notes)
}

/// The key size asked for, else the site's.
pub(crate) fn key_bits(session: &Session, bits: Option<u32>) -> Result<KeyBits> {
    let bits = match bits {
        Some(b) => b,
        None => session.site()?.rsa_key_size,
    };
    Ok(KeyBits::from_bits(bits)?)
}

/// Generates a server key, encrypts it under `password` and stores it as the active key,
/// recording it in the operation's audit entry. The store refuses if another key is active
/// (another process may have won a race).
pub(crate) fn generate_active(
    session: &mut Session,
    bits: KeyBits,
    password: &Password,
    notes: Option<&str>,
) -> Result<ServerKeyRecord> {
    let new = new_server_key(&PrivateKey::generate(bits)?, password, notes)?;
    let record = session.store()?.add_server_key(&new)?;
    if let Some(a) = session.audit_mut() {
        a.detail("fingerprint", record.fingerprint.to_string());
        a.detail("key_size", record.key_size);
    }
    Ok(record)
}

fn new_server_key(
    key: &PrivateKey,
    password: &Password,
    notes: Option<&str>,
) -> Result<NewServerKey> {
    let public = key.public();
    Ok(NewServerKey {
        fingerprint: public.fingerprint(),
        legacy_fingerprint: Some(public.legacy_fingerprint().to_string()),
        private_key_pem: key.to_encrypted_pem(password)?.to_string(),
        public_key_pem: public.to_pem(),
        key_size: public.bits() as i64,
        notes: notes.map(str::to_owned),
    })
}

/// A rotation of the server key.
pub struct Rotate<'a> {
    /// The new key's size in bits; `None`: the site's `rsa_key_size`.
    pub bits: Option<u32>,
    /// The current password: it must open every stored key (that proves it, and is what lets
    /// the keys be re-protected).
    pub current_password: &'a dyn Secret,
    /// The new password, which will then open every server key, old and new.
    pub new_password: &'a dyn Secret,
    /// A note stored with the new key.
    pub notes: Option<&'a str>,
}

/// What a rotation did.
#[derive(Debug, Clone)]
pub struct Rotated {
    /// The key that was active.
    pub old: Fingerprint,
    /// The new active key.
    pub new: ServerKeyRecord,
    /// How many earlier keys were re-protected under the new password.
    pub reprotected: usize,
}

/// Replaces the active server key with a new one, audited as `KEY_ROTATE`: the old keys stay
/// (rotated: they still open the backups made for them), all re-protected under the new
/// password in the same transaction. A wrong current password, or a concurrent rotation,
/// changes nothing.
pub fn rotate(session: &mut Session, request: &Rotate<'_>) -> Result<Rotated> {
    session.audit(Action::KeyRotate).detail("kind", "server");
    let bits = key_bits(session, request.bits)?;
    let store = session.store()?;
    let active = store.active_server_key()?.ok_or(Missing::ActiveServerKey)?;
    let all = store.server_keys()?;
    if let Some(a) = session.audit_mut() {
        a.detail("old_fingerprint", active.fingerprint.to_string());
    }
    let current = request.current_password.get()?;
    let keys = all
        .iter()
        .map(|k| {
            let what = format!("server key {}", k.fingerprint);
            PrivateKey::from_pem(&k.private_key_pem, &what, || Ok(current.clone()))
                .map(|key| (k.id, key))
                .map_err(|e| match e {
                    pgseal_core::Error::WrongPassword(_) => {
                        Missing::CurrentServerKeyPassword(k.fingerprint).into()
                    }
                    other => other.into(),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let new_password = request.new_password.get_new()?;
    let key = PrivateKey::generate(bits)?;
    let reprotected = keys
        .iter()
        .map(|(id, k)| Ok((*id, k.to_encrypted_pem(&new_password)?.to_string())))
        .collect::<Result<Vec<_>>>()?;
    let new = new_server_key(&key, &new_password, request.notes)?;
    let record = session
        .store()?
        .rotate_server_key(active.id, &reprotected, &new)?;
    if let Some(a) = session.audit_mut() {
        a.detail("new_fingerprint", record.fingerprint.to_string());
        a.detail("reprotected_keys", reprotected.len());
    }
    Ok(Rotated {
        old: active.fingerprint,
        new: record,
        reprotected: reprotected.len(),
    })
}

/// Every server key, oldest first (read-only: not audited, nothing written).
pub fn list(session: &mut Session) -> Result<Vec<ServerKeyRecord>> {
    Ok(session.read_store()?.server_keys()?)
}

/// The site's active server key, or [`Missing::ActiveServerKey`].
pub fn active(session: &mut Session) -> Result<ServerKeyRecord> {
    Ok(session
        .store()?
        .active_server_key()?
        .ok_or(Missing::ActiveServerKey)?)
}

/// A server key to hand out.
pub struct Export<'a> {
    /// Its full fingerprint, as given (checked here); `None`: the active key.
    pub fingerprint: Option<&'a str>,
    /// The private half (still encrypted under the server key password) instead of the
    /// public one.
    pub private: bool,
}

/// A key handed out.
#[derive(Debug, Clone)]
pub struct Exported {
    /// Which key.
    pub fingerprint: Fingerprint,
    /// The half asked for, PEM.
    pub pem: String,
}

/// A server key's public half, or its encrypted private half, audited as `KEY_EXPORT`.
pub fn export(session: &mut Session, request: &Export<'_>) -> Result<Exported> {
    session
        .audit(Action::KeyExport)
        .detail("private", request.private);
    let key = match request.fingerprint {
        Some(text) => {
            let fp: Fingerprint = text.parse()?;
            stored(session, &fp)?
        }
        None => active(session)?,
    };
    if let Some(a) = session.audit_mut() {
        a.detail("fingerprint", key.fingerprint.to_string());
    }
    Ok(Exported {
        fingerprint: key.fingerprint,
        pem: if request.private {
            key.private_key_pem
        } else {
            key.public_key_pem
        },
    })
}

fn stored(session: &mut Session, fp: &Fingerprint) -> Result<ServerKeyRecord> {
    session
        .store()?
        .server_key(fp)?
        .ok_or_else(|| Error::key(format!("no server key with fingerprint {fp}")))
}

/// Asked, when a forced retirement would leave backups without the key, for its full
/// fingerprint again (a person types it; a caller may have it already).
pub trait Confirmation {
    /// The fingerprint the caller confirms with; `holding` backups still need the key.
    fn fingerprint_again(&self, holding: usize) -> Result<String>;
}

impl<F: Fn(usize) -> Result<String>> Confirmation for F {
    fn fingerprint_again(&self, holding: usize) -> Result<String> {
        self(holding)
    }
}

/// A server key to retire.
pub struct Retire<'a> {
    /// Its full fingerprint, as given (checked here).
    pub fingerprint: &'a str,
    /// Retire it even though backups still hold it (they may become unopenable), once this
    /// confirms; `None`: refuse while any backup holds it.
    pub force: Option<&'a dyn Confirmation>,
}

/// What a retirement did.
#[derive(Debug, Clone)]
pub struct Retired {
    /// The key, now retired.
    pub record: ServerKeyRecord,
    /// The backups that still held it (empty unless forced).
    pub holding: BTreeMap<String, String>,
}

/// Retires a rotated server key, audited as `KEY_RETIRE`: refused for the active key, and
/// while any backup holds the key in a recipient slot — per the catalog and, above all, per
/// the files themselves (superseded slots included; every file in the site's repository,
/// catalogued or not) — unless forced and confirmed.
pub fn retire(session: &mut Session, request: &Retire<'_>) -> Result<Retired> {
    session
        .audit(Action::KeyRetire)
        .detail("fingerprint", request.fingerprint);
    let fp: Fingerprint = request.fingerprint.parse()?;
    let key = stored(session, &fp)?;
    if key.status == ServerKeyStatus::Active {
        return Err(Refused::RetireActive(fp).into());
    }
    let repo = crate::repo::site_repository(session)?;
    let reach = crate::repo::reach(session);
    let holding = crate::holders::backups_holding(session, &repo, &reach, &fp)?;
    if !holding.is_empty() {
        let Some(confirm) = request.force else {
            return Err(Refused::StillHeld { key: fp, holding }.into());
        };
        if confirm.fingerprint_again(holding.len())?.trim() != fp.to_string() {
            return Err(Refused::NotConfirmed.into());
        }
    }
    let record = session.store()?.retire_server_key(&fp)?;
    if let Some(a) = session.audit_mut() {
        a.detail("forced", request.force.is_some() && !holding.is_empty());
        a.detail("backups_still_needing_it", holding.len());
    }
    Ok(Retired { record, holding })
}
