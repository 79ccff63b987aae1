//! The store suite on SQLite.

mod suite;

use pgseal_store::{Store, StoreUrl};

struct Sqlite;

impl suite::Backend for Sqlite {
    fn fresh() -> StoreUrl {
        // Leaked on purpose: the directory must outlive every connection the test opens.
        let dir = tempfile::tempdir().unwrap().keep();
        StoreUrl::Sqlite(dir.join("pgseal.db"))
    }

    fn raw(url: &StoreUrl, sql: &str) {
        let StoreUrl::Sqlite(path) = url else {
            unreachable!()
        };
        rusqlite::Connection::open(path)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
    }
}

use suite::Backend as _;

backend_suite!(Sqlite);

#[test]
fn the_store_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let url = Sqlite::fresh();
    let StoreUrl::Sqlite(path) = &url else {
        unreachable!()
    };
    pgseal_store::Store::open(&url).unwrap();
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "mode {mode:o}");
}
