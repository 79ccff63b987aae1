//! pgseal-ops: the operations every pgseal front end calls.
//!
//! Backup, restore, rewrap, key administration, the audit log and import live here, between the
//! front ends (the `pgseal` CLI, later the custody service and the scheduler) and the crates
//! below (`pgseal-core`: formats and keys; `pgseal-store`: users, keys, catalog, audit log).
//! Nothing here parses arguments, prints, reads an environment variable or exits the process:
//! a front end passes in what it knows (configuration, the acting identity, where passwords come
//! from) and presents what comes back. See `docs/ARCHITECTURE.md`.
#![warn(missing_docs)]

pub mod anchors;
pub mod audit;
pub mod backup;
pub mod cancel;
pub mod catalog;
pub mod cleanup;
pub mod copy;
pub mod crashpoint;
pub mod custody;
pub mod decrypt;
pub mod encrypt;
pub mod error;
pub mod examine;
pub mod files;
pub mod globals;
pub mod holders;
pub mod import;
pub mod inspect;
pub mod keyholder;
pub mod keys;
pub mod observe;
pub mod open;
pub mod pgtools;
pub mod prune;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod rewrap;
pub mod schedule;
pub mod secret;
pub mod server_keys;
pub mod session;
pub mod show;
pub mod site;
pub mod status;
#[cfg(any(test, feature = "test-support"))]
pub mod testsite;
pub mod totp;
pub mod users;
pub mod verify;

pub use error::{Error, ErrorKind, Missing, Refused, Result};
pub use session::{Actor, Operation, Session, Site};
