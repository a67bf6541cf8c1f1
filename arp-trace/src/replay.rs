//! `arp-trace -r FILE`: a saved trace fed through the same pipeline and sinks as a live run,
//! so it prints exactly what the live run printed. Nothing is looked up on the machine
//! reading it: namespace names come from the trace.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{bail, Result};

use crate::cli::Args;
use crate::live::counts_line;
use crate::netns::NetnsNames;
use crate::pcapng::PcapngWriter;
use crate::pipeline::{self, Counters, Filter, Flow, Pipeline};
use crate::tracefile::{Header, ParallelReader, Record, TraceReader, TraceWriter, Trailer};

/// Adds the `-w` and `--pcap` outputs, live or replaying.
pub fn add_file_sinks(pipeline: &mut Pipeline, args: &Args, header: &Header) -> Result<()> {
    if let Some(path) = &args.write {
        if args.read.as_deref() == Some(path.as_path()) {
            bail!(
                "-w {}: the same file as -r; write to another file",
                path.display()
            );
        }
        pipeline
            .sinks
            .push(Box::new(TraceWriter::create(path, header)?));
    }
    if let Some(path) = &args.pcap {
        pipeline.sinks.push(Box::new(PcapngWriter::create(path)?));
    }
    Ok(())
}

/// `--netns` for a trace: inode numbers, or names as the trace knew them.
#[derive(Default)]
struct NetnsFilter {
    inodes: HashSet<u32>,
    names: HashSet<String>,
}

impl NetnsFilter {
    fn new(specs: &[String], header: &Header) -> Result<NetnsFilter> {
        let mut f = NetnsFilter::default();
        for spec in specs {
            if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit()) {
                let ino = spec
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--netns {spec}: inode number out of range"))?;
                f.inodes.insert(ino);
            } else if spec.contains('/') || spec.is_empty() {
                bail!(
                    "--netns {spec}: with -r give a namespace name or inode number as the trace \
                     shows them; paths name namespaces on this machine, not in the trace"
                );
            } else {
                f.inodes.extend(
                    header
                        .netns_names
                        .iter()
                        .filter(|(_, n)| *n == spec)
                        .map(|(i, _)| *i),
                );
                f.names.insert(spec.clone());
            }
        }
        Ok(f)
    }

    fn is_empty(&self) -> bool {
        self.inodes.is_empty() && self.names.is_empty()
    }

    fn matches(&self, netns: u32, name: Option<&str>) -> bool {
        self.is_empty()
            || self.inodes.contains(&netns)
            || name.is_some_and(|n| self.names.contains(n))
    }
}

/// Replays `args.read`; prints the counts line like a live run. Returns the counts.
pub fn run(args: &Args) -> Result<Counters> {
    let path = args.read.as_deref().unwrap_or(Path::new("-"));
    let reader = TraceReader::open(path)?;
    let h = reader.header.clone();
    let netns = NetnsFilter::new(&args.netns, &h)?;
    let filter = Filter {
        interfaces: args.interfaces.iter().cloned().collect(),
        ..Default::default()
    };
    let mut pipeline = Pipeline::new(filter, args.count, NetnsNames::offline(h.own_netns));
    crate::output::add_stdout_sinks(&mut pipeline, args);
    add_file_sinks(&mut pipeline, args, &h)?;
    let mut reader = if pipeline.reads_brief() {
        ParallelReader::brief(reader)
    } else {
        ParallelReader::new(reader)
    };

    let mut trailer = None;
    let result = feed(&mut reader, &mut pipeline, &netns, &mut trailer);
    for w in &reader.warnings {
        eprintln!("arp-trace: warning: {w}");
    }
    let closed = match result {
        Ok(closed) => closed,
        Err(e) => {
            // What was read before the bad line is shown; the run still fails.
            let _ = pipeline.flush();
            return Err(e);
        }
    };
    if let Some(t) = &trailer {
        pipeline.counters.lost = t.lost;
        pipeline.counters.missed = t.missed;
        pipeline.counters.undecodable += t.undecodable;
        // What the live run filtered out stays counted, so the counts line matches its own.
        pipeline.counters.filtered += t.filtered;
    }
    if let Err(e) = pipeline.finish() {
        if !closed && !pipeline::is_closed_pipe(&e) {
            return Err(anyhow::Error::new(e).context("writing output"));
        }
    }
    eprintln!("arp-trace: {}", counts_line(&pipeline.counters));
    Ok(pipeline.counters)
}

/// Feeds every record; `Ok(true)` when the output went away.
fn feed(
    reader: &mut ParallelReader,
    pipeline: &mut Pipeline,
    netns: &NetnsFilter,
    trailer: &mut Option<Trailer>,
) -> Result<bool> {
    let mut since_flush = 0u32;
    let check = |r: std::io::Result<Flow>| -> Result<Option<bool>> {
        match r {
            Ok(Flow::Continue) => Ok(None),
            Ok(Flow::Stop) => Ok(Some(false)),
            Err(e) if pipeline::is_closed_pipe(&e) => Ok(Some(true)),
            Err(e) => Err(anyhow::Error::new(e).context("writing output")),
        }
    };
    while let Some(rec) = reader.read_record()? {
        let r = match rec {
            Record::Arp(ev) => {
                if !netns.matches(ev.netns, ev.netns_name.as_deref()) {
                    pipeline.counters.filtered += 1;
                    continue;
                }
                pipeline.push(*ev)
            }
            Record::Brief(ev) => {
                if !netns.matches(ev.netns, ev.netns_name.as_deref()) {
                    pipeline.counters.filtered += 1;
                    continue;
                }
                pipeline.push_brief(&ev)
            }
            Record::Failed(f) => {
                if !netns.matches(f.netns, f.netns_name.as_deref()) {
                    pipeline.counters.filtered += 1;
                    continue;
                }
                pipeline.push_failed(f).map(|_| Flow::Continue)
            }
            Record::Change(c) => {
                if !netns.matches(c.netns, c.netns_name.as_deref()) {
                    continue;
                }
                pipeline.push_change(*c).map(|_| Flow::Continue)
            }
            Record::Summary(t) => {
                *trailer = Some(t);
                continue;
            }
        };
        if let Some(closed) = check(r)? {
            return Ok(closed);
        }
        since_flush += 1;
        if since_flush == 65_536 {
            since_flush = 0;
            if let Some(closed) = check(pipeline.flush().map(|_| Flow::Continue))? {
                return Ok(closed);
            }
        }
    }
    Ok(false)
}
