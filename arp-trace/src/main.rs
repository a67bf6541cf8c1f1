//! arp-trace: entry point. Parses arguments, runs, and turns any error into one line on
//! stderr with a non-zero exit.

use std::process::ExitCode;

use arp_trace::cli::{Args, Command};
use clap::Parser;

fn main() -> ExitCode {
    // A file that reaches RLIMIT_FSIZE must fail its write (EFBIG), reported with the counts
    // and everything else finished, not kill the run with SIGXFSZ.
    // SAFETY: setting a signal to ignored, before any thread exists.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    if let Some(e) = args.conflicts() {
        use clap::CommandFactory;
        Args::command()
            .error(clap::error::ErrorKind::ArgumentConflict, e)
            .exit();
    }
    if let Some(what) = args.generate {
        return match arp_trace::doc::generate(what, &mut std::io::stdout().lock()) {
            // A reader that stopped early (`| head`) got what it wanted, as with tracing.
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("arp-trace: --generate: {e}");
                ExitCode::from(1)
            }
        };
    }
    let result = match &args.command {
        Some(Command::Doctor { json }) => arp_trace::run::doctor::main(*json || args.json),
        Some(Command::Diff {
            before,
            after,
            json,
        }) => {
            return match arp_trace::run::diff::main(before, after, *json || args.json) {
                Ok(same) => ExitCode::from(if same { 0 } else { 1 }),
                Err(e) => {
                    eprintln!("arp-trace: {}", arp_trace::one_line(&e));
                    ExitCode::from(2)
                }
            };
        }
        None if args.read.is_some() => arp_trace::run::replay::run(&args).map(|_| true),
        None => arp_trace::run::live::run(&args).map(|_| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("arp-trace: {}", arp_trace::one_line(&e));
            ExitCode::from(1)
        }
    }
}
