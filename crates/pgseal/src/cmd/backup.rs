//! `pgseal backup`: pg_dump → zstd → encrypt + sign → a new object in the repository (locally:
//! an unnamed file in the backup directory → fsync → linked under its final name) → its
//! location catalogued. No plaintext ever touches the disk: the dump only ever exists in a pipe
//! and in memory, a chunk at a time.

use pgseal_core::time::Timestamp;
use pgseal_core::v2::{self, Compression, Metadata, SealParams};
use pgseal_core::{PrivateKey, PublicKey};
use pgseal_store::{Action, BackupRecord, NewBackup, User};
use serde_json::json;

use super::{host_name, print_json, user_password};
use crate::cli::BackupArgs;
use crate::context::{Audit, Context, store_failure};
use crate::failure::{CliResult, Failure};
use crate::pgtools::{PgTools, Target};
use crate::progress::{CountingReader, CountingWriter, Progress, human};
use crate::show;
use pgseal_ops::encrypt::zstd_workers;
use pgseal_ops::repo::Repository;
use pgseal_ops::repo::local::LocalRepository;

/// Databases `backup --all` skips unless `--exclude` says otherwise.
const DEFAULT_EXCLUDES: [&str; 3] = ["template0", "template1", "postgres"];

pub fn run(args: BackupArgs, ctx: &mut Context) -> CliResult {
    let cfg = ctx.config()?.clone();
    let tools = crate::pgtools::locate(args.pg_bin.as_deref(), cfg.postgresql_bin_path.as_deref())?;
    let out_dir = args
        .output_dir
        .clone()
        .unwrap_or_else(|| cfg.backup_dir.clone());
    let repository = LocalRepository::create_dir(&out_dir, pgseal_ops::repo::reach(ctx).host())?;
    if !args.all {
        let audit = ctx.audit(Action::Backup);
        audit.detail("user", args.user.clone());
    }
    // Whatever fails from here on is audited under the user who ran the backup.
    let name = crate::context::username(&args.user)?;
    let acting = ctx.store()?.user(&name).ok().map(|u| u.id);
    if let Some(a) = ctx.audit_mut() {
        a.user_id = acting;
    }
    let (key, user) = pgseal_ops::keys::signing_key_for_user(
        ctx,
        &name,
        args.sign_key.as_deref(),
        &user_password(&args.user_password),
    )?;
    let job = Job {
        tools: &tools,
        key: &key,
        user: &user,
        repository: &repository,
        schemas: &args.schemas,
    };

    if !args.all {
        let (target, name) = match (&args.database, &args.dbname) {
            (Some(db), None) => (Target::Name(db.clone()), db.clone()),
            (db, Some(conn)) => {
                let target = Target::Conninfo(conn.clone());
                let name = match db {
                    Some(db) => db.clone(),
                    None => current_database(&tools, &target)?,
                };
                (target, name)
            }
            (None, None) => {
                return Err(Failure::usage(
                    "name a database, or pass --dbname URI or --all",
                ));
            }
        };
        let record = job.backup(ctx, &target, &name)?;
        report(&record, args.json);
        return Ok(());
    }

    let maintenance = match &args.dbname {
        Some(conn) => Target::Conninfo(conn.clone()),
        None => Target::Name("postgres".into()),
    };
    let excludes: Vec<String> = if args.excludes.is_empty() {
        DEFAULT_EXCLUDES.iter().map(|s| (*s).to_owned()).collect()
    } else {
        args.excludes.clone()
    };
    let databases: Vec<String> = tools
        .databases(&maintenance)?
        .into_iter()
        .filter(|d| !excludes.contains(d))
        .collect();
    if databases.is_empty() {
        return Err(Failure::usage("no databases to back up (all excluded?)"));
    }
    let mut results = Vec::new();
    for db in &databases {
        // Each database is its own operation, with its own audit entry.
        let mut audit = Audit {
            user_id: acting,
            ..Audit::new(Action::Backup)
        };
        audit.detail("user", args.user.clone());
        audit.detail("database", db.clone());
        let target = maintenance.with_database(db);
        let result = job.backup(ctx, &target, db);
        if let Ok(r) = &result {
            audit.backup_file = Some(r.entry.location.shown());
        }
        let result = ctx.record_outcome(audit, result);
        if let Err(f) = &result {
            eprintln!(
                "pgseal: backup of {} failed: {}",
                show::name(db),
                crate::failure::message(f)
            );
        }
        results.push((db.clone(), result));
    }
    summarize(&results, args.json);
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    if failed > 0 {
        return Err(Failure::Several {
            failed,
            total: results.len(),
            what: "backups failed",
            kind: pgseal_ops::ErrorKind::Database,
        });
    }
    Ok(())
}

/// What every backup of one run shares.
struct Job<'a> {
    tools: &'a PgTools,
    key: &'a PrivateKey,
    user: &'a User,
    repository: &'a dyn Repository,
    schemas: &'a [String],
}

impl Job<'_> {
    fn backup(
        &self,
        ctx: &mut Context,
        target: &Target,
        database: &str,
    ) -> CliResult<BackupRecord> {
        // The active server key is looked up for every backup, so a long `--all` run picks up
        // a rotation and never encrypts to a retired key.
        let server = ctx
            .store()?
            .active_server_key()
            .map_err(store_failure)?
            .ok_or(pgseal_ops::Missing::ActiveServerKey)?;
        let recipients = [PublicKey::from_pem(&server.public_key_pem)?];
        let created = Timestamp::now();
        let mut object = self.repository.create(&file_name(database, created))?;

        let mut params = SealParams::new(self.key, &recipients);
        params.compression = Compression::Zstd;
        params.zstd_workers = zstd_workers();
        params.metadata = Metadata {
            created_at_ms: created.millis() as u64,
            creator_user_id: Some(self.user.id as u64),
            creator_username: Some(self.user.username.to_string()),
            source_database: Some(database.to_owned()),
            source_host: std::env::var("PGHOST")
                .ok()
                .filter(|h| !h.starts_with('/'))
                .or_else(host_name),
            dump_format: Some("pg_dump-custom".into()),
            audit_anchor: ctx.audit_anchor()?,
            ..Metadata::now()
        };

        let progress = Progress::start(&show::name(database));
        let mut dump = self.tools.dump(target, self.schemas)?;
        let stdout = dump.stdout.take().expect("pg_dump's stdout is piped");
        let sealed = v2::seal(
            CountingReader {
                inner: stdout,
                counter: progress.read.clone(),
            },
            CountingWriter {
                inner: &mut object,
                counter: progress.written.clone(),
            },
            &params,
        );
        drop(progress);
        let summary = match sealed {
            Ok(s) => s,
            Err(e) => {
                dump.abort();
                return Err(e.into());
            }
        };
        // pg_dump's verdict decides: a failed dump leaves no object (dropping it abandons it).
        dump.wait()?;
        let location = object.commit()?;
        let record = ctx
            .store()?
            .add_backup(&NewBackup {
                database: database.to_owned(),
                location: location.clone(),
                size_bytes: summary.output_bytes as i64,
                created_at: created,
                creator_user_id: Some(self.user.id),
                creator_key: self.key.fingerprint(),
                server_keys: summary.recipients.clone(),
                format_version: v2::VERSION as i64,
                ciphertext_blake3: Some(summary.ciphertext_digest.into()),
            })
            .map_err(|e| {
                let message = format!(
                    "the backup was written to {} but could not be catalogued: {e}",
                    location.shown()
                );
                Failure::from(e).context(message)
            })?;
        if let Some(a) = ctx.audit_mut() {
            a.user_id = Some(self.user.id);
            a.backup_creator_id = Some(self.user.id);
            a.backup_file = Some(record.entry.location.shown());
            a.detail("database", database.to_owned());
            a.detail("dump_bytes", summary.input_bytes);
            a.detail("file_bytes", summary.output_bytes);
            a.detail("server_key", server.fingerprint.to_string());
        }
        Ok(record)
    }
}

/// `{db}_{UTC yyyymmddTHHMMSS.mmmZ}.pgseal`, with anything unsafe in a file name replaced.
fn file_name(database: &str, at: Timestamp) -> String {
    let safe: String = database
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let stamp: String = at
        .rfc3339()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{safe}_{stamp}.pgseal")
}

fn current_database(tools: &PgTools, target: &Target) -> CliResult<String> {
    tools
        .rows(target, "SELECT current_database();", 1)?
        .into_iter()
        .flatten()
        .next()
        .ok_or_else(|| Failure::invalid("psql did not say which database it connected to"))
}

fn report(r: &BackupRecord, json: bool) {
    if json {
        print_json(&record_json(r));
    } else {
        println!(
            "backup of {} written: {} ({})",
            show::name(&r.entry.database),
            r.entry.location.shown(),
            human(r.entry.size_bytes as u64)
        );
    }
}

pub fn record_json(r: &BackupRecord) -> serde_json::Value {
    json!({
        "id": r.id,
        "database": r.entry.database,
        "location": r.entry.location.as_str(),
        "path": r.entry.location.shown(),
        "host": r.entry.location.host(),
        "size_bytes": r.entry.size_bytes,
        "created_at": r.entry.created_at.rfc3339(),
        "creator_user_id": r.entry.creator_user_id,
        "creator_key": r.entry.creator_key.to_string(),
        "server_keys": r.entry.server_keys.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "format_version": r.entry.format_version,
        "ciphertext_blake3": r
            .entry
            .ciphertext_blake3
            .map_or_else(String::new, |h| h.to_string()),
        "status": r.status.as_str(),
    })
}

fn summarize(results: &[(String, CliResult<BackupRecord>)], json: bool) {
    if json {
        let rows: Vec<_> = results
            .iter()
            .map(|(db, r)| match r {
                Ok(rec) => json!({ "database": db, "ok": true, "backup": record_json(rec) }),
                Err(f) => {
                    json!({ "database": db, "ok": false, "error": crate::failure::message(f) })
                }
            })
            .collect();
        print_json(&json!(rows));
        return;
    }
    println!(
        "{:<24} {:<7} {:>10}  FILE / ERROR",
        "DATABASE", "STATUS", "SIZE"
    );
    for (db, r) in results {
        match r {
            Ok(rec) => println!(
                "{:<24} {:<7} {:>10}  {}",
                show::name(db),
                "ok",
                human(rec.entry.size_bytes as u64),
                rec.entry.location.shown()
            ),
            Err(f) => println!(
                "{:<24} {:<7} {:>10}  {}",
                show::name(db),
                "FAILED",
                "-",
                crate::failure::message(f)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            ),
        }
    }
}
