//! `pgseal decrypt`: open v2, legacy hybrid and legacy symmetric files.
//!
//! Plaintext reaches a named output file only when everything verified. On a stream (standard
//! output, a FIFO, a character device), v2 plaintext streams chunk by chunk once the header
//! signature has verified — after a `DECRYPT_START` audit entry is written, and not at all if it
//! cannot be; the legacy formats (one GCM message each) are checked in full over a spooled copy
//! of the *ciphertext* first.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use pgseal_core::detect::DETECT_LEN;
use pgseal_core::keys::Identity;
use pgseal_core::legacy::{hybrid, symmetric};
use pgseal_core::v2::{self, SignerCheck};
use pgseal_core::{Detected, Error, PublicKey, detect};
use pgseal_store::Action;

use super::keyring;
use super::server_password;
use crate::cli::DecryptArgs;
use crate::context::Context;
use crate::failure::{CliResult, Failure};
use crate::files::{Input, Output, Tee, check_output, scratch_file};
use crate::secrets::PasswordSource;

pub fn run(args: DecryptArgs, ctx: &mut Context) -> CliResult {
    let audit = ctx.audit(Action::Decrypt);
    audit.backup_file = Some(args.input.clone());
    audit.detail("output", args.output.clone());
    if args.keys.no_verify && ctx.config.as_ref().is_some_and(|c| c.signature_required) {
        return Err(Failure::usage(
            "--no-verify is refused: the configuration requires signatures \
             (BACKUP_SIGNATURE_REQUIRED / backup.signature_required)",
        ));
    }
    let mut input = Input::open(&args.input)?;
    // The output is checked before any work: not a directory, socket or the input itself.
    if args.output != "-" {
        check_output(Path::new(&args.output), args.force, Some(&input))?;
    }
    let prefix = input.peek(DETECT_LEN)?;
    let result = match detect(&prefix) {
        Detected::Pgseal {
            version: v2::VERSION,
        } => decrypt_v2(&args, input, ctx),
        Detected::Pgseal { version } => Err(Error::UnsupportedVersion(version).into()),
        Detected::LegacyHybrid => decrypt_legacy_hybrid(&args, input, ctx),
        Detected::LegacySymmetric => decrypt_legacy_symmetric(&args, input, ctx),
        Detected::PlainDump => Err(Error::NotEncrypted("it is a plain pg_dump archive").into()),
        Detected::Unknown => Err(Failure::invalid(format!(
            "{} is neither a pgseal file nor a legacy backup (unrecognised header)",
            input.name
        ))),
    };
    record_signature_outcome(ctx, result.as_ref().map(drop), !args.keys.no_verify);
    result
}

/// Marks the audit entry's signature validity from how the command ended.
pub fn record_signature_outcome(ctx: &mut Context, result: Result<(), &Failure>, checked: bool) {
    let Some(audit) = ctx.audit_mut() else { return };
    audit.signature_valid = match result {
        Ok(()) if checked => Some(true),
        Err(f) if f.is_bad_signature() => Some(false),
        _ => audit.signature_valid,
    };
}

fn warn_unverified() {
    eprintln!(
        "pgseal: warning: --no-verify: the creator's signature is NOT checked; \
         who made this file is unproven"
    );
}

fn decrypt_v2(args: &DecryptArgs, mut input: Input, ctx: &mut Context) -> CliResult {
    let prelude = v2::read_prelude(&mut input)?;
    let header = &prelude.header;
    let (signers, creator) = keyring::v2_signers(ctx, &args.keys.signers, &header.signer)?;
    if let Some(a) = ctx.audit_mut() {
        a.backup_creator_id = creator.or(header.metadata.creator_user_id.map(|id| id as i64));
    }
    let check = if args.keys.no_verify {
        warn_unverified();
        SignerCheck::Skip
    } else {
        // Fail before asking for any password if the signature cannot or does not verify.
        prelude.verify_header_signature(&signers)?;
        SignerCheck::Require(&signers)
    };
    let (_, slot) = prelude.active_slot()?;
    let password = server_password(&args.keys.server_password).cached();
    let identities =
        keyring::v2_identities(ctx, &args.keys.identities, &password, &slot.recipients())?;
    let identities: Vec<&dyn Identity> = identities.iter().map(|k| k as &dyn Identity).collect();
    let mut output = Output::create(&args.output, args.force, Some(&input))?;
    if !output.is_atomic() {
        // v2 plaintext streams out as it verifies: the log says so before the first byte.
        if let Some(a) = ctx.audit_mut() {
            a.detail("streamed", true);
        }
        ctx.audit_start(Action::DecryptStart)?;
    }
    let summary = prelude.decrypt(&mut input, &mut output, &identities, check)?;
    if let Some(a) = ctx.audit_mut() {
        a.detail("server_key", summary.recipient.to_string());
        a.detail("plaintext_bytes", summary.plaintext_bytes);
        a.signature_valid = (!args.keys.no_verify).then_some(true);
    }
    // Fail closed: no audit entry, no plaintext file.
    ctx.audit_before_commit()?;
    output.commit()
}

fn decrypt_legacy_hybrid(args: &DecryptArgs, mut input: Input, ctx: &mut Context) -> CliResult {
    let len = input.len;
    let header = hybrid::read_header(&mut input, len)?;
    if let Some(a) = ctx.audit_mut() {
        a.backup_creator_id = i64::try_from(header.user_id).ok();
    }
    let signers = keyring::legacy_signers(ctx, &args.keys.signers, header.user_id)?;
    if args.keys.no_verify {
        warn_unverified();
    } else if signers.is_empty() {
        return Err(Error::MissingLegacySigner(header.user_id).into());
    }
    let password = server_password(&args.keys.server_password).cached();
    let identities = keyring::legacy_identities(ctx, &args.keys.identities, &password)?;
    // Legacy files name no key: find the identity whose OAEP unwrap succeeds.
    let identity = identities
        .iter()
        .find(|k| k.unwrap_file_key(&header.wrapped_key).is_ok())
        .ok_or(Error::SessionKeyUnwrap)?;
    if let Some(a) = ctx.audit_mut() {
        a.detail("server_key", identity.fingerprint().to_string());
    }

    let open = |body: &mut dyn Read, out: &mut dyn Write| -> CliResult {
        let opened = hybrid::decrypt(&header, body, out, identity)?;
        if !args.keys.no_verify {
            legacy_signer(&header, &signers, &opened.ciphertext_digest)?;
        }
        Ok(())
    };
    write_checked(args, input, ctx, open)
}

/// The first of `signers` whose signature over the legacy file holds.
pub fn legacy_signer<'k>(
    header: &hybrid::LegacyHeader,
    signers: &'k [PublicKey],
    digest: &[u8; 32],
) -> CliResult<&'k PublicKey> {
    signers
        .iter()
        .find(|k| hybrid::check_signature(header, k, digest).is_ok())
        .ok_or_else(|| Error::SignatureInvalid("legacy").into())
}

fn decrypt_legacy_symmetric(args: &DecryptArgs, input: Input, ctx: &mut Context) -> CliResult {
    eprintln!(
        "pgseal: warning: {} is a legacy symmetric file: it carries no signature, so who made it \
         cannot be verified",
        input.name
    );
    let password = PasswordSource {
        purpose: "the legacy backup",
        env: "BACKUP_ENCRYPTION_PASSWORD",
        file: args.keys.legacy_password_file.clone(),
        command: None,
        file_flag: "--legacy-password-file",
    }
    .get()?;
    write_checked(args, input, ctx, |body, out| {
        symmetric::decrypt(body, out, &password)?;
        Ok(())
    })
}

/// Runs a single-message (legacy) decryption so that no plaintext is released before `open`
/// succeeds: into an unnamed file committed afterwards, or, for standard output, first over a
/// spooled copy of the ciphertext into nothing, then again from the spool into the pipe.
fn write_checked(
    args: &DecryptArgs,
    mut input: Input,
    ctx: &mut Context,
    open: impl Fn(&mut dyn Read, &mut dyn Write) -> CliResult,
) -> CliResult {
    let mut output = Output::create(&args.output, args.force, Some(&input))?;
    if output.is_atomic() {
        open(&mut input, &mut output)?;
        if let Some(a) = ctx.audit_mut() {
            a.signature_valid = (!args.keys.no_verify).then_some(true);
        }
        ctx.audit_before_commit()?;
        return output.commit();
    }
    let mut spool = scratch_file()?;
    open(
        &mut Tee {
            reader: &mut input,
            copy: &mut spool,
        },
        &mut io::sink(),
    )?;
    spool
        .seek(SeekFrom::Start(0))
        .map_err(|e| Failure::io("rewinding the spool file", e))?;
    // Fail closed: the entry is written before any plaintext leaves through the pipe.
    if let Some(a) = ctx.audit_mut() {
        a.signature_valid = (!args.keys.no_verify).then_some(true);
    }
    ctx.audit_before_commit()?;
    open(&mut spool, &mut output)?;
    output.commit()
}
