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

use std::sync::Arc;
use std::thread::JoinHandle;

use pgseal_ops::cancel;
pub use pgseal_ops::error::signal_name;
use signal_hook::SigId;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use crate::failure::{CliResult, Failure};

const SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

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
                signal_hook::flag::register_usize(
                    signal,
                    cancel::signal_flag().clone(),
                    signal as usize,
                )
                .map_err(failed)?,
            );
        }
        let mut signals = Signals::new(SIGNALS).map_err(failed)?;
        let handle = signals.handle();
        let thread = std::thread::spawn(move || {
            for signal in signals.forever() {
                if cancel::record(signal) {
                    eprintln!(
                        "pgseal: {} received: stopping, and removing what was created",
                        signal_name(signal)
                    );
                }
                cancel::stop_running_tools();
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
