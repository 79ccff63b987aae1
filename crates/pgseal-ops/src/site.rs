//! Making a site: its store and its first server key. Where the site's configuration lives
//! and what it says is the front end's business (the CLI writes `pgseal.toml`); the front end
//! sets the session's [`Site`](crate::Site) first, then calls [`create`].

use std::path::Path;

use pgseal_store::{Action, ServerKeyRecord};

use crate::error::Result;
use crate::secret::Secret;
use crate::server_keys::{generate_active, key_spec};
use crate::session::Session;

/// A new site.
pub struct Create<'a> {
    /// Where the site is made, for the record.
    pub dir: &'a Path,
    /// The first server key's size in bits; `None`: the site's `rsa_key_size`.
    pub bits: Option<u32>,
    /// Whether it gets an ML-KEM-768 half; `None`: the site's `pq_keys`.
    pub pq: Option<bool>,
    /// The password that will protect the server keys (asked as a new password).
    pub password: &'a dyn Secret,
}

/// Creates the session's site's store (this and importing the legacy system are the only
/// operations that create one) and its first server key, audited as `INIT` in the new store.
/// The password is asked first: without one, nothing is created. A store that already has an
/// active server key is refused (the store's error), and keeps it.
pub fn create(session: &mut Session, request: &Create<'_>) -> Result<ServerKeyRecord> {
    session
        .audit(Action::Init)
        .detail("dir", request.dir.display().to_string());
    let spec = key_spec(session, request.bits, request.pq)?;
    let password = request.password.get_new()?;
    session.create_store()?;
    generate_active(session, spec, &password, None)
}

/// What the operations' tests share: a site made with [`create`] in a temporary directory, and
/// sessions on it as a front end would open them.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;
    use std::sync::Arc;

    use pgseal_core::Password;
    use pgseal_store::{AuditEntry, Store, StoreUrl, Username};

    use super::{Create, create};
    use crate::error::{Error, Result};
    use crate::observe::Silent;
    use crate::secret::Given;
    use crate::session::{Actor, Session, Site};

    /// The server key password of a test site.
    pub const PASSWORD: &str = "correct-horse-battery-staple";

    /// A password in hand.
    pub fn password(text: &str) -> Given {
        Given(Password::new(text.to_owned()))
    }

    fn describe(e: &Error) -> (String, i32) {
        (e.to_string(), 1)
    }

    /// A site whose files all live in `dir`, with 2048-bit keys (quick to make).
    pub fn site_in(dir: &Path) -> Site {
        Site {
            store: StoreUrl::Sqlite(dir.join("pgseal.db")),
            backup_dir: dir.join("backups"),
            repository: None,
            user_keys_dir: dir.join("keys/users"),
            server_keys_dir: dir.join("keys/server"),
            signature_required: true,
            rsa_key_size: 2048,
            pq_keys: false,
            retention_days: 30,
        }
    }

    /// A session on `site` on host `db1`, acting as `user`.
    pub fn session_on(site: &Site, user: Option<&str>) -> Session {
        let actor = Actor {
            user: user.map(|u| Username::parse(u).unwrap()),
            os_user: Some("pgseal-test".into()),
            host: Some("db1".into()),
            address: Some("10.0.0.7".into()),
        };
        Session::new(Some(site.clone()), actor, Arc::new(Silent), describe)
    }

    /// A site made through the operations API, its store and first server key included.
    pub struct TestSite {
        /// Holds the directory.
        pub tmp: tempfile::TempDir,
        /// The site.
        pub site: Site,
    }

    impl TestSite {
        /// A new site, its first server key under [`PASSWORD`].
        pub fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(tmp.path().join("backups")).unwrap();
            let site = site_in(tmp.path());
            let made = TestSite { tmp, site };
            made.run(None, |s| {
                create(
                    s,
                    &Create {
                        dir: made.tmp.path(),
                        bits: None,
                        pq: None,
                        password: &password(PASSWORD),
                    },
                )
            })
            .unwrap();
            made
        }

        /// Runs one operation as a front end does: a fresh session acting as `user`, the
        /// operation, and its audit entry written with the outcome.
        pub fn run<T>(
            &self,
            user: Option<&str>,
            op: impl FnOnce(&mut Session) -> Result<T>,
        ) -> Result<T> {
            let mut session = session_on(&self.site, user);
            let mut value = None;
            let result = op(&mut session).map(|v| value = Some(v));
            session.finish(result)?;
            Ok(value.expect("set when the operation succeeded"))
        }

        /// The store, opened directly (to check what the operations did).
        pub fn store(&self) -> Store {
            Store::open_existing(&self.site.store).unwrap()
        }

        /// The newest audit entry.
        pub fn last_audit(&self) -> AuditEntry {
            self.store().audit_entries(1).unwrap().pop().unwrap()
        }

        /// The newest audit entry's details.
        pub fn last_details(&self) -> serde_json::Value {
            serde_json::from_str(&self.last_audit().entry.details).unwrap()
        }
    }
}

#[cfg(test)]
mod tests {
    use pgseal_core::PrivateKey;
    use pgseal_store::{ServerKeyStatus, StoreError};

    use super::testing::{PASSWORD, TestSite, password, session_on, site_in};
    use super::*;
    use crate::error::{Error, ErrorKind};

    /// Through the operations API alone: a site is its store, its first server key (active,
    /// opening with the password) and an `INIT` entry that names the key.
    #[test]
    fn create_makes_the_store_and_an_active_first_key_and_records_them() {
        let site = TestSite::new();
        let keys = site.store().server_keys().unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].status, ServerKeyStatus::Active);
        assert_eq!(keys[0].key_size, 2048);
        let opened = PrivateKey::from_pem(&keys[0].private_key_pem, "server key", || {
            Ok(pgseal_core::Password::new(PASSWORD.into()))
        })
        .unwrap();
        assert_eq!(opened.fingerprint(), keys[0].fingerprint);
        let e = site.last_audit().entry;
        assert_eq!((e.action.as_str(), e.success), ("INIT", true));
        let details = site.last_details();
        assert_eq!(details["fingerprint"], keys[0].fingerprint.to_string());
        assert_eq!(details["key_size"], 2048);
        assert_eq!(e.ip_address.as_deref(), Some("10.0.0.7"));
    }

    /// Making a site again on a store that has its key refuses, keeps the key, and says so in
    /// the log.
    #[test]
    fn create_on_a_store_with_an_active_key_keeps_that_key() {
        let site = TestSite::new();
        let before = site.store().server_keys().unwrap();
        let refused = site
            .run(None, |s| {
                create(
                    s,
                    &Create {
                        dir: site.tmp.path(),
                        bits: None,
                        pq: None,
                        password: &password("another-password-for-the-key"),
                    },
                )
            })
            .unwrap_err();
        assert!(
            matches!(
                refused.root(),
                Error::Store(StoreError::ActiveServerKeyExists(fp)) if *fp == before[0].fingerprint
            ),
            "{refused:?}"
        );
        assert_eq!(refused.kind(), ErrorKind::Usage);
        let after = site.store().server_keys().unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].private_key_pem, before[0].private_key_pem);
        let e = site.last_audit().entry;
        assert_eq!((e.action.as_str(), e.success), ("INIT", false));
    }

    /// A password too short for a new key stops the site before anything is made: no store.
    #[test]
    fn create_with_a_short_password_makes_no_store() {
        let tmp = tempfile::tempdir().unwrap();
        let site = site_in(tmp.path());
        let mut session = session_on(&site, None);
        let result = create(
            &mut session,
            &Create {
                dir: tmp.path(),
                bits: None,
                pq: None,
                password: &password("short"),
            },
        );
        let refused = session.finish(result.map(|_| ())).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Usage, "{refused:?}");
        assert!(!tmp.path().join("pgseal.db").exists(), "a store was made");
    }
}
