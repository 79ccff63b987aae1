//! Stopping cleanly when asked to: SIGINT (Ctrl-C), SIGTERM (`kill`, systemd), SIGHUP (a lost
//! SSH session).
//!
//! A command that changes a database (`restore`) holds a [`Guard`] while it does; it takes it
//! once its keys are unlocked, so a Ctrl-C at a password prompt still simply ends pgseal. Under
//! the guard a signal is recorded, not fatal: a watcher thread stops every PostgreSQL tool
//! running (SIGTERM — pg_restore then cancels its query on the server and stops its parallel
//! workers — and SIGKILL five seconds later if it is still there); the command sees its tool
//! fail, removes what it created, and ends with an "interrupted" failure that is audited like
//! any other and exits with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM, 129 for
//! SIGHUP). Signals during that cleanup stop the cleanup's own tools too.
//!
//! The tools share pgseal's process group (so that they can still ask on the terminal, as
//! libpq does for an encrypted SSL key's passphrase): a Ctrl-C on the terminal reaches them
//! too, and the signal is recorded the moment it arrives, so that the tool's failure is always
//! read as the interruption it is. They die with pgseal when it is killed outright (`pgtools`).

use std::io::{self, Write};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::process::{Pid, Signal};
use signal_hook::SigId;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use crate::failure::{CliResult, ExitCode, Failure};

/// How long a tool has to go after SIGTERM before it gets SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

const SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// The first signal received under a guard, as the watcher saw it (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// The latest signal received under a guard, set by the signal handler itself (0: none).
fn delivered() -> &'static Arc<AtomicUsize> {
    static DELIVERED: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    DELIVERED.get_or_init(|| Arc::new(AtomicUsize::new(0)))
}

/// The tools running now.
static RUNNING: Mutex<Vec<Pid>> = Mutex::new(Vec::new());

/// Signals are handled (recorded, tools stopped) while this lives.
pub struct Guard {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
    flags: Vec<SigId>,
}

impl Guard {
    pub fn install() -> CliResult<Guard> {
        let failed = |e| Failure::io("installing the signal handlers", e);
        let mut flags = Vec::new();
        for signal in SIGNALS {
            flags.push(
                signal_hook::flag::register_usize(signal, delivered().clone(), signal as usize)
                    .map_err(failed)?,
            );
        }
        let mut signals = Signals::new(SIGNALS).map_err(failed)?;
        let handle = signals.handle();
        let thread = std::thread::spawn(move || {
            for signal in signals.forever() {
                let first = RECEIVED
                    .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok();
                if first {
                    eprintln!(
                        "pgseal: {} received: stopping, and removing what was created",
                        signal_name(signal)
                    );
                }
                stop_running_tools();
            }
        });
        Ok(Guard {
            handle,
            thread: Some(thread),
            flags,
        })
    }
}

impl Drop for Guard {
    /// Stops handling signals: from now on they end pgseal as by default.
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for id in self.flags.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        // signal-hook leaves a signal without actions ignored; this restores termination.
        let always = Arc::new(std::sync::atomic::AtomicBool::new(true));
        for signal in SIGNALS {
            let _ = signal_hook::flag::register_conditional_default(signal, always.clone());
        }
    }
}

/// SIGTERM to every running tool; SIGKILL to those still registered after [`GRACE`]. A tool is
/// registered until it has been waited for (not yet reaped), so its process id cannot have been
/// reused by another process.
fn stop_running_tools() {
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
pub fn register(pid: Pid) {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
}

/// Forgets a tool that has exited; call before reaping it.
pub fn deregister(pid: Pid) {
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid);
}

/// The first signal received under a guard, if any (else one the handler has just recorded
/// and the watcher not yet seen).
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => match delivered().load(Ordering::SeqCst) {
            0 => None,
            s => i32::try_from(s).ok(),
        },
        s => Some(s),
    }
}

/// Fails with the interruption if a signal has been received: a checkpoint between steps.
pub fn check(what: &str) -> CliResult {
    match received() {
        Some(signal) => Err(interrupted(signal, what)),
        None => Ok(()),
    }
}

/// After a signal, a failure is the interruption's (a tool stopped by the watcher fails with
/// its own, less useful, message): `what` says what was stopped.
pub fn overrule<T>(result: CliResult<T>, what: impl FnOnce() -> String) -> CliResult<T> {
    match (result, received()) {
        (Err(_), Some(signal)) => Err(interrupted(signal, &what())),
        (result, _) => result,
    }
}

/// The failure for an interruption: exit 128 + the signal's number.
pub fn interrupted(signal: i32, what: &str) -> Failure {
    let code = match signal {
        SIGHUP => ExitCode::Hangup,
        SIGTERM => ExitCode::Terminated,
        _ => ExitCode::Interrupted,
    };
    Failure::new(
        code,
        format!("interrupted by {}: {what}", signal_name(signal)),
    )
}

pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
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
