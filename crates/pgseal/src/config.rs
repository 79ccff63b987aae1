//! Finding and reading the configuration.
//!
//! Where it comes from, first match wins: `--config FILE`, `$PGSEAL_CONFIG`, `./pgseal.toml`,
//! `$XDG_CONFIG_HOME/pgseal/config.toml` (`~/.config/...` when unset). A `.env` file beside the
//! config is loaded first (it never overrides variables already set), then environment variables
//! override the file — under the legacy system's setting names where it had one. Relative paths
//! are relative to the config file's directory. Passwords are never read from the file.
//!
//! Both files decide which programs pgseal runs (`POSTGRESQL_BIN_PATH`) and where keys go, so,
//! as OpenSSH does with its files, pgseal refuses one that someone else could have written: a
//! file group or others can write, or owned by another user than the one running pgseal (root
//! excepted), or in a directory — any directory up to `/` — that is such, unless the directory
//! has the sticky bit (like `/tmp`, where others cannot replace what is yours).

use std::path::{Path, PathBuf};

use pgseal_ops::retention::{Policy, parse_span};
use pgseal_store::StoreUrl;
use serde::Deserialize;

use crate::failure::{CliResult, Failure};

/// The file `pgseal init` writes: every setting, commented.
pub const TEMPLATE: &str = r#"# pgseal configuration.
#
# Every setting can be overridden by the environment variable named beside it (the legacy
# system's names where it had one). Relative paths are relative to this file's directory.
# Passwords never go here: SERVER_KEY_PASSWORD, PGSEAL_USER_KEY_PASSWORD and
# BACKUP_ENCRYPTION_PASSWORD come from the environment (or the .env file beside this one),
# a --*-password-file, a --*-password-command, or a prompt.
#
# pgseal refuses this file and .env if group or others can write them (or a directory above
# them, sticky ones excepted), or if another user than the one running pgseal (or root) owns
# them: keep them 0600 or 0644.

[store]
# sqlite:PATH (embedded, the default), or postgres://USER@HOST/DB for one store shared by
# many hosts (libpq conventions: ?host=/run/postgresql for a socket, PGPASSWORD or ~/.pgpass
# for the password).
url = "sqlite:pgseal.db"                  # PGSEAL_STORE

[keys]
rsa_key_size = 4096                       # RSA_KEY_SIZE: 3072 or 4096 (2048 for tests only)
rsa_signature_algorithm = "RSA-PSS"       # RSA_SIGNATURE_ALGORITHM: RSA-PSS is the only one
pq = false                                # new server keys get an ML-KEM-768 half: backups made
                                          # for them are post-quantum (docs/FORMAT.md §6a)
server_keys_dir = "keys/server"           # SERVER_KEYS_DIR: exported server public keys
user_keys_dir = "keys/users"              # USER_KEYS_DIR: where user-key generate writes keys

[backup]
dir = "backups"                           # PGSEAL_BACKUP_DIR
encryption_method = "HYBRID"              # BACKUP_ENCRYPTION_METHOD: HYBRID; SYMMETRIC is refused
signature_required = true                 # BACKUP_SIGNATURE_REQUIRED: refuse --no-verify
retention_days = 90                       # BACKUP_RETENTION_DAYS: prune's default age, when
                                          #   [retention] sets no rule

[retention]
# What `pgseal prune` keeps of each database's backups in each repository when no --keep-* or
# --older-than flag is given. Rules combine with OR: a backup stays when any rule keeps it.
# Calendar rules keep the newest backup of each of the newest N hours, days, ISO weeks, months
# or years (UTC) that have one. Only verified backups count (signed header and final signature
# checked, the signed time used); the newest backup of each database is always kept. With no
# rule set here, prune deletes backups older than retention_days.
# keep_last = 7
# keep_hourly = 24
# keep_daily = 14
# keep_weekly = 8
# keep_monthly = 12
# keep_yearly = 5
# keep_within = "2d"                      # all made within this span of the newest backup
# older_than = "400d"                     # delete what is older than this (a rule like the rest)

[postgresql]
bin_path = ""                             # POSTGRESQL_BIN_PATH: pg_dump/pg_restore dir ("" = PATH)

[repository]
# Where backups are written and looked for: "" for the backup dir above, file:///ABSOLUTE/PATH
# for another directory, or s3://BUCKET/PREFIX for S3-compatible object storage. The S3
# endpoint, region and credentials come from the AWS conventions, never from this file:
# AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN,
# or AWS_PROFILE with ~/.aws/credentials and ~/.aws/config.
url = ""                                  # PGSEAL_REPOSITORY (or --repo URL on a command)
s3_addressing = "auto"                    # PGSEAL_S3_ADDRESSING: path, virtual-host or auto
s3_part_size_mib = 8                      # PGSEAL_S3_PART_SIZE_MIB: multipart part size (5-5120).
                                          #   A backup holds two parts in memory and may have
                                          #   10,000: 8 MiB parts allow 78 GiB (compressed);
                                          #   64 MiB parts 625 GiB, for ~160 MiB of memory
abort_uploads_after_hours = 24            # PGSEAL_ABORT_UPLOADS_AFTER_HOURS: a backup aborts
                                          #   incomplete uploads older than this (repo cleanup)

[custody]
# A key-custody service (`pgseal serve`, docs/CUSTODY.md) that holds the server keys: decrypt,
# restore, verify's decryption check and rewrap then ask it, signing with the acting user's
# key, and never need SERVER_KEY_PASSWORD. "" = use the stored keys and the password.
url = ""                                  # PGSEAL_CUSTODY (or --custody URL): https://HOST:PORT
                                          #   or unix:///ABSOLUTE/PATH
ca_file = ""                              # PGSEAL_CUSTODY_CA: the CA that signed the service's
                                          #   certificate ("" = the system's roots)

[serve]
# `pgseal serve`: the key-custody service itself.
listen = ""                               # --listen ADDR:PORT (TLS; needs the two files below)
cert_file = ""                            # the service's certificate chain, PEM
key_file = ""                             # its private key, PEM (0600)
unix_socket = ""                          # --unix PATH: a socket for callers on this host
trusted_proxies = []                      # addresses whose X-Forwarded-For is believed
second_factor_for_unwrap = false          # also require a TOTP code for every unwrap
                                          #   (pgseal user totp enroll NAME)
head_file = "custody-head.json"           # where the service keeps the audit chain head it
                                          #   last wrote (audit verify --custody-head FILE)
"#;

/// `.env.example`, written beside the config by `pgseal init`.
pub const ENV_EXAMPLE: &str = r#"# Copy to .env (mode 0600) beside pgseal.toml, or set these in the service's environment.
# Prefer --*-password-file or --*-password-command (Vault, pass, a cloud secret manager)
# to keeping passwords in a file at all.

# Unlocks every server key in the store (current and rotated): needed to decrypt and restore.
SERVER_KEY_PASSWORD=

# Unlocks the signing key of the user making backups (pgseal user-key generate NAME).
PGSEAL_USER_KEY_PASSWORD=

# Only for opening old PGBACKUP_AES256_V1 (symmetric) backups.
BACKUP_ENCRYPTION_PASSWORD=

# Overrides of pgseal.toml (legacy names accepted):
# PGSEAL_STORE=postgres://pgseal@db.internal/pgseal
# RSA_KEY_SIZE=4096
# BACKUP_SIGNATURE_REQUIRED=true
# BACKUP_RETENTION_DAYS=90
# POSTGRESQL_BIN_PATH=/usr/lib/postgresql/15/bin
"#;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    store: StoreSection,
    #[serde(default)]
    keys: KeysSection,
    #[serde(default)]
    backup: BackupSection,
    #[serde(default)]
    postgresql: PgSection,
    #[serde(default)]
    repository: RepositorySection,
    #[serde(default)]
    custody: CustodySection,
    #[serde(default)]
    serve: ServeSection,
    #[serde(default)]
    retention: RetentionSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionSection {
    keep_last: Option<u32>,
    keep_hourly: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
    keep_yearly: Option<u32>,
    keep_within: Option<String>,
    older_than: Option<String>,
}

impl RetentionSection {
    /// The policy these settings make (empty when none is set).
    fn policy(&self) -> CliResult<Policy> {
        let span = |key: &str, text: &Option<String>| {
            text.as_deref()
                .map(|t| {
                    parse_span(t).ok_or_else(|| {
                        Failure::usage(format!(
                            "[retention] {key} = {t:?}: use a number and a unit, like 90d, 12h, 2w"
                        ))
                    })
                })
                .transpose()
        };
        Ok(Policy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within_ms: span("keep_within", &self.keep_within)?,
            younger_than_ms: span("older_than", &self.older_than)?,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CustodySection {
    url: Option<String>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeSection {
    listen: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    unix_socket: Option<PathBuf>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    second_factor_for_unwrap: Option<bool>,
    head_file: Option<PathBuf>,
}

/// The `[custody]` settings: the key-custody service this site's commands ask.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CustodySettings {
    /// `https://HOST:PORT` or `unix:///PATH`; `None`: no service.
    pub url: Option<String>,
    /// The CA that signed the service's certificate; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
}

/// The `[serve]` settings: `pgseal serve`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServeSettings {
    /// A TCP address for TLS.
    pub listen: Option<String>,
    /// The certificate chain, PEM.
    pub cert_file: Option<PathBuf>,
    /// Its private key, PEM.
    pub key_file: Option<PathBuf>,
    /// A Unix socket.
    pub unix_socket: Option<PathBuf>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Whether every unwrap needs a second-factor code.
    pub second_factor_for_unwrap: bool,
    /// Where the service keeps the audit chain head it last wrote.
    pub head_file: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreSection {
    url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysSection {
    rsa_key_size: Option<u32>,
    pq: Option<bool>,
    rsa_signature_algorithm: Option<String>,
    server_keys_dir: Option<PathBuf>,
    user_keys_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupSection {
    dir: Option<PathBuf>,
    encryption_method: Option<String>,
    signature_required: Option<bool>,
    retention_days: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PgSection {
    bin_path: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepositorySection {
    url: Option<String>,
    s3_addressing: Option<String>,
    s3_part_size_mib: Option<u32>,
    abort_uploads_after_hours: Option<u32>,
}

/// The `[repository]` settings: where backups live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositorySettings {
    /// `file:///PATH` or `s3://BUCKET/PREFIX`; `None`: the backup directory.
    pub url: Option<String>,
    /// `path`, `virtual-host` or `auto`.
    pub s3_addressing: String,
    /// The multipart part size, in MiB.
    pub s3_part_size_mib: u32,
    /// How old an incomplete upload must be before a backup aborts it, in hours.
    pub abort_uploads_after_hours: u32,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any.
    pub file: Option<PathBuf>,
    pub store: StoreUrl,
    pub rsa_key_size: u32,
    /// New server keys get an ML-KEM-768 half (`[keys] pq`).
    pub pq_keys: bool,
    pub server_keys_dir: PathBuf,
    pub user_keys_dir: PathBuf,
    pub backup_dir: PathBuf,
    pub signature_required: bool,
    pub retention_days: u32,
    /// The `[retention]` rules prune applies when given none (empty: none set).
    pub retention: Policy,
    pub postgresql_bin_path: Option<PathBuf>,
    pub repository: RepositorySettings,
    pub custody: CustodySettings,
    pub serve: ServeSettings,
}

impl Config {
    /// Finds and loads the configuration. `None` when there is none at all (store-less use).
    pub fn discover(
        explicit: Option<&Path>,
        store_flag: Option<&str>,
    ) -> CliResult<Option<Config>> {
        let file = match explicit {
            Some(p) => {
                if !p.is_file() {
                    return Err(Failure::usage(format!(
                        "config file {} not found",
                        p.display()
                    )));
                }
                Some(p.to_path_buf())
            }
            None => candidates().into_iter().find(|p| p.is_file()),
        };
        let file = file
            .map(|p| {
                std::path::absolute(&p)
                    .map_err(|e| Failure::io(format!("resolving {}", p.display()), e))
            })
            .transpose()?;
        let text = file.as_deref().map(read_trusted).transpose()?;
        if let Some(path) = &file {
            let env_file = path.with_file_name(".env");
            if env_file.symlink_metadata().is_ok() {
                let env_text = read_trusted(&env_file)?;
                dotenvy::from_read(env_text.as_bytes())
                    .map_err(|e| Failure::usage(format!("reading {}: {e}", env_file.display())))?;
            }
        }
        let store_env = env("PGSEAL_STORE");
        if file.is_none() && store_flag.is_none() && store_env.is_none() {
            return Ok(None);
        }
        let parsed: File = match (&file, &text) {
            (Some(path), Some(text)) => toml::from_str(text)
                .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?,
            _ => File::default(),
        };
        let base = match &file {
            Some(p) => p.parent().map(Path::to_path_buf).unwrap_or_default(),
            None => std::env::current_dir().map_err(|e| Failure::io("current directory", e))?,
        };
        Self::resolve(
            parsed,
            file,
            &base,
            store_flag.map(str::to_owned).or(store_env),
        )
        .map(Some)
    }

    fn resolve(
        f: File,
        file: Option<PathBuf>,
        base: &Path,
        store: Option<String>,
    ) -> CliResult<Config> {
        let rel = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let store_text = store
            .or(f.store.url)
            .unwrap_or_else(|| "sqlite:pgseal.db".into());
        let store = match store_text
            .parse::<StoreUrl>()
            .map_err(|e| Failure::usage(e.to_string()))?
        {
            StoreUrl::Sqlite(p) => StoreUrl::Sqlite(rel(p)),
            other => other,
        };

        let algorithm = env("RSA_SIGNATURE_ALGORITHM")
            .or(f.keys.rsa_signature_algorithm)
            .unwrap_or_else(|| "RSA-PSS".into());
        if !algorithm.eq_ignore_ascii_case("RSA-PSS") {
            return Err(Failure::usage(format!(
                "RSA_SIGNATURE_ALGORITHM={algorithm} is not supported: pgseal signs with RSA-PSS only"
            )));
        }
        let method = env("BACKUP_ENCRYPTION_METHOD")
            .or(f.backup.encryption_method)
            .unwrap_or_else(|| "HYBRID".into());
        if !method.eq_ignore_ascii_case("HYBRID") {
            return Err(Failure::usage(format!(
                "BACKUP_ENCRYPTION_METHOD={method} is not supported: pgseal writes only signed \
                 HYBRID backups (old SYMMETRIC files still decrypt with BACKUP_ENCRYPTION_PASSWORD)"
            )));
        }
        let rsa_key_size = match env("RSA_KEY_SIZE") {
            Some(v) => v
                .parse()
                .map_err(|_| Failure::usage(format!("RSA_KEY_SIZE={v} is not a number")))?,
            None => f.keys.rsa_key_size.unwrap_or(4096),
        };
        pgseal_core::keys::KeyBits::from_bits(rsa_key_size)?;
        let signature_required = match env("BACKUP_SIGNATURE_REQUIRED") {
            Some(v) => parse_bool(&v).ok_or_else(|| {
                Failure::usage(format!("BACKUP_SIGNATURE_REQUIRED={v}: use true or false"))
            })?,
            None => f.backup.signature_required.unwrap_or(true),
        };
        let retention_days = match env("BACKUP_RETENTION_DAYS") {
            Some(v) => v.parse().map_err(|_| {
                Failure::usage(format!("BACKUP_RETENTION_DAYS={v} is not a number"))
            })?,
            None => f.backup.retention_days.unwrap_or(90),
        };
        let path_setting = |var: &str, value: Option<PathBuf>, default: &str| {
            rel(env(var)
                .map(PathBuf::from)
                .or(value)
                .unwrap_or_else(|| default.into()))
        };
        let bin = env("POSTGRESQL_BIN_PATH")
            .map(PathBuf::from)
            .or(f.postgresql.bin_path)
            .filter(|p| !p.as_os_str().is_empty());
        let number = |var: &str, value: Option<u32>, default: u32| match env(var) {
            Some(v) => v
                .parse::<u32>()
                .map_err(|_| Failure::usage(format!("{var}={v} is not a number"))),
            None => Ok(value.unwrap_or(default)),
        };
        let s3_part_size_mib = number("PGSEAL_S3_PART_SIZE_MIB", f.repository.s3_part_size_mib, 8)?;
        if !(5..=5120).contains(&s3_part_size_mib) {
            return Err(Failure::usage(format!(
                "s3_part_size_mib = {s3_part_size_mib}: use 5 to 5120 (S3 parts are 5 MiB to 5 GiB)"
            )));
        }
        let s3_addressing = env("PGSEAL_S3_ADDRESSING")
            .or(f.repository.s3_addressing)
            .unwrap_or_else(|| "auto".into());
        if !["path", "virtual-host", "auto"].contains(&s3_addressing.as_str()) {
            return Err(Failure::usage(format!(
                "s3_addressing = {s3_addressing:?}: use path, virtual-host or auto"
            )));
        }
        let repository = RepositorySettings {
            url: env("PGSEAL_REPOSITORY").or(f.repository.url.filter(|u| !u.is_empty())),
            s3_addressing,
            s3_part_size_mib,
            abort_uploads_after_hours: number(
                "PGSEAL_ABORT_UPLOADS_AFTER_HOURS",
                f.repository.abort_uploads_after_hours,
                24,
            )?,
        };
        let nonempty = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty()).map(&rel);
        let custody = CustodySettings {
            url: env("PGSEAL_CUSTODY").or(f.custody.url.filter(|u| !u.is_empty())),
            ca_file: env("PGSEAL_CUSTODY_CA")
                .map(PathBuf::from)
                .or(f.custody.ca_file)
                .filter(|p| !p.as_os_str().is_empty())
                .map(&rel),
        };
        let trusted_proxies = f
            .serve
            .trusted_proxies
            .iter()
            .map(|a| {
                a.parse().map_err(|_| {
                    Failure::usage(format!("trusted_proxies: {a:?} is not an IP address"))
                })
            })
            .collect::<CliResult<Vec<_>>>()?;
        let serve = ServeSettings {
            listen: f.serve.listen.filter(|l| !l.is_empty()),
            cert_file: nonempty(f.serve.cert_file),
            key_file: nonempty(f.serve.key_file),
            unix_socket: nonempty(f.serve.unix_socket),
            trusted_proxies,
            second_factor_for_unwrap: f.serve.second_factor_for_unwrap.unwrap_or(false),
            head_file: rel(f
                .serve
                .head_file
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| "custody-head.json".into())),
        };
        Ok(Config {
            file,
            store,
            rsa_key_size,
            pq_keys: f.keys.pq.unwrap_or(false),
            server_keys_dir: path_setting("SERVER_KEYS_DIR", f.keys.server_keys_dir, "keys/server"),
            user_keys_dir: path_setting("USER_KEYS_DIR", f.keys.user_keys_dir, "keys/users"),
            backup_dir: path_setting("PGSEAL_BACKUP_DIR", f.backup.dir, "backups"),
            signature_required,
            retention_days,
            retention: f.retention.policy()?,
            postgresql_bin_path: bin.map(&rel),
            repository,
            custody,
            serve,
        })
    }
}

/// Reads a configuration file (`pgseal.toml` or `.env`) that only its reader — or root —
/// can have written: refused (exit 2, with the command that fixes it) if group or others can
/// write it or a directory above it (sticky directories excepted), or if another user owns
/// either. The file is checked through the descriptor it is read from, so it cannot be
/// swapped between the check and the read.
fn read_trusted(path: &Path) -> CliResult<String> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut add_ancestors = |p: &Path| {
        for dir in p.ancestors().skip(1).filter(|d| !d.as_os_str().is_empty()) {
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_path_buf());
            }
        }
    };
    add_ancestors(path);
    if let Ok(real) = std::fs::canonicalize(path) {
        add_ancestors(&real);
    }
    for dir in &dirs {
        let meta = std::fs::metadata(dir)
            .map_err(|e| Failure::io(format!("checking {}", dir.display()), e))?;
        check_owner(dir, meta.uid(), me, path)?;
        let mode = meta.mode();
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(Failure::usage(format!(
                "refusing to read {}: its directory {} can be written by {} (mode {:o}), who \
                 could replace it; run `chmod go-w {}`",
                path.display(),
                dir.display(),
                who_can_write(mode),
                mode & 0o7777,
                dir.display()
            )));
        }
    }
    let mut file = std::fs::File::open(path)
        .map_err(|e| Failure::io(format!("reading {}", path.display()), e))?;
    let meta = file
        .metadata()
        .map_err(|e| Failure::io(format!("reading {}", path.display()), e))?;
    if !meta.is_file() {
        return Err(Failure::usage(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    check_owner(path, meta.uid(), me, path)?;
    if meta.mode() & 0o022 != 0 {
        return Err(Failure::usage(format!(
            "refusing to read {}: {} can write it (mode {:o}); run `chmod go-w {}`",
            path.display(),
            who_can_write(meta.mode()),
            meta.mode() & 0o7777,
            path.display()
        )));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| Failure::io(format!("reading {}", path.display()), e))?;
    Ok(text)
}

fn who_can_write(mode: u32) -> &'static str {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "its group and others",
        (true, false) => "its group",
        _ => "others",
    }
}

/// `owned` must be the user running pgseal or root.
fn check_owner(owned: &Path, uid: u32, me: u32, config: &Path) -> CliResult {
    if uid == me || uid == 0 {
        return Ok(());
    }
    let name = |uid: u32| {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map_or_else(|| format!("uid {uid}"), |u| u.name)
    };
    Err(Failure::usage(format!(
        "refusing to read {}: {} is owned by {}, not by you ({}) or root; if that is right, \
         run `chown {} {}`",
        config.display(),
        owned.display(),
        name(uid),
        name(me),
        name(me),
        owned.display()
    )))
}

fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = env("PGSEAL_CONFIG") {
        out.push(PathBuf::from(p));
        return out;
    }
    out.push(PathBuf::from("pgseal.toml"));
    let xdg = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")));
    if let Some(dir) = xdg {
        out.push(dir.join("pgseal").join("config.toml"));
    }
    out
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_parses_to_the_defaults() {
        let f: File = toml::from_str(TEMPLATE).unwrap();
        let c = Config::resolve(f, None, Path::new("/etc/pgseal"), None).unwrap();
        assert_eq!(c.store, StoreUrl::Sqlite("/etc/pgseal/pgseal.db".into()));
        assert_eq!(c.user_keys_dir, PathBuf::from("/etc/pgseal/keys/users"));
        assert_eq!(
            (
                c.rsa_key_size,
                c.pq_keys,
                c.retention_days,
                c.signature_required
            ),
            (4096, false, 90, true)
        );
        assert_eq!(c.postgresql_bin_path, None);
        assert_eq!(
            c.repository,
            RepositorySettings {
                url: None,
                s3_addressing: "auto".into(),
                s3_part_size_mib: 8,
                abort_uploads_after_hours: 24,
            }
        );
    }

    #[test]
    fn unknown_settings_are_errors() {
        assert!(toml::from_str::<File>("[store]\nulr = \"x\"\n").is_err());
    }
}
