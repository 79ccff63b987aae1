//! What an operation has to tell the person or program that asked for it while it runs:
//! warnings and progress. The operations print nothing; the front end's [`Observer`] decides
//! where this goes (the CLI: standard error and a progress line; a service: its log).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Receives what an operation reports while it runs.
pub trait Observer: Send + Sync {
    /// Something the user should know that does not stop the operation.
    fn warn(&self, message: &str);

    /// Something done besides what was asked that the user should hear of (a leftover
    /// cleaned up).
    fn note(&self, message: &str) {
        self.warn(message);
    }

    /// Something that went wrong besides the operation's own error (which the caller gets),
    /// such as an audit entry that could not be written.
    fn error(&self, message: &str) {
        self.warn(message);
    }

    /// One of several operations that go on past failures (a database of a backup of every
    /// database) failed, as `what` says ("backup of shop"); the caller's report holds the error
    /// too, so this is only for saying it as it happens.
    fn failed(&self, what: &str, error: &crate::Error) {
        self.error(&format!("{what} failed: {error}"));
    }

    /// What a tool that succeeded wrote on its standard error (its warnings), control
    /// characters escaped.
    fn tool_output(&self, tool: &str, text: &str) {
        self.warn(&format!("{tool}: {text}"));
    }

    /// A long transfer starts (`label`: what it is, e.g. a database's name); the counters
    /// advance as bytes (or, for [`Unit::Files`], files) are read and written, towards
    /// [`Progress::total`] when it is known, and the returned guard marks its end when dropped.
    /// The default shows nothing.
    fn transfer(&self, label: &str, progress: &Progress) -> Box<dyn Send> {
        let _ = (label, progress);
        Box::new(())
    }
}

/// An observer that drops everything (for tests and callers with nothing to show).
pub struct Silent;

impl Observer for Silent {
    fn warn(&self, _message: &str) {}
}

/// The counters of a transfer, shared with whoever displays them.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Read from the source so far.
    pub read: Counter,
    /// Written to the destination so far.
    pub written: Counter,
    /// What `read` will reach at the end, when known (a file's or object's size, the number of
    /// files); `None` for a stream of unknown length (pg_dump's output).
    pub total: Option<u64>,
    /// What is counted.
    pub unit: Unit,
}

/// What a [`Progress`] counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Unit {
    /// Bytes.
    #[default]
    Bytes,
    /// Whole files (a rewrap, which rewrites only each file's head).
    Files,
}

/// A shared, monotonically increasing byte count.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// The count now.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// A reader that counts what passes through it.
pub struct CountingReader<R> {
    /// The reader counted.
    pub inner: R,
    /// The count.
    pub counter: Counter,
}

impl<R: std::io::Read> std::io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.add(n as u64);
        Ok(n)
    }
}

/// A writer that counts what passes through it.
pub struct CountingWriter<W> {
    /// The writer counted.
    pub inner: W,
    /// The count.
    pub counter: Counter,
}

impl<W: std::io::Write> std::io::Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.counter.add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
