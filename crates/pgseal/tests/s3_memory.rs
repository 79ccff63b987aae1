//! The peak resident set of a multipart S3 backup (issue 13: at most 64 MiB whatever the
//! database size, the part size configurable): `pgseal backup` of a database holding 64 MiB of
//! random bytes — incompressible, so the object is about as large: 14 parts — into a bucket on
//! a real Garage engine (pgseal-testkit's `TestGarage`) from a real PostgreSQL cluster.
//!
//! The parts are S3's minimum, 5 MiB (`PGSEAL_S3_PART_SIZE_MIB`), not the default 8 MiB: the
//! binary under test is a debug build, whose code alone keeps about 7 MiB more resident than the
//! release build's. With 8 MiB parts the debug build peaks at 60-63 MiB (the release build at
//! 53-58 MiB: docs/BENCHMARKS.md), too close to the bound to test against; with 5 MiB parts at
//! 54-55 MiB, where the writer as it was (a new buffer for every part, freed on the runtime's
//! thread, and huge pages) peaked at 76-77 MiB.
//!
//! The test also checks, while the backup runs, that pgseal turned transparent huge pages off
//! for itself (`THP_enabled: 0` in `/proc/PID/status`).
//!
//! The peak is read with
//! `getrusage(RUSAGE_CHILDREN)`, whose `ru_maxrss` is the largest peak of any child this process
//! (or they) waited for: after the backup it bounds pgseal's (and its pg_dump's) from above, and
//! the reading before it shows that no earlier child (initdb, psql, `pgseal init`) set it. In a
//! test binary of its own, so that nothing else runs beside it.

mod common;

use std::ffi::OsString;
use std::process::Stdio;

use common::{ok, stdout};
use nix::sys::resource::{UsageWho, getrusage};
use pgseal_testkit::{TestCluster, TestGarage};
use serde_json::Value;

/// Random bytes in the database.
const DATA_MIB: usize = 64;
/// The bound the issue sets.
const PEAK_MIB: u64 = 64;
/// The part size: S3's minimum (see above).
const PART_MIB: u64 = 5;

#[test]
fn a_multipart_backup_of_64_mib_of_random_data_in_5_mib_parts_peaks_below_64_mib() {
    let g = TestGarage::shared();
    let bucket = format!("pgseal-rss-{:x}", std::process::id());
    g.create_bucket(&bucket).unwrap();
    let cluster = TestCluster::shared();
    let db = cluster.create_database("rss").unwrap();
    cluster
        .psql(
            &db,
            &format!(
                "CREATE EXTENSION pgcrypto;
                 CREATE TABLE noise AS
                     SELECT gen_random_bytes(1024) AS b FROM generate_series(1, {});",
                DATA_MIB * 1024
            ),
        )
        .unwrap();

    let mut env: Vec<(OsString, OsString)> = cluster
        .env()
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    env.extend([
        ("POSTGRESQL_BIN_PATH".into(), cluster.bin_dir().into()),
        ("AWS_ENDPOINT_URL".into(), g.endpoint().into()),
        ("AWS_REGION".into(), g.region().into()),
        ("AWS_ACCESS_KEY_ID".into(), g.access_key_id().into()),
        ("AWS_SECRET_ACCESS_KEY".into(), g.secret_access_key().into()),
        ("AWS_CONFIG_FILE".into(), "/nonexistent/aws-config".into()),
        (
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            "/nonexistent/aws-credentials".into(),
        ),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        (
            "PGSEAL_REPOSITORY".into(),
            format!("s3://{bucket}/site/backups").into(),
        ),
        (
            "PGSEAL_S3_PART_SIZE_MIB".into(),
            PART_MIB.to_string().into(),
        ),
    ]);
    let site = common::Site::with_env(env);

    let children_peak_mib =
        || getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss() as u64 / 1024;
    let before_mib = children_peak_mib();
    assert!(
        before_mib < PEAK_MIB,
        "a child before the backup already peaked at {before_mib} MiB: nothing to measure"
    );
    let mut child = site
        .cmd()
        .args(["backup", &db, "--user", "system_backup", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pgseal");
    // While it runs: it asked for no transparent huge pages. With them (and the buffers
    // reused) it peaked at 63 and 67 MiB here: the bound alone does not catch them every time.
    let status = format!("/proc/{}/status", child.id());
    let mut huge_pages_off = false;
    while child.try_wait().unwrap().is_none() {
        let text = std::fs::read_to_string(&status).unwrap_or_default();
        if text
            .lines()
            .any(|l| l.starts_with("Name:") && l.ends_with("pgseal"))
            && text.lines().any(|l| l == "THP_enabled:\t0")
        {
            huge_pages_off = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    ok(&out);
    let peak_mib = children_peak_mib();
    assert!(
        huge_pages_off,
        "pgseal ran with transparent huge pages allowed (/proc/PID/status THP_enabled)"
    );

    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let size = report["size_bytes"].as_u64().unwrap();
    assert!(
        size >= (DATA_MIB as u64) << 20,
        "the object ({size} bytes) should be as large as the random data: {} parts",
        DATA_MIB as u64 / PART_MIB
    );
    eprintln!(
        "peak RSS at most {peak_mib} MiB backing up {size} bytes into a multipart upload \
         (children before it: {before_mib} MiB)"
    );
    assert!(
        peak_mib <= PEAK_MIB,
        "a multipart backup peaked at {peak_mib} MiB (at most {PEAK_MIB} MiB)"
    );
}
