//! Finding the keys a file needs: from the files the user named, or else from the store — the
//! server key by the fingerprint the file names (rotated keys included), the creator's public
//! key by fingerprint (retired keys included), and for legacy files, which name no key, by trying
//! the stored server keys and the creator's keys by user id.

use std::path::PathBuf;

use pgseal_core::{Fingerprint, PrivateKey, PublicKey};

use super::{load_private, load_publics};
use crate::context::{Context, store_failure};
use crate::failure::{CliResult, Failure};
use crate::secrets::CachedPassword;

/// The creator's public keys for a v2 file signed by `signer`, and the creator's user id when
/// the store knows the key.
pub fn v2_signers(
    ctx: &mut Context,
    files: &[PathBuf],
    signer: &Fingerprint,
) -> CliResult<(Vec<PublicKey>, Option<i64>)> {
    if !files.is_empty() {
        return Ok((load_publics(files)?, None));
    }
    let Some(store) = ctx.store_if_configured()? else {
        return Ok((Vec::new(), None));
    };
    match store.user_key(signer).map_err(store_failure)? {
        Some(k) => Ok((
            vec![PublicKey::from_pem(&k.public_key_pem)?],
            Some(k.user_id),
        )),
        None => Ok((Vec::new(), None)),
    }
}

/// The server private keys for a v2 file addressed to `recipients`.
pub fn v2_identities(
    ctx: &mut Context,
    files: &[PathBuf],
    password: &CachedPassword,
    recipients: &[Fingerprint],
) -> CliResult<Vec<PrivateKey>> {
    if !files.is_empty() {
        return files.iter().map(|p| load_private(p, password)).collect();
    }
    let Some(store) = ctx.store_if_configured()? else {
        return Err(missing_identity());
    };
    let mut pems = Vec::new();
    for fp in recipients {
        if let Some(k) = store.server_key(fp).map_err(store_failure)? {
            pems.push((k.fingerprint, k.private_key_pem));
        }
    }
    if pems.is_empty() {
        let list: Vec<String> = recipients.iter().map(ToString::to_string).collect();
        return Err(Failure::key(format!(
            "no server key in the store can open this file; it is encrypted to: {}. Pass the \
             matching private key with --identity",
            list.join(", ")
        )));
    }
    pems.iter()
        .map(|(fp, pem)| server_key_from_pem(fp, pem, password))
        .collect()
}

/// Every stored server key, for legacy files, which do not say which key they were made for.
pub fn legacy_identities(
    ctx: &mut Context,
    files: &[PathBuf],
    password: &CachedPassword,
) -> CliResult<Vec<PrivateKey>> {
    if !files.is_empty() {
        return files.iter().map(|p| load_private(p, password)).collect();
    }
    let Some(store) = ctx.store_if_configured()? else {
        return Err(missing_identity());
    };
    let keys = store.server_keys().map_err(store_failure)?;
    if keys.is_empty() {
        return Err(super::server_key::no_active_key());
    }
    keys.iter()
        .map(|k| server_key_from_pem(&k.fingerprint, &k.private_key_pem, password))
        .collect()
}

/// The public keys a legacy file's creator (`user_id`) has had.
pub fn legacy_signers(
    ctx: &mut Context,
    files: &[PathBuf],
    user_id: u64,
) -> CliResult<Vec<PublicKey>> {
    if !files.is_empty() {
        return load_publics(files);
    }
    let Some(store) = ctx.store_if_configured()? else {
        return Ok(Vec::new());
    };
    let Ok(id) = i64::try_from(user_id) else {
        return Ok(Vec::new());
    };
    store
        .user_keys(id)
        .map_err(store_failure)?
        .iter()
        .map(|k| PublicKey::from_pem(&k.public_key_pem).map_err(Into::into))
        .collect()
}

fn server_key_from_pem(
    fp: &Fingerprint,
    pem: &str,
    password: &CachedPassword,
) -> CliResult<PrivateKey> {
    let what = format!("server key {fp}");
    let pw = password.get()?;
    PrivateKey::from_pem(pem, &what, || Ok(pw)).map_err(|e| match e {
        pgseal_core::Error::WrongPassword(_) => Failure::key(format!(
            "Failed to decrypt session key: {what} does not open with SERVER_KEY_PASSWORD \
             (wrong password?)"
        )),
        other => other.into(),
    })
}

fn missing_identity() -> Failure {
    Failure::key(
        "decrypting needs the private key the file is encrypted to: pass --identity KEY.pem, or \
         configure the pgseal store that holds it",
    )
}
