//! The command line: every command, flag and help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Encrypted, signed, audited PostgreSQL backups.
///
/// pgseal seals backups to a server's RSA key (AES-256-GCM file key, RSA-OAEP wrap), signs them
/// with their creator's key (RSA-PSS), and opens, verifies and inspects them — including the
/// two formats of the legacy Python system. Passwords never go on the command line: each comes
/// from a --*-password-file, a --*-password-command, an environment variable, or a prompt.
///
/// Exit codes: 0 success, 1 I/O failure, 2 usage, 3 invalid or corrupt input,
/// 4 authentication failure (signature, tag, tampering), 5 key or password problem,
/// 6 a PostgreSQL tool or database failed, 129/130/143 interrupted by SIGHUP/SIGINT/SIGTERM.
/// `status` alone uses the Nagios plugin codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
/// With --json, a failure also prints {"error": {"message", "exit_code", "kind"}} where the JSON
/// would have gone.
///
/// Outputs: only regular files are replaced (with --force); a FIFO or character device is
/// written to as it is; a directory, socket, block device or the input file is refused.
/// A pgseal.toml or .env that group or others can write, or another user owns, is refused.
#[derive(Debug, Parser)]
#[command(name = "pgseal", version, max_term_width = 100)]
pub struct Cli {
    /// The configuration file (else $PGSEAL_CONFIG, ./pgseal.toml, ~/.config/pgseal/config.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The store: sqlite:PATH or postgres://... (overrides the config and $PGSEAL_STORE). It
    /// must exist: only `init` and `import-django` create a store.
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a configuration, the store, key and backup directories, and the first server key.
    Init(InitArgs),
    /// Print the effective configuration (file, store, directories, settings).
    Config(Json),
    /// Server key pairs, kept in the store (private halves encrypted with SERVER_KEY_PASSWORD).
    #[command(subcommand)]
    ServerKey(ServerKeyCommand),
    /// The user registry: who makes and opens backups.
    #[command(subcommand)]
    User(UserCommand),
    /// Users' signing key pairs: the store keeps every public key, the user keeps the private one.
    #[command(subcommand)]
    UserKey(UserKeyCommand),
    /// Back up a database (or all): pg_dump → zstd → encrypt + sign → catalogued file.
    #[command(alias = "create_asymmetric_backup", alias = "create_backup")]
    Backup(BackupArgs),
    /// Restore a backup into a database; signature and key are checked before pg_restore starts.
    ///
    /// Into a new database (--create), an existing empty one, or with --into-existing one that
    /// holds objects already; or, with --globals, a cluster's globals (from `backup --all`)
    /// onto a new server. Ctrl-C (SIGINT), SIGTERM or SIGHUP stops pg_restore, drops what
    /// the restore created, is audited, and exits 130, 143 or 129.
    Restore(RestoreArgs),
    /// List catalogued backups.
    List(ListArgs),
    /// Delete old backups by retention (shows what it would delete; deletes only with --yes).
    ///
    /// The rules (--keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly,
    /// --keep-yearly, --keep-within, --older-than) combine with OR, for each database in the
    /// repository: a backup stays when any rule keeps it. A calendar rule keeps the newest
    /// backup of each of the newest N hours, days, ISO weeks, months or years (UTC) that have
    /// one; --keep-within keeps all made within AGE of the database's newest backup;
    /// --older-than deletes what was made more than AGE before now. Without flags: the
    /// config's [retention] rules, else --older-than retention_days. The newest backup of each
    /// database is never deleted, whatever the rules.
    ///
    /// Only verified backups count: an object directly in the repository (the backup
    /// directory, or --repo: a regular file, no `..`, no symbolic link; an object under the
    /// bucket's prefix) whose signed header — verified with the creator's key — matches the
    /// catalog entry (signer, creator, time, database) and whose final signature verifies
    /// over the digest the catalog recorded; its time is the signed one. Any other entry is
    /// refused with the reason (never deleted, never counted), audited, and the rest goes on;
    /// refusals end in exit 4. A backup signed more than 5 minutes in the future is kept and
    /// not counted. Each decision is shown and audited with the rules that kept it. Copies in
    /// other repositories (`pgseal copy`) are neither counted nor touched. Backups written
    /// elsewhere with `backup --output-dir` are never deleted by prune.
    Prune(PruneArgs),
    /// Copy backups into another repository (local → S3 and back), verifying each copy.
    ///
    /// Every catalogued backup of the source repository (--repo, else the configured one) that
    /// has no copy in --to yet is streamed there, read back and verified — both signatures with
    /// the creator's key from the store, every chunk, the ciphertext digest against the catalog
    /// — and only then catalogued as a copy; a copy that does not verify is deleted. Re-running
    /// copies only what is missing. Restore falls back on another copy when the one named
    /// cannot be read or does not verify; prune keeps its retention in each repository.
    Copy(CopyArgs),
    /// Re-wrap backups' file keys to the active server key (after a rotation) and wipe the old
    /// wrapping, so the rotated-out key opens nothing; data and signatures untouched.
    ///
    /// Also finishes a wipe still owed by an interrupted rewrap, or by an older pgseal that did
    /// not wipe, even when the file is already on the active key; `inspect` and `verify` report
    /// such files.
    Rewrap(RewrapArgs),
    /// Bring the legacy Django system's users, keys and audit log into the store (creating the
    /// store if there is none: with `init`, the only commands that make one).
    ImportDjango(ImportDjangoArgs),
    /// Read the audit log: every operation, failures included.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Show the site's state for people and monitors: per database the newest backup, its
    /// restore checks and recent failures; the server key's age; the audit chain.
    ///
    /// Per database: the newest live backup — time, age and size from the catalog, checked
    /// against the backup's own signed header when this host reaches it (its prelude only);
    /// how long it took (the duration_ms of its BACKUP audit entry); whether a `verify` or
    /// `restore` of it (or of a copy) succeeded after it was made, or "never verified" — the
    /// last `restore --check` and its result, and the failed audit entries naming the
    /// database in the last 24 hours. The active server key's age. The audit chain, walked
    /// whole as `audit verify` walks it (linear in the log: one read and one SHA-256 per
    /// entry), and the audit anchors in the newest backups' headers. The store is only read.
    ///
    /// What it cannot see: whoever can write the store can cut the audit log back at its end;
    /// a cut past the newest backup's anchor is found, later entries (a failed check since
    /// the last backup) can vanish unseen — `audit verify` and `audit export` narrow that.
    ///
    /// Exit codes are the Nagios/Icinga plugin's, not pgseal's usual ones: 0 OK, 1 WARNING,
    /// 2 CRITICAL, 3 UNKNOWN (the store or configuration cannot be read, a bad flag). Without
    /// --max-age it only reports, and exits 0 (or 3). With --max-age the first line of
    /// output is a one-line summary and the exit code its state: CRITICAL when a database's
    /// newest backup is older than the age or missing, its signed header disagrees with the
    /// catalog or its file is gone, its last restore check failed, or the audit chain is
    /// broken, empty or cut back; WARNING when a database was never restore-checked, had
    /// failures in the last 24 hours, or no backup is catalogued at all.
    Status(StatusArgs),
    /// The repository where backups live (a directory, or an S3 bucket and prefix).
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Run the key-custody service: hold the server keys in memory and unwrap or rewrap for
    /// authenticated, authorised callers, auditing every request (docs/CUSTODY.md).
    ///
    /// Unlocks every stored server key once (the password from --server-password-file,
    /// --server-password-command, $CREDENTIALS_DIRECTORY/server-key-password, SERVER_KEY_PASSWORD
    /// or a prompt), then listens on TLS (--listen, with the certificate and key from [serve] or
    /// the flags) and/or a Unix socket (--unix) until SIGTERM or SIGINT. Core dumps are off.
    Serve(ServeArgs),
    /// Run the routine work by itself: systemd units (or a crontab) for a nightly `backup
    /// --all`, `prune --yes` after each backup that succeeded, a monthly `restore --check
    /// --latest` and a daily `audit verify`.
    ///
    /// The units run as a dedicated system account (--system-user; create it first, e.g.
    /// `useradd --system --home-dir /var/lib/pgseal --create-home --shell /usr/sbin/nologin
    /// pgseal`), read their passwords only through systemd's LoadCredential= from files in
    /// --credentials-dir (user-key-password, server-key-password, and pgpass with --pgpass),
    /// and carry systemd's hardening (read-only system but the backup directory and store,
    /// private /tmp and devices, no new privileges, no capabilities, a system call filter).
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Generate a standalone RSA key pair: NAME.key.pem (encrypted, 0600) and NAME.pub.pem.
    Keygen(KeygenArgs),
    /// Show facts about key files.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Seal a file or stream: encrypt to recipients' public keys and sign.
    Encrypt(EncryptArgs),
    /// Open a sealed file (v2, legacy hybrid or legacy symmetric).
    #[command(alias = "decrypt_asymmetric_backup", alias = "decrypt_backup")]
    Decrypt(DecryptArgs),
    /// Check a sealed file's signatures and integrity with the creator's public key alone.
    #[command(alias = "verify_asymmetric_backup", alias = "verify_backup")]
    Verify(VerifyArgs),
    /// Show what a file's header says (format, creator, time, recipients, sizes). Trusts nothing.
    Inspect(InspectArgs),
    #[command(name = "generate_server_keys", hide = true)]
    LegacyGenerateServerKeys(ServerKeyGenerateArgs),
    #[command(name = "generate_user_key", hide = true)]
    LegacyGenerateUserKey(UserKeyGenerateArgs),
    #[command(name = "rotate_server_keys", hide = true)]
    LegacyRotateServerKeys(ServerKeyRotateArgs),
    #[command(name = "rotate_user_key", hide = true)]
    LegacyRotateUserKey(UserKeyRotateArgs),
}

/// Where a command's `--json` output goes, and so its JSON error object when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonTo {
    Stdout,
    /// `encrypt -o - --json`: standard output carries the sealed data.
    Stderr,
}

impl Command {
    /// Where this command's JSON goes, if it was given `--json`.
    pub fn json_to(&self) -> Option<JsonTo> {
        let on = |json: bool| json.then_some(JsonTo::Stdout);
        match self {
            Command::Init(a) => on(a.json.on),
            Command::Config(a) => on(a.on),
            Command::ServerKey(c) => match c {
                ServerKeyCommand::Generate(a) => on(a.json.on),
                ServerKeyCommand::Rotate(a) => on(a.json.on),
                ServerKeyCommand::List(a) => on(a.on),
                ServerKeyCommand::Retire(_) | ServerKeyCommand::Export(_) => None,
            },
            Command::User(c) => match c {
                UserCommand::Add { json, .. } | UserCommand::Show { json, .. } => on(json.on),
                UserCommand::List(a) => on(a.on),
                UserCommand::Disable { .. } => None,
                UserCommand::Role { json, .. } => on(json.on),
                UserCommand::Totp(_) => None,
            },
            Command::UserKey(c) => match c {
                UserKeyCommand::Generate(a) => on(a.json.on),
                UserKeyCommand::Rotate(a) => on(a.json.on),
                UserKeyCommand::List { json, .. } => on(json.on),
                UserKeyCommand::Export { .. } => None,
            },
            Command::Backup(a) => on(a.json.on),
            Command::Restore(a) => on(a.json.on),
            Command::List(a) => on(a.json.on),
            Command::Prune(a) => on(a.json.on),
            Command::Copy(a) => on(a.json.on),
            Command::Rewrap(a) => on(a.json.on),
            Command::ImportDjango(a) => on(a.json.on),
            Command::Repo(RepoCommand::Cleanup(a)) => on(a.json.on),
            Command::Audit(c) => match c {
                AuditCommand::List(a) => on(a.json.on),
                AuditCommand::Stats(a) => on(a.json.on),
                AuditCommand::Verify(a) => on(a.json.on),
                AuditCommand::Export(_) => None,
            },
            Command::Keygen(a) => on(a.json.on),
            Command::Schedule(_) => None,
            Command::Status(a) => on(a.json.on),
            Command::Serve(_) => None,
            Command::Key(KeyCommand::Info(a)) => on(a.json.on),
            Command::Encrypt(a) if a.json.on && a.output == "-" => Some(JsonTo::Stderr),
            Command::Encrypt(a) => on(a.json.on),
            Command::Decrypt(_) => None,
            Command::Verify(a) => on(a.json.on),
            Command::Inspect(a) => on(a.json.on),
            Command::LegacyGenerateServerKeys(a) => on(a.json.on),
            Command::LegacyGenerateUserKey(a) => on(a.json.on),
            Command::LegacyRotateServerKeys(a) => on(a.json.on),
            Command::LegacyRotateUserKey(a) => on(a.json.on),
        }
    }
}

/// How a *new* password is found (rotation).
#[derive(Debug, Args, Clone)]
pub struct NewPasswordArgs {
    /// Read the new password from FILE (else the *_NEW_*_PASSWORD variable, else a prompt, twice).
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
    /// Run CMD and use its output as the new password.
    #[arg(long, value_name = "CMD")]
    pub new_password_command: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServerKeyRotateArgs {
    #[command(flatten)]
    pub key_size: NewKeySize,
    /// Give the key an ML-KEM-768 half: backups made for it are post-quantum (hybrid RSA-OAEP +
    /// ML-KEM-768, docs/FORMAT.md §6a). Default: the config's `[keys] pq`.
    #[arg(long)]
    pub pq: bool,
    /// A note stored with the new key.
    #[arg(long)]
    pub notes: Option<String>,
    /// The current password (SERVER_KEY_PASSWORD, or these flags).
    #[command(flatten)]
    pub server_password: ServerPasswordArgs,
    /// The new password (PGSEAL_NEW_SERVER_KEY_PASSWORD, or these flags), which will then open
    /// every server key, old and new.
    #[command(flatten)]
    pub new_password: NewPasswordArgs,
    /// Or: have the key-custody service rotate the key it holds (role admin and --totp CODE;
    /// no password here: the service keeps its own).
    #[command(flatten)]
    pub custody: CustodyArgs,
    #[command(flatten)]
    pub json: Json,
}

#[derive(Debug, Args)]
pub struct UserKeyRotateArgs {
    /// The user.
    pub name: String,
    /// The user's current private key, as proof of possession (default:
    /// USER_KEYS_DIR/NAME.key.pem); its password from PGSEAL_USER_KEY_PASSWORD or these flags.
    #[arg(long, value_name = "KEY.pem")]
    pub sign_key: Option<PathBuf>,
    #[command(flatten)]
    pub user_password: UserPasswordArgs,
    /// The new key's password (PGSEAL_NEW_USER_KEY_PASSWORD, or these flags).
    #[command(flatten)]
    pub new_password: NewPasswordArgs,
    /// Where to write the new private key (default: USER_KEYS_DIR/NAME.key.pem; an old key
    /// there is kept beside it, renamed `.retired-STAMP`).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Rotate without the old private key (lost or compromised). Only for an admin, named by
    /// PGSEAL_USER; audited.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub key_size: NewKeySize,
    #[command(flatten)]
    pub json: Json,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The database to back up (host, port and user come from PGHOST, PGPORT, PGUSER, ~/.pgpass).
    /// Always a name, never a connection string (use --dbname for one); a name starting with
    /// `-` is a name too.
    #[arg(
        required_unless_present_any = ["all", "dbname"],
        conflicts_with = "all",
        allow_hyphen_values = true
    )]
    pub database: Option<String>,
    /// Back up every database (templates and --exclude'd ones skipped), continuing past
    /// failures; then the cluster's globals (pg_dumpall --globals-only: roles, memberships,
    /// tablespaces; and each database's owner, settings and grants) as one more backup,
    /// catalogued as `(globals)`. Any failure, the globals' included, exits 6; the backups
    /// made stay.
    #[arg(long)]
    pub all: bool,
    /// With --all: keep the roles' password hashes in the globals backup (default:
    /// pg_dumpall --no-role-passwords, so restored roles have no password).
    #[arg(long, requires = "all")]
    pub with_role_passwords: bool,
    /// With --all: skip this database. Repeatable; replaces the default (template0 template1 postgres).
    #[arg(long = "exclude", value_name = "DB", requires = "all")]
    pub excludes: Vec<String>,
    /// A libpq connection string or URI (postgresql://...) instead of the environment.
    #[arg(long, value_name = "CONNINFO")]
    pub dbname: Option<String>,
    /// The pgseal user making the backup; signs with their active key.
    #[arg(long, value_name = "NAME")]
    pub user: String,
    /// The user's private key (default: USER_KEYS_DIR/NAME.key.pem).
    #[arg(long, value_name = "KEY.pem")]
    pub sign_key: Option<PathBuf>,
    #[command(flatten)]
    pub user_password: UserPasswordArgs,
    /// Dump only this schema. Repeatable.
    #[arg(long = "schema", value_name = "SCHEMA")]
    pub schemas: Vec<String>,
    /// Where to write the backup (default: the configured repository).
    #[arg(long, value_name = "DIR", conflicts_with = "url")]
    pub output_dir: Option<PathBuf>,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// After each backup, copy it into this repository too (file:///ABSOLUTE/DIR or
    /// s3://BUCKET/PREFIX), verified before it is catalogued, as `pgseal copy` does; a copy
    /// that fails makes the command fail (the backup itself stays).
    #[arg(long, value_name = "URL")]
    pub copy_to: Option<String>,
    /// Directory of pg_dump and psql (else POSTGRESQL_BIN_PATH, else PATH).
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
    #[command(flatten)]
    pub json: Json,
}

/// How the keys needed to open a file are found (shared by decrypt and restore).
#[derive(Debug, Args, Clone)]
pub struct OpenKeyArgs {
    /// A private key the file may be encrypted to (default with a store: the stored server key
    /// the file names, rotated keys included). Repeatable.
    #[arg(long = "identity", value_name = "KEY.pem")]
    pub identities: Vec<PathBuf>,
    #[command(flatten)]
    pub server_password: ServerPasswordArgs,
    /// The creator's public key, to verify signatures (default with a store: found by
    /// fingerprint, retired keys included). Repeatable.
    #[arg(long = "signer", value_name = "PUB.pem")]
    pub signers: Vec<PathBuf>,
    /// Proceed without verifying who made the file (warns). Tags are still checked.
    #[arg(long)]
    pub no_verify: bool,
    /// Password file for legacy symmetric files (else BACKUP_ENCRYPTION_PASSWORD, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub legacy_password_file: Option<PathBuf>,
    #[command(flatten)]
    pub custody: CustodyArgs,
}

/// Asking a key-custody service (`pgseal serve`) instead of using the stored server keys.
#[derive(Debug, Args, Clone)]
pub struct CustodyArgs {
    /// Ask the key-custody service at URL (https://HOST:PORT or unix:///PATH; default:
    /// PGSEAL_CUSTODY, else the config's [custody] url) to open files: no server password
    /// needed. Requests are signed with the key of the acting user (PGSEAL_USER), unlocked with
    /// PGSEAL_USER_KEY_PASSWORD or the flags below.
    #[arg(long, value_name = "URL")]
    pub custody: Option<String>,
    /// The CA that signed the service's certificate (default: PGSEAL_CUSTODY_CA, else the
    /// config's [custody] ca_file, else the system's roots).
    #[arg(long, value_name = "FILE")]
    pub custody_ca: Option<PathBuf>,
    /// A second-factor code from your authenticator, for a service that asks one (else
    /// PGSEAL_TOTP).
    #[arg(long, value_name = "CODE")]
    pub totp: Option<String>,
    #[command(flatten)]
    pub user_password: UserPasswordArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup to restore (v2, legacy hybrid or legacy symmetric).
    #[arg(required_unless_present = "latest")]
    pub file: Option<PathBuf>,
    /// The database to restore into (a name, never a connection string). Without --create it
    /// must exist and be empty, unless --into-existing.
    #[arg(
        long,
        value_name = "NAME",
        required_unless_present_any = ["check", "globals"],
        allow_hyphen_values = true
    )]
    pub target_db: Option<String>,
    /// Apply a cluster's globals (the `(globals)` backup `backup --all` makes) to the server
    /// with psql: roles, memberships, tablespaces, then each database, empty, with its owner,
    /// settings and grants — restore each database's backup into it next (without --create).
    /// The whole file is verified before any statement runs; roles that exist already keep
    /// existing (their attributes set as in the backup); a database that exists stops it.
    /// Refused for a database's backup, as restoring globals without it is.
    #[arg(
        long,
        conflicts_with_all = ["target_db", "create", "clean", "into_existing", "check", "no_verify"]
    )]
    pub globals: bool,
    /// Create the target database first (refused if it exists; dropped again if the restore
    /// fails or is interrupted).
    #[arg(long)]
    pub create: bool,
    /// Restore into an existing database that already holds objects, merging the backup into
    /// them (objects the backup has too make the restore fail, unless --clean). Without it such
    /// a restore is refused.
    #[arg(long, conflicts_with = "create")]
    pub into_existing: bool,
    /// Drop the archive's objects in the target before recreating them.
    #[arg(long)]
    pub clean: bool,
    /// Parallel pg_restore jobs; above 1 the archive is first verified into an unnamed private
    /// file (gone with pgseal, even after kill -9) that pg_restore reads by /proc path, and the
    /// restore is not one transaction (a failed or interrupted one into an existing database
    /// keeps what it restored).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,
    /// Restore into a throwaway database, report per-table row counts, drop it. Scratch
    /// databases left by a killed check are dropped by the next one.
    #[arg(long, conflicts_with_all = ["target_db", "create", "clean", "into_existing"])]
    pub check: bool,
    /// With --check: check the newest catalogued backup of every database in the configured
    /// repository (by the catalog's time, which each file's signed header must confirm — a
    /// catalog row moved in time is refused, exit 4; signatures checked as always), one after
    /// another, going on past failures — the monthly check `pgseal schedule` runs.
    #[arg(long, requires = "check", conflicts_with_all = ["file", "jobs"])]
    pub latest: bool,
    #[command(flatten)]
    pub keys: OpenKeyArgs,
    /// Directory of pg_restore and psql (else POSTGRESQL_BIN_PATH, else PATH).
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
    #[command(flatten)]
    pub json: Json,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Judge the site: exit 2 (CRITICAL) with a one-line summary when a database's newest
    /// backup is older than this (e.g. 26h, 2d, 90m, 1w), among the other checks in --help.
    #[arg(long, value_name = "AGE")]
    pub max_age: Option<String>,
    /// Also write node_exporter textfile-collector metrics to FILE, atomically (a temporary
    /// file in FILE's directory, fsynced, renamed over FILE; mode 0644: nothing secret).
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,
    #[command(flatten)]
    pub json: Json,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only backups of this database.
    #[arg(long, value_name = "DB")]
    pub db: Option<String>,
    /// Compare the catalog with what the repository holds: entries whose object is gone, and
    /// objects no entry names.
    #[arg(long)]
    pub remote: bool,
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub json: Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen for TLS on ADDR:PORT (default: the config's [serve] listen).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// The certificate chain, PEM (default: [serve] cert_file).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Its private key, PEM (default: [serve] key_file).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Also (or only) listen on this Unix socket (default: [serve] unix_socket).
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
    #[command(flatten)]
    pub server_password: ServerPasswordArgs,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The repository to copy into: file:///ABSOLUTE/DIR or s3://BUCKET/PREFIX.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Only backups of this database.
    #[arg(long, value_name = "DB")]
    pub db: Option<String>,
    /// Only show what would be copied.
    #[arg(long)]
    pub dry_run: bool,
    /// The repository to copy from (see --repo of the other commands).
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub json: Json,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Keep the newest N backups of each database.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the newest N hours that have one.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest backup of each of the newest N days (UTC) that have one.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the newest N ISO weeks that have one.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the newest N months that have one.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest backup of each of the newest N years that have one.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every backup made within AGE of the database's newest backup (e.g. 2d, 12h, 2w).
    #[arg(long, value_name = "AGE")]
    pub keep_within: Option<String>,
    /// Delete backups made more than AGE before now (e.g. 90d, 12h, 2w); with --keep-* rules,
    /// one rule among them. Default when no rule is given anywhere: retention_days days.
    #[arg(long, value_name = "AGE")]
    pub older_than: Option<String>,
    /// Only backups of this database.
    #[arg(long, value_name = "DB")]
    pub db: Option<String>,
    /// Actually delete (without it, prune only shows what it would delete).
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub json: Json,
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Discard unfinished writes: the incomplete multipart uploads a killed backup (or rewrap)
    /// left in a bucket, the hidden partial files one left in a directory. Audited.
    ///
    /// Only writes started more than --older-than ago are discarded, so a backup running now
    /// keeps its upload; every backup also does this for those older than the configured
    /// abort_uploads_after_hours.
    Cleanup(RepoCleanupArgs),
}

#[derive(Debug, Args)]
pub struct RepoCleanupArgs {
    /// Discard only writes started longer ago than this (e.g. 24h, 2d, 30m; default: the
    /// config's abort_uploads_after_hours).
    #[arg(long, value_name = "AGE")]
    pub older_than: Option<String>,
    /// Only show what would be discarded.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub json: Json,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Write the units into the unit directory (each file atomically; a unit pgseal did not
    /// write is refused unless --force). In /etc/systemd/system on a host running systemd, then
    /// runs `systemctl daemon-reload` and `systemctl enable --now` the timers. Audited.
    Install(ScheduleInstallArgs),
    /// Print the units (or, with --cron, the equivalent crontab for /etc/cron.d/pgseal).
    Print(SchedulePrintArgs),
    /// Disable the timers (in /etc/systemd/system, systemd running) and delete the units pgseal
    /// wrote; a file of the same name it did not write is left alone. Audited.
    Remove(ScheduleRemoveArgs),
}

#[derive(Debug, Args)]
pub struct ScheduleSettingsArgs {
    /// The pgseal user whose key signs the nightly backups (backup --user).
    #[arg(long, value_name = "NAME")]
    pub user: String,
    /// The system account the jobs run as (not root).
    #[arg(long, value_name = "ACCOUNT", default_value = "pgseal")]
    pub system_user: String,
    /// The pgseal binary the jobs run (default: this one).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Where the password files are: user-key-password (backups), server-key-password (the
    /// restore check), pgpass (--pgpass). Root-owned, 0600: systemd hands them to the units.
    #[arg(long, value_name = "DIR", default_value = "/etc/pgseal/credentials")]
    pub credentials_dir: PathBuf,
    /// PostgreSQL's password comes from DIR/pgpass (PGPASSFILE); without it, libpq's defaults
    /// (peer authentication over the socket as the system account, typically).
    #[arg(long)]
    pub pgpass: bool,
    /// When the nightly backup starts (HH:MM, local time); prune follows it.
    #[arg(long, value_name = "HH:MM", default_value = "02:00")]
    pub backup_at: String,
    /// When the daily audit verify starts.
    #[arg(long, value_name = "HH:MM", default_value = "06:00")]
    pub audit_at: String,
    /// The day of the month of the restore check (1-28).
    #[arg(long, value_name = "DAY", default_value_t = 1)]
    pub check_day: u8,
    /// When the monthly restore check starts.
    #[arg(long, value_name = "HH:MM", default_value = "04:00")]
    pub check_at: String,
    /// Spread each start over up to this many minutes (systemd's RandomizedDelaySec; 0: none).
    #[arg(long, value_name = "MINUTES", default_value_t = 30)]
    pub randomized_delay: u32,
}

#[derive(Debug, Args)]
pub struct ScheduleInstallArgs {
    #[command(flatten)]
    pub settings: ScheduleSettingsArgs,
    /// Where the units go (a packager's or test's directory: nothing is enabled there).
    #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
    pub unit_dir: PathBuf,
    /// Replace unit files pgseal did not write.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct SchedulePrintArgs {
    #[command(flatten)]
    pub settings: ScheduleSettingsArgs,
    /// The equivalent crontab instead (cron has no credentials: the jobs name the same password
    /// files with --*-password-file, so they must be readable by the system account alone).
    #[arg(long)]
    pub cron: bool,
}

#[derive(Debug, Args)]
pub struct ScheduleRemoveArgs {
    /// Where the units are.
    #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
    pub unit_dir: PathBuf,
}

/// Which repository a command reads or writes backups in.
#[derive(Debug, Args, Clone, Default)]
pub struct RepoArgs {
    /// The repository: file:///ABSOLUTE/DIR or s3://BUCKET/PREFIX (default: PGSEAL_REPOSITORY,
    /// else the config's [repository] url, else its backup directory). S3 endpoint, region and
    /// credentials come from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID /
    /// AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN or AWS_PROFILE.
    #[arg(long = "repo", value_name = "URL")]
    pub url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImportDjangoArgs {
    /// The legacy system's PostgreSQL database (postgres://... or a libpq key=value string;
    /// put the password in PGPASSWORD or ~/.pgpass, not here).
    #[arg(long, value_name = "URL")]
    pub database_url: String,
    /// Show what would be imported, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub json: Json,
}

#[derive(Debug, Args)]
pub struct RewrapArgs {
    /// Files to rewrap.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub files: Vec<PathBuf>,
    /// Every catalogued backup on this host.
    #[arg(long)]
    pub all: bool,
    /// The password of the stored server keys (SERVER_KEY_PASSWORD, or these flags).
    #[command(flatten)]
    pub server_password: ServerPasswordArgs,
    /// Or: the key-custody service plans each rewrap (v2 files), and no password is needed.
    #[command(flatten)]
    pub custody: CustodyArgs,
    #[command(flatten)]
    pub json: Json,
}

#[derive(Debug, Args)]
pub struct ServerKeyRetireArgs {
    /// The full fingerprint of the rotated key to retire.
    pub fingerprint: String,
    /// Retire even though catalogued backups still need the key (they may become unopenable);
    /// requires the fingerprint typed again (prompted, or --confirm).
    #[arg(long)]
    pub force: bool,
    /// With --force and no terminal: the full fingerprint again.
    #[arg(long, value_name = "FINGERPRINT", requires = "force")]
    pub confirm: Option<String>,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Or: have the key-custody service retire it (role admin and --totp CODE; never forced).
    #[command(flatten)]
    pub custody: CustodyArgs,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List entries, oldest first (the newest --limit of those that match).
    List(AuditListArgs),
    /// Counts by action and outcome, signature validity, and the most active users.
    Stats(AuditStatsArgs),
    /// Check the hash chain, and the chain heads anchored in signed backups (catches edited,
    /// deleted, inserted, reordered and cut-off entries). Exit 4 names the first bad entry.
    ///
    /// Anchors come from every pgseal file in the repository (the backup directory, or --repo),
    /// catalogued or not (reading each file's signed header only: a ranged GET on S3), from this host's catalogued backups, and from --anchor
    /// files. A file there whose header signature does not verify, or whose signer the store
    /// does not know, is a finding. A missing, empty (0-byte) or schema-less store, or an empty
    /// audit log, is never reported intact: exit 4. Where the catalog and the backup directory
    /// disagree (files missing, present but marked pruned, or not catalogued) it is reported as
    /// a warning (in --json: `catalog`).
    Verify(AuditVerifyArgs),
    /// Every entry as one JSON object per line, with its chain hashes, for log shippers.
    Export(AuditExportArgs),
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// A sealed file whose signed header anchors the log (in addition to every file in the
    /// backup directory and every catalogued backup on this host). Repeatable.
    #[arg(long = "anchor", value_name = "FILE")]
    pub anchors: Vec<PathBuf>,
    /// Also check the audit chain head a key-custody service keeps (its head file, read
    /// directly on its host): entries cut off after it are found even past the newest backup.
    #[arg(long, value_name = "FILE")]
    pub custody_head: Option<PathBuf>,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Or ask the service itself (--custody URL; the acting user needs the auditor role).
    #[command(flatten)]
    pub custody: CustodyArgs,
    #[command(flatten)]
    pub json: Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
}

#[derive(Debug, Args)]
pub struct AuditExportArgs {
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    pub format: ExportFormat,
    /// Only entries after this chain position (for incremental shipping).
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub after: i64,
}

#[derive(Debug, Args)]
pub struct AuditListArgs {
    /// Only this action (ENCRYPT, DECRYPT, VERIFY, KEY_GEN, KEY_ROTATE, BACKUP, RESTORE, ...).
    #[arg(long)]
    pub action: Option<String>,
    /// Only entries of this pgseal user.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Only entries at or after this UTC time (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ).
    #[arg(long, value_name = "TIME", conflicts_with = "hours")]
    pub since: Option<String>,
    /// Only entries of the last H hours.
    #[arg(long, value_name = "H")]
    pub hours: Option<u32>,
    /// At most this many (the newest).
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// Only failed operations.
    #[arg(long)]
    pub failed_only: bool,
    /// Only entries where a signature was checked and did not hold.
    #[arg(long)]
    pub invalid_signature: bool,
    #[command(flatten)]
    pub json: Json,
}

#[derive(Debug, Args)]
pub struct AuditStatsArgs {
    /// Only the last H hours.
    #[arg(long, value_name = "H")]
    pub hours: Option<u32>,
    #[command(flatten)]
    pub json: Json,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory for pgseal.toml, .env.example, the store, keys/ and backups/ (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Size of the first server key.
    #[arg(long, default_value_t = 4096, value_parser = parse_key_size)]
    pub key_size: u32,
    /// Make server keys post-quantum hybrids (RSA + ML-KEM-768): the first one, and every
    /// rotation after it (writes `pq = true` into the config).
    #[arg(long)]
    pub pq: bool,
    #[command(flatten)]
    pub server_password: ServerPasswordArgs,
    #[command(flatten)]
    pub json: Json,
}

#[derive(Debug, Subcommand)]
pub enum ServerKeyCommand {
    /// Generate the server key pair. Refused while an active key exists (rotate instead).
    Generate(ServerKeyGenerateArgs),
    /// Replace the active key with a new one; old keys keep opening old backups, and every
    /// key is re-protected under the new password.
    Rotate(ServerKeyRotateArgs),
    /// List every server key: fingerprint, size, created, status.
    List(Json),
    /// Retire a rotated key once no catalogued backup holds it in any recipient slot (`rewrap
    /// --all` first).
    Retire(ServerKeyRetireArgs),
    /// Print a server key's public half (PEM); with --private, its encrypted private half.
    Export(ServerKeyExportArgs),
}

#[derive(Debug, Args)]
pub struct ServerKeyGenerateArgs {
    #[command(flatten)]
    pub key_size: NewKeySize,
    /// Give the key an ML-KEM-768 half: backups made for it are post-quantum (hybrid RSA-OAEP +
    /// ML-KEM-768, docs/FORMAT.md §6a). Default: the config's `[keys] pq`.
    #[arg(long)]
    pub pq: bool,
    /// A note stored with the key.
    #[arg(long)]
    pub notes: Option<String>,
    #[command(flatten)]
    pub server_password: ServerPasswordArgs,
    #[command(flatten)]
    pub json: Json,
}

#[derive(Debug, Args)]
pub struct ServerKeyExportArgs {
    /// Which key (default: the active one).
    #[arg(long, value_name = "FINGERPRINT")]
    pub fingerprint: Option<String>,
    /// Export the private half, still encrypted under SERVER_KEY_PASSWORD (for disaster
    /// recovery without the store). Audited.
    #[arg(long)]
    pub private: bool,
    /// Write to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `--json`: the command's report as one line of JSON (and a JSON error object on failure).
#[derive(Debug, Args)]
pub struct Json {
    /// Print the result as JSON (one line; a failure as {"error": {...}}).
    #[arg(long = "json")]
    pub on: bool,
}

/// `--key-size` for a new key whose size the configuration decides unless told.
#[derive(Debug, Args)]
pub struct NewKeySize {
    /// Key size in bits (default: the config's rsa_key_size).
    #[arg(long = "key-size", value_parser = parse_key_size)]
    pub bits: Option<u32>,
}

/// How a standalone key file's password is found (keygen, key info).
#[derive(Debug, Args, Clone)]
pub struct KeyPasswordArgs {
    /// Read the key's password from FILE (else PGSEAL_KEY_PASSWORD, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Run CMD and use its output as the key's password.
    #[arg(long, value_name = "CMD")]
    pub password_command: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Admin,
    Operator,
    Auditor,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Register a user. Ids are assigned once and never reused.
    Add {
        /// 1-150 letters, digits (any script), `_`, `.`, `@`, `+` or `-`; not `.` or `..`,
        /// not starting with `-`.
        name: String,
        #[arg(long, value_enum, default_value_t = RoleArg::Operator)]
        role: RoleArg,
        #[command(flatten)]
        json: Json,
    },
    /// List users.
    List(Json),
    /// Show one user and their key history.
    Show {
        name: String,
        #[command(flatten)]
        json: Json,
    },
    /// Disable a user: they can no longer make backups; their keys stay for verification.
    Disable { name: String },
    /// Show, grant or revoke a user's service roles: what they may ask of the key-custody
    /// service (`pgseal serve`). restore: have file keys unwrapped (decrypt, restore, verify
    /// --identity); rewrap: have files rewrapped; admin: rotate and retire the keys the service
    /// holds; auditor: read the service's view of the audit log. Audited as USER_ROLE.
    Role {
        name: String,
        /// Grant this role. Repeatable.
        #[arg(long = "add", value_enum, value_name = "ROLE")]
        add: Vec<ServiceRoleArg>,
        /// Revoke this role. Repeatable.
        #[arg(long = "remove", value_enum, value_name = "ROLE")]
        remove: Vec<ServiceRoleArg>,
        #[command(flatten)]
        json: Json,
    },
    /// A user's second factor (a TOTP authenticator) for the key-custody service.
    #[command(subcommand)]
    Totp(TotpCommand),
}

#[derive(Debug, Subcommand)]
pub enum TotpCommand {
    /// Enrol a new authenticator (replacing any earlier one): prints the otpauth:// URI and,
    /// on a terminal, its QR code, once. The secret is sealed to the active server key: only
    /// the custody service can check codes, and nothing shows it again. Audited as USER_TOTP.
    Enroll { name: String },
}

/// A service role (see `pgseal user role --help`).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ServiceRoleArg {
    Restore,
    Rewrap,
    Admin,
    Auditor,
}

impl From<ServiceRoleArg> for pgseal_store::ServiceRole {
    fn from(r: ServiceRoleArg) -> Self {
        match r {
            ServiceRoleArg::Restore => pgseal_store::ServiceRole::Restore,
            ServiceRoleArg::Rewrap => pgseal_store::ServiceRole::Rewrap,
            ServiceRoleArg::Admin => pgseal_store::ServiceRole::Admin,
            ServiceRoleArg::Auditor => pgseal_store::ServiceRole::Auditor,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum UserKeyCommand {
    /// Generate a user's signing key pair: private key to a file (0600), public key to the store.
    Generate(UserKeyGenerateArgs),
    /// Replace a user's key (proof of possession of the old one, unless an admin forces it);
    /// the old public key is retired but kept, so old backups still verify.
    Rotate(UserKeyRotateArgs),
    /// List a user's keys, retired ones included.
    List {
        name: String,
        #[command(flatten)]
        json: Json,
    },
    /// Print a user's public key (the active one unless --fingerprint).
    Export {
        name: String,
        #[arg(long, value_name = "FINGERPRINT")]
        fingerprint: Option<String>,
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct UserKeyGenerateArgs {
    /// The user.
    pub name: String,
    /// Where to write the private key (default: USER_KEYS_DIR/NAME.key.pem); the public key
    /// goes beside it as .pub.pem.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub key_size: NewKeySize,
    /// Replace existing key files.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub user_password: UserPasswordArgs,
    #[command(flatten)]
    pub json: Json,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Base name of the key files: writes NAME.key.pem and NAME.pub.pem.
    #[arg(long, value_name = "NAME")]
    pub out: PathBuf,
    /// RSA modulus size in bits.
    #[arg(long, default_value_t = 4096, value_parser = parse_key_size)]
    pub key_size: u32,
    /// Add an ML-KEM-768 half (a hybrid key: files sealed to it are post-quantum, docs/FORMAT.md
    /// §6a). NAME.key.pem and NAME.pub.pem each hold both halves, the ML-KEM block second.
    #[arg(long)]
    pub pq: bool,
    /// Replace existing key files (regular files only). The old private key is lost.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub password: KeyPasswordArgs,
    #[command(flatten)]
    pub json: Json,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print a key's type, size and fingerprints. Private keys need their password
    /// (PGSEAL_KEY_PASSWORD, --password-file or a prompt) unless stored unencrypted.
    Info(KeyInfoArgs),
}

#[derive(Debug, Args)]
pub struct KeyInfoArgs {
    /// A PEM key file (public or private).
    pub file: PathBuf,
    #[command(flatten)]
    pub password: KeyPasswordArgs,
    #[command(flatten)]
    pub json: Json,
}

/// How the signing (user) key's password is found.
#[derive(Debug, Args, Clone)]
pub struct UserPasswordArgs {
    /// Read the signing key's password from FILE (else PGSEAL_USER_KEY_PASSWORD, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub user_password_file: Option<PathBuf>,
    /// Run CMD and use its output as the signing key's password.
    #[arg(long, value_name = "CMD")]
    pub user_password_command: Option<String>,
}

/// How the server (identity) key's password is found.
#[derive(Debug, Args, Clone)]
pub struct ServerPasswordArgs {
    /// Read the server key's password from FILE (else SERVER_KEY_PASSWORD, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub server_password_file: Option<PathBuf>,
    /// Run CMD and use its output as the server key's password.
    #[arg(long, value_name = "CMD")]
    pub server_password_command: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressArg {
    Zstd,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// The pgseal format: streaming, signed header, survives key rotation.
    V2,
    /// The legacy PGBACKUP_HYBRID_V1 format, for sites still running the old tools.
    V1,
}

#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// File to seal, or - for standard input.
    #[arg(default_value = "-")]
    pub input: String,
    /// Where to write the sealed file, or - for standard output. A FIFO or character device is
    /// written to as it is; a directory, socket or the input is refused.
    #[arg(short, long, value_name = "OUT")]
    pub output: String,
    /// A recipient's public key (default with a store: the active server key). Repeatable, for
    /// recovery keys.
    #[arg(long = "recipient", value_name = "PUB.pem")]
    pub recipients: Vec<PathBuf>,
    /// The creator's private key, which signs the file (default with --user:
    /// USER_KEYS_DIR/NAME.key.pem).
    #[arg(long, value_name = "KEY.pem")]
    pub sign_key: Option<PathBuf>,
    /// The pgseal user making the file: signs with their active key, recorded in the header.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    #[command(flatten)]
    pub user_password: UserPasswordArgs,
    /// Compress before encrypting (default zstd; v1 files are never compressed).
    #[arg(long, value_enum)]
    pub compress: Option<CompressArg>,
    /// zstd compression level, 1 (fastest) to 19.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub zstd_level: i32,
    /// File format to write.
    #[arg(long, value_enum, default_value_t = FormatArg::V2)]
    pub format: FormatArg,
    /// The creator's numeric user id, recorded in the header (required by v1 readers).
    #[arg(long, value_name = "N")]
    pub user_id: Option<u64>,
    /// The creator's user name, recorded in the header (v2).
    #[arg(long, value_name = "NAME")]
    pub username: Option<String>,
    /// Payload chunk size in bytes (v2; a power of two from 1024 to 16 MiB).
    #[arg(long, default_value_t = pgseal_core::v2::DEFAULT_CHUNK_SIZE, hide = true)]
    pub chunk_size: u32,
    /// Replace OUT if it is an existing regular file (nothing else is ever replaced).
    #[arg(long)]
    pub force: bool,
    /// Print a summary as JSON (on standard error when OUT is -, else on standard output).
    #[command(flatten)]
    pub json: Json,
}

#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// Sealed file, or - for standard input.
    pub input: String,
    /// Where to write the plaintext, or - for standard output. A FIFO or character device is
    /// written to as it is (a stream, like -); a directory, socket or the input is refused.
    #[arg(short, long, value_name = "OUT")]
    pub output: String,
    #[command(flatten)]
    pub keys: OpenKeyArgs,
    /// Replace OUT if it is an existing regular file (nothing else is ever replaced).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Sealed file, or - for standard input.
    pub input: String,
    /// The creator's public key (default with a store: found by fingerprint). Repeatable.
    #[arg(long = "signer", value_name = "PUB.pem")]
    pub signers: Vec<PathBuf>,
    /// Also prove the file decrypts (unwrap, commitment, every tag), writing no plaintext.
    #[arg(long = "identity", value_name = "KEY.pem")]
    pub identity: Option<PathBuf>,
    /// With a store: also prove the file decrypts, using the stored server key it names (or
    /// the key-custody service: --custody URL implies this check).
    #[arg(long, conflicts_with = "identity")]
    pub decrypt_check: bool,
    #[command(flatten)]
    pub server_password: ServerPasswordArgs,
    #[command(flatten)]
    pub custody: CustodyArgs,
    #[command(flatten)]
    pub json: Json,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Sealed file, or - for standard input.
    pub input: String,
    #[command(flatten)]
    pub json: Json,
}

fn parse_key_size(s: &str) -> Result<u32, String> {
    match s {
        "2048" | "3072" | "4096" => Ok(s.parse().expect("matched digits")),
        _ => Err("choose 2048, 3072 or 4096".into()),
    }
}
