//! Importing the legacy (Django) system: its users, keys and audit log into the store.
//!
//! User ids are kept (legacy files carry them); server private keys are kept encrypted exactly
//! as they were, under the legacy server key password; legacy fingerprints are kept to match
//! old records; audit rows join the hash chain marked as imported. Re-running imports only
//! what is new. If any legacy user name is not a valid pgseal name, nothing at all is
//! imported: a partial import would leave the skipped users' legacy backups unverifiable
//! through the store.

use std::collections::BTreeSet;

use pgseal_core::{LegacyFingerprint, PublicKey};
use pgseal_store::django::{self, DjangoExport};
use pgseal_store::{
    Action, NewAuditEntry, NewServerKey, NewUserKey, Role, ServerKeyStatus, Store, Username,
};
use serde_json::json;

use crate::error::{Error, Result};
use crate::session::Session;

/// An import.
pub struct ImportDjango<'a> {
    /// The legacy system's PostgreSQL database (a `postgres://` URL or a libpq `key=value`
    /// string).
    pub database_url: &'a str,
    /// Count what would be imported, change nothing (the store is still created if missing,
    /// and the dry run recorded there).
    pub dry_run: bool,
}

/// How many of one kind of thing the legacy system holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// Imported (or, in a dry run, that would be).
    pub new: usize,
    /// Already in the store.
    pub already_here: usize,
}

impl Count {
    fn bump(&mut self, new: bool) {
        if new {
            self.new += 1
        } else {
            self.already_here += 1
        }
    }
}

/// What an import did (or, in a dry run, would do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    /// `auth_user` rows.
    pub users: Count,
    /// Users' public keys.
    pub user_keys: Count,
    /// `tenancy_server_key` rows.
    pub server_keys: Count,
    /// `tenancy_encryption_audit_log` rows.
    pub audit_rows: Count,
}

/// Imports the legacy system's database into the session's store, audited as `IMPORT`. It
/// creates the store if there is none (importing is the other way to start a site: the old
/// system's keys under their old password).
pub fn import_django(session: &mut Session, request: &ImportDjango<'_>) -> Result<Imported> {
    session
        .audit(Action::Import)
        .detail("dry_run", request.dry_run);
    session.create_store()?;
    let data = django::read(request.database_url).map_err(Error::LegacyDatabase)?;
    let names = usernames(&data)?;
    let counts = if request.dry_run {
        plan(session.store()?, &data)?
    } else {
        apply(session.store()?, &data, &names)?
    };
    if let Some(a) = session.audit_mut() {
        a.detail("new_users", counts.users.new);
        a.detail("new_server_keys", counts.server_keys.new);
        a.detail("new_audit_rows", counts.audit_rows.new);
    }
    Ok(counts)
}

/// Every legacy user's name as a pgseal [`Username`], or — if any is not one — a refusal that
/// names them all, before anything is written.
fn usernames(data: &DjangoExport) -> Result<Vec<Username>> {
    let mut names = Vec::new();
    let mut bad = Vec::new();
    for u in &data.users {
        match Username::parse(&u.username) {
            Ok(n) => names.push(n),
            Err(e) => bad.push(format!("auth_user id {}: {e}", u.id)),
        }
    }
    if bad.is_empty() {
        return Ok(names);
    }
    Err(Error::invalid(format!(
        "nothing was imported: {} legacy user name(s) cannot be pgseal user names ({}): {}. \
         Rename them in the legacy system (UPDATE auth_user SET username = '...' WHERE id = N) \
         and run the import again",
        bad.len(),
        pgseal_store::username::RULE,
        bad.join("; ")
    )))
}

fn role(superuser: bool) -> Role {
    if superuser {
        Role::Admin
    } else {
        Role::Operator
    }
}

fn server_key(k: &django::DjangoServerKey) -> Result<NewServerKey> {
    let public = PublicKey::from_pem(&k.public_key_pem)
        .map_err(|e| Error::invalid(format!("tenancy_server_key {}: {e}", k.id)))?;
    let mut notes = format!("imported from tenancy_server_key {}", k.id);
    if let Some(from) = k.rotated_from_id {
        notes.push_str(&format!(", rotated from {from}"));
    }
    if let Some(n) = k.notes.as_deref().filter(|n| !n.is_empty()) {
        notes.push_str(&format!("; {n}"));
    }
    Ok(NewServerKey {
        fingerprint: public.fingerprint(),
        legacy_fingerprint: Some(k.fingerprint.clone()),
        private_key_pem: k.private_key_pem.clone(),
        public_key_pem: k.public_key_pem.clone(),
        key_size: public.bits() as i64,
        notes: Some(notes),
    })
}

fn user_key(pem: &str) -> Result<NewUserKey> {
    let public = PublicKey::from_pem(pem)?;
    Ok(NewUserKey {
        fingerprint: public.fingerprint(),
        // The legacy fingerprint is over the PEM text as the old system stored it.
        legacy_fingerprint: Some(LegacyFingerprint::of_pem_text(pem).to_string()),
        public_key_pem: pem.to_owned(),
        key_size: public.bits() as i64,
    })
}

/// Counts what an import would add, touching nothing.
fn plan(store: &mut Store, data: &DjangoExport) -> Result<Imported> {
    let mut c = Imported::default();
    for u in &data.users {
        c.users.bump(store.user_by_id(u.id)?.is_none());
        if let Some(pem) = &u.public_key_pem {
            let key = user_key(pem)?;
            c.user_keys
                .bump(store.user_key(&key.fingerprint)?.is_none());
        }
    }
    for k in &data.server_keys {
        let key = server_key(k)?;
        c.server_keys
            .bump(store.server_key(&key.fingerprint)?.is_none());
    }
    for r in &data.audit {
        c.audit_rows.bump(!store.was_imported("audit", r.id)?);
    }
    Ok(c)
}

fn apply(store: &mut Store, data: &DjangoExport, names: &[Username]) -> Result<Imported> {
    let mut c = Imported::default();
    for (u, name) in data.users.iter().zip(names) {
        let new = store.import_user(u.id, name, role(u.is_superuser), u.is_active)?;
        c.users.bump(new);
        if let Some(pem) = &u.public_key_pem {
            let key = user_key(pem)?;
            if store.user_key(&key.fingerprint)?.is_some() {
                c.user_keys.bump(false);
            } else {
                store.add_user_key(u.id, &key)?;
                c.user_keys.bump(true);
            }
        }
    }
    // The newest key the legacy system marked active becomes active here, unless the store
    // already has one; every other key keeps opening old backups as a rotated key.
    let newest_active = data
        .server_keys
        .iter()
        .filter(|k| k.is_active)
        .map(|k| k.id)
        .max();
    for k in &data.server_keys {
        let key = server_key(k)?;
        let wants_active = Some(k.id) == newest_active && store.active_server_key()?.is_none();
        let status = if wants_active {
            ServerKeyStatus::Active
        } else {
            ServerKeyStatus::Rotated
        };
        c.server_keys
            .bump(store.import_server_key(&key, status, k.created_at)?);
    }
    let known_users: BTreeSet<i64> = store.users()?.into_iter().map(|u| u.id).collect();
    for r in &data.audit {
        let mut details: serde_json::Value =
            serde_json::from_str(&r.details).unwrap_or_else(|_| json!({ "raw": r.details }));
        if !details.is_object() {
            details = json!({ "value": details });
        }
        details["legacy_audit_id"] = json!(r.id);
        // The legacy log referenced users that may since have been deleted.
        let user = |id: Option<i64>, key: &str, details: &mut serde_json::Value| match id {
            Some(id) if !known_users.contains(&id) => {
                details[key] = json!(id);
                None
            }
            other => other,
        };
        let user_id = user(r.user_id, "legacy_user_id", &mut details);
        let creator = user(
            r.backup_creator_id,
            "legacy_backup_creator_id",
            &mut details,
        );
        let entry = NewAuditEntry {
            action: Action::from(r.action.clone()),
            user_id,
            os_user: None,
            backup_creator_id: creator,
            backup_file: r.backup_file.clone(),
            success: r.success,
            signature_valid: r.signature_valid,
            timestamp: r.timestamp,
            host: None,
            ip_address: r.ip_address.clone(),
            details: details.to_string(),
        };
        c.audit_rows.bump(store.import_audit_row(r.id, &entry)?);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use pgseal_core::keys::KeyBits;
    use pgseal_core::{Password, PrivateKey};
    use pgseal_store::{ServerKeyStatus, UserKeyStatus};
    use pgseal_testkit::TestCluster;

    use super::*;
    use crate::error::ErrorKind;
    use crate::site::testing::{TestSite, session_on, site_in};

    /// The legacy tables as the Django system made them (the columns import reads).
    const SCHEMA: &str = "CREATE TABLE auth_user (
        id serial PRIMARY KEY, is_superuser boolean NOT NULL, username varchar(150) NOT NULL UNIQUE,
        is_active boolean NOT NULL DEFAULT true, public_key_pem text NULL,
        key_generated_at timestamp NULL, key_last_rotated timestamp NULL);
    CREATE TABLE tenancy_server_key (
        id SERIAL PRIMARY KEY, private_key_pem TEXT NOT NULL, public_key_pem TEXT NOT NULL,
        key_size INTEGER DEFAULT 4096, fingerprint VARCHAR(100) NOT NULL, is_active BOOLEAN DEFAULT TRUE,
        created_at TIMESTAMP DEFAULT NOW(), rotated_from_id INTEGER, notes TEXT);
    CREATE TABLE tenancy_encryption_audit_log (
        id SERIAL PRIMARY KEY, action VARCHAR(20) NOT NULL, user_id INTEGER, backup_creator_id INTEGER,
        backup_file VARCHAR(500), success BOOLEAN DEFAULT TRUE, signature_valid BOOLEAN NULL,
        timestamp TIMESTAMP DEFAULT NOW(), ip_address INET NULL, details JSONB DEFAULT '{}');";

    fn text(s: &str) -> String {
        format!("'{}'", s.replace('\'', "''"))
    }

    fn key() -> PrivateKey {
        PrivateKey::generate(KeyBits::from_bits(2048).unwrap()).unwrap()
    }

    fn import(site: &TestSite, url: &str, dry_run: bool) -> Result<Imported> {
        site.run(None, |s| {
            import_django(
                s,
                &ImportDjango {
                    database_url: url,
                    dry_run,
                },
            )
        })
    }

    /// Through the operations API alone, from a real PostgreSQL database with the legacy
    /// schema: a dry run counts and changes nothing; the import keeps user ids, roles, the
    /// legacy server keys exactly (the newest active one stays active only if the store has
    /// none) and their legacy fingerprints, and joins the legacy audit rows to the chain; a
    /// re-run imports nothing.
    #[test]
    fn import_keeps_ids_and_keys_and_a_rerun_imports_nothing() {
        let cluster = TestCluster::shared();
        let django = cluster.create_database("ops_django").unwrap();
        cluster.psql(&django, SCHEMA).unwrap();
        let legacy_pw = Password::new("legacy-server-key-password-01".into());
        let (old, current, signer) = (key(), key(), key());
        let old_pem = old.to_encrypted_pem(&legacy_pw).unwrap().to_string();
        let user_pub = signer.public().to_pem();
        cluster
            .psql(
                &django,
                &format!(
                    "INSERT INTO auth_user (id, is_superuser, username, public_key_pem) VALUES
                       (3, true, 'admin', NULL), (7, false, 'system_backup', {up});
                     INSERT INTO tenancy_server_key (id, private_key_pem, public_key_pem, fingerprint, is_active) VALUES
                       (1, {ok}, {opub}, 'legacy-old', false), (2, {ck}, {cpub}, 'legacy-current', true);
                     INSERT INTO tenancy_encryption_audit_log (action, user_id, backup_creator_id, success, details) VALUES
                       ('ENCRYPT', 7, 7, true, '{{}}'), ('DECRYPT', 9, 7, false, '{{\"error\": \"bad\"}}');",
                    up = text(&user_pub),
                    ok = text(&old_pem),
                    opub = text(&old.public().to_pem()),
                    ck = text(&current.to_encrypted_pem(&legacy_pw).unwrap()),
                    cpub = text(&current.public().to_pem()),
                ),
            )
            .unwrap();
        let url = cluster.url(&django);
        let site = TestSite::new();
        let ours = site.store().active_server_key().unwrap().unwrap();
        let entries_before = site.store().audit_entries(1000).unwrap().len();

        let planned = import(&site, &url, true).unwrap();
        let all_new = |n| Count {
            new: n,
            already_here: 0,
        };
        assert_eq!(
            planned,
            Imported {
                users: all_new(2),
                user_keys: all_new(1),
                server_keys: all_new(2),
                audit_rows: all_new(2),
            }
        );
        assert!(
            site.store().users().unwrap().is_empty(),
            "a dry run imported"
        );

        let imported = import(&site, &url, false).unwrap();
        assert_eq!(imported, planned);
        let mut store = site.store();
        let users = store.users().unwrap();
        assert_eq!(
            users
                .iter()
                .map(|u| (u.id, u.username.as_str(), u.role))
                .collect::<Vec<_>>(),
            [
                (3, "admin", Role::Admin),
                (7, "system_backup", Role::Operator)
            ]
        );
        let user_key = store.active_user_key(7).unwrap().unwrap();
        assert_eq!(user_key.fingerprint, signer.fingerprint());
        assert_eq!(user_key.status, UserKeyStatus::Active);
        // The store had its own active key: both legacy keys come over as rotated ones, their
        // private halves exactly as they were.
        assert_eq!(store.active_server_key().unwrap().unwrap().id, ours.id);
        let old_record = store.server_key(&old.fingerprint()).unwrap().unwrap();
        assert_eq!(old_record.status, ServerKeyStatus::Rotated);
        assert_eq!(old_record.private_key_pem, old_pem);
        assert_eq!(old_record.legacy_fingerprint.as_deref(), Some("legacy-old"));
        assert_eq!(
            store
                .server_key(&current.fingerprint())
                .unwrap()
                .unwrap()
                .status,
            ServerKeyStatus::Rotated
        );
        assert!(store.verify_audit_chain().unwrap().is_ok());
        let entries = store.audit_entries(1000).unwrap();
        // The two legacy rows and the import's own entry (the dry run's too).
        assert_eq!(entries.len(), entries_before + 4);
        let decrypt = entries
            .iter()
            .find(|e| e.entry.action.as_str() == "DECRYPT")
            .unwrap();
        assert_eq!(decrypt.entry.user_id, None, "user 9 no longer exists");
        let details: serde_json::Value = serde_json::from_str(&decrypt.entry.details).unwrap();
        assert_eq!(details["legacy_user_id"], 9);
        drop(store);

        let again = import(&site, &url, false).unwrap();
        let all_known = |n| Count {
            new: 0,
            already_here: n,
        };
        assert_eq!(
            again,
            Imported {
                users: all_known(2),
                user_keys: all_known(1),
                server_keys: all_known(2),
                audit_rows: all_known(2),
            }
        );
    }

    /// If one legacy user name cannot be a pgseal name, nothing at all is imported — in a dry
    /// run or not — and the refusal names every such user and is audited; the store is still
    /// created, to record it.
    #[test]
    fn import_of_a_legacy_user_named_like_a_path_imports_nothing() {
        let cluster = TestCluster::shared();
        let django = cluster.create_database("ops_django_names").unwrap();
        cluster.psql(&django, SCHEMA).unwrap();
        cluster
            .psql(
                &django,
                "INSERT INTO auth_user (id, is_superuser, username) VALUES
                   (100, false, 'alice'), (101, false, '..'), (102, true, '-rf');",
            )
            .unwrap();
        let url = cluster.url(&django);
        let tmp = tempfile::tempdir().unwrap();
        let site = site_in(tmp.path());
        for dry_run in [true, false] {
            let mut session = session_on(&site, None);
            let result = import_django(
                &mut session,
                &ImportDjango {
                    database_url: &url,
                    dry_run,
                },
            );
            let refused = session.finish(result.map(|_| ())).unwrap_err();
            assert_eq!(refused.kind(), ErrorKind::Invalid);
            let message = refused.to_string();
            assert!(
                message.contains("101") && message.contains("\"..\"") && message.contains("102"),
                "{message}"
            );
        }
        let mut store = pgseal_store::Store::open_existing(&site.store).unwrap();
        assert!(store.users().unwrap().is_empty());
        let entries = store.audit_entries(10).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(
            entries
                .iter()
                .all(|e| e.entry.action.as_str() == "IMPORT" && !e.entry.success)
        );
    }

    /// A database that is not the legacy system's is a database failure, not a corrupt input.
    #[test]
    fn import_from_a_database_without_the_legacy_tables_is_a_database_failure() {
        let cluster = TestCluster::shared();
        let empty = cluster.create_database("ops_not_django").unwrap();
        let site = TestSite::new();
        let refused = import(&site, &cluster.url(&empty), true).unwrap_err();
        assert!(matches!(refused, Error::LegacyDatabase(_)), "{refused:?}");
        assert_eq!(refused.kind(), ErrorKind::Database);
        assert!(
            refused
                .to_string()
                .starts_with("reading the legacy database: auth_user not found"),
            "{refused}"
        );
    }
}
