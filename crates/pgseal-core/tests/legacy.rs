//! The legacy formats: round trips, the double-hash signature, tampering, wrong keys and
//! passwords, lying length fields, and the two real files made by the old system.

mod common;

use std::io::Cursor;

use common::{data, keys};
use pgseal_core::error::LegacyField;
use pgseal_core::legacy::{hybrid, symmetric};
use pgseal_core::{Error, FormatError, Password};

fn password() -> Password {
    Password::new("legacy-password-0123".into())
}

#[test]
fn symmetric_round_trip_and_wrong_password() {
    for len in [0usize, 1, 15, 16, 17, 300_000] {
        let plain = data(len);
        let mut file = Vec::new();
        symmetric::encrypt(&plain[..], &mut file, &password()).unwrap();
        assert_eq!(file.len(), len + symmetric::HEADER_LEN + 16);
        assert_eq!(&file[..18], b"PGBACKUP_AES256_V1");
        let mut out = Vec::new();
        symmetric::decrypt(&file[..], &mut out, &password()).unwrap();
        assert_eq!(out, plain);
        let err = symmetric::decrypt(
            &file[..],
            Vec::new(),
            &Password::new("wrong-password-0123".into()),
        )
        .unwrap_err();
        assert!(matches!(err, Error::LegacyTagMismatch(_)), "{err}");
    }
}

#[test]
fn symmetric_tamper_and_truncation_fail() {
    let mut file = Vec::new();
    symmetric::encrypt(&data(1000)[..], &mut file, &password()).unwrap();
    for at in [20, 60, 70, 500, file.len() - 1] {
        let mut f = file.clone();
        f[at] ^= 1;
        assert!(
            symmetric::decrypt(&f[..], Vec::new(), &password()).is_err(),
            "flip {at}"
        );
    }
    for cut in [0, 10, 62, 70, file.len() - 1] {
        assert!(
            symmetric::decrypt(&file[..cut], Vec::new(), &password()).is_err(),
            "cut {cut}"
        );
    }
}

fn hybrid_file(plain: &[u8], user_id: u64) -> Vec<u8> {
    let k = keys();
    let mut out = Cursor::new(Vec::new());
    hybrid::encrypt(
        plain,
        &mut out,
        k.server.public(),
        &k.signer,
        user_id,
        1_765_965_760,
    )
    .unwrap();
    out.into_inner()
}

#[test]
fn hybrid_round_trip_with_signature() {
    let k = keys();
    for len in [0usize, 1, 100_000] {
        let plain = data(len);
        let file = hybrid_file(&plain, 42);
        // 2048-bit keys: 256-byte wrap and signature.
        assert_eq!(file.len(), len + 44 + 256 + 4 + 256 + 12 + 16);
        let mut r = &file[..];
        let header = hybrid::read_header(&mut r, Some(file.len() as u64)).unwrap();
        assert_eq!(
            (header.version, header.user_id, header.created_unix),
            (1, 42, 1_765_965_760)
        );
        let mut out = Vec::new();
        let opened = hybrid::decrypt(&header, r, &mut out, &k.server).unwrap();
        assert_eq!(out, plain);
        hybrid::check_signature(&header, k.signer.public(), &opened.ciphertext_digest).unwrap();
        assert_eq!(hybrid::body_digest(r).unwrap(), opened.ciphertext_digest);
        assert!(matches!(
            hybrid::check_signature(&header, k.stranger.public(), &opened.ciphertext_digest),
            Err(Error::SignatureInvalid("legacy"))
        ));
    }
}

#[test]
fn hybrid_wrong_key_and_tampering_fail() {
    let k = keys();
    let file = hybrid_file(&data(5000), 1);
    let mut r = &file[..];
    let header = hybrid::read_header(&mut r, None).unwrap();
    assert!(matches!(
        hybrid::decrypt(&header, r, Vec::new(), &k.stranger),
        Err(Error::SessionKeyUnwrap)
    ));
    let body_start = header.encoded_len() as usize;
    for at in [body_start, body_start + 2500, file.len() - 1] {
        let mut f = file.clone();
        f[at] ^= 1;
        let mut r = &f[..];
        let h = hybrid::read_header(&mut r, None).unwrap();
        assert!(matches!(
            hybrid::decrypt(&h, r, Vec::new(), &k.server),
            Err(Error::LegacyTagMismatch(_))
        ));
        let d = hybrid::body_digest(&f[body_start..]).unwrap();
        assert!(hybrid::check_signature(&h, k.signer.public(), &d).is_err());
    }
}

#[test]
fn lying_length_fields_are_rejected_before_allocation() {
    let file = hybrid_file(&data(10), 1);
    for (at, value) in [
        (40usize, u32::MAX),
        (40, 0),
        (40, 5000),
        (44 + 256, u32::MAX),
    ] {
        let mut f = file.clone();
        f[at..at + 4].copy_from_slice(&value.to_le_bytes());
        let err = hybrid::read_header(&mut &f[..], Some(f.len() as u64)).unwrap_err();
        assert!(
            matches!(err, Error::Format(_) | Error::Truncated(_)),
            "{at}={value}: {err}"
        );
    }
    // A plausible length that the file is too short to hold.
    let mut f = file[..400].to_vec();
    f[40..44].copy_from_slice(&512u32.to_le_bytes());
    let err = hybrid::read_header(&mut &f[..], Some(400)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Format(FormatError::LegacyLengthPastEnd {
                field: LegacyField::WrappedKey,
                len: 512,
                file_len: 400
            })
        ),
        "{err}"
    );
}

#[test]
fn the_two_real_legacy_files_parse() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/legacy-wild");
    let cases = [
        (
            "db_management_20251217_170240_encrypted.backup",
            1_765_965_760u64,
        ),
        (
            "db_study_44en_20251217_170742_encrypted.backup",
            1_765_966_062,
        ),
    ];
    for (name, created) in cases {
        let bytes = std::fs::read(dir.join(name)).expect("fixture present in tests/fixtures");
        let mut r = &bytes[..];
        let h = hybrid::read_header(&mut r, Some(bytes.len() as u64)).unwrap();
        assert_eq!(
            (h.version, h.user_id, h.created_unix),
            (1, 7, created),
            "{name}"
        );
        assert_eq!((h.wrapped_key.len(), h.signature.len()), (512, 512));
        assert_eq!(
            pgseal_core::detect(&bytes[..20]),
            pgseal_core::Detected::LegacyHybrid
        );
        // Unknown signer key: a stranger's signature check must fail, not pass.
        let d = hybrid::body_digest(r).unwrap();
        assert!(hybrid::check_signature(&h, keys().signer.public(), &d).is_err());
    }
}
