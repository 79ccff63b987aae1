//! Own clusters: start, connect every documented way, drop, and nothing remains.

mod common;

use std::time::Duration;

use common::{
    assert_cleaned_up, cluster_dir, output_of, postmaster_pid, psql, read_child_values,
    spawn_child_test,
};
use pgseal_testkit::{TestCluster, TestkitError};

#[test]
fn start_connect_and_drop_leaves_nothing_behind() {
    let cluster = TestCluster::start().unwrap();
    let db = cluster.create_database("basic").unwrap();

    // psql() itself.
    assert_eq!(cluster.psql(&db, "SELECT 1").unwrap(), "1\n");
    assert_eq!(
        cluster
            .psql(
                &db,
                "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2); SELECT sum(x) FROM t;"
            )
            .unwrap()
            .trim(),
        "3"
    );

    // The conninfo string, with psql -d.
    let who = "SELECT current_database() || '|' || current_user";
    let expected = format!("{db}|{}", cluster.superuser());
    assert_eq!(
        output_of(psql(cluster.bin_dir()).args(["-d", &cluster.conninfo(&db), "-c", who])),
        expected
    );
    // The URL, as psql's first argument.
    assert_eq!(
        output_of(psql(cluster.bin_dir()).args([&cluster.url(&db), "-c", who])),
        expected
    );
    // PGHOST/PGPORT/PGUSER, naming only the database.
    assert_eq!(
        output_of(
            psql(cluster.bin_dir())
                .envs(cluster.env())
                .args(["-d", &db, "-c", who])
        ),
        expected
    );

    // Unix socket only, where it says, durability off.
    assert_eq!(cluster.psql(&db, "SHOW listen_addresses").unwrap(), "\n");
    assert_eq!(cluster.psql(&db, "SHOW fsync").unwrap().trim(), "off");
    assert!(
        cluster
            .socket_dir()
            .join(format!(".s.PGSQL.{}", cluster.port()))
            .exists()
    );
    assert_eq!(
        cluster.psql(&db, "SHOW port").unwrap().trim(),
        cluster.port().to_string()
    );
    assert_eq!(
        cluster.psql(&db, "SHOW server_encoding").unwrap().trim(),
        "UTF8"
    );

    // The client tools pgseal drives are there.
    for tool in ["pg_dump", "pg_restore", "psql", "createdb"] {
        assert!(cluster.bin_dir().join(tool).is_file(), "no {tool}");
    }

    let data_dir = cluster.data_dir().to_path_buf();
    let dir = cluster_dir(&data_dir);
    assert!(cluster.socket_dir().starts_with(&dir));
    assert!(cluster.log_file().exists());
    let postmaster = postmaster_pid(&data_dir);
    assert!(common::alive(postmaster));

    drop(cluster);
    assert!(!data_dir.exists(), "{} still exists", data_dir.display());
    // Drop is synchronous: everything is gone at once.
    assert_cleaned_up(&dir, postmaster, Duration::ZERO);
}

#[test]
fn psql_errors_carry_psqls_stderr_and_stop_the_script() {
    let cluster = TestCluster::shared();
    let db = cluster.create_database("errors").unwrap();
    let error = cluster
        .psql(
            &db,
            "CREATE TABLE a (x int);\nSELECT * FROM no_such_table;\nCREATE TABLE b (x int);",
        )
        .unwrap_err();
    assert!(matches!(error, TestkitError::Command { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(r#"relation "no_such_table" does not exist"#),
        "{message}"
    );
    // ON_ERROR_STOP: the statement after the error did not run.
    let tables = cluster
        .psql(&db, "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relname IN ('a', 'b')")
        .unwrap();
    assert_eq!(tables.trim(), "a");

    let error = cluster.psql("no_such_database", "SELECT 1").unwrap_err();
    assert!(error.to_string().contains("no_such_database"), "{error}");
}

#[test]
fn databases_are_unique_even_when_created_concurrently() {
    let cluster = TestCluster::shared();
    let names: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| cluster.create_database("Parallel Test!").unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    for name in &names {
        assert!(name.starts_with("parallel_test__"), "{name}");
        assert_eq!(
            cluster
                .psql(name, "SELECT current_database()")
                .unwrap()
                .trim(),
            name
        );
    }
}

#[test]
fn clusters_are_independent() {
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| TestCluster::start().unwrap());
        let b = scope.spawn(|| TestCluster::start().unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.port(), b.port());
    assert_ne!(a.socket_dir(), b.socket_dir());
    assert_ne!(a.data_dir(), b.data_dir());
    a.psql("postgres", "CREATE TABLE only_in_a (x int)")
        .unwrap();
    assert_eq!(
        a.psql(
            "postgres",
            "SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'"
        )
        .unwrap()
        .trim(),
        "1"
    );
    assert_eq!(
        b.psql(
            "postgres",
            "SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'"
        )
        .unwrap()
        .trim(),
        "0"
    );
    let (a_dir, a_pid) = (cluster_dir(a.data_dir()), postmaster_pid(a.data_dir()));
    drop(a);
    assert_cleaned_up(&a_dir, a_pid, Duration::ZERO);
    // b is untouched by a going away.
    assert_eq!(b.psql("postgres", "SELECT 1").unwrap().trim(), "1");
}

#[test]
fn missing_binaries_are_an_error_not_a_panic() {
    let mut child = spawn_child_test(
        "child_process",
        "missing-binaries",
        &[("PGSEAL_TEST_PG_BIN", "/nonexistent/pgseal-testkit")],
    );
    let [message] =
        <[String; 1]>::try_from(read_child_values(&mut child, &["TESTKIT_ERROR"])).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(message.contains("/nonexistent/pgseal-testkit"), "{message}");
    assert!(
        message.contains("install the postgresql package (apt-get install postgresql)"),
        "{message}"
    );
}

#[test]
fn a_killed_test_process_leaves_nothing_behind() {
    // An own cluster this time (not the shared one): the watchdog covers every cluster.
    let mut child = spawn_child_test("child_process", "own-then-sleep", &[]);
    let values = read_child_values(&mut child, &["TESTKIT_DATA", "TESTKIT_PID"]);
    let data_dir = std::path::PathBuf::from(&values[0]);
    let postmaster: u32 = values[1].parse().unwrap();
    assert!(data_dir.exists());
    assert!(common::alive(postmaster));
    child.kill().unwrap(); // SIGKILL: no Drop, no atexit, nothing.
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
    match mode.as_str() {
        "missing-binaries" => {
            let error = TestCluster::start().unwrap_err();
            println!("TESTKIT_ERROR={error}");
        }
        "own-then-sleep" => {
            let cluster = TestCluster::start().unwrap();
            cluster.psql("postgres", "SELECT 1").unwrap();
            println!("TESTKIT_DATA={}", cluster.data_dir().display());
            println!("TESTKIT_PID={}", postmaster_pid(cluster.data_dir()));
            std::thread::sleep(Duration::from_secs(120));
        }
        other => panic!("unknown PGSEAL_TESTKIT_CHILD mode {other}"),
    }
}
