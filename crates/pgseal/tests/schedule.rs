//! `pgseal schedule`: the units systemd-analyze accepts, installed only over pgseal's own files,
//! removed without touching anyone else's, a crontab running the same commands — and the
//! commands themselves run as the units run them, passwords only from `$CREDENTIALS_DIRECTORY`,
//! against a real cluster (`restore --check --latest` included).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{PASSWORD, bin, code, ok, stderr, stdout};
use pgseal_store::Action;
use pgseal_testkit::TestCluster;

/// A site whose commands reach a test cluster through libpq's environment.
fn site_on(cluster: &TestCluster) -> common::Site {
    common::Site::with_env(common::cluster_env(cluster))
}

fn install(site: &common::Site, unit_dir: &Path, extra: &[&str]) -> std::process::Output {
    let dir = unit_dir.to_str().unwrap();
    let mut args = vec![
        "schedule",
        "install",
        "--user",
        "system_backup",
        "--unit-dir",
        dir,
        "--credentials-dir",
        "/etc/pgseal/credentials",
    ];
    args.extend_from_slice(extra);
    site.run(&args)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut f: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    f.sort();
    f
}

/// The `ExecStart=` command of a unit file, split into words.
fn exec_start(unit: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(unit).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap_or_else(|| panic!("{} has no ExecStart", unit.display()))
        .split(' ')
        .map(str::to_owned)
        .collect()
}

#[test]
fn systemd_analyze_verify_accepts_the_units() {
    let analyze = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .expect(
            "systemd-analyze is needed to check the units (the systemd package; scripts/test.sh \
             installs it)",
        );
    assert!(analyze.status.success());
    let site = common::Site::new();
    let units = tempfile::tempdir().unwrap();
    for extra in [&[][..], &["--pgpass", "--force"][..]] {
        let o = install(&site, units.path(), extra);
        ok(&o);
        let out = stdout(&o);
        assert!(
            out.contains("is not /etc/systemd/system: nothing enabled"),
            "{out}"
        );
        let written = files(units.path());
        assert_eq!(written.len(), 7, "{written:?}");
        // ExecStart names the binary under test, which exists: verify checks that too.
        assert_eq!(
            exec_start(&units.path().join("pgseal-backup.service"))[0],
            env!("CARGO_BIN_EXE_pgseal")
        );
        let v = Command::new("systemd-analyze")
            .arg("verify")
            .args(&written)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
        assert!(v.status.success(), "systemd-analyze verify refused: {said}");
        // Verify also warns (exit 0) about what it could not make sense of: none of ours.
        for unit in &written {
            let name = unit.file_name().unwrap().to_str().unwrap();
            assert!(
                !said.contains(name),
                "systemd-analyze verify about {name}: {said}"
            );
        }
        // The hardening, as systemd rates it: an exposure of at most 2.0 of 10 ("OK"; the
        // units score 1.5 — what is left open is the network and local sockets they need).
        for unit in written
            .iter()
            .filter(|u| u.extension().unwrap() == "service")
        {
            let s = Command::new("systemd-analyze")
                .args(["security", "--offline=true", "--threshold=20"])
                .arg(unit)
                .output()
                .unwrap();
            assert!(
                s.status.success(),
                "{} is exposed above 2.0: {}",
                unit.display(),
                String::from_utf8_lossy(&s.stdout)
            );
        }
    }
    let entries = site.audit();
    let installs: Vec<_> = entries
        .iter()
        .filter(|e| e.entry.action == Action::ScheduleInstall)
        .collect();
    assert_eq!(installs.len(), 2);
    assert!(installs.iter().all(|e| e.entry.success));
}

#[test]
fn install_refuses_a_foreign_unit_and_remove_deletes_only_its_own() {
    let site = common::Site::new();
    let units = tempfile::tempdir().unwrap();
    let foreign = units.path().join("pgseal-backup.timer");
    std::fs::write(&foreign, "[Timer]\nOnCalendar=hourly\n").unwrap();
    let unrelated = units.path().join("nginx.service");
    std::fs::write(&unrelated, "[Service]\nExecStart=/bin/true\n").unwrap();

    let o = install(&site, units.path(), &[]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not written by pgseal schedule install"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    // Nothing written: the refusal comes before any file.
    assert_eq!(
        files(units.path()),
        vec![unrelated.clone(), foreign.clone()]
    );
    let last = site.last_audit();
    assert_eq!(last.entry.action, Action::ScheduleInstall);
    assert!(!last.entry.success);

    // Re-installing over its own units needs no --force.
    ok(&install(&site, units.path(), &["--force"]));
    assert!(
        std::fs::read_to_string(&foreign)
            .unwrap()
            .contains("OnCalendar=*-*-* 02:00:00")
    );
    ok(&install(&site, units.path(), &[]));

    // A file pgseal did not write, under one of the schedule's names, is left by remove.
    let prune = units.path().join("pgseal-prune.service");
    std::fs::write(&prune, "[Service]\nExecStart=/bin/true\n").unwrap();
    let o = site.run(&[
        "schedule",
        "remove",
        "--unit-dir",
        units.path().to_str().unwrap(),
    ]);
    ok(&o);
    assert!(stderr(&o).contains("pgseal-prune.service: pgseal schedule install did not write it"));
    assert_eq!(files(units.path()), vec![unrelated, prune]);
    let last = site.last_audit();
    assert_eq!(last.entry.action, Action::ScheduleRemove);
    assert!(last.entry.success);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&last.entry.details).unwrap()["removed"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
}

#[test]
fn print_shows_what_install_writes_and_cron_runs_the_same_commands() {
    let site = common::Site::new();
    let units = tempfile::tempdir().unwrap();
    ok(&install(&site, units.path(), &[]));
    let printed = stdout(&site.run(&[
        "schedule",
        "print",
        "--user",
        "system_backup",
        "--credentials-dir",
        "/etc/pgseal/credentials",
    ]));
    for unit in files(units.path()) {
        let text = std::fs::read_to_string(&unit).unwrap();
        let name = unit.file_name().unwrap().to_str().unwrap();
        assert!(
            printed.contains(&format!("### {name}\n{text}")),
            "{name} differs"
        );
    }
    let o = site.run(&[
        "schedule",
        "print",
        "--cron",
        "--user",
        "system_backup",
        "--credentials-dir",
        "/etc/pgseal/credentials",
    ]);
    ok(&o);
    let cron = stdout(&o);
    for unit in files(units.path()) {
        if unit.extension().unwrap() == "service" {
            let command = exec_start(&unit).join(" ");
            assert!(
                cron.contains(&command),
                "the crontab lacks {command}:\n{cron}"
            );
        }
    }
    let lines: Vec<&str> = cron.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(lines.iter().any(|l| l.starts_with("0 2 * * * pgseal ")
        && l.contains("--user-password-file /etc/pgseal/credentials/user-key-password && ")));
    assert!(lines.iter().any(|l| l.starts_with("0 4 1 * * pgseal ")
        && l.ends_with("--server-password-file /etc/pgseal/credentials/server-key-password")));
    assert!(!cron.contains(PASSWORD));
}

#[test]
fn bad_settings_are_refused_with_what_to_fix() {
    let site = common::Site::new();
    for (args, says) in [
        (vec!["--system-user", "root"], "do not run as root"),
        (vec!["--backup-at", "25:00"], "not a time of day"),
        (vec!["--check-day", "31"], "1 to 28"),
        (vec!["--credentials-dir", "relative"], "absolute path"),
        (vec!["--credentials-dir", "/root/creds"], "ProtectHome"),
    ] {
        let mut all = vec!["schedule", "print", "--user", "system_backup"];
        all.extend(args.iter());
        let o = site.run(&all);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
    // No configuration file: nothing to point the units at.
    let o = bin()
        .args(["schedule", "print", "--user", "system_backup"])
        .current_dir(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}

/// Runs argv[1:] with memory-deny-write-execute on (exit 99 if the kernel has no PR_SET_MDWE).
const MDWE: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.stderr.write("PR_SET_MDWE failed (Linux 6.3 or later is needed): errno %d\n" % ctypes.get_errno())
    sys.exit(99)
os.execv(sys.argv[1], sys.argv[1:])
"#;

/// The jobs as the units run them: their `ExecStart=` command lines, with no password in the
/// environment, only `$CREDENTIALS_DIRECTORY` holding the files `LoadCredential=` names.
#[test]
fn the_units_commands_run_with_passwords_only_from_credentials() {
    let cluster = TestCluster::start().expect("start a private cluster");
    let site = site_on(&cluster);
    let shop = cluster.create_database("shop").unwrap();
    cluster
        .psql(
            &shop,
            "CREATE TABLE t AS SELECT g AS x, md5(g::text) AS m FROM generate_series(1, 20000) g;",
        )
        .unwrap();
    let units = tempfile::tempdir().unwrap();
    ok(&install(&site, units.path(), &[]));

    let credentials = tempfile::tempdir().unwrap();
    for name in ["user-key-password", "server-key-password"] {
        std::fs::write(credentials.path().join(name), format!("{PASSWORD}\n")).unwrap();
    }
    let job = |unit: &str, credentials: Option<&Path>| {
        let words = exec_start(&units.path().join(unit));
        // `common::bin` (setsid, no password variables) with the site's libpq environment.
        let mut c = bin();
        for (k, v) in cluster.env() {
            c.env(k, v);
        }
        c.env("POSTGRESQL_BIN_PATH", cluster.bin_dir());
        if let Some(dir) = credentials {
            c.env("CREDENTIALS_DIRECTORY", dir);
        }
        assert_eq!(words[0], env!("CARGO_BIN_EXE_pgseal"));
        // Under the kernel's memory-deny-write-execute (PR_SET_MDWE, which children and exec
        // inherit), as MemoryDenyWriteExecute= runs them: pgseal and PostgreSQL's tools must
        // never need writable code.
        let mut under_mdwe = Command::new("python3");
        under_mdwe.arg("-c").arg(MDWE).args(&words);
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => under_mdwe.env(k, v),
                None => under_mdwe.env_remove(k),
            };
        }
        let o = under_mdwe.current_dir("/").output().unwrap();
        assert_ne!(code(&o), 99, "{}", stderr(&o));
        o
    };

    // Without the credentials a backup has no password, and says how to give one.
    let o = job("pgseal-backup.service", None);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("LoadCredential=user-key-password:FILE"),
        "{}",
        stderr(&o)
    );

    let o = job("pgseal-backup.service", Some(credentials.path()));
    ok(&o);
    assert!(stdout(&o).contains(&shop), "{}", stdout(&o));
    cluster
        .psql(&shop, "CREATE TABLE u AS SELECT 1 AS y;")
        .unwrap();
    ok(&job("pgseal-backup.service", Some(credentials.path())));
    ok(&job("pgseal-prune.service", None));
    ok(&job("pgseal-audit-verify.service", None));

    // The restore check takes each database's newest backup: shop's second, with two tables.
    let o = job("pgseal-restore-check.service", Some(credentials.path()));
    ok(&o);
    let out = stdout(&o);
    assert!(
        out.contains(&format!("{shop}: ")) && out.contains("restores cleanly (2 tables)"),
        "{out}"
    );

    let mut c = bin();
    for (k, v) in cluster.env() {
        c.env(k, v);
    }
    c.env("POSTGRESQL_BIN_PATH", cluster.bin_dir())
        .env("CREDENTIALS_DIRECTORY", credentials.path())
        .current_dir(&site.dir)
        .args(["restore", "--check", "--latest", "--json"]);
    let o = c.output().unwrap();
    ok(&o);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let shop_row = rows
        .iter()
        .find(|r| r["database"] == shop.as_str())
        .unwrap();
    assert_eq!(shop_row["restorable"], true);
    assert_eq!(shop_row["tables"], 2);
    let newest = site
        .store()
        .backups(Some(&shop))
        .unwrap()
        .into_iter()
        .max_by_key(|b| b.entry.created_at)
        .unwrap();
    assert_eq!(shop_row["file"], newest.entry.location.shown());
    // Each check is its own RESTORE entry, marked as a check of the newest.
    let checks: Vec<_> = site
        .audit()
        .into_iter()
        .filter(|e| e.entry.action == Action::Restore)
        .collect();
    assert!(checks.len() >= 2);
    let details: serde_json::Value =
        serde_json::from_str(&checks.last().unwrap().entry.details).unwrap();
    assert_eq!(details["latest"], true);
    assert!(checks.iter().all(|e| e.entry.success));

    // A damaged newest backup (a bit flipped in its sealed data, well past the header and the
    // key slots) fails the check: exit 4, audited.
    let path = common::path_of(&newest.entry);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let o = job("pgseal-restore-check.service", Some(credentials.path()));
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stdout(&o).contains("FAILED"), "{}", stdout(&o));
    let last = site.last_audit();
    assert_eq!(last.entry.action, Action::Restore);
    assert!(!last.entry.success);
}
