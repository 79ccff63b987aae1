//! `PGBACKUP_HYBRID_V1`: RSA-OAEP-wrapped session key, RSA-PSS signature, one AES-256-GCM
//! message (legacy-formats.md §2). Integers little-endian.
//!
//! The format's faults are the reason v2 exists: the header is not authenticated, the file names
//! no key (so the caller must choose the server key), and the signature — PSS with the maximum
//! salt over the 32-byte message `SHA-256(ciphertext || tag)`, hashed again by the signer — covers
//! the ciphertext only. pgseal reads it faithfully and checks everything that *can* be checked.

use std::io::{Read, Seek, SeekFrom, Write};

use super::gcm::{GcmStream, NONCE_LEN, TAG_LEN};
use super::stream_holding_back;
use crate::byte_reader::ByteReader;
use crate::error::{Error, FormatError, LegacyField, LegacyTagCause, Result};
use crate::hash::Sha256;
use crate::io_util::{read_exact_or_truncated, read_vec};
use crate::keys::{Identity, PssSalt, PublicKey, Signer};
use crate::secret::{FileKey, fill_random};

/// The first twenty bytes of every legacy hybrid file.
pub const MAGIC: [u8; 20] = *b"PGBACKUP_HYBRID_V1\0\0";
/// The only version the old system wrote.
pub const VERSION: u32 = 1;
/// The most a length field may claim: an RSA-8192 modulus.
pub(crate) const MAX_RSA_BYTES: u32 = 1024;
const FIXED_LEN: usize = 44;

/// The unauthenticated header of a legacy hybrid file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyHeader {
    /// Always [`VERSION`].
    pub version: u32,
    /// The database id of the user who made the file.
    pub user_id: u64,
    /// Unix seconds.
    pub created_unix: u64,
    /// The session key, RSA-OAEP-wrapped to the server key (which the file does not name).
    pub wrapped_key: Vec<u8>,
    /// The creator's RSA-PSS signature over `SHA-256(ciphertext || tag)`.
    pub signature: Vec<u8>,
    /// The AES-GCM nonce.
    pub nonce: [u8; NONCE_LEN],
}

impl LegacyHeader {
    /// Bytes from the start of the file to the first ciphertext byte.
    pub fn encoded_len(&self) -> u64 {
        (FIXED_LEN + self.wrapped_key.len() + 4 + self.signature.len() + NONCE_LEN) as u64
    }

    /// Where the wrapped session key lies in the file: what a rewrap must wipe from a copy it
    /// replaces.
    pub fn wrapped_key_range(&self) -> std::ops::Range<u64> {
        FIXED_LEN as u64..(FIXED_LEN + self.wrapped_key.len()) as u64
    }
}

/// Reads the header. `file_len`, when the input is a file of known size, lets every length field
/// be checked against the bytes actually present before anything is read or allocated.
pub fn read_header(r: &mut impl Read, file_len: Option<u64>) -> Result<LegacyHeader> {
    const FIXED: &str = "the legacy header";
    let mut fixed = [0u8; FIXED_LEN];
    read_exact_or_truncated(r, &mut fixed, FIXED)?;
    // `magic(20) || version u32 || user_id u64 || created u64 || key_len u32`, all little-endian:
    // the array holds exactly these, so the reads cannot come up short.
    let mut f = ByteReader::new(&fixed);
    let (Some(magic), Some(version), Some(user_id), Some(created_unix), Some(key_len)) = (
        f.array::<20>(),
        f.u32_le(),
        f.u64_le(),
        f.u64_le(),
        f.u32_le(),
    ) else {
        return Err(Error::Truncated(FIXED));
    };
    if magic != MAGIC {
        return Err(FormatError::NotLegacyHybrid.into());
    }
    if version != VERSION {
        return Err(FormatError::LegacyVersion(version).into());
    }
    check_len(
        LegacyField::WrappedKey,
        key_len,
        FIXED_LEN as u64 + 4,
        file_len,
    )?;
    let wrapped_key = read_vec(r, key_len as usize, "the wrapped session key")?;

    let mut sig_len = [0u8; 4];
    read_exact_or_truncated(r, &mut sig_len, "the signature length")?;
    let sig_len = u32::from_le_bytes(sig_len);
    let before_sig = FIXED_LEN as u64 + key_len as u64 + 4;
    check_len(
        LegacyField::Signature,
        sig_len,
        before_sig + (NONCE_LEN + TAG_LEN) as u64,
        file_len,
    )?;
    let signature = read_vec(r, sig_len as usize, "the signature")?;

    let mut nonce = [0u8; NONCE_LEN];
    read_exact_or_truncated(r, &mut nonce, "the nonce")?;
    Ok(LegacyHeader {
        version,
        user_id,
        created_unix,
        wrapped_key,
        signature,
        nonce,
    })
}

/// A length field is plausible (an RSA block of at most 8,192 bits) and fits in the file next to
/// the `other` bytes the file must also hold.
fn check_len(
    field: LegacyField,
    len: u32,
    other: u64,
    file_len: Option<u64>,
) -> Result<(), FormatError> {
    if len == 0 || len > MAX_RSA_BYTES {
        return Err(FormatError::LegacyLengthImpossible { field, len });
    }
    if let Some(total) = file_len
        && other + len as u64 > total
    {
        return Err(FormatError::LegacyLengthPastEnd {
            field,
            len,
            file_len: total,
        });
    }
    Ok(())
}

/// What opening (or sealing) a legacy hybrid file established.
#[derive(Debug, Clone)]
pub struct LegacyOpened {
    /// Plaintext bytes written (or read, when sealing).
    pub plaintext_bytes: u64,
    /// `SHA-256(ciphertext || tag)`: the value the creator signed. Check the signature with
    /// [`check_signature`] before trusting the plaintext's origin.
    pub ciphertext_digest: [u8; 32],
}

/// Decrypts the body (everything after the header) into `output` and checks the GCM tag at the
/// end; `output` holds unauthenticated data until this returns `Ok`. The creator's signature is
/// the caller's to check, with [`check_signature`] and the returned digest, since the file does
/// not say which key made it.
pub fn decrypt<R: Read, W: Write>(
    header: &LegacyHeader,
    body: R,
    mut output: W,
    identity: &dyn Identity,
) -> Result<LegacyOpened> {
    let session_key = identity.unwrap_file_key(&header.wrapped_key)?;
    let mut gcm = GcmStream::new(session_key.expose(), &header.nonce)?;
    let mut hash = Sha256::new();
    let mut written = 0u64;
    let tag = stream_holding_back(body, TAG_LEN, |data| {
        hash.update(data);
        gcm.decrypt(data)?;
        output
            .write_all(data)
            .map_err(|e| Error::io("writing output", e))?;
        written += data.len() as u64;
        Ok(())
    })?;
    hash.update(&tag);
    let ciphertext_digest = hash.finish();
    if !gcm.verify(&tag) {
        return Err(Error::LegacyTagMismatch(LegacyTagCause::Damaged));
    }
    output.flush().map_err(|e| Error::io("writing output", e))?;
    Ok(LegacyOpened {
        plaintext_bytes: written,
        ciphertext_digest,
    })
}

/// `SHA-256(ciphertext || tag)` of the body: what the creator signed. With [`check_signature`],
/// this verifies a file with the public key alone.
pub fn body_digest<R: Read>(body: R) -> Result<[u8; 32]> {
    let mut hash = Sha256::new();
    let tag = stream_holding_back(body, TAG_LEN, |data| {
        hash.update(data);
        Ok(())
    })?;
    hash.update(&tag);
    Ok(hash.finish())
}

/// Checks the creator's signature against the digest of the body.
pub fn check_signature(header: &LegacyHeader, signer: &PublicKey, digest: &[u8; 32]) -> Result<()> {
    // The old signer was handed the digest as its message and hashed it again.
    if signer.verify_pss(PssSalt::Max, digest, &header.signature) {
        Ok(())
    } else {
        Err(Error::SignatureInvalid("legacy"))
    }
}

/// Writes a legacy hybrid file (`--format v1`), for sites still running the old tools. The
/// signature precedes the ciphertext it covers, so the output must be seekable: a placeholder is
/// written first and filled in at the end.
pub fn encrypt<R: Read, W: Write + Seek>(
    input: R,
    mut output: W,
    server: &PublicKey,
    signer: &dyn Signer,
    user_id: u64,
    created_unix: u64,
) -> Result<LegacyOpened> {
    let werr = |e| Error::io("writing output", e);
    let session_key = FileKey::generate()?;
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    let header = LegacyHeader {
        version: VERSION,
        user_id,
        created_unix,
        wrapped_key: server.wrap_file_key(&session_key)?,
        signature: vec![0u8; signer.public().modulus_len()],
        nonce,
    };
    let start = output.stream_position().map_err(werr)?;
    output.write_all(&header.encode()).map_err(werr)?;

    let mut gcm = GcmStream::new(session_key.expose(), &nonce)?;
    let mut hash = Sha256::new();
    let mut n = 0u64;
    stream_holding_back(input, 0, |data| {
        gcm.encrypt(data)?;
        hash.update(data);
        n += data.len() as u64;
        output.write_all(data).map_err(werr)
    })?;
    let tag = gcm.tag();
    hash.update(&tag);
    output.write_all(&tag).map_err(werr)?;
    let ciphertext_digest = hash.finish();

    let signature = signer.sign_pss(PssSalt::Max, &ciphertext_digest)?;
    let sig_at = start + (FIXED_LEN + header.wrapped_key.len() + 4) as u64;
    output.seek(SeekFrom::Start(sig_at)).map_err(werr)?;
    output.write_all(&signature).map_err(werr)?;
    output.seek(SeekFrom::End(0)).map_err(werr)?;
    output.flush().map_err(werr)?;
    Ok(LegacyOpened {
        plaintext_bytes: n,
        ciphertext_digest,
    })
}

impl LegacyHeader {
    /// The header's bytes, as the old system laid them out.
    pub fn encode(&self) -> Vec<u8> {
        encode_header(self)
    }
}

fn encode_header(h: &LegacyHeader) -> Vec<u8> {
    let mut out = Vec::with_capacity(h.encoded_len() as usize);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&h.version.to_le_bytes());
    out.extend_from_slice(&h.user_id.to_le_bytes());
    out.extend_from_slice(&h.created_unix.to_le_bytes());
    out.extend_from_slice(&(h.wrapped_key.len() as u32).to_le_bytes());
    out.extend_from_slice(&h.wrapped_key);
    out.extend_from_slice(&(h.signature.len() as u32).to_le_bytes());
    out.extend_from_slice(&h.signature);
    out.extend_from_slice(&h.nonce);
    out
}
