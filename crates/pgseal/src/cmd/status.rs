//! `pgseal status [--json] [--max-age AGE] [--prometheus FILE]`: the site's state from
//! `pgseal_ops::status`, shown as a table or JSON, judged against --max-age with the
//! Nagios/Icinga plugin's exit codes (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN), and written as
//! node_exporter textfile-collector metrics.

use std::io::Write as _;
use std::path::Path;

use pgseal_core::time::Timestamp;
use pgseal_ops::status::{
    self, DatabaseStatus, Evaluation, HeaderCheck, State, Status, Thresholds, age_text,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use super::{parse_age, print_json};
use crate::cli::StatusArgs;
use crate::context::Context;
use crate::failure::{CliResult, Failure};
use crate::progress::human;
use crate::show;

/// Runs `status` and returns its state (its exit code: OK unless --max-age judged otherwise).
pub fn run(args: StatusArgs, ctx: &mut Context) -> CliResult<State> {
    let thresholds = args
        .max_age
        .as_deref()
        .map(|text| {
            parse_age(text).map(|max_age_ms| Thresholds {
                max_age_ms: max_age_ms.max(0),
            })
        })
        .transpose()?;
    let now = Timestamp::now();
    let s = status::status(ctx, now)?;
    let evaluation = thresholds.map(|t| status::evaluate(&s, &t, now));
    if let Some(path) = &args.prometheus {
        write_atomically(path, &metrics(&s))?;
    }
    if args.json.on {
        print_json(&to_json(&s, evaluation.as_ref()));
    } else {
        if let Some(e) = &evaluation {
            outln!("{}", e.summary(s.databases.len()));
        }
        print_table(&s);
    }
    Ok(evaluation.map_or(State::Ok, |e| e.state))
}

/// The whole command as `main` runs it: every way it can fail — the configuration, the store,
/// standard output — is UNKNOWN (exit 3), said in the plugin's one line on standard output, on
/// standard error, and with --json as the usual error object (`exit_code` 3).
pub fn main(args: StatusArgs, ctx: CliResult<Context>) -> i32 {
    let json = args.json.on;
    let result = ctx.and_then(|mut ctx| {
        let state = run(args, &mut ctx);
        let written = match crate::out::failure() {
            Some(e) => Err(Failure::io("writing standard output", e)),
            None => Ok(()),
        };
        ctx.finish(written)?;
        state
    });
    match result {
        Ok(state) => state as i32,
        Err(failure) => unknown(&crate::failure::message(&failure), json),
    }
}

/// Reports that the state could not be found out, and returns UNKNOWN's exit code.
pub fn unknown(message: &str, json: bool) -> i32 {
    let code = State::Unknown as i32;
    let line = format!(
        "PGSEAL UNKNOWN - {}",
        show::text(message).replace('\n', " ")
    );
    if json {
        let object = json!({"error": {"message": message, "exit_code": code, "kind": "unknown"}});
        let _ = writeln!(std::io::stdout(), "{object}");
    } else {
        let _ = writeln!(std::io::stdout(), "{line}");
    }
    eprintln!("pgseal: error: {message}");
    code
}

fn header_json(h: &HeaderCheck) -> Value {
    match h {
        HeaderCheck::Matches => json!({"state": "matches"}),
        HeaderCheck::Mismatch(why) => json!({"state": "mismatch", "reason": why}),
        HeaderCheck::Missing => json!({"state": "missing"}),
        HeaderCheck::OutOfReach => json!({
            "state": "not_checked",
            "reason": "no copy of it is within reach of this host",
        }),
        HeaderCheck::NotChecked(why) => json!({"state": "not_checked", "reason": why}),
    }
}

fn secs_between(from: Timestamp, to: Timestamp) -> i64 {
    (to.millis() - from.millis()).div_euclid(1000)
}

fn database_json(d: &DatabaseStatus, now: Timestamp) -> Value {
    let backup = d.last_backup.as_ref().map(|b| {
        json!({
            "id": b.id,
            "location": b.location,
            "created_at": b.created_at.rfc3339(),
            "age_seconds": secs_between(b.created_at, now),
            "size_bytes": b.size_bytes,
            "duration_ms": b.duration_ms,
            "verified": b.verified.is_some(),
            "verified_at": b.verified.as_ref().map(|v| v.at.rfc3339()),
            "verified_by": b.verified.as_ref().map(|v| v.by),
            "header": header_json(&b.header),
        })
    });
    let check = d.last_check.as_ref().map(|c| {
        json!({
            "at": c.at.rfc3339(),
            "ok": c.ok,
            "backup_id": c.backup_id,
            "error": c.error,
        })
    });
    json!({
        "database": d.database,
        "last_backup": backup,
        "last_check": check,
        "last_good_check": d.last_good_check.map(Timestamp::rfc3339),
        "failures_24h": d.failures_24h,
    })
}

fn to_json(s: &Status, evaluation: Option<&Evaluation>) -> Value {
    let chain = &s.chain;
    json!({
        "now": s.now.rfc3339(),
        "state": evaluation.map(|e| e.state.as_str()),
        "exit_code": evaluation.map_or(0, |e| e.state as i32),
        "summary": evaluation.map(|e| e.summary(s.databases.len())),
        "findings": evaluation.map(|e| e.findings.iter().map(|f| json!({
            "state": f.state.as_str(),
            "database": f.database,
            "message": f.message,
        })).collect::<Vec<_>>()),
        "databases": s.databases.iter().map(|d| database_json(d, s.now)).collect::<Vec<_>>(),
        "server_key": s.server_key.as_ref().map(|k| json!({
            "fingerprint": k.fingerprint,
            "created_at": k.created_at.rfc3339(),
            "age_seconds": secs_between(k.created_at, s.now),
        })),
        "audit_chain": {
            "intact": chain.intact(),
            "entries": chain.entries,
            "broken": chain.broken.as_ref().map(|b| json!({"seq": b.seq, "reason": b.reason})),
            "anchors_checked": chain.anchors_checked,
            "anchor_problems": chain.anchor_problems,
            "walk_ms": chain.walk_ms,
        },
    })
}

fn print_table(s: &Status) {
    let now = s.now;
    if s.databases.is_empty() {
        outln!("no backups catalogued");
    } else {
        outln!(
            "{:<20} {:<24} {:>8} {:>10} {:>9} {:<34} {:<30} {:>6}",
            "DATABASE",
            "LAST BACKUP (UTC)",
            "AGE",
            "SIZE",
            "DURATION",
            "VERIFIED",
            "LAST RESTORE CHECK",
            "FAILED"
        );
    }
    for d in &s.databases {
        let (time, age, size, duration, verified) = match &d.last_backup {
            None => (
                "none".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
            ),
            Some(b) => (
                b.created_at.rfc3339(),
                age_text(now.millis() - b.created_at.millis()),
                human(b.size_bytes.max(0) as u64),
                b.duration_ms.map_or_else(
                    || "?".to_owned(),
                    |ms| format!("{:.1}s", ms as f64 / 1000.0),
                ),
                match &b.verified {
                    Some(v) => format!("{} {}", v.by, v.at.rfc3339()),
                    None => "never verified".to_owned(),
                },
            ),
        };
        let check = match &d.last_check {
            None => "never".to_owned(),
            Some(c) => format!(
                "{} {}",
                if c.ok { "passed" } else { "FAILED" },
                c.at.rfc3339()
            ),
        };
        outln!(
            "{:<20} {:<24} {:>8} {:>10} {:>9} {:<34} {:<30} {:>6}",
            show::name(&d.database),
            time,
            age,
            size,
            duration,
            verified,
            check,
            d.failures_24h
        );
        if let Some(b) = &d.last_backup {
            match &b.header {
                HeaderCheck::Matches => {}
                HeaderCheck::Mismatch(why) => outln!(
                    "  {}: the newest backup is not as catalogued: {why}",
                    show::name(&d.database)
                ),
                HeaderCheck::Missing => outln!(
                    "  {}: the newest backup's file is gone ({})",
                    show::name(&d.database),
                    show::name(&b.location)
                ),
                HeaderCheck::OutOfReach => outln!(
                    "  {}: signed header not checked: no copy of it is within reach of this host",
                    show::name(&d.database),
                ),
                HeaderCheck::NotChecked(why) => outln!(
                    "  {}: signed header not checked: {}",
                    show::name(&d.database),
                    show::name(why)
                ),
            }
        }
        if let Some(c) = &d.last_check
            && let Some(error) = &c.error
        {
            outln!(
                "  {}: last restore check failed: {}",
                show::name(&d.database),
                show::name(error)
            );
        }
    }
    match &s.server_key {
        Some(k) => outln!(
            "server key: {} made {} ({} old)",
            k.fingerprint,
            k.created_at.rfc3339(),
            age_text(now.millis() - k.created_at.millis())
        ),
        None => outln!("server key: none active"),
    }
    let c = &s.chain;
    let state = match (&c.broken, c.entries) {
        (Some(b), _) => format!("BROKEN at entry {}: {}", b.seq, b.reason),
        (None, 0) => "EMPTY (emptied, or the store re-created)".to_owned(),
        (None, 1) => "intact, 1 entry".to_owned(),
        (None, n) => format!("intact, {n} entries"),
    };
    outln!(
        "audit chain: {state} (walked in {} ms); {} backup anchor(s) checked",
        c.walk_ms,
        c.anchors_checked
    );
    for p in &c.anchor_problems {
        outln!("  {p}");
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Database {
    database: String,
}

type Gauges = Family<Database, Gauge<f64, std::sync::atomic::AtomicU64>>;

/// The status as node_exporter textfile-collector metrics (the Prometheus text format, HELP and
/// TYPE lines, label values escaped by `prometheus-client`).
fn metrics(s: &Status) -> String {
    let mut registry = Registry::default();
    let per_db = |registry: &mut Registry, name: &str, help: &str| {
        let family = Gauges::default();
        registry.register(name, help, family.clone());
        family
    };
    let last_success = per_db(
        &mut registry,
        "pgseal_backup_last_success_timestamp_seconds",
        "When the newest live backup of the database was made (catalog time), Unix seconds",
    );
    let size = per_db(
        &mut registry,
        "pgseal_backup_last_size_bytes",
        "Size of the newest live backup's sealed file, bytes",
    );
    let duration = per_db(
        &mut registry,
        "pgseal_backup_last_duration_seconds",
        "How long the newest backup took (its BACKUP audit entry's duration), seconds",
    );
    let verified = per_db(
        &mut registry,
        "pgseal_backup_last_verified",
        "1 if the newest backup was verified (verify or restore) after it was made, else 0",
    );
    let header_ok = per_db(
        &mut registry,
        "pgseal_backup_last_header_ok",
        "1 if the newest backup's signed header matches its catalog entry, 0 if not or if its \
         file is gone (absent when not checked from this host)",
    );
    let check_success = per_db(
        &mut registry,
        "pgseal_restore_check_last_success_timestamp_seconds",
        "When a restore --check of the database last passed, Unix seconds",
    );
    let check_ok = per_db(
        &mut registry,
        "pgseal_restore_check_last_ok",
        "1 if the database's last restore --check passed, 0 if it failed",
    );
    let failures = per_db(
        &mut registry,
        "pgseal_failures_24h",
        "Failed audit entries naming the database in the last 24 hours",
    );
    let secs = |t: Timestamp| t.millis() as f64 / 1000.0;
    for d in &s.databases {
        let label = Database {
            database: d.database.clone(),
        };
        if let Some(b) = &d.last_backup {
            last_success.get_or_create(&label).set(secs(b.created_at));
            size.get_or_create(&label).set(b.size_bytes as f64);
            if let Some(ms) = b.duration_ms {
                duration.get_or_create(&label).set(ms as f64 / 1000.0);
            }
            verified
                .get_or_create(&label)
                .set(if b.verified.is_some() { 1.0 } else { 0.0 });
            let header = match b.header {
                HeaderCheck::Matches => Some(1.0),
                HeaderCheck::Mismatch(_) | HeaderCheck::Missing => Some(0.0),
                HeaderCheck::OutOfReach | HeaderCheck::NotChecked(_) => None,
            };
            if let Some(v) = header {
                header_ok.get_or_create(&label).set(v);
            }
        }
        if let Some(t) = d.last_good_check {
            check_success.get_or_create(&label).set(secs(t));
        }
        if let Some(c) = &d.last_check {
            check_ok
                .get_or_create(&label)
                .set(if c.ok { 1.0 } else { 0.0 });
        }
        failures.get_or_create(&label).set(d.failures_24h as f64);
    }
    let single = |registry: &mut Registry, name: &str, help: &str, value: f64| {
        let gauge = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        gauge.set(value);
        registry.register(name, help, gauge);
    };
    single(
        &mut registry,
        "pgseal_audit_chain_ok",
        "1 if the audit chain is unbroken, not empty and agrees with the newest backups' anchors",
        if s.chain.intact() { 1.0 } else { 0.0 },
    );
    single(
        &mut registry,
        "pgseal_audit_chain_entries",
        "Audit log entries walked",
        s.chain.entries as f64,
    );
    if let Some(k) = &s.server_key {
        single(
            &mut registry,
            "pgseal_server_key_age_seconds",
            "Age of the active server key, seconds",
            (s.now.millis() - k.created_at.millis()) as f64 / 1000.0,
        );
    }
    single(
        &mut registry,
        "pgseal_status_timestamp_seconds",
        "When pgseal status wrote this file, Unix seconds (a stale file means it stopped running)",
        secs(s.now),
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing into a String cannot fail");
    text
}

/// Writes `text` to `path` so that a reader never sees it half-written: into an unnamed (or
/// hidden) file in the same directory, fsynced, then renamed over `path`, 0644.
fn write_atomically(path: &Path, text: &str) -> CliResult {
    let mut file = pgseal_ops::files::AtomicFile::create(path, true)?;
    file.set_mode(0o644);
    file.write_all(text.as_bytes())
        .map_err(|e| Failure::io(format!("writing {}", path.display()), e))?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgseal_ops::status::{ChainState, LastBackup};

    #[test]
    fn metrics_escape_names_and_carry_help_and_type() {
        let s = Status {
            now: Timestamp(1_800_000_000_000),
            databases: vec![DatabaseStatus {
                database: "we\"ird\\db\nname".into(),
                last_backup: Some(LastBackup {
                    id: 1,
                    location: "/b/x".into(),
                    created_at: Timestamp(1_799_999_000_000),
                    size_bytes: 4096,
                    duration_ms: Some(1500),
                    verified: None,
                    header: HeaderCheck::Matches,
                }),
                last_check: None,
                last_good_check: None,
                failures_24h: 2,
            }],
            server_key: None,
            chain: ChainState {
                entries: 3,
                broken: None,
                anchors_checked: 0,
                anchor_problems: Vec::new(),
                walk_ms: 0,
            },
        };
        let text = metrics(&s);
        assert!(
            text.contains(r#"pgseal_backup_last_size_bytes{database="we\"ird\\db\nname"} 4096"#),
            "{text}"
        );
        assert!(
            text.contains("# TYPE pgseal_audit_chain_ok gauge"),
            "{text}"
        );
        assert!(text.contains("# HELP pgseal_failures_24h "), "{text}");
        assert!(
            text.contains("pgseal_backup_last_duration_seconds{database="),
            "{text}"
        );
        assert!(!text.contains("pgseal_server_key_age_seconds"), "{text}");
    }
}
