//! `pgseal backup`: one database, or every one with `--all` (`pgseal_ops::backup`: pg_dump →
//! zstd → encrypt + sign → a new object in the repository → its location catalogued); this
//! module says where, with what, and what came of it.

use std::time::Duration;

use pgseal_ops::backup::{self, All, AllReport, Backup, Source};
use pgseal_ops::copy::Outcome;
use pgseal_ops::repo::Repository;
use pgseal_ops::repo::local::LocalRepository;
use pgseal_store::BackupRecord;
use serde_json::json;

use super::{host_name, print_json, record_json, user_password};
use crate::cli::BackupArgs;
use crate::context::Context;
use crate::failure::{CliResult, Failure};
use crate::progress::human;
use crate::show;

pub fn run(args: BackupArgs, ctx: &mut Context) -> CliResult {
    let cfg = ctx.config()?.clone();
    let tools = crate::pgtools::locate(args.pg_bin.as_deref(), cfg.postgresql_bin_path.as_deref())?;
    let repository = match &args.output_dir {
        Some(dir) => Box::new(LocalRepository::create_dir(
            dir,
            pgseal_ops::repo::reach(ctx).host(),
        )?),
        None => ctx.repository(&args.repo, true)?,
    };
    let password = user_password(&args.user_password);
    let request = Backup {
        creator: &args.user,
        sign_key: args.sign_key.as_deref(),
        creator_password: &password,
        tools: &tools,
        repository: repository.as_ref(),
        schemas: &args.schemas,
        source_host: source_host(),
        sweep_older_than: Some(Duration::from_secs(
            u64::from(cfg.repository.abort_uploads_after_hours) * 3600,
        )),
    };
    if args.all {
        let all = All {
            conninfo: args.dbname.as_deref(),
            excludes: &args.excludes,
            with_role_passwords: args.with_role_passwords,
        };
        let report = backup::backup_all(ctx, &request, all)?;
        summarize(&report, args.json.on);
        let made = report
            .results
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok().cloned())
            .collect();
        let copied = copy_to(ctx, &args, repository.as_ref(), made);
        return report.result().and(copied);
    }
    let source = match (&args.database, &args.dbname) {
        (Some(db), None) => Source::Name(db.clone()),
        (db, Some(conn)) => Source::Conninfo {
            conninfo: conn.clone(),
            name: db.clone(),
        },
        // clap requires a database, --dbname or --all.
        (None, None) => {
            return Err(Failure::usage(
                "name a database, or pass --dbname URI or --all",
            ));
        }
    };
    let record = backup::backup(ctx, &request, source)?;
    report(&record, args.json.on);
    copy_to(ctx, &args, repository.as_ref(), vec![record])
}

/// `--copy-to`: the backups just made, copied and verified there; a copy that fails fails the
/// command (the backups stay).
fn copy_to(
    ctx: &mut Context,
    args: &BackupArgs,
    from: &dyn Repository,
    made: Vec<BackupRecord>,
) -> CliResult {
    let Some(url) = &args.copy_to else {
        return Ok(());
    };
    let to = pgseal_ops::repo::open_url(&pgseal_ops::repo::reach(ctx), url, true)?;
    let items = pgseal_ops::copy::copy_entries(ctx, from, to.as_ref(), made, false)?;
    if !args.json.on {
        for (b, o) in &items {
            if let Outcome::Copied(c) | Outcome::Adopted(c) | Outcome::Present(c) = o {
                outln!(
                    "copy of {} verified: {}",
                    show::name(&b.entry.database),
                    c.entry.location.shown()
                );
            }
        }
    }
    pgseal_ops::copy::verdict(&items)
}

/// The host a dump comes from: `PGHOST` when it names a host (not a socket directory), else
/// this one.
fn source_host() -> Option<String> {
    std::env::var("PGHOST")
        .ok()
        .filter(|h| !h.starts_with('/'))
        .or_else(host_name)
}

fn report(r: &BackupRecord, json: bool) {
    if json {
        print_json(&record_json(r));
    } else {
        outln!(
            "backup of {} written: {} ({})",
            show::name(&r.entry.database),
            r.entry.location.shown(),
            human(r.entry.size_bytes as u64)
        );
    }
}

fn summarize(report: &AllReport, json: bool) {
    let results = &report.results;
    if json {
        let rows: Vec<_> = results
            .iter()
            .map(|(db, r)| match r {
                Ok(rec) => json!({ "database": db, "ok": true, "backup": record_json(rec) }),
                Err(f) => {
                    json!({ "database": db, "ok": false, "error": crate::failure::message(f) })
                }
            })
            .collect();
        print_json(&json!(rows));
        return;
    }
    outln!(
        "{:<24} {:<7} {:>10}  FILE / ERROR",
        "DATABASE",
        "STATUS",
        "SIZE"
    );
    for (db, r) in results {
        match r {
            Ok(rec) => outln!(
                "{:<24} {:<7} {:>10}  {}",
                show::name(db),
                "ok",
                human(rec.entry.size_bytes as u64),
                rec.entry.location.shown()
            ),
            Err(f) => outln!(
                "{:<24} {:<7} {:>10}  {}",
                show::name(db),
                "FAILED",
                "-",
                crate::failure::message(f)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            ),
        }
    }
}
