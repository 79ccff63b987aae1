//! `pgseal schedule install | print | remove`: the site's routine work as systemd units or a
//! crontab. The units are `pgseal_ops::schedule`'s; this module gathers the settings from the
//! flags and the configuration, and says what was done and what is left to do by hand.

use std::path::{Path, PathBuf};

use pgseal_ops::schedule::{self, ClockTime, Settings, Systemd, Times};
use pgseal_store::StoreUrl;

use crate::cli::{ScheduleCommand, ScheduleSettingsArgs};
use crate::context::Context;
use crate::failure::{CliResult, Failure};

pub fn run(command: ScheduleCommand, ctx: &mut Context) -> CliResult {
    match command {
        ScheduleCommand::Print(args) => {
            let settings = settings(&args.settings, ctx)?;
            if args.cron {
                outln!("{}", schedule::crontab(&settings)?.trim_end());
            } else {
                for unit in schedule::plan(&settings)? {
                    outln!("### {}", unit.name);
                    outln!("{}", unit.text);
                }
            }
            Ok(())
        }
        ScheduleCommand::Install(args) => {
            let settings = settings(&args.settings, ctx)?;
            let units = schedule::plan(&settings)?;
            let installed = schedule::install(ctx, &units, &args.unit_dir, args.force)?;
            for path in &installed.written {
                outln!("wrote {}", path.display());
            }
            say_systemd(&installed.systemd, &args.unit_dir, "enable");
            next_steps(&settings);
            Ok(())
        }
        ScheduleCommand::Remove(args) => {
            let removed = schedule::remove(ctx, &args.unit_dir)?;
            for path in &removed.removed {
                outln!("removed {}", path.display());
            }
            if removed.removed.is_empty() {
                outln!("no pgseal units in {}", args.unit_dir.display());
            }
            for path in &removed.foreign {
                eprintln!(
                    "pgseal: warning: left {}: pgseal schedule install did not write it",
                    path.display()
                );
            }
            say_systemd(&removed.systemd, &args.unit_dir, "disable");
            Ok(())
        }
    }
}

/// The schedule's settings: the flags, the configuration file and what it says the jobs write.
fn settings(args: &ScheduleSettingsArgs, ctx: &mut Context) -> CliResult<Settings> {
    let config = ctx.config()?.clone();
    let Some(config_file) = config.file.clone() else {
        return Err(Failure::usage(
            "a schedule runs pgseal with a configuration file: pass --config FILE (or run where \
             pgseal.toml is)",
        ));
    };
    let binary = match &args.binary {
        Some(path) => std::path::absolute(path)
            .map_err(|e| Failure::io(format!("resolving {}", path.display()), e))?,
        None => {
            std::env::current_exe().map_err(|e| Failure::io("finding this pgseal binary", e))?
        }
    };
    let mut writable: Vec<PathBuf> = vec![config.backup_dir.clone()];
    if let StoreUrl::Sqlite(path) = &config.store
        && let Some(dir) = path.parent()
    {
        // SQLite writes its journal beside the database.
        writable.push(dir.to_path_buf());
    }
    if let Some(dir) = config
        .repository
        .url
        .as_deref()
        .and_then(|u| u.strip_prefix("file://"))
    {
        writable.push(PathBuf::from(dir));
    }
    let mut seen = std::collections::BTreeSet::new();
    writable.retain(|p| seen.insert(p.clone()));
    let time = |text: &str| text.parse::<ClockTime>();
    Ok(Settings {
        binary,
        config: config_file,
        system_user: args.system_user.clone(),
        creator: args.user.clone(),
        writable,
        credentials_dir: args.credentials_dir.clone(),
        pgpass: args.pgpass,
        times: Times {
            backup: time(&args.backup_at)?,
            audit: time(&args.audit_at)?,
            check_day: args.check_day,
            check: time(&args.check_at)?,
            randomized_delay_minutes: args.randomized_delay,
        },
    })
}

fn say_systemd(systemd: &Systemd, dir: &Path, verb: &str) {
    match systemd {
        Systemd::Told(commands) => {
            for c in commands {
                outln!("ran {c}");
            }
        }
        Systemd::NotSystemDir => outln!(
            "{} is not {}: nothing {verb}d (systemctl {verb} --now the timers where the units \
             end up)",
            dir.display(),
            schedule::SYSTEM_UNIT_DIR
        ),
        Systemd::NotRunning => outln!(
            "systemd is not running on this host: nothing {verb}d (systemctl daemon-reload, then \
             systemctl {verb} --now pgseal-backup.timer pgseal-restore-check.timer \
             pgseal-audit-verify.timer once it is)"
        ),
    }
}

/// What the units need that install does not do: the account, its ownership of what the jobs
/// write, the password files.
fn next_steps(settings: &Settings) {
    let user = &settings.system_user;
    if nix::unistd::User::from_name(user).ok().flatten().is_none() {
        outln!(
            "the system account {user} does not exist; create it: useradd --system --home-dir \
             /var/lib/pgseal --create-home --shell /usr/sbin/nologin {user}"
        );
    }
    let dirs: Vec<String> = settings
        .writable
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    outln!(
        "the jobs run as {user}: it must own what they write (chown -R {user}: {})",
        dirs.join(" ")
    );
    let mut needed = vec![
        schedule::USER_KEY_PASSWORD.name,
        schedule::SERVER_KEY_PASSWORD.name,
    ];
    if settings.pgpass {
        needed.push(schedule::PGPASS);
    }
    for name in needed {
        let path = settings.credentials_dir.join(name);
        if !path.exists() {
            outln!(
                "{} is missing: the units that load it fail to start until it holds the \
                 password (root-owned, chmod 0600)",
                path.display()
            );
        }
    }
}
