//! The store's rules, written once over [`Db`]: [`Store`] and how it is opened here, each
//! concern's queries (and the mapping of its rows) in a module of its own.

mod audit;
mod catalog;
mod import;
mod server_keys;
mod user_keys;
mod users;

use pgseal_core::Fingerprint;

use crate::db::{Db, Row};
use crate::error::{Result, StoreError};
use crate::postgres::PostgresDb;
use crate::sqlite::SqliteDb;
use crate::{NoStoreReason, StoreUrl, migrations};

/// An open, migrated store.
pub struct Store {
    db: Box<dyn Db>,
    url: StoreUrl,
}

impl Store {
    /// Opens and migrates the store at `url`, **creating** it if there is none (a new SQLite
    /// file, or the schema in an empty PostgreSQL database). For what makes a store: `pgseal
    /// init`, `import-django`, tests. Everything else uses [`open_existing`](Self::open_existing).
    pub fn open(url: &StoreUrl) -> Result<Self> {
        let mut db: Box<dyn Db> = match url {
            StoreUrl::Sqlite(path) => Box::new(SqliteDb::open(path, true)?),
            StoreUrl::Postgres(conn) => Box::new(PostgresDb::connect(conn)?),
        };
        migrations::migrate(db.as_mut())?;
        Ok(Store {
            db,
            url: url.clone(),
        })
    }

    /// Opens (and migrates) a store that exists, refusing with [`StoreError::NoStore`] a
    /// missing or 0-byte SQLite file and a database that holds no pgseal schema: a store that
    /// was deleted, truncated or emptied must be noticed, never silently replaced by a new one.
    pub fn open_existing(url: &StoreUrl) -> Result<Self> {
        let mut db: Box<dyn Db> = match url {
            StoreUrl::Sqlite(path) => {
                sqlite_file_present(url, path)?;
                Box::new(SqliteDb::open(path, false)?)
            }
            StoreUrl::Postgres(conn) => Box::new(PostgresDb::connect(conn)?),
        };
        if migrations::schema_version(db.as_mut())?.is_none() {
            return Err(absent(url, NoStoreReason::NoSchema));
        }
        migrations::migrate(db.as_mut())?;
        Ok(Store {
            db,
            url: url.clone(),
        })
    }

    /// Opens an existing, current store for reading only: nothing is created, migrated or
    /// written (a SQLite file is opened read-only, a PostgreSQL session is read-only), so it
    /// works where the caller may read the store but not write it. Refuses like
    /// [`open_existing`](Self::open_existing), and a schema that would need an upgrade.
    pub fn open_read_only(url: &StoreUrl) -> Result<Self> {
        let mut db: Box<dyn Db> = match url {
            StoreUrl::Sqlite(path) => {
                sqlite_file_present(url, path)?;
                Box::new(SqliteDb::open_read_only(path)?)
            }
            StoreUrl::Postgres(conn) => Box::new(PostgresDb::connect_read_only(conn)?),
        };
        let (found, known) = (
            migrations::schema_version(db.as_mut())?,
            migrations::latest(),
        );
        match found {
            None => return Err(absent(url, NoStoreReason::NoSchema)),
            Some(found) if found > known => {
                return Err(StoreError::SchemaTooNew { found, known });
            }
            Some(found) if found < known => {
                return Err(StoreError::SchemaTooOld { found, known });
            }
            Some(_) => {}
        }
        Ok(Store {
            db,
            url: url.clone(),
        })
    }

    /// Where the store is.
    pub fn url(&self) -> &StoreUrl {
        &self.url
    }
}

/// The one row a statement returns (an `INSERT … RETURNING`, an `UPDATE … RETURNING`).
fn one<T>(rows: Vec<Row>, f: impl Fn(&Row) -> Result<T>) -> Result<T> {
    rows.first()
        .map(f)
        .transpose()?
        .ok_or_else(|| StoreError::Corrupt("a statement returned no row".into()))
}

/// A fingerprint read from a row.
fn fingerprint(s: String) -> Result<Fingerprint> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("bad fingerprint {s}")))
}

fn absent(url: &StoreUrl, reason: NoStoreReason) -> StoreError {
    StoreError::NoStore(crate::NoStore {
        store: url.to_string(),
        reason,
    })
}

/// A SQLite store file must exist and hold something before it is opened without creating.
fn sqlite_file_present(url: &StoreUrl, path: &std::path::Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() == 0 => Err(absent(url, NoStoreReason::Empty)),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(absent(url, NoStoreReason::Missing))
        }
        Err(e) => Err(StoreError::Backend {
            backend: "sqlite",
            message: format!("{}: {e}", path.display()),
        }),
    }
}
