//! `pgseal decrypt`: open v2, legacy hybrid and legacy symmetric files (`pgseal_ops::decrypt`).

use pgseal_ops::decrypt;

use super::OpenKeySources;
use crate::cli::DecryptArgs;
use crate::context::Context;
use crate::failure::CliResult;

pub fn run(args: DecryptArgs, ctx: &mut Context) -> CliResult {
    crate::custody::attach(ctx, &args.keys.custody)?;
    let sources = OpenKeySources::new(&args.keys);
    decrypt::decrypt(
        ctx,
        &args.input,
        &args.output,
        args.force,
        &sources.keys(&args.keys),
    )?;
    Ok(())
}
