//! Figure 5: start-up time, exec to ready file, with the page cache dropped and warm.

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::system::{check_interrupt, output, Proc, TmpFiles};

fn drop_caches() -> Result<()> {
    // A cache drop, not a configuration change: it makes the next exec read the binary and
    // the BTF-derived files from disk again.
    output(&mut Command::new("sync"))?;
    std::fs::write("/proc/sys/vm/drop_caches", "3").context("write /proc/sys/vm/drop_caches")
}

fn startup_once(bin: &Path, files: &mut TmpFiles) -> Result<f64> {
    let ready = files.add("startup.ready");
    let start = Instant::now();
    let mut p = Proc::spawn(
        Command::new(bin)
            .args(["-q", "--ready-file"])
            .arg(&ready)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "arp-trace",
    )?;
    let end = start + Duration::from_secs(60);
    while !ready.exists() {
        if Instant::now() > end {
            bail!("arp-trace not ready after 60 s");
        }
        thread::sleep(Duration::from_micros(500));
    }
    let secs = start.elapsed().as_secs_f64();
    p.stop()?;
    Ok(secs)
}

/// Cold and warm start-up, alternating.
pub(super) fn bench_startup(
    bin: &Path,
    quick: bool,
    files: &mut TmpFiles,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let runs = if quick { 2 } else { 5 };
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        check_interrupt()?;
        drop_caches()?;
        cold.push(startup_once(bin, files)?);
        warm.push(startup_once(bin, files)?);
    }
    Ok((cold, warm))
}
