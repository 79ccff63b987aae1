//! Writing v2 files: input → compress → chunk → seal → hash → output (FORMAT.md §1–8).

use std::io::{self, Read, Write};

use crate::error::{Error, Result};
use crate::hash::sha256;
use crate::keys::{Fingerprint, PssSalt, PublicKey, Signer};
use crate::secret::{FileKey, fill_random};

use super::header::{Compression, Header, Metadata};
use super::pipeline::{self, Sender, StageError, StageResult};
use super::slots::{Stanza, encode_slot, slot_size_for};
use super::stream::{FileKeys, TAG_LEN};
use super::{DEFAULT_CHUNK_SIZE, final_signed_message, header_signed_message};

/// What to seal and how.
#[derive(Debug, Clone)]
pub struct SealParams<'a> {
    /// The creator's key: signs the header and the final digest.
    pub signer: &'a dyn Signer,
    /// Who can decrypt: the server key, plus any recovery keys. 1 to 16, all hybrid (RSA +
    /// ML-KEM-768, then the file says so in its signed header) or all RSA-only.
    pub recipients: &'a [PublicKey],
    /// How to compress the payload before encryption.
    pub compression: Compression,
    /// zstd level (1–19); pgseal's default is 3.
    pub zstd_level: i32,
    /// zstd worker threads; 0 compresses on the reading thread.
    pub zstd_workers: u32,
    /// A power of two from 1 KiB to 16 MiB.
    pub chunk_size: u32,
    /// What the header records about the file's origin.
    pub metadata: Metadata,
}

impl<'a> SealParams<'a> {
    /// Defaults: zstd level 3, 64 KiB chunks, metadata stamped now.
    pub fn new(signer: &'a dyn Signer, recipients: &'a [PublicKey]) -> Self {
        SealParams {
            signer,
            recipients,
            compression: Compression::Zstd,
            zstd_level: 3,
            zstd_workers: 0,
            chunk_size: DEFAULT_CHUNK_SIZE,
            metadata: Metadata::now(),
        }
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct SealSummary {
    /// The header written.
    pub header: Header,
    /// Who can decrypt the file.
    pub recipients: Vec<Fingerprint>,
    /// Bytes read from the input.
    pub input_bytes: u64,
    /// Bytes of the whole file written.
    pub output_bytes: u64,
    /// BLAKE3 over all sealed chunks (what the final signature covers, with the header hash).
    pub ciphertext_digest: [u8; 32],
    /// Sealed chunks written.
    pub chunks: u64,
}

/// Seals `input` into `output` as a v2 file. On error, what was written to `output` is garbage
/// and must be discarded (the CLI writes to a temporary file for exactly this reason).
pub fn seal<R, W>(input: R, mut output: W, params: &SealParams<'_>) -> Result<SealSummary>
where
    R: Read + Send,
    W: Write + Send,
{
    let chunk_size = params.chunk_size;
    if !chunk_size.is_power_of_two() || !(1024..=16 * 1024 * 1024).contains(&chunk_size) {
        return Err(Error::InvalidParameter(format!(
            "chunk size must be a power of two from 1 KiB to 16 MiB, got {chunk_size}"
        )));
    }

    let hybrid = params.recipients.iter().all(|r| r.pq().is_some());
    if !hybrid && let Some(pq) = params.recipients.iter().find(|r| r.pq().is_some()) {
        return Err(Error::InvalidParameter(format!(
            "recipient {} is hybrid (RSA + ML-KEM-768) but {} is RSA-only: a file for both would be \
             only as strong as RSA; give every recipient an ML-KEM-768 half, or none",
            pq.fingerprint(),
            params
                .recipients
                .iter()
                .find(|r| r.pq().is_none())
                .map(PublicKey::fingerprint)
                .expect("not all are hybrid")
        )));
    }
    let file_key = FileKey::generate()?;
    let mut salt = [0u8; 32];
    fill_random(&mut salt)?;
    let keys = FileKeys::derive(&file_key, &salt)?;
    let stanzas = params
        .recipients
        .iter()
        .map(|r| Stanza::wrap(r, &file_key))
        .collect::<Result<Vec<_>>>()?;
    let slot_size = slot_size_for(&stanzas)?;

    let signer = params.signer.public();
    let header = Header {
        metadata: params.metadata.clone(),
        chunk_size,
        salt,
        key_commitment: keys.commitment,
        compression: params.compression,
        slot_size,
        signer: signer.fingerprint(),
        signature_len: u16::try_from(signer.modulus_len())
            .map_err(|_| Error::InvalidParameter("signing key too large".into()))?,
        hybrid,
        unknown: Vec::new(),
    };
    let signed_header = header.encode();
    let header_hash = sha256(&signed_header);
    let header_sig = params
        .signer
        .sign_pss(PssSalt::Digest, &header_signed_message(&header_hash))?;

    let mut prelude = signed_header;
    prelude.extend_from_slice(&(header_sig.len() as u16).to_be_bytes());
    prelude.extend_from_slice(&header_sig);
    prelude.extend_from_slice(&encode_slot(1, &stanzas, slot_size, &keys, &header_hash)?);
    prelude.resize(prelude.len() + slot_size as usize, 0);
    output
        .write_all(&prelude)
        .map_err(|e| Error::io("writing output", e))?;

    let mut sealer = keys.sealer(&header_hash)?;
    let mut digest = blake3::Hasher::new();
    let mut chunks = 0u64;
    let compression = (params.compression, params.zstd_level, params.zstd_workers);

    let (input_bytes, (payload_bytes, mut output)) = pipeline::run(
        |tx| produce_chunks(input, compression, chunk_size as usize, tx),
        |(mut chunk, last): (Vec<u8>, bool)| {
            sealer.seal(&mut chunk, last)?;
            digest.update(&chunk);
            chunks += 1;
            Ok(chunk)
        },
        |rx| {
            // Sealed chunks are 16 bytes longer than a page multiple; gathering them into 1 MiB
            // writes keeps the file's writes large and page-aligned.
            let mut out = std::io::BufWriter::with_capacity(WRITE_BUFFER, output);
            let mut written = 0u64;
            for sealed in rx {
                out.write_all(&sealed)
                    .map_err(|e| Error::io("writing output", e))?;
                written += sealed.len() as u64;
            }
            let output = out
                .into_inner()
                .map_err(|e| Error::io("writing output", e.into_error()))?;
            Ok((written, output))
        },
    )?;
    if !sealer.is_finished() {
        return Err(Error::Crypto("the input ended without a last chunk"));
    }

    let ciphertext_digest: [u8; 32] = *digest.finalize().as_bytes();
    let final_sig = params.signer.sign_pss(
        PssSalt::Digest,
        &final_signed_message(&header_hash, &ciphertext_digest),
    )?;
    output
        .write_all(&final_sig)
        .and_then(|()| output.flush())
        .map_err(|e| Error::io("writing output", e))?;

    Ok(SealSummary {
        recipients: params
            .recipients
            .iter()
            .map(PublicKey::fingerprint)
            .collect(),
        header,
        input_bytes,
        output_bytes: prelude.len() as u64 + payload_bytes + final_sig.len() as u64,
        ciphertext_digest,
        chunks,
    })
}

/// Bytes gathered before each write of the sealed output.
const WRITE_BUFFER: usize = 1024 * 1024;

/// Bytes per multi-threaded zstd job: zstd's default for level 3 makes jobs of several MiB per
/// worker, which multiplied its memory use; 1 MiB costs almost nothing in ratio.
const ZSTD_JOB_SIZE: u32 = 1024 * 1024;

/// Reads the input, compresses it if asked, and cuts the payload into chunks.
fn produce_chunks<R: Read>(
    mut input: R,
    (compression, level, workers): (Compression, i32, u32),
    chunk_size: usize,
    tx: &Sender<(Vec<u8>, bool)>,
) -> StageResult<u64> {
    let chunker = Chunker {
        size: chunk_size,
        current: Vec::with_capacity(chunk_size + TAG_LEN),
        tx,
    };
    match compression {
        Compression::None => {
            let mut chunker = chunker;
            let n = pump(&mut input, &mut chunker)?;
            chunker.finish()?;
            Ok(n)
        }
        Compression::Zstd => {
            let mut encoder = zstd::stream::write::Encoder::new(chunker, level)
                .map_err(|e| Error::InvalidParameter(format!("zstd level {level}: {e}")))?;
            if workers > 0 {
                encoder
                    .multithread(workers)
                    .and_then(|()| {
                        // Small jobs keep the compressor's memory to a few MiB per worker.
                        encoder.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))
                    })
                    .map_err(|e| Error::InvalidParameter(format!("zstd workers: {e}")))?;
            }
            let n = pump(&mut input, &mut encoder)?;
            let chunker = encoder.finish().map_err(write_error)?;
            chunker.finish()?;
            Ok(n)
        }
    }
}

/// Copies all of `input` into `sink`, telling input errors from a closed pipeline.
fn pump<R: Read, S: Write>(input: &mut R, sink: &mut S) -> StageResult<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("reading input", e).into()),
        };
        sink.write_all(&buf[..n]).map_err(write_error)?;
        total += n as u64;
    }
}

/// The I/O error a [`Chunker`] returns when the next stage has gone away; recognised by type so
/// it is never mistaken for (or reported instead of) the failure that closed the pipeline.
#[derive(Debug)]
struct PipelineClosed;

impl std::fmt::Display for PipelineClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("pipeline closed")
    }
}

impl std::error::Error for PipelineClosed {}

fn write_error(e: io::Error) -> StageError {
    if e.get_ref()
        .is_some_and(|inner| inner.is::<PipelineClosed>())
    {
        StageError::Closed
    } else {
        StageError::Failed(Error::io("compressing input", e))
    }
}

/// Cuts a byte stream into chunks. A full chunk is sent only once a byte of the next one
/// arrives, so the last chunk (sent by `finish`) is known to be last and may be full.
struct Chunker<'a> {
    size: usize,
    current: Vec<u8>,
    tx: &'a Sender<(Vec<u8>, bool)>,
}

impl Chunker<'_> {
    fn finish(self) -> StageResult<()> {
        self.tx.send((self.current, true))
    }
}

impl Write for Chunker<'_> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let len = buf.len();
        while !buf.is_empty() {
            if self.current.len() == self.size {
                let next = Vec::with_capacity(self.size + TAG_LEN);
                let full = std::mem::replace(&mut self.current, next);
                if self.tx.send((full, false)).is_err() {
                    return Err(io::Error::other(PipelineClosed));
                }
            }
            let n = (self.size - self.current.len()).min(buf.len());
            self.current.extend_from_slice(&buf[..n]);
            buf = &buf[n..];
        }
        Ok(len)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
