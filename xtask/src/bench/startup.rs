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

/// Cold and warm start-up times of one binary, seconds per run.
#[derive(Default)]
pub(super) struct Startup {
    pub(super) cold: Vec<f64>,
    pub(super) warm: Vec<f64>,
}

/// Cold and warm start-up, alternating; with a baseline, its runs alternate with this
/// build's (this, baseline; then baseline, this).
pub(super) fn bench_startup(
    bin: &Path,
    baseline: Option<&Path>,
    quick: bool,
    files: &mut TmpFiles,
) -> Result<(Startup, Option<Startup>)> {
    let runs = if quick { 2 } else { 5 };
    let mut this = Startup::default();
    let mut base = baseline.map(|_| Startup::default());
    for i in 0..runs {
        let mut order = vec![(bin, false)];
        order.extend(baseline.map(|b| (b, true)));
        if i % 2 == 1 {
            order.reverse();
        }
        for (b, is_base) in order {
            check_interrupt()?;
            let into = match (is_base, base.as_mut()) {
                (true, Some(s)) => s,
                _ => &mut this,
            };
            drop_caches()?;
            into.cold.push(startup_once(b, files)?);
            into.warm.push(startup_once(b, files)?);
        }
    }
    Ok((this, base))
}
