//! Finding PostgreSQL's tools for the operations layer, which is told where they are.
//!
//! Binaries come from `--pg-bin`, then `POSTGRESQL_BIN_PATH` (config or environment), then
//! `PATH`, then the newest `/usr/lib/postgresql/*/bin`. `setpriv` (util-linux) gives each tool a
//! parent-death signal, so it dies with pgseal; and every variable that may hold one of
//! pgseal's secrets is kept from the tools' environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use pgseal_ops::pgtools::PgTools;

use crate::failure::{CliResult, Failure};
use crate::progress::Terminal;

/// The tools to run: from `flag` (`--pg-bin`), `configured` (`POSTGRESQL_BIN_PATH`), `PATH`,
/// or the newest Debian installation.
pub fn locate(flag: Option<&Path>, configured: Option<&Path>) -> CliResult<PgTools> {
    let bin = match flag.or(configured) {
        Some(dir) if !dir.join("pg_dump").is_file() => {
            return Err(Failure::usage(format!(
                "no pg_dump in {} (from --pg-bin or POSTGRESQL_BIN_PATH)",
                dir.display()
            )));
        }
        Some(dir) => dir.to_path_buf(),
        None => find_on_path("pg_dump")
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .or_else(newest_debian_bin)
            .unwrap_or_else(|| PathBuf::from("/usr/bin")),
    };
    Ok(PgTools {
        bin,
        setpriv: setpriv(),
        scrub: secret_variables(),
        env: Vec::new(),
        observer: Arc::new(Terminal),
    })
}

/// Every variable of this process that may hold one of pgseal's secrets: those pgseal reads
/// them from, and any other whose name contains `PASSWORD` — wherever it came from (the
/// environment, or the `.env` file pgseal loaded into it). libpq's own `PGPASSWORD` is not
/// among them: it is the user's way of giving pg_dump, pg_restore and psql their password.
pub fn secret_variables() -> Vec<OsString> {
    let mut names: Vec<OsString> = crate::secrets::SECRET_VARS
        .iter()
        .map(OsString::from)
        .collect();
    names.extend(
        std::env::vars_os()
            .map(|(k, _)| k)
            .filter(|k| crate::secrets::holds_password(k)),
    );
    names
}

/// `setpriv`, in the system's own directories first; warns without it.
fn setpriv() -> Option<PathBuf> {
    let found = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| find_on_path("setpriv"));
    if found.is_none() {
        eprintln!(
            "pgseal: warning: setpriv (util-linux) not found: PostgreSQL tools pgseal starts \
             would outlive it if it were killed"
        );
    }
    found
}

/// `tool` in a directory of `PATH`.
fn find_on_path(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

fn newest_debian_bin() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_dump").is_file().then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, d)| d)
}
