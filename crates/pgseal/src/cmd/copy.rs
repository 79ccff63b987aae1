//! `pgseal copy`: backups copied into another repository, each verified there before it is
//! catalogued (`pgseal_ops::copy`); this module says from where, to where, and what came of it.

use pgseal_ops::copy::{CopyReport, CopyRequest, Outcome};
use serde_json::json;

use super::{print_json, record_json};
use crate::cli::CopyArgs;
use crate::context::Context;
use crate::failure::CliResult;
use crate::show;

pub fn run(args: CopyArgs, ctx: &mut Context) -> CliResult {
    let from = ctx.repository(&args.repo, false)?;
    let to = pgseal_ops::repo::open_url(&pgseal_ops::repo::reach(ctx), &args.to, true)?;
    let report = pgseal_ops::copy::copy(
        ctx,
        &CopyRequest {
            from: from.as_ref(),
            to: to.as_ref(),
            database: args.db.as_deref(),
            dry_run: args.dry_run,
        },
    )?;
    show_report(&report, args.dry_run, args.json.on);
    report.result()
}

/// What became of each backup: a line each, or one JSON document.
pub fn show_report(report: &CopyReport, dry_run: bool, json: bool) {
    if json {
        print_json(&json!({
            "from": report.from,
            "to": report.to,
            "dry_run": dry_run,
            "backups": report.items.iter().map(|(b, o)| item_json(b, o)).collect::<Vec<_>>(),
        }));
        return;
    }
    outln!(
        "from {} to {}",
        show::text(&report.from),
        show::text(&report.to)
    );
    for (b, outcome) in &report.items {
        let what = match outcome {
            Outcome::Copied(c) => format!("copied, verified: {}", c.entry.location.shown()),
            Outcome::Adopted(c) => format!(
                "found from an earlier run, verified: {}",
                c.entry.location.shown()
            ),
            Outcome::Present(c) => format!("already there: {}", c.entry.location.shown()),
            Outcome::WouldCopy => "would copy".to_owned(),
            Outcome::Failed(e) => format!(
                "FAILED: {}",
                crate::failure::message(e)
                    .lines()
                    .next()
                    .unwrap_or_default()
            ),
        };
        outln!(
            "{:<5} {:<20} {:<25} {}",
            b.id,
            show::name(&b.entry.database),
            b.entry.created_at.rfc3339(),
            show::text(&what)
        );
    }
    if report.items.is_empty() {
        outln!("no catalogued backups in {}", show::text(&report.from));
    }
}

fn item_json(b: &pgseal_store::BackupRecord, outcome: &Outcome) -> serde_json::Value {
    let (name, copy, error) = match outcome {
        Outcome::Copied(c) => ("copied", Some(record_json(c)), None),
        Outcome::Adopted(c) => ("adopted", Some(record_json(c)), None),
        Outcome::Present(c) => ("present", Some(record_json(c)), None),
        Outcome::WouldCopy => ("would_copy", None, None),
        Outcome::Failed(e) => ("failed", None, Some(crate::failure::message(e))),
    };
    json!({ "backup": record_json(b), "outcome": name, "copy": copy, "error": error })
}
