//! Parses arbitrary bytes as a legacy `PGBACKUP_HYBRID_V1` file, then decrypts the body with an
//! identity that "unwraps" every wrapped key to one fixed 32-byte key, so the streaming
//! AES-CTR/GHASH path runs on every input whose header parses. Also hashes the body the way
//! keyless verification does. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgseal_core::Fingerprint;
use pgseal_core::keys::Identity;
use pgseal_core::legacy::hybrid;
use pgseal_core::secret::FileKey;

/// The session key the seed script encrypts its valid seed with.
const FIXED_KEY: [u8; 32] = *b"pgseal-fuzz-fixed-session-key-32";

struct FixedIdentity;

impl Identity for FixedIdentity {
    fn fingerprint(&self) -> Fingerprint {
        Fingerprint::from_bytes([0u8; 32])
    }

    fn unwrap_file_key(&self, _wrapped: &[u8]) -> pgseal_core::Result<FileKey> {
        FileKey::from_slice(&FIXED_KEY)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    let Ok(header) = hybrid::read_header(&mut r, Some(data.len() as u64)) else {
        return;
    };
    // read_header must consume exactly the bytes it says the header has.
    assert_eq!(
        header.encoded_len(),
        (data.len() - r.len()) as u64,
        "LegacyHeader::encoded_len disagrees with the bytes read_header consumed"
    );
    let body = r;
    let decrypted = hybrid::decrypt(&header, body, std::io::sink(), &FixedIdentity);
    let digest = hybrid::body_digest(body);
    // Both hash SHA-256(ciphertext || tag) of the same body: when decryption gets as far as
    // returning a digest, keyless hashing must agree with it.
    if let (Ok(opened), Ok(digest)) = (&decrypted, &digest) {
        assert_eq!(&opened.ciphertext_digest, digest, "decrypt and body_digest disagree");
        assert!(opened.plaintext_bytes as usize + 16 == body.len());
    }
    // A body too short for a tag must fail both ways.
    if body.len() < 16 {
        assert!(decrypted.is_err() && digest.is_err());
    }
});
