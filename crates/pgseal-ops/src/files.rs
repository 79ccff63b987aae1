//! Where bytes come from and go to: files, standard streams, and the atomic output file.
//!
//! Output to a path is written into an *unnamed* temporary file in the target's directory
//! (`O_TMPFILE`), fsynced, and linked into place only on success. A failure, a signal or
//! `kill -9` leaves nothing at the target and no stray file: the kernel frees an unnamed file with
//! its last descriptor. Where `O_TMPFILE` is unavailable a hidden named temporary file is used,
//! removed on any failure the process survives.
//!
//! Only regular files are ever replaced (`--force`). A FIFO or a character device named as the
//! output is written to as it is, like `cat > /dev/null` — a stream, as `-o -` is; a directory,
//! a socket or a block device is refused, and so is the input file itself (by any path or hard
//! link), all before any work is done.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A source of bytes: a file or standard input, with the first bytes already peeked.
pub struct Input {
    /// What to call it in messages.
    pub name: String,
    /// The file's size, when it is a regular file.
    pub len: Option<u64>,
    /// The path, when it is a file.
    pub path: Option<PathBuf>,
    /// Device and inode, when the input is a regular file (standard input redirected from one
    /// included): an output naming the same file is refused.
    pub id: Option<(u64, u64)>,
    reader: Box<dyn Read + Send>,
    /// The bytes read from the source so far (peeked ones once).
    consumed: crate::observe::Counter,
}

/// `reader`, counting what is read from it into a new counter.
fn counted(reader: impl Read + Send + 'static) -> (Box<dyn Read + Send>, crate::observe::Counter) {
    let counter = crate::observe::Counter::default();
    let reader = crate::observe::CountingReader {
        inner: reader,
        counter: counter.clone(),
    };
    (Box::new(reader), counter)
}

/// Device and inode of a regular file.
fn regular_id(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    meta.is_file().then(|| (meta.dev(), meta.ino()))
}

impl Input {
    /// Opens `spec`: a path, or `-` for standard input.
    pub fn open(spec: &str) -> Result<Self> {
        if spec == "-" {
            let id = io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .ok()
                .and_then(|fd| File::from(fd).metadata().ok())
                .and_then(|m| regular_id(&m));
            let (reader, consumed) = counted(io::stdin());
            return Ok(Input {
                name: "standard input".into(),
                len: None,
                path: None,
                id,
                reader,
                consumed,
            });
        }
        let file = File::open(spec).map_err(|e| Error::io(format!("opening {spec}"), e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("reading {spec}"), e))?;
        if meta.is_dir() {
            return Err(Error::usage(format!("{spec} is a directory")));
        }
        let (reader, consumed) = counted(BufReader::with_capacity(256 * 1024, file));
        Ok(Input {
            name: spec.to_owned(),
            len: meta.is_file().then_some(meta.len()),
            path: Some(PathBuf::from(spec)),
            id: regular_id(&meta),
            reader,
            consumed,
        })
    }

    /// Opens `spec` as [`open`](Self::open) does, but an `s3://BUCKET/KEY` location is opened
    /// in its repository, streamed (when `reach` reaches object stores; else refused with
    /// [`RepoError::NoObjectStore`](crate::repo::RepoError::NoObjectStore)).
    pub fn open_in(reach: &crate::repo::Reach, spec: &str) -> Result<Self> {
        use crate::repo::{Location, RepoError};
        if !spec.starts_with("s3://") {
            return Self::open(spec);
        }
        let location = Location::parse(spec).map_err(|e| Error::usage(e.to_string()))?;
        let repository = reach
            .repository_of(&location)?
            .ok_or_else(|| Error::from(RepoError::NoObjectStore(location.clone())))?;
        let object = repository
            .open(&location)?
            .ok_or_else(|| Error::from(RepoError::NotFound(location.clone())))?;
        Ok(Self::object(spec.to_owned(), object))
    }

    /// A repository's object, called `name` in messages.
    pub fn object(name: String, object: crate::repo::Object) -> Self {
        let len = Some(object.size);
        let (reader, consumed) = counted(BufReader::with_capacity(256 * 1024, object));
        Input {
            name,
            len,
            path: None,
            id: None,
            reader,
            consumed,
        }
    }

    /// Shows the reading of this input as a transfer called `label` (its total the input's
    /// size, when known) until the returned guard is dropped.
    pub fn watch(&self, observer: &dyn crate::observe::Observer, label: &str) -> Box<dyn Send> {
        let progress = crate::observe::Progress {
            read: self.consumed.clone(),
            total: self.len,
            ..Default::default()
        };
        observer.transfer(label, &progress)
    }

    /// Reads up to `n` bytes from the start and puts them back: returns them, and the input
    /// continues from the beginning.
    pub fn peek(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut prefix = Vec::with_capacity(n);
        (&mut self.reader)
            .take(n as u64)
            .read_to_end(&mut prefix)
            .map_err(|e| Error::io(format!("reading {}", self.name), e))?;
        let rest = std::mem::replace(&mut self.reader, Box::new(io::empty()));
        self.reader = Box::new(Cursor::new(prefix.clone()).chain(rest));
        Ok(prefix)
    }

    /// The file name without directories, if the input is a file.
    pub fn file_name(&self) -> Option<String> {
        self.path
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

/// What an output path names now, once [`check_output`] has accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Nothing: a new file will appear.
    New,
    /// A regular file (or a symbolic link), replaced atomically (`--force` was given).
    Replace,
    /// A FIFO or a character device: written to as it is, never replaced.
    Stream,
}

/// Checks an output path before any work: a directory, a socket, a block device or the input
/// file itself (`input`, by device and inode: any path, any hard link) is refused; an existing
/// regular file is refused unless `force`; a FIFO or character device is accepted as a stream.
pub fn check_output(path: &Path, force: bool, input: Option<&Input>) -> Result<Target> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        // A dangling symbolic link is replaced like a file; nothing at all is new.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return match path.symlink_metadata() {
                Ok(_) if !force => Err(exists(path)),
                Ok(_) => Ok(Target::Replace),
                Err(_) => Ok(Target::New),
            };
        }
        Err(e) => return Err(Error::io(format!("checking {shown}"), e)),
    };
    let ft = meta.file_type();
    if ft.is_dir() {
        return Err(Error::usage(format!(
            "{shown} is a directory: name a file (in it, or elsewhere) as the output"
        )));
    }
    if ft.is_fifo() || ft.is_char_device() {
        return Ok(Target::Stream);
    }
    if ft.is_socket() || ft.is_block_device() {
        let what = if ft.is_socket() {
            "a socket"
        } else {
            "a block device"
        };
        return Err(Error::usage(format!(
            "{shown} is {what}: pgseal writes only to regular files, FIFOs and character \
             devices, and replaces only regular files"
        )));
    }
    if !ft.is_file() {
        return Err(Error::usage(format!(
            "{shown} is not a regular file: pgseal replaces only regular files"
        )));
    }
    if let Some(input) = input
        && input.id.is_some()
        && input.id == regular_id(&meta)
    {
        return Err(Error::usage(format!(
            "{shown} is the input file ({}) itself: write the output elsewhere",
            input.name
        )));
    }
    if !force {
        return Err(exists(path));
    }
    Ok(Target::Replace)
}

/// Checks where key files are about to be written, before any slow key generation: fails if
/// any of `paths` exists, unless `force` and it is a regular file. Key files are only ever
/// regular files, never a FIFO or a device.
pub fn refuse_existing(paths: &[&Path], force: bool) -> Result<()> {
    for p in paths {
        if check_output(p, force, None)? == Target::Stream {
            return Err(Error::usage(format!(
                "{} is a FIFO or device, not a regular file; a key file is not written there",
                p.display()
            )));
        }
    }
    Ok(())
}

fn exists(path: &Path) -> Error {
    Error::Exists(path.to_path_buf())
}

/// Where a command's main output goes.
pub enum Output {
    /// Standard output, unbuffered: a duplicate of descriptor 1, so large writes go out whole
    /// (Rust's `Stdout` is line-buffered and would split binary data at newline bytes).
    Stdout(File),
    /// A FIFO or character device named as the output, written to as it is.
    Stream(File),
    /// A file at a path, appearing only when committed.
    File(AtomicFile),
}

impl Output {
    /// `-` is standard output; anything else a path (see [`Output::create_path`]).
    pub fn create(spec: &str, force: bool, input: Option<&Input>) -> Result<Self> {
        if spec == "-" {
            let fd = io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| Error::io("opening standard output", e))?;
            Ok(Output::Stdout(File::from(fd)))
        } else {
            Self::create_path(Path::new(spec), force, input)
        }
    }

    /// An atomic file at `path` (an existing regular file only replaced with `force`), or, when
    /// `path` is a FIFO or character device, that stream; everything [`check_output`] refuses
    /// is refused. Opening a FIFO waits for its reader, as `cat > FIFO` does.
    pub fn create_path(path: &Path, force: bool, input: Option<&Input>) -> Result<Self> {
        match check_output(path, force, input)? {
            Target::Stream => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
                    .open(path)
                    .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
                let ft = file
                    .metadata()
                    .map_err(|e| Error::io(format!("opening {}", path.display()), e))?
                    .file_type();
                if !(ft.is_fifo() || ft.is_char_device()) {
                    return Err(Error::usage(format!(
                        "{} changed while being opened; nothing was written",
                        path.display()
                    )));
                }
                Ok(Output::Stream(file))
            }
            Target::New | Target::Replace => Ok(Output::File(AtomicFile::create(path, force)?)),
        }
    }

    /// Makes the output final: links the file into place, or flushes the stream.
    pub fn commit(self) -> Result<()> {
        match self {
            Output::Stdout(mut s) => s
                .flush()
                .map_err(|e| Error::io("writing standard output", e)),
            Output::Stream(mut s) => s.flush().map_err(|e| Error::io("writing the output", e)),
            Output::File(f) => f.commit(),
        }
    }

    /// Whether this is standard output.
    pub fn is_stdout(&self) -> bool {
        matches!(self, Output::Stdout(_))
    }

    /// Whether the output appears only when committed (a file). Streams (standard output, a
    /// FIFO, a device) release every byte as it is written.
    pub fn is_atomic(&self) -> bool {
        matches!(self, Output::File(_))
    }

    /// The permission bits a file output gets when committed (streams keep theirs).
    pub fn set_mode(&mut self, mode: u32) {
        if let Output::File(f) = self {
            f.set_mode(mode);
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Stdout(s) | Output::Stream(s) => s.write(buf),
            Output::File(f) => f.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(s) | Output::Stream(s) => s.write_all(buf),
            Output::File(f) => f.file.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(s) | Output::Stream(s) => s.flush(),
            Output::File(f) => f.flush(),
        }
    }
}

/// A file that appears at its path only when [`AtomicFile::commit`] succeeds, mode 0600.
pub struct AtomicFile {
    file: File,
    target: PathBuf,
    force: bool,
    /// `None` for an unnamed (`O_TMPFILE`) file; the temporary path otherwise.
    named: Option<tempfile::TempPath>,
    mode: u32,
}

impl AtomicFile {
    /// A new file for `target`: refused if something exists there, unless it is a regular file
    /// (or a symbolic link) and `force` — never a directory, FIFO, device or socket.
    pub fn create(target: &Path, force: bool) -> Result<Self> {
        if check_output(target, force, None)? == Target::Stream {
            return Err(Error::usage(format!(
                "{} is a FIFO or device, not a regular file; it is not replaced",
                target.display()
            )));
        }
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let create_err = |e: io::Error| Error::io(format!("creating {}", target.display()), e);
        match rustix::fs::openat(
            rustix::fs::CWD,
            &dir,
            rustix::fs::OFlags::TMPFILE | rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => Ok(AtomicFile {
                file: File::from(fd),
                target: target.to_path_buf(),
                force,
                named: None,
                mode: 0o600,
            }),
            Err(
                rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR | rustix::io::Errno::INVAL,
            ) => {
                let tmp = tempfile::Builder::new()
                    .prefix(".pgseal-partial-")
                    .permissions(std::fs::Permissions::from_mode(0o600))
                    .tempfile_in(&dir)
                    .map_err(create_err)?;
                let (file, path) = tmp.into_parts();
                Ok(AtomicFile {
                    file,
                    target: target.to_path_buf(),
                    force,
                    named: Some(path),
                    mode: 0o600,
                })
            }
            Err(e) => Err(create_err(e.into())),
        }
    }

    /// The permission bits the file gets when committed (0600 unless changed).
    pub fn set_mode(&mut self, mode: u32) {
        self.mode = mode;
    }

    /// Flushes, fsyncs and moves the file into place, then fsyncs the directory.
    pub fn commit(mut self) -> Result<()> {
        let target = self.target.clone();
        self.commit_to(&target)
            .map_err(|e| Error::io(format!("finishing {}", target.display()), e))
    }

    /// Like [`commit`](Self::commit), but never replaces anything: if the name is taken (two
    /// backups in the same millisecond), `-2`, `-3`… is added before the extension. Returns the
    /// path used.
    pub fn commit_unique(mut self) -> Result<PathBuf> {
        self.force = false;
        let target = self.target.clone();
        let stem = target
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = target
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        for n in 1..1000 {
            let candidate = if n == 1 {
                target.clone()
            } else {
                target.with_file_name(format!("{stem}-{n}{ext}"))
            };
            match self.commit_to(&candidate) {
                Ok(()) => return Ok(candidate),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(Error::io(format!("finishing {}", candidate.display()), e));
                }
            }
        }
        Err(Error::usage(format!(
            "no free name for {}",
            target.display()
        )))
    }

    fn commit_to(&mut self, target: &Path) -> io::Result<()> {
        // Whatever appeared there meanwhile is replaced only if it is a regular file or link.
        if let Ok(meta) = target.symlink_metadata()
            && !(meta.is_file() || meta.file_type().is_symlink())
        {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "something other than a regular file appeared there while writing; not replaced",
            ));
        }
        self.file.flush()?;
        if self.mode != 0o600 {
            self.file
                .set_permissions(std::fs::Permissions::from_mode(self.mode))?;
        }
        self.file.sync_all()?;
        self.target = target.to_path_buf();
        match self.named.take() {
            None => self.link_unnamed()?,
            Some(path) => {
                let result = if self.force {
                    path.persist(target).map_err(|e| (e.error, None))
                } else {
                    path.persist_noclobber(target)
                        .map_err(|e| (e.error, Some(e.path)))
                };
                if let Err((e, back)) = result {
                    self.named = back;
                    return Err(e);
                }
            }
        }
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        File::open(&dir).and_then(|d| d.sync_all())
    }

    fn link_unnamed(&self) -> io::Result<()> {
        let proc_path = format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&self.file)
        );
        let link = |to: &Path| -> io::Result<()> {
            match rustix::fs::linkat(
                rustix::fs::CWD,
                proc_path.as_str(),
                rustix::fs::CWD,
                to,
                rustix::fs::AtFlags::SYMLINK_FOLLOW,
            ) {
                Ok(()) => Ok(()),
                // Without /proc, linking by descriptor needs CAP_DAC_READ_SEARCH; try it.
                Err(rustix::io::Errno::NOENT) if !Path::new("/proc/self/fd").exists() => {
                    rustix::fs::linkat(
                        self.file.as_fd(),
                        "",
                        rustix::fs::CWD,
                        to,
                        rustix::fs::AtFlags::EMPTY_PATH,
                    )
                    .map_err(io::Error::from)
                }
                Err(e) => Err(e.into()),
            }
        };
        if !self.force {
            return link(&self.target).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    io::Error::new(e.kind(), "the target appeared while writing; not replaced")
                } else {
                    e
                }
            });
        }
        // Replacing: link under a hidden name, then rename over the target atomically.
        let hidden = hidden_name(&self.target, std::process::id());
        link(&hidden)?;
        crate::crashpoint::reached("replace:linked");
        std::fs::rename(&hidden, &self.target).inspect_err(|_| {
            let _ = std::fs::remove_file(&hidden);
        })
    }
}

/// The name a replacing commit links its new file under for an instant, before renaming it over
/// `target`: a process killed in that instant leaves it behind.
fn hidden_name(target: &Path, pid: u32) -> PathBuf {
    let mut hidden = target.as_os_str().to_owned();
    hidden.push(format!(".pgseal-{pid}"));
    PathBuf::from(hidden)
}

/// Removes what replacing `target` left behind when a pgseal process was killed between linking
/// its new file under [`hidden_name`] and renaming it into place: such names of processes that
/// no longer run. Returns the names removed.
pub fn sweep_replace_leftovers(target: &Path) -> io::Result<Vec<PathBuf>> {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return Ok(Vec::new());
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.pgseal-", name.to_string_lossy());
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let running = Path::new(&format!("/proc/{pid}")).exists();
        if !running && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The permission bits of a private key file that others may read (`None` when only its owner
/// can): the caller warns.
pub fn exposed_mode(path: &Path) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then_some(mode & 0o777)
}

/// An unnamed scratch file in the system temporary directory: for spooling *ciphertext* when a
/// format needs two passes or a seek and the output is a pipe. Gone when dropped.
pub fn scratch_file(dir: &Path) -> Result<File> {
    tempfile::tempfile_in(dir).map_err(|e| Error::io("creating a scratch file", e))
}

impl io::Seek for AtomicFile {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

/// A reader that copies everything it reads into a writer (for spooling while processing).
pub struct Tee<R, W> {
    /// Where the bytes come from.
    pub reader: R,
    /// Where a copy of them goes.
    pub copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Passes bytes through to `inner` except the last `limit`, which it keeps until
/// [`release`](Holdback::release). A consumer that cannot finish without the end of its input
/// (pg_restore, which commits only after the archive's last bytes) thus never finishes on data
/// that has not been fully verified; dropping a `Holdback` discards the held bytes.
pub struct Holdback<W: Write> {
    inner: W,
    held: std::collections::VecDeque<u8>,
    limit: usize,
}

impl<W: Write> Holdback<W> {
    /// Holds back the last `limit` bytes written to `inner`.
    pub fn new(inner: W, limit: usize) -> Self {
        Holdback {
            inner,
            held: std::collections::VecDeque::with_capacity(limit * 2),
            limit,
        }
    }

    /// Writes the held bytes and returns the inner writer.
    pub fn release(mut self) -> io::Result<W> {
        let (a, b) = self.held.as_slices();
        self.inner.write_all(a)?;
        self.inner.write_all(b)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Holdback<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.held.extend(buf);
        if self.held.len() > self.limit {
            let excess = self.held.len() - self.limit;
            let (a, b) = self.held.as_slices();
            let from_a = excess.min(a.len());
            self.inner.write_all(&a[..from_a])?;
            self.inner.write_all(&b[..excess - from_a])?;
            self.held.drain(..excess);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Held bytes stay held: flushing must not release unverified data.
        self.inner.flush()
    }
}

/// A private scratch file that another process (pg_restore) can open by path. Where the
/// filesystem allows, it has no name at all — the path is `/proc/PID/fd/N` of our descriptor —
/// so it disappears with us even after `kill -9`; otherwise it is a 0600 file in a 0700
/// directory, removed when dropped.
pub struct PrivateScratch {
    file: File,
    path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl PrivateScratch {
    /// A new scratch file, in `tmp`.
    pub fn create(tmp: &Path) -> Result<Self> {
        if let Ok(fd) = rustix::fs::openat(
            rustix::fs::CWD,
            tmp,
            rustix::fs::OFlags::TMPFILE | rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::from_raw_mode(0o600),
        ) {
            let file = File::from(fd);
            let path = PathBuf::from(format!(
                "/proc/{}/fd/{}",
                std::process::id(),
                std::os::fd::AsRawFd::as_raw_fd(&file)
            ));
            if path.exists() {
                return Ok(PrivateScratch {
                    file,
                    path,
                    _dir: None,
                });
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("pgseal-restore-")
            .tempdir_in(tmp)
            .map_err(|e| Error::io("creating a private temporary directory", e))?;
        let path = dir.path().join("archive.dump");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io("creating the temporary archive", e))?;
        Ok(PrivateScratch {
            file,
            path,
            _dir: Some(dir),
        })
    }

    /// A handle for writing (shares the descriptor's offset).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The path another process opens it by.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
