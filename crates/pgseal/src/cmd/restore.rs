//! `pgseal restore`: a backup into a database (`pgseal_ops::restore`), with signals handled
//! while it changes the database.

use pgseal_ops::restore::{self, Destination, Restore, Restored};
use serde_json::json;

use super::{OpenKeySources, print_json};
use crate::cli::RestoreArgs;
use crate::context::Context;
use crate::failure::CliResult;
use crate::interrupt;
use crate::show;

pub fn run(args: RestoreArgs, ctx: &mut Context) -> CliResult {
    crate::custody::attach(ctx, &args.keys.custody)?;
    let configured_bin = ctx
        .config
        .as_ref()
        .and_then(|c| c.postgresql_bin_path.clone());
    let tools = crate::pgtools::locate(args.pg_bin.as_deref(), configured_bin.as_deref())?;
    let sources = OpenKeySources::new(&args.keys);
    let Some(file) = args.file.clone() else {
        // clap requires a file without --latest.
        return check_latest(&args, ctx, &sources, &tools);
    };
    let destination = match &args.target_db {
        _ if args.check => Destination::Check,
        _ if args.globals => Destination::Globals,
        Some(database) => Destination::Into {
            database: database.clone(),
            create: args.create,
            merge: args.into_existing,
        },
        None => unreachable!("clap requires --target-db without --check or --globals"),
    };
    let request = Restore {
        file: &file,
        keys: sources.keys(&args.keys),
        destination,
        clean: args.clean,
        jobs: args.jobs,
        tools: &tools,
    };
    // The keys are in hand when the guard is taken: from then on a signal stops the restore
    // cleanly (and a Ctrl-C at a password prompt still simply ends pgseal).
    let report = restore::restore(ctx, &request, interrupt::Guard::install)?;
    let from = match &report.from_copy {
        Some(copy) => format!("{} (from its copy {copy})", file.display()),
        None => file.display().to_string(),
    };
    match report.restored {
        Restored::Into(target) => {
            if args.json.on {
                print_json(&json!({
                    "restored": file,
                    "from_copy": report.from_copy,
                    "target_db": target,
                }));
            } else {
                outln!("restored {from} into {}", show::name(&target));
            }
        }
        Restored::Globals {
            existing_roles,
            databases,
        } => {
            if args.json.on {
                print_json(&json!({
                    "restored": args.file,
                    "from_copy": report.from_copy,
                    "globals": true,
                    "existing_roles": existing_roles,
                    "databases": databases,
                }));
            } else {
                outln!("applied the globals of {from}");
                if !existing_roles.is_empty() {
                    let shown: Vec<String> = existing_roles.iter().map(|r| show::name(r)).collect();
                    outln!(
                        "  roles that existed already (attributes set): {}",
                        shown.join(", ")
                    );
                }
                for db in &databases {
                    outln!(
                        "  created {} (empty): restore its backup with --target-db {}",
                        show::name(db),
                        show::name(db)
                    );
                }
            }
        }
        Restored::Checked(counts) => {
            if args.json.on {
                print_json(&json!({
                    "file": file,
                    "from_copy": report.from_copy,
                    "restorable": true,
                    "tables": counts
                        .iter()
                        .map(|(t, n)| json!({ "table": t, "rows": n }))
                        .collect::<Vec<_>>(),
                }));
            } else {
                outln!("{from} restores cleanly ({} tables):", counts.len());
                for (table, rows) in &counts {
                    outln!("  {:<50} {rows:>12}", show::name(table));
                }
            }
        }
    }
    Ok(())
}

/// `restore --check --latest`: the newest backup of each database, checked one by one; the
/// command fails (with the first failure's kind) when any check failed.
fn check_latest(
    args: &RestoreArgs,
    ctx: &mut Context,
    sources: &OpenKeySources,
    tools: &pgseal_ops::pgtools::PgTools,
) -> CliResult {
    let repository = ctx.repository(&crate::cli::RepoArgs::default(), false)?;
    let checks = restore::check_latest(
        ctx,
        repository.as_ref(),
        sources.keys(&args.keys),
        tools,
        interrupt::Guard::install,
    )?;
    if args.json.on {
        let rows: Vec<_> = checks
            .iter()
            .map(|c| match &c.result {
                Ok(report) => json!({
                    "database": c.database,
                    "file": c.backup,
                    "from_copy": report.from_copy,
                    "restorable": true,
                    "tables": tables_checked(&report.restored),
                }),
                Err(e) => json!({
                    "database": c.database,
                    "file": c.backup,
                    "restorable": false,
                    "error": crate::failure::message(e),
                }),
            })
            .collect();
        print_json(&json!(rows));
    } else {
        for c in &checks {
            match &c.result {
                Ok(report) => {
                    let tables = tables_checked(&report.restored);
                    outln!(
                        "{}: {} restores cleanly ({tables} tables)",
                        show::name(&c.database),
                        c.backup
                    );
                }
                Err(e) => outln!(
                    "{}: {} FAILED: {}",
                    show::name(&c.database),
                    c.backup,
                    crate::failure::message(e)
                ),
            }
        }
    }
    let total = checks.len();
    let mut failed = checks.into_iter().filter_map(|c| c.result.err());
    match (failed.next(), failed.count()) {
        (None, _) => Ok(()),
        (Some(only), 0) => Err(only),
        (Some(first), more) => Err(pgseal_ops::Error::Several {
            failed: more + 1,
            total,
            what: "restore checks failed",
            kind: first.kind(),
        }),
    }
}

/// How many tables a check restored (a check restores into a scratch database, nothing else).
fn tables_checked(restored: &Restored) -> usize {
    match restored {
        Restored::Checked(counts) => counts.len(),
        Restored::Into(_) | Restored::Globals { .. } => 0,
    }
}
