//! 32-byte hashes as values: the audit chain's SHA-256 links and a backup's BLAKE3 over its
//! sealed chunks. The database keeps them as 64 lowercase hex digits (the text the chain
//! hashes, docs/AUDIT.md); the API takes and returns the bytes.

use std::fmt;
use std::str::FromStr;

/// A 32-byte hash (SHA-256 or BLAKE3). Shown, stored and serialized as 64 lowercase hex
/// digits; parsed only from exactly that form, so one hash has one text.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct Hash32(pub [u8; 32]);

/// Text that is not a [`Hash32`]: anything but exactly 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a 32-byte hash (64 lowercase hex digits): {shown}")]
pub struct InvalidHash32 {
    /// The text as given, escaped and cut to at most 80 characters, so it prints safely.
    pub shown: String,
}

impl Hash32 {
    /// All zeros: the `prev_hash` of the audit chain's first entry.
    pub const ZERO: Hash32 = Hash32([0; 32]);

    /// The hash's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses exactly 64 lowercase hex digits (what [`Display`](fmt::Display) writes).
    pub fn parse(text: &str) -> Result<Hash32, InvalidHash32> {
        let mut out = [0u8; 32];
        let lowercase_hex = text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if text.len() != 64 || !lowercase_hex || hex::decode_to_slice(text, &mut out).is_err() {
            let shown: String = format!("{text:?}").chars().take(80).collect();
            return Err(InvalidHash32 { shown });
        }
        Ok(Hash32(out))
    }
}

impl fmt::Display for Hash32 {
    /// 64 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({self})")
    }
}

impl FromStr for Hash32 {
    type Err = InvalidHash32;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hash32::parse(s)
    }
}

impl From<[u8; 32]> for Hash32 {
    fn from(bytes: [u8; 32]) -> Self {
        Hash32(bytes)
    }
}

impl From<Hash32> for [u8; 32] {
    fn from(h: Hash32) -> Self {
        h.0
    }
}

impl From<Hash32> for String {
    fn from(h: Hash32) -> Self {
        h.to_string()
    }
}

impl TryFrom<String> for Hash32 {
    type Error = InvalidHash32;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Hash32::parse(&s)
    }
}

impl PartialEq<[u8; 32]> for Hash32 {
    fn eq(&self, other: &[u8; 32]) -> bool {
        &self.0 == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "9bf7736c60bb6edf580aaeb898977ceaa516adc048d1eab8f84163e188ee9ee4";

    #[test]
    fn hex_text_round_trips() {
        let h: Hash32 = TEXT.parse().unwrap();
        assert_eq!(h.0[0], 0x9b);
        assert_eq!(h.0[31], 0xe4);
        assert_eq!(h.to_string(), TEXT);
        assert_eq!(format!("{h:?}"), format!("Hash32({TEXT})"));
        assert_eq!(Hash32::ZERO.to_string(), "0".repeat(64));
        assert_eq!(Hash32::from([7; 32]), [7u8; 32]);
        assert_eq!(<[u8; 32]>::from(h), h.0);
    }

    #[test]
    fn only_64_lowercase_hex_digits_parse() {
        for bad in [
            String::new(),
            TEXT[..62].to_owned(),
            format!("{TEXT}00"),
            TEXT.to_uppercase(),
            format!("{}G", &TEXT[..63]),
            format!(" {}", &TEXT[..63]),
            format!("0x{}", &TEXT[..62]),
            "é".repeat(32),
        ] {
            let e = Hash32::parse(&bad).unwrap_err();
            assert!(e.to_string().starts_with("not a 32-byte hash"), "{e}");
        }
        // Never more than a line of whatever it was given.
        let e = Hash32::parse(&"\n".repeat(1000)).unwrap_err();
        assert!(e.shown.chars().count() <= 80 && !e.shown.contains('\n'));
    }

    #[test]
    fn serializes_as_its_hex_text() {
        let h: Hash32 = TEXT.parse().unwrap();
        let json = serde_json::to_value(h).unwrap();
        assert_eq!(json, serde_json::json!(TEXT));
        assert_eq!(serde_json::from_value::<Hash32>(json).unwrap(), h);
        assert!(serde_json::from_value::<Hash32>(serde_json::json!("00")).is_err());
    }
}
