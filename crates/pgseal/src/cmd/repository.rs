//! The repository — the configured backup directory — read for what its files prove by
//! themselves.
//!
//! The catalog (the store's backup rows) says which backups exist, where and when; whoever can
//! write the store can make it say anything. What only a backup's creator can make is the file's
//! signed header. So `audit verify` finds its anchors by reading every file in the backup
//! directory, catalogued or not, and `prune` deletes a file only if it sits directly in the
//! backup directory and its signed header matches the catalog entry. Both read a file's prelude
//! only (header, header signature, recipient slots), never its data.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{BufReader, Cursor, Read};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use pgseal_core::detect::{DETECT_LEN, Detected, detect};
use pgseal_core::v2::{Header, Prelude, read_prelude};
use pgseal_core::{Fingerprint, PublicKey};
use pgseal_store::NewBackup;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::context::Context;
use crate::failure::{CliResult, Failure};

/// The name prefix of the hidden file a write uses where `O_TMPFILE` is unavailable
/// (`files::AtomicFile`): an unfinished backup, not a finding.
const PARTIAL_PREFIX: &str = ".pgseal-partial-";

/// What a file's first bytes and signed header establish.
pub enum Examined {
    /// A v2 file whose header signature verified with its creator's key from the store.
    Signed(Box<Prelude>),
    /// A legacy-format file: no signed header to check here, no anchor.
    Legacy(&'static str),
    /// Not a pgseal file at all.
    Foreign(&'static str),
    /// A pgseal file that pgseal cannot vouch for: damaged, of an unknown version, signed by a
    /// key the store does not know, or with a header signature that does not verify.
    Unvouched {
        reason: String,
        /// The anchor the header claims (unverified), to show what the file would prove.
        claimed_anchor: Option<u64>,
    },
}

/// Reads the prelude of `input` (never more) and checks its header signature with the key
/// `signer_key` finds for the fingerprint the header names. Errors only when looking the key
/// up fails; anything wrong with the file is an [`Examined`] answer.
pub fn examine(
    input: impl Read,
    signer_key: &mut dyn FnMut(&Fingerprint) -> CliResult<Option<PublicKey>>,
) -> CliResult<Examined> {
    let mut input = BufReader::new(input);
    let mut prefix = Vec::with_capacity(DETECT_LEN);
    if let Err(e) = (&mut input)
        .take(DETECT_LEN as u64)
        .read_to_end(&mut prefix)
    {
        return Ok(Examined::Unvouched {
            reason: format!("cannot be read: {e}"),
            claimed_anchor: None,
        });
    }
    match detect(&prefix) {
        Detected::Pgseal {
            version: pgseal_core::v2::VERSION,
        } => {}
        Detected::Pgseal { version } => {
            return Ok(Examined::Unvouched {
                reason: format!(
                    "a pgseal file of format version {version}, which this pgseal cannot check"
                ),
                claimed_anchor: None,
            });
        }
        d @ (Detected::LegacyHybrid | Detected::LegacySymmetric) => {
            return Ok(Examined::Legacy(d.name()));
        }
        d => return Ok(Examined::Foreign(d.name())),
    }
    let prelude = match read_prelude(&mut Cursor::new(prefix).chain(input)) {
        Ok(p) => p,
        Err(e) => {
            return Ok(Examined::Unvouched {
                reason: format!("a damaged pgseal file: {e}"),
                claimed_anchor: None,
            });
        }
    };
    let claimed_anchor = prelude.header.metadata.audit_anchor.map(|a| a.seq);
    let Some(key) = signer_key(&prelude.header.signer)? else {
        return Ok(Examined::Unvouched {
            reason: format!(
                "signed by {}, a key this store does not know (the store re-created or its keys \
                 deleted, or a file from elsewhere)",
                prelude.header.signer
            ),
            claimed_anchor,
        });
    };
    Ok(
        match prelude.verify_header_signature(std::slice::from_ref(&key)) {
            Ok(_) => Examined::Signed(Box::new(prelude)),
            Err(pgseal_core::Error::SignatureInvalid(_)) => Examined::Unvouched {
                reason: "its header signature does not verify: the file is forged or damaged"
                    .into(),
                claimed_anchor,
            },
            Err(e) => Examined::Unvouched {
                reason: format!("its header signature cannot be checked: {e}"),
                claimed_anchor,
            },
        },
    )
}

/// The creator's public key from the store, for [`examine`].
pub fn store_signer(ctx: &mut Context, fp: &Fingerprint) -> CliResult<Option<PublicKey>> {
    Ok(pgseal_ops::keys::v2_signers(ctx, &[], fp)?
        .0
        .into_iter()
        .next())
}

/// Where a signed header disagrees with the catalog entry that names its file, if it does: the
/// signer, the creator, the time and the database must all be the ones recorded.
pub fn header_mismatch(header: &Header, entry: &NewBackup) -> Option<String> {
    let m = &header.metadata;
    if header.signer != entry.creator_key {
        return Some(format!(
            "the file is signed by {}, the catalog says {}",
            header.signer, entry.creator_key
        ));
    }
    let header_creator = m.creator_user_id.and_then(|id| i64::try_from(id).ok());
    if header_creator != entry.creator_user_id {
        let show = |id: Option<i64>| id.map_or_else(|| "none".to_owned(), |id| id.to_string());
        return Some(format!(
            "the file's creator is user id {}, the catalog says {}",
            show(header_creator),
            show(entry.creator_user_id)
        ));
    }
    if i64::try_from(m.created_at_ms).ok() != Some(entry.created_at.millis()) {
        let signed = i64::try_from(m.created_at_ms)
            .map(|ms| pgseal_core::time::Timestamp(ms).rfc3339())
            .unwrap_or_else(|_| m.created_at_ms.to_string());
        return Some(format!(
            "the file was made at {signed}, the catalog says {}",
            entry.created_at.rfc3339()
        ));
    }
    if m.source_database.as_deref() != Some(entry.database.as_str()) {
        return Some(format!(
            "the file is a backup of {:?}, the catalog says {:?}",
            m.source_database.as_deref().unwrap_or(""),
            entry.database
        ));
    }
    None
}

/// Why `prune` will not touch the file a catalog entry names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not an absolute path of plain names (a relative path, `.` or `..`).
    NotPlain(String),
    /// The configured backup directory does not exist.
    NoRepository(PathBuf),
    /// The file is not directly in the backup directory (after resolving symbolic links).
    Outside(PathBuf),
    /// The name is a symbolic link.
    Symlink,
    /// A directory, device, FIFO or socket.
    NotRegular,
    Unreadable(String),
    /// A file that is not a pgseal v2 backup.
    NotPgseal(&'static str),
    /// A pgseal file whose signed header pgseal cannot vouch for.
    Unvouched(String),
    /// A genuine pgseal file, but not the backup the catalog entry describes.
    Mismatch(String),
    /// Another catalog entry names the same file.
    Duplicate(i64),
    /// The name pointed at another file by the time it was to be deleted.
    Changed,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotPlain(why) => write!(f, "the catalog path {why}"),
            Refusal::NoRepository(dir) => {
                write!(f, "the backup directory {} does not exist", dir.display())
            }
            Refusal::Outside(dir) => write!(
                f,
                "not in the backup directory {}: prune deletes only there (delete it yourself \
                 if it should go; prune then marks the entry pruned)",
                dir.display()
            ),
            Refusal::Symlink => f.write_str("a symbolic link, not a backup pgseal wrote"),
            Refusal::NotRegular => f.write_str("not a regular file"),
            Refusal::Unreadable(e) => write!(f, "cannot be read: {e}"),
            Refusal::NotPgseal(kind) => {
                write!(f, "not a pgseal v2 backup (it looks like: {kind})")
            }
            Refusal::Unvouched(why) => f.write_str(why),
            Refusal::Mismatch(why) => write!(
                f,
                "its signed header does not match the catalog entry: {why}"
            ),
            Refusal::Duplicate(id) => write!(f, "catalog entry {id} names the same file"),
            Refusal::Changed => f.write_str("the file changed while it was being checked"),
        }
    }
}

/// Checks that a catalog path is absolute and made of plain names only, and splits it into its
/// directory and file name.
pub fn plain_path(path: &Path) -> Result<(&Path, &OsStr), Refusal> {
    if !path.is_absolute() {
        return Err(Refusal::NotPlain("is not absolute".into()));
    }
    // `components()` drops `.` after the root and repeated separators; look at the text too.
    if path
        .as_os_str()
        .as_encoded_bytes()
        .split(|b| *b == b'/')
        .any(|part| part == b"." || part == b"..")
        || path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(Refusal::NotPlain("holds `.` or `..`".into()));
    }
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(Refusal::NotPlain("names no file".into())),
    }
}

/// The backup directory, opened once: its canonical path and a descriptor that every lookup
/// and deletion goes through, so a renamed or replaced path cannot redirect them.
pub struct Repository {
    /// The backup directory as configured (for messages).
    pub dir: PathBuf,
    open: Option<(PathBuf, OwnedFd)>,
}

/// What the backup directory holds.
#[derive(Default)]
pub struct Listing {
    /// Regular files (full paths under the canonical directory), sorted.
    pub files: Vec<PathBuf>,
    /// Unfinished writes (`.pgseal-partial-*`).
    pub partial: Vec<PathBuf>,
    /// Symbolic links, directories, devices and the like: never read.
    pub other: Vec<PathBuf>,
}

/// A file `prune` has checked: its name in the backup directory and its identity then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: OsString,
    pub dev: u64,
    pub ino: u64,
}

impl Repository {
    pub fn open(dir: &Path) -> CliResult<Repository> {
        let context = || format!("opening the backup directory {}", dir.display());
        let canonical = match std::fs::canonicalize(dir) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Repository {
                    dir: dir.to_path_buf(),
                    open: None,
                });
            }
            Err(e) => return Err(Failure::io(context(), e)),
        };
        let fd = rustix::fs::open(
            &canonical,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Failure::io(context(), e.into()))?;
        Ok(Repository {
            dir: dir.to_path_buf(),
            open: Some((canonical, fd)),
        })
    }

    /// The directory's canonical path, if it exists.
    pub fn canonical(&self) -> Option<&Path> {
        self.open.as_ref().map(|(p, _)| p.as_path())
    }

    /// Everything directly in the directory, by kind (nothing when it does not exist).
    pub fn list(&self) -> CliResult<Listing> {
        let Some(dir) = self.canonical() else {
            return Ok(Listing::default());
        };
        let context = || format!("reading the backup directory {}", self.dir.display());
        let mut listing = Listing::default();
        for entry in std::fs::read_dir(dir).map_err(|e| Failure::io(context(), e))? {
            let entry = entry.map_err(|e| Failure::io(context(), e))?;
            let kind = entry.file_type().map_err(|e| Failure::io(context(), e))?;
            let path = dir.join(entry.file_name());
            if !kind.is_file() {
                listing.other.push(path);
            } else if entry
                .file_name()
                .as_encoded_bytes()
                .starts_with(PARTIAL_PREFIX.as_bytes())
            {
                listing.partial.push(path);
            } else {
                listing.files.push(path);
            }
        }
        listing.files.sort();
        Ok(listing)
    }

    /// Opens the file a catalog entry names — only if it is a regular file directly in this
    /// directory — and hands it to `check`. `Ok(None)`: there is no such file any more.
    pub fn open_member<T>(
        &self,
        path: &str,
        check: impl FnOnce(std::fs::File) -> CliResult<T>,
    ) -> CliResult<Result<Option<(Member, T)>, Refusal>> {
        let path = Path::new(path);
        let (parent, name) = match plain_path(path) {
            Ok(split) => split,
            Err(r) => return Ok(Err(r)),
        };
        match std::fs::symlink_metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ok(None)),
            Err(e) => return Ok(Err(Refusal::Unreadable(e.to_string()))),
        }
        let Some((canonical, fd)) = &self.open else {
            return Ok(Err(Refusal::NoRepository(self.dir.clone())));
        };
        match std::fs::canonicalize(parent) {
            Ok(p) if p == *canonical => {}
            Ok(_) => return Ok(Err(Refusal::Outside(self.dir.clone()))),
            Err(e) => return Ok(Err(Refusal::Unreadable(e.to_string()))),
        }
        let file = match rustix::fs::openat(
            fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(f) => f,
            Err(rustix::io::Errno::LOOP) => return Ok(Err(Refusal::Symlink)),
            Err(rustix::io::Errno::NOENT) => return Ok(Ok(None)),
            Err(e) => {
                return Ok(Err(Refusal::Unreadable(
                    std::io::Error::from(e).to_string(),
                )));
            }
        };
        let stat = match rustix::fs::fstat(&file) {
            Ok(s) => s,
            Err(e) => {
                return Ok(Err(Refusal::Unreadable(
                    std::io::Error::from(e).to_string(),
                )));
            }
        };
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Ok(Err(Refusal::NotRegular));
        }
        let member = Member {
            name: name.to_owned(),
            dev: stat.st_dev,
            ino: stat.st_ino,
        };
        let checked = check(std::fs::File::from(file))?;
        Ok(Ok(Some((member, checked))))
    }

    /// Deletes a checked file — if its name still refers to the file that was checked.
    pub fn remove(&self, member: &Member) -> Result<(), RemoveError> {
        let Some((_, fd)) = &self.open else {
            return Err(RemoveError::Refused(Refusal::NoRepository(
                self.dir.clone(),
            )));
        };
        let now = rustix::fs::statat(fd, &member.name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| RemoveError::Io(e.into()))?;
        if (now.st_dev, now.st_ino) != (member.dev, member.ino) {
            return Err(RemoveError::Refused(Refusal::Changed));
        }
        rustix::fs::unlinkat(fd, &member.name, AtFlags::empty())
            .map_err(|e| RemoveError::Io(e.into()))
    }
}

/// Why a deletion did not happen.
pub enum RemoveError {
    Refused(Refusal),
    Io(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgseal_core::time::Timestamp;
    use pgseal_core::v2::{AuditAnchor, Compression, Metadata};

    #[test]
    fn catalog_paths_must_be_absolute_plain_names() {
        let ok = plain_path(Path::new(
            "/srv/pgseal/backups/shop_20260101T000000.000Z.pgseal",
        ));
        assert_eq!(
            ok.unwrap(),
            (
                Path::new("/srv/pgseal/backups"),
                OsStr::new("shop_20260101T000000.000Z.pgseal")
            )
        );
        for bad in [
            "backups/x.pgseal",
            "/srv/pgseal/backups/../../etc/shadow",
            "/srv/pgseal/backups/./x.pgseal",
            "/srv/pgseal/backups/x/..",
            "/",
        ] {
            assert!(
                matches!(plain_path(Path::new(bad)), Err(Refusal::NotPlain(_))),
                "{bad} was accepted"
            );
        }
    }

    fn header(meta: Metadata, signer: Fingerprint) -> Header {
        Header {
            metadata: meta,
            chunk_size: 65536,
            salt: [0; 32],
            key_commitment: [0; 32],
            compression: Compression::Zstd,
            slot_size: 1024,
            signer,
            signature_len: 256,
            unknown: Vec::new(),
        }
    }

    #[test]
    fn a_signed_header_must_match_its_catalog_entry_in_signer_creator_time_and_database() {
        let signer = Fingerprint::from_bytes([7; 32]);
        let meta = Metadata {
            created_at_ms: 1_767_225_600_123,
            creator_user_id: Some(3),
            source_database: Some("shop".into()),
            audit_anchor: Some(AuditAnchor {
                seq: 4,
                entry_hash: [1; 32],
            }),
            ..Metadata::default()
        };
        let entry = NewBackup {
            database: "shop".into(),
            path: "/b/shop.pgseal".into(),
            host: "h".into(),
            size_bytes: 1,
            created_at: Timestamp(1_767_225_600_123),
            creator_user_id: Some(3),
            creator_key: signer,
            server_keys: Vec::new(),
            format_version: 2,
            ciphertext_blake3: None,
        };
        let h = header(meta.clone(), signer);
        assert_eq!(header_mismatch(&h, &entry), None);

        let older = NewBackup {
            created_at: Timestamp(1_700_000_000_000),
            ..entry.clone()
        };
        assert!(header_mismatch(&h, &older).unwrap().contains("made at"));
        let other_db = NewBackup {
            database: "payroll".into(),
            ..entry.clone()
        };
        assert!(header_mismatch(&h, &other_db).unwrap().contains("payroll"));
        let other_user = NewBackup {
            creator_user_id: Some(4),
            ..entry.clone()
        };
        assert!(
            header_mismatch(&h, &other_user)
                .unwrap()
                .contains("user id")
        );
        let other_key = header(meta, Fingerprint::from_bytes([8; 32]));
        assert!(
            header_mismatch(&other_key, &entry)
                .unwrap()
                .contains("signed by")
        );
    }
}
