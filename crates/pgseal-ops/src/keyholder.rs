//! Who holds the server keys a rewrap needs, as an interface: a rewrap asks its [`KeyHolder`]
//! for new wrappings and never holds a private key itself.
//!
//! The store's keyring ([`ServerKeyring`]) is one holder: the stored keys, unlocked in this
//! process with the server password. A key-custody service will be another: the client sends
//! a file's header and slots (its [`Prelude`]) or a legacy file's wrapped key, the service
//! opens them with a key that never leaves it and returns only the new slot bytes or the new
//! wrapping for the active key — the file key never leaves the service either.

use std::collections::BTreeSet;

use pgseal_core::keys::Identity;
use pgseal_core::v2::{Prelude, Rewrap};
use pgseal_core::{Fingerprint, PublicKey};

use crate::error::Result;
use crate::keys::ServerKeyring;

/// A legacy hybrid file's session key, re-wrapped by a [`KeyHolder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyRewrap {
    /// The held key that opens it is the one asked for already: nothing to change.
    Current,
    /// Wrapped anew.
    Rewrapped {
        /// The held key that opened it.
        from: Fingerprint,
        /// The session key wrapped to the key asked for (RSA-OAEP, as the legacy format has
        /// it).
        wrapped_key: Vec<u8>,
    },
}

/// Holds server private keys and uses them on request, without handing them out (see the
/// module docs).
pub trait KeyHolder {
    /// The fingerprints of the server keys it holds, rotated ones included: the recipients a
    /// rewrap moves files away from.
    fn holds(&self) -> BTreeSet<Fingerprint>;

    /// Plans the rewrap of the v2 file whose prelude is `prelude`: opens its active slot with
    /// the held key `opener` and wraps the file key to `recipients`, keeping the stanzas of
    /// `keep` (recovery keys) — [`Prelude::plan_rewrap`], done where the key is. `raw` is the
    /// bytes `prelude` was read from (from the file's start to the end of its second slot):
    /// what a holder elsewhere is sent, and reads again itself
    /// ([`read_prelude`](pgseal_core::v2::read_prelude)) instead of trusting the caller's
    /// reading.
    fn plan_rewrap(
        &mut self,
        prelude: &Prelude,
        raw: &[u8],
        opener: &Fingerprint,
        recipients: &[PublicKey],
        keep: &[Fingerprint],
    ) -> Result<Rewrap>;

    /// Re-wraps a legacy hybrid file's session key, `wrapped` to one of the held keys (the
    /// format does not say which), to `to`. A session key no held key opens is
    /// [`pgseal_core::Error::SessionKeyUnwrap`].
    fn rewrap_legacy(&mut self, wrapped: &[u8], to: &PublicKey) -> Result<LegacyRewrap>;
}

impl KeyHolder for ServerKeyring<'_> {
    fn holds(&self) -> BTreeSet<Fingerprint> {
        self.fingerprints()
    }

    fn plan_rewrap(
        &mut self,
        prelude: &Prelude,
        _raw: &[u8],
        opener: &Fingerprint,
        recipients: &[PublicKey],
        keep: &[Fingerprint],
    ) -> Result<Rewrap> {
        let identity = self.key(opener)?;
        Ok(prelude.plan_rewrap(&[identity as &dyn Identity], recipients, keep)?)
    }

    fn rewrap_legacy(&mut self, wrapped: &[u8], to: &PublicKey) -> Result<LegacyRewrap> {
        for fp in &self.fingerprints() {
            if let Ok(session_key) = self.key(fp)?.unwrap_file_key(wrapped) {
                if *fp == to.fingerprint() {
                    return Ok(LegacyRewrap::Current);
                }
                return Ok(LegacyRewrap::Rewrapped {
                    from: *fp,
                    wrapped_key: to.wrap_file_key(&session_key)?,
                });
            }
        }
        Err(pgseal_core::Error::SessionKeyUnwrap.into())
    }
}
