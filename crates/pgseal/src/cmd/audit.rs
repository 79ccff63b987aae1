//! `pgseal audit list` and `pgseal audit stats`: reading the audit log (what the old system's
//! `SELECT * FROM tenancy_encryption_audit_log` and its monitoring advice were for).

use std::collections::BTreeMap;

use pgseal_core::time::Timestamp;
use pgseal_store::{AuditEntry, AuditFilter};
use serde_json::json;

use super::print_json;
use crate::cli::{AuditExportArgs, AuditListArgs, AuditStatsArgs, AuditVerifyArgs};
use crate::context::{Context, opt, store_failure};
use crate::failure::{CliResult, Failure};

fn filter(args: &AuditListArgs, ctx: &mut Context) -> CliResult<AuditFilter> {
    let user_id = match &args.user {
        Some(name) => Some(ctx.store()?.user(name).map_err(store_failure)?.id),
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
        action: args.action.as_ref().map(|a| a.to_ascii_uppercase()),
        user_id,
        since,
        failed_only: args.failed_only,
        invalid_signature: args.invalid_signature,
        limit: Some(args.limit),
    })
}

fn usernames(ctx: &mut Context) -> CliResult<BTreeMap<i64, String>> {
    Ok(ctx
        .store()?
        .users()
        .map_err(store_failure)?
        .into_iter()
        .map(|u| (u.id, u.username))
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
    let entries = ctx.store()?.audit_query(&f).map_err(store_failure)?;
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
        .store()?
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
        let slot = by_action.entry(&x.action).or_default();
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

/// An anchor read from a signed header: where the chain stood when a file was made.
struct Anchor {
    file: String,
    seq: i64,
    hash: String,
}

pub fn verify(args: AuditVerifyArgs, ctx: &mut Context) -> CliResult {
    let here = super::host_name().unwrap_or_default();
    let store = ctx.store()?;
    let chain = store.verify_audit_chain().map_err(store_failure)?;
    let mut files: Vec<String> = store
        .backups(None)
        .map_err(store_failure)?
        .into_iter()
        .filter(|b| b.entry.host == here && std::path::Path::new(&b.entry.path).exists())
        .map(|b| b.entry.path)
        .collect();
    files.extend(args.anchors.iter().map(|p| p.display().to_string()));

    let mut anchors = Vec::new();
    let mut skipped = Vec::new();
    for file in &files {
        match read_anchor(ctx, file) {
            Ok(Some(a)) => anchors.push(a),
            Ok(None) => {}
            Err(why) => skipped.push(format!("{file}: {why}")),
        }
    }
    let mut problems: Vec<String> = Vec::new();
    let entries = match &chain {
        Ok(n) => *n,
        Err(b) => {
            problems.push(format!("entry {}: {}", b.seq, b.reason));
            0
        }
    };
    if chain.is_ok() {
        for a in &anchors {
            match ctx.store()?.audit_entry(a.seq).map_err(store_failure)? {
                None => problems.push(format!(
                    "entry {} is gone, but {} (signed) anchors the log there: the log was cut back",
                    a.seq, a.file
                )),
                Some(e) if e.entry_hash != a.hash => problems.push(format!(
                    "entry {} differs from the one {} (signed) anchors: the log was rewritten",
                    a.seq, a.file
                )),
                Some(_) => {}
            }
        }
    }
    let newest_anchor = anchors.iter().map(|a| a.seq).max();
    if args.json {
        print_json(&json!({
            "valid": problems.is_empty(),
            "entries": entries,
            "anchors_checked": anchors.len(),
            "newest_anchor": newest_anchor,
            "problems": problems,
            "anchors_skipped": skipped,
        }));
    } else if problems.is_empty() {
        println!("audit log intact: {entries} entries, hash chain unbroken");
        match newest_anchor {
            Some(seq) => println!(
                "{} in signed backups {} (the newest at entry {seq}); entries after it are \
                 protected by the chain only until the next backup anchors them",
                if anchors.len() == 1 {
                    "1 anchor".to_owned()
                } else {
                    format!("{} anchors", anchors.len())
                },
                if anchors.len() == 1 {
                    "agrees"
                } else {
                    "agree"
                }
            ),
            None => println!("no backup anchors the log yet: a cut-off tail cannot be detected"),
        }
        for s in &skipped {
            println!("note: anchor not used: {s}");
        }
    }
    if let Some(first) = problems.first() {
        if !args.json {
            for p in &problems {
                eprintln!("pgseal: audit log damaged: {p}");
            }
        }
        return Err(Failure::new(
            crate::failure::ExitCode::Authentication,
            format!("the audit log has been tampered with: {first}"),
        ));
    }
    Ok(())
}

/// The anchor in a file's header, once its header signature verifies with the creator's key
/// from the store (an unsigned claim anchors nothing).
fn read_anchor(ctx: &mut Context, file: &str) -> Result<Option<Anchor>, String> {
    let mut input = crate::files::Input::open(file).map_err(|f| f.message)?;
    let prefix = input
        .peek(pgseal_core::detect::DETECT_LEN)
        .map_err(|f| f.message)?;
    if !matches!(
        pgseal_core::detect(&prefix),
        pgseal_core::Detected::Pgseal { .. }
    ) {
        return Ok(None);
    }
    let prelude = pgseal_core::v2::read_prelude(&mut input).map_err(|e| e.to_string())?;
    let Some(anchor) = prelude.header.metadata.audit_anchor else {
        return Ok(None);
    };
    let (signers, _) =
        super::keyring::v2_signers(ctx, &[], &prelude.header.signer).map_err(|f| f.message)?;
    prelude
        .verify_header_signature(&signers)
        .map_err(|e| e.to_string())?;
    Ok(Some(Anchor {
        file: file.to_owned(),
        seq: anchor.seq as i64,
        hash: anchor
            .entry_hash
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    }))
}

pub fn export(args: AuditExportArgs, ctx: &mut Context) -> CliResult {
    let entries = ctx
        .store()?
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
