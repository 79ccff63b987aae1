//! `pgseal server-key generate | list | export`: the server key pairs in the store.

use pgseal_core::keys::KeyBits;
use pgseal_core::{Fingerprint, Password, PrivateKey};
use pgseal_store::{Action, NewServerKey, ServerKeyRecord};
use serde_json::json;

use super::{emit, new_password, print_json, server_password};
use crate::cli::{
    JsonArg, ServerKeyExportArgs, ServerKeyGenerateArgs, ServerKeyRetireArgs, ServerKeyRotateArgs,
};
use crate::context::{Context, opt, store_failure};
use crate::failure::{CliResult, Failure};

pub fn generate(args: ServerKeyGenerateArgs, ctx: &mut Context) -> CliResult {
    ctx.audit(Action::KeyGen).detail("kind", "server");
    let bits = args.key_size.unwrap_or(ctx.config()?.rsa_key_size);
    // Refuse before asking for a password or spending time on key generation.
    if let Some(active) = ctx.store()?.active_server_key().map_err(store_failure)? {
        return Err(active_exists(&active));
    }
    let password = server_password(&args.server_password).get_new()?;
    let record = generate_active(ctx, bits, &password, args.notes)?;
    if args.json {
        print_json(&key_json(&record));
    } else {
        println!(
            "server key generated: RSA-{} {} (active)",
            record.key_size, record.fingerprint
        );
        println!("its private half is in the store, encrypted with SERVER_KEY_PASSWORD");
    }
    Ok(())
}

fn active_exists(active: &ServerKeyRecord) -> Failure {
    Failure::usage(format!(
        "an active server key already exists ({}); rotate it with `pgseal server-key rotate`",
        active.fingerprint
    ))
}

/// Generates a server key, encrypts it under `password` and stores it as the active key. The
/// database refuses if another key is active (another process may have won a race).
pub fn generate_active(
    ctx: &mut Context,
    bits: u32,
    password: &Password,
    notes: Option<String>,
) -> CliResult<ServerKeyRecord> {
    let bits = KeyBits::from_bits(bits)?;
    let key = PrivateKey::generate(bits)?;
    let public = key.public();
    let new = NewServerKey {
        fingerprint: public.fingerprint(),
        legacy_fingerprint: Some(public.legacy_fingerprint().to_string()),
        private_key_pem: key.to_encrypted_pem(password)?.to_string(),
        public_key_pem: public.to_pem(),
        key_size: public.bits() as i64,
        notes,
    };
    let record = ctx.store()?.add_server_key(&new).map_err(store_failure)?;
    if let Some(a) = ctx.audit_mut() {
        a.detail("fingerprint", record.fingerprint.to_string());
        a.detail("key_size", record.key_size);
    }
    Ok(record)
}

pub fn rotate(args: ServerKeyRotateArgs, ctx: &mut Context) -> CliResult {
    ctx.audit(Action::KeyRotate).detail("kind", "server");
    let bits = KeyBits::from_bits(args.key_size.unwrap_or(ctx.config()?.rsa_key_size))?;
    let store = ctx.store()?;
    let active = store
        .active_server_key()
        .map_err(store_failure)?
        .ok_or_else(no_active_key)?;
    let all = store.server_keys().map_err(store_failure)?;
    if let Some(a) = ctx.audit_mut() {
        a.detail("old_fingerprint", active.fingerprint.to_string());
    }
    // The current password must open every stored key: that proves it, and is what lets the
    // keys be re-protected under the new one.
    let current = server_password(&args.server_password).get()?;
    let keys = all
        .iter()
        .map(|k| {
            let what = format!("server key {}", k.fingerprint);
            PrivateKey::from_pem(&k.private_key_pem, &what, || Ok(current.clone()))
                .map(|key| (k.id, key))
                .map_err(|e| match e {
                    pgseal_core::Error::WrongPassword(_) => Failure::key(format!(
                        "the current password (SERVER_KEY_PASSWORD) does not open {what}; nothing was changed"
                    )),
                    other => other.into(),
                })
        })
        .collect::<CliResult<Vec<_>>>()?;
    let new_password = new_password(
        &args.new_password,
        "PGSEAL_NEW_SERVER_KEY_PASSWORD",
        "the new server key password",
    )
    .get_new()?;
    let key = PrivateKey::generate(bits)?;
    let public = key.public();
    let reprotected = keys
        .iter()
        .map(|(id, k)| Ok((*id, k.to_encrypted_pem(&new_password)?.to_string())))
        .collect::<CliResult<Vec<_>>>()?;
    let new = NewServerKey {
        fingerprint: public.fingerprint(),
        legacy_fingerprint: Some(public.legacy_fingerprint().to_string()),
        private_key_pem: key.to_encrypted_pem(&new_password)?.to_string(),
        public_key_pem: public.to_pem(),
        key_size: public.bits() as i64,
        notes: args.notes,
    };
    let record = ctx
        .store()?
        .rotate_server_key(active.id, &reprotected, &new)
        .map_err(store_failure)?;
    if let Some(a) = ctx.audit_mut() {
        a.detail("new_fingerprint", record.fingerprint.to_string());
        a.detail("reprotected_keys", reprotected.len());
    }
    if args.json {
        print_json(&json!({
            "old": active.fingerprint.to_string(),
            "new": key_json(&record),
            "reprotected_keys": reprotected.len(),
        }));
    } else {
        println!("server key rotated:");
        println!(
            "  new active key: RSA-{} {}",
            record.key_size, record.fingerprint
        );
        println!(
            "  old key:        {} (rotated: still opens the backups made for it)",
            active.fingerprint
        );
        println!(
            "all {} server keys are now protected by the new password: set SERVER_KEY_PASSWORD to it",
            reprotected.len() + 1
        );
    }
    Ok(())
}

pub fn retire(args: ServerKeyRetireArgs, ctx: &mut Context) -> CliResult {
    ctx.audit(Action::KeyRetire)
        .detail("fingerprint", args.fingerprint.clone());
    let fp: Fingerprint = args.fingerprint.parse()?;
    let store = ctx.store()?;
    let key = store
        .server_key(&fp)
        .map_err(store_failure)?
        .ok_or_else(|| Failure::key(format!("no server key with fingerprint {fp}")))?;
    if key.status == pgseal_store::ServerKeyStatus::Active {
        return Err(Failure::usage(
            "that is the active server key: rotate first (`pgseal server-key rotate`), then rewrap and retire",
        ));
    }
    // The catalog and, above all, the files themselves (superseded slots included; every
    // file in the backup directory, catalogued or not) say which backups still need the key.
    let repository = pgseal_ops::repo::site_repository(ctx)?;
    let reach = pgseal_ops::repo::reach(ctx);
    let needing = pgseal_ops::holders::backups_holding(ctx, &repository, &reach, &fp)?;
    if !needing.is_empty() {
        let list: Vec<String> = needing
            .iter()
            .take(20)
            .map(|(path, why)| format!("  {path} ({why})"))
            .collect();
        let more = needing.len().saturating_sub(20);
        if !args.force {
            return Err(Failure::usage(format!(
                "{} backups still hold {fp} in a recipient slot; rewrap them first (`pgseal \
                 rewrap --all`, or `pgseal rewrap FILE` for those the catalog does not list; it \
                 also wipes superseded slots):\n{}{}",
                needing.len(),
                list.join("\n"),
                if more > 0 {
                    format!("\n  ... and {more} more")
                } else {
                    String::new()
                }
            )));
        }
        let typed = match &args.confirm {
            Some(t) => t.clone(),
            None => crate::secrets::ask_line(&format!(
                "{} backups still need this key. Type its full fingerprint to retire it anyway: ",
                needing.len()
            ))?,
        };
        if typed.trim() != fp.to_string() {
            return Err(Failure::usage(
                "the fingerprint typed does not match; nothing was retired",
            ));
        }
    }
    let retired = ctx.store()?.retire_server_key(&fp).map_err(store_failure)?;
    if let Some(a) = ctx.audit_mut() {
        a.detail("forced", args.force && !needing.is_empty());
        a.detail("backups_still_needing_it", needing.len());
    }
    println!("server key {} retired", retired.fingerprint);
    Ok(())
}

fn key_json(k: &ServerKeyRecord) -> serde_json::Value {
    json!({
        "id": k.id,
        "fingerprint": k.fingerprint.to_string(),
        "legacy_fingerprint": opt(k.legacy_fingerprint.clone()),
        "key_size": k.key_size,
        "status": k.status.as_str(),
        "created_at": k.created_at.rfc3339(),
        "rotated_from_id": opt(k.rotated_from_id),
        "retired_at": opt(k.retired_at.map(|t| t.rfc3339())),
        "notes": opt(k.notes.clone()),
    })
}

pub fn list(args: JsonArg, ctx: &mut Context) -> CliResult {
    let keys = ctx.read_store()?.server_keys().map_err(store_failure)?;
    if args.json {
        print_json(&json!(keys.iter().map(key_json).collect::<Vec<_>>()));
        return Ok(());
    }
    if keys.is_empty() {
        println!("no server keys; generate one with `pgseal server-key generate`");
        return Ok(());
    }
    println!(
        "{:<4} {:<51} {:>5}  {:<24} STATUS",
        "ID", "FINGERPRINT", "BITS", "CREATED"
    );
    for k in &keys {
        println!(
            "{:<4} {:<51} {:>5}  {:<24} {}",
            k.id,
            k.fingerprint,
            k.key_size,
            k.created_at.rfc3339(),
            k.status.as_str()
        );
    }
    Ok(())
}

pub fn export(args: ServerKeyExportArgs, ctx: &mut Context) -> CliResult {
    ctx.audit(Action::KeyExport).detail("private", args.private);
    let store = ctx.store()?;
    let key = match &args.fingerprint {
        Some(text) => {
            let fp: Fingerprint = text.parse()?;
            store
                .server_key(&fp)
                .map_err(store_failure)?
                .ok_or_else(|| Failure::key(format!("no server key with fingerprint {fp}")))?
        }
        None => store
            .active_server_key()
            .map_err(store_failure)?
            .ok_or_else(no_active_key)?,
    };
    if let Some(a) = ctx.audit_mut() {
        a.detail("fingerprint", key.fingerprint.to_string());
    }
    let text = if args.private {
        &key.private_key_pem
    } else {
        &key.public_key_pem
    };
    emit(text, args.output.as_deref(), false)
}

/// The seed guide's "No active server key found", with its fix.
pub fn no_active_key() -> Failure {
    pgseal_ops::Missing::ActiveServerKey.into()
}
