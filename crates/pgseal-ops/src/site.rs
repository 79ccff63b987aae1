//! Making a site: its store and its first server key. Where the site's configuration lives
//! and what it says is the front end's business (the CLI writes `pgseal.toml`); the front end
//! sets the session's [`Site`](crate::Site) first, then calls [`create`].

use std::path::Path;

use pgseal_store::{Action, ServerKeyRecord};

use crate::error::Result;
use crate::secret::Secret;
use crate::server_keys::{generate_active, key_bits};
use crate::session::Session;

/// A new site.
pub struct Create<'a> {
    /// Where the site is made, for the record.
    pub dir: &'a Path,
    /// The first server key's size in bits; `None`: the site's `rsa_key_size`.
    pub bits: Option<u32>,
    /// The password that will protect the server keys (asked as a new password).
    pub password: &'a dyn Secret,
}

/// Creates the session's site's store (this and importing the legacy system are the only
/// operations that create one) and its first server key, audited as `INIT` in the new store.
/// A store that already has an active server key is refused (the store's error), and keeps
/// it.
pub fn create(session: &mut Session, request: &Create<'_>) -> Result<ServerKeyRecord> {
    session
        .audit(Action::Init)
        .detail("dir", request.dir.display().to_string());
    session.create_store()?;
    let bits = key_bits(session, request.bits)?;
    let password = request.password.get_new()?;
    generate_active(session, bits, &password, None)
}
