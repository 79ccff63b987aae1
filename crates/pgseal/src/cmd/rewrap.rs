//! `pgseal rewrap`: re-wraps backups' file keys to the active server key after a rotation, and
//! wipes the wrappings it supersedes, so the old key opens nothing and can be retired. Data and
//! signatures are untouched.
//!
//! v2 files take two slot-sized writes, each fsynced before the next: the new wrapping into the
//! inactive recipient slot, then zeros over the slot it superseded. A crash at any instant leaves
//! a file that opens with the old key or the new one; a file whose wipe is still owed (a crash
//! between the two, or a rewrap by an older pgseal) gets only the wipe on the next run. The cost
//! does not depend on the file's size. Legacy hybrid files have one wrapped key in an
//! unauthenticated header; overwriting it in place could tear, so they are rewritten whole into
//! an unnamed file and swapped in atomically, and the replaced copy's wrapped key is then zeroed.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use pgseal_core::detect::{DETECT_LEN, detect};
use pgseal_core::keys::Identity;
use pgseal_core::legacy::hybrid;
use pgseal_core::v2;
use pgseal_core::{Detected, Error, Fingerprint, PublicKey};
use pgseal_store::Action;
use serde_json::json;

use super::server_key::no_active_key;
use super::{host_name, print_json, server_password};
use crate::cli::RewrapArgs;
use crate::context::{Audit, Context, store_failure};
use crate::crashpoint;
use crate::failure::{CliResult, Failure};
use crate::files::{AtomicFile, sweep_replace_leftovers};
use pgseal_ops::keys::ServerKeyring;
use pgseal_ops::secret::Cached;

/// What happened to one file.
enum Outcome {
    Rewrapped(Vec<Fingerprint>),
    /// The active slot already named the active key; a superseded slot was wiped.
    Wiped,
    AlreadyCurrent,
}

impl Outcome {
    fn name(&self) -> &'static str {
        match self {
            Outcome::Rewrapped(_) => "rewrapped",
            Outcome::Wiped => "wiped superseded slot",
            Outcome::AlreadyCurrent => "already current",
        }
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
    let password = server_password(&args.server_password);
    let password = Cached::new(&password);
    let mut ring = ServerKeyring::load(ctx, &password)?;
    let files: Vec<PathBuf> = if args.all {
        ctx.store()?
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
            backup_file: Some(path.display().to_string()),
            ..Audit::new(Action::Rewrap)
        };
        audit.detail("to", active.fingerprint.to_string());
        let result = rewrap_one(ctx, path, &active_key, &mut ring, &here);
        match &result {
            Ok(Outcome::Rewrapped(r)) => audit.detail(
                "recipients",
                r.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ),
            Ok(Outcome::Wiped) => audit.detail("wiped_superseded_slot", true),
            _ => {}
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
                    Ok(outcome) => json!({ "file": p, "outcome": outcome.name() }),
                    Err(f) => json!({ "file": p, "outcome": "failed", "error": crate::failure::message(f) }),
                })
                .collect::<Vec<_>>()
        ));
    } else {
        for (p, r) in &results {
            match r {
                Ok(outcome) => println!("{:<22} {}", outcome.name(), p.display()),
                Err(f) => println!(
                    "{:<22} {}: {}",
                    "FAILED",
                    p.display(),
                    crate::failure::message(f)
                ),
            }
        }
    }
    if failed > 0 {
        return Err(Failure::Several {
            failed,
            total: results.len(),
            what: "files could not be rewrapped",
            kind: pgseal_ops::ErrorKind::Io,
        });
    }
    Ok(())
}

fn rewrap_one(
    ctx: &mut Context,
    path: &Path,
    active: &PublicKey,
    ring: &mut ServerKeyring<'_>,
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
            let plan = if old_servers == [active.fingerprint()] {
                match prelude.plan_wipe()? {
                    Some(wipe) => wipe,
                    None => return Ok(Outcome::AlreadyCurrent),
                }
            } else {
                let Some(opener) = old_servers.first() else {
                    return Err(Error::NoMatchingIdentity(recipients).into());
                };
                let identity = ring.key(opener)?;
                let keep: Vec<Fingerprint> = recipients
                    .iter()
                    .filter(|f| !server_fps.contains(f))
                    .copied()
                    .collect();
                prelude.plan_rewrap(
                    &[identity as &dyn Identity],
                    std::slice::from_ref(active),
                    &keep,
                )?
            };
            crashpoint::reached("rewrap:start");
            plan.apply(&mut file, |file, write| {
                crashpoint::reached(&format!("rewrap:{}:written", write.step.name()));
                file.sync_data()?;
                crashpoint::reached(&format!("rewrap:{}:durable", write.step.name()));
                Ok(())
            })
            .map_err(|e| Failure::io(format!("writing {}", path.display()), e))?;
            if plan.wipe_only() {
                Outcome::Wiped
            } else {
                Outcome::Rewrapped(plan.recipients)
            }
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
            let links = file
                .metadata()
                .map_err(|e| Failure::io(format!("reading {}", path.display()), e))?
                .nlink();
            if links > 1 {
                return Err(Failure::usage(format!(
                    "{} has {links} hard links: rewriting it would leave the other names holding \
                     the old wrapping; remove the other links (or copy the file) and run again",
                    path.display()
                )));
            }
            sweep_replace_leftovers(path)
                .map_err(|e| Failure::io(format!("cleaning up beside {}", path.display()), e))?;
            let new_header = hybrid::LegacyHeader {
                wrapped_key: active.wrap_file_key(&session)?,
                ..header.clone()
            };
            let mut out = AtomicFile::create(path, true)?;
            out.write_all(&new_header.encode())
                .and_then(|()| std::io::copy(&mut reader, &mut out).map(|_| ()))
                .map_err(|e| Failure::io(format!("rewriting {}", path.display()), e))?;
            crashpoint::reached("rewrap:legacy:copied");
            out.commit()?;
            crashpoint::reached("rewrap:legacy:replaced");
            // The replaced copy has no name now but may still sit on disk: zero its wrapped key.
            wipe_range(&mut file, header.wrapped_key_range())
                .map_err(|e| Failure::io(format!("wiping the replaced {}", path.display()), e))?;
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

/// Overwrites `range` of `file` with zeros and makes it durable.
fn wipe_range(file: &mut std::fs::File, range: std::ops::Range<u64>) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(range.start))?;
    let zeros = vec![0u8; (range.end - range.start) as usize];
    file.write_all(&zeros)?;
    file.sync_data()
}
