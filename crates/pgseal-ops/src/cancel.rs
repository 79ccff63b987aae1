//! Stopping cleanly when asked to: the operations' side of signal handling.
//!
//! A front end that wants an operation to stop (pgseal's CLI on SIGINT, SIGTERM or SIGHUP while
//! a restore changes a database) calls [`interrupt`]: the signal is recorded, and every
//! PostgreSQL tool running is stopped (SIGTERM — pg_restore then cancels its query on the
//! server — and SIGKILL after [`GRACE`] if it is still there). The operation sees its tool
//! fail, [`overrule`]s that failure with the interruption, removes what it created, and ends
//! with [`Error::Interrupted`], which it audits like any other failure. Long work that runs no
//! tool checks [`check`] between steps, or writes through [`Checked`].
//!
//! Signals are per process, so this state is too.

use std::io::{self, Write};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustix::process::{Pid, Signal};

use crate::error::{Error, Result, signal_name};

/// How long a tool has to go after SIGTERM before it gets SIGKILL.
pub const GRACE: Duration = Duration::from_secs(5);

/// The first signal [`record`] recorded (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// The tools running now.
static RUNNING: Mutex<Vec<Pid>> = Mutex::new(Vec::new());

/// A flag a signal handler may set to the signal's number at once (async-signal-safe), before
/// the front end's watcher gets to call [`record`]: so that a tool's failure is read as the
/// interruption even in that instant.
pub fn signal_flag() -> &'static Arc<AtomicUsize> {
    static DELIVERED: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    DELIVERED.get_or_init(|| Arc::new(AtomicUsize::new(0)))
}

/// Records `signal`; the first one recorded counts. Returns whether this was the first.
pub fn record(signal: i32) -> bool {
    RECEIVED
        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
}

/// SIGTERM to every running tool; SIGKILL to those still registered after [`GRACE`]. A tool is
/// registered until it has been waited for (not yet reaped), so its process id cannot have been
/// reused by another process. Blocks up to [`GRACE`]: call it from a watcher thread, not from a
/// signal handler.
pub fn stop_running_tools() {
    let targets: Vec<Pid> = {
        let running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        for pid in running.iter() {
            let _ = rustix::process::kill_process(*pid, Signal::TERM);
        }
        running.clone()
    };
    let step = Duration::from_millis(100);
    let mut waited = Duration::ZERO;
    while waited < GRACE {
        std::thread::sleep(step);
        waited += step;
        let running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        if !targets.iter().any(|p| running.contains(p)) {
            return;
        }
    }
    let running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    for pid in targets.iter().filter(|p| running.contains(p)) {
        let _ = rustix::process::kill_process(*pid, Signal::KILL);
    }
}

/// Registers a tool that has just started.
pub(crate) fn register(pid: Pid) {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
}

/// Forgets a tool that has exited; call before reaping it.
pub(crate) fn deregister(pid: Pid) {
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid);
}

/// The first signal received, if any (else one a handler has just flagged and the watcher not
/// yet recorded).
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => match signal_flag().load(Ordering::SeqCst) {
            0 => None,
            s => i32::try_from(s).ok(),
        },
        s => Some(s),
    }
}

/// Fails with the interruption if a signal has been received: a checkpoint between steps.
pub fn check(what: &str) -> Result<()> {
    match received() {
        Some(signal) => Err(interrupted(signal, what)),
        None => Ok(()),
    }
}

/// After a signal, a failure is the interruption's (a tool stopped by [`stop_running_tools`] fails with
/// its own, less useful, message): `what` says what was stopped.
pub fn overrule<T>(result: Result<T>, what: impl FnOnce() -> String) -> Result<T> {
    match (result, received()) {
        (Err(_), Some(signal)) => Err(interrupted(signal, &what())),
        (result, _) => result,
    }
}

/// The error for an interruption.
pub fn interrupted(signal: i32, what: &str) -> Error {
    Error::Interrupted {
        signal,
        during: what.to_owned(),
    }
}

/// A writer that fails once a signal has been received, so long work that runs no tool (a
/// verification pass, the private copy for `--jobs`) stops promptly too.
pub struct Checked<W>(pub W);

impl<W: Write> Write for Checked<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(signal) = received() {
            return Err(io::Error::other(format!(
                "interrupted by {}",
                signal_name(signal)
            )));
        }
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
