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

/// Names in `dir`, sorted: to prove a failure left nothing behind.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
