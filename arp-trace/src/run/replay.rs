//! `arp-trace -r FILE`: a saved trace fed through the same pipeline and sinks as a live run,
//! so it prints exactly what the live run printed. Nothing is looked up on the machine
//! reading it: namespace names come from the trace.

use std::path::Path;

use anyhow::Result;
use arp_trace_model::file::{ParallelReader, TraceReader};
use arp_trace_model::{Record, Summary};

use super::{add_files, counts_line, failed_outputs, pipeline, Source};
use crate::cli::Args;
use crate::pipeline::{Counters, Flow, Pipeline};
use crate::sinks::outfile::Files;

/// Replays `args.read`; prints the counts line like a live run. Returns the counts.
pub fn run(args: &Args) -> Result<Counters> {
    let path = args.read.as_deref().unwrap_or(Path::new("-"));
    let reader = TraceReader::open(path)?;
    let h = reader.header.clone();
    let mut pipeline = pipeline(args, &Source::Trace(&h))?;
    let mut files = Files::default();
    files.input("-r", path);
    add_files(&mut pipeline, args, &h, &mut files)?;
    let mut reader = ParallelReader::new(reader);

    let mut trailer = None;
    let result = feed(&mut reader, &mut pipeline, &mut trailer);
    for w in &reader.warnings {
        eprintln!("arp-trace: warning: {w}");
    }
    if let Err(e) = result {
        // What was read before the bad line is shown; the run still fails.
        pipeline.flush();
        return Err(e);
    }
    if let Some(c) = trailer.as_ref().and_then(|t: &Summary| t.counts) {
        pipeline.counters.lost = c.lost;
        pipeline.counters.missed = c.missed;
        pipeline.counters.undecodable += c.undecodable;
        // What the live run filtered out stays counted, so the counts line matches its own.
        pipeline.counters.filtered += c.filtered;
    }
    pipeline.finish();
    eprintln!("arp-trace: {}", counts_line(&pipeline.counters));
    failed_outputs(&pipeline)?;
    Ok(pipeline.counters)
}

/// Feeds every record of the trace to the pipeline and keeps its trailer; `Ok(true)` when
/// the whole trace was read, `Ok(false)` when the pipeline stopped it (`-c`, a failed
/// output, or no output left).
pub fn feed(
    reader: &mut ParallelReader,
    pipeline: &mut Pipeline,
    trailer: &mut Option<Summary<'static>>,
) -> Result<bool> {
    let mut since_flush = 0u32;
    let mut whole = true;
    reader.for_each(|rec| {
        if let Record::Summary(t) = rec {
            *trailer = Some((**t).clone().into_owned());
            return Ok::<bool, anyhow::Error>(true);
        }
        let mut flow = pipeline.push(rec.borrowed());
        since_flush += 1;
        if flow == Flow::Continue && since_flush == 65_536 {
            since_flush = 0;
            flow = pipeline.flush();
        }
        whole = flow == Flow::Continue;
        Ok(whole)
    })?;
    Ok(whole)
}
