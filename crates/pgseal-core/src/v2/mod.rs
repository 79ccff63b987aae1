//! The v2 format: chunked AES-256-GCM with signed headers, recipients by fingerprint and a
//! final signature over the whole ciphertext. `docs/FORMAT.md` is its specification; this module
//! follows it section by section.
//!
//! [`seal`] writes a file from any reader; [`read_prelude`] reads everything before the chunks,
//! after which [`Prelude::decrypt`] opens the payload and [`Prelude::verify`] checks it without
//! decrypting. Both directions run as a three-stage pipeline (read, crypto, write) over bounded
//! channels, so memory stays at a few chunks whatever the input size.

mod header;
mod open;
mod pipeline;
mod rewrap;
mod seal;
mod slots;
mod stream;

pub use header::{AuditAnchor, Compression, Header, Metadata};
pub use open::{DecryptSummary, Prelude, SignerCheck, VerifyReport, read_prelude};
pub use rewrap::{Rewrap, SlotWrite, Step};
pub use seal::{SealParams, SealSummary, seal};
pub use slots::{DEFAULT_SLOT_SIZE, Damage, MAX_RECIPIENTS, Slot, SlotState, Stanza};
pub use stream::TAG_LEN;

/// The first seven bytes of every pgseal file.
pub const MAGIC: [u8; 7] = *b"PGSEAL\0";
/// The format version byte this module reads and writes.
pub const VERSION: u8 = 2;
/// Bytes before the header body: magic, version, body length.
pub const PREAMBLE_LEN: usize = 12;
/// The largest header body accepted.
pub const MAX_HEADER_LEN: usize = 65_536;
/// The chunk size pgseal writes.
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;

const HEADER_SIG_LABEL: &[u8] = b"pgseal v2 header\0";
const FINAL_SIG_LABEL: &[u8] = b"pgseal v2 final\0";

fn header_signed_message(header_hash: &[u8; 32]) -> Vec<u8> {
    [HEADER_SIG_LABEL, header_hash].concat()
}

fn final_signed_message(header_hash: &[u8; 32], ciphertext_digest: &[u8; 32]) -> Vec<u8> {
    [FINAL_SIG_LABEL, header_hash, ciphertext_digest].concat()
}
