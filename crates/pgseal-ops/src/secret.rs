//! Passwords, asked for only when an operation needs one.
//!
//! The operations never read a password themselves: the front end hands them a [`Secret`] —
//! pgseal's CLI reads a `--*-password-file`, runs a `--*-password-command`, reads an environment
//! variable or prompts; a service would use its own vault — and the operation calls it at the
//! moment a key must be unlocked, so a command that fails earlier never asks.

use std::cell::RefCell;

use pgseal_core::Password;

use crate::error::{Error, Result};

/// A password, produced on demand.
pub trait Secret {
    /// The password; may ask someone, so call it only when the key it unlocks is needed.
    fn get(&self) -> Result<Password>;

    /// A new password, for a key about to be made: it must meet the rules for new passwords
    /// (at least 16 characters). A front end that asks a person should ask twice (pgseal's CLI
    /// does); this default takes [`get`](Self::get)'s answer and checks it.
    fn get_new(&self) -> Result<Password> {
        let password = self.get()?;
        password
            .check_new()
            .map_err(|e| Error::usage(format!("the new password: {e}")))?;
        Ok(password)
    }
}

/// A [`Secret`] asked at most once: for operations that unlock several keys with one password
/// (all stored server keys share the server password).
pub struct Cached<'a> {
    source: &'a dyn Secret,
    value: RefCell<Option<Password>>,
}

impl<'a> Cached<'a> {
    /// Remembers what `source` answers the first time.
    pub fn new(source: &'a dyn Secret) -> Self {
        Cached {
            source,
            value: RefCell::new(None),
        }
    }
}

impl Secret for Cached<'_> {
    fn get(&self) -> Result<Password> {
        if let Some(p) = self.value.borrow().as_ref() {
            return Ok(p.clone());
        }
        let p = self.source.get()?;
        *self.value.borrow_mut() = Some(p.clone());
        Ok(p)
    }
}

/// A password already in hand (tests, and front ends that hold one).
pub struct Given(pub Password);

impl Secret for Given {
    fn get(&self) -> Result<Password> {
        Ok(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct Counting(Cell<u32>);

    impl Secret for Counting {
        fn get(&self) -> Result<Password> {
            self.0.set(self.0.get() + 1);
            Ok(Password::new("correct-horse-battery-staple".into()))
        }
    }

    #[test]
    fn cached_asks_once() {
        let source = Counting(Cell::new(0));
        let cached = Cached::new(&source);
        cached.get().unwrap();
        cached.get().unwrap();
        assert_eq!(source.0.get(), 1);
    }
}
