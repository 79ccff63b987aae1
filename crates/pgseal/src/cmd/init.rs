//! `pgseal init`: a working pgseal in one directory — configuration, store, key and backup
//! directories, and the first server key. The configuration files are the CLI's; the store
//! and the first key are made by `pgseal_ops::site`.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use pgseal_ops::secret::Given;
use pgseal_ops::{server_keys, site};
use pgseal_store::StoreUrl;
use serde_json::json;

use super::{print_json, server_password};
use crate::cli::{InitArgs, Json};
use crate::config::{Config, ENV_EXAMPLE, TEMPLATE};
use crate::context::Context;
use crate::failure::{CliResult, Failure};
use crate::files::AtomicFile;

pub fn run(args: InitArgs, ctx: &mut Context) -> CliResult {
    let dir = &args.dir;
    let config_path = dir.join("pgseal.toml");
    if config_path.exists() {
        return Err(Failure::usage(format!(
            "{} exists: this directory is already initialised",
            config_path.display()
        )));
    }
    let store_line = match &ctx.store_flag {
        Some(url) => {
            let parsed: StoreUrl = url.parse().map_err(|e| Failure::usage(format!("{e}")))?;
            if parsed.to_string() != *url {
                return Err(Failure::usage(
                    "the store URL holds a password; keep it out of the config: use PGPASSWORD \
                     or ~/.pgpass",
                ));
            }
            format!("url = {}", toml_string(url))
        }
        None => "url = \"sqlite:pgseal.db\"".to_owned(),
    };
    // Ask for the password before creating anything.
    let password_value = server_password(&args.server_password).get_new()?;

    for sub in ["", "keys", "keys/server", "keys/users", "backups"] {
        make_private_dir(&dir.join(sub))?;
    }
    let mut template = TEMPLATE.replace("url = \"sqlite:pgseal.db\"", &store_line);
    if args.pq {
        template = template.replacen("\npq = false ", "\npq = true  ", 1);
    }
    // The configuration is resolved from the text about to be written, so the store and key
    // land where the file says; the file itself is written last, so a failed init can be re-run.
    let scratch = dir.join(".pgseal.toml.init");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&scratch)
        .and_then(|mut f| f.write_all(template.as_bytes()))
        .map_err(|e| Failure::io("writing the configuration", e))?;
    let config = Config::discover(Some(&scratch), ctx.store_flag.as_deref());
    let _ = std::fs::remove_file(&scratch);
    let mut config = config?.expect("an explicit config file always yields a configuration");
    config.file = Some(config_path.clone());
    ctx.set_config(config);
    // `init` is what makes a store; every other command refuses one that is not there.
    let key = site::create(
        ctx,
        &site::Create {
            dir,
            bits: Some(args.key_size),
            pq: Some(args.pq),
            password: &Given(password_value),
        },
    )?;

    write_new(&dir.join(".env.example"), ENV_EXAMPLE, 0o644)?;
    write_new(&config_path, &template, 0o600)?;

    let store = ctx.config()?.store.to_string();
    if args.json.on {
        print_json(&json!({
            "config": config_path,
            "store": store,
            "server_key": key.fingerprint.to_string(),
            "key_size": key.key_size,
            "pq_fingerprint": server_keys::pq_fingerprint(&key).map(|f| f.to_string()),
        }));
    } else {
        outln!("initialised {}", dir.display());
        outln!("  config:      {}", config_path.display());
        outln!("  store:       {store}");
        outln!("  server key:  {}", server_keys::describe(&key));
        outln!("next:");
        outln!(
            "  cd {} && pgseal user add NAME && pgseal user-key generate NAME",
            dir.display()
        );
    }
    Ok(())
}

fn make_private_dir(path: &Path) -> CliResult {
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| Failure::io(format!("creating {}", path.display()), e))
}

fn write_new(path: &Path, text: &str, mode: u32) -> CliResult {
    let mut f = AtomicFile::create(path, false)?;
    f.set_mode(mode);
    f.write_all(text.as_bytes())
        .map_err(|e| Failure::io(format!("writing {}", path.display()), e))?;
    f.commit()
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `pgseal config`: the configuration in effect, after the file, `.env` and the environment.
pub fn show_config(args: Json, ctx: &mut Context) -> CliResult {
    let c = ctx.config()?;
    let v = json!({
        "file": c.file,
        "store": c.store.to_string(),
        "rsa_key_size": c.rsa_key_size,
        "pq_keys": c.pq_keys,
        "server_keys_dir": c.server_keys_dir,
        "user_keys_dir": c.user_keys_dir,
        "backup_dir": c.backup_dir,
        "signature_required": c.signature_required,
        "retention_days": c.retention_days,
        // The [retention] rules prune applies by default; none: retention_days alone.
        "retention": (!c.retention.is_empty()).then(|| c.retention.to_string()),
        "postgresql_bin_path": c.postgresql_bin_path,
        "repository": c.repository.url,
        "s3_addressing": c.repository.s3_addressing,
        "s3_part_size_mib": c.repository.s3_part_size_mib,
        "abort_uploads_after_hours": c.repository.abort_uploads_after_hours,
        "custody": c.custody.url,
        "custody_ca_file": c.custody.ca_file,
        "serve_listen": c.serve.listen,
        "serve_unix_socket": c.serve.unix_socket,
    });
    if args.on {
        print_json(&v);
    } else if let Some(map) = v.as_object() {
        for (k, val) in map {
            let shown = match val {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "-".into(),
                other => other.to_string(),
            };
            outln!("{k:<20} {shown}");
        }
    }
    Ok(())
}
