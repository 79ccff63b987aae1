//! Standard output for people and scripts, without a panic when its reader goes away.
//!
//! `println!` panics when standard output is a closed pipe (`pgseal list | head -1`). The
//! commands print through [`outln!`] and [`out!`] instead: the first write error is kept and
//! everything after it is dropped, and `main` then ends the command with exit 1 ("I/O failure:
//! broken pipe"), as the README's exit codes say.

use std::io::{self, Write};
use std::sync::Mutex;

static FAILED: Mutex<Option<io::Error>> = Mutex::new(None);

/// Writes formatted text to standard output, unless an earlier write failed.
pub fn write_fmt(args: std::fmt::Arguments<'_>) {
    let mut failed = FAILED.lock().unwrap_or_else(|e| e.into_inner());
    if failed.is_some() {
        return;
    }
    let mut stdout = io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        *failed = Some(e);
    }
}

/// The first write to standard output that failed, if one did.
pub fn failure() -> Option<io::Error> {
    FAILED.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// `println!` that cannot panic (see the module docs).
#[macro_export]
macro_rules! outln {
    () => {
        $crate::out::write_fmt(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that cannot panic (see the module docs).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write_fmt(format_args!($($arg)*))
    };
}
