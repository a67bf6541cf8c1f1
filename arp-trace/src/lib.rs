//! arp-trace's user-space side as a library, so every stage can be unit-tested without root.
//!
//! Layers, each a folder, each depending only on those listed before it (and on the record
//! types of `arp_trace_model`):
//! - [`explain`]: the rule table of `arp_solicit()`, its words and remedies;
//! - [`kernel`]: the hook table, BTF and symbols, loading the programs, decoding the ring;
//! - [`netns`]: namespaces: names, entering them, rtnetlink, watchers, the header snapshot;
//! - [`attribution`]: joining the kernel's records into requests with their trigger;
//! - [`pipeline`]: filter, enrich, explain, count, fan out to sinks;
//! - [`sinks`]: terminal, JSON, summary, pcapng, trace file;
//! - [`run`]: live, replay, diff and doctor, each building the pipeline in one place.

pub mod attribution;
pub mod cli;
pub mod explain;
pub mod kernel;
pub mod netns;
pub mod pipeline;
pub mod run;
pub mod sinks;

#[cfg(test)]
mod architecture;

/// An error and its causes on one line, the form every failure is reported in.
pub fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}
