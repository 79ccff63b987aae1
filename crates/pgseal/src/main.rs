//! The `pgseal` command-line tool.

#[macro_use]
mod out;

mod cli;
mod cmd;
mod config;
mod context;
mod crashpoint;
mod custody;
mod failure;
mod interrupt;
mod pgtools;
mod progress;
mod s3;
mod secrets;

use pgseal_ops::{files, show};

use clap::Parser;

// The pipeline allocates chunk buffers on one thread and frees them on another; glibc's malloc
// hands such memory back to the kernel and faults it in again, a large share of the system time
// of a backup. mimalloc keeps it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // No transparent huge pages for this process (and the pg_dump / pg_restore it starts,
    // which inherit the flag and do not ask for them either): mimalloc asks for them on its
    // arena, and then every 2 MiB region an allocation touches becomes resident whole. A
    // multipart S3 backup peaked about 10 MiB higher with them (63-66 MiB against 53-60), a
    // local one 32-34 against 25-29 (docs/BENCHMARKS.md, "Peak RSS of S3 backups").
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    crashpoint::install();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let shown = !matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            );
            // `status` speaks the monitoring plugins' exit codes: a bad flag is UNKNOWN (3).
            if shown && invoked_status() {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or_default();
                let message = first.strip_prefix("error: ").unwrap_or(first);
                let json = std::env::args_os().any(|a| a == "--json");
                std::process::exit(cmd::status::unknown(message, json));
            }
            if shown && std::env::args_os().any(|a| a == "--json") {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or_default();
                let message = first.strip_prefix("error: ").unwrap_or(first);
                print_json_error(cli::JsonTo::Stdout, &failure::Failure::usage(message));
            }
            e.exit();
        }
    };
    if let cli::Command::Status(args) = cli.command {
        let ctx = config::Config::discover(cli.config.as_deref(), cli.store.as_deref())
            .and_then(|config| context::Context::new(config, cli.store.clone()));
        std::process::exit(cmd::status::main(args, ctx));
    }
    let json = cli.command.json_to();
    let config = match config::Config::discover(cli.config.as_deref(), cli.store.as_deref()) {
        Ok(c) => c,
        Err(failure) => fail(&failure, json),
    };
    let mut ctx = match context::Context::new(config, cli.store.clone()) {
        Ok(ctx) => ctx,
        Err(failure) => fail(&failure, json),
    };
    // A reader that went away (a closed pipe) fails the command, audited like any failure.
    let result = cmd::run(cli.command, &mut ctx).and_then(|()| match out::failure() {
        Some(e) => Err(failure::Failure::io("writing standard output", e)),
        None => Ok(()),
    });
    let command_failed = result.is_err();
    if let Err(failure) = ctx.finish(result) {
        // A command that reported its own failure in JSON has answered; a success whose audit
        // entry could not be written has not (its report said it worked), so the error follows.
        let answered = command_failed && cmd::json_printed();
        fail(&failure, if answered { None } else { json });
    }
}

/// Reports a failure and exits with its code: the message on standard error, and with
/// `--json` also a JSON error object where the command's JSON would have gone:
/// `{"error": {"message": "...", "exit_code": N, "kind": "usage"}}`.
fn fail(failure: &failure::Failure, json: Option<cli::JsonTo>) -> ! {
    eprintln!("pgseal: error: {}", failure::message(failure));
    if let Some(to) = json {
        print_json_error(to, failure);
    }
    std::process::exit(failure::ExitCode::of(failure) as i32);
}

fn print_json_error(to: cli::JsonTo, failure: &failure::Failure) {
    use std::io::Write as _;
    let line = format!("{}\n", failure::to_json(failure));
    // A closed stream cannot be told anything more; the exit code still says it.
    let _ = match to {
        cli::JsonTo::Stdout => std::io::stdout().write_all(line.as_bytes()),
        cli::JsonTo::Stderr => std::io::stderr().write_all(line.as_bytes()),
    };
}

/// Whether the command line runs `status` (its first word that is neither a global flag nor
/// a global flag's value).
fn invoked_status() -> bool {
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--config" | "--store") => {
                args.next();
            }
            Some(a) if a.starts_with('-') => {}
            Some(a) => return a == "status",
            None => return false,
        }
    }
    false
}
