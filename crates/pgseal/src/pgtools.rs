//! Running PostgreSQL's own tools — pg_dump, pg_restore, psql — the libpq way.
//!
//! Connection settings are theirs: `PGHOST`, `PGPORT`, `PGUSER`, `~/.pgpass`, `PGPASSWORD`,
//! service files and connection URIs all work because pgseal passes the environment through and
//! never builds a connection itself. Binaries come from `--pg-bin`, then `POSTGRESQL_BIN_PATH`
//! (config or environment), then `PATH`, then the newest `/usr/lib/postgresql/*/bin`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use crate::failure::{CliResult, ExitCode, Failure};

/// The last part of a tool's stderr kept for error messages.
const STDERR_TAIL: usize = 16 * 1024;

/// Which database to talk to: a name (libpq environment for the rest) or a full connection
/// string / URI.
#[derive(Debug, Clone)]
pub enum Target {
    Name(String),
    Conninfo(String),
}

impl Target {
    fn arg(&self) -> &str {
        match self {
            Target::Name(n) | Target::Conninfo(n) => n,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PgTools {
    bin: Option<PathBuf>,
}

impl PgTools {
    pub fn locate(flag: Option<&Path>, configured: Option<&Path>) -> CliResult<PgTools> {
        let bin = flag.or(configured).map(Path::to_path_buf);
        if let Some(dir) = &bin
            && !dir.join("pg_dump").is_file()
        {
            return Err(Failure::usage(format!(
                "no pg_dump in {} (from --pg-bin or POSTGRESQL_BIN_PATH)",
                dir.display()
            )));
        }
        let bin = bin.or_else(|| (!on_path("pg_dump")).then(newest_debian_bin).flatten());
        Ok(PgTools { bin })
    }

    fn command(&self, tool: &str) -> Command {
        let mut c = match &self.bin {
            Some(dir) => Command::new(dir.join(tool)),
            None => Command::new(tool),
        };
        c.stdin(Stdio::null());
        c
    }

    /// Starts `pg_dump` in custom format with its own compression off (pgseal compresses),
    /// writing to a pipe.
    pub fn dump(&self, target: &Target, schemas: &[String]) -> CliResult<Running> {
        let mut c = self.command("pg_dump");
        // `-w`: never prompt for a password (libpq finds it in PGPASSWORD or ~/.pgpass).
        c.args(["--format=custom", "--compress=0", "-w"]);
        for s in schemas {
            c.arg(format!("--schema={s}"));
        }
        c.arg(format!("--dbname={}", target.arg()));
        Running::spawn("pg_dump", c, true)
    }

    /// Runs SQL with psql against `target`; returns its unaligned, tuples-only output.
    pub fn psql(&self, target: &Target, sql: &str) -> CliResult<String> {
        let mut c = self.command("psql");
        c.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-w",
            "-F",
            "\t",
        ])
        .arg(format!("--dbname={}", target.arg()))
        .args(["-f", "-"])
        .stdin(Stdio::piped());
        let mut running = Running::spawn("psql", c, true)?;
        {
            use std::io::Write;
            let mut stdin = running.child.stdin.take().expect("stdin was piped");
            stdin
                .write_all(sql.as_bytes())
                .map_err(|e| Failure::io("sending SQL to psql", e))?;
        }
        let mut out = String::new();
        running
            .stdout
            .take()
            .expect("stdout was piped")
            .read_to_string(&mut out)
            .map_err(|e| Failure::io("reading psql's output", e))?;
        running.wait()?;
        Ok(out)
    }

    /// The databases a `backup --all` considers: every one that is not a template. One that
    /// refuses connections is listed, so that its backup fails visibly instead of being skipped.
    pub fn databases(&self, maintenance: &Target) -> CliResult<Vec<String>> {
        let out = self.psql(
            maintenance,
            "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY datname;",
        )?;
        Ok(out
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Starts `pg_restore` into `database`, reading the archive from `archive` (a file) or from
    /// its standard input (`None`).
    pub fn restore(
        &self,
        database: &Target,
        archive: Option<&Path>,
        options: &RestoreOptions,
    ) -> CliResult<Running> {
        let mut c = self.command("pg_restore");
        c.arg("-w").arg("--exit-on-error");
        c.arg(format!("--dbname={}", database.arg()));
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
        Running::spawn("pg_restore", c, false)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RestoreOptions {
    pub clean: bool,
    pub jobs: u32,
}

/// A running tool with its stderr being collected.
pub struct Running {
    pub tool: &'static str,
    pub child: Child,
    pub stdout: Option<ChildStdout>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Running {
    fn spawn(tool: &'static str, mut c: Command, capture_stdout: bool) -> CliResult<Running> {
        if capture_stdout {
            c.stdout(Stdio::piped());
        } else {
            c.stdout(Stdio::null());
        }
        c.stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|e| {
            Failure::new(
                ExitCode::Database,
                format!(
                    "cannot run {tool}: {e} (install the PostgreSQL client tools, or point \
                         --pg-bin / POSTGRESQL_BIN_PATH at them)"
                ),
            )
        })?;
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
            tool,
            stdout: child.stdout.take(),
            child,
            stderr: Some(stderr),
        })
    }

    /// Waits for the tool; its failure becomes an error carrying the end of its stderr.
    pub fn wait(mut self) -> CliResult<()> {
        drop(self.child.stdin.take());
        drop(self.stdout.take());
        let status = self
            .child
            .wait()
            .map_err(|e| Failure::io(format!("waiting for {}", self.tool), e))?;
        let stderr = self.stderr_text();
        if status.success() {
            if !stderr.trim().is_empty() {
                eprintln!("{}: {}", self.tool, stderr.trim_end());
            }
            return Ok(());
        }
        Err(Failure::new(
            ExitCode::Database,
            format!("{} failed ({status}): {}", self.tool, stderr.trim_end()),
        ))
    }

    /// Stops the tool (it is being abandoned after an error of ours) and reaps it.
    pub fn abort(mut self) {
        let _ = self.child.kill();
        drop(self.child.stdin.take());
        drop(self.stdout.take());
        let _ = self.child.wait();
        let _ = self.stderr_text();
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

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

fn newest_debian_bin() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_dump").is_file().then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, d)| d)
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
