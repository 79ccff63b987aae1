//! Reading v2 files: the prelude (header, header signature, recipient slots), then decryption or
//! keyless verification of the chunks (FORMAT.md §9).

use std::io::{Read, Write};

use crate::byte_reader::ByteReader;
use crate::error::{Error, FormatError, Result};
use crate::hash::Sha256;
use crate::io_util::{read_exact_or_truncated, read_full, read_vec};
use crate::keys::{Fingerprint, Identity, PssSalt, PublicKey};
use crate::secret::FileKey;

use super::header::{Compression, Header};
use super::pipeline::{self, Sender, StageResult};
use super::slots::{Slot, SlotState, active_slot, parse_slot};
use super::stream::TAG_LEN;
use super::{
    MAGIC, MAX_HEADER_LEN, PREAMBLE_LEN, VERSION, final_signed_message, header_signed_message,
};

/// The largest zstd window accepted when decompressing (FORMAT.md §7): bounds decoder memory.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Everything before the chunks, parsed but not yet trusted.
#[derive(Debug, Clone)]
pub struct Prelude {
    /// The parsed header (not trusted until its signature verifies).
    pub header: Header,
    /// SHA-256 of the signed header (FORMAT.md §1).
    pub header_hash: [u8; 32],
    /// The creator's signature over the header hash.
    pub header_signature: Vec<u8>,
    /// Recipient slots A and B, as found.
    pub slots: [SlotState; 2],
    /// Byte offset of slot A from the start of the file.
    pub slots_offset: u64,
}

/// Whether to demand a valid creator signature.
#[derive(Debug, Clone, Copy)]
pub enum SignerCheck<'a> {
    /// Verify against whichever of these keys the header names; refuse if none matches.
    Require(&'a [PublicKey]),
    /// Skip signature checks (the caller has warned the user). Tags and the key commitment are
    /// still checked.
    Skip,
}

/// What a successful decryption established.
#[derive(Debug, Clone)]
pub struct DecryptSummary {
    /// The creator whose signatures verified, if they were checked.
    pub verified_signer: Option<Fingerprint>,
    /// The identity that unwrapped the file key.
    pub recipient: Fingerprint,
    /// Plaintext bytes written to the output.
    pub plaintext_bytes: u64,
    /// Sealed chunks opened.
    pub chunks: u64,
    /// Bytes of sealed chunks read.
    pub payload_bytes: u64,
    /// BLAKE3 over the sealed chunks.
    pub ciphertext_digest: [u8; 32],
}

/// What a successful verification established.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// The creator whose header and final signatures verified.
    pub signer: Fingerprint,
    /// BLAKE3 over the sealed chunks, covered by the final signature.
    pub ciphertext_digest: [u8; 32],
    /// Sealed chunks read.
    pub chunks: u64,
    /// Bytes of sealed chunks read.
    pub payload_bytes: u64,
    /// `Some` when a private key was at hand and the whole file was also decrypted (into
    /// nothing): unwrap, commitment, slot MAC, every chunk tag and the decompression all held.
    pub decrypted_with: Option<Fingerprint>,
}

/// Reads the preamble, header, header signature and both recipient slots.
pub fn read_prelude(r: &mut impl Read) -> Result<Prelude> {
    const PREAMBLE: &str = "the file preamble";
    let mut preamble = [0u8; PREAMBLE_LEN];
    read_exact_or_truncated(r, &mut preamble, PREAMBLE)?;
    // The array holds exactly these three fields, so the reads cannot come up short.
    let mut p = ByteReader::new(&preamble);
    let (Some(magic), Some(version), Some(body_len)) = (p.array::<7>(), p.u8(), p.u32_be()) else {
        return Err(Error::Truncated(PREAMBLE));
    };
    if magic != MAGIC {
        return Err(FormatError::NotPgseal.into());
    }
    if version != VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    let body_len = body_len as usize;
    if body_len > MAX_HEADER_LEN {
        return Err(FormatError::HeaderTooLong {
            len: body_len as u64,
        }
        .into());
    }
    let body = read_vec(r, body_len, "the header")?;
    let header = Header::parse_body(&body)?;
    let mut hasher = Sha256::new();
    hasher.update(&preamble);
    hasher.update(&body);
    let header_hash = hasher.finish();

    let mut sig_len = [0u8; 2];
    read_exact_or_truncated(r, &mut sig_len, "the header signature")?;
    let sig_len = u16::from_be_bytes(sig_len);
    if sig_len != header.signature_len {
        return Err(FormatError::SignatureLengthMismatch {
            found: sig_len,
            declared: header.signature_len,
        }
        .into());
    }
    let header_signature = read_vec(r, sig_len as usize, "the header signature")?;

    let slot_size = header.slot_size as usize;
    let slot_a = parse_slot(&read_vec(r, slot_size, "the recipient slots")?);
    let slot_b = parse_slot(&read_vec(r, slot_size, "the recipient slots")?);
    Ok(Prelude {
        slots_offset: (PREAMBLE_LEN + body_len + 2 + sig_len as usize) as u64,
        header,
        header_hash,
        header_signature,
        slots: [slot_a, slot_b],
    })
}

impl Prelude {
    /// The slot decryption will use, with its index (0 = A, 1 = B). In a file whose signed
    /// header says hybrid, an active slot with an RSA-only wrapping is a downgrade and refused
    /// (FORMAT.md §6a), key or no key.
    pub fn active_slot(&self) -> Result<(usize, Slot)> {
        let (index, slot) = active_slot(&self.slots[0], &self.slots[1])?;
        if self.header.hybrid && slot.has_rsa_only() {
            return Err(Error::HybridDowngrade);
        }
        Ok((index, slot))
    }

    /// Checks the header signature with the key the header names, if it is among `signers`.
    pub fn verify_header_signature<'k>(&self, signers: &'k [PublicKey]) -> Result<&'k PublicKey> {
        let signer = signers
            .iter()
            .find(|k| k.fingerprint() == self.header.signer)
            .ok_or(Error::UnknownSigner(self.header.signer))?;
        if signer.modulus_len() != self.header.signature_len as usize {
            return Err(FormatError::SignerKeyLength {
                declared: self.header.signature_len,
                key_makes: signer.modulus_len(),
            }
            .into());
        }
        if !signer.verify_pss(
            PssSalt::Digest,
            &header_signed_message(&self.header_hash),
            &self.header_signature,
        ) {
            return Err(Error::SignatureInvalid("header"));
        }
        Ok(signer)
    }

    /// Unwraps the file key and checks it against the commitment and the slot MAC, reading no
    /// data: proof that [`decrypt`](Self::decrypt) will have the key, before anything that
    /// consumes the plaintext (pg_restore) is started. Returns the identity that matched.
    pub fn check_key(&self, identities: &[&dyn Identity]) -> Result<Fingerprint> {
        let (_, slot) = self.active_slot()?;
        let h = &self.header;
        let (_, _, recipient) =
            slot.unlock(identities, &h.salt, &h.key_commitment, &self.header_hash)?;
        Ok(recipient)
    }

    /// The file key of the active slot, checked against the commitment and the slot MAC, and the
    /// identity that unwrapped it: what a key-custody service hands (sealed) to a caller it has
    /// authorised, and only after verifying the header signature itself.
    pub fn unlock_file_key(&self, identities: &[&dyn Identity]) -> Result<(FileKey, Fingerprint)> {
        let (_, slot) = self.active_slot()?;
        let h = &self.header;
        let (file_key, _, recipient) =
            slot.unlock(identities, &h.salt, &h.key_commitment, &self.header_hash)?;
        Ok((file_key, recipient))
    }

    /// Decrypts the chunks that follow the prelude in `input` into `output`.
    ///
    /// The header signature is checked before the file key is unwrapped, and plaintext reaches
    /// `output` only from chunks whose tags verified. The final signature is checked last; on any
    /// error the caller must discard what `output` received.
    pub fn decrypt<R, W>(
        &self,
        input: R,
        output: W,
        identities: &[&dyn Identity],
        signer_check: SignerCheck<'_>,
    ) -> Result<DecryptSummary>
    where
        R: Read + Send,
        W: Write + Send,
    {
        let signer = match signer_check {
            SignerCheck::Require(signers) => Some(self.verify_header_signature(signers)?),
            SignerCheck::Skip => None,
        };
        let (_, slot) = self.active_slot()?;
        let h = &self.header;
        let (_file_key, keys, recipient) =
            slot.unlock(identities, &h.salt, &h.key_commitment, &self.header_hash)?;
        let mut opener = keys.opener(&self.header_hash)?;
        let mut digest = blake3::Hasher::new();
        let mut payload_bytes = 0u64;

        let (trailer, plaintext_bytes) = pipeline::run(
            |tx| read_sealed_chunks(input, h.chunk_size as usize, h.signature_len as usize, tx),
            |(mut chunk, last): (Vec<u8>, bool)| {
                digest.update(&chunk);
                payload_bytes += chunk.len() as u64;
                opener.open(&mut chunk, last)?;
                Ok(chunk)
            },
            |rx| write_plaintext(rx, output, h.compression),
        )?;

        let ciphertext_digest = finish(digest);
        if let Some(signer) = signer {
            self.check_final_signature(signer, &ciphertext_digest, &trailer)?;
        }
        Ok(DecryptSummary {
            verified_signer: signer.map(PublicKey::fingerprint),
            recipient,
            plaintext_bytes,
            chunks: opener.chunks_opened(),
            payload_bytes,
            ciphertext_digest,
        })
    }

    /// Verifies the file with the creator's public key alone: header signature, then the final
    /// signature over the digest of every sealed chunk. With an `identity`, also decrypts the
    /// whole file into nothing, proving it opens.
    pub fn verify<R: Read + Send>(
        &self,
        input: R,
        signers: &[PublicKey],
        identity: Option<&dyn Identity>,
    ) -> Result<VerifyReport> {
        let signer = self.verify_header_signature(signers)?;
        // A file no recipient slot can open is not a good backup, whatever its signatures say.
        self.active_slot()?;
        if let Some(identity) = identity {
            let summary = self.decrypt(
                input,
                std::io::sink(),
                &[identity],
                SignerCheck::Require(signers),
            )?;
            return Ok(VerifyReport {
                signer: signer.fingerprint(),
                ciphertext_digest: summary.ciphertext_digest,
                chunks: summary.chunks,
                payload_bytes: summary.payload_bytes,
                decrypted_with: Some(summary.recipient),
            });
        }
        let h = &self.header;
        let mut digest = blake3::Hasher::new();
        let mut chunks = 0u64;
        let mut payload_bytes = 0u64;
        let (trailer, ()) = pipeline::run(
            |tx| read_sealed_chunks(input, h.chunk_size as usize, h.signature_len as usize, tx),
            |(chunk, _last): (Vec<u8>, bool)| {
                digest.update(&chunk);
                chunks += 1;
                payload_bytes += chunk.len() as u64;
                Ok(())
            },
            |rx| {
                rx.for_each(drop);
                Ok(())
            },
        )?;
        let ciphertext_digest = finish(digest);
        self.check_final_signature(signer, &ciphertext_digest, &trailer)?;
        Ok(VerifyReport {
            signer: signer.fingerprint(),
            ciphertext_digest,
            chunks,
            payload_bytes,
            decrypted_with: None,
        })
    }

    /// Checks the final signature (FORMAT.md §8) — the file's last `signature_len` bytes —
    /// over this header and a ciphertext digest `D` obtained elsewhere (a catalog records it
    /// when the backup is made). A match proves the creator signed that digest for this file;
    /// only hashing the chunks ([`Prelude::verify`]) proves the chunks still hash to it.
    pub fn check_final_signature(
        &self,
        signer: &PublicKey,
        ciphertext_digest: &[u8; 32],
        signature: &[u8],
    ) -> Result<()> {
        let message = final_signed_message(&self.header_hash, ciphertext_digest);
        if signer.verify_pss(PssSalt::Digest, &message, signature) {
            Ok(())
        } else {
            Err(Error::SignatureInvalid("final"))
        }
    }
}

fn finish(digest: blake3::Hasher) -> [u8; 32] {
    *digest.finalize().as_bytes()
}

/// Splits the rest of the file into sealed chunks and the final signature (FORMAT.md §7): holds
/// back `sig_len + 1` bytes so it knows which chunk is the last without seeking.
fn read_sealed_chunks<R: Read>(
    mut input: R,
    chunk_size: usize,
    sig_len: usize,
    tx: &Sender<(Vec<u8>, bool)>,
) -> StageResult<Vec<u8>> {
    let sealed_len = chunk_size + TAG_LEN;
    let window = sealed_len + sig_len + 1;
    let mut carry = Vec::new();
    loop {
        let mut buf = Vec::with_capacity(window);
        buf.extend_from_slice(&carry);
        buf.resize(window, 0);
        let got = read_full(&mut input, &mut buf[carry.len()..])
            .map_err(|e| Error::io("reading input", e))?;
        let filled = carry.len() + got;
        buf.truncate(filled);
        if filled == window {
            carry = buf.split_off(sealed_len);
            tx.send((buf, false))?;
        } else {
            if filled < sig_len + TAG_LEN {
                return Err(Error::Truncated("the last chunk and final signature").into());
            }
            let trailer = buf.split_off(filled - sig_len);
            tx.send((buf, true))?;
            return Ok(trailer);
        }
    }
}

/// The consumer stage of decryption: decompresses if needed and writes plaintext out.
fn write_plaintext<W: Write>(
    rx: impl Iterator<Item = Vec<u8>>,
    output: W,
    compression: Compression,
) -> StageResult<u64> {
    let write_err = |e| Error::io("writing output", e);
    // Large writes: fewer system calls, and whole pages for the page cache.
    let mut output = std::io::BufWriter::with_capacity(1024 * 1024, output);
    let mut written = 0u64;
    match compression {
        Compression::None => {
            for chunk in rx {
                output.write_all(&chunk).map_err(write_err)?;
                written += chunk.len() as u64;
            }
        }
        Compression::Zstd => {
            use zstd::stream::raw::{DParameter, Decoder, Operation};
            let zerr = |e: std::io::Error| Error::Decompress(e.to_string());
            let mut decoder = Decoder::new().map_err(zerr)?;
            decoder
                .set_parameter(DParameter::WindowLogMax(ZSTD_WINDOW_LOG_MAX))
                .map_err(zerr)?;
            let mut out = vec![0u8; 256 * 1024];
            let mut frame_complete = true;
            // An empty chunk (an empty payload) holds no frame to decode.
            for chunk in rx.filter(|c| !c.is_empty()) {
                let mut pos = 0;
                loop {
                    let status = decoder
                        .run_on_buffers(&chunk[pos..], &mut out)
                        .map_err(zerr)?;
                    pos += status.bytes_read;
                    output
                        .write_all(&out[..status.bytes_written])
                        .map_err(write_err)?;
                    written += status.bytes_written as u64;
                    // A call that made no progress (the output was exactly full last time)
                    // reports the next frame's header size: not a verdict on this frame.
                    if status.bytes_read > 0 || status.bytes_written > 0 {
                        frame_complete = status.remaining == 0;
                    }
                    if pos == chunk.len() && status.bytes_written < out.len() {
                        break;
                    }
                }
            }
            if !frame_complete {
                return Err(
                    Error::Decompress("the compressed stream ends mid-frame".into()).into(),
                );
            }
        }
    }
    output.flush().map_err(write_err)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyBits, PrivateKey};
    use crate::v2::slots::{Stanza, encode_slot};
    use crate::v2::stream::FileKeys;
    use crate::v2::{SealParams, seal};

    /// A downgrade with everything else right: the attacker knows the file key (the strongest
    /// case), so the new RSA-only slot has a valid MAC and checksum and a higher generation. Only
    /// the signed `hybrid_recipients` rule can refuse it, and it does, key or no key.
    #[test]
    fn an_rsa_only_slot_with_a_valid_mac_in_a_hybrid_file_is_a_downgrade() {
        let signer = PrivateKey::generate(KeyBits::Rsa2048).unwrap();
        let server = PrivateKey::generate_hybrid(KeyBits::Rsa2048).unwrap();
        let recipients = [server.public().clone()];
        let mut file = Vec::new();
        seal(
            &b"secret"[..],
            &mut file,
            &SealParams::new(&signer, &recipients),
        )
        .unwrap();

        let p = read_prelude(&mut &file[..]).unwrap();
        let (file_key, _) = p.unlock_file_key(&[&server]).unwrap();
        let keys = FileKeys::derive(&file_key, &p.header.salt).unwrap();
        // The same RSA key, as an RSA-only recipient.
        let rsa_only = crate::PublicKey::from_der(server.public().spki_der()).unwrap();
        let stanza = Stanza::wrap(&rsa_only, &file_key).unwrap();
        let slot = encode_slot(2, &[stanza], p.header.slot_size, &keys, &p.header_hash).unwrap();
        let b = p.slots_offset as usize + p.header.slot_size as usize;
        file[b..b + slot.len()].copy_from_slice(&slot);

        let p = read_prelude(&mut &file[..]).unwrap();
        assert!(matches!(p.active_slot(), Err(Error::HybridDowngrade)));
        let signers = [signer.public().clone()];
        let body = &file[p.slots_offset as usize + 2 * p.header.slot_size as usize..];
        let err = p
            .decrypt(body, Vec::new(), &[&server], SignerCheck::Require(&signers))
            .unwrap_err();
        assert!(matches!(err, Error::HybridDowngrade), "{err}");
        assert_eq!(err.kind(), crate::ErrorKind::Authentication);
        let err = p.verify(body, &signers, None).unwrap_err();
        assert!(matches!(err, Error::HybridDowngrade), "{err}");
    }
}
