//! `pgseal audit list` and `pgseal audit stats`: reading the audit log (what the old system's
//! `SELECT * FROM tenancy_encryption_audit_log` and its monitoring advice were for).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pgseal_core::time::Timestamp;
use pgseal_core::{Fingerprint, PublicKey};
use pgseal_store::{Action, AuditEntry, AuditFilter, BackupStatus, Hash32};
use serde_json::json;

use super::print_json;
use super::repository::{Examined, Listing, Repository, examine, store_signer};
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

/// An anchor read from a signed header: where the chain stood when a file was made.
struct Anchor {
    file: String,
    seq: i64,
    hash: Hash32,
}

/// Where a file `audit verify` reads came from.
#[derive(Debug, Default, Clone, Copy)]
struct Sources {
    /// In the backup directory.
    repository: bool,
    /// Named by a live catalog entry of this host.
    catalog: bool,
    /// Given with `--anchor`.
    given: bool,
}

/// What the backup directory and the other files read hold.
#[derive(Default)]
struct Findings {
    anchors: Vec<Anchor>,
    /// Signed (verified) pgseal files in the backup directory, anchored or not.
    signed: usize,
    /// pgseal (v2) files in the backup directory, vouched for or not.
    pgseal_files: Vec<String>,
    /// Legacy-format files in the backup directory (never catalogued, no anchors).
    legacy: usize,
    /// Files in the backup directory that are not pgseal files, and entries never read.
    ignored: Vec<String>,
    /// Files pgseal cannot vouch for: tampering findings.
    problems: Vec<String>,
    /// The newest anchor a file claims without proof (no store, or an unknown signer).
    claimed: Option<u64>,
    /// Notes on `--anchor` and catalogued files that anchor nothing.
    skipped: Vec<String>,
}

impl Findings {
    /// Counts what the backup directory holds besides regular files (never read): directories,
    /// links, devices, and unfinished writes.
    fn ignore_unread(&mut self, listing: &Listing) {
        self.ignored.extend(
            listing
                .other
                .iter()
                .chain(&listing.partial)
                .map(|p| p.display().to_string()),
        );
    }
}

/// Reads every file in the backup directory, every catalogued file of this host and every
/// `--anchor` file — the prelude of each, never more — and sorts them into anchors and findings.
fn read_files(
    files: &BTreeMap<PathBuf, Sources>,
    signer_key: &mut dyn FnMut(&Fingerprint) -> CliResult<Option<PublicKey>>,
) -> CliResult<Findings> {
    let mut found = Findings::default();
    for (path, from) in files {
        let shown = path.display().to_string();
        let file = match open_regular(path) {
            Ok(f) => f,
            Err(why) => {
                if from.repository || from.catalog {
                    found.problems.push(format!("{shown}: {why}"));
                } else {
                    found.skipped.push(format!("{shown}: {why}"));
                }
                continue;
            }
        };
        match examine(file, signer_key)? {
            Examined::Signed(prelude) => {
                if from.repository {
                    found.signed += 1;
                    found.pgseal_files.push(shown.clone());
                }
                match prelude.header.metadata.audit_anchor {
                    Some(a) => found.anchors.push(Anchor {
                        file: shown,
                        seq: a.seq as i64,
                        hash: Hash32(a.entry_hash),
                    }),
                    None if from.given => {
                        found
                            .skipped
                            .push(format!("{shown}: its header holds no anchor"));
                    }
                    None => {}
                }
            }
            Examined::Legacy(kind) => {
                if from.repository {
                    found.legacy += 1;
                }
                if from.given {
                    found
                        .skipped
                        .push(format!("{shown}: {kind}, which holds no anchor"));
                }
            }
            Examined::Foreign(kind) => {
                if from.repository {
                    found.ignored.push(shown.clone());
                }
                if from.catalog {
                    found.skipped.push(format!(
                        "{shown}: catalogued, but not a pgseal file ({kind})"
                    ));
                } else if from.given {
                    found
                        .skipped
                        .push(format!("{shown}: not a pgseal file ({kind})"));
                }
            }
            Examined::Unvouched {
                reason,
                claimed_anchor,
            } => {
                if from.repository {
                    found.pgseal_files.push(shown.clone());
                }
                found.claimed = found.claimed.max(claimed_anchor);
                let claim = claimed_anchor
                    .map(|seq| format!("; it claims to anchor entry {seq}"))
                    .unwrap_or_default();
                found.problems.push(format!("{shown}: {reason}{claim}"));
            }
        }
    }
    Ok(found)
}

/// Opens a file only if it is a regular file (a FIFO would block, a device never ends).
fn open_regular(path: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| format!("cannot be read: {e}"))?;
    match file.metadata() {
        Ok(m) if m.is_file() => Ok(file),
        Ok(_) => Err("not a regular file".into()),
        Err(e) => Err(format!("cannot be read: {e}")),
    }
}

/// The files to read: the backup directory's, this host's catalogued ones, and `--anchor`s —
/// each once, by its canonical path.
fn files_to_read(
    listing: &Listing,
    catalogued: &[PathBuf],
    given: &[PathBuf],
    skipped: &mut Vec<String>,
) -> BTreeMap<PathBuf, Sources> {
    let mut files: BTreeMap<PathBuf, Sources> = Default::default();
    for p in &listing.files {
        files.entry(p.clone()).or_default().repository = true;
    }
    for p in catalogued {
        files.entry(p.clone()).or_default().catalog = true;
    }
    for p in given {
        match std::fs::canonicalize(p) {
            Ok(c) => files.entry(c).or_default().given = true,
            Err(e) => skipped.push(format!("{}: {e}", p.display())),
        }
    }
    files
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

pub fn verify(args: AuditVerifyArgs, ctx: &mut Context) -> CliResult {
    let here = super::host_name().unwrap_or_default();
    let backup_dir = ctx.config()?.backup_dir.clone();
    let repo = Repository::open(&backup_dir)?;
    let listing = repo.list()?;
    let store_url = ctx.config()?.store.to_string();

    if let Some(absent) = ctx.existing_store()?.err() {
        // No store to verify against: say so, and what the backup directory claims.
        let mut skipped = Vec::new();
        let files = files_to_read(&listing, &[], &args.anchors, &mut skipped);
        let mut found = read_files(&files, &mut |_| Ok(None))?;
        found.ignore_unread(&listing);
        let mut problems = vec![format!(
            "{}; its audit log cannot be shown intact",
            crate::failure::no_store_message(&absent)
        )];
        if !found.pgseal_files.is_empty() {
            problems.push(format!(
                "the backup directory {} holds {}{} (unverified: the keys that would verify \
                 them were in the store)",
                backup_dir.display(),
                plural(found.pgseal_files.len(), "pgseal file", "pgseal files"),
                found
                    .claimed
                    .map(|seq| format!(" anchoring the log up to entry {seq}"))
                    .unwrap_or_default()
            ));
        }
        return report(
            &args,
            Report {
                store: &store_url,
                store_read: false,
                entries: 0,
                anchors: &[],
                found: &found,
                repo: &repo,
                problems,
                catalog: Discrepancies::default(),
            },
        );
    }

    let store = ctx.store()?;
    let chain = store.verify_audit_chain().map_err(store_failure)?;
    let history = store.backup_history().map_err(store_failure)?;
    let mut problems: Vec<String> = Vec::new();
    let entries = match &chain {
        Ok(n) => *n,
        Err(b) => {
            problems.push(format!("entry {}: {}", b.seq, b.reason));
            0
        }
    };
    if chain.is_ok() && entries == 0 {
        problems.push(format!(
            "the audit log of {store_url} is empty: a pgseal store records at least the command \
             that made it, so this log was emptied or the store re-created"
        ));
    }

    // This host's catalog entries, by the canonical path of the file they name.
    let mut live = BTreeMap::new();
    let mut pruned = BTreeMap::new();
    let mut missing = Vec::new();
    for b in history.iter().filter(|b| b.entry.host == here) {
        let path = Path::new(&b.entry.path);
        match (b.status, std::fs::canonicalize(path)) {
            (BackupStatus::Ok, Ok(c)) => {
                live.insert(c, b.id);
            }
            (BackupStatus::Ok, Err(_)) => missing.push(b.entry.path.clone()),
            (BackupStatus::Pruned, Ok(c)) => {
                pruned.insert(c, b.id);
            }
            (BackupStatus::Pruned, Err(_)) => {}
        }
    }
    let catalogued: Vec<PathBuf> = live.keys().cloned().collect();
    let mut skipped = Vec::new();
    let files = files_to_read(&listing, &catalogued, &args.anchors, &mut skipped);
    let mut found = read_files(&files, &mut |fp| store_signer(ctx, fp))?;
    found.skipped.splice(0..0, skipped);
    found.ignore_unread(&listing);
    problems.append(&mut found.problems);

    let mut catalog = Discrepancies {
        missing,
        ..Discrepancies::default()
    };
    for file in &found.pgseal_files {
        let key = PathBuf::from(file);
        if live.contains_key(&key) {
            continue;
        }
        if pruned.contains_key(&key) {
            catalog.pruned_but_present.push(file.clone());
        } else {
            catalog.uncatalogued.push(file.clone());
        }
    }

    if chain.is_ok() {
        for a in &found.anchors {
            match ctx.store()?.audit_entry(a.seq).map_err(store_failure)? {
                None => problems.push(format!(
                    "entry {} is gone, but {} (signed) anchors the log there: the log was cut \
                     back (or the store re-created)",
                    a.seq, a.file
                )),
                Some(e) if e.entry_hash != a.hash => problems.push(format!(
                    "entry {} differs from the one {} (signed) anchors: the log was rewritten \
                     (or the store re-created)",
                    a.seq, a.file
                )),
                Some(_) => {}
            }
        }
    }
    let anchors = std::mem::take(&mut found.anchors);
    report(
        &args,
        Report {
            store: &store_url,
            store_read: true,
            entries,
            anchors: &anchors,
            found: &found,
            repo: &repo,
            problems,
            catalog,
        },
    )
}

/// Where the catalog and the backup directory disagree: reported, for a person to look at.
#[derive(Default)]
struct Discrepancies {
    /// Live entries of this host whose file is gone.
    missing: Vec<String>,
    /// pgseal files in the backup directory that the catalog says were pruned.
    pruned_but_present: Vec<String>,
    /// pgseal files in the backup directory that no catalog entry names.
    uncatalogued: Vec<String>,
}

struct Report<'a> {
    store: &'a str,
    /// Whether there was a store to read (else only the backup directory was looked at).
    store_read: bool,
    entries: i64,
    anchors: &'a [Anchor],
    found: &'a Findings,
    repo: &'a Repository,
    problems: Vec<String>,
    catalog: Discrepancies,
}

fn report(args: &AuditVerifyArgs, r: Report<'_>) -> CliResult {
    let newest_anchor = r.anchors.iter().map(|a| a.seq).max();
    let dir = r.repo.dir.display().to_string();
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
                "exists": r.repo.canonical().is_some(),
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
        match r.repo.canonical() {
            Some(_) => println!(
                "backup directory {dir}: {} ({} with a verified signed header), {}, {} ignored",
                plural(r.found.pgseal_files.len(), "pgseal file", "pgseal files"),
                r.found.signed,
                plural(r.found.legacy, "legacy file", "legacy files"),
                plural(r.found.ignored.len(), "other entry", "other entries"),
            ),
            None => println!("backup directory {dir}: does not exist"),
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
            None if r.store_read => println!(
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
