//! `pgseal list` and `pgseal prune`: the backup catalog and retention.
//!
//! Prune deletes only with `--yes`, only in the site's repository, and only objects the catalog
//! names whose signed header matches the catalog entry: whoever can write the store cannot make
//! it delete anything else (see [`pgseal_ops::prune`]).

use pgseal_ops::prune::{Outcome, PruneRequest, Retention};
use pgseal_store::Action;
use serde_json::json;

use super::{print_json, record_json};
use crate::cli::{ListArgs, PruneArgs};
use crate::context::Context;
use crate::failure::{CliResult, Failure};
use crate::progress::human;

pub fn list(args: ListArgs, ctx: &mut Context) -> CliResult {
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
        outln!(
            "{:<5} {:<20} {:<25} {:>10}  {}",
            b.id,
            crate::show::name(&b.entry.database),
            b.entry.created_at.rfc3339(),
            human(b.entry.size_bytes as u64),
            crate::show::text(&b.entry.location.shown())
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
    let cfg = ctx.config()?.clone();
    ctx.audit(Action::Prune).detail("dry_run", !args.yes);
    let retention = match (args.keep_last, &args.older_than) {
        (Some(keep), _) => Retention::KeepLast(keep),
        (None, Some(text)) => Retention::OlderThan(parse_age(text)?),
        (None, None) => Retention::OlderThan(i64::from(cfg.retention_days) * 86_400_000),
    };
    let repository = pgseal_ops::repo::site_repository(ctx)?;
    let report = pgseal_ops::prune::prune(
        ctx,
        &repository,
        &PruneRequest {
            database: args.db.clone(),
            retention,
            delete: args.yes,
        },
    )?;
    let reason = |o: &Outcome| match o {
        Outcome::Refused(r) => Some(r.to_string()),
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
                    "reason": reason(o),
                }))
                .collect::<Vec<_>>()
        ));
    } else if report.items.is_empty() {
        outln!("nothing to prune");
    } else {
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
        if !args.yes {
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
