//! Disaster recovery of a whole cluster: one `backup --all` of a cluster with roles (a login
//! role with a password, a group role with members, a NOLOGIN owner), databases and objects
//! they own and grants on them, rebuilt into new, empty clusters with `restore --globals` and a
//! restore of every database — the same roles, memberships, owners, grants and rows. Role
//! passwords travel only with `--with-role-passwords`; a tampered globals file changes nothing;
//! a database backup and a globals backup cannot be taken one for the other.

mod common;

use std::path::{Path, PathBuf};

use common::{code, ok, stderr, stdout};
use pgseal_testkit::TestCluster;

/// Run on the source cluster's `postgres` database.
const CLUSTER: &str = r#"
CREATE ROLE app_owner NOLOGIN;
CREATE ROLE readers NOLOGIN;
CREATE ROLE alice LOGIN PASSWORD 'alice-secret-pw' CONNECTION LIMIT 5 VALID UNTIL '2099-01-01';
CREATE ROLE bob LOGIN CREATEDB;
CREATE ROLE "Mixed Case" NOLOGIN;
GRANT readers TO alice, bob;
GRANT readers TO "Mixed Case" WITH ADMIN OPTION;
ALTER ROLE bob SET work_mem = '16MB';
COMMENT ON ROLE readers IS 'read-only;
CREATE ROLE postgres;
(a comment that looks like a statement)';
CREATE DATABASE shop OWNER app_owner;
CREATE DATABASE "Hr Data" OWNER bob;
REVOKE CONNECT, TEMPORARY ON DATABASE shop FROM PUBLIC;
GRANT CONNECT ON DATABASE shop TO readers;
GRANT CREATE ON DATABASE shop TO alice;
REVOKE TEMPORARY ON DATABASE "Hr Data" FROM PUBLIC;
ALTER DATABASE shop SET work_mem = '8MB';
ALTER ROLE alice IN DATABASE shop SET search_path = sales, public;
COMMENT ON DATABASE shop IS 'the shop';
"#;

/// Run on `shop`.
const SHOP: &str = r#"
CREATE SCHEMA sales AUTHORIZATION app_owner;
CREATE TABLE sales.orders (id int PRIMARY KEY, item text, amount numeric(10, 2));
ALTER TABLE sales.orders OWNER TO app_owner;
INSERT INTO sales.orders SELECT g, 'item ' || g || ' ✓', g * 1.5 FROM generate_series(1, 3000) g;
GRANT USAGE ON SCHEMA sales TO readers;
GRANT SELECT ON sales.orders TO readers;
GRANT INSERT, UPDATE ON sales.orders TO alice;
CREATE TABLE public.notes (id serial PRIMARY KEY, body text);
ALTER TABLE public.notes OWNER TO alice;
INSERT INTO public.notes (body) SELECT md5(g::text) FROM generate_series(1, 500) g;
GRANT CREATE ON SCHEMA public TO bob;
"#;

/// Run on `Hr Data`.
const HR: &str = r#"
CREATE TABLE staff (id int PRIMARY KEY, name text, salary int);
ALTER TABLE staff OWNER TO bob;
INSERT INTO staff SELECT g, 'person ' || g, 1000 + g FROM generate_series(1, 200) g;
GRANT SELECT (id, name) ON staff TO readers;
CREATE SCHEMA private AUTHORIZATION "Mixed Case";
"#;

/// What must be the same in the rebuilt cluster, asked of the `postgres` database. ACLs are
/// sets: compared sorted (pg_dump may grant in another order than the original's).
const CLUSTER_FACTS: &str = r#"
SELECT 'role', rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin,
       rolreplication, rolconnlimit, rolvaliduntil, rolbypassrls, rolconfig
  FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY rolname;
SELECT 'member', r.rolname, m.rolname, g.rolname, am.admin_option
  FROM pg_auth_members am JOIN pg_roles r ON r.oid = am.roleid
  JOIN pg_roles m ON m.oid = am.member JOIN pg_roles g ON g.oid = am.grantor
  ORDER BY 2, 3;
SELECT 'database', datname, pg_get_userbyid(datdba), (SELECT array_agg(i::text ORDER BY i::text) FROM unnest(datacl) i)::text, datconnlimit,
       pg_encoding_to_char(encoding), datcollate, shobj_description(oid, 'pg_database')
  FROM pg_database WHERE datname NOT IN ('template0', 'template1', 'postgres') ORDER BY 2;
SELECT 'setting', coalesce(d.datname, '-'), coalesce(r.rolname, '-'), s.setconfig
  FROM pg_db_role_setting s LEFT JOIN pg_database d ON d.oid = s.setdatabase
  LEFT JOIN pg_roles r ON r.oid = s.setrole ORDER BY 2, 3;
SELECT 'comment', rolname, shobj_description(oid, 'pg_authid') FROM pg_roles
  WHERE shobj_description(oid, 'pg_authid') IS NOT NULL ORDER BY 2;
"#;

/// Owners, grants and row checksums inside one database.
const DATABASE_FACTS: &str = r#"
SELECT 'schema', nspname, pg_get_userbyid(nspowner), (SELECT array_agg(i::text ORDER BY i::text) FROM unnest(nspacl) i)::text FROM pg_namespace
  WHERE nspname !~ '^pg_' AND nspname <> 'information_schema' ORDER BY 2;
SELECT 'relation', n.nspname, c.relname, c.relkind, pg_get_userbyid(c.relowner), (SELECT array_agg(i::text ORDER BY i::text) FROM unnest(c.relacl) i)::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'S', 'v', 'm') AND n.nspname !~ '^pg_'
    AND n.nspname <> 'information_schema' ORDER BY 2, 3;
SELECT 'column acl', c.relname, a.attname, (SELECT array_agg(i::text ORDER BY i::text) FROM unnest(a.attacl) i)::text FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE a.attacl IS NOT NULL AND n.nspname !~ '^pg_' ORDER BY 2, 3;
SELECT format('SELECT %L, count(*), md5(coalesce(string_agg(t::text, %L ORDER BY t::text), %L)) FROM %I.%I t',
              n.nspname || '.' || c.relname, E'\n', '', n.nspname, c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'r' AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
  ORDER BY n.nspname, c.relname
\gexec
"#;

/// pgseal in `site`, against `cluster`.
fn on(site: &common::Site, cluster: &TestCluster, args: &[&str]) -> std::process::Output {
    site.cmd()
        .envs(common::cluster_env(cluster))
        .args(args)
        .output()
        .expect("spawn pgseal")
}

/// Everything compared between the original and the rebuilt cluster.
fn facts(cluster: &TestCluster, databases: &[&str]) -> String {
    let mut all = cluster.psql("postgres", CLUSTER_FACTS).unwrap();
    for db in databases {
        all.push_str(&format!("== {db}\n"));
        all.push_str(&cluster.psql(db, DATABASE_FACTS).unwrap());
    }
    all
}

fn role_password(cluster: &TestCluster, role: &str) -> String {
    cluster
        .psql(
            "postgres",
            &format!(
                "SELECT coalesce(rolpassword, 'NULL') FROM pg_authid WHERE rolname = '{role}';"
            ),
        )
        .unwrap()
        .trim()
        .to_owned()
}

/// The backups of one `backup --all` run: (database, path), the globals' included.
fn made(site: &common::Site, cluster: &TestCluster, extra: &[&str]) -> Vec<(String, PathBuf)> {
    let mut args = vec!["backup", "--all", "--user", "system_backup", "--json"];
    args.extend_from_slice(extra);
    let o = on(site, cluster, &args);
    ok(&o);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["ok"], true, "{r}");
            (
                r["database"].as_str().unwrap().to_owned(),
                PathBuf::from(r["backup"]["path"].as_str().unwrap()),
            )
        })
        .collect()
}

fn globals_of(backups: &[(String, PathBuf)]) -> &Path {
    let globals: Vec<&Path> = backups
        .iter()
        .filter(|(db, _)| db == "(globals)")
        .map(|(_, p)| p.as_path())
        .collect();
    assert_eq!(globals.len(), 1, "{backups:?}");
    globals[0]
}

fn decrypted(site: &common::Site, file: &Path, name: &str) -> String {
    let out = site.path(name);
    ok(&site.run(&[
        "decrypt",
        file.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]));
    std::fs::read_to_string(out).unwrap()
}

#[test]
fn a_new_cluster_rebuilt_from_one_backup_all_has_the_same_roles_owners_grants_and_rows() {
    let source = TestCluster::start().expect("start the source cluster");
    source.psql("postgres", CLUSTER).unwrap();
    source.psql("shop", SHOP).unwrap();
    source.psql("Hr Data", HR).unwrap();
    let databases = ["Hr Data", "shop"];
    let expected = facts(&source, &databases);
    // The comparison sees what it must: the roles, grants and rows set up above.
    for needle in [
        "role|alice|f|t|f|f|t|f|5|2099-01-01",
        "member|readers|Mixed Case|postgres|t",
        "database|shop|app_owner|{",
        "alice=C/app_owner,app_owner=CTc/app_owner,readers=c/app_owner}",
        "database|Hr Data|bob|{",
        "setting|shop|alice|{\"search_path=sales, public\"}",
        "relation|sales|orders|r|app_owner|{",
        "alice=aw/app_owner",
        "schema|private|Mixed Case|",
        "column acl|staff|name|{readers=r/bob}",
        "sales.orders|3000|",
    ] {
        assert!(expected.contains(needle), "{needle} not in:\n{expected}");
    }

    let site = common::Site::with_env(common::cluster_env(&source));
    let backups = made(&site, &source, &[]);
    let names: Vec<&str> = backups.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(names, ["Hr Data", "shop", "(globals)"]);
    let globals = globals_of(&backups).to_path_buf();

    // Without --with-role-passwords the script holds no password.
    let sql = decrypted(&site, &globals, "globals.sql");
    assert!(sql.contains("CREATE ROLE alice;"), "{sql}");
    assert!(sql.contains("CREATE DATABASE shop "), "{sql}");
    assert!(!sql.contains("PASSWORD"), "{sql}");
    assert!(!sql.contains("SCRAM-SHA-256"), "{sql}");

    // list, verify and inspect say what it is.
    let o = site.run(&["list", "--db", "(globals)"]);
    ok(&o);
    assert!(stdout(&o).contains("(globals)"), "{}", stdout(&o));
    let o = site.run(&["verify", globals.to_str().unwrap()]);
    ok(&o);
    assert!(
        stdout(&o).contains("holds (signed): a cluster's globals"),
        "{}",
        stdout(&o)
    );
    let o = site.run(&["inspect", globals.to_str().unwrap(), "--json"]);
    ok(&o);
    let facts_json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(facts_json["source"]["database"], "(globals)");
    assert_eq!(facts_json["source"]["dump_format"], "pg_dumpall-globals");

    // A new, empty cluster: the globals, then every database into the shell they made.
    let rebuilt = TestCluster::start().expect("start the new cluster");
    let o = on(
        &site,
        &rebuilt,
        &["restore", "--globals", globals.to_str().unwrap(), "--json"],
    );
    ok(&o);
    let applied: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(applied["existing_roles"], serde_json::json!(["postgres"]));
    assert_eq!(applied["databases"], serde_json::json!(["Hr Data", "shop"]));
    for (db, path) in backups.iter().filter(|(d, _)| d != "(globals)") {
        ok(&on(
            &site,
            &rebuilt,
            &["restore", path.to_str().unwrap(), "--target-db", db],
        ));
    }
    assert_eq!(facts(&rebuilt, &databases), expected);
    assert_eq!(role_password(&rebuilt, "alice"), "NULL");
    let entry = site.last_audit();
    assert!(entry.entry.success);

    // A database's backup is not globals, and globals are not a database.
    let shop = &backups.iter().find(|(d, _)| d == "shop").unwrap().1;
    let o = on(
        &site,
        &rebuilt,
        &["restore", "--globals", shop.to_str().unwrap()],
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not a cluster's globals"),
        "{}",
        stderr(&o)
    );
    let o = on(
        &site,
        &rebuilt,
        &[
            "restore",
            globals.to_str().unwrap(),
            "--target-db",
            "mistake",
            "--create",
        ],
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("restore --globals"), "{}", stderr(&o));
    assert_eq!(
        rebuilt
            .psql(
                "postgres",
                "SELECT count(*) FROM pg_database WHERE datname = 'mistake';"
            )
            .unwrap()
            .trim(),
        "0"
    );
    let failed = site.last_audit();
    assert!(!failed.entry.success);
}

#[test]
fn role_passwords_travel_only_when_asked_and_a_tampered_globals_file_changes_nothing() {
    let source = TestCluster::start().expect("start the source cluster");
    source.psql("postgres", CLUSTER).unwrap();
    let site = common::Site::with_env(common::cluster_env(&source));
    let backups = made(&site, &source, &["--with-role-passwords"]);
    let globals = globals_of(&backups).to_path_buf();
    let sql = decrypted(&site, &globals, "with-passwords.sql");
    assert!(sql.contains("PASSWORD 'SCRAM-SHA-256$"), "{sql}");

    let target = TestCluster::start().expect("start the new cluster");
    let before = facts(&target, &[]);

    // One flipped byte in the sealed data: refused (exit 4) before any statement runs.
    let o = site.run(&["inspect", globals.to_str().unwrap(), "--json"]);
    ok(&o);
    let layout: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let header = layout["header_bytes"].as_u64().unwrap() as usize;
    let sealed = layout["ciphertext_bytes"].as_u64().unwrap() as usize;
    let mut bytes = std::fs::read(&globals).unwrap();
    let at = header + sealed / 2;
    bytes[at] ^= 0x40;
    let tampered = site.write("tampered.pgseal", &bytes);
    let o = on(
        &site,
        &target,
        &["restore", "--globals", tampered.to_str().unwrap()],
    );
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert_eq!(facts(&target, &[]), before);
    assert!(!site.last_audit().entry.success);

    // --no-verify is no way round it.
    let o = on(
        &site,
        &target,
        &[
            "restore",
            "--globals",
            "--no-verify",
            globals.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert_eq!(facts(&target, &[]), before);

    // The genuine file: the password hash is the source's.
    ok(&on(
        &site,
        &target,
        &["restore", "--globals", globals.to_str().unwrap()],
    ));
    let hash = role_password(&source, "alice");
    assert!(hash.starts_with("SCRAM-SHA-256$"), "{hash}");
    assert_eq!(role_password(&target, "alice"), hash);
    assert_eq!(
        target.psql("postgres", CLUSTER_FACTS).unwrap(),
        source.psql("postgres", CLUSTER_FACTS).unwrap()
    );
}
