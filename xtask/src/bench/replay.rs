//! Figure 4: replaying a large trace file (real captured lines, retimed) with `arp-trace -r`,
//! beside `jq -c .` over the same file.

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use arp_trace_model::file::{TraceWriter, FORMAT_VERSION};
use arp_trace_model::{Header, Record, Time};

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

/// Writes a trace of `n` events made from real captured lines, retimed to 1 µs apart (so a
/// replayed trace is ordered and every line differs), behind a real header. Like a trace cut
/// by SIGKILL, it has no trailer.
fn write_trace(path: &Path, header: &str, lines: &[String], n: u64) -> Result<u64> {
    let header: Header = serde_json::from_str(header).context("the real header")?;
    let records = lines
        .iter()
        .map(|l| Record::parse(l, FORMAT_VERSION).map(Record::into_owned))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("a captured line does not parse: {e}"))?;
    if records.is_empty() {
        bail!("no captured event line to build the trace from");
    }
    let mut w = TraceWriter::create(path, &header)?;
    let base = Time(1_795_000_000 * 1_000_000_000); // 2026-11-18, any fixed instant will do
    for i in 0..n {
        let mut rec = records[(i % records.len() as u64) as usize].clone();
        let time = Time(base.0 + i as i128 * 1000);
        match &mut rec {
            Record::Arp(e) => e.to_mut().time = time,
            Record::Ndisc(e) => e.to_mut().time = time,
            Record::NeighFailed(f) => f.to_mut().time = time,
            Record::FactsChange(c) => c.to_mut().time = time,
            Record::Conflict(c) => c.to_mut().time = time,
            Record::NeighChange(c) => c.to_mut().time = time,
            Record::Header(_) | Record::Summary(_) => bail!("a captured line is not an event"),
        }
        w.write(&rec)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use arp_trace_model::file::TraceReader;

    #[test]
    fn the_bench_trace_is_retimed_and_reads_back() {
        let header = r#"{"type":"header","format_version":2,"snapshot":null}"#;
        let line = r#"{"type":"arp","op":"reply","time":"2026-11-28T19:31:02.123456789Z","netns":1,"netns_name":null,"ifindex":2,"ifname":"eth3","sender_ip":"198.51.100.20","sender_mac":"02:00:00:00:00:20","target_ip":"198.51.100.10","target_mac":"02:00:00:00:00:10","unicast":true,"eth_dst":"02:00:00:00:00:10","frame":"00","trigger":null,"neigh_state":null,"attempt":null,"queued":null}"#;
        let path = std::env::temp_dir().join(format!("xtask-replay-{}.jsonl", std::process::id()));
        write_trace(&path, header, &[line.to_string()], 3).unwrap();
        let mut r = TraceReader::open(&path).unwrap();
        let mut times = vec![];
        while let Some(rec) = r.read_record().unwrap() {
            if let Record::Arp(e) = rec {
                times.push(e.time.rfc3339());
            }
        }
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            times,
            [
                "2026-11-18T11:06:40.000000000Z",
                "2026-11-18T11:06:40.000001000Z",
                "2026-11-18T11:06:40.000002000Z"
            ]
        );
        assert!(write_trace(&path, header, &["{}".into()], 1).is_err());
        let _ = std::fs::remove_file(&path);
    }
}
