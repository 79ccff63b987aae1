//! Key files: generation, encrypted PEM, wrong passwords, the accepted encodings, fingerprints.

mod common;

use common::keys;
use pgseal_core::keys::PBKDF2_ROUNDS;
use pgseal_core::{Error, Fingerprint, Password, PrivateKey, PublicKey};

fn pw() -> Password {
    Password::new("correct-horse-battery".into())
}

#[test]
fn encrypted_pem_round_trips_and_wrong_password_fails() {
    let k = &keys().signer;
    let pem = k.to_encrypted_pem(&pw()).unwrap();
    assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));
    let back = PrivateKey::from_pem(&pem, "test", || Ok(pw())).unwrap();
    assert_eq!(back.fingerprint(), k.fingerprint());
    let err = PrivateKey::from_pem(&pem, "test", || {
        Ok(Password::new("wrong-password-xxxx".into()))
    })
    .unwrap_err();
    assert!(matches!(err, Error::WrongPassword(_)), "{err}");
    // The file really carries PBES2 / PBKDF2-SHA256 with 600,000 rounds and AES-256-CBC.
    let (_, der) = pkcs8_der(&pem);
    let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der.as_slice()).unwrap();
    let pkcs8::pkcs5::EncryptionScheme::Pbes2(params) = &info.encryption_algorithm else {
        panic!("not PBES2");
    };
    let pkcs8::pkcs5::pbes2::Kdf::Pbkdf2(kdf) = &params.kdf else {
        panic!("not PBKDF2");
    };
    assert_eq!(kdf.iteration_count, PBKDF2_ROUNDS);
    assert!(kdf.iteration_count >= 600_000);
    assert!(matches!(
        params.encryption,
        pkcs8::pkcs5::pbes2::EncryptionScheme::Aes256Cbc { .. }
    ));
}

#[test]
fn public_key_pem_round_trips_and_fingerprint_is_stable() {
    let public = keys().server.public();
    let pem = public.to_pem();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    let back = PublicKey::from_pem(&pem).unwrap();
    assert_eq!(back.fingerprint(), public.fingerprint());
    let shown = public.fingerprint().to_string();
    assert!(
        shown.starts_with("SHA256:") && shown.len() == 7 + 43,
        "{shown}"
    );
    assert_eq!(shown.parse::<Fingerprint>().unwrap(), public.fingerprint());
    let legacy = public.legacy_fingerprint().to_string();
    assert_eq!(legacy.len(), 42, "{legacy}");
    assert!(legacy.starts_with("SHA256:") && legacy.ends_with("..."));
}

#[test]
fn plain_pkcs8_loads_without_asking_for_a_password() {
    let k = &keys().server;
    // Re-encode our key as plain PKCS#8 via decryption of the encrypted form.
    let pem = k.to_encrypted_pem(&pw()).unwrap();
    let (_, der) = pkcs8_der(&pem);
    let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der.as_slice()).unwrap();
    let plain = info.decrypt(pw().as_bytes()).unwrap();
    let plain_pem = plain
        .to_pem("PRIVATE KEY", pkcs8::der::pem::LineEnding::LF)
        .unwrap();
    let back = PrivateKey::from_pem(&plain_pem, "plain", || panic!("must not ask")).unwrap();
    assert_eq!(back.fingerprint(), k.fingerprint());
}

fn pkcs8_der(pem: &str) -> (String, Vec<u8>) {
    let (label, der) = pkcs8::der::pem::decode_vec(pem.as_bytes()).unwrap();
    (label.to_owned(), der)
}

#[test]
fn wrong_kinds_of_pem_are_explained() {
    let public_pem = keys().server.public().to_pem();
    let err = PrivateKey::from_pem(&public_pem, "k", || Ok(pw())).unwrap_err();
    assert!(err.to_string().contains("public key"), "{err}");
    let err = PublicKey::from_pem("not a key").unwrap_err();
    assert!(err.to_string().contains("no PEM block"), "{err}");
    let legacy_openssl = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
    let err = PrivateKey::from_pem(legacy_openssl, "k", || Ok(pw())).unwrap_err();
    assert!(err.to_string().contains("openssl pkcs8"), "{err}");
}

#[test]
fn password_rules_for_new_keys() {
    assert!(Password::new("short".into()).check_new().is_err());
    assert!(Password::new("sixteen-chars-ok".into()).check_new().is_ok());
    assert_eq!(format!("{:?}", pw()), "Password(<redacted>)");
}
