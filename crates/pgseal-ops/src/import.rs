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
