//! A file key on its way back to the caller, sealed to a one-time key the caller made for this
//! one request, so that a TLS-terminating proxy, a log of the response, or anyone else between
//! the two never sees it.
//!
//! The caller makes an X25519 key pair ([`OneTimeKey`]) and sends its public half with the
//! request. The service makes one of its own, computes the shared secret, and derives an
//! AES-256-GCM key with HKDF-SHA256: salt [`SALT`], input the shared secret, info the caller's
//! public key, the service's public key and the request's context (the SHA-256 of the prelude
//! the file key belongs to). It seals the 32-byte file key under that key with an all-zero nonce
//! (the key is used once) and the context as associated data, and returns its public key and
//! the 48 bytes ([`SealedKey`]). Only the holder of the one-time private key can open it, and
//! only for that context. Both X25519 keys are ephemeral: forward secrecy for the file key.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::hkdf;
use pgseal_core::secret::FileKey;
use zeroize::Zeroizing;

/// The HKDF salt: what the derived key is for, and the protocol's version.
pub const SALT: &[u8] = b"pgseal-custody-v1 sealed file key";

/// Bytes of an X25519 public key.
pub const PUBLIC_LEN: usize = 32;
/// Bytes of a sealed file key: 32 of key and a 16-byte tag.
pub const SEALED_LEN: usize = FileKey::LEN + 16;

/// Why a sealed key could not be made or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// A public key that is not 32 bytes, or one X25519 refuses (a low-order point).
    #[error("the one-time public key is not a valid X25519 public key")]
    BadPublicKey,
    /// The sealed bytes are not the ones sealed to this key for this context.
    #[error(
        "the sealed file key does not open with this one-time key (damaged, or not for this request)"
    )]
    DoesNotOpen,
    /// The system's random generator or the cipher failed.
    #[error("cryptographic failure: {0}")]
    Crypto(&'static str),
}

/// The context an unwrap's file key is sealed for: the SHA-256 of the prelude the request sent
/// (both sides compute it).
pub fn prelude_context(prelude: &[u8]) -> [u8; 32] {
    pgseal_core::hash::sha256(prelude)
}

/// A file key sealed to a one-time key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedKey {
    /// The service's one-time X25519 public key.
    pub service_public: [u8; PUBLIC_LEN],
    /// The file key under AES-256-GCM, with its tag ([`SEALED_LEN`] bytes).
    pub ciphertext: Vec<u8>,
}

/// The caller's one-time key pair: made for one request, used once to open the answer.
pub struct OneTimeKey {
    private: EphemeralPrivateKey,
    public: [u8; PUBLIC_LEN],
}

impl OneTimeKey {
    /// A fresh key pair from the system's random generator.
    pub fn generate() -> Result<Self, SealError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let private = EphemeralPrivateKey::generate(&X25519, &rng)
            .map_err(|_| SealError::Crypto("X25519 key generation"))?;
        let public = public_bytes(&private)?;
        Ok(OneTimeKey { private, public })
    }

    /// The public half, to send with the request.
    pub fn public(&self) -> [u8; PUBLIC_LEN] {
        self.public
    }

    /// Opens the file key `sealed` for `context`; consumes the key pair (it is used once).
    pub fn open(self, sealed: &SealedKey, context: &[u8]) -> Result<FileKey, SealError> {
        let client_public = self.public;
        let key = agree(self.private, &sealed.service_public, |shared| {
            derive(shared, &client_public, &sealed.service_public, context)
        })?;
        if sealed.ciphertext.len() != SEALED_LEN {
            return Err(SealError::DoesNotOpen);
        }
        let mut buffer = Zeroizing::new(sealed.ciphertext.clone());
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(context),
                &mut buffer,
            )
            .map_err(|_| SealError::DoesNotOpen)?;
        FileKey::from_slice(plain).map_err(|_| SealError::DoesNotOpen)
    }
}

/// Seals `file_key` to the caller's one-time public key `client_public` for `context` (see the
/// module docs): done by the service, with a one-time key of its own.
pub fn seal(
    client_public: &[u8],
    file_key: &FileKey,
    context: &[u8],
) -> Result<SealedKey, SealError> {
    let client: [u8; PUBLIC_LEN] = client_public
        .try_into()
        .map_err(|_| SealError::BadPublicKey)?;
    let mine = OneTimeKey::generate()?;
    let service_public = mine.public;
    let key = agree(mine.private, &client, |shared| {
        derive(shared, &client, &service_public, context)
    })?;
    let mut buffer = Zeroizing::new(Vec::with_capacity(SEALED_LEN));
    buffer.extend_from_slice(file_key.expose());
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key([0; 12]),
        Aad::from(context),
        &mut *buffer,
    )
    .map_err(|_| SealError::Crypto("AES-256-GCM"))?;
    Ok(SealedKey {
        service_public,
        ciphertext: buffer.to_vec(),
    })
}

fn public_bytes(private: &EphemeralPrivateKey) -> Result<[u8; PUBLIC_LEN], SealError> {
    let public = private
        .compute_public_key()
        .map_err(|_| SealError::Crypto("X25519 public key"))?;
    public
        .as_ref()
        .try_into()
        .map_err(|_| SealError::Crypto("X25519 public key length"))
}

fn agree(
    private: EphemeralPrivateKey,
    peer: &[u8; PUBLIC_LEN],
    then: impl FnOnce(&[u8]) -> Result<LessSafeKey, SealError>,
) -> Result<LessSafeKey, SealError> {
    let peer = UnparsedPublicKey::new(&X25519, peer);
    agreement::agree_ephemeral(private, peer, SealError::BadPublicKey, then)
}

fn derive(
    shared: &[u8],
    client_public: &[u8; PUBLIC_LEN],
    service_public: &[u8; PUBLIC_LEN],
    context: &[u8],
) -> Result<LessSafeKey, SealError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(shared);
    let info = [&client_public[..], &service_public[..], context];
    let okm = prk
        .expand(&info, &AES_256_GCM)
        .map_err(|_| SealError::Crypto("HKDF"))?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_time_key_opens_what_was_sealed_to_it_for_that_context_only() {
        let file_key = FileKey::generate().unwrap();
        let client = OneTimeKey::generate().unwrap();
        let sealed = seal(&client.public(), &file_key, b"context").unwrap();
        assert_eq!(sealed.ciphertext.len(), SEALED_LEN);
        assert_ne!(&sealed.ciphertext[..32], file_key.expose());
        let opened = client.open(&sealed, b"context").unwrap();
        assert_eq!(opened.expose(), file_key.expose());

        // Another context, another one-time key, or a changed byte: it does not open.
        let client = OneTimeKey::generate().unwrap();
        let sealed = seal(&client.public(), &file_key, b"context").unwrap();
        let other = OneTimeKey::generate().unwrap();
        assert_eq!(
            other.open(&sealed, b"context").unwrap_err(),
            SealError::DoesNotOpen
        );
        let client2 = OneTimeKey::generate().unwrap();
        let sealed2 = seal(&client2.public(), &file_key, b"context").unwrap();
        assert_eq!(
            client2.open(&sealed2, b"other").unwrap_err(),
            SealError::DoesNotOpen
        );
        for i in 0..SEALED_LEN {
            let c = OneTimeKey::generate().unwrap();
            let mut s = seal(&c.public(), &file_key, b"x").unwrap();
            s.ciphertext[i] ^= 1;
            assert_eq!(
                c.open(&s, b"x").unwrap_err(),
                SealError::DoesNotOpen,
                "byte {i}"
            );
        }
        let c = OneTimeKey::generate().unwrap();
        let mut s = seal(&c.public(), &file_key, b"x").unwrap();
        s.service_public[0] ^= 1;
        assert!(c.open(&s, b"x").is_err());
    }

    #[test]
    fn a_public_key_that_is_not_one_is_refused() {
        let file_key = FileKey::generate().unwrap();
        assert_eq!(
            seal(&[1; 31], &file_key, b"").unwrap_err(),
            SealError::BadPublicKey
        );
        // The all-zero point is of low order: X25519 refuses the agreement.
        assert_eq!(
            seal(&[0; 32], &file_key, b"").unwrap_err(),
            SealError::BadPublicKey
        );
    }
}
