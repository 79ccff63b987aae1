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
//!
//! Without `--create`, the target must be empty unless `--into-existing` says to merge into
//! what it holds. A SIGINT, SIGTERM or SIGHUP stops pg_restore, drops the database pgseal
//! created (`--create`, `--check`), is audited, and exits 128 + the signal's number
//! ([`crate::interrupt`]). `--check` marks its scratch database and holds an advisory lock
//! while it exists; the next `--check` drops scratch databases whose lock nobody holds, which
//! only a killed pgseal leaves.

use std::io::Write;
use std::path::Path;

use pgseal_core::detect::DETECT_LEN;
use pgseal_core::keys::Identity;
use pgseal_core::legacy::{hybrid, symmetric};
use pgseal_core::v2::{self, Prelude, SignerCheck};
use pgseal_core::{Detected, Error, PrivateKey, PublicKey, detect};
use pgseal_store::Action;
use serde_json::json;

use super::decrypt::{legacy_signer, record_signature_outcome};
use super::{keyring, print_json, server_password};
use crate::cli::{OpenKeyArgs, RestoreArgs};
use crate::context::Context;
use crate::failure::{CliResult, Failure};
use crate::files::{Holdback, Input};
use crate::interrupt;
use crate::pgtools::{PgTools, RestoreOptions, Target, quote_ident, quote_literal};
use crate::secrets::PasswordSource;
use crate::show;
use pgseal_ops::cancel::Checked;

/// Plaintext held back from pg_restore until the whole backup has verified.
const HOLDBACK: usize = 1024 * 1024;

/// The start of the comment `restore --check` puts on its scratch database: with the name
/// pattern and the owner, what marks a database as pgseal's to remove.
const SCRATCH_MARKER: &str = "pgseal restore --check scratch database";

/// The first key of the advisory lock a `restore --check` holds while its scratch database
/// exists (the second is the database's random tag): "pgse".
const SCRATCH_LOCK_CLASS: i32 = 0x7067_7365;

/// How the target database is reached.
#[derive(Clone, Copy)]
enum Destination<'a> {
    /// Created first (refused if it exists), with an optional comment; dropped again if the
    /// restore fails or is interrupted.
    New { comment: Option<&'a str> },
    /// An existing database: refused unless empty, or `merge`.
    Existing { merge: bool },
}

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
    let audit = ctx.audit(Action::Restore);
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
    let tools = crate::pgtools::locate(args.pg_bin.as_deref(), configured_bin.as_deref())?;
    let opener = prepare(&args.file, &args.keys, ctx);
    let result = opener.and_then(|opener| {
        // The keys are in hand: from here on a signal stops the restore cleanly (and a Ctrl-C
        // at a password prompt above still simply ended pgseal).
        let _signals = interrupt::Guard::install()?;
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
            let how = if args.create {
                Destination::New { comment: None }
            } else {
                Destination::Existing {
                    merge: args.into_existing,
                }
            };
            restore_into(&args, &tools, &opener, &target, how, Some(ctx))?;
            if args.json {
                print_json(&json!({ "restored": args.file, "target_db": target }));
            } else {
                println!(
                    "restored {} into {}",
                    args.file.display(),
                    show::name(&target)
                );
            }
            Ok(())
        }
    });
    if let (Err(_), Some(signal)) = (&result, interrupt::received())
        && let Some(a) = ctx.outcome_audit_mut()
    {
        a.detail("interrupted", interrupt::signal_name(signal));
    }
    record_signature_outcome(ctx, result.as_ref().map(drop), !args.keys.no_verify);
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

/// Restores into `target`, created first or existing (see [`Destination`]). With `ctx`, the audit
/// entry is written before the restore may commit (fail closed).
fn restore_into(
    args: &RestoreArgs,
    tools: &PgTools,
    opener: &Opener,
    target: &str,
    how: Destination,
    ctx: Option<&mut Context>,
) -> CliResult {
    let maintenance = Target::Name("postgres".into());
    let shown = show::name(target);
    let created = match how {
        Destination::New { comment } => {
            interrupt::check("nothing was created")?;
            if database_exists(tools, target)? {
                return Err(Failure::usage(format!(
                    "database {shown} already exists; drop it, or restore into it without --create"
                )));
            }
            tools.execute(
                &maintenance,
                &format!("CREATE DATABASE {};", quote_ident(target)),
            )?;
            if let Some(comment) = comment {
                let commented = tools.execute(
                    &maintenance,
                    &format!(
                        "COMMENT ON DATABASE {} IS {};",
                        quote_ident(target),
                        quote_literal(comment)
                    ),
                );
                if let Err(f) = commented {
                    drop_created(tools, target);
                    return Err(f);
                }
            }
            true
        }
        Destination::Existing { merge } => {
            if !merge && !database_is_empty(tools, target)? {
                return Err(Failure::usage(format!(
                    "database {shown} already holds objects (tables, schemas, functions, types \
                     or extensions): the backup would be merged into them. Pass \
                     --into-existing to do that, or restore into a new database with --create"
                )));
            }
            false
        }
    };
    let result = restore_archive(args, tools, opener, target, ctx);
    let dropped = result.is_err() && created && drop_created(tools, target);
    interrupt::overrule(result, || {
        if dropped {
            format!("the restore was stopped, and {shown}, which it had created, was dropped")
        } else if created {
            format!("the restore was stopped; {shown}, which it had created, is still there")
        } else if args.jobs > 1 {
            format!(
                "the restore was stopped; with --jobs it is not one transaction, so {shown} \
                 holds what had been restored"
            )
        } else {
            format!("the restore was stopped, and nothing was committed to {shown}")
        }
    })
}

/// Drops a database this run created; warns (and returns false) if it cannot.
fn drop_created(tools: &PgTools, name: &str) -> bool {
    match drop_database(tools, name) {
        Ok(()) => true,
        Err(f) => {
            eprintln!(
                "pgseal: warning: could not drop {}, which this restore created: {f}; drop it \
                 by hand",
                show::name(name)
            );
            false
        }
    }
}

fn drop_database(tools: &PgTools, name: &str) -> CliResult {
    tools.execute(
        &Target::Name("postgres".into()),
        &format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE);",
            quote_ident(name)
        ),
    )
}

fn database_exists(tools: &PgTools, name: &str) -> CliResult<bool> {
    let rows = tools.rows(
        &Target::Name("postgres".into()),
        &format!(
            "SELECT 1 FROM pg_database WHERE datname = {};",
            quote_literal(name)
        ),
        1,
    )?;
    Ok(!rows.is_empty())
}

/// Whether `name` holds nothing of its own: no schema but `public`, no table, view, sequence,
/// index, function, type, extension (but plpgsql) or large object.
fn database_is_empty(tools: &PgTools, name: &str) -> CliResult<bool> {
    const OBJECTS: &str = r"SELECT
  (SELECT count(*) FROM pg_namespace
    WHERE nspname NOT IN ('public', 'information_schema') AND nspname NOT LIKE 'pg\_%')
+ (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%')
+ (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema'))
+ (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
      AND t.typrelid = 0 AND t.typelem = 0)
+ (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql')
+ (SELECT count(*) FROM pg_largeobject_metadata);";
    let rows = tools.rows(&Target::Name(name.to_owned()), OBJECTS, 1)?;
    match rows.as_slice() {
        [row] if row.len() == 1 => Ok(row[0] == "0"),
        _ => Err(Failure::invalid(format!(
            "unexpected answer counting the objects in {}",
            show::name(name)
        ))),
    }
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
        opener.open(&args.file, &mut Checked(scratch.file()))?;
        let file = scratch.file();
        file.sync_all()
            .map_err(|e| Failure::io("writing the temporary archive", e))?;
        audit_first(&mut ctx)?;
        let result = tools.restore(&db, Some(scratch.path()), &options)?.wait();
        drop(scratch);
        return result;
    }
    if opener.needs_first_pass() {
        opener.open(&args.file, &mut Checked(std::io::sink()))?;
    }
    let mut pg = tools.restore(&db, None, &options)?;
    let stdin = pg.child.stdin.take().expect("pg_restore's stdin is piped");
    let mut held = Checked(Holdback::new(stdin, HOLDBACK));
    let opened = opener
        .open(&args.file, &mut held)
        .and_then(|()| audit_first(&mut ctx));
    match opened {
        Ok(()) => {
            let stdin = held
                .0
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
        Err(f) if f.kind() == pgseal_ops::ErrorKind::Io => {
            drop(held);
            pg.wait().and(Err(f))
        }
        Err(f) => {
            drop(held);
            pg.abort();
            let message = format!(
                "{} — the restore was abandoned and nothing was committed",
                crate::failure::message(&f)
            );
            Err(f.context(message))
        }
    }
}

/// `restore --check`: into a throwaway database, count rows, drop it.
fn check(args: &RestoreArgs, ctx: &mut Context, tools: &PgTools, opener: &Opener) -> CliResult {
    let maintenance = Target::Name("postgres".into());
    let removed = remove_abandoned_scratch(tools, &maintenance);
    let mut tag = [0u8; 4];
    pgseal_core::secret::fill_random(&mut tag)?;
    let tag = u32::from_be_bytes(tag);
    let name = format!("pgseal_check_{tag:08x}");
    if let Some(a) = ctx.audit_mut() {
        a.detail("check", true);
        a.detail("target_db", name.clone());
        if !removed.is_empty() {
            a.detail("removed_abandoned", removed);
        }
    }
    // Held for as long as the scratch database may exist (the session ends with pgseal, even
    // a killed one): another run's cleanup sees the lock and leaves the database alone.
    let _lock = tools.session(
        &maintenance,
        &format!(
            "SELECT pg_advisory_lock({SCRATCH_LOCK_CLASS}, {});",
            tag as i32
        ),
    )?;
    let comment = format!(
        "{SCRATCH_MARKER} (host {}, pid {}, {}); dropped by the next restore --check if left \
         behind",
        super::host_name().unwrap_or_default(),
        std::process::id(),
        pgseal_core::time::Timestamp::now().rfc3339()
    );
    let how = Destination::New {
        comment: Some(&comment),
    };
    restore_into(args, tools, opener, &name, how, None)?;
    let counts = interrupt::check("the check was stopped").and_then(|()| row_counts(tools, &name));
    let dropped = drop_created(tools, &name);
    let counts = interrupt::overrule(counts, || {
        if dropped {
            format!("the check was stopped, and its scratch database {name} was dropped")
        } else {
            format!("the check was stopped; its scratch database {name} is still there")
        }
    })?;
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
            println!("  {:<50} {rows:>12}", show::name(table));
        }
    }
    Ok(())
}

/// Drops the scratch databases that killed `restore --check` runs left behind, and returns
/// their names. Only provably abandoned ones: named `pgseal_check_` and 8 hex digits, owned by
/// the role pgseal connects as, carrying [`SCRATCH_MARKER`] — and whose advisory lock nobody
/// holds, which means the run that made it is gone (a live one holds it from before it creates
/// the database until after it drops it). The lock is taken for the drop, so no run can start
/// using that name meanwhile. Failing to clean up only warns: it does not stop this check.
fn remove_abandoned_scratch(tools: &PgTools, maintenance: &Target) -> Vec<String> {
    let candidates = tools.rows(
        maintenance,
        &format!(
            "SELECT d.datname FROM pg_database d \
             WHERE d.datname ~ '^pgseal_check_[0-9a-f]{{8}}$' \
               AND d.datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user) \
               AND starts_with(coalesce(shobj_description(d.oid, 'pg_database'), ''), {}) \
             ORDER BY 1;",
            quote_literal(SCRATCH_MARKER)
        ),
        1,
    );
    let candidates: Vec<(String, u32)> = match candidates {
        Ok(rows) => rows
            .into_iter()
            .flatten()
            .filter_map(|n| {
                let tag = u32::from_str_radix(n.strip_prefix("pgseal_check_")?, 16).ok()?;
                Some((n, tag))
            })
            .collect(),
        Err(f) => {
            eprintln!("pgseal: warning: could not look for abandoned scratch databases: {f}");
            return Vec::new();
        }
    };
    if candidates.is_empty() {
        return Vec::new();
    }
    let mut script = String::new();
    for (name, tag) in &candidates {
        let key = format!("{SCRATCH_LOCK_CLASS}, {}", *tag as i32);
        script.push_str(&format!(
            "SELECT pg_try_advisory_lock({key}) AS pgseal_free \\gset\n\
             \\if :pgseal_free\n\
             DROP DATABASE IF EXISTS {} WITH (FORCE);\n\
             SELECT pg_advisory_unlock({key}) AS pgseal_unlocked \\gset\n\
             \\echo dropped {name}\n\
             \\endif\n",
            quote_ident(name)
        ));
    }
    let out = tools.script_output(maintenance, &script);
    let dropped: Vec<String> = match out {
        Ok(text) => text
            .lines()
            .filter_map(|l| l.strip_prefix("dropped "))
            .map(str::to_owned)
            .collect(),
        Err(f) => {
            eprintln!("pgseal: warning: could not drop abandoned scratch databases: {f}");
            Vec::new()
        }
    };
    for name in &dropped {
        eprintln!("pgseal: dropped {name}, left behind by a restore --check that was killed");
    }
    dropped
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
    tools
        .rows(&Target::Name(db.to_owned()), sql, 2)?
        .into_iter()
        .map(|row| {
            let n = row[1].parse().map_err(|_| {
                Failure::invalid(format!(
                    "unexpected row count for {}: {}",
                    show::name(&row[0]),
                    show::name(&row[1])
                ))
            })?;
            Ok((row[0].clone(), n))
        })
        .collect()
}
