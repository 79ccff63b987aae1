//! The two formats of the legacy Python system, read byte for byte (and hybrid also written):
//! `PGBACKUP_AES256_V1` ([`symmetric`]) and `PGBACKUP_HYBRID_V1` ([`hybrid`]).
//!
//! Both hold the whole payload as one AES-GCM message, so nothing read can be trusted until the
//! tag at the very end has verified. These readers stream (bounded memory) and leave it to the
//! caller to keep the output away from its final path until they return `Ok`.

mod gcm;
pub mod hybrid;
pub mod symmetric;

use std::io::Read;

use crate::error::{Error, Result};
use crate::io_util::read_full;

/// Streams `input` through `on_data` in blocks, holding back its last `tail_len` bytes (the GCM
/// tag), which it returns. Errors if the input is shorter than the tail.
fn stream_holding_back<R: Read>(
    mut input: R,
    tail_len: usize,
    mut on_data: impl FnMut(&mut [u8]) -> Result<()>,
) -> Result<Vec<u8>> {
    const BLOCK: usize = 256 * 1024;
    let mut buf = vec![0u8; BLOCK + tail_len];
    let mut held = 0;
    loop {
        let got =
            read_full(&mut input, &mut buf[held..]).map_err(|e| Error::io("reading input", e))?;
        let filled = held + got;
        if filled < buf.len() {
            if filled < tail_len {
                return Err(Error::Truncated("the encrypted data and its tag"));
            }
            on_data(&mut buf[..filled - tail_len])?;
            return Ok(buf[filled - tail_len..filled].to_vec());
        }
        let ready = filled - tail_len;
        on_data(&mut buf[..ready])?;
        buf.copy_within(ready..filled, 0);
        held = tail_len;
    }
}
