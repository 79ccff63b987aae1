//! The v2 header: typed fields in a canonical tag–length–value encoding (FORMAT.md §3).
//!
//! Parsing is strict where the spec is strict (order, lengths, required fields, critical tags) so
//! that one header has exactly one encoding and the signature covers a single meaning.

use crate::byte_reader::ByteReader;
use crate::error::{Error, FormatError, Result};
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
const HYBRID_RECIPIENTS: u16 = 0x8009;

const CRITICAL: u16 = 0x8000;
const SUITE_V2: u8 = 1;

/// How the payload was compressed before encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Stored as given.
    None,
    /// One zstd stream across the chunks.
    Zstd,
}

impl Compression {
    /// The method's name: "none" or "zstd".
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
    /// The program that wrote the file ([`TOOL`](crate::TOOL) for pgseal).
    pub tool: Option<String>,
    /// The creator's user id in the store.
    pub creator_user_id: Option<u64>,
    /// The creator's user name in the store.
    pub creator_username: Option<String>,
    /// The database the payload was dumped from.
    pub source_database: Option<String>,
    /// The host the database was dumped from.
    pub source_host: Option<String>,
    /// The payload's format, e.g. `pg_dump-custom`; absent for arbitrary files.
    pub dump_format: Option<String>,
    /// The input's file name, if it had one.
    pub content_name: Option<String>,
    /// The audit log's head when the file was made: its `seq` and entry hash. Signed with the
    /// header, it lets `pgseal audit verify` prove the log was not cut back past this point.
    pub audit_anchor: Option<AuditAnchor>,
}

/// A position in the audit log's hash chain (docs/AUDIT.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditAnchor {
    /// The entry's sequence number.
    pub seq: u64,
    /// The entry's hash (docs/AUDIT.md).
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
    /// Who made the file and from what.
    pub metadata: Metadata,
    /// Plaintext bytes per chunk (the last may be shorter): a power of two, 1 KiB to 16 MiB.
    pub chunk_size: u32,
    /// The HKDF salt the file's keys are derived with.
    pub salt: [u8; 32],
    /// Commits the header to one file key (FORMAT.md §5).
    pub key_commitment: [u8; 32],
    /// How the payload was compressed.
    pub compression: Compression,
    /// Bytes in each of the two recipient slots.
    pub slot_size: u32,
    /// The fingerprint of the creator's key, which signs the header and the final digest.
    pub signer: Fingerprint,
    /// Bytes in each signature: the signer's modulus length.
    pub signature_len: u16,
    /// Sealed for hybrid (RSA-OAEP + ML-KEM-768) recipients only, and to be unwrapped only from a
    /// hybrid stanza (FORMAT.md §6a). Signed, so a downgrade is detected.
    pub hybrid: bool,
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
        if self.hybrid {
            put(&mut body, HYBRID_RECIPIENTS, &[1]);
        }

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
            return Err(FormatError::HeaderTooLong {
                len: body.len() as u64,
            }
            .into());
        }
        let mut fields = Fields {
            bytes: ByteReader::new(body),
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
        let mut hybrid = false;
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
                AUDIT_ANCHOR => metadata.audit_anchor = Some(audit_anchor(tag, value)?),
                SUITE => {
                    let [s] = fixed(tag, value)?;
                    suite = Some(s);
                }
                CHUNK_SIZE => chunk_size = Some(u32::from_be_bytes(fixed(tag, value)?)),
                SALT => salt = Some(fixed::<32>(tag, value)?),
                KEY_COMMITMENT => commitment = Some(fixed::<32>(tag, value)?),
                COMPRESSION => {
                    let [method] = fixed(tag, value)?;
                    compression = Some(match method {
                        0 => Compression::None,
                        1 => Compression::Zstd,
                        other => return Err(FormatError::UnknownCompression(other).into()),
                    })
                }
                SLOT_SIZE => slot_size = Some(u32::from_be_bytes(fixed(tag, value)?)),
                SIGNER_FINGERPRINT => signer = Some(Fingerprint::from_bytes(fixed(tag, value)?)),
                SIGNATURE_LENGTH => signature_len = Some(u16::from_be_bytes(fixed(tag, value)?)),
                HYBRID_RECIPIENTS => match fixed(tag, value)? {
                    [1] => hybrid = true,
                    [other] => return Err(FormatError::InvalidHybridFlag(other).into()),
                },
                t if t & CRITICAL != 0 => return Err(Error::UnknownCriticalField(t)),
                t => unknown.push((t, value.to_vec())),
            }
        }

        let missing = FormatError::MissingField;
        metadata.created_at_ms = created_at.ok_or(missing("created_at"))?;
        match suite.ok_or(missing("suite"))? {
            SUITE_V2 => {}
            other => return Err(FormatError::UnknownSuite(other).into()),
        }
        let chunk_size = chunk_size.ok_or(missing("chunk_size"))?;
        if !chunk_size.is_power_of_two() || !(1024..=16 * 1024 * 1024).contains(&chunk_size) {
            return Err(FormatError::InvalidChunkSize(chunk_size).into());
        }
        let slot_size = slot_size.ok_or(missing("recipient_slot_size"))?;
        if slot_size % 64 != 0 || !(512..=65_536).contains(&slot_size) {
            return Err(FormatError::InvalidSlotSize(slot_size).into());
        }
        let signature_len = signature_len.ok_or(missing("signature_length"))?;
        if !(256..=1024).contains(&signature_len) {
            return Err(FormatError::InvalidSignatureLength(signature_len).into());
        }
        Ok(Header {
            metadata,
            chunk_size,
            salt: salt.ok_or(missing("salt"))?,
            key_commitment: commitment.ok_or(missing("key_commitment"))?,
            compression: compression.ok_or(missing("compression"))?,
            slot_size,
            signer: signer.ok_or(missing("signer_fingerprint"))?,
            signature_len,
            hybrid,
            unknown,
        })
    }
}

/// The header body as a sequence of fields: `tag (u16 BE) || length (u32 BE) || value`, tags
/// strictly increasing.
struct Fields<'a> {
    bytes: ByteReader<'a>,
    last_tag: Option<u16>,
}

impl<'a> Fields<'a> {
    fn next_field(&mut self) -> Result<Option<(u16, &'a [u8])>, FormatError> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        let (Some(tag), Some(len)) = (self.bytes.u16_be(), self.bytes.u32_be()) else {
            return Err(FormatError::FieldCutShort);
        };
        if self.last_tag.is_some_and(|last| tag <= last) {
            return Err(FormatError::FieldOutOfOrder { tag });
        }
        let value = self
            .bytes
            .take(len as usize)
            .ok_or(FormatError::FieldPastEnd { tag })?;
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

fn fixed<const N: usize>(tag: u16, value: &[u8]) -> Result<[u8; N], FormatError> {
    value.try_into().map_err(|_| FormatError::FieldLength {
        tag,
        expected: N,
        found: value.len(),
    })
}

fn string(tag: u16, value: &[u8]) -> Result<String, FormatError> {
    String::from_utf8(value.to_vec()).map_err(|_| FormatError::FieldNotUtf8 { tag })
}

/// `seq (u64 BE) || entry_hash (32 bytes)`, exactly.
fn audit_anchor(tag: u16, value: &[u8]) -> Result<AuditAnchor, FormatError> {
    let mut r = ByteReader::new(value);
    match (r.u64_be(), r.array::<32>()) {
        (Some(seq), Some(entry_hash)) if r.is_empty() => Ok(AuditAnchor { seq, entry_hash }),
        _ => Err(FormatError::FieldLength {
            tag,
            expected: 40,
            found: value.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            metadata: Metadata {
                created_at_ms: 1_765_965_760_000,
                tool: Some("pgseal test".into()),
                creator_user_id: Some(7),
                audit_anchor: Some(AuditAnchor {
                    seq: 42,
                    entry_hash: [9; 32],
                }),
                ..Metadata::default()
            },
            chunk_size: 65_536,
            salt: [1; 32],
            key_commitment: [2; 32],
            compression: Compression::Zstd,
            slot_size: 4096,
            signer: Fingerprint::from_bytes([3; 32]),
            signature_len: 256,
            hybrid: false,
            unknown: Vec::new(),
        }
    }

    fn body(h: &Header) -> Vec<u8> {
        h.encode()[12..].to_vec()
    }

    fn field(tag: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put(&mut out, tag, value);
        out
    }

    fn format_error(body: &[u8]) -> FormatError {
        match Header::parse_body(body) {
            Err(Error::Format(e)) => e,
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    #[test]
    fn a_header_parses_back_to_itself_with_unknown_fields_kept() {
        let h = header();
        assert_eq!(Header::parse_body(&body(&h)).unwrap(), h);
        // A non-critical field this version does not know, in tag order (0x0019 < 0x8001).
        let mut b = body(&h);
        let at = b.windows(2).position(|w| w == SUITE.to_be_bytes()).unwrap();
        b.splice(at..at, field(0x0019, b"later"));
        let parsed = Header::parse_body(&b).unwrap();
        assert_eq!(parsed.unknown, vec![(0x0019, b"later".to_vec())]);
    }

    #[test]
    fn each_way_a_field_can_be_malformed_is_reported() {
        let b = body(&header());
        // Cut inside the last field's tag/length, and inside its value.
        let last = b.len() - (6 + 2);
        assert_eq!(format_error(&b[..last + 3]), FormatError::FieldCutShort);
        assert_eq!(
            format_error(&b[..b.len() - 1]),
            FormatError::FieldPastEnd {
                tag: SIGNATURE_LENGTH
            }
        );
        // A field repeated.
        let mut twice = b.clone();
        twice.extend_from_slice(&field(SIGNATURE_LENGTH, &256u16.to_be_bytes()));
        assert_eq!(
            format_error(&twice),
            FormatError::FieldOutOfOrder {
                tag: SIGNATURE_LENGTH
            }
        );
        // A length field claiming far more than the header holds.
        let mut huge = field(CREATED_AT, &[0; 8]);
        huge[2..6].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            format_error(&huge),
            FormatError::FieldPastEnd { tag: CREATED_AT }
        );
        assert_eq!(
            format_error(&field(CREATED_AT, &[0; 7])),
            FormatError::FieldLength {
                tag: CREATED_AT,
                expected: 8,
                found: 7
            }
        );
        let mut anchor = field(CREATED_AT, &[0; 8]);
        anchor.extend_from_slice(&field(AUDIT_ANCHOR, &[0; 41]));
        assert_eq!(
            format_error(&anchor),
            FormatError::FieldLength {
                tag: AUDIT_ANCHOR,
                expected: 40,
                found: 41
            }
        );
        let mut tool = field(CREATED_AT, &[0; 8]);
        tool.extend_from_slice(&field(TOOL, &[0xff, 0xfe]));
        assert_eq!(format_error(&tool), FormatError::FieldNotUtf8 { tag: TOOL });
        assert_eq!(
            format_error(&field(CREATED_AT, &[0; 8])),
            FormatError::MissingField("suite")
        );
        assert_eq!(format_error(&[]), FormatError::MissingField("created_at"));
        assert_eq!(
            format_error(&vec![0; MAX_HEADER_LEN + 1]),
            FormatError::HeaderTooLong {
                len: MAX_HEADER_LEN as u64 + 1
            }
        );
    }

    #[test]
    fn the_hybrid_flag_is_signed_in_as_its_one_value() {
        let mut h = header();
        h.hybrid = true;
        let b = body(&h);
        assert!(b.ends_with(&field(HYBRID_RECIPIENTS, &[1])));
        assert_eq!(Header::parse_body(&b).unwrap(), h);
        let mut two = b.clone();
        *two.last_mut().unwrap() = 2;
        assert_eq!(format_error(&two), FormatError::InvalidHybridFlag(2));
        let mut long = b[..b.len() - 7].to_vec();
        long.extend_from_slice(&field(HYBRID_RECIPIENTS, &[1, 1]));
        assert_eq!(
            format_error(&long),
            FormatError::FieldLength {
                tag: HYBRID_RECIPIENTS,
                expected: 1,
                found: 2
            }
        );
    }

    #[test]
    fn parameters_out_of_range_are_reported() {
        let mut h = header();
        h.chunk_size = 1000;
        assert_eq!(format_error(&body(&h)), FormatError::InvalidChunkSize(1000));
        let mut h = header();
        h.slot_size = 4000;
        assert_eq!(format_error(&body(&h)), FormatError::InvalidSlotSize(4000));
        let mut h = header();
        h.signature_len = 2048;
        assert_eq!(
            format_error(&body(&h)),
            FormatError::InvalidSignatureLength(2048)
        );
        let mut b = body(&header());
        let at = b
            .windows(2)
            .position(|w| w == COMPRESSION.to_be_bytes())
            .unwrap();
        b[at + 6] = 9;
        assert_eq!(format_error(&b), FormatError::UnknownCompression(9));
        let mut b = body(&header());
        let at = b.windows(2).position(|w| w == SUITE.to_be_bytes()).unwrap();
        b[at + 6] = 2;
        assert_eq!(format_error(&b), FormatError::UnknownSuite(2));
    }
}
