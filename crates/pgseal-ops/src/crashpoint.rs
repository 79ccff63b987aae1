//! Named steps where a test can stop the process and kill it, to prove a crash there loses
//! nothing.
//!
//! The operations mark their steps with [`reached`]; nothing happens unless a front end has
//! installed a handler with [`set_handler`] (pgseal's CLI does in debug builds, stopping itself
//! with `SIGSTOP` at the step a test names, so the test can `kill -9` it exactly there).

use std::sync::OnceLock;

static HANDLER: OnceLock<fn(&str)> = OnceLock::new();

/// Installs the function called at every step; only the first call has an effect.
pub fn set_handler(handler: fn(&str)) {
    let _ = HANDLER.set(handler);
}

/// Marks the step `name`.
pub fn reached(name: &str) {
    if let Some(handler) = HANDLER.get() {
        handler(name);
    }
}
