//! The `pgseal` command-line tool.

mod cli;
mod cmd;
mod config;
mod context;
mod failure;
mod files;
mod interrupt;
mod pgtools;
mod progress;
mod secrets;
mod show;

use clap::Parser;

// The pipeline allocates chunk buffers on one thread and frees them on another; glibc's malloc
// hands such memory back to the kernel and faults it in again, a large share of the system time
// of a backup. mimalloc keeps it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = cli::Cli::parse();
    let config = match config::Config::discover(cli.config.as_deref(), cli.store.as_deref()) {
        Ok(c) => c,
        Err(failure) => {
            eprintln!("pgseal: error: {failure}");
            std::process::exit(failure.code as i32);
        }
    };
    let mut ctx = context::Context::new(config, cli.store.clone());
    let result = cmd::run(cli.command, &mut ctx);
    if let Err(failure) = ctx.finish(result) {
        eprintln!("pgseal: error: {failure}");
        std::process::exit(failure.code as i32);
    }
}
