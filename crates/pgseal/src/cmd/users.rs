//! `pgseal user ...` and `pgseal user-key ...`: who makes backups, and the keys they sign with.

use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use pgseal_core::keys::{KeyBits, PssSalt};
use pgseal_core::{Fingerprint, PrivateKey};
use pgseal_store::{Action, NewUserKey, Role, StoreError, User, UserKeyRecord, Username};
use serde_json::json;

use super::keygen::refuse_existing;
use super::{emit, new_password, print_json, user_password};
use crate::cli::{RoleArg, UserCommand, UserKeyCommand, UserKeyGenerateArgs, UserKeyRotateArgs};
use crate::context::{Context, opt, store_failure, username};
use crate::failure::{CliResult, Failure};
use crate::files::AtomicFile;

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
            ctx.audit(Action::UserAdd).detail("username", name.clone());
            let name = username(&name)?;
            let role = match role {
                RoleArg::Admin => Role::Admin,
                RoleArg::Operator => Role::Operator,
                RoleArg::Auditor => Role::Auditor,
            };
            let user = ctx.store()?.add_user(&name, role).map_err(store_failure)?;
            if let Some(a) = ctx.audit_mut() {
                a.detail("new_user_id", user.id);
                a.detail("role", role.as_str());
            }
            if json {
                print_json(&user_json(&user));
            } else {
                println!(
                    "user {} added with id {} ({})",
                    user.username, user.id, user.role
                );
                println!("next: pgseal user-key generate {}", user.username);
            }
            Ok(())
        }
        UserCommand::List(args) => {
            let users = ctx.read_store()?.users().map_err(store_failure)?;
            if args.json {
                print_json(&json!(users.iter().map(user_json).collect::<Vec<_>>()));
            } else {
                println!(
                    "{:<6} {:<24} {:<9} {:<8} CREATED",
                    "ID", "USERNAME", "ROLE", "ACTIVE"
                );
                for u in &users {
                    println!(
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
            let name = username(&name)?;
            let store = ctx.read_store()?;
            let user = store.user(&name).map_err(store_failure)?;
            let keys = store.user_keys(user.id).map_err(store_failure)?;
            if json {
                let mut v = user_json(&user);
                v["keys"] = json!(keys.iter().map(key_json).collect::<Vec<_>>());
                print_json(&v);
            } else {
                println!("id:       {}", user.id);
                println!("username: {}", user.username);
                println!("role:     {}", user.role);
                println!("active:   {}", if user.is_active { "yes" } else { "no" });
                println!("created:  {}", user.created_at.rfc3339());
                if keys.is_empty() {
                    println!(
                        "keys:     none (pgseal user-key generate {})",
                        user.username
                    );
                }
                for k in &keys {
                    println!(
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
        UserCommand::Disable { name } => {
            ctx.audit(Action::UserDisable)
                .detail("username", name.clone());
            let name = username(&name)?;
            let user = ctx.store()?.disable_user(&name).map_err(|e| match e {
                // Adding a user to disable them is no advice: the name alone says it.
                StoreError::UnknownUser(_) => Failure::usage(e.to_string()),
                e => store_failure(e),
            })?;
            println!(
                "user {} (id {}) disabled; their keys stay for verification",
                user.username, user.id
            );
            Ok(())
        }
    }
}

/// `NAME.key.pem` → `NAME.pub.pem`; anything else gets `.pub.pem` appended.
fn public_path_for(key_path: &Path) -> PathBuf {
    let s = key_path.to_string_lossy();
    match s.strip_suffix(".key.pem") {
        Some(base) => PathBuf::from(format!("{base}.pub.pem")),
        None => PathBuf::from(format!("{s}.pub.pem")),
    }
}

pub use pgseal_ops::keys::user_key_path;

pub fn generate_key(args: UserKeyGenerateArgs, ctx: &mut Context) -> CliResult {
    ctx.audit(Action::KeyGen).detail("kind", "user");
    let name = username(&args.name)?;
    let cfg = ctx.config()?.clone();
    let store = ctx.store()?;
    let user = store.user(&name).map_err(store_failure)?;
    if let Some(a) = ctx.audit_mut() {
        a.user_id = Some(user.id);
        a.detail("username", user.username.as_str());
    }
    if !user.is_active {
        return Err(Failure::usage(format!(
            "user {} is disabled",
            user.username
        )));
    }
    if let Some(active) = ctx
        .store()?
        .active_user_key(user.id)
        .map_err(store_failure)?
    {
        return Err(Failure::usage(format!(
            "user {} already has an active key ({}); rotate it with `pgseal user-key rotate {}`",
            user.username, active.fingerprint, user.username
        )));
    }
    let key_path = match &args.out {
        Some(p) => p.clone(),
        None => user_key_path(&cfg.user_keys_dir, &name)?,
    };
    let pub_path = public_path_for(&key_path);
    refuse_existing(&[&key_path, &pub_path], args.force)?;
    if let Some(parent) = key_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.exists())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| Failure::io(format!("creating {}", parent.display()), e))?;
    }
    let password = user_password(&args.user_password).get_new()?;
    let bits = KeyBits::from_bits(args.key_size.unwrap_or(cfg.rsa_key_size))?;
    let key = PrivateKey::generate(bits)?;
    let public = key.public();

    // Both files are written unnamed first; they appear only once the store has the key, so a
    // refused insert (a race, a dead database) leaves no orphaned key files.
    let pem = key.to_encrypted_pem(&password)?;
    let mut private_file = AtomicFile::create(&key_path, args.force)?;
    private_file
        .write_all(pem.as_bytes())
        .map_err(|e| Failure::io(format!("writing {}", key_path.display()), e))?;
    let mut public_file = AtomicFile::create(&pub_path, args.force)?;
    public_file.set_mode(0o644);
    public_file
        .write_all(public.to_pem().as_bytes())
        .map_err(|e| Failure::io(format!("writing {}", pub_path.display()), e))?;

    let record = ctx
        .store()?
        .add_user_key(
            user.id,
            &NewUserKey {
                fingerprint: public.fingerprint(),
                legacy_fingerprint: Some(public.legacy_fingerprint().to_string()),
                public_key_pem: public.to_pem(),
                key_size: public.bits() as i64,
            },
        )
        .map_err(store_failure)?;
    private_file.commit()?;
    public_file.commit()?;
    if let Some(a) = ctx.audit_mut() {
        a.detail("fingerprint", record.fingerprint.to_string());
        a.detail("private_key_file", key_path.display().to_string());
    }
    if args.json {
        let mut v = key_json(&record);
        v["private_key"] = json!(key_path);
        v["public_key"] = json!(pub_path);
        print_json(&v);
    } else {
        println!(
            "key for {}: RSA-{} {}",
            user.username, record.key_size, record.fingerprint
        );
        println!(
            "  private key: {} (encrypted, 0600; keep it safe)",
            key_path.display()
        );
        println!("  public key:  {} (also in the store)", pub_path.display());
    }
    Ok(())
}

pub fn user_key(cmd: UserKeyCommand, ctx: &mut Context) -> CliResult {
    match cmd {
        UserKeyCommand::Generate(args) => generate_key(args, ctx),
        UserKeyCommand::Rotate(args) => rotate_key(args, ctx),
        UserKeyCommand::List { name, json } => {
            let name = username(&name)?;
            let store = ctx.read_store()?;
            let user = store.user(&name).map_err(store_failure)?;
            let keys = store.user_keys(user.id).map_err(store_failure)?;
            if json {
                print_json(&json!(keys.iter().map(key_json).collect::<Vec<_>>()));
            } else if keys.is_empty() {
                println!("{name} has no keys; generate one with `pgseal user-key generate {name}`");
            } else {
                println!(
                    "{:<51} {:>5}  {:<24} STATUS",
                    "FINGERPRINT", "BITS", "CREATED"
                );
                for k in &keys {
                    println!(
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
            let name = username(&name)?;
            let store = ctx.read_store()?;
            let user = store.user(&name).map_err(store_failure)?;
            let key = match fingerprint {
                Some(text) => {
                    let fp: Fingerprint = text.parse()?;
                    store
                        .user_key(&fp)
                        .map_err(store_failure)?
                        .filter(|k| k.user_id == user.id)
                        .ok_or_else(|| Failure::key(format!("{name} has no key {fp}")))?
                }
                None => store
                    .active_user_key(user.id)
                    .map_err(store_failure)?
                    .ok_or_else(|| no_user_key(&name))?,
            };
            emit(&key.public_key_pem, output.as_deref(), false)
        }
    }
}

pub fn rotate_key(args: UserKeyRotateArgs, ctx: &mut Context) -> CliResult {
    ctx.audit(Action::KeyRotate).detail("kind", "user");
    let name = username(&args.name)?;
    let cfg = ctx.config()?.clone();
    let store = ctx.store()?;
    let user = store.user(&name).map_err(store_failure)?;
    let active = store
        .active_user_key(user.id)
        .map_err(store_failure)?
        .ok_or_else(|| no_user_key(&name))?;
    if let Some(a) = ctx.audit_mut() {
        a.detail("username", user.username.as_str());
        a.detail("old_fingerprint", active.fingerprint.to_string());
        a.detail("forced", args.force);
        a.backup_creator_id = None;
    }
    let default_path = user_key_path(&cfg.user_keys_dir, &name)?;
    let key_path = args.out.clone().unwrap_or_else(|| default_path.clone());
    let pub_path = public_path_for(&key_path);
    // An old key file there is set aside, not replaced — but a key file is a regular file: a
    // FIFO, device or directory at either path is refused before any work.
    refuse_existing(&[&key_path, &pub_path], true)?;
    if args.force {
        // Without the old key, only an admin may replace it — and says who they are.
        let admin = match crate::context::acting_user(ctx)? {
            Some(u) if u.role == Role::Admin && u.is_active => u,
            _ => {
                return Err(Failure::usage(
                    "--force needs an admin: set PGSEAL_USER to the name of an active admin",
                ));
            }
        };
        if let Some(a) = ctx.audit_mut() {
            a.user_id = Some(admin.id);
        }
    } else {
        // Proof of possession: the old private key signs a fresh challenge that the stored
        // public key verifies.
        let path = args
            .sign_key
            .clone()
            .unwrap_or_else(|| default_path.clone());
        let old = super::load_private(&path, &user_password(&args.user_password))?;
        let mut challenge = [0u8; 32];
        pgseal_core::secret::fill_random(&mut challenge)?;
        let mut message = b"pgseal user-key rotate\0".to_vec();
        message.extend_from_slice(&challenge);
        let signature = old.sign_pss(PssSalt::Digest, &message)?;
        let stored = pgseal_core::PublicKey::from_pem(&active.public_key_pem)?;
        if !stored.verify_pss(PssSalt::Digest, &message, &signature) {
            return Err(Failure::key(format!(
                "{} is not {}'s active key ({}): proof of possession failed; nothing was changed",
                path.display(),
                user.username,
                active.fingerprint
            )));
        }
        if let Some(a) = ctx.audit_mut() {
            a.user_id = Some(user.id);
        }
    }

    let password = new_password(
        &args.new_password,
        "PGSEAL_NEW_USER_KEY_PASSWORD",
        "the new user key password",
    )
    .get_new()?;
    let bits = KeyBits::from_bits(args.key_size.unwrap_or(cfg.rsa_key_size))?;
    let key = PrivateKey::generate(bits)?;
    let public = key.public();
    let pem = key.to_encrypted_pem(&password)?;
    // The new files are made durable under side names first, so that no step can lose the new
    // private key: a refused rotation removes them, a crash leaves them for the user.
    let side = |p: &Path| PathBuf::from(format!("{}.new", p.display()));
    let write = |path: &Path, text: &[u8], mode: u32| -> CliResult {
        let mut file = AtomicFile::create(path, true)?;
        file.set_mode(mode);
        file.write_all(text)
            .map_err(|e| Failure::io(format!("writing {}", path.display()), e))?;
        file.commit()
    };
    write(&side(&key_path), pem.as_bytes(), 0o600)?;
    write(&side(&pub_path), public.to_pem().as_bytes(), 0o644)?;

    let rotated = ctx.store()?.rotate_user_key(
        user.id,
        active.id,
        &NewUserKey {
            fingerprint: public.fingerprint(),
            legacy_fingerprint: Some(public.legacy_fingerprint().to_string()),
            public_key_pem: public.to_pem(),
            key_size: public.bits() as i64,
        },
    );
    let record = match rotated {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(side(&key_path));
            let _ = std::fs::remove_file(side(&pub_path));
            return Err(store_failure(e));
        }
    };
    // The old private key is not destroyed: it is set aside, since the user may still want it.
    let stamp: String = pgseal_core::time::Timestamp::now()
        .rfc3339()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let mut kept = None;
    if key_path.exists() {
        let aside = PathBuf::from(format!("{}.retired-{stamp}", key_path.display()));
        std::fs::rename(&key_path, &aside)
            .map_err(|e| Failure::io(format!("setting {} aside", key_path.display()), e))?;
        kept = Some(aside);
    }
    for p in [&key_path, &pub_path] {
        std::fs::rename(side(p), p).map_err(|e| {
            Failure::io(
                format!(
                    "moving the new key into place (it is at {})",
                    side(p).display()
                ),
                e,
            )
        })?;
    }
    if let Some(a) = ctx.audit_mut() {
        a.detail("new_fingerprint", record.fingerprint.to_string());
    }
    if args.json {
        let mut v = key_json(&record);
        v["old_fingerprint"] = json!(active.fingerprint.to_string());
        v["private_key"] = json!(key_path);
        v["old_private_key"] = json!(kept);
        print_json(&v);
    } else {
        println!("key of {} rotated:", user.username);
        println!(
            "  new key: RSA-{} {} in {}",
            record.key_size,
            record.fingerprint,
            key_path.display()
        );
        println!(
            "  old key: {} (retired; still verifies the backups it signed)",
            active.fingerprint
        );
        if let Some(p) = kept {
            println!("  the old private key was kept as {}", p.display());
        }
    }
    Ok(())
}

/// The seed guide's "User has no RSA key", with its fix.
pub fn no_user_key(name: &Username) -> Failure {
    pgseal_ops::Missing::UserKey(name.clone()).into()
}
