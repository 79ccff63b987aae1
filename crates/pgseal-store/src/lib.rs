//! pgseal-store: where pgseal keeps users, key history and the audit log.
//!
//! One [`Store`] with the rules, over one small [`db::Db`] interface that two backends
//! implement: an embedded SQLite file (the default) and a PostgreSQL database shared by many
//! hosts. The schema is one versioned migration set for both ([`migrations`]), so the same test
//! suite runs on each.
//!
//! The database enforces the invariants that matter, not the code: at most one active server
//! key, at most one active key per user, unique fingerprints and user names. Two pgseal
//! processes racing to break one of them get one success and one [`StoreError::Conflict`].

pub mod chain;
pub mod db;
pub mod django;
mod error;
pub mod migrations;
pub mod model;
mod postgres;
mod sqlite;
mod store;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use error::{NoStore, NoStoreReason, Result, StoreError};
pub use model::*;
pub use store::Store;

/// Where the store lives: `sqlite:PATH` or a `postgres://` URL (with `?host=/socket/dir` for a
/// Unix socket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl FromStr for StoreUrl {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        if let Some(path) = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(StoreError::BadUrl(s.to_owned()));
            }
            Ok(StoreUrl::Sqlite(PathBuf::from(path)))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(StoreUrl::Postgres(s.to_owned()))
        } else {
            Err(StoreError::BadUrl(s.to_owned()))
        }
    }
}

impl fmt::Display for StoreUrl {
    /// Shows the URL without any password it may carry.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StoreUrl::Postgres(url) => f.write_str(&redact_url_password(url)),
        }
    }
}

impl StoreUrl {
    /// The URL as given, password included: for handing to another pgseal process, never for
    /// showing.
    pub fn to_string_unredacted(&self) -> String {
        match self {
            StoreUrl::Sqlite(p) => format!("sqlite:{}", p.display()),
            StoreUrl::Postgres(url) => url.clone(),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_hide_passwords() {
        assert_eq!(
            "sqlite:/var/lib/pgseal.db".parse::<StoreUrl>().unwrap(),
            StoreUrl::Sqlite("/var/lib/pgseal.db".into())
        );
        assert!("mysql://x".parse::<StoreUrl>().is_err());
        let url: StoreUrl = "postgres://app:s3cret@db.example/pgseal?sslmode=disable"
            .parse()
            .unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://app:***@db.example/pgseal?sslmode=disable"
        );
        assert!(!url.to_string().contains("s3cret"));
    }
}
