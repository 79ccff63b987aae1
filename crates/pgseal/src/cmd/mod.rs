//! One module per command; this one dispatches and holds what they share.

mod audit;
mod backup;
mod catalog;
mod copy;
mod decrypt;
mod encrypt;
mod import;
mod init;
mod inspect;
mod keygen;
mod restore;
mod rewrap;
mod schedule;
mod serve;
mod server_key;
pub mod status;
mod users;
mod verify;

use std::path::Path;

use pgseal_core::PrivateKey;

use crate::cli::{
    AuditCommand, Command, KeyCommand, RepoCommand, ServerKeyCommand, UserKeyCommand,
};
use crate::context::Context;
use crate::failure::{CliResult, Failure};
use crate::secrets::PasswordSource;
pub use crate::secrets::{new_password, server_password, user_password};
use pgseal_ops::secret::Secret;

pub fn run(command: Command, ctx: &mut Context) -> CliResult {
    match command {
        Command::Init(args) => init::run(args, ctx),
        Command::Config(args) => init::show_config(args, ctx),
        Command::ServerKey(ServerKeyCommand::Generate(args))
        | Command::LegacyGenerateServerKeys(args) => server_key::generate(args, ctx),
        Command::ServerKey(ServerKeyCommand::Rotate(args))
        | Command::LegacyRotateServerKeys(args) => server_key::rotate(args, ctx),
        Command::ServerKey(ServerKeyCommand::List(args)) => server_key::list(args, ctx),
        Command::ServerKey(ServerKeyCommand::Retire(args)) => server_key::retire(args, ctx),
        Command::Rewrap(args) => rewrap::run(args, ctx),
        Command::ImportDjango(args) => import::run(args, ctx),
        Command::ServerKey(ServerKeyCommand::Export(args)) => server_key::export(args, ctx),
        Command::User(cmd) => users::user(cmd, ctx),
        Command::UserKey(UserKeyCommand::Generate(args)) | Command::LegacyGenerateUserKey(args) => {
            users::generate_key(args, ctx)
        }
        Command::UserKey(UserKeyCommand::Rotate(args)) | Command::LegacyRotateUserKey(args) => {
            users::rotate_key(args, ctx)
        }
        Command::UserKey(cmd) => users::user_key(cmd, ctx),
        Command::Backup(args) => backup::run(args, ctx),
        Command::Restore(args) => restore::run(args, ctx),
        Command::List(args) => catalog::list(args, ctx),
        Command::Prune(args) => catalog::prune(args, ctx),
        Command::Copy(args) => copy::run(args, ctx),
        Command::Repo(RepoCommand::Cleanup(args)) => catalog::cleanup(args, ctx),
        Command::Audit(AuditCommand::List(args)) => audit::list(args, ctx),
        Command::Audit(AuditCommand::Stats(args)) => audit::stats(args, ctx),
        Command::Audit(AuditCommand::Verify(args)) => audit::verify(args, ctx),
        Command::Audit(AuditCommand::Export(args)) => audit::export(args, ctx),
        Command::Keygen(args) => keygen::keygen(args),
        Command::Status(args) => status::run(args, ctx).map(drop),
        Command::Serve(args) => serve::run(args, ctx),
        Command::Schedule(cmd) => schedule::run(cmd, ctx),
        Command::Key(KeyCommand::Info(args)) => keygen::info(args),
        Command::Encrypt(args) => encrypt::run(args, ctx),
        Command::Decrypt(args) => decrypt::run(args, ctx),
        Command::Verify(args) => verify::run(args, ctx),
        Command::Inspect(args) => inspect::run(args, ctx),
    }
}

/// The password sources behind `OpenKeyArgs` (the server password, the legacy password), kept
/// for the operations layer's [`OpenKeys`](pgseal_ops::open::OpenKeys), which borrows them.
pub struct OpenKeySources {
    server: PasswordSource,
    legacy: PasswordSource,
}

impl OpenKeySources {
    pub fn new(args: &crate::cli::OpenKeyArgs) -> Self {
        OpenKeySources {
            server: server_password(&args.server_password),
            legacy: PasswordSource {
                purpose: "the legacy backup",
                env: "BACKUP_ENCRYPTION_PASSWORD",
                file: args.legacy_password_file.clone(),
                command: None,
                credential: None,
                file_flag: "--legacy-password-file",
            },
        }
    }

    pub fn keys<'a>(&'a self, args: &'a crate::cli::OpenKeyArgs) -> pgseal_ops::open::OpenKeys<'a> {
        pgseal_ops::open::OpenKeys {
            identities: &args.identities,
            signers: &args.signers,
            server_password: &self.server,
            legacy_password: &self.legacy,
            verify: !args.no_verify,
        }
    }
}

/// Loads a private key file, asking `password` only if the key is encrypted (and warning if
/// others may read it).
pub fn load_private(path: &Path, password: &dyn Secret) -> CliResult<PrivateKey> {
    pgseal_ops::keys::load_private(&crate::progress::Terminal, path, password)
}

/// What `inspect` and `verify` say of a v2 file's inactive slot when it is not empty: a wrapping
/// a rewrap superseded and has not wiped (the keys it names can still open the file), or damage.
/// A line for people, and an object for JSON that carries it as `message`; `None` when there is
/// nothing to say.
pub fn superseded_slot_note(
    index: usize,
    state: &pgseal_core::v2::SlotState,
    file: &str,
) -> Option<(String, serde_json::Value)> {
    use pgseal_core::v2::SlotState;
    let slot = ["A", "B"][index];
    let fix = format!("pgseal rewrap {file}");
    let (message, mut json) = match state {
        SlotState::Valid(s) => {
            let keys: Vec<String> = s.recipients().iter().map(ToString::to_string).collect();
            (
                format!(
                    "slot {slot} (inactive, generation {}) still wraps the file key to {}: that \
                     key can still open this file. Run `{fix}` to wipe it",
                    s.generation,
                    keys.join(", ")
                ),
                serde_json::json!({
                    "slot": slot, "state": "valid", "generation": s.generation,
                    "recipients": keys, "still_wraps_file_key": true, "fix": fix,
                }),
            )
        }
        SlotState::Damaged(damage) => (
            format!(
                "slot {slot} (inactive) is damaged ({damage}): a rewrap was interrupted, or the \
                 file was damaged there. Decryption ignores it, but it may still hold a wrapped \
                 key; run `{fix}` to wipe it"
            ),
            serde_json::json!({
                "slot": slot, "state": "damaged", "reason": damage.reason,
                "may_hold_wrapped_key": true, "fix": fix,
            }),
        ),
        SlotState::Empty => return None,
    };
    json["message"] = serde_json::json!(message);
    Some((message, json))
}

/// A catalog entry as `backup --json`, `list --json` and `prune --json` show it.
pub fn record_json(r: &pgseal_store::BackupRecord) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "database": r.entry.database,
        "location": r.entry.location.as_str(),
        "path": r.entry.location.shown(),
        "host": r.entry.location.host(),
        "size_bytes": r.entry.size_bytes,
        "created_at": r.entry.created_at.rfc3339(),
        "creator_user_id": r.entry.creator_user_id,
        "creator_key": r.entry.creator_key.to_string(),
        "server_keys": r.entry.server_keys.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "format_version": r.entry.format_version,
        "ciphertext_blake3": r
            .entry
            .ciphertext_blake3
            .map_or_else(String::new, |h| h.to_string()),
        "status": r.status.as_str(),
        "copy_of": r.copy_of,
    })
}

static JSON_PRINTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Prints a JSON value on one line.
pub fn print_json(value: &serde_json::Value) {
    JSON_PRINTED.store(true, std::sync::atomic::Ordering::Relaxed);
    outln!("{value}");
}

/// Whether the command printed its JSON report (`verify --json` reports a bad signature in it
/// before failing): then that report is its answer, and no JSON error object follows.
pub fn json_printed() -> bool {
    JSON_PRINTED.load(std::sync::atomic::Ordering::Relaxed)
}

pub use crate::context::host_name;

/// Writes text to `output` (atomically, 0644 — public keys and encrypted exports; or into a FIFO
/// or device as it is) or prints it.
pub fn emit(text: &str, output: Option<&Path>, force: bool) -> CliResult {
    match output {
        None => {
            out!("{text}");
            Ok(())
        }
        Some(path) => {
            use std::io::Write as _;
            // A FIFO or device is written to as it is; a file appears whole or not at all.
            let mut out = crate::files::Output::create_path(path, force, None)?;
            out.set_mode(0o644);
            out.write_all(text.as_bytes())
                .map_err(|e| Failure::io(format!("writing {}", path.display()), e))?;
            out.commit()
        }
    }
}

/// Parses an age such as `90d`, `12h`, `2w`, `30m` into milliseconds.
pub fn parse_age(text: &str) -> CliResult<i64> {
    pgseal_ops::retention::parse_span(text).ok_or_else(|| {
        Failure::usage(format!(
            "bad age `{text}`: use a number and a unit, like 90d, 12h, 2w"
        ))
    })
}
