//! `pgseal import-django`: brings the legacy system's users, keys and audit log into the store
//! (`pgseal_ops::import`).

use pgseal_ops::import::{self, Count, ImportDjango};
use serde_json::json;

use super::print_json;
use crate::cli::ImportDjangoArgs;
use crate::context::Context;
use crate::failure::CliResult;

pub fn run(args: ImportDjangoArgs, ctx: &mut Context) -> CliResult {
    let counts = import::import_django(
        ctx,
        &ImportDjango {
            database_url: &args.database_url,
            dry_run: args.dry_run,
        },
    )?;
    let verb = if args.dry_run {
        "would import"
    } else {
        "imported"
    };
    if args.json.on {
        let pair = |c: Count| json!({ "new": c.new, "already_here": c.already_here });
        print_json(&json!({
            "dry_run": args.dry_run,
            "users": pair(counts.users),
            "user_keys": pair(counts.user_keys),
            "server_keys": pair(counts.server_keys),
            "audit_rows": pair(counts.audit_rows),
        }));
    } else {
        for (what, c) in [
            ("users", counts.users),
            ("user keys", counts.user_keys),
            ("server keys", counts.server_keys),
            ("audit rows", counts.audit_rows),
        ] {
            outln!("{verb} {} {what} ({} already here)", c.new, c.already_here);
        }
        if !args.dry_run && counts.server_keys.new > 0 {
            outln!(
                "the imported server keys are still protected by the legacy SERVER_KEY_PASSWORD; \
                 `pgseal server-key rotate` moves every key to a new one"
            );
        }
    }
    Ok(())
}
