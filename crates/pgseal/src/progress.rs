//! What the operations report while they run, on standard error: warnings, and a progress bar
//! (`indicatif`) for long transfers.
//!
//! The operations count into shared counters ([`Observer::transfer`]); a background thread
//! copies them into the bar ten times a second. A transfer whose size is known (a file or
//! object being restored, decrypted, verified or copied; the files of a rewrap) gets a bar with
//! rate and ETA; a backup streaming from pg_dump, whose size nobody knows until it ends, gets a
//! spinner with the bytes and the rate (no estimate: a database's size says little about its
//! compressed dump's). Nothing at all is drawn when standard error is not a terminal, so logs
//! and `--json` output stay clean (the bar never goes to standard output).

use std::io::{self, IsTerminal};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pgseal_ops::observe::{Observer, Progress as Counters, Unit};

/// What the operations report, shown on standard error: warnings as `pgseal: warning: ...`,
/// tools' own warnings as they wrote them, transfers as a progress bar on a terminal.
pub struct Terminal;

/// The bar being drawn, if any: a message printed meanwhile clears it first, so the two do not
/// mix on one line.
static SHOWN: std::sync::Mutex<Option<ProgressBar>> = std::sync::Mutex::new(None);

/// Prints a line on standard error, around the bar being drawn.
fn say(line: std::fmt::Arguments<'_>) {
    let shown = SHOWN.lock().ok().and_then(|b| b.clone());
    match shown {
        Some(bar) => bar.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

impl Observer for Terminal {
    fn warn(&self, message: &str) {
        say(format_args!("pgseal: warning: {message}"));
    }

    fn note(&self, message: &str) {
        say(format_args!("pgseal: {message}"));
    }

    fn error(&self, message: &str) {
        say(format_args!("pgseal: error: {message}"));
    }

    fn failed(&self, what: &str, error: &pgseal_ops::Error) {
        say(format_args!(
            "pgseal: {what} failed: {}",
            crate::failure::message(error)
        ));
    }

    fn tool_output(&self, tool: &str, text: &str) {
        say(format_args!("{tool}: {text}"));
    }

    fn transfer(&self, label: &str, progress: &Counters) -> Box<dyn Send> {
        Box::new(Progress::show(label, progress))
    }
}

/// The progress bar of one transfer; cleared when dropped.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// A known size: bar, amount, rate, ETA.
const BAR: &str =
    "{msg} [{wide_bar}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}";
/// Files (a rewrap).
const FILES: &str = "{msg} [{wide_bar}] {pos}/{len} files ETA {eta}";
/// An unknown size: a spinner, the amount and the rate.
const SPINNER: &str = "{spinner} {msg}: {binary_bytes} read, {binary_bytes_per_sec}, {elapsed}";

/// The bar for a transfer, drawn on standard error when `on_terminal`, else hidden.
pub fn bar(label: &str, counters: &Counters, on_terminal: bool) -> ProgressBar {
    let target = if on_terminal {
        ProgressDrawTarget::stderr_with_hz(10)
    } else {
        ProgressDrawTarget::hidden()
    };
    let template = match (counters.total, counters.unit) {
        (None, _) => SPINNER,
        (Some(_), Unit::Bytes) => BAR,
        (Some(_), Unit::Files) => FILES,
    };
    let style = ProgressStyle::with_template(template)
        .expect("the templates are constants, checked by a unit test")
        .progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(counters.total, target).with_style(style);
    bar.set_message(label.to_owned());
    bar
}

impl Progress {
    fn show(label: &str, counters: &Counters) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let bar = bar(label, counters, io::stderr().is_terminal());
        let thread = (!bar.is_hidden()).then(|| {
            if let Ok(mut shown) = SHOWN.lock() {
                *shown = Some(bar.clone());
            }
            let (counters, stop) = (counters.clone(), stop.clone());
            let label = label.to_owned();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    bar.set_position(counters.read.get());
                    if counters.total.is_none() {
                        bar.set_message(format!(
                            "{label} ({} sealed)",
                            human(counters.written.get())
                        ));
                        bar.tick();
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                if let Ok(mut shown) = SHOWN.lock() {
                    *shown = None;
                }
                bar.finish_and_clear();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_drawn_off_a_terminal() {
        let counters = Counters {
            total: Some(1 << 20),
            ..Counters::default()
        };
        assert!(bar("shop", &counters, false).is_hidden());
        assert!(bar("shop", &Counters::default(), false).is_hidden());
        // And a transfer shown while standard error is not a terminal (as under `cargo test`
        // with its output captured, or in a unit's journal) starts no drawing thread.
        if !io::stderr().is_terminal() {
            let shown = Progress::show("shop", &counters);
            assert!(shown.thread.is_none());
        }
    }

    #[test]
    fn every_kind_of_transfer_has_its_style() {
        for (total, unit) in [
            (None, Unit::Bytes),
            (Some(10), Unit::Bytes),
            (Some(3), Unit::Files),
        ] {
            let counters = Counters {
                total,
                unit,
                ..Counters::default()
            };
            let bar = bar("x", &counters, false);
            assert_eq!(bar.length(), total);
        }
    }
}
