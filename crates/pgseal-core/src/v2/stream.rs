//! The key schedule and the STREAM construction (FORMAT.md §5, §7).
//!
//! A [`ChunkSealer`] / [`ChunkOpener`] owns the chunk counter, so a nonce can never be used twice
//! and nothing can be sealed or opened after the last chunk.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use aws_lc_rs::hmac;

use crate::error::{Error, FormatError, Result};
use crate::secret::FileKey;

/// Bytes an AES-GCM tag adds to each chunk.
pub const TAG_LEN: usize = 16;
const MAX_CHUNKS: u64 = 1 << 56;

/// Everything derived from one file key and the header's salt.
pub(crate) struct FileKeys {
    payload: [u8; 32],
    nonce_prefix: [u8; 4],
    pub(crate) commitment: [u8; 32],
    mac_key: [u8; 32],
}

impl Drop for FileKeys {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.payload.zeroize();
        self.mac_key.zeroize();
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn expand(prk: &hkdf::Prk, info: &str, out: &mut [u8]) -> Result<()> {
    let info = [info.as_bytes()];
    prk.expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| Error::Crypto("HKDF expansion"))
}

impl FileKeys {
    pub(crate) fn derive(file_key: &FileKey, salt: &[u8; 32]) -> Result<Self> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(file_key.expose());
        let mut keys = FileKeys {
            payload: [0; 32],
            nonce_prefix: [0; 4],
            commitment: [0; 32],
            mac_key: [0; 32],
        };
        expand(&prk, "pgseal v2 payload key", &mut keys.payload)?;
        expand(&prk, "pgseal v2 nonce prefix", &mut keys.nonce_prefix)?;
        expand(&prk, "pgseal v2 key commitment", &mut keys.commitment)?;
        expand(&prk, "pgseal v2 recipients mac", &mut keys.mac_key)?;
        Ok(keys)
    }

    /// Constant-time comparison of our commitment with the header's.
    pub(crate) fn commitment_matches(&self, header_value: &[u8; 32]) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(&self.commitment, header_value).is_ok()
    }

    /// HMAC-SHA256 of a recipient slot (FORMAT.md §6).
    pub(crate) fn slot_mac(&self, header_hash: &[u8; 32], slot_body: &[u8]) -> [u8; 32] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.mac_key);
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(b"pgseal v2 recipients\0");
        ctx.update(header_hash);
        ctx.update(slot_body);
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    fn stream(&self, header_hash: &[u8; 32]) -> Result<StreamState> {
        let key = UnboundKey::new(&AES_256_GCM, &self.payload)
            .map_err(|_| Error::Crypto("AES-256-GCM key setup"))?;
        Ok(StreamState {
            key: LessSafeKey::new(key),
            prefix: self.nonce_prefix,
            aad: *header_hash,
            next: 0,
            finished: false,
        })
    }

    pub(crate) fn sealer(&self, header_hash: &[u8; 32]) -> Result<ChunkSealer> {
        Ok(ChunkSealer(self.stream(header_hash)?))
    }

    pub(crate) fn opener(&self, header_hash: &[u8; 32]) -> Result<ChunkOpener> {
        Ok(ChunkOpener(self.stream(header_hash)?))
    }
}

struct StreamState {
    key: LessSafeKey,
    prefix: [u8; 4],
    aad: [u8; 32],
    next: u64,
    finished: bool,
}

impl StreamState {
    /// The nonce for the next chunk; advances the counter so it is never handed out twice.
    fn take_nonce(&mut self, last: bool) -> Result<(u64, Nonce)> {
        if self.finished {
            return Err(FormatError::DataAfterLastChunk.into());
        }
        if self.next >= MAX_CHUNKS {
            return Err(Error::InvalidParameter(
                "more than 2^56 chunks in one file".into(),
            ));
        }
        let index = self.next;
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&self.prefix);
        nonce[4..11].copy_from_slice(&index.to_be_bytes()[1..]);
        nonce[11] = u8::from(last);
        self.next += 1;
        self.finished = last;
        Ok((index, Nonce::assume_unique_for_key(nonce)))
    }
}

/// Seals chunks in order. The last call must pass `last = true`.
pub(crate) struct ChunkSealer(StreamState);

impl ChunkSealer {
    /// Encrypts `chunk` in place and appends its tag.
    pub(crate) fn seal(&mut self, chunk: &mut Vec<u8>, last: bool) -> Result<()> {
        let (_, nonce) = self.0.take_nonce(last)?;
        let tag = self
            .0
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&self.0.aad), chunk)
            .map_err(|_| Error::Crypto("AES-256-GCM seal"))?;
        chunk.extend_from_slice(tag.as_ref());
        Ok(())
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.0.finished
    }
}

/// Opens chunks in order; refuses anything after the last.
pub(crate) struct ChunkOpener(StreamState);

impl ChunkOpener {
    /// Decrypts `sealed` in place and drops its tag.
    pub(crate) fn open(&mut self, sealed: &mut Vec<u8>, last: bool) -> Result<()> {
        let (index, nonce) = self.0.take_nonce(last)?;
        if sealed.len() < TAG_LEN {
            return Err(Error::Truncated("the last chunk"));
        }
        let plain_len = self
            .0
            .key
            .open_in_place(nonce, Aad::from(&self.0.aad), sealed)
            .map_err(|_| Error::ChunkAuthentication { index })?
            .len();
        if last && plain_len == 0 && index > 0 {
            return Err(FormatError::EmptyLastChunk.into());
        }
        sealed.truncate(plain_len);
        Ok(())
    }

    pub(crate) fn chunks_opened(&self) -> u64 {
        self.0.next
    }
}
