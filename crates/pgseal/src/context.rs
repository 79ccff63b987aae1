//! What every command runs with: the configuration, and the operations layer's session built
//! from it — the store, the acting identity, the audit entry (see [`pgseal_ops::session`]).
//!
//! The CLI's part is to say who is acting (`$PGSEAL_USER`, the OS user, the host, the SSH
//! client's address) and how a failure is recorded (its message and exit code); the session
//! does the rest.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use pgseal_ops::repo::Repository;
use pgseal_ops::repo::local::LocalRepository;
use pgseal_ops::{Actor, Session, Site};
use pgseal_store::Username;
use serde_json::Value;

use crate::cli::RepoArgs;
use crate::config::Config;
use crate::failure::{CliResult, ExitCode, Failure};

pub struct Context {
    pub config: Option<Config>,
    /// The global `--store` flag as given (for `init`, which makes a new configuration).
    pub store_flag: Option<String>,
    session: Session,
}

impl Context {
    pub fn new(config: Option<Config>, store_flag: Option<String>) -> CliResult<Self> {
        let s3 = crate::s3::access(config.as_ref().map(|c| &c.repository));
        let session = Session::new(
            config.as_ref().map(site),
            actor()?,
            Arc::new(crate::progress::Terminal),
            describe,
        )
        .with_scratch_dir(std::env::temp_dir())
        .with_s3_access(s3);
        Ok(Context {
            config,
            store_flag,
            session,
        })
    }

    /// The configuration, or an error that says how to make one.
    pub fn config(&self) -> CliResult<&Config> {
        self.config.as_ref().ok_or(Failure::NoSite)
    }

    /// Replaces the configuration (`init` just made one).
    pub fn set_config(&mut self, config: Config) {
        self.session.set_site(site(&config));
        self.config = Some(config);
    }

    /// Uses the repository `args` name (`--repo`) instead of the configured one, for the
    /// operations that read the site's repository.
    pub fn use_repo(&mut self, args: &RepoArgs) -> CliResult {
        if let Some(url) = &args.url {
            let mut config = self.config()?.clone();
            config.repository.url = Some(url.clone());
            self.set_config(config);
        }
        Ok(())
    }

    /// The repository `args` name (`--repo`), else the configured one; with `create`, a
    /// directory that does not exist yet is made (a backup's).
    pub fn repository(&mut self, args: &RepoArgs, create: bool) -> CliResult<Box<dyn Repository>> {
        self.use_repo(args)?;
        let c = self.config()?;
        let reach = pgseal_ops::repo::reach(self);
        match &c.repository.url {
            Some(url) => pgseal_ops::repo::open_url(&reach, url, create),
            None if create => Ok(Box::new(LocalRepository::create_dir(
                &c.backup_dir,
                reach.host(),
            )?)),
            None => Ok(Box::new(LocalRepository::open(
                &c.backup_dir,
                reach.host(),
            )?)),
        }
    }

    /// Writes the command's audit entry with its outcome (fail closed).
    pub fn finish(mut self, result: CliResult) -> CliResult {
        self.session.finish(result)
    }
}

impl Deref for Context {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.session
    }
}

impl DerefMut for Context {
    fn deref_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}

/// The site the operations layer sees in a configuration.
/// A session on the site `config` describes, acting as this process does: what the key-custody
/// service answers each request in (one per request in flight, each with its own store
/// connection).
pub fn session_for(config: &Config) -> CliResult<Session> {
    Ok(Session::new(
        Some(site(config)),
        actor()?,
        Arc::new(crate::progress::Terminal),
        describe,
    )
    .with_scratch_dir(std::env::temp_dir()))
}

fn site(c: &Config) -> Site {
    Site {
        store: c.store.clone(),
        backup_dir: c.backup_dir.clone(),
        repository: c.repository.url.clone(),
        user_keys_dir: c.user_keys_dir.clone(),
        server_keys_dir: c.server_keys_dir.clone(),
        signature_required: c.signature_required,
        rsa_key_size: c.rsa_key_size,
        pq_keys: c.pq_keys,
        retention_days: c.retention_days,
    }
}

/// Who is acting: the pgseal user `$PGSEAL_USER` names (if set), the OS user, this host, and
/// the SSH client's address (else this host's).
fn actor() -> CliResult<Actor> {
    let user = match std::env::var("PGSEAL_USER").ok().filter(|v| !v.is_empty()) {
        Some(name) => {
            Some(username(&name).map_err(|f| Failure::usage(format!("PGSEAL_USER: {f}")))?)
        }
        None => None,
    };
    Ok(Actor {
        user,
        os_user: os_user(),
        host: host_name(),
        address: Some(ip_address()),
    })
}

/// A failure as its audit entry records it: what the user was told, and the exit code.
fn describe(failure: &Failure) -> (String, i32) {
    (
        crate::failure::message(failure),
        ExitCode::of(failure) as i32,
    )
}

/// A user name from outside (the command line, the environment), checked before it is used:
/// an invalid one is a usage error that says what names may hold.
pub fn username(text: &str) -> CliResult<Username> {
    pgseal_ops::users::username(text)
}

pub fn os_user() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
}

pub fn host_name() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
        .filter(|h| !h.is_empty())
}

/// The SSH client's address in an SSH session, else this host's first non-loopback address.
pub fn ip_address() -> String {
    for var in ["SSH_CONNECTION", "SSH_CLIENT"] {
        if let Some(ip) = std::env::var(var)
            .ok()
            .and_then(|v| v.split_whitespace().next().map(str::to_owned))
            .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        {
            return ip;
        }
    }
    let mut v6 = None;
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let Some(addr) = a.address else { continue };
            if let Some(sin) = addr.as_sockaddr_in() {
                let ip = sin.ip();
                if !ip.is_loopback() {
                    return ip.to_string();
                }
            } else if let Some(sin6) = addr.as_sockaddr_in6() {
                let ip = sin6.ip();
                if !ip.is_loopback() && v6.is_none() {
                    v6 = Some(ip.to_string());
                }
            }
        }
    }
    v6.unwrap_or_else(|| "127.0.0.1".into())
}

/// JSON for an optional value.
pub fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map_or(Value::Null, Into::into)
}
