//! `PGBACKUP_AES256_V1`: password-based AES-256-GCM (legacy-formats.md §1).
//!
//! `magic(18) || salt(32) || nonce(12) || ciphertext || tag(16)`, key =
//! PBKDF2-HMAC-SHA256(password, salt, 100,000 rounds). Nothing authenticates who made it.

use std::io::{Read, Write};
use std::num::NonZeroU32;

use zeroize::Zeroizing;

use super::gcm::{GcmStream, NONCE_LEN, TAG_LEN};
use super::stream_holding_back;
use crate::byte_reader::ByteReader;
use crate::error::{Error, FormatError, LegacyTagCause, Result};
use crate::io_util::read_exact_or_truncated;
use crate::secret::{Password, fill_random};

/// The first eighteen bytes of every legacy symmetric file.
pub const MAGIC: [u8; 18] = *b"PGBACKUP_AES256_V1";
/// Bytes of PBKDF2 salt after the magic.
pub const SALT_LEN: usize = 32;
/// PBKDF2-HMAC-SHA256 rounds the old system used.
pub const PBKDF2_ROUNDS: u32 = 100_000;
/// Bytes before the ciphertext.
pub const HEADER_LEN: usize = MAGIC.len() + SALT_LEN + NONCE_LEN;
/// The shortest complete file: the header, then the GCM tag of an empty message.
pub const MIN_FILE_LEN: usize = HEADER_LEN + TAG_LEN;

fn derive_key(password: &Password, salt: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    aws_lc_rs::pbkdf2::derive(
        aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(PBKDF2_ROUNDS).expect("100,000 is not zero"),
        salt,
        password.as_bytes(),
        &mut *key,
    );
    key
}

/// Decrypts a whole legacy symmetric file (magic included) into `output`; returns plaintext bytes.
/// `output` holds unauthenticated data until this returns `Ok`.
pub fn decrypt<R: Read, W: Write>(mut input: R, mut output: W, password: &Password) -> Result<u64> {
    const HEADER: &str = "the legacy header";
    let mut header = [0u8; HEADER_LEN];
    read_exact_or_truncated(&mut input, &mut header, HEADER)?;
    // The array holds exactly these three fields, so the reads cannot come up short.
    let mut h = ByteReader::new(&header);
    let (Some(magic), Some(salt), Some(nonce)) = (
        h.array::<{ MAGIC.len() }>(),
        h.array::<SALT_LEN>(),
        h.array::<NONCE_LEN>(),
    ) else {
        return Err(Error::Truncated(HEADER));
    };
    if magic != MAGIC {
        return Err(FormatError::NotLegacySymmetric.into());
    }
    let key = derive_key(password, &salt);
    let mut gcm = GcmStream::new(&key, &nonce)?;
    let mut written = 0u64;
    let tag = stream_holding_back(&mut input, TAG_LEN, |data| {
        gcm.decrypt(data)?;
        output
            .write_all(data)
            .map_err(|e| Error::io("writing output", e))?;
        written += data.len() as u64;
        Ok(())
    })?;
    if !gcm.verify(&tag) {
        return Err(Error::LegacyTagMismatch(
            LegacyTagCause::WrongPasswordOrDamaged,
        ));
    }
    output.flush().map_err(|e| Error::io("writing output", e))?;
    Ok(written)
}

/// Writes a legacy symmetric file. pgseal never makes these for users (they prove nothing about
/// their origin); this exists so tests and migrations can produce the old format exactly.
pub fn encrypt<R: Read, W: Write>(input: R, mut output: W, password: &Password) -> Result<u64> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut salt)?;
    fill_random(&mut nonce)?;
    let key = derive_key(password, &salt);
    let mut gcm = GcmStream::new(&key, &nonce)?;
    let werr = |e| Error::io("writing output", e);
    output.write_all(&MAGIC).map_err(werr)?;
    output.write_all(&salt).map_err(werr)?;
    output.write_all(&nonce).map_err(werr)?;
    let mut n = 0u64;
    stream_holding_back(input, 0, |data| {
        gcm.encrypt(data)?;
        n += data.len() as u64;
        output.write_all(data).map_err(werr)
    })?;
    output.write_all(&gcm.tag()).map_err(werr)?;
    output.flush().map_err(werr)?;
    Ok(n)
}
