//! Attacks through PostgreSQL's tools: database names that libpq would read as connection
//! strings, or clap as flags; signals and `kill -9` in the middle of a restore; secrets in the
//! environment of pg_dump and of password commands; control characters in database names;
//! restores merged silently into a database that holds data; failures audited under no user.
//! All against a real PostgreSQL cluster the tests start.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pgseal_testkit::TestCluster;

use crate::common::{self, code, ok, stderr, stdout};

/// A pgseal site whose commands reach a test cluster through libpq's environment.
struct PgSite {
    site: common::Site,
    cluster: &'static TestCluster,
}

impl std::ops::Deref for PgSite {
    type Target = common::Site;
    fn deref(&self) -> &common::Site {
        &self.site
    }
}

impl PgSite {
    fn new() -> PgSite {
        PgSite::on(TestCluster::shared())
    }

    /// A site on a cluster of its own, for `backup --all` (which sees every database).
    fn private() -> PgSite {
        let cluster = TestCluster::start().expect("start a private cluster");
        // Leaked on purpose: the cluster's watchdog stops it when the test process exits.
        PgSite::on(Box::leak(Box::new(cluster)))
    }

    fn on(cluster: &'static TestCluster) -> PgSite {
        let env = common::cluster_env(cluster);
        PgSite {
            site: common::Site::with_env(env),
            cluster,
        }
    }

    fn sql(&self, db: &str, sql: &str) -> String {
        self.cluster.psql(db, sql).unwrap()
    }

    /// Creates a database with exactly this name, holding one table `table` with one row.
    fn create_named(&self, name: &str, table: &str) {
        self.sql("postgres", &format!("CREATE DATABASE {};", ident(name)));
        self.sql(
            name,
            &format!("CREATE TABLE public.{table} (v text); INSERT INTO public.{table} VALUES ('{table}');"),
        );
    }

    fn exists(&self, db: &str) -> bool {
        self.sql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_database WHERE datname = {};",
                literal(db)
            ),
        )
        .trim()
            == "1"
    }

    /// The user tables of `db`, as schema.table, sorted.
    fn tables(&self, db: &str) -> Vec<String> {
        self.sql(
            db,
            "SELECT n.nspname || '.' || c.relname FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             ORDER BY 1;",
        )
        .lines()
        .map(str::to_owned)
        .collect()
    }

    /// Backs up `db` by name; returns the file.
    fn backup(&self, db: &str) -> PathBuf {
        let o = self.run(&["backup", db, "--user", "system_backup", "--json"]);
        ok(&o);
        let record: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(record["database"], db);
        PathBuf::from(record["path"].as_str().unwrap())
    }

    /// The tables `restore --check` finds in a backup.
    fn checked_tables(&self, file: &Path) -> Vec<String> {
        let o = self.run(&["restore", "--check", file.to_str().unwrap(), "--json"]);
        ok(&o);
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        report["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["table"].as_str().unwrap().to_owned())
            .collect()
    }

    fn details(&self) -> serde_json::Value {
        serde_json::from_str(&self.last_audit().entry.details).unwrap()
    }

    /// A database whose restore takes about ten seconds: every row passes a CHECK that sleeps
    /// 5 ms (except while this setup inserts them). Long enough to interrupt a restore midway.
    fn slow_database(&self) -> (String, PathBuf) {
        let db = self.cluster.create_database("slow").unwrap();
        self.sql(
            &db,
            "CREATE FUNCTION public.slow_ok(int) RETURNS boolean LANGUAGE sql AS \
               $$SELECT current_setting('pgseal.fast', true) = 'on' OR pg_sleep(0.005) IS NOT NULL$$;
             CREATE TABLE public.slow (x int CHECK (public.slow_ok(x)));
             SET pgseal.fast = 'on';
             INSERT INTO public.slow SELECT generate_series(1, 2000);",
        );
        let file = self.backup(&db);
        (db, file)
    }

    /// The scratch database a running `restore --check` (pgseal's pid) restores into, read
    /// from the command line of its pg_restore.
    fn scratch_of(&self, pgseal: u32) -> Option<String> {
        children_named(pgseal, "pg_restore")
            .into_iter()
            .find_map(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let cmdline = String::from_utf8_lossy(&cmdline);
                let at = cmdline.find("pgseal_check_")?;
                let name = cmdline.get(at..at + "pgseal_check_".len() + 8)?;
                name.bytes()
                    .skip("pgseal_check_".len())
                    .all(|b| b.is_ascii_hexdigit())
                    .then(|| name.to_owned())
            })
    }

    /// Whether pg_restore is copying rows into `db` right now.
    fn copying_into(&self, db: &str) -> bool {
        self.sql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = {} \
                 AND state = 'active' AND query LIKE 'COPY%';",
                literal(db)
            ),
        )
        .trim()
            != "0"
    }

    fn scratch_databases(&self) -> Vec<String> {
        self.sql(
            "postgres",
            "SELECT datname FROM pg_database WHERE datname LIKE 'pgseal\\_check\\_%' ORDER BY 1;",
        )
        .lines()
        .map(str::to_owned)
        .collect()
    }
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Polls `condition` every 50 ms until it holds or `limit` passes.
fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

/// The children of process `parent` running `comm`, found through /proc.
fn children_named(parent: u32, comm: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so parse from the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map(|(_, n)| n).unwrap_or_default();
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if ppid == Some(parent) && name == comm {
            found.push(pid);
        }
    }
    found
}

/// Whether process `pid` still runs (a zombie has ended: it only waits to be reaped).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Starts a pgseal command in the background (its pid is pgseal's own: `setsid -w` execs it).
fn spawn(site: &PgSite, args: &[&str]) -> Child {
    site.cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Defect 1: a database name read as a connection string, or as a flag.

#[test]
fn backup_of_a_database_named_like_a_conninfo_or_uri_dumps_only_that_name() {
    let site = PgSite::new();
    let victim = site.cluster.create_database("victim").unwrap();
    site.sql(
        &victim,
        "CREATE TABLE public.secret (v text); INSERT INTO public.secret VALUES ('s');",
    );
    for name in [
        format!("dbname={victim}"),
        format!("postgresql:///{victim}"),
        format!("host=/nonexistent dbname={victim}"),
    ] {
        site.create_named(&name, "mine");
        let file = site.backup(&name);
        assert_eq!(
            site.checked_tables(&file),
            vec!["public.mine"],
            "the backup of {name:?} holds another database"
        );
        let catalogued: Vec<String> = site
            .store()
            .backups(None)
            .unwrap()
            .into_iter()
            .map(|b| b.entry.database)
            .collect();
        assert!(catalogued.contains(&name), "{catalogued:?}");
    }
    // And a conninfo-like name that is no database is a missing database, not another one.
    let o = site.run(&["backup", "dbname=postgres", "--user", "system_backup"]);
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
}

#[test]
fn backup_all_of_a_tenant_database_named_like_a_conninfo_dumps_only_that_name() {
    let site = PgSite::private();
    let victim = site.cluster.create_database("victim").unwrap();
    site.sql(
        &victim,
        "CREATE TABLE public.secret (v text); INSERT INTO public.secret VALUES ('s');",
    );
    let tenant = format!("dbname={victim}");
    site.create_named(&tenant, "mine");
    let o = site.run(&["backup", "--all", "--user", "system_backup", "--json"]);
    ok(&o);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["database"] == tenant.as_str())
        .unwrap_or_else(|| panic!("no backup of {tenant}: {rows}"));
    let file = PathBuf::from(row["backup"]["path"].as_str().unwrap());
    assert_eq!(site.checked_tables(&file), vec!["public.mine"]);
}

#[test]
fn backup_all_through_a_uri_backs_up_each_database_under_its_own_name() {
    let site = PgSite::private();
    site.create_named("plain", "plain_t");
    site.create_named("we'ird \\ name", "weird_t");
    let uri = site.cluster.url("postgres");
    let o = site.run(&[
        "backup",
        "--all",
        "--dbname",
        &uri,
        "--user",
        "system_backup",
        "--json",
    ]);
    ok(&o);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for (db, table) in [
        ("plain", "public.plain_t"),
        ("we'ird \\ name", "public.weird_t"),
    ] {
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["database"] == db)
            .unwrap_or_else(|| panic!("no backup of {db}: {rows}"));
        let file = PathBuf::from(row["backup"]["path"].as_str().unwrap());
        assert_eq!(site.checked_tables(&file), vec![table.to_owned()]);
    }
}

#[test]
fn restore_create_into_a_name_like_a_conninfo_creates_that_database_and_spares_the_victim() {
    let site = PgSite::new();
    let source = site.cluster.create_database("source").unwrap();
    site.sql(
        &source,
        "CREATE TABLE public.restored (v int); INSERT INTO public.restored VALUES (1);",
    );
    let file = site.backup(&source);
    let victim = site.cluster.create_database("victim").unwrap();
    site.sql(&victim, "CREATE TABLE public.precious (v int);");

    let target = format!("dbname={victim}");
    let o = site.run(&[
        "restore",
        file.to_str().unwrap(),
        "--target-db",
        &target,
        "--create",
    ]);
    ok(&o);
    assert_eq!(
        site.tables(&victim),
        vec!["public.precious"],
        "the victim was written"
    );
    assert!(site.exists(&target));
    assert_eq!(site.tables(&target), vec!["public.restored"]);
    // The existence check holds for such names too: a second --create is refused.
    let o = site.run(&[
        "restore",
        file.to_str().unwrap(),
        "--target-db",
        &target,
        "--create",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}

#[test]
fn a_database_named_like_a_flag_is_a_name_not_a_request_for_help() {
    let site = PgSite::new();
    let name = "-h evil";
    site.create_named(name, "flagged");
    let o = site.run(&["backup", name, "--user", "system_backup", "--json"]);
    ok(&o);
    assert!(!stdout(&o).contains("Usage:"), "{}", stdout(&o));
    let record: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(record["database"], name);
    let file = record["path"].as_str().unwrap().to_owned();
    assert_eq!(
        site.checked_tables(Path::new(&file)),
        vec!["public.flagged"]
    );

    let target = "-d postgres";
    let o = site.run(&["restore", &file, "--target-db", target, "--create"]);
    ok(&o);
    assert_eq!(site.tables(target), vec!["public.flagged"]);
    assert!(
        !site
            .tables("postgres")
            .contains(&"public.flagged".to_owned())
    );
}

// ---------------------------------------------------------------------------------------------
// Defect 5: an interrupted restore leaves data behind.

#[test]
fn sigint_or_sigterm_during_restore_check_drops_the_scratch_database_and_is_audited() {
    let site = PgSite::new();
    let (_, file) = site.slow_database();
    for (sig, exit) in [("INT", 130), ("TERM", 143)] {
        let child = spawn(&site, &["restore", "--check", file.to_str().unwrap()]);
        let pgseal = child.id();
        let mut scratch = None;
        assert!(
            wait_until(Duration::from_secs(30), || {
                scratch = scratch.clone().or_else(|| site.scratch_of(pgseal));
                scratch.as_deref().is_some_and(|s| site.copying_into(s))
            }),
            "the check never started restoring"
        );
        let scratch = scratch.unwrap();
        let restorer = children_named(pgseal, "pg_restore");
        assert_eq!(restorer.len(), 1, "{restorer:?}");
        signal(pgseal, sig);
        let o = finish(child);
        assert_eq!(code(&o), exit, "SIG{sig}: {}", stderr(&o));
        assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
        assert!(!site.exists(&scratch), "SIG{sig} left {scratch} behind");
        assert!(!alive(restorer[0]), "SIG{sig} left pg_restore running");
        let e = site.last_audit().entry;
        assert_eq!(
            (e.action.as_str(), e.success),
            ("RESTORE", false),
            "SIG{sig}"
        );
        let details = site.details();
        assert_eq!(details["interrupted"], format!("SIG{sig}"));
        assert_eq!(details["exit_code"], exit);
    }
}

#[test]
fn sigint_during_restore_create_leaves_no_target_database() {
    let site = PgSite::new();
    let (db, file) = site.slow_database();
    let target = format!("{db}_copy");
    let child = spawn(
        &site,
        &[
            "restore",
            file.to_str().unwrap(),
            "--target-db",
            &target,
            "--create",
        ],
    );
    assert!(
        wait_until(Duration::from_secs(30), || site.exists(&target)
            && site.copying_into(&target)),
        "the restore never started"
    );
    signal(child.id(), "INT");
    let o = finish(child);
    assert_eq!(code(&o), 130, "{}", stderr(&o));
    assert!(!site.exists(&target), "{target} is still there");
    // Two entries: the one written before pg_restore could commit, and the interruption.
    let audit = site.audit();
    let last = &audit[audit.len() - 1].entry;
    assert_eq!((last.action.as_str(), last.success), ("RESTORE", false));
    let details: serde_json::Value = serde_json::from_str(&last.details).unwrap();
    assert_eq!(details["interrupted"], "SIGINT", "{details}");
    assert_eq!(
        details["after_entry_written_before_commit"], true,
        "{details}"
    );
}

#[test]
fn kill_9_during_restore_check_takes_pg_restore_down_and_the_next_check_drops_the_leftover() {
    let site = PgSite::new();
    let (_, file) = site.slow_database();
    let mut child = spawn(&site, &["restore", "--check", file.to_str().unwrap()]);
    let pgseal = child.id();
    let mut scratch = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            scratch = scratch.clone().or_else(|| site.scratch_of(pgseal));
            scratch.as_deref().is_some_and(|s| site.copying_into(s))
        }),
        "the check never started restoring"
    );
    let scratch = scratch.unwrap();
    let restorer = children_named(pgseal, "pg_restore");
    assert_eq!(restorer.len(), 1, "{restorer:?}");
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        wait_until(Duration::from_secs(3), || !alive(restorer[0])),
        "pg_restore outlived the pgseal that started it"
    );
    // pg_restore cancelled its work on the server as it went: nothing goes on, nothing commits.
    assert!(
        wait_until(Duration::from_secs(5), || !site.copying_into(&scratch)),
        "the server still restores for the killed check"
    );
    // (Unless another test's check has already dropped it as abandoned.)
    if site.exists(&scratch) {
        let rows = site
            .cluster
            .psql(&scratch, "SELECT count(*) FROM public.slow;")
            .map(|r| r.trim().to_owned())
            .unwrap_or_else(|_| "no table".into());
        assert_eq!(rows, "no table", "the orphaned restore committed");
    }
    // The next check (of anything) removes what the killed one left.
    let small = site.cluster.create_database("small").unwrap();
    site.sql(&small, "CREATE TABLE public.t (v int);");
    let small_file = site.backup(&small);
    assert_eq!(site.checked_tables(&small_file), vec!["public.t"]);
    assert!(!site.exists(&scratch), "{scratch} is still there");
}

#[test]
fn restore_check_leaves_alone_scratch_databases_it_cannot_prove_abandoned() {
    let site = PgSite::new();
    let (_, slow_file) = site.slow_database();
    // Named like a scratch database, but not marked as one: someone else's.
    let lookalike = "pgseal_check_0badc0de";
    if !site.exists(lookalike) {
        site.create_named(lookalike, "not_pgseals");
    }
    // Marked, but in use by a live check right now.
    let live = spawn(&site, &["restore", "--check", slow_file.to_str().unwrap()]);
    let mut scratch = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            scratch = scratch.clone().or_else(|| site.scratch_of(live.id()));
            scratch.is_some()
        }),
        "the live check made no scratch database"
    );
    let scratch = scratch.unwrap();

    let small = site.cluster.create_database("small").unwrap();
    site.sql(&small, "CREATE TABLE public.t (v int);");
    let small_file = site.backup(&small);
    assert_eq!(site.checked_tables(&small_file), vec!["public.t"]);

    assert!(site.exists(lookalike), "an unmarked database was dropped");
    assert_eq!(site.tables(lookalike), vec!["public.not_pgseals"]);
    assert!(site.exists(&scratch), "a live check's database was dropped");
    let o = finish(live);
    ok(&o);
    assert!(stdout(&o).contains("public.slow"), "{}", stdout(&o));
    assert!(!site.scratch_databases().contains(&scratch));
}

// ---------------------------------------------------------------------------------------------
// Rough edges.

#[test]
fn passwords_never_reach_pg_dump_or_a_password_command() {
    let site = PgSite::new();
    let db = site.cluster.create_database("environ").unwrap();
    site.sql(
        &db,
        "CREATE TABLE public.t (v int); INSERT INTO public.t VALUES (1);",
    );
    // Passwords from .env (as a site keeps them), and from the environment.
    let env_file = site.path(".env");
    std::fs::write(
        &env_file,
        format!(
            "SERVER_KEY_PASSWORD={p}\nPGSEAL_USER_KEY_PASSWORD={p}\n",
            p = common::PASSWORD
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &env_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let password_file = site.path("user-password");
    std::fs::write(&password_file, common::PASSWORD).unwrap();
    let command_env = site.path("password-command.env");
    let password_command = format!(
        "tr '\\0' '\\n' < /proc/$$/environ > '{}'; cat '{}'",
        command_env.display(),
        password_file.display()
    );

    // Hold a lock that pg_dump must wait for, so its environment can be read while it runs.
    let mut locker = Command::new(site.cluster.bin_dir().join("psql"));
    locker.envs(site.cluster.env()).args([
        "-X",
        "-q",
        "-d",
        &db,
        "-c",
        "BEGIN; LOCK TABLE public.t IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60); COMMIT;",
    ]);
    let mut locker = locker
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        site.sql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE a.datname = {} AND l.mode = 'AccessExclusiveLock' AND l.granted;",
                literal(&db)
            ),
        )
        .trim()
            != "0"
    }));

    let mut cmd = site.cmd();
    cmd.env_remove("SERVER_KEY_PASSWORD")
        .env_remove("PGSEAL_USER_KEY_PASSWORD")
        .env("BACKUP_ENCRYPTION_PASSWORD", "legacy-secret-legacy-secret")
        .env("PGSEAL_NEW_SERVER_KEY_PASSWORD", "new-secret-new-secret")
        .env("PGPASSWORD", "libpq-password-for-the-tools")
        .args([
            "backup",
            &db,
            "--user",
            "system_backup",
            "--user-password-command",
            &password_command,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pgseal = child.id();
    let mut dump = Vec::new();
    let found = wait_until(Duration::from_secs(20), || {
        dump = children_named(pgseal, "pg_dump");
        !dump.is_empty()
    });
    let environ = found.then(|| std::fs::read(format!("/proc/{}/environ", dump[0])).unwrap());
    site.sql(
        "postgres",
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = {} AND query LIKE '%pg_sleep(60)%';",
            literal(&db)
        ),
    );
    let _ = locker.wait();
    let o = finish(child);
    ok(&o);
    let environ = environ.expect("pg_dump never ran");
    let names: Vec<String> = environ
        .split(|b| *b == 0)
        .filter_map(|v| v.split(|b| *b == b'=').next())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    for secret in [
        "SERVER_KEY_PASSWORD",
        "PGSEAL_USER_KEY_PASSWORD",
        "PGSEAL_KEY_PASSWORD",
        "BACKUP_ENCRYPTION_PASSWORD",
        "PGSEAL_NEW_SERVER_KEY_PASSWORD",
    ] {
        assert!(!names.contains(&secret.to_owned()), "pg_dump got {secret}");
    }
    let text = String::from_utf8_lossy(&environ);
    assert!(
        !text.contains(common::PASSWORD),
        "a password reached pg_dump"
    );
    assert!(
        names.contains(&"PGPASSWORD".to_owned()),
        "libpq's PGPASSWORD was taken away"
    );
    assert!(names.contains(&"PGHOST".to_owned()));

    let command_env = std::fs::read_to_string(&command_env).unwrap();
    assert!(
        !command_env.contains(common::PASSWORD) && !command_env.contains("legacy-secret"),
        "the password command got other passwords:\n{command_env}"
    );
}

#[test]
fn backup_all_of_a_database_named_with_a_newline_backs_up_that_one_database() {
    let site = PgSite::private();
    let name = "two\nlines";
    site.create_named(name, "one_database");
    let o = site.run(&["backup", "--all", "--user", "system_backup", "--json"]);
    ok(&o);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["database"].as_str().unwrap())
        .collect();
    // That one database, then the cluster's globals — without its shell: PostgreSQL's tools
    // cannot write a `\connect` to a name with a line break, and pgseal says so.
    assert_eq!(names, vec![name, "(globals)"], "{rows}");
    assert!(stderr(&o).contains("holds a line break"), "{}", stderr(&o));
    let file = PathBuf::from(rows[0]["backup"]["path"].as_str().unwrap());
    assert_eq!(site.checked_tables(&file), vec!["public.one_database"]);
    // The human table shows it on one line, escaped.
    let o = site.run(&["backup", "--all", "--user", "system_backup"]);
    ok(&o);
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.contains("two\\nlines"), "{out}");
}

#[test]
fn control_characters_in_database_names_never_reach_the_terminal() {
    let site = PgSite::new();
    let name = "esc\x1b]0;owned\x07\x1b[2Jred\u{202e}";
    site.create_named(name, "t");
    site.sql(name, "CREATE TABLE public.\"tab\x1b[31m\nle\" (v int);");
    let raw = |o: &Output| {
        [&o.stdout, &o.stderr].iter().any(|b| {
            b.contains(&0x1b)
                || b.contains(&0x07)
                || String::from_utf8_lossy(b).contains('\u{202e}')
        })
    };
    let o = site.run(&["backup", name, "--user", "system_backup"]);
    ok(&o);
    assert!(!raw(&o), "{:?}", stdout(&o));
    assert!(
        stdout(&o).contains("esc\\u{1b}]0;owned\\u{7}"),
        "{}",
        stdout(&o)
    );
    let file = site
        .store()
        .backups(None)
        .unwrap()
        .pop()
        .unwrap()
        .entry
        .location
        .shown();

    let o = site.run(&["restore", "--check", &file]);
    ok(&o);
    assert!(!raw(&o), "{:?}", stdout(&o));
    assert!(
        stdout(&o).contains("public.tab\\u{1b}[31m\\nle"),
        "{}",
        stdout(&o)
    );
    assert_eq!(stdout(&o).lines().count(), 3, "{}", stdout(&o));

    let target = format!("{name}\ncopy");
    let o = site.run(&["restore", &file, "--target-db", &target, "--create"]);
    ok(&o);
    assert!(!raw(&o), "{:?}", stdout(&o));
    assert_eq!(stdout(&o).lines().count(), 1, "{}", stdout(&o));
    let o = site.run(&["list"]);
    ok(&o);
    assert!(!raw(&o), "{:?}", stdout(&o));
    // A failure that quotes the name (pg_dump's own message) is escaped too.
    let o = site.run(&["backup", "no\x1b[2Jsuch", "--user", "system_backup"]);
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    assert!(!raw(&o), "{:?}", stderr(&o));
}

#[test]
fn restore_into_an_existing_database_holding_data_is_refused_without_into_existing() {
    let site = PgSite::new();
    let source = site.cluster.create_database("source").unwrap();
    site.sql(
        &source,
        "CREATE TABLE public.incoming (v int); INSERT INTO public.incoming VALUES (1);",
    );
    let file = site.backup(&source);
    let target = site.cluster.create_database("busy").unwrap();
    site.sql(
        &target,
        "CREATE TABLE public.live_data (v int); INSERT INTO public.live_data VALUES (42);",
    );

    let o = site.run(&["restore", file.to_str().unwrap(), "--target-db", &target]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("--into-existing"), "{}", stderr(&o));
    assert_eq!(
        site.tables(&target),
        vec!["public.live_data"],
        "it merged anyway"
    );
    let e = site.last_audit().entry;
    assert_eq!((e.action.as_str(), e.success), ("RESTORE", false));

    // Said explicitly, it merges.
    let o = site.run(&[
        "restore",
        file.to_str().unwrap(),
        "--target-db",
        &target,
        "--into-existing",
    ]);
    ok(&o);
    assert_eq!(
        site.tables(&target),
        vec!["public.incoming", "public.live_data"]
    );
    // An empty existing database needs no flag.
    let empty = site.cluster.create_database("empty").unwrap();
    ok(&site.run(&["restore", file.to_str().unwrap(), "--target-db", &empty]));
    assert_eq!(site.tables(&empty), vec!["public.incoming"]);
    // A merge that conflicts fails, and the audit log says so last (not only the entry that
    // was written, as a success, before pg_restore could commit).
    let o = site.run(&[
        "restore",
        file.to_str().unwrap(),
        "--target-db",
        &target,
        "--into-existing",
    ]);
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    let e = site.last_audit().entry;
    assert_eq!((e.action.as_str(), e.success), ("RESTORE", false));
}

#[test]
fn a_failed_backup_is_audited_under_the_user_who_ran_it() {
    let site = PgSite::new();
    let ops = site
        .store()
        .user(&pgseal_store::Username::parse("system_backup").unwrap())
        .unwrap()
        .id;
    let o = site.run(&["backup", "no_such_database_here", "--user", "system_backup"]);
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    let e = site.last_audit().entry;
    assert_eq!((e.action.as_str(), e.success), ("BACKUP", false));
    assert_eq!(e.user_id, Some(ops), "the failure is audited under no user");
    // A wrong key password too: the user is known before their key is opened.
    let o = site
        .cmd()
        .env("PGSEAL_USER_KEY_PASSWORD", "not-the-password-at-all")
        .args(["backup", "postgres", "--user", "system_backup"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    let e = site.last_audit().entry;
    assert_eq!((e.success, e.user_id), (false, Some(ops)));
}
