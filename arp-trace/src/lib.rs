//! arp-trace's user-space side as a library, so every stage can be unit-tested without root.
//!
//! Layers, each a folder, each depending only on those listed before it (and on the record
//! types of `arp_trace_model`):
//! - [`explain`]: the rule table of `arp_solicit()`, its words and remedies;
//! - [`kernel`]: the hook table, BTF and symbols, loading the programs, decoding the ring;
//! - [`netns`]: namespaces: names, entering them, rtnetlink, watchers, the header snapshot;
//! - [`attribution`]: joining the kernel's records into requests with their trigger;
//! - [`conflicts`]: address conflicts in the frames the namespaces received;
//! - [`pipeline`]: filter, enrich, explain, count, fan out to sinks;
//! - [`sinks`]: terminal, JSON, summary, pcapng, trace file;
//! - [`run`]: live, replay, diff and doctor, each building the pipeline in one place;
//! - [`version`] and [`doc`]: what `--version` says, and the man page and completions.

pub mod attribution;
pub mod cli;
pub mod conflicts;
pub mod doc;
pub mod explain;
pub mod kernel;
pub mod netns;
pub mod pipeline;
pub mod run;
pub mod sinks;
pub mod version;

#[cfg(test)]
mod architecture;

/// An error and its causes on one line, the form every failure is reported in. Errors quote
/// names and trace contents, so anything a terminal would act on is shown as an escape.
pub fn one_line(e: &anyhow::Error) -> String {
    arp_trace_model::visible(&format!("{e:#}").replace('\n', " ")).into_owned()
}

#[cfg(test)]
mod tests {
    /// Error messages quote names and trace contents: they reach stderr with control
    /// characters shown as escapes.
    #[test]
    fn one_line_errors_show_control_characters_as_escapes() {
        let e = anyhow::anyhow!("cannot open /run/netns/x\x1b]2;owned\x07").context("a\nb");
        assert_eq!(
            super::one_line(&e),
            "a b: cannot open /run/netns/x\\x1b]2;owned\\a"
        );
    }
}
