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

/// A file to rewrap: as the caller named it (a path) or by its location (the catalog's, or an
/// `s3://` URL the caller named).
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
        Files::Named(paths) => paths
            .iter()
            .map(|p| match p.to_str().filter(|s| s.starts_with("s3://")) {
                Some(url) => Location::parse(url)
                    .map(Target::Catalogued)
                    .map_err(|e| Error::usage(e.to_string())),
                None => Ok(Target::Named(p.clone())),
            })
            .collect::<Result<_>>()?,
    };
    let mut items = Vec::new();
    let progress = crate::observe::Progress {
        total: Some(targets.len() as u64),
        unit: crate::observe::Unit::Files,
        ..Default::default()
    };
    // One file takes an instant (only its head is rewritten): count files, for many.
    let _shown = (targets.len() > 1).then(|| session.observer().transfer("rewrap", &progress));
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
        progress.read.add(1);
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::mpsc::{Receiver, Sender, channel};

    use pgseal_core::keys::Identity;
    use pgseal_core::v2::{Rewrap, SealParams};
    use pgseal_core::{PrivateKey, PublicKey};

    use super::*;
    use crate::keyholder::KeyHolder;
    use crate::testsite::{TestSite, key};

    /// What a key holder elsewhere is sent: bytes only.
    enum Request {
        Plan {
            raw: Vec<u8>,
            opener: Fingerprint,
            recipients: Vec<String>,
            keep: Vec<Fingerprint>,
        },
        Legacy {
            wrapped: Vec<u8>,
            to: String,
        },
    }

    /// A key holder that holds no key: like the custody service's client, it sends a file's
    /// prelude bytes (or a legacy wrapped key) to a service — here a thread that owns the
    /// private keys — and gets back only the new slot writes or the new wrapping.
    struct Remote {
        holds: BTreeSet<Fingerprint>,
        requests: Sender<Request>,
        plans: Receiver<std::result::Result<Rewrap, String>>,
        wrappings: Receiver<std::result::Result<LegacyRewrap, String>>,
        asked: usize,
    }

    impl Remote {
        fn serve(keys: Vec<PrivateKey>) -> Remote {
            let holds = keys.iter().map(PrivateKey::fingerprint).collect();
            let (requests, inbox) = channel::<Request>();
            let (plan_tx, plans) = channel();
            let (wrap_tx, wrappings) = channel();
            std::thread::spawn(move || {
                for request in inbox {
                    match request {
                        Request::Plan {
                            raw,
                            opener,
                            recipients,
                            keep,
                        } => {
                            // The service reads the prelude itself; the file key stays here.
                            let planned = (|| {
                                let prelude = v2::read_prelude(&mut &raw[..])?;
                                let key = keys.iter().find(|k| k.fingerprint() == opener);
                                let key = key.ok_or(pgseal_core::Error::SessionKeyUnwrap)?;
                                let recipients = recipients
                                    .iter()
                                    .map(|pem| PublicKey::from_pem(pem))
                                    .collect::<pgseal_core::Result<Vec<_>>>()?;
                                prelude.plan_rewrap(&[key as &dyn Identity], &recipients, &keep)
                            })();
                            let _ = plan_tx.send(planned.map_err(|e| e.to_string()));
                        }
                        Request::Legacy { wrapped, to } => {
                            let to = PublicKey::from_pem(&to).unwrap();
                            let answer = keys
                                .iter()
                                .find_map(|k| {
                                    Some((k.fingerprint(), k.unwrap_file_key(&wrapped).ok()?))
                                })
                                .ok_or_else(|| "no key opens it".to_owned())
                                .map(|(from, session_key)| {
                                    if from == to.fingerprint() {
                                        LegacyRewrap::Current
                                    } else {
                                        LegacyRewrap::Rewrapped {
                                            from,
                                            wrapped_key: to.wrap_file_key(&session_key).unwrap(),
                                        }
                                    }
                                });
                            let _ = wrap_tx.send(answer);
                        }
                    }
                }
            });
            Remote {
                holds,
                requests,
                plans,
                wrappings,
                asked: 0,
            }
        }
    }

    impl KeyHolder for Remote {
        fn holds(&self) -> BTreeSet<Fingerprint> {
            self.holds.clone()
        }

        fn plan_rewrap(
            &mut self,
            _prelude: &v2::Prelude,
            raw: &[u8],
            opener: &Fingerprint,
            recipients: &[PublicKey],
            keep: &[Fingerprint],
        ) -> Result<Rewrap> {
            self.asked += 1;
            self.requests
                .send(Request::Plan {
                    raw: raw.to_vec(),
                    opener: *opener,
                    recipients: recipients.iter().map(PublicKey::to_pem).collect(),
                    keep: keep.to_vec(),
                })
                .unwrap();
            self.plans.recv().unwrap().map_err(Error::key)
        }

        fn rewrap_legacy(&mut self, wrapped: &[u8], to: &PublicKey) -> Result<LegacyRewrap> {
            self.asked += 1;
            self.requests
                .send(Request::Legacy {
                    wrapped: wrapped.to_vec(),
                    to: to.to_pem(),
                })
                .unwrap();
            self.wrappings.recv().unwrap().map_err(Error::key)
        }
    }

    /// The same key again (for the service thread to own).
    fn copy(k: &PrivateKey) -> PrivateKey {
        let pw = pgseal_core::Password::new(crate::testsite::PASSWORD.into());
        PrivateKey::from_pem(&crate::testsite::encrypted(k), "a copy", || Ok(pw)).unwrap()
    }

    fn seal_v2(t: &TestSite, name: &str, to: &[PublicKey]) -> PathBuf {
        let path = t.path(name);
        let mut file = std::fs::File::create(&path).unwrap();
        v2::seal(&b"a dump"[..], &mut file, &SealParams::new(&t.signer, to)).unwrap();
        path
    }

    fn prelude_of(path: &std::path::Path) -> v2::Prelude {
        v2::read_prelude(&mut std::fs::File::open(path).unwrap()).unwrap()
    }

    /// Through the operations' API, with a key holder that holds no key (the custody
    /// service's shape): a v2 file moves to the new active key, its recovery key kept, the old
    /// wrapping wiped; a legacy hybrid file moves too; a file no held key opens fails on its
    /// own, audited, and fails the run.
    #[test]
    fn rewrap_asks_a_key_holder_that_never_hands_out_a_private_key() {
        let mut t = TestSite::new();
        let old = copy(&t.server);
        let recovery = key();
        let stranger = key();
        let v2_file = seal_v2(
            &t,
            "a.pgseal",
            &[old.public().clone(), recovery.public().clone()],
        );
        let unknown = seal_v2(&t, "b.pgseal", &[stranger.public().clone()]);
        let legacy = t.path("c.pgseal");
        hybrid::encrypt(
            &b"a legacy dump"[..],
            std::fs::File::create_new(&legacy).unwrap(),
            old.public(),
            &t.signer,
            t.user.id as u64,
            1_700_000_000,
        )
        .unwrap();
        let new = t.rotate();

        let mut holder = Remote::serve(vec![copy(&old), copy(&new)]);
        let files = [v2_file.clone(), unknown.clone(), legacy.clone()];
        let report = rewrap(&mut t.session, &mut holder, Files::Named(&files)).unwrap();
        assert_eq!(report.to, new.fingerprint());
        assert_eq!(holder.asked, 2, "one plan, one legacy wrapping");
        let outcomes: Vec<_> = report.items.iter().map(|(_, r)| r.as_ref().ok()).collect();
        assert_eq!(
            outcomes,
            vec![
                Some(&Outcome::Rewrapped(vec![
                    new.fingerprint(),
                    recovery.fingerprint()
                ])),
                None,
                Some(&Outcome::Rewrapped(vec![new.fingerprint()])),
            ]
        );
        let failure = report.items[1].1.as_ref().unwrap_err();
        assert!(
            matches!(failure, Error::Core(pgseal_core::Error::NoMatchingIdentity(r)) if *r == vec![stranger.fingerprint()]),
            "{failure:?}"
        );
        let verdict = report.result().unwrap_err();
        assert!(matches!(
            verdict,
            Error::Several {
                failed: 1,
                total: 3,
                ..
            }
        ));
        assert_eq!(verdict.kind(), ErrorKind::Io);

        // The v2 file: the new key and the recovery key open it, the old one no more, and the
        // superseded slot is wiped.
        let prelude = prelude_of(&v2_file);
        assert!(prelude.superseded_slot().is_none());
        let to_new = [new.public().clone()];
        for opener in [&new, &recovery] {
            prelude
                .plan_rewrap(&[opener as &dyn Identity], &to_new, &[])
                .unwrap();
        }
        assert!(
            prelude
                .plan_rewrap(&[&old as &dyn Identity], &to_new, &[])
                .is_err()
        );
        // The legacy file: its session key is wrapped to the new key only.
        let header = hybrid::read_header(&mut std::fs::File::open(&legacy).unwrap(), None).unwrap();
        assert!(new.unwrap_file_key(&header.wrapped_key).is_ok());
        assert!(old.unwrap_file_key(&header.wrapped_key).is_err());

        // One entry per file, the failure among them.
        let entries = t.session.store().unwrap().audit_entries(10).unwrap();
        let summary: Vec<(Action, Option<String>, bool)> = entries
            .into_iter()
            .map(|e| (e.entry.action, e.entry.backup_file, e.entry.success))
            .collect();
        let shown = |p: &PathBuf| Some(p.display().to_string());
        assert_eq!(
            summary,
            vec![
                (Action::Rewrap, shown(&v2_file), true),
                (Action::Rewrap, shown(&unknown), false),
                (Action::Rewrap, shown(&legacy), true),
            ]
        );

        // Run again: nothing asked of the holder, nothing left to do.
        let again = rewrap(&mut t.session, &mut holder, Files::Named(&files[..1])).unwrap();
        assert_eq!(again.items[0].1.as_ref().unwrap(), &Outcome::AlreadyCurrent);
        assert_eq!(holder.asked, 2);
    }
}
