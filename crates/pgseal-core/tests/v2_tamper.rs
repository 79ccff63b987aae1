//! The tamper matrix (design.md, "Tests that mean something"): flip each byte region, truncate
//! at every chunk boundary, append, swap and duplicate chunks, swap headers between files. Each
//! must fail — and with the error that names what happened.

mod common;

use common::{data, open, seal, verify};
use pgseal_core::{Error, ErrorKind};

const C: usize = 1024;

/// Byte ranges of a sealed file, from its own prelude.
struct Layout {
    sig_end: usize,
    slot_a: std::ops::Range<usize>,
    slot_b: std::ops::Range<usize>,
    chunks: std::ops::Range<usize>,
    trailer: std::ops::Range<usize>,
}

fn layout(file: &[u8]) -> Layout {
    let prelude = pgseal_core::v2::read_prelude(&mut &file[..]).unwrap();
    let slots = prelude.slots_offset as usize;
    let s = prelude.header.slot_size as usize;
    let l = prelude.header.signature_len as usize;
    Layout {
        sig_end: slots,
        slot_a: slots..slots + s,
        slot_b: slots + s..slots + 2 * s,
        chunks: slots + 2 * s..file.len() - l,
        trailer: file.len() - l..file.len(),
    }
}

fn flipped(file: &[u8], at: usize) -> Vec<u8> {
    let mut f = file.to_vec();
    f[at] ^= 0x01;
    f
}

fn sample() -> (Vec<u8>, Vec<u8>) {
    let plain = data(4 * C + 100);
    (seal(&plain, C as u32), plain)
}

#[test]
fn every_header_and_signature_byte_is_bound() {
    let (file, _) = sample();
    let l = layout(&file);
    for at in 0..l.sig_end {
        let f = flipped(&file, at);
        let err = open(&f).expect_err(&format!("flip at {at} accepted"));
        assert!(
            matches!(
                err.kind(),
                ErrorKind::Invalid | ErrorKind::Authentication | ErrorKind::Key
            ),
            "flip at {at}: {err}"
        );
        assert!(
            verify(&f).is_err(),
            "keyless verify accepted a flip at {at}"
        );
    }
}

#[test]
fn header_body_flips_fail_the_signature_when_they_still_parse() {
    let (file, _) = sample();
    // created_at is the first field: its value bytes parse whatever they hold.
    for at in 18..26 {
        let err = open(&flipped(&file, at)).unwrap_err();
        assert!(
            matches!(err, Error::SignatureInvalid("header")),
            "at {at}: {err}"
        );
    }
}

#[test]
fn active_slot_flips_are_caught_by_checksum_or_mac() {
    let (file, _) = sample();
    let l = layout(&file);
    for at in l.slot_a.clone().step_by(7).chain([l.slot_a.end - 1]) {
        let err = open(&flipped(&file, at)).expect_err(&format!("slot flip at {at} accepted"));
        assert!(matches!(err, Error::Format(_)), "at {at}: {err}");
    }
}

#[test]
fn a_forged_slot_with_a_fixed_checksum_fails_the_mac_or_commitment() {
    let (file, _) = sample();
    let l = layout(&file);
    let s = l.slot_a.len();
    // Flip a bit of the wrapped key (inside the MAC'd body), then recompute the unkeyed
    // checksum as an attacker could, so the slot still looks complete.
    let mut f = file.clone();
    let mut forged = f[l.slot_a.clone()].to_vec();
    forged[10 + 4 + 32 + 5] ^= 0x40;
    let checksum = pgseal_core::hash::sha256(&forged[..s - 32]);
    forged[s - 32..].copy_from_slice(&checksum);
    f[l.slot_a.clone()].copy_from_slice(&forged);
    let err = open(&f).unwrap_err();
    assert!(
        matches!(
            err,
            Error::SessionKeyUnwrap | Error::KeyCommitmentMismatch | Error::RecipientMacMismatch
        ),
        "{err}"
    );
    // The signatures do not cover the slots (rewrap must not need the creator), so keyless
    // verification still passes: it proves origin and integrity of the data, not the wrap.
    assert!(verify(&f).is_ok());
}

#[test]
fn inactive_slot_damage_is_tolerated_as_an_interrupted_rewrap() {
    let (file, plain) = sample();
    let l = layout(&file);
    let f = flipped(&file, l.slot_b.start + 3);
    // Slot B is empty in a fresh file; garbage there reads as a torn rewrap and is skipped.
    assert_eq!(open(&f).unwrap(), plain);
    let prelude = pgseal_core::v2::read_prelude(&mut &f[..]).unwrap();
    assert!(matches!(
        prelude.slots[1],
        pgseal_core::v2::SlotState::Damaged(_)
    ));
}

#[test]
fn every_chunk_and_the_trailer_are_bound() {
    let (file, _) = sample();
    let l = layout(&file);
    let chunk_len = C + 16;
    let mut positions = Vec::new();
    for start in (l.chunks.start..l.chunks.end).step_by(chunk_len) {
        let end = (start + chunk_len).min(l.chunks.end);
        positions.extend([start, start + (end - start) / 2, end - 17, end - 1]);
    }
    for at in positions {
        let err = open(&flipped(&file, at)).unwrap_err();
        assert!(
            matches!(err, Error::ChunkAuthentication { .. }),
            "at {at}: {err}"
        );
        assert!(matches!(
            verify(&flipped(&file, at)).unwrap_err(),
            Error::SignatureInvalid("final")
        ));
    }
    for at in [l.trailer.start, l.trailer.end - 1] {
        assert!(matches!(
            open(&flipped(&file, at)).unwrap_err(),
            Error::SignatureInvalid("final")
        ));
        assert!(matches!(
            verify(&flipped(&file, at)).unwrap_err(),
            Error::SignatureInvalid("final")
        ));
    }
}

#[test]
fn truncation_at_every_chunk_boundary_is_detected() {
    let (file, _) = sample();
    let l = layout(&file);
    let mut cuts: Vec<usize> = (l.chunks.start..=file.len()).step_by(C + 16).collect();
    cuts.extend([file.len() - 1, l.trailer.start, l.chunks.start - 1, 5, 0]);
    for cut in cuts {
        if cut == file.len() {
            continue;
        }
        let err = open(&file[..cut]).expect_err(&format!("truncation to {cut} accepted"));
        assert!(
            matches!(err.kind(), ErrorKind::Invalid | ErrorKind::Authentication),
            "cut {cut}: {err}"
        );
        assert!(
            verify(&file[..cut]).is_err(),
            "verify accepted truncation to {cut}"
        );
    }
}

#[test]
fn appended_bytes_are_detected() {
    let (file, _) = sample();
    for extra in [&b"x"[..], &[0u8; 16][..], &data(C + 16)[..]] {
        let mut f = file.clone();
        f.extend_from_slice(extra);
        assert!(open(&f).is_err());
        assert!(verify(&f).is_err());
    }
}

#[test]
fn swapped_and_duplicated_chunks_are_detected() {
    let (file, _) = sample();
    let l = layout(&file);
    let n = C + 16;
    let c0 = l.chunks.start;
    let mut swapped = file.clone();
    let (a, b) = (file[c0..c0 + n].to_vec(), file[c0 + n..c0 + 2 * n].to_vec());
    swapped[c0..c0 + n].copy_from_slice(&b);
    swapped[c0 + n..c0 + 2 * n].copy_from_slice(&a);
    assert!(matches!(
        open(&swapped).unwrap_err(),
        Error::ChunkAuthentication { index: 0 }
    ));
    assert!(verify(&swapped).is_err());

    let mut duplicated = file[..c0 + n].to_vec();
    duplicated.extend_from_slice(&file[c0..]);
    assert!(matches!(
        open(&duplicated).unwrap_err(),
        Error::ChunkAuthentication { index: 1 }
    ));

    let mut dropped = file[..c0].to_vec();
    dropped.extend_from_slice(&file[c0 + n..]);
    assert!(matches!(
        open(&dropped).unwrap_err(),
        Error::ChunkAuthentication { index: 0 }
    ));
}

#[test]
fn headers_swapped_between_files_are_detected() {
    let plain = data(3 * C);
    let a = seal(&plain, C as u32);
    let b = seal(&plain, C as u32);
    let (la, lb) = (layout(&a), layout(&b));
    // A's header, signature and slots with B's chunks and trailer.
    let mut mixed = a[..la.chunks.start].to_vec();
    mixed.extend_from_slice(&b[lb.chunks.start..]);
    assert!(matches!(
        open(&mixed).unwrap_err(),
        Error::ChunkAuthentication { index: 0 }
    ));
    assert!(matches!(
        verify(&mixed).unwrap_err(),
        Error::SignatureInvalid("final")
    ));
    // A's signed header with B's slots: the file key does not match A's commitment.
    let mut mixed = a[..la.sig_end].to_vec();
    mixed.extend_from_slice(&b[lb.slot_a.start..]);
    assert!(matches!(
        open(&mixed).unwrap_err(),
        Error::KeyCommitmentMismatch
    ));
}

#[test]
fn unknown_version_and_critical_fields_are_refused() {
    let (file, _) = sample();
    let mut f = file.clone();
    f[7] = 3;
    assert!(matches!(
        open(&f).unwrap_err(),
        Error::UnsupportedVersion(3)
    ));
}
