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
    /// Whether it gets an ML-KEM-768 half (a hybrid key, FORMAT.md §6a); `None`: the site's
    /// `pq_keys`.
    pub pq: Option<bool>,
    /// The password that will protect it (asked as a new password).
    pub password: &'a dyn Secret,
    /// A note stored with it.
    pub notes: Option<&'a str>,
}

/// Generates the site's server key, audited as `KEY_GEN`. Refused (before the password is
/// asked) while an active key exists: a rotation replaces it.
pub fn generate(session: &mut Session, request: &Generate<'_>) -> Result<ServerKeyRecord> {
    session.audit(Action::KeyGen).detail("kind", "server");
    let spec = key_spec(session, request.bits, request.pq)?;
    if let Some(active) = session.store()?.active_server_key()? {
        return Err(StoreError::ActiveServerKeyExists(active.fingerprint).into());
    }
    let password = request.password.get_new()?;
    generate_active(session, spec, &password, request.notes)
}

/// What a new server key is: its RSA size, and whether it has an ML-KEM-768 half.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeySpec {
    bits: KeyBits,
    pq: bool,
}

impl KeySpec {
    fn generate(self) -> Result<PrivateKey> {
        Ok(if self.pq {
            PrivateKey::generate_hybrid(self.bits)?
        } else {
            PrivateKey::generate(self.bits)?
        })
    }
}

/// The key size asked for, else the site's.
pub(crate) fn key_bits(session: &Session, bits: Option<u32>) -> Result<KeyBits> {
    Ok(KeyBits::from_bits(
        bits.unwrap_or(session.site()?.rsa_key_size),
    )?)
}

/// The key size and kind asked for, else the site's.
pub(crate) fn key_spec(session: &Session, bits: Option<u32>, pq: Option<bool>) -> Result<KeySpec> {
    Ok(KeySpec {
        bits: key_bits(session, bits)?,
        pq: pq.unwrap_or(session.site()?.pq_keys),
    })
}

/// The fingerprint of a server key's ML-KEM-768 half, if it is a hybrid key (read from its
/// public PEM, which holds the half as a second block).
pub fn pq_fingerprint(record: &ServerKeyRecord) -> Option<Fingerprint> {
    pgseal_core::PublicKey::from_pem(&record.public_key_pem)
        .ok()
        .and_then(|k| k.pq_fingerprint())
}

/// A server key for people: `RSA-4096 SHA256:…`, and `+ ML-KEM-768 SHA256:…` for a hybrid key.
pub fn describe(record: &ServerKeyRecord) -> String {
    let rsa = format!("RSA-{} {}", record.key_size, record.fingerprint);
    match pq_fingerprint(record) {
        Some(pq) => format!("{rsa} + ML-KEM-768 {pq}"),
        None => rsa,
    }
}

/// Records a new server key in the operation's audit entry under `prefix` (`""` or `"new_"`).
fn audit_new_key(session: &mut Session, prefix: &str, record: &ServerKeyRecord) {
    let pq = pq_fingerprint(record);
    if let Some(a) = session.audit_mut() {
        a.detail(
            &format!("{prefix}fingerprint"),
            record.fingerprint.to_string(),
        );
        if let Some(pq) = pq {
            a.detail(&format!("{prefix}pq_fingerprint"), pq.to_string());
        }
    }
}

/// Generates a server key, encrypts it under `password` and stores it as the active key,
/// recording it in the operation's audit entry. The store refuses if another key is active
/// (another process may have won a race).
pub(crate) fn generate_active(
    session: &mut Session,
    spec: KeySpec,
    password: &Password,
    notes: Option<&str>,
) -> Result<ServerKeyRecord> {
    let new = new_server_key(&spec.generate()?, password, notes)?;
    let record = session.store()?.add_server_key(&new)?;
    audit_new_key(session, "", &record);
    if let Some(a) = session.audit_mut() {
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
    /// Whether the new key gets an ML-KEM-768 half; `None`: the site's `pq_keys`.
    pub pq: Option<bool>,
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
    let spec = key_spec(session, request.bits, request.pq)?;
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
    let key = spec.generate()?;
    let reprotected = keys
        .iter()
        .map(|(id, k)| Ok((*id, k.to_encrypted_pem(&new_password)?.to_string())))
        .collect::<Result<Vec<_>>>()?;
    let new = new_server_key(&key, &new_password, request.notes)?;
    let record = session
        .store()?
        .rotate_server_key(active.id, &reprotected, &new)?;
    audit_new_key(session, "new_", &record);
    if let Some(a) = session.audit_mut() {
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
    let holding = crate::holders::backups_holding(session, repo.as_ref(), &reach, &fp)?;
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

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use pgseal_core::keys::KeyBits;
    use pgseal_core::v2::{SealParams, seal};
    use pgseal_core::{PublicKey, v2};

    use super::*;
    use crate::error::ErrorKind;
    use crate::site::testing::{PASSWORD, TestSite, password};

    const NEW_PASSWORD: &str = "the-new-server-password-2026";

    /// A password that notes whether anyone asked for it.
    struct Watched(Cell<bool>, &'static str);

    impl Secret for Watched {
        fn get(&self) -> Result<Password> {
            self.0.set(true);
            Ok(Password::new(self.1.into()))
        }
    }

    fn opens(pem: &str, with: &str) -> bool {
        PrivateKey::from_pem(pem, "server key", || Ok(Password::new(with.into()))).is_ok()
    }

    fn rotate_site(site: &TestSite) -> Rotated {
        site.run(None, |s| {
            rotate(
                s,
                &Rotate {
                    bits: None,
                    pq: None,
                    current_password: &password(PASSWORD),
                    new_password: &password(NEW_PASSWORD),
                    notes: Some("yearly"),
                },
            )
        })
        .unwrap()
    }

    /// A second server key is refused while one is active — before the password is asked and
    /// before any key is generated — and the refusal is audited.
    #[test]
    fn generate_refuses_a_second_active_key_without_asking_for_a_password() {
        let site = TestSite::new();
        let asked = Watched(Cell::new(false), PASSWORD);
        let refused = site
            .run(None, |s| {
                generate(
                    s,
                    &Generate {
                        bits: Some(2048),
                        pq: None,
                        password: &asked,
                        notes: None,
                    },
                )
            })
            .unwrap_err();
        assert!(
            matches!(refused, Error::Store(StoreError::ActiveServerKeyExists(_))),
            "{refused:?}"
        );
        assert!(!asked.0.get(), "the password was asked for");
        assert_eq!(site.store().server_keys().unwrap().len(), 1);
        let e = site.last_audit().entry;
        assert_eq!((e.action.as_str(), e.success), ("KEY_GEN", false));
    }

    /// A rotation makes a new active key and re-protects every key under the new password:
    /// afterwards the old password opens none of them, the new one all.
    #[test]
    fn rotate_reprotects_every_key_under_the_new_password() {
        let site = TestSite::new();
        let first = site.store().active_server_key().unwrap().unwrap();
        let rotated = rotate_site(&site);
        assert_eq!(rotated.old, first.fingerprint);
        assert_eq!(rotated.reprotected, 1);
        assert_eq!(rotated.new.status, ServerKeyStatus::Active);
        assert_eq!(rotated.new.rotated_from_id, Some(first.id));
        assert_eq!(rotated.new.notes.as_deref(), Some("yearly"));
        let keys = site.store().server_keys().unwrap();
        assert_eq!(
            keys.iter().map(|k| k.status).collect::<Vec<_>>(),
            [ServerKeyStatus::Rotated, ServerKeyStatus::Active]
        );
        for k in &keys {
            assert!(opens(&k.private_key_pem, NEW_PASSWORD), "{}", k.fingerprint);
            assert!(!opens(&k.private_key_pem, PASSWORD), "{}", k.fingerprint);
        }
        let details = site.last_details();
        assert_eq!(details["old_fingerprint"], first.fingerprint.to_string());
        assert_eq!(
            details["new_fingerprint"],
            rotated.new.fingerprint.to_string()
        );
        assert_eq!(details["reprotected_keys"], 1);
    }

    /// A wrong current password is a key error naming the key it did not open; nothing changes
    /// and the new password is never asked for.
    #[test]
    fn rotate_with_a_wrong_current_password_changes_nothing() {
        let site = TestSite::new();
        let before = site.store().server_keys().unwrap();
        let new = Watched(Cell::new(false), NEW_PASSWORD);
        let refused = site
            .run(None, |s| {
                rotate(
                    s,
                    &Rotate {
                        bits: None,
                        pq: None,
                        current_password: &password("not-the-current-password"),
                        new_password: &new,
                        notes: None,
                    },
                )
            })
            .unwrap_err();
        assert!(
            matches!(&refused, Error::Missing(Missing::CurrentServerKeyPassword(fp)) if *fp == before[0].fingerprint),
            "{refused:?}"
        );
        assert_eq!(refused.kind(), ErrorKind::Key);
        assert!(!new.0.get(), "the new password was asked for");
        let after = site.store().server_keys().unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].private_key_pem, before[0].private_key_pem);
        let e = site.last_audit().entry;
        assert_eq!((e.action.as_str(), e.success), ("KEY_ROTATE", false));
        assert!(!e.details.contains("not-the-current-password"));
    }

    /// Export hands out the half asked for, of the key asked for, and records which.
    #[test]
    fn export_gives_the_half_and_the_key_asked_for() {
        let site = TestSite::new();
        let first = site.store().active_server_key().unwrap().unwrap();
        let public = site
            .run(None, |s| {
                export(
                    s,
                    &Export {
                        fingerprint: None,
                        private: false,
                    },
                )
            })
            .unwrap();
        assert_eq!(public.pem, first.public_key_pem);
        rotate_site(&site);
        let text = first.fingerprint.to_string();
        let private = site
            .run(None, |s| {
                export(
                    s,
                    &Export {
                        fingerprint: Some(&text),
                        private: true,
                    },
                )
            })
            .unwrap();
        assert_eq!(private.fingerprint, first.fingerprint);
        assert!(opens(&private.pem, NEW_PASSWORD));
        let details = site.last_details();
        assert_eq!(
            (
                details["private"].as_bool(),
                details["fingerprint"].as_str()
            ),
            (Some(true), Some(text.as_str()))
        );
    }

    /// Seals a file to `recipient` straight into the site's backup directory (no catalog
    /// entry: only the file says it needs the key).
    fn uncatalogued_backup(site: &TestSite, recipient: &PublicKey) -> std::path::PathBuf {
        let signer = PrivateKey::generate(KeyBits::from_bits(2048).unwrap()).unwrap();
        let recipients = [recipient.clone()];
        let params = SealParams::new(&signer, &recipients);
        let path = site.site.backup_dir.join("shop_1.pgseal");
        let mut file = std::fs::File::create(&path).unwrap();
        seal(&b"a dump"[..], &mut file, &params).unwrap();
        path
    }

    /// Retiring the active key is refused; a rotated key a backup in the directory still holds
    /// is refused with the backup named, then retired only when forced and confirmed with its
    /// full fingerprint.
    #[test]
    fn retire_refuses_a_key_a_backup_still_holds_unless_forced_and_confirmed() {
        let site = TestSite::new();
        let first = site.store().active_server_key().unwrap().unwrap();
        let text = first.fingerprint.to_string();
        let retire_with = |force: Option<&dyn Confirmation>| {
            site.run(None, |s| {
                retire(
                    s,
                    &Retire {
                        fingerprint: &text,
                        force,
                    },
                )
            })
        };
        let refused = retire_with(None).unwrap_err();
        assert!(
            matches!(refused, Error::Refused(Refused::RetireActive(_))),
            "{refused:?}"
        );

        let public = PublicKey::from_pem(&first.public_key_pem).unwrap();
        let file = uncatalogued_backup(&site, &public);
        rotate_site(&site);
        let refused = retire_with(None).unwrap_err();
        match &refused {
            Error::Refused(Refused::StillHeld { key, holding }) => {
                assert_eq!(*key, first.fingerprint);
                assert_eq!(holding.len(), 1);
                let (location, slot) = holding.iter().next().unwrap();
                assert!(location.ends_with("shop_1.pgseal"), "{location}");
                assert_eq!(slot, "active slot A");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(refused.kind(), ErrorKind::Usage);

        let wrong = |_: usize| Ok("SHA256:not-this-one".to_owned());
        let refused = retire_with(Some(&wrong)).unwrap_err();
        assert!(
            matches!(refused, Error::Refused(Refused::NotConfirmed)),
            "{refused:?}"
        );
        assert_eq!(
            site.store()
                .server_key(&first.fingerprint)
                .unwrap()
                .unwrap()
                .status,
            ServerKeyStatus::Rotated
        );

        let asked = Cell::new(0);
        let right = |holding: usize| {
            asked.set(holding);
            Ok(format!("{text}\n"))
        };
        let retired = retire_with(Some(&right)).unwrap();
        assert_eq!(asked.get(), 1);
        assert_eq!(retired.record.status, ServerKeyStatus::Retired);
        assert_eq!(retired.holding.len(), 1);
        let details = site.last_details();
        assert_eq!(details["forced"], true);
        assert_eq!(details["backups_still_needing_it"], 1);
        assert!(file.exists());
        assert!(v2::read_prelude(&mut std::fs::File::open(&file).unwrap()).is_ok());
    }
}
