//! A cluster's globals: what no database backup holds — roles and their attributes, role
//! memberships, tablespaces, role settings (`pg_dumpall --globals-only`) — and, after them, each
//! backed-up database's own shell as `pg_restore --create` writes it: `CREATE DATABASE` with its
//! encoding and locale, its owner, comment, `ALTER DATABASE … SET`, `ALTER ROLE … IN DATABASE
//! … SET` and its grants (`GRANT CONNECT ON DATABASE …`). pg_dumpall 15 leaves those database
//! properties to `pg_dump --create`; putting them here lets a new cluster be rebuilt in order:
//! `restore --globals` (roles, then the empty databases with their owners and grants), then each
//! database's backup restored into its empty shell.
//!
//! `backup --all` seals the script as one more backup, catalogued under [`NAME`] — a name no
//! database backup is allowed to have — with [`FORMAT`] as the signed header's dump format, so
//! the file itself says what it is: a catalog row cannot pass a database dump off as globals or
//! the other way round. Before a restore runs any of it, the whole file is decrypted into
//! memory and verified (both signatures, every chunk), then checked here ([`Script::prepare`]):
//! psql commands other than those pg_dump writes (`\restrict`, `\unrestrict`, `\connect` to a
//! database by name) are refused, and the `CREATE ROLE` of a role the target already has (its
//! bootstrap superuser, at least) is left out — pg_dumpall writes `CREATE ROLE` and then
//! `ALTER ROLE … WITH` the attributes, so an existing role still gets the backup's attributes.

use std::collections::BTreeSet;
use std::io::Write;

use pgseal_core::v2::Metadata;

use crate::error::{Error, Result};

/// The catalog's database name for a cluster's globals. A backup of a database of this name is
/// refused, so no database backup can share it; the signed header says [`FORMAT`] as well.
pub const NAME: &str = "(globals)";

/// The signed header's dump format of a globals backup: pg_dumpall's globals, then the
/// databases' shells, as SQL for psql.
pub const FORMAT: &str = "pg_dumpall-globals";

/// The signed header's dump format of a database backup.
pub const DATABASE_FORMAT: &str = "pg_dump-custom";

/// The most a globals script may hold (it is decrypted into memory before it is applied).
pub const MAX_BYTES: usize = 256 * 1024 * 1024;

/// What a signed header says a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A cluster's globals.
    Globals,
    /// Anything else (a database's archive, a file `pgseal encrypt` sealed).
    Other,
}

/// What `meta` says the file is; a header that says globals by one field but not the other is
/// refused (pgseal never writes one).
pub fn kind(meta: &Metadata) -> Result<Kind> {
    let format = meta.dump_format.as_deref() == Some(FORMAT);
    let name = meta.source_database.as_deref() == Some(NAME);
    match (format, name) {
        (true, true) => Ok(Kind::Globals),
        (false, false) => Ok(Kind::Other),
        _ => Err(Error::invalid(format!(
            "the file's signed header is inconsistent: dump format {:?} for database {:?} \
             (pgseal writes {FORMAT:?} exactly for {NAME:?})",
            meta.dump_format.as_deref().unwrap_or(""),
            meta.source_database.as_deref().unwrap_or("")
        ))),
    }
}

/// Refuses a database backup under the globals' catalog name.
pub fn check_database_name(database: &str) -> Result<()> {
    if database == NAME {
        return Err(Error::usage(format!(
            "{NAME} is the name pgseal catalogues a cluster's globals under; a database of \
             that name cannot be backed up by pgseal (rename it)"
        )));
    }
    Ok(())
}

/// A verified globals script, ready for psql.
#[derive(Debug)]
pub struct Script {
    /// The script, without the `CREATE ROLE` of roles the target has.
    pub sql: String,
    /// The roles whose `CREATE ROLE` was left out, in script order.
    pub existing_roles: Vec<String>,
    /// The databases the script creates, in script order.
    pub databases: Vec<String>,
}

impl Script {
    /// Checks the verified script `raw` and leaves out the `CREATE ROLE` of `existing` roles.
    pub fn prepare(raw: Vec<u8>, existing: &BTreeSet<String>) -> Result<Script> {
        let text = String::from_utf8(raw)
            .map_err(|_| Error::invalid("the globals script is not UTF-8 text"))?;
        let mut lexer = Lexer::default();
        let mut sql = String::with_capacity(text.len());
        let mut existing_roles = Vec::new();
        let mut databases = Vec::new();
        for (number, line) in text.split_inclusive('\n').enumerate() {
            let body = line.strip_suffix('\n').unwrap_or(line);
            let at_boundary = lexer.at_statement_start();
            if body.contains('\\') && !(at_boundary && allowed_meta(body)) {
                return Err(Error::invalid(format!(
                    "line {} of the globals script holds a backslash outside the psql commands \
                     pg_dump writes (\\restrict, \\unrestrict, \\encoding, \\connect to a database \
                     by name): pgseal does not apply it",
                    number + 1
                )));
            }
            if at_boundary {
                if let Some(role) = statement_name(body, "CREATE ROLE ")
                    && existing.contains(&role)
                {
                    existing_roles.push(role);
                    continue;
                }
                if let Some(db) = body
                    .strip_prefix("CREATE DATABASE ")
                    .and_then(leading_ident)
                {
                    databases.push(db);
                }
            }
            if !body.starts_with('\\') {
                lexer.feed(line);
            }
            sql.push_str(line);
        }
        if !lexer.at_statement_start() {
            return Err(Error::invalid(
                "the globals script ends inside a statement, a quoted text or a comment",
            ));
        }
        Ok(Script {
            sql,
            existing_roles,
            databases,
        })
    }
}

/// The psql commands pg_dumpall and pg_restore write, exactly: `\restrict KEY`,
/// `\unrestrict KEY`, `\encoding NAME` (before a `\connect` to a name that needs quoting), and
/// `\connect` to a database of this server by name.
fn allowed_meta(line: &str) -> bool {
    let alnum = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if let Some(key) = line.strip_prefix("\\restrict ") {
        return alnum(key);
    }
    if let Some(name) = line.strip_prefix("\\encoding ") {
        return !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    }
    if let Some(key) = line.strip_prefix("\\unrestrict ") {
        return alnum(key);
    }
    let Some(target) = line.strip_prefix("\\connect ") else {
        return false;
    };
    if !target.is_empty()
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return true;
    }
    // pg_restore's form for other names: a connection string holding only a quoted dbname,
    // as a double-quoted psql argument (`""` for `"`); nothing that names another server.
    let Some(quoted) = target
        .strip_prefix("-reuse-previous=on \"")
        .and_then(|q| q.strip_suffix('"'))
    else {
        return false;
    };
    if quoted.replace("\"\"", "").contains('"') {
        return false;
    }
    let conninfo = quoted.replace("\"\"", "\"");
    match conninfo
        .strip_prefix("dbname='")
        .and_then(|v| v.strip_suffix('\''))
    {
        Some(value) => !value.contains(['\'', '\\']),
        None => false,
    }
}

/// The identifier of a one-line statement `{prefix}IDENT;`, as PostgreSQL reads it.
fn statement_name(line: &str, prefix: &str) -> Option<String> {
    let rest = line.strip_prefix(prefix)?.strip_suffix(';')?;
    let (name, tail) = split_ident(rest)?;
    tail.is_empty().then_some(name)
}

/// The identifier a text starts with (followed by a space or the end).
fn leading_ident(text: &str) -> Option<String> {
    let (name, tail) = split_ident(text)?;
    (tail.is_empty() || tail.starts_with(' ')).then_some(name)
}

/// An identifier as pg_dump writes one (bare: lower-case letters, digits, `_`, `$`; or in
/// double quotes with `""` for `"`), and what follows it.
fn split_ident(text: &str) -> Option<(String, &str)> {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if chars.peek().map(|(_, c)| *c) == Some('"') {
                    chars.next();
                    name.push('"');
                } else {
                    return Some((name, &quoted[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        return None;
    }
    let end = text
        .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$'))
        .unwrap_or(text.len());
    (end > 0).then(|| (text[..end].to_owned(), &text[end..]))
}

/// Where a reading of SQL is: enough of PostgreSQL's lexer to know whether a line starts a
/// statement. A backslash never reaches it outside the allowed psql commands, so
/// `standard_conforming_strings` and `E'…'` escapes do not matter.
#[derive(Debug, Default)]
struct Lexer {
    state: State,
    /// Something other than space and comments since the last `;`.
    in_statement: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    Normal,
    Quote,
    Ident,
    Block(u32),
    Dollar(String),
}

impl Lexer {
    fn at_statement_start(&self) -> bool {
        self.state == State::Normal && !self.in_statement
    }

    fn feed(&mut self, line: &str) {
        let b = line.as_bytes();
        let mut i = 0;
        let mut prev_ident = false;
        while i < b.len() {
            let c = b[i];
            match &mut self.state {
                State::Normal => {
                    let ident = c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
                    match c {
                        b'-' if b.get(i + 1) == Some(&b'-') => break,
                        b'/' if b.get(i + 1) == Some(&b'*') => {
                            self.state = State::Block(1);
                            i += 1;
                        }
                        b'\'' => {
                            self.state = State::Quote;
                            self.in_statement = true;
                        }
                        b'"' => {
                            self.state = State::Ident;
                            self.in_statement = true;
                        }
                        b';' => self.in_statement = false,
                        b'$' if !prev_ident => {
                            let tag_end = b[i + 1..].iter().position(|&t| {
                                !(t.is_ascii_alphanumeric() || t == b'_' || t >= 0x80)
                            });
                            if let Some(n) = tag_end
                                && b[i + 1 + n] == b'$'
                                && !b.get(i + 1).is_some_and(u8::is_ascii_digit)
                            {
                                let tag = String::from_utf8_lossy(&b[i..i + n + 2]).into_owned();
                                i += n + 1;
                                self.state = State::Dollar(tag);
                            }
                            self.in_statement = true;
                        }
                        c if c.is_ascii_whitespace() => {}
                        _ => self.in_statement = true,
                    }
                    prev_ident = ident || (c == b'$' && prev_ident);
                    i += 1;
                    continue;
                }
                State::Quote => {
                    if c == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 1;
                        } else {
                            self.state = State::Normal;
                        }
                    }
                }
                State::Ident => {
                    if c == b'"' {
                        if b.get(i + 1) == Some(&b'"') {
                            i += 1;
                        } else {
                            self.state = State::Normal;
                        }
                    }
                }
                State::Block(depth) => {
                    if c == b'*' && b.get(i + 1) == Some(&b'/') {
                        *depth -= 1;
                        i += 1;
                        if *depth == 0 {
                            self.state = State::Normal;
                        }
                    } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
                        *depth += 1;
                        i += 1;
                    }
                }
                State::Dollar(tag) => {
                    if b[i..].starts_with(tag.as_bytes()) {
                        i += tag.len() - 1;
                        self.state = State::Normal;
                    }
                }
            }
            prev_ident = false;
            i += 1;
        }
    }
}

/// A writer into memory that refuses more than [`MAX_BYTES`].
pub struct Capped(pub Vec<u8>);

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_BYTES {
            return Err(std::io::Error::other(format!(
                "a globals script is at most {} MiB",
                MAX_BYTES >> 20
            )));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    const DUMPALL: &str = "--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict abc123\n\n\
SET standard_conforming_strings = on;\n\nCREATE ROLE alice;\nALTER ROLE alice WITH LOGIN;\n\
CREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER;\nCREATE ROLE \"Big \"\"Boss\";\n\
COMMENT ON ROLE alice IS 'first;\nCREATE ROLE postgres;\n';\n\
GRANT readers TO alice GRANTED BY postgres;\n\\unrestrict abc123\n\\restrict k2\n\
CREATE DATABASE shop WITH TEMPLATE = template0 ENCODING = 'UTF8';\n\
ALTER DATABASE shop OWNER TO app_owner;\n\\unrestrict k2\n\\connect shop\n\\encoding SQL_ASCII\n\
\\connect -reuse-previous=on \"dbname='My \"\"db'\"\n\\restrict k3\n\
CREATE DATABASE \"My \"\"db\" WITH TEMPLATE = template0;\n\\unrestrict k3\n";

    #[test]
    fn existing_roles_lose_only_their_create_role_at_a_statement_start() {
        let script = Script::prepare(
            DUMPALL.as_bytes().to_vec(),
            &roles(&["postgres", "Big \"Boss"]),
        )
        .unwrap();
        assert_eq!(script.existing_roles, ["postgres", "Big \"Boss"]);
        assert_eq!(script.databases, ["shop", "My \"db"]);
        // The CREATE ROLE inside the comment's text stays: it is not a statement.
        assert_eq!(script.sql.matches("CREATE ROLE postgres;").count(), 1);
        assert!(script.sql.contains("'first;\nCREATE ROLE postgres;\n'"));
        assert!(script.sql.contains("CREATE ROLE alice;\n"));
        assert!(!script.sql.contains("CREATE ROLE \"Big"));
        assert!(script.sql.contains("ALTER ROLE postgres WITH SUPERUSER;"));
        assert_eq!(
            script.sql.len(),
            DUMPALL.len()
                - "CREATE ROLE postgres;\n".len()
                - "CREATE ROLE \"Big \"\"Boss\";\n".len()
        );
    }

    #[test]
    fn psql_commands_other_than_pg_dumps_are_refused() {
        for hostile in [
            "SELECT 1;\n\\! touch /tmp/x\n",
            "SELECT 1; \\! touch /tmp/x\n",
            "\\connect shop \\\\ \\! id\n",
            "\\connect -reuse-previous=on \"dbname='x' host=evil\"\n",
            "\\connect \"host=evil dbname=x\"\n",
            "\\restrict abc \\! id\n",
            "\\o |id\n",
            "\\encoding UTF8 \\! id\n",
            "SELECT $$'$$;\n\\! id\n",
            "COMMENT ON ROLE a IS 'x\n\\connect shop\n';\n",
            "SELECT 'unterminated;\n",
        ] {
            assert!(
                Script::prepare(hostile.as_bytes().to_vec(), &roles(&[])).is_err(),
                "{hostile:?}"
            );
        }
        assert!(Script::prepare(vec![0xff, b'\n'], &roles(&[])).is_err());
    }

    #[test]
    fn a_header_says_globals_by_both_fields_or_neither() {
        let meta = |db: &str, format: &str| Metadata {
            source_database: Some(db.into()),
            dump_format: Some(format.into()),
            ..Metadata::default()
        };
        assert_eq!(kind(&meta(NAME, FORMAT)).unwrap(), Kind::Globals);
        assert_eq!(kind(&meta("shop", DATABASE_FORMAT)).unwrap(), Kind::Other);
        assert!(kind(&meta("shop", FORMAT)).is_err());
        assert!(kind(&meta(NAME, DATABASE_FORMAT)).is_err());
        assert!(check_database_name(NAME).is_err());
        check_database_name("globals").unwrap();
    }
}
