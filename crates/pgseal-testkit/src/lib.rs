//! Throwaway PostgreSQL clusters — and a throwaway S3 engine — for pgseal's tests.
//!
//! Tests that need a real server (the key store, `backup`/`restore` through `pg_dump` and
//! `pg_restore`) start one themselves: [`TestCluster::start`] runs `initdb` into a fresh
//! temporary directory and `pg_ctl start` on a free port, listening **only** on a unix socket
//! in that directory (`listen_addresses = ''`, no TCP at all), with durability switched off for
//! speed. Every cluster is independent — its own directory, its own port — so test binaries can
//! run in parallel (nextest does).
//!
//! Most tests share one cluster per test binary and take a database each:
//!
//! ```no_run
//! use pgseal_testkit::TestCluster;
//!
//! let pg = TestCluster::shared();
//! let db = pg.create_database("restore_roundtrip").unwrap();
//! assert_eq!(pg.psql(&db, "SELECT 1").unwrap().trim(), "1");
//! // Hand the cluster to a libpq tool: pg_dump -d "<conninfo>", or PGHOST/PGPORT/PGUSER.
//! let status = std::process::Command::new(pg.bin_dir().join("pg_dump"))
//!     .args(["-Fc", "-d", &pg.conninfo(&db), "-f", "/dev/null"])
//!     .status()
//!     .unwrap();
//! assert!(status.success());
//! ```
//!
//! # Finding PostgreSQL
//!
//! The server binaries (`initdb`, `pg_ctl`, `postgres`, `psql`) are taken from the first of:
//! the directory in `PGSEAL_TEST_PG_BIN`; the highest version under `/usr/lib/postgresql/*/bin`
//! (Debian's layout); `pg_config --bindir`; `PATH`. When none has them, [`TestCluster::start`]
//! returns [`TestkitError::NotInstalled`], whose message says to install the `postgresql`
//! package.
//!
//! # Running as root
//!
//! `initdb` and `postgres` refuse to run as root, and CI runs tests as root. When the effective
//! user is root, the server-side programs (`initdb`, `pg_ctl`, and so the postmaster) run as the
//! `postgres` system user through `runuser -u postgres --`, in a temporary directory chowned to
//! that user (created under a directory `postgres` can traverse: the temp dir, or `/tmp`).
//! Client programs (`psql`, and whatever the test runs) stay root and connect as the database
//! superuser `postgres` over the socket, with `trust` authentication. Otherwise everything runs
//! as the current user, and the database superuser is still called `postgres`.
//!
//! # Cleanup
//!
//! Dropping a [`TestCluster`] stops the server (`pg_ctl stop -m immediate`, then `SIGKILL` if
//! that fails) and removes its directory. Because a cluster can outlive its `Drop` — the one
//! behind [`TestCluster::shared`] lives in a static that is never dropped, and a test process
//! can be killed — every cluster also gets a watchdog: a small `sh` process in its own process
//! group (so a Ctrl-C or a test runner killing the test's process group does not reach it) that
//! blocks reading a pipe whose only writer is the test process. When the test process exits for
//! any reason, even `SIGKILL`, the kernel closes that pipe, the watchdog wakes up, stops the
//! postmaster and deletes the directory.
//!
//! # Environment
//!
//! The programs this crate runs get a clean environment as far as PostgreSQL is concerned: no
//! inherited `PG*` variables, `LC_ALL=C`, and `psql -X` (no `.psqlrc`). Tools a test runs itself
//! with [`TestCluster::conninfo`], [`TestCluster::url`] or [`TestCluster::env`] still see the
//! test's own environment (`PGSSLMODE`, `PGOPTIONS`, ...).
//!
//! `PGSEAL_TEST_TMPDIR` overrides where the temporary directories go (default: the system temp
//! dir, or `/tmp` when that one is unsuitable: not traversable by `postgres`, or too long a path
//! for a unix socket).
//!
//! # An S3 engine: Garage
//!
//! Tests of backups kept in object storage talk to a real S3 engine: [`TestGarage`] starts a
//! single-node [Garage](https://garagehq.deuxfleurs.fr/) on loopback in its own temporary
//! directory, with a layout, an access key and a bucket, in the same style (own process, own
//! ports, a watchdog, [`TestGarage::shared`]):
//!
//! ```no_run
//! use pgseal_testkit::TestGarage;
//!
//! let s3 = TestGarage::shared();
//! // An S3 client for it: endpoint, region, static credentials, path-style addressing.
//! let (endpoint, region) = (s3.endpoint(), s3.region());
//! let (id, secret) = (s3.access_key_id(), s3.secret_access_key());
//! let bucket = s3.bucket(); // or s3.create_bucket("my-own-bucket")
//! # let _ = (endpoint, region, id, secret, bucket);
//! ```
//!
//! The `garage` binary (Garage 2.5.x) is taken from `PGSEAL_GARAGE_BIN`, else from where
//! `scripts/garage.sh` installs it (`$XDG_CACHE_HOME/pgseal/garage-2.5.0/bin/garage`, by
//! default `~/.cache/pgseal/garage-2.5.0/bin/garage`), else from `PATH`. When none is there
//! (or it is another version) [`TestGarage::start`] returns
//! [`TestkitError::GarageNotInstalled`], whose message says to run `scripts/garage.sh`.

#![warn(missing_docs)]

mod garage;
mod pki;

pub use garage::{BucketPermissions, GARAGE_VERSION, GarageKey, TestGarage};
pub use pki::TestPki;

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tempfile::TempDir;

/// The operating-system user the server runs as when the tests run as root, and the name of
/// the database superuser `initdb` creates (`-U postgres`).
const SERVER_USER: &str = "postgres";

/// The programs a directory must contain to be used as [`TestCluster::bin_dir`].
const REQUIRED_BINARIES: [&str; 4] = ["initdb", "pg_ctl", "postgres", "psql"];

/// How many times `pg_ctl start` is retried on a fresh port when the port seems taken.
const START_ATTEMPTS: usize = 3;

/// Lines of the server log quoted in a start error.
const LOG_TAIL_LINES: usize = 40;

/// A unix socket path (`sun_path`) holds 107 bytes plus the NUL; the socket file is
/// `<socket dir>/.s.PGSQL.<port>`.
const MAX_SOCKET_PATH: usize = 107;

const INSTALL_HINT: &str = "install the postgresql package (apt-get install postgresql)";

/// What went wrong starting or using a [`TestCluster`].
#[derive(Debug)]
#[non_exhaustive]
pub enum TestkitError {
    /// The PostgreSQL binaries (`initdb`, `pg_ctl`, `postgres`, `psql`) were not found.
    NotInstalled {
        /// Where they were looked for, and why each place did not qualify.
        searched: String,
    },
    /// The tests run as root, and there is no way to run the server as the `postgres` user
    /// (no such user, or no `runuser`).
    NoServerUser {
        /// What is missing.
        reason: String,
    },
    /// A file-system or process-spawning operation failed.
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The `garage` binary [`TestGarage`] runs was not found, or it is not a Garage 2.5.x.
    GarageNotInstalled {
        /// Where it was looked for, and why each place did not qualify.
        searched: String,
    },
    /// A program ran and failed (`initdb`, `pg_ctl`, `psql`, `garage`, ...).
    Command {
        /// The program and what it was asked to do.
        command: String,
        /// Its exit status and error output, and for a server start the tail of the server
        /// log.
        details: String,
    },
}

impl fmt::Display for TestkitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestkitError::NotInstalled { searched } => write!(
                f,
                "PostgreSQL binaries ({}) not found ({searched}): {INSTALL_HINT}, \
                 or point PGSEAL_TEST_PG_BIN at the directory holding them",
                REQUIRED_BINARIES.join(", ")
            ),
            TestkitError::NoServerUser { reason } => write!(
                f,
                "running as root, and PostgreSQL refuses to run as root; it must run as the \
                 `{SERVER_USER}` system user, but {reason} ({INSTALL_HINT} creates the user; \
                 runuser comes with util-linux)"
            ),
            TestkitError::GarageNotInstalled { searched } => write!(
                f,
                "Garage 2.5.x (the S3 engine of the tests) not found ({searched}): {}",
                garage::GARAGE_HINT
            ),
            TestkitError::Io { context, source } => write!(f, "{context}: {source}"),
            TestkitError::Command { command, details } => {
                write!(f, "{command} failed: {}", details.trim_end())
            }
        }
    }
}

impl std::error::Error for TestkitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TestkitError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> TestkitError {
    let context = context.into();
    move |source| TestkitError::Io { context, source }
}

/// A running, throwaway PostgreSQL cluster in a temporary directory.
///
/// Start one with [`TestCluster::start`], or use the per-test-binary [`TestCluster::shared`]
/// one. Dropping it stops the server and deletes the directory; see the
/// [crate documentation](crate#cleanup) for what happens when it is never dropped.
#[derive(Debug)]
pub struct TestCluster {
    bin_dir: PathBuf,
    dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    runner: Runner,
    /// The temporary directory (`dir`); `None` once removed.
    tempdir: Option<TempDir>,
    /// The watchdog process; its stdin is the pipe whose closing tells it to clean up.
    watchdog: Option<Child>,
}

impl TestCluster {
    /// Starts a fresh cluster: `initdb`, then `pg_ctl start` on a free port.
    ///
    /// Takes a second or two. Errors (never panics) when PostgreSQL is not installed — the
    /// message then says to install the `postgresql` package — and when `initdb` or the server
    /// fails, quoting their output and the tail of the server log.
    pub fn start() -> Result<TestCluster, TestkitError> {
        let bin_dir = find_bin_dir()?;
        let runner = Runner::detect()?;
        let base = base_dir(runner.is_root());
        let tempdir = tempfile::Builder::new()
            .prefix("pgseal-testkit-")
            .tempdir_in(&base)
            .map_err(io_error(format!(
                "creating a temporary directory in {}",
                base.display()
            )))?;
        let dir = tempdir.path().to_path_buf();
        // From here on, dropping `cluster` (on any error below) stops whatever was started and
        // removes the directory.
        let mut cluster = TestCluster {
            data_dir: dir.join("data"),
            socket_dir: dir.join("socket"),
            log_file: dir.join("server.log"),
            dir,
            bin_dir,
            port: 0,
            runner,
            tempdir: Some(tempdir),
            watchdog: None,
        };
        cluster.watchdog = Some(cluster.spawn_watchdog()?);
        cluster.prepare_dirs()?;
        cluster.initdb()?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// A cluster shared by every test of the test binary, started on first use.
    ///
    /// Each test should take its own database with [`TestCluster::create_database`]. The
    /// cluster is never dropped; its watchdog stops it and removes its directory when the test
    /// process exits.
    ///
    /// # Panics
    ///
    /// When the cluster cannot be started, with the [`TestCluster::start`] error message (in
    /// every test that calls this; the start is attempted only once).
    pub fn shared() -> &'static TestCluster {
        static SHARED: OnceLock<Result<TestCluster, String>> = OnceLock::new();
        match SHARED.get_or_init(|| TestCluster::start().map_err(|e| e.to_string())) {
            Ok(cluster) => cluster,
            Err(message) => {
                panic!("pgseal-testkit: cannot start the shared PostgreSQL cluster: {message}")
            }
        }
    }

    /// The directory holding the PostgreSQL programs used: `pg_dump`, `pg_restore`, `psql`,
    /// `initdb`, ...
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The directory of the server's unix socket (the libpq `host`). The server listens on
    /// nothing else: no TCP.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server's port. With no TCP listener it only names the socket file
    /// (`.s.PGSQL.<port>` in [`TestCluster::socket_dir`]), but libpq clients still need it.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database superuser to connect as (`postgres`; authentication is `trust`).
    pub fn superuser(&self) -> &str {
        SERVER_USER
    }

    /// The cluster's data directory (`PGDATA`). Removed when the cluster is dropped.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server log file, handy when a test fails. Removed when the cluster is dropped.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// A libpq keyword/value connection string for database `db`, for example
    /// `host=/tmp/pgseal-testkit-Ab12/socket port=40123 user=postgres dbname=db`. Values are
    /// quoted where libpq needs it.
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            conninfo_value(&self.socket_dir.to_string_lossy()),
            self.port,
            conninfo_value(self.superuser()),
            conninfo_value(db)
        )
    }

    /// The same connection as a URL, the socket directory going in the `host` query parameter:
    /// `postgres://postgres@/db?host=/tmp/pgseal-testkit-Ab12/socket&port=40123`. Everything
    /// outside the URL-safe characters is percent-encoded (libpq decodes it).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{}@/{}?host={}&port={}",
            percent_encode(self.superuser(), false),
            percent_encode(db, false),
            percent_encode(&self.socket_dir.to_string_lossy(), true),
            self.port
        )
    }

    /// `PGHOST`, `PGPORT` and `PGUSER` for this cluster: set them on a libpq program
    /// (`Command::envs`) and it connects here; name the database with `-d` or `PGDATABASE`.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "PGHOST".to_owned(),
                self.socket_dir.to_string_lossy().into_owned(),
            ),
            ("PGPORT".to_owned(), self.port.to_string()),
            ("PGUSER".to_owned(), self.superuser().to_owned()),
        ]
    }

    /// Runs `sql` (one or more statements, as a script) through `psql` against database `db`
    /// and returns what it printed.
    ///
    /// `psql` runs with `-X -q -A -t -v ON_ERROR_STOP=1`: no `.psqlrc`, unaligned tuples only,
    /// so `SELECT 1` returns `"1\n"` and columns are separated by `|`. The first failing
    /// statement stops the script, and the error carries `psql`'s error output.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, TestkitError> {
        let mut cmd = Command::new(self.bin_dir.join("psql"));
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
            "-d",
        ])
        .arg(self.conninfo(db));
        clean_env(&mut cmd);
        let what = format!("psql on database {db:?}");
        let output = run_with_stdin(cmd, sql.as_bytes().to_vec(), &what)?;
        if !output.status.success() {
            return Err(TestkitError::Command {
                command: what,
                details: describe_output(&output),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Creates a database with a fresh name made from `prefix` (lowercased, anything but
    /// `[a-z0-9_]` replaced by `_`, shortened, plus a unique suffix) and returns the name.
    pub fn create_database(&self, prefix: &str) -> Result<String, TestkitError> {
        let name = unique_database_name(prefix);
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {};", quote_ident(&name)),
        )?;
        Ok(name)
    }

    /// A command for a server-side program (`initdb`, `pg_ctl`), run as the right user in the
    /// cluster's directory with a clean environment.
    fn server_command(&self, program: &str) -> Command {
        let mut cmd = self.runner.command(&self.bin_dir.join(program));
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        clean_env(&mut cmd);
        cmd
    }

    /// Spawns the watchdog (see the crate documentation): it waits for EOF on its stdin, then
    /// stops the server if it runs and removes the directory.
    fn spawn_watchdog(&self) -> Result<Child, TestkitError> {
        // Positional parameters, so no path needs shell quoting:
        // $1 pg_ctl, $2 data dir, $3 cluster dir, $4 runuser ("" when not root).
        const SCRIPT: &str = r#"
trap '' HUP INT QUIT PIPE
read -r _ignored
if [ -f "$2/postmaster.pid" ]; then
    if [ -n "$4" ]; then
        "$4" -u postgres -- "$1" stop -D "$2" -m immediate -w -t 30 >/dev/null 2>&1
    else
        "$1" stop -D "$2" -m immediate -w -t 30 >/dev/null 2>&1
    fi
    if [ -f "$2/postmaster.pid" ] && read -r pid < "$2/postmaster.pid"; then
        kill -KILL "$pid" 2>/dev/null
    fi
fi
rm -rf "$3"
"#;
        let runuser = match &self.runner {
            Runner::Direct => OsStr::new(""),
            Runner::AsServerUser { runuser, .. } => runuser.as_os_str(),
        };
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(SCRIPT)
            .arg("pgseal-testkit-watchdog")
            .arg(self.bin_dir.join("pg_ctl"))
            .arg(&self.data_dir)
            .arg(&self.dir)
            .arg(runuser)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C, or a test runner killing the test's process
            // group, must not kill it too.
            .process_group(0);
        clean_env(&mut cmd);
        cmd.spawn()
            .map_err(io_error("spawning the cleanup watchdog (/bin/sh)"))
    }

    /// Makes the cluster directory and the socket directory, owned by the server user.
    fn prepare_dirs(&self) -> Result<(), TestkitError> {
        let socket_path_len = self.socket_dir.as_os_str().len() + "/.s.PGSQL.65535".len();
        if socket_path_len > MAX_SOCKET_PATH {
            return Err(TestkitError::Io {
                context: format!(
                    "the socket directory {} is too long a path for a unix socket; set \
                     PGSEAL_TEST_TMPDIR to a shorter directory",
                    self.socket_dir.display()
                ),
                source: io::Error::from(io::ErrorKind::InvalidInput),
            });
        }
        fs::create_dir(&self.socket_dir)
            .map_err(io_error(format!("creating {}", self.socket_dir.display())))?;
        for dir in [&self.dir, &self.socket_dir] {
            // 0755: the server user must reach the socket directory, and clients running as
            // any user can connect.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
                .map_err(io_error(format!("setting the mode of {}", dir.display())))?;
            if let Runner::AsServerUser { uid, gid, .. } = self.runner {
                std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(io_error(format!(
                    "chowning {} to {SERVER_USER}",
                    dir.display()
                )))?;
            }
        }
        Ok(())
    }

    /// `initdb` with `--locale=C.UTF-8`, falling back to `--locale=C`.
    fn initdb(&self) -> Result<(), TestkitError> {
        let mut failures = Vec::new();
        for locale in ["C.UTF-8", "C"] {
            let mut cmd = self.server_command("initdb");
            cmd.arg("-D")
                .arg(&self.data_dir)
                .args(["-A", "trust", "-U", SERVER_USER, "--no-sync", "-E", "UTF8"])
                .arg(format!("--locale={locale}"));
            let output = cmd.output().map_err(io_error(format!(
                "running {}",
                self.runner.describe("initdb")
            )))?;
            if output.status.success() {
                return Ok(());
            }
            failures.push(format!(
                "with --locale={locale}: {}",
                describe_output(&output)
            ));
            // initdb removes what it created on failure; make sure, before the next try.
            if self.data_dir.exists() {
                fs::remove_dir_all(&self.data_dir)
                    .map_err(io_error(format!("removing {}", self.data_dir.display())))?;
            }
        }
        Err(TestkitError::Command {
            command: self.runner.describe("initdb"),
            details: failures.join("\n"),
        })
    }

    /// `pg_ctl start` on a free port, trying another port when the chosen one seems taken.
    fn start_server(&mut self) -> Result<(), TestkitError> {
        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            self.port = free_port()?;
            let options = format!(
                "-c listen_addresses='' -k {} -p {} -c fsync=off -c full_page_writes=off \
                 -c synchronous_commit=off",
                shell_quote(&self.socket_dir.to_string_lossy()),
                self.port
            );
            let mut cmd = self.server_command("pg_ctl");
            cmd.args(["-w", "-t", "60", "-D"])
                .arg(&self.data_dir)
                .arg("-l")
                .arg(&self.log_file)
                .arg("-o")
                .arg(options)
                .arg("start");
            let output = cmd.output().map_err(io_error(format!(
                "running {}",
                self.runner.describe("pg_ctl")
            )))?;
            if output.status.success() {
                return Ok(());
            }
            let log = log_tail(&self.log_file);
            let port_taken = [
                "already in use",
                "could not create lock file",
                "another postmaster",
                "could not create any Unix-domain sockets",
            ]
            .iter()
            .any(|needle| log.contains(needle));
            failures.push(format!(
                "attempt {attempt} on port {}: {}\n--- tail of the server log {} ---\n{log}",
                self.port,
                describe_output(&output),
                self.log_file.display()
            ));
            // Whatever half-started must be gone before trying again (or giving up).
            self.stop_server();
            if !port_taken {
                break;
            }
        }
        Err(TestkitError::Command {
            command: self.runner.describe("pg_ctl start"),
            details: failures.join("\n"),
        })
    }

    /// Stops the postmaster if its pid file exists: `pg_ctl stop -m immediate`, else `SIGKILL`.
    fn stop_server(&self) {
        let pid_file = self.data_dir.join("postmaster.pid");
        if !pid_file.exists() {
            return;
        }
        let mut cmd = self.server_command("pg_ctl");
        cmd.args(["stop", "-m", "immediate", "-w", "-t", "30", "-D"])
            .arg(&self.data_dir);
        let stopped = cmd.output().map(|o| o.status.success()).unwrap_or(false);
        if stopped || !pid_file.exists() {
            return;
        }
        let pid = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok());
        if let Some(pid) = pid {
            let _ = Command::new("/bin/sh")
                .args(["-c", "kill -KILL \"$1\"", "sh"])
                .arg(pid.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            // Give it a moment to go, so the directory can be removed.
            for _ in 0..50 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for TestCluster {
    /// Stops the server (`pg_ctl stop -m immediate`, `SIGKILL` if that fails), removes the
    /// cluster's directory, and lets the watchdog go.
    fn drop(&mut self) {
        self.stop_server();
        if let Some(tempdir) = self.tempdir.take() {
            if let Err(error) = tempdir.close() {
                eprintln!(
                    "pgseal-testkit: could not remove {}: {error} (the watchdog tries again)",
                    self.dir.display()
                );
            }
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            // Closing its stdin wakes it; with the directory gone it has nothing left to do.
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
    }
}

/// How the server-side programs are run.
#[derive(Debug, Clone)]
enum Runner {
    /// As the current (non-root) user.
    Direct,
    /// As root, through `runuser -u postgres --`.
    AsServerUser {
        runuser: PathBuf,
        uid: u32,
        gid: u32,
    },
}

impl Runner {
    fn detect() -> Result<Runner, TestkitError> {
        if !running_as_root() {
            return Ok(Runner::Direct);
        }
        let id = |flag: &str| -> Result<u32, TestkitError> {
            let output = Command::new("id")
                .args([flag, SERVER_USER])
                .stdin(Stdio::null())
                .output()
                .map_err(io_error(format!("running id {flag} {SERVER_USER}")))?;
            String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse()
                .ok()
                .filter(|_| output.status.success())
                .ok_or_else(|| TestkitError::NoServerUser {
                    reason: format!(
                        "`id {flag} {SERVER_USER}` failed: {}",
                        String::from_utf8_lossy(&output.stderr).trim()
                    ),
                })
        };
        let uid = id("-u")?;
        let gid = id("-g")?;
        let runuser = find_program("runuser", &["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
            .ok_or_else(|| TestkitError::NoServerUser {
                reason: "there is no runuser program to switch to it".to_owned(),
            })?;
        Ok(Runner::AsServerUser { runuser, uid, gid })
    }

    fn is_root(&self) -> bool {
        matches!(self, Runner::AsServerUser { .. })
    }

    fn command(&self, program: &Path) -> Command {
        match self {
            Runner::Direct => Command::new(program),
            Runner::AsServerUser { runuser, .. } => {
                let mut cmd = Command::new(runuser);
                cmd.args(["-u", SERVER_USER, "--"]).arg(program);
                cmd
            }
        }
    }

    /// `what`, saying which user runs it.
    fn describe(&self, what: &str) -> String {
        match self {
            Runner::Direct => what.to_owned(),
            Runner::AsServerUser { .. } => format!("{what} (as the {SERVER_USER} user)"),
        }
    }
}

/// Whether the effective user is root (`id -u` prints 0).
fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "0")
    })
}

/// Finds the directory holding the PostgreSQL programs (see the crate documentation).
fn find_bin_dir() -> Result<PathBuf, TestkitError> {
    let has_all = |dir: &Path| REQUIRED_BINARIES.iter().all(|b| dir.join(b).is_file());

    if let Some(dir) = std::env::var_os("PGSEAL_TEST_PG_BIN").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if has_all(&dir) {
            Ok(dir)
        } else {
            Err(TestkitError::NotInstalled {
                searched: format!(
                    "PGSEAL_TEST_PG_BIN={} does not contain them all",
                    dir.display()
                ),
            })
        };
    }

    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = name
                .to_str()?
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.into_iter().rev().find(|(_, dir)| has_all(dir)) {
        return Ok(dir);
    }

    if let Ok(output) = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && has_all(&dir) {
            return Ok(dir);
        }
    }

    if let Some(dir) = find_program("initdb", &[]).and_then(|p| p.parent().map(Path::to_path_buf)) {
        if has_all(&dir) {
            return Ok(dir);
        }
    }

    Err(TestkitError::NotInstalled {
        searched: "looked in PGSEAL_TEST_PG_BIN, /usr/lib/postgresql/*/bin, \
                   `pg_config --bindir` and PATH"
            .to_owned(),
    })
}

/// `name` in `PATH`, else in one of `extra` directories.
fn find_program(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Where cluster directories are created (see the crate documentation).
fn base_dir(as_root: bool) -> PathBuf {
    if let Some(dir) = std::env::var_os("PGSEAL_TEST_TMPDIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let temp = std::env::temp_dir();
    // Room for "/pgseal-testkit-XXXXXX/socket/.s.PGSQL.65535".
    let short_enough = temp.as_os_str().len() + 45 <= MAX_SOCKET_PATH;
    // The server user must be able to traverse every ancestor.
    let traversable = !as_root
        || temp
            .ancestors()
            .all(|dir| fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    if short_enough && traversable {
        temp
    } else {
        PathBuf::from("/tmp")
    }
}

/// A port no one listens on right now (bind 127.0.0.1:0, read the port, let go).
fn free_port() -> Result<u16, TestkitError> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(io_error("binding 127.0.0.1:0 to pick a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io_error("reading the port bound on 127.0.0.1:0"))?
        .port();
    Ok(port)
}

/// Drops inherited `PG*` variables (they would steer libpq, pg_ctl and initdb elsewhere) and
/// the locale variables, and sets `LC_ALL=C` so messages are English and initdb sees no broken
/// locale.
fn clean_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let bytes = name.as_bytes();
        if bytes.starts_with(b"PG")
            || bytes.starts_with(b"LC_")
            || bytes == b"LANG"
            || bytes == b"LANGUAGE"
        {
            cmd.env_remove(&name);
        }
    }
    cmd.env("LC_ALL", "C");
}

/// Runs `cmd` feeding `input` on its stdin, collecting stdout and stderr.
fn run_with_stdin(mut cmd: Command, input: Vec<u8>, what: &str) -> Result<Output, TestkitError> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_error(format!("running {what}")))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // A thread, so a large output cannot deadlock against a large input. A write error
    // (psql stopped reading after an error) shows up in the exit status instead.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child
        .wait_with_output()
        .map_err(io_error(format!("waiting for {what}")))?;
    let _ = writer.join();
    Ok(output)
}

/// Exit status, stderr and (if any) stdout of a finished program.
fn describe_output(output: &Output) -> String {
    let mut text = format!("{}", output.status);
    for (name, bytes) in [("stderr", &output.stderr), ("stdout", &output.stdout)] {
        let s = String::from_utf8_lossy(bytes);
        if !s.trim().is_empty() {
            text.push_str(&format!("\n{name}:\n{}", s.trim_end()));
        }
    }
    text
}

/// The last lines of the server log, or why it cannot be read.
fn log_tail(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}

/// A libpq keyword/value value, single-quoted when it must be.
fn conninfo_value(value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\');
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// Percent-encodes all but RFC 3986 unreserved characters (and `/` when `keep_slash`).
fn percent_encode(value: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && byte == b'/')
        {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Single-quotes `value` for `sh` (pg_ctl hands `-o` to a shell).
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// A double-quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `prefix`, tamed into `[a-z0-9_]`, at most 40 bytes, plus a process-wide counter.
fn unique_database_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let mut base: String = prefix
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    if !base.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
        base.insert_str(0, "db_");
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{base}_{}_{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_values_are_quoted_when_needed() {
        assert_eq!(conninfo_value("/tmp/x"), "/tmp/x");
        assert_eq!(conninfo_value(""), "''");
        assert_eq!(conninfo_value("a b"), "'a b'");
        assert_eq!(conninfo_value(r"it's\"), r"'it\'s\\'");
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(percent_encode("/tmp/a b", true), "/tmp/a%20b");
        assert_eq!(percent_encode("a/b?c", false), "a%2Fb%3Fc");
        assert_eq!(percent_encode("é", false), "%C3%A9");
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/tmp/x"), "'/tmp/x'");
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn database_names_are_tame_and_unique() {
        let a = unique_database_name("My Test-DB!");
        let b = unique_database_name("My Test-DB!");
        assert!(a.starts_with("my_test_db__"), "{a}");
        assert_ne!(a, b);
        assert!(unique_database_name("1abc").starts_with("db_1abc_"));
        assert!(unique_database_name("").starts_with("db__"));
        let long = unique_database_name(&"x".repeat(200));
        assert!(long.len() <= 63, "{long}");
        assert!(
            long.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        );
    }

    #[test]
    fn not_installed_message_says_what_to_install() {
        let message = TestkitError::NotInstalled {
            searched: "nowhere".to_owned(),
        }
        .to_string();
        assert!(
            message.contains("install the postgresql package (apt-get install postgresql)"),
            "{message}"
        );
    }
}
