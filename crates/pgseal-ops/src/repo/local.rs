//! A repository in a directory on this host: the configured backup directory (or a
//! `backup --output-dir`).
//!
//! The directory is opened once, by its canonical path, and every lookup, rewrite and deletion
//! of a name goes through that descriptor (`openat`/`unlinkat`, never following a symbolic
//! link), so a renamed or replaced path cannot redirect them. Objects are the regular files
//! directly in it; new ones are written with [`AtomicFile`] (unnamed `O_TMPFILE` file, fsync,
//! link under a free name, fsync of the directory), so a failed or killed write leaves
//! nothing. A location is this repository's when it is a `file:` location naming this host
//! whose path is plain and names a file directly in the directory, by canonical path.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};

use pgseal_core::v2::Rewrap;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::{
    Listed, Listing, Location, NewObject, Object, RepoError, Repository, Unfinished, Version,
};
use crate::crashpoint;
use crate::error::{Error, Result};
use crate::files::{AtomicFile, sweep_replace_leftovers};

/// The name prefix of the hidden file a write uses where `O_TMPFILE` is unavailable
/// ([`AtomicFile`]): an unfinished write, not a backup.
pub const PARTIAL_PREFIX: &str = ".pgseal-partial-";

/// A directory of backups on this host (see the module docs).
#[derive(Debug)]
pub struct LocalRepository {
    /// The directory as configured (for messages).
    dir: PathBuf,
    /// This host's name, as its locations spell it.
    host: String,
    /// The canonical path and a descriptor of the directory, when it exists.
    open: Option<(PathBuf, OwnedFd)>,
}

/// A location's path split into its directory and its file's name, if it is plain: absolute,
/// no `.` or `..`, no name holding `/` or NUL, and a file named.
pub fn plain_parts(location: &Location) -> Result<(PathBuf, OsString)> {
    let refuse = |why| {
        Error::from(RepoError::NotPlain {
            location: location.clone(),
            why,
        })
    };
    let segments = location.segments();
    if !location.encoded_path().starts_with('/') {
        return Err(refuse("is not absolute"));
    }
    if segments.iter().any(|s| s == b"." || s == b"..") {
        return Err(refuse("holds `.` or `..`"));
    }
    if segments.iter().any(|s| s.contains(&b'/') || s.contains(&0)) {
        return Err(refuse("holds a name with `/` or NUL in it"));
    }
    let Some((name, dirs)) = segments.split_last().filter(|(name, _)| !name.is_empty()) else {
        return Err(refuse("names no file"));
    };
    let mut dir = PathBuf::from("/");
    for d in dirs.iter().filter(|d| !d.is_empty()) {
        dir.push(OsStr::from_bytes(d));
    }
    Ok((dir, OsString::from_vec(name.clone())))
}

impl LocalRepository {
    /// The directory `dir` on the host called `host`. One that does not exist is a repository
    /// that holds nothing (and that [`create`](Repository::create) refuses to write to:
    /// see [`LocalRepository::create_dir`]).
    pub fn open(dir: &Path, host: &str) -> Result<Self> {
        let context = || format!("opening the backup directory {}", dir.display());
        let canonical = match std::fs::canonicalize(dir) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(LocalRepository {
                    dir: dir.to_path_buf(),
                    host: host.to_owned(),
                    open: None,
                });
            }
            Err(e) => return Err(Error::io(context(), e)),
        };
        let fd = rustix::fs::open(
            &canonical,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(context(), e.into()))?;
        Ok(LocalRepository {
            dir: dir.to_path_buf(),
            host: host.to_owned(),
            open: Some((canonical, fd)),
        })
    }

    /// Like [`open`](Self::open), making the directory first (mode 0700, parents too) if it
    /// does not exist.
    pub fn create_dir(dir: &Path, host: &str) -> Result<Self> {
        if !dir.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        Self::open(dir, host)
    }

    /// The directory as configured.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory's canonical path, if it exists.
    pub fn canonical(&self) -> Option<&Path> {
        self.open.as_ref().map(|(p, _)| p.as_path())
    }

    fn fd(&self) -> Result<(&Path, &OwnedFd)> {
        self.open
            .as_ref()
            .map(|(p, fd)| (p.as_path(), fd))
            .ok_or_else(|| RepoError::Missing(self.dir.display().to_string()).into())
    }

    /// The location of `name` in the canonical directory.
    fn location_of(&self, dir: &Path, name: &OsStr) -> Result<Location> {
        Location::file(&self.host, &dir.join(name)).map_err(|e| Error::invalid(e.to_string()))
    }

    /// Whether `location` names this host's files at all.
    fn on_this_host(&self, location: &Location) -> bool {
        location.scheme() == "file" && location.host() == self.host
    }

    /// The name `location` gives a file of this directory: it must be on this host (else
    /// [`RepoError::Elsewhere`]), plain, and its directory this one (else
    /// [`RepoError::Outside`]). `Ok(None)`: nothing is there (checked before the directory, so
    /// a file that was deleted by hand, wherever it was, is simply gone).
    fn member(&self, location: &Location) -> Result<Option<OsString>> {
        if !self.on_this_host(location) {
            return Err(RepoError::Elsewhere {
                location: location.clone(),
                repository: self.describe(),
            }
            .into());
        }
        let (parent, name) = plain_parts(location)?;
        let path = parent.join(&name);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        }
        let (canonical, _) = self.fd()?;
        if parent != canonical {
            match std::fs::canonicalize(&parent) {
                Ok(p) if p == canonical => {}
                Ok(_) => {
                    return Err(RepoError::Outside {
                        location: location.clone(),
                        repository: self.describe(),
                    }
                    .into());
                }
                Err(e) => return Err(Error::io(format!("reading {}", parent.display()), e)),
            }
        }
        Ok(Some(name))
    }

    /// Opens the member `name` (never through a symbolic link), checking it is a regular file.
    /// `Ok(None)`: it is gone.
    fn open_name(
        &self,
        location: &Location,
        name: &OsStr,
        write: bool,
    ) -> Result<Option<(File, rustix::fs::Stat)>> {
        let (_, fd) = self.fd()?;
        let access = if write { OFlags::RDWR } else { OFlags::RDONLY };
        let file = match rustix::fs::openat(
            fd,
            name,
            access | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(f) => f,
            Err(rustix::io::Errno::LOOP) => {
                return Err(RepoError::Symlink(location.clone()).into());
            }
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => {
                return Err(Error::io(format!("opening {}", location.shown()), e.into()));
            }
        };
        let stat = rustix::fs::fstat(&file)
            .map_err(|e| Error::io(format!("reading {}", location.shown()), e.into()))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(RepoError::NotRegular(location.clone()).into());
        }
        Ok(Some((File::from(file), stat)))
    }

    /// Opens the object at `location` for rewriting, if it is still `expected`.
    fn open_for_rewrite(
        &self,
        location: &Location,
        expected: &Version,
    ) -> Result<(File, rustix::fs::Stat)> {
        let gone = || Error::from(RepoError::NotFound(location.clone()));
        let name = self.member(location)?.ok_or_else(gone)?;
        let (file, stat) = self.open_name(location, &name, true)?.ok_or_else(gone)?;
        if version(&stat) != *expected {
            return Err(RepoError::Changed(location.clone()).into());
        }
        Ok((file, stat))
    }
}

fn version(stat: &rustix::fs::Stat) -> Version {
    Version::new(format!("{}:{}", stat.st_dev, stat.st_ino))
}

impl Repository for LocalRepository {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn exists(&self) -> bool {
        self.open.is_some()
    }

    fn contains(&self, location: &Location) -> bool {
        let Some((canonical, _)) = &self.open else {
            return false;
        };
        if !self.on_this_host(location) {
            return false;
        }
        let Ok((parent, _)) = plain_parts(location) else {
            return false;
        };
        parent == *canonical || std::fs::canonicalize(&parent).is_ok_and(|p| p == *canonical)
    }

    fn location(&self, name: &str) -> Result<Location> {
        super::check_name(name)?;
        let dir = self.canonical().unwrap_or(&self.dir);
        let dir = std::path::absolute(dir)
            .map_err(|e| Error::io(format!("locating {}", self.dir.display()), e))?;
        self.location_of(&dir, OsStr::new(name))
    }

    fn create(&self, name: &str) -> Result<Box<dyn NewObject>> {
        super::check_name(name)?;
        let (canonical, _) = self.fd()?;
        // A taken name is not refused here: the commit picks a free variant, never replacing.
        let file = AtomicFile::create(&canonical.join(name), true)?;
        Ok(Box::new(NewFile {
            file,
            host: self.host.clone(),
        }))
    }

    fn open(&self, location: &Location) -> Result<Option<Object>> {
        let Some(name) = self.member(location)? else {
            return Ok(None);
        };
        let Some((file, stat)) = self.open_name(location, &name, false)? else {
            return Ok(None);
        };
        let (canonical, _) = self.fd()?;
        Ok(Some(Object::new(
            self.location_of(canonical, &name)?,
            stat.st_size as u64,
            version(&stat),
            Box::new(file),
        )))
    }

    fn read_at(&self, location: &Location, offset: u64, len: usize) -> Result<Vec<u8>> {
        let gone = || Error::from(RepoError::NotFound(location.clone()));
        let name = self.member(location)?.ok_or_else(gone)?;
        let (file, _) = self.open_name(location, &name, false)?.ok_or_else(gone)?;
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(format!("reading {}", location.shown()), e)),
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }

    fn apply_rewrap(&self, location: &Location, expected: &Version, plan: &Rewrap) -> Result<()> {
        let (mut file, _) = self.open_for_rewrite(location, expected)?;
        plan.apply(&mut file, |file, write| {
            crashpoint::reached(&format!("rewrap:{}:written", write.step.name()));
            file.sync_data()?;
            crashpoint::reached(&format!("rewrap:{}:durable", write.step.name()));
            Ok(())
        })
        .map_err(|e| Error::io(format!("writing {}", location.shown()), e))
    }

    fn replace_head(
        &self,
        location: &Location,
        expected: &Version,
        head: &[u8],
        keep_from: u64,
        wipe: std::ops::Range<u64>,
    ) -> Result<()> {
        let (mut file, stat) = self.open_for_rewrite(location, expected)?;
        let shown = location.shown();
        #[allow(
            clippy::unnecessary_cast,
            reason = "st_nlink is narrower on some targets"
        )]
        let links = stat.st_nlink as u64;
        if links > 1 {
            return Err(RepoError::Linked {
                location: location.clone(),
                links,
            }
            .into());
        }
        let (canonical, _) = self.fd()?;
        let (_, name) = plain_parts(location)?;
        let path = canonical.join(&name);
        sweep_replace_leftovers(&path)
            .map_err(|e| Error::io(format!("cleaning up beside {shown}"), e))?;
        let mut out = AtomicFile::create(&path, true)?;
        file.seek(SeekFrom::Start(keep_from))
            .and_then(|_| out.write_all(head))
            .and_then(|()| io::copy(&mut io::BufReader::new(&file), &mut out).map(|_| ()))
            .map_err(|e| Error::io(format!("rewriting {shown}"), e))?;
        crashpoint::reached("rewrap:legacy:copied");
        out.commit()?;
        crashpoint::reached("rewrap:legacy:replaced");
        // The replaced copy has no name now but may still sit on disk: zero what `wipe` names.
        let zeros = vec![0u8; (wipe.end - wipe.start) as usize];
        file.write_all_at(&zeros, wipe.start)
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io(format!("wiping the replaced {shown}"), e))
    }

    fn delete(&self, location: &Location, expected: Option<&Version>) -> Result<()> {
        let gone = || Error::from(RepoError::NotFound(location.clone()));
        let name = self.member(location)?.ok_or_else(gone)?;
        let (_, fd) = self.fd()?;
        let now = match rustix::fs::statat(fd, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(s) => s,
            Err(rustix::io::Errno::NOENT) => return Err(gone()),
            Err(e) => return Err(Error::io(format!("reading {}", location.shown()), e.into())),
        };
        if expected.is_some_and(|v| *v != version(&now)) {
            return Err(RepoError::Changed(location.clone()).into());
        }
        match rustix::fs::unlinkat(fd, &name, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::NOENT) => Err(gone()),
            Err(e) => Err(Error::io(
                format!("deleting {}", location.shown()),
                e.into(),
            )),
        }
    }

    fn list(&self) -> Result<Listing> {
        let Some((dir, _)) = &self.open else {
            return Ok(Listing::default());
        };
        let context = || format!("reading the backup directory {}", self.dir.display());
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(context(), e))? {
            let entry = entry.map_err(|e| Error::io(context(), e))?;
            let kind = entry.file_type().map_err(|e| Error::io(context(), e))?;
            let size = if kind.is_file() {
                entry.metadata().map_err(|e| Error::io(context(), e))?.len()
            } else {
                0
            };
            entries.push((entry.file_name(), kind, size));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut listing = Listing::default();
        for (name, kind, size) in entries {
            let location = self.location_of(dir, &name)?;
            if !kind.is_file() {
                listing.other.push(location);
            } else if name.as_bytes().starts_with(PARTIAL_PREFIX.as_bytes()) {
                listing.partial.push(location);
            } else {
                listing.objects.push(Listed { location, size });
            }
        }
        Ok(listing)
    }

    fn unfinished(&self) -> Result<Vec<Unfinished>> {
        let Some((dir, fd)) = &self.open else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for location in self.list()?.partial {
            let (_, name) = plain_parts(&location)?;
            let started = match rustix::fs::statat(fd, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => std::time::UNIX_EPOCH
                    .checked_add(std::time::Duration::from_secs(st.st_mtime.max(0) as u64)),
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => {
                    return Err(Error::io(
                        format!("reading {}", dir.join(&name).display()),
                        e.into(),
                    ));
                }
            };
            found.push(Unfinished {
                location,
                id: name.to_string_lossy().into_owned(),
                started,
            });
        }
        Ok(found)
    }

    fn discard(&self, unfinished: &Unfinished) -> Result<()> {
        let (_, fd) = self.fd()?;
        let Some(name) = self.member(&unfinished.location)? else {
            return Ok(());
        };
        // Only a hidden partial file is ever discarded here, whatever the caller names.
        if !name.as_bytes().starts_with(PARTIAL_PREFIX.as_bytes()) {
            return Err(RepoError::BadName {
                name: name.to_string_lossy().into_owned(),
                why: "it is not an unfinished write",
            }
            .into());
        }
        match rustix::fs::unlinkat(fd, &name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::io(
                format!("removing {}", unfinished.location.shown()),
                e.into(),
            )),
        }
    }
}

/// A backup being written into a local repository.
struct NewFile {
    file: AtomicFile,
    host: String,
}

impl Write for NewFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl NewObject for NewFile {
    fn commit(self: Box<Self>) -> Result<Location> {
        let path = self.file.commit_unique()?;
        Location::file(&self.host, &path).map_err(|e| Error::invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::repo::{Reach, prelude};

    fn repo() -> (tempfile::TempDir, LocalRepository) {
        let tmp = tempfile::tempdir().unwrap();
        let repo = LocalRepository::create_dir(&tmp.path().join("backups"), "db1").unwrap();
        (tmp, repo)
    }

    fn write(repo: &LocalRepository, name: &str, bytes: &[u8]) -> Location {
        let mut new = repo.create(name).unwrap();
        new.write_all(bytes).unwrap();
        new.commit().unwrap()
    }

    #[test]
    fn create_commit_list_open_read_at_delete() {
        let (_tmp, repo) = repo();
        let canonical = repo.canonical().unwrap().to_owned();
        let location = write(&repo, "shop_1.pgseal", b"0123456789");
        assert_eq!(
            location,
            Location::file("db1", &canonical.join("shop_1.pgseal")).unwrap()
        );
        assert!(location.as_str().starts_with("file://db1/"));
        assert_eq!(repo.location("shop_1.pgseal").unwrap(), location);
        assert!(repo.contains(&location));

        // The same name again is committed under a free variant, never over the first.
        let second = write(&repo, "shop_1.pgseal", b"abc");
        assert!(second.as_str().ends_with("/shop_1-2.pgseal"), "{second}");

        let listing = repo.list().unwrap();
        assert_eq!(
            listing.objects,
            vec![
                Listed {
                    location: second.clone(),
                    size: 3
                },
                Listed {
                    location: location.clone(),
                    size: 10
                },
            ]
        );
        assert!(listing.partial.is_empty() && listing.other.is_empty());

        let mut object = repo.open(&location).unwrap().unwrap();
        assert_eq!((object.size, &object.location), (10, &location));
        let mut all = Vec::new();
        object.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"0123456789");
        assert_eq!(repo.read_at(&location, 3, 4).unwrap(), b"3456");
        assert_eq!(repo.read_at(&location, 8, 100).unwrap(), b"89");
        let mut head = Vec::new();
        prelude(&repo, &location)
            .unwrap()
            .read_to_end(&mut head)
            .unwrap();
        assert_eq!(head, b"0123456789");

        repo.delete(&location, Some(&object.version)).unwrap();
        assert!(repo.open(&location).unwrap().is_none());
        assert!(matches!(
            repo.delete(&location, None),
            Err(Error::Repository(RepoError::NotFound(_)))
        ));
        assert_eq!(repo.list().unwrap().objects.len(), 1);
    }

    #[test]
    fn an_abandoned_write_leaves_nothing() {
        let (tmp, repo) = repo();
        let mut new = repo.create("shop_1.pgseal").unwrap();
        new.write_all(&[7; 100_000]).unwrap();
        drop(new);
        assert!(repo.list().unwrap().objects.is_empty());
        assert_eq!(
            std::fs::read_dir(tmp.path().join("backups"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn names_with_a_slash_or_dots_are_refused() {
        let (tmp, repo) = repo();
        for bad in ["../escape.pgseal", "a/b.pgseal", "..", ".", ""] {
            assert!(
                matches!(
                    repo.create(bad),
                    Err(Error::Repository(RepoError::BadName { .. }))
                ),
                "{bad:?}"
            );
        }
        assert!(!tmp.path().join("escape.pgseal").exists());
        // Locations whose path climbs out, or hides a `/` in a name, are refused too.
        let dir = repo.canonical().unwrap().to_owned();
        let climbing =
            Location::parse(&format!("file://db1{}/../backups/x.pgseal", dir.display())).unwrap();
        let hidden =
            Location::parse(&format!("file://db1{}/..%2Fx.pgseal", dir.display())).unwrap();
        for location in [climbing, hidden] {
            assert!(!repo.contains(&location), "{location}");
            assert!(
                matches!(
                    repo.open(&location),
                    Err(Error::Repository(RepoError::NotPlain { .. }))
                ),
                "{location}"
            );
        }
    }

    #[test]
    fn another_hosts_location_is_not_contained() {
        let (_tmp, repo) = repo();
        let mine = write(&repo, "shop_1.pgseal", b"x");
        let path = mine.file_path().unwrap();
        let theirs = Location::file("db2", &path).unwrap();
        assert!(repo.contains(&mine));
        assert!(!repo.contains(&theirs));
        assert!(matches!(
            repo.open(&theirs),
            Err(Error::Repository(RepoError::Elsewhere { .. }))
        ));
        assert!(matches!(
            repo.delete(&theirs, None),
            Err(Error::Repository(RepoError::Elsewhere { .. }))
        ));
        assert!(path.exists());
        assert!(Reach::new("db1").repository_of(&mine).unwrap().is_some());
        assert!(Reach::new("db1").repository_of(&theirs).unwrap().is_none());
    }

    #[test]
    fn a_file_outside_the_directory_is_outside_and_a_symlink_is_refused() {
        let (tmp, repo) = repo();
        let outside = tmp.path().join("passwd");
        std::fs::write(&outside, "root").unwrap();
        let outside = Location::file("db1", &std::fs::canonicalize(&outside).unwrap()).unwrap();
        assert!(!repo.contains(&outside));
        assert!(matches!(
            repo.delete(&outside, None),
            Err(Error::Repository(RepoError::Outside { .. }))
        ));
        let link = repo.canonical().unwrap().join("link.pgseal");
        std::os::unix::fs::symlink(outside.file_path().unwrap(), &link).unwrap();
        let link = Location::file("db1", &link).unwrap();
        assert!(matches!(
            repo.open(&link),
            Err(Error::Repository(RepoError::Symlink(_)))
        ));
        assert_eq!(repo.list().unwrap().other, vec![link]);
        assert!(outside.file_path().unwrap().exists());
    }

    #[test]
    fn a_deletion_refuses_a_file_replaced_since_it_was_checked() {
        let (_tmp, repo) = repo();
        let location = write(&repo, "shop_1.pgseal", b"checked");
        let checked = repo.open(&location).unwrap().unwrap().version;
        let path = location.file_path().unwrap();
        // Another file takes the name (made while the first still exists: another inode).
        let other = path.with_extension("other");
        std::fs::write(&other, b"swapped in").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert!(matches!(
            repo.delete(&location, Some(&checked)),
            Err(Error::Repository(RepoError::Changed(_)))
        ));
        assert!(path.exists());
    }
}
