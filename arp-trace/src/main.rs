//! arp-trace: entry point. Parses arguments, runs, and turns any error into one line on
//! stderr with a non-zero exit.

use std::process::ExitCode;

use arp_trace::cli::Args;
use clap::Parser;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    match arp_trace::live::run(&args) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("arp-trace: {}", arp_trace::one_line(&e));
            ExitCode::from(1)
        }
    }
}
