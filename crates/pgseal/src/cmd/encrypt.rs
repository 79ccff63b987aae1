//! `pgseal encrypt`: seal any file or stream to recipients' public keys, signed by its creator.

use std::io::{self, Seek, SeekFrom};

use pgseal_core::legacy::hybrid;
use pgseal_core::v2::{self, Compression, Metadata, SealParams};
use serde_json::json;

use super::{host_name, load_private, load_publics, user_password};
use crate::cli::{CompressArg, EncryptArgs, FormatArg};
use crate::failure::{CliResult, Failure};
use crate::files::{Input, Output, scratch_file};

pub fn run(args: EncryptArgs) -> CliResult {
    if args.format == FormatArg::V1 {
        return run_v1(args);
    }
    let recipients = load_publics(&args.recipients)?;
    let signer = load_private(&args.sign_key, &user_password(&args.user_password))?;
    let mut input = Input::open(&args.input)?;
    let mut output = Output::create(&args.output, args.force)?;

    let mut params = SealParams::new(&signer, &recipients);
    params.compression = match args.compress.unwrap_or(CompressArg::Zstd) {
        CompressArg::Zstd => Compression::Zstd,
        CompressArg::None => Compression::None,
    };
    params.zstd_level = args.zstd_level;
    params.zstd_workers = zstd_workers();
    params.chunk_size = args.chunk_size;
    params.metadata = Metadata {
        creator_user_id: args.user_id,
        creator_username: args.username.clone(),
        source_host: host_name(),
        content_name: input.file_name(),
        ..Metadata::now()
    };

    let summary = v2::seal(&mut input, &mut output, &params)?;
    let to_stdout = output.is_stdout();
    output.commit()?;
    if args.json {
        let report = json!({
            "format": "v2",
            "output": args.output,
            "input_bytes": summary.input_bytes,
            "output_bytes": summary.output_bytes,
            "chunks": summary.chunks,
            "compression": summary.header.compression.name(),
            "signer": summary.header.signer.to_string(),
            "recipients": summary.recipients.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "ciphertext_sha256": hex(&summary.ciphertext_digest),
        });
        if to_stdout {
            eprintln!("{report}");
        } else {
            println!("{report}");
        }
    }
    Ok(())
}

/// zstd worker threads: one per spare core, at most four (the crypto stage needs a core).
fn zstd_workers() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get().clamp(1, 4) as u32)
        .unwrap_or(1)
}

fn run_v1(args: EncryptArgs) -> CliResult {
    if args.recipients.len() != 1 {
        return Err(Failure::usage(
            "--format v1 files have exactly one recipient",
        ));
    }
    if args.compress == Some(CompressArg::Zstd) {
        return Err(Failure::usage(
            "--format v1 files cannot be compressed; drop --compress",
        ));
    }
    let user_id = args.user_id.ok_or_else(|| {
        Failure::usage("--format v1 needs --user-id (the old system looks the signer up by it)")
    })?;
    let recipients = load_publics(&args.recipients)?;
    let signer = load_private(&args.sign_key, &user_password(&args.user_password))?;
    let mut input = Input::open(&args.input)?;
    let mut output = Output::create(&args.output, args.force)?;
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);

    let sealed = match &mut output {
        Output::File(file) => {
            hybrid::encrypt(&mut input, file, &recipients[0], &signer, user_id, created)?
        }
        Output::Stdout(stdout) => {
            // The signature sits before the data it covers: seal into a scratch file (ciphertext
            // only), then stream that out.
            let mut scratch = scratch_file()?;
            let sealed = hybrid::encrypt(
                &mut input,
                &mut scratch,
                &recipients[0],
                &signer,
                user_id,
                created,
            )?;
            scratch
                .seek(SeekFrom::Start(0))
                .and_then(|_| io::copy(&mut scratch, stdout))
                .map_err(|e| Failure::io("writing standard output", e))?;
            sealed
        }
    };
    let to_stdout = output.is_stdout();
    output.commit()?;
    if args.json {
        let report = json!({
            "format": "v1",
            "output": args.output,
            "input_bytes": sealed.plaintext_bytes,
            "user_id": user_id,
            "signer": signer.fingerprint().to_string(),
            "recipients": [recipients[0].fingerprint().to_string()],
            "ciphertext_sha256": hex(&sealed.ciphertext_digest),
        });
        if to_stdout {
            eprintln!("{report}");
        } else {
            println!("{report}");
        }
    }
    Ok(())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
