//! `bunker`: run untrusted code under one deny-by-default policy.
//!
//! The binary stays single-threaded until the sandbox has been cloned (see
//! `bunker_sandbox::spawn`): no async runtime or thread may start before `run`. `serve` builds
//! its runtime itself, after what must happen single-threaded.

#![forbid(unsafe_code)]

mod check;
mod cli;
mod connect;
mod doctor;
mod egress;
mod eval;
mod exit;
mod run;
mod serve;
mod source;

use clap::Parser;

fn main() {
    let command = match cli::parse_run_fast() {
        Some(run) => cli::Command::Run(Box::new(run)),
        None => cli::Cli::parse().command,
    };
    let code = match command {
        cli::Command::Run(opts) => run::main(*opts),
        cli::Command::Check(opts) => check::main(opts),
        cli::Command::Schema(opts) => check::schema(opts),
        cli::Command::Doctor(opts) => doctor::main(opts),
        cli::Command::Serve(opts) => serve::main(opts),
        cli::Command::Eval(opts) => eval::main(*opts),
    };
    std::process::exit(code);
}
