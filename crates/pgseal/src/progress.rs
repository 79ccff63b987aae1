//! A one-line progress report on a terminal: bytes in, bytes out, rate, elapsed.
//!
//! Counting wrappers feed shared counters; a background thread redraws the line twice a
//! second. Nothing is drawn when standard error is not a terminal (logs stay clean).

use std::io::{self, IsTerminal, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Counts the bytes read through it.
pub struct CountingReader<R> {
    pub inner: R,
    pub counter: Counter,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.add(n);
        Ok(n)
    }
}

/// Counts the bytes written through it.
pub struct CountingWriter<W> {
    pub inner: W,
    pub counter: Counter,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.counter.add(n);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The progress line for one operation; stops drawing when dropped.
pub struct Progress {
    pub read: Counter,
    pub written: Counter,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    pub fn start(label: &str) -> Progress {
        let read = Counter::default();
        let written = Counter::default();
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
        Progress {
            read,
            written,
            stop,
            thread,
        }
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
