//! `pgseal audit list | stats | verify | export`: reading the audit log (what the old system's
//! `SELECT * FROM tenancy_encryption_audit_log` and its monitoring advice were for) through
//! `pgseal_ops::audit`; this module parses the filters and prints.

use pgseal_core::time::Timestamp;
use pgseal_ops::anchors::VerifyReport;
use pgseal_ops::audit::{self, Query, Row, Since};
use serde_json::json;

use super::print_json;
use crate::cli::{AuditExportArgs, AuditListArgs, AuditStatsArgs, AuditVerifyArgs};
use crate::context::{Context, opt};
use crate::failure::{CliResult, Failure};

fn row_json(row: &Row) -> serde_json::Value {
    let (e, x) = (&row.entry, &row.entry.entry);
    json!({
        "id": e.id,
        "timestamp": x.timestamp.rfc3339(),
        "action": x.action,
        "success": x.success,
        "user_id": x.user_id,
        "username": opt(row.username.clone()),
        "os_user": x.os_user,
        "backup_creator_id": x.backup_creator_id,
        "backup_file": x.backup_file,
        "signature_valid": x.signature_valid,
        "host": x.host,
        "ip_address": x.ip_address,
        "details": row.details,
        "seq": e.seq,
        "prev_hash": e.prev_hash,
        "entry_hash": e.entry_hash,
        "imported": e.imported,
    })
}

pub fn list(args: AuditListArgs, ctx: &mut Context) -> CliResult {
    let user = args
        .user
        .as_deref()
        .map(crate::context::username)
        .transpose()?;
    let since = match (&args.since, args.hours) {
        (Some(text), _) => Some(Since::At(Timestamp::parse(text).ok_or_else(|| {
            Failure::usage(format!(
                "bad time `{text}`: use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)"
            ))
        })?)),
        (None, Some(h)) => Some(Since::HoursAgo(h)),
        (None, None) => None,
    };
    let rows = audit::list(
        ctx,
        &Query {
            action: args.action.as_deref(),
            user: user.as_ref(),
            since,
            failed_only: args.failed_only,
            invalid_signature: args.invalid_signature,
            limit: Some(args.limit),
        },
    )?;
    if args.json.on {
        print_json(&json!(rows.iter().map(row_json).collect::<Vec<_>>()));
        return Ok(());
    }
    if rows.is_empty() {
        outln!("no audit entries match");
        return Ok(());
    }
    outln!(
        "{:<5} {:<24} {:<14} {:<6} {:<16} {:<20} {:<5} FILE / ERROR",
        "ID",
        "TIME",
        "ACTION",
        "RESULT",
        "USER",
        "OS USER@HOST",
        "SIG"
    );
    for row in &rows {
        let x = &row.entry.entry;
        let user = match (x.user_id, &row.username) {
            (Some(_), Some(name)) => name.clone(),
            (Some(id), None) => format!("#{id}"),
            (None, _) => "-".into(),
        };
        let who = format!(
            "{}@{}",
            x.os_user.as_deref().unwrap_or("?"),
            x.host.as_deref().unwrap_or("?")
        );
        let sig = match x.signature_valid {
            Some(true) => "ok",
            Some(false) => "BAD",
            None => "-",
        };
        let tail = match (&x.backup_file, row.error()) {
            (_, Some(err)) => err.lines().next().unwrap_or_default().to_owned(),
            (Some(f), None) => f.clone(),
            (None, None) => String::new(),
        };
        outln!(
            "{:<5} {:<24} {:<14} {:<6} {:<16} {:<20} {:<5} {}",
            row.entry.id,
            x.timestamp.rfc3339(),
            x.action,
            if x.success { "ok" } else { "FAILED" },
            user,
            who,
            sig,
            crate::show::text(&tail)
        );
    }
    Ok(())
}

pub fn stats(args: AuditStatsArgs, ctx: &mut Context) -> CliResult {
    let s = audit::stats(ctx, args.hours)?;
    if args.json.on {
        print_json(&json!({
            "entries": s.entries,
            "by_action": s.by_action.iter().map(|(a, c)| (a.clone(), json!({ "ok": c.ok, "failed": c.failed }))).collect::<serde_json::Map<_, _>>(),
            "signatures": { "valid": s.signatures.valid, "invalid": s.signatures.invalid, "not_checked": s.signatures.not_checked },
            "top_users": s.top_users.iter().map(|(u, n)| json!({ "user": u.to_string(), "entries": n })).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    outln!("{} entries", s.entries);
    outln!("{:<16} {:>8} {:>8}", "ACTION", "OK", "FAILED");
    for (action, c) in &s.by_action {
        outln!("{action:<16} {:>8} {:>8}", c.ok, c.failed);
    }
    outln!(
        "signatures: {} valid, {} invalid, {} not checked",
        s.signatures.valid,
        s.signatures.invalid,
        s.signatures.not_checked
    );
    outln!("top users:");
    for (user, n) in &s.top_users {
        outln!("  {:<24} {n:>8}", user.to_string());
    }
    Ok(())
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

pub fn verify(args: AuditVerifyArgs, ctx: &mut Context) -> CliResult {
    ctx.use_repo(&args.repo)?;
    crate::custody::attach(ctx, &args.custody)?;
    let mut heads = Vec::new();
    if let Some(path) = &args.custody_head {
        let text = std::fs::read(path)
            .map_err(|e| pgseal_ops::Error::io(format!("reading {}", path.display()), e))?;
        let head = serde_json::from_slice(&text).map_err(|e| {
            Failure::usage(format!(
                "{} is not a custody service's audit head: {e}",
                path.display()
            ))
        })?;
        heads.push((path.display().to_string(), head));
    }
    if let Some(custody) = ctx.custody().cloned()
        && let Some(head) = custody.audit_head()?
    {
        heads.push((custody.describe(), head));
    }
    let mut r = audit::verify_with_heads(ctx, &args.anchors, &heads)?;
    if let Some(absent) = &r.no_store {
        r.problems.insert(
            0,
            format!(
                "{}; its audit log cannot be shown intact",
                crate::failure::no_store_message(absent)
            ),
        );
    }
    report(&args, &r)
}

fn report(args: &AuditVerifyArgs, r: &VerifyReport) -> CliResult {
    let newest_anchor = r.newest_anchor();
    let dir = &r.repository;
    let store_read = r.no_store.is_none();
    if args.json.on {
        print_json(&json!({
            "valid": r.intact(),
            "store": r.store,
            "entries": r.entries,
            "anchors_checked": r.anchors.len(),
            "newest_anchor": newest_anchor,
            "problems": r.problems,
            "anchors_skipped": r.found.skipped,
            "custody_heads": r.service_heads.iter().map(|(source, seq)| json!({
                "service": source,
                "seq": seq,
            })).collect::<Vec<_>>(),
            "backup_dir": {
                "path": dir,
                "exists": r.repository_exists,
                "pgseal_files": r.found.pgseal_files.len(),
                "signed": r.found.signed,
                "legacy": r.found.legacy,
                "other_files": r.found.ignored,
            },
            "catalog": {
                "missing_files": r.catalog.missing,
                "pruned_but_present": r.catalog.pruned_but_present,
                "uncatalogued": r.catalog.uncatalogued,
            },
        }));
    } else {
        if r.problems.is_empty() {
            outln!(
                "audit log intact: {} entries, hash chain unbroken",
                r.entries
            );
        }
        // A directory is "the backup directory"; a bucket's prefix is a repository.
        let what = if dir.starts_with("s3://") {
            "repository"
        } else {
            "backup directory"
        };
        if r.repository_exists {
            outln!(
                "{what} {dir}: {} ({} with a verified signed header), {}, {} ignored",
                plural(r.found.pgseal_files.len(), "pgseal file", "pgseal files"),
                r.found.signed,
                plural(r.found.legacy, "legacy file", "legacy files"),
                plural(r.found.ignored.len(), "other entry", "other entries"),
            );
        } else {
            outln!("{what} {dir}: does not exist");
        }
        match newest_anchor {
            Some(seq) if r.problems.is_empty() => outln!(
                "{} in signed backups {} (the newest at entry {seq}); entries after it are \
                 protected by the chain only until the next backup anchors them",
                plural(r.anchors.len(), "anchor", "anchors"),
                if r.anchors.len() == 1 {
                    "agrees"
                } else {
                    "agree"
                }
            ),
            Some(_) => outln!(
                "{} read from signed backups",
                plural(r.anchors.len(), "anchor", "anchors")
            ),
            None if store_read => outln!(
                "no anchors found: no signed backup in {dir} (nor any catalogued or --anchor \
                 file) anchors the log, so a cut-off tail cannot be detected"
            ),
            None => {}
        }
        for (source, seq) in &r.service_heads {
            outln!("the custody service {source} wrote entry {seq}: checked against the log");
        }
        for s in &r.found.skipped {
            outln!("note: anchor not used: {s}");
        }
        let c = &r.catalog;
        if !(c.missing.is_empty() && c.pruned_but_present.is_empty() && c.uncatalogued.is_empty()) {
            eprintln!("pgseal: warning: the catalog disagrees with the backup directory:");
            for f in &c.missing {
                eprintln!("  catalogued, but the file is missing: {f}");
            }
            for f in &c.pruned_but_present {
                eprintln!("  marked pruned in the catalog, but present: {f}");
            }
            for f in &c.uncatalogued {
                eprintln!("  not in the catalog: {f}");
            }
        }
    }
    if !args.json.on {
        for p in &r.problems {
            eprintln!("pgseal: not intact: {p}");
        }
    }
    r.result()
}

pub fn export(args: AuditExportArgs, ctx: &mut Context) -> CliResult {
    let rows = audit::export(ctx, args.after)?;
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    let crate::cli::ExportFormat::Jsonl = args.format;
    for row in &rows {
        writeln!(out, "{}", row_json(row)).map_err(|e| Failure::io("writing the export", e))?;
    }
    Ok(())
}
