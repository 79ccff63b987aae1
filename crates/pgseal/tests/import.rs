//! `import-django` against a database with the legacy system's schema, filled with keys and a
//! legacy backup made by the independent Python reference: users keep their ids, keys and audit
//! rows come over, legacy backups then decrypt, verify and restore through the store alone, and
//! a re-run changes nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{bin, code, ok, stderr, stdout};
use pgseal_store::{Store, StoreUrl};
use pgseal_testkit::TestCluster;

const LEGACY_SERVER_PW: &str = "legacy-server-key-password-01";
const LEGACY_USER_PW: &str = "legacy-user-key-password-0001";

const DJANGO_SCHEMA: &str = r#"
CREATE TABLE auth_user (
    id serial PRIMARY KEY, password varchar(128) NOT NULL DEFAULT '', last_login timestamptz,
    is_superuser boolean NOT NULL, username varchar(150) NOT NULL UNIQUE,
    first_name varchar(150) NOT NULL DEFAULT '', last_name varchar(150) NOT NULL DEFAULT '',
    email varchar(254) NOT NULL DEFAULT '', is_staff boolean NOT NULL DEFAULT false,
    is_active boolean NOT NULL DEFAULT true, date_joined timestamptz NOT NULL DEFAULT now(),
    public_key_pem text NULL, key_generated_at timestamp NULL, key_last_rotated timestamp NULL
);
CREATE TABLE tenancy_server_key (
    id SERIAL PRIMARY KEY, private_key_pem TEXT NOT NULL, public_key_pem TEXT NOT NULL,
    key_size INTEGER DEFAULT 4096, fingerprint VARCHAR(100) NOT NULL, is_active BOOLEAN DEFAULT TRUE,
    created_at TIMESTAMP DEFAULT NOW(), rotated_from_id INTEGER REFERENCES tenancy_server_key(id),
    notes TEXT
);
CREATE TABLE tenancy_encryption_audit_log (
    id SERIAL PRIMARY KEY, action VARCHAR(20) NOT NULL, user_id INTEGER REFERENCES auth_user(id),
    backup_creator_id INTEGER REFERENCES auth_user(id), backup_file VARCHAR(500),
    success BOOLEAN DEFAULT TRUE, signature_valid BOOLEAN NULL, timestamp TIMESTAMP DEFAULT NOW(),
    ip_address INET NULL, details JSONB DEFAULT '{}'
);
"#;

fn openssl(args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// An RSA key pair as the legacy system kept them: PKCS#8 encrypted with PBKDF2 (2,048
/// iterations) and AES-256-CBC, and an SPKI public key.
fn legacy_key(dir: &Path, name: &str, password: &str) -> (PathBuf, PathBuf, String) {
    let plain = dir.join(format!("{name}.plain.pem"));
    let key = dir.join(format!("{name}.key.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        plain.to_str().unwrap(),
    ]);
    let pass = format!("pass:{password}");
    openssl(&[
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-v2prf",
        "hmacWithSHA256",
        "-iter",
        "2048",
        "-in",
        plain.to_str().unwrap(),
        "-out",
        key.to_str().unwrap(),
        "-passout",
        &pass,
    ]);
    openssl(&[
        "pkey",
        "-in",
        plain.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    std::fs::remove_file(&plain).unwrap();
    let pem = std::fs::read_to_string(&public).unwrap();
    (key, public, pem)
}

fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn checksums(cluster: &TestCluster, db: &str) -> String {
    cluster
        .psql(
            db,
            "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM items t;",
        )
        .unwrap()
}

#[test]
fn import_then_open_legacy_backups_through_the_store() {
    let cluster = TestCluster::shared();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // The legacy system's database, with two server keys (one rotated away) and two users.
    let django = cluster.create_database("django").unwrap();
    cluster.psql(&django, DJANGO_SCHEMA).unwrap();
    let (old_key, _, old_pub) = legacy_key(dir, "server_old", LEGACY_SERVER_PW);
    let (server_key, server_pub_file, server_pub) = legacy_key(dir, "server", LEGACY_SERVER_PW);
    let (user_key, _, user_pub) = legacy_key(dir, "system_backup", LEGACY_USER_PW);
    let legacy_fp = |pem: &str| pgseal_core::LegacyFingerprint::of_pem_text(pem).to_string();
    let sql = format!(
        "INSERT INTO auth_user (id, is_superuser, username, public_key_pem, key_generated_at)
           VALUES (3, true, 'admin', NULL, NULL), (7, false, 'system_backup', {up}, now());
         SELECT setval('auth_user_id_seq', 7);
         INSERT INTO tenancy_server_key (id, private_key_pem, public_key_pem, key_size, fingerprint, is_active, notes)
           VALUES (1, {ok}, {opub}, 2048, {ofp}, false, 'first'), (2, {sk}, {spub}, 2048, {sfp}, true, NULL);
         UPDATE tenancy_server_key SET rotated_from_id = 1 WHERE id = 2;
         INSERT INTO tenancy_encryption_audit_log (action, user_id, backup_creator_id, backup_file, success, signature_valid, ip_address, details)
           VALUES ('KEY_GEN', 3, NULL, NULL, true, NULL, '10.1.2.3', '{{\"key\": \"server\"}}'),
                  ('ENCRYPT', 7, 7, 'db_management_20251217_170240_encrypted.backup', true, true, '10.1.2.3', '{{}}'),
                  ('DECRYPT', 7, 7, 'db_management_20251217_170240_encrypted.backup', false, false, NULL, '{{\"error\": \"bad\"}}');",
        up = sql_text(&user_pub),
        ok = sql_text(&std::fs::read_to_string(&old_key).unwrap()),
        opub = sql_text(&old_pub),
        ofp = sql_text(&legacy_fp(&old_pub)),
        sk = sql_text(&std::fs::read_to_string(&server_key).unwrap()),
        spub = sql_text(&server_pub),
        sfp = sql_text(&legacy_fp(&server_pub)),
    );
    cluster.psql(&django, &sql).unwrap();

    // A legacy backup of a real database, made by the Python reference.
    let source = cluster.create_database("legacysrc").unwrap();
    cluster
        .psql(&source, "CREATE TABLE items (id int PRIMARY KEY, label text); INSERT INTO items SELECT g, 'ítem ' || g FROM generate_series(1, 500) g;")
        .unwrap();
    let archive = dir.join("src.dump");
    let mut dump = Command::new(cluster.bin_dir().join("pg_dump"));
    for (k, v) in cluster.env() {
        dump.env(k, v);
    }
    assert!(
        dump.args(["-Fc", "-f"])
            .arg(&archive)
            .arg(&source)
            .status()
            .unwrap()
            .success()
    );
    let legacy_file = dir.join("db_legacy_encrypted.backup");
    let reference =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/pgseal_ref.py");
    let o = Command::new("python3")
        .arg(&reference)
        .args(["make-legacy-hybrid"])
        .arg(&archive)
        .arg(&legacy_file)
        .arg("--server-pub")
        .arg(&server_pub_file)
        .arg("--signer-key")
        .arg(&user_key)
        .args(["--user-id", "7", "--time", "1765965760"])
        .env("PGSEAL_USER_KEY_PASSWORD", LEGACY_USER_PW)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "reference: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    // pgseal, on an empty store of its own, with the legacy server password.
    let store_path = dir.join("pgseal.db");
    let store = format!("sqlite:{}", store_path.display());
    let url = cluster.url(&django);
    let run = |args: &[&str]| {
        let mut c = bin();
        c.current_dir(dir)
            .env("SERVER_KEY_PASSWORD", LEGACY_SERVER_PW);
        for (k, v) in cluster.env() {
            c.env(k, v);
        }
        c.env("POSTGRESQL_BIN_PATH", cluster.bin_dir());
        c.arg("--store").arg(&store).args(args).output().unwrap()
    };

    let o = run(&[
        "import-django",
        "--database-url",
        &url,
        "--dry-run",
        "--json",
    ]);
    ok(&o);
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(plan["users"]["new"], 2);
    assert_eq!(plan["server_keys"]["new"], 2);
    assert_eq!(plan["audit_rows"]["new"], 3);
    assert!(
        Store::open(&StoreUrl::Sqlite(store_path.clone()))
            .unwrap()
            .users()
            .unwrap()
            .is_empty()
    );

    ok(&run(&["import-django", "--database-url", &url]));
    let mut s = Store::open(&StoreUrl::Sqlite(store_path.clone())).unwrap();
    let users = s.users().unwrap();
    assert_eq!(
        users
            .iter()
            .map(|u| (u.id, u.username.as_str()))
            .collect::<Vec<_>>(),
        vec![(3, "admin"), (7, "system_backup")]
    );
    assert_eq!(users[0].role, pgseal_store::Role::Admin);
    let keys = s.server_keys().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[1].status, pgseal_store::ServerKeyStatus::Active);
    assert_eq!(
        keys[1].legacy_fingerprint.as_deref(),
        Some(legacy_fp(&server_pub).as_str())
    );
    let audit = s.audit_entries(100).unwrap();
    let imported: Vec<_> = audit.iter().filter(|e| e.imported).collect();
    assert_eq!(imported.len(), 3);
    assert_eq!(imported[1].entry.backup_creator_id, Some(7));
    assert_eq!(imported[0].entry.ip_address.as_deref(), Some("10.1.2.3"));
    drop(s);
    ok(&run(&["audit", "verify"]));

    // A re-run brings nothing new.
    let o = run(&["import-django", "--database-url", &url, "--json"]);
    ok(&o);
    let again: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (
            again["users"]["new"].as_i64(),
            again["server_keys"]["new"].as_i64(),
            again["audit_rows"]["new"].as_i64()
        ),
        (Some(0), Some(0), Some(0))
    );

    // The legacy backup opens through the store alone: the server key by trial among the
    // imported keys, the signer by the user id in the file.
    let out = dir.join("plain.dump");
    ok(&run(&[
        "decrypt",
        legacy_file.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&archive).unwrap()
    );
    let o = run(&["verify", legacy_file.to_str().unwrap()]);
    ok(&o);
    assert!(stdout(&o).contains("creator user id 7"), "{}", stdout(&o));
    let target = format!("{source}_restored");
    ok(&run(&[
        "restore",
        legacy_file.to_str().unwrap(),
        "--target-db",
        &target,
        "--create",
    ]));
    assert_eq!(checksums(cluster, &target), checksums(cluster, &source));

    // A wrong legacy password is refused, and says so.
    let mut c = bin();
    c.current_dir(dir)
        .env("SERVER_KEY_PASSWORD", "not-the-legacy-password");
    let o = c
        .arg("--store")
        .arg(&store)
        .args(["decrypt", legacy_file.to_str().unwrap(), "-o", "x"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 5, "{}", stderr(&o));
}
