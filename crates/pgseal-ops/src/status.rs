//! `pgseal status`: what a person or a monitor needs to know about a site — per database the
//! newest backup (time, age, size, duration, verified or not), the last restore check and its
//! result, the failures of the last 24 hours; the active server key's age; the audit chain —
//! and a judgement of it against thresholds, in the states of the Nagios/Icinga plugin
//! conventions ([`evaluate`], pure: tested with an explicit `now`).
//!
//! Where each fact comes from, and how far it can be trusted:
//!
//! - **time, size, database** of a backup: its catalog entry (store data). The newest backup of
//!   each database is also checked against its own signed header ([`crate::examine`]: its
//!   prelude only, a few KiB), when this host reaches it: a header that disagrees with the
//!   catalog (signer, creator, time, database) is reported, so a catalog row moved forward in
//!   time cannot hide a stale backup. A backup on another host, or in an object store the
//!   session does not reach, is shown as not checked.
//! - **duration**: the `duration_ms` detail of the `BACKUP` audit entry that catalogued it (every
//!   entry records the time from its operation's start to its writing; for `backup --all`
//!   that is each database's own dump, for `backup DB` it includes unlocking the signing key).
//! - **verified**: a successful `VERIFY` or `RESTORE` (`restore --check` or a real restore —
//!   both verify every byte) of that backup, or of a copy of it, recorded after it was made.
//!   Entries name the backup by its catalog id (`backup_id`); older entries by its path.
//!   "Never verified" is a state of its own.
//! - **restore checks** and **failures**: audit entries naming the database (`database`).
//! - **the chain**: the whole log walked as `audit verify` walks it ([`pgseal_store::chain`]):
//!   one read of every entry and a SHA-256 of each — linear in the log's size. The anchors of
//!   the newest backups' signed headers are checked against it too (a lookup each).
//!
//! What status cannot see: the audit log can be cut back at its end by whoever can write the
//! store, and what is left is still a valid chain. A cut past an entry the newest backup of a
//! database anchors is found (the anchor names an entry the log no longer holds); entries made
//! after the newest anchor — a failed restore check since the last backup, say — can vanish
//! unseen. `audit verify` (anchors of every backup) and the key-custody service's head narrow
//! that window; `audit export` to an append-only system closes it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use pgseal_core::time::Timestamp;
use pgseal_store::chain::ChainBreak;
use pgseal_store::{Action, AuditEntry, AuditFilter, BackupRecord, BackupStatus};
use serde_json::Value;

use crate::error::Result;
use crate::examine::{Examined, examine, header_mismatch};
use crate::session::Session;

/// A day, in milliseconds: the window failures are counted over.
pub const FAILURE_WINDOW_MS: i64 = 24 * 3_600_000;

/// A site's state, as read from its store (and the newest backups' signed headers).
#[derive(Debug, Clone)]
pub struct Status {
    /// When it was read.
    pub now: Timestamp,
    /// Every database the catalog or the last day's failures name, by name.
    pub databases: Vec<DatabaseStatus>,
    /// The active server key, if there is one.
    pub server_key: Option<ServerKeyAge>,
    /// The audit chain.
    pub chain: ChainState,
}

/// One database.
#[derive(Debug, Clone)]
pub struct DatabaseStatus {
    /// Its name.
    pub database: String,
    /// Its newest live (not pruned) backup; `None`: it has none.
    pub last_backup: Option<LastBackup>,
    /// Its last restore check (`restore --check`), passed or failed.
    pub last_check: Option<Check>,
    /// When a restore check of it last passed.
    pub last_good_check: Option<Timestamp>,
    /// Failed audit entries naming it in the last 24 hours (backups, checks, restores…).
    pub failures_24h: u64,
}

/// The newest backup of a database.
#[derive(Debug, Clone)]
pub struct LastBackup {
    /// Its catalog entry's id (the first entry, when it has copies).
    pub id: i64,
    /// Where it is, as shown (a path on its host, or a URL).
    pub location: String,
    /// When it was made (catalog).
    pub created_at: Timestamp,
    /// The sealed file's size in bytes (catalog).
    pub size_bytes: i64,
    /// How long making it took, when its audit entry says.
    pub duration_ms: Option<u64>,
    /// Its latest successful verification (made after it was); `None`: never verified.
    pub verified: Option<Verified>,
    /// What its signed header says of the catalog entry.
    pub header: HeaderCheck,
}

/// A successful verification of a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// When.
    pub at: Timestamp,
    /// By what: `verify`, `restore --check` or `restore`.
    pub by: &'static str,
}

/// The newest backup's signed header against its catalog entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderCheck {
    /// Signed by its creator's known key, and it says what the catalog says.
    Matches,
    /// It does not say what the catalog says, or cannot be vouched for: why.
    Mismatch(String),
    /// The file is not where the catalog says.
    Missing,
    /// No copy of it is within reach of this host (another host's files): nothing to check
    /// from here, and nothing concluded.
    OutOfReach,
    /// It could not be read from here (an object store not reached, an I/O error): why.
    NotChecked(String),
}

/// A restore check (`restore --check`).
#[derive(Debug, Clone)]
pub struct Check {
    /// When it ended.
    pub at: Timestamp,
    /// Whether it passed.
    pub ok: bool,
    /// The backup it checked (catalog id), when its entry names one.
    pub backup_id: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// The active server key.
#[derive(Debug, Clone)]
pub struct ServerKeyAge {
    /// Its fingerprint.
    pub fingerprint: String,
    /// When it was made (stored).
    pub created_at: Timestamp,
}

/// The audit chain's state.
#[derive(Debug, Clone)]
pub struct ChainState {
    /// Entries walked (all of them, when the chain is intact).
    pub entries: i64,
    /// Where it breaks, if it does.
    pub broken: Option<ChainBreak>,
    /// Anchors (from the newest backups' signed headers) checked against it.
    pub anchors_checked: usize,
    /// Anchors the log no longer agrees with: cut back, or rewritten.
    pub anchor_problems: Vec<String>,
    /// How long the walk took, in milliseconds.
    pub walk_ms: u64,
}

impl ChainState {
    /// Unbroken, not empty, and every anchor checked agrees.
    pub fn intact(&self) -> bool {
        self.broken.is_none() && self.entries > 0 && self.anchor_problems.is_empty()
    }
}

/// Reads the site's status at `now` (the caller's clock: the 24-hour window and ages are
/// measured from it). The store is opened read-only and nothing is recorded: a monitor may run
/// this every minute with an account that can only read the store.
pub fn status(session: &mut Session, now: Timestamp) -> Result<Status> {
    let history = session.read_store()?.backup_history()?;
    let server_key = session
        .read_store()?
        .active_server_key()?
        .map(|k| ServerKeyAge {
            fingerprint: k.fingerprint.to_string(),
            created_at: k.created_at,
        });

    // The newest live backup of each database, and every live entry of it (its copies).
    let mut newest: BTreeMap<String, &BackupRecord> = BTreeMap::new();
    for b in history.iter().filter(|b| b.status == BackupStatus::Ok) {
        let slot = newest.entry(b.entry.database.clone()).or_insert(b);
        // Oldest first: a later entry is as new or newer; an original beats its copies.
        if b.entry.created_at > slot.entry.created_at {
            *slot = b;
        }
    }
    let root = |b: &BackupRecord| b.copy_of.unwrap_or(b.id);
    // Paths and locations of every catalogued entry, for entries that name a backup by path.
    let by_path: BTreeMap<String, (i64, String)> = history
        .iter()
        .flat_map(|b| {
            let id = (root(b), b.entry.database.clone());
            [
                (b.entry.location.shown(), id.clone()),
                (b.entry.location.as_str().to_owned(), id),
            ]
        })
        .collect();
    let named = |e: &AuditEntry| -> (Option<i64>, Option<String>) {
        let details: Value = serde_json::from_str(&e.entry.details).unwrap_or(Value::Null);
        let id = details.get("backup_id").and_then(Value::as_i64);
        let db = details
            .get("database")
            .and_then(Value::as_str)
            .map(str::to_owned);
        match (
            id,
            db,
            e.entry.backup_file.as_ref().and_then(|f| by_path.get(f)),
        ) {
            (Some(id), Some(db), _) => (Some(id), Some(db)),
            (id, db, Some((pid, pdb))) => (id.or(Some(*pid)), db.or(Some(pdb.clone()))),
            (id, db, None) => (id, db),
        }
    };

    // Entries since the oldest of the newest backups (their durations and verifications),
    // restore entries of all time (the last check may be a month old), failures of a day.
    let since = newest.values().map(|b| b.entry.created_at).min();
    let store = session.read_store()?;
    let recent = |store: &mut pgseal_store::Store, action: Action| {
        store.audit_query(&AuditFilter {
            action: Some(action),
            since,
            ..AuditFilter::default()
        })
    };
    let (backups, verifies) = match since {
        Some(_) => (
            recent(store, Action::Backup)?,
            recent(store, Action::Verify)?,
        ),
        None => (Vec::new(), Vec::new()),
    };
    let restores = store.audit_query(&AuditFilter {
        action: Some(Action::Restore),
        ..AuditFilter::default()
    })?;
    let failures = store.audit_query(&AuditFilter {
        since: Some(Timestamp(now.millis() - FAILURE_WINDOW_MS)),
        failed_only: true,
        ..AuditFilter::default()
    })?;

    let mut failures_by_db: BTreeMap<String, u64> = BTreeMap::new();
    for e in &failures {
        if let (_, Some(db)) = named(e) {
            *failures_by_db.entry(db).or_default() += 1;
        }
    }
    let is_check = |e: &AuditEntry| {
        serde_json::from_str::<Value>(&e.entry.details)
            .ok()
            .and_then(|d| d.get("check").and_then(Value::as_bool))
            == Some(true)
    };

    let names: BTreeSet<String> = history
        .iter()
        .map(|b| b.entry.database.clone())
        .chain(failures_by_db.keys().cloned())
        .collect();
    let mut databases = Vec::new();
    let mut anchors = Vec::new();
    for name in names {
        let checks: Vec<&AuditEntry> = restores
            .iter()
            .filter(|e| is_check(e) && named(e).1.as_deref() == Some(name.as_str()))
            .collect();
        let last_check = checks.last().map(|e| Check {
            at: e.entry.timestamp,
            ok: e.entry.success,
            backup_id: named(e).0,
            error: serde_json::from_str::<Value>(&e.entry.details)
                .ok()
                .and_then(|d| d.get("error").and_then(Value::as_str).map(str::to_owned)),
        });
        let last_good_check = checks
            .iter()
            .rev()
            .find(|e| e.entry.success)
            .map(|e| e.entry.timestamp);
        let last_backup = match newest.get(&name) {
            None => None,
            Some(b) => {
                let id = root(b);
                let made = b.entry.created_at;
                let about_it =
                    |e: &&AuditEntry| e.entry.timestamp >= made && named(e).0 == Some(id);
                let duration_ms = backups
                    .iter()
                    .filter(about_it)
                    .find(|e| e.entry.success)
                    .and_then(|e| {
                        serde_json::from_str::<Value>(&e.entry.details)
                            .ok()?
                            .get("duration_ms")?
                            .as_u64()
                    });
                let verified = verifies
                    .iter()
                    .chain(restores.iter())
                    .filter(about_it)
                    .filter(|e| e.entry.success)
                    .map(|e| Verified {
                        at: e.entry.timestamp,
                        by: match (&e.entry.action, is_check(e)) {
                            (Action::Verify, _) => "verify",
                            (_, true) => "restore --check",
                            (_, false) => "restore",
                        },
                    })
                    .max_by_key(|v| v.at);
                let copies: Vec<&BackupRecord> = history
                    .iter()
                    .filter(|c| c.status == BackupStatus::Ok && root(c) == id)
                    .collect();
                let (header, anchor) = examine_newest(session, &copies)?;
                if let Some(anchor) = anchor {
                    anchors.push((name.clone(), anchor));
                }
                Some(LastBackup {
                    id,
                    location: b.entry.location.shown(),
                    created_at: made,
                    size_bytes: b.entry.size_bytes,
                    duration_ms,
                    verified,
                    header,
                })
            }
        };
        databases.push(DatabaseStatus {
            failures_24h: failures_by_db.get(&name).copied().unwrap_or(0),
            database: name,
            last_backup,
            last_check,
            last_good_check,
        });
    }

    let started = Instant::now();
    let walked = session.read_store()?.verify_audit_chain()?;
    let walk_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (entries, broken) = match walked {
        Ok(n) => (n, None),
        Err(b) => (b.seq - 1, Some(b)),
    };
    let mut anchor_problems = Vec::new();
    for (database, (seq, hash)) in &anchors {
        let held = session.read_store()?.audit_entry(*seq)?;
        match held {
            None => anchor_problems.push(format!(
                "the newest backup of {} anchors audit entry {seq}, which the log no longer \
                 holds: the log was cut back",
                crate::show::name(database)
            )),
            Some(e) if e.entry_hash.0 != *hash => anchor_problems.push(format!(
                "the newest backup of {} anchors audit entry {seq}, which differs in the log: \
                 the log was rewritten",
                crate::show::name(database)
            )),
            Some(_) => {}
        }
    }
    Ok(Status {
        now,
        databases,
        server_key,
        chain: ChainState {
            entries,
            broken,
            anchors_checked: anchors.len(),
            anchor_problems,
            walk_ms,
        },
    })
}

/// An audit anchor from a signed header: the entry's `seq` and hash.
type Anchor = (i64, [u8; 32]);

/// Reads the signed header of the first of `copies` (one backup's live entries, original
/// first) this session reaches and sets it beside its catalog entry; with the audit anchor it
/// holds, when it could be vouched for.
fn examine_newest(
    session: &mut Session,
    copies: &[&BackupRecord],
) -> Result<(HeaderCheck, Option<Anchor>)> {
    let reach = crate::repo::reach(session);
    let mut why_not = None;
    for b in copies {
        let location = &b.entry.location;
        let repo = match reach.repository_of(location) {
            Ok(Some(repo)) => repo,
            Ok(None) => continue,
            Err(e) => {
                why_not = Some(e.to_string());
                continue;
            }
        };
        let object = match repo.open(location) {
            Ok(Some(object)) => object,
            Ok(None) => return Ok((HeaderCheck::Missing, None)),
            Err(e) => {
                why_not = Some(e.to_string());
                continue;
            }
        };
        let examined = examine(
            object,
            &mut |fp| match session.read_store()?.user_key(fp)? {
                Some(k) => Ok(Some(pgseal_core::PublicKey::from_pem(&k.public_key_pem)?)),
                None => Ok(None),
            },
        )?;
        return Ok(match examined {
            Examined::Signed(prelude) => match header_mismatch(&prelude.header, &b.entry) {
                Some(why) => (HeaderCheck::Mismatch(why), None),
                None => (
                    HeaderCheck::Matches,
                    prelude
                        .header
                        .metadata
                        .audit_anchor
                        .and_then(|a| Some((i64::try_from(a.seq).ok()?, a.entry_hash))),
                ),
            },
            Examined::Legacy(kind) | Examined::Foreign(kind) => (
                HeaderCheck::Mismatch(format!("the file is {kind}, not a pgseal v2 backup")),
                None,
            ),
            Examined::Unvouched { reason, .. } => (HeaderCheck::Mismatch(reason), None),
        });
    }
    Ok((
        why_not.map_or(HeaderCheck::OutOfReach, HeaderCheck::NotChecked),
        None,
    ))
}

/// A state of the Nagios/Icinga plugin conventions, which is also its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// 0: all is well.
    Ok = 0,
    /// 1: something needs looking at.
    Warning = 1,
    /// 2: backups are not happening or cannot be trusted.
    Critical = 2,
    /// 3: the state could not be found out (the store cannot be read).
    Unknown = 3,
}

impl State {
    /// `OK`, `WARNING`, `CRITICAL`, `UNKNOWN`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
            State::Unknown => "UNKNOWN",
        }
    }
}

/// What the site is held to.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// A database's newest backup may be this old at most, in milliseconds.
    pub max_age_ms: i64,
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How bad.
    pub state: State,
    /// The database concerned, if one.
    pub database: Option<String>,
    /// What is wrong, in a few words.
    pub message: String,
}

/// A status held to thresholds.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The worst state found (OK when nothing was).
    pub state: State,
    /// Everything found, worst first.
    pub findings: Vec<Finding>,
}

impl Evaluation {
    /// The plugin's one-line summary: `PGSEAL CRITICAL - shop: …; payroll: …`.
    pub fn summary(&self, databases: usize) -> String {
        let what = if self.findings.is_empty() {
            format!(
                "{databases} database{} backed up within limits, audit chain intact",
                if databases == 1 { "" } else { "s" }
            )
        } else {
            self.findings
                .iter()
                .map(|f| match &f.database {
                    Some(db) => format!("{}: {}", crate::show::name(db), f.message),
                    None => f.message.clone(),
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        format!("PGSEAL {} - {what}", self.state.as_str())
    }
}

/// Holds `status` to `thresholds` at `now`. CRITICAL: the audit chain broken, empty or
/// disagreeing with an anchor; a database with no live backup, one older than the maximum
/// age, one whose signed header disagrees with the catalog or whose file is gone; a last
/// restore check that failed. WARNING: a database (not the cluster's globals) never
/// restore-checked; failures in the last
/// 24 hours; a newest backup whose header could not be read from here for a reason other than
/// being out of reach; no backups catalogued at all.
pub fn evaluate(status: &Status, thresholds: &Thresholds, now: Timestamp) -> Evaluation {
    let mut findings = Vec::new();
    let mut add = |state, database: Option<&str>, message: String| {
        findings.push(Finding {
            state,
            database: database.map(str::to_owned),
            message,
        })
    };
    let chain = &status.chain;
    if let Some(b) = &chain.broken {
        add(
            State::Critical,
            None,
            format!("audit chain broken at entry {}: {}", b.seq, b.reason),
        );
    } else if chain.entries == 0 {
        add(
            State::Critical,
            None,
            "audit log empty (emptied, or the store re-created)".into(),
        );
    }
    for p in &chain.anchor_problems {
        add(State::Critical, None, p.clone());
    }
    if status.databases.is_empty() {
        add(State::Warning, None, "no backups catalogued".into());
    }
    for d in &status.databases {
        let db = Some(d.database.as_str());
        match &d.last_backup {
            None => add(State::Critical, db, "no backup".into()),
            Some(b) => {
                let age = now.millis() - b.created_at.millis();
                if age > thresholds.max_age_ms {
                    add(
                        State::Critical,
                        db,
                        format!(
                            "newest backup {} old (max {})",
                            age_text(age),
                            age_text(thresholds.max_age_ms)
                        ),
                    );
                }
                match &b.header {
                    HeaderCheck::Matches => {}
                    HeaderCheck::Mismatch(why) => add(
                        State::Critical,
                        db,
                        format!("newest backup not as catalogued: {why}"),
                    ),
                    HeaderCheck::Missing => {
                        add(State::Critical, db, "newest backup's file is gone".into())
                    }
                    // Out of reach of this host is no finding; a read that failed is.
                    HeaderCheck::OutOfReach => {}
                    HeaderCheck::NotChecked(why) => add(
                        State::Warning,
                        db,
                        format!(
                            "newest backup could not be read: {}",
                            crate::show::name(why)
                        ),
                    ),
                }
            }
        }
        match &d.last_check {
            Some(c) if !c.ok => add(
                State::Critical,
                db,
                format!("last restore check failed ({})", c.at.rfc3339()),
            ),
            Some(_) => {}
            // A cluster's globals are no database: `restore --check` does not apply to them
            // (`verify` checks them, and shows here as their verification).
            None if d.database == crate::globals::NAME => {}
            None => add(State::Warning, db, "never restore-checked".into()),
        }
        if d.failures_24h > 0 {
            add(
                State::Warning,
                db,
                format!("{} failure(s) in the last 24h", d.failures_24h),
            );
        }
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.state));
    Evaluation {
        state: findings.first().map_or(State::Ok, |f| f.state),
        findings,
    }
}

/// An age for people: `26h`, `3d4h`, `45m`, `12s`.
pub fn age_text(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h{m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn backup(hours_ago: i64) -> LastBackup {
        LastBackup {
            id: 1,
            location: "/b/shop.pgseal".into(),
            created_at: Timestamp(NOW.millis() - hours_ago * HOUR),
            size_bytes: 10,
            duration_ms: Some(5),
            verified: None,
            header: HeaderCheck::Matches,
        }
    }

    fn check(ok: bool) -> Check {
        Check {
            at: Timestamp(NOW.millis() - HOUR),
            ok,
            backup_id: Some(1),
            error: (!ok).then(|| "bad signature".into()),
        }
    }

    fn db(
        name: &str,
        last_backup: Option<LastBackup>,
        last_check: Option<Check>,
    ) -> DatabaseStatus {
        DatabaseStatus {
            database: name.into(),
            last_backup,
            last_good_check: None,
            last_check,
            failures_24h: 0,
        }
    }

    fn site(databases: Vec<DatabaseStatus>) -> Status {
        Status {
            now: NOW,
            databases,
            server_key: None,
            chain: ChainState {
                entries: 10,
                broken: None,
                anchors_checked: 1,
                anchor_problems: Vec::new(),
                walk_ms: 0,
            },
        }
    }

    const DAY: Thresholds = Thresholds {
        max_age_ms: 26 * HOUR,
    };

    #[test]
    fn a_fresh_checked_site_is_ok() {
        let s = site(vec![db("shop", Some(backup(2)), Some(check(true)))]);
        let e = evaluate(&s, &DAY, NOW);
        assert_eq!(e.state, State::Ok);
        assert!(e.findings.is_empty());
        assert_eq!(
            e.summary(1),
            "PGSEAL OK - 1 database backed up within limits, audit chain intact"
        );
    }

    #[test]
    fn a_backup_older_than_the_maximum_age_is_critical_and_one_just_within_is_not() {
        let s = site(vec![db("shop", Some(backup(27)), Some(check(true)))]);
        let e = evaluate(&s, &DAY, NOW);
        assert_eq!(e.state, State::Critical);
        assert_eq!(
            e.summary(1),
            "PGSEAL CRITICAL - shop: newest backup 1d3h old (max 1d2h)"
        );
        let s = site(vec![db("shop", Some(backup(26)), Some(check(true)))]);
        assert_eq!(evaluate(&s, &DAY, NOW).state, State::Ok);
        // The same status later on is stale: age is measured from the `now` given.
        assert_eq!(
            evaluate(&s, &DAY, Timestamp(NOW.millis() + 1)).state,
            State::Critical
        );
    }

    #[test]
    fn a_failed_last_check_a_missing_backup_or_a_forged_header_is_critical() {
        let e = evaluate(
            &site(vec![db("shop", Some(backup(1)), Some(check(false)))]),
            &DAY,
            NOW,
        );
        assert_eq!(e.state, State::Critical);
        assert!(e.findings[0].message.contains("last restore check failed"));

        let e = evaluate(&site(vec![db("shop", None, Some(check(true)))]), &DAY, NOW);
        assert_eq!(e.state, State::Critical);
        assert_eq!(e.findings[0].message, "no backup");

        let mut forged = backup(1);
        forged.header = HeaderCheck::Mismatch("the file was made at …".into());
        let e = evaluate(
            &site(vec![db("shop", Some(forged), Some(check(true)))]),
            &DAY,
            NOW,
        );
        assert_eq!(e.state, State::Critical);

        let mut gone = backup(1);
        gone.header = HeaderCheck::Missing;
        let e = evaluate(
            &site(vec![db("shop", Some(gone), Some(check(true)))]),
            &DAY,
            NOW,
        );
        assert_eq!(e.state, State::Critical);

        let mut elsewhere = backup(1);
        elsewhere.header = HeaderCheck::OutOfReach;
        let e = evaluate(
            &site(vec![db("shop", Some(elsewhere), Some(check(true)))]),
            &DAY,
            NOW,
        );
        assert_eq!(e.state, State::Ok);
    }

    #[test]
    fn never_checked_and_recent_failures_are_warnings() {
        // The cluster's globals have no restore check to miss.
        let e = evaluate(
            &site(vec![db(crate::globals::NAME, Some(backup(1)), None)]),
            &DAY,
            NOW,
        );
        assert_eq!(e.state, State::Ok, "{}", e.summary(1));
        let e = evaluate(&site(vec![db("shop", Some(backup(1)), None)]), &DAY, NOW);
        assert_eq!(e.state, State::Warning);
        assert_eq!(e.summary(1), "PGSEAL WARNING - shop: never restore-checked");

        let mut d = db("shop", Some(backup(1)), Some(check(true)));
        d.failures_24h = 2;
        let e = evaluate(&site(vec![d]), &DAY, NOW);
        assert_eq!(e.state, State::Warning);
        assert!(e.findings[0].message.contains("2 failure(s)"));

        assert_eq!(evaluate(&site(Vec::new()), &DAY, NOW).state, State::Warning);
    }

    #[test]
    fn a_broken_empty_or_cut_chain_is_critical_and_listed_first() {
        let mut s = site(vec![db("shop", Some(backup(1)), None)]);
        s.chain.broken = Some(ChainBreak {
            seq: 4,
            reason: "its contents do not match its hash: edited".into(),
        });
        let e = evaluate(&s, &DAY, NOW);
        assert_eq!(e.state, State::Critical);
        assert!(
            e.findings[0]
                .message
                .starts_with("audit chain broken at entry 4")
        );
        assert_eq!(e.findings[1].state, State::Warning);

        let mut s = site(vec![db("shop", Some(backup(1)), Some(check(true)))]);
        s.chain.entries = 0;
        assert_eq!(evaluate(&s, &DAY, NOW).state, State::Critical);

        let mut s = site(vec![db("shop", Some(backup(1)), Some(check(true)))]);
        s.chain.anchor_problems.push("cut back".into());
        assert!(!s.chain.intact());
        assert_eq!(evaluate(&s, &DAY, NOW).state, State::Critical);
    }

    #[test]
    fn names_in_the_summary_cannot_break_the_line() {
        let e = evaluate(&site(vec![db("two\nlines", None, None)]), &DAY, NOW);
        let line = e.summary(1);
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("two\\nlines"), "{line}");
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(age_text(12_000), "12s");
        assert_eq!(age_text(45 * 60_000), "45m");
        assert_eq!(age_text(26 * HOUR), "1d2h");
        assert_eq!(age_text(3 * HOUR + 5 * 60_000), "3h5m");
        assert_eq!(age_text(48 * HOUR), "2d");
        assert_eq!(age_text(-5), "0s");
    }
}
