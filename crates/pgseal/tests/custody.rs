//! The key-custody service end to end: `pgseal serve` started by the tests on loopback with
//! real TLS (a CA and certificate made here, pgseal-testkit's `TestPki`) or a Unix socket, and
//! clients that never hold the server password — decrypt, verify, restore --check and rewrap
//! through it; refusals (no role, an untrusted certificate, the service down, an audit log that
//! cannot be written) with clear errors and nothing committed.

mod common;

use std::process::{Command, Output, Stdio};

use common::{PASSWORD, Service, Site, code, ok, stderr, stdout};
use pgseal_store::Action;
use pgseal_testkit::{TestCluster, TestPki};

/// A client in the site that holds no server password: only the acting user's key password.
fn client(site: &Site) -> Command {
    let mut c = common::bin();
    c.current_dir(&site.dir)
        .env("PGSEAL_USER", "system_backup")
        .env("PGSEAL_USER_KEY_PASSWORD", PASSWORD);
    c
}

fn run(mut c: Command, args: &[&str]) -> Output {
    c.args(args).output().expect("spawn pgseal")
}

/// `args` then `--custody URL --custody-ca CA`.
fn through(service: &Service, pki: &TestPki, args: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    all.extend([
        "--custody".to_owned(),
        service.url.clone(),
        "--custody-ca".to_owned(),
        pki.ca.display().to_string(),
    ]);
    all
}

fn run_through(site: &Site, service: &Service, pki: &TestPki, args: &[&str]) -> Output {
    let all = through(service, pki, args);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    run(client(site), &refs)
}

fn sealed(site: &Site, name: &str, data: &[u8]) -> String {
    site.write(&format!("{name}.plain"), data);
    ok(&site.run(&[
        "encrypt",
        &format!("{name}.plain"),
        "-o",
        &format!("{name}.pgseal"),
        "--user",
        "system_backup",
    ]));
    format!("{name}.pgseal")
}

fn custody_entries(site: &Site, action: Action) -> Vec<(bool, Option<String>, serde_json::Value)> {
    site.audit()
        .into_iter()
        .filter(|e| e.entry.action == action)
        .map(|e| {
            (
                e.entry.success,
                e.entry.ip_address,
                serde_json::from_str(&e.entry.details).unwrap(),
            )
        })
        .collect()
}

/// The shared test cluster, and the environment that reaches it (libpq's variables and its
/// binaries).
fn cluster_env() -> (
    &'static TestCluster,
    Vec<(std::ffi::OsString, std::ffi::OsString)>,
) {
    let cluster = TestCluster::shared();
    let env = common::cluster_env(cluster);
    (cluster, env)
}

#[test]
fn a_file_decrypts_verifies_and_a_backup_restore_checks_through_the_service_with_no_password() {
    let (cluster, env) = cluster_env();
    let site = Site::with_env(env.clone());
    let pki = TestPki::new("custody").unwrap();
    let data = common::data(300_000);
    let file = sealed(&site, "a", &data);
    let service = Service::tls(&site, &pki);
    assert!(
        service.url.starts_with("https://127.0.0.1:"),
        "{}",
        service.url
    );

    // Without the restore role: refused (exit 4), and the refusal is audited.
    let o = run_through(&site, &service, &pki, &["decrypt", &file, "-o", "a.out"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("--add restore"), "{}", stderr(&o));
    assert!(!site.path("a.out").exists());

    ok(&site.run(&["user", "role", "system_backup", "--add", "restore"]));
    let o = run_through(&site, &service, &pki, &["decrypt", &file, "-o", "a.out"]);
    ok(&o);
    assert_eq!(std::fs::read(site.path("a.out")).unwrap(), data);
    ok(&run_through(
        &site,
        &service,
        &pki,
        &["verify", &file, "--decrypt-check"],
    ));
    // --custody alone asks the service to prove the file opens.
    let o = run_through(&site, &service, &pki, &["verify", &file, "--json"]);
    ok(&o);
    let verified: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(verified["checks"]["decrypts"], true, "{verified}");

    // A real backup, restore-checked through the service.
    let db = cluster.create_database("custody").unwrap();
    cluster
        .psql(
            &db,
            "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 500) g;",
        )
        .unwrap();
    let o = site.run(&["backup", &db, "--user", "system_backup", "--json"]);
    ok(&o);
    let backup: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let path = backup["path"].as_str().unwrap();
    let mut c = client(&site);
    c.envs(env.iter().map(|(k, v)| (k, v)));
    let all = through(&service, &pki, &["restore", path, "--check", "--json"]);
    let o = c.args(&all).output().unwrap();
    ok(&o);
    let check: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(check["tables"][0]["rows"], 500, "{check}");

    let unwraps = custody_entries(&site, Action::CustodyUnwrap);
    assert_eq!(
        unwraps.iter().map(|(ok, ..)| *ok).collect::<Vec<_>>(),
        [false, true, true, true, true]
    );
    assert!(
        unwraps
            .iter()
            .all(|(_, ip, _)| ip.as_deref() == Some("127.0.0.1"))
    );
    assert_eq!(unwraps[0].2["refused"], "forbidden");
    assert_eq!(unwraps[1].2["user"], "system_backup");
    assert_eq!(custody_entries(&site, Action::CustodyStart).len(), 1);
}

#[test]
fn an_untrusted_certificate_is_refused_and_the_service_never_asked() {
    let site = Site::new();
    let pki = TestPki::new("custody").unwrap();
    let other = TestPki::new("another").unwrap();
    ok(&site.run(&["user", "role", "system_backup", "--add", "restore"]));
    let file = sealed(&site, "b", b"secret rows");
    let service = Service::tls(&site, &pki);
    let o = run_through(&site, &service, &other, &["decrypt", &file, "-o", "b.out"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not trusted") || stderr(&o).contains("certificate"),
        "{}",
        stderr(&o)
    );
    assert!(!site.path("b.out").exists());
    assert!(custody_entries(&site, Action::CustodyUnwrap).is_empty());
    // A URL that is not one the service is reached at is a usage error.
    let o = run(
        client(&site),
        &[
            "decrypt",
            &file,
            "-o",
            "b.out",
            "--custody",
            "http://127.0.0.1:1",
        ],
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}

#[test]
fn a_service_that_is_down_fails_the_restore_clearly_and_nothing_is_created() {
    let (cluster, env) = cluster_env();
    let site = Site::with_env(env.clone());
    ok(&site.run(&["user", "role", "system_backup", "--add", "restore"]));
    let db = cluster.create_database("custodydown").unwrap();
    cluster.psql(&db, "CREATE TABLE t (x int);").unwrap();
    let o = site.run(&["backup", &db, "--user", "system_backup", "--json"]);
    ok(&o);
    let backup: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let pki = TestPki::new("custody").unwrap();
    let mut service = Service::tls(&site, &pki);
    let target = format!("{db}_restored");
    let exists = |name: &str| {
        cluster
            .psql(
                "postgres",
                &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}';"),
            )
            .unwrap()
            .trim()
            .to_owned()
    };

    // Killed while the restore waits for its answer: the service stopped (SIGSTOP) so the
    // request is in its hands, then SIGKILLed.
    let pid = nix::unistd::Pid::from_raw(service.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let mid = format!("{db}_mid");
    let all = through(
        &service,
        &pki,
        &[
            "restore",
            backup["path"].as_str().unwrap(),
            "--target-db",
            &mid,
            "--create",
        ],
    );
    let mut c = client(&site);
    c.envs(env.iter().map(|(k, v)| (k, v)))
        .args(&all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let waiting = c.spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    service.kill();
    let o = waiting.wait_with_output().unwrap();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("custody service"), "{}", stderr(&o));
    assert_eq!(exists(&mid), "0", "nothing created");

    // Down before the restore starts: the same.
    let all = through(
        &service,
        &pki,
        &[
            "restore",
            backup["path"].as_str().unwrap(),
            "--target-db",
            &target,
            "--create",
        ],
    );
    let mut c = client(&site);
    c.envs(env.iter().map(|(k, v)| (k, v)));
    let o = c.args(&all).output().unwrap();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("custody service"), "{}", stderr(&o));
    assert_eq!(exists(&target), "0", "nothing created");
}

#[test]
fn when_the_audit_log_cannot_be_written_the_service_answers_nothing() {
    let site = Site::new();
    ok(&site.run(&["user", "role", "system_backup", "--add", "restore"]));
    let file = sealed(&site, "c", b"rows");
    let pki = TestPki::new("custody").unwrap();
    let service = Service::tls(&site, &pki);
    // The store's write-ahead log made immutable: even root cannot append to it.
    let wal = site.path("pgseal.db-wal");
    assert!(wal.exists(), "the service keeps the store open in WAL mode");
    let status = Command::new("chattr").arg("+i").arg(&wal).status().unwrap();
    assert!(status.success());
    struct Mutable(std::path::PathBuf);
    impl Drop for Mutable {
        fn drop(&mut self) {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        }
    }
    let guard = Mutable(wal);
    let o = run_through(&site, &service, &pki, &["decrypt", &file, "-o", "c.out"]);
    drop(guard);
    assert_ne!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("audit"), "{}", stderr(&o));
    assert!(!site.path("c.out").exists());
}

#[test]
fn rewrap_through_the_service_after_a_rotation_and_a_unix_socket() {
    let site = Site::new();
    ok(&site.run(&[
        "user",
        "role",
        "system_backup",
        "--add",
        "restore",
        "--add",
        "rewrap",
    ]));
    let file = sealed(&site, "d", b"rows to keep");
    let socket = site.path("custody.sock");
    let service = Service::start(&site, &["--unix", socket.to_str().unwrap()]);
    assert!(service.url.starts_with("unix://"), "{}", service.url);
    // An administrator rotates the server key (with the password); the service rewraps to the
    // new key's public half, the file key never leaving it.
    ok(&site
        .cmd()
        .env("PGSEAL_NEW_SERVER_KEY_PASSWORD", PASSWORD)
        .args(["server-key", "rotate"])
        .output()
        .unwrap());
    let o = run(
        client(&site),
        &["rewrap", &file, "--custody", &service.url, "--json"],
    );
    ok(&o);
    assert!(stdout(&o).contains("rewrapped"), "{}", stdout(&o));
    let o = site.run(&["inspect", &file, "--json"]);
    let inspected: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(inspected["superseded_slot"].is_null(), "{inspected}");
    drop(service);
    // Restarted, it holds the new key and opens the rewrapped file.
    let service = Service::start(&site, &["--unix", socket.to_str().unwrap()]);
    let o = run(
        client(&site),
        &["decrypt", &file, "-o", "d.out", "--custody", &service.url],
    );
    ok(&o);
    assert_eq!(std::fs::read(site.path("d.out")).unwrap(), b"rows to keep");
    let unwraps = custody_entries(&site, Action::CustodyUnwrap);
    assert!(
        unwraps
            .last()
            .unwrap()
            .1
            .as_deref()
            .unwrap()
            .starts_with("unix:uid=")
    );
    assert_eq!(custody_entries(&site, Action::CustodyRewrap).len(), 1);
}

#[test]
fn key_administration_through_the_service_needs_admin_and_a_fresh_second_factor() {
    let site = Site::new();
    ok(&site.run(&["user", "role", "system_backup", "--add", "rewrap"]));
    let file = sealed(&site, "e", b"rows");
    let socket = site.path("admin.sock");
    let service = Service::start(&site, &["--unix", socket.to_str().unwrap()]);
    let admin = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--custody", &service.url]);
        run(client(&site), &all)
    };
    let old_key = {
        let o = site.run(&["server-key", "list", "--json"]);
        let keys: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        keys[0]["fingerprint"].as_str().unwrap().to_owned()
    };

    let o = admin(&["server-key", "rotate"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("--add admin"), "{}", stderr(&o));
    ok(&site.run(&["user", "role", "system_backup", "--add", "admin"]));
    let o = admin(&["server-key", "rotate"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("second-factor code"), "{}", stderr(&o));

    // Enrolment prints the authenticator's URI once (no QR code: not a terminal).
    let o = site.run(&["user", "totp", "enroll", "system_backup"]);
    ok(&o);
    let uri = stdout(&o)
        .lines()
        .find(|l| l.starts_with("otpauth://"))
        .unwrap()
        .to_owned();
    let authenticator = totp_rs::TOTP::from_url(&uri).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code_now = authenticator.generate(now);
    let code_next = authenticator.generate(now + 30);

    let o = admin(&["server-key", "rotate", "--totp", &code_now, "--json"]);
    ok(&o);
    let rotated: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(rotated["old"], old_key.as_str());
    let new_key = rotated["new"].as_str().unwrap().to_owned();
    // The code is spent: the same one again is refused.
    let o = admin(&["server-key", "retire", &old_key, "--totp", &code_now]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("used already"), "{}", stderr(&o));

    // The service holds the new key at once: a rewrap moves the file to it, then the old key
    // can be retired with the next code.
    ok(&admin(&["rewrap", &file]));
    let o = admin(&["server-key", "retire", &old_key, "--totp", &code_next]);
    ok(&o);
    let o = site.run(&["server-key", "list", "--json"]);
    let keys: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let status = |fp: &str| {
        keys.as_array()
            .unwrap()
            .iter()
            .find(|k| k["fingerprint"] == fp)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status(&old_key), "retired");
    assert_eq!(status(&new_key), "active");
    let admin_entries = custody_entries(&site, Action::CustodyAdmin);
    assert_eq!(
        admin_entries.iter().map(|(ok, ..)| *ok).collect::<Vec<_>>(),
        [false, false, true, false, true]
    );
    let actions: Vec<Action> = site.audit().into_iter().map(|e| e.entry.action).collect();
    assert!(actions.contains(&Action::KeyRotate) && actions.contains(&Action::KeyRetire));
    assert!(actions.contains(&Action::UserTotp));
}

#[test]
fn the_service_keeps_its_audit_head_so_a_log_cut_back_past_every_backup_is_found() {
    let site = Site::new();
    ok(&site.run(&[
        "user",
        "role",
        "system_backup",
        "--add",
        "restore",
        "--add",
        "auditor",
    ]));
    let file = sealed(&site, "f", b"rows");
    let socket = site.path("audit.sock");
    let service = Service::start(&site, &["--unix", socket.to_str().unwrap()]);
    ok(&run(
        client(&site),
        &["decrypt", &file, "-o", "f.out", "--custody", &service.url],
    ));
    // Asked over the service (auditor role): its head checks out against the log.
    let o = run(
        client(&site),
        &["audit", "verify", "--custody", &service.url, "--json"],
    );
    ok(&o);
    let verified: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(
        verified["custody_heads"].as_array().unwrap().len(),
        1,
        "{verified}"
    );
    let mut service = service;
    assert!(service.stop().success(), "SIGTERM is a clean shutdown");
    assert!(!socket.exists(), "the socket is removed");

    let head_file = site.path("custody-head.json");
    let head: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&head_file).unwrap()).unwrap();
    let seq = head["seq"].as_i64().unwrap();
    ok(&site.run(&[
        "audit",
        "verify",
        "--custody-head",
        head_file.to_str().unwrap(),
    ]));

    // Someone with the store cuts the log back to before the service's last entry: the chain
    // that is left is intact, and no backup anchors anything after the cut...
    let db = rusqlite::Connection::open(site.path("pgseal.db")).unwrap();
    db.execute("DELETE FROM pgseal_audit_log WHERE seq >= ?1", [seq])
        .unwrap();
    drop(db);
    ok(&site.run(&["audit", "verify"]));
    // ...but the service's head is gone from it.
    let o = site.run(&[
        "audit",
        "verify",
        "--custody-head",
        head_file.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 4, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("cut back") || stderr(&o).contains("cut back"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    // And the service will not start over such a log.
    let o = site
        .direct()
        .args(["serve", "--unix", socket.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("cut back"), "{}", stderr(&o));
}

/// The user's signing key, unlocked (the site's `system_backup`).
fn user_key(site: &Site) -> pgseal_core::PrivateKey {
    let pem = std::fs::read_to_string(site.path("keys/users/system_backup.key.pem")).unwrap();
    pgseal_core::PrivateKey::from_pem(&pem, "user key", || {
        Ok(pgseal_core::Password::new(PASSWORD.into()))
    })
    .unwrap()
}

#[test]
fn forged_expired_replayed_and_unknown_requests_over_tls_are_refused_401_and_audited() {
    use pgseal_custody::auth::Credentials;
    use pgseal_custody::transport::{Client, Endpoint};

    let site = Site::new();
    ok(&site.run(&["user", "role", "system_backup", "--add", "restore"]));
    let pki = TestPki::new("custody").unwrap();
    let service = Service::tls(&site, &pki);
    let client = Client::new(Endpoint::parse(&service.url, Some(&pki.ca)).unwrap()).unwrap();
    let key = user_key(&site);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let path = "/v1/public-keys";
    let send = |c: &Credentials| {
        let headers: Vec<(&str, String)> = c.headers();
        let (status, body) = client.send("GET", path, &headers, b"").unwrap();
        let kind = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["kind"].as_str().map(str::to_owned));
        (status, kind)
    };
    let good = Credentials::sign(&key, "system_backup", "GET", path, b"", None, now).unwrap();
    assert_eq!(send(&good).0, 200);
    let unauthenticated = (401, Some("unauthenticated".to_owned()));
    assert_eq!(send(&good), unauthenticated, "replayed");
    let mut forged = Credentials::sign(&key, "system_backup", "GET", path, b"", None, now).unwrap();
    forged.signature[7] ^= 1;
    assert_eq!(send(&forged), unauthenticated, "wrong signature");
    let expired =
        Credentials::sign(&key, "system_backup", "GET", path, b"", None, now - 600_000).unwrap();
    assert_eq!(send(&expired), unauthenticated, "expired");
    let unknown = Credentials::sign(&key, "nobody", "GET", path, b"", None, now).unwrap();
    assert_eq!(send(&unknown), unauthenticated, "unknown user");
    // No credentials at all, and the health check that needs none.
    assert_eq!(client.send("GET", path, &[], b"").unwrap().0, 401);
    assert_eq!(client.send("GET", "/v1/health", &[], b"").unwrap().0, 200);

    let entries = custody_entries(&site, Action::CustodyKeys);
    assert_eq!(
        entries.iter().map(|(ok, ..)| *ok).collect::<Vec<_>>(),
        [true, false, false, false, false, false]
    );
    assert!(
        entries
            .iter()
            .all(|(_, ip, _)| ip.as_deref() == Some("127.0.0.1"))
    );
    assert!(
        entries[1..]
            .iter()
            .all(|(_, _, d)| d["refused"] == "unauthenticated")
    );
    // The metrics count what was answered, by route and status.
    let (status, metrics) = client.send("GET", "/metrics", &[], b"").unwrap();
    assert_eq!(status, 200);
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("pgseal_custody_requests_total")
                && l.contains("/v1/public-keys")
                && l.contains("401")),
        "{metrics}"
    );
}
