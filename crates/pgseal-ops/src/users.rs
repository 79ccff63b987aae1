//! Users (who makes backups) and their signing keys: add, list, show, disable; a user's key
//! generated (private key to a file, public key to the store), rotated (with proof of
//! possession of the old key, or by an active admin without it), listed and exported.
//!
//! A user name that comes from outside (`&str`) is checked here, before it becomes a path or
//! a query, and an operation that takes one records the refusal of a bad one in its audit
//! entry. Private keys are written with [`AtomicFile`] (0600; public keys 0644) and appear
//! only once the store holds the key, so a refused or failed operation leaves no orphaned
//! key file, and no step of a rotation can lose the new private key or destroy the old one.

use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use pgseal_core::keys::PssSalt;
use pgseal_core::{Fingerprint, PrivateKey, PublicKey};
use pgseal_store::{
    Action, NewUserKey, Role, ServiceRole, StoreError, User, UserKeyRecord, Username,
};

use crate::error::{Error, Missing, Refused, Result};
use crate::files::{AtomicFile, refuse_existing};
use crate::keys::{load_private, user_key_path};
use crate::secret::Secret;
use crate::server_keys::key_bits;
use crate::session::{Session, acting_user};

/// A user name from outside (a command line, the environment, a request), checked: an
/// invalid one is a usage error that says what names may hold.
pub fn username(text: &str) -> Result<Username> {
    Username::parse(text)
        .map_err(|e| Error::usage(format!("{e}; {}", pgseal_store::username::RULE)))
}

/// Registers a user, audited as `USER_ADD` (a refused name too). Ids are assigned once and
/// never reused.
pub fn add(session: &mut Session, name: &str, role: Role) -> Result<User> {
    session.audit(Action::UserAdd).detail("username", name);
    let name = username(name)?;
    let user = session.store()?.add_user(&name, role)?;
    if let Some(a) = session.audit_mut() {
        a.detail("new_user_id", user.id);
        a.detail("role", role.as_str());
    }
    Ok(user)
}

/// Every user, by id (read-only: not audited, nothing written).
pub fn list(session: &mut Session) -> Result<Vec<User>> {
    Ok(session.read_store()?.users()?)
}

/// A user and every key they have had, oldest first (read-only).
pub fn show(session: &mut Session, name: &Username) -> Result<(User, Vec<UserKeyRecord>)> {
    let store = session.read_store()?;
    let user = store.user(name)?;
    let keys = store.user_keys(user.id)?;
    Ok((user, keys))
}

/// Disables a user, audited as `USER_DISABLE`: they can no longer sign backups; their keys
/// stay, so what they signed still verifies.
pub fn disable(session: &mut Session, name: &str) -> Result<User> {
    session.audit(Action::UserDisable).detail("username", name);
    let name = username(name)?;
    session.store()?.disable_user(&name).map_err(|e| match e {
        // Adding a user in order to disable them is no advice: the name alone says it.
        StoreError::UnknownUser(_) => {
            let message = e.to_string();
            Error::from(e).context(message)
        }
        e => e.into(),
    })
}

/// Grants the service roles `add` to the user `name` and revokes `remove`, audited as
/// `USER_ROLE` (one entry, naming what changed); returns the roles they hold afterwards. What
/// the key-custody service lets a user ask depends on these (docs/CUSTODY.md).
pub fn set_roles(
    session: &mut Session,
    name: &str,
    add: &[ServiceRole],
    remove: &[ServiceRole],
) -> Result<Vec<ServiceRole>> {
    let audit = session.audit(Action::UserRole);
    audit.detail("username", name);
    let name = username(name)?;
    let store = session.store()?;
    let user = store.user(&name)?;
    let (mut granted, mut revoked) = (Vec::new(), Vec::new());
    for &role in add {
        if store.grant_role(user.id, role)? {
            granted.push(role.as_str());
        }
    }
    for &role in remove {
        if store.revoke_role(user.id, role)? {
            revoked.push(role.as_str());
        }
    }
    let roles = store.roles(user.id)?;
    if let Some(a) = session.audit_mut() {
        a.detail("granted", granted);
        a.detail("revoked", revoked);
        a.detail(
            "roles",
            roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        );
    }
    Ok(roles)
}

/// A user's keys, retired ones included, oldest first (read-only).
pub fn keys(session: &mut Session, name: &Username) -> Result<Vec<UserKeyRecord>> {
    let store = session.read_store()?;
    let user = store.user(name)?;
    Ok(store.user_keys(user.id)?)
}

/// One of a user's keys (read-only): the one with `fingerprint` (as given, checked here),
/// else the active one.
pub fn key(
    session: &mut Session,
    name: &Username,
    fingerprint: Option<&str>,
) -> Result<UserKeyRecord> {
    let store = session.read_store()?;
    let user = store.user(name)?;
    match fingerprint {
        Some(text) => {
            let fp: Fingerprint = text.parse()?;
            store
                .user_key(&fp)?
                .filter(|k| k.user_id == user.id)
                .ok_or_else(|| Error::key(format!("{name} has no key {fp}")))
        }
        None => Ok(store
            .active_user_key(user.id)?
            .ok_or_else(|| Missing::UserKey(name.clone()))?),
    }
}

/// `NAME.key.pem` → `NAME.pub.pem`; anything else gets `.pub.pem` appended.
pub fn public_path_for(key_path: &Path) -> PathBuf {
    let s = key_path.to_string_lossy();
    match s.strip_suffix(".key.pem") {
        Some(base) => PathBuf::from(format!("{base}.pub.pem")),
        None => PathBuf::from(format!("{s}.pub.pem")),
    }
}

/// A user's first key.
pub struct GenerateKey<'a> {
    /// The user, as given (checked here).
    pub name: &'a str,
    /// Where to write the private key; `None`: the site's user keys directory
    /// (`NAME.key.pem`). The public key goes beside it (`.pub.pem`).
    pub out: Option<&'a Path>,
    /// Its size in bits; `None`: the site's `rsa_key_size`.
    pub bits: Option<u32>,
    /// Replace existing key files (regular files only).
    pub force: bool,
    /// The password that will protect the private key (asked as a new password).
    pub password: &'a dyn Secret,
}

/// A key made.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    /// Whose.
    pub user: User,
    /// The key, as the store holds it.
    pub record: UserKeyRecord,
    /// Where the private key was written (encrypted, 0600).
    pub private_key: PathBuf,
    /// Where the public key was written (0644).
    pub public_key: PathBuf,
}

/// Generates a user's signing key pair, audited as `KEY_GEN`: the private key to a file, the
/// public key to the store. Refused for a disabled user and for one who has an active key (a
/// rotation replaces it), before the password is asked.
pub fn generate_key(session: &mut Session, request: &GenerateKey<'_>) -> Result<GeneratedKey> {
    session.audit(Action::KeyGen).detail("kind", "user");
    let name = username(request.name)?;
    let user_keys_dir = session.site()?.user_keys_dir.clone();
    let user = session.store()?.user(&name)?;
    if let Some(a) = session.audit_mut() {
        a.user_id = Some(user.id);
        a.detail("username", user.username.as_str());
    }
    if !user.is_active {
        return Err(Error::usage(format!("user {} is disabled", user.username)));
    }
    if let Some(active) = session.store()?.active_user_key(user.id)? {
        return Err(Refused::ActiveUserKey {
            user: user.username,
            active: active.fingerprint,
        }
        .into());
    }
    let key_path = match request.out {
        Some(p) => p.to_path_buf(),
        None => user_key_path(&user_keys_dir, &name)?,
    };
    let pub_path = public_path_for(&key_path);
    refuse_existing(&[&key_path, &pub_path], request.force)?;
    if let Some(parent) = key_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.exists())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    let bits = key_bits(session, request.bits)?;
    let password = request.password.get_new()?;
    let key = PrivateKey::generate(bits)?;
    let public = key.public();

    // Both files are written unnamed first; they appear only once the store has the key, so a
    // refused insert (a race, a dead database) leaves no orphaned key files.
    let pem = key.to_encrypted_pem(&password)?;
    let private_file = unnamed(&key_path, pem.as_bytes(), 0o600, request.force)?;
    let public_file = unnamed(&pub_path, public.to_pem().as_bytes(), 0o644, request.force)?;
    let record = session
        .store()?
        .add_user_key(user.id, &new_user_key(public))?;
    private_file.commit()?;
    public_file.commit()?;
    if let Some(a) = session.audit_mut() {
        a.detail("fingerprint", record.fingerprint.to_string());
        a.detail("private_key_file", key_path.display().to_string());
    }
    Ok(GeneratedKey {
        user,
        record,
        private_key: key_path,
        public_key: pub_path,
    })
}

/// `text` in a file that appears at `path`, with `mode`, once committed.
fn unnamed(path: &Path, text: &[u8], mode: u32, force: bool) -> Result<AtomicFile> {
    let mut file = AtomicFile::create(path, force)?;
    file.set_mode(mode);
    file.write_all(text)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(file)
}

fn new_user_key(public: &PublicKey) -> NewUserKey {
    NewUserKey {
        fingerprint: public.fingerprint(),
        legacy_fingerprint: Some(public.legacy_fingerprint().to_string()),
        public_key_pem: public.to_pem(),
        key_size: public.bits() as i64,
    }
}

/// How the caller shows the right to replace a user's key.
pub enum Proof<'a> {
    /// Possession of the old private key: it signs a fresh challenge that the stored public
    /// key must verify.
    OldKey {
        /// The old private key file; `None`: the site's user keys directory (`NAME.key.pem`).
        sign_key: Option<&'a Path>,
        /// Unlocks it.
        password: &'a dyn Secret,
    },
    /// None: the old key is lost or compromised. Only an active admin, the session's acting
    /// user, may do this; the audit entry says who and that it was forced.
    Admin,
}

/// A rotation of a user's key.
pub struct RotateKey<'a> {
    /// The user, as given (checked here).
    pub name: &'a str,
    /// The right to do it.
    pub proof: Proof<'a>,
    /// Where to write the new private key; `None`: the site's user keys directory. An old key
    /// file there is kept beside it, renamed `.retired-STAMP`.
    pub out: Option<&'a Path>,
    /// The new key's size in bits; `None`: the site's `rsa_key_size`.
    pub bits: Option<u32>,
    /// The new key's password (asked as a new password).
    pub new_password: &'a dyn Secret,
}

/// What a rotation did.
#[derive(Debug, Clone)]
pub struct RotatedKey {
    /// Whose.
    pub user: User,
    /// The key that was active, now retired (it still verifies what it signed).
    pub old: Fingerprint,
    /// The new active key.
    pub record: UserKeyRecord,
    /// Where the new private key is (0600); its public key is beside it.
    pub private_key: PathBuf,
    /// Where the old private key was set aside, if it was at the new key's path.
    pub old_private_key: Option<PathBuf>,
}

/// What the old key signs to prove possession: a fixed context and a fresh random challenge.
const PROOF_CONTEXT: &[u8] = b"pgseal user-key rotate\0";

/// Replaces a user's key, audited as `KEY_ROTATE`: the old public key is retired but kept, so
/// old backups still verify; the old private key file is set aside, never destroyed.
pub fn rotate_key(session: &mut Session, request: &RotateKey<'_>) -> Result<RotatedKey> {
    session.audit(Action::KeyRotate).detail("kind", "user");
    let name = username(request.name)?;
    let user_keys_dir = session.site()?.user_keys_dir.clone();
    let store = session.store()?;
    let user = store.user(&name)?;
    let active = store
        .active_user_key(user.id)?
        .ok_or_else(|| Missing::UserKey(name.clone()))?;
    let forced = matches!(request.proof, Proof::Admin);
    if let Some(a) = session.audit_mut() {
        a.detail("username", user.username.as_str());
        a.detail("old_fingerprint", active.fingerprint.to_string());
        a.detail("forced", forced);
        a.backup_creator_id = None;
    }
    let default_path = user_key_path(&user_keys_dir, &name)?;
    let key_path = request
        .out
        .map_or_else(|| default_path.clone(), Path::to_path_buf);
    let pub_path = public_path_for(&key_path);
    // An old key file there is set aside, not replaced — but a key file is a regular file: a
    // FIFO, device or directory at either path is refused before any work.
    refuse_existing(&[&key_path, &pub_path], true)?;
    let acting = match &request.proof {
        Proof::Admin => {
            let actor = session.actor().clone();
            match acting_user(session.store()?, &actor)? {
                Some(u) if u.role == Role::Admin && u.is_active => u.id,
                _ => return Err(Refused::AdminNeeded.into()),
            }
        }
        Proof::OldKey { sign_key, password } => {
            let path = sign_key.map_or_else(|| default_path.clone(), Path::to_path_buf);
            let old = load_private(session.observer().as_ref(), &path, *password)?;
            let stored = PublicKey::from_pem(&active.public_key_pem)?;
            if !possesses(&old, &stored)? {
                return Err(Error::key(format!(
                    "{} is not {}'s active key ({}): proof of possession failed; nothing was \
                     changed",
                    path.display(),
                    user.username,
                    active.fingerprint
                )));
            }
            user.id
        }
    };
    if let Some(a) = session.audit_mut() {
        a.user_id = Some(acting);
    }

    let bits = key_bits(session, request.bits)?;
    let password = request.new_password.get_new()?;
    let key = PrivateKey::generate(bits)?;
    let public = key.public();
    let pem = key.to_encrypted_pem(&password)?;
    // The new files are made durable under side names first, so that no step can lose the new
    // private key: a refused rotation removes them, a crash leaves them for the user.
    let side = |p: &Path| PathBuf::from(format!("{}.new", p.display()));
    unnamed(&side(&key_path), pem.as_bytes(), 0o600, true)?.commit()?;
    unnamed(&side(&pub_path), public.to_pem().as_bytes(), 0o644, true)?.commit()?;

    let rotated = session
        .store()?
        .rotate_user_key(user.id, active.id, &new_user_key(public));
    let record = match rotated {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(side(&key_path));
            let _ = std::fs::remove_file(side(&pub_path));
            return Err(e.into());
        }
    };
    // The old private key is not destroyed: it is set aside, since the user may still want it.
    let stamp: String = pgseal_core::time::Timestamp::now()
        .rfc3339()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let mut kept = None;
    if key_path.exists() {
        let aside = PathBuf::from(format!("{}.retired-{stamp}", key_path.display()));
        std::fs::rename(&key_path, &aside)
            .map_err(|e| Error::io(format!("setting {} aside", key_path.display()), e))?;
        kept = Some(aside);
    }
    for p in [&key_path, &pub_path] {
        std::fs::rename(side(p), p).map_err(|e| {
            Error::io(
                format!(
                    "moving the new key into place (it is at {})",
                    side(p).display()
                ),
                e,
            )
        })?;
    }
    if let Some(a) = session.audit_mut() {
        a.detail("new_fingerprint", record.fingerprint.to_string());
    }
    Ok(RotatedKey {
        user,
        old: active.fingerprint,
        record,
        private_key: key_path,
        old_private_key: kept,
    })
}

/// Whether `key` is the private half of `stored`: it signs a fresh challenge, which `stored`
/// must verify.
fn possesses(key: &PrivateKey, stored: &PublicKey) -> Result<bool> {
    let mut challenge = [0u8; 32];
    pgseal_core::secret::fill_random(&mut challenge)?;
    let mut message = PROOF_CONTEXT.to_vec();
    message.extend_from_slice(&challenge);
    let signature = key.sign_pss(PssSalt::Digest, &message)?;
    Ok(stored.verify_pss(PssSalt::Digest, &message, &signature))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use pgseal_core::Password;
    use pgseal_store::UserKeyStatus;

    use super::*;
    use crate::error::ErrorKind;
    use crate::site::testing::{PASSWORD, TestSite, password};

    const NEW_PASSWORD: &str = "the-new-user-password-01";

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// A site with an operator `alice` and her first key.
    fn site_with_alice() -> (TestSite, GeneratedKey) {
        let site = TestSite::new();
        site.run(None, |s| add(s, "alice", Role::Operator)).unwrap();
        let made = site
            .run(None, |s| {
                generate_key(
                    s,
                    &GenerateKey {
                        name: "alice",
                        out: None,
                        bits: None,
                        force: false,
                        password: &password(PASSWORD),
                    },
                )
            })
            .unwrap();
        (site, made)
    }

    fn rotate_alice(site: &TestSite, user: Option<&str>, proof: Proof<'_>) -> Result<RotatedKey> {
        site.run(user, |s| {
            rotate_key(
                s,
                &RotateKey {
                    name: "alice",
                    proof,
                    out: None,
                    bits: None,
                    new_password: &password(NEW_PASSWORD),
                },
            )
        })
    }

    /// A name that would be a path, a flag or a terminal escape is refused before the store
    /// sees it, and the refusal is audited with the name as given.
    #[test]
    fn add_refuses_a_name_that_is_a_path_and_records_the_refusal() {
        let site = TestSite::new();
        for bad in ["../x", "-rf", "a/b", "new\nline", ""] {
            let refused = site.run(None, |s| add(s, bad, Role::Operator)).unwrap_err();
            assert_eq!(refused.kind(), ErrorKind::Usage, "{bad:?}");
            assert!(refused.to_string().contains("user name"), "{refused}");
            let e = site.last_audit();
            assert_eq!(
                (e.entry.action.as_str(), e.entry.success),
                ("USER_ADD", false)
            );
            let details: serde_json::Value = serde_json::from_str(&e.entry.details).unwrap();
            assert_eq!(details["username"], bad);
        }
        assert!(site.store().users().unwrap().is_empty());
    }

    /// A user's key: the private half in the user keys directory (0600, opening with the
    /// password), the public half beside it (0644) and in the store as the active key.
    #[test]
    fn generate_key_writes_the_private_key_0600_and_stores_the_public_key() {
        let (site, made) = site_with_alice();
        assert_eq!(
            made.private_key,
            site.site.user_keys_dir.join("alice.key.pem")
        );
        assert_eq!(
            made.public_key,
            site.site.user_keys_dir.join("alice.pub.pem")
        );
        assert_eq!(mode(&made.private_key), 0o600);
        assert_eq!(mode(&made.public_key), 0o644);
        let key = load_private(
            &crate::observe::Silent,
            &made.private_key,
            &password(PASSWORD),
        )
        .unwrap();
        assert_eq!(key.fingerprint(), made.record.fingerprint);
        let alice = Username::parse("alice").unwrap();
        let mut session = crate::site::testing::session_on(&site.site, None);
        let stored = self::key(&mut session, &alice, None).unwrap();
        assert_eq!(stored.fingerprint, made.record.fingerprint);
        assert_eq!(stored.status, UserKeyStatus::Active);
        assert_eq!(
            site.last_details()["fingerprint"],
            made.record.fingerprint.to_string()
        );
    }

    /// A second key for a user who has one is refused (rotate instead), as is a key for a
    /// disabled user; neither writes a file.
    #[test]
    fn generate_key_refuses_a_second_key_and_a_disabled_user() {
        let (site, made) = site_with_alice();
        let before = std::fs::read(&made.private_key).unwrap();
        let again = |name: &'static str| {
            site.run(None, |s| {
                generate_key(
                    s,
                    &GenerateKey {
                        name,
                        out: None,
                        bits: None,
                        force: true,
                        password: &password(PASSWORD),
                    },
                )
            })
        };
        let refused = again("alice").unwrap_err();
        assert!(
            matches!(&refused, Error::Refused(Refused::ActiveUserKey { user, active }) if user.as_str() == "alice" && *active == made.record.fingerprint),
            "{refused:?}"
        );
        assert_eq!(std::fs::read(&made.private_key).unwrap(), before);

        site.run(None, |s| add(s, "bob", Role::Operator)).unwrap();
        site.run(None, |s| disable(s, "bob")).unwrap();
        let refused = again("bob").unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Usage);
        assert!(refused.to_string().contains("disabled"), "{refused}");
        assert!(!site.site.user_keys_dir.join("bob.key.pem").exists());
    }

    /// Proof of possession: someone else's key does not rotate alice's (nothing changes); her
    /// own does — her old public key is retired but kept, her old private key set aside, and
    /// the new one opens with the new password.
    #[test]
    fn rotate_key_needs_the_old_private_key() {
        let (site, made) = site_with_alice();
        let other = site.tmp.path().join("other.key.pem");
        let stranger =
            PrivateKey::generate(pgseal_core::keys::KeyBits::from_bits(2048).unwrap()).unwrap();
        std::fs::write(
            &other,
            stranger
                .to_encrypted_pem(&Password::new(PASSWORD.into()))
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        let pw = password(PASSWORD);
        let refused = rotate_alice(
            &site,
            None,
            Proof::OldKey {
                sign_key: Some(&other),
                password: &pw,
            },
        )
        .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Key, "{refused:?}");
        assert!(refused.to_string().contains("proof of possession failed"));
        let alice = Username::parse("alice").unwrap();
        assert_eq!(site.run(None, |s| keys(s, &alice)).unwrap().len(), 1);
        let listing = || {
            let mut names: Vec<String> = std::fs::read_dir(&site.site.user_keys_dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(listing(), ["alice.key.pem", "alice.pub.pem"]);

        let rotated = rotate_alice(
            &site,
            None,
            Proof::OldKey {
                sign_key: None,
                password: &pw,
            },
        )
        .unwrap();
        assert_eq!(rotated.old, made.record.fingerprint);
        let history = site.run(None, |s| keys(s, &alice)).unwrap();
        assert_eq!(
            history.iter().map(|k| k.status).collect::<Vec<_>>(),
            [UserKeyStatus::Retired, UserKeyStatus::Active]
        );
        let kept = rotated.old_private_key.expect("the old key was set aside");
        let old = load_private(&crate::observe::Silent, &kept, &pw).unwrap();
        assert_eq!(old.fingerprint(), made.record.fingerprint);
        let new = load_private(
            &crate::observe::Silent,
            &rotated.private_key,
            &password(NEW_PASSWORD),
        )
        .unwrap();
        assert_eq!(new.fingerprint(), rotated.record.fingerprint);
        assert_eq!(mode(&rotated.private_key), 0o600);
        assert!(
            !listing().iter().any(|n| n.ends_with(".new")),
            "{:?}",
            listing()
        );
        let e = site.last_audit().entry;
        assert_eq!((e.action.as_str(), e.success), ("KEY_ROTATE", true));
        assert_eq!(e.user_id, Some(rotated.user.id));
    }

    /// Without the old key only an active admin, acting as themselves, may rotate: no acting
    /// user, an operator or a disabled admin is refused; an active admin succeeds, and the
    /// entry records them and that it was forced.
    #[test]
    fn rotate_key_without_the_old_key_needs_an_active_admin() {
        let (site, _) = site_with_alice();
        site.run(None, |s| add(s, "ops", Role::Operator)).unwrap();
        site.run(None, |s| add(s, "former", Role::Admin)).unwrap();
        site.run(None, |s| disable(s, "former")).unwrap();
        let chief = site.run(None, |s| add(s, "chief", Role::Admin)).unwrap();
        for acting in [None, Some("ops"), Some("former"), Some("alice")] {
            let refused = rotate_alice(&site, acting, Proof::Admin).unwrap_err();
            assert!(
                matches!(refused, Error::Refused(Refused::AdminNeeded)),
                "{acting:?}: {refused:?}"
            );
        }
        let alice = Username::parse("alice").unwrap();
        assert_eq!(site.run(None, |s| keys(s, &alice)).unwrap().len(), 1);

        rotate_alice(&site, Some("chief"), Proof::Admin).unwrap();
        let e = site.last_audit().entry;
        assert_eq!((e.action.as_str(), e.success), ("KEY_ROTATE", true));
        assert_eq!(e.user_id, Some(chief.id));
        assert_eq!(site.last_details()["forced"], true);
        assert_eq!(site.run(None, |s| keys(s, &alice)).unwrap().len(), 2);
    }

    /// Disabling a user keeps their keys (what they signed still verifies); an unknown user is
    /// named without advice to add them.
    #[test]
    fn disable_keeps_the_keys_and_names_an_unknown_user() {
        let (site, made) = site_with_alice();
        let user = site.run(None, |s| disable(s, "alice")).unwrap();
        assert!(!user.is_active);
        let alice = Username::parse("alice").unwrap();
        let (shown, history) = site.run(None, |s| show(s, &alice)).unwrap();
        assert!(!shown.is_active && shown.disabled_at.is_some());
        assert_eq!(history[0].fingerprint, made.record.fingerprint);
        let refused = site.run(None, |s| disable(s, "nobody")).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Usage);
        assert_eq!(refused.to_string(), "no user named nobody");
        assert!(matches!(
            refused.root(),
            Error::Store(StoreError::UnknownUser(_))
        ));
    }
}
