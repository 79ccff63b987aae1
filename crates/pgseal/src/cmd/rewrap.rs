//! `pgseal rewrap`: re-wraps backups' file keys to the active server key after a rotation, and
//! wipes the wrappings it supersedes (`pgseal_ops::rewrap`), with the store's server keys as
//! the key holder; this module prints what happened to each file.

use pgseal_ops::custody::CustodyHolder;
use pgseal_ops::keyholder::KeyHolder;
use pgseal_ops::keys::ServerKeyring;
use pgseal_ops::rewrap::{self, Files, Outcome};
use pgseal_ops::secret::Cached;
use serde_json::json;

use super::{print_json, server_password};
use crate::cli::RewrapArgs;
use crate::context::Context;
use crate::failure::CliResult;

pub fn run(args: RewrapArgs, ctx: &mut Context) -> CliResult {
    crate::custody::attach(ctx, &args.custody)?;
    let password = server_password(&args.server_password);
    // Every stored key shares the server password: asked once, when a key is first needed.
    let password = Cached::new(&password);
    let mut holder: Box<dyn KeyHolder + '_> = match ctx.custody().cloned() {
        Some(client) => Box::new(CustodyHolder::new(client)?),
        None => Box::new(ServerKeyring::load(ctx, &password)?),
    };
    let files = if args.all {
        Files::Catalogued
    } else {
        Files::Named(&args.files)
    };
    let report = rewrap::rewrap(ctx, holder.as_mut(), files)?;
    if report.items.is_empty() {
        outln!("nothing to rewrap");
        return Ok(());
    }
    if args.json.on {
        print_json(&json!(
            report
                .items
                .iter()
                .map(|(p, r)| match r {
                    Ok(outcome) => json!({ "file": p, "outcome": name(outcome) }),
                    Err(f) => json!({ "file": p, "outcome": "failed", "error": crate::failure::message(f) }),
                })
                .collect::<Vec<_>>()
        ));
    } else {
        for (p, r) in &report.items {
            match r {
                Ok(outcome) => outln!("{:<22} {}", name(outcome), p),
                Err(f) => outln!("{:<22} {}: {}", "FAILED", p, crate::failure::message(f)),
            }
        }
    }
    report.result()
}

fn name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Rewrapped(_) => "rewrapped",
        Outcome::Wiped => "wiped superseded slot",
        Outcome::AlreadyCurrent => "already current",
    }
}
