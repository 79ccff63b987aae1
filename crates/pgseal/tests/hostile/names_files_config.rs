//! Names, files, configuration and output: user names that are paths, `-o` onto devices,
//! FIFOs, directories and the input itself, configuration files others can write, passwords in
//! store URLs, a read-only store, `--json` failures, and plaintext released before its audit
//! entry.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::{self, Site, code, data, ok, stderr, stdout};
use pgseal_testkit::TestCluster;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn sqlite(site: &Site, sql: &str) {
    rusqlite::Connection::open(site.path("pgseal.db"))
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}

/// A site with one sealed file, `f.pgseal`, holding `data(n)`.
fn site_with_sealed_file(n: usize) -> (Site, Vec<u8>) {
    let site = Site::new();
    let plain = data(n);
    site.write("f.dump", &plain);
    ok(&site.run(&[
        "encrypt",
        "f.dump",
        "-o",
        "f.pgseal",
        "--user",
        "system_backup",
    ]));
    (site, plain)
}

/// The JSON error object a failing `--json` command prints (on `stream`).
fn json_error(bytes: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(bytes);
    let last = text
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no JSON: {text:?}"));
    let v: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    v["error"].clone()
}

// ---- user names ----

#[test]
fn user_named_like_a_path_is_refused_and_no_key_lands_outside_the_site() {
    let site = Site::new();
    let outside = site.dir.parent().unwrap().join("x");
    let traversal = format!("../../../..{}/pwned", outside.display());
    let long = "a".repeat(151);
    for bad in [
        traversal.as_str(),
        "../pwned",
        "..",
        ".",
        "a/b",
        "-rf",
        "--force",
        "tab\tname",
        "new\nline",
        "esc\u{1b}[31m",
        "space name",
        "",
        long.as_str(),
    ] {
        let o = site.run(&["user", "add", "--", bad]);
        assert_eq!(code(&o), 2, "user add {bad:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("user name"),
            "user add {bad:?}: {}",
            stderr(&o)
        );
        // Refused, and the refusal is audited.
        let e = site.last_audit().entry;
        assert_eq!(
            (e.action.as_str(), e.success),
            ("USER_ADD", false),
            "{bad:?}"
        );

        let o = site.run(&["user-key", "generate", "--key-size", "2048", "--", bad]);
        assert_eq!(code(&o), 2, "user-key generate {bad:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("user name"), "{}", stderr(&o));
    }
    assert!(!outside.exists(), "{} was created", outside.display());
    let o = site.run(&["user", "list", "--json"]);
    ok(&o);
    let users: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 1, "{users}");

    // Every command that takes a user name checks it the same way.
    for args in [
        vec!["user", "show", "../x"],
        vec!["user", "disable", "../x"],
        vec!["user-key", "list", "../x"],
        vec!["user-key", "export", "../x"],
        vec!["user-key", "rotate", "../x"],
        vec!["encrypt", "f", "-o", "g", "--user", "../x"],
        vec!["audit", "list", "--user", "../x"],
    ] {
        let o = site.run(&args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("user name"), "{args:?}: {}", stderr(&o));
    }

    // What Django allowed (letters and digits of any script, . @ + - _) still works, and the
    // key lands inside the keys directory.
    for good in ["ops.bot@example.com", "deploy+ci", "józef_2", "a-b"] {
        ok(&site.run(&["user", "add", good]));
    }
    ok(&site.run(&["user-key", "generate", "józef_2", "--key-size", "2048"]));
    assert!(site.path("keys/users/józef_2.key.pem").is_file());
}

#[test]
fn a_name_pgseal_never_writes_in_the_store_is_reported_not_used() {
    // Someone with write access to the store renames a user to a path.
    let site = Site::new();
    sqlite(
        &site,
        "UPDATE pgseal_users SET username = '../../../../tmp/pwned-by-store' WHERE id = 1",
    );
    let o = site.run(&["user", "list"]);
    assert_ne!(code(&o), 0, "{}", stdout(&o));
    assert!(stderr(&o).contains("user name"), "{}", stderr(&o));
}

const DJANGO_AUTH_USER: &str = "CREATE TABLE auth_user (
    id serial PRIMARY KEY, is_superuser boolean NOT NULL, username varchar(150) NOT NULL UNIQUE,
    is_active boolean NOT NULL DEFAULT true, public_key_pem text NULL,
    key_generated_at timestamp NULL, key_last_rotated timestamp NULL);
CREATE TABLE tenancy_server_key (
    id SERIAL PRIMARY KEY, private_key_pem TEXT NOT NULL, public_key_pem TEXT NOT NULL,
    key_size INTEGER DEFAULT 4096, fingerprint VARCHAR(100) NOT NULL, is_active BOOLEAN DEFAULT TRUE,
    created_at TIMESTAMP DEFAULT NOW(), rotated_from_id INTEGER, notes TEXT);
CREATE TABLE tenancy_encryption_audit_log (
    id SERIAL PRIMARY KEY, action VARCHAR(20) NOT NULL, user_id INTEGER, backup_creator_id INTEGER,
    backup_file VARCHAR(500), success BOOLEAN DEFAULT TRUE, signature_valid BOOLEAN NULL,
    timestamp TIMESTAMP DEFAULT NOW(), ip_address INET NULL, details JSONB DEFAULT '{}');";

#[test]
fn legacy_user_named_like_a_path_stops_the_import_before_anything_is_written() {
    let cluster = TestCluster::shared();
    let django = cluster.create_database("django").unwrap();
    cluster.psql(&django, DJANGO_AUTH_USER).unwrap();
    // Django's own validator allows `..` and a leading `-`; pgseal does not.
    cluster
        .psql(
            &django,
            "INSERT INTO auth_user (id, is_superuser, username) VALUES \
             (100, false, 'alice'), (101, false, '..'), (102, true, '-rf');",
        )
        .unwrap();
    let site = Site::new();
    let url = cluster.url(&django);
    for dry in [true, false] {
        let mut args = vec!["import-django", "--database-url", &url];
        if dry {
            args.push("--dry-run");
        }
        let o = site.run(&args);
        assert_eq!(code(&o), 3, "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("101") && err.contains("\"..\"") && err.contains("102"),
            "{err}"
        );
    }
    // Nothing came over: alice included.
    let o = site.run(&["user", "list", "--json"]);
    ok(&o);
    let users: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 1, "{users}");
    let e = site.last_audit().entry;
    assert_eq!((e.action.as_str(), e.success), ("IMPORT", false));
}

// ---- -o onto devices, FIFOs, directories, the input ----

#[test]
fn decrypt_force_onto_a_character_device_writes_through_it_and_keeps_the_device() {
    let (site, _) = site_with_sealed_file(50_000);
    let node = site.path("fakenull");
    let made = Command::new("mknod")
        .args([node.to_str().unwrap(), "c", "1", "3"])
        .status()
        .unwrap();
    assert!(made.success());
    for extra in [&["--force"][..], &[][..]] {
        let mut args = vec!["decrypt", "f.pgseal", "-o", "fakenull"];
        args.extend_from_slice(extra);
        ok(&site.run(&args));
        let meta = std::fs::symlink_metadata(&node).unwrap();
        assert!(
            meta.file_type().is_char_device(),
            "{args:?} replaced the device"
        );
        assert_eq!(meta.rdev(), std::fs::metadata("/dev/null").unwrap().rdev());
    }
}

#[test]
fn decrypt_force_into_a_fifo_streams_to_its_reader_and_keeps_the_fifo() {
    let (site, plain) = site_with_sealed_file(300_000);
    let fifo = site.path("pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let reader_path = fifo.clone();
    std::thread::spawn(move || {
        let got = std::fs::read(&reader_path);
        let _ = tx.send(got);
    });
    ok(&site.run(&["decrypt", "f.pgseal", "-o", "pipe", "--force"]));
    let got = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the FIFO's reader got nothing: the FIFO was replaced")
        .unwrap();
    assert!(got == plain, "the reader got {} bytes", got.len());
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn force_onto_a_socket_is_refused_and_keeps_the_socket() {
    let (site, _) = site_with_sealed_file(1000);
    let _listener = std::os::unix::net::UnixListener::bind(site.path("sock")).unwrap();
    let o = site.run(&["decrypt", "f.pgseal", "-o", "sock", "--force"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("socket"), "{}", stderr(&o));
    assert!(
        std::fs::symlink_metadata(site.path("sock"))
            .unwrap()
            .file_type()
            .is_socket()
    );
}

#[test]
fn output_naming_a_directory_fails_before_any_work() {
    let (site, _) = site_with_sealed_file(1000);
    std::fs::create_dir(site.path("adir")).unwrap();
    // No password in the environment: failing on the directory means it was checked first.
    for extra in [&["--force"][..], &[][..]] {
        let mut c = common::bin();
        c.current_dir(&site.dir)
            .args(["decrypt", "f.pgseal", "-o", "adir"])
            .args(extra);
        let o = c.output().unwrap();
        assert_eq!(code(&o), 2, "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("directory"), "{}", stderr(&o));
        assert!(site.path("adir").is_dir());
    }
    let mut c = common::bin();
    c.current_dir(&site.dir)
        .args(["encrypt", "f.dump", "-o", "adir", "--force", "--user"])
        .arg("system_backup");
    let o = c.output().unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("directory"), "{}", stderr(&o));
}

#[test]
fn output_naming_the_input_file_is_refused_by_any_path_or_hard_link() {
    let (site, _) = site_with_sealed_file(20_000);
    let sealed = std::fs::read(site.path("f.pgseal")).unwrap();
    std::fs::create_dir(site.path("sub")).unwrap();
    std::fs::hard_link(site.path("f.pgseal"), site.path("hardlink.pgseal")).unwrap();
    std::os::unix::fs::symlink("f.pgseal", site.path("symlink.pgseal")).unwrap();
    for out in [
        "f.pgseal",
        "./sub/../f.pgseal",
        "hardlink.pgseal",
        "symlink.pgseal",
    ] {
        let o = site.run(&["decrypt", "f.pgseal", "-o", out, "--force"]);
        assert_eq!(code(&o), 2, "-o {out}: {}", stderr(&o));
        assert!(stderr(&o).contains("input"), "{}", stderr(&o));
        assert!(
            std::fs::read(site.path("f.pgseal")).unwrap() == sealed,
            "-o {out} changed the sealed file"
        );
    }
    let plain = std::fs::read(site.path("f.dump")).unwrap();
    let o = site.run(&[
        "encrypt",
        "f.dump",
        "-o",
        "f.dump",
        "--force",
        "--user",
        "system_backup",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(std::fs::read(site.path("f.dump")).unwrap() == plain);
}

#[test]
fn keygen_force_onto_a_fifo_is_refused_and_keeps_the_fifo() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("k.key.pem");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let out = tmp.path().join("k");
    let o = common::run(&[
        "keygen",
        "--out",
        out.to_str().unwrap(),
        "--key-size",
        "2048",
        "--force",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert!(!tmp.path().join("k.pub.pem").exists());
}

#[test]
fn user_key_rotate_out_onto_a_device_is_refused_and_the_device_stays() {
    let site = Site::new();
    let node = site.path("fakenull");
    let made = Command::new("mknod")
        .args([node.to_str().unwrap(), "c", "1", "3"])
        .status()
        .unwrap();
    assert!(made.success());
    let o = site
        .cmd()
        .env("PGSEAL_NEW_USER_KEY_PASSWORD", common::PASSWORD)
        .args([
            "user-key",
            "rotate",
            "system_backup",
            "--out",
            "fakenull",
            "--key-size",
            "2048",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let meta = std::fs::symlink_metadata(&node).unwrap();
    assert!(
        meta.file_type().is_char_device(),
        "the device was moved or replaced"
    );
    // Nothing was rotated.
    let o = site.run(&["user-key", "list", "system_backup", "--json"]);
    let keys: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
}

// ---- configuration others can write ----

/// A `pg_dump` that leaves a mark if anyone runs it.
fn evil_bin(site: &Site) -> (PathBuf, PathBuf) {
    let evil = site.dir.parent().unwrap().join("evil");
    std::fs::create_dir_all(&evil).unwrap();
    let marker = site.dir.parent().unwrap().join("evil-ran");
    for tool in ["pg_dump", "psql"] {
        let script = evil.join(tool);
        std::fs::write(
            &script,
            format!("#!/bin/sh\ntouch '{}'\nexit 1\n", marker.display()),
        )
        .unwrap();
        chmod(&script, 0o755);
    }
    (evil, marker)
}

#[test]
fn a_world_writable_env_file_is_refused_and_its_pg_dump_never_runs() {
    let site = Site::new();
    let (evil, marker) = evil_bin(&site);
    let env = site.write(
        ".env",
        format!("POSTGRESQL_BIN_PATH={}\n", evil.display()).as_bytes(),
    );
    chmod(&env, 0o666);
    let o = site
        .cmd()
        .env_remove("POSTGRESQL_BIN_PATH")
        .args(["backup", "shop", "--user", "system_backup"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(!marker.exists(), "the .env's pg_dump ran");
    let expected = format!("chmod go-w {}", env.display());
    assert!(stderr(&o).contains(&expected), "{}", stderr(&o));

    // Fixed as told, it is obeyed.
    chmod(&env, 0o600);
    let o = site.run(&["config", "--json"]);
    ok(&o);
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(c["postgresql_bin_path"], evil.to_str().unwrap());
}

#[test]
fn a_group_writable_config_is_refused_with_the_chmod_to_run() {
    let site = Site::new();
    let config = site.path("pgseal.toml");
    chmod(&config, 0o620);
    let o = site.run(&["list"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let expected = format!("chmod go-w {}", config.display());
    assert!(stderr(&o).contains(&expected), "{}", stderr(&o));
    chmod(&config, 0o600);
    ok(&site.run(&["list"]));
}

#[test]
fn a_config_owned_by_another_user_is_refused() {
    let site = Site::new();
    let config = site.path("pgseal.toml");
    std::os::unix::fs::chown(&config, Some(65534), None).unwrap();
    let o = site.run(&["list"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("chown"), "{}", stderr(&o));
}

#[test]
fn a_config_in_a_directory_others_can_write_is_refused_unless_sticky() {
    let site = Site::new();
    chmod(&site.dir, 0o777);
    let o = site.run(&["list"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let expected = format!("chmod go-w {}", site.dir.display());
    assert!(stderr(&o).contains(&expected), "{}", stderr(&o));
    // Like /tmp: others can add files but not replace this one.
    chmod(&site.dir, 0o1777);
    ok(&site.run(&["list"]));
}

// ---- passwords in store URLs ----

#[test]
fn a_store_password_in_the_query_string_is_never_shown() {
    let secret = "S3CRET-in-query";
    let tmp = tempfile::tempdir().unwrap();
    let url =
        format!("postgres://app@/pgseal?host=/nonexistent-pgseal-socket&port=1&password={secret}");
    for args in [
        vec!["--store", url.as_str(), "config"],
        vec!["--store", url.as_str(), "config", "--json"],
        vec!["--store", url.as_str(), "list"],
        vec!["--store", url.as_str(), "list", "--json"],
    ] {
        let o = common::run_in(tmp.path(), &args);
        assert!(
            !stdout(&o).contains(secret) && !stderr(&o).contains(secret),
            "{args:?} printed the password: {}{}",
            stdout(&o),
            stderr(&o)
        );
    }
    let o = common::run_in(tmp.path(), &["--store", url.as_str(), "config"]);
    ok(&o);
    assert!(stdout(&o).contains("password=***"), "{}", stdout(&o));
    // Not a URL pgseal takes, but the error still hides it: key=value, quoted, and userinfo.
    for bad in [
        format!("host=/x password={secret} dbname=y"),
        format!("host=/x password='{secret} with space'"),
        format!("mysql://app:{secret}@db/x"),
    ] {
        let o = common::run_in(tmp.path(), &["--store", bad.as_str(), "list"]);
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        assert!(!stderr(&o).contains(secret), "{}", stderr(&o));
    }
}

// ---- a read-only store ----

/// pgseal run as `nobody`, who may read the store but write nothing near it.
fn as_nobody(args: &[&str]) -> Output {
    Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(env!("CARGO_BIN_EXE_pgseal"))
        .args(args)
        .current_dir("/")
        .env("XDG_CONFIG_HOME", "/nonexistent-pgseal-test")
        .env_remove("PGSEAL_CONFIG")
        .env_remove("PGSEAL_STORE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn list_and_audit_list_read_a_store_nobody_may_write() {
    let site = Site::new();
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let db = dir.path().join("pgseal.db");
    std::fs::copy(site.path("pgseal.db"), &db).unwrap();
    chmod(&db, 0o644);
    let before = std::fs::read(&db).unwrap();
    let store = format!("sqlite:{}", db.display());

    let o = as_nobody(&["--store", &store, "list"]);
    ok(&o);
    assert!(
        stdout(&o).contains("no backups catalogued"),
        "{}",
        stdout(&o)
    );
    let o = as_nobody(&["--store", &store, "audit", "list", "--json"]);
    ok(&o);
    let entries: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), site.audit().len());
    for args in [
        vec!["audit", "stats"],
        vec!["user", "list"],
        vec!["server-key", "list"],
    ] {
        let mut full = vec!["--store", store.as_str()];
        full.extend(args.iter().copied());
        ok(&as_nobody(&full));
    }
    assert!(
        std::fs::read(&db).unwrap() == before,
        "reading changed the store"
    );
    // A command that must write says why it cannot.
    let o = as_nobody(&["--store", &store, "user", "add", "nobody_else"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
}

// ---- --json failures ----

#[test]
fn a_failing_command_with_json_still_answers_in_json() {
    let site = Site::new();
    let o = site.run(&["user", "show", "nosuch", "--json"]);
    assert_eq!(code(&o), 2);
    let e = json_error(&o.stdout);
    assert_eq!(e["exit_code"], 2, "{e}");
    assert_eq!(e["kind"], "usage", "{e}");
    assert!(e["message"].as_str().unwrap().contains("nosuch"), "{e}");

    // No store at all, a bad flag, a bad file: the same shape.
    let tmp = tempfile::tempdir().unwrap();
    let o = common::run_in(tmp.path(), &["list", "--json"]);
    assert_eq!(code(&o), 2);
    assert_eq!(json_error(&o.stdout)["kind"], "usage");
    let o = site.run(&["list", "--json", "--no-such-flag"]);
    assert_eq!(code(&o), 2);
    assert_eq!(json_error(&o.stdout)["exit_code"], 2);
    site.write("junk", b"not a key at all");
    let o = site.run(&["key", "info", "junk", "--json"]);
    assert_eq!(code(&o), 5);
    assert_eq!(json_error(&o.stdout)["kind"], "key");
    // One JSON document per run: a command whose own report states the failure (verify's
    // `"valid": false`) is not followed by an error object.
    site.write("f.dump", &data(5000));
    ok(&site.run(&[
        "encrypt",
        "f.dump",
        "-o",
        "f.pgseal",
        "--user",
        "system_backup",
    ]));
    let mut sealed = std::fs::read(site.path("f.pgseal")).unwrap();
    let n = sealed.len();
    sealed[n - 10] ^= 1;
    site.write("bad.pgseal", &sealed);
    let o = site.run(&["verify", "bad.pgseal", "--json"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 1, "{}", stdout(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["valid"], false, "{report}");

    // Where stdout carries the data (encrypt -o -), the error goes where the report would.
    let o = site.run(&[
        "encrypt",
        "missing-file",
        "-o",
        "-",
        "--json",
        "--user",
        "system_backup",
    ]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    assert_eq!(json_error(&o.stderr)["kind"], "io");
}

// ---- plaintext before its audit entry ----

#[test]
fn decrypt_to_stdout_releases_nothing_when_the_audit_log_refuses_writes() {
    let (site, _) = site_with_sealed_file(300_000);
    sqlite(
        &site,
        "CREATE TRIGGER audit_off BEFORE INSERT ON pgseal_audit_log \
         BEGIN SELECT RAISE(FAIL, 'audit disabled'); END;",
    );
    let o = site.run(&["decrypt", "f.pgseal", "-o", "-"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        o.stdout.is_empty(),
        "{} plaintext bytes left unaudited",
        o.stdout.len()
    );
}

#[test]
fn decrypt_to_stdout_is_audited_before_its_first_byte_and_after_its_last() {
    let (site, plain) = site_with_sealed_file(300_000);
    let before = site.audit().len();
    let o = site.run(&["decrypt", "f.pgseal", "-o", "-"]);
    ok(&o);
    assert!(o.stdout == plain);
    let entries = site.audit();
    let new: Vec<_> = entries[before..].iter().map(|e| &e.entry).collect();
    assert_eq!(new.len(), 2, "{new:?}");
    assert_eq!(new[0].action, "DECRYPT_START");
    assert_eq!(new[1].action, "DECRYPT");
    assert!(new[1].success);
    assert_eq!(new[0].backup_file, new[1].backup_file);

    // A failure part-way is recorded after the start, as a failed DECRYPT.
    let mut sealed = std::fs::read(site.path("f.pgseal")).unwrap();
    let n = sealed.len();
    sealed[n - 100] ^= 1;
    site.write("bad.pgseal", &sealed);
    let o = site.run(&["decrypt", "bad.pgseal", "-o", "-"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let last = site.last_audit().entry;
    assert_eq!((last.action.as_str(), last.success), ("DECRYPT", false));
}
