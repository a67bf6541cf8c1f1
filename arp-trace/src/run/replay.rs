//! `arp-trace -r FILE`: a saved trace fed through the same pipeline and sinks as a live run,
//! so it prints exactly what the live run printed. Nothing is looked up on the machine
//! reading it: namespace names come from the trace.

use std::path::Path;

use anyhow::Result;
use arp_trace_model::file::{ParallelReader, TraceReader};
use arp_trace_model::{Record, Summary};

use super::{add_files, counts_line, pipeline, Source};
use crate::cli::Args;
use crate::pipeline::{Counters, Flow, Pipeline};
use crate::sinks::is_closed_pipe;

/// Replays `args.read`; prints the counts line like a live run. Returns the counts.
pub fn run(args: &Args) -> Result<Counters> {
    let path = args.read.as_deref().unwrap_or(Path::new("-"));
    let reader = TraceReader::open(path)?;
    let h = reader.header.clone();
    let mut pipeline = pipeline(args, &Source::Trace(&h))?;
    add_files(&mut pipeline, args, &h)?;
    let mut reader = ParallelReader::new(reader);

    let mut trailer = None;
    let result = feed(&mut reader, &mut pipeline, &mut trailer);
    for w in &reader.warnings {
        eprintln!("arp-trace: warning: {}", arp_trace_model::visible(w));
    }
    let closed = match result {
        Ok(closed) => closed,
        Err(e) => {
            // What was read before the bad line is shown; the run still fails.
            let _ = pipeline.flush();
            return Err(e);
        }
    };
    if let Some(c) = trailer.as_ref().and_then(|t: &Summary| t.counts) {
        pipeline.counters.lost = c.lost;
        pipeline.counters.missed = c.missed;
        pipeline.counters.undecodable += c.undecodable;
        // What the live run filtered out stays counted, so the counts line matches its own.
        pipeline.counters.filtered += c.filtered;
    }
    if let Err(e) = pipeline.finish() {
        if !closed && !is_closed_pipe(&e) {
            return Err(anyhow::Error::new(e).context("writing output"));
        }
    }
    eprintln!("arp-trace: {}", counts_line(&pipeline.counters));
    Ok(pipeline.counters)
}

/// Feeds every record of the trace to the pipeline and keeps its trailer; `Ok(true)` when the
/// output went away.
pub fn feed(
    reader: &mut ParallelReader,
    pipeline: &mut Pipeline,
    trailer: &mut Option<Summary<'static>>,
) -> Result<bool> {
    let mut since_flush = 0u32;
    let mut closed = false;
    let check = |r: std::io::Result<Flow>, closed: &mut bool| -> Result<bool> {
        match r {
            Ok(Flow::Continue) => Ok(true),
            Ok(Flow::Stop) => Ok(false),
            Err(e) if is_closed_pipe(&e) => {
                *closed = true;
                Ok(false)
            }
            Err(e) => Err(anyhow::Error::new(e).context("writing output")),
        }
    };
    reader.for_each(|rec| {
        if let Record::Summary(t) = rec {
            *trailer = Some((**t).clone().into_owned());
            return Ok(true);
        }
        if !check(pipeline.push(rec.borrowed()), &mut closed)? {
            return Ok(false);
        }
        since_flush += 1;
        if since_flush == 65_536 {
            since_flush = 0;
            return check(pipeline.flush().map(|_| Flow::Continue), &mut closed);
        }
        Ok(true)
    })?;
    Ok(closed)
}
