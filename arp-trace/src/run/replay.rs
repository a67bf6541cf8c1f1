//! `arp-trace -r FILE`: a saved trace fed through the same pipeline and sinks as a live run,
//! so it prints exactly what the live run printed. Nothing is looked up on the machine
//! reading it: namespace names come from the trace.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Result;
use arp_trace_model::file::{ParallelReader, TraceReader};
use arp_trace_model::{Header, Record, Summary};

use super::{add_files, counts_line, failed_outputs, pipeline, Source};
use crate::cli::Args;
use crate::pipeline::{Counters, Flow, Pipeline};
use crate::sinks::outfile::Files;

/// Replays `args.read`; prints the counts line like a live run. Returns the counts.
pub fn run(args: &Args) -> Result<Counters> {
    let path = args.read.as_deref().unwrap_or(Path::new("-"));
    for w in args.ignored_by_replay() {
        eprintln!("arp-trace: warning: {w}");
    }
    let reader = TraceReader::open(path)?;
    let h = reader.header.clone();
    let file = reader.file.clone();
    let mut pipeline = pipeline(args, &Source::Trace(&h))?;
    let mut files = Files::default();
    files.input("-r", path);
    let again = h.clone();
    add_files(
        &mut pipeline,
        args,
        Box::new(move || again.clone()),
        &mut files,
    )?;
    pipeline.header(&h);
    let mut reader = ParallelReader::new(reader);

    let mut occurs = Occurrences::new(args, &h);
    let mut trailer = None;
    let result = feed(&mut reader, &mut pipeline, &mut trailer, |r| occurs.note(r));
    for w in &reader.warnings {
        eprintln!("arp-trace: warning: {}", arp_trace_model::visible(w));
    }
    let whole = match result {
        Ok(whole) => whole,
        Err(e) => {
            // What was read before the bad line is shown; the run still fails.
            pipeline.flush();
            return Err(e);
        }
    };
    if let Some(c) = trailer.as_ref().and_then(|t: &Summary| t.counts) {
        pipeline.counters.lost = c.lost;
        pipeline.counters.missed = c.missed;
        pipeline.counters.discarded = c.discarded;
        pipeline.counters.unjoined = c.unjoined;
        pipeline.counters.unmatched = c.unmatched;
        pipeline.counters.undecodable += c.undecodable;
        // What the live run filtered out stays counted, so the counts line matches its own.
        pipeline.counters.filtered += c.filtered;
    }
    pipeline.finish();
    // Only a trace read to its end can say a name is not in it.
    if whole {
        for w in occurs.warnings(&file) {
            eprintln!("arp-trace: warning: {w}");
        }
    }
    eprintln!("arp-trace: {}", counts_line(&pipeline.counters));
    failed_outputs(&pipeline)?;
    Ok(pipeline.counters)
}

/// Feeds every record of the trace to the pipeline (each also to `seen`) and keeps its
/// trailer; `Ok(true)` when the whole trace was read, `Ok(false)` when the pipeline stopped
/// it (`-c`, a failed output, or no output left).
pub fn feed(
    reader: &mut ParallelReader,
    pipeline: &mut Pipeline,
    trailer: &mut Option<Summary<'static>>,
    mut seen: impl FnMut(&Record<'_>),
) -> Result<bool> {
    let mut since_flush = 0u32;
    let mut whole = true;
    reader.for_each(|rec| {
        seen(rec);
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

/// How many names of each kind a warning lists.
const SHOWN: usize = 5;
/// How many distinct names are kept to list (memory stays bounded whatever the trace).
const KEPT: usize = 64;

/// Which of the names `-i` and `--netns` ask for occur in the trace, so one that matches
/// nothing is said rather than leaving an empty output to puzzle over.
#[derive(Default)]
struct Occurrences {
    /// `-i` names, and whether an ARP frame or failure on such an interface went by.
    interfaces: Vec<(String, bool)>,
    /// `--netns` names or inodes, and whether the header or a record carries them.
    netns: Vec<(String, bool)>,
    seen_interfaces: BTreeSet<String>,
    seen_netns: BTreeSet<String>,
}

impl Occurrences {
    fn new(args: &Args, header: &Header) -> Occurrences {
        let mut o = Occurrences {
            interfaces: args.interfaces.iter().map(|i| (i.clone(), false)).collect(),
            netns: args.netns.iter().map(|n| (n.clone(), false)).collect(),
            ..Default::default()
        };
        if !o.netns.is_empty() {
            for (ino, name) in &header.netns_names {
                o.netns_seen(*ino, Some(name));
            }
        }
        o
    }

    fn netns_seen(&mut self, ino: u32, name: Option<&str>) {
        for (spec, seen) in &mut self.netns {
            *seen |= name == Some(spec.as_str()) || spec.parse() == Ok(ino);
        }
        let shown = name.map_or_else(|| ino.to_string(), str::to_string);
        if self.seen_netns.len() < KEPT && !self.seen_netns.contains(&shown) {
            self.seen_netns.insert(shown);
        }
    }

    fn interface_seen(&mut self, ifname: &str) {
        for (name, seen) in &mut self.interfaces {
            *seen |= name == ifname;
        }
        if self.seen_interfaces.len() < KEPT && !self.seen_interfaces.contains(ifname) {
            self.seen_interfaces.insert(ifname.to_string());
        }
    }

    fn note(&mut self, rec: &Record<'_>) {
        let (ifname, ino, name) = match rec {
            Record::Arp(e) => (Some(&*e.ifname), e.netns, e.netns_name.as_deref()),
            Record::Ndisc(e) => (Some(&*e.ifname), e.netns, e.netns_name.as_deref()),
            Record::NeighFailed(f) => (Some(&*f.ifname), f.netns, f.netns_name.as_deref()),
            // `-i` does not select changes; `--netns` does.
            Record::FactsChange(c) => (None, c.netns, c.netns_name.as_deref()),
            Record::Conflict(c) => (Some(&*c.ifname), c.netns, c.netns_name.as_deref()),
            Record::NeighChange(c) => (Some(&*c.ifname), c.netns, c.netns_name.as_deref()),
            Record::Header(_) | Record::Summary(_) => return,
        };
        if !self.interfaces.is_empty() {
            if let Some(i) = ifname {
                self.interface_seen(i);
            }
        }
        if !self.netns.is_empty() {
            self.netns_seen(ino, name);
        }
    }

    fn warnings(&self, file: &str) -> Vec<String> {
        let list = |names: &BTreeSet<String>| {
            if names.is_empty() {
                return "it has none".to_string();
            }
            let mut s: Vec<&str> = names.iter().take(SHOWN).map(String::as_str).collect();
            if names.len() > SHOWN {
                s.push("...");
            }
            format!("it has {}", s.join(", "))
        };
        let mut out = Vec::new();
        for (name, _) in self.interfaces.iter().filter(|(_, seen)| !seen) {
            out.push(format!(
                "-i {name} matches nothing: no ARP frame in {file} was sent on an interface \
                 of that name ({})",
                list(&self.seen_interfaces)
            ));
        }
        for (spec, _) in self.netns.iter().filter(|(_, seen)| !seen) {
            let what = if spec.parse::<u32>().is_ok() {
                "with that inode"
            } else {
                "of that name"
            };
            out.push(format!(
                "--netns {spec} matches nothing: {file} holds no namespace {what} ({})",
                list(&self.seen_netns)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn names_that_occur_nowhere_are_said_with_what_does() {
        let args = Args::try_parse_from([
            "arp-trace",
            "-r",
            "t",
            "-i",
            "eth3",
            "-i",
            "eth9",
            "--netns",
            "srv",
            "--netns",
            "gone",
            "--netns",
            "77",
        ])
        .unwrap();
        let mut h = Header::empty(2);
        h.netns_names.insert(10, "srv".into());
        let mut o = Occurrences::new(&args, &h);
        let mut ev = crate::kernel::ring::tests::request_event("eth3", "192.0.2.1", "192.0.2.2");
        ev.netns = 11;
        o.note(&Record::Arp(arp_trace_model::Held::Borrowed(&ev)));
        for i in 0..100 {
            ev.ifname = format!("veth{i:03}").into();
            o.note(&Record::Arp(arp_trace_model::Held::Borrowed(&ev)));
        }
        let w = o.warnings("t");
        assert_eq!(w.len(), 3, "{w:?}");
        assert_eq!(
            w[0],
            "-i eth9 matches nothing: no ARP frame in t was sent on an interface of that \
             name (it has eth3, veth000, veth001, veth002, veth003, ...)"
        );
        assert_eq!(
            w[1],
            "--netns gone matches nothing: t holds no namespace of that name (it has 11, srv)"
        );
        assert!(w[2].starts_with("--netns 77 matches nothing: t holds no namespace with"));
        assert!(o.seen_interfaces.len() <= KEPT);
    }
}
