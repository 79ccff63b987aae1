//! Shared fixtures for the core tests: keys are slow to make, so each test binary makes them once.

#![allow(dead_code)]

use std::sync::OnceLock;

use pgseal_core::keys::KeyBits;
use pgseal_core::v2::{self, Compression, SealParams};
use pgseal_core::{PrivateKey, PublicKey};

pub struct Keys {
    pub signer: PrivateKey,
    pub server: PrivateKey,
    pub recovery: PrivateKey,
    pub stranger: PrivateKey,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        signer: PrivateKey::generate(KeyBits::Rsa2048).expect("keygen"),
        server: PrivateKey::generate(KeyBits::Rsa2048).expect("keygen"),
        recovery: PrivateKey::generate(KeyBits::Rsa3072).expect("keygen"),
        stranger: PrivateKey::generate(KeyBits::Rsa2048).expect("keygen"),
    })
}

/// Deterministic, poorly compressible test data.
pub fn data(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ len as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn seal_with(
    plain: &[u8],
    chunk_size: u32,
    compression: Compression,
    recipients: &[PublicKey],
) -> Vec<u8> {
    let k = keys();
    let mut params = SealParams::new(&k.signer, recipients);
    params.chunk_size = chunk_size;
    params.compression = compression;
    let mut out = Vec::new();
    v2::seal(plain, &mut out, &params).expect("seal");
    out
}

pub fn seal(plain: &[u8], chunk_size: u32) -> Vec<u8> {
    seal_with(
        plain,
        chunk_size,
        Compression::None,
        &[keys().server.public().clone()],
    )
}

/// Opens `file` with the server key, requiring the signer's signatures.
pub fn open(file: &[u8]) -> pgseal_core::Result<Vec<u8>> {
    let k = keys();
    let mut input = file;
    let prelude = v2::read_prelude(&mut input)?;
    let mut out = Vec::new();
    let signers = [k.signer.public().clone()];
    prelude.decrypt(
        input,
        &mut out,
        &[&k.server as &dyn pgseal_core::keys::Identity],
        v2::SignerCheck::Require(&signers),
    )?;
    Ok(out)
}

/// Keyless verification with the signer's public key.
pub fn verify(file: &[u8]) -> pgseal_core::Result<v2::VerifyReport> {
    let mut input = file;
    let prelude = v2::read_prelude(&mut input)?;
    prelude.verify(input, &[keys().signer.public().clone()], None)
}
