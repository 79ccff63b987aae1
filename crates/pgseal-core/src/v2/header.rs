//! The v2 header: typed fields in a canonical tag–length–value encoding (FORMAT.md §3).
//!
//! Parsing is strict where the spec is strict (order, lengths, required fields, critical tags) so
//! that one header has exactly one encoding and the signature covers a single meaning.

use crate::error::{Error, Result};
use crate::keys::Fingerprint;

use super::{MAGIC, MAX_HEADER_LEN, VERSION};

const CREATED_AT: u16 = 0x0010;
const TOOL: u16 = 0x0011;
const CREATOR_USER_ID: u16 = 0x0012;
const CREATOR_USERNAME: u16 = 0x0013;
const SOURCE_DATABASE: u16 = 0x0014;
const SOURCE_HOST: u16 = 0x0015;
const DUMP_FORMAT: u16 = 0x0016;
const CONTENT_NAME: u16 = 0x0017;
const AUDIT_ANCHOR: u16 = 0x0018;
const SUITE: u16 = 0x8001;
const CHUNK_SIZE: u16 = 0x8002;
const SALT: u16 = 0x8003;
const KEY_COMMITMENT: u16 = 0x8004;
const COMPRESSION: u16 = 0x8005;
const SLOT_SIZE: u16 = 0x8006;
const SIGNER_FINGERPRINT: u16 = 0x8007;
const SIGNATURE_LENGTH: u16 = 0x8008;

const CRITICAL: u16 = 0x8000;
const SUITE_V2: u8 = 1;

/// How the payload was compressed before encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
        }
    }
}

/// Who made a file and from what: the descriptive half of the header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Milliseconds since the Unix epoch, UTC.
    pub created_at_ms: u64,
    pub tool: Option<String>,
    pub creator_user_id: Option<u64>,
    pub creator_username: Option<String>,
    pub source_database: Option<String>,
    pub source_host: Option<String>,
    pub dump_format: Option<String>,
    pub content_name: Option<String>,
    /// The audit log's head when the file was made: its `seq` and entry hash. Signed with the
    /// header, it lets `pgseal audit verify` prove the log was not cut back past this point.
    pub audit_anchor: Option<AuditAnchor>,
}

/// A position in the audit log's hash chain (docs/AUDIT.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditAnchor {
    pub seq: u64,
    pub entry_hash: [u8; 32],
}

impl Metadata {
    /// Metadata stamped now, by this tool, with nothing else known.
    pub fn now() -> Self {
        let created_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Metadata {
            created_at_ms,
            tool: Some(crate::TOOL.to_owned()),
            ..Metadata::default()
        }
    }
}

/// A whole v2 header: metadata plus the cryptographic parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub metadata: Metadata,
    pub chunk_size: u32,
    pub salt: [u8; 32],
    pub key_commitment: [u8; 32],
    pub compression: Compression,
    pub slot_size: u32,
    pub signer: Fingerprint,
    pub signature_len: u16,
    /// Non-critical fields this version does not know (tag, value), kept for `inspect`.
    pub unknown: Vec<(u16, Vec<u8>)>,
}

impl Header {
    /// The signed header: preamble, body length, body.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(512);
        let m = &self.metadata;
        put(&mut body, CREATED_AT, &m.created_at_ms.to_be_bytes());
        put_opt_str(&mut body, TOOL, &m.tool);
        if let Some(id) = m.creator_user_id {
            put(&mut body, CREATOR_USER_ID, &id.to_be_bytes());
        }
        put_opt_str(&mut body, CREATOR_USERNAME, &m.creator_username);
        put_opt_str(&mut body, SOURCE_DATABASE, &m.source_database);
        put_opt_str(&mut body, SOURCE_HOST, &m.source_host);
        put_opt_str(&mut body, DUMP_FORMAT, &m.dump_format);
        put_opt_str(&mut body, CONTENT_NAME, &m.content_name);
        if let Some(a) = &m.audit_anchor {
            let mut v = a.seq.to_be_bytes().to_vec();
            v.extend_from_slice(&a.entry_hash);
            put(&mut body, AUDIT_ANCHOR, &v);
        }
        put(&mut body, SUITE, &[SUITE_V2]);
        put(&mut body, CHUNK_SIZE, &self.chunk_size.to_be_bytes());
        put(&mut body, SALT, &self.salt);
        put(&mut body, KEY_COMMITMENT, &self.key_commitment);
        let compression = match self.compression {
            Compression::None => 0u8,
            Compression::Zstd => 1u8,
        };
        put(&mut body, COMPRESSION, &[compression]);
        put(&mut body, SLOT_SIZE, &self.slot_size.to_be_bytes());
        put(&mut body, SIGNER_FINGERPRINT, self.signer.as_bytes());
        put(
            &mut body,
            SIGNATURE_LENGTH,
            &self.signature_len.to_be_bytes(),
        );

        let mut out = Vec::with_capacity(12 + body.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Parses a header body (the bytes after the length field).
    pub fn parse_body(body: &[u8]) -> Result<Self> {
        if body.len() > MAX_HEADER_LEN {
            return Err(Error::malformed("header longer than 65,536 bytes"));
        }
        let mut fields = Fields {
            rest: body,
            last_tag: None,
        };
        let mut created_at = None;
        let mut metadata = Metadata::default();
        let mut suite = None;
        let mut chunk_size = None;
        let mut salt = None;
        let mut commitment = None;
        let mut compression = None;
        let mut slot_size = None;
        let mut signer = None;
        let mut signature_len = None;
        let mut unknown = Vec::new();

        while let Some((tag, value)) = fields.next_field()? {
            match tag {
                CREATED_AT => created_at = Some(u64::from_be_bytes(fixed(tag, value)?)),
                TOOL => metadata.tool = Some(string(tag, value)?),
                CREATOR_USER_ID => {
                    metadata.creator_user_id = Some(u64::from_be_bytes(fixed(tag, value)?))
                }
                CREATOR_USERNAME => metadata.creator_username = Some(string(tag, value)?),
                SOURCE_DATABASE => metadata.source_database = Some(string(tag, value)?),
                SOURCE_HOST => metadata.source_host = Some(string(tag, value)?),
                DUMP_FORMAT => metadata.dump_format = Some(string(tag, value)?),
                CONTENT_NAME => metadata.content_name = Some(string(tag, value)?),
                AUDIT_ANCHOR => {
                    let v: [u8; 40] = fixed(tag, value)?;
                    metadata.audit_anchor = Some(AuditAnchor {
                        seq: u64::from_be_bytes(v[..8].try_into().expect("8 bytes")),
                        entry_hash: v[8..].try_into().expect("32 bytes"),
                    });
                }
                SUITE => suite = Some(fixed::<1>(tag, value)?[0]),
                CHUNK_SIZE => chunk_size = Some(u32::from_be_bytes(fixed(tag, value)?)),
                SALT => salt = Some(fixed::<32>(tag, value)?),
                KEY_COMMITMENT => commitment = Some(fixed::<32>(tag, value)?),
                COMPRESSION => {
                    compression = Some(match fixed::<1>(tag, value)?[0] {
                        0 => Compression::None,
                        1 => Compression::Zstd,
                        other => {
                            return Err(Error::malformed(format!(
                                "unknown compression method {other}"
                            )));
                        }
                    })
                }
                SLOT_SIZE => slot_size = Some(u32::from_be_bytes(fixed(tag, value)?)),
                SIGNER_FINGERPRINT => signer = Some(Fingerprint::from_bytes(fixed(tag, value)?)),
                SIGNATURE_LENGTH => signature_len = Some(u16::from_be_bytes(fixed(tag, value)?)),
                t if t & CRITICAL != 0 => return Err(Error::UnknownCriticalField(t)),
                t => unknown.push((t, value.to_vec())),
            }
        }

        let missing =
            |name: &str| Error::malformed(format!("header lacks the required field {name}"));
        metadata.created_at_ms = created_at.ok_or_else(|| missing("created_at"))?;
        match suite.ok_or_else(|| missing("suite"))? {
            SUITE_V2 => {}
            other => return Err(Error::malformed(format!("unknown algorithm suite {other}"))),
        }
        let chunk_size = chunk_size.ok_or_else(|| missing("chunk_size"))?;
        if !chunk_size.is_power_of_two() || !(1024..=16 * 1024 * 1024).contains(&chunk_size) {
            return Err(Error::malformed(format!("invalid chunk size {chunk_size}")));
        }
        let slot_size = slot_size.ok_or_else(|| missing("recipient_slot_size"))?;
        if slot_size % 64 != 0 || !(512..=65_536).contains(&slot_size) {
            return Err(Error::malformed(format!(
                "invalid recipient slot size {slot_size}"
            )));
        }
        let signature_len = signature_len.ok_or_else(|| missing("signature_length"))?;
        if !(256..=1024).contains(&signature_len) {
            return Err(Error::malformed(format!(
                "invalid signature length {signature_len}"
            )));
        }
        Ok(Header {
            metadata,
            chunk_size,
            salt: salt.ok_or_else(|| missing("salt"))?,
            key_commitment: commitment.ok_or_else(|| missing("key_commitment"))?,
            compression: compression.ok_or_else(|| missing("compression"))?,
            slot_size,
            signer: signer.ok_or_else(|| missing("signer_fingerprint"))?,
            signature_len,
            unknown,
        })
    }
}

struct Fields<'a> {
    rest: &'a [u8],
    last_tag: Option<u16>,
}

impl<'a> Fields<'a> {
    fn next_field(&mut self) -> Result<Option<(u16, &'a [u8])>> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        if self.rest.len() < 6 {
            return Err(Error::malformed("header field cut short"));
        }
        let tag = u16::from_be_bytes([self.rest[0], self.rest[1]]);
        let len =
            u32::from_be_bytes([self.rest[2], self.rest[3], self.rest[4], self.rest[5]]) as usize;
        if self.last_tag.is_some_and(|last| tag <= last) {
            return Err(Error::malformed(format!(
                "header fields out of order or repeated at tag 0x{tag:04x}"
            )));
        }
        let value = self.rest.get(6..6 + len).ok_or_else(|| {
            Error::malformed(format!("header field 0x{tag:04x} runs past the header"))
        })?;
        self.rest = &self.rest[6 + len..];
        self.last_tag = Some(tag);
        Ok(Some((tag, value)))
    }
}

fn put(out: &mut Vec<u8>, tag: u16, value: &[u8]) {
    out.extend_from_slice(&tag.to_be_bytes());
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
}

fn put_opt_str(out: &mut Vec<u8>, tag: u16, value: &Option<String>) {
    if let Some(s) = value {
        put(out, tag, s.as_bytes());
    }
}

fn fixed<const N: usize>(tag: u16, value: &[u8]) -> Result<[u8; N]> {
    value.try_into().map_err(|_| {
        Error::malformed(format!(
            "header field 0x{tag:04x} must be {N} bytes, found {}",
            value.len()
        ))
    })
}

fn string(tag: u16, value: &[u8]) -> Result<String> {
    String::from_utf8(value.to_vec())
        .map_err(|_| Error::malformed(format!("header field 0x{tag:04x} is not UTF-8")))
}
