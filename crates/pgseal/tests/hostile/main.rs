//! What a hostile or careless operator tried against a pgseal site (issue 11), one test per
//! attempt: names that are really paths or connection strings, outputs that are devices or the
//! input itself, configuration others can write, passwords in store URLs, a catalog that lies,
//! interrupted restores. Read the test names for the list; each failed on the code it fixed.

#[path = "../common/mod.rs"]
mod common;

mod catalog_trust;
mod names_files_config;
