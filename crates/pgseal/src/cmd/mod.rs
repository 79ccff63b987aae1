//! One module per command; this one dispatches and holds what they share.

mod decrypt;
mod encrypt;
mod inspect;
mod keygen;
mod verify;

use std::path::{Path, PathBuf};

use pgseal_core::{PrivateKey, PublicKey};

use crate::cli::{Command, KeyCommand, ServerPasswordArgs, UserPasswordArgs};
use crate::failure::{CliResult, Failure};
use crate::files::warn_if_exposed;
use crate::secrets::{GetPassword, PasswordSource, read_text};

pub fn run(command: Command) -> CliResult {
    match command {
        Command::Keygen(args) => keygen::keygen(args),
        Command::Key(KeyCommand::Info(args)) => keygen::info(args),
        Command::Encrypt(args) => encrypt::run(args),
        Command::Decrypt(args) => decrypt::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Inspect(args) => inspect::run(args),
    }
}

/// Loads a public key file (SPKI or PKCS#1 PEM).
pub fn load_public(path: &Path) -> CliResult<PublicKey> {
    let text = read_text(path, "public key")?;
    PublicKey::from_pem(&text).map_err(|e| Failure::key(format!("{}: {e}", path.display())))
}

pub fn load_publics(paths: &[PathBuf]) -> CliResult<Vec<PublicKey>> {
    paths.iter().map(|p| load_public(p)).collect()
}

/// Loads a private key file, asking `password` only if the key is encrypted.
pub fn load_private(path: &Path, password: &impl GetPassword) -> CliResult<PrivateKey> {
    let text = read_text(path, "private key")?;
    warn_if_exposed(path);
    let what = path.display().to_string();
    let mut asked = None;
    let key = PrivateKey::from_pem(&text, &what, || {
        password.get_password().map_err(|f| {
            asked = Some(f);
            pgseal_core::Error::WrongPassword(what.clone())
        })
    });
    match (key, asked) {
        (Ok(k), _) => Ok(k),
        (Err(_), Some(failure)) => Err(failure),
        (Err(e), None) => Err(e.into()),
    }
}

pub fn user_password(args: &UserPasswordArgs) -> PasswordSource {
    PasswordSource {
        purpose: "the signing (user) key",
        env: "PGSEAL_USER_KEY_PASSWORD",
        file: args.user_password_file.clone(),
        command: args.user_password_command.clone(),
        file_flag: "--user-password-file",
    }
}

pub fn server_password(args: &ServerPasswordArgs) -> PasswordSource {
    PasswordSource {
        purpose: "the server key",
        env: "SERVER_KEY_PASSWORD",
        file: args.server_password_file.clone(),
        command: args.server_password_command.clone(),
        file_flag: "--server-password-file",
    }
}

/// Prints a JSON value on one line.
pub fn print_json(value: &serde_json::Value) {
    println!("{value}");
}

/// The host name, recorded in headers as the source host.
pub fn host_name() -> Option<String> {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    (!name.is_empty()).then_some(name)
}
