//! A throwaway site for the operations' tests (unit tests, and integration tests through the
//! `test-support` feature): a real SQLite store in a temp dir, made through the session, with
//! one user (`system_backup`) whose signing key is in the user keys directory, and an active
//! server key — everything under one password.
#![allow(missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;

use pgseal_core::keys::KeyBits;
use pgseal_core::{Password, PrivateKey};
use pgseal_store::{NewServerKey, NewUserKey, Role, StoreUrl, User, Username};

use crate::error::Error;
use crate::observe::{Observer, Silent};
use crate::secret::Given;
use crate::session::{Actor, Session, Site};

/// The password of every key.
pub const PASSWORD: &str = "correct-horse-battery-staple";
/// The host the session acts on.
pub const HOST: &str = "ops-test-host";

pub struct TestSite {
    pub tmp: tempfile::TempDir,
    pub site: Site,
    pub session: Session,
    pub user: User,
    pub signer: PrivateKey,
    pub server: PrivateKey,
}

pub fn key() -> PrivateKey {
    PrivateKey::generate(KeyBits::from_bits(2048).unwrap()).unwrap()
}

pub fn password() -> Given {
    Given(Password::new(PASSWORD.into()))
}

pub fn encrypted(key: &PrivateKey) -> String {
    key.to_encrypted_pem(&Password::new(PASSWORD.into()))
        .unwrap()
        .to_string()
}

pub fn new_server_key(key: &PrivateKey) -> NewServerKey {
    let public = key.public();
    NewServerKey {
        fingerprint: public.fingerprint(),
        legacy_fingerprint: Some(public.legacy_fingerprint().to_string()),
        private_key_pem: encrypted(key),
        public_key_pem: public.to_pem(),
        key_size: public.bits() as i64,
        notes: None,
    }
}

fn describe(e: &Error) -> (String, i32) {
    (e.to_string(), 1)
}

impl Default for TestSite {
    fn default() -> Self {
        TestSite::new()
    }
}

impl TestSite {
    pub fn new() -> TestSite {
        TestSite::observed(Arc::new(Silent))
    }

    pub fn observed(observer: Arc<dyn Observer>) -> TestSite {
        let tmp = tempfile::tempdir().unwrap();
        let site = Site {
            store: StoreUrl::Sqlite(tmp.path().join("pgseal.db")),
            backup_dir: tmp.path().join("backups"),
            repository: None,
            user_keys_dir: tmp.path().join("keys/users"),
            server_keys_dir: tmp.path().join("keys/server"),
            signature_required: true,
            rsa_key_size: 2048,
            pq_keys: false,
            retention_days: 30,
        };
        let actor = Actor {
            user: None,
            os_user: Some("tester".into()),
            host: Some(HOST.into()),
            address: Some("127.0.0.1".into()),
        };
        let mut session = Session::new(Some(site.clone()), actor, observer, describe);
        let (signer, server) = (key(), key());
        let store = session.create_store().unwrap();
        let user = store
            .add_user(&Username::parse("system_backup").unwrap(), Role::Operator)
            .unwrap();
        store
            .add_user_key(
                user.id,
                &NewUserKey {
                    fingerprint: signer.fingerprint(),
                    legacy_fingerprint: None,
                    public_key_pem: signer.public().to_pem(),
                    key_size: 2048,
                },
            )
            .unwrap();
        store.add_server_key(&new_server_key(&server)).unwrap();
        std::fs::create_dir_all(&site.user_keys_dir).unwrap();
        std::fs::write(
            site.user_keys_dir.join("system_backup.key.pem"),
            encrypted(&signer),
        )
        .unwrap();
        TestSite {
            tmp,
            site,
            session,
            user,
            signer,
            server,
        }
    }

    /// Rotates the active server key to a new one (the old one stays, rotated); returns it.
    pub fn rotate(&mut self) -> PrivateKey {
        let new = key();
        let store = self.session.store().unwrap();
        let active = store.active_server_key().unwrap().unwrap();
        let kept: Vec<(i64, String)> = store
            .server_keys()
            .unwrap()
            .into_iter()
            .map(|k| (k.id, k.private_key_pem))
            .collect();
        store
            .rotate_server_key(active.id, &kept, &new_server_key(&new))
            .unwrap();
        new
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}
