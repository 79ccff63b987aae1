//! Hybrid recipients (FORMAT.md §6a): RSA-OAEP + ML-KEM-768. Round trips, the key files, every
//! byte of the stanza bound, both halves needed, downgrades refused, and rewraps that keep (or
//! give) a file its post-quantum wrapping.

mod common;

use std::cell::Cell;
use std::io::Cursor;
use std::sync::OnceLock;

use common::{data, keys};
use pgseal_core::keys::{Identity, KeyBits};
use pgseal_core::pq::MlKemPrivateKey;
use pgseal_core::secret::FileKey;
use pgseal_core::v2::{self, Compression, SealParams, SlotState, Stanza};
use pgseal_core::{Error, ErrorKind, Fingerprint, Password, PrivateKey, PublicKey};
use zeroize::Zeroizing;

struct Hybrid {
    server: PrivateKey,
    next: PrivateKey,
    /// The server's RSA key with another ML-KEM half.
    server_other_pq: PrivateKey,
}

fn hybrid() -> &'static Hybrid {
    static KEYS: OnceLock<Hybrid> = OnceLock::new();
    KEYS.get_or_init(|| {
        let server = PrivateKey::generate_hybrid(KeyBits::Rsa2048).expect("keygen");
        Hybrid {
            server_other_pq: rsa_half(&server).with_pq(MlKemPrivateKey::generate().unwrap()),
            next: PrivateKey::generate_hybrid(KeyBits::Rsa2048).expect("keygen"),
            server,
        }
    })
}

const PW: &str = "pw-0123456789abcdef";

/// The RSA half of a hybrid key: the first block of its key file, read alone.
fn rsa_half(key: &PrivateKey) -> PrivateKey {
    let pem = key.to_encrypted_pem(&Password::new(PW.into())).unwrap();
    let end = "-----END ENCRYPTED PRIVATE KEY-----\n";
    let first = &pem[..pem.find(end).unwrap() + end.len()];
    let rsa = PrivateKey::from_pem(first, "rsa", || Ok(Password::new(PW.into()))).unwrap();
    assert!(rsa.pq().is_none());
    rsa
}

fn seal_to(plain: &[u8], recipients: &[PublicKey]) -> Vec<u8> {
    common::seal_with(plain, 1024, Compression::Zstd, recipients)
}

fn open_with(file: &[u8], identity: &dyn Identity) -> pgseal_core::Result<Vec<u8>> {
    let mut input = file;
    let prelude = v2::read_prelude(&mut input)?;
    let mut out = Vec::new();
    let signers = [keys().signer.public().clone()];
    prelude.decrypt(
        input,
        &mut out,
        &[identity],
        v2::SignerCheck::Require(&signers),
    )?;
    Ok(out)
}

fn prelude(file: &[u8]) -> v2::Prelude {
    v2::read_prelude(&mut &file[..]).unwrap()
}

fn active_stanzas(file: &[u8]) -> Vec<Stanza> {
    prelude(file).active_slot().unwrap().1.stanzas
}

/// Byte range of the active slot A, and where its first stanza's body starts.
fn slot_a(file: &[u8]) -> (std::ops::Range<usize>, usize) {
    let p = prelude(file);
    let start = p.slots_offset as usize;
    (start..start + p.header.slot_size as usize, start + 10 + 4)
}

/// Recomputes slot A's checksum, so that only the cryptography can notice a change.
fn fix_checksum(file: &mut [u8]) {
    let (slot, _) = slot_a(file);
    let end = slot.end;
    let sum = pgseal_core::hash::sha256(&file[slot.start..end - 32]);
    file[end - 32..end].copy_from_slice(&sum);
}

#[test]
fn a_file_for_a_hybrid_key_says_so_in_its_signed_header_and_round_trips() {
    let h = hybrid();
    let plain = data(5000);
    let file = seal_to(&plain, &[h.server.public().clone()]);
    let p = prelude(&file);
    assert!(p.header.hybrid);
    let stanzas = active_stanzas(&file);
    let [
        Stanza::Hybrid {
            recipient,
            pq_recipient,
            wrap,
        },
    ] = stanzas.as_slice()
    else {
        panic!("not one hybrid stanza")
    };
    assert_eq!(*recipient, h.server.fingerprint());
    assert_eq!(Some(*pq_recipient), h.server.public().pq_fingerprint());
    assert_eq!(wrap.rsa_ciphertext.len(), 256);
    assert_eq!(wrap.pq_ciphertext.len(), 1088);
    assert_eq!(open_with(&file, &h.server).unwrap(), plain);
    common::verify(&file).unwrap();

    // Two hybrid recipients: either opens it. One or two RSA-4096-sized stanzas fit the default
    // slot, so the hybrid costs no file size here.
    let file = seal_to(
        &plain,
        &[h.server.public().clone(), h.next.public().clone()],
    );
    assert_eq!(prelude(&file).header.slot_size, v2::DEFAULT_SLOT_SIZE);
    assert_eq!(open_with(&file, &h.next).unwrap(), plain);
    assert_eq!(open_with(&file, &h.server).unwrap(), plain);
    // An RSA-only file has no flag.
    let rsa = seal_to(&plain, &[keys().server.public().clone()]);
    assert!(!prelude(&rsa).header.hybrid);
}

#[test]
fn a_mix_of_hybrid_and_rsa_only_recipients_is_refused() {
    let h = hybrid();
    let recipients = [h.server.public().clone(), keys().recovery.public().clone()];
    let k = keys();
    let params = SealParams::new(&k.signer, &recipients);
    let err = v2::seal(&b"x"[..], Vec::new(), &params).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.to_string().contains("only as strong as RSA"), "{err}");
}

#[test]
fn hybrid_key_files_hold_two_blocks_under_one_password_asked_for_once() {
    let h = hybrid();
    let pem = h
        .server
        .to_encrypted_pem(&Password::new(PW.into()))
        .unwrap();
    assert_eq!(
        pem.matches("-----BEGIN ENCRYPTED PRIVATE KEY-----").count(),
        2
    );
    let asked = Cell::new(0);
    let back = PrivateKey::from_pem(&pem, "key", || {
        asked.set(asked.get() + 1);
        Ok(Password::new(PW.into()))
    })
    .unwrap();
    assert_eq!(asked.get(), 1);
    assert_eq!(back.public(), h.server.public());
    assert_eq!(
        back.pq().unwrap().public().fingerprint(),
        h.server.public().pq_fingerprint().unwrap()
    );
    let wrong = PrivateKey::from_pem(&pem, "key", || Ok(Password::new("nope-nope-nope".into())));
    assert!(matches!(wrong, Err(Error::WrongPassword(_))));

    let public = h.server.public().to_pem();
    assert_eq!(public.matches("-----BEGIN PUBLIC KEY-----").count(), 2);
    assert_eq!(&PublicKey::from_pem(&public).unwrap(), h.server.public());
    // The RSA block alone is the same RSA key, without the post-quantum half.
    let rsa_only = PublicKey::from_pem(&public[..public.find("-----END").unwrap() + 25]).unwrap();
    assert_eq!(rsa_only.fingerprint(), h.server.fingerprint());
    assert!(rsa_only.pq().is_none());

    // The ML-KEM block alone, or first, or a third block: refused with a reason.
    let second = &public[public.find("-----END").unwrap() + 25..];
    for (text, why) in [
        (second.to_owned(), "goes after an RSA key"),
        (
            format!("{second}{}", &public[..public.len() - second.len()]),
            "goes after an RSA key",
        ),
        (format!("{public}{second}"), "only one ML-KEM-768"),
        (
            format!("{}{}", public, keys().server.public().to_pem()),
            "only one ML-KEM-768",
        ),
    ] {
        let err = PublicKey::from_pem(&text).unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
    }
}

/// An identity that claims a hybrid key's fingerprints but holds only one of its halves for
/// real: proves the file key needs both secrets, not only the right names.
struct HalfForged<'a> {
    rsa: &'a PrivateKey,
    pq: &'a PrivateKey,
    claims: &'a PrivateKey,
}

impl Identity for HalfForged<'_> {
    fn fingerprint(&self) -> Fingerprint {
        self.claims.fingerprint()
    }
    fn unwrap_file_key(&self, wrapped: &[u8]) -> pgseal_core::Result<FileKey> {
        self.rsa.unwrap_file_key(wrapped)
    }
    fn pq_fingerprint(&self) -> Option<Fingerprint> {
        self.claims.public().pq_fingerprint()
    }
    fn decapsulate(&self, ciphertext: &[u8]) -> pgseal_core::Result<Zeroizing<[u8; 32]>> {
        Identity::decapsulate(self.pq, ciphertext)
    }
}

#[test]
fn both_private_keys_are_needed_to_open_a_hybrid_file() {
    let h = hybrid();
    let file = seal_to(&data(3000), &[h.server.public().clone()]);
    // The right RSA key with another ML-KEM half, or with none: named, refused.
    let err = open_with(&file, &h.server_other_pq).unwrap_err();
    assert!(matches!(err, Error::PqHalf { found: Some(_), .. }), "{err}");
    let err = open_with(&file, &rsa_half(&h.server)).unwrap_err();
    assert!(matches!(err, Error::PqHalf { found: None, .. }), "{err}");
    assert!(err.to_string().contains("second PEM block"), "{err}");
    // Another RSA key with the right ML-KEM half is simply not the recipient.
    let err = open_with(&file, &h.next).unwrap_err();
    assert!(matches!(err, Error::NoMatchingIdentity(_)), "{err}");

    // Claiming the right names with one wrong half: the unwrap itself fails, either way round.
    for forged in [
        HalfForged {
            rsa: &h.server,
            pq: &h.next,
            claims: &h.server,
        },
        HalfForged {
            rsa: &h.next,
            pq: &h.server,
            claims: &h.server,
        },
    ] {
        let err = open_with(&file, &forged).unwrap_err();
        assert!(matches!(err, Error::SessionKeyUnwrap), "{err}");
    }
    // Both halves, though reached through a wrapper: opens.
    let both = HalfForged {
        rsa: &h.server,
        pq: &h.server,
        claims: &h.server,
    };
    assert!(open_with(&file, &both).is_ok());
}

#[test]
fn every_byte_of_the_hybrid_stanza_is_bound_by_the_cryptography() {
    let h = hybrid();
    let file = seal_to(&data(100), &[h.server.public().clone()]);
    let (_, body) = slot_a(&file);
    let stanza_len = u16::from_be_bytes([file[body - 2], file[body - 1]]) as usize;
    assert_eq!(stanza_len, 32 + 32 + 256 + 1088 + 48);
    // The kind and length, then every body byte; the slot's checksum is recomputed each time so
    // only the key names, OAEP, ML-KEM, the combiner, GCM, the commitment or the MAC can refuse.
    for at in body - 4..body + stanza_len {
        let mut f = file.clone();
        f[at] ^= 0x01;
        fix_checksum(&mut f);
        let rel = at as isize - body as isize;
        let err = open_with(&f, &h.server).expect_err(&format!("flip at {rel} accepted"));
        assert!(
            matches!(
                err.kind(),
                ErrorKind::Key | ErrorKind::Authentication | ErrorKind::Invalid
            ),
            "flip at {rel}: {err}"
        );
    }
}

#[test]
fn removing_the_post_quantum_part_or_the_flag_is_refused() {
    let h = hybrid();
    let file = seal_to(&data(100), &[h.server.public().clone()]);
    let (slot, body) = slot_a(&file);
    let len = u16::from_be_bytes([file[body - 2], file[body - 1]]) as usize;

    // The stanza cut to an RSA-OAEP one (its RSA fingerprint and ciphertext, kind 1): the
    // header's flag makes it a downgrade before any key is tried, with or without a key.
    let mut f = file.clone();
    let rsa_part = [&file[body..body + 32], &file[body + 64..body + 64 + 256]].concat();
    f[body - 4..body].copy_from_slice(&[0, 1, 1, 32]);
    f[body..body + len].fill(0);
    f[body..body + rsa_part.len()].copy_from_slice(&rsa_part);
    fix_checksum(&mut f);
    assert!(matches!(
        open_with(&f, &h.server),
        Err(Error::HybridDowngrade)
    ));
    assert!(matches!(common::verify(&f), Err(Error::HybridDowngrade)));

    // The ML-KEM ciphertext cut out, the kind kept: no longer a well-formed stanza.
    let mut f = file.clone();
    let short = (len - 1088) as u16;
    f[body - 2..body].copy_from_slice(&short.to_be_bytes());
    f.copy_within(body + 64 + 256 + 1088..body + len, body + 64 + 256);
    f[body + short as usize..slot.end - 64].fill(0);
    fix_checksum(&mut f);
    let err = open_with(&f, &h.server).unwrap_err();
    assert!(err.to_string().contains("hybrid stanza too short"), "{err}");

    // The header's flag removed (and the length fixed): the header signature no longer holds.
    let flag = [0x80, 0x09, 0, 0, 0, 1, 1];
    let at = file[..slot.start]
        .windows(flag.len())
        .position(|w| w == flag)
        .unwrap();
    let mut f = file.clone();
    f.drain(at..at + flag.len());
    let body_len = u32::from_be_bytes(f[8..12].try_into().unwrap()) - flag.len() as u32;
    f[8..12].copy_from_slice(&body_len.to_be_bytes());
    assert!(matches!(
        open_with(&f, &h.server),
        Err(Error::SignatureInvalid("header"))
    ));
}

fn rewrapped(file: &[u8], from: &PrivateKey, to: &[PublicKey]) -> pgseal_core::Result<Vec<u8>> {
    let plan = prelude(file).plan_rewrap(&[from], to, &[])?;
    let mut cursor = Cursor::new(file.to_vec());
    plan.apply(&mut cursor, |_, _| Ok(())).unwrap();
    Ok(cursor.into_inner())
}

#[test]
fn a_hybrid_file_rewraps_only_to_hybrid_keys_and_an_rsa_file_can_be_upgraded() {
    let h = hybrid();
    let plain = data(4000);
    let file = seal_to(&plain, &[h.server.public().clone()]);

    let moved = rewrapped(&file, &h.server, &[h.next.public().clone()]).unwrap();
    assert!(prelude(&moved).header.hybrid);
    assert!(matches!(
        active_stanzas(&moved)[..],
        [Stanza::Hybrid { .. }]
    ));
    assert_eq!(open_with(&moved, &h.next).unwrap(), plain);
    assert!(open_with(&moved, &h.server).is_err());
    assert_eq!(prelude(&moved).slots[0], SlotState::Empty);

    let err = rewrapped(&file, &h.server, &[keys().server.public().clone()]).unwrap_err();
    assert!(matches!(err, Error::NotHybrid(fp) if fp == keys().server.fingerprint()));

    // An RSA-only file to a hybrid key: the new slot is hybrid; the signed header cannot change.
    let rsa = seal_to(&plain, &[keys().server.public().clone()]);
    let upgraded = rewrapped(&rsa, &keys().server, &[h.server.public().clone()]).unwrap();
    assert!(!prelude(&upgraded).header.hybrid);
    assert!(matches!(
        active_stanzas(&upgraded)[..],
        [Stanza::Hybrid { .. }]
    ));
    assert_eq!(open_with(&upgraded, &h.server).unwrap(), plain);
    assert!(open_with(&upgraded, &keys().server).is_err());
    common::verify(&upgraded).unwrap();
}
