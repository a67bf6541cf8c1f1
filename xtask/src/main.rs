//! `cargo xtask`: the project's own build, run and test driver. It provisions the eBPF
//! toolchain on first use (idempotently, and in well under a second once done) so a fresh
//! Debian machine needs nothing installed by hand.

mod bench;
mod provision;

use provision::run;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, run and test arp-trace")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Provision the eBPF toolchain if needed (nothing else).
    Provision,
    /// Build the tracer (release); prints the binary's path.
    Build {
        /// Build the debug profile instead.
        #[arg(long)]
        debug: bool,
    },
    /// Build and run the tracer as root: `cargo xtask run -- -i eth0 --json`.
    Run {
        /// Arguments for arp-trace.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every test: unit tests and end-to-end tests against the real kernel (needs root).
    Test {
        /// Extra arguments passed to the test binaries (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Measure overhead, loss under an ARP storm, replay speed and start-up; write BENCHMARKS.md
    /// (needs root; reports, never fails on a missed target).
    Bench(bench::Opts),
    /// Copy the release binary to /usr/local/bin/arp-trace.
    Install {
        #[arg(long, default_value = "/usr/local/bin")]
        prefix: PathBuf,
    },
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

fn build(toolchain: &str, release: bool) -> Result<PathBuf> {
    let mut c = cargo();
    c.args(["build", "--package", "arp-trace"])
        .env("ARP_TRACE_EBPF_TOOLCHAIN", toolchain);
    if release {
        c.arg("--release");
    }
    run(&mut c)?;
    Ok(workspace_root()
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("arp-trace"))
}

fn is_root() -> bool {
    // SAFETY: no failure mode.
    unsafe { libc::geteuid() == 0 }
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Provision => {
            let tc = provision::ensure_toolchain()?;
            eprintln!("xtask: eBPF toolchain ready: {tc}");
            Ok(())
        }
        Cmd::Build { debug } => {
            let tc = provision::ensure_toolchain()?;
            let bin = build(&tc, !debug)?;
            println!("{}", bin.display());
            Ok(())
        }
        Cmd::Run { args } => {
            let tc = provision::ensure_toolchain()?;
            let bin = build(&tc, true)?;
            let err = if is_root() {
                Command::new(&bin).args(&args).exec()
            } else {
                Command::new("sudo").arg(&bin).args(&args).exec()
            };
            Err(err).with_context(|| format!("cannot run {}", bin.display()))
        }
        Cmd::Test { args } => {
            if !is_root() {
                bail!(
                    "the end-to-end tests load BPF programs and create network namespaces: \
                     run as root (sudo -E cargo xtask test)"
                );
            }
            let tc = provision::ensure_toolchain()?;
            provision::ensure_test_tools()?;
            let bin = build(&tc, false)?;
            let mut c = cargo();
            c.args([
                "test",
                "-p",
                "arp-trace",
                "-p",
                "arp-trace-common",
                "-p",
                "arp-trace-e2e",
                "-p",
                "xtask",
            ])
            .env("ARP_TRACE_EBPF_TOOLCHAIN", &tc)
            .env("ARP_TRACE_BIN", &bin);
            if !args.is_empty() {
                c.arg("--").args(&args);
            }
            run(&mut c)
        }
        Cmd::Bench(opts) => {
            let bin = match &opts.bin {
                Some(b) => b.clone(),
                None => build(&provision::ensure_toolchain()?, true)?,
            };
            bench::run(&bin, &opts)
        }
        Cmd::Install { prefix } => {
            let tc = provision::ensure_toolchain()?;
            let bin = build(&tc, true)?;
            let dst = prefix.join("arp-trace");
            std::fs::copy(&bin, &dst)
                .with_context(|| format!("cannot copy to {}", dst.display()))?;
            eprintln!(
                "xtask: installed {}; run it with sudo arp-trace",
                dst.display()
            );
            Ok(())
        }
    }
}
