//! Named steps where a test can stop pgseal and kill it, to prove a crash there loses nothing.
//!
//! In a debug build, `PGSEAL_TEST_STOP_AT=NAME` makes the process stop itself (`SIGSTOP`) on
//! reaching the step `NAME`; the test then sends `SIGKILL` — a `kill -9` at exactly that step.
//! Release builds compile [`reached`] to nothing and never read the variable.

/// Marks the step `name` (see the module docs).
pub fn reached(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("PGSEAL_TEST_STOP_AT").is_some_and(|v| v == name) {
        // Only fails for an invalid signal; SIGSTOP is valid.
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
