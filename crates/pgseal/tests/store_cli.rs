//! The CLI with a store: init, users, keys, store-aware crypto commands, and the audit entry
//! every operation leaves — failures included.

mod common;

use std::path::Path;
use std::process::Output;

use common::{PASSWORD, Site, bin, code, data, ok, run_in, stderr, stdout, with_passwords};
use pgseal_store::{AuditEntry, Store, StoreUrl};

fn details(e: &AuditEntry) -> serde_json::Value {
    serde_json::from_str(&e.entry.details).unwrap()
}

#[test]
fn init_creates_a_working_site() {
    let site = Site::new();
    for name in [
        "pgseal.toml",
        ".env.example",
        "pgseal.db",
        "keys/server",
        "keys/users",
        "backups",
    ] {
        assert!(site.path(name).exists(), "{name} missing");
    }
    let toml = std::fs::read_to_string(site.path("pgseal.toml")).unwrap();
    assert!(toml.contains("BACKUP_RETENTION_DAYS") && toml.contains("SERVER_KEYS_DIR"));
    assert!(!toml.contains(PASSWORD));
    // Re-running init refuses, and changes nothing.
    let o = common::run(&[
        "init",
        "--dir",
        site.dir.to_str().unwrap(),
        "--key-size",
        "2048",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));

    let o = site.run(&["server-key", "list", "--json"]);
    ok(&o);
    let keys: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert_eq!(keys[0]["status"], "active");
    let o = site.run(&["server-key", "export"]);
    ok(&o);
    assert!(stdout(&o).starts_with("-----BEGIN PUBLIC KEY-----"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(site.path("keys/users/system_backup.key.pem"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn encrypt_decrypt_verify_through_the_store_and_audit() {
    let site = Site::new();
    let plain = data(300_000);
    site.write("db.dump", &plain);
    ok(&site.run(&[
        "encrypt",
        "db.dump",
        "-o",
        "db.pgseal",
        "--user",
        "system_backup",
    ]));
    let e = site.last_audit().entry;
    assert_eq!((e.action.as_str(), e.success), ("ENCRYPT", true));
    assert_eq!(e.user_id, Some(1));
    assert_eq!(e.backup_creator_id, Some(1));
    assert!(e.os_user.is_some() && e.host.is_some() && e.ip_address.is_some());

    // The header names the creator.
    let o = site.run(&["inspect", "--json", "db.pgseal"]);
    let facts: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(facts["creator"]["user_id"], 1);
    assert_eq!(facts["creator"]["username"], "system_backup");

    // No key files named: the store finds the server key and the signer.
    ok(&site.run(&["verify", "db.pgseal"]));
    let e = site.last_audit().entry;
    assert_eq!(
        (e.action.as_str(), e.success, e.signature_valid),
        ("VERIFY", true, Some(true))
    );
    ok(&site.run(&["verify", "db.pgseal", "--decrypt-check"]));
    ok(&site.run(&["decrypt", "db.pgseal", "-o", "restored.dump"]));
    assert_eq!(std::fs::read(site.path("restored.dump")).unwrap(), plain);
    let e = site.last_audit().entry;
    assert_eq!(
        (e.action.as_str(), e.success, e.signature_valid),
        ("DECRYPT", true, Some(true))
    );
    assert_eq!(e.backup_creator_id, Some(1));
}

#[test]
fn failures_are_audited_too() {
    let site = Site::new();
    site.write("db.dump", &data(10_000));
    ok(&site.run(&[
        "encrypt",
        "db.dump",
        "-o",
        "db.pgseal",
        "--user",
        "system_backup",
        "--chunk-size",
        "1024",
    ]));

    // Wrong server password.
    let o = with_passwords(bin())
        .current_dir(&site.dir)
        .args(["decrypt", "db.pgseal", "-o", "out"])
        .env("SERVER_KEY_PASSWORD", "definitely-not-the-password")
        .output()
        .unwrap();
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Failed to decrypt session key"),
        "{}",
        stderr(&o)
    );
    assert!(!site.path("out").exists());
    let e = site.last_audit();
    assert_eq!(
        (e.entry.action.as_str(), e.entry.success),
        ("DECRYPT", false)
    );
    assert!(
        details(&e)["error"]
            .as_str()
            .unwrap()
            .contains("SERVER_KEY_PASSWORD")
    );
    assert!(!e.entry.details.contains("definitely-not-the-password"));

    // A bad signature.
    let mut bytes = std::fs::read(site.path("db.pgseal")).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    site.write("bad.pgseal", &bytes);
    let o = site.run(&["verify", "bad.pgseal"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let e = site.last_audit().entry;
    assert_eq!(
        (e.action.as_str(), e.success, e.signature_valid),
        ("VERIFY", false, Some(false))
    );
    let o = site.run(&["decrypt", "bad.pgseal", "-o", "out"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let e = site.last_audit().entry;
    assert_eq!(
        (e.action.as_str(), e.success, e.signature_valid),
        ("DECRYPT", false, Some(false))
    );

    // A user without a key: the seed guide's message, with its fix.
    ok(&site.run(&["user", "add", "nokey"]));
    let o = site.run(&["encrypt", "db.dump", "-o", "x.pgseal", "--user", "nokey"]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("User has no RSA key")
            && stderr(&o).contains("user-key generate nokey")
    );
    let e = site.last_audit().entry;
    assert_eq!((e.action.as_str(), e.success), ("ENCRYPT", false));

    // A second server key while one is active.
    let o = site.run(&["server-key", "generate", "--key-size", "2048"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let e = site.last_audit().entry;
    assert_eq!((e.action.as_str(), e.success), ("KEY_GEN", false));

    // --no-verify is refused while the configuration requires signatures.
    let o = site.run(&["decrypt", "db.pgseal", "-o", "out", "--no-verify"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}

#[test]
fn no_active_server_key_is_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", tmp.path().join("empty.db").display());
    // A bare store with no server key (commands other than `init` never create one).
    drop(Store::open(&StoreUrl::Sqlite(tmp.path().join("empty.db"))).unwrap());
    ok(&run_in(
        tmp.path(),
        &["--store", &store, "user", "add", "alice"],
    ));
    let key = tmp.path().join("alice.key.pem");
    ok(&run_in(
        tmp.path(),
        &[
            "--store",
            &store,
            "user-key",
            "generate",
            "alice",
            "--out",
            key.to_str().unwrap(),
            "--key-size",
            "2048",
        ],
    ));
    std::fs::write(tmp.path().join("in"), b"data").unwrap();
    let o = run_in(
        tmp.path(),
        &[
            "--store",
            &store,
            "encrypt",
            "in",
            "-o",
            "out",
            "--user",
            "alice",
            "--sign-key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("No active server key found"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("server-key generate"));
}

#[test]
fn a_key_that_is_not_the_users_active_key_is_refused() {
    let site = Site::new();
    site.write("in", b"data");
    let other = site.path("other");
    ok(&site.run(&[
        "keygen",
        "--out",
        other.to_str().unwrap(),
        "--key-size",
        "2048",
    ]));
    let o = site.run(&[
        "encrypt",
        "in",
        "-o",
        "out",
        "--user",
        "system_backup",
        "--sign-key",
        "other.key.pem",
    ]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("active key"), "{}", stderr(&o));
}

#[test]
fn users_are_listed_shown_and_disabled() {
    let site = Site::new();
    ok(&site.run(&["user", "add", "auditor1", "--role", "auditor"]));
    let o = site.run(&["user", "list", "--json"]);
    let users: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 2);
    assert_eq!(users[1]["role"], "auditor");
    let o = site.run(&["user", "show", "system_backup", "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(shown["keys"][0]["status"], "active");
    assert_eq!(code(&site.run(&["user", "add", "auditor1"])), 2);
    ok(&site.run(&["user", "disable", "system_backup"]));
    site.write("in", b"data");
    let o = site.run(&["encrypt", "in", "-o", "out", "--user", "system_backup"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("disabled"));
    // The disabled user's key still verifies what they signed before: export keeps working.
    ok(&site.run(&["user-key", "export", "system_backup"]));
    let actions: Vec<String> = site
        .audit()
        .into_iter()
        .map(|e| e.entry.action.into())
        .collect();
    assert!(
        actions.contains(&"USER_ADD".to_owned()) && actions.contains(&"USER_DISABLE".to_owned())
    );
}

#[test]
fn service_roles_are_granted_revoked_shown_and_audited() {
    let site = Site::new();
    let roles = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["user", "role", "system_backup", "--json"];
        all.extend_from_slice(args);
        let o = site.run(&all);
        ok(&o);
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["roles"].clone()
    };
    assert_eq!(roles(&[]), serde_json::json!([]));
    assert_eq!(
        roles(&["--add", "rewrap", "--add", "restore"]),
        serde_json::json!(["restore", "rewrap"])
    );
    assert_eq!(
        roles(&["--remove", "rewrap", "--add", "admin"]),
        serde_json::json!(["restore", "admin"])
    );
    let o = site.run(&["user", "role", "system_backup"]);
    assert_eq!(common::stdout(&o).trim(), "system_backup: restore, admin");
    let o = site.run(&["user", "role", "nobody", "--add", "admin"]);
    assert_ne!(code(&o), 0);
    assert_eq!(
        code(&site.run(&["user", "role", "system_backup", "--add", "root"])),
        2
    );
    let changes: Vec<serde_json::Value> = site
        .audit()
        .into_iter()
        .filter(|e| e.entry.action == pgseal_store::Action::UserRole && e.entry.success)
        .map(|e| serde_json::from_str(&e.entry.details).unwrap())
        .collect();
    assert_eq!(changes.len(), 4, "{changes:?}");
    assert_eq!(changes[2]["granted"], serde_json::json!(["admin"]));
    assert_eq!(changes[2]["revoked"], serde_json::json!(["rewrap"]));
}

#[test]
fn two_processes_racing_server_key_generate_have_one_winner() {
    let tmp = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", tmp.path().join("race.db").display());
    // Create the schema first so both racers meet at the key, not at migration (commands
    // other than `init` never create a store).
    drop(Store::open(&StoreUrl::Sqlite(tmp.path().join("race.db"))).unwrap());
    ok(&run_in(
        tmp.path(),
        &["--store", &store, "user", "add", "setup"],
    ));
    let spawn = || {
        with_passwords(bin())
            .current_dir(tmp.path())
            .args([
                "--store",
                &store,
                "server-key",
                "generate",
                "--key-size",
                "2048",
            ])
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let results = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let wins = results.iter().filter(|o| o.status.success()).count();
    assert_eq!(wins, 1, "exactly one generate may win");
    let loser = results.iter().find(|o| !o.status.success()).unwrap();
    assert_eq!(code(loser), 2);
    let mut s = Store::open(&StoreUrl::Sqlite(tmp.path().join("race.db"))).unwrap();
    assert_eq!(s.server_keys().unwrap().len(), 1);
}

#[test]
fn config_discovery_and_legacy_setting_names() {
    let site = Site::new();
    // From a subdirectory nothing is found unless pointed at.
    let sub = site.path("backups");
    let o = run_in(&sub, &["server-key", "list"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("pgseal init"));
    let cfg = site.path("pgseal.toml");
    ok(&run_in(
        &sub,
        &["--config", cfg.to_str().unwrap(), "server-key", "list"],
    ));
    ok(&with_passwords(bin())
        .current_dir(&sub)
        .env("PGSEAL_CONFIG", &cfg)
        .args(["server-key", "list"])
        .output()
        .unwrap());
    // Legacy names override the file.
    let o = with_passwords(bin())
        .current_dir(&site.dir)
        .env("BACKUP_RETENTION_DAYS", "30")
        .env("RSA_KEY_SIZE", "3072")
        .args(["config", "--json"])
        .output()
        .unwrap();
    ok(&o);
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (c["retention_days"].as_i64(), c["rsa_key_size"].as_i64()),
        (Some(30), Some(3072))
    );
    let o = with_passwords(bin())
        .current_dir(&site.dir)
        .env("BACKUP_ENCRYPTION_METHOD", "SYMMETRIC")
        .args(["config"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("HYBRID"));
    // A .env beside the config is read (and never overrides the real environment).
    std::fs::write(site.path(".env"), "BACKUP_RETENTION_DAYS=7\n").unwrap();
    let o = site.run(&["config", "--json"]);
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(c["retention_days"].as_i64(), Some(7));
}

#[test]
fn legacy_command_names_still_work() {
    let site = Site::new();
    ok(&site.run(&["user", "add", "bob"]));
    let o = site.run(&["generate_user_key", "bob", "--key-size", "2048"]);
    ok(&o);
    assert!(Path::new(&site.path("keys/users/bob.key.pem")).exists());
    let o = site.run(&["generate_server_keys", "--key-size", "2048"]);
    assert_eq!(code(&o), 2, "an active key exists: {}", stderr(&o));
}

/// The same story on a shared PostgreSQL store, with two processes racing for the server key.
#[test]
fn postgres_store_end_to_end_and_racing_generate() {
    let cluster = pgseal_testkit::TestCluster::shared();
    let db = cluster.create_database("cli").unwrap();
    let url = cluster.url(&db);
    let tmp = tempfile::tempdir().unwrap();
    // A bare store with no server key (commands other than `init` never create one).
    drop(Store::open(&StoreUrl::Postgres(url.clone())).unwrap());
    let run = |args: &[&str]| {
        let mut all = vec!["--store", url.as_str()];
        all.extend_from_slice(args);
        run_in(tmp.path(), &all)
    };
    ok(&run(&["user", "add", "system_backup"]));
    let key = tmp.path().join("sb.key.pem");
    ok(&run(&[
        "user-key",
        "generate",
        "system_backup",
        "--out",
        key.to_str().unwrap(),
        "--key-size",
        "2048",
    ]));

    let spawn = || {
        with_passwords(bin())
            .current_dir(tmp.path())
            .args([
                "--store",
                &url,
                "server-key",
                "generate",
                "--key-size",
                "2048",
            ])
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let results = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    assert_eq!(results.iter().filter(|o| o.status.success()).count(), 1);

    std::fs::write(tmp.path().join("in"), data(50_000)).unwrap();
    ok(&run(&[
        "encrypt",
        "in",
        "-o",
        "in.pgseal",
        "--user",
        "system_backup",
        "--sign-key",
        key.to_str().unwrap(),
    ]));
    ok(&run(&["decrypt", "in.pgseal", "-o", "back"]));
    assert_eq!(
        std::fs::read(tmp.path().join("back")).unwrap(),
        data(50_000)
    );

    let mut store = Store::open(&StoreUrl::Postgres(url.clone())).unwrap();
    let actions: Vec<(String, bool)> = store
        .audit_entries(100)
        .unwrap()
        .into_iter()
        .map(|e| (e.entry.action.into(), e.entry.success))
        .collect();
    for expected in [
        ("USER_ADD", true),
        ("KEY_GEN", true),
        ("KEY_GEN", false),
        ("ENCRYPT", true),
        ("DECRYPT", true),
    ] {
        assert!(
            actions.contains(&(expected.0.to_owned(), expected.1)),
            "{expected:?} not in {actions:?}"
        );
    }
}

const NEW_PASSWORD: &str = "the-new-server-password-2026";

fn with_env(site: &Site, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = with_passwords(bin());
    c.current_dir(&site.dir).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn server_key_rotation_keeps_every_old_backup_open() {
    let site = Site::new();
    let plain = data(100_000);
    site.write("a.dump", &plain);
    ok(&site.run(&[
        "encrypt",
        "a.dump",
        "-o",
        "a.pgseal",
        "--user",
        "system_backup",
    ]));
    let old_fp = serde_json::from_slice::<serde_json::Value>(
        &site.run(&["server-key", "list", "--json"]).stdout,
    )
    .unwrap()[0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();

    ok(&with_env(
        &site,
        &["server-key", "rotate", "--key-size", "2048"],
        &[("PGSEAL_NEW_SERVER_KEY_PASSWORD", NEW_PASSWORD)],
    ));
    let keys: serde_json::Value =
        serde_json::from_slice(&site.run(&["server-key", "list", "--json"]).stdout).unwrap();
    assert_eq!(keys[0]["status"], "rotated");
    assert_eq!(keys[1]["status"], "active");
    assert_eq!(keys[1]["rotated_from_id"], keys[0]["id"]);
    let new_fp = keys[1]["fingerprint"].as_str().unwrap().to_owned();
    let e = site.last_audit();
    assert_eq!(
        (e.entry.action.as_str(), e.entry.success),
        ("KEY_ROTATE", true)
    );
    assert_eq!(details(&e)["old_fingerprint"], old_fp.as_str());
    assert_eq!(details(&e)["new_fingerprint"], new_fp.as_str());

    // The old backup opens with the new password (its key was re-protected), not the old one.
    let new_pw = [("SERVER_KEY_PASSWORD", NEW_PASSWORD)];
    ok(&with_env(
        &site,
        &["decrypt", "a.pgseal", "-o", "a.out"],
        &new_pw,
    ));
    assert_eq!(std::fs::read(site.path("a.out")).unwrap(), plain);
    let o = site.run(&["decrypt", "a.pgseal", "-o", "a.out2"]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    // New backups go to the new key only.
    ok(&site.run(&[
        "encrypt",
        "a.dump",
        "-o",
        "b.pgseal",
        "--user",
        "system_backup",
    ]));
    let facts: serde_json::Value =
        serde_json::from_slice(&site.run(&["inspect", "--json", "b.pgseal"]).stdout).unwrap();
    assert_eq!(facts["recipients"], serde_json::json!([new_fp]));
    ok(&with_env(
        &site,
        &["decrypt", "b.pgseal", "-o", "b.out"],
        &new_pw,
    ));
}

#[test]
fn a_wrong_current_password_changes_nothing_and_is_audited() {
    let site = Site::new();
    let before = site.run(&["server-key", "list", "--json"]).stdout;
    let o = with_env(
        &site,
        &["server-key", "rotate", "--key-size", "2048"],
        &[
            ("SERVER_KEY_PASSWORD", "not-the-current-password"),
            ("PGSEAL_NEW_SERVER_KEY_PASSWORD", NEW_PASSWORD),
        ],
    );
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert_eq!(site.run(&["server-key", "list", "--json"]).stdout, before);
    let e = site.last_audit().entry;
    assert_eq!((e.action.as_str(), e.success), ("KEY_ROTATE", false));
    assert!(!e.details.contains("not-the-current-password"));
}

#[test]
fn concurrent_rotations_have_exactly_one_winner() {
    let site = Site::new();
    let spawn = || {
        with_passwords(bin())
            .current_dir(&site.dir)
            .env("PGSEAL_NEW_SERVER_KEY_PASSWORD", NEW_PASSWORD)
            .args(["server-key", "rotate", "--key-size", "2048"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let results = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    assert_eq!(
        results.iter().filter(|o| o.status.success()).count(),
        1,
        "exactly one rotation may win"
    );
    let keys: serde_json::Value =
        serde_json::from_slice(&site.run(&["server-key", "list", "--json"]).stdout).unwrap();
    let statuses: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["rotated", "active"]);
}

#[test]
fn user_key_rotation_needs_the_old_key_and_keeps_old_signatures_valid() {
    let site = Site::new();
    site.write("a.dump", &data(5000));
    ok(&site.run(&[
        "encrypt",
        "a.dump",
        "-o",
        "a.pgseal",
        "--user",
        "system_backup",
    ]));

    // Proof of possession fails with someone else's key.
    let other = site.path("other");
    ok(&site.run(&[
        "keygen",
        "--out",
        other.to_str().unwrap(),
        "--key-size",
        "2048",
    ]));
    let new_pw = [("PGSEAL_NEW_USER_KEY_PASSWORD", "the-new-user-password-01")];
    let o = with_env(
        &site,
        &[
            "user-key",
            "rotate",
            "system_backup",
            "--sign-key",
            "other.key.pem",
            "--key-size",
            "2048",
        ],
        &new_pw,
    );
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    // --force without an admin is refused.
    let o = with_env(
        &site,
        &[
            "user-key",
            "rotate",
            "system_backup",
            "--force",
            "--key-size",
            "2048",
        ],
        &new_pw,
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));

    ok(&with_env(
        &site,
        &["user-key", "rotate", "system_backup", "--key-size", "2048"],
        &new_pw,
    ));
    let keys: serde_json::Value = serde_json::from_slice(
        &site
            .run(&["user-key", "list", "system_backup", "--json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(keys[0]["status"], "retired");
    assert_eq!(keys[1]["status"], "active");
    assert!(
        common::listing(&site.path("keys/users"))
            .iter()
            .any(|f| f.contains(".retired-"))
    );
    // The old backup still verifies (its signer's key is retired, not gone) ...
    ok(&site.run(&["verify", "a.pgseal"]));
    // ... and new backups are signed with the new key, under its new password.
    let o = with_env(
        &site,
        &[
            "encrypt",
            "a.dump",
            "-o",
            "b.pgseal",
            "--user",
            "system_backup",
        ],
        &[("PGSEAL_USER_KEY_PASSWORD", "the-new-user-password-01")],
    );
    ok(&o);
    ok(&site.run(&["verify", "b.pgseal"]));

    // An admin may force a rotation without the old key; it is audited as forced.
    ok(&site.run(&["user", "add", "chief", "--role", "admin"]));
    let o = with_env(
        &site,
        &[
            "user-key",
            "rotate",
            "system_backup",
            "--force",
            "--key-size",
            "2048",
        ],
        &[
            ("PGSEAL_USER", "chief"),
            ("PGSEAL_NEW_USER_KEY_PASSWORD", "a-third-user-password-02"),
        ],
    );
    ok(&o);
    let e = site.last_audit();
    assert_eq!(
        (e.entry.action.as_str(), e.entry.success),
        ("KEY_ROTATE", true)
    );
    assert_eq!(details(&e)["forced"], true);
    ok(&site.run(&["verify", "a.pgseal"]));
    ok(&site.run(&["verify", "b.pgseal"]));
}

fn sqlite(site: &Site, sql: &str) {
    rusqlite::Connection::open(site.path("pgseal.db"))
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}

#[test]
fn audit_verify_catches_edits_and_a_log_cut_back_past_an_anchor() {
    let site = Site::new();
    site.write("a.dump", &data(1000));
    // This file's signed header anchors the log's head at the time.
    ok(&site.run(&[
        "encrypt",
        "a.dump",
        "-o",
        "a.pgseal",
        "--user",
        "system_backup",
    ]));
    let anchored = site.audit().last().unwrap().seq - 1;
    ok(&site.run(&["verify", "a.pgseal"]));
    let o = site.run(&["audit", "verify", "--anchor", "a.pgseal", "--json"]);
    ok(&o);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (
            report["valid"].as_bool(),
            report["anchors_checked"].as_i64()
        ),
        (Some(true), Some(1))
    );

    // Export: one JSON object per line, chained.
    let o = site.run(&["audit", "export", "--format", "jsonl"]);
    ok(&o);
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), site.audit().len());
    for pair in lines.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["entry_hash"]);
    }

    // Cutting the log back to before the anchored entry keeps the chain valid but is caught.
    sqlite(
        &site,
        &format!("DELETE FROM pgseal_audit_log WHERE seq >= {anchored}"),
    );
    let o = site.run(&["audit", "verify", "--anchor", "a.pgseal"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("cut back"), "{}", stderr(&o));

    // An edited entry is named.
    let site = Site::new();
    sqlite(
        &site,
        "UPDATE pgseal_audit_log SET os_user = 'someone-else' WHERE seq = 2",
    );
    let o = site.run(&["audit", "verify"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("entry 2") && stderr(&o).contains("edited"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn operations_fail_closed_when_their_audit_entry_cannot_be_written() {
    let site = Site::new();
    site.write("a.dump", &data(1000));
    ok(&site.run(&[
        "encrypt",
        "a.dump",
        "-o",
        "a.pgseal",
        "--user",
        "system_backup",
    ]));
    sqlite(
        &site,
        "CREATE TRIGGER audit_off BEFORE INSERT ON pgseal_audit_log BEGIN SELECT RAISE(FAIL, 'audit disabled'); END;",
    );
    // No entry, no plaintext.
    let o = site.run(&["decrypt", "a.pgseal", "-o", "a.out"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(!site.path("a.out").exists());
    // A key operation whose entry is lost is reported failed.
    let o = site.run(&["user", "add", "ghost"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("treat it as failed"), "{}", stderr(&o));
}

#[test]
fn a_stored_audit_hash_that_is_no_hash_is_named_not_anchored() {
    let site = Site::new();
    site.write("a.dump", &data(1000));
    let head = site.audit().last().unwrap().seq;
    sqlite(
        &site,
        &format!("UPDATE pgseal_audit_log SET entry_hash = 'x' WHERE seq = {head}"),
    );
    // A new file would anchor the log at a head that is no hash: refused, invalid input.
    let o = site.run(&[
        "encrypt",
        "a.dump",
        "-o",
        "a.pgseal",
        "--user",
        "system_backup",
    ]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("malformed hash at entry {head}")),
        "{}",
        stderr(&o)
    );
    assert!(!site.path("a.pgseal").exists());
    // Verifying names the entry as edited.
    let o = site.run(&["audit", "verify"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("entry {head}")) && stderr(&o).contains("edited"),
        "{}",
        stderr(&o)
    );

    let site = Site::new();
    sqlite(
        &site,
        "UPDATE pgseal_audit_log SET prev_hash = 'not a hash' WHERE seq = 2",
    );
    let o = site.run(&["audit", "verify"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("entry 2") && stderr(&o).contains("does not link"),
        "{}",
        stderr(&o)
    );
}
