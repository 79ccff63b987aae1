//! The store suite on a real PostgreSQL that the test starts itself.

mod suite;

use pgseal_store::{NoStoreReason, Store, StoreUrl};
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
