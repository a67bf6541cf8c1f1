//! The run modes: live tracing, replaying a trace, comparing two traces, and `doctor`. Each
//! turns the options into the same pipeline here, with its one filter and its sinks, so a
//! replay prints exactly what the live run printed.

pub mod diff;
pub mod doctor;
pub mod live;
pub mod replay;
pub mod signals;

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Result};
use arp_trace_model::Header;

use crate::cli::Args;
use crate::netns::{self, NetnsNames};
use crate::pipeline::{Counters, Filter, Pipeline};
use crate::sinks::json::JsonSink;
use crate::sinks::outfile::Files;
use crate::sinks::pcapng::PcapngWriter;
use crate::sinks::rotate::Rotation;
use crate::sinks::summary::SummarySink;
use crate::sinks::terminal::TerminalSink;
use crate::sinks::trace::{HeaderFn, TraceSink};
use crate::sinks::Output;

/// Where the records come from, for the parts of the pipeline that differ.
pub enum Source<'a> {
    /// The kernel, now: `--netns` names resolve on this machine.
    Live,
    /// A trace: names and the tracer's own namespace come from its header.
    Trace(&'a Header),
}

/// `-i` and `--netns` as one filter.
pub fn filter(args: &Args, source: &Source) -> Result<Filter> {
    let mut f = Filter {
        interfaces: args.interfaces.iter().cloned().collect(),
        processes: crate::pipeline::Processes::new(&args.pids, &args.comms),
        family: match (args.ipv4, args.ipv6) {
            (true, false) => Some(arp_trace_model::Family::Ipv4),
            (false, true) => Some(arp_trace_model::Family::Ipv6),
            _ => None,
        },
        direction: args.direction.only(),
        ..Default::default()
    };
    for spec in &args.netns {
        match source {
            Source::Live => {
                f.netns
                    .insert(netns::resolve_spec(spec, Path::new(netns::NETNS_RUN_DIR))?);
            }
            Source::Trace(header) => {
                if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit()) {
                    let ino = spec.parse().map_err(|_| {
                        anyhow::anyhow!("--netns {spec}: inode number out of range")
                    })?;
                    f.netns.insert(ino);
                } else if spec.contains('/') || spec.is_empty() {
                    bail!(
                        "--netns {spec}: with -r give a namespace name or inode number as the \
                         trace shows them; paths name namespaces on this machine, not in the \
                         trace"
                    );
                } else {
                    f.netns.extend(
                        header
                            .netns_names
                            .iter()
                            .filter(|(_, n)| *n == spec)
                            .map(|(i, _)| *i),
                    );
                    f.netns_names.insert(spec.clone());
                }
            }
        }
    }
    Ok(f)
}

/// The pipeline with the outputs on stdout, the same live and replaying: event lines (text or
/// JSON, unless `-q`) and the summary, with `--foreign-only` and `-v` applied.
pub fn pipeline(args: &Args, source: &Source) -> Result<Pipeline> {
    let names = match source {
        Source::Live => NetnsNames::new(),
        Source::Trace(h) => NetnsNames::offline(h.own_netns),
    };
    let own = names.own();
    let mut p = Pipeline::new(filter(args, source)?, args.count, names);
    p.foreign_only = args.foreign_only;
    if args.quiet && args.json {
        // `-q --json` prints summaries only, after the same header line as `--json`.
        p.sinks
            .push(Box::new(JsonSink::header_only(Output::stdout())));
    }
    if !args.quiet && !args.trace_to_stdout() {
        let out = Output::stdout();
        if args.json {
            p.sinks.push(Box::new(JsonSink::new(out)));
        } else {
            let no_color = std::env::var_os("NO_COLOR");
            let color = args
                .color
                .enabled(std::io::stdout().is_terminal(), no_color.as_deref());
            p.sinks
                .push(Box::new(TerminalSink::new(out, args.verbose, color, own)));
        }
    }
    // With `-w -` the trace has standard output; the summary is for the person watching.
    let summary_out = if args.trace_to_stdout() {
        Output::new(Box::new(std::io::stderr()))
    } else {
        Output::stdout()
    };
    p.sinks
        .push(Box::new(SummarySink::new(summary_out, args.json, own)));
    Ok(p)
}

/// `-C`, `-G` and `-W`.
pub fn rotation(args: &Args) -> Rotation {
    Rotation {
        size: args.file_size,
        every: args.rotate_seconds.map(std::time::Duration::from_secs),
        count: args.file_count,
    }
}

/// Adds the `-w` and `--pcap` outputs, live or replaying; `files` knows the inputs, so no
/// output is one of them (see [`crate::sinks::outfile`]). `header` makes each trace file's
/// header (once, or per file with `-C`/`-G`).
pub fn add_files(
    p: &mut Pipeline,
    args: &Args,
    mut header: HeaderFn,
    files: &mut Files,
) -> Result<()> {
    if let Some(path) = &args.write {
        let rotation = rotation(args);
        if rotation.is_on() {
            crate::sinks::rotate::check_name(path, &rotation)
                .map_err(|e| anyhow::anyhow!("-w {}: {e}", path.display()))?;
            let sink = TraceSink::rotating(path, files.clone(), header, rotation)?;
            p.sinks.push(Box::new(sink));
        } else if args.trace_to_stdout() {
            use std::os::fd::AsFd;
            let f = std::io::stdout().as_fd().try_clone_to_owned()?;
            p.sinks
                .push(Box::new(TraceSink::new(path, f.into(), &header())?));
        } else {
            let f = files.create("-w", path)?;
            p.sinks.push(Box::new(TraceSink::new(path, f, &header())?));
        }
    }
    if let Some(path) = &args.pcap {
        let f = files.create("--pcap", path)?;
        p.sinks.push(Box::new(PcapngWriter::new(path, f)?));
    }
    Ok(())
}

/// The run's end when outputs failed: one line naming each (the counts line and the summary
/// are already out).
pub fn failed_outputs(p: &Pipeline) -> Result<()> {
    if p.failures.is_empty() {
        return Ok(());
    }
    let all: Vec<String> = p.failures.iter().map(ToString::to_string).collect();
    bail!("{}", all.join("; and "))
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The line printed on stderr at the end of every run: what was seen and what was lost.
pub fn counts_line(c: &Counters) -> String {
    // Neighbour discovery only when there was some: an IPv4-only run reads as it always did.
    let nd = if c.solicits + c.adverts > 0 {
        format!(
            ", {}, {}",
            plural(
                c.solicits,
                "neighbour solicitation",
                "neighbour solicitations"
            ),
            plural(c.adverts, "advertisement", "advertisements")
        )
    } else {
        String::new()
    };
    // Received frames only when there were some, as for neighbour discovery.
    let rx = if c.received > 0 {
        format!(
            ", {} received",
            plural(c.received, "ARP frame", "ARP frames")
        )
    } else {
        String::new()
    };
    let mut s = format!(
        "{}, {}{rx}{nd} captured; {} lost (ring buffer full)",
        plural(c.requests, "ARP request", "ARP requests"),
        plural(c.replies, "reply", "replies"),
        c.lost
    );
    let losses = [
        (c.missed, "hook runs missed (program busy on that CPU)"),
        (
            c.discarded,
            "records discarded by the BPF programs (a kernel read failed)",
        ),
        (c.unjoined, "requests shown without their neighbour record"),
        (c.unmatched, "trigger records that matched no request"),
        (c.foreign, "with a foreign sender"),
        (c.conflicts, "address conflicts"),
        (c.neigh_changes, "neighbour entries changed"),
        (
            c.conflicts_dropped,
            "address sightings not kept (conflict tables full)",
        ),
        (c.filtered, "filtered out"),
        (
            c.changes_dropped,
            "address/sysctl changes not recorded (event loop fell behind)",
        ),
        (c.undecodable, "non-IPv4 or other-opcode ARP frames ignored"),
    ];
    for (n, what) in losses {
        if n > 0 {
            s.push_str(&format!("; {n} {what}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_line_names_every_loss() {
        let c = Counters {
            requests: 1,
            replies: 2,
            lost: 3,
            filtered: 4,
            undecodable: 5,
            failures: 0,
            foreign: 6,
            changes_dropped: 7,
            missed: 0,
            discarded: 8,
            unjoined: 9,
            unmatched: 10,
            solicits: 0,
            adverts: 0,
            received: 0,
            conflicts: 0,
            conflicts_dropped: 0,
            neigh_changes: 0,
        };
        assert_eq!(
            counts_line(&c),
            "1 ARP request, 2 replies captured; 3 lost (ring buffer full); 8 records discarded \
             by the BPF programs (a kernel read failed); 9 requests shown without their \
             neighbour record; 10 trigger records that matched no request; 6 with a foreign \
             sender; 4 filtered out; 7 address/sysctl changes not recorded (event loop fell \
             behind); 5 non-IPv4 or other-opcode ARP frames ignored"
        );
        assert_eq!(
            counts_line(&Counters::default()),
            "0 ARP requests, 0 replies captured; 0 lost (ring buffer full)"
        );
        let nd = Counters {
            solicits: 3,
            adverts: 1,
            received: 2,
            ..Counters::default()
        };
        assert_eq!(
            counts_line(&nd),
            "0 ARP requests, 0 replies, 2 ARP frames received, 3 neighbour solicitations, 1 \
             advertisement captured; 0 lost (ring buffer full)"
        );
    }
}
