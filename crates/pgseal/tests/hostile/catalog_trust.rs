//! The catalog is not trusted where it must not be: someone who can write the store (catalog
//! rows, the audit log, the store file itself) tries to hide anchors, pass off an emptied or
//! re-created store as intact, and make `prune` delete what it should not.

use std::path::{Path, PathBuf};
use std::process::Output;

use pgseal_core::time::Timestamp;
use pgseal_testkit::TestCluster;

use crate::common::{Site, code, location, ok, path_of, stderr, stdout};

/// A site whose commands reach the shared test cluster, and a small database there to back up.
fn site_with_database() -> (Site, String) {
    let cluster = TestCluster::shared();
    let env = crate::common::cluster_env(cluster);
    let site = Site::with_env(env);
    let db = cluster.create_database("catalog").unwrap();
    cluster
        .psql(
            &db,
            "CREATE TABLE t (id int PRIMARY KEY, v text); \
             INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 200) g;",
        )
        .unwrap();
    (site, db)
}

/// Backs `db` up through pgseal; returns the file.
fn backup(site: &Site, db: &str) -> PathBuf {
    let o = site.run(&["backup", db, "--user", "system_backup", "--json"]);
    ok(&o);
    let record: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    PathBuf::from(record["path"].as_str().unwrap())
}

/// Writes the store behind pgseal's back, as anyone with write access to it can.
fn tamper(site: &Site, sql: &str) {
    rusqlite::Connection::open(site.path("pgseal.db"))
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} / {}", stdout(o), stderr(o)))
}

/// Encrypts a little data into the backup directory through the store: a signed file whose
/// header anchors the audit log, which the catalog knows nothing about.
fn anchored_file(site: &Site, name: &str) -> PathBuf {
    site.write("payload", &crate::common::data(4000));
    let out = site.path("backups").join(name);
    ok(&site.run(&[
        "encrypt",
        "payload",
        "-o",
        out.to_str().unwrap(),
        "--user",
        "system_backup",
    ]));
    out
}

/// Flips the last byte of the signed `created_at` field (the header's first field: offset 12
/// is the body, 6 bytes of tag and length, then 8 bytes of value): a header that still parses
/// but whose signature no longer holds.
fn forge_header(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    assert_eq!(&bytes[12..14], &[0x00, 0x10], "created_at comes first");
    bytes[25] ^= 0x01;
    std::fs::write(file, bytes).unwrap();
}

/// Three anchored backups, then the catalog rewritten by `hide`: `audit verify` must still find
/// all three anchors in the backup directory, report the catalog's lie, and catch a log cut
/// back past them.
fn anchors_survive_a_catalog_that_hides_them(hide: &str, discrepancy: &str) {
    let (site, db) = site_with_database();
    let files: Vec<PathBuf> = (0..3).map(|_| backup(&site, &db)).collect();
    tamper(&site, hide);

    let o = site.run(&["audit", "verify", "--json"]);
    ok(&o);
    let report = json(&o);
    assert_eq!(report["anchors_checked"], 3, "{report}");
    let listed: Vec<&str> = report["catalog"][discrepancy]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for f in &files {
        let f = std::fs::canonicalize(f).unwrap();
        assert!(
            listed.contains(&f.to_str().unwrap()),
            "{f:?} not in {listed:?}"
        );
    }
    let o = site.run(&["audit", "verify"]);
    ok(&o);
    assert!(stderr(&o).contains("catalog disagrees"), "{}", stderr(&o));

    // Now cut the log back past the newest anchor: the backups still prove it.
    let newest = report["newest_anchor"].as_i64().unwrap();
    tamper(
        &site,
        &format!("DELETE FROM pgseal_audit_log WHERE seq >= {newest}"),
    );
    let o = site.run(&["audit", "verify"]);
    assert_eq!(code(&o), 4, "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("cut back"), "{}", stderr(&o));
    assert!(!stdout(&o).contains("intact"), "{}", stdout(&o));
}

#[test]
fn audit_verify_finds_the_anchors_of_backups_whose_rows_were_marked_pruned() {
    anchors_survive_a_catalog_that_hides_them(
        "UPDATE pgseal_backups SET status = 'pruned', pruned_at = 1",
        "pruned_but_present",
    );
}

#[test]
fn audit_verify_finds_the_anchors_of_backups_whose_rows_were_deleted() {
    anchors_survive_a_catalog_that_hides_them("DELETE FROM pgseal_backups", "uncatalogued");
}

#[test]
fn audit_verify_refuses_to_call_a_zero_byte_store_intact() {
    let site = Site::new();
    anchored_file(&site, "a.pgseal");
    let store = site.path("pgseal.db");
    std::fs::write(&store, b"").unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(site.path(&format!("pgseal.db{suffix}")));
    }

    let o = site.run(&["audit", "verify"]);
    assert_eq!(code(&o), 4, "{}{}", stdout(&o), stderr(&o));
    assert!(!stdout(&o).contains("intact"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("empty (0-byte) store"),
        "{}",
        stderr(&o)
    );
    // What the backup directory still claims is said, too.
    assert!(
        stderr(&o).contains("1 pgseal file anchoring the log up to entry"),
        "{}",
        stderr(&o)
    );
    let o = site.run(&["audit", "verify", "--json"]);
    assert_eq!(code(&o), 4);
    assert_eq!(json(&o)["valid"], false);
    // Nothing re-created it behind the operator's back.
    assert_eq!(std::fs::metadata(&store).unwrap().len(), 0);
}

#[test]
fn commands_refuse_a_truncated_or_deleted_store_instead_of_making_a_new_one() {
    let site = Site::new();
    let store = site.path("pgseal.db");
    std::fs::write(&store, b"").unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(site.path(&format!("pgseal.db{suffix}")));
    }
    let o = site.run(&["list"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("empty (0-byte) store"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::metadata(&store).unwrap().len(), 0);

    std::fs::remove_file(&store).unwrap();
    let o = site.run(&["user", "add", "mallory"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("no store file"), "{}", stderr(&o));
    assert!(stderr(&o).contains("pgseal init"), "{}", stderr(&o));
    assert!(!store.exists(), "a new store was made");
}

#[test]
fn audit_verify_refuses_to_call_an_emptied_audit_log_intact() {
    let site = Site::new();
    tamper(&site, "DELETE FROM pgseal_audit_log");
    let o = site.run(&["audit", "verify"]);
    assert_eq!(code(&o), 4, "{}{}", stdout(&o), stderr(&o));
    assert!(!stdout(&o).contains("intact"), "{}", stdout(&o));
    assert!(stderr(&o).contains("audit log"), "{}", stderr(&o));
    assert!(stderr(&o).contains("is empty"), "{}", stderr(&o));
}

#[test]
fn audit_verify_catches_a_re_created_store_while_the_backups_anchor_a_longer_chain() {
    let site = Site::new();
    for name in ["a.pgseal", "b.pgseal"] {
        anchored_file(&site, name);
    }
    // The store is replaced by a fresh one whose (short, valid) chain starts from scratch.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(site.path(&format!("pgseal.db{suffix}")));
    }
    drop(site.store());
    ok(&site.run(&["user", "add", "system_backup"]));
    ok(&site.run(&["user", "add", "another"]));

    let o = site.run(&["audit", "verify"]);
    assert_eq!(code(&o), 4, "{}{}", stdout(&o), stderr(&o));
    assert!(!stdout(&o).contains("intact"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("a key this store does not know"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("claims to anchor entry"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn audit_verify_reports_a_file_in_the_backup_directory_whose_header_was_forged() {
    let site = Site::new();
    anchored_file(&site, "a.pgseal");
    let forged = anchored_file(&site, "b.pgseal");
    forge_header(&forged);
    let o = site.run(&["audit", "verify", "--json"]);
    assert_eq!(code(&o), 4, "{}{}", stdout(&o), stderr(&o));
    let report = json(&o);
    assert_eq!(report["valid"], false);
    // The forged file counts as no anchor; the genuine one still does.
    assert_eq!(report["anchors_checked"], 1, "{report}");
    let problems = report["problems"].to_string();
    assert!(
        problems.contains("b.pgseal") && problems.contains("forged"),
        "{problems}"
    );
}

/// Points backup row `id` at `path` (on this host) and makes it look old.
fn repoint(site: &Site, id: i64, path: &Path) {
    tamper(
        site,
        &format!(
            "UPDATE pgseal_backups SET location = '{}', created_at = 1000 WHERE id = {id}",
            location(path)
        ),
    );
}

fn backup_id(site: &Site, path: &Path) -> i64 {
    site.store()
        .backups(None)
        .unwrap()
        .into_iter()
        .find(|b| path_of(&b.entry) == path)
        .unwrap_or_else(|| panic!("{path:?} is not catalogued"))
        .id
}

/// Runs `prune` with `args` and checks it refused, naming `reason`, and audited the refusal.
#[track_caller]
fn assert_prune_refuses(site: &Site, args: &[&str], reason: &str) -> Output {
    let o = site.run(args);
    assert_eq!(code(&o), 4, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("REFUSED"), "{}", stdout(&o));
    assert!(stdout(&o).contains(reason), "{}", stdout(&o));
    let e = site.last_audit();
    assert_eq!((e.entry.action.as_str(), e.entry.success), ("PRUNE", false));
    let details: serde_json::Value = serde_json::from_str(&e.entry.details).unwrap();
    assert!(
        details["refused"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains(reason)),
        "{details}"
    );
    o
}

#[test]
fn prune_refuses_a_row_pointed_at_a_file_outside_the_backup_directory() {
    let (site, db) = site_with_database();
    let file = backup(&site, &db);
    let elsewhere = tempfile::tempdir().unwrap();
    let victim = elsewhere.path().join("passwd");
    std::fs::write(&victim, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    repoint(&site, backup_id(&site, &file), &victim);

    assert_prune_refuses(
        &site,
        &["prune", "--older-than", "1d", "--yes"],
        "not in the backup directory",
    );
    assert!(
        victim.exists(),
        "prune deleted a file outside the backup directory"
    );
    assert!(file.exists());
}

#[test]
fn prune_refuses_a_row_pointed_at_a_file_in_the_backup_directory_that_is_not_a_backup() {
    let (site, db) = site_with_database();
    let file = backup(&site, &db);
    let notes = site.path("backups").join("README.txt");
    std::fs::write(&notes, "keep me\n").unwrap();
    repoint(&site, backup_id(&site, &file), &notes);

    assert_prune_refuses(
        &site,
        &["prune", "--older-than", "1d", "--yes"],
        "not a pgseal v2 backup",
    );
    assert!(notes.exists(), "prune deleted a file that is not a backup");
}

#[test]
fn prune_refuses_a_backup_aged_in_the_catalog_but_not_in_its_signed_header() {
    let (site, db) = site_with_database();
    let file = backup(&site, &db);
    // The catalog says it is from 1970; the file's signed header says it was made just now.
    repoint(&site, backup_id(&site, &file), &file);

    assert_prune_refuses(
        &site,
        &["prune", "--older-than", "1d", "--yes"],
        "does not match the catalog entry",
    );
    assert!(
        file.exists(),
        "prune deleted a recent backup the catalog made look old"
    );
    assert_eq!(site.store().backups(None).unwrap().len(), 1);
}

#[test]
fn prune_refuses_a_backup_whose_signed_header_does_not_verify() {
    let (site, db) = site_with_database();
    let file = backup(&site, &db);
    forge_header(&file);

    assert_prune_refuses(&site, &["prune", "--older-than", "0m", "--yes"], "forged");
    assert!(
        file.exists(),
        "prune deleted a file whose header signature does not verify"
    );
}

#[test]
fn prune_refuses_paths_that_leave_the_backup_directory_by_dotdot_or_a_symlink() {
    let (site, db) = site_with_database();
    let first = backup(&site, &db);
    let second = backup(&site, &db);
    // Byte-identical copies outside the backup directory: their signed headers match the rows.
    let outside_a = site.path("outside-a.pgseal");
    let outside_b = site.path("outside-b.pgseal");
    std::fs::copy(&first, &outside_a).unwrap();
    std::fs::copy(&second, &outside_b).unwrap();
    let climbing = site.path("backups").join("..").join("outside-a.pgseal");
    let link = site.path("backups").join("link.pgseal");
    std::os::unix::fs::symlink(&outside_b, &link).unwrap();
    tamper(
        &site,
        &format!(
            "UPDATE pgseal_backups SET location = '{}' WHERE id = {}; \
             UPDATE pgseal_backups SET location = '{}' WHERE id = {};",
            location(&climbing),
            backup_id(&site, &first),
            location(&link),
            backup_id(&site, &second)
        ),
    );

    let o = assert_prune_refuses(&site, &["prune", "--older-than", "0m", "--yes"], "`..`");
    assert!(stdout(&o).contains("symbolic link"), "{}", stdout(&o));
    assert!(
        outside_a.exists(),
        "prune followed `..` out of the backup directory"
    );
    assert!(outside_b.exists());
    assert!(
        link.symlink_metadata().is_ok(),
        "prune deleted a symbolic link it should have refused"
    );
    assert!(first.exists() && second.exists());
}

#[test]
fn prune_goes_on_past_a_forged_row_and_still_deletes_genuine_old_backups() {
    let (site, db) = site_with_database();
    let old = backup(&site, &db);
    let older_still = backup(&site, &db);
    // The newest backup of a database is never pruned: it stays, whatever the rule.
    let newest = backup(&site, &db);
    let elsewhere = tempfile::tempdir().unwrap();
    let victim = elsewhere.path().join("important.db");
    std::fs::write(&victim, "precious").unwrap();
    // A row inserted by someone who can write the store, pointing at a file they want gone.
    let mut store = site.store();
    let template = store.backups(None).unwrap().remove(0).entry;
    store
        .add_backup(&pgseal_store::NewBackup {
            location: location(&victim),
            created_at: Timestamp(1000),
            ..template
        })
        .unwrap();
    drop(store);

    let o = assert_prune_refuses(
        &site,
        &["prune", "--older-than", "0m", "--yes"],
        "not in the backup directory",
    );
    assert!(victim.exists(), "prune deleted the file a forged row named");
    // The genuine backups were pruned all the same.
    assert!(!old.exists() && !older_still.exists(), "{}", stdout(&o));
    assert_eq!(stdout(&o).matches("deleted").count(), 2, "{}", stdout(&o));
    assert!(newest.exists(), "{}", stdout(&o));
    assert!(stdout(&o).contains("kept by: newest"), "{}", stdout(&o));
    let mut live: Vec<PathBuf> = site
        .store()
        .backups(None)
        .unwrap()
        .iter()
        .map(|b| path_of(&b.entry))
        .collect();
    live.sort();
    let mut want = vec![newest, victim];
    want.sort();
    assert_eq!(live, want, "only the forged row and the newest stay live");
}

#[test]
fn prune_keep_last_does_not_count_rows_that_no_signed_backup_backs() {
    let (site, db) = site_with_database();
    let a = backup(&site, &db);
    let b = backup(&site, &db);
    // Two "newer" rows for files that do not exist push the real backups out of the newest 2.
    let mut store = site.store();
    let template = store.backups(None).unwrap().remove(0).entry;
    for n in 1..=2 {
        store
            .add_backup(&pgseal_store::NewBackup {
                location: location(&site.path("backups").join(format!("phantom-{n}.pgseal"))),
                created_at: Timestamp(Timestamp::now().millis() + n * 3_600_000),
                ..template.clone()
            })
            .unwrap();
    }
    drop(store);

    let o = site.run(&["prune", "--keep-last", "2", "--yes"]);
    ok(&o);
    assert!(
        a.exists() && b.exists(),
        "real backups deleted: {}",
        stdout(&o)
    );
    // The phantoms are uncatalogued as gone; the real two stay.
    let live: Vec<PathBuf> = site
        .store()
        .backups(None)
        .unwrap()
        .into_iter()
        .map(|r| path_of(&r.entry))
        .collect();
    assert_eq!(live, vec![a, b]);
}

#[test]
fn restore_check_latest_refuses_an_older_backup_the_catalog_moved_forward() {
    let (site, db) = site_with_database();
    let older = backup(&site, &db);
    let _newer = backup(&site, &db);
    // Dated a day later in the catalog, the older backup would be the one the monthly check
    // tests, and the newest would go untested.
    let id = backup_id(&site, &older);
    tamper(
        &site,
        &format!("UPDATE pgseal_backups SET created_at = created_at + 86400000 WHERE id = {id}"),
    );
    let o = site.run(&["restore", "--check", "--latest"]);
    assert_eq!(code(&o), 4, "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("signed header disagrees"),
        "{}",
        stderr(&o)
    );
    let e = site.last_audit().entry;
    assert_eq!((e.action.as_str(), e.success), ("RESTORE", false));
}
