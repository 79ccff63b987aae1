//! Finding the keys an operation needs: from files the caller named, or else from the store —
//! the server key by the fingerprint a file names (rotated keys included), the creator's public
//! key by fingerprint (retired keys included), and for legacy files, which name no key, by
//! trying the stored server keys and the creator's keys by user id.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pgseal_core::{Fingerprint, PrivateKey, PublicKey};
use pgseal_store::{User, Username};

use crate::error::{Error, Missing, Result};
use crate::observe::Observer;
use crate::secret::Secret;
use crate::session::Session;

/// Reads a key file as text.
pub fn read_text(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::key(format!("reading {what} {}: {e}", path.display())))
}

/// Loads a public key file (SPKI or PKCS#1 PEM).
pub fn load_public(path: &Path) -> Result<PublicKey> {
    let text = read_text(path, "public key")?;
    PublicKey::from_pem(&text).map_err(|e| Error::key(format!("{}: {e}", path.display())))
}

/// Loads public key files.
pub fn load_publics(paths: &[PathBuf]) -> Result<Vec<PublicKey>> {
    paths.iter().map(|p| load_public(p)).collect()
}

/// Loads a private key file, asking `password` only if the key is encrypted; warns
/// `observer` when others may read the file.
pub fn load_private(
    observer: &dyn Observer,
    path: &Path,
    password: &dyn Secret,
) -> Result<PrivateKey> {
    let text = read_text(path, "private key")?;
    if let Some(mode) = crate::files::exposed_mode(path) {
        observer.warn(&format!(
            "{} is readable by other users (mode {mode:o}); run chmod 600 on it",
            path.display()
        ));
    }
    let what = path.display().to_string();
    let mut asked = None;
    let key = PrivateKey::from_pem(&text, &what, || {
        password.get().map_err(|f| {
            asked = Some(f);
            pgseal_core::Error::WrongPassword(what.clone())
        })
    });
    match (key, asked) {
        (Ok(k), _) => Ok(k),
        (Err(_), Some(failure)) => Err(failure),
        (Err(e), None) => Err(e.into()),
    }
}

/// Private key files the caller named, each unlocked with `password` if encrypted.
fn load_privates(
    session: &Session,
    files: &[PathBuf],
    password: &dyn Secret,
) -> Result<Vec<PrivateKey>> {
    files
        .iter()
        .map(|p| load_private(session.observer().as_ref(), p, password))
        .collect()
}

/// The creator's public keys for a v2 file signed by `signer`, and the creator's user id when
/// the store knows the key.
pub fn v2_signers(
    session: &mut Session,
    files: &[PathBuf],
    signer: &Fingerprint,
) -> Result<(Vec<PublicKey>, Option<i64>)> {
    if !files.is_empty() {
        return Ok((load_publics(files)?, None));
    }
    let Some(store) = session.store_if_configured()? else {
        return Ok((Vec::new(), None));
    };
    match store.user_key(signer)? {
        Some(k) => Ok((
            vec![PublicKey::from_pem(&k.public_key_pem)?],
            Some(k.user_id),
        )),
        None => Ok((Vec::new(), None)),
    }
}

/// The server private keys for a v2 file addressed to `recipients`.
pub fn v2_identities(
    session: &mut Session,
    files: &[PathBuf],
    password: &dyn Secret,
    recipients: &[Fingerprint],
) -> Result<Vec<PrivateKey>> {
    if !files.is_empty() {
        return load_privates(session, files, password);
    }
    let Some(store) = session.store_if_configured()? else {
        return Err(Missing::Identity.into());
    };
    let mut pems = Vec::new();
    for fp in recipients {
        if let Some(k) = store.server_key(fp)? {
            pems.push((k.fingerprint, k.private_key_pem));
        }
    }
    if pems.is_empty() {
        return Err(Missing::StoredIdentity(recipients.to_vec()).into());
    }
    pems.iter()
        .map(|(fp, pem)| server_key_from_pem(fp, pem, password))
        .collect()
}

/// Every stored server key, for legacy files, which do not say which key they were made for.
pub fn legacy_identities(
    session: &mut Session,
    files: &[PathBuf],
    password: &dyn Secret,
) -> Result<Vec<PrivateKey>> {
    if !files.is_empty() {
        return load_privates(session, files, password);
    }
    let Some(store) = session.store_if_configured()? else {
        return Err(Missing::Identity.into());
    };
    let keys = store.server_keys()?;
    if keys.is_empty() {
        return Err(Missing::ActiveServerKey.into());
    }
    keys.iter()
        .map(|k| server_key_from_pem(&k.fingerprint, &k.private_key_pem, password))
        .collect()
}

/// The public keys a legacy file's creator (`user_id`) has had.
pub fn legacy_signers(
    session: &mut Session,
    files: &[PathBuf],
    user_id: u64,
) -> Result<Vec<PublicKey>> {
    if !files.is_empty() {
        return load_publics(files);
    }
    let Some(store) = session.store_if_configured()? else {
        return Ok(Vec::new());
    };
    let Ok(id) = i64::try_from(user_id) else {
        return Ok(Vec::new());
    };
    store
        .user_keys(id)?
        .iter()
        .map(|k| PublicKey::from_pem(&k.public_key_pem).map_err(Into::into))
        .collect()
}

/// A stored server key's private half, unlocked with the server password.
pub fn server_key_from_pem(
    fp: &Fingerprint,
    pem: &str,
    password: &dyn Secret,
) -> Result<PrivateKey> {
    let what = format!("server key {fp}");
    let pw = password.get()?;
    PrivateKey::from_pem(pem, &what, || Ok(pw)).map_err(|e| match e {
        pgseal_core::Error::WrongPassword(_) => Missing::ServerKeyPassword(what).into(),
        other => other.into(),
    })
}

/// The site's active server key (public half).
pub fn active_server_key(session: &mut Session) -> Result<(Fingerprint, PublicKey)> {
    let active = session
        .store()?
        .active_server_key()?
        .ok_or(Missing::ActiveServerKey)?;
    Ok((
        active.fingerprint,
        PublicKey::from_pem(&active.public_key_pem)?,
    ))
}

/// A user's signing key: from `sign_key` or `USER_KEYS_DIR/NAME.key.pem`, checked to be the
/// user's active key in the store. Disabled users and users without a key are refused.
pub fn signing_key_for_user(
    session: &mut Session,
    name: &Username,
    sign_key: Option<&Path>,
    password: &dyn Secret,
) -> Result<(PrivateKey, User)> {
    let user_keys_dir = session.site()?.user_keys_dir.clone();
    let store = session.store()?;
    let user = store.user(name)?;
    if !user.is_active {
        return Err(Error::usage(format!(
            "user {name} is disabled and cannot sign backups"
        )));
    }
    let active = store
        .active_user_key(user.id)?
        .ok_or_else(|| Missing::UserKey(name.clone()))?;
    let path = match sign_key {
        Some(p) => p.to_path_buf(),
        None => user_key_path(&user_keys_dir, name)?,
    };
    if !path.exists() {
        return Err(Missing::SigningKey {
            user: name.clone(),
            path,
        }
        .into());
    }
    let key = load_private(session.observer().as_ref(), &path, password)?;
    if key.fingerprint() != active.fingerprint {
        return Err(Missing::NotActiveKey {
            path,
            found: key.fingerprint(),
            user: name.clone(),
            active: active.fingerprint,
        }
        .into());
    }
    Ok((key, user))
}

/// `USER_KEYS_DIR/NAME.key.pem`, checked to be a file directly inside the keys directory.
pub fn user_key_path(dir: &Path, name: &Username) -> Result<PathBuf> {
    let file = format!("{name}.key.pem");
    let mut parts = Path::new(&file).components();
    match (parts.next(), parts.next()) {
        (Some(std::path::Component::Normal(_)), None) => Ok(dir.join(file)),
        _ => Err(Error::usage(format!(
            "the key file of user {name:?} would not be inside {}",
            dir.display()
        ))),
    }
}

/// The stored server keys, unlocked on first use (each unlock costs a PBKDF2 run).
pub struct ServerKeyring<'a> {
    pems: BTreeMap<Fingerprint, String>,
    unlocked: BTreeMap<Fingerprint, PrivateKey>,
    password: &'a dyn Secret,
}

impl<'a> ServerKeyring<'a> {
    /// Every stored server key, to be unlocked with `password` when first needed.
    pub fn load(session: &mut Session, password: &'a dyn Secret) -> Result<Self> {
        Ok(ServerKeyring {
            pems: session
                .store()?
                .server_keys()?
                .into_iter()
                .map(|k| (k.fingerprint, k.private_key_pem))
                .collect(),
            unlocked: BTreeMap::new(),
            password,
        })
    }

    /// The private key with fingerprint `fp`, unlocked.
    pub fn key(&mut self, fp: &Fingerprint) -> Result<&PrivateKey> {
        if !self.unlocked.contains_key(fp) {
            let pem = self
                .pems
                .get(fp)
                .ok_or_else(|| Error::key(format!("no stored server key {fp}")))?;
            let pw = self.password.get()?;
            let key = PrivateKey::from_pem(pem, &format!("server key {fp}"), || Ok(pw))?;
            self.unlocked.insert(*fp, key);
        }
        Ok(&self.unlocked[fp])
    }

    /// The fingerprints of every stored server key.
    pub fn fingerprints(&self) -> std::collections::BTreeSet<Fingerprint> {
        self.pems.keys().copied().collect()
    }
}

/// Writes a standalone key pair: `key_path` (the private key encrypted under `password`, 0600)
/// and `pub_path` (0644), each appearing whole or not at all; existing regular files are
/// replaced only with `force`, and nothing but a regular file ever is.
pub fn write_key_pair(
    key: &PrivateKey,
    password: &pgseal_core::Password,
    key_path: &Path,
    pub_path: &Path,
    force: bool,
) -> Result<()> {
    use std::io::Write as _;
    crate::files::refuse_existing(&[key_path, pub_path], force)?;
    let pem = key.to_encrypted_pem(password)?;
    let write = |path: &Path, text: &[u8], mode: u32| -> Result<()> {
        let mut file = crate::files::AtomicFile::create(path, force)?;
        file.set_mode(mode);
        file.write_all(text)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        file.commit()
    };
    write(key_path, pem.as_bytes(), 0o600)?;
    write(pub_path, key.public().to_pem().as_bytes(), 0o644)
}
