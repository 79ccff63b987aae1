//! Key loading: arbitrary bytes as PEM text (public and private, with a fixed password for
//! encrypted PKCS#8; one to three blocks, an ML-KEM-768 half after the RSA key) and as DER
//! (RSA public keys, ML-KEM-768 SPKI and PKCS#8). Must never panic; a public key that loads
//! writes out a PEM that loads back as the same key, and a hybrid private key's two halves
//! agree with its public key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgseal_core::pq::{MlKemPrivateKey, MlKemPublicKey};
use pgseal_core::{Password, PrivateKey, PublicKey};

/// The password the seed script protects its encrypted private-key seeds with.
const PASSWORD: &str = "fuzz-password-0123456789";

fn password() -> pgseal_core::Result<Password> {
    Ok(Password::new(PASSWORD.into()))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(key) = PublicKey::from_pem(&text) {
        let _ = key.fingerprint();
        let again = PublicKey::from_pem(&key.to_pem()).expect("a public key's own PEM loads");
        // Equality compares both halves' fingerprints.
        assert_eq!(again, key, "a public key's PEM loads as another key");
    }
    if let Ok(key) = PrivateKey::from_pem(&text, "fuzz", password) {
        let _ = key.fingerprint();
        assert_eq!(
            key.pq().map(|pq| pq.public().fingerprint()),
            key.public().pq_fingerprint(),
            "a private key's ML-KEM half is not its public key's"
        );
    }
    if let Ok(key) = PublicKey::from_der(data) {
        let _ = key.legacy_fingerprint();
    }
    if let Ok(key) = MlKemPublicKey::from_spki_der(data) {
        assert_eq!(key.spki_der(), data, "an ML-KEM-768 SPKI is accepted in one encoding only");
        let _ = key.fingerprint();
    }
    if let Ok(key) = MlKemPrivateKey::from_pkcs8_der(data, "fuzz") {
        let again = MlKemPrivateKey::from_pkcs8_der(&key.to_pkcs8_der()[..], "fuzz")
            .expect("an ML-KEM-768 key's own PKCS#8 loads");
        assert_eq!(again.public().fingerprint(), key.public().fingerprint());
    }
});
