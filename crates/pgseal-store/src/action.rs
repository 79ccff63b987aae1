//! What an audit entry records was done: [`Action`].
//!
//! pgseal writes only the named actions. An entry it reads back may hold any other text —
//! rows brought over from the legacy system by `import-django`, whose log allowed whatever its
//! callers wrote — and that text is kept exactly, in [`Action::Other`]: the hash chain covers
//! the action's text, so it must come back byte for byte.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

/// The kind of operation an audit entry records (the legacy system's five, and pgseal's own).
/// Its text — what the log stores and the chain hashes — is [`as_str`](Self::as_str).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", from = "String")]
pub enum Action {
    /// `ENCRYPT`: a stream encrypted to a file.
    Encrypt,
    /// `DECRYPT`: a file decrypted (its outcome).
    Decrypt,
    /// `DECRYPT_START`: a decryption began releasing plaintext to a stream (standard output, a
    /// FIFO, a device), written before its first byte; its outcome follows as a `DECRYPT` entry.
    DecryptStart,
    /// `VERIFY`: a file's signatures (and perhaps decryption) checked.
    Verify,
    /// `KEY_GEN`: a server or user key generated.
    KeyGen,
    /// `KEY_ROTATE`: a server or user key rotated.
    KeyRotate,
    /// `KEY_EXPORT`: a key exported.
    KeyExport,
    /// `USER_ADD`: a user added.
    UserAdd,
    /// `USER_DISABLE`: a user disabled.
    UserDisable,
    /// `INIT`: a site (and its store) made.
    Init,
    /// `BACKUP`: a database backed up.
    Backup,
    /// `RESTORE`: a backup restored (or test-restored).
    Restore,
    /// `PRUNE`: old backups deleted (or a dry run).
    Prune,
    /// `REWRAP`: a backup's file key wrapped to a new server key.
    Rewrap,
    /// `KEY_RETIRE`: a rotated server key retired.
    KeyRetire,
    /// `IMPORT`: the legacy system's data imported.
    Import,
    /// `REPO_CLEANUP`: unfinished writes (a killed backup's incomplete upload) discarded from
    /// a repository.
    RepoCleanup,
    /// `COPY`: a backup copied into another repository and the copy verified (catalogued only
    /// when it verified).
    Copy,
    /// `USER_ROLE`: a service role granted to or revoked from a user.
    UserRole,
    /// `USER_TOTP`: a second factor (TOTP authenticator) enrolled for a user.
    UserTotp,
    /// `CUSTODY_START`: the key-custody service unlocked its keys and began serving (or failed
    /// to).
    CustodyStart,
    /// `CUSTODY_UNWRAP`: a request to the key-custody service to unwrap a file key (answered or
    /// refused).
    CustodyUnwrap,
    /// `CUSTODY_REWRAP`: a request to the key-custody service for a file's rewrap plan.
    CustodyRewrap,
    /// `CUSTODY_ADMIN`: a key-administration request to the key-custody service (rotate,
    /// retire), answered or refused; the rotation or retirement itself is its own entry.
    CustodyAdmin,
    /// `CUSTODY_AUDIT`: a request to the key-custody service for the audit chain head it
    /// last wrote.
    CustodyAudit,
    /// `CUSTODY_KEYS`: a request to the key-custody service for the server keys' public halves.
    CustodyKeys,
    /// `SCHEDULE_INSTALL`: the systemd units of a schedule written (`pgseal schedule install`).
    ScheduleInstall,
    /// `SCHEDULE_REMOVE`: a schedule's units deleted (`pgseal schedule remove`).
    ScheduleRemove,
    /// Text pgseal never writes, read back exactly as stored (an imported legacy row).
    Other(OtherAction),
}

/// The text of an action pgseal does not write. Made only by parsing, so it never spells one
/// of the named [`Action`]s: one action, one value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OtherAction(String);

impl OtherAction {
    /// The text exactly as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Action {
    /// Every action pgseal writes (all but [`Other`](Action::Other)).
    pub const WRITTEN: [Action; 28] = [
        Action::Encrypt,
        Action::Decrypt,
        Action::DecryptStart,
        Action::Verify,
        Action::KeyGen,
        Action::KeyRotate,
        Action::KeyExport,
        Action::UserAdd,
        Action::UserDisable,
        Action::Init,
        Action::Backup,
        Action::Restore,
        Action::Prune,
        Action::Rewrap,
        Action::KeyRetire,
        Action::Import,
        Action::RepoCleanup,
        Action::Copy,
        Action::UserRole,
        Action::UserTotp,
        Action::CustodyStart,
        Action::CustodyUnwrap,
        Action::CustodyRewrap,
        Action::CustodyKeys,
        Action::CustodyAdmin,
        Action::CustodyAudit,
        Action::ScheduleInstall,
        Action::ScheduleRemove,
    ];

    /// The text the log stores and the chain hashes (`REWRAP`, `DECRYPT_START`, …).
    pub fn as_str(&self) -> &str {
        match self {
            Action::Encrypt => "ENCRYPT",
            Action::Decrypt => "DECRYPT",
            Action::DecryptStart => "DECRYPT_START",
            Action::Verify => "VERIFY",
            Action::KeyGen => "KEY_GEN",
            Action::KeyRotate => "KEY_ROTATE",
            Action::KeyExport => "KEY_EXPORT",
            Action::UserAdd => "USER_ADD",
            Action::UserDisable => "USER_DISABLE",
            Action::Init => "INIT",
            Action::Backup => "BACKUP",
            Action::Restore => "RESTORE",
            Action::Prune => "PRUNE",
            Action::Rewrap => "REWRAP",
            Action::KeyRetire => "KEY_RETIRE",
            Action::Import => "IMPORT",
            Action::RepoCleanup => "REPO_CLEANUP",
            Action::Copy => "COPY",
            Action::UserRole => "USER_ROLE",
            Action::UserTotp => "USER_TOTP",
            Action::CustodyStart => "CUSTODY_START",
            Action::CustodyUnwrap => "CUSTODY_UNWRAP",
            Action::CustodyRewrap => "CUSTODY_REWRAP",
            Action::CustodyKeys => "CUSTODY_KEYS",
            Action::CustodyAdmin => "CUSTODY_ADMIN",
            Action::CustodyAudit => "CUSTODY_AUDIT",
            Action::ScheduleInstall => "SCHEDULE_INSTALL",
            Action::ScheduleRemove => "SCHEDULE_REMOVE",
            Action::Other(other) => other.as_str(),
        }
    }

    /// The action whose text is exactly `text`: a named one, else [`Other`](Action::Other)
    /// holding `text` unchanged (no case folding or trimming: the chain hashes the text).
    pub fn parse(text: &str) -> Action {
        Action::WRITTEN
            .into_iter()
            .find(|a| a.as_str() == text)
            .unwrap_or_else(|| Action::Other(OtherAction(text.to_owned())))
    }

    /// Whether pgseal writes this action (it is not [`Other`](Action::Other)).
    pub fn is_written_by_pgseal(&self) -> bool {
        !matches!(self, Action::Other(_))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Action {
    type Err = Infallible;
    /// Never fails: see [`Action::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Action::parse(s))
    }
}

impl From<&str> for Action {
    fn from(s: &str) -> Self {
        Action::parse(s)
    }
}

impl From<String> for Action {
    fn from(s: String) -> Self {
        match Action::WRITTEN.into_iter().find(|a| a.as_str() == s) {
            Some(named) => named,
            None => Action::Other(OtherAction(s)),
        }
    }
}

impl From<Action> for String {
    fn from(a: Action) -> Self {
        match a {
            Action::Other(OtherAction(s)) => s,
            named => named.as_str().to_owned(),
        }
    }
}

impl PartialEq<str> for Action {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Action {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_written_action_keeps_its_text() {
        // The texts the log has always held: changing one would break every chain.
        let texts = [
            "ENCRYPT",
            "DECRYPT",
            "DECRYPT_START",
            "VERIFY",
            "KEY_GEN",
            "KEY_ROTATE",
            "KEY_EXPORT",
            "USER_ADD",
            "USER_DISABLE",
            "INIT",
            "BACKUP",
            "RESTORE",
            "PRUNE",
            "REWRAP",
            "KEY_RETIRE",
            "IMPORT",
            "REPO_CLEANUP",
            "COPY",
            "USER_ROLE",
            "USER_TOTP",
            "CUSTODY_START",
            "CUSTODY_UNWRAP",
            "CUSTODY_REWRAP",
            "CUSTODY_KEYS",
            "CUSTODY_ADMIN",
            "CUSTODY_AUDIT",
            "SCHEDULE_INSTALL",
            "SCHEDULE_REMOVE",
        ];
        assert_eq!(Action::WRITTEN.map(|a| a.as_str().to_owned()), texts);
        for a in Action::WRITTEN {
            assert!(a.is_written_by_pgseal());
            assert_eq!(Action::parse(a.as_str()), a);
            assert_eq!(a.to_string().parse::<Action>().unwrap(), a);
            assert_eq!(Action::from(String::from(a.clone())), a);
        }
        assert_eq!(format!("[{:<8}]", Action::Init), "[INIT    ]");
    }

    #[test]
    fn other_text_comes_back_exactly() {
        for text in [
            "encrypt",
            "ENCRYPT ",
            "",
            "KEY GEN",
            "décrypter",
            "DOWNLOAD",
        ] {
            let a = Action::parse(text);
            assert!(matches!(a, Action::Other(_)), "{text:?}");
            assert!(!a.is_written_by_pgseal());
            assert_eq!(a.as_str(), text);
            assert_eq!(String::from(a.clone()), text);
            assert_eq!(Action::from(text.to_owned()), a);
        }
        // An Other never spells a named action, however it is made.
        assert_eq!(Action::from("REWRAP".to_owned()), Action::Rewrap);
    }

    #[test]
    fn serializes_as_its_text() {
        let json = serde_json::to_value(Action::DecryptStart).unwrap();
        assert_eq!(json, serde_json::json!("DECRYPT_START"));
        assert_eq!(
            serde_json::from_value::<Action>(json).unwrap(),
            Action::DecryptStart
        );
        let legacy: Action = serde_json::from_value(serde_json::json!("download")).unwrap();
        assert_eq!(legacy.as_str(), "download");
        assert_eq!(serde_json::to_value(&legacy).unwrap(), "download");
    }
}
