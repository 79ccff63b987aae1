//! Helpers shared by the CLI test files: running the binary, reading its outcome.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

pub const PASSWORD: &str = "correct-horse-battery-staple";

/// The binary with no password in its environment, detached from any terminal (`setsid`), so
/// a missing password fails instead of prompting.
pub fn bin() -> Command {
    let mut c = Command::new("setsid");
    c.arg("-w").arg(env!("CARGO_BIN_EXE_pgseal"));
    for var in [
        "SERVER_KEY_PASSWORD",
        "PGSEAL_USER_KEY_PASSWORD",
        "PGSEAL_KEY_PASSWORD",
        "BACKUP_ENCRYPTION_PASSWORD",
        "PGSEAL_CONFIG",
        "PGSEAL_STORE",
        "PGSEAL_USER",
        "PGSEAL_REPOSITORY",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        c.env_remove(var);
    }
    // No stray ./pgseal.toml or ~/.config/pgseal from the machine running the tests.
    c.env("XDG_CONFIG_HOME", "/nonexistent-pgseal-test");
    c.stdin(Stdio::null());
    c
}

pub fn with_passwords(mut c: Command) -> Command {
    c.env("SERVER_KEY_PASSWORD", PASSWORD)
        .env("PGSEAL_USER_KEY_PASSWORD", PASSWORD)
        .env("PGSEAL_KEY_PASSWORD", PASSWORD);
    c
}

pub fn run(args: &[&str]) -> Output {
    with_passwords(bin())
        .args(args)
        .output()
        .expect("spawn pgseal")
}

pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    with_passwords(bin())
        .current_dir(dir)
        .args(args)
        .output()
        .expect("spawn pgseal")
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[track_caller]
pub fn ok(o: &Output) {
    assert!(o.status.success(), "exit {}: {}", code(o), stderr(o));
}

pub fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

/// The name this host gives itself, as catalog locations spell it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

/// The catalog location of the file at `path` (absolute) on this host: `file://HOST/PATH`.
pub fn location(path: &Path) -> pgseal_store::Location {
    pgseal_store::Location::file(&hostname(), path).unwrap()
}

/// The path a catalog entry's (file) location names.
pub fn path_of(entry: &pgseal_store::NewBackup) -> std::path::PathBuf {
    entry.location.file_path().expect("a file location")
}

/// Names in `dir`, sorted: to prove a failure left nothing behind.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The environment through which pgseal's commands reach `cluster`: libpq's variables, and the
/// cluster's own PostgreSQL tools (`POSTGRESQL_BIN_PATH`).
#[allow(dead_code)]
pub fn cluster_env(
    cluster: &pgseal_testkit::TestCluster,
) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let mut env: Vec<(std::ffi::OsString, std::ffi::OsString)> = cluster
        .env()
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    env.push(("POSTGRESQL_BIN_PATH".into(), cluster.bin_dir().into()));
    env
}

/// A pgseal site made by `pgseal init` in a temp dir, with one user (`system_backup`) and their
/// key. Every command runs inside it, with the passwords and any extra environment it was made
/// with (a test cluster's libpq variables, say).
pub struct Site {
    _tmp: tempfile::TempDir,
    pub dir: std::path::PathBuf,
    env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
}

impl Site {
    pub fn new() -> Site {
        Site::with_env(Vec::new())
    }

    pub fn with_env(env: Vec<(std::ffi::OsString, std::ffi::OsString)>) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let site = Site {
            dir: tmp.path().join("site"),
            _tmp: tmp,
            env,
        };
        let dir = site.dir.to_str().unwrap().to_owned();
        ok(&site.run(&["init", "--dir", &dir, "--key-size", "2048"]));
        ok(&site.run(&["user", "add", "system_backup"]));
        ok(&site.run(&[
            "user-key",
            "generate",
            "system_backup",
            "--key-size",
            "2048",
        ]));
        site
    }

    /// The binary, with the passwords and this site's environment, run inside the site.
    pub fn cmd(&self) -> Command {
        let mut c = with_passwords(bin());
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        if self.dir.exists() {
            c.current_dir(&self.dir);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("spawn pgseal")
    }

    /// pgseal itself, in the site with its environment, not through `setsid` (for [`kill_at`]).
    pub fn direct(&self) -> Command {
        direct(&self.dir, &self.env)
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.join(name)
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    pub fn store(&self) -> pgseal_store::Store {
        pgseal_store::Store::open(&pgseal_store::StoreUrl::Sqlite(self.path("pgseal.db"))).unwrap()
    }

    pub fn audit(&self) -> Vec<pgseal_store::AuditEntry> {
        self.store().audit_entries(10_000).unwrap()
    }

    pub fn last_audit(&self) -> pgseal_store::AuditEntry {
        self.audit().pop().expect("an audit entry")
    }
}

/// Runs `c` (pgseal itself, not through `setsid`, so signals hit exactly it) until it stops at
/// the crash point `point` (debug builds stop themselves there), then kills it with SIGKILL.
/// Panics if it ends without reaching the point.
pub fn kill_at(mut c: Command, point: &str) {
    let mut child = c
        .env("PGSEAL_TEST_STOP_AT", point)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stat = format!("/proc/{}/stat", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("pgseal ended ({status}) without reaching {point}: {err}");
        }
        let state = std::fs::read_to_string(&stat).unwrap_or_default();
        // The state follows the parenthesised command name: "pid (comm) S ...".
        if state
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{point} not reached in time"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// pgseal itself (not through `setsid`) with the passwords and `env`, run in `dir`: for
/// [`kill_at`].
pub fn direct(dir: &Path, env: &[(std::ffi::OsString, std::ffi::OsString)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pgseal"));
    c.env("XDG_CONFIG_HOME", "/nonexistent-pgseal-test");
    let mut c = with_passwords(c);
    c.envs(env.iter().map(|(k, v)| (k, v))).current_dir(dir);
    c
}

/// `pgseal serve` on a site, stopped (SIGTERM, then waited for) when dropped.
pub struct Service {
    pub child: std::process::Child,
    /// `https://127.0.0.1:PORT` or `unix:///PATH`.
    pub url: String,
}

impl Service {
    /// Starts the service with `args` and waits until it listens.
    pub fn start(site: &Site, args: &[&str]) -> Service {
        let mut child = site
            .direct()
            .arg("serve")
            .args(args)
            .env_remove("PGSEAL_USER_KEY_PASSWORD")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pgseal serve");
        let mut lines =
            std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
        let listening = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => panic!("pgseal serve ended before it listened: {:?}", child.wait()),
            };
            if let Some(places) = line.split("listening on ").nth(1) {
                break places.split(", ").next().unwrap().to_owned();
            }
        };
        // Keep draining its standard error so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Service {
            child,
            url: listening,
        }
    }

    pub fn tls(site: &Site, pki: &pgseal_testkit::TestPki) -> Service {
        Service::start(
            site,
            &[
                "--listen",
                "127.0.0.1:0",
                "--cert",
                pki.cert.to_str().unwrap(),
                "--key",
                pki.key.to_str().unwrap(),
            ],
        )
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM to exactly the process started; its exit status (a clean shutdown is success).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.child.wait().unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}
