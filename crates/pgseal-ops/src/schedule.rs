//! Schedules: the systemd service and timer units (or the crontab) that run a site's routine
//! work by themselves — a nightly `backup --all`, `prune` after it, a monthly `restore --check`
//! of each database's newest backup, a daily `audit verify`.
//!
//! [`plan`] turns a site's settings into units and [`crontab`] into a crontab: pure functions,
//! the same settings giving the same text. [`install`] writes units into a unit directory (each
//! file atomically, never over a unit pgseal did not write, unless forced) and [`remove`]
//! deletes exactly the ones it wrote; both are audited and, only in the system's unit directory
//! on a host where systemd runs, tell systemd (`daemon-reload`, `enable --now` /
//! `disable --now` of the timers).
//!
//! Passwords never appear in a unit: a unit names the file systemd hands it as a credential
//! (`LoadCredential=NAME:PATH`), and pgseal reads `$CREDENTIALS_DIRECTORY/NAME`. Cron has no
//! credentials, so a crontab names the same files with `--*-password-file`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use pgseal_store::Action;

use crate::error::{Error, Result};
use crate::files::AtomicFile;
use crate::session::Session;

/// The first line of every unit pgseal writes: how [`install`] and [`remove`] know a unit is
/// theirs to replace or delete.
pub const MARK: &str =
    "# Written by `pgseal schedule install`; `pgseal schedule remove` deletes it.";

/// The system's unit directory: only units written here are enabled and started.
pub const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";

/// Every unit name a schedule may hold, for [`remove`].
pub const UNIT_NAMES: [&str; 7] = [
    "pgseal-backup.service",
    "pgseal-backup.timer",
    "pgseal-prune.service",
    "pgseal-restore-check.service",
    "pgseal-restore-check.timer",
    "pgseal-audit-verify.service",
    "pgseal-audit-verify.timer",
];

/// A time of day, `HH:MM` (24-hour, the system's time zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockTime {
    /// 0–23.
    pub hour: u8,
    /// 0–59.
    pub minute: u8,
}

impl std::str::FromStr for ClockTime {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            Error::usage(format!(
                "{text:?} is not a time of day: give HH:MM, e.g. 02:30"
            ))
        };
        let (h, m) = text.split_once(':').ok_or_else(bad)?;
        let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(h) || !digits(m) {
            return Err(bad());
        }
        let (hour, minute) = (
            h.parse::<u8>().map_err(|_| bad())?,
            m.parse::<u8>().map_err(|_| bad())?,
        );
        if hour > 23 || minute > 59 {
            return Err(bad());
        }
        Ok(ClockTime { hour, minute })
    }
}

/// When the jobs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    /// The nightly backup (prune follows it).
    pub backup: ClockTime,
    /// The daily `audit verify`.
    pub audit: ClockTime,
    /// The monthly restore check: this day of the month (1–28, so every month has it)…
    pub check_day: u8,
    /// …at this time.
    pub check: ClockTime,
    /// systemd spreads each start over up to this many minutes (`RandomizedDelaySec=`), so
    /// that many hosts sharing a database server or bucket do not all start at once; cron has
    /// no such setting.
    pub randomized_delay_minutes: u32,
}

impl Default for Times {
    fn default() -> Self {
        Times {
            backup: ClockTime { hour: 2, minute: 0 },
            audit: ClockTime { hour: 6, minute: 0 },
            check_day: 1,
            check: ClockTime { hour: 4, minute: 0 },
            randomized_delay_minutes: 30,
        }
    }
}

/// What a schedule is made from: the front end gathers it from the site's configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The pgseal binary the units run (absolute).
    pub binary: PathBuf,
    /// The configuration file they name with `--config` (absolute).
    pub config: PathBuf,
    /// The system account the jobs run as (not root).
    pub system_user: String,
    /// The pgseal user whose key signs the backups (`backup --user`).
    pub creator: String,
    /// What the jobs write: the backup directory, an SQLite store's directory, a local
    /// repository (`ReadWritePaths=`; everything else is read-only to them).
    pub writable: Vec<PathBuf>,
    /// Where the password files are (`LoadCredential=` sources; the crontab's
    /// `--*-password-file`s): `server-key-password`, `user-key-password`, and `pgpass` when
    /// [`pgpass`](Self::pgpass).
    pub credentials_dir: PathBuf,
    /// Whether PostgreSQL's password comes from a pgpass file in the credentials directory
    /// (`PGPASSFILE`); else the jobs connect as libpq's environment says (peer authentication
    /// over the socket as the system user, typically).
    pub pgpass: bool,
    /// When.
    pub times: Times,
}

/// A password file a job reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credential {
    /// The credential's name: the file in the credentials directory, and what pgseal reads from
    /// `$CREDENTIALS_DIRECTORY`.
    pub name: &'static str,
    /// The flag that names the file instead, for cron.
    pub file_flag: &'static str,
}

/// The server key's password (decrypting, for the restore check).
pub const SERVER_KEY_PASSWORD: Credential = Credential {
    name: "server-key-password",
    file_flag: "--server-password-file",
};

/// The signing key's password (making backups).
pub const USER_KEY_PASSWORD: Credential = Credential {
    name: "user-key-password",
    file_flag: "--user-password-file",
};

/// The pgpass file's credential name ([`Settings::pgpass`]).
pub const PGPASS: &str = "pgpass";

/// When a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Every day at this time.
    Daily(ClockTime),
    /// Every month on this day at this time.
    Monthly(u8, ClockTime),
    /// After the job of this name succeeded.
    AfterSuccess(&'static str),
}

/// One job of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its name: the units are `pgseal-NAME.service` (and `.timer`).
    pub name: &'static str,
    /// What it does, for people.
    pub description: &'static str,
    /// The pgseal arguments after `--config FILE`.
    pub args: Vec<String>,
    /// The passwords it needs.
    pub credentials: Vec<Credential>,
    /// Whether it connects to PostgreSQL (and so gets the pgpass file).
    pub uses_postgres: bool,
    /// When.
    pub when: When,
}

impl Job {
    /// The service unit's name.
    pub fn service(&self) -> String {
        format!("pgseal-{}.service", self.name)
    }

    /// The timer unit's name, for a job that has a timer.
    pub fn timer(&self) -> Option<String> {
        (!matches!(self.when, When::AfterSuccess(_))).then(|| format!("pgseal-{}.timer", self.name))
    }
}

/// A unit file: its name and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// `pgseal-backup.service`…
    pub name: String,
    /// The whole file.
    pub text: String,
}

/// The jobs of a site's schedule, its settings checked.
pub fn jobs(settings: &Settings) -> Result<Vec<Job>> {
    check(settings)?;
    let t = &settings.times;
    Ok(vec![
        Job {
            name: "backup",
            description: "back up every database (pgseal backup --all)",
            args: strings(&["backup", "--all", "--user", &settings.creator]),
            credentials: vec![USER_KEY_PASSWORD],
            uses_postgres: true,
            when: When::Daily(t.backup),
        },
        Job {
            name: "prune",
            description: "delete backups the retention policy no longer keeps (pgseal prune)",
            args: strings(&["prune", "--yes"]),
            credentials: vec![],
            uses_postgres: false,
            when: When::AfterSuccess("backup"),
        },
        Job {
            name: "restore-check",
            description: "test-restore each database's newest backup (pgseal restore --check)",
            args: strings(&["restore", "--check", "--latest"]),
            credentials: vec![SERVER_KEY_PASSWORD],
            uses_postgres: true,
            when: When::Monthly(t.check_day, t.check),
        },
        Job {
            name: "audit-verify",
            description: "check the audit log's hash chain and anchors (pgseal audit verify)",
            args: strings(&["audit", "verify"]),
            credentials: vec![],
            uses_postgres: false,
            when: When::Daily(t.audit),
        },
    ])
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// The systemd units of a site's schedule: a service per job, a timer per timed job.
pub fn plan(settings: &Settings) -> Result<Vec<Unit>> {
    let jobs = jobs(settings)?;
    let mut units = Vec::new();
    for job in &jobs {
        units.push(Unit {
            name: job.service(),
            text: service(settings, job, &jobs),
        });
        if let Some(name) = job.timer() {
            units.push(Unit {
                name,
                text: timer(settings, job),
            });
        }
    }
    Ok(units)
}

/// The command line a job runs (the same in a unit and in the crontab, before cron's password
/// flags).
pub fn command(settings: &Settings, job: &Job) -> String {
    let mut words = vec![
        settings.binary.display().to_string(),
        "--config".to_owned(),
        settings.config.display().to_string(),
    ];
    words.extend(job.args.iter().cloned());
    words.join(" ")
}

fn service(settings: &Settings, job: &Job, jobs: &[Job]) -> String {
    let mut s = String::new();
    let user = &settings.system_user;
    let _ = writeln!(s, "{MARK}");
    let _ = writeln!(s, "[Unit]");
    let _ = writeln!(s, "Description=pgseal: {}", job.description);
    for next in jobs {
        if next.when == When::AfterSuccess(job.name) {
            // Prune only after a backup that succeeded: a site whose backups fail keeps what
            // it has (and says so), rather than deleting on.
            let _ = writeln!(s, "OnSuccess={}", next.service());
        }
    }
    if let When::AfterSuccess(first) = job.when {
        let _ = writeln!(s, "After=pgseal-{first}.service");
    }
    if job.uses_postgres {
        let _ = writeln!(s, "After=network-online.target postgresql.service");
        let _ = writeln!(s, "Wants=network-online.target");
    } else {
        let _ = writeln!(s, "After=network-online.target");
        let _ = writeln!(s, "Wants=network-online.target");
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "[Service]");
    let _ = writeln!(s, "Type=oneshot");
    let _ = writeln!(s, "User={user}");
    let _ = writeln!(s, "Group={user}");
    let _ = writeln!(s, "ExecStart={}", command(settings, job));
    for credential in &job.credentials {
        let _ = writeln!(
            s,
            "LoadCredential={}:{}",
            credential.name,
            settings.credentials_dir.join(credential.name).display()
        );
    }
    if settings.pgpass && job.uses_postgres {
        let _ = writeln!(
            s,
            "LoadCredential={PGPASS}:{}",
            settings.credentials_dir.join(PGPASS).display()
        );
        // A path, not a secret: libpq reads the file systemd placed there.
        let _ = writeln!(s, "Environment=PGPASSFILE=%d/{PGPASS}");
    }
    let _ = writeln!(s, "Nice=10");
    let _ = writeln!(s, "UMask=0077");
    if !settings.writable.is_empty() {
        let paths: Vec<String> = settings
            .writable
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let _ = writeln!(s, "ReadWritePaths={}", paths.join(" "));
    }
    s.push_str(HARDENING);
    s
}

/// The hardening every job's service carries. The jobs write only the paths in
/// `ReadWritePaths=` (the system is read-only to them), reach PostgreSQL over its Unix socket
/// or TCP and object storage over TCP, and run pg_dump, pg_restore and psql under setpriv —
/// nothing here stops any of that.
const HARDENING: &str = "\
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
PrivateMounts=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
CapabilityBoundingSet=
AmbientCapabilities=
RemoveIPC=yes
";

fn timer(settings: &Settings, job: &Job) -> String {
    let calendar = match job.when {
        When::Daily(t) => format!("*-*-* {:02}:{:02}:00", t.hour, t.minute),
        When::Monthly(day, t) => format!("*-*-{day:02} {:02}:{:02}:00", t.hour, t.minute),
        When::AfterSuccess(_) => unreachable!("a job that follows another has no timer"),
    };
    let mut s = String::new();
    let _ = writeln!(s, "{MARK}");
    let _ = writeln!(s, "[Unit]");
    let _ = writeln!(s, "Description=pgseal: when to {}", job.description);
    let _ = writeln!(s);
    let _ = writeln!(s, "[Timer]");
    let _ = writeln!(s, "OnCalendar={calendar}");
    // A run missed while the host was off happens at the next boot.
    let _ = writeln!(s, "Persistent=true");
    let delay = settings.times.randomized_delay_minutes;
    if delay > 0 {
        let _ = writeln!(s, "RandomizedDelaySec={delay}min");
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "[Install]");
    let _ = writeln!(s, "WantedBy=timers.target");
    s
}

/// The crontab equivalent to [`plan`]'s units, for `/etc/cron.d/pgseal` (its lines name the
/// user to run as). Cron has no credentials: each job names its password files with
/// `--*-password-file`, files in the credentials directory that only the system user may read.
pub fn crontab(settings: &Settings) -> Result<String> {
    let jobs = jobs(settings)?;
    let dir = &settings.credentials_dir;
    let user = &settings.system_user;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# pgseal's schedule (`pgseal schedule print --cron`), for /etc/cron.d/pgseal (root, 0644)."
    );
    let _ = writeln!(
        s,
        "# Passwords are never written here: each job reads them from files in {} that only",
        dir.display()
    );
    let _ = writeln!(
        s,
        "# {user} can read (chown {user}: FILE; chmod 0400 FILE). Cron has no randomized delay."
    );
    let _ = writeln!(s, "SHELL=/bin/sh");
    let _ = writeln!(s, "PATH=/usr/local/bin:/usr/bin:/bin");
    if settings.pgpass {
        let _ = writeln!(s, "PGPASSFILE={}", dir.join(PGPASS).display());
    }
    let line = |job: &Job| {
        let mut words = vec![command(settings, job)];
        for c in &job.credentials {
            words.push(format!("{} {}", c.file_flag, dir.join(c.name).display()));
        }
        words.join(" ")
    };
    for job in &jobs {
        let (minute, hour, day) = match job.when {
            When::Daily(t) => (t.minute, t.hour, "*".to_owned()),
            When::Monthly(d, t) => (t.minute, t.hour, d.to_string()),
            When::AfterSuccess(_) => continue,
        };
        let mut command = line(job);
        for next in &jobs {
            if next.when == When::AfterSuccess(job.name) {
                command = format!("{command} && {}", line(next));
            }
        }
        let _ = writeln!(s, "# {}", job.description);
        let _ = writeln!(s, "{minute} {hour} {day} * * {user} {command}");
    }
    Ok(s)
}

/// Refuses settings that would not make sound units: relative paths, root, and anything that
/// systemd or cron would read as more than a plain word (spaces, `%`, `$`, quotes, `\`,
/// `;`, control characters…).
fn check(settings: &Settings) -> Result<()> {
    for (what, path) in [
        ("the pgseal binary", &settings.binary),
        ("the configuration file", &settings.config),
        ("the credentials directory", &settings.credentials_dir),
    ]
    .into_iter()
    .chain(
        settings
            .writable
            .iter()
            .map(|p| ("a directory the jobs write", p)),
    ) {
        if !path.is_absolute() {
            return Err(Error::usage(format!(
                "{what} must be an absolute path for a schedule, not {}",
                path.display()
            )));
        }
        plain_word(what, &path.display().to_string())?;
        if ["/home", "/root", "/run/user"]
            .iter()
            .any(|h| path.starts_with(h))
        {
            return Err(Error::usage(format!(
                "{what} ({}) is under /home, /root or /run/user, which the units cannot see                  (ProtectHome=): put it elsewhere (/usr/local/bin, /etc/pgseal, /srv/pgseal)",
                path.display()
            )));
        }
    }
    let user = &settings.system_user;
    let valid_user = !user.is_empty()
        && user.len() <= 32
        && user
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && user
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !valid_user {
        return Err(Error::usage(format!(
            "{user:?} is not a system account name: lowercase letters, digits, _ and -, starting \
             with a letter or _, at most 32"
        )));
    }
    if user == "root" {
        return Err(Error::usage(
            "the scheduled jobs do not run as root: name a dedicated system account (--system-user)",
        ));
    }
    pgseal_store::Username::parse(&settings.creator).map_err(|e| Error::usage(e.to_string()))?;
    plain_word("the pgseal user", &settings.creator)?;
    let t = &settings.times;
    if !(1..=28).contains(&t.check_day) {
        return Err(Error::usage(format!(
            "the restore check's day of the month must be 1 to 28 (every month has it), not {}",
            t.check_day
        )));
    }
    Ok(())
}

fn plain_word(what: &str, text: &str) -> Result<()> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+@:,=".contains(c);
    match text.chars().find(|c| !plain(*c)) {
        None => Ok(()),
        Some(c) => Err(Error::usage(format!(
            "{what} ({}) holds {c:?}, which a unit file or crontab would not take as a plain \
             word: use a path or name of letters, digits and / . _ - + @ : , =",
            text.escape_debug()
        ))),
    }
}

/// What [`install`] or [`remove`] did with systemd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Systemd {
    /// Told systemd: these `systemctl` commands ran.
    Told(Vec<String>),
    /// The directory is not the system's unit directory: nothing enabled or disabled (a
    /// packager's staging directory, a test).
    NotSystemDir,
    /// systemd is not running on this host (`/run/systemd/system` is missing).
    NotRunning,
}

/// What [`install`] did.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The unit files written.
    pub written: Vec<PathBuf>,
    /// What systemd was told.
    pub systemd: Systemd,
}

/// What [`remove`] did.
#[derive(Debug, Clone)]
pub struct Removed {
    /// The unit files deleted.
    pub removed: Vec<PathBuf>,
    /// Files with a schedule unit's name that pgseal did not write: left alone.
    pub foreign: Vec<PathBuf>,
    /// What systemd was told.
    pub systemd: Systemd,
}

/// Writes `units` into `dir`, audited as `SCHEDULE_INSTALL`. A file already there that pgseal
/// did not write (its first line is not [`MARK`]) is refused — all before anything is written —
/// unless `force`. Each file appears whole or not at all (mode 0644). In the system's unit
/// directory on a host running systemd, then reloads systemd and enables and starts the timers.
/// The entry is the session's: the front end finishes it with the outcome.
pub fn install(
    session: &mut Session,
    units: &[Unit],
    dir: &Path,
    force: bool,
) -> Result<Installed> {
    let audit = session.audit(Action::ScheduleInstall);
    audit.detail("unit_dir", dir.display().to_string());
    audit.detail(
        "units",
        units.iter().map(|u| u.name.clone()).collect::<Vec<_>>(),
    );
    let result = (|| {
        let foreign: Vec<String> = units
            .iter()
            .map(|u| dir.join(&u.name))
            .filter(|p| is_foreign(p))
            .map(|p| p.display().to_string())
            .collect();
        if !foreign.is_empty() && !force {
            return Err(Error::usage(format!(
                "{} not written by pgseal schedule install: not replaced (move {} away, or pass \
                 --force to replace {})",
                foreign.join(", "),
                if foreign.len() == 1 { "it" } else { "them" },
                if foreign.len() == 1 { "it" } else { "them" },
            )));
        }
        let mut written = Vec::new();
        for unit in units {
            let path = dir.join(&unit.name);
            let mut file = AtomicFile::create(&path, true)?;
            file.set_mode(0o644);
            std::io::Write::write_all(&mut file, unit.text.as_bytes())
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            file.commit()?;
            written.push(path);
        }
        let timers: Vec<&str> = units
            .iter()
            .map(|u| u.name.as_str())
            .filter(|n| n.ends_with(".timer"))
            .collect();
        let systemd = tell_systemd(dir, |run| {
            run(&["daemon-reload"])?;
            let mut enable = vec!["enable", "--now"];
            enable.extend(&timers);
            run(&enable)
        })?;
        Ok(Installed { written, systemd })
    })();
    if let (Ok(done), Some(a)) = (&result, session.audit_mut()) {
        a.detail("systemd", systemd_detail(&done.systemd));
    }
    result
}

/// Deletes the schedule's units from `dir` — only those pgseal wrote (their first line is
/// [`MARK`]); a file of the same name that it did not write is left and reported. Audited as
/// `SCHEDULE_REMOVE`. In the system's unit directory on a host running systemd, the timers are
/// first disabled and stopped, and systemd reloaded after.
pub fn remove(session: &mut Session, dir: &Path) -> Result<Removed> {
    session
        .audit(Action::ScheduleRemove)
        .detail("unit_dir", dir.display().to_string());
    let result = (|| {
        let mut ours = Vec::new();
        let mut foreign = Vec::new();
        for name in UNIT_NAMES {
            let path = dir.join(name);
            match std::fs::symlink_metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("examining {}", path.display()), e)),
                Ok(_) if is_foreign(&path) => foreign.push(path),
                Ok(_) => ours.push(path),
            }
        }
        let timers: Vec<String> = ours
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .filter(|n| n.ends_with(".timer"))
            .collect();
        let systemd_before = tell_systemd(dir, |run| {
            if timers.is_empty() {
                return Ok(());
            }
            let mut disable = vec!["disable", "--now"];
            disable.extend(timers.iter().map(String::as_str));
            run(&disable)
        })?;
        let mut removed = Vec::new();
        for path in ours {
            std::fs::remove_file(&path)
                .map_err(|e| Error::io(format!("deleting {}", path.display()), e))?;
            removed.push(path);
        }
        let systemd = match systemd_before {
            Systemd::Told(mut done) => {
                if let Systemd::Told(more) = tell_systemd(dir, |run| run(&["daemon-reload"]))? {
                    done.extend(more);
                }
                Systemd::Told(done)
            }
            other => other,
        };
        Ok(Removed {
            removed,
            foreign,
            systemd,
        })
    })();
    if let (Ok(done), Some(a)) = (&result, session.audit_mut()) {
        a.detail(
            "removed",
            done.removed
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>(),
        );
        a.detail("systemd", systemd_detail(&done.systemd));
    }
    result
}

fn systemd_detail(s: &Systemd) -> serde_json::Value {
    match s {
        Systemd::Told(commands) => serde_json::json!(commands),
        Systemd::NotSystemDir => "not the system unit directory".into(),
        Systemd::NotRunning => "systemd not running".into(),
    }
}

/// Whether a file is there that pgseal did not write: anything but a regular file whose first
/// line is [`MARK`].
fn is_foreign(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Err(_) => false,
        Ok(meta) if !meta.is_file() => true,
        Ok(_) => match std::fs::read_to_string(path) {
            Ok(text) => text.lines().next() != Some(MARK),
            Err(_) => true,
        },
    }
}

/// Runs `steps` with a `systemctl` runner when `dir` is the system's unit directory and systemd
/// runs here; otherwise says why it did not.
fn tell_systemd(
    dir: &Path,
    steps: impl FnOnce(&mut dyn FnMut(&[&str]) -> Result<()>) -> Result<()>,
) -> Result<Systemd> {
    let system = Path::new(SYSTEM_UNIT_DIR);
    let same = dir == system
        || std::fs::canonicalize(dir)
            .ok()
            .zip(std::fs::canonicalize(system).ok())
            .is_some_and(|(a, b)| a == b);
    if !same {
        return Ok(Systemd::NotSystemDir);
    }
    if !Path::new("/run/systemd/system").is_dir() {
        return Ok(Systemd::NotRunning);
    }
    let mut done = Vec::new();
    let mut run = |args: &[&str]| -> Result<()> {
        let shown = format!("systemctl {}", args.join(" "));
        let out = std::process::Command::new("systemctl")
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| Error::io(format!("running {shown}"), e))?;
        if !out.status.success() {
            return Err(Error::io(
                format!("running {shown}"),
                std::io::Error::other(format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
            ));
        }
        done.push(shown);
        Ok(())
    };
    steps(&mut run)?;
    Ok(Systemd::Told(done))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            binary: "/usr/bin/pgseal".into(),
            config: "/etc/pgseal/pgseal.toml".into(),
            system_user: "pgseal".into(),
            creator: "backup_bot".into(),
            writable: vec!["/srv/pgseal/backups".into(), "/srv/pgseal".into()],
            credentials_dir: "/etc/pgseal/credentials".into(),
            pgpass: false,
            times: Times::default(),
        }
    }

    fn unit<'a>(units: &'a [Unit], name: &str) -> &'a str {
        &units
            .iter()
            .find(|u| u.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .text
    }

    #[test]
    fn the_plan_has_a_service_per_job_and_a_timer_per_timed_one() {
        let units = plan(&settings()).unwrap();
        let names: Vec<&str> = units.iter().map(|u| u.name.as_str()).collect();
        let mut expected = UNIT_NAMES.to_vec();
        expected.sort_unstable();
        let mut got = names.clone();
        got.sort_unstable();
        assert_eq!(got, expected);
        assert!(
            units
                .iter()
                .all(|u| u.text.starts_with(&format!("{MARK}\n")))
        );
    }

    #[test]
    fn the_backup_runs_nightly_as_the_system_user_and_prune_follows_its_success() {
        let units = plan(&settings()).unwrap();
        let backup = unit(&units, "pgseal-backup.service");
        assert!(backup.contains(
            "\nExecStart=/usr/bin/pgseal --config /etc/pgseal/pgseal.toml backup --all --user backup_bot\n"
        ));
        assert!(backup.contains("\nUser=pgseal\nGroup=pgseal\n"));
        assert!(backup.contains("\nOnSuccess=pgseal-prune.service\n"));
        assert!(backup.contains(
            "\nLoadCredential=user-key-password:/etc/pgseal/credentials/user-key-password\n"
        ));
        assert!(backup.contains("\nReadWritePaths=/srv/pgseal/backups /srv/pgseal\n"));
        let timer = unit(&units, "pgseal-backup.timer");
        assert!(
            timer.contains(
                "\nOnCalendar=*-*-* 02:00:00\nPersistent=true\nRandomizedDelaySec=30min\n"
            )
        );
        assert!(timer.contains("\nWantedBy=timers.target\n"));
        let prune = unit(&units, "pgseal-prune.service");
        assert!(prune.contains("prune --yes\n"));
        assert!(prune.contains("\nAfter=pgseal-backup.service\n"));
        assert!(!prune.contains("LoadCredential"), "prune needs no password");
        let check = unit(&units, "pgseal-restore-check.service");
        assert!(check.contains("restore --check --latest\n"));
        assert!(check.contains(
            "\nLoadCredential=server-key-password:/etc/pgseal/credentials/server-key-password\n"
        ));
        assert!(
            unit(&units, "pgseal-restore-check.timer").contains("\nOnCalendar=*-*-01 04:00:00\n")
        );
        assert!(
            unit(&units, "pgseal-audit-verify.timer").contains("\nOnCalendar=*-*-* 06:00:00\n")
        );
    }

    #[test]
    fn every_service_is_hardened_and_names_no_secret() {
        let mut s = settings();
        s.pgpass = true;
        for u in plan(&s).unwrap() {
            for line in u.text.lines() {
                if let Some(env) = line.strip_prefix("Environment=") {
                    assert_eq!(env, "PGPASSFILE=%d/pgpass", "{}: only a path", u.name);
                }
                assert!(!line.to_ascii_lowercase().contains("password="), "{line}");
            }
            if u.name.ends_with(".service") {
                for option in [
                    "ProtectSystem=strict",
                    "PrivateTmp=yes",
                    "NoNewPrivileges=yes",
                    "ProtectHome=yes",
                    "PrivateDevices=yes",
                    "MemoryDenyWriteExecute=yes",
                    "SystemCallFilter=@system-service",
                    "CapabilityBoundingSet=\n",
                    "UMask=0077",
                    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
                ] {
                    assert!(u.text.contains(option), "{} lacks {option}", u.name);
                }
            }
        }
        let units = plan(&s).unwrap();
        assert!(unit(&units, "pgseal-backup.service")
            .contains("\nLoadCredential=pgpass:/etc/pgseal/credentials/pgpass\nEnvironment=PGPASSFILE=%d/pgpass\n"));
        assert!(!unit(&units, "pgseal-audit-verify.service").contains("pgpass"));
    }

    #[test]
    fn times_are_rendered_for_systemd_and_cron_alike() {
        let mut s = settings();
        s.times = Times {
            backup: "23:05".parse().unwrap(),
            audit: "07:45".parse().unwrap(),
            check_day: 15,
            check: "03:30".parse().unwrap(),
            randomized_delay_minutes: 0,
        };
        let units = plan(&s).unwrap();
        let timer = unit(&units, "pgseal-backup.timer");
        assert!(timer.contains("OnCalendar=*-*-* 23:05:00\n"));
        assert!(!timer.contains("RandomizedDelaySec"));
        assert!(
            unit(&units, "pgseal-restore-check.timer").contains("OnCalendar=*-*-15 03:30:00\n")
        );
        let cron = crontab(&s).unwrap();
        assert!(cron.contains("\n5 23 * * * pgseal /usr/bin/pgseal "));
        assert!(cron.contains("\n30 3 15 * * pgseal /usr/bin/pgseal "));
        assert!(cron.contains("\n45 7 * * * pgseal /usr/bin/pgseal "));
    }

    #[test]
    fn the_crontab_runs_the_same_commands_with_password_files() {
        let s = settings();
        let cron = crontab(&s).unwrap();
        for job in jobs(&s).unwrap() {
            assert!(cron.contains(&command(&s, &job)), "{} missing", job.name);
        }
        assert!(cron.contains(
            "backup --all --user backup_bot --user-password-file /etc/pgseal/credentials/user-key-password && /usr/bin/pgseal --config /etc/pgseal/pgseal.toml prune --yes\n"
        ));
        assert!(cron.contains(
            "restore --check --latest --server-password-file /etc/pgseal/credentials/server-key-password\n"
        ));
        assert!(!cron.contains("PGPASSFILE"));
        let mut with = s.clone();
        with.pgpass = true;
        assert!(
            crontab(&with)
                .unwrap()
                .contains("\nPGPASSFILE=/etc/pgseal/credentials/pgpass\n")
        );
    }

    #[test]
    fn settings_that_would_not_make_sound_units_are_refused() {
        type Change = fn(&mut Settings);
        let cases: Vec<(&str, Change)> = vec![
            ("relative", |s| s.config = "pgseal.toml".into()),
            ("space", |s| s.binary = "/opt/my pgseal/pgseal".into()),
            ("percent", |s| s.writable.push("/srv/100%".into())),
            ("dollar", |s| s.credentials_dir = "/etc/$HOME".into()),
            ("newline", |s| s.creator = "bot\nExecStart=/bin/sh".into()),
            ("root", |s| s.system_user = "root".into()),
            ("hidden by ProtectHome", |s| {
                s.binary = "/root/bin/pgseal".into()
            }),
            ("uppercase", |s| s.system_user = "PgSeal".into()),
            ("day", |s| s.times.check_day = 31),
        ];
        for (what, change) in cases {
            let mut s = settings();
            change(&mut s);
            let e = plan(&s).expect_err(what);
            assert_eq!(e.kind(), crate::ErrorKind::Usage, "{what}: {e}");
            assert!(crontab(&s).is_err(), "{what}");
        }
        for bad in ["2:00", "24:00", "12:60", "1200", "ab:cd", "12:00:00"] {
            assert!(bad.parse::<ClockTime>().is_err(), "{bad}");
        }
        assert_eq!(
            "00:59".parse::<ClockTime>().unwrap(),
            ClockTime {
                hour: 0,
                minute: 59
            }
        );
    }
}
