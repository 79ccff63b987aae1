//! Telling the formats apart by their first bytes.

use crate::byte_reader::ByteReader;
use crate::legacy::{hybrid, symmetric};
use crate::v2;

/// How many bytes [`detect`] needs to decide.
pub const DETECT_LEN: usize = 20;

/// What the start of a file says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// A pgseal file of the given format version (2 is the one this crate reads).
    Pgseal {
        /// The format version byte after the magic.
        version: u8,
    },
    /// `PGBACKUP_HYBRID_V1`: the legacy RSA + AES-GCM format.
    LegacyHybrid,
    /// `PGBACKUP_AES256_V1`: the legacy password format.
    LegacySymmetric,
    /// A custom-format `pg_dump` archive (`PGDMP`): never encrypted.
    PlainDump,
    /// Anything else.
    Unknown,
}

impl Detected {
    /// A short name for messages: "pgseal v2", "legacy hybrid (PGBACKUP_HYBRID_V1)", ...
    pub fn name(self) -> &'static str {
        match self {
            Detected::Pgseal { .. } => "pgseal v2",
            Detected::LegacyHybrid => "legacy hybrid (PGBACKUP_HYBRID_V1)",
            Detected::LegacySymmetric => "legacy symmetric (PGBACKUP_AES256_V1)",
            Detected::PlainDump => "plain pg_dump archive",
            Detected::Unknown => "unknown",
        }
    }
}

/// Classifies a file from its first bytes (up to [`DETECT_LEN`]; fewer if the file is shorter).
pub fn detect(prefix: &[u8]) -> Detected {
    let mut r = ByteReader::new(prefix);
    if let (Some(magic), Some(version)) = (r.array::<7>(), r.u8())
        && magic == v2::MAGIC
    {
        Detected::Pgseal { version }
    } else if prefix.starts_with(&hybrid::MAGIC) {
        Detected::LegacyHybrid
    } else if prefix.starts_with(&symmetric::MAGIC) {
        Detected::LegacySymmetric
    } else if prefix.starts_with(b"PGDMP") {
        Detected::PlainDump
    } else {
        Detected::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_is_told_by_its_first_bytes() {
        assert_eq!(detect(b"PGSEAL\0\x02rest"), Detected::Pgseal { version: 2 });
        assert_eq!(detect(b"PGSEAL\0\x09"), Detected::Pgseal { version: 9 });
        // The magic without a version byte is too short to say.
        assert_eq!(detect(b"PGSEAL\0"), Detected::Unknown);
        assert_eq!(detect(&hybrid::MAGIC), Detected::LegacyHybrid);
        assert_eq!(detect(&symmetric::MAGIC), Detected::LegacySymmetric);
        assert_eq!(detect(b"PGDMP\x01\x0e"), Detected::PlainDump);
        assert_eq!(detect(b""), Detected::Unknown);
        assert_eq!(detect(b"PGSEAL"), Detected::Unknown);
    }
}
