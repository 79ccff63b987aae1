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
//!
//! Files are found, read and written through the repository that holds them
//! ([`pgseal_ops::repo`]): `--all` takes every catalogued backup this host reaches, and a file
//! named on the command line is rewrapped in its own directory.

use std::io::BufRead;

use pgseal_core::detect::{DETECT_LEN, detect};
use pgseal_core::keys::Identity;
use pgseal_core::legacy::hybrid;
use pgseal_core::v2;
use pgseal_core::{Detected, Error, Fingerprint, PublicKey};
use pgseal_store::Action;
use serde_json::json;

use pgseal_ops::repo::{Location, Reach, RepoError};

use super::{print_json, server_password};
use crate::cli::RewrapArgs;
use crate::context::{Audit, Context, store_failure};
use crate::crashpoint;
use crate::failure::{CliResult, Failure};
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

/// A file to rewrap: as the user named it (a path) or the catalog did (a location).
enum Target {
    Named(String),
    Catalogued(Location),
}

impl Target {
    fn shown(&self) -> String {
        match self {
            Target::Named(p) => p.clone(),
            Target::Catalogued(l) => l.shown(),
        }
    }
}

pub fn run(args: RewrapArgs, ctx: &mut Context) -> CliResult {
    let reach = pgseal_ops::repo::reach(ctx);
    let store = ctx.store()?;
    let active = store
        .active_server_key()
        .map_err(store_failure)?
        .ok_or(pgseal_ops::Missing::ActiveServerKey)?;
    let active_key = PublicKey::from_pem(&active.public_key_pem)?;
    let password = server_password(&args.server_password);
    let password = Cached::new(&password);
    let mut ring = ServerKeyring::load(ctx, &password)?;
    let store = ctx.store()?;
    let files: Vec<Target> = if args.all {
        // Every catalogued backup this host reaches (its own files, in any directory).
        store
            .backups(None)
            .map_err(store_failure)?
            .into_iter()
            .filter(|b| reach.reaches(&b.entry.location))
            .map(|b| Target::Catalogued(b.entry.location))
            .collect()
    } else {
        args.files
            .iter()
            .map(|p| Target::Named(p.display().to_string()))
            .collect()
    };
    if files.is_empty() {
        println!("nothing to rewrap");
        return Ok(());
    }

    let mut results = Vec::new();
    for target in &files {
        let mut audit = Audit {
            backup_file: Some(target.shown()),
            ..Audit::new(Action::Rewrap)
        };
        audit.detail("to", active.fingerprint.to_string());
        let result = rewrap_one(ctx, target, &active_key, &mut ring, &reach);
        match &result {
            Ok(Outcome::Rewrapped(r)) => audit.detail(
                "recipients",
                r.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ),
            Ok(Outcome::Wiped) => audit.detail("wiped_superseded_slot", true),
            _ => {}
        }
        let result = ctx.record_outcome(audit, result);
        results.push((target.shown(), result));
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
                Ok(outcome) => println!("{:<22} {}", outcome.name(), p),
                Err(f) => println!("{:<22} {}: {}", "FAILED", p, crate::failure::message(f)),
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
    target: &Target,
    active: &PublicKey,
    ring: &mut ServerKeyring<'_>,
    reach: &Reach,
) -> CliResult<Outcome> {
    let location = match target {
        Target::Named(path) => reach.file(std::path::Path::new(path))?,
        Target::Catalogued(location) => location.clone(),
    };
    let repo = reach
        .repository_of(&location)?
        .ok_or_else(|| Failure::usage(format!("{location} is not on this host")))?;
    let shown = target.shown();
    let object = repo
        .open(&location)?
        .ok_or_else(|| Failure::from(RepoError::NotFound(location.clone())))?;
    let (version, size) = (object.version.clone(), object.size);
    let mut input = std::io::BufReader::new(object);
    let prefix = input
        .fill_buf()
        .map_err(|e| Failure::io(format!("reading {shown}"), e))?;
    let detected = detect(&prefix[..prefix.len().min(DETECT_LEN)]);
    let server_fps = ring.fingerprints();
    let outcome = match detected {
        Detected::Pgseal {
            version: v2::VERSION,
        } => {
            let prelude = v2::read_prelude(&mut input)?;
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
            repo.apply_rewrap(&location, &version, &plan)?;
            if plan.wipe_only() {
                Outcome::Wiped
            } else {
                Outcome::Rewrapped(plan.recipients)
            }
        }
        Detected::LegacyHybrid => {
            let header = hybrid::read_header(&mut input, Some(size))?;
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
                ..header.clone()
            };
            drop(input);
            repo.replace_head(
                &location,
                &version,
                &new_header.encode(),
                header.encoded_len(),
                header.wrapped_key_range(),
            )?;
            Outcome::Rewrapped(vec![active.fingerprint()])
        }
        other => {
            return Err(Failure::invalid(format!(
                "{shown} is {}: only v2 and legacy hybrid files carry a wrapped key to rewrap",
                other.name()
            )));
        }
    };
    if let Outcome::Rewrapped(recipients) = &outcome {
        // The catalog entry, by the location as the repository spells it or, for a file named
        // on the command line, as its path was recorded (through any symbolic link).
        let mut spellings = vec![location.clone()];
        if let Target::Named(path) = target
            && let Ok(abs) = std::path::absolute(path)
            && let Ok(l) = Location::file(reach.host(), &abs)
            && l != location
        {
            spellings.push(l);
        }
        let store = ctx.store()?;
        for l in &spellings {
            if let Some(rec) = store.backup_at(l).map_err(store_failure)? {
                store
                    .set_backup_server_keys(rec.id, recipients)
                    .map_err(store_failure)?;
                break;
            }
        }
    }
    Ok(outcome)
}
