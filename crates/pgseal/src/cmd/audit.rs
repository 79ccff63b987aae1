//! `pgseal audit list` and `pgseal audit stats`: reading the audit log (what the old system's
//! `SELECT * FROM tenancy_encryption_audit_log` and its monitoring advice were for).

use std::collections::BTreeMap;

use pgseal_core::time::Timestamp;
use pgseal_ops::anchors::VerifyReport;
use pgseal_store::{Action, AuditEntry, AuditFilter};
use serde_json::json;

use super::print_json;
use crate::cli::{AuditExportArgs, AuditListArgs, AuditStatsArgs, AuditVerifyArgs};
use crate::context::{Context, opt, store_failure};
use crate::failure::{CliResult, Failure};

fn filter(args: &AuditListArgs, ctx: &mut Context) -> CliResult<AuditFilter> {
    let user_id = match &args.user {
        Some(name) => {
            let name = crate::context::username(name)?;
            Some(ctx.read_store()?.user(&name).map_err(store_failure)?.id)
        }
        None => None,
    };
    let since = match (&args.since, args.hours) {
        (Some(text), _) => Some(Timestamp::parse(text).ok_or_else(|| {
            Failure::usage(format!(
                "bad time `{text}`: use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)"
            ))
        })?),
        (None, Some(h)) => Some(Timestamp(
            Timestamp::now().millis() - i64::from(h) * 3_600_000,
        )),
        (None, None) => None,
    };
    Ok(AuditFilter {
        action: args
            .action
            .as_ref()
            .map(|a| Action::from(a.to_ascii_uppercase())),
        user_id,
        since,
        failed_only: args.failed_only,
        invalid_signature: args.invalid_signature,
        limit: Some(args.limit),
    })
}

fn usernames(ctx: &mut Context) -> CliResult<BTreeMap<i64, String>> {
    Ok(ctx
        .read_store()?
        .users()
        .map_err(store_failure)?
        .into_iter()
        .map(|u| (u.id, u.username.into()))
        .collect())
}

fn entry_json(e: &AuditEntry, names: &BTreeMap<i64, String>) -> serde_json::Value {
    let x = &e.entry;
    let details: serde_json::Value =
        serde_json::from_str(&x.details).unwrap_or_else(|_| json!(x.details));
    json!({
        "id": e.id,
        "timestamp": x.timestamp.rfc3339(),
        "action": x.action,
        "success": x.success,
        "user_id": x.user_id,
        "username": opt(x.user_id.and_then(|id| names.get(&id).cloned())),
        "os_user": x.os_user,
        "backup_creator_id": x.backup_creator_id,
        "backup_file": x.backup_file,
        "signature_valid": x.signature_valid,
        "host": x.host,
        "ip_address": x.ip_address,
        "details": details,
        "seq": e.seq,
        "prev_hash": e.prev_hash,
        "entry_hash": e.entry_hash,
        "imported": e.imported,
    })
}

pub fn list(args: AuditListArgs, ctx: &mut Context) -> CliResult {
    let f = filter(&args, ctx)?;
    let entries = ctx.read_store()?.audit_query(&f).map_err(store_failure)?;
    let names = usernames(ctx)?;
    if args.json {
        print_json(&json!(
            entries
                .iter()
                .map(|e| entry_json(e, &names))
                .collect::<Vec<_>>()
        ));
        return Ok(());
    }
    if entries.is_empty() {
        println!("no audit entries match");
        return Ok(());
    }
    println!(
        "{:<5} {:<24} {:<12} {:<6} {:<16} {:<20} {:<5} FILE / ERROR",
        "ID", "TIME", "ACTION", "RESULT", "USER", "OS USER@HOST", "SIG"
    );
    for e in &entries {
        let x = &e.entry;
        let user = x
            .user_id
            .map(|id| names.get(&id).cloned().unwrap_or_else(|| format!("#{id}")))
            .unwrap_or_else(|| "-".into());
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
        let error = serde_json::from_str::<serde_json::Value>(&x.details)
            .ok()
            .and_then(|d| d["error"].as_str().map(str::to_owned));
        let tail = match (&x.backup_file, error) {
            (_, Some(err)) => err.lines().next().unwrap_or_default().to_owned(),
            (Some(f), None) => f.clone(),
            (None, None) => String::new(),
        };
        println!(
            "{:<5} {:<24} {:<12} {:<6} {:<16} {:<20} {:<5} {}",
            e.id,
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
    let since = args
        .hours
        .map(|h| Timestamp(Timestamp::now().millis() - i64::from(h) * 3_600_000));
    let entries = ctx
        .read_store()?
        .audit_query(&AuditFilter {
            since,
            ..AuditFilter::default()
        })
        .map_err(store_failure)?;
    let names = usernames(ctx)?;
    let mut by_action: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut signatures = [0u64; 3];
    let mut by_user: BTreeMap<String, u64> = BTreeMap::new();
    for e in &entries {
        let x = &e.entry;
        let slot = by_action.entry(x.action.as_str()).or_default();
        if x.success {
            slot.0 += 1;
        } else {
            slot.1 += 1;
        }
        signatures[match x.signature_valid {
            Some(true) => 0,
            Some(false) => 1,
            None => 2,
        }] += 1;
        let who = match x.user_id {
            Some(id) => names.get(&id).cloned().unwrap_or_else(|| format!("#{id}")),
            None => format!("(os) {}", x.os_user.as_deref().unwrap_or("?")),
        };
        *by_user.entry(who).or_default() += 1;
    }
    let mut top: Vec<(String, u64)> = by_user.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(10);
    if args.json {
        print_json(&json!({
            "entries": entries.len(),
            "by_action": by_action.iter().map(|(a, (ok, failed))| (a.to_string(), json!({ "ok": ok, "failed": failed }))).collect::<serde_json::Map<_, _>>(),
            "signatures": { "valid": signatures[0], "invalid": signatures[1], "not_checked": signatures[2] },
            "top_users": top.iter().map(|(u, n)| json!({ "user": u, "entries": n })).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    println!("{} entries", entries.len());
    println!("{:<14} {:>8} {:>8}", "ACTION", "OK", "FAILED");
    for (action, (ok, failed)) in &by_action {
        println!("{action:<14} {ok:>8} {failed:>8}");
    }
    println!(
        "signatures: {} valid, {} invalid, {} not checked",
        signatures[0], signatures[1], signatures[2]
    );
    println!("top users:");
    for (user, n) in &top {
        println!("  {user:<24} {n:>8}");
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
    let repository = pgseal_ops::repo::site_repository(ctx)?;
    let reach = pgseal_ops::repo::reach(ctx);
    let mut r = pgseal_ops::anchors::verify(ctx, &repository, &reach, &args.anchors)?;
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
    let newest_anchor = r.anchors.iter().map(|a| a.seq).max();
    let dir = &r.repository;
    let store_read = r.no_store.is_none();
    if args.json {
        print_json(&json!({
            "valid": r.problems.is_empty(),
            "store": r.store,
            "entries": r.entries,
            "anchors_checked": r.anchors.len(),
            "newest_anchor": newest_anchor,
            "problems": r.problems,
            "anchors_skipped": r.found.skipped,
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
            println!(
                "audit log intact: {} entries, hash chain unbroken",
                r.entries
            );
        }
        if r.repository_exists {
            println!(
                "backup directory {dir}: {} ({} with a verified signed header), {}, {} ignored",
                plural(r.found.pgseal_files.len(), "pgseal file", "pgseal files"),
                r.found.signed,
                plural(r.found.legacy, "legacy file", "legacy files"),
                plural(r.found.ignored.len(), "other entry", "other entries"),
            );
        } else {
            println!("backup directory {dir}: does not exist");
        }
        match newest_anchor {
            Some(seq) if r.problems.is_empty() => println!(
                "{} in signed backups {} (the newest at entry {seq}); entries after it are \
                 protected by the chain only until the next backup anchors them",
                plural(r.anchors.len(), "anchor", "anchors"),
                if r.anchors.len() == 1 {
                    "agrees"
                } else {
                    "agree"
                }
            ),
            Some(_) => println!(
                "{} read from signed backups",
                plural(r.anchors.len(), "anchor", "anchors")
            ),
            None if store_read => println!(
                "no anchors found: no signed backup in {dir} (nor any catalogued or --anchor \
                 file) anchors the log, so a cut-off tail cannot be detected"
            ),
            None => {}
        }
        for s in &r.found.skipped {
            println!("note: anchor not used: {s}");
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
    if let Some(first) = r.problems.first() {
        if !args.json {
            for p in &r.problems {
                eprintln!("pgseal: not intact: {p}");
            }
        }
        return Err(Failure::Authentication(format!(
            "the audit log cannot be shown intact ({}): {first}",
            plural(r.problems.len(), "finding", "findings")
        )));
    }
    Ok(())
}

pub fn export(args: AuditExportArgs, ctx: &mut Context) -> CliResult {
    let entries = ctx
        .read_store()?
        .audit_query(&AuditFilter::default())
        .map_err(store_failure)?;
    let names = usernames(ctx)?;
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    let crate::cli::ExportFormat::Jsonl = args.format;
    for e in entries.iter().filter(|e| e.seq > args.after) {
        writeln!(out, "{}", entry_json(e, &names))
            .map_err(|e| Failure::io("writing the export", e))?;
    }
    Ok(())
}
