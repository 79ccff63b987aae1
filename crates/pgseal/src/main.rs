//! The `pgseal` command-line tool.

mod cli;
mod cmd;
mod failure;
mod files;
mod secrets;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    if let Err(failure) = cmd::run(cli.command) {
        eprintln!("pgseal: error: {failure}");
        std::process::exit(failure.code as i32);
    }
}
