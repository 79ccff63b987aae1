//! Progress bars: drawn on a terminal (a pseudo-terminal `script` opens), never anywhere else,
//! and `--json` output clean either way.

mod common;

use std::path::Path;
use std::process::Command;

use common::{ok, run_in, stderr};
use pgseal_testkit::TestCluster;

/// A sealed file of `len` bytes of data, with the keys to check it, made without a store.
fn sealed(dir: &Path, len: usize) -> std::path::PathBuf {
    ok(&run_in(
        dir,
        &["keygen", "--out", "server", "--key-size", "2048"],
    ));
    ok(&run_in(
        dir,
        &["keygen", "--out", "alice", "--key-size", "2048"],
    ));
    std::fs::write(dir.join("data.bin"), common::data(len)).unwrap();
    ok(&run_in(
        dir,
        &[
            "encrypt",
            "data.bin",
            "-o",
            "data.pgseal",
            "--compress",
            "none",
            "--recipient",
            "server.pub.pem",
            "--sign-key",
            "alice.key.pem",
            "--username",
            "alice",
        ],
    ));
    dir.join("data.pgseal")
}

/// Nothing a terminal would draw: no carriage return, no escape sequence.
fn assert_undrawn(text: &str) {
    assert!(
        !text.contains('\r') && !text.contains('\x1b'),
        "drawn where no terminal is: {text:?}"
    );
}

#[test]
fn json_stays_clean_and_nothing_is_drawn_off_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    sealed(tmp.path(), 8 << 20);
    let o = run_in(
        tmp.path(),
        &[
            "verify",
            "data.pgseal",
            "--signer",
            "alice.pub.pem",
            "--json",
        ],
    );
    ok(&o);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["valid"], true, "{report}");
    assert_undrawn(&stderr(&o));
    assert_undrawn(&String::from_utf8_lossy(&o.stdout));

    // A backup, whose transfer is a stream of unknown length.
    let cluster = TestCluster::shared();
    let db = cluster.create_database("progress").unwrap();
    cluster
        .psql(
            &db,
            "CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 50000) g;",
        )
        .unwrap();
    let env = common::cluster_env(cluster);
    let site = common::Site::with_env(env);
    let o = site.run(&["backup", &db, "--user", "system_backup", "--json"]);
    ok(&o);
    let record: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(record["database"], db.as_str(), "{record}");
    assert_undrawn(&stderr(&o));
    let path = record["path"].as_str().unwrap().to_owned();
    let o = site.run(&["verify", &path, "--json"]);
    ok(&o);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["valid"], true, "{report}");
    assert_undrawn(&stderr(&o));
}

#[test]
fn a_bar_with_rate_and_eta_is_drawn_on_a_terminal() {
    let script = Command::new("script").arg("--version").output().expect(
        "script (util-linux/bsdutils) is needed to give pgseal a terminal; scripts/test.sh \
         installs it",
    );
    assert!(script.status.success());
    let tmp = tempfile::tempdir().unwrap();
    sealed(tmp.path(), 96 << 20);
    let command = format!(
        "{} verify data.pgseal --signer alice.pub.pem",
        env!("CARGO_BIN_EXE_pgseal")
    );
    // `script` runs the command on a new pseudo-terminal and copies what it drew to its own
    // standard output.
    let o = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .current_dir(tmp.path())
        .env("TERM", "xterm")
        .env("XDG_CONFIG_HOME", "/nonexistent-pgseal-test")
        .env_remove("PGSEAL_CONFIG")
        .output()
        .unwrap();
    ok(&o);
    let drawn = String::from_utf8_lossy(&o.stdout);
    assert!(drawn.contains("data.pgseal ["), "no bar: {drawn:?}");
    assert!(drawn.contains("ETA"), "no ETA: {drawn:?}");
    assert!(
        drawn.contains("MiB/s") || drawn.contains("KiB/s"),
        "no rate: {drawn:?}"
    );
    assert!(
        drawn.contains("/96.00 MiB") || drawn.contains("/96.0"),
        "no total: {drawn:?}"
    );
    assert!(drawn.contains("valid"), "{drawn:?}");
}
