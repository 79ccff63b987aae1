//! Small I/O helpers shared by the format readers.

use std::io::{self, Read};

use crate::error::{Error, Result};

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads exactly `buf.len()` bytes; a short read is a truncated `what`.
pub(crate) fn read_exact_or_truncated(
    r: &mut impl Read,
    buf: &mut [u8],
    what: &'static str,
) -> Result<()> {
    let n = read_full(r, buf).map_err(|e| Error::io("reading input", e))?;
    if n < buf.len() {
        return Err(Error::Truncated(what));
    }
    Ok(())
}

/// Reads exactly `len` bytes into a new vector, allocating only as bytes actually arrive, so a
/// lying length field cannot make us allocate more than the input holds.
pub(crate) fn read_vec(r: &mut impl Read, len: usize, what: &'static str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(len.min(64 * 1024));
    let got = r
        .take(len as u64)
        .read_to_end(&mut out)
        .map_err(|e| Error::io("reading input", e))?;
    if got < len {
        return Err(Error::Truncated(what));
    }
    Ok(out)
}
