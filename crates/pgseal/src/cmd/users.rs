//! `pgseal user ...` and `pgseal user-key ...`: who makes backups, and the keys they sign with
//! (`pgseal_ops::users`).

use pgseal_ops::users::{self, GenerateKey, Proof, RotateKey};
use pgseal_store::{Role, User, UserKeyRecord};
use serde_json::json;

use super::{emit, new_password, print_json, user_password};
use crate::cli::{
    RoleArg, TotpCommand, UserCommand, UserKeyCommand, UserKeyGenerateArgs, UserKeyRotateArgs,
};
use crate::context::{Context, opt, username};
use crate::failure::CliResult;

fn user_json(u: &User) -> serde_json::Value {
    json!({
        "id": u.id,
        "username": u.username.as_str(),
        "role": u.role.as_str(),
        "is_active": u.is_active,
        "created_at": u.created_at.rfc3339(),
        "disabled_at": opt(u.disabled_at.map(|t| t.rfc3339())),
    })
}

fn key_json(k: &UserKeyRecord) -> serde_json::Value {
    json!({
        "id": k.id,
        "user_id": k.user_id,
        "fingerprint": k.fingerprint.to_string(),
        "legacy_fingerprint": opt(k.legacy_fingerprint.clone()),
        "key_size": k.key_size,
        "status": k.status.as_str(),
        "created_at": k.created_at.rfc3339(),
        "retired_at": opt(k.retired_at.map(|t| t.rfc3339())),
    })
}

pub fn user(cmd: UserCommand, ctx: &mut Context) -> CliResult {
    match cmd {
        UserCommand::Add { name, role, json } => {
            let role = match role {
                RoleArg::Admin => Role::Admin,
                RoleArg::Operator => Role::Operator,
                RoleArg::Auditor => Role::Auditor,
            };
            let user = users::add(ctx, &name, role)?;
            if json.on {
                print_json(&user_json(&user));
            } else {
                outln!(
                    "user {} added with id {} ({})",
                    user.username,
                    user.id,
                    user.role
                );
                outln!("next: pgseal user-key generate {}", user.username);
            }
            Ok(())
        }
        UserCommand::List(args) => {
            let users = users::list(ctx)?;
            if args.on {
                print_json(&json!(users.iter().map(user_json).collect::<Vec<_>>()));
            } else {
                outln!(
                    "{:<6} {:<24} {:<9} {:<8} CREATED",
                    "ID",
                    "USERNAME",
                    "ROLE",
                    "ACTIVE"
                );
                for u in &users {
                    outln!(
                        "{:<6} {:<24} {:<9} {:<8} {}",
                        u.id,
                        u.username,
                        u.role.as_str(),
                        if u.is_active { "yes" } else { "no" },
                        u.created_at.rfc3339()
                    );
                }
            }
            Ok(())
        }
        UserCommand::Show { name, json } => {
            let (user, keys) = users::show(ctx, &username(&name)?)?;
            if json.on {
                let mut v = user_json(&user);
                v["keys"] = json!(keys.iter().map(key_json).collect::<Vec<_>>());
                print_json(&v);
            } else {
                outln!("id:       {}", user.id);
                outln!("username: {}", user.username);
                outln!("role:     {}", user.role);
                outln!("active:   {}", if user.is_active { "yes" } else { "no" });
                outln!("created:  {}", user.created_at.rfc3339());
                if keys.is_empty() {
                    outln!(
                        "keys:     none (pgseal user-key generate {})",
                        user.username
                    );
                }
                for k in &keys {
                    outln!(
                        "key:      {} RSA-{} {} (created {})",
                        k.fingerprint,
                        k.key_size,
                        k.status.as_str(),
                        k.created_at.rfc3339()
                    );
                }
            }
            Ok(())
        }
        UserCommand::Role {
            name,
            add,
            remove,
            json,
        } => {
            let add: Vec<_> = add.into_iter().map(Into::into).collect();
            let remove: Vec<_> = remove.into_iter().map(Into::into).collect();
            let roles = users::set_roles(ctx, &name, &add, &remove)?;
            let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            if json.on {
                print_json(&json!({ "username": name, "roles": roles }));
            } else if roles.is_empty() {
                outln!("{}: no service roles", crate::show::text(&name));
            } else {
                outln!("{}: {}", crate::show::text(&name), roles.join(", "));
            }
            Ok(())
        }
        UserCommand::Totp(TotpCommand::Enroll { name }) => {
            let enrolled = pgseal_ops::totp::enroll(ctx, &name)?;
            outln!(
                "second factor enrolled for {}; add it to the authenticator now (shown once, \
                 sealed to server key {}):",
                crate::show::text(&name),
                enrolled.sealed_to
            );
            outln!("{}", enrolled.uri.as_str());
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                let qr = qrcode::QrCode::new(enrolled.uri.as_bytes()).map_err(|e| {
                    crate::failure::Failure::usage(format!("making the QR code: {e}"))
                })?;
                outln!(
                    "{}",
                    qr.render::<qrcode::render::unicode::Dense1x2>()
                        .quiet_zone(true)
                        .build()
                );
            }
            Ok(())
        }
        UserCommand::Disable { name } => {
            let user = users::disable(ctx, &name)?;
            outln!(
                "user {} (id {}) disabled; their keys stay for verification",
                user.username,
                user.id
            );
            Ok(())
        }
    }
}

pub fn generate_key(args: UserKeyGenerateArgs, ctx: &mut Context) -> CliResult {
    let password = user_password(&args.user_password);
    let made = users::generate_key(
        ctx,
        &GenerateKey {
            name: &args.name,
            out: args.out.as_deref(),
            bits: args.key_size.bits,
            force: args.force,
            password: &password,
        },
    )?;
    if args.json.on {
        let mut v = key_json(&made.record);
        v["private_key"] = json!(made.private_key);
        v["public_key"] = json!(made.public_key);
        print_json(&v);
    } else {
        outln!(
            "key for {}: RSA-{} {}",
            made.user.username,
            made.record.key_size,
            made.record.fingerprint
        );
        outln!(
            "  private key: {} (encrypted, 0600; keep it safe)",
            made.private_key.display()
        );
        outln!(
            "  public key:  {} (also in the store)",
            made.public_key.display()
        );
    }
    Ok(())
}

pub fn user_key(cmd: UserKeyCommand, ctx: &mut Context) -> CliResult {
    match cmd {
        UserKeyCommand::Generate(args) => generate_key(args, ctx),
        UserKeyCommand::Rotate(args) => rotate_key(args, ctx),
        UserKeyCommand::List { name, json } => {
            let name = username(&name)?;
            let keys = users::keys(ctx, &name)?;
            if json.on {
                print_json(&json!(keys.iter().map(key_json).collect::<Vec<_>>()));
            } else if keys.is_empty() {
                outln!("{name} has no keys; generate one with `pgseal user-key generate {name}`");
            } else {
                outln!(
                    "{:<51} {:>5}  {:<24} STATUS",
                    "FINGERPRINT",
                    "BITS",
                    "CREATED"
                );
                for k in &keys {
                    outln!(
                        "{:<51} {:>5}  {:<24} {}",
                        k.fingerprint,
                        k.key_size,
                        k.created_at.rfc3339(),
                        k.status.as_str()
                    );
                }
            }
            Ok(())
        }
        UserKeyCommand::Export {
            name,
            fingerprint,
            output,
        } => {
            let key = users::key(ctx, &username(&name)?, fingerprint.as_deref())?;
            emit(&key.public_key_pem, output.as_deref(), false)
        }
    }
}

pub fn rotate_key(args: UserKeyRotateArgs, ctx: &mut Context) -> CliResult {
    let old_password = user_password(&args.user_password);
    let new = new_password(
        &args.new_password,
        "PGSEAL_NEW_USER_KEY_PASSWORD",
        "the new user key password",
    );
    let proof = if args.force {
        Proof::Admin
    } else {
        Proof::OldKey {
            sign_key: args.sign_key.as_deref(),
            password: &old_password,
        }
    };
    let rotated = users::rotate_key(
        ctx,
        &RotateKey {
            name: &args.name,
            proof,
            out: args.out.as_deref(),
            bits: args.key_size.bits,
            new_password: &new,
        },
    )?;
    if args.json.on {
        let mut v = key_json(&rotated.record);
        v["old_fingerprint"] = json!(rotated.old.to_string());
        v["private_key"] = json!(rotated.private_key);
        v["old_private_key"] = json!(rotated.old_private_key);
        print_json(&v);
    } else {
        outln!("key of {} rotated:", rotated.user.username);
        outln!(
            "  new key: RSA-{} {} in {}",
            rotated.record.key_size,
            rotated.record.fingerprint,
            rotated.private_key.display()
        );
        outln!(
            "  old key: {} (retired; still verifies the backups it signed)",
            rotated.old
        );
        if let Some(p) = rotated.old_private_key {
            outln!("  the old private key was kept as {}", p.display());
        }
    }
    Ok(())
}
