//! Secret values that wipe themselves: passwords and file keys.
//!
//! Neither type implements `Display`, and their `Debug` output is redacted, so a secret cannot
//! leak into a log line or an error message by accident.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, FormatError, Result};

/// A password for a private key or a legacy symmetric file. Zeroed on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Password(String);

impl Password {
    /// The minimum length pgseal accepts for a *new* password (the legacy system's rule).
    pub const MIN_NEW_LEN: usize = 16;

    /// Takes ownership of the secret text (it is zeroed when the `Password` is dropped).
    pub fn new(secret: String) -> Self {
        Password(secret)
    }

    /// The password's UTF-8 bytes, as PBKDF2 takes them.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The password as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks the rules for a password that is about to protect a new key.
    pub fn check_new(&self) -> Result<()> {
        if self.0.chars().count() < Self::MIN_NEW_LEN {
            return Err(Error::InvalidParameter(format!(
                "a new password must be at least {} characters long",
                Self::MIN_NEW_LEN
            )));
        }
        Ok(())
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// The 32-byte symmetric key of one file (v2 file key, legacy session key). Zeroed on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct FileKey([u8; 32]);

impl FileKey {
    /// Bytes in a file key.
    pub const LEN: usize = 32;

    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self> {
        let mut key = [0u8; 32];
        fill_random(&mut key)?;
        Ok(FileKey(key))
    }

    /// Takes ownership of unwrapped key bytes; wrong length means a malformed wrap.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| FormatError::FileKeyLength(bytes.len()))?;
        Ok(FileKey(key))
    }

    /// The key bytes, for the cipher and the wrap; never for output.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileKey(<redacted>)")
    }
}

/// Secret bytes of arbitrary length (decrypted DER, derived keys).
pub type SecretBytes = Zeroizing<Vec<u8>>;

/// Fills `buf` from the system CSPRNG.
pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    aws_lc_rs::rand::fill(buf).map_err(|_| Error::Crypto("the system random generator failed"))
}
