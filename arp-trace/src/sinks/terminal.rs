//! The terminal: one tcpdump-like line per event (`19:31:02.123456 srv/eth3 ARP who-has ...`);
//! a request with a foreign sender ends in `  ! foreign sender` (red on a terminal) with its
//! explanation beneath. Names come from other people (processes, interfaces, trace files):
//! every line goes out through `visible`, so none can drive the terminal.

use std::io::{self, Write};

use arp_trace_model::{visible, ChangeKind, Record};

use super::text::{
    conflict_cause_lines, describe, describe_change, describe_conflict, describe_failed,
    describe_ndisc, describe_neigh_change, explanation_lines, failed_lines, label,
    local_clock_micros, ndisc_explanation_lines, ndisc_trigger_suffix, trigger_suffix, where_label,
};
use super::Output;
use crate::pipeline::Sink;

const RED: &str = "\x1b[1;31m";
const RESET: &str = "\x1b[0m";

pub struct TerminalSink {
    out: Output,
    verbose: bool,
    color: bool,
    /// The tracer's namespace, shown without a prefix.
    own: Option<u32>,
}

impl TerminalSink {
    pub fn new(out: Output, verbose: bool, color: bool, own: Option<u32>) -> Self {
        TerminalSink {
            out,
            verbose,
            color,
            own,
        }
    }
}

/// Colour on, colour off and the mark a line with a foreign sender gets.
fn marks(foreign: bool, color: bool) -> (&'static str, &'static str, &'static str) {
    match (foreign, color) {
        (true, true) => (RED, RESET, "  ! foreign sender"),
        (true, false) => ("", "", "  ! foreign sender"),
        _ => ("", "", ""),
    }
}

impl Sink for TerminalSink {
    fn record(&mut self, rec: &Record<'_>) -> io::Result<()> {
        let w = self.out.writer();
        match rec {
            Record::Arp(ev) => {
                let (on, off, mark) = marks(ev.foreign(), self.color);
                let line = format!(
                    "{} {} {}{}",
                    local_clock_micros(ev.time.0),
                    where_label(ev, self.own),
                    describe(ev),
                    trigger_suffix(ev)
                );
                writeln!(w, "{on}{}{mark}{off}", visible(&line))?;
                for line in explanation_lines(ev, self.verbose) {
                    writeln!(w, "{}", visible(&line))?;
                }
                Ok(())
            }
            Record::Ndisc(ev) => {
                let (on, off, mark) = marks(ev.foreign(), self.color);
                let line = format!(
                    "{} {} {}{}",
                    local_clock_micros(ev.time.0),
                    label(ev.netns_name.as_deref(), ev.netns, &ev.ifname, self.own),
                    describe_ndisc(ev),
                    ndisc_trigger_suffix(ev)
                );
                writeln!(w, "{on}{}{mark}{off}", visible(&line))?;
                for line in ndisc_explanation_lines(ev, self.verbose) {
                    writeln!(w, "{}", visible(&line))?;
                }
                Ok(())
            }
            Record::NeighFailed(f) => {
                let label = label(f.netns_name.as_deref(), f.netns, &f.ifname, self.own);
                let line = format!(
                    "{} {label} {}",
                    local_clock_micros(f.time.0),
                    describe_failed(f)
                );
                writeln!(w, "{}", visible(&line))?;
                for line in failed_lines(f, self.verbose) {
                    writeln!(w, "{}", visible(&line))?;
                }
                Ok(())
            }
            // Address and sysctl changes always (they are rare, and they are why the requests
            // after them look different); the state when watching starts only with `-v`.
            Record::FactsChange(ch) => {
                if ch.change == ChangeKind::Watched && !self.verbose {
                    return Ok(());
                }
                let line = format!(
                    "{} {}",
                    local_clock_micros(ch.time.0),
                    describe_change(ch, self.own)
                );
                writeln!(w, "{}", visible(&line))
            }
            // Marked as foreign senders are: each is what a peer complains about.
            Record::Conflict(c) => {
                let (on, off, _) = marks(true, self.color);
                let line = format!(
                    "{} {} {}",
                    local_clock_micros(c.time.0),
                    label(c.netns_name.as_deref(), c.netns, &c.ifname, self.own),
                    describe_conflict(c)
                );
                writeln!(w, "{on}{}  ! conflict{off}", visible(&line))?;
                for line in conflict_cause_lines(c, self.own) {
                    writeln!(w, "{}", visible(&line))?;
                }
                Ok(())
            }
            Record::NeighChange(c) => {
                let line = format!(
                    "{} {} {}",
                    local_clock_micros(c.time.0),
                    label(c.netns_name.as_deref(), c.netns, &c.ifname, self.own),
                    describe_neigh_change(c)
                );
                writeln!(w, "{}", visible(&line))
            }
            Record::Header(_) | Record::Summary(_) => Ok(()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
    // The summary shares standard output and prints after this.
    fn tick(&mut self) -> io::Result<()> {
        self.out.flush_now()
    }
    fn finish(&mut self, _: &crate::pipeline::Counters) -> io::Result<()> {
        self.out.flush_now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::ring::decode_arp;
    use crate::kernel::ring::tests::{frame, raw};
    use crate::sinks::tests::Shared;
    use arp_trace_model::{ArpEvent, Held, Origin};

    fn request() -> ArpEvent<'static> {
        let f = frame(
            1,
            [0xff; 6],
            [0, 0x11, 0x22, 0x33, 0x44, 0x55],
            [203, 0, 113, 10],
            [0; 6],
            [198, 51, 100, 20],
        );
        decode_arp(&raw(&f, 14), 0).unwrap()
    }

    #[test]
    fn human_lines_read_like_tcpdump() {
        let mut ev = request();
        ev.netns_name = Some("srv".into());
        let buf = Shared::default();
        let mut sink = TerminalSink::new(Output::new(Box::new(buf.clone())), false, false, None);
        sink.record(&Record::Arp(Held::Borrowed(&ev))).unwrap();
        sink.flush().unwrap();
        let line = buf.text();
        let (_time, rest) = line.split_once(' ').unwrap();
        assert_eq!(
            rest,
            "srv/eth3 ARP who-has 198.51.100.20 tell 203.0.113.10 (00:11:22:33:44:55)\n"
        );
    }

    #[test]
    fn foreign_requests_stand_out_with_their_explanation() {
        use crate::explain::tests::trigger;
        let facts = crate::explain::tests::seed_facts();
        let mut ev = request();
        ev.trigger = Some(trigger("203.0.113.10", Origin::Local));
        ev.verdict = Some(crate::explain::explain(&ev, &facts));
        let mut ok = request();
        ok.sender_ip = "198.51.100.10".parse().unwrap();
        ok.verdict = Some(crate::explain::explain(&ok, &facts));
        for (verbose, color) in [(false, false), (true, true)] {
            let buf = Shared::default();
            let mut sink =
                TerminalSink::new(Output::new(Box::new(buf.clone())), verbose, color, None);
            sink.record(&Record::Arp(Held::Borrowed(&ev))).unwrap();
            sink.record(&Record::Arp(Held::Borrowed(&ok))).unwrap();
            sink.flush().unwrap();
            let text = buf.text();
            let lines: Vec<&str> = text.lines().collect();
            assert!(lines[0].contains("tell 203.0.113.10"), "{text}");
            assert!(lines[0].contains("  ! foreign sender"), "{text}");
            assert_eq!(lines[0].starts_with(RED), color, "{text}");
            assert!(lines[1].starts_with("    why (announce0_local_source): eth3 announces"));
            assert!(lines[2].starts_with("    effect: "));
            assert_eq!(
                lines[3],
                "    fix: sysctl -w net.ipv4.conf.eth3.arp_announce=1"
            );
            assert!(lines[4].starts_with("    persist: echo "));
            let rest = &lines[if verbose { 6 } else { 5 }..];
            assert!(rest[0].contains("tell 198.51.100.10") && !rest[0].contains('!'));
            assert_eq!(rest.len(), if verbose { 2 } else { 1 }, "{text}");
            if verbose {
                assert!(lines[5].starts_with("    trade-off: "));
                assert!(
                    rest[1].starts_with("    why (select_no_trigger): "),
                    "{text}"
                );
            }
        }
    }

    /// Names from other people reach the terminal as visible escapes, never as the control
    /// sequences they spell; only the colour arp-trace itself adds is sent raw.
    #[test]
    fn hostile_names_are_shown_escaped() {
        use crate::sinks::tests::{assert_inert, hostile_event};
        let ev = hostile_event();
        for color in [false, true] {
            let buf = Shared::default();
            let mut sink = TerminalSink::new(Output::new(Box::new(buf.clone())), true, color, None);
            sink.record(&Record::Arp(Held::Borrowed(&ev))).unwrap();
            sink.flush().unwrap();
            let text = buf.text();
            assert_inert(&text, &[RED, RESET]);
            for shown in [
                " n\\as/e\\x1b[2J\\xff ARP who-has",
                " \\x1b]2;owned\\a[4242]",
                "    why (announce0_local_source): e\\x1b[2J announces\\u{202e}\n",
                "    effect: \\x1b[31mred\\r\n",
                "    fix: sysctl -w 'net.ipv4.conf.e\\x1b[2J.arp_announce=1'\n",
                "    persist: # \\u{009b}\n",
                "    trade-off: \\x7f\n",
            ] {
                assert!(text.contains(shown), "{shown:?} not in {text}");
            }
        }
    }
}
