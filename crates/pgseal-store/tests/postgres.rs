//! The store suite on a real PostgreSQL that the test starts itself.

mod suite;

use pgseal_store::{NoStoreReason, Store, StoreError, StoreUrl};
use pgseal_testkit::TestCluster;

struct Postgres;

impl suite::Backend for Postgres {
    fn fresh() -> StoreUrl {
        let cluster = TestCluster::shared();
        let db = cluster
            .create_database("store")
            .expect("create a test database");
        StoreUrl::Postgres(cluster.url(&db))
    }

    const ABSENT: NoStoreReason = NoStoreReason::NoSchema;

    fn raw(url: &StoreUrl, sql: &str) {
        let StoreUrl::Postgres(u) = url else {
            unreachable!()
        };
        let db = u.split('?').next().unwrap().rsplit('/').next().unwrap();
        TestCluster::shared().psql(db, sql).unwrap();
    }
}

use suite::Backend as _;

backend_suite!(Postgres);

#[test]
fn the_database_itself_allows_one_active_server_key() {
    // Bypassing pgseal entirely: the partial unique index refuses a second active key.
    let cluster = TestCluster::shared();
    let url = Postgres::fresh();
    pgseal_store::Store::open(&url).unwrap();
    let StoreUrl::Postgres(u) = &url else {
        unreachable!()
    };
    let db = u
        .split('?')
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let insert = "INSERT INTO pgseal_server_keys (fingerprint, private_key_pem, public_key_pem, \
                  key_size, status, created_at) VALUES ('{fp}', 'x', 'y', 4096, 'active', now());";
    cluster.psql(&db, &insert.replace("{fp}", "a")).unwrap();
    let err = cluster.psql(&db, &insert.replace("{fp}", "b")).unwrap_err();
    assert!(
        err.to_string().contains("pgseal_server_keys_one_active"),
        "{err}"
    );
}

#[test]
fn an_unreachable_database_is_a_clear_error() {
    let err = match pgseal_store::Store::open(&StoreUrl::Postgres(
        "postgres://nobody@/nowhere?host=/nonexistent-socket-dir&port=1".into(),
    )) {
        Ok(_) => panic!("connected to nothing"),
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(text.starts_with("store (postgres)"), "{text}");
}

/// The database a test made for a store URL (for psql behind pgseal's back).
fn db_name(url: &StoreUrl) -> String {
    let StoreUrl::Postgres(u) = url else {
        unreachable!()
    };
    u.split('?')
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn a_database_without_the_legacy_tables_is_not_taken_for_the_legacy_system() {
    let url = Postgres::fresh();
    let err = pgseal_store::django::read(&url.to_string_unredacted()).unwrap_err();
    match err {
        StoreError::NotFound(m) => {
            assert!(m.starts_with("auth_user not found"), "{m}");
            assert!(m.contains("legacy system's database"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

/// Told apart by the database's error code, not its message: a table that is there with a
/// column missing is not "not found" (nor is any other "does not exist", in any language).
#[test]
fn a_legacy_table_missing_a_column_is_not_called_missing() {
    let url = Postgres::fresh();
    TestCluster::shared()
        .psql(
            &db_name(&url),
            "CREATE TABLE auth_user (id integer PRIMARY KEY, username text NOT NULL);",
        )
        .unwrap();
    let err = pgseal_store::django::read(&url.to_string_unredacted()).unwrap_err();
    match &err {
        StoreError::Backend { message, .. } => {
            assert!(message.contains("is_active"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.to_string().contains("not found"), "{err}");
}
