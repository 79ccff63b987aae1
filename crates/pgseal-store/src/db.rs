//! The one interface both backends implement: run a statement, run a query, in a transaction.
//!
//! Everything above it — the schema, the queries, the rules — is written once. SQL uses `$1`,
//! `$2`… placeholders, which SQLite and PostgreSQL both accept.

use pgseal_core::time::Timestamp;

use crate::error::{Result, StoreError};

/// A value passed to or read from a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// An integer (any width).
    Int(i64),
    /// Text (JSON included).
    Text(String),
    /// A boolean (SQLite keeps it as 0 or 1).
    Bool(bool),
    /// A point in time (SQLite keeps it as milliseconds since the epoch).
    Time(Timestamp),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<Timestamp> for Value {
    fn from(v: Timestamp) -> Self {
        Value::Time(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// One result row. Getters accept either backend's representation (SQLite keeps booleans and
/// times as integers).
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::Corrupt(format!("row has no column {i}")))
    }

    /// Column `i`, an integer that must not be `NULL`.
    pub fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {i} is NULL")))
    }

    /// Column `i`, an integer or `NULL`.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: expected an integer, got {other:?}"
            ))),
        }
    }

    /// Column `i`, text that must not be `NULL`.
    pub fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {i} is NULL")))
    }

    /// Column `i`, text or `NULL`.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.clone())),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: expected text, got {other:?}"
            ))),
        }
    }

    /// Column `i`, a boolean that must not be `NULL`.
    pub fn bool(&self, i: usize) -> Result<bool> {
        self.opt_bool(i)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {i} is NULL")))
    }

    /// Column `i`, a boolean or `NULL`.
    pub fn opt_bool(&self, i: usize) -> Result<Option<bool>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Bool(v) => Ok(Some(*v)),
            Value::Int(v) => Ok(Some(*v != 0)),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: expected a boolean, got {other:?}"
            ))),
        }
    }

    /// Column `i`, a time that must not be `NULL`.
    pub fn time(&self, i: usize) -> Result<Timestamp> {
        self.opt_time(i)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {i} is NULL")))
    }

    /// Column `i`, a time or `NULL`.
    pub fn opt_time(&self, i: usize) -> Result<Option<Timestamp>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Time(t) => Ok(Some(*t)),
            Value::Int(ms) => Ok(Some(Timestamp(*ms))),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: expected a time, got {other:?}"
            ))),
        }
    }
}

/// The SQL flavour, for the few places the two databases differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Dialect {
    /// Fills the type placeholders of a migration: `{id}`, `{ts}`, `{json}`, `{bigint}`.
    pub fn render(self, sql: &str) -> String {
        let (id, ts, json) = match self {
            Dialect::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER", "TEXT"),
            Dialect::Postgres => ("BIGSERIAL PRIMARY KEY", "TIMESTAMPTZ", "JSONB"),
        };
        sql.replace("{id}", id)
            .replace("{ts}", ts)
            .replace("{json}", json)
            .replace("{bigint}", "BIGINT")
    }
}

/// A connection to one backend.
pub trait Db: Send {
    /// Which database this is.
    fn dialect(&self) -> Dialect;

    /// Runs one statement; returns the number of rows changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64>;

    /// Runs a query and returns all its rows.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;

    /// Runs several statements with no parameters (migrations).
    fn batch(&mut self, sql: &str) -> Result<()>;

    /// Starts a transaction that will write (SQLite takes the write lock now, so two writers
    /// queue instead of deadlocking on upgrade).
    fn begin_write(&mut self) -> Result<()>;
    /// Commits the transaction [`begin_write`](Self::begin_write) started.
    fn commit(&mut self) -> Result<()>;
    /// Rolls back the transaction [`begin_write`](Self::begin_write) started.
    fn rollback(&mut self) -> Result<()>;

    /// Takes the lock that serializes migrations between processes, inside a transaction.
    fn lock_for_migration(&mut self) -> Result<()>;

    /// Takes the lock that serializes audit appends (so the chain never forks), inside a
    /// transaction.
    fn lock_audit_chain(&mut self) -> Result<()>;
}

/// Runs `f` inside a write transaction: commits on `Ok`, rolls back on `Err`.
pub fn in_transaction<T>(db: &mut dyn Db, f: impl FnOnce(&mut dyn Db) -> Result<T>) -> Result<T> {
    db.begin_write()?;
    match f(db) {
        Ok(v) => {
            db.commit()?;
            Ok(v)
        }
        Err(e) => {
            let _ = db.rollback();
            Err(e)
        }
    }
}
