//! `pgseal rewrap`: re-wraps backups' file keys to the active server key after a rotation, so
//! the old key can be retired. Data and signatures are untouched.
//!
//! v2 files take one slot-sized write into their inactive recipient slot, fsynced: a crash at
//! any instant leaves a file that opens with the old key or the new one, and the cost does not
//! depend on the file's size. Legacy hybrid files have one wrapped key in an unauthenticated
//! header; overwriting it in place could tear, so they are rewritten whole into an unnamed file
//! and swapped in atomically — crash-safe too, but at the cost of a copy.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use pgseal_core::detect::{DETECT_LEN, detect};
use pgseal_core::keys::Identity;
use pgseal_core::legacy::hybrid;
use pgseal_core::v2;
use pgseal_core::{Detected, Error, Fingerprint, PrivateKey, PublicKey};
use pgseal_store::actions;
use serde_json::json;

use super::server_key::no_active_key;
use super::{host_name, print_json, server_password};
use crate::cli::RewrapArgs;
use crate::context::{Audit, Context, store_failure};
use crate::failure::{CliResult, ExitCode, Failure};
use crate::files::AtomicFile;
use crate::secrets::CachedPassword;

/// What happened to one file.
enum Outcome {
    Rewrapped(Vec<Fingerprint>),
    AlreadyCurrent,
}

/// The stored server keys, unlocked on first use (each unlock costs a PBKDF2 run).
struct Keyring {
    pems: BTreeMap<Fingerprint, String>,
    unlocked: BTreeMap<Fingerprint, PrivateKey>,
    password: CachedPassword,
}

impl Keyring {
    fn key(&mut self, fp: &Fingerprint) -> CliResult<&PrivateKey> {
        if !self.unlocked.contains_key(fp) {
            let pem = self
                .pems
                .get(fp)
                .ok_or_else(|| Failure::key(format!("no stored server key {fp}")))?;
            let pw = self.password.get()?;
            let key = PrivateKey::from_pem(pem, &format!("server key {fp}"), || Ok(pw))?;
            self.unlocked.insert(*fp, key);
        }
        Ok(&self.unlocked[fp])
    }

    fn fingerprints(&self) -> BTreeSet<Fingerprint> {
        self.pems.keys().copied().collect()
    }
}

pub fn run(args: RewrapArgs, ctx: &mut Context) -> CliResult {
    let here = host_name().unwrap_or_default();
    let store = ctx.store()?;
    let active = store
        .active_server_key()
        .map_err(store_failure)?
        .ok_or_else(no_active_key)?;
    let active_key = PublicKey::from_pem(&active.public_key_pem)?;
    let mut ring = Keyring {
        pems: store
            .server_keys()
            .map_err(store_failure)?
            .into_iter()
            .map(|k| (k.fingerprint, k.private_key_pem))
            .collect(),
        unlocked: BTreeMap::new(),
        password: server_password(&args.server_password).cached(),
    };
    let files: Vec<PathBuf> = if args.all {
        store
            .backups(None)
            .map_err(store_failure)?
            .into_iter()
            .filter(|b| b.entry.host == here)
            .map(|b| PathBuf::from(b.entry.path))
            .collect()
    } else {
        args.files.clone()
    };
    if files.is_empty() {
        println!("nothing to rewrap");
        return Ok(());
    }

    let mut results = Vec::new();
    for path in &files {
        let mut audit = Audit {
            action: actions::REWRAP,
            backup_file: Some(path.display().to_string()),
            ..Audit::default()
        };
        audit.detail("to", active.fingerprint.to_string());
        let result = rewrap_one(ctx, path, &active_key, &mut ring, &here);
        if let Ok(Outcome::Rewrapped(r)) = &result {
            audit.detail(
                "recipients",
                r.iter().map(ToString::to_string).collect::<Vec<_>>(),
            );
        }
        let result = ctx.record_outcome(audit, result);
        results.push((path.clone(), result));
    }

    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    if args.json {
        print_json(&json!(
            results
                .iter()
                .map(|(p, r)| match r {
                    Ok(Outcome::Rewrapped(_)) => json!({ "file": p, "outcome": "rewrapped" }),
                    Ok(Outcome::AlreadyCurrent) =>
                        json!({ "file": p, "outcome": "already current" }),
                    Err(f) => json!({ "file": p, "outcome": "failed", "error": f.message }),
                })
                .collect::<Vec<_>>()
        ));
    } else {
        for (p, r) in &results {
            match r {
                Ok(Outcome::Rewrapped(_)) => println!("rewrapped        {}", p.display()),
                Ok(Outcome::AlreadyCurrent) => println!("already current  {}", p.display()),
                Err(f) => println!("FAILED           {}: {}", p.display(), f.message),
            }
        }
    }
    if failed > 0 {
        return Err(Failure::new(
            ExitCode::Io,
            format!("{failed} of {} files could not be rewrapped", results.len()),
        ));
    }
    Ok(())
}

fn rewrap_one(
    ctx: &mut Context,
    path: &Path,
    active: &PublicKey,
    ring: &mut Keyring,
    here: &str,
) -> CliResult<Outcome> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Failure::io(format!("opening {}", path.display()), e))?;
    let mut prefix = [0u8; DETECT_LEN];
    let n = file
        .read(&mut prefix)
        .map_err(|e| Failure::io(format!("reading {}", path.display()), e))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Failure::io("rewinding", e))?;
    let server_fps = ring.fingerprints();
    let outcome = match detect(&prefix[..n]) {
        Detected::Pgseal {
            version: v2::VERSION,
        } => {
            let prelude = v2::read_prelude(&mut std::io::BufReader::new(&file))?;
            let (_, slot) = prelude.active_slot()?;
            let recipients = slot.recipients();
            let old_servers: Vec<Fingerprint> = recipients
                .iter()
                .filter(|f| server_fps.contains(f))
                .copied()
                .collect();
            if old_servers == [active.fingerprint()] {
                return Ok(Outcome::AlreadyCurrent);
            }
            let Some(opener) = old_servers.first() else {
                return Err(Error::NoMatchingIdentity(recipients).into());
            };
            let identity = ring.key(opener)?;
            let keep: Vec<Fingerprint> = recipients
                .iter()
                .filter(|f| !server_fps.contains(f))
                .copied()
                .collect();
            let plan = prelude.plan_rewrap(
                &[identity as &dyn Identity],
                std::slice::from_ref(active),
                &keep,
            )?;
            plan.apply(&mut file)
                .and_then(|()| file.sync_all())
                .map_err(|e| Failure::io(format!("writing {}", path.display()), e))?;
            Outcome::Rewrapped(plan.recipients)
        }
        Detected::LegacyHybrid => {
            let len = file.metadata().map(|m| m.len()).ok();
            let mut reader = std::io::BufReader::new(&file);
            let header = hybrid::read_header(&mut reader, len)?;
            let mut session = None;
            for fp in &server_fps {
                if let Ok(k) = ring.key(fp)?.unwrap_file_key(&header.wrapped_key) {
                    session = Some((*fp, k));
                    break;
                }
            }
            let (opener, session) = session.ok_or(Error::SessionKeyUnwrap)?;
            if opener == active.fingerprint() {
                return Ok(Outcome::AlreadyCurrent);
            }
            let new_header = hybrid::LegacyHeader {
                wrapped_key: active.wrap_file_key(&session)?,
                ..header
            };
            let mut out = AtomicFile::create(path, true)?;
            out.write_all(&new_header.encode())
                .and_then(|()| std::io::copy(&mut reader, &mut out).map(|_| ()))
                .map_err(|e| Failure::io(format!("rewriting {}", path.display()), e))?;
            out.commit()?;
            Outcome::Rewrapped(vec![active.fingerprint()])
        }
        other => {
            return Err(Failure::invalid(format!(
                "{} is {}: only v2 and legacy hybrid files carry a wrapped key to rewrap",
                path.display(),
                other.name()
            )));
        }
    };
    if let Outcome::Rewrapped(recipients) = &outcome {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let store = ctx.store()?;
        if let Some(rec) = store
            .backup_by_path(here, &abs.display().to_string())
            .map_err(store_failure)?
        {
            store
                .set_backup_server_keys(rec.id, recipients)
                .map_err(store_failure)?;
        }
    }
    Ok(outcome)
}
