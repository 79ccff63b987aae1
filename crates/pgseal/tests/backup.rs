//! Backup and restore against a real PostgreSQL that the tests start: identical data after a
//! round trip (schemas, non-ASCII text, bytea, jsonb), `--all` past a failing database, a killed
//! or failing backup leaving nothing, and a tampered backup writing nothing to the database.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{bin, code, listing, ok, stderr, stdout, with_passwords};
use pgseal_testkit::TestCluster;

const SAMPLE: &str = r#"
CREATE SCHEMA sales;
CREATE SCHEMA "Ünïcode";
CREATE TABLE public.people (id serial PRIMARY KEY, name text NOT NULL, photo bytea, prefs jsonb);
INSERT INTO public.people (name, photo, prefs)
  SELECT 'имя ' || g || ' 名前 ✓', decode(md5(g::text), 'hex'),
         jsonb_build_object('n', g, 'tags', jsonb_build_array('a', 'ü', g % 7))
  FROM generate_series(1, 2000) g;
CREATE TABLE sales.orders (id bigint PRIMARY KEY, person int REFERENCES public.people (id),
                           amount numeric(12, 2), at timestamptz);
INSERT INTO sales.orders
  SELECT g, 1 + g % 2000, g * 1.25, '2025-01-01'::timestamptz + g * interval '1 hour'
  FROM generate_series(1, 5000) g;
CREATE TABLE "Ünïcode"."Tëst" (k text PRIMARY KEY, v bytea);
INSERT INTO "Ünïcode"."Tëst" VALUES ('∑', '\x00ff00'), ('emoji 🐘', '\xdeadbeef'), ('', NULL);
"#;

/// A pgseal site whose commands reach a test cluster through libpq's environment.
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
        Site::on(TestCluster::shared())
    }

    /// A site on a cluster of its own, for tests that touch every database (`backup --all`).
    fn private() -> Site {
        let cluster = TestCluster::start().expect("start a private cluster");
        // Leaked on purpose: the cluster's watchdog stops it when the test process exits.
        Site::on(Box::leak(Box::new(cluster)))
    }

    fn on(cluster: &'static TestCluster) -> Site {
        let env = common::cluster_env(cluster);
        Site {
            site: common::Site::with_env(env),
            cluster,
        }
    }

    fn sample_db(&self, prefix: &str) -> String {
        let db = self.cluster.create_database(prefix).unwrap();
        self.cluster.psql(&db, SAMPLE).unwrap();
        db
    }

    fn backups_dir(&self) -> PathBuf {
        self.dir.join("backups")
    }

    fn only_backup(&self) -> PathBuf {
        let files = listing(&self.backups_dir());
        assert_eq!(files.len(), 1, "{files:?}");
        self.backups_dir().join(&files[0])
    }
}

/// One checksum per user table: md5 over its rows in a stable order.
fn checksums(cluster: &TestCluster, db: &str) -> Vec<String> {
    let sql = r"SELECT format('SELECT %L, md5(coalesce(string_agg(t::text, ''|'' ORDER BY t::text), '''')) FROM %I.%I t',
              n.nspname || '.' || c.relname, n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1
\gexec
";
    cluster
        .psql(db, sql)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn table_count(cluster: &TestCluster, db: &str) -> usize {
    cluster
        .psql(
            db,
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema');",
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn backup_then_restore_gives_identical_data() {
    let site = Site::new();
    let db = site.sample_db("source");
    let o = site.run(&["backup", &db, "--user", "system_backup", "--json"]);
    ok(&o);
    let record: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let path = record["path"].as_str().unwrap().to_owned();
    let name = PathBuf::from(&path)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with(&format!("{db}_")) && name.ends_with("Z.pgseal"),
        "{name}"
    );
    assert_eq!(site.only_backup().to_string_lossy(), path);

    // The sealed file proves its origin with the store alone.
    ok(&site.run(&["verify", &path]));
    let o = site.run(&["inspect", "--json", &path]);
    let facts: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(facts["source"]["database"], db.as_str());
    assert_eq!(facts["source"]["dump_format"], "pg_dump-custom");
    assert_eq!(facts["compression"], "zstd");

    let copy = format!("{db}_copy");
    ok(&site.run(&["restore", &path, "--target-db", &copy, "--create"]));
    let (a, b) = (checksums(site.cluster, &db), checksums(site.cluster, &copy));
    assert_eq!(a.len(), 3, "{a:?}");
    assert_eq!(a, b);

    // Parallel restore goes through a private temporary file and gives the same data.
    let copy2 = format!("{db}_jobs");
    ok(&site.run(&[
        "restore",
        &path,
        "--target-db",
        &copy2,
        "--create",
        "--jobs",
        "2",
    ]));
    assert_eq!(checksums(site.cluster, &copy2), a);

    // The restore check reports the row counts.
    let o = site.run(&["restore", "--check", &path, "--json"]);
    ok(&o);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows: Vec<(String, i64)> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap().to_owned(),
                t["rows"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(rows.contains(&("public.people".into(), 2000)), "{rows:?}");
    assert!(rows.contains(&("sales.orders".into(), 5000)), "{rows:?}");

    let o = site.run(&["list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let actions: Vec<(String, bool)> = site
        .store()
        .audit_entries(100)
        .unwrap()
        .into_iter()
        .map(|e| (e.entry.action.into(), e.entry.success))
        .collect();
    assert!(
        actions.contains(&("BACKUP".into(), true)) && actions.contains(&("RESTORE".into(), true))
    );
}

#[test]
fn schema_selection_dumps_only_those_schemas() {
    let site = Site::new();
    let db = site.sample_db("schemas");
    ok(&site.run(&[
        "backup",
        &db,
        "--user",
        "system_backup",
        "--schema",
        "Ünïcode",
    ]));
    let path = site.only_backup();
    let o = site.run(&["restore", "--check", path.to_str().unwrap(), "--json"]);
    ok(&o);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let tables: Vec<&str> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(tables, vec!["Ünïcode.Tëst"]);
}

#[test]
fn backup_all_continues_past_a_failing_database() {
    let site = Site::private();
    let good = site.sample_db("allgood");
    let bad = site.cluster.create_database("allbad").unwrap();
    site.cluster
        .psql(
            "postgres",
            &format!("ALTER DATABASE {bad} ALLOW_CONNECTIONS false;"),
        )
        .unwrap();
    let o = site.run(&["backup", "--all", "--user", "system_backup", "--json"]);
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let status = |db: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["database"] == db)
            .map(|r| r["ok"].clone())
    };
    assert_eq!(status(&good), Some(serde_json::Value::Bool(true)));
    assert_eq!(status(&bad), Some(serde_json::Value::Bool(false)));
    assert!(
        status("postgres").is_none(),
        "postgres is excluded by default"
    );
    // The failed database left no file; its failure is audited.
    assert!(
        listing(&site.backups_dir())
            .iter()
            .all(|f| !f.starts_with(&bad))
    );
    let failed: Vec<_> = site
        .store()
        .audit_entries(1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.entry.action == "BACKUP" && !e.entry.success)
        .collect();
    assert!(
        failed.iter().any(|e| e.entry.details.contains(&bad)),
        "{failed:?}"
    );
    site.cluster
        .psql(
            "postgres",
            &format!("ALTER DATABASE {bad} ALLOW_CONNECTIONS true;"),
        )
        .unwrap();
}

#[test]
fn a_failed_dump_leaves_no_file() {
    let site = Site::new();
    let o = site.run(&["backup", "no_such_database_xyz", "--user", "system_backup"]);
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    assert!(stderr(&o).contains("pg_dump failed"), "{}", stderr(&o));
    assert!(listing(&site.backups_dir()).is_empty());
    let e = site.store().audit_entries(1).unwrap().pop().unwrap().entry;
    assert_eq!((e.action.as_str(), e.success), ("BACKUP", false));
}

#[test]
fn a_killed_backup_leaves_no_file_and_no_plaintext() {
    let site = Site::new();
    let db = site.cluster.create_database("big").unwrap();
    // ~150 MB of poorly compressible text: long enough to kill mid-stream.
    site.cluster
        .psql(&db, "CREATE TABLE blob AS SELECT g, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) AS t FROM generate_series(1, 1500000) g;")
        .unwrap();
    let mut child = site
        .cmd()
        .args(["backup", &db, "--user", "system_backup"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the backup finished before it could be killed"
    );
    // `setsid -w` execs pgseal directly, so this is pgseal itself.
    child.kill().unwrap();
    let _ = child.wait();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        listing(&site.backups_dir()).is_empty(),
        "{:?}",
        listing(&site.backups_dir())
    );
    assert_eq!(site.store().backups(None).unwrap().len(), 0);
}

#[test]
fn a_write_error_leaves_nothing_behind() {
    let site = Site::new();
    let db = site.sample_db("full");
    // A 64 KiB file-size limit with SIGXFSZ ignored: writes fail with EFBIG, as on a full disk.
    let script = format!(
        "trap '' XFSZ; ulimit -f 64; exec {} backup {db} --user system_backup",
        env!("CARGO_BIN_EXE_pgseal")
    );
    let mut c = site.cmd();
    c.arg("bash").arg("-c").arg(&script);
    // `bin()` is setsid + pgseal: run bash instead, with the same environment.
    let mut direct = Command::new("bash");
    direct
        .arg("-c")
        .arg(&script)
        .current_dir(&site.dir)
        .stdin(Stdio::null());
    for (k, v) in site.cluster.env() {
        direct.env(k, v);
    }
    direct.env("POSTGRESQL_BIN_PATH", site.cluster.bin_dir());
    let o = with_passwords(direct).output().unwrap();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(listing(&site.backups_dir()).is_empty());
    let e = site.store().audit_entries(1).unwrap().pop().unwrap().entry;
    assert_eq!((e.action.as_str(), e.success), ("BACKUP", false));
    drop(c);
}

#[test]
fn a_tampered_backup_writes_nothing_to_the_database() {
    let site = Site::new();
    let db = site.sample_db("tamper");
    ok(&site.run(&["backup", &db, "--user", "system_backup"]));
    let path = site.only_backup();
    let bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    // A byte in the middle, and one in the last chunk (just before the 256-byte signature).
    for (label, at) in [("middle", n / 2), ("last chunk", n - 256 - 20)] {
        let mut t = bytes.clone();
        t[at] ^= 0x55;
        let tampered = site
            .dir
            .join(format!("tampered-{}.pgseal", label.replace(' ', "-")));
        std::fs::write(&tampered, &t).unwrap();
        let target = site.cluster.create_database("target").unwrap();
        let o = site.run(&[
            "restore",
            tampered.to_str().unwrap(),
            "--target-db",
            &target,
        ]);
        assert_eq!(code(&o), 4, "{label}: {}", stderr(&o));
        assert_eq!(
            table_count(site.cluster, &target),
            0,
            "{label}: tables were restored"
        );
        // With --create the database is not left behind either.
        let fresh = format!("{target}_new");
        let o = site.run(&[
            "restore",
            tampered.to_str().unwrap(),
            "--target-db",
            &fresh,
            "--create",
        ]);
        assert_eq!(code(&o), 4, "{label}: {}", stderr(&o));
        let exists = site
            .cluster
            .psql(
                "postgres",
                &format!("SELECT count(*) FROM pg_database WHERE datname = '{fresh}';"),
            )
            .unwrap();
        assert_eq!(exists.trim(), "0", "{label}");
        let e = site.store().audit_entries(1).unwrap().pop().unwrap().entry;
        assert_eq!((e.action.as_str(), e.success), ("RESTORE", false));
    }
}

#[test]
fn prune_shows_first_and_deletes_only_catalogued_files() {
    let site = Site::new();
    let db = site.sample_db("prune");
    ok(&site.run(&["backup", &db, "--user", "system_backup"]));
    ok(&site.run(&["backup", &db, "--user", "system_backup"]));
    let stranger = site.backups_dir().join("not-ours.pgseal");
    std::fs::write(&stranger, b"someone else's file").unwrap();
    assert_eq!(listing(&site.backups_dir()).len(), 3);

    let o = site.run(&["prune", "--keep-last", "1"]);
    ok(&o);
    assert!(stdout(&o).contains("would delete") && stdout(&o).contains("dry run"));
    assert_eq!(
        listing(&site.backups_dir()).len(),
        3,
        "a dry run deleted something"
    );

    ok(&site.run(&["prune", "--keep-last", "1", "--yes"]));
    let left = listing(&site.backups_dir());
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(stranger.exists());
    assert_eq!(site.store().backups(None).unwrap().len(), 1);
    // Age-based: nothing is 90 days old yet.
    let o = site.run(&["prune", "--yes"]);
    ok(&o);
    assert!(stdout(&o).contains("nothing to prune"));
}

/// Retention rules from the flags and from the config's `[retention]`, each decision shown and
/// audited with the rules that made it.
#[test]
fn prune_applies_calendar_rules_and_the_configured_retention_and_says_why() {
    let site = Site::new();
    let db = site.sample_db("gfs");
    for _ in 0..3 {
        ok(&site.run(&["backup", &db, "--user", "system_backup"]));
    }
    // All three were made within a day: --keep-daily 1 keeps the newest, for two reasons.
    let o = site.run(&["prune", "--keep-daily", "1", "--json"]);
    ok(&o);
    let items: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(items.len(), 3, "{items:?}");
    let kept: Vec<&serde_json::Value> = items.iter().filter(|i| i["outcome"] == "kept").collect();
    assert_eq!(kept.len(), 1, "{items:?}");
    let newest = items
        .iter()
        .max_by_key(|i| i["backup"]["created_at"].as_str().unwrap().to_owned())
        .unwrap();
    assert_eq!(kept[0]["backup"]["id"], newest["backup"]["id"]);
    let day = &newest["backup"]["created_at"].as_str().unwrap()[..10];
    assert_eq!(
        kept[0]["kept_by"],
        serde_json::json!([{"rule": "newest"}, {"rule": "daily", "period": day}])
    );
    for i in items.iter().filter(|i| i["outcome"] != "kept") {
        assert_eq!(i["outcome"], "would delete");
        assert_eq!(i["kept_by"], serde_json::json!([]));
    }
    assert_eq!(
        listing(&site.backups_dir()).len(),
        3,
        "a dry run deleted something"
    );

    // Without flags, the config's [retention] rules apply.
    let config = site.dir.join("pgseal.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("\n[retention]\n"),
        "the template has a [retention] section"
    );
    std::fs::write(
        &config,
        text.replace("\n[retention]\n", "\n[retention]\nkeep_last = 2\n"),
    )
    .unwrap();
    let o = site.run(&["prune", "--yes"]);
    ok(&o);
    let out = stdout(&o);
    assert!(out.contains("policy: keep last 2"), "{out}");
    assert_eq!(out.matches("kept by: newest, last").count(), 1, "{out}");
    assert_eq!(out.matches("kept by: last").count(), 1, "{out}");
    assert_eq!(out.matches("deleted").count(), 1, "{out}");
    assert_eq!(listing(&site.backups_dir()).len(), 2);
    assert_eq!(site.store().backups(None).unwrap().len(), 2);
    let e = site.last_audit().entry;
    assert_eq!((e.action.as_str(), e.success), ("PRUNE", true));
    let details: serde_json::Value = serde_json::from_str(&e.details).unwrap();
    assert_eq!(details["policy"], "keep last 2");
    assert_eq!(details["decisions"].as_array().unwrap().len(), 3);
    assert_eq!(details["deleted"], 1);

    // A bad [retention] value is a usage error naming the setting.
    std::fs::write(
        &config,
        text.replace(
            "\n[retention]\n",
            "\n[retention]\nkeep_within = \"2 days\"\n",
        ),
    )
    .unwrap();
    let o = site.run(&["prune"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("keep_within"), "{}", stderr(&o));
}

/// A plain pg_dump archive of `db`, for building legacy backups the way the old system did.
fn plain_archive(site: &Site, db: &str) -> PathBuf {
    let out = site.dir.join(format!("{db}.dump"));
    let mut c = Command::new(site.cluster.bin_dir().join("pg_dump"));
    for (k, v) in site.cluster.env() {
        c.env(k, v);
    }
    let o = c
        .args(["-Fc", "-Z9", "-f"])
        .arg(&out)
        .arg(db)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

#[test]
fn legacy_backups_restore_through_the_store() {
    let site = Site::new();
    let db = site.sample_db("legacy");
    let archive = plain_archive(&site, &db);
    // Legacy hybrid, written by pgseal's --format v1 exactly as the old system laid it out.
    let server_pub = site.dir.join("server.pub.pem");
    ok(&site.run(&["server-key", "export", "-o", server_pub.to_str().unwrap()]));
    let hybrid = site.dir.join("legacy_hybrid.backup");
    ok(&site.run(&[
        "encrypt",
        archive.to_str().unwrap(),
        "-o",
        hybrid.to_str().unwrap(),
        "--format",
        "v1",
        "--recipient",
        server_pub.to_str().unwrap(),
        "--user",
        "system_backup",
    ]));
    let copy = format!("{db}_from_hybrid");
    ok(&site.run(&[
        "restore",
        hybrid.to_str().unwrap(),
        "--target-db",
        &copy,
        "--create",
    ]));
    assert_eq!(checksums(site.cluster, &copy), checksums(site.cluster, &db));

    // Legacy symmetric, with its password.
    let sym = site.dir.join("legacy_symmetric.backup.encrypted");
    let password = pgseal_core::Password::new("old-system-backup-password".into());
    let mut out = std::fs::File::create(&sym).unwrap();
    pgseal_core::legacy::symmetric::encrypt(
        std::fs::File::open(&archive).unwrap(),
        &mut out,
        &password,
    )
    .unwrap();
    drop(out);
    let copy = format!("{db}_from_symmetric");
    let o = site
        .cmd()
        .args([
            "restore",
            sym.to_str().unwrap(),
            "--target-db",
            &copy,
            "--create",
        ])
        .env("BACKUP_ENCRYPTION_PASSWORD", "old-system-backup-password")
        .output()
        .unwrap();
    ok(&o);
    assert_eq!(checksums(site.cluster, &copy), checksums(site.cluster, &db));
    // The wrong password restores nothing.
    let copy = format!("{db}_wrong_pw");
    let o = site
        .cmd()
        .args([
            "restore",
            sym.to_str().unwrap(),
            "--target-db",
            &copy,
            "--create",
        ])
        .env("BACKUP_ENCRYPTION_PASSWORD", "not-the-old-password")
        .output()
        .unwrap();
    assert_eq!(code(&o), 4, "{}", stderr(&o));
}

#[test]
fn connection_uris_and_store_less_restore() {
    let site = Site::new();
    let db = site.sample_db("uri");
    // A libpq URI instead of the environment; the file is still named after the database.
    let mut c = with_passwords(bin());
    c.current_dir(&site.dir)
        .env("POSTGRESQL_BIN_PATH", site.cluster.bin_dir());
    let o = c
        .args([
            "backup",
            "--dbname",
            &site.cluster.url(&db),
            "--user",
            "system_backup",
        ])
        .output()
        .unwrap();
    ok(&o);
    let path = site.only_backup();
    assert!(
        path.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("{db}_"))
    );

    // Disaster recovery: no store, only key files and the backup.
    let server_key = site.dir.join("server.key.pem");
    ok(&site.run(&[
        "server-key",
        "export",
        "--private",
        "-o",
        server_key.to_str().unwrap(),
    ]));
    let elsewhere = tempfile::tempdir().unwrap();
    let mut c = with_passwords(bin());
    for (k, v) in site.cluster.env() {
        c.env(k, v);
    }
    let copy = format!("{db}_dr");
    let o = c
        .current_dir(elsewhere.path())
        .env("POSTGRESQL_BIN_PATH", site.cluster.bin_dir())
        .args([
            "restore",
            path.to_str().unwrap(),
            "--target-db",
            &copy,
            "--create",
            "--identity",
            server_key.to_str().unwrap(),
            "--signer",
            site.dir
                .join("keys/users/system_backup.pub.pem")
                .to_str()
                .unwrap(),
        ])
        .output()
        .unwrap();
    ok(&o);
    assert_eq!(checksums(site.cluster, &copy), checksums(site.cluster, &db));
}

#[test]
fn a_long_backup_all_picks_up_a_rotation_for_its_next_backup() {
    let site = Site::private();
    let first = site.cluster.create_database("a_slow").unwrap();
    let second = site.cluster.create_database("b_next").unwrap();
    site.cluster
        .psql(&first, "CREATE TABLE t (x int); INSERT INTO t VALUES (1);")
        .unwrap();
    site.cluster
        .psql(&second, "CREATE TABLE t (x int); INSERT INTO t VALUES (2);")
        .unwrap();
    // Hold a lock on the first database's table, so its dump waits while we rotate.
    let mut locker = Command::new(site.cluster.bin_dir().join("psql"));
    for (k, v) in site.cluster.env() {
        locker.env(k, v);
    }
    let mut locker = locker
        .args([
            "-X",
            "-q",
            "-d",
            &first,
            "-c",
            "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT;",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let backup = site
        .cmd()
        .args(["backup", "--all", "--user", "system_backup", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let o = site
        .cmd()
        .env("PGSEAL_NEW_SERVER_KEY_PASSWORD", common::PASSWORD)
        .args(["server-key", "rotate", "--key-size", "2048"])
        .output()
        .unwrap();
    ok(&o);
    let new_key = site
        .store()
        .active_server_key()
        .unwrap()
        .unwrap()
        .fingerprint;
    let o = backup.wait_with_output().unwrap();
    ok(&o);
    locker.wait().unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let keys_of = |db: &str| -> Vec<String> {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["database"] == db)
            .unwrap()["backup"]["server_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect()
    };
    assert_ne!(
        keys_of(&first),
        vec![new_key.to_string()],
        "the first backup began before the rotation"
    );
    assert_eq!(
        keys_of(&second),
        vec![new_key.to_string()],
        "the next backup must use the new key"
    );
}
