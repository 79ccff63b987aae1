//! `pgseal server-key generate | rotate | list | export | retire`: the server key pairs in the
//! store (`pgseal_ops::server_keys`).

use pgseal_ops::server_keys::{self, Export, Generate, Retire, Rotate};
use pgseal_store::ServerKeyRecord;
use serde_json::json;

use super::{emit, new_password, print_json, server_password};
use crate::cli::{
    Json, ServerKeyExportArgs, ServerKeyGenerateArgs, ServerKeyRetireArgs, ServerKeyRotateArgs,
};
use crate::context::{Context, opt};
use crate::failure::{CliResult, Failure};

pub fn generate(args: ServerKeyGenerateArgs, ctx: &mut Context) -> CliResult {
    let password = server_password(&args.server_password);
    let record = server_keys::generate(
        ctx,
        &Generate {
            bits: args.key_size.bits,
            pq: args.pq.then_some(true),
            password: &password,
            notes: args.notes.as_deref(),
        },
    )?;
    if args.json.on {
        print_json(&key_json(&record));
    } else {
        outln!(
            "server key generated: {} (active)",
            server_keys::describe(&record)
        );
        outln!("its private half is in the store, encrypted with SERVER_KEY_PASSWORD");
    }
    Ok(())
}

pub fn rotate(args: ServerKeyRotateArgs, ctx: &mut Context) -> CliResult {
    crate::custody::attach(ctx, &args.custody)?;
    if let Some(custody) = ctx.custody().cloned() {
        let rotated = custody.rotate(args.key_size.bits, args.pq.then_some(true))?;
        if args.json.on {
            print_json(
                &json!({ "old": rotated.old, "new": rotated.new, "by": custody.describe() }),
            );
        } else {
            outln!(
                "server key rotated by the custody service {}: new active key {} (old: {})",
                custody.describe(),
                rotated.new,
                rotated.old
            );
        }
        return Ok(());
    }
    let current = server_password(&args.server_password);
    let new = new_password(
        &args.new_password,
        "PGSEAL_NEW_SERVER_KEY_PASSWORD",
        "the new server key password",
    );
    let rotated = server_keys::rotate(
        ctx,
        &Rotate {
            bits: args.key_size.bits,
            pq: args.pq.then_some(true),
            current_password: &current,
            new_password: &new,
            notes: args.notes.as_deref(),
        },
    )?;
    if args.json.on {
        print_json(&json!({
            "old": rotated.old.to_string(),
            "new": key_json(&rotated.new),
            "reprotected_keys": rotated.reprotected,
        }));
    } else {
        outln!("server key rotated:");
        outln!("  new active key: {}", server_keys::describe(&rotated.new));
        outln!(
            "  old key:        {} (rotated: still opens the backups made for it)",
            rotated.old
        );
        outln!(
            "all {} server keys are now protected by the new password: set SERVER_KEY_PASSWORD to it",
            rotated.reprotected + 1
        );
    }
    Ok(())
}

pub fn retire(args: ServerKeyRetireArgs, ctx: &mut Context) -> CliResult {
    ctx.use_repo(&args.repo)?;
    crate::custody::attach(ctx, &args.custody)?;
    if let Some(custody) = ctx.custody().cloned() {
        if args.force {
            return Err(Failure::usage(
                "the custody service never forces a retirement: rewrap the backups that hold \
                 the key first",
            ));
        }
        let retired = custody.retire(&args.fingerprint)?;
        outln!(
            "server key {} retired by the custody service {}",
            retired.retired,
            custody.describe()
        );
        return Ok(());
    }
    let confirm = |holding: usize| match &args.confirm {
        Some(typed) => Ok(typed.clone()),
        None => crate::secrets::ask_line(&format!(
            "{holding} backups still need this key. Type its full fingerprint to retire it anyway: "
        )),
    };
    let retired = server_keys::retire(
        ctx,
        &Retire {
            fingerprint: &args.fingerprint,
            force: args
                .force
                .then_some(&confirm as &dyn server_keys::Confirmation),
        },
    )?;
    outln!("server key {} retired", retired.record.fingerprint);
    Ok(())
}

fn key_json(k: &ServerKeyRecord) -> serde_json::Value {
    json!({
        "id": k.id,
        "fingerprint": k.fingerprint.to_string(),
        "legacy_fingerprint": opt(k.legacy_fingerprint.clone()),
        "key_size": k.key_size,
        "pq_fingerprint": server_keys::pq_fingerprint(k).map(|f| f.to_string()),
        "status": k.status.as_str(),
        "created_at": k.created_at.rfc3339(),
        "rotated_from_id": opt(k.rotated_from_id),
        "retired_at": opt(k.retired_at.map(|t| t.rfc3339())),
        "notes": opt(k.notes.clone()),
    })
}

pub fn list(args: Json, ctx: &mut Context) -> CliResult {
    let keys = server_keys::list(ctx)?;
    if args.on {
        print_json(&json!(keys.iter().map(key_json).collect::<Vec<_>>()));
        return Ok(());
    }
    if keys.is_empty() {
        outln!("no server keys; generate one with `pgseal server-key generate`");
        return Ok(());
    }
    outln!(
        "{:<4} {:<51} {:>5}  {:<24} STATUS",
        "ID",
        "FINGERPRINT",
        "BITS",
        "CREATED"
    );
    for k in &keys {
        outln!(
            "{:<4} {:<51} {:>5}  {:<24} {}",
            k.id,
            k.fingerprint,
            k.key_size,
            k.created_at.rfc3339(),
            k.status.as_str()
        );
        if let Some(pq) = server_keys::pq_fingerprint(k) {
            outln!("     + ML-KEM-768 {pq}");
        }
    }
    Ok(())
}

pub fn export(args: ServerKeyExportArgs, ctx: &mut Context) -> CliResult {
    let exported = server_keys::export(
        ctx,
        &Export {
            fingerprint: args.fingerprint.as_deref(),
            private: args.private,
        },
    )?;
    emit(&exported.pem, args.output.as_deref(), false)
}
