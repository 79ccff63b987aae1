//! `pgseal status` on real sites (a real PostgreSQL cluster the tests start): its Nagios exit
//! codes and JSON for a fresh site, a stale one, one whose last restore check failed and one
//! whose audit chain was edited; its Prometheus file read back by a real parser of the text
//! format (Python's `prometheus_client`), escaped labels included, and written atomically.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{code, listing, ok, stderr, stdout};
use pgseal_testkit::TestCluster;
use serde_json::Value;

/// A pgseal site whose commands reach the shared test cluster through libpq's environment.
struct Site {
    site: common::Site,
    cluster: &'static TestCluster,
}

impl std::ops::Deref for Site {
    type Target = common::Site;
    fn deref(&self) -> &common::Site {
        &self.site
    }
}

impl Site {
    fn new() -> Site {
        let cluster = TestCluster::shared();
        let env = common::cluster_env(cluster);
        Site {
            site: common::Site::with_env(env),
            cluster,
        }
    }

    /// A database with a table in it, named `name` exactly (quoted: any characters).
    fn database(&self, name: &str) -> String {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        self.cluster
            .psql("postgres", &format!("CREATE DATABASE {quoted};"))
            .unwrap();
        self.cluster
            .psql(
                name,
                "CREATE TABLE t (id int PRIMARY KEY, v text); \
                 INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 500) g;",
            )
            .unwrap();
        name.to_owned()
    }

    /// Backs `db` up; its catalog entry as `backup --json` shows it.
    fn backup(&self, db: &str) -> Value {
        let o = self.run(&["backup", db, "--user", "system_backup", "--json"]);
        ok(&o);
        let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        v.get("backup").cloned().unwrap_or(v)
    }

    fn status(&self, args: &[&str]) -> (Output, Value) {
        let mut all = vec!["status", "--json"];
        all.extend_from_slice(args);
        let o = self.run(&all);
        let json = serde_json::from_str(stdout(&o).trim())
            .unwrap_or_else(|e| panic!("status --json printed no JSON ({e}): {}", stdout(&o)));
        (o, json)
    }
}

fn database<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["database"] == name)
        .unwrap_or_else(|| panic!("{name:?} is not in {status}"))
}

/// The samples of a Prometheus text file, as Python's `prometheus_client` parser reads them:
/// (name, labels, value). Fails, never skips, when the parser is not installed (scripts/test.sh
/// installs it).
fn parse_metrics(path: &Path) -> Vec<(String, serde_json::Map<String, Value>, f64)> {
    const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(open(sys.argv[1], encoding="utf-8").read()):
    assert family.type == "gauge", (family.name, family.type)
    assert family.documentation, family.name
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let o = std::process::Command::new("python3")
        .args(["-c", PARSE])
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        o.status.success(),
        "the Prometheus file does not parse (or prometheus_client is not installed: \
         pip install prometheus_client): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let samples: Vec<(String, serde_json::Map<String, Value>, f64)> =
        serde_json::from_slice(&o.stdout).unwrap();
    samples
}

fn sample(
    samples: &[(String, serde_json::Map<String, Value>, f64)],
    name: &str,
    database: Option<&str>,
) -> Option<f64> {
    samples
        .iter()
        .find(|(n, labels, _)| {
            n == name && labels.get("database").and_then(Value::as_str) == database
        })
        .map(|(_, _, v)| *v)
}

#[test]
fn a_fresh_checked_site_is_ok_and_its_metrics_parse_with_escaped_names() {
    let site = Site::new();
    // A name PostgreSQL allows and the text format must escape: a quote, a backslash, a space.
    let weird = format!("st\"at\\us {}", std::process::id());
    let db = site.database(&weird);
    let backup = site.backup(&db);
    let path = backup["path"].as_str().unwrap().to_owned();

    // Before any check: reported, never verified, a warning only with --max-age.
    let (o, s) = site.status(&[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(s["state"], Value::Null);
    let d = database(&s, &db);
    assert_eq!(d["last_backup"]["verified"], false);
    assert_eq!(d["last_check"], Value::Null);
    let (o, s) = site.status(&["--max-age", "26h"]);
    assert_eq!(code(&o), 1, "{s}");
    assert_eq!(s["state"], "WARNING");
    assert!(
        s["summary"]
            .as_str()
            .unwrap()
            .contains("never restore-checked"),
        "{s}"
    );

    ok(&site.run(&["restore", "--check", &path]));
    let (o, s) = site.status(&["--max-age", "26h"]);
    assert_eq!(code(&o), 0, "{s}");
    assert_eq!(s["state"], "OK");
    assert_eq!(s["exit_code"], 0);
    let d = database(&s, &db);
    let b = &d["last_backup"];
    assert_eq!(b["id"], backup["id"]);
    assert_eq!(b["created_at"], backup["created_at"]);
    assert_eq!(b["size_bytes"], backup["size_bytes"]);
    assert_eq!(b["verified"], true);
    assert_eq!(b["verified_by"], "restore --check");
    assert_eq!(b["header"]["state"], "matches");
    assert!(b["duration_ms"].as_u64().is_some(), "{b}");
    assert_eq!(d["last_check"]["ok"], true);
    assert_eq!(d["last_check"]["backup_id"], backup["id"]);
    assert_eq!(d["failures_24h"], 0);
    assert_eq!(s["audit_chain"]["intact"], true);
    assert_eq!(s["audit_chain"]["anchors_checked"], 1);
    assert!(s["server_key"]["age_seconds"].as_i64().unwrap() >= 0);

    // The text form: the summary first, then the table.
    let o = site.run(&["status", "--max-age", "26h"]);
    assert_eq!(code(&o), 0);
    let text = stdout(&o);
    assert!(text.starts_with("PGSEAL OK - 1 database"), "{text}");
    assert!(text.contains("restore --check"), "{text}");
    assert!(text.contains("audit chain: intact"), "{text}");

    // The Prometheus file replaces what was there, atomically, and leaves nothing else.
    let metrics_dir = site.dir.join("metrics");
    std::fs::create_dir(&metrics_dir).unwrap();
    let prom = metrics_dir.join("pgseal.prom");
    std::fs::write(&prom, "stale garbage that does not parse {{{\n").unwrap();
    let (o, _) = site.status(&["--prometheus", prom.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(listing(&metrics_dir), vec!["pgseal.prom".to_owned()]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&prom).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let samples = parse_metrics(&prom);
    let created =
        pgseal_core::time::Timestamp::parse(backup["created_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        sample(
            &samples,
            "pgseal_backup_last_success_timestamp_seconds",
            Some(&db)
        ),
        Some(created.millis() as f64 / 1000.0),
        "{samples:?}"
    );
    assert_eq!(
        sample(&samples, "pgseal_backup_last_size_bytes", Some(&db)),
        backup["size_bytes"].as_f64()
    );
    assert!(sample(&samples, "pgseal_backup_last_duration_seconds", Some(&db)).is_some());
    assert_eq!(
        sample(&samples, "pgseal_backup_last_verified", Some(&db)),
        Some(1.0)
    );
    assert_eq!(
        sample(&samples, "pgseal_restore_check_last_ok", Some(&db)),
        Some(1.0)
    );
    assert!(
        sample(
            &samples,
            "pgseal_restore_check_last_success_timestamp_seconds",
            Some(&db)
        )
        .unwrap()
            >= created.millis() as f64 / 1000.0
    );
    assert_eq!(
        sample(&samples, "pgseal_failures_24h", Some(&db)),
        Some(0.0)
    );
    assert_eq!(sample(&samples, "pgseal_audit_chain_ok", None), Some(1.0));
    assert!(sample(&samples, "pgseal_server_key_age_seconds", None).unwrap() >= 0.0);

    // A backup that fails, of a name with a newline (no such database): a failure in the last
    // 24 hours, and a database never backed up — CRITICAL; its label escaped and read back.
    let ghost = format!("no such\ndb {}", std::process::id());
    let o = site.run(&["backup", &ghost, "--user", "system_backup"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    let (o, s) = site.status(&["--max-age", "26h", "--prometheus", prom.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{s}");
    let g = database(&s, &ghost);
    assert_eq!(g["last_backup"], Value::Null);
    assert_eq!(g["failures_24h"], 1);
    assert!(
        s["summary"].as_str().unwrap().contains("no such\\ndb"),
        "{s}"
    );
    let samples = parse_metrics(&prom);
    assert_eq!(
        sample(&samples, "pgseal_failures_24h", Some(&ghost)),
        Some(1.0)
    );
    assert_eq!(
        sample(&samples, "pgseal_failures_24h", Some(&db)),
        Some(0.0)
    );
    assert_eq!(listing(&metrics_dir), vec!["pgseal.prom".to_owned()]);
    // Without --max-age it only reports.
    let (o, _) = site.status(&[]);
    assert_eq!(code(&o), 0);
}

#[test]
fn a_backup_older_than_the_maximum_age_is_critical() {
    let site = Site::new();
    let db = site.database(&format!("stale_{}", std::process::id()));
    let backup = site.backup(&db);
    ok(&site.run(&["restore", "--check", backup["path"].as_str().unwrap()]));
    let (o, s) = site.status(&["--max-age", "1w"]);
    assert_eq!(code(&o), 0, "{s}");
    // Any backup is older than no time at all: the clock is not faked, the limit is tiny.
    let (o, s) = site.status(&["--max-age", "0m"]);
    assert_eq!(code(&o), 2, "{s}");
    assert_eq!(s["state"], "CRITICAL");
    let summary = s["summary"].as_str().unwrap();
    assert!(summary.starts_with("PGSEAL CRITICAL - "), "{summary}");
    assert!(
        summary.contains(&format!("{db}: newest backup ")),
        "{summary}"
    );
    assert!(summary.contains("(max 0s)"), "{summary}");
    let o = site.run(&["status", "--max-age", "0m"]);
    assert_eq!(code(&o), 2);
    assert_eq!(
        stdout(&o).lines().next().unwrap(),
        summary,
        "the summary is the first line"
    );
}

#[test]
fn a_failed_restore_check_is_critical() {
    let site = Site::new();
    let db = site.database(&format!("failcheck_{}", std::process::id()));
    let backup = site.backup(&db);
    let path = PathBuf::from(backup["path"].as_str().unwrap());
    ok(&site.run(&["restore", "--check", path.to_str().unwrap()]));
    // Damage its data (not its header): the next check fails.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let o = site.run(&["restore", "--check", path.to_str().unwrap()]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));

    let (o, s) = site.status(&["--max-age", "26h"]);
    assert_eq!(code(&o), 2, "{s}");
    let d = database(&s, &db);
    assert_eq!(d["last_check"]["ok"], false);
    assert_eq!(d["last_check"]["backup_id"], backup["id"]);
    assert!(d["last_check"]["error"].as_str().is_some(), "{d}");
    assert!(d["last_good_check"].as_str().is_some(), "{d}");
    assert_eq!(d["failures_24h"], 1);
    assert!(
        s["summary"]
            .as_str()
            .unwrap()
            .contains("last restore check failed"),
        "{s}"
    );
    assert_eq!(s["findings"][0]["state"], "CRITICAL");
}

#[test]
fn an_edited_audit_entry_is_critical() {
    let site = Site::new();
    let db = site.database(&format!("chain_{}", std::process::id()));
    let backup = site.backup(&db);
    ok(&site.run(&["restore", "--check", backup["path"].as_str().unwrap()]));
    let (o, _) = site.status(&["--max-age", "26h"]);
    assert_eq!(code(&o), 0);

    let conn = rusqlite::Connection::open(site.path("pgseal.db")).unwrap();
    let changed = conn
        .execute(
            "UPDATE pgseal_audit_log SET os_user = 'mallory' WHERE seq = 2",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);

    let (o, s) = site.status(&["--max-age", "26h"]);
    assert_eq!(code(&o), 2, "{s}");
    assert_eq!(s["audit_chain"]["intact"], false);
    assert_eq!(s["audit_chain"]["broken"]["seq"], 2);
    assert!(
        s["summary"]
            .as_str()
            .unwrap()
            .contains("audit chain broken at entry 2"),
        "{s}"
    );
    let prom = site.dir.join("chain.prom");
    let (o, _) = site.status(&["--prometheus", prom.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "without --max-age it only reports");
    assert_eq!(
        sample(&parse_metrics(&prom), "pgseal_audit_chain_ok", None),
        Some(0.0)
    );
}

#[test]
fn what_cannot_be_read_is_unknown() {
    let site = common::Site::new();
    // A bad age, a bad flag: UNKNOWN, not pgseal's usual usage code 2 (CRITICAL to a monitor).
    for args in [
        &["status", "--max-age", "5y"][..],
        &["status", "--no-such-flag"][..],
    ] {
        let o = site.run(args);
        assert_eq!(code(&o), 3, "{args:?}: {}", stderr(&o));
        assert!(
            stdout(&o).starts_with("PGSEAL UNKNOWN - "),
            "{}",
            stdout(&o)
        );
    }
    std::fs::remove_file(site.path("pgseal.db")).unwrap();
    let o = site.run(&["status", "--max-age", "26h"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("PGSEAL UNKNOWN - "),
        "{}",
        stdout(&o)
    );
    let o = site.run(&["status", "--json"]);
    assert_eq!(code(&o), 3);
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["error"]["exit_code"], 3);
    // A site with nothing in it yet, but a store: reported, a warning when judged.
    let empty = common::Site::new();
    let o = empty.run(&["status", "--max-age", "26h"]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("no backups catalogued"),
        "{}",
        stdout(&o)
    );
}
