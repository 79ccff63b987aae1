//! Where backups live: the [`Repository`] interface, and the locations the catalog records.
//!
//! A repository is a place that holds sealed backups as named objects — a directory on this
//! host ([`local::LocalRepository`]) or a prefix of an S3 bucket ([`s3::S3Repository`]). Every operation that writes,
//! reads, rewraps, deletes or lists backups goes through it, so a new backend is one new
//! implementation, and nothing above it knows about paths, descriptors or buckets:
//!
//! - **create → commit or abandon**: [`Repository::create`] gives a streaming writer
//!   ([`NewObject`]: `Write + Send`); nothing is visible until [`NewObject::commit`] returns the
//!   object's [`Location`], and dropping the writer uncommitted abandons it (a killed process
//!   leaves nothing visible either). A local repository writes an unnamed `O_TMPFILE` file,
//!   fsyncs it and links it under its name (a free `-2`, `-3`… variant if the name is taken,
//!   never replacing anything), then fsyncs the directory; an object store would stream a
//!   multipart upload and complete it.
//! - **open, and ranged reads for headers**: [`Repository::open`] streams an object and says
//!   which version of it was opened ([`Version`]); [`Repository::read_at`] reads a range, so
//!   what needs only a file's prelude (audit anchors, `server-key retire`'s slot check) reads
//!   only that ([`prelude`]), by ranged GET on an object store.
//! - **rewrap**: [`Repository::apply_rewrap`] makes a v2 rewrap's slot writes in order, each
//!   durable before the next (locally: `pwrite` + `fdatasync` in place, with the crash points
//!   `rewrap:{install,wipe}:{written,durable}`); [`Repository::replace_head`] replaces a legacy
//!   hybrid file's header by rewriting the object whole and atomically, then zeroes the
//!   replaced copy's wrapped key where it can still be reached.
//! - **delete** only the version that was checked ([`Repository::delete`] with the
//!   [`Version`] [`open`](Repository::open) returned), and **list** every object, with its
//!   size.
//!
//! # Locations
//!
//! The catalog records where each backup is as a URL, [`Location`] (a validated string type
//! kept in `pgseal-store`, which must not depend on this crate, and re-exported here). A file
//! location names its host, as RFC 8089 allows: `file://db1.example/srv/pgseal/backups/
//! shop_20260101T000000.000Z.pgseal`, each byte a URL must escape percent-encoded. The host is
//! the name the host gives itself, compared as text, so a store shared between hosts never
//! takes one host's `/srv/pgseal/backups` for another's; `file:///path` (no host) is a
//! location written where the host had no name. An S3 location is `s3://BUCKET/KEY`
//! ([`Location::s3`]: a valid bucket name; a key of plain names, no `.` or `..`, no control
//! character).
//!
//! "Is this backup here?" is one decision, the repository's: [`Repository::contains`] (a
//! local repository: a `file:` location on this host, whose path is plain — absolute, no `.`
//! or `..`, no name holding `/` or NUL — and names a file directly in its directory, by
//! canonical path; an S3 repository: an `s3:` location in its bucket, directly under its
//! prefix). [`Reach`] finds the repository that holds a location, when this process can reach
//! it at all (a file location on this host, in whatever directory; an `s3:` location when the
//! front end gave the session access to object stores).
//! Names from outside become object names only through [`check_name`].

pub mod local;
pub mod s3;

use std::io::{self, Read, Write};
use std::sync::Arc;

use pgseal_core::v2::Rewrap;

pub use pgseal_store::{InvalidLocation, Location};

use crate::error::{Error, ErrorKind, Result};
use crate::session::Session;

/// What identifies one version of an object (locally its device and inode; on an object store
/// its ETag): what was checked is what is deleted or rewritten, or the operation is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(String);

impl Version {
    /// A version as the backend spells it.
    pub fn new(text: impl Into<String>) -> Self {
        Version(text.into())
    }

    /// The backend's spelling.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An object opened for reading: a stream of its bytes from the start.
pub struct Object {
    /// Where it is (in the repository's own spelling: a local repository's canonical path).
    pub location: Location,
    /// Its size in bytes.
    pub size: u64,
    /// Which version of it this is.
    pub version: Version,
    reader: Box<dyn Read + Send>,
}

impl Object {
    /// An object whose bytes `reader` streams.
    pub fn new(
        location: Location,
        size: u64,
        version: Version,
        reader: Box<dyn Read + Send>,
    ) -> Self {
        Object {
            location,
            size,
            version,
            reader,
        }
    }
}

impl Read for Object {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

/// An object being written: nothing is visible until it is committed; dropped uncommitted, it
/// is abandoned and leaves nothing.
pub trait NewObject: Write + Send {
    /// Makes the object durable and visible, and says where it is.
    fn commit(self: Box<Self>) -> Result<Location>;
}

/// An object a listing found, with its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Where it is.
    pub location: Location,
    /// Its size in bytes.
    pub size: u64,
}

/// Everything a repository holds.
#[derive(Debug, Default)]
pub struct Listing {
    /// Its objects (for a local repository: the regular files in its directory), in name order.
    pub objects: Vec<Listed>,
    /// Writes left unfinished (a local repository's `.pgseal-partial-*` files, an object
    /// store's incomplete uploads): not backups, not findings.
    pub partial: Vec<Location>,
    /// What is there but is no object (symbolic links, directories, devices): never read.
    pub other: Vec<Location>,
}

/// A write that was started and never finished — a killed backup's (or an S3 rewrap's)
/// incomplete upload, a hidden partial file a killed write left in a directory: not a backup,
/// and invisible to readers, but it takes space (an incomplete upload is billed) until it is
/// discarded ([`Repository::discard`]; `pgseal repo cleanup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    /// Where the object would have been (a partial file: where it is).
    pub location: Location,
    /// The backend's handle for it: an upload id; a partial file's name.
    pub id: String,
    /// When it was started, if the backend says.
    pub started: Option<std::time::SystemTime>,
}

/// Where backups live (see the module docs).
pub trait Repository: Send + Sync {
    /// The repository as shown to people: its directory, its bucket's URL.
    fn describe(&self) -> String;

    /// Whether it exists now (a backup directory not made yet holds nothing).
    fn exists(&self) -> bool;

    /// Whether `location` names an object of this repository: the one decision of "is this
    /// backup here". It says nothing of whether the object exists.
    fn contains(&self, location: &Location) -> bool;

    /// The location the object `name` has (or would have) here, in this repository's own
    /// spelling. `name` is checked ([`check_name`]).
    fn location(&self, name: &str) -> Result<Location>;

    /// Starts writing a new object called `name` (checked with [`check_name`]); if the name
    /// is taken when it is committed, a free variant (`-2`, `-3`… before the extension) is
    /// used: nothing is ever replaced.
    fn create(&self, name: &str) -> Result<Box<dyn NewObject>>;

    /// Opens the object at `location` for reading; `Ok(None)` if there is none. A location
    /// that is not this repository's is refused ([`RepoError::Elsewhere`] for another place,
    /// [`RepoError::Outside`] for one this repository would reach but does not hold, …).
    fn open(&self, location: &Location) -> Result<Option<Object>>;

    /// Up to `len` bytes of the object at `location` from `offset` (fewer at its end): for
    /// headers, without reading the rest.
    fn read_at(&self, location: &Location, offset: u64, len: usize) -> Result<Vec<u8>>;

    /// Applies a v2 rewrap to the object at `location`, if it is still the `expected` version:
    /// its slot writes in order, each durable before the next.
    fn apply_rewrap(&self, location: &Location, expected: &Version, plan: &Rewrap) -> Result<()>;

    /// Replaces the object at `location`, if it is still the `expected` version, by `head`
    /// followed by its own bytes from `keep_from` on, atomically (readers see the old object or
    /// the new one); then overwrites `wipe` in the replaced copy with zeros wherever it can
    /// still be reached.
    fn replace_head(
        &self,
        location: &Location,
        expected: &Version,
        head: &[u8],
        keep_from: u64,
        wipe: std::ops::Range<u64>,
    ) -> Result<()>;

    /// Deletes the object at `location` — only if it is still the `expected` version, when one
    /// is given. A missing object is [`RepoError::NotFound`].
    fn delete(&self, location: &Location, expected: Option<&Version>) -> Result<()>;

    /// Everything the repository holds.
    fn list(&self) -> Result<Listing>;

    /// The writes started here and never finished (see [`Unfinished`]).
    fn unfinished(&self) -> Result<Vec<Unfinished>>;

    /// Discards one unfinished write; one that is gone already is not an error.
    fn discard(&self, unfinished: &Unfinished) -> Result<()>;
}

/// Why a repository refused or failed an operation on a location.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// The location is another repository's: another host's file, another scheme.
    #[error("{location} is not in {repository}: it is another host's or another repository's")]
    Elsewhere {
        /// The location.
        location: Location,
        /// This repository, as shown.
        repository: String,
    },
    /// The location's path is not plain: not absolute, `.` or `..` in it, a name holding `/`
    /// or NUL, or no file named.
    #[error("the location {location} {why}")]
    NotPlain {
        /// The location.
        location: Location,
        /// What is wrong with it: "holds `.` or `..`"...
        why: &'static str,
    },
    /// A name that cannot be an object's.
    #[error("{name:?} cannot name a backup: {why}")]
    BadName {
        /// The name.
        name: String,
        /// Why not.
        why: &'static str,
    },
    /// The repository does not exist (a backup directory not made).
    #[error("the backup directory {0} does not exist")]
    Missing(String),
    /// A location this repository would reach but that is not one of its objects (a file on
    /// this host outside the backup directory).
    #[error("{location} is not directly in {repository}")]
    Outside {
        /// The location.
        location: Location,
        /// This repository, as shown.
        repository: String,
    },
    /// The name is a symbolic link.
    #[error("{0} is a symbolic link, not a backup pgseal wrote")]
    Symlink(Location),
    /// A directory, device, FIFO or socket.
    #[error("{0} is not a regular file")]
    NotRegular(Location),
    /// The object is not the version that was checked.
    #[error("{0} changed while it was being checked")]
    Changed(Location),
    /// No object there.
    #[error("{0} does not exist")]
    NotFound(Location),
    /// Rewriting the object would leave other names holding the old one.
    #[error(
        "{location} has {links} hard links: rewriting it would leave the other names holding \
         the old wrapping; remove the other links (or copy the file) and run again"
    )]
    Linked {
        /// The location.
        location: Location,
        /// How many names the file has.
        links: u64,
    },
    /// The bucket does not exist (at this endpoint).
    #[error("the bucket {bucket} does not exist at {endpoint}")]
    NoSuchBucket {
        /// The bucket.
        bucket: String,
        /// The endpoint asked.
        endpoint: String,
    },
    /// The object store refused the credentials: an unknown access key, a wrong secret, an
    /// expired token (front ends say where credentials come from).
    #[error("the object store refused the credentials while {doing} ({code})")]
    BadCredentials {
        /// What was being done.
        doing: String,
        /// The engine's error code (`InvalidAccessKeyId`, `SignatureDoesNotMatch`...).
        code: String,
    },
    /// The object store refused the request (HTTP 403): the credentials hold no permission
    /// for it — or, on engines that answer every refusal alike (Garage), they are wrong.
    #[error("the object store denied access while {doing} ({code}: {message})")]
    AccessDenied {
        /// What was being done.
        doing: String,
        /// The engine's error code (`AccessDenied`...).
        code: String,
        /// The engine's message.
        message: String,
    },
    /// The object store did not answer: connection refused, name not resolved, TLS, timeout.
    #[error("cannot reach the object store at {endpoint} while {doing}: {reason}")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// What was being done.
        doing: String,
        /// Why, as the client says it.
        reason: String,
    },
    /// The object store answered with an error not named above.
    #[error("the object store failed while {doing}: HTTP {status} {code} {message}")]
    Engine {
        /// What was being done.
        doing: String,
        /// The HTTP status (0: no answer could be read).
        status: u16,
        /// The engine's error code.
        code: String,
        /// The engine's message.
        message: String,
    },
    /// The key a new object was being written to was taken before the write completed; the
    /// upload was aborted, nothing was replaced.
    #[error("{0} appeared while the backup was being written; it was not replaced")]
    Taken(Location),
    /// A location in an object store, and no access to object stores was configured.
    #[error("{0} is in an object store, and no object store access is configured")]
    NoObjectStore(Location),
    /// A rewrap replaced the object, but the bucket keeps versions and the replaced version,
    /// which still holds the old wrapping, could not be deleted.
    #[error(
        "{location} was rewritten, but the bucket keeps versions and the replaced version \
         {version_id} (which the old key still opens) could not be deleted: {reason}"
    )]
    OldVersionKept {
        /// The object.
        location: Location,
        /// The version that remains.
        version_id: String,
        /// Why it could not be deleted.
        reason: String,
    },
}

impl RepoError {
    /// What kind of problem this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RepoError::Changed(_)
            | RepoError::NotFound(_)
            | RepoError::AccessDenied { .. }
            | RepoError::Unreachable { .. }
            | RepoError::Engine { .. }
            | RepoError::Taken(_)
            | RepoError::OldVersionKept { .. } => ErrorKind::Io,
            RepoError::BadCredentials { .. } => ErrorKind::Key,
            RepoError::Elsewhere { .. }
            | RepoError::NotPlain { .. }
            | RepoError::BadName { .. }
            | RepoError::Missing(_)
            | RepoError::Outside { .. }
            | RepoError::Symlink(_)
            | RepoError::NotRegular(_)
            | RepoError::Linked { .. }
            | RepoError::NoSuchBucket { .. }
            | RepoError::NoObjectStore(_) => ErrorKind::Usage,
        }
    }
}

/// Checks a name from outside before it names an object: not empty, not `.` or `..`, no `/`,
/// no NUL, at most 255 bytes.
pub fn check_name(name: &str) -> Result<()> {
    let why = if name.is_empty() {
        "it is empty"
    } else if name == "." || name == ".." {
        "it is `.` or `..`"
    } else if name.contains('/') {
        "it holds `/`"
    } else if name.contains('\0') {
        "it holds NUL"
    } else if name.len() > 255 {
        "it is longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(RepoError::BadName {
        name: name.to_owned(),
        why,
    }
    .into())
}

/// How much of an object [`prelude`] reads at a time: more than a whole prelude (header,
/// header signature, two recipient slots) of any file pgseal writes, so it is one read.
pub const PRELUDE_READ: usize = 64 * 1024;

/// A reader of the object at `location` that fetches it by ranged reads, [`PRELUDE_READ`] at
/// a time: for what needs only a file's prelude. The first range is read now, so a location
/// that cannot be read is an error here, with its reason.
pub fn prelude<'a>(repo: &'a dyn Repository, location: &Location) -> Result<RangeReader<'a>> {
    let first = repo.read_at(location, 0, PRELUDE_READ)?;
    Ok(RangeReader {
        repo,
        location: location.clone(),
        offset: first.len() as u64,
        done: first.len() < PRELUDE_READ,
        buffer: first,
        at: 0,
    })
}

/// See [`prelude`].
pub struct RangeReader<'a> {
    repo: &'a dyn Repository,
    location: Location,
    /// Where the next range starts.
    offset: u64,
    /// Whether the object's end has been read.
    done: bool,
    buffer: Vec<u8>,
    at: usize,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.buffer.len() && !self.done {
            self.buffer = self
                .repo
                .read_at(&self.location, self.offset, PRELUDE_READ)
                .map_err(io::Error::other)?;
            self.at = 0;
            self.offset += self.buffer.len() as u64;
            self.done = self.buffer.len() < PRELUDE_READ;
        }
        let n = buf.len().min(self.buffer.len() - self.at);
        buf[..n].copy_from_slice(&self.buffer[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The repositories this process can reach, by location: the directories of this host (a
/// `file:` location naming this host) and, when the front end configured access to object
/// stores, every `s3:` location (a repository per bucket and prefix, sharing one
/// [`s3::S3Connection`]); other hosts' files and other schemes are out of reach.
#[derive(Debug, Clone)]
pub struct Reach {
    host: String,
    s3: Option<Arc<S3Access>>,
}

/// How a session reaches object stores: one [`s3::S3Connection`], made the first time an `s3:`
/// location is reached, from what the front end supplied — so a command that never touches an
/// object store never reads the AWS configuration (whose region lookup may ask the network).
pub struct S3Access {
    make: Box<dyn Fn() -> Result<Arc<s3::S3Connection>> + Send + Sync>,
    made: std::sync::Mutex<Option<Arc<s3::S3Connection>>>,
}

impl S3Access {
    /// Access through a connection `make` builds when it is first needed (and again after a
    /// failure, if asked again).
    pub fn lazy(
        make: impl Fn() -> Result<Arc<s3::S3Connection>> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(S3Access {
            make: Box::new(make),
            made: std::sync::Mutex::new(None),
        })
    }

    /// Access through a connection already made.
    pub fn ready(connection: Arc<s3::S3Connection>) -> Arc<Self> {
        Arc::new(S3Access {
            make: Box::new(|| {
                unreachable!("a ready connection is never made again: `made` holds it")
            }),
            made: std::sync::Mutex::new(Some(connection)),
        })
    }

    /// The connection, made now if it was not yet.
    pub fn connection(&self) -> Result<Arc<s3::S3Connection>> {
        // A poisoned lock only means a thread panicked while making the connection: the
        // `Option` inside is still either a finished connection or nothing.
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = made.as_ref() {
            return Ok(c.clone());
        }
        let c = (self.make)()?;
        *made = Some(c.clone());
        Ok(c)
    }
}

impl std::fmt::Debug for S3Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        f.debug_struct("S3Access").field("made", &*made).finish()
    }
}

impl Reach {
    /// Reaching from `host` (the name this host gives itself; see [`Location`]).
    pub fn new(host: impl Into<String>) -> Self {
        Reach {
            host: host.into(),
            s3: None,
        }
    }

    /// Also reaching object stores, through `connection`.
    pub fn with_s3(self, connection: Arc<s3::S3Connection>) -> Self {
        self.with_s3_access(S3Access::ready(connection))
    }

    /// Also reaching object stores, through `access` (its connection made when first needed).
    pub fn with_s3_access(mut self, access: Arc<S3Access>) -> Self {
        self.s3 = Some(access);
        self
    }

    /// This host's name, as locations spell it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether `location` is within reach: a file location naming this host, or an `s3:`
    /// location when object stores are reached.
    pub fn reaches(&self, location: &Location) -> bool {
        match location.scheme() {
            "file" => location.host() == self.host,
            "s3" => self.s3.is_some(),
            _ => false,
        }
    }

    /// The repository that holds `location`, opened — `Ok(None)` when it is out of reach
    /// (another host's, another scheme, an object store when none is reached). A location
    /// whose path is not plain is refused. An `s3:` location's repository is its bucket and
    /// the folder its key is in.
    pub fn repository_of(&self, location: &Location) -> Result<Option<Box<dyn Repository>>> {
        if !self.reaches(location) {
            return Ok(None);
        }
        if let Some(object) = location.s3_object() {
            let (bucket, key) = object.map_err(|e| RepoError::NotPlain {
                location: location.clone(),
                why: e.reason,
            })?;
            let prefix = key.rsplit_once('/').map_or("", |(folder, _)| folder);
            let connection = self
                .s3
                .as_ref()
                .expect("reaches() checked that object stores are reached")
                .connection()?;
            return Ok(Some(Box::new(s3::S3Repository::new(
                connection, &bucket, prefix,
            )?)));
        }
        let (dir, _) = local::plain_parts(location)?;
        Ok(Some(Box::new(local::LocalRepository::open(
            &dir, &self.host,
        )?)))
    }

    /// The location of the file at `path` on this host, after resolving symbolic links (a
    /// path given on a command line: the user's own links are followed).
    pub fn file(&self, path: &std::path::Path) -> Result<Location> {
        let real = std::fs::canonicalize(path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        Location::file(&self.host, &real).map_err(|e| Error::invalid(e.to_string()))
    }
}

/// What the session reaches: its host's directories, and object stores when the front end
/// gave it access ([`Session::with_s3`]) (see [`Reach`]). The host is the acting identity's
/// (the front end says where it runs); none is the empty name.
pub fn reach(session: &Session) -> Reach {
    let reach = Reach::new(session.actor().host.clone().unwrap_or_default());
    match session.s3() {
        Some(access) => reach.with_s3_access(access.clone()),
        None => reach,
    }
}

/// The site's repository: the one its URL names ([`Site::repository`](crate::Site)), else its
/// backup directory on the session's host.
pub fn site_repository(session: &Session) -> Result<Box<dyn Repository>> {
    let site = session.site()?;
    let reach = reach(session);
    match site.repository.as_deref() {
        None => Ok(Box::new(local::LocalRepository::open(
            &site.backup_dir,
            reach.host(),
        )?)),
        Some(url) => open_url(&reach, url, false),
    }
}

/// The repository `url` names: `file:///ABSOLUTE/DIR` (a directory on this host: no host, or
/// this host's name) or `s3://BUCKET/PREFIX` (the prefix may be empty). With `create`, a
/// directory that does not exist is made (mode 0700), as a backup needs.
pub fn open_url(reach: &Reach, url: &str, create: bool) -> Result<Box<dyn Repository>> {
    let bad = |why: &str| {
        Error::usage(format!(
            "{url:?} is not a repository URL: {why} (use file:///ABSOLUTE/DIR or \
             s3://BUCKET/PREFIX)"
        ))
    };
    if url.starts_with("s3://") {
        let access = reach
            .s3
            .as_ref()
            .ok_or_else(|| bad("this program has no access to object stores"))?;
        return Ok(Box::new(s3::S3Repository::from_url(
            access.connection()?,
            url,
        )?));
    }
    if !url.starts_with("file://") {
        return Err(bad("its scheme is neither file nor s3"));
    }
    let location = Location::parse(url).map_err(|e| bad(e.reason))?;
    let host = location.host();
    if !host.is_empty() && host != reach.host() {
        return Err(bad("it names another host"));
    }
    let segments = location.segments();
    if segments
        .iter()
        .any(|s| s == b"." || s == b".." || s.contains(&0))
    {
        return Err(bad("its path holds `.`, `..` or NUL"));
    }
    let dir = location
        .file_path()
        .filter(|p| p.is_absolute())
        .ok_or_else(|| bad("its path is not absolute"))?;
    let repository = if create {
        local::LocalRepository::create_dir(&dir, reach.host())?
    } else {
        local::LocalRepository::open(&dir, reach.host())?
    };
    Ok(Box::new(repository))
}

impl From<RepoError> for Error {
    fn from(e: RepoError) -> Self {
        Error::Repository(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_outside_are_checked() {
        assert!(check_name("shop_20260101T000000.000Z.pgseal").is_ok());
        for bad in ["", ".", "..", "a/b", "../x", "a\0b", &"x".repeat(256)] {
            assert!(
                matches!(
                    check_name(bad),
                    Err(Error::Repository(RepoError::BadName { .. }))
                ),
                "{bad:?}"
            );
        }
    }
}
