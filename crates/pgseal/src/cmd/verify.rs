//! `pgseal verify`: check a file's origin and integrity with the creator's public key alone,
//! and with `--identity` also prove it decrypts, writing no plaintext anywhere.

use pgseal_core::detect::DETECT_LEN;
use pgseal_core::keys::Identity;
use pgseal_core::legacy::hybrid;
use pgseal_core::v2;
use pgseal_core::{Detected, Error, PublicKey, detect};
use serde_json::{Value, json};

use pgseal_store::Action;

use super::decrypt::{legacy_signer, record_signature_outcome};
use super::{keyring, load_private, print_json, server_password};
use crate::cli::VerifyArgs;
use crate::cmd::encrypt::hex;
use crate::context::Context;
use crate::failure::{CliResult, Failure};
use crate::files::Input;

/// What was proven, as lines for people and fields for JSON, and what the operator should know
/// beyond it (the file is good either way).
struct Proof {
    format: &'static str,
    lines: Vec<String>,
    json: Value,
    warnings: Vec<String>,
}

pub fn run(args: VerifyArgs, ctx: &mut Context) -> CliResult {
    ctx.audit(Action::Verify).backup_file = Some(args.input.clone());
    let mut input = Input::open(&args.input)?;
    let prefix = input.peek(DETECT_LEN)?;
    let detected = detect(&prefix);
    let result = match detected {
        Detected::Pgseal {
            version: v2::VERSION,
        } => verify_v2(&args, &mut input, ctx),
        Detected::Pgseal { version } => Err(Error::UnsupportedVersion(version).into()),
        Detected::LegacyHybrid => verify_legacy_hybrid(&args, &mut input, ctx),
        Detected::LegacySymmetric => Err(Failure::invalid(
            "legacy symmetric files carry no signature, so there is nothing to verify with a \
             public key; `pgseal decrypt` checks their tag with the password",
        )),
        Detected::PlainDump => Err(Error::NotEncrypted("it is a plain pg_dump archive").into()),
        Detected::Unknown => Err(Failure::invalid(format!(
            "{} is neither a pgseal file nor a legacy backup",
            input.name
        ))),
    };
    record_signature_outcome(ctx, result.as_ref().map(drop), true);
    match result {
        Ok(proof) => {
            if args.json {
                let mut v = proof.json;
                v["valid"] = json!(true);
                v["format"] = json!(proof.format);
                v["file"] = json!(input.name);
                print_json(&v);
            } else {
                println!("OK: {} ({})", input.name, proof.format);
                for line in proof.lines {
                    println!("  {line}");
                }
                for warning in proof.warnings {
                    println!("  warning: {warning}");
                }
            }
            Ok(())
        }
        Err(failure) => {
            if args.json {
                print_json(&json!({
                    "valid": false,
                    "file": input.name,
                    "format": format_name(detected),
                    "error": crate::failure::message(&failure),
                }));
            }
            Err(failure)
        }
    }
}

fn format_name(d: Detected) -> &'static str {
    match d {
        Detected::Pgseal { .. } => "v2",
        Detected::LegacyHybrid => "legacy-hybrid",
        Detected::LegacySymmetric => "legacy-symmetric",
        Detected::PlainDump => "plain-pg_dump",
        Detected::Unknown => "unknown",
    }
}

fn verify_v2(args: &VerifyArgs, input: &mut Input, ctx: &mut Context) -> CliResult<Proof> {
    let prelude = v2::read_prelude(input)?;
    let (signers, creator) = keyring::v2_signers(ctx, &args.signers, &prelude.header.signer)?;
    if let Some(a) = ctx.audit_mut() {
        a.backup_creator_id =
            creator.or(prelude.header.metadata.creator_user_id.map(|id| id as i64));
    }
    let identity = match (&args.identity, args.decrypt_check) {
        (Some(path), _) => Some(load_private(path, &server_password(&args.server_password))?),
        (None, true) => {
            let (_, slot) = prelude.active_slot()?;
            let password = server_password(&args.server_password).cached();
            keyring::v2_identities(ctx, &[], &password, &slot.recipients())?
                .into_iter()
                .next()
        }
        (None, false) => None,
    };
    let superseded = super::superseded_slot_note(&prelude, &input.name);
    let report = prelude.verify(
        input,
        &signers,
        identity.as_ref().map(|k| k as &dyn Identity),
    )?;
    let mut lines = vec![
        format!("header signature: valid, by {}", report.signer),
        format!(
            "ciphertext: intact ({} chunks, {} bytes; final signature over BLAKE3 {})",
            report.chunks,
            report.payload_bytes,
            hex(&report.ciphertext_digest)
        ),
    ];
    lines.push(match report.decrypted_with {
        Some(fp) => format!(
            "decryption: proven with {fp} (file key, commitment, recipient MAC, every chunk tag, \
             decompression); no plaintext written"
        ),
        None => "decryption: not checked (pass --identity to prove the file decrypts)".into(),
    });
    Ok(Proof {
        format: "v2",
        lines,
        json: json!({
            "signer": report.signer.to_string(),
            "checks": {
                "header_signature": true,
                "final_signature": true,
                "decrypts": report.decrypted_with.map(|_| true),
            },
            "decrypted_with": report.decrypted_with.map(|f| f.to_string()),
            "chunks": report.chunks,
            "ciphertext_blake3": hex(&report.ciphertext_digest),
            "superseded_slot": superseded.as_ref().map(|(_, j)| j),
        }),
        warnings: superseded.into_iter().map(|(message, _)| message).collect(),
    })
}

fn verify_legacy_hybrid(
    args: &VerifyArgs,
    input: &mut Input,
    ctx: &mut Context,
) -> CliResult<Proof> {
    let len = input.len;
    let header = hybrid::read_header(input, len)?;
    if let Some(a) = ctx.audit_mut() {
        a.backup_creator_id = i64::try_from(header.user_id).ok();
    }
    let signers = keyring::legacy_signers(ctx, &args.signers, header.user_id)?;
    if signers.is_empty() {
        return Err(Error::MissingLegacySigner(header.user_id).into());
    }
    let identities = match (&args.identity, args.decrypt_check) {
        (Some(path), _) => vec![load_private(path, &server_password(&args.server_password))?],
        (None, true) => {
            let password = server_password(&args.server_password).cached();
            keyring::legacy_identities(ctx, &[], &password)?
        }
        (None, false) => Vec::new(),
    };
    let (digest, decrypted) = if identities.is_empty() {
        (hybrid::body_digest(input)?, false)
    } else {
        let key = identities
            .iter()
            .find(|k| k.unwrap_file_key(&header.wrapped_key).is_ok())
            .ok_or(Error::SessionKeyUnwrap)?;
        let opened = hybrid::decrypt(&header, input, std::io::sink(), key)?;
        (opened.ciphertext_digest, true)
    };
    let signer: &PublicKey = legacy_signer(&header, &signers, &digest)?;
    Ok(Proof {
        format: "legacy-hybrid",
        lines: vec![
            format!("signature: valid, by {} (creator user id {})", signer.fingerprint(), header.user_id),
            format!("ciphertext: intact (SHA-256 {})", hex(&digest)),
            if decrypted {
                "decryption: proven (session key unwrapped, GCM tag verified); no plaintext written".into()
            } else {
                "decryption: not checked (pass --identity to prove the file decrypts)".into()
            },
            "note: the legacy format does not sign its header (user id, time); only the data is proven".into(),
        ],
        json: json!({
            "signer": signer.fingerprint().to_string(),
            "user_id": header.user_id,
            "checks": {
                "signature": true,
                "decrypts": decrypted.then_some(true),
                "header_authenticated": false,
            },
            "ciphertext_sha256": hex(&digest),
        }),
        warnings: Vec::new(),
    })
}
