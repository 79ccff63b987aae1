//! `pgseal list` and `pgseal prune`: the backup catalog and retention.
//!
//! Prune deletes only with `--yes`, only in the site's repository, and only objects the catalog
//! names whose signed header matches the catalog entry: whoever can write the store cannot make
//! it delete anything else (see [`pgseal_ops::prune`]).

use pgseal_ops::prune::{Outcome, PruneRequest};
use pgseal_ops::retention::Policy;
use pgseal_store::Action;
use serde_json::json;

use super::{parse_age, print_json, record_json};
use std::time::{Duration, UNIX_EPOCH};

use pgseal_core::time::Timestamp;

use crate::cli::{ListArgs, PruneArgs, RepoCleanupArgs};
use crate::context::Context;
use crate::failure::CliResult;
use crate::progress::human;

pub fn list(args: ListArgs, ctx: &mut Context) -> CliResult {
    if args.remote {
        return remote(args, ctx);
    }
    let backups = pgseal_ops::catalog::list(ctx, args.db.as_deref())?;
    if args.json.on {
        print_json(&json!(backups.iter().map(record_json).collect::<Vec<_>>()));
        return Ok(());
    }
    if backups.is_empty() {
        outln!("no backups catalogued");
        return Ok(());
    }
    outln!(
        "{:<5} {:<20} {:<25} {:>10}  PATH",
        "ID",
        "DATABASE",
        "CREATED",
        "SIZE"
    );
    for b in &backups {
        let copy = b
            .copy_of
            .map_or_else(String::new, |id| format!("  (copy of {id})"));
        outln!(
            "{:<5} {:<20} {:<25} {:>10}  {}{copy}",
            b.id,
            crate::show::name(&b.entry.database),
            b.entry.created_at.rfc3339(),
            human(b.entry.size_bytes as u64),
            crate::show::text(&b.entry.location.shown())
        );
    }
    Ok(())
}

/// `list --remote`: the catalog beside what the repository holds.
fn remote(args: ListArgs, ctx: &mut Context) -> CliResult {
    let repository = ctx.repository(&args.repo, false)?;
    let c = pgseal_ops::catalog::compare(ctx, repository.as_ref(), args.db.as_deref())?;
    if args.json.on {
        print_json(&json!({
            "repository": c.repository,
            "present": c.present.iter().map(record_json).collect::<Vec<_>>(),
            "missing": c.missing.iter().map(record_json).collect::<Vec<_>>(),
            "uncatalogued": c.uncatalogued.iter().map(|o| json!({
                "location": o.location.as_str(),
                "size_bytes": o.size,
            })).collect::<Vec<_>>(),
            "unfinished": c.unfinished,
        }));
        return Ok(());
    }
    outln!("repository: {}", crate::show::text(&c.repository));
    outln!(
        "{} catalogued and present, {} catalogued but missing, {} not catalogued, {} unfinished \
         write(s)",
        c.present.len(),
        c.missing.len(),
        c.uncatalogued.len(),
        c.unfinished
    );
    for b in &c.missing {
        outln!(
            "MISSING       {:<5} {:<20} {}  {}",
            b.id,
            crate::show::name(&b.entry.database),
            b.entry.created_at.rfc3339(),
            crate::show::text(&b.entry.location.shown())
        );
    }
    for o in &c.uncatalogued {
        outln!(
            "UNCATALOGUED  {:>10}  {}",
            human(o.size),
            crate::show::text(&o.location.shown())
        );
    }
    if !c.uncatalogued.is_empty() {
        outln!("(objects not catalogued are not trusted: check one with `pgseal verify URL`)");
    }
    if c.unfinished > 0 {
        outln!("(unfinished writes: `pgseal repo cleanup` discards the old ones)");
    }
    Ok(())
}

/// `repo cleanup`: discards the repository's old unfinished writes.
pub fn cleanup(args: RepoCleanupArgs, ctx: &mut Context) -> CliResult {
    let cfg = ctx.config()?.clone();
    let older_than = match &args.older_than {
        Some(text) => Duration::from_millis(parse_age_or_zero(text)? as u64),
        None => Duration::from_secs(u64::from(cfg.repository.abort_uploads_after_hours) * 3600),
    };
    let repository = ctx.repository(&args.repo, false)?;
    let cleaned = pgseal_ops::cleanup::cleanup(ctx, repository.as_ref(), older_than, args.dry_run)?;
    let verb = if args.dry_run {
        "would discard"
    } else {
        "discarded"
    };
    if args.json.on {
        let named = |u: &pgseal_ops::repo::Unfinished| {
            json!({
                "location": u.location.as_str(),
                "id": u.id,
                "started": u.started.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| {
                    Timestamp::from_unix_secs(d.as_secs() as i64).rfc3339()
                }),
            })
        };
        print_json(&json!({
            "repository": cleaned.repository,
            "dry_run": args.dry_run,
            "discarded": cleaned.discarded.iter().map(named).collect::<Vec<_>>(),
            "kept": cleaned.kept.iter().map(named).collect::<Vec<_>>(),
            "failed": cleaned.failed.iter().map(|(u, e)| json!({
                "location": u.location.as_str(),
                "error": crate::failure::message(e),
            })).collect::<Vec<_>>(),
        }));
    } else {
        for u in &cleaned.discarded {
            outln!("{verb}: {}", crate::show::text(&u.location.shown()));
        }
        for (u, e) in &cleaned.failed {
            outln!(
                "FAILED: {}: {}",
                crate::show::text(&u.location.shown()),
                crate::failure::message(e)
            );
        }
        outln!(
            "{}: {verb} {} unfinished write(s), kept {} younger than {}",
            crate::show::text(&cleaned.repository),
            cleaned.discarded.len(),
            cleaned.kept.len(),
            args.older_than.as_deref().map_or_else(
                || format!("{}h", cfg.repository.abort_uploads_after_hours),
                str::to_owned
            )
        );
    }
    cleaned.result()
}

/// An age as [`parse_age`] reads it, where `0` (no unit) also means "any age".
fn parse_age_or_zero(text: &str) -> CliResult<i64> {
    if text == "0" {
        return Ok(0);
    }
    parse_age(text)
}

/// The policy the flags set, if they set any rule.
fn flag_policy(args: &PruneArgs) -> CliResult<Option<Policy>> {
    let policy = Policy {
        last: args.keep_last,
        hourly: args.keep_hourly,
        daily: args.keep_daily,
        weekly: args.keep_weekly,
        monthly: args.keep_monthly,
        yearly: args.keep_yearly,
        within_ms: args.keep_within.as_deref().map(parse_age).transpose()?,
        younger_than_ms: args.older_than.as_deref().map(parse_age).transpose()?,
    };
    Ok((!policy.is_empty()).then_some(policy))
}

pub fn prune(args: PruneArgs, ctx: &mut Context) -> CliResult {
    let cfg = ctx.config()?.clone();
    ctx.audit(Action::Prune).detail("dry_run", !args.yes);
    // The flags' rules, else the config's [retention], else the age retention_days sets.
    let policy = match flag_policy(&args)? {
        Some(policy) => policy,
        None if !cfg.retention.is_empty() => cfg.retention.clone(),
        None => Policy {
            younger_than_ms: Some(i64::from(cfg.retention_days) * 86_400_000),
            ..Policy::default()
        },
    };
    let repository = ctx.repository(&args.repo, false)?;
    let report = pgseal_ops::prune::prune(
        ctx,
        repository.as_ref(),
        &PruneRequest {
            database: args.db.clone(),
            policy,
            delete: args.yes,
        },
    )?;
    let reason = |o: &Outcome| match o {
        Outcome::Refused(r) => Some(r.to_string()),
        Outcome::Kept(rules) => Some(format!(
            "kept by: {}",
            rules
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => None,
    };
    if args.json.on {
        print_json(&json!(
            report
                .items
                .iter()
                .map(|(b, o)| json!({
                    "backup": record_json(b),
                    "outcome": o.to_string(),
                    "kept_by": match o {
                        Outcome::Kept(rules) => json!(rules),
                        _ => json!([]),
                    },
                    "reason": reason(o),
                }))
                .collect::<Vec<_>>()
        ));
    } else {
        outln!("policy: {}", report.policy);
        for (b, outcome) in &report.items {
            outln!(
                "{:<28} {} ({}, {})",
                outcome.to_string(),
                b.entry.location.shown(),
                b.entry.database,
                b.entry.created_at.rfc3339()
            );
            if let Some(why) = reason(outcome) {
                outln!("{:<28}   {why}", "");
            }
        }
        if report.items.len() == report.kept() {
            outln!("nothing to prune");
        } else if !args.yes {
            outln!("(dry run: pass --yes to delete)");
        }
    }
    report.result()
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
