//! `pgseal encrypt`: seal any file or stream to recipients' public keys, signed by its creator
//! (`pgseal_ops::encrypt`).

use pgseal_core::v2::Compression;
use pgseal_ops::encrypt::{self, Creator, Encrypt, Layout, zstd_workers};
use serde_json::json;

use super::{host_name, user_password};
use crate::cli::{CompressArg, EncryptArgs, FormatArg};
use crate::context::{Context, username};
use crate::failure::{CliResult, Failure};

pub fn run(args: EncryptArgs, ctx: &mut Context) -> CliResult {
    let layout = match args.format {
        FormatArg::V1 if args.compress == Some(CompressArg::Zstd) => {
            return Err(Failure::usage(
                "--format v1 files cannot be compressed; drop --compress",
            ));
        }
        FormatArg::V1 => Layout::LegacyHybrid,
        FormatArg::V2 => Layout::V2 {
            compression: match args.compress.unwrap_or(CompressArg::Zstd) {
                CompressArg::Zstd => Compression::Zstd,
                CompressArg::None => Compression::None,
            },
            zstd_level: args.zstd_level,
            zstd_workers: zstd_workers(),
            chunk_size: args.chunk_size,
        },
    };
    let creator = match (&args.user, &args.sign_key) {
        (Some(name), sign_key) => Some(Creator::User {
            name: username(name)?,
            sign_key: sign_key.as_deref(),
        }),
        (None, Some(path)) => Some(Creator::Key(path)),
        (None, None) => None,
    };
    let password = user_password(&args.user_password);
    let sealed = encrypt::encrypt(
        ctx,
        Encrypt {
            input: &args.input,
            output: &args.output,
            force: args.force,
            creator,
            creator_password: &password,
            recipients: &args.recipients,
            layout,
            user_id: args.user_id,
            username: args.username.as_deref().map(username).transpose()?,
            source_host: host_name(),
        },
    )?;
    if args.json.on {
        let digest = hex::encode(sealed.digest);
        let recipients: Vec<String> = sealed.recipients.iter().map(ToString::to_string).collect();
        let report = match sealed.format {
            "v2" => json!({
                "format": "v2",
                "output": args.output,
                "input_bytes": sealed.input_bytes,
                "output_bytes": sealed.output_bytes,
                "chunks": sealed.chunks,
                "compression": sealed.compression,
                "signer": sealed.signer.to_string(),
                "recipients": recipients,
                "ciphertext_blake3": digest,
            }),
            _ => json!({
                "format": "v1",
                "output": args.output,
                "input_bytes": sealed.input_bytes,
                "user_id": sealed.user_id,
                "signer": sealed.signer.to_string(),
                "recipients": recipients,
                "ciphertext_sha256": digest,
            }),
        };
        if sealed.to_stdout {
            eprintln!("{report}");
        } else {
            outln!("{report}");
        }
    }
    Ok(())
}
