//! v2 round trips across sizes, chunk boundaries, compression and recipients.

mod common;

use common::{data, keys, open, seal, seal_with, verify};
use pgseal_core::keys::Identity;
use pgseal_core::v2::{self, Compression, SignerCheck};

#[test]
fn sizes_around_chunk_boundaries_round_trip() {
    let c = 1024usize;
    for len in [0, 1, c - 1, c, c + 1, 2 * c, 3 * c, 3 * c + 7, 10 * c] {
        for compression in [Compression::None, Compression::Zstd] {
            let plain = data(len);
            let file = seal_with(
                &plain,
                c as u32,
                compression,
                &[keys().server.public().clone()],
            );
            assert_eq!(open(&file).unwrap(), plain, "len {len} {compression:?}");
            let report = verify(&file).unwrap();
            if compression == Compression::None {
                let chunks = if len == 0 { 1 } else { len.div_ceil(c) } as u64;
                assert_eq!(report.chunks, chunks, "len {len}");
            }
        }
    }
}

#[test]
fn large_stream_with_default_chunks() {
    let plain = data(3 * 1024 * 1024 + 123);
    let file = seal_with(
        &plain,
        v2::DEFAULT_CHUNK_SIZE,
        Compression::Zstd,
        &[keys().server.public().clone()],
    );
    assert_eq!(open(&file).unwrap(), plain);
}

#[test]
fn every_recipient_can_open_and_no_one_else() {
    let k = keys();
    let plain = data(5000);
    let file = seal_with(
        &plain,
        1024,
        Compression::Zstd,
        &[k.server.public().clone(), k.recovery.public().clone()],
    );
    let signers = [k.signer.public().clone()];
    for identity in [&k.server, &k.recovery] {
        let mut input = &file[..];
        let prelude = v2::read_prelude(&mut input).unwrap();
        let mut out = Vec::new();
        let s = prelude
            .decrypt(
                input,
                &mut out,
                &[identity as &dyn Identity],
                SignerCheck::Require(&signers),
            )
            .unwrap();
        assert_eq!(out, plain);
        assert_eq!(s.recipient, identity.fingerprint());
    }
    let mut input = &file[..];
    let prelude = v2::read_prelude(&mut input).unwrap();
    let err = prelude
        .decrypt(
            input,
            Vec::new(),
            &[&k.stranger as &dyn Identity],
            SignerCheck::Require(&signers),
        )
        .unwrap_err();
    assert!(
        matches!(err, pgseal_core::Error::NoMatchingIdentity(ref fps) if fps.len() == 2),
        "{err}"
    );
}

#[test]
fn header_carries_metadata_and_fingerprints() {
    let k = keys();
    let mut params = v2::SealParams::new(&k.signer, std::slice::from_ref(k.server.public()));
    params.metadata.creator_user_id = Some(7);
    params.metadata.creator_username = Some("system_backup".into());
    params.metadata.source_database = Some("études".into());
    let mut file = Vec::new();
    v2::seal(&b"x"[..], &mut file, &params).unwrap();
    let prelude = v2::read_prelude(&mut &file[..]).unwrap();
    let m = &prelude.header.metadata;
    assert_eq!(m.creator_user_id, Some(7));
    assert_eq!(m.creator_username.as_deref(), Some("system_backup"));
    assert_eq!(m.source_database.as_deref(), Some("études"));
    assert_eq!(prelude.header.signer, k.signer.fingerprint());
    let (_, slot) = prelude.active_slot().unwrap();
    assert_eq!(slot.recipients(), vec![k.server.fingerprint()]);
}

#[test]
fn signer_must_be_known_unless_skipped() {
    let k = keys();
    let plain = data(2000);
    let file = seal(&plain, 1024);
    let mut input = &file[..];
    let prelude = v2::read_prelude(&mut input).unwrap();
    let err = prelude
        .decrypt(
            input,
            Vec::new(),
            &[&k.server as &dyn Identity],
            SignerCheck::Require(&[k.stranger.public().clone()]),
        )
        .unwrap_err();
    assert!(matches!(err, pgseal_core::Error::UnknownSigner(fp) if fp == k.signer.fingerprint()));

    let mut input = &file[..];
    let prelude = v2::read_prelude(&mut input).unwrap();
    let mut out = Vec::new();
    let s = prelude
        .decrypt(
            input,
            &mut out,
            &[&k.server as &dyn Identity],
            SignerCheck::Skip,
        )
        .unwrap();
    assert_eq!(out, plain);
    assert_eq!(s.verified_signer, None);
}

#[test]
fn verify_with_identity_proves_decryption() {
    let k = keys();
    let file = seal_with(
        &data(4000),
        1024,
        Compression::Zstd,
        &[k.server.public().clone()],
    );
    let mut input = &file[..];
    let prelude = v2::read_prelude(&mut input).unwrap();
    let report = prelude
        .verify(
            input,
            &[k.signer.public().clone()],
            Some(&k.server as &dyn Identity),
        )
        .unwrap();
    assert_eq!(report.decrypted_with, Some(k.server.fingerprint()));
}

#[test]
fn chunk_size_is_validated() {
    let k = keys();
    for bad in [0u32, 1000, 512, 32 * 1024 * 1024] {
        let mut params = v2::SealParams::new(&k.signer, std::slice::from_ref(k.server.public()));
        params.chunk_size = bad;
        assert!(v2::seal(&b"x"[..], Vec::new(), &params).is_err(), "{bad}");
    }
}

#[test]
fn compressed_payloads_whose_output_fills_the_decoder_buffer_exactly() {
    // Highly compressible input in multiples of the decoder's 256 KiB output buffer: the last
    // decode call then makes no progress, which must not read as a cut-off frame.
    for mib in [1usize, 2, 8] {
        let plain: Vec<u8> = (0..mib * 1024 * 1024).map(|i| b"pgseal "[i % 7]).collect();
        let file = seal_with(
            &plain,
            v2::DEFAULT_CHUNK_SIZE,
            Compression::Zstd,
            &[keys().server.public().clone()],
        );
        assert_eq!(open(&file).unwrap(), plain, "{mib} MiB");
    }
}
