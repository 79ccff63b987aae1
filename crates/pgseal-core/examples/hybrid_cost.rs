//! What a hybrid (RSA-OAEP + ML-KEM-768) recipient costs against an RSA-OAEP one: bytes per file
//! and per recipient, and the time to wrap and unwrap one file key, in-process (no key loading,
//! no I/O). docs/BENCHMARKS.md reports its output.
//!
//!     cargo run --release -p pgseal-core --example hybrid_cost [ROUNDS]
//!
//! Each round times every contender once, in turn (round-robin), so a busy moment of the
//! machine falls on all of them; minimum and median over the rounds are printed.

use std::time::{Duration, Instant};

use pgseal_core::keys::{Identity, KeyBits};
use pgseal_core::pq::MlKemPrivateKey;
use pgseal_core::secret::FileKey;
use pgseal_core::v2::{self, Compression, SealParams, Stanza};
use pgseal_core::{Password, PrivateKey};

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("ROUNDS is a number"))
        .unwrap_or(200);
    let signer = PrivateKey::generate(KeyBits::Rsa2048).expect("keygen");
    println!("rounds: {rounds}; times are per operation (minimum / median)\n");
    println!(
        "| RSA | recipient | stanza bytes | wrap µs | unwrap µs | file of 1 KiB, 1 recipient | 2 | 3 | 4 |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for bits in [KeyBits::Rsa2048, KeyBits::Rsa3072, KeyBits::Rsa4096] {
        let rsa = PrivateKey::generate(bits).expect("keygen");
        let hybrid = PrivateKey::generate_hybrid(bits).expect("keygen");
        let mut wrap = [Vec::new(), Vec::new()];
        let mut unwrap = [Vec::new(), Vec::new()];
        let file_key = FileKey::generate().expect("random");
        for _ in 0..rounds {
            for (i, key) in [&rsa, &hybrid].into_iter().enumerate() {
                let t = Instant::now();
                let stanza = Stanza::wrap(key.public(), &file_key).expect("wrap");
                wrap[i].push(t.elapsed());
                let t = Instant::now();
                let back = key.unwrap_stanza(&stanza).expect("unwrap");
                unwrap[i].push(t.elapsed());
                assert_eq!(back.expose(), file_key.expose());
            }
        }
        for (i, (key, name)) in [(&rsa, "RSA-OAEP"), (&hybrid, "hybrid")]
            .into_iter()
            .enumerate()
        {
            let stanza_len = stanza_bytes(key);
            let sizes: Vec<String> = (1..=4)
                .map(|n| file_len(&signer, key, n, bits).to_string())
                .collect();
            println!(
                "| {} | {name} | {stanza_len} | {} | {} | {} |",
                key.public().bits(),
                stat(&mut wrap[i]),
                stat(&mut unwrap[i]),
                sizes.join(" | ")
            );
        }
    }

    // ML-KEM-768 alone (RustCrypto `ml-kem`), without RSA, the combiner or GCM.
    let pq = MlKemPrivateKey::generate().expect("keygen");
    let (mut enc, mut dec) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let (ct, secret) = pq.public().encapsulate();
        enc.push(t.elapsed());
        let t = Instant::now();
        let back = pq.decapsulate(&ct).expect("decapsulate");
        dec.push(t.elapsed());
        assert_eq!(*back, *secret);
    }
    println!(
        "\nML-KEM-768 alone: encapsulate {} µs, decapsulate {} µs (minimum / median)",
        stat(&mut enc),
        stat(&mut dec)
    );

    // Unlocking a key file: one PBKDF2 (600,000 rounds) per encrypted block, so a hybrid key
    // file costs two. Few rounds: each takes a good fraction of a second.
    let password = Password::new("benchmark-password-0001".into());
    let rsa = PrivateKey::generate(KeyBits::Rsa4096).expect("keygen");
    let hybrid = PrivateKey::generate_hybrid(KeyBits::Rsa4096).expect("keygen");
    let pems = [
        rsa.to_encrypted_pem(&password).expect("pem"),
        hybrid.to_encrypted_pem(&password).expect("pem"),
    ];
    let mut unlock = [Vec::new(), Vec::new()];
    for _ in 0..(rounds / 40).max(3) {
        for (i, pem) in pems.iter().enumerate() {
            let t = Instant::now();
            PrivateKey::from_pem(pem, "bench", || {
                Ok(Password::new("benchmark-password-0001".into()))
            })
            .expect("unlock");
            unlock[i].push(t.elapsed());
        }
    }
    let ms = |times: &mut Vec<Duration>| {
        times.sort();
        format!(
            "{:.0} / {:.0}",
            times[0].as_secs_f64() * 1e3,
            times[times.len() / 2].as_secs_f64() * 1e3
        )
    };
    println!(
        "unlocking an encrypted RSA-4096 key file: {} ms; with its ML-KEM-768 block: {} ms \
         (minimum / median)",
        ms(&mut unlock[0]),
        ms(&mut unlock[1])
    );
}

/// The encoded stanza's length: its kind and length fields plus the body.
fn stanza_bytes(key: &PrivateKey) -> usize {
    let file_key = FileKey::generate().expect("random");
    match Stanza::wrap(key.public(), &file_key).expect("wrap") {
        Stanza::RsaOaep { wrapped, .. } => 4 + 32 + wrapped.len(),
        Stanza::Hybrid { wrap, .. } => {
            4 + 64 + wrap.rsa_ciphertext.len() + wrap.pq_ciphertext.len() + wrap.wrapped_key.len()
        }
        Stanza::Unknown { .. } => unreachable!("wrap makes known kinds"),
    }
}

/// The size of a sealed 1 KiB file for `n` recipients like `key` (fresh keys of its kind).
fn file_len(signer: &PrivateKey, key: &PrivateKey, n: usize, bits: KeyBits) -> usize {
    let mut recipients = vec![key.public().clone()];
    while recipients.len() < n {
        let more = if key.pq().is_some() {
            PrivateKey::generate_hybrid(bits)
        } else {
            PrivateKey::generate(bits)
        };
        recipients.push(more.expect("keygen").public().clone());
    }
    let mut params = SealParams::new(signer, &recipients);
    params.compression = Compression::None;
    let mut out = Vec::new();
    v2::seal(&[7u8; 1024][..], &mut out, &params).expect("seal");
    out.len()
}

fn stat(times: &mut [Duration]) -> String {
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    format!("{:.0} / {:.0}", us(times[0]), us(times[times.len() / 2]))
}
