//! `pgseal restore`: a backup into a database, with nothing reaching the database unless the
//! backup is authentic.
//!
//! v2: the header signature and the file key are checked before pg_restore starts; the data
//! then streams, chunk by chunk as each verifies, into `pg_restore --single-transaction`, with
//! the last MiB held back until every chunk and the final signature have verified — pg_restore
//! cannot commit without the end of its archive, so a bad backup leaves the database as it was.
//! Legacy files (one GCM message each) are verified in a first pass and streamed in a second.
//! With `--jobs` > 1 the archive is verified into an unnamed private file first, which
//! pg_restore opens through `/proc/PID/fd/N`.

use std::io::Write;
use std::path::Path;

use pgseal_core::detect::DETECT_LEN;
use pgseal_core::keys::Identity;
use pgseal_core::legacy::{hybrid, symmetric};
use pgseal_core::v2::{self, Prelude, SignerCheck};
use pgseal_core::{Detected, Error, PrivateKey, PublicKey, detect};
use pgseal_store::actions;
use serde_json::json;

use super::decrypt::{legacy_signer, record_signature_outcome};
use super::{keyring, print_json, server_password};
use crate::cli::{OpenKeyArgs, RestoreArgs};
use crate::context::Context;
use crate::failure::{CliResult, ExitCode, Failure};
use crate::files::{Holdback, Input};
use crate::pgtools::{PgTools, RestoreOptions, Target, quote_ident};
use crate::secrets::PasswordSource;

/// Plaintext held back from pg_restore until the whole backup has verified.
const HOLDBACK: usize = 1024 * 1024;

/// How to open the backup, decided once before anything runs.
enum Opener {
    V2 {
        identities: Vec<PrivateKey>,
        signers: Vec<PublicKey>,
        verify: bool,
    },
    LegacyHybrid {
        identity: PrivateKey,
        signers: Vec<PublicKey>,
        verify: bool,
    },
    LegacySymmetric(pgseal_core::Password),
}

pub fn run(args: RestoreArgs, ctx: &mut Context) -> CliResult {
    let audit = ctx.audit(actions::RESTORE);
    audit.backup_file = Some(args.file.display().to_string());
    if args.keys.no_verify && ctx.config.as_ref().is_some_and(|c| c.signature_required) {
        return Err(Failure::usage(
            "--no-verify is refused: the configuration requires signatures \
             (BACKUP_SIGNATURE_REQUIRED / backup.signature_required)",
        ));
    }
    let configured_bin = ctx
        .config
        .as_ref()
        .and_then(|c| c.postgresql_bin_path.clone());
    let tools = PgTools::locate(args.pg_bin.as_deref(), configured_bin.as_deref())?;
    let opener = prepare(&args.file, &args.keys, ctx);
    let result = opener.and_then(|opener| {
        if args.check {
            check(&args, ctx, &tools, &opener)
        } else {
            let target = args
                .target_db
                .clone()
                .expect("clap requires --target-db without --check");
            if let Some(a) = ctx.audit_mut() {
                a.detail("target_db", target.clone());
            }
            restore_into(&args, &tools, &opener, &target, args.create, Some(ctx))?;
            if args.json {
                print_json(&json!({ "restored": args.file, "target_db": target }));
            } else {
                println!("restored {} into {target}", args.file.display());
            }
            Ok(())
        }
    });
    record_signature_outcome(ctx, &result, !args.keys.no_verify);
    result
}

/// Reads the header and finds every key before any database work starts: a backup that cannot
/// be verified or opened is refused here.
fn prepare(path: &Path, keys: &OpenKeyArgs, ctx: &mut Context) -> CliResult<Opener> {
    let mut input = Input::open(&path.display().to_string())?;
    let prefix = input.peek(DETECT_LEN)?;
    let verify = !keys.no_verify;
    if keys.no_verify {
        eprintln!("pgseal: warning: --no-verify: the backup's creator is NOT checked");
    }
    match detect(&prefix) {
        Detected::Pgseal {
            version: v2::VERSION,
        } => {
            let prelude = v2::read_prelude(&mut input)?;
            let (signers, creator) =
                keyring::v2_signers(ctx, &keys.signers, &prelude.header.signer)?;
            if let Some(a) = ctx.audit_mut() {
                a.backup_creator_id =
                    creator.or(prelude.header.metadata.creator_user_id.map(|id| id as i64));
            }
            if verify {
                prelude.verify_header_signature(&signers)?;
            }
            let (_, slot) = prelude.active_slot()?;
            let password = server_password(&keys.server_password).cached();
            let identities =
                keyring::v2_identities(ctx, &keys.identities, &password, &slot.recipients())?;
            let refs: Vec<&dyn Identity> = identities.iter().map(|k| k as &dyn Identity).collect();
            prelude.check_key(&refs)?;
            Ok(Opener::V2 {
                identities,
                signers,
                verify,
            })
        }
        Detected::Pgseal { version } => Err(Error::UnsupportedVersion(version).into()),
        Detected::LegacyHybrid => {
            let len = input.len;
            let header = hybrid::read_header(&mut input, len)?;
            if let Some(a) = ctx.audit_mut() {
                a.backup_creator_id = i64::try_from(header.user_id).ok();
            }
            let signers = keyring::legacy_signers(ctx, &keys.signers, header.user_id)?;
            if verify && signers.is_empty() {
                return Err(Error::MissingLegacySigner(header.user_id).into());
            }
            let password = server_password(&keys.server_password).cached();
            let identity = keyring::legacy_identities(ctx, &keys.identities, &password)?
                .into_iter()
                .find(|k| k.unwrap_file_key(&header.wrapped_key).is_ok())
                .ok_or(Error::SessionKeyUnwrap)?;
            Ok(Opener::LegacyHybrid {
                identity,
                signers,
                verify,
            })
        }
        Detected::LegacySymmetric => {
            eprintln!(
                "pgseal: warning: a legacy symmetric backup carries no signature; its creator cannot be verified"
            );
            let password = PasswordSource {
                purpose: "the legacy backup",
                env: "BACKUP_ENCRYPTION_PASSWORD",
                file: keys.legacy_password_file.clone(),
                command: None,
                file_flag: "--legacy-password-file",
            }
            .get()?;
            Ok(Opener::LegacySymmetric(password))
        }
        Detected::PlainDump => Err(Error::NotEncrypted("it is a plain pg_dump archive").into()),
        Detected::Unknown => Err(Failure::invalid(format!(
            "{} is neither a pgseal backup nor a legacy one",
            path.display()
        ))),
    }
}

impl Opener {
    /// Opens the backup at `path` (read from the start) into `out`, verifying everything.
    fn open(&self, path: &Path, out: &mut (dyn Write + Send)) -> CliResult {
        let mut input = Input::open(&path.display().to_string())?;
        match self {
            Opener::V2 {
                identities,
                signers,
                verify,
            } => {
                let prelude: Prelude = v2::read_prelude(&mut input)?;
                let refs: Vec<&dyn Identity> =
                    identities.iter().map(|k| k as &dyn Identity).collect();
                let check = if *verify {
                    SignerCheck::Require(signers)
                } else {
                    SignerCheck::Skip
                };
                prelude.decrypt(&mut input, out, &refs, check)?;
            }
            Opener::LegacyHybrid {
                identity,
                signers,
                verify,
            } => {
                let len = input.len;
                let header = hybrid::read_header(&mut input, len)?;
                let opened = hybrid::decrypt(&header, &mut input, out, identity)?;
                if *verify {
                    legacy_signer(&header, signers, &opened.ciphertext_digest)?;
                }
            }
            Opener::LegacySymmetric(password) => {
                symmetric::decrypt(&mut input, out, password)?;
            }
        }
        Ok(())
    }

    /// Single GCM messages must be verified whole before any plaintext is used.
    fn needs_first_pass(&self) -> bool {
        !matches!(self, Opener::V2 { .. })
    }
}

/// Restores into `target`; with `create`, creates it first and drops it again on failure.
/// With `ctx`, the audit entry is written before the restore may commit (fail closed).
fn restore_into(
    args: &RestoreArgs,
    tools: &PgTools,
    opener: &Opener,
    target: &str,
    create: bool,
    ctx: Option<&mut Context>,
) -> CliResult {
    let maintenance = Target::Name("postgres".into());
    if create {
        let exists = tools.psql(
            &maintenance,
            &format!(
                "SELECT 1 FROM pg_database WHERE datname = '{}';",
                target.replace('\'', "''")
            ),
        )?;
        if !exists.trim().is_empty() {
            return Err(Failure::usage(format!(
                "database {target} already exists; drop it, or restore into it without --create"
            )));
        }
        tools.psql(
            &maintenance,
            &format!("CREATE DATABASE {};", quote_ident(target)),
        )?;
    }
    let result = restore_archive(args, tools, opener, target, ctx);
    if result.is_err() && create {
        let _ = tools.psql(
            &maintenance,
            &format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE);",
                quote_ident(target)
            ),
        );
    }
    result
}

fn restore_archive(
    args: &RestoreArgs,
    tools: &PgTools,
    opener: &Opener,
    target: &str,
    mut ctx: Option<&mut Context>,
) -> CliResult {
    // Fail closed: without its audit entry, the restore does not commit.
    let audit_first = |ctx: &mut Option<&mut Context>| -> CliResult {
        match ctx {
            Some(c) => {
                if let Some(a) = c.audit_mut() {
                    a.signature_valid = (!args.keys.no_verify).then_some(true);
                }
                c.audit_before_commit()
            }
            None => Ok(()),
        }
    };
    let db = Target::Name(target.to_owned());
    let options = RestoreOptions {
        clean: args.clean,
        jobs: args.jobs,
    };
    if args.jobs > 1 {
        // pg_restore needs a seekable file for parallel jobs: verify into a private one. An
        // unnamed file where the system allows it, handed to pg_restore as /proc/PID/fd/N, so
        // even a kill -9 leaves no plaintext behind; else a 0600 file in a 0700 directory.
        let scratch = crate::files::PrivateScratch::create()?;
        let mut file = scratch.file();
        opener.open(&args.file, &mut file)?;
        file.sync_all()
            .map_err(|e| Failure::io("writing the temporary archive", e))?;
        audit_first(&mut ctx)?;
        let result = tools.restore(&db, Some(scratch.path()), &options)?.wait();
        drop(scratch);
        return result;
    }
    if opener.needs_first_pass() {
        opener.open(&args.file, &mut std::io::sink())?;
    }
    let mut pg = tools.restore(&db, None, &options)?;
    let stdin = pg.child.stdin.take().expect("pg_restore's stdin is piped");
    let mut held = Holdback::new(stdin, HOLDBACK);
    let opened = opener
        .open(&args.file, &mut held)
        .and_then(|()| audit_first(&mut ctx));
    match opened {
        Ok(()) => {
            let stdin = held
                .release()
                .map_err(|e| Failure::io("writing to pg_restore", e));
            match stdin {
                Ok(stdin) => {
                    drop(stdin);
                    pg.wait()
                }
                Err(f) => {
                    // pg_restore stopped reading: its own error says why.
                    pg.wait().and(Err(f))
                }
            }
        }
        Err(f) if f.code == ExitCode::Io => {
            drop(held);
            pg.wait().and(Err(f))
        }
        Err(f) => {
            drop(held);
            pg.abort();
            Err(Failure::new(
                f.code,
                format!(
                    "{} — the restore was abandoned and nothing was committed",
                    f.message
                ),
            ))
        }
    }
}

/// `restore --check`: into a throwaway database, count rows, drop it.
fn check(args: &RestoreArgs, ctx: &mut Context, tools: &PgTools, opener: &Opener) -> CliResult {
    let mut tag = [0u8; 4];
    pgseal_core::secret::fill_random(&mut tag)?;
    let name = format!(
        "pgseal_check_{}",
        tag.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    if let Some(a) = ctx.audit_mut() {
        a.detail("check", true);
        a.detail("target_db", name.clone());
    }
    restore_into(args, tools, opener, &name, true, None)?;
    let counts = row_counts(tools, &name);
    let _ = tools.psql(
        &Target::Name("postgres".into()),
        &format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE);",
            quote_ident(&name)
        ),
    );
    let counts = counts?;
    if args.json {
        print_json(&json!({
            "file": args.file,
            "restorable": true,
            "tables": counts.iter().map(|(t, n)| json!({ "table": t, "rows": n })).collect::<Vec<_>>(),
        }));
    } else {
        println!(
            "{} restores cleanly ({} tables):",
            args.file.display(),
            counts.len()
        );
        for (table, rows) in &counts {
            println!("  {table:<50} {rows:>12}");
        }
    }
    Ok(())
}

/// Exact row counts of every user table in `db`.
pub fn row_counts(tools: &PgTools, db: &str) -> CliResult<Vec<(String, i64)>> {
    let sql = r"SELECT format('SELECT %L, count(*) FROM %I.%I', n.nspname || '.' || c.relname, n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
ORDER BY 1
\gexec
";
    let out = tools.psql(&Target::Name(db.to_owned()), sql)?;
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (t, n) = l
                .split_once('\t')
                .ok_or_else(|| Failure::invalid(format!("unexpected psql output: {l}")))?;
            let n = n
                .parse()
                .map_err(|_| Failure::invalid(format!("unexpected row count: {l}")))?;
            Ok((t.to_owned(), n))
        })
        .collect()
}
