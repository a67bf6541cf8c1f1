//! Figure 4: replaying a large trace file (real captured lines, retimed) with `arp-trace -r`,
//! beside `jq -c .` over the same file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::stats::retime;
use super::system::{check_interrupt, output, Proc, TmpFiles};

/// The header a real `-w` run writes on this machine (the tracer runs for a moment).
fn real_header(bin: &Path, files: &mut TmpFiles) -> Result<String> {
    let (file, ready) = (files.add("header.jsonl"), files.add("header.ready"));
    let mut p = Proc::spawn(
        Command::new(bin)
            .arg("-q")
            .arg("-w")
            .arg(&file)
            .arg("--ready-file")
            .arg(&ready)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "arp-trace -w",
    )?;
    let end = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        if Instant::now() > end {
            bail!("arp-trace -w not ready after 60 s");
        }
        thread::sleep(Duration::from_millis(10));
    }
    p.stop()?;
    let text = std::fs::read_to_string(&file)?;
    let first = text.lines().next().unwrap_or_default();
    if !first.contains(r#""type":"header""#) {
        bail!("arp-trace -w wrote no header: {first:?}");
    }
    Ok(first.to_string())
}

/// Writes a trace of `n` events made from real captured lines, retimed to 1 µs apart,
/// behind a real header.
fn write_trace(path: &Path, header: &str, lines: &[String], n: u64) -> Result<u64> {
    if lines.is_empty() {
        bail!("no captured event line to build the trace from");
    }
    let mut w = BufWriter::new(File::create(path)?);
    w.write_all(header.as_bytes())?;
    w.write_all(b"\n")?;
    let base = 1_795_000_000; // 2026-11-18, any fixed instant will do
    for i in 0..n {
        let l = &lines[(i % lines.len() as u64) as usize];
        let l = retime(l, base, i).context("captured line has no time field")?;
        w.write_all(l.as_bytes())?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

fn time_cmd(cmd: &mut Command) -> Result<f64> {
    let start = Instant::now();
    let st = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    let secs = start.elapsed().as_secs_f64();
    if !st.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&st.stderr).trim()
        );
    }
    Ok(secs)
}

fn has_replay(bin: &Path) -> bool {
    output(Command::new(bin).arg("--help"))
        .map(|h| h.lines().any(|l| l.trim_start().starts_with("-r,")))
        .unwrap_or(false)
}

pub(super) struct Replay {
    pub(super) events: u64,
    pub(super) bytes: u64,
    pub(super) jq: Vec<f64>,
    pub(super) tracer: Option<Vec<f64>>,
}

pub(super) fn bench_replay(
    bin: &Path,
    lines: &[String],
    quick: bool,
    files: &mut TmpFiles,
) -> Result<Replay> {
    let (runs, events) = if quick { (1, 100_000) } else { (3, 1_000_000) };
    let trace = files.add("trace.jsonl");
    let header = real_header(bin, files)?;
    // Events only: the summary object a live run ends with is not an event.
    let lines: Vec<String> = lines
        .iter()
        .filter(|l| !l.contains(r#""type":"summary""#))
        .cloned()
        .collect();
    let bytes = write_trace(&trace, &header, &lines, events)?;
    let mut jq = Vec::new();
    let mut tracer = has_replay(bin).then(Vec::new);
    for _ in 0..runs {
        check_interrupt()?;
        jq.push(time_cmd(Command::new("jq").arg("-c").arg(".").arg(&trace))?);
        if let Some(t) = tracer.as_mut() {
            t.push(time_cmd(Command::new(bin).arg("-r").arg(&trace).arg("-q"))?);
        }
    }
    Ok(Replay {
        events,
        bytes,
        jq,
        tracer,
    })
}
