//! What a file's header claims, read without any key. Nothing here is verified: `verify` does
//! that.

use pgseal_core::Detected;
use pgseal_core::detect::DETECT_LEN;
use pgseal_core::legacy::{hybrid, symmetric};
use pgseal_core::v2::Prelude;

use crate::error::{Error, Result};
use crate::files::Input;
use crate::open::{Sealed, detect_format, recognise};

/// What a file is, by its header.
#[derive(Debug)]
pub enum Inspection {
    /// A v2 file: everything before its chunks.
    V2(Box<Prelude>),
    /// A legacy hybrid file: its unauthenticated header.
    LegacyHybrid(hybrid::LegacyHeader),
    /// A legacy symmetric file (its header holds only a salt and a nonce).
    LegacySymmetric,
    /// A plain pg_dump archive: not encrypted at all.
    PlainDump,
}

/// A file inspected.
#[derive(Debug)]
pub struct Inspected {
    /// Its name (`standard input` for `-`).
    pub name: String,
    /// Its size, when known (a file; for a legacy symmetric stream, counted).
    pub file_bytes: Option<u64>,
    /// What it is.
    pub what: Inspection,
}

/// Reads the header of `input` (a path, `-` for standard input, or an `s3://` location `reach`
/// reaches).
pub fn inspect(reach: &crate::repo::Reach, input: &str) -> Result<Inspected> {
    let mut input = Input::open_in(reach, input)?;
    let prefix = input.peek(DETECT_LEN)?;
    if let Err(Detected::PlainDump) = detect_format(&prefix) {
        return Ok(Inspected {
            name: input.name.clone(),
            file_bytes: input.len,
            what: Inspection::PlainDump,
        });
    }
    let what = match recognise(&mut input)? {
        Sealed::V2(prelude, _) => Inspection::V2(prelude),
        Sealed::LegacyHybrid(header) => Inspection::LegacyHybrid(header),
        Sealed::LegacySymmetric => {
            // The header, then at least the GCM tag: anything shorter was cut off.
            let len = match input.len {
                Some(n) => n,
                None => std::io::copy(&mut input, &mut std::io::sink())
                    .map_err(|e| Error::io(format!("reading {}", input.name), e))?,
            };
            if len < symmetric::MIN_FILE_LEN as u64 {
                return Err(
                    pgseal_core::Error::Truncated(if len < symmetric::HEADER_LEN as u64 {
                        "the legacy header"
                    } else {
                        "the authentication tag"
                    })
                    .into(),
                );
            }
            return Ok(Inspected {
                name: input.name.clone(),
                file_bytes: Some(len),
                what: Inspection::LegacySymmetric,
            });
        }
    };
    Ok(Inspected {
        name: input.name.clone(),
        file_bytes: input.len,
        what,
    })
}
