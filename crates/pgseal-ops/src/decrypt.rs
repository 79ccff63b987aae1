//! Decrypting a file of any format to a file or a stream, fail closed.
//!
//! Plaintext reaches a named output file only when everything verified and the audit entry is
//! written. To a stream (standard output, a FIFO, a character device), v2 plaintext goes out
//! chunk by chunk as each verifies — after a `DECRYPT_START` audit entry is written, and not at
//! all if it cannot be; the legacy formats (one GCM message each) are verified whole over a
//! spooled copy of the *ciphertext* first, then opened again into the stream.

use std::io::{Seek, SeekFrom};
use std::path::Path;

use pgseal_core::Fingerprint;
use pgseal_store::Action;

use crate::error::{Error, Result};
use crate::files::{Input, Output, Tee, check_output, scratch_file};
use crate::open::{OpenKeys, Opener, check_waiver, prepare, recognise};
use crate::session::Session;

/// What a decryption did.
#[derive(Debug, Clone)]
pub struct Decrypted {
    /// The server key that opened the file (none for a legacy symmetric file).
    pub server_key: Option<Fingerprint>,
    /// Plaintext bytes written.
    pub plaintext_bytes: u64,
    /// Whether plaintext was released as it verified (v2 to a stream).
    pub streamed: bool,
}

/// Decrypts `input` (a path, `-` for standard input, or an `s3://` location the session
/// reaches) to `output` (`-` for standard output; an existing regular file is replaced only
/// with `force`), audited as `DECRYPT`.
pub fn decrypt(
    session: &mut Session,
    input: &str,
    output: &str,
    force: bool,
    keys: &OpenKeys<'_>,
) -> Result<Decrypted> {
    let audit = session.audit(Action::Decrypt);
    audit.backup_file = Some(input.to_owned());
    audit.detail("output", output);
    let result = (|| {
        check_waiver(session, keys.verify)?;
        let mut input = Input::open_in(&crate::repo::reach(session), input)?;
        // The output is checked before any work: not a directory, socket or the input itself.
        if output != "-" {
            check_output(Path::new(output), force, Some(&input))?;
        }
        let sealed = recognise(&mut input)?;
        let opener = prepare(session, sealed, keys)?;
        let output = Output::create(output, force, Some(&input))?;
        let observer = session.observer().clone();
        let _shown = input.watch(observer.as_ref(), &input.name.clone());
        let decrypted = if opener.needs_first_pass() && !output.is_atomic() {
            spooled(session, &opener, input, output)?
        } else {
            direct(session, &opener, input, output)?
        };
        Ok(decrypted)
    })();
    record_signature_outcome(session, result.as_ref().map(drop), keys.verify);
    result
}

/// One pass: into a file committed only if everything verified, or (v2) into a stream as it
/// verifies, after the `DECRYPT_START` entry.
fn direct(
    session: &mut Session,
    opener: &Opener,
    mut input: Input,
    mut output: Output,
) -> Result<Decrypted> {
    let streamed = !output.is_atomic();
    if streamed {
        if let Some(a) = session.audit_mut() {
            a.detail("streamed", true);
        }
        session.audit_start(Action::DecryptStart)?;
    }
    let opened = opener.open(&mut input, &mut output)?;
    finish(session, opener, output, opened.plaintext_bytes, streamed)
}

/// A legacy file to a stream: verified whole over a spooled copy of its ciphertext, then
/// opened again from the spool into the stream.
fn spooled(
    session: &mut Session,
    opener: &Opener,
    mut input: Input,
    mut output: Output,
) -> Result<Decrypted> {
    let mut spool = scratch_file(session.scratch_dir())?;
    opener.open(
        Tee {
            reader: &mut input,
            copy: &mut spool,
        },
        std::io::sink(),
    )?;
    spool
        .seek(SeekFrom::Start(0))
        .map_err(|e| Error::io("rewinding the spool file", e))?;
    // Fail closed: the entry is written before any plaintext leaves through the stream.
    set_outcome(session, opener, None);
    session.audit_before_commit()?;
    let opened = opener.open(&mut spool, &mut output)?;
    output.commit().map(|()| Decrypted {
        server_key: opener.server_key(),
        plaintext_bytes: opened.plaintext_bytes,
        streamed: false,
    })
}

fn finish(
    session: &mut Session,
    opener: &Opener,
    output: Output,
    plaintext_bytes: u64,
    streamed: bool,
) -> Result<Decrypted> {
    set_outcome(session, opener, Some(plaintext_bytes));
    // Fail closed: no audit entry, no plaintext file.
    session.audit_before_commit()?;
    output.commit()?;
    Ok(Decrypted {
        server_key: opener.server_key(),
        plaintext_bytes,
        streamed,
    })
}

fn set_outcome(session: &mut Session, opener: &Opener, plaintext_bytes: Option<u64>) {
    if let Some(a) = session.audit_mut() {
        if let Some(fp) = opener.server_key() {
            a.detail("server_key", fp.to_string());
        }
        if let Some(n) = plaintext_bytes {
            a.detail("plaintext_bytes", n);
        }
        a.signature_valid = opener.verifies().then_some(true);
    }
}

/// Marks the audit entry's signature validity from how the operation ended.
pub fn record_signature_outcome(
    session: &mut Session,
    result: std::result::Result<(), &Error>,
    checked: bool,
) {
    let Some(audit) = session.audit_mut() else {
        return;
    };
    audit.signature_valid = match result {
        Ok(()) if checked => Some(true),
        Err(f) if f.is_bad_signature() => Some(false),
        _ => audit.signature_valid,
    };
}
