//! The bounded cargo-fuzz pass over the trace reader that `cargo xtask test` runs (and
//! `cargo xtask fuzz` alone): libFuzzer needs nightly and cargo-fuzz, installed on first use.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::provision::run;

/// cargo-fuzz release installed when missing (builds with the stable toolchain here).
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// Seconds of fuzzing in `cargo xtask test`.
pub const TEST_SECONDS: u32 = 60;
/// Peak memory a fuzz input may make the reader use (README, Traces).
const RSS_LIMIT_MB: u32 = 256;

fn has_nightly() -> bool {
    Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn has_cargo_fuzz() -> bool {
    Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Makes sure nightly and cargo-fuzz are there; `Ok(false)` when nightly is missing outside
/// CI (the pass is then skipped with a note), an error under CI.
pub fn ensure() -> Result<bool> {
    if !has_nightly() {
        if std::env::var_os("CI").is_some() {
            bail!("the fuzz pass needs a nightly toolchain (rustup toolchain install nightly)");
        }
        eprintln!(
            "xtask: fuzz pass skipped: no nightly toolchain (rustup toolchain install nightly)"
        );
        return Ok(false);
    }
    if !has_cargo_fuzz() {
        eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} (once)");
        run(Command::new("cargo").args([
            "install",
            "--locked",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
        ]))
        .context("installing cargo-fuzz")?;
    }
    Ok(true)
}

/// Fuzzes the trace reader for `seconds`, starting from the committed seeds; a crash fails
/// with the reproducer libFuzzer saved under fuzz/artifacts/.
pub fn run_for(seconds: u32) -> Result<()> {
    if !ensure()? {
        return Ok(());
    }
    let dir = crate::workspace_root().join("fuzz");
    let corpus = dir.join("corpus/trace_reader");
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let mut c = Command::new("cargo");
    c.current_dir(&dir)
        .args(["+nightly", "fuzz", "run", "trace_reader"])
        .arg(&corpus)
        .arg(dir.join("seeds"))
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        // The bound the README gives for `-r` and `diff`: an input that makes the reader hold
        // more is a failure. ASan's quarantine of freed memory would count against it, so it
        // is kept small.
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .env("ASAN_OPTIONS", "quarantine_size_mb=16");
    run(&mut c).context("fuzzing the trace reader (a crash leaves its input in fuzz/artifacts/)")
}
