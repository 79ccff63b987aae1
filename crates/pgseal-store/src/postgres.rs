//! The shared backend: a PostgreSQL database that many hosts' pgseal use at once.

use std::error::Error as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgseal_core::time::Timestamp;
use postgres::error::SqlState;
use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls};

use crate::db::{Db, Dialect, Row, Value};
use crate::error::{Result, StoreError};

/// A connection to a PostgreSQL database.
pub struct PostgresDb {
    client: Client,
}

fn err(e: postgres::Error) -> StoreError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        let detail = e
            .as_db_error()
            .map(|d| d.message().to_owned())
            .unwrap_or_else(|| e.to_string());
        return StoreError::Conflict(detail);
    }
    // The display of a connection error is terse ("error connecting to server"); the source
    // says why.
    let mut message = e.to_string();
    if let Some(db) = e.as_db_error() {
        message = format!("{}: {}", db.severity(), db.message());
    } else if let Some(source) = e.source() {
        message = format!("{message}: {source}");
    }
    if e.code() == Some(&SqlState::UNDEFINED_TABLE) {
        return StoreError::NoSuchTable {
            backend: "postgres",
            message,
        };
    }
    StoreError::Backend {
        backend: "postgres",
        message,
    }
}

impl PostgresDb {
    /// Connects with a `postgres://` URL or a libpq-style `key=value` string.
    pub fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, false)
    }

    /// Connects in a session where every transaction is read-only: the server refuses any
    /// write, whatever the code above asks.
    pub fn connect_read_only(url: &str) -> Result<Self> {
        Self::connect_with(url, true)
    }

    fn connect_with(url: &str, read_only: bool) -> Result<Self> {
        let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
            StoreError::BadUrl(format!("{}: {e}", crate::redact_password(url)))
        })?;
        if read_only {
            let options = match config.get_options() {
                Some(o) => format!("{o} -c default_transaction_read_only=on"),
                None => "-c default_transaction_read_only=on".to_owned(),
            };
            config.options(&options);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("pgseal");
        }
        let client = config.connect(NoTls).map_err(err)?;
        Ok(PostgresDb { client })
    }
}

#[derive(Debug)]
struct Param<'a>(&'a Value);

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Text(s) => match *ty {
                Type::JSONB => {
                    out.extend_from_slice(&[1]);
                    out.extend_from_slice(s.as_bytes());
                    Ok(IsNull::No)
                }
                Type::JSON => {
                    out.extend_from_slice(s.as_bytes());
                    Ok(IsNull::No)
                }
                _ => s.as_str().to_sql(ty, out),
            },
            Value::Bool(b) => b.to_sql(ty, out),
            Value::Time(t) => time_of(*t).to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn time_of(t: Timestamp) -> SystemTime {
    if t.millis() >= 0 {
        UNIX_EPOCH + Duration::from_millis(t.millis() as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(t.millis().unsigned_abs())
    }
}

struct Cell(Value);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Cell(match *ty {
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::BOOL => Value::Bool(bool::from_sql(ty, raw)?),
            Type::TIMESTAMPTZ | Type::TIMESTAMP => {
                let t = SystemTime::from_sql(ty, raw)?;
                let ms = match t.duration_since(UNIX_EPOCH) {
                    Ok(d) => d.as_millis() as i64,
                    Err(e) => -(e.duration().as_millis() as i64),
                };
                Value::Time(Timestamp(ms))
            }
            Type::JSONB => Value::Text(String::from_utf8(
                raw.get(1..).unwrap_or_default().to_vec(),
            )?),
            Type::JSON => Value::Text(String::from_utf8(raw.to_vec())?),
            _ => Value::Text(String::from_sql(ty, raw)?),
        }))
    }

    fn from_sql_null(
        _: &Type,
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Cell(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

impl Db for PostgresDb {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, values: &[Value]) -> Result<u64> {
        let p: Vec<Param<'_>> = values.iter().map(Param).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = p.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        self.client.execute(sql, &refs).map_err(err)
    }

    fn query(&mut self, sql: &str, values: &[Value]) -> Result<Vec<Row>> {
        let p: Vec<Param<'_>> = values.iter().map(Param).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = p.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = self.client.query(sql, &refs).map_err(err)?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| row.try_get::<_, Cell>(i).map(|c| c.0).map_err(err))
                    .collect::<Result<Vec<_>>>()
                    .map(Row)
            })
            .collect()
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        self.client.batch_execute(sql).map_err(err)
    }

    fn begin_write(&mut self) -> Result<()> {
        self.client.batch_execute("BEGIN").map_err(err)
    }

    fn commit(&mut self) -> Result<()> {
        self.client.batch_execute("COMMIT").map_err(err)
    }

    fn rollback(&mut self) -> Result<()> {
        self.client.batch_execute("ROLLBACK").map_err(err)
    }

    fn lock_audit_chain(&mut self) -> Result<()> {
        self.client
            .batch_execute("SELECT pg_advisory_xact_lock(112103115101097109)")
            .map_err(err)
    }

    fn lock_for_migration(&mut self) -> Result<()> {
        // An arbitrary constant: "pgseal" in ASCII. Released at commit or rollback.
        self.client
            .batch_execute("SELECT pg_advisory_xact_lock(112103115101097108)")
            .map_err(err)
    }
}
