//! Reading the audit log: entries by filter, statistics, the whole log for export, and
//! `audit verify` (the hash chain, and the anchors the signed backups hold: [`crate::anchors`]).
//!
//! Reading opens the store read-only ([`Session::read_store`]): it works for an account that
//! may read the store but not write it, and records nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use pgseal_core::time::Timestamp;
use pgseal_store::{Action, AuditEntry, AuditFilter, Username};
use serde_json::Value;

use crate::anchors::VerifyReport;
use crate::error::{Error, Result};
use crate::repo;
use crate::session::Session;

/// Entries from when on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// From this time on.
    At(Timestamp),
    /// From this many hours ago on.
    HoursAgo(u32),
}

impl Since {
    /// The time it names, now.
    pub fn timestamp(self) -> Timestamp {
        match self {
            Since::At(t) => t,
            Since::HoursAgo(h) => Timestamp(Timestamp::now().millis() - i64::from(h) * 3_600_000),
        }
    }
}

/// Which entries to list.
#[derive(Debug, Clone, Default)]
pub struct Query<'a> {
    /// Only this action (case-insensitive: `backup` is `BACKUP`).
    pub action: Option<&'a str>,
    /// Only entries of this acting pgseal user (who must exist).
    pub user: Option<&'a Username>,
    /// Only entries from then on.
    pub since: Option<Since>,
    /// Only failures.
    pub failed_only: bool,
    /// Only entries where a signature was checked and did not hold.
    pub invalid_signature: bool,
    /// The newest this many (all when `None`).
    pub limit: Option<i64>,
}

/// An entry as read, with what it refers to resolved.
#[derive(Debug, Clone)]
pub struct Row {
    /// The stored entry.
    pub entry: AuditEntry,
    /// The acting user's name, when the entry names a user the store knows.
    pub username: Option<String>,
    /// The entry's details: the JSON object it stores (a detail text that is not JSON, as a
    /// string). The log stores them as JSON, so this is their data model, not a presentation.
    pub details: Value,
}

impl Row {
    /// The error a failed operation recorded (what its user was told), if any.
    pub fn error(&self) -> Option<&str> {
        self.details.get("error").and_then(Value::as_str)
    }
}

/// The entries `query` selects, newest last.
pub fn list(session: &mut Session, query: &Query<'_>) -> Result<Vec<Row>> {
    let user_id = match query.user {
        Some(name) => Some(session.read_store()?.user(name)?.id),
        None => None,
    };
    let filter = AuditFilter {
        action: query.action.map(|a| Action::from(a.to_ascii_uppercase())),
        user_id,
        since: query.since.map(Since::timestamp),
        failed_only: query.failed_only,
        invalid_signature: query.invalid_signature,
        limit: query.limit,
    };
    let entries = session.read_store()?.audit_query(&filter)?;
    rows(session, entries)
}

/// Every entry after the chain position `after` (0: all), for export.
pub fn export(session: &mut Session, after: i64) -> Result<Vec<Row>> {
    let entries = session
        .read_store()?
        .audit_query(&AuditFilter::default())?
        .into_iter()
        .filter(|e| e.seq > after)
        .collect();
    rows(session, entries)
}

fn rows(session: &mut Session, entries: Vec<AuditEntry>) -> Result<Vec<Row>> {
    let names = usernames(session)?;
    Ok(entries
        .into_iter()
        .map(|entry| {
            let x = &entry.entry;
            let details = serde_json::from_str(&x.details)
                .unwrap_or_else(|_| Value::String(x.details.clone()));
            Row {
                username: x.user_id.and_then(|id| names.get(&id).cloned()),
                details,
                entry,
            }
        })
        .collect())
}

fn usernames(session: &mut Session) -> Result<BTreeMap<i64, String>> {
    Ok(session
        .read_store()?
        .users()?
        .into_iter()
        .map(|u| (u.id, u.username.into()))
        .collect())
}

/// Successes and failures of one action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Entries that record a success.
    pub ok: u64,
    /// Entries that record a failure.
    pub failed: u64,
}

/// How often signatures were checked, and held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signatures {
    /// Checked and held.
    pub valid: u64,
    /// Checked and did not hold.
    pub invalid: u64,
    /// No signature involved or checked.
    pub not_checked: u64,
}

/// Who an entry was made by, for the statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// A pgseal user the store knows.
    User(String),
    /// A user id the store no longer knows.
    UnknownUser(i64),
    /// No pgseal user: the operating-system account, if recorded.
    OsUser(Option<String>),
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::User(name) => f.write_str(name),
            Who::UnknownUser(id) => write!(f, "#{id}"),
            Who::OsUser(os) => write!(f, "(os) {}", os.as_deref().unwrap_or("?")),
        }
    }
}

/// What the log says in numbers.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Entries counted.
    pub entries: usize,
    /// Per action (as recorded), successes and failures.
    pub by_action: BTreeMap<String, Counts>,
    /// Signature checks.
    pub signatures: Signatures,
    /// The ten who made the most entries, most first (ties by name).
    pub top_users: Vec<(Who, u64)>,
}

/// Statistics over the entries of the last `hours` (all when `None`).
pub fn stats(session: &mut Session, hours: Option<u32>) -> Result<Stats> {
    let entries = session.read_store()?.audit_query(&AuditFilter {
        since: hours.map(|h| Since::HoursAgo(h).timestamp()),
        ..AuditFilter::default()
    })?;
    let names = usernames(session)?;
    let mut stats = Stats {
        entries: entries.len(),
        ..Stats::default()
    };
    let mut by_user: BTreeMap<String, (Who, u64)> = BTreeMap::new();
    for e in &entries {
        let x = &e.entry;
        let counts = stats
            .by_action
            .entry(x.action.as_str().to_owned())
            .or_default();
        if x.success {
            counts.ok += 1;
        } else {
            counts.failed += 1;
        }
        let s = &mut stats.signatures;
        match x.signature_valid {
            Some(true) => s.valid += 1,
            Some(false) => s.invalid += 1,
            None => s.not_checked += 1,
        }
        let who = match x.user_id {
            Some(id) => match names.get(&id) {
                Some(name) => Who::User(name.clone()),
                None => Who::UnknownUser(id),
            },
            None => Who::OsUser(x.os_user.clone()),
        };
        by_user.entry(who.to_string()).or_insert((who, 0)).1 += 1;
    }
    let mut top: Vec<(String, (Who, u64))> = by_user.into_iter().collect();
    top.sort_by(|a, b| b.1.1.cmp(&a.1.1).then(a.0.cmp(&b.0)));
    top.truncate(10);
    stats.top_users = top.into_iter().map(|(_, who)| who).collect();
    Ok(stats)
}

/// `audit verify`: the hash chain, and the anchors in the signed backups of the site's
/// repository, in the catalogued backups this host reaches and in the files `given`
/// ([`crate::anchors::verify`]). Nothing is recorded.
pub fn verify(session: &mut Session, given: &[PathBuf]) -> Result<VerifyReport> {
    verify_with_heads(session, given, &[])
}

/// [`verify`], and also the audit chain heads key-custody services say they wrote (`heads`:
/// each service, as shown, and its head): the log must still hold each, or entries were cut
/// off after it — which backup anchors alone cannot show for entries newer than the newest
/// backup.
pub fn verify_with_heads(
    session: &mut Session,
    given: &[PathBuf],
    heads: &[(String, pgseal_custody::wire::AuditHead)],
) -> Result<VerifyReport> {
    let repository = repo::site_repository(session)?;
    let reach = repo::reach(session);
    let mut report = crate::anchors::verify(session, repository.as_ref(), &reach, given)?;
    if report.no_store.is_none() && report.entries > 0 {
        for (source, head) in heads {
            if let Some(problem) = crate::custody::service::head_problem(session, head, source)? {
                report.problems.push(problem);
            }
            report.service_heads.push((source.clone(), head.seq));
        }
    }
    Ok(report)
}

impl VerifyReport {
    /// The newest entry an anchor vouches for.
    pub fn newest_anchor(&self) -> Option<i64> {
        self.anchors.iter().map(|a| a.seq).max()
    }

    /// Whether the log is shown intact: no finding.
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }

    /// The verdict: an authentication failure naming the first finding unless the log is
    /// shown intact.
    pub fn result(&self) -> Result<()> {
        match self.problems.first() {
            None => Ok(()),
            Some(first) => Err(Error::Authentication(format!(
                "the audit log cannot be shown intact ({}): {first}",
                match self.problems.len() {
                    1 => "1 finding".to_owned(),
                    n => format!("{n} findings"),
                }
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::session::Operation;
    use crate::testsite::TestSite;

    /// Through the operations' API on a real store: filters, statistics, export from a chain
    /// position, and `audit verify`'s verdict.
    #[test]
    fn audit_queries_stats_export_and_verdict() {
        let mut t = TestSite::new();
        let user = t.user.id;
        let entries = [
            (Action::Backup, Some(user), None, None),
            (
                Action::Verify,
                Some(user),
                Some(false),
                Some(Error::invalid("the header signature does not verify")),
            ),
            (Action::Restore, Some(user), Some(true), None),
            (Action::Verify, None, None, None),
        ];
        for (action, user_id, signature_valid, failure) in entries {
            let op = Operation {
                user_id,
                signature_valid,
                ..Operation::new(action)
            };
            t.session.record(op, failure.as_ref()).unwrap();
        }
        let actions = |rows: &[Row]| -> Vec<(String, i64)> {
            rows.iter()
                .map(|r| (r.entry.entry.action.as_str().to_owned(), r.entry.seq))
                .collect()
        };

        let verifies = list(
            &mut t.session,
            &Query {
                action: Some("verify"),
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(
            actions(&verifies),
            [("VERIFY".to_owned(), 2), ("VERIFY".to_owned(), 4)]
        );
        let name = Username::parse("system_backup").unwrap();
        let mine = list(
            &mut t.session,
            &Query {
                user: Some(&name),
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(mine.len(), 3);
        assert!(
            mine.iter()
                .all(|r| r.username.as_deref() == Some("system_backup"))
        );
        let failed = list(
            &mut t.session,
            &Query {
                failed_only: true,
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(actions(&failed), [("VERIFY".to_owned(), 2)]);
        assert_eq!(
            failed[0].error(),
            Some("the header signature does not verify")
        );
        let bad_signatures = list(
            &mut t.session,
            &Query {
                invalid_signature: true,
                since: Some(Since::HoursAgo(1)),
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(actions(&bad_signatures), [("VERIFY".to_owned(), 2)]);
        let unknown = Username::parse("nobody").unwrap();
        let refused = list(
            &mut t.session,
            &Query {
                user: Some(&unknown),
                ..Query::default()
            },
        )
        .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Usage);

        let s = stats(&mut t.session, None).unwrap();
        assert_eq!(s.entries, 4);
        let by_action: Vec<(&str, u64, u64)> = s
            .by_action
            .iter()
            .map(|(a, c)| (a.as_str(), c.ok, c.failed))
            .collect();
        assert_eq!(
            by_action,
            [("BACKUP", 1, 0), ("RESTORE", 1, 0), ("VERIFY", 1, 1)]
        );
        assert_eq!(
            s.signatures,
            Signatures {
                valid: 1,
                invalid: 1,
                not_checked: 2
            }
        );
        assert_eq!(
            s.top_users,
            [
                (Who::User("system_backup".into()), 3),
                (Who::OsUser(Some("tester".into())), 1)
            ]
        );
        assert_eq!(s.top_users[1].0.to_string(), "(os) tester");

        let exported = export(&mut t.session, 2).unwrap();
        assert_eq!(
            actions(&exported),
            [("RESTORE".to_owned(), 3), ("VERIFY".to_owned(), 4)]
        );

        // An intact chain with no backups to anchor it: intact, no anchor; a finding fails it.
        let mut report = verify(&mut t.session, &[]).unwrap();
        assert_eq!(report.entries, 4);
        assert!(report.intact(), "{:?}", report.problems);
        assert_eq!(report.newest_anchor(), None);
        report.result().unwrap();
        report.problems.push("entry 2 was changed".into());
        let verdict = report.result().unwrap_err();
        assert_eq!(verdict.kind(), ErrorKind::Authentication);
        assert_eq!(
            verdict.to_string(),
            "the audit log cannot be shown intact (1 finding): entry 2 was changed"
        );
    }
}
