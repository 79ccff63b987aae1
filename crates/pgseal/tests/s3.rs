//! The command line on an S3 repository: a real Garage engine (pgseal-testkit's `TestGarage`)
//! and a real PostgreSQL cluster, both started by the tests on loopback. The repository is
//! named the ways users name it (`PGSEAL_REPOSITORY`, `--repo`), and the engine is reached
//! with the AWS variables users already set — each test in a bucket of its own.

mod common;

use std::ffi::OsString;
use std::process::Output;

use common::{code, ok, stderr, stdout};
use pgseal_testkit::{TestCluster, TestGarage};
use serde_json::Value;

/// `name` made unique to this run (the engine is shared by the tests of this binary).
fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{name}-{:x}{nanos:x}", std::process::id())
}

/// The AWS variables that reach the shared engine, with `secret` as the secret key.
fn aws_env(g: &TestGarage, secret: &str) -> Vec<(OsString, OsString)> {
    vec![
        ("AWS_ENDPOINT_URL".into(), g.endpoint().into()),
        ("AWS_REGION".into(), g.region().into()),
        ("AWS_ACCESS_KEY_ID".into(), g.access_key_id().into()),
        ("AWS_SECRET_ACCESS_KEY".into(), secret.into()),
        // Nothing from the machine's own AWS files.
        ("AWS_CONFIG_FILE".into(), "/nonexistent/aws-config".into()),
        (
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            "/nonexistent/aws-credentials".into(),
        ),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ]
}

/// A site whose repository is `s3://BUCKET/site/backups` in a new bucket, reaching a test
/// cluster through libpq's environment.
struct S3Site {
    site: common::Site,
    bucket: String,
    cluster: &'static TestCluster,
}

impl S3Site {
    fn new(name: &str) -> S3Site {
        let g = TestGarage::shared();
        let bucket = unique(name);
        g.create_bucket(&bucket).unwrap();
        let cluster = TestCluster::shared();
        let mut env = common::cluster_env(cluster);
        env.extend(aws_env(g, g.secret_access_key()));
        env.push((
            "PGSEAL_REPOSITORY".into(),
            format!("s3://{bucket}/site/backups").into(),
        ));
        S3Site {
            site: common::Site::with_env(env),
            bucket,
            cluster,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.site.run(args)
    }

    fn repo(&self) -> String {
        format!("s3://{}/site/backups", self.bucket)
    }

    fn sample_db(&self, prefix: &str) -> String {
        let db = self.cluster.create_database(prefix).unwrap();
        self.cluster
            .psql(
                &db,
                "CREATE TABLE t (id int PRIMARY KEY, v text);
                 INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2000) g;",
            )
            .unwrap();
        db
    }

    /// Backs up `db` and returns the object's location from the report.
    fn backup(&self, db: &str) -> String {
        let out = self.run(&["backup", db, "--user", "system_backup", "--json"]);
        ok(&out);
        let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
        v["location"].as_str().unwrap().to_owned()
    }

    /// The upload ids of the bucket's unfinished multipart uploads.
    fn uploads(&self) -> Vec<String> {
        block_on(
            TestGarage::shared()
                .client()
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .send(),
        )
        .unwrap()
        .uploads()
        .iter()
        .filter_map(|u| u.upload_id().map(str::to_owned))
        .collect()
    }

    fn objects(&self) -> Vec<String> {
        let client = TestGarage::shared().client();
        block_on(
            client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix("site/backups/")
                .send(),
        )
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn backup_to_a_bucket_then_list_inspect_verify_decrypt_and_restore_check_from_it() {
    let s = S3Site::new("pgseal-cli-flow");
    let db = s.sample_db("s3flow");
    let location = s.backup(&db);
    assert!(
        location.starts_with(&format!("{}/{db}_", s.repo())),
        "{location}"
    );
    assert_eq!(s.objects().len(), 1);
    // Nothing was written to the site's backup directory.
    assert!(common::listing(&s.site.path("backups")).is_empty());

    let listed: Value = serde_json::from_str(&stdout(&s.run(&["list", "--json"]))).unwrap();
    assert_eq!(listed[0]["location"], location.as_str());
    let remote = s.run(&["list", "--remote", "--json"]);
    ok(&remote);
    let remote: Value = serde_json::from_str(&stdout(&remote)).unwrap();
    assert_eq!(remote["present"].as_array().unwrap().len(), 1);
    assert_eq!(remote["missing"].as_array().unwrap().len(), 0);
    assert_eq!(remote["uncatalogued"].as_array().unwrap().len(), 0);

    let inspected = s.run(&["inspect", &location, "--json"]);
    ok(&inspected);
    let inspected: Value = serde_json::from_str(&stdout(&inspected)).unwrap();
    assert_eq!(inspected["format"], "v2");

    ok(&s.run(&["verify", &location]));
    let plain = s.site.path("dump.bin");
    ok(&s.run(&["decrypt", &location, "-o", plain.to_str().unwrap()]));
    assert!(std::fs::read(&plain).unwrap().starts_with(b"PGDMP"));

    let check = s.run(&["restore", &location, "--check", "--json"]);
    ok(&check);
    let check: Value = serde_json::from_str(&stdout(&check)).unwrap();
    assert_eq!(check["restorable"], true, "{check}");
    assert_eq!(check["tables"][0]["rows"], 2000, "{check}");

    // The audit log's anchors come from the bucket's headers.
    let verified = s.run(&["audit", "verify", "--json"]);
    ok(&verified);
    let verified: Value = serde_json::from_str(&stdout(&verified)).unwrap();
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(
        verified["backup_dir"]["path"],
        format!("{}/", s.repo()),
        "{verified}"
    );
    assert_eq!(verified["backup_dir"]["signed"], 1, "{verified}");
    assert!(
        verified["anchors_checked"].as_u64().unwrap() >= 1,
        "{verified}"
    );
}

#[test]
fn list_remote_names_objects_missing_from_the_catalog_and_entries_whose_object_is_gone() {
    let s = S3Site::new("pgseal-cli-remote");
    let db = s.sample_db("s3remote");
    let first = s.backup(&db);
    let second = s.backup(&db);
    // Someone deletes one object behind pgseal's back, and drops a file in.
    let g = TestGarage::shared();
    let key = second.split_once(&format!("{}/", s.bucket)).unwrap().1;
    block_on(g.client().delete_object().bucket(&s.bucket).key(key).send()).unwrap();
    block_on(
        g.client()
            .put_object()
            .bucket(&s.bucket)
            .key("site/backups/stranger.pgseal")
            .body(b"not a backup".to_vec().into())
            .send(),
    )
    .unwrap();

    let out = s.run(&["list", "--remote", "--json"]);
    ok(&out);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["present"][0]["location"], first.as_str(), "{v}");
    assert_eq!(v["missing"][0]["location"], second.as_str(), "{v}");
    assert_eq!(
        v["uncatalogued"][0]["location"],
        format!("{}/stranger.pgseal", s.repo()),
        "{v}"
    );
    let text = stdout(&s.run(&["list", "--remote"]));
    assert!(
        text.contains("MISSING") && text.contains("UNCATALOGUED"),
        "{text}"
    );
}

#[test]
fn repo_cleanup_aborts_old_incomplete_uploads_and_audits_each() {
    let s = S3Site::new("pgseal-cli-cleanup");
    let g = TestGarage::shared();
    // What a killed backup leaves: an upload started, a part sent, never completed.
    let started = block_on(
        g.client()
            .create_multipart_upload()
            .bucket(&s.bucket)
            .key("site/backups/shop_20260101T000000.000Z.pgseal")
            .send(),
    )
    .unwrap();
    let upload_id = started.upload_id().unwrap().to_owned();

    // Young: kept by the default age (a backup may be writing it right now).
    let out = s.run(&["repo", "cleanup", "--json"]);
    ok(&out);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["discarded"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["kept"].as_array().unwrap().len(), 1, "{v}");

    // Garage records the start to the second; any age below it finds it old enough.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let dry = s.run(&[
        "repo",
        "cleanup",
        "--older-than",
        "0",
        "--dry-run",
        "--json",
    ]);
    ok(&dry);
    let v: Value = serde_json::from_str(&stdout(&dry)).unwrap();
    assert_eq!(v["discarded"][0]["id"], upload_id.as_str(), "{v}");

    let out = s.run(&["repo", "cleanup", "--older-than", "0"]);
    ok(&out);
    assert!(
        stdout(&out).contains("discarded 1 unfinished"),
        "{}",
        stdout(&out)
    );
    let entry = s.site.last_audit();
    assert_eq!(entry.entry.action.as_str(), "REPO_CLEANUP");
    assert!(entry.entry.success);
    assert!(
        entry.entry.details.contains(&upload_id),
        "{}",
        entry.entry.details
    );
    let uploads = s.uploads();
    assert!(uploads.is_empty(), "{uploads:?}");

    let again = s.run(&["repo", "cleanup", "--older-than", "0", "--json"]);
    let v: Value = serde_json::from_str(&stdout(&again)).unwrap();
    assert_eq!(v["discarded"].as_array().unwrap().len(), 0, "{v}");
}

#[test]
fn a_wrong_secret_fails_the_backup_with_what_to_check_audited_and_nothing_in_the_bucket() {
    let s = S3Site::new("pgseal-cli-badkey");
    let db = s.sample_db("s3badkey");
    let out = s
        .site
        .cmd()
        .env("AWS_SECRET_ACCESS_KEY", "0".repeat(64))
        .args(["backup", &db, "--user", "system_backup"])
        .output()
        .unwrap();
    assert_ne!(code(&out), 0);
    let err = stderr(&out);
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
    assert!(
        !err.contains(&"0".repeat(64)),
        "the secret is never shown: {err}"
    );
    let entry = s.site.last_audit();
    assert_eq!(entry.entry.action.as_str(), "BACKUP");
    assert!(!entry.entry.success);
    assert!(s.objects().is_empty());
    let uploads = s.uploads();
    assert!(uploads.is_empty(), "{uploads:?}");
}

#[test]
fn an_endpoint_that_is_down_and_a_missing_bucket_say_what_to_fix() {
    let s = S3Site::new("pgseal-cli-down");
    let db = s.sample_db("s3down");
    let down = s
        .site
        .cmd()
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .args(["backup", &db, "--user", "system_backup"])
        .output()
        .unwrap();
    assert_eq!(code(&down), 1, "{}", stderr(&down));
    assert!(
        stderr(&down).contains("AWS_ENDPOINT_URL"),
        "{}",
        stderr(&down)
    );

    let missing = format!("s3://{}-gone/x", s.bucket);
    let out = s.run(&["backup", &db, "--user", "system_backup", "--repo", &missing]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    let bad = s.run(&["list", "--remote", "--repo", "s3://a/../b"]);
    assert_eq!(code(&bad), 2, "{}", stderr(&bad));
}

#[test]
fn the_configuration_shows_the_repository_and_no_secret() {
    let s = S3Site::new("pgseal-cli-config");
    let out = s.run(&["config", "--json"]);
    ok(&out);
    let text = stdout(&out);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["repository"], s.repo().as_str());
    assert!(
        !text.contains(TestGarage::shared().secret_access_key()),
        "{text}"
    );
}

#[test]
fn prune_rotate_rewrap_and_retire_work_on_objects_and_leave_no_old_wrapping() {
    let s = S3Site::new("pgseal-cli-rotate");
    let db = s.sample_db("s3rotate");
    let older = s.backup(&db);
    let newer = s.backup(&db);
    let pruned = s.run(&["prune", "--keep-last", "1", "--yes", "--json"]);
    ok(&pruned);
    let objects = s.objects();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert!(newer.ends_with(&objects[0]), "{newer} {objects:?}");
    assert_eq!(
        code(&s.run(&["verify", &older])),
        1,
        "the pruned object is gone"
    );

    let old_fp = {
        let v: Value =
            serde_json::from_str(&stdout(&s.run(&["server-key", "list", "--json"]))).unwrap();
        v[0]["fingerprint"].as_str().unwrap().to_owned()
    };
    const NEW_PASSWORD: &str = "another-long-server-password";
    ok(&s
        .site
        .cmd()
        .env("PGSEAL_NEW_SERVER_KEY_PASSWORD", NEW_PASSWORD)
        .args(["server-key", "rotate", "--key-size", "2048"])
        .output()
        .unwrap());
    let as_new = |args: &[&str]| {
        s.site
            .cmd()
            .env("SERVER_KEY_PASSWORD", NEW_PASSWORD)
            .args(args)
            .output()
            .unwrap()
    };
    // Retire refuses while the object's slots name the old key.
    let refused = as_new(&["server-key", "retire", &old_fp]);
    assert_eq!(code(&refused), 2, "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains(&objects[0]),
        "{}",
        stderr(&refused)
    );
    ok(&as_new(&["rewrap", "--all"]));
    let facts: Value =
        serde_json::from_str(&stdout(&as_new(&["inspect", &newer, "--json"]))).unwrap();
    let recipients = facts["slots"].to_string();
    assert!(!recipients.contains(&old_fp), "{facts}");
    assert!(facts["superseded_slot"].is_null(), "{facts}");
    ok(&as_new(&["verify", &newer]));
    ok(&as_new(&["restore", &newer, "--check"]));
    // Nothing else in the bucket: no temporary object, no unfinished upload.
    assert_eq!(s.objects().len(), 1);
    let uploads = s.uploads();
    assert!(uploads.is_empty(), "{uploads:?}");
    ok(&as_new(&["server-key", "retire", &old_fp]));
}

#[test]
fn a_backup_aborts_incomplete_uploads_older_than_the_configured_age() {
    let s = S3Site::new("pgseal-cli-sweep");
    let db = s.sample_db("s3sweep");
    let g = TestGarage::shared();
    let started = block_on(
        g.client()
            .create_multipart_upload()
            .bucket(&s.bucket)
            .key("site/backups/killed_20260101T000000.000Z.pgseal")
            .send(),
    )
    .unwrap();
    let upload_id = started.upload_id().unwrap().to_owned();
    // Garage records the start to the second: let one pass, so an age of 0 h finds it old.
    std::thread::sleep(std::time::Duration::from_millis(2100));

    // The default age (24 h) keeps it: a backup may be writing it right now.
    ok(&s.run(&["backup", &db, "--user", "system_backup"]));
    let uploads = s.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");

    let out = s
        .site
        .cmd()
        .env("PGSEAL_ABORT_UPLOADS_AFTER_HOURS", "0")
        .args(["backup", &db, "--user", "system_backup"])
        .output()
        .unwrap();
    ok(&out);
    let uploads = s.uploads();
    assert!(uploads.is_empty(), "{uploads:?}");
    let cleanup = s
        .site
        .audit()
        .into_iter()
        .filter(|e| e.entry.action.as_str() == "REPO_CLEANUP")
        .collect::<Vec<_>>();
    assert_eq!(
        cleanup.len(),
        1,
        "one entry, for the sweep that discarded something"
    );
    assert!(cleanup[0].entry.details.contains(&upload_id));
    assert!(cleanup[0].entry.details.contains("\"after_backup\":true"));
    assert_eq!(s.objects().len(), 2, "both backups are there");
}

impl S3Site {
    /// The site's backup directory as a repository URL.
    fn local(&self) -> String {
        format!("file://{}", self.site.path("backups").display())
    }

    /// Backs up `db` into the repository `repo`; returns its catalog entry as `--json` shows it.
    fn backup_into(&self, db: &str, repo: &str) -> Value {
        let out = self.run(&[
            "backup",
            db,
            "--user",
            "system_backup",
            "--repo",
            repo,
            "--json",
        ]);
        ok(&out);
        serde_json::from_str(&stdout(&out)).unwrap()
    }

    /// `pgseal copy ARGS --json`, succeeding; its report.
    fn copy(&self, args: &[&str]) -> Value {
        let mut all = vec!["copy", "--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        ok(&out);
        serde_json::from_str(&stdout(&out)).unwrap()
    }

    fn list(&self) -> Vec<Value> {
        let out = self.run(&["list", "--json"]);
        ok(&out);
        serde_json::from_str::<Value>(&stdout(&out))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}

/// Flips one byte in the middle of a file: inside its sealed chunks.
fn flip_middle(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn copies_to_a_bucket_and_back_are_verified_catalogued_once_and_restore_uses_a_good_one() {
    let s = S3Site::new("pgseal-cli-copy");
    let db = s.sample_db("s3copy");
    let original = s.backup_into(&db, &s.local());
    let id = original["id"].as_i64().unwrap();

    // Local → S3: copied, read back, verified, catalogued as a copy of the backup.
    let report = s.copy(&["--repo", &s.local(), "--to", &s.repo()]);
    let item = &report["backups"][0];
    assert_eq!(item["outcome"], "copied", "{report}");
    let in_bucket = item["copy"]["location"].as_str().unwrap().to_owned();
    assert!(
        in_bucket.starts_with(&format!("{}/{db}_", s.repo())),
        "{in_bucket}"
    );
    assert_eq!(item["copy"]["copy_of"], id);
    assert_eq!(
        item["copy"]["ciphertext_blake3"], original["ciphertext_blake3"],
        "{report}"
    );
    assert_eq!(s.objects().len(), 1);
    let audit = s.site.audit();
    let copies: Vec<_> = audit
        .iter()
        .filter(|e| e.entry.action == pgseal_store::Action::Copy)
        .collect();
    assert_eq!(copies.len(), 2, "the run's entry and the backup's");
    assert!(copies.iter().all(|e| e.entry.success));

    // Again: nothing to do, nothing written twice.
    let again = s.copy(&["--repo", &s.local(), "--to", &s.repo()]);
    assert_eq!(again["backups"][0]["outcome"], "present", "{again}");
    assert_eq!(s.objects().len(), 1);

    // S3 → another directory: the bucket is the source now.
    let elsewhere = s.site.path("elsewhere");
    let elsewhere_url = format!("file://{}", elsewhere.display());
    let back = s.copy(&["--repo", &s.repo(), "--to", &elsewhere_url]);
    assert_eq!(back["backups"][0]["outcome"], "copied", "{back}");
    assert_eq!(
        back["backups"][0]["copy"]["copy_of"], id,
        "a copy of a copy names the first"
    );
    let listed = s.list();
    assert_eq!(listed.len(), 3);
    let text = stdout(&s.run(&["list"]));
    assert_eq!(
        text.matches(&format!("(copy of {id})")).count(),
        2,
        "{text}"
    );

    // The original gone and the local copy damaged: restore falls back on a good copy.
    let original_path = original["path"].as_str().unwrap().to_owned();
    let local_copy = back["backups"][0]["copy"]["path"]
        .as_str()
        .unwrap()
        .to_owned();
    flip_middle(std::path::Path::new(&local_copy));
    std::fs::remove_file(&original_path).unwrap();
    let check = s.run(&["restore", &local_copy, "--check", "--json"]);
    ok(&check);
    let check: Value = serde_json::from_str(&stdout(&check)).unwrap();
    assert_eq!(check["tables"][0]["rows"], 2000, "{check}");
    assert_eq!(
        code(&s.run(&["verify", &local_copy])),
        4,
        "the local copy is damaged"
    );
    let restored = s
        .site
        .audit()
        .into_iter()
        .rev()
        .find(|e| e.entry.action == pgseal_store::Action::Restore)
        .unwrap();
    let details: Value = serde_json::from_str(&restored.entry.details).unwrap();
    assert!(restored.entry.success);
    assert_eq!(details["restored_from"], in_bucket.as_str(), "{details}");
    assert_eq!(check["from_copy"], in_bucket.as_str(), "{check}");
    assert_eq!(
        details["failed_copies"].as_array().unwrap().len(),
        2,
        "{details}"
    );

    // Restoring the deleted original by name works the same way.
    let check = s.run(&["restore", &original_path, "--check"]);
    ok(&check);
    assert!(
        stderr(&check).contains("trying its copy"),
        "{}",
        stderr(&check)
    );
}

#[test]
fn a_copy_that_does_not_verify_is_deleted_never_catalogued_and_audited() {
    let s = S3Site::new("pgseal-cli-copy-bad");
    let db = s.sample_db("s3copybad");
    let original = s.backup_into(&db, &s.local());
    flip_middle(std::path::Path::new(original["path"].as_str().unwrap()));
    let out = s.run(&["copy", "--repo", &s.local(), "--to", &s.repo()]);
    assert_ne!(code(&out), 0);
    assert!(stdout(&out).contains("FAILED"), "{}", stdout(&out));
    assert!(stderr(&out).contains("did not verify"), "{}", stderr(&out));
    assert!(s.objects().is_empty(), "{:?}", s.objects());
    assert!(s.uploads().is_empty());
    assert_eq!(s.list().len(), 1);
    // The backup's entry and the run's, both failed.
    let failed: Vec<Option<String>> = s
        .site
        .audit()
        .into_iter()
        .filter(|e| e.entry.action == pgseal_store::Action::Copy && !e.entry.success)
        .map(|e| e.entry.backup_file)
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(
        failed[0].as_deref(),
        original["path"].as_str(),
        "{failed:?}"
    );
}

#[test]
fn a_copy_killed_after_writing_is_verified_and_adopted_by_the_next_run() {
    let s = S3Site::new("pgseal-cli-copy-kill");
    let db = s.sample_db("s3copykill");
    s.backup_into(&db, &s.local());
    let mut c = s.site.direct();
    c.args(["copy", "--repo", &s.local(), "--to", &s.repo()]);
    common::kill_at(c, "copy:written");
    assert_eq!(s.objects().len(), 1, "written, never catalogued");
    assert_eq!(s.list().len(), 1);
    let report = s.copy(&["--repo", &s.local(), "--to", &s.repo()]);
    assert_eq!(report["backups"][0]["outcome"], "adopted", "{report}");
    assert_eq!(s.objects().len(), 1, "not written twice");
    assert_eq!(s.list().len(), 2);
}

#[test]
fn backup_copy_to_and_prune_keeps_its_retention_in_each_repository() {
    let s = S3Site::new("pgseal-cli-copy-prune");
    let db = s.sample_db("s3copyprune");
    let elsewhere = format!("file://{}", s.site.path("elsewhere").display());
    let first = s.backup_into(&db, &s.local());
    s.copy(&["--repo", &s.local(), "--to", &s.repo()]);
    s.copy(&["--repo", &s.local(), "--to", &elsewhere]);
    let out = s.run(&[
        "backup",
        &db,
        "--user",
        "system_backup",
        "--repo",
        &s.local(),
        "--copy-to",
        &s.repo(),
    ]);
    ok(&out);
    assert!(stdout(&out).contains("verified"), "{}", stdout(&out));
    assert_eq!(s.objects().len(), 2);
    // The newest backup's copy in another directory of this host is catalogued after it.
    s.copy(&["--repo", &s.local(), "--to", &elsewhere]);
    assert_eq!(s.list().len(), 6);
    let newest = s
        .list()
        .iter()
        .map(|b| b["path"].as_str().unwrap().to_owned())
        .filter(|p| std::path::Path::new(p).starts_with(s.site.path("backups")))
        .max()
        .unwrap();

    // The local directory keeps its newest; the copies elsewhere are not its to count or judge.
    let out = s.run(&[
        "prune",
        "--keep-last",
        "1",
        "--yes",
        "--repo",
        &s.local(),
        "--json",
    ]);
    ok(&out);
    assert!(!std::path::Path::new(first["path"].as_str().unwrap()).exists());
    assert!(std::path::Path::new(&newest).exists(), "{newest}");
    assert_eq!(common::listing(&s.site.path("elsewhere")).len(), 2);
    assert_eq!(s.objects().len(), 2);
    // The bucket keeps its newest.
    ok(&s.run(&["prune", "--keep-last", "1", "--yes"]));
    assert_eq!(s.objects().len(), 1);
    let live: Vec<String> = s
        .list()
        .iter()
        .map(|b| b["location"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(live.len(), 4, "{live:?}");
    assert_eq!(
        live.iter().filter(|l| l.starts_with("s3://")).count(),
        1,
        "{live:?}"
    );
}
