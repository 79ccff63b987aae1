//! The store suite on SQLite.

mod suite;

use pgseal_store::{NoStoreReason, Store, StoreError, StoreUrl};

struct Sqlite;

impl suite::Backend for Sqlite {
    fn fresh() -> StoreUrl {
        // Leaked on purpose: the directory must outlive every connection the test opens.
        let dir = tempfile::tempdir().unwrap().keep();
        StoreUrl::Sqlite(dir.join("pgseal.db"))
    }

    const ABSENT: NoStoreReason = NoStoreReason::Missing;

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

#[test]
fn a_zero_byte_or_foreign_file_is_not_a_store() {
    let url = Sqlite::fresh();
    let StoreUrl::Sqlite(path) = &url else {
        unreachable!()
    };
    std::fs::write(path, b"").unwrap();
    assert!(matches!(
        Store::open_existing(&url),
        Err(StoreError::NoStore(e)) if e.reason == NoStoreReason::Empty
    ));
    assert_eq!(
        std::fs::metadata(path).unwrap().len(),
        0,
        "it was written to"
    );
    // Someone else's SQLite database (or a store whose tables were dropped) is no store either.
    std::fs::remove_file(path).unwrap();
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch("CREATE TABLE notes (t TEXT); INSERT INTO notes VALUES ('x');")
        .unwrap();
    assert!(matches!(
        Store::open_existing(&url),
        Err(StoreError::NoStore(e)) if e.reason == NoStoreReason::NoSchema
    ));
}
