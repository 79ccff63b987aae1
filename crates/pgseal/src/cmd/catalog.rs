//! `pgseal list` and `pgseal prune`: the backup catalog and retention.
//!
//! Prune deletes only files the catalog knows, on this host, and only with `--yes`.

use pgseal_core::time::Timestamp;
use pgseal_store::{BackupRecord, actions};
use serde_json::json;

use super::backup::record_json;
use super::{host_name, print_json};
use crate::cli::{ListArgs, PruneArgs};
use crate::context::{Context, store_failure};
use crate::failure::{CliResult, Failure};
use crate::progress::human;

pub fn list(args: ListArgs, ctx: &mut Context) -> CliResult {
    let backups = ctx
        .store()?
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

pub fn prune(args: PruneArgs, ctx: &mut Context) -> CliResult {
    let retention_days = ctx.config()?.retention_days;
    ctx.audit(actions::PRUNE).detail("dry_run", !args.yes);
    let backups = ctx
        .store()?
        .backups(args.db.as_deref())
        .map_err(store_failure)?;
    let doomed: Vec<BackupRecord> = match args.keep_last {
        Some(keep) => {
            let mut by_db: std::collections::BTreeMap<&str, Vec<&BackupRecord>> =
                Default::default();
            for b in &backups {
                by_db.entry(&b.entry.database).or_default().push(b);
            }
            by_db
                .values()
                .flat_map(|list| list.iter().rev().skip(keep).copied())
                .cloned()
                .collect()
        }
        None => {
            let age = match &args.older_than {
                Some(text) => parse_age(text)?,
                None => i64::from(retention_days) * 86_400_000,
            };
            let cutoff = Timestamp::now().millis() - age;
            backups
                .iter()
                .filter(|b| b.entry.created_at.millis() < cutoff)
                .cloned()
                .collect()
        }
    };
    let here = host_name().unwrap_or_default();
    let mut report = Vec::new();
    let mut failures = 0;
    for b in &doomed {
        let outcome = if b.entry.host != here {
            "skipped: on another host".to_owned()
        } else if !args.yes {
            "would delete".to_owned()
        } else {
            match std::fs::remove_file(&b.entry.path) {
                Ok(()) => mark(ctx, b.id, "deleted"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    mark(ctx, b.id, "already gone; uncatalogued")
                }
                Err(e) => {
                    failures += 1;
                    format!("FAILED: {e}")
                }
            }
        };
        report.push((b, outcome));
    }
    if let Some(a) = ctx.audit_mut() {
        a.detail("candidates", doomed.len());
        a.detail(
            "deleted",
            report
                .iter()
                .filter(|(_, o)| o.starts_with("deleted"))
                .count(),
        );
    }
    if args.json {
        print_json(&json!(
            report
                .iter()
                .map(|(b, o)| json!({ "backup": record_json(b), "outcome": o }))
                .collect::<Vec<_>>()
        ));
    } else if report.is_empty() {
        println!("nothing to prune");
    } else {
        for (b, outcome) in &report {
            println!(
                "{:<28} {} ({}, {})",
                outcome,
                b.entry.path,
                b.entry.database,
                b.entry.created_at.rfc3339()
            );
        }
        if !args.yes {
            println!("(dry run: pass --yes to delete)");
        }
    }
    if failures > 0 {
        return Err(Failure::new(
            crate::failure::ExitCode::Io,
            format!("{failures} backups could not be deleted"),
        ));
    }
    Ok(())
}

fn mark(ctx: &mut Context, id: i64, done: &str) -> String {
    match ctx
        .store()
        .and_then(|s| s.mark_pruned(id).map_err(store_failure))
    {
        Ok(()) => done.to_owned(),
        Err(f) => format!("deleted, but the catalog was not updated: {f}"),
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
