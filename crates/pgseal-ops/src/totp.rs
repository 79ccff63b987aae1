//! Second factors (RFC 6238 TOTP) for the key-custody service: a user enrols an authenticator
//! once; the secret is sealed to the active server key, so only a process holding that key —
//! the service — can check a code, and it is never shown again. A code is accepted once: the
//! store remembers the time step of the last code accepted.
//!
//! A setup with no service cannot enforce a second factor: whoever holds the store and the
//! server password can unseal the secret and make codes (docs/CUSTODY.md).

use pgseal_core::keys::Identity;
use pgseal_core::secret::FileKey;
use pgseal_core::time::Timestamp;
use pgseal_core::{Fingerprint, PublicKey};
use pgseal_store::{Action, Username};
use totp_rs::{Algorithm, TOTP};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::session::Session;

/// Seconds per time step.
pub const STEP: u64 = 30;
/// Digits per code.
pub const DIGITS: usize = 6;
/// The issuer an authenticator shows.
pub const ISSUER: &str = "pgseal";

/// An enrolment: the `otpauth://` URI to give the authenticator (it holds the secret: show it
/// once, to the user, and nowhere else).
pub struct Enrolled {
    /// `otpauth://totp/pgseal:NAME?secret=…&issuer=pgseal&…`.
    pub uri: Zeroizing<String>,
    /// The server key the secret is sealed to.
    pub sealed_to: Fingerprint,
}

/// Enrols a new TOTP authenticator for the user `name` (replacing any earlier one), audited as
/// `USER_TOTP`: a fresh 256-bit secret, sealed to the active server key.
pub fn enroll(session: &mut Session, name: &str) -> Result<Enrolled> {
    session.audit(Action::UserTotp).detail("username", name);
    let name = Username::parse(name)
        .map_err(|e| Error::usage(format!("{e}; {}", pgseal_store::username::RULE)))?;
    let store = session.store()?;
    let user = store.user(&name)?;
    let active = store
        .active_server_key()?
        .ok_or(crate::error::Missing::ActiveServerKey)?;
    let public = PublicKey::from_pem(&active.public_key_pem)?;
    let secret = FileKey::generate()?;
    let sealed = public.wrap_file_key(&secret)?;
    let totp = totp(secret.expose().to_vec(), name.as_str())?;
    store.set_totp(user.id, &sealed, &active.fingerprint)?;
    if let Some(a) = session.audit_mut() {
        a.user_id.get_or_insert(user.id);
        a.detail("sealed_to", active.fingerprint.to_string());
    }
    Ok(Enrolled {
        uri: Zeroizing::new(totp.get_url()),
        sealed_to: active.fingerprint,
    })
}

/// Why a second factor was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecondFactor {
    /// The request carried no code.
    #[error("this request needs a second-factor code (X-Pgseal-Totp; pgseal: --totp CODE)")]
    Missing,
    /// The user has enrolled no authenticator.
    #[error("user {0} has no second factor enrolled (pgseal user totp enroll {0})")]
    NotEnrolled(String),
    /// The code is not the authenticator's for now (±1 step).
    #[error("the second-factor code is wrong or expired")]
    Wrong,
    /// The code (or a later one) was accepted already.
    #[error("the second-factor code was used already: wait for the next one")]
    Reused,
    /// The secret is sealed to a key the service does not hold.
    #[error("the second factor is sealed to {0}, a key this service does not hold (re-enrol)")]
    Unsealable(Fingerprint),
}

/// Checks `code` for the user `user_id` at `now`, with the one of the `held` keys the secret
/// is sealed to, and marks its step used: a code is accepted once.
pub fn check(
    session: &mut Session,
    user_id: i64,
    username: &str,
    code: Option<&str>,
    held: &[&dyn Identity],
    now: Timestamp,
) -> Result<std::result::Result<(), SecondFactor>> {
    let Some(code) = code else {
        return Ok(Err(SecondFactor::Missing));
    };
    let store = session.store()?;
    let Some(record) = store.totp(user_id)? else {
        return Ok(Err(SecondFactor::NotEnrolled(username.to_owned())));
    };
    let Some(identity) = held.iter().find(|k| k.fingerprint() == record.sealed_to) else {
        return Ok(Err(SecondFactor::Unsealable(record.sealed_to)));
    };
    let secret = identity.unwrap_file_key(&record.secret_sealed)?;
    let totp = totp(secret.expose().to_vec(), username)?;
    let now_step = (now.millis().max(0) as u64) / 1000 / STEP;
    // The step before, now and after: clocks drift, codes take time to type.
    let matched = [now_step.saturating_sub(1), now_step, now_step + 1]
        .into_iter()
        .find(|step| {
            let expected = totp.generate(step * STEP);
            constant_time_eq(expected.as_bytes(), code.as_bytes())
        });
    let Some(step) = matched else {
        return Ok(Err(SecondFactor::Wrong));
    };
    if !store.use_totp_step(user_id, step as i64)? {
        return Ok(Err(SecondFactor::Reused));
    }
    Ok(Ok(()))
}

/// The code an authenticator with the secret sealed for `user_id` shows at `at` (for tests and
/// for a service's own checks).
pub fn code_at(secret: &[u8], username: &str, at: Timestamp) -> Result<String> {
    let totp = totp(secret.to_vec(), username)?;
    Ok(totp.generate(at.millis().max(0) as u64 / 1000))
}

fn totp(secret: Vec<u8>, account: &str) -> Result<TOTP> {
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        1,
        STEP,
        secret,
        Some(ISSUER.to_owned()),
        account.to_owned(),
    )
    .map_err(|e| Error::invalid(format!("a TOTP authenticator for {account}: {e}")))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
