//! `pgseal import-django`: brings the legacy system's users, keys and audit log into the store.
//!
//! User ids are kept (legacy files carry them); server private keys are kept encrypted exactly
//! as they were, under the legacy `SERVER_KEY_PASSWORD`; legacy fingerprints are kept to match
//! old records; audit rows join the hash chain marked as imported. Re-running imports only
//! what is new.

use pgseal_core::{LegacyFingerprint, PublicKey};
use pgseal_store::django::{self, DjangoExport};
use pgseal_store::{
    Action, NewAuditEntry, NewServerKey, NewUserKey, Role, ServerKeyStatus, Username,
};
use serde_json::json;

use super::print_json;
use crate::cli::ImportDjangoArgs;
use crate::context::{Context, store_failure};
use crate::failure::{CliResult, Failure};

#[derive(Default, Debug)]
struct Counts {
    users: (usize, usize),
    user_keys: (usize, usize),
    server_keys: (usize, usize),
    audit_rows: (usize, usize),
}

pub fn run(args: ImportDjangoArgs, ctx: &mut Context) -> CliResult {
    ctx.audit(Action::Import).detail("dry_run", args.dry_run);
    // Importing is the other way to start a store (the old system's keys under their old
    // password): it creates the store if there is none, and records itself there.
    ctx.create_store()?;
    let data = django::read(&args.database_url)
        .map_err(|e| Failure::Tool(format!("reading the legacy database: {e}")))?;
    let names = usernames(&data)?;
    let counts = if args.dry_run {
        plan(ctx, &data)?
    } else {
        apply(ctx, &data, &names)?
    };
    if let Some(a) = ctx.audit_mut() {
        a.detail("new_users", counts.users.0);
        a.detail("new_server_keys", counts.server_keys.0);
        a.detail("new_audit_rows", counts.audit_rows.0);
    }
    let verb = if args.dry_run {
        "would import"
    } else {
        "imported"
    };
    if args.json {
        let pair = |(new, known): (usize, usize)| json!({ "new": new, "already_here": known });
        print_json(&json!({
            "dry_run": args.dry_run,
            "users": pair(counts.users),
            "user_keys": pair(counts.user_keys),
            "server_keys": pair(counts.server_keys),
            "audit_rows": pair(counts.audit_rows),
        }));
    } else {
        for (what, (new, known)) in [
            ("users", counts.users),
            ("user keys", counts.user_keys),
            ("server keys", counts.server_keys),
            ("audit rows", counts.audit_rows),
        ] {
            println!("{verb} {new} {what} ({known} already here)");
        }
        if !args.dry_run && counts.server_keys.0 > 0 {
            println!(
                "the imported server keys are still protected by the legacy SERVER_KEY_PASSWORD; \
                 `pgseal server-key rotate` moves every key to a new one"
            );
        }
    }
    Ok(())
}

/// Every legacy user's name as a pgseal [`Username`], or — if any is not one — a refusal that
/// names them all, before anything is written: a partial import would leave the legacy files
/// of the users left out unverifiable through the store, so nothing is imported until the
/// names are fixed in the legacy system.
fn usernames(data: &DjangoExport) -> CliResult<Vec<Username>> {
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
    Err(Failure::invalid(format!(
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

fn server_key(k: &django::DjangoServerKey) -> CliResult<NewServerKey> {
    let public = PublicKey::from_pem(&k.public_key_pem)
        .map_err(|e| Failure::invalid(format!("tenancy_server_key {}: {e}", k.id)))?;
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

fn user_key(pem: &str) -> CliResult<NewUserKey> {
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
fn plan(ctx: &mut Context, data: &DjangoExport) -> CliResult<Counts> {
    let store = ctx.store()?;
    let mut c = Counts::default();
    for u in &data.users {
        let known = store.user_by_id(u.id).map_err(store_failure)?.is_some();
        bump(&mut c.users, !known);
        if let Some(pem) = &u.public_key_pem {
            let key = user_key(pem)?;
            bump(
                &mut c.user_keys,
                store
                    .user_key(&key.fingerprint)
                    .map_err(store_failure)?
                    .is_none(),
            );
        }
    }
    for k in &data.server_keys {
        let key = server_key(k)?;
        bump(
            &mut c.server_keys,
            store
                .server_key(&key.fingerprint)
                .map_err(store_failure)?
                .is_none(),
        );
    }
    for r in &data.audit {
        bump(
            &mut c.audit_rows,
            !store.was_imported("audit", r.id).map_err(store_failure)?,
        );
    }
    Ok(c)
}

fn bump(pair: &mut (usize, usize), new: bool) {
    if new { pair.0 += 1 } else { pair.1 += 1 }
}

fn apply(ctx: &mut Context, data: &DjangoExport, names: &[Username]) -> CliResult<Counts> {
    let store = ctx.store()?;
    let mut c = Counts::default();
    for (u, name) in data.users.iter().zip(names) {
        let new = store
            .import_user(u.id, name, role(u.is_superuser), u.is_active)
            .map_err(store_failure)?;
        bump(&mut c.users, new);
        if let Some(pem) = &u.public_key_pem {
            let key = user_key(pem)?;
            if store
                .user_key(&key.fingerprint)
                .map_err(store_failure)?
                .is_some()
            {
                bump(&mut c.user_keys, false);
            } else {
                store.add_user_key(u.id, &key).map_err(store_failure)?;
                bump(&mut c.user_keys, true);
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
        let store = ctx.store()?;
        let wants_active = Some(k.id) == newest_active
            && store.active_server_key().map_err(store_failure)?.is_none();
        let status = if wants_active {
            ServerKeyStatus::Active
        } else {
            ServerKeyStatus::Rotated
        };
        let new = store
            .import_server_key(&key, status, k.created_at)
            .map_err(store_failure)?;
        bump(&mut c.server_keys, new);
    }
    let store = ctx.store()?;
    let known_users: std::collections::BTreeSet<i64> = store
        .users()
        .map_err(store_failure)?
        .into_iter()
        .map(|u| u.id)
        .collect();
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
        bump(
            &mut c.audit_rows,
            store
                .import_audit_row(r.id, &entry)
                .map_err(store_failure)?,
        );
    }
    Ok(c)
}
