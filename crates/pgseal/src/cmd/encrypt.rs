//! `pgseal encrypt`: seal any file or stream to recipients' public keys, signed by its creator.

use std::io::{self, Seek, SeekFrom};
use std::path::Path;

use pgseal_core::legacy::hybrid;
use pgseal_core::v2::{self, Compression, Metadata, SealParams};
use pgseal_core::{PrivateKey, PublicKey};
use pgseal_store::{Action, User};
use serde_json::json;

use super::server_key::no_active_key;
use super::{host_name, load_private, load_publics, user_password};
use crate::cli::{CompressArg, EncryptArgs, FormatArg};
use crate::context::{Context, store_failure};
use crate::failure::{CliResult, Failure};
use crate::files::{Input, Output, check_output, scratch_file};

/// The creator: the key that signs, and the pgseal user it belongs to when known.
struct Creator {
    key: PrivateKey,
    user: Option<User>,
}

/// The signing key: `--user NAME` takes the user's active key (from `--sign-key` or the default
/// path) and checks it against the store; `--sign-key` alone works without a store.
fn resolve_creator(args: &EncryptArgs, ctx: &mut Context) -> CliResult<Creator> {
    let password = user_password(&args.user_password);
    let Some(name) = &args.user else {
        let path = args.sign_key.as_ref().ok_or(pgseal_ops::Missing::Creator)?;
        let key = load_private(path, &password)?;
        // With a store, attribute the file to the key's owner if the key is known.
        let fp = key.fingerprint();
        let user = match ctx.store_if_configured()? {
            Some(store) => match store.user_key(&fp).map_err(store_failure)? {
                Some(k) => store.user_by_id(k.user_id).map_err(store_failure)?,
                None => None,
            },
            None => None,
        };
        return Ok(Creator { key, user });
    };
    let (key, user) = signing_key_for_user(ctx, name, args.sign_key.as_deref(), &password)?;
    Ok(Creator {
        key,
        user: Some(user),
    })
}

/// A user's signing key, checked to be their active key (`pgseal_ops::keys`).
pub fn signing_key_for_user(
    ctx: &mut Context,
    name: &str,
    sign_key: Option<&Path>,
    password: &dyn pgseal_ops::secret::Secret,
) -> CliResult<(PrivateKey, User)> {
    let name = crate::context::username(name)?;
    pgseal_ops::keys::signing_key_for_user(ctx, &name, sign_key, password)
}

/// The recipients: the `--recipient` files, else the store's active server key.
fn resolve_recipients(args: &EncryptArgs, ctx: &mut Context) -> CliResult<Vec<PublicKey>> {
    if !args.recipients.is_empty() {
        return load_publics(&args.recipients);
    }
    let Some(store) = ctx.store_if_configured()? else {
        return Err(Failure::usage(
            "pass --recipient PUB.pem (or configure a store with an active server key)",
        ));
    };
    let active = store
        .active_server_key()
        .map_err(store_failure)?
        .ok_or_else(no_active_key)?;
    Ok(vec![PublicKey::from_pem(&active.public_key_pem)?])
}

pub fn run(args: EncryptArgs, ctx: &mut Context) -> CliResult {
    let audit = ctx.audit(Action::Encrypt);
    audit.backup_file = Some(args.output.clone());
    audit.detail(
        "format",
        if args.format == FormatArg::V1 {
            "v1"
        } else {
            "v2"
        },
    );
    for name in [&args.user, &args.username].into_iter().flatten() {
        crate::context::username(name)?;
    }
    // The input and the output are checked before any key is unlocked.
    let mut input = Input::open(&args.input)?;
    if args.output != "-" {
        check_output(Path::new(&args.output), args.force, Some(&input))?;
    }
    let creator = resolve_creator(&args, ctx)?;
    let recipients = resolve_recipients(&args, ctx)?;
    if let Some(a) = ctx.audit_mut() {
        a.user_id = creator.user.as_ref().map(|u| u.id);
        a.backup_creator_id = creator.user.as_ref().map(|u| u.id);
        a.detail("signer", creator.key.fingerprint().to_string());
        a.detail(
            "recipients",
            recipients
                .iter()
                .map(|r| r.fingerprint().to_string())
                .collect::<Vec<_>>(),
        );
    }
    if args.format == FormatArg::V1 {
        return run_v1(args, creator, recipients, input);
    }
    let signer = creator.key;
    let mut output = Output::create(&args.output, args.force, Some(&input))?;

    let mut params = SealParams::new(&signer, &recipients);
    params.compression = match args.compress.unwrap_or(CompressArg::Zstd) {
        CompressArg::Zstd => Compression::Zstd,
        CompressArg::None => Compression::None,
    };
    params.zstd_level = args.zstd_level;
    params.zstd_workers = zstd_workers();
    params.chunk_size = args.chunk_size;
    params.metadata = Metadata {
        creator_user_id: args.user_id.or(creator.user.as_ref().map(|u| u.id as u64)),
        creator_username: args
            .username
            .clone()
            .or(creator.user.as_ref().map(|u| u.username.to_string())),
        source_host: host_name(),
        content_name: input.file_name(),
        audit_anchor: ctx.audit_anchor()?,
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
            "ciphertext_blake3": hex(&summary.ciphertext_digest),
        });
        if to_stdout {
            eprintln!("{report}");
        } else {
            println!("{report}");
        }
    }
    Ok(())
}

/// zstd worker threads: one per core, at most four. They overlap with the reading thread and
/// the crypto stage, which wait on I/O as much as they compute.
pub fn zstd_workers() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get().clamp(1, 4) as u32)
        .unwrap_or(1)
}

fn run_v1(
    args: EncryptArgs,
    creator: Creator,
    recipients: Vec<PublicKey>,
    mut input: Input,
) -> CliResult {
    if recipients.len() != 1 {
        return Err(Failure::usage(
            "--format v1 files have exactly one recipient",
        ));
    }
    if args.compress == Some(CompressArg::Zstd) {
        return Err(Failure::usage(
            "--format v1 files cannot be compressed; drop --compress",
        ));
    }
    let user_id = args
        .user_id
        .or(creator.user.as_ref().map(|u| u.id as u64))
        .ok_or_else(|| {
            Failure::usage("--format v1 needs --user-id (the old system looks the signer up by it)")
        })?;
    let signer = creator.key;
    let mut output = Output::create(&args.output, args.force, Some(&input))?;
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);

    let sealed = match &mut output {
        Output::File(file) => {
            hybrid::encrypt(&mut input, file, &recipients[0], &signer, user_id, created)?
        }
        stream => {
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
                .and_then(|_| io::copy(&mut scratch, stream))
                .map_err(|e| Failure::io("writing the output", e))?;
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
    hex::encode(bytes)
}
