//! Where passwords come from — never the command line.
//!
//! Each password has, in order of precedence: a `--*-password-file`, a `--*-password-command`
//! (how Vault, `pass` or a cloud secret manager plug in: its standard output is the password),
//! a systemd credential (`$CREDENTIALS_DIRECTORY/NAME`, given to a unit by `LoadCredential=`:
//! the units `pgseal schedule install` writes take their passwords this way), an environment
//! variable, and finally a prompt on the terminal. New passwords are asked for
//! twice and must be at least 16 characters.
//!
//! Nothing pgseal runs (PostgreSQL's tools, password commands) inherits a secret: see
//! [`scrub_env`].

use std::ffi::OsStr;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use pgseal_core::Password;

use crate::cli::{NewPasswordArgs, ServerPasswordArgs, UserPasswordArgs};
use crate::failure::{CliResult, Failure};

/// The variables pgseal reads secrets from: every [`PasswordSource`] reads one of these;
/// `PGSEAL_STORE` (a store URL may carry a password); the AWS secrets an object store's
/// credentials come from.
pub const SECRET_VARS: [&str; 10] = [
    "SERVER_KEY_PASSWORD",
    "PGSEAL_USER_KEY_PASSWORD",
    "PGSEAL_KEY_PASSWORD",
    "PGSEAL_NEW_SERVER_KEY_PASSWORD",
    "PGSEAL_NEW_USER_KEY_PASSWORD",
    "BACKUP_ENCRYPTION_PASSWORD",
    "PGSEAL_STORE",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
];

/// Removes from a child's environment everything that may hold one of pgseal's secrets —
/// [`SECRET_VARS`], and any other variable whose name contains `PASSWORD` — wherever it came
/// from (the environment, or the `.env` file pgseal loaded into it). libpq's own `PGPASSWORD`
/// stays: it is the user's way of giving pg_dump, pg_restore and psql their password.
pub fn scrub_env(cmd: &mut Command) {
    for var in SECRET_VARS {
        cmd.env_remove(var);
    }
    let inherited = std::env::vars_os().map(|(k, _)| k);
    let explicit: Vec<_> = cmd.get_envs().map(|(k, _)| k.to_owned()).collect();
    for name in inherited.chain(explicit) {
        if holds_password(&name) {
            cmd.env_remove(&name);
        }
    }
}

pub fn holds_password(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    bytes != b"PGPASSWORD" && bytes.windows(8).any(|w| w == b"PASSWORD")
}

/// One password's possible sources.
#[derive(Debug, Clone)]
pub struct PasswordSource {
    /// What the password unlocks, for prompts and errors ("the server key").
    pub purpose: &'static str,
    pub env: &'static str,
    pub file: Option<PathBuf>,
    pub command: Option<String>,
    /// The name of the systemd credential that holds it (`LoadCredential=NAME:PATH`), read
    /// from `$CREDENTIALS_DIRECTORY/NAME` when that file exists.
    pub credential: Option<&'static str>,
    /// The flag names, for the error that says how to supply it.
    pub file_flag: &'static str,
}

/// The systemd credential names pgseal reads passwords from (see [`PasswordSource::credential`]).
pub const SERVER_KEY_CREDENTIAL: &str = "server-key-password";
/// The signing (user) key's password as a systemd credential.
pub const USER_KEY_CREDENTIAL: &str = "user-key-password";

impl PasswordSource {
    /// The password, from the first source that has one.
    pub fn get(&self) -> CliResult<Password> {
        if let Some(p) = self.read_file_or_command()? {
            return Ok(p);
        }
        if let Some(value) = std::env::var_os(self.env) {
            let value = value
                .into_string()
                .map_err(|_| Failure::key(format!("{} is not valid UTF-8", self.env)))?;
            return Ok(Password::new(value));
        }
        self.prompt(false)
    }

    /// A new password: checked for length, asked twice when typed.
    pub fn get_new(&self) -> CliResult<Password> {
        let password = match self.read_file_or_command()? {
            Some(p) => p,
            None => match std::env::var_os(self.env) {
                Some(v) => Password::new(
                    v.into_string()
                        .map_err(|_| Failure::key(format!("{} is not valid UTF-8", self.env)))?,
                ),
                None => self.prompt(true)?,
            },
        };
        password
            .check_new()
            .map_err(|e| Failure::usage(format!("{}: {e}", self.purpose)))?;
        Ok(password)
    }

    fn read_file_or_command(&self) -> CliResult<Option<Password>> {
        debug_assert!(
            SECRET_VARS.contains(&self.env),
            "{} must be listed in SECRET_VARS, so children never inherit it",
            self.env
        );
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::key(format!(
                    "reading the password for {} from {}: {e}",
                    self.purpose,
                    path.display()
                ))
            })?;
            return Ok(Some(Password::new(strip_newline(text))));
        }
        if let Some(cmd) = &self.command {
            let mut sh = Command::new("sh");
            scrub_env(&mut sh);
            let out = sh
                .arg("-c")
                .arg(cmd)
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| {
                    Failure::key(format!(
                        "running the password command for {}: {e}",
                        self.purpose
                    ))
                })?;
            if !out.status.success() {
                return Err(Failure::key(format!(
                    "the password command for {} failed ({})",
                    self.purpose, out.status
                )));
            }
            let text = String::from_utf8(out.stdout).map_err(|_| {
                Failure::key(format!(
                    "the password command for {} printed non-UTF-8",
                    self.purpose
                ))
            })?;
            return Ok(Some(Password::new(strip_newline(text))));
        }
        if let Some(path) = self.credential_file() {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Failure::key(format!(
                    "reading the password for {} from the systemd credential {}: {e}",
                    self.purpose,
                    path.display()
                ))
            })?;
            return Ok(Some(Password::new(strip_newline(text))));
        }
        Ok(None)
    }

    /// `$CREDENTIALS_DIRECTORY/NAME`, when systemd passed this password as a credential.
    fn credential_file(&self) -> Option<PathBuf> {
        let name = self.credential?;
        let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
        let path = PathBuf::from(dir).join(name);
        path.exists().then_some(path)
    }

    fn prompt(&self, twice: bool) -> CliResult<Password> {
        if !has_terminal() {
            let credential = self
                .credential
                .map(|c| format!(", or give systemd's LoadCredential={c}:FILE"))
                .unwrap_or_default();
            return Err(Failure::key(format!(
                "no password for {}: set {} or pass {}{credential} (no terminal to ask on)",
                self.purpose, self.env, self.file_flag
            )));
        }
        let ask = |label: String| {
            rpassword::prompt_password(label)
                .map(Password::new)
                .map_err(|e| Failure::key(format!("reading the password from the terminal: {e}")))
        };
        let first = ask(format!("Password for {}: ", self.purpose))?;
        if twice {
            let second = ask(format!("Repeat the password for {}: ", self.purpose))?;
            if first.as_bytes() != second.as_bytes() {
                return Err(Failure::usage("the two passwords differ"));
            }
        }
        Ok(first)
    }
}

/// Whether a prompt can be shown: a controlling terminal exists.
fn has_terminal() -> bool {
    std::io::stdin().is_terminal()
        || std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .is_ok()
}

fn strip_newline(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

/// Reads a whole (small) file, as used for passwords and keys, with a clear error.
pub fn read_text(path: &std::path::Path, what: &str) -> CliResult<String> {
    let mut s = String::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut s))
        .map_err(|e| Failure::key(format!("reading {what} {}: {e}", path.display())))?;
    Ok(s)
}

impl pgseal_ops::secret::Secret for PasswordSource {
    fn get(&self) -> CliResult<Password> {
        PasswordSource::get(self)
    }

    fn get_new(&self) -> CliResult<Password> {
        PasswordSource::get_new(self)
    }
}

/// Asks a (non-secret) question on the terminal and returns the answer line.
pub fn ask_line(question: &str) -> CliResult<String> {
    if !has_terminal() {
        return Err(Failure::usage(
            "no terminal to ask on: pass the answer as a flag",
        ));
    }
    use std::io::{BufRead, Write};
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| Failure::io("opening the terminal", e))?;
    tty.write_all(question.as_bytes())
        .map_err(|e| Failure::io("writing to the terminal", e))?;
    let mut line = String::new();
    std::io::BufReader::new(tty)
        .read_line(&mut line)
        .map_err(|e| Failure::io("reading the terminal", e))?;
    Ok(line.trim_end().to_owned())
}

/// The signing (user) key's password: its flags, else `PGSEAL_USER_KEY_PASSWORD`, else a prompt.
pub fn user_password(args: &UserPasswordArgs) -> PasswordSource {
    PasswordSource {
        purpose: "the signing (user) key",
        env: "PGSEAL_USER_KEY_PASSWORD",
        file: args.user_password_file.clone(),
        command: args.user_password_command.clone(),
        credential: Some(USER_KEY_CREDENTIAL),
        file_flag: "--user-password-file",
    }
}

/// The source of a new password during rotation.
pub fn new_password(
    args: &NewPasswordArgs,
    env: &'static str,
    purpose: &'static str,
) -> PasswordSource {
    PasswordSource {
        purpose,
        env,
        file: args.new_password_file.clone(),
        command: args.new_password_command.clone(),
        credential: None,
        file_flag: "--new-password-file",
    }
}

/// The server keys' password: its flags, else `SERVER_KEY_PASSWORD`, else a prompt.
pub fn server_password(args: &ServerPasswordArgs) -> PasswordSource {
    PasswordSource {
        purpose: "the server key",
        env: "SERVER_KEY_PASSWORD",
        file: args.server_password_file.clone(),
        command: args.server_password_command.clone(),
        credential: Some(SERVER_KEY_CREDENTIAL),
        file_flag: "--server-password-file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_get_no_password_but_libpqs_own() {
        let mut cmd = Command::new("true");
        cmd.env("SERVER_KEY_PASSWORD", "s")
            .env("PGSEAL_STORE", "postgres://u:secret@h/db")
            .env("SOME_TOOL_PASSWORD_FILE_CONTENT", "x")
            .env("PGPASSWORD", "libpq's")
            .env("PGHOST", "/run/postgresql");
        scrub_env(&mut cmd);
        let envs: std::collections::HashMap<_, _> = cmd
            .get_envs()
            .map(|(k, v)| (k.to_str().unwrap().to_owned(), v.map(ToOwned::to_owned)))
            .collect();
        for var in SECRET_VARS {
            assert_eq!(envs.get(var), Some(&None), "{var} is not removed");
        }
        assert_eq!(envs["SOME_TOOL_PASSWORD_FILE_CONTENT"], None);
        assert_eq!(envs["PGPASSWORD"].as_deref(), Some(OsStr::new("libpq's")));
        assert_eq!(
            envs["PGHOST"].as_deref(),
            Some(OsStr::new("/run/postgresql"))
        );
    }
}
