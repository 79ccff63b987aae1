//! pgseal-core: the byte formats and key handling behind pgseal.
//!
//! This crate knows how to seal a stream into the v2 format ([`v2`]), how to open it again, how
//! to read the two formats of the legacy Python system ([`legacy`]), and how to load, generate and
//! fingerprint RSA keys ([`keys`]). It touches no database and spawns no process, so it can be
//! fuzzed and embedded on its own; the `pgseal` binary adds the store, the CLI and PostgreSQL.
//!
//! The data path is one straight line in each direction:
//! input → compress → chunk → AES-256-GCM → hash → output, and back.

#![warn(missing_docs)]

pub mod detect;
pub mod error;
pub mod hash;
pub mod keys;
pub mod legacy;
pub mod pq;
pub mod secret;
pub mod time;
pub mod v2;

mod byte_reader;
mod io_util;

pub use detect::{Detected, detect};
pub use error::{Error, ErrorKind, FormatError, Result};
pub use keys::{Fingerprint, LegacyFingerprint, PrivateKey, PublicKey};
pub use secret::Password;

/// The version string written into every v2 header's `tool` field.
pub const TOOL: &str = concat!("pgseal ", env!("CARGO_PKG_VERSION"));
