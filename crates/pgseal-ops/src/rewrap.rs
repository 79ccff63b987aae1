//! Rewrapping: moving backups' file keys to the active server key after a rotation, and wiping
//! the wrappings that superseded, so the old key opens nothing and can be retired. Data and
//! signatures are untouched.
//!
//! v2 files take two slot-sized writes, each durable before the next: the new wrapping into the
//! inactive recipient slot, then zeros over the slot it superseded. A crash at any instant
//! leaves a file that opens with the old key or the new one; a file whose wipe is still owed (a
//! crash between the two, or a rewrap by an older pgseal) gets only the wipe on the next run.
//! The cost does not depend on the file's size. Legacy hybrid files have one wrapped key in an
//! unauthenticated header; overwriting it in place could tear, so they are rewritten whole and
//! swapped in atomically, and the replaced copy's wrapped key is then zeroed.
//!
//! The new wrappings come from a [`KeyHolder`]: the operation never holds a private key. Files
//! are found, read and written through the repository that holds them ([`crate::repo`]):
//! every catalogued backup this host reaches, or files named by path, each rewrapped in its
//! own directory. Each file is its own audited operation (`REWRAP`).

use std::io::BufRead;
use std::path::PathBuf;

use pgseal_core::detect::{DETECT_LEN, detect};
use pgseal_core::legacy::hybrid;
use pgseal_core::v2;
use pgseal_core::{Detected, Fingerprint, PublicKey};
use pgseal_store::Action;

use crate::crashpoint;
use crate::error::{Error, ErrorKind, Result};
use crate::files::Tee;
use crate::keyholder::{KeyHolder, LegacyRewrap};
use crate::keys;
use crate::repo::{self, Location, Reach, RepoError};
use crate::session::{Operation, Session};

/// Which files to rewrap.
#[derive(Debug, Clone, Copy)]
pub enum Files<'a> {
    /// Every catalogued backup this host reaches (its own files, in any directory).
    Catalogued,
    /// These files, by path (the caller's symbolic links are followed).
    Named(&'a [PathBuf]),
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its file key is now wrapped to these keys (the active server key, and recovery keys
    /// kept).
    Rewrapped(Vec<Fingerprint>),
    /// Its active slot already named the active key; the superseded slot was wiped.
    Wiped,
    /// Nothing to do: it already opens with the active key alone.
    AlreadyCurrent,
}

/// What a rewrap did, file by file.
#[derive(Debug)]
pub struct RewrapReport {
    /// The active server key files were moved to.
    pub to: Fingerprint,
    /// Each file (as named, or its catalogued location as shown) and what happened to it, or
    /// why it failed (audited on its own).
    pub items: Vec<(String, Result<Outcome>)>,
}

impl RewrapReport {
    /// How many files could not be rewrapped.
    pub fn failed(&self) -> usize {
        self.items.iter().filter(|(_, r)| r.is_err()).count()
    }

    /// The run's verdict: it fails ([`Error::Several`], an I/O kind) if any file failed.
    pub fn result(&self) -> Result<()> {
        match self.failed() {
            0 => Ok(()),
            failed => Err(Error::Several {
                failed,
                total: self.items.len(),
                what: "files could not be rewrapped",
                kind: ErrorKind::Io,
            }),
        }
    }
}

/// A file to rewrap: as the caller named it (a path) or the catalog did (a location).
enum Target {
    Named(PathBuf),
    Catalogued(Location),
}

impl Target {
    fn shown(&self) -> String {
        match self {
            Target::Named(p) => p.display().to_string(),
            Target::Catalogued(l) => l.shown(),
        }
    }
}

/// Rewraps `files` to the site's active server key with the keys `holder` holds. Fails only
/// if there is no active key or the catalog cannot be read; each file's own failure is in the
/// report ([`RewrapReport::result`]). Nothing to rewrap is an empty report, and no entry.
pub fn rewrap(
    session: &mut Session,
    holder: &mut dyn KeyHolder,
    files: Files<'_>,
) -> Result<RewrapReport> {
    let reach = repo::reach(session);
    let (to, active) = keys::active_server_key(session)?;
    let targets: Vec<Target> = match files {
        Files::Catalogued => session
            .store()?
            .backups(None)?
            .into_iter()
            .filter(|b| reach.reaches(&b.entry.location))
            .map(|b| Target::Catalogued(b.entry.location))
            .collect(),
        Files::Named(paths) => paths.iter().cloned().map(Target::Named).collect(),
    };
    let mut items = Vec::new();
    for target in &targets {
        let mut audit = Operation {
            backup_file: Some(target.shown()),
            ..Operation::new(Action::Rewrap)
        };
        audit.detail("to", to.to_string());
        let result = rewrap_one(session, target, &active, holder, &reach);
        match &result {
            Ok(Outcome::Rewrapped(r)) => audit.detail(
                "recipients",
                r.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ),
            Ok(Outcome::Wiped) => audit.detail("wiped_superseded_slot", true),
            _ => {}
        }
        let result = session.record_outcome(audit, result);
        items.push((target.shown(), result));
    }
    Ok(RewrapReport { to, items })
}

fn rewrap_one(
    session: &mut Session,
    target: &Target,
    active: &PublicKey,
    holder: &mut dyn KeyHolder,
    reach: &Reach,
) -> Result<Outcome> {
    let location = match target {
        Target::Named(path) => reach.file(path)?,
        Target::Catalogued(location) => location.clone(),
    };
    let repo = reach
        .repository_of(&location)?
        .ok_or_else(|| Error::usage(format!("{location} is not on this host")))?;
    let shown = target.shown();
    let object = repo
        .open(&location)?
        .ok_or_else(|| Error::from(RepoError::NotFound(location.clone())))?;
    let (version, size) = (object.version.clone(), object.size);
    let mut input = std::io::BufReader::new(object);
    let prefix = input
        .fill_buf()
        .map_err(|e| Error::io(format!("reading {shown}"), e))?;
    let detected = detect(&prefix[..prefix.len().min(DETECT_LEN)]);
    let held = holder.holds();
    let outcome = match detected {
        Detected::Pgseal {
            version: v2::VERSION,
        } => {
            // The bytes the prelude is read from, for a key holder elsewhere.
            let mut raw = Vec::new();
            let prelude = v2::read_prelude(&mut Tee {
                reader: &mut input,
                copy: &mut raw,
            })?;
            let (_, slot) = prelude.active_slot()?;
            let recipients = slot.recipients();
            let old_servers: Vec<Fingerprint> = recipients
                .iter()
                .filter(|f| held.contains(f))
                .copied()
                .collect();
            let plan = if old_servers == [active.fingerprint()] {
                match prelude.plan_wipe()? {
                    Some(wipe) => wipe,
                    None => return Ok(Outcome::AlreadyCurrent),
                }
            } else {
                let Some(opener) = old_servers.first() else {
                    return Err(pgseal_core::Error::NoMatchingIdentity(recipients).into());
                };
                let keep: Vec<Fingerprint> = recipients
                    .iter()
                    .filter(|f| !held.contains(f))
                    .copied()
                    .collect();
                holder.plan_rewrap(&prelude, &raw, opener, std::slice::from_ref(active), &keep)?
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
            let wrapped_key = match holder.rewrap_legacy(&header.wrapped_key, active)? {
                LegacyRewrap::Current => return Ok(Outcome::AlreadyCurrent),
                LegacyRewrap::Rewrapped { wrapped_key, .. } => wrapped_key,
            };
            let new_header = hybrid::LegacyHeader {
                wrapped_key,
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
            return Err(Error::invalid(format!(
                "{shown} is {}: only v2 and legacy hybrid files carry a wrapped key to rewrap",
                other.name()
            )));
        }
    };
    if let Outcome::Rewrapped(recipients) = &outcome {
        // The catalog entry, by the location as the repository spells it or, for a file named
        // by path, as its path was recorded (through any symbolic link).
        let mut spellings = vec![location.clone()];
        if let Target::Named(path) = target
            && let Ok(abs) = std::path::absolute(path)
            && let Ok(l) = Location::file(reach.host(), &abs)
            && l != location
        {
            spellings.push(l);
        }
        let store = session.store()?;
        for l in &spellings {
            if let Some(rec) = store.backup_at(l)? {
                store.set_backup_server_keys(rec.id, recipients)?;
                break;
            }
        }
    }
    Ok(outcome)
}
