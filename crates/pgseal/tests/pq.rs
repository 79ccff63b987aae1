//! Post-quantum (hybrid RSA-OAEP + ML-KEM-768) keys through the CLI: standalone key files
//! (`keygen --pq`, `encrypt --recipient`), a site whose server keys are hybrid (`init --pq`,
//! `server-key rotate --pq`), rewraps that keep a hybrid file hybrid or upgrade an RSA-only one,
//! a real backup and restore, and the custody service opening a hybrid backup.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use common::{PASSWORD, Service, Site, code, ok, stderr, stdout};
use pgseal_store::Action;
use pgseal_testkit::TestCluster;
use serde_json::Value;

fn json(o: &Output) -> Value {
    ok(o);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

fn inspect(site: &Site, file: &str) -> Value {
    json(&site.run(&["inspect", "--json", file]))
}

fn rotate(site: &Site, extra: &[&str]) -> Value {
    let mut args = vec!["server-key", "rotate", "--json"];
    args.extend_from_slice(extra);
    json(
        &site
            .cmd()
            .env("PGSEAL_NEW_SERVER_KEY_PASSWORD", PASSWORD)
            .args(&args)
            .output()
            .unwrap(),
    )
}

fn seal(site: &Site, name: &str, data: &[u8]) -> String {
    site.write(&format!("{name}.plain"), data);
    let file = format!("{name}.pgseal");
    ok(&site.run(&[
        "encrypt",
        &format!("{name}.plain"),
        "-o",
        &file,
        "--user",
        "system_backup",
    ]));
    file
}

fn opens(site: &Site, file: &str, data: &[u8]) {
    let out = format!("{file}.out");
    ok(&site.run(&["decrypt", file, "-o", &out, "--force"]));
    assert_eq!(std::fs::read(site.path(&out)).unwrap(), data);
}

#[test]
fn standalone_hybrid_key_files_seal_open_and_say_what_they_are() {
    let site = Site::new();
    let made = json(&site.run(&[
        "keygen",
        "--out",
        "dr",
        "--key-size",
        "2048",
        "--pq",
        "--json",
    ]));
    let pq = made["pq_fingerprint"].as_str().unwrap().to_owned();
    assert!(pq.starts_with("SHA256:"), "{made}");
    let private = std::fs::read_to_string(site.path("dr.key.pem")).unwrap();
    assert_eq!(
        private
            .matches("-----BEGIN ENCRYPTED PRIVATE KEY-----")
            .count(),
        2
    );
    let mode = std::fs::metadata(site.path("dr.key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    for file in ["dr.key.pem", "dr.pub.pem"] {
        let info = json(&site.run(&["key", "info", file, "--json"]));
        assert_eq!(info["pq_fingerprint"], pq.as_str(), "{file}: {info}");
        assert_eq!(info["fingerprint"], made["fingerprint"], "{file}: {info}");
        assert_eq!(info["algorithm"], "RSA+ML-KEM-768");
    }

    let data = common::data(300_000);
    site.write("x.plain", &data);
    ok(&site.run(&[
        "encrypt",
        "x.plain",
        "-o",
        "x.pgseal",
        "--recipient",
        "dr.pub.pem",
        "--user",
        "system_backup",
    ]));
    let facts = inspect(&site, "x.pgseal");
    assert_eq!(facts["hybrid_recipients"], true, "{facts}");
    assert_eq!(facts["post_quantum"], "signed");
    assert_eq!(facts["recipient_stanzas"][0]["kind"], "hybrid");
    assert_eq!(facts["recipient_stanzas"][0]["pq_fingerprint"], pq.as_str());
    let text = stdout(&site.run(&["inspect", "x.pgseal"]));
    assert!(
        text.contains(&format!("+ ML-KEM-768 {pq} (hybrid)")),
        "{text}"
    );

    ok(&site.run(&[
        "decrypt",
        "x.pgseal",
        "-o",
        "x.out",
        "--identity",
        "dr.key.pem",
    ]));
    assert_eq!(std::fs::read(site.path("x.out")).unwrap(), data);
    let o = site.run(&["verify", "x.pgseal", "--identity", "dr.key.pem"]);
    ok(&o);
    assert!(
        stdout(&o).contains("post-quantum (signed)"),
        "{}",
        stdout(&o)
    );

    // The RSA block alone cannot open it: exit 5 (key), the missing half named, nothing written.
    let rsa_only = &private[..private.find("-----END").unwrap() + 36];
    site.write("rsa-only.key.pem", rsa_only.as_bytes());
    let o = site.run(&[
        "decrypt",
        "x.pgseal",
        "-o",
        "y.out",
        "--identity",
        "rsa-only.key.pem",
    ]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("no ML-KEM-768 half"), "{}", stderr(&o));
    assert!(!site.path("y.out").exists());

    // A hybrid and an RSA-only recipient together: refused, nothing written.
    ok(&site.run(&["keygen", "--out", "plain", "--key-size", "2048"]));
    let o = site.run(&[
        "encrypt",
        "x.plain",
        "-o",
        "z.pgseal",
        "--recipient",
        "dr.pub.pem",
        "--recipient",
        "plain.pub.pem",
        "--user",
        "system_backup",
    ]);
    assert_ne!(code(&o), 0);
    assert!(
        stderr(&o).contains("only as strong as RSA"),
        "{}",
        stderr(&o)
    );
    assert!(!site.path("z.pgseal").exists());

    // The legacy format can only wrap to RSA: a hybrid recipient is refused, not downgraded.
    let o = site.run(&[
        "encrypt",
        "x.plain",
        "-o",
        "v1.bin",
        "--format",
        "v1",
        "--user-id",
        "1",
        "--recipient",
        "dr.pub.pem",
        "--user",
        "system_backup",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("post-quantum"), "{}", stderr(&o));
    assert!(!site.path("v1.bin").exists());
}

#[test]
fn init_pq_makes_every_server_key_hybrid_and_says_so_in_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pq-site");
    let o = common::run(&[
        "init",
        "--dir",
        dir.to_str().unwrap(),
        "--key-size",
        "2048",
        "--pq",
        "--json",
    ]);
    let made = json(&o);
    assert!(
        made["pq_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    let config = std::fs::read_to_string(dir.join("pgseal.toml")).unwrap();
    assert!(config.contains("\npq = true "), "{config}");
    // A rotation with no flag follows the config.
    let o = common::with_passwords(common::bin())
        .current_dir(&dir)
        .env("PGSEAL_NEW_SERVER_KEY_PASSWORD", PASSWORD)
        .args(["server-key", "rotate", "--json"])
        .output()
        .unwrap();
    let rotated = json(&o);
    assert!(rotated["new"]["pq_fingerprint"].is_string(), "{rotated}");
    let o = common::run_in(&dir, &["server-key", "list"]);
    ok(&o);
    assert_eq!(
        stdout(&o).matches("+ ML-KEM-768 SHA256:").count(),
        2,
        "{}",
        stdout(&o)
    );
}

#[test]
fn hybrid_files_stay_hybrid_across_rotations_and_rsa_files_are_upgraded() {
    let site = Site::new();
    let old_rsa = seal(&site, "before", b"sealed for RSA only");
    assert_eq!(inspect(&site, &old_rsa)["post_quantum"], "no");

    let rotated = rotate(&site, &["--pq"]);
    let pq = rotated["new"]["pq_fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let entry = site
        .audit()
        .into_iter()
        .rfind(|e| e.entry.action == Action::KeyRotate)
        .unwrap();
    let details: Value = serde_json::from_str(&entry.entry.details).unwrap();
    assert_eq!(details["new_pq_fingerprint"], pq.as_str());

    // New files are hybrid, to the active key.
    let hybrid = seal(&site, "after", b"sealed post-quantum");
    assert_eq!(inspect(&site, &hybrid)["post_quantum"], "signed");
    opens(&site, &hybrid, b"sealed post-quantum");

    // The RSA-only file rewraps to the hybrid key: upgraded (its header cannot change).
    ok(&site.run(&["rewrap", &old_rsa]));
    let facts = inspect(&site, &old_rsa);
    assert_eq!(facts["post_quantum"], "upgraded", "{facts}");
    assert_eq!(facts["hybrid_recipients"], false);
    opens(&site, &old_rsa, b"sealed for RSA only");

    // A rotation to an RSA-only key: the hybrid file refuses to be rewrapped to it (the run
    // fails as any rewrap run with a failed file does, exit 1; the file's reason is named and
    // audited), is left as it was, and still opens with the old hybrid key.
    rotate(&site, &[]);
    let before = std::fs::read(site.path(&hybrid)).unwrap();
    let o = site.run(&["rewrap", &hybrid]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(said.contains("has no ML-KEM-768 half"), "{said}");
    assert_eq!(std::fs::read(site.path(&hybrid)).unwrap(), before);
    let last = site.last_audit();
    assert_eq!(last.entry.action, Action::Rewrap);
    assert!(!last.entry.success);
    opens(&site, &hybrid, b"sealed post-quantum");

    // Back to a hybrid key: the rewrap goes through and the file stays signed-hybrid.
    rotate(&site, &["--pq"]);
    ok(&site.run(&["rewrap", &hybrid]));
    let facts = inspect(&site, &hybrid);
    assert_eq!(facts["post_quantum"], "signed");
    assert!(facts["superseded_slot"].is_null(), "{facts}");
    opens(&site, &hybrid, b"sealed post-quantum");
}

#[test]
fn a_backup_for_a_hybrid_server_key_restores_verifies_and_keeps_its_key_from_retiring() {
    let cluster = TestCluster::shared();
    let site = Site::with_env(common::cluster_env(cluster));
    let first = json(&site.run(&["server-key", "list", "--json"]))[0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let rotated = rotate(&site, &["--pq"]);
    let hybrid_key = rotated["new"]["fingerprint"].as_str().unwrap().to_owned();
    let db = cluster.create_database("pqsource").unwrap();
    cluster
        .psql(
            &db,
            "CREATE TABLE t (id int PRIMARY KEY, v text); \
             INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 3000) g;",
        )
        .unwrap();
    let record = json(&site.run(&["backup", &db, "--user", "system_backup", "--json"]));
    let path = record["path"].as_str().unwrap().to_owned();
    assert_eq!(inspect(&site, &path)["post_quantum"], "signed");
    ok(&site.run(&["verify", &path, "--decrypt-check"]));
    let copy = format!("{db}_copy");
    ok(&site.run(&["restore", &path, "--target-db", &copy, "--create"]));
    let count = |d: &str| {
        cluster
            .psql(d, "SELECT count(*) || ':' || sum(id) FROM t")
            .unwrap()
    };
    assert_eq!(count(&copy), count(&db));

    // The hybrid key is still needed by the catalogued backup: retiring it is refused. The
    // first (RSA-only) key holds nothing and retires.
    rotate(&site, &["--pq"]);
    let o = site.run(&["server-key", "retire", &hybrid_key]);
    assert_ne!(code(&o), 0, "{}", stdout(&o));
    assert!(stderr(&o).contains("still"), "{}", stderr(&o));
    ok(&site.run(&["server-key", "retire", &first]));
    // After a rewrap to the newest hybrid key, the old one can go.
    ok(&site.run(&["rewrap", "--all"]));
    ok(&site.run(&["server-key", "retire", &hybrid_key]));
    ok(&site.run(&["restore", "--check", &path]));
}

#[test]
fn the_custody_service_opens_a_hybrid_backup_without_the_password() {
    let site = Site::new();
    rotate(&site, &["--pq"]);
    ok(&site.run(&["user", "role", "system_backup", "--add", "restore"]));
    let file = seal(&site, "c", b"post-quantum rows");
    assert_eq!(inspect(&site, &file)["post_quantum"], "signed");
    let socket = site.path("custody.sock");
    let service = Service::start(&site, &["--unix", socket.to_str().unwrap()]);
    let o = common::bin()
        .current_dir(&site.dir)
        .env("PGSEAL_USER", "system_backup")
        .env("PGSEAL_USER_KEY_PASSWORD", PASSWORD)
        .args(["decrypt", &file, "-o", "c.out", "--custody", &service.url])
        .output()
        .unwrap();
    ok(&o);
    assert_eq!(
        std::fs::read(site.path("c.out")).unwrap(),
        b"post-quantum rows"
    );
    assert!(
        site.audit()
            .iter()
            .any(|e| e.entry.action == Action::CustodyUnwrap && e.entry.success)
    );
}
