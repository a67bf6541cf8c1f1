//! The summary: ARP requests folded into one row per (namespace, interface, sender IP, reason)
//! with counts, distinct targets, first/last seen and the top triggering flows and processes,
//! foreign senders first with their remedy. Every table is capped; what a cap folds is counted.

mod table;

use std::io::{self, Write};

use arp_trace_model::{visible, Count, Family, Reason, Record, Summary};

pub use table::{Table, MAX_BYTES, MAX_ROWS, MAX_TARGETS, MAX_TOP, SHOW_TOP};

use super::text::{label, local_clock_micros};
use super::Output;
use crate::pipeline::{Counters, Sink};

/// The summary as text: a header line, then each row with its flows, processes and remedy.
/// Names and texts come from other people: every line is passed through `visible`.
pub fn text(s: &Summary<'_>, own: Option<u32>) -> String {
    let mut t = String::new();
    let mut line = |l: &str| {
        t.push_str(&visible(l));
        t.push('\n');
    };
    let ipv6 = s.rows.iter().any(|r| r.family == Family::Ipv6);
    line(&format!(
        "Summary{}: {} {}{}{}, {} with a foreign sender, in {} row{}",
        if s.last { "" } else { " so far" },
        s.requests,
        if ipv6 { "request" } else { "ARP request" },
        if s.requests == 1 { "" } else { "s" },
        if ipv6 {
            " (ARP and neighbour solicitations)"
        } else {
            ""
        },
        s.foreign_requests,
        s.rows.len(),
        if s.rows.len() == 1 { "" } else { "s" },
    ));
    for r in &s.rows {
        let mark = if r.foreign_sender == Some(true) {
            "!"
        } else {
            " "
        };
        let reason = r.reason.map_or("(no facts)", Reason::code);
        let targets = format!(
            "{}{} target{}",
            if r.distinct_targets_capped { ">=" } else { "" },
            r.distinct_targets,
            if r.distinct_targets == 1 { "" } else { "s" }
        );
        line(&format!(
            "{mark} {} {} {} {reason}: {} request{}, {targets}, {} .. {}",
            label(r.netns_name.as_deref(), r.netns, &r.ifname, own),
            match r.family {
                Family::Ipv4 => "tell",
                Family::Ipv6 => "ND from",
            },
            r.sender_ip,
            r.requests,
            if r.requests == 1 { "" } else { "s" },
            local_clock_micros(r.first_seen.0),
            local_clock_micros(r.last_seen.0),
        ));
        let list = |top: &[Count], rest: u64| {
            let mut parts: Vec<String> = top
                .iter()
                .map(|c| format!("{} ({})", c.name, c.count))
                .collect();
            if rest > 0 {
                parts.push(format!("{rest} more"));
            }
            parts.join(", ")
        };
        line(&format!("    flows: {}", list(&r.top_flows, r.other_flows)));
        line(&format!(
            "    processes: {}",
            list(&r.top_processes, r.other_processes)
        ));
        if let Some(rem) = &r.remedy {
            line(&format!("    fix: {}", rem.command));
            line(&format!("    persist: {}", rem.persistent));
        }
    }
    if s.folded_requests > 0 {
        line(&format!(
            "  {} more requests in rows beyond the summary's caps ({MAX_ROWS} rows, {} MiB)",
            s.folded_requests,
            MAX_BYTES >> 20
        ));
    }
    if !s.conflicts.is_empty() {
        line(&format!(
            "Conflicts: {} row{} (by interface, kind and address)",
            s.conflicts.len(),
            if s.conflicts.len() == 1 { "" } else { "s" }
        ));
    }
    for c in &s.conflicts {
        let macs: Vec<String> = c.macs.iter().map(ToString::to_string).collect();
        line(&format!(
            "! {} {} {}: {} report{}, from {}, {} .. {}",
            label(c.netns_name.as_deref(), c.netns, &c.ifname, own),
            c.kind,
            c.ip,
            c.reports,
            if c.reports == 1 { "" } else { "s" },
            macs.join(", "),
            local_clock_micros(c.first_seen.0),
            local_clock_micros(c.last_seen.0),
        ));
    }
    if s.folded_conflicts > 0 {
        line(&format!(
            "  {} more conflict reports beyond the summary's {MAX_ROWS} conflict rows",
            s.folded_conflicts
        ));
    }
    t
}

/// Prints the summary on exit and on each `--summary-interval` tick.
pub struct SummarySink {
    out: Output,
    json: bool,
    table: Table,
    own: Option<u32>,
}

impl SummarySink {
    pub fn new(out: Output, json: bool, own: Option<u32>) -> Self {
        SummarySink {
            out,
            json,
            table: Table::default(),
            own,
        }
    }

    fn print(&mut self, last: bool) -> io::Result<()> {
        let s = self.table.snapshot(last);
        let bytes = if self.json {
            let mut b = Record::Summary(arp_trace_model::Held::Owned(s))
                .to_json()
                .into_bytes();
            b.push(b'\n');
            b
        } else {
            text(&s, self.own).into_bytes()
        };
        self.out.writer().write_all(&bytes)?;
        self.out.flush_now()
    }
}

impl Sink for SummarySink {
    fn record(&mut self, rec: &Record<'_>) -> io::Result<()> {
        match rec {
            Record::Conflict(c) => self.table.add_conflict(c),
            _ => self.table.add(rec.solicitation()),
        }
        Ok(())
    }
    fn tick(&mut self) -> io::Result<()> {
        self.print(false)
    }
    fn finish(&mut self, _: &Counters) -> io::Result<()> {
        self.print(true)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::explain::explain;
    use crate::explain::tests::{request, seed_facts, trigger};
    use crate::sinks::tests::Shared;
    use arp_trace_model::Held;
    use arp_trace_model::{ArpEvent, Origin, Time};

    /// A request from srv's eth3, explained against the seed host's facts.
    pub(crate) fn explained(
        sender: &str,
        target: &str,
        src: Option<&str>,
        t: i128,
    ) -> ArpEvent<'static> {
        let mut ev = request(
            "eth3",
            sender,
            target,
            src.map(|s| trigger(s, Origin::Local)),
        );
        if let Some(t) = ev.trigger.as_mut() {
            t.dst = target.parse().unwrap();
        }
        ev.netns_name = Some("srv".into());
        ev.time = Time(t);
        ev.verdict = Some(explain(&ev, &seed_facts()));
        ev
    }

    #[test]
    fn prints_json_object_and_text_table() {
        let buf = Shared::default();
        let mut s = SummarySink::new(Output::new(Box::new(buf.clone())), true, None);
        let ev = explained("203.0.113.10", "198.51.100.20", Some("203.0.113.10"), 1);
        s.record(&Record::Arp(Held::Borrowed(&ev))).unwrap();
        s.tick().unwrap();
        s.finish(&Counters::default()).unwrap();
        let text = buf.text();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["type"], "summary");
        assert_eq!(lines[0]["final"], false);
        assert_eq!(lines[1]["final"], true);
        let row = &lines[1]["rows"][0];
        assert_eq!(row["reason"], "announce0_local_source");
        assert_eq!(row["netns_name"], "srv");
        assert_eq!(
            row["remedy"]["command"],
            "sysctl -w net.ipv4.conf.eth3.arp_announce=1"
        );

        let buf = Shared::default();
        let mut s = SummarySink::new(Output::new(Box::new(buf.clone())), false, None);
        let ev = explained("203.0.113.10", "198.51.100.20", Some("203.0.113.10"), 1);
        s.record(&Record::Arp(Held::Borrowed(&ev))).unwrap();
        s.finish(&Counters::default()).unwrap();
        let text = buf.text();
        assert!(
            text.starts_with("Summary: 1 ARP request, 1 with a foreign sender"),
            "{text}"
        );
        assert!(
            text.contains(
                "! srv/eth3 tell 203.0.113.10 announce0_local_source: 1 request, 1 target"
            ),
            "{text}"
        );
        assert!(
            text.contains("    processes: python3[4242] (1)\n"),
            "{text}"
        );
        assert!(
            text.contains("    fix: sysctl -w net.ipv4.conf.eth3.arp_announce=1\n"),
            "{text}"
        );
    }

    /// A solicitation gets a row of its own family beside the ARP one.
    #[test]
    fn neighbour_solicitations_get_rows_of_their_family() {
        use crate::kernel::ndisc::tests::{ns_frame, raw};
        let frame = ns_frame("fe80::3", "ff02::1:ff00:44", "2001:db8:3::44", None);
        let mut nd =
            crate::kernel::ndisc::decode_ndisc(&raw(&frame, &[("fe80::3", 64, 0x20, 0x80)]), 0)
                .unwrap();
        nd.netns_name = Some("srv".into());
        nd.verdict = Some(crate::explain::explain_ndisc(&nd));
        let arp = explained("203.0.113.10", "198.51.100.20", Some("203.0.113.10"), 1);
        let buf = Shared::default();
        let mut s = SummarySink::new(Output::new(Box::new(buf.clone())), false, None);
        s.record(&Record::Arp(Held::Borrowed(&arp))).unwrap();
        s.record(&Record::Ndisc(Held::Borrowed(&nd))).unwrap();
        s.finish(&Counters::default()).unwrap();
        let text = buf.text();
        assert!(
            text.starts_with("Summary: 2 requests (ARP and neighbour solicitations), 1 with"),
            "{text}"
        );
        assert!(
            text.contains("  srv/eth3 ND from fe80::3 ndisc_no_trigger: 1 request, 1 target"),
            "{text}"
        );
        let mut table = Table::default();
        table.add(Record::Ndisc(Held::Borrowed(&nd)).solicitation());
        let row = &table.snapshot(true).rows[0];
        assert_eq!(
            (row.family, row.sender_ip),
            (Family::Ipv6, "fe80::3".parse().unwrap())
        );
    }

    #[test]
    fn hostile_names_are_escaped_in_the_summary() {
        let mut table = Table::default();
        table.add(arp_trace_model::Solicitation::of_arp(
            &crate::sinks::tests::hostile_event(),
        ));
        let t = text(&table.snapshot(true), None);
        crate::sinks::tests::assert_inert(&t, &[]);
        assert!(
            t.contains("! n\\as/e\\x1b[2J\\xff tell 203.0.113.10"),
            "{t}"
        );
        assert!(
            t.contains("    processes: \\x1b]2;owned\\a[4242] (1)\n"),
            "{t}"
        );
    }
}
