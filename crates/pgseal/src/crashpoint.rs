//! Named steps where a test can stop pgseal and kill it, to prove a crash there loses nothing.
//!
//! The operations mark their steps ([`pgseal_ops::crashpoint`]). In a debug build,
//! `PGSEAL_TEST_STOP_AT=NAME` makes the process stop itself (`SIGSTOP`) on reaching the step
//! `NAME`; the test then sends `SIGKILL` — a `kill -9` at exactly that step. Release builds
//! install nothing and never read the variable.

/// Installs the debug builds' handler.
pub fn install() {
    #[cfg(debug_assertions)]
    pgseal_ops::crashpoint::set_handler(stop_if_named);
}

#[cfg(debug_assertions)]
fn stop_if_named(name: &str) {
    if std::env::var_os("PGSEAL_TEST_STOP_AT").is_some_and(|v| v == name) {
        // Only fails for an invalid signal; SIGSTOP is valid.
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
    }
}
