//! The shared cluster: one per test binary, usable from every test, gone after the process.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::{assert_cleaned_up, cluster_dir, postmaster_pid, read_child_values, spawn_child_test};
use pgseal_testkit::TestCluster;

/// The port the first of the two tests below saw.
static PORT: OnceLock<u16> = OnceLock::new();

fn use_shared(table: &str) {
    let cluster = TestCluster::shared();
    assert!(std::ptr::eq(cluster, TestCluster::shared()));
    assert_eq!(*PORT.get_or_init(|| cluster.port()), cluster.port());
    let db = cluster.create_database(table).unwrap();
    let out = cluster
        .psql(
            &db,
            &format!("CREATE TABLE {table} (x int); INSERT INTO {table} VALUES (42); SELECT x FROM {table};"),
        )
        .unwrap();
    assert_eq!(out.trim(), "42");
}

#[test]
fn shared_from_one_test() {
    use_shared("one");
}

#[test]
fn shared_from_another_test() {
    use_shared("another");
}

#[test]
fn shared_cluster_is_gone_after_the_process_exits() {
    let mut child = spawn_child_test("child_process", "shared-then-exit", &[]);
    let values = read_child_values(&mut child, &["TESTKIT_DATA", "TESTKIT_PID"]);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let data_dir = std::path::PathBuf::from(&values[0]);
    let postmaster: u32 = values[1].parse().unwrap();
    // The static is never dropped; the watchdog cleans up right after the exit.
    assert_cleaned_up(&cluster_dir(&data_dir), postmaster, Duration::from_secs(30));
}

#[test]
fn shared_cluster_is_gone_after_the_process_is_killed() {
    let mut child = spawn_child_test("child_process", "shared-then-sleep", &[]);
    let values = read_child_values(&mut child, &["TESTKIT_DATA", "TESTKIT_PID"]);
    let data_dir = std::path::PathBuf::from(&values[0]);
    let postmaster: u32 = values[1].parse().unwrap();
    assert!(common::alive(postmaster));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_cleaned_up(&cluster_dir(&data_dir), postmaster, Duration::from_secs(30));
}

/// Not a test of its own: the body of the child processes above, selected by
/// `PGSEAL_TESTKIT_CHILD`. Without it (a normal run) it does nothing.
#[test]
fn child_process() {
    let Ok(mode) = std::env::var("PGSEAL_TESTKIT_CHILD") else {
        return;
    };
    let cluster = TestCluster::shared();
    let db = cluster.create_database("child").unwrap();
    cluster.psql(&db, "SELECT 1").unwrap();
    println!("TESTKIT_DATA={}", cluster.data_dir().display());
    println!("TESTKIT_PID={}", postmaster_pid(cluster.data_dir()));
    match mode.as_str() {
        "shared-then-exit" => {}
        "shared-then-sleep" => std::thread::sleep(Duration::from_secs(120)),
        other => panic!("unknown PGSEAL_TESTKIT_CHILD mode {other}"),
    }
}
