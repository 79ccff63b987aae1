//! `pgseal decrypt`: open v2, legacy hybrid and legacy symmetric files.
//!
//! Plaintext reaches a named output file only when everything verified. On standard output, v2
//! plaintext streams chunk by chunk once the header signature has verified; the legacy formats
//! (one GCM message each) are checked in full over a spooled copy of the *ciphertext* first.

use std::io::{self, Read, Seek, SeekFrom, Write};

use pgseal_core::detect::DETECT_LEN;
use pgseal_core::keys::Identity;
use pgseal_core::legacy::{hybrid, symmetric};
use pgseal_core::v2::{self, SignerCheck};
use pgseal_core::{Detected, Error, PrivateKey, PublicKey, detect};

use super::{load_private, load_publics, server_password};
use crate::cli::DecryptArgs;
use crate::failure::{CliResult, Failure};
use crate::files::{Input, Output, Tee, scratch_file};
use crate::secrets::PasswordSource;

pub fn run(args: DecryptArgs) -> CliResult {
    let mut input = Input::open(&args.input)?;
    let prefix = input.peek(DETECT_LEN)?;
    match detect(&prefix) {
        Detected::Pgseal {
            version: v2::VERSION,
        } => decrypt_v2(&args, input),
        Detected::Pgseal { version } => Err(Error::UnsupportedVersion(version).into()),
        Detected::LegacyHybrid => decrypt_legacy_hybrid(&args, input),
        Detected::LegacySymmetric => decrypt_legacy_symmetric(&args, input),
        Detected::PlainDump => Err(Error::NotEncrypted("it is a plain pg_dump archive").into()),
        Detected::Unknown => Err(Failure::invalid(format!(
            "{} is neither a pgseal file nor a legacy backup (unrecognised header)",
            input.name
        ))),
    }
}

fn warn_unverified() {
    eprintln!(
        "pgseal: warning: --no-verify: the creator's signature is NOT checked; \
         who made this file is unproven"
    );
}

fn load_identities(args: &DecryptArgs) -> CliResult<Vec<PrivateKey>> {
    if args.identities.is_empty() {
        return Err(Failure::key(
            "decrypting needs the private key the file is encrypted to: pass --identity KEY.pem",
        ));
    }
    let source = server_password(&args.server_password).cached();
    args.identities
        .iter()
        .map(|p| load_private(p, &source))
        .collect()
}

fn decrypt_v2(args: &DecryptArgs, mut input: Input) -> CliResult {
    let prelude = v2::read_prelude(&mut input)?;
    let signers = load_publics(&args.signers)?;
    let check = if args.no_verify {
        warn_unverified();
        SignerCheck::Skip
    } else {
        // Fail before asking for any password if the signature cannot or does not verify.
        prelude.verify_header_signature(&signers)?;
        SignerCheck::Require(&signers)
    };
    let identities = load_identities(args)?;
    let identities: Vec<&dyn Identity> = identities.iter().map(|k| k as &dyn Identity).collect();
    let mut output = Output::create(&args.output, args.force)?;
    prelude.decrypt(&mut input, &mut output, &identities, check)?;
    output.commit()
}

fn decrypt_legacy_hybrid(args: &DecryptArgs, mut input: Input) -> CliResult {
    let header = {
        let len = input.len;
        hybrid::read_header(&mut input, len)?
    };
    let signers = load_publics(&args.signers)?;
    if args.no_verify {
        warn_unverified();
    } else if signers.is_empty() {
        return Err(Error::MissingLegacySigner(header.user_id).into());
    }
    let identities = load_identities(args)?;
    // Legacy files name no key: find the identity whose OAEP unwrap succeeds.
    let identity = identities
        .iter()
        .find(|k| k.unwrap_file_key(&header.wrapped_key).is_ok())
        .ok_or(Error::SessionKeyUnwrap)?;

    let open = |body: &mut dyn Read, out: &mut dyn Write| -> CliResult {
        let opened = hybrid::decrypt(&header, body, out, identity)?;
        if !args.no_verify {
            legacy_signer(&header, &signers, &opened.ciphertext_digest)?;
        }
        Ok(())
    };
    write_checked(args, input, open)
}

/// The first of `signers` whose signature over the legacy file holds.
fn legacy_signer<'k>(
    header: &hybrid::LegacyHeader,
    signers: &'k [PublicKey],
    digest: &[u8; 32],
) -> CliResult<&'k PublicKey> {
    signers
        .iter()
        .find(|k| hybrid::check_signature(header, k, digest).is_ok())
        .ok_or_else(|| Error::SignatureInvalid("legacy").into())
}

fn decrypt_legacy_symmetric(args: &DecryptArgs, input: Input) -> CliResult {
    eprintln!(
        "pgseal: warning: {} is a legacy symmetric file: it carries no signature, so who made it \
         cannot be verified",
        input.name
    );
    let password = PasswordSource {
        purpose: "the legacy backup",
        env: "BACKUP_ENCRYPTION_PASSWORD",
        file: args.legacy_password_file.clone(),
        command: None,
        file_flag: "--legacy-password-file",
    }
    .get()?;
    write_checked(args, input, |body, out| {
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
    open: impl Fn(&mut dyn Read, &mut dyn Write) -> CliResult,
) -> CliResult {
    let mut output = Output::create(&args.output, args.force)?;
    if !output.is_stdout() {
        open(&mut input, &mut output)?;
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
    open(&mut spool, &mut output)?;
    output.commit()
}
