//! `cargo xtask`: the project's own build, run and test driver. It provisions the eBPF
//! toolchain on first use (idempotently, and in well under a second once done) so a fresh
//! Debian machine needs nothing installed by hand.

mod bench;
mod deb;
mod fuzz;
mod install;
mod provision;
mod vm;

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
    Provision {
        /// Also the tools `cargo xtask test` installs (Prometheus, kubernetes-validate, ...).
        #[arg(long)]
        test_tools: bool,
    },
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
    /// Run every test: unit tests and end-to-end tests against the running kernel (needs
    /// root), then the end-to-end tests inside QEMU guests on other kernels (see `vm`).
    Test {
        /// Skip the VM suite (also ARP_TRACE_SKIP_VM=1); refused when CI is set.
        #[arg(long)]
        no_vm: bool,
        /// Extra arguments passed to the test binaries (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run only the VM suite: the end-to-end tests inside QEMU guests booting Debian's stock
    /// kernels (downloaded once into target/vm/).
    Vm {
        /// Kernel series to boot: 6.1, 6.12 or all.
        #[arg(long, default_value = "all", value_parser = ["6.1", "6.12", "all"])]
        kernel: String,
        /// Hook set for the tracer (auto, fentry, kprobe, tracepoint); without it every
        /// matrix row of the chosen kernels runs.
        #[arg(long, value_parser = ["auto", "fentry", "kprobe", "tracepoint"])]
        hooks: Option<String>,
        /// Arguments for every test binary in the guest (after `--`), e.g. a test name filter.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Measure overhead, loss under an ARP storm, replay speed and start-up; write BENCHMARKS.md
    /// (needs root; reports, never fails on a missed target).
    Bench(bench::Opts),
    /// Fuzz the trace reader with cargo-fuzz (nightly) for a while (`cargo xtask test` runs
    /// it for a minute).
    Fuzz {
        /// How long, in seconds.
        #[arg(long, default_value_t = 300)]
        seconds: u32,
    },
    /// Build the Debian package (release binary, systemd unit, man page and completions when
    /// present) into target/debian; prints its path.
    Deb(deb::Opts),
    /// Build the release binary and install it with its man page and bash, zsh and fish
    /// completions under PREFIX (default /usr/local); `man arp-trace` works after it.
    Install(install::Opts),
}

/// The packages `cargo xtask test` tests. The VM suite builds its test binaries with the same
/// set so feature unification matches and the host run's binaries are reused, not rebuilt.
const TEST_PACKAGES: &[&str] = &[
    "-p",
    "arp-trace",
    "-p",
    "arp-trace-common",
    "-p",
    "arp-trace-model",
    "-p",
    "arp-trace-e2e",
    "-p",
    "xtask",
];

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

/// Test binary arguments for the guest: two threads (the guest has two vCPUs) unless given.
fn guest_args(mut args: Vec<String>) -> Vec<String> {
    if !args.iter().any(|a| a.starts_with("--test-threads")) {
        args.push("--test-threads=2".into());
    }
    args
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
        Cmd::Provision { test_tools } => {
            let tc = provision::ensure_toolchain()?;
            if test_tools {
                provision::ensure_test_tools()?;
                eprintln!("xtask: test tools ready");
            }
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
        Cmd::Test { no_vm, args } => {
            let skip_vm = no_vm
                || std::env::var("ARP_TRACE_SKIP_VM").is_ok_and(|v| !v.is_empty() && v != "0");
            if skip_vm && std::env::var_os("CI").is_some() {
                bail!(
                    "CI is set: the VM suite cannot be skipped there (drop --no-vm / \
                     ARP_TRACE_SKIP_VM)"
                );
            }
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
            c.arg("test")
                .args(TEST_PACKAGES)
                .env("ARP_TRACE_EBPF_TOOLCHAIN", &tc)
                .env("ARP_TRACE_BIN", &bin);
            if !args.is_empty() {
                c.arg("--").args(&args);
            }
            run(&mut c)?;
            fuzz::run_for(fuzz::TEST_SECONDS)?;
            if skip_vm {
                eprintln!("xtask: VM suite skipped (--no-vm / ARP_TRACE_SKIP_VM)");
                return Ok(());
            }
            vm::run_suite(&vm::Opts {
                kernels: vm::SERIES.iter().map(|s| s.to_string()).collect(),
                hooks: None,
                args: guest_args(args),
                // Under software emulation the debug tracer can take longer than the harness's
                // 30 s to parse BTF and load its programs; the release build starts in time.
                bin: build(&tc, true)?,
                toolchain: tc,
            })
        }
        Cmd::Vm {
            kernel,
            hooks,
            args,
        } => {
            let tc = provision::ensure_toolchain()?;
            provision::ensure_test_tools()?;
            let bin = build(&tc, true)?;
            let kernels = if kernel == "all" {
                vm::SERIES.iter().map(|s| s.to_string()).collect()
            } else {
                vec![kernel]
            };
            vm::run_suite(&vm::Opts {
                kernels,
                hooks,
                args: guest_args(args),
                bin,
                toolchain: tc,
            })
        }
        Cmd::Fuzz { seconds } => fuzz::run_for(seconds),
        Cmd::Bench(opts) => {
            let bin = match &opts.bin {
                Some(b) => b.clone(),
                None => build(&provision::ensure_toolchain()?, true)?,
            };
            bench::run(&bin, &opts)
        }
        Cmd::Deb(opts) => {
            let bin = match &opts.bin {
                Some(b) => b.clone(),
                None => build(&provision::ensure_toolchain()?, true)?,
            };
            let out = opts
                .output
                .unwrap_or_else(|| workspace_root().join("target/debian"));
            let deb = deb::package(&workspace_root(), &bin, &out)?;
            println!("{}", deb.display());
            Ok(())
        }
        Cmd::Install(opts) => {
            let bin = match &opts.bin {
                Some(b) => b.clone(),
                None => build(&provision::ensure_toolchain()?, true)?,
            };
            for f in install::install(&bin, &opts)? {
                eprintln!("xtask: installed {}", f.display());
            }
            eprintln!("xtask: run it with sudo arp-trace; read man arp-trace");
            Ok(())
        }
    }
}
