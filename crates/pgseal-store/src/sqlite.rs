//! The embedded backend: one SQLite file, WAL journal, a busy timeout so concurrent pgseal
//! processes wait for each other instead of failing.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, ToSql};

use crate::db::{Db, Dialect, Row, Value};
use crate::error::{Result, StoreError};

pub struct SqliteDb {
    conn: Connection,
}

fn err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, msg) = &e
        && f.code == ErrorCode::ConstraintViolation
    {
        return StoreError::Conflict(msg.clone().unwrap_or_else(|| e.to_string()));
    }
    StoreError::Backend {
        backend: "sqlite",
        message: e.to_string(),
    }
}

/// How long a connection waits for another to let go of the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Puts the database in WAL mode (it stays so). Switching needs the database to itself, and
/// SQLite does not wait for that through the busy handler: several processes opening a new
/// store at once would see "database is locked". So this waits itself, as the busy timeout would.
fn use_wal(conn: &Connection) -> Result<()> {
    let started = std::time::Instant::now();
    loop {
        let mode: std::result::Result<String, _> =
            conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0));
        match mode {
            Ok(_) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == ErrorCode::DatabaseBusy && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(err(e)),
        }
    }
}

impl SqliteDb {
    /// Opens the database file at `path`; creates it only if `create` (else a missing file is an
    /// error, and SQLite is told not to create one either).
    pub fn open(path: &Path, create: bool) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(StoreError::Backend {
                backend: "sqlite",
                message: format!("directory {} does not exist", dir.display()),
            });
        }
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(path, flags).map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        use_wal(&conn)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        // The store holds encrypted private keys: keep the file (and its WAL) private.
        restrict_permissions(path);
        Ok(SqliteDb { conn })
    }
}

impl SqliteDb {
    /// Opens an existing store for reading only: nothing is created, changed or locked for
    /// writing (no journal-mode change, no permission change, no migration), so a store the
    /// caller may read but not write — its file or its directory read-only — can be listed.
    ///
    /// A WAL database normally needs its `-shm` file, which a reader who cannot write the
    /// directory cannot create. Then, if no `-wal` file exists (every committed change is in
    /// the main file), the file is read as immutable; a writer that starts meanwhile may make
    /// such a read fail, never change what it reads into something else.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(StoreError::Backend {
                backend: "sqlite",
                message: format!("no store at {}", path.display()),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        let probe = |c: &Connection| {
            c.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
        };
        let first = match probe(&conn) {
            Ok(_) => return Ok(SqliteDb { conn }),
            Err(e) => e,
        };
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        if Path::new(&wal).exists() {
            return Err(StoreError::Backend {
                backend: "sqlite",
                message: format!(
                    "{first} (reading {} needs write access to its directory while {} exists)",
                    path.display(),
                    Path::new(&wal).display()
                ),
            });
        }
        let uri = format!("file:{}?immutable=1", uri_path(path));
        let conn =
            Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI).map_err(err)?;
        probe(&conn).map_err(err)?;
        Ok(SqliteDb { conn })
    }
}

/// A path percent-encoded for an SQLite `file:` URI.
fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
    }
}

struct Param<'a>(&'a Value);

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Value::Null => ToSqlOutput::Owned(rusqlite::types::Value::Null),
            Value::Int(v) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(*v)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Bool(b) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(i64::from(*b))),
            Value::Time(t) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(t.millis())),
        })
    }
}

fn params(values: &[Value]) -> Vec<Param<'_>> {
    values.iter().map(Param).collect()
}

impl Db for SqliteDb {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, values: &[Value]) -> Result<u64> {
        let p = params(values);
        self.conn
            .execute(sql, rusqlite::params_from_iter(p.iter()))
            .map(|n| n as u64)
            .map_err(err)
    }

    fn query(&mut self, sql: &str, values: &[Value]) -> Result<Vec<Row>> {
        let p = params(values);
        let mut stmt = self.conn.prepare_cached(sql).map_err(err)?;
        let columns = stmt.column_count();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(p.iter()), |row| {
                (0..columns)
                    .map(|i| {
                        Ok(match row.get_ref(i)? {
                            ValueRef::Null => Value::Null,
                            ValueRef::Integer(v) => Value::Int(v),
                            ValueRef::Real(v) => Value::Int(v as i64),
                            ValueRef::Text(t) => {
                                Value::Text(String::from_utf8_lossy(t).into_owned())
                            }
                            ValueRef::Blob(b) => {
                                Value::Text(String::from_utf8_lossy(b).into_owned())
                            }
                        })
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map(Row)
            })
            .map_err(err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(err)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        self.conn.execute_batch(sql).map_err(err)
    }

    fn begin_write(&mut self) -> Result<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(err)
    }

    fn commit(&mut self) -> Result<()> {
        self.conn.execute_batch("COMMIT").map_err(err)
    }

    fn rollback(&mut self) -> Result<()> {
        self.conn.execute_batch("ROLLBACK").map_err(err)
    }

    fn lock_for_migration(&mut self) -> Result<()> {
        // BEGIN IMMEDIATE already holds the database's single write lock.
        Ok(())
    }

    fn lock_audit_chain(&mut self) -> Result<()> {
        Ok(())
    }
}
