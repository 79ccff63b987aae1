//! AES-256-GCM as a stream, for the legacy formats: each legacy file is *one* GCM message, and
//! one-shot AEAD APIs would need the whole file in memory. This is GCM by its definition
//! (NIST SP 800-38D, 96-bit IV, no AAD): AES-CTR from aws-lc for the keystream, GHASH for the tag.
//!
//! Plaintext produced by [`GcmStream::decrypt`] is unauthenticated until [`GcmStream::verify`]
//! succeeds; callers keep it away from the final path until then.

use aws_lc_rs::cipher::{
    AES_256, DecryptionContext, EncryptingKey, StreamingDecryptingKey, UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;
use ghash::GHash;
use ghash::universal_hash::{KeyInit, UniversalHash};

use crate::error::{Error, FormatError, Result};

pub(crate) const TAG_LEN: usize = 16;
pub(crate) const NONCE_LEN: usize = 12;
/// GCM's limit on one message: 2^32 − 2 blocks.
const MAX_MESSAGE_LEN: u64 = ((1u64 << 32) - 2) * 16;

pub(crate) struct GcmStream {
    ctr: StreamingDecryptingKey,
    ghash: GHash,
    /// Ciphertext bytes not yet hashed because they do not fill a GHASH block.
    partial: [u8; 16],
    partial_len: usize,
    ciphertext_len: u64,
    tag_mask: [u8; 16],
    scratch: Vec<u8>,
}

impl GcmStream {
    pub(crate) fn new(key: &[u8; 32], nonce: &[u8; NONCE_LEN]) -> Result<Self> {
        let cipher_key =
            || UnboundCipherKey::new(&AES_256, key).map_err(|_| Error::Crypto("AES-256 key setup"));
        let ecb = EncryptingKey::ecb(cipher_key()?).map_err(|_| Error::Crypto("AES-ECB setup"))?;
        let mut hash_key = [0u8; 16];
        ecb.encrypt(&mut hash_key)
            .map_err(|_| Error::Crypto("AES block encryption"))?;
        let mut tag_mask = counter_block(nonce, 1);
        ecb.encrypt(&mut tag_mask)
            .map_err(|_| Error::Crypto("AES block encryption"))?;
        let ctr = StreamingDecryptingKey::ctr(
            cipher_key()?,
            DecryptionContext::Iv128(FixedLength::from(counter_block(nonce, 2))),
        )
        .map_err(|_| Error::Crypto("AES-CTR setup"))?;
        Ok(GcmStream {
            ctr,
            ghash: GHash::new(&hash_key.into()),
            partial: [0; 16],
            partial_len: 0,
            ciphertext_len: 0,
            tag_mask,
            scratch: Vec::new(),
        })
    }

    /// Encrypts `data` in place and absorbs the ciphertext.
    pub(crate) fn encrypt(&mut self, data: &mut [u8]) -> Result<()> {
        self.keystream(data)?;
        self.absorb(data)
    }

    /// Absorbs the ciphertext and decrypts `data` in place (unauthenticated until `verify`).
    pub(crate) fn decrypt(&mut self, data: &mut [u8]) -> Result<()> {
        self.absorb(data)?;
        self.keystream(data)
    }

    /// The tag over everything processed.
    pub(crate) fn tag(mut self) -> [u8; TAG_LEN] {
        if self.partial_len > 0 {
            self.ghash.update_padded(&self.partial[..self.partial_len]);
        }
        let mut lengths = [0u8; 16];
        lengths[8..].copy_from_slice(&(self.ciphertext_len * 8).to_be_bytes());
        self.ghash.update(&[lengths.into()]);
        let mut tag: [u8; 16] = self.ghash.finalize().into();
        for (t, m) in tag.iter_mut().zip(self.tag_mask) {
            *t ^= m;
        }
        tag
    }

    /// Checks the tag in constant time.
    pub(crate) fn verify(self, expected: &[u8]) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(&self.tag(), expected).is_ok()
    }

    fn keystream(&mut self, data: &mut [u8]) -> Result<()> {
        self.scratch.resize(data.len() + 16, 0);
        let out = self
            .ctr
            .update(data, &mut self.scratch)
            .map_err(|_| Error::Crypto("AES-CTR"))?;
        let written = out.written().len();
        if written != data.len() {
            return Err(Error::Crypto("AES-CTR returned a short block"));
        }
        data.copy_from_slice(&self.scratch[..written]);
        Ok(())
    }

    fn absorb(&mut self, mut data: &[u8]) -> Result<()> {
        self.ciphertext_len += data.len() as u64;
        if self.ciphertext_len > MAX_MESSAGE_LEN {
            return Err(FormatError::LegacyTooLarge.into());
        }
        if self.partial_len > 0 {
            let n = (16 - self.partial_len).min(data.len());
            self.partial[self.partial_len..self.partial_len + n].copy_from_slice(&data[..n]);
            self.partial_len += n;
            data = &data[n..];
            if self.partial_len < 16 {
                return Ok(());
            }
            self.ghash.update(&[self.partial.into()]);
            self.partial_len = 0;
        }
        let whole = data.len() / 16 * 16;
        // `update_padded` pads only a trailing partial block; `whole` has none.
        self.ghash.update_padded(&data[..whole]);
        let rest = &data[whole..];
        self.partial[..rest.len()].copy_from_slice(rest);
        self.partial_len = rest.len();
        Ok(())
    }
}

fn counter_block(nonce: &[u8; NONCE_LEN], counter: u32) -> [u8; 16] {
    let mut block = [0u8; 16];
    block[..12].copy_from_slice(nonce);
    block[12..].copy_from_slice(&counter.to_be_bytes());
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

    fn one_shot(key: &[u8; 32], nonce: &[u8; 12], data: &[u8]) -> Vec<u8> {
        let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).unwrap());
        let mut buf = data.to_vec();
        k.seal_in_place_append_tag(Nonce::assume_unique_for_key(*nonce), Aad::empty(), &mut buf)
            .unwrap();
        buf
    }

    #[test]
    fn matches_one_shot_gcm_for_odd_split_points() {
        let key = [7u8; 32];
        let nonce = [9u8; 12];
        for len in [0usize, 1, 15, 16, 17, 100, 4096, 70_001] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let expected = one_shot(&key, &nonce, &data);
            for split in [1usize, 7, 16, 33, 1000] {
                let mut gcm = GcmStream::new(&key, &nonce).unwrap();
                let mut out = data.clone();
                for piece in out.chunks_mut(split) {
                    gcm.encrypt(piece).unwrap();
                }
                out.extend_from_slice(&gcm.tag());
                assert_eq!(out, expected, "len {len} split {split}");

                let mut gcm = GcmStream::new(&key, &nonce).unwrap();
                let (ct, tag) = expected.split_at(len);
                let mut back = ct.to_vec();
                for piece in back.chunks_mut(split) {
                    gcm.decrypt(piece).unwrap();
                }
                assert!(gcm.verify(tag));
                assert_eq!(back, data);
            }
        }
    }

    #[test]
    fn rejects_a_wrong_tag() {
        let key = [1u8; 32];
        let nonce = [2u8; 12];
        let sealed = one_shot(&key, &nonce, b"hello");
        let mut gcm = GcmStream::new(&key, &nonce).unwrap();
        let mut ct = sealed[..5].to_vec();
        gcm.decrypt(&mut ct).unwrap();
        let mut tag = sealed[5..].to_vec();
        tag[0] ^= 1;
        assert!(!gcm.verify(&tag));
    }
}
