//! Running PostgreSQL's own tools — pg_dump, pg_restore, psql — the libpq way.
//!
//! Connection settings are theirs: `PGHOST`, `PGPORT`, `PGUSER`, `~/.pgpass`, `PGPASSWORD`,
//! service files and connection URIs all work because pgseal passes the environment through and
//! never builds a connection itself. The front end says where the binaries are ([`PgTools`]).
//!
//! A database *name* is only ever a name: libpq reads a `--dbname` value containing `=` or
//! starting with `postgres://` as a connection string, so a name goes to every tool as the
//! quoted connection string `dbname='…'`, which libpq does not expand again. Only what the
//! user gave as a connection string (`--dbname` of `backup`) is passed as one.
//!
//! Every tool runs
//! - without pgseal's secrets in its environment (the variables the front end names);
//! - registered with [`crate::cancel`], which stops it when a signal interrupts a restore;
//! - under `setpriv --pdeathsig TERM` (util-linux), so it dies with pgseal even when pgseal is
//!   killed outright (`kill -9`): the kernel's `PR_SET_PDEATHSIG`, set in the child before the
//!   tool starts, by a program made for it — pgseal itself stays free of `unsafe` code, which
//!   setting it between `fork` and `exec` would need. SIGTERM rather than SIGKILL because
//!   pg_dump and pg_restore answer it by cancelling their query on the server before they exit
//!   (a killed client leaves its server process working until it next reads); psql just ends.
//!   The front end finds `setpriv` (and warns without it). (The kernel sends the signal when
//!   the *thread* that started the tool ends: tools are started from the main thread.)

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;

use rustix::process::{Pid, WaitId, WaitIdOptions};

use crate::cancel;
use crate::error::{Error, Result};
use crate::observe::Observer;

/// The last part of a tool's stderr kept for error messages.
const STDERR_TAIL: usize = 16 * 1024;

/// Which database to talk to: a name (libpq environment for the rest) or a full connection
/// string / URI the user gave as one.
#[derive(Debug, Clone)]
pub enum Target {
    /// A database name, passed so that it is only ever a name.
    Name(String),
    /// A connection string or URI, passed as one.
    Conninfo(String),
}

impl Target {
    /// The value of the tools' `--dbname`.
    fn dbname_arg(&self) -> String {
        match self {
            Target::Name(name) => format!("dbname={}", conninfo_quote(name)),
            Target::Conninfo(c) => c.clone(),
        }
    }

    /// The same connection, to database `name` instead (`backup --all --dbname CONNINFO`).
    pub fn with_database(&self, name: &str) -> Target {
        match self {
            Target::Name(_) => Target::Name(name.to_owned()),
            Target::Conninfo(c) if is_uri(c) => {
                // A query parameter overrides the URI's path (libpq reads them after it).
                let sep = if c.contains('?') { '&' } else { '?' };
                Target::Conninfo(format!("{c}{sep}dbname={}", percent_encode(name)))
            }
            // In key=value form the last setting of a keyword wins.
            Target::Conninfo(c) => Target::Conninfo(format!("{c} dbname={}", conninfo_quote(name))),
        }
    }
}

fn is_uri(conninfo: &str) -> bool {
    conninfo.starts_with("postgresql://") || conninfo.starts_with("postgres://")
}

/// A libpq connection-string value: single-quoted, with `\` and `'` backslash-escaped.
pub fn conninfo_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Percent-encodes all but RFC 3986's unreserved characters, for a URI query value.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// How to run PostgreSQL's tools, as the front end found them.
#[derive(Clone)]
pub struct PgTools {
    /// The directory holding pg_dump, pg_restore and psql.
    pub bin: PathBuf,
    /// `setpriv` (util-linux), to give each tool a parent-death signal; `None` runs them
    /// without one.
    pub setpriv: Option<PathBuf>,
    /// Variables removed from every tool's environment: those that may hold pgseal's secrets.
    pub scrub: Vec<OsString>,
    /// Variables set in every tool's environment on top of this process's (libpq's `PGHOST`,
    /// `PGPORT`, `PGUSER`…): for a front end that says where its databases are itself instead
    /// of through its own environment. The CLI sets none.
    pub env: Vec<(OsString, OsString)>,
    /// Where a tool's warnings (its standard error when it succeeds) go.
    pub observer: Arc<dyn Observer>,
}

impl PgTools {
    /// The program file of `tool`, or why it cannot be run.
    fn program(&self, tool: &'static str) -> Result<PathBuf> {
        Some(self.bin.join(tool))
            .filter(|p| p.is_file())
            .ok_or_else(|| Error::ToolUnavailable {
                tool,
                reason: format!("not found in {}", self.bin.display()),
            })
    }

    fn command(&self, tool: &'static str) -> Result<Command> {
        let program = self.program(tool)?;
        let mut c = match &self.setpriv {
            Some(setpriv) => {
                let mut c = Command::new(setpriv);
                c.args(["--pdeathsig", "TERM", "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        for var in &self.scrub {
            c.env_remove(var);
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c.stdin(Stdio::null());
        Ok(c)
    }

    /// Starts `pg_dump` in custom format with its own compression off (pgseal compresses),
    /// writing to a pipe.
    pub fn dump(&self, target: &Target, schemas: &[String]) -> Result<Running> {
        let mut c = self.command("pg_dump")?;
        // `-w`: never prompt for a password (libpq finds it in PGPASSWORD or ~/.pgpass).
        c.args(["--format=custom", "--compress=0", "-w"]);
        for s in schemas {
            c.arg(format!("--schema={s}"));
        }
        c.arg(format!("--dbname={}", target.dbname_arg()));
        Running::spawn(&self.observer, "pg_dump", c, true, true)
    }

    /// The cluster's globals as SQL: `pg_dumpall --globals-only` (roles, memberships,
    /// tablespaces, role settings), with `--no-role-passwords` unless `with_role_passwords`.
    /// pg_dumpall connects to the maintenance database `target` names.
    pub fn globals(&self, target: &Target, with_role_passwords: bool) -> Result<Vec<u8>> {
        let mut c = self.command("pg_dumpall")?;
        c.args(["--globals-only", "-w"]);
        if !with_role_passwords {
            c.arg("--no-role-passwords");
        }
        if let Target::Name(name) = target {
            c.arg(format!("--database={name}"));
        }
        c.arg(format!("--dbname={}", target.dbname_arg()));
        let mut running = Running::spawn(&self.observer, "pg_dumpall", c, true, true)?;
        collect(&mut running).and_then(|out| running.wait().map(|()| out))
    }

    /// A database's shell as SQL, as `pg_restore --create` writes it: `CREATE DATABASE` (its
    /// encoding and locale), its owner, comment, settings and grants — and nothing inside it.
    /// pg_dump's schema-only archive (every schema excluded) goes through a pipe into
    /// pg_restore, which is asked for a table no database can hold.
    pub fn database_shell(&self, target: &Target) -> Result<Vec<u8>> {
        /// Longer than PostgreSQL's 63-byte identifiers: matches no table.
        const NO_TABLE: &str =
            "pgseal-no-such-table-the-database-shell-only-000000000000000000000000";
        let mut c = self.command("pg_dump")?;
        c.args([
            "--format=custom",
            "--schema-only",
            "--exclude-schema=*",
            "-w",
        ]);
        c.arg(format!("--dbname={}", target.dbname_arg()));
        let mut dump = Running::spawn(&self.observer, "pg_dump", c, true, true)?;
        let archive = dump.stdout.take().expect("pg_dump's stdout is piped");
        let mut c = self.command("pg_restore")?;
        c.args(["--create", "--file=-", "--table", NO_TABLE]);
        c.stdin(Stdio::from(archive));
        let mut restore = Running::spawn(&self.observer, "pg_restore", c, true, true)?;
        let out = collect(&mut restore);
        let dumped = dump.wait();
        let restored = restore.wait();
        dumped.and(restored).and(out)
    }

    /// psql reading a script from its standard input, printing unaligned tuples with NUL after
    /// every field and every row (no value can hold a NUL, so nothing in a value can split it).
    fn psql_command(&self, target: &Target) -> Result<Command> {
        let mut c = self.command("psql")?;
        c.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "--field-separator-zero",
            "--record-separator-zero",
            "-v",
            "ON_ERROR_STOP=1",
            "-w",
        ])
        .arg(format!("--dbname={}", target.dbname_arg()))
        .args(["-f", "-"])
        .stdin(Stdio::piped());
        Ok(c)
    }

    /// Runs an SQL script with psql against `target`; returns what it printed.
    fn psql_output(&self, target: &Target, sql: &str) -> Result<Vec<u8>> {
        let mut running = Running::spawn(
            &self.observer,
            "psql",
            self.psql_command(target)?,
            true,
            true,
        )?;
        {
            let mut stdin = running.child.stdin.take().expect("stdin was piped");
            if let Err(e) = stdin.write_all(sql.as_bytes()) {
                drop(stdin);
                // psql stopped reading: its own error says why.
                return running.wait().and(Err(Error::io("sending SQL to psql", e)));
            }
        }
        let mut out = Vec::new();
        let read = running
            .stdout
            .take()
            .expect("stdout was piped")
            .read_to_end(&mut out);
        running.wait()?;
        read.map_err(|e| Error::io("reading psql's output", e))?;
        Ok(out)
    }

    /// Runs a psql script (backslash commands included); returns what it printed, as text.
    pub fn script_output(&self, target: &Target, sql: &str) -> Result<String> {
        let out = self.psql_output(target, sql)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Runs SQL for its effect.
    pub fn execute(&self, target: &Target, sql: &str) -> Result<()> {
        self.psql_output(target, sql).map(drop)
    }

    /// Runs SQL whose results all have `columns` columns; returns their rows.
    pub fn rows(&self, target: &Target, sql: &str, columns: usize) -> Result<Vec<Vec<String>>> {
        split_rows(&self.psql_output(target, sql)?, columns)
    }

    /// The databases a `backup --all` considers: every one that is not a template. One that
    /// refuses connections is listed, so that its backup fails visibly instead of being skipped.
    pub fn databases(&self, maintenance: &Target) -> Result<Vec<String>> {
        let rows = self.rows(
            maintenance,
            "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY datname;",
            1,
        )?;
        Ok(rows.into_iter().flatten().collect())
    }

    /// Starts `pg_restore` into `database`, reading the archive from `archive` (a file) or from
    /// its standard input (`None`).
    pub fn restore(
        &self,
        database: &Target,
        archive: Option<&Path>,
        options: &RestoreOptions,
    ) -> Result<Running> {
        let mut c = self.command("pg_restore")?;
        c.arg("-w").arg("--exit-on-error");
        c.arg(format!("--dbname={}", database.dbname_arg()));
        if options.clean {
            c.args(["--clean", "--if-exists"]);
        }
        if options.jobs > 1 {
            c.arg(format!("--jobs={}", options.jobs));
        } else {
            // All or nothing: a failed or cut-off restore leaves the database as it was.
            c.arg("--single-transaction");
        }
        match archive {
            Some(path) => {
                c.arg(path);
            }
            None => {
                c.stdin(Stdio::piped());
            }
        }
        Running::spawn(&self.observer, "pg_restore", c, false, true)
    }

    /// Opens a psql session on `target`, runs `sql` in it and keeps the session open (idle)
    /// until the returned [`Session`] is dropped: for holding a session-level advisory lock.
    pub fn session(&self, target: &Target, sql: &str) -> Result<Session> {
        const READY: &str = "pgseal-session-ready";
        // Not stopped on a signal: it only holds its lock, and lets go when pgseal closes it.
        let mut running = Running::spawn(
            &self.observer,
            "psql",
            self.psql_command(target)?,
            true,
            false,
        )?;
        let mut stdin = running.child.stdin.take().expect("stdin was piped");
        let sent = stdin
            .write_all(format!("{sql}\n\\echo {READY}\n").as_bytes())
            .and_then(|()| stdin.flush());
        let mut stdout = BufReader::new(running.stdout.take().expect("stdout was piped"));
        let mut ready = false;
        if sent.is_ok() {
            let mut line = Vec::new();
            while let Ok(n) = stdout.read_until(b'\n', &mut line) {
                if n == 0 {
                    break;
                }
                if line.ends_with(format!("{READY}\n").as_bytes()) {
                    ready = true;
                    break;
                }
                line.clear();
            }
        }
        if !ready {
            drop(stdin);
            return Err(running
                .wait()
                .err()
                .unwrap_or_else(|| Error::Tool("psql ended before the session was ready".into())));
        }
        Ok(Session {
            running: Some(running),
            stdin: Some(stdin),
        })
    }
}

/// An open psql session (see [`PgTools::session`]); closed, and its tool reaped, when dropped.
pub struct Session {
    running: Option<Running>,
    stdin: Option<ChildStdin>,
}

impl Drop for Session {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Some(r) = self.running.take() {
            let _ = r.wait();
        }
    }
}

/// All a tool writes to its standard output.
fn collect(running: &mut Running) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    running
        .stdout
        .take()
        .expect("stdout was piped")
        .read_to_end(&mut out)
        .map_err(|e| Error::io(format!("reading {}'s output", running.tool), e))?;
    Ok(out)
}

/// Rows of `columns` fields from psql's NUL-separated output.
fn split_rows(out: &[u8], columns: usize) -> Result<Vec<Vec<String>>> {
    if out.is_empty() {
        return Ok(Vec::new());
    }
    let body = out.strip_suffix(b"\0").ok_or_else(|| {
        Error::invalid("unexpected psql output: it does not end with a separator")
    })?;
    let fields: Vec<String> = body
        .split(|b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    if columns == 0 || fields.len() % columns != 0 {
        return Err(Error::invalid(format!(
            "unexpected psql output: {} fields for rows of {columns}",
            fields.len()
        )));
    }
    Ok(fields.chunks(columns).map(<[String]>::to_vec).collect())
}

/// How pg_restore runs.
#[derive(Debug, Clone, Copy)]
pub struct RestoreOptions {
    /// Drop objects before recreating them (`--clean --if-exists`).
    pub clean: bool,
    /// Parallel jobs; 1 restores in a single transaction.
    pub jobs: u32,
}

/// A running tool with its stderr being collected. Registered with [`crate::cancel`] (so a
/// signal stops it) until it has exited; stopped and reaped if dropped unfinished.
pub struct Running {
    observer: Arc<dyn Observer>,
    /// Which tool.
    pub tool: &'static str,
    /// The process.
    pub child: Child,
    /// Its standard output, when piped.
    pub stdout: Option<ChildStdout>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    pid: Pid,
    /// Still registered (with the interrupt handler) and not reaped.
    live: bool,
    stoppable: bool,
}

impl Running {
    /// Starts `c`. A `stoppable` tool is stopped by a signal under an interrupt guard.
    fn spawn(
        observer: &Arc<dyn Observer>,
        tool: &'static str,
        mut c: Command,
        capture_stdout: bool,
        stoppable: bool,
    ) -> Result<Running> {
        if capture_stdout {
            c.stdout(Stdio::piped());
        } else {
            c.stdout(Stdio::null());
        }
        c.stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|e| Error::ToolUnavailable {
            tool,
            reason: e.to_string(),
        })?;
        let pid = Pid::from_child(&child);
        if stoppable {
            cancel::register(pid);
        }
        let mut err = child.stderr.take().expect("stderr was piped");
        let stderr = std::thread::spawn(move || {
            let mut tail = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
            tail
        });
        Ok(Running {
            observer: observer.clone(),
            tool,
            stdout: child.stdout.take(),
            child,
            stderr: Some(stderr),
            pid,
            live: true,
            stoppable,
        })
    }

    /// Waits for the tool; its failure becomes an error carrying the end of its stderr.
    pub fn wait(mut self) -> Result<()> {
        drop(self.child.stdin.take());
        drop(self.stdout.take());
        // Wait for the exit without reaping, so the tool stays registered (and its pid
        // reserved) for as long as a signal may need to stop it; then reap.
        while let Err(rustix::io::Errno::INTR) = rustix::process::waitid(
            WaitId::Pid(self.pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {}
        self.forget();
        let status = self
            .child
            .wait()
            .map_err(|e| Error::io(format!("waiting for {}", self.tool), e))?;
        self.live = false;
        let stderr = self.stderr_text();
        if status.success() {
            if !stderr.trim().is_empty() {
                self.observer
                    .tool_output(self.tool, &crate::show::text(stderr.trim_end()));
            }
            return Ok(());
        }
        Err(Error::Tool(format!(
            "{} failed ({status}): {}",
            self.tool,
            crate::show::text(stderr.trim_end())
        )))
    }

    /// Stops the tool (it is being abandoned after an error of ours) and reaps it.
    pub fn abort(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if !self.live {
            return;
        }
        let _ = self.child.kill();
        drop(self.child.stdin.take());
        drop(self.stdout.take());
        self.forget();
        let _ = self.child.wait();
        self.live = false;
        let _ = self.stderr_text();
    }

    fn forget(&self) {
        if self.stoppable {
            cancel::deregister(self.pid);
        }
    }

    fn stderr_text(&mut self) -> String {
        let bytes = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let start = bytes.len().saturating_sub(STDERR_TAIL);
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal, whatever `standard_conforming_strings` says: `E'…'` with
/// backslashes and quotes escaped.
pub fn quote_literal(value: &str) -> String {
    format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_passed_as_a_quoted_dbname_never_as_a_connection_string() {
        let arg = |n: &str| Target::Name(n.to_owned()).dbname_arg();
        assert_eq!(arg("shop"), "dbname='shop'");
        assert_eq!(arg("dbname=postgres"), "dbname='dbname=postgres'");
        assert_eq!(
            arg("postgresql://evil/x?host=/tmp"),
            "dbname='postgresql://evil/x?host=/tmp'"
        );
        assert_eq!(arg(r"it's a \ name"), r"dbname='it\'s a \\ name'");
        assert_eq!(arg("-h evil"), "dbname='-h evil'");
        // What the user gave as a connection string stays one.
        let c = Target::Conninfo("host=db port=5433 dbname=shop".into());
        assert_eq!(c.dbname_arg(), "host=db port=5433 dbname=shop");
    }

    #[test]
    fn another_database_on_the_same_connection() {
        let kv = Target::Conninfo("host=db user=ops dbname=postgres".into());
        assert_eq!(
            kv.with_database("a'b").dbname_arg(),
            r"host=db user=ops dbname=postgres dbname='a\'b'"
        );
        let uri = Target::Conninfo("postgres://ops@db/postgres".into());
        assert_eq!(
            uri.with_database("x=y z/é").dbname_arg(),
            "postgres://ops@db/postgres?dbname=x%3Dy%20z%2F%C3%A9"
        );
        let uri = Target::Conninfo("postgresql://ops@/postgres?host=/run/pg&port=5433".into());
        assert_eq!(
            uri.with_database("shop").dbname_arg(),
            "postgresql://ops@/postgres?host=/run/pg&port=5433&dbname=shop"
        );
        let name = Target::Name("postgres".into());
        assert_eq!(
            name.with_database("dbname=x").dbname_arg(),
            "dbname='dbname=x'"
        );
    }

    #[test]
    fn sql_quoting() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(quote_literal(r"it's \n"), r"E'it''s \\n'");
    }

    #[test]
    fn nul_separated_rows_cannot_be_split_by_what_they_hold() {
        let out = b"a\nb\x001\x00tab\there\x002\x00";
        assert_eq!(
            split_rows(out, 2).unwrap(),
            vec![
                vec!["a\nb".to_owned(), "1".to_owned()],
                vec!["tab\there".to_owned(), "2".to_owned()]
            ]
        );
        assert_eq!(split_rows(b"", 1).unwrap(), Vec::<Vec<String>>::new());
        assert!(split_rows(b"a\x00b\x00c\x00", 2).is_err());
        assert!(split_rows(b"a\x00b", 1).is_err());
    }
}
