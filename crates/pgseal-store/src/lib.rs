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
//!
//! Hashes are [`Hash32`] values and audit actions an [`Action`]; the database keeps their text
//! (hex, the action's name), which is what the audit chain ([`chain`]) hashes.

#![warn(missing_docs)]

mod action;
pub mod chain;
pub mod db;
pub mod django;
mod error;
mod hash;
mod location;
pub mod migrations;
pub mod model;
mod postgres;
mod sqlite;
mod store;
pub mod username;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use action::{Action, OtherAction};
pub use error::{NoStore, NoStoreReason, Result, StoreError};
pub use hash::{Hash32, InvalidHash32};
pub use location::{InvalidLocation, Location};
pub use model::*;
pub use store::Store;
pub use username::{InvalidUsername, Username};

/// Where the store lives: `sqlite:PATH` or a `postgres://` URL (with `?host=/socket/dir` for a
/// Unix socket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (it may hold a password: show it with `Display`).
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
                return Err(StoreError::BadUrl(redact_password(s)));
            }
            Ok(StoreUrl::Sqlite(PathBuf::from(path)))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(StoreUrl::Postgres(s.to_owned()))
        } else {
            Err(StoreError::BadUrl(redact_password(s)))
        }
    }
}

impl fmt::Display for StoreUrl {
    /// Shows the URL without any password it may carry.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StoreUrl::Postgres(url) => f.write_str(&redact_password(url)),
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

/// A store URL or connection string fit to show: every password in it replaced by `***` —
/// the `user:secret@` of a URL, any query parameter naming a password (`?password=secret`,
/// `sslpassword`, percent-encoded or not), and any `password=` of a libpq `key=value` string
/// (quoted or not).
pub fn redact_password(text: &str) -> String {
    if text.contains("://") {
        redact_url(text)
    } else {
        redact_conninfo(text)
    }
}

/// The old name of [`redact_password`].
pub fn redact_url_password(url: &str) -> String {
    redact_password(url)
}

fn names_a_password(key: &str) -> bool {
    percent_decode(key)
        .to_ascii_lowercase()
        .contains("password")
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let mut out = format!("{scheme}://{authority}{path}");
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if names_a_password(k) => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// `host=db password='se cret' user=x` → `host=db password=*** user=x`. Text that does not
/// parse as `key=value` pairs is hidden from the first thing that does not parse on.
fn redact_conninfo(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    loop {
        let trimmed = rest.trim_start();
        out.push_str(&rest[..rest.len() - trimmed.len()]);
        rest = trimmed;
        if rest.is_empty() {
            return out;
        }
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        let after_key = rest[key_end..].trim_start();
        let Some(value_text) = after_key.strip_prefix('=') else {
            // Not key=value: show nothing more (it may be a password).
            out.push_str("***");
            return out;
        };
        let value_text = value_text.trim_start();
        let value_len = if let Some(quoted) = value_text.strip_prefix('\'') {
            let mut escaped = false;
            let mut end = None;
            for (i, c) in quoted.char_indices() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '\'') => {
                        end = Some(i + 2);
                        break;
                    }
                    _ => {}
                }
            }
            match end {
                Some(n) => n,
                None => {
                    out.push_str(key);
                    out.push_str("=***");
                    return out;
                }
            }
        } else {
            let mut escaped = false;
            value_text
                .char_indices()
                .find(|&(_, c)| {
                    let stop = !escaped && c.is_whitespace();
                    escaped = !escaped && c == '\\';
                    stop
                })
                .map_or(value_text.len(), |(i, _)| i)
        };
        out.push_str(key);
        out.push('=');
        if names_a_password(key) {
            out.push_str("***");
        } else {
            out.push_str(&value_text[..value_len]);
        }
        rest = &value_text[value_len..];
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

    #[test]
    fn passwords_in_query_strings_are_hidden() {
        for (given, shown) in [
            (
                "postgres:///db?host=/run/pg&password=SECRET",
                "postgres:///db?host=/run/pg&password=***",
            ),
            (
                "postgresql://u@h/db?password=SECRET&sslmode=require",
                "postgresql://u@h/db?password=***&sslmode=require",
            ),
            (
                "postgres://u:SECRET@h/db?pass%77ord=SECRET",
                "postgres://u:***@h/db?pass%77ord=***",
            ),
            (
                "postgres://h/db?sslpassword=SECRET",
                "postgres://h/db?sslpassword=***",
            ),
            ("postgres://u:SECRET@h", "postgres://u:***@h"),
            (
                "postgres://h/db?sslmode=disable",
                "postgres://h/db?sslmode=disable",
            ),
        ] {
            assert_eq!(redact_password(given), shown);
            if given.starts_with("postgres") {
                let url: StoreUrl = given.parse().unwrap();
                assert_eq!(url.to_string(), shown);
            }
        }
    }

    #[test]
    fn passwords_in_key_value_strings_are_hidden() {
        for (given, shown) in [
            (
                "host=/x password=SECRET dbname=y",
                "host=/x password=*** dbname=y",
            ),
            (
                "host=/x password = 'SE CRET \\' q' dbname=y",
                "host=/x password=*** dbname=y",
            ),
            ("password='SECRET", "password=***"),
            ("host=db user=app", "host=db user=app"),
            ("host=db SECRET", "host=db ***"),
            ("PASSWORD=SECRET", "PASSWORD=***"),
            ("password=SE\\ CRET x=1", "password=*** x=1"),
        ] {
            assert_eq!(redact_password(given), shown, "{given}");
        }
    }

    #[test]
    fn a_bad_url_error_hides_the_password() {
        for bad in ["mysql://u:SECRET@h/db", "host=h password=SECRET", "sqlite:"] {
            let e = bad.parse::<StoreUrl>().unwrap_err().to_string();
            assert!(!e.contains("SECRET"), "{e}");
        }
    }
}
