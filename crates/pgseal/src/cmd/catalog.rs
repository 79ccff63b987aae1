//! `pgseal list` and `pgseal prune`: the backup catalog and retention.
//!
//! Prune deletes only with `--yes`, only on this host, and only files the catalog names that sit
//! directly in the backup directory and whose signed header matches the catalog entry: whoever
//! can write the store cannot make it delete anything else (see `repository`).

use pgseal_core::time::Timestamp;
use pgseal_store::{Action, BackupRecord};
use serde_json::json;

use super::backup::record_json;
use super::repository::{
    Examined, Member, Refusal, RemoveError, Repository, examine, header_mismatch, store_signer,
};
use super::{host_name, print_json};
use crate::cli::{ListArgs, PruneArgs};
use crate::context::{Context, store_failure};
use crate::failure::{CliResult, Failure};
use crate::progress::human;

pub fn list(args: ListArgs, ctx: &mut Context) -> CliResult {
    let backups = ctx
        .read_store()?
        .backups(args.db.as_deref())
        .map_err(store_failure)?;
    if args.json {
        print_json(&json!(backups.iter().map(record_json).collect::<Vec<_>>()));
        return Ok(());
    }
    if backups.is_empty() {
        println!("no backups catalogued");
        return Ok(());
    }
    println!(
        "{:<5} {:<20} {:<25} {:>10}  PATH",
        "ID", "DATABASE", "CREATED", "SIZE"
    );
    for b in &backups {
        println!(
            "{:<5} {:<20} {:<25} {:>10}  {}",
            b.id,
            crate::show::name(&b.entry.database),
            b.entry.created_at.rfc3339(),
            human(b.entry.size_bytes as u64),
            crate::show::text(&b.entry.path)
        );
    }
    Ok(())
}

/// Parses an age such as `90d`, `12h`, `2w`, `30m` into milliseconds.
fn parse_age(text: &str) -> CliResult<i64> {
    let bad = || {
        Failure::usage(format!(
            "bad age `{text}`: use a number and a unit, like 90d, 12h, 2w"
        ))
    };
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(unit_ms).ok_or_else(bad)
}

/// What `prune` found when it checked a catalog entry against its file.
enum Verdict {
    /// Catalogued on another host: not this host's to check or delete.
    OtherHost,
    /// The file is no longer there.
    Gone,
    /// The file is a backup pgseal made and the entry describes: it may be deleted.
    Genuine(Member),
    Refused(Refusal),
}

/// Checks a catalog entry against the file it names: a regular file directly in the backup
/// directory whose signed header (verified with the creator's key) matches the entry.
fn check(ctx: &mut Context, repo: &Repository, here: &str, b: &BackupRecord) -> CliResult<Verdict> {
    if b.entry.host != here {
        return Ok(Verdict::OtherHost);
    }
    let opened = repo.open_member(&b.entry.path, |file| {
        examine(file, &mut |fp| store_signer(ctx, fp))
    })?;
    Ok(match opened {
        Err(refusal) => Verdict::Refused(refusal),
        Ok(None) => Verdict::Gone,
        Ok(Some((member, examined))) => match examined {
            Examined::Signed(prelude) => match header_mismatch(&prelude.header, &b.entry) {
                Some(why) => Verdict::Refused(Refusal::Mismatch(why)),
                None => Verdict::Genuine(member),
            },
            Examined::Legacy(kind) | Examined::Foreign(kind) => {
                Verdict::Refused(Refusal::NotPgseal(kind))
            }
            Examined::Unvouched { reason, .. } => Verdict::Refused(Refusal::Unvouched(reason)),
        },
    })
}

/// Two entries naming one file (through another spelling of its path): the first keeps it.
fn refuse_duplicates(checked: &mut [(BackupRecord, Verdict)]) {
    let mut seen: std::collections::BTreeMap<(u64, u64), i64> = Default::default();
    for (b, verdict) in checked.iter_mut() {
        if let Verdict::Genuine(m) = verdict {
            match seen.get(&(m.dev, m.ino)) {
                Some(first) => *verdict = Verdict::Refused(Refusal::Duplicate(*first)),
                None => {
                    seen.insert((m.dev, m.ino), b.id);
                }
            }
        }
    }
}

pub fn prune(args: PruneArgs, ctx: &mut Context) -> CliResult {
    let cfg = ctx.config()?.clone();
    ctx.audit(Action::Prune).detail("dry_run", !args.yes);
    let backups = ctx
        .store()?
        .backups(args.db.as_deref())
        .map_err(store_failure)?;
    let repo = Repository::open(&cfg.backup_dir)?;
    let here = host_name().unwrap_or_default();
    let mut doomed: Vec<(BackupRecord, Verdict)> = match args.keep_last {
        Some(keep) => {
            // Only backups whose signed files are here count as kept: catalog rows nothing
            // backs cannot push real backups out of the newest N.
            let mut checked = Vec::new();
            for b in &backups {
                checked.push((b.clone(), check(ctx, &repo, &here, b)?));
            }
            refuse_duplicates(&mut checked);
            let mut kept = std::collections::BTreeMap::<(&str, &str), usize>::new();
            let mut newest_first: Vec<&(BackupRecord, Verdict)> = checked.iter().collect();
            newest_first.sort_by_key(|(b, _)| std::cmp::Reverse((b.entry.created_at, b.id)));
            let mut keep_ids = std::collections::BTreeSet::new();
            for (b, verdict) in newest_first {
                if matches!(verdict, Verdict::Genuine(_) | Verdict::OtherHost) {
                    let n = kept
                        .entry((b.entry.host.as_str(), b.entry.database.as_str()))
                        .or_default();
                    if *n < keep {
                        *n += 1;
                        keep_ids.insert(b.id);
                    }
                }
            }
            checked
                .into_iter()
                .filter(|(b, _)| !keep_ids.contains(&b.id))
                .collect()
        }
        None => {
            let age = match &args.older_than {
                Some(text) => parse_age(text)?,
                None => i64::from(cfg.retention_days) * 86_400_000,
            };
            let cutoff = Timestamp::now().millis() - age;
            // The catalog's time picks the candidates; a candidate is deleted only if its
            // signed header carries that same time.
            let mut checked = Vec::new();
            for b in backups
                .iter()
                .filter(|b| b.entry.created_at.millis() < cutoff)
            {
                checked.push((b.clone(), check(ctx, &repo, &here, b)?));
            }
            refuse_duplicates(&mut checked);
            checked
        }
    };
    doomed.sort_by_key(|(b, _)| (b.entry.created_at, b.id));

    let mut report: Vec<(&BackupRecord, String, Option<String>)> = Vec::new();
    let mut refused = Vec::new();
    let mut failures = 0;
    for (b, verdict) in &doomed {
        let (outcome, reason) = match verdict {
            Verdict::OtherHost => ("skipped: on another host".to_owned(), None),
            Verdict::Refused(r) => ("REFUSED".to_owned(), Some(r.to_string())),
            Verdict::Gone if !args.yes => ("already gone".to_owned(), None),
            Verdict::Gone => (mark(ctx, b.id, "already gone; uncatalogued"), None),
            Verdict::Genuine(_) if !args.yes => ("would delete".to_owned(), None),
            Verdict::Genuine(member) => match repo.remove(member) {
                Ok(()) => (mark(ctx, b.id, "deleted"), None),
                Err(RemoveError::Refused(r)) => ("REFUSED".to_owned(), Some(r.to_string())),
                Err(RemoveError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                    (mark(ctx, b.id, "already gone; uncatalogued"), None)
                }
                Err(RemoveError::Io(e)) => {
                    failures += 1;
                    (format!("FAILED: {e}"), None)
                }
            },
        };
        if let Some(why) = &reason {
            refused.push(json!({ "id": b.id, "path": b.entry.path, "reason": why }));
        }
        report.push((b, outcome, reason));
    }
    if let Some(a) = ctx.audit_mut() {
        a.detail("candidates", doomed.len());
        a.detail(
            "deleted",
            report
                .iter()
                .filter(|(_, o, _)| o.starts_with("deleted"))
                .count(),
        );
        if !refused.is_empty() {
            a.detail("refused", refused.clone());
        }
    }
    if args.json {
        print_json(&json!(
            report
                .iter()
                .map(|(b, o, why)| json!({ "backup": record_json(b), "outcome": o, "reason": why }))
                .collect::<Vec<_>>()
        ));
    } else if report.is_empty() {
        println!("nothing to prune");
    } else {
        for (b, outcome, why) in &report {
            println!(
                "{:<28} {} ({}, {})",
                outcome,
                b.entry.path,
                b.entry.database,
                b.entry.created_at.rfc3339()
            );
            if let Some(why) = why {
                println!("{:<28}   {why}", "");
            }
        }
        if !args.yes {
            println!("(dry run: pass --yes to delete)");
        }
    }
    if let Some(first) = refused.first() {
        return Err(Failure::Authentication(format!(
            "{} catalog entries were refused: no backup in {} with a matching signed header \
                 backs them, so the catalog cannot be trusted there (first: {}: {}); the rest \
                 was pruned",
            refused.len(),
            repo.dir.display(),
            first["path"].as_str().unwrap_or_default(),
            first["reason"].as_str().unwrap_or_default(),
        )));
    }
    if failures > 0 {
        return Err(Failure::Several {
            failed: failures,
            total: failures,
            what: "backups could not be deleted",
            kind: pgseal_ops::ErrorKind::Io,
        });
    }
    Ok(())
}

fn mark(ctx: &mut Context, id: i64, done: &str) -> String {
    match ctx
        .store()
        .and_then(|s| s.mark_pruned(id).map_err(store_failure))
    {
        Ok(()) => done.to_owned(),
        Err(f) => format!("{done}, but the catalog was not updated: {f}"),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_age;

    #[test]
    fn ages() {
        assert_eq!(parse_age("90d").unwrap(), 90 * 86_400_000);
        assert_eq!(parse_age("2w").unwrap(), 14 * 86_400_000);
        assert_eq!(parse_age("12h").unwrap(), 12 * 3_600_000);
        assert!(parse_age("90").is_err());
        assert!(parse_age("d").is_err());
        assert!(parse_age("5y").is_err());
    }
}
