//! Helpers shared by the integration tests: process inspection through /proc, and running a
//! test of this same binary in a child process.

#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// Live processes whose command line mentions `needle`, or whose parent is `parent`.
pub fn processes_related_to(needle: &Path, parent: u32) -> Vec<String> {
    let needle = needle.as_os_str().as_encoded_bytes();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || !alive(pid) {
            continue;
        }
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let ppid = fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("PPid:")
                    .map(|v| v.trim().parse::<u32>().unwrap_or(0))
            })
            .unwrap_or(0);
        if cmdline.windows(needle.len()).any(|w| w == needle) || ppid == parent {
            let shown = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push(format!("pid {pid} (ppid {ppid}): {shown}"));
        }
    }
    found
}

/// The postmaster's pid, from the first line of `postmaster.pid`.
pub fn postmaster_pid(data_dir: &Path) -> u32 {
    fs::read_to_string(data_dir.join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Asserts that nothing of a cluster remains: no directory, no postmaster, no children of it,
/// no process mentioning its directory (the watchdog). Waits up to `patience` for it.
pub fn assert_cleaned_up(dir: &Path, postmaster: u32, patience: Duration) {
    let deadline = Instant::now() + patience;
    loop {
        let dir_exists = dir.exists();
        let postmaster_alive = alive(postmaster);
        let related = processes_related_to(dir, postmaster);
        if !dir_exists && !postmaster_alive && related.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "cluster not cleaned up after {patience:?}: dir {} exists: {dir_exists}, \
                 postmaster {postmaster} alive: {postmaster_alive}, related processes: {related:#?}",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs test `name` of this test binary in a child process with `PGSEAL_TESTKIT_CHILD=mode`
/// (plus `env`), stdout piped.
pub fn spawn_child_test(name: &str, mode: &str, env: &[(&str, &str)]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env("PGSEAL_TESTKIT_CHILD", mode)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Reads the child's stdout until it printed `KEY=value` for every key (anywhere in a line:
/// libtest prints `test name ... ` before the test's own output); returns the values.
pub fn read_child_values(child: &mut Child, keys: &[&str]) -> Vec<String> {
    let stdout = child.stdout.take().unwrap();
    let mut values = vec![None; keys.len()];
    let mut transcript = String::new();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        transcript.push_str(&line);
        transcript.push('\n');
        for (key, value) in keys.iter().zip(values.iter_mut()) {
            let marker = format!("{key}=");
            if let Some(at) = line.find(&marker) {
                *value = Some(line[at + marker.len()..].to_owned());
            }
        }
        if values.iter().all(Option::is_some) {
            // Keep draining, so the child does not die of a broken pipe on its next line.
            std::thread::spawn(move || lines.for_each(drop));
            return values.into_iter().map(Option::unwrap).collect();
        }
    }
    panic!("child test ended without printing {keys:?}; its output:\n{transcript}");
}

/// The cluster directory: the parent of the data directory.
pub fn cluster_dir(data_dir: &Path) -> PathBuf {
    data_dir.parent().unwrap().to_path_buf()
}

/// A `psql` command for the test itself: no psqlrc, quiet, unaligned tuples, no inherited
/// `PG*` variables.
pub fn psql(bin_dir: &Path) -> Command {
    let mut cmd = Command::new(bin_dir.join("psql"));
    cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]);
    for (name, _) in std::env::vars_os() {
        if name.as_encoded_bytes().starts_with(b"PG") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Runs `cmd`, asserts success, returns stdout trimmed.
pub fn output_of(cmd: &mut Command) -> String {
    let output = cmd.output().unwrap();
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}
