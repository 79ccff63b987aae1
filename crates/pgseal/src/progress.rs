//! A one-line progress report on a terminal: bytes in, bytes out, rate, elapsed.
//!
//! The operations count bytes into shared counters ([`Observer::transfer`]); a background
//! thread redraws the line twice a second. Nothing is drawn when standard error is not a terminal (logs stay clean).

use std::io::{self, IsTerminal};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pgseal_ops::observe::{Observer, Progress as Counters};

/// What the operations report, shown on standard error: warnings as `pgseal: warning: ...`,
/// tools' own warnings as they wrote them, transfers as a progress line on a terminal.
pub struct Terminal;

impl Observer for Terminal {
    fn warn(&self, message: &str) {
        eprintln!("pgseal: warning: {message}");
    }

    fn note(&self, message: &str) {
        eprintln!("pgseal: {message}");
    }

    fn error(&self, message: &str) {
        eprintln!("pgseal: error: {message}");
    }

    fn failed(&self, what: &str, error: &pgseal_ops::Error) {
        eprintln!("pgseal: {what} failed: {}", crate::failure::message(error));
    }

    fn tool_output(&self, tool: &str, text: &str) {
        eprintln!("{tool}: {text}");
    }

    fn transfer(&self, label: &str, progress: &Counters) -> Box<dyn Send> {
        Box::new(Progress::show(label, progress))
    }
}

/// The progress line for one operation; stops drawing when dropped.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    fn show(label: &str, counters: &Counters) -> Progress {
        let read = counters.read.clone();
        let written = counters.written.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = io::stderr().is_terminal().then(|| {
            let (read, written, stop) = (read.clone(), written.clone(), stop.clone());
            let label = label.to_owned();
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(500));
                    let secs = started.elapsed().as_secs_f64().max(0.001);
                    eprint!(
                        "\r\x1b[K{label}: in {}, out {}, {}/s, {:.0}s",
                        human(read.get()),
                        human(written.get()),
                        human((read.get() as f64 / secs) as u64),
                        secs
                    );
                }
                eprint!("\r\x1b[K");
            })
        });
        Progress { stop, thread }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Bytes as B, KiB, MiB or GiB.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
