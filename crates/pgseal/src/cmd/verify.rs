//! `pgseal verify`: check a file's origin and integrity with the creator's public key alone,
//! and with `--identity` also prove it decrypts (`pgseal_ops::verify`); this module says what
//! was proven.

use pgseal_ops::verify::{self, Proof, VerifyKeys};
use serde_json::{Value, json};

use super::{print_json, server_password, superseded_slot_note};
use crate::cli::VerifyArgs;
use crate::context::Context;
use crate::failure::{CliResult, message};

pub fn run(args: VerifyArgs, ctx: &mut Context) -> CliResult {
    crate::custody::attach(ctx, &args.custody)?;
    let password = server_password(&args.server_password);
    let keys = VerifyKeys {
        signers: &args.signers,
        identity: args.identity.as_deref(),
        // Naming a custody service on the command line asks it to prove the file opens.
        decrypt_check: args.decrypt_check || args.custody.custody.is_some(),
        server_password: &password,
    };
    let v = verify::verify(ctx, &args.input, &keys);
    match v.result {
        Ok(proof) => {
            let (format, lines, mut report, warnings) = describe(&proof, &v.input);
            if args.json.on {
                report["valid"] = json!(true);
                report["format"] = json!(format);
                report["file"] = json!(v.input);
                print_json(&report);
            } else {
                outln!("OK: {} ({format})", v.input);
                for line in lines {
                    outln!("  {line}");
                }
                for warning in warnings {
                    outln!("  warning: {warning}");
                }
            }
            Ok(())
        }
        Err(failure) => {
            if args.json.on {
                print_json(&json!({
                    "valid": false,
                    "file": v.input,
                    "format": v.format.unwrap_or("unknown"),
                    "error": message(&failure),
                }));
            }
            Err(failure)
        }
    }
}

/// What was proven: the format's name, lines for people, fields for JSON, warnings.
fn describe(proof: &Proof, file: &str) -> (&'static str, Vec<String>, Value, Vec<String>) {
    let not_checked = "decryption: not checked (pass --identity to prove the file decrypts)";
    match proof {
        Proof::V2 {
            signer,
            chunks,
            payload_bytes,
            digest,
            decrypted_with,
            superseded,
            source_database,
            dump_format,
            post_quantum,
        } => {
            let superseded = superseded
                .as_ref()
                .and_then(|(index, state)| superseded_slot_note(*index, state, file));
            let holds = match (source_database.as_deref(), dump_format.as_deref()) {
                (Some(pgseal_ops::globals::NAME), Some(pgseal_ops::globals::FORMAT)) => {
                    "a cluster's globals (roles, memberships, tablespaces, the databases' owners \
                     and grants): apply with restore --globals"
                        .to_owned()
                }
                (Some(db), format) => format!(
                    "a backup of database {} ({})",
                    crate::show::name(db),
                    format.unwrap_or("format not recorded")
                ),
                (None, Some(format)) => format!("a file of format {format}"),
                (None, None) => "a file (no database or format recorded)".to_owned(),
            };
            let mut lines = vec![
                format!("header signature: valid, by {signer}"),
                format!("holds (signed): {holds}"),
                format!(
                    "ciphertext: intact ({chunks} chunks, {payload_bytes} bytes; final signature \
                     over BLAKE3 {})",
                    hex::encode(digest)
                ),
                match decrypted_with {
                    Some(fp) => format!(
                        "decryption: proven with {fp} (file key, commitment, recipient MAC, \
                         every chunk tag, decompression); no plaintext written"
                    ),
                    None => not_checked.into(),
                },
            ];
            if *post_quantum {
                lines.insert(
                    2,
                    "post-quantum (signed): wrapped only to hybrid RSA + ML-KEM-768 keys".into(),
                );
            }
            let json = json!({
                "signer": signer.to_string(),
                "post_quantum": post_quantum,
                "checks": {
                    "header_signature": true,
                    "final_signature": true,
                    "decrypts": decrypted_with.map(|_| true),
                },
                "decrypted_with": decrypted_with.map(|f| f.to_string()),
                "chunks": chunks,
                "source": { "database": source_database, "dump_format": dump_format },
                "ciphertext_blake3": hex::encode(digest),
                "superseded_slot": superseded.as_ref().map(|(_, j)| j),
            });
            let warnings = superseded.into_iter().map(|(m, _)| m).collect();
            ("v2", lines, json, warnings)
        }
        Proof::LegacyHybrid {
            signer,
            user_id,
            digest,
            decrypted,
        } => (
            "legacy-hybrid",
            vec![
                format!("signature: valid, by {signer} (creator user id {user_id})"),
                format!("ciphertext: intact (SHA-256 {})", hex::encode(digest)),
                if *decrypted {
                    "decryption: proven (session key unwrapped, GCM tag verified); no plaintext \
                     written"
                        .into()
                } else {
                    not_checked.into()
                },
                "note: the legacy format does not sign its header (user id, time); only the \
                 data is proven"
                    .into(),
            ],
            json!({
                "signer": signer.to_string(),
                "user_id": user_id,
                "checks": {
                    "signature": true,
                    "decrypts": decrypted.then_some(true),
                    "header_authenticated": false,
                },
                "ciphertext_sha256": hex::encode(digest),
            }),
            Vec::new(),
        ),
    }
}
