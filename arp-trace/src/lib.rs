//! arp-trace's user-space side as a library, so every stage of the pipeline can be unit-tested
//! without root: source (kernel) -> decode -> enrich -> filter -> sinks.

pub mod attribution;
pub mod brief;
pub mod btf;
pub mod cli;
pub mod devfacts;
pub mod diff;
pub mod doctor;
pub mod event;
pub mod explain;
pub mod facts;
pub mod kallsyms;
pub mod live;
pub mod loader;
pub mod netns;
pub mod output;
pub mod pcapng;
pub mod pipeline;
pub mod replay;
pub mod snapshot;
pub mod summary;
pub mod timefmt;
pub mod tracefile;

/// An error and its causes on one line, the form every failure is reported in.
pub fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}
