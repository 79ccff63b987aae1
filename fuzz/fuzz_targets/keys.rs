//! Key loading: arbitrary bytes as PEM text (public and private, with a fixed password for
//! encrypted PKCS#8) and as public-key DER. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgseal_core::{Password, PrivateKey, PublicKey};

/// The password the seed script protects its encrypted private-key seeds with.
const PASSWORD: &str = "fuzz-password-0123456789";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(key) = PublicKey::from_pem(&text) {
        let _ = key.fingerprint();
        let _ = key.to_pem();
    }
    if let Ok(key) = PrivateKey::from_pem(&text, "fuzz", || Ok(Password::new(PASSWORD.into()))) {
        let _ = key.fingerprint();
    }
    if let Ok(key) = PublicKey::from_der(data) {
        let _ = key.legacy_fingerprint();
    }
});
