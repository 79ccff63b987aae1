//! What a hostile or careless operator tried (issue 11), one test per attempt, each named after
//! the attack: database names that read as connection strings or flags, signals in the middle
//! of a restore, secrets in children's environments, control characters in names, paths,
//! devices, the catalog, world-writable configuration. Run it to see the whole list:
//! `cargo test -p pgseal --test hostile`.

#[path = "../common/mod.rs"]
mod common;

mod catalog_trust;
mod formats;
mod names_files_config;
mod pg_tools;
