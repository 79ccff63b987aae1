//! Round-trip / tamper target for v2 decryption.
//!
//! At first use it makes an RSA-2048 signer, an RSA-2048 recipient and a hybrid one (RSA-2048 +
//! ML-KEM-768, FORMAT.md §6a), and seals a few fixed plaintexts (1 KiB chunks; no compression and
//! zstd; the last two to the hybrid recipient). Each input picks one sealed file and a list of edits
//! (XOR a byte, truncate, append, overwrite a range with a copy of another, insert, delete) and
//! applies them to a copy. The edited file is then opened, and the invariant checked is:
//!
//! * `read_prelude` + `Prelude::decrypt` with `SignerCheck::Require(signer)` either fails, or the
//!   output equals the plaintext and the edited file equals the original everywhere except inside
//!   the two recipient slots. The slots are signed by neither signature (FORMAT.md §6): a damaged
//!   slot is ignored, and a slot that *is* valid must hold the right file key (commitment, MAC),
//!   so edits there may leave the file openable — e.g. slot A copied over slot B, then slot A
//!   damaged: slot B takes over, exactly as after a torn rewrap — but can never change what it
//!   opens to;
//! * with `SignerCheck::Skip` (chosen by a bit of the first byte), the same, except that the two
//!   signatures may also differ, since they are then not checked;
//! * `Prelude::verify` without a private key either fails, or the file is unchanged except inside
//!   the two recipient slots;
//! * a hybrid file never opens with its recipient's RSA key alone (the downgrade of §6a).
//!
//! A violation panics: that is a real bug (tampering accepted, or wrong plaintext released).
#![no_main]

use std::ops::Range;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pgseal_core::keys::{Identity, KeyBits};
use pgseal_core::v2::{self, Compression, Metadata, SealParams, SignerCheck, SlotState};
use pgseal_core::{Fingerprint, PrivateKey, PublicKey};
use pgseal_core::secret::FileKey;

struct Sealed {
    /// Sealed to the hybrid recipient (else to the RSA one).
    hybrid: bool,
    plaintext: Vec<u8>,
    file: Vec<u8>,
    /// Byte ranges of the file.
    header_sig: Range<usize>,
    slot_a: Range<usize>,
    slot_b: Range<usize>,
    final_sig: Range<usize>,
}

struct Fixture {
    signer: PrivateKey,
    signer_pub: Vec<PublicKey>,
    recipient: PrivateKey,
    hybrid: PrivateKey,
    sealed: Vec<Sealed>,
}

/// A hybrid key's RSA half alone: the identity a downgrade would need to succeed with.
struct RsaHalf<'a>(&'a PrivateKey);

impl Identity for RsaHalf<'_> {
    fn fingerprint(&self) -> Fingerprint {
        self.0.fingerprint()
    }
    fn unwrap_file_key(&self, wrapped: &[u8]) -> pgseal_core::Result<FileKey> {
        self.0.unwrap_file_key(wrapped)
    }
}

/// Deterministic filler: some text, then xorshift bytes (so zstd still needs several chunks).
fn plaintext(text_len: usize, random_len: usize) -> Vec<u8> {
    let mut out: Vec<u8> = b"pgseal fuzz plaintext. "
        .iter()
        .copied()
        .cycle()
        .take(text_len)
        .collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..random_len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x as u8);
    }
    out
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let signer = PrivateKey::generate(KeyBits::Rsa2048).expect("signer key");
        let recipient = PrivateKey::generate(KeyBits::Rsa2048).expect("recipient key");
        let hybrid = PrivateKey::generate_hybrid(KeyBits::Rsa2048).expect("hybrid key");
        let variants = [
            // 4 full chunks and a short last one.
            (Compression::None, plaintext(2000, 2500)),
            // Exactly 4 chunks: the last chunk is full.
            (Compression::None, plaintext(1024, 3072)),
            // Compresses to ~3 KiB: several chunks of zstd output.
            (Compression::Zstd, plaintext(3000, 2800)),
            // Empty input: one empty last chunk.
            (Compression::None, Vec::new()),
            // Empty input through zstd: one chunk holding an empty frame.
            (Compression::Zstd, Vec::new()),
            // To the hybrid recipient: 4 full chunks and a short last one, and zstd.
            (Compression::None, plaintext(2000, 2500)),
            (Compression::Zstd, plaintext(3000, 2800)),
        ];
        let sealed = variants
            .into_iter()
            .enumerate()
            .map(|(i, (compression, plaintext))| {
                let is_hybrid = i >= 5;
                let to = if is_hybrid { &hybrid } else { &recipient };
                let recipients = [to.public().clone()];
                let mut params = SealParams::new(&signer, &recipients);
                params.compression = compression;
                params.chunk_size = 1024;
                params.metadata = Metadata {
                    created_at_ms: 1_700_000_000_000,
                    tool: Some(pgseal_core::TOOL.to_owned()),
                    content_name: Some("fuzz.bin".to_owned()),
                    ..Metadata::default()
                };
                let mut file = Vec::new();
                v2::seal(&plaintext[..], &mut file, &params).expect("seal");

                // Locate the parts, and check the unmodified file opens (sanity of the fixture).
                let mut r = &file[..];
                let prelude = v2::read_prelude(&mut r).expect("prelude of a fresh file");
                let l = prelude.header.signature_len as usize;
                let s = prelude.header.slot_size as usize;
                let slots = prelude.slots_offset as usize;
                let mut out = Vec::new();
                prelude
                    .decrypt(
                        r,
                        &mut out,
                        &[to as &dyn Identity],
                        SignerCheck::Require(std::slice::from_ref(signer.public())),
                    )
                    .expect("a fresh file opens");
                assert_eq!(out, plaintext);
                assert_eq!(prelude.header.hybrid, is_hybrid);
                Sealed {
                    hybrid: is_hybrid,
                    header_sig: slots - l..slots,
                    slot_a: slots..slots + s,
                    slot_b: slots + s..slots + 2 * s,
                    final_sig: file.len() - l..file.len(),
                    plaintext,
                    file,
                }
            })
            .collect();
        Fixture {
            signer_pub: vec![signer.public().clone()],
            signer,
            recipient,
            hybrid,
            sealed,
        }
    })
}

/// Reads little-endian integers off the front of the fuzz input.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<usize> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]) as usize)
    }
}

/// Applies the edits encoded in `input` to `file`. Offsets wrap modulo the current length.
fn mutate(file: &mut Vec<u8>, input: &mut Input<'_>) {
    while let Some(op) = input.u8() {
        let len = file.len();
        match op % 8 {
            // XOR one byte (the common case, so it gets three opcodes).
            0..=2 => {
                let (Some(at), Some(x)) = (input.u16(), input.u8()) else { return };
                if len > 0 {
                    file[at % len] ^= x;
                }
            }
            // Truncate by 1..=65536 bytes from the end.
            3 => {
                let Some(n) = input.u16() else { return };
                file.truncate(len.saturating_sub(n + 1));
            }
            // Append n bytes from the input (or zeros once it runs out).
            4 => {
                let Some(n) = input.u8() else { return };
                for _ in 0..n {
                    let b = input.u8().unwrap_or(0);
                    file.push(b);
                }
            }
            // Overwrite [dst, dst+n) with a copy of [src, src+n): moves chunks, slots, signatures.
            5 => {
                let (Some(src), Some(dst), Some(n)) = (input.u16(), input.u16(), input.u16())
                else {
                    return;
                };
                if len > 0 {
                    let (src, dst) = (src % len, dst % len);
                    let n = n.min(len - src).min(len - dst);
                    file.copy_within(src..src + n, dst);
                }
            }
            // Insert one byte.
            6 => {
                let (Some(at), Some(b)) = (input.u16(), input.u8()) else { return };
                file.insert(at % (len + 1), b);
            }
            // Delete a range of up to 255 bytes.
            _ => {
                let (Some(at), Some(n)) = (input.u16(), input.u8()) else { return };
                if len > 0 {
                    let at = at % len;
                    let end = (at + n as usize).min(len);
                    file.drain(at..end);
                }
            }
        }
    }
}

/// True when `a` and `b` have the same length and differ only inside `allowed`.
fn same_outside(a: &[u8], b: &[u8], allowed: &[&Range<usize>]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .enumerate()
            .all(|(i, (x, y))| x == y || allowed.iter().any(|r| r.contains(&i)))
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let mut input = Input(data);
    let selector = input.u8().unwrap_or(0);
    let sealed = &fx.sealed[(selector & 0x0f) as usize % fx.sealed.len()];
    let skip_signatures = selector & 0x10 != 0;
    let also_verify = selector & 0x20 != 0;

    let mut file = sealed.file.clone();
    mutate(&mut file, &mut input);

    let mut r = &file[..];
    let Ok(prelude) = v2::read_prelude(&mut r) else { return };
    let body = r;

    let check = if skip_signatures {
        SignerCheck::Skip
    } else {
        SignerCheck::Require(&fx.signer_pub)
    };
    let identity = if sealed.hybrid { &fx.hybrid } else { &fx.recipient };
    if sealed.hybrid {
        let mut out = Vec::new();
        let downgraded = prelude.decrypt(
            body,
            &mut out,
            &[&RsaHalf(&fx.hybrid) as &dyn Identity],
            SignerCheck::Skip,
        );
        assert!(
            downgraded.is_err(),
            "a hybrid file opened with its recipient's RSA key alone"
        );
    }
    let mut out = Vec::new();
    let opened = prelude.decrypt(body, &mut out, &[identity as &dyn Identity], check);
    if let Ok(summary) = &opened {
        let allowed: &[&Range<usize>] = if skip_signatures {
            &[&sealed.slot_a, &sealed.slot_b, &sealed.header_sig, &sealed.final_sig]
        } else {
            &[&sealed.slot_a, &sealed.slot_b]
        };
        assert!(
            same_outside(&sealed.file, &file, allowed),
            "decrypt (skip_signatures={skip_signatures}) accepted a modified file \
             (length {} -> {}, first difference at {:?})",
            sealed.file.len(),
            file.len(),
            sealed.file.iter().zip(&file).position(|(a, b)| a != b),
        );
        assert!(
            out == sealed.plaintext,
            "decrypt returned Ok but the output ({} bytes) differs from the plaintext ({} bytes)",
            out.len(),
            sealed.plaintext.len()
        );
        // FORMAT.md §6: the active slot is the valid one with the higher generation; two valid
        // slots of one generation (unless byte-identical: one slot written twice), or none
        // valid, mean a damaged file that must not open.
        match &prelude.slots {
            [SlotState::Valid(a), SlotState::Valid(b)] => assert!(
                a.generation != b.generation || a == b,
                "decrypt opened a file whose two different valid slots share generation {}",
                a.generation
            ),
            [SlotState::Valid(_), _] | [_, SlotState::Valid(_)] => {}
            _ => panic!("decrypt opened a file with no valid recipient slot"),
        }
        assert_eq!(summary.plaintext_bytes, out.len() as u64);
        assert_eq!(summary.recipient, identity.fingerprint());
        if !skip_signatures {
            assert_eq!(summary.verified_signer, Some(fx.signer.fingerprint()));
        }
    }

    if also_verify {
        if let Ok(report) = prelude.verify(body, &fx.signer_pub, None) {
            assert!(
                same_outside(&sealed.file, &file, &[&sealed.slot_a, &sealed.slot_b]),
                "keyless verify accepted a file modified outside the recipient slots \
                 (length {} -> {}, first difference at {:?})",
                sealed.file.len(),
                file.len(),
                sealed.file.iter().zip(&file).position(|(a, b)| a != b),
            );
            assert_eq!(report.signer, fx.signer.fingerprint());
        }
    }
});
