//! Sinks that print events: tcpdump-like lines for people, JSON Lines for programs.

use std::io::{self, Write};

use crate::attribution::NeighFailed;
use crate::event::{ArpEvent, ArpOp};
use crate::facts::{ChangeKind, FactsChange};
use crate::netns::NetnsNames;
use crate::pipeline::{Output, Sink};
use crate::timefmt;

/// `srv/eth3` for a named namespace, `eth3` in the tracer's own, `4026532281/eth3` otherwise.
pub fn where_label(ev: &ArpEvent, names: &NetnsNames) -> String {
    label(ev.netns_name.as_deref(), ev.netns, &ev.ifname, names.own())
}

/// The same label from its parts; `own` is the tracer's namespace.
pub fn label(netns_name: Option<&str>, netns: u32, ifname: &str, own: Option<u32>) -> String {
    match netns_name {
        Some(n) => format!("{n}/{ifname}"),
        None if own == Some(netns) => ifname.to_string(),
        None => format!("{netns}/{ifname}"),
    }
}

/// The event in tcpdump's words, without the timestamp.
pub fn describe(ev: &ArpEvent) -> String {
    match ev.op {
        ArpOp::Request if ev.unicast => format!(
            "ARP who-has {} ({}) tell {} ({}), unicast",
            ev.target_ip, ev.target_mac, ev.sender_ip, ev.sender_mac
        ),
        ArpOp::Request => {
            format!(
                "ARP who-has {} tell {} ({})",
                ev.target_ip, ev.sender_ip, ev.sender_mac
            )
        }
        ArpOp::Reply => format!(
            "ARP reply {} is-at {} to {} ({})",
            ev.sender_ip, ev.sender_mac, ev.target_ip, ev.target_mac
        ),
    }
}

/// ` <- udp 203.0.113.10:41000 > 198.51.100.20:9 python3[4242]` for requests with a trigger.
pub fn trigger_suffix(ev: &ArpEvent) -> String {
    match (&ev.op, &ev.trigger) {
        (ArpOp::Request, Some(t)) => format!("  <- {}", t.describe()),
        _ => String::new(),
    }
}

/// `ARP 198.51.100.99 failed after 3 requests; dropped 1 packet: udp ... python3[4242]`
pub fn describe_failed(f: &NeighFailed) -> String {
    let n = f.dropped.len() as u64 + f.dropped_omitted;
    let mut s = format!(
        "ARP {} failed after {} request{}; dropped {n} packet{}",
        f.target_ip,
        f.attempts,
        if f.attempts == 1 { "" } else { "s" },
        if n == 1 { "" } else { "s" }
    );
    for (i, d) in f.dropped.iter().enumerate() {
        s.push_str(if i == 0 { ": " } else { ", " });
        s.push_str(&d.describe());
    }
    s
}

/// The lines under a request saying why it carries its sender: always for a foreign sender,
/// for every request with `verbose`.
pub fn explanation_lines(ev: &ArpEvent, verbose: bool) -> Vec<String> {
    let mut out = Vec::new();
    match &ev.verdict {
        Some(v) if v.foreign_sender || verbose => {
            out.push(format!("    why ({}): {}", v.reason, v.explanation));
            if let Some(c) = &v.consequence {
                out.push(format!("    effect: {c}"));
            }
            if let Some(r) = &v.remedy {
                out.push(format!("    fix: {}", r.command));
                out.push(format!("    persist: {}", r.persistent));
                if verbose {
                    out.push(format!("    trade-off: {}", r.tradeoff));
                }
            }
        }
        None if verbose && ev.op == ArpOp::Request => {
            if let Some(e) = &ev.facts_error {
                out.push(format!(
                    "    why: unknown, the namespace's facts are missing: {e}"
                ));
            }
        }
        _ => {}
    }
    out
}

/// `srv/eth3 arp_announce 0 -> 2`, `srv/eth3 +198.51.100.11/24`, `srv watching: ...`.
pub fn describe_change(ch: &FactsChange, own: Option<u32>) -> String {
    let place = match ch.subject() {
        Some(s) => label(ch.netns_name.as_deref(), ch.netns, s, own),
        None => match &ch.netns_name {
            Some(n) => n.clone(),
            None if own == Some(ch.netns) => "(own netns)".to_string(),
            None => ch.netns.to_string(),
        },
    };
    format!("{place} {}", ch.describe())
}

const RED: &str = "\x1b[1;31m";
const RESET: &str = "\x1b[0m";

/// One line per event: `19:31:02.123456 srv/eth3 ARP who-has ... tell ... (mac)`; a request
/// with a foreign sender ends in `  ! foreign sender` (in red on a terminal), the explanation
/// beneath.
pub struct TerminalSink {
    out: Output,
    verbose: bool,
    color: bool,
}

impl TerminalSink {
    pub fn new(out: Output) -> Self {
        Self::with_options(out, false, false)
    }

    pub fn with_options(out: Output, verbose: bool, color: bool) -> Self {
        TerminalSink {
            out,
            verbose,
            color,
        }
    }
}

impl Sink for TerminalSink {
    fn arp(&mut self, ev: &ArpEvent, names: &mut NetnsNames) -> io::Result<()> {
        let foreign = ev.verdict.as_ref().is_some_and(|v| v.foreign_sender);
        let (on, off, mark) = match (foreign, self.color) {
            (true, true) => (RED, RESET, "  ! foreign sender"),
            (true, false) => ("", "", "  ! foreign sender"),
            _ => ("", "", ""),
        };
        let w = self.out.writer();
        writeln!(
            w,
            "{on}{} {} {}{}{mark}{off}",
            timefmt::local_clock_micros(ev.time.0),
            where_label(ev, names),
            describe(ev),
            trigger_suffix(ev)
        )?;
        for line in explanation_lines(ev, self.verbose) {
            writeln!(w, "{line}")?;
        }
        Ok(())
    }
    fn neigh_failed(&mut self, f: &NeighFailed, names: &mut NetnsNames) -> io::Result<()> {
        let label = label(f.netns_name.as_deref(), f.netns, &f.ifname, names.own());
        writeln!(
            self.out.writer(),
            "{} {label} {}",
            timefmt::local_clock_micros(f.time.0),
            describe_failed(f)
        )
    }
    /// Address and sysctl changes always (they are rare, and they are why the requests after
    /// them look different); the state when watching starts only with `-v`.
    fn facts_change(&mut self, ch: &FactsChange, names: &mut NetnsNames) -> io::Result<()> {
        if ch.change == ChangeKind::Watched && !self.verbose {
            return Ok(());
        }
        writeln!(
            self.out.writer(),
            "{} {}",
            timefmt::local_clock_micros(ch.time.0),
            describe_change(ch, names.own())
        )
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// One JSON object per line, exactly the contract's fields.
pub struct JsonSink {
    out: Output,
}

impl JsonSink {
    pub fn new(out: Output) -> Self {
        JsonSink { out }
    }
}

impl Sink for JsonSink {
    fn arp(&mut self, ev: &ArpEvent, _: &mut NetnsNames) -> io::Result<()> {
        let w = self.out.writer();
        serde_json::to_writer(&mut *w, ev).map_err(io::Error::other)?;
        w.write_all(b"\n")
    }
    fn neigh_failed(&mut self, f: &NeighFailed, _: &mut NetnsNames) -> io::Result<()> {
        let w = self.out.writer();
        serde_json::to_writer(&mut *w, f).map_err(io::Error::other)?;
        w.write_all(b"\n")
    }
    fn facts_change(&mut self, ch: &FactsChange, _: &mut NetnsNames) -> io::Result<()> {
        let w = self.out.writer();
        serde_json::to_writer(&mut *w, ch).map_err(io::Error::other)?;
        w.write_all(b"\n")
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The outputs on stdout, the same live and replaying: event lines (text or JSON, unless
/// `-q`) and the summary, with `--foreign-only` and `-v` applied.
pub fn add_stdout_sinks(pipeline: &mut crate::pipeline::Pipeline, args: &crate::cli::Args) {
    use std::io::IsTerminal;
    pipeline.foreign_only = args.foreign_only;
    if !args.quiet {
        let out = Output::stdout();
        if args.json {
            pipeline.sinks.push(Box::new(JsonSink::new(out)));
        } else {
            let color = std::io::stdout().is_terminal();
            pipeline.sinks.push(Box::new(TerminalSink::with_options(
                out,
                args.verbose,
                color,
            )));
        }
    }
    pipeline.sinks.push(Box::new(crate::summary::Summary::new(
        Output::stdout(),
        args.json,
    )));
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::tests::{frame, raw};
    use std::sync::{Arc, Mutex};

    /// A writer whose bytes the test reads back after the sink wrote them.
    #[derive(Clone, Default)]
    pub(crate) struct Shared(pub(crate) Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn request() -> ArpEvent {
        let f = frame(
            1,
            [0xff; 6],
            [0, 0x11, 0x22, 0x33, 0x44, 0x55],
            [203, 0, 113, 10],
            [0; 6],
            [198, 51, 100, 20],
        );
        ArpEvent::decode(&raw(&f, 14), 0).unwrap()
    }

    #[test]
    fn human_lines_read_like_tcpdump() {
        let mut ev = request();
        ev.netns_name = Some("srv".into());
        let buf = Shared::default();
        let mut sink = TerminalSink::new(Output::new(Box::new(buf.clone())));
        let mut names = NetnsNames::with_dir("/nonexistent");
        sink.arp(&ev, &mut names).unwrap();
        sink.flush().unwrap();
        let line = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
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
        ev.trigger = Some(trigger("203.0.113.10", crate::attribution::Origin::Local));
        ev.verdict = Some(crate::explain::explain(&ev, &facts));
        let mut ok = request();
        ok.sender_ip = "198.51.100.10".parse().unwrap();
        ok.verdict = Some(crate::explain::explain(&ok, &facts));
        let mut names = NetnsNames::with_dir("/nonexistent");
        for (verbose, color) in [(false, false), (true, true)] {
            let buf = Shared::default();
            let mut sink =
                TerminalSink::with_options(Output::new(Box::new(buf.clone())), verbose, color);
            sink.arp(&ev, &mut names).unwrap();
            sink.arp(&ok, &mut names).unwrap();
            sink.flush().unwrap();
            let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
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

    #[test]
    fn labels_namespaces_by_name_own_or_inode() {
        let mut ev = request();
        let names = NetnsNames::with_dir("/nonexistent");
        assert_eq!(where_label(&ev, &names), "4026532281/eth3");
        ev.netns = names.own().unwrap();
        assert_eq!(where_label(&ev, &names), "eth3");
        ev.netns_name = Some("blue".into());
        assert_eq!(where_label(&ev, &names), "blue/eth3");
    }

    #[test]
    fn describes_unicast_and_replies() {
        let peer = [2, 0, 0, 0, 0, 0x20];
        let me = [2, 0, 0, 0, 0, 0x10];
        let f = frame(1, peer, me, [198, 51, 100, 10], peer, [198, 51, 100, 20]);
        let ev = ArpEvent::decode(&raw(&f, 14), 0).unwrap();
        assert_eq!(describe(&ev), "ARP who-has 198.51.100.20 (02:00:00:00:00:20) tell 198.51.100.10 (02:00:00:00:00:10), unicast");
        let f = frame(2, peer, me, [198, 51, 100, 10], peer, [198, 51, 100, 20]);
        let ev = ArpEvent::decode(&raw(&f, 14), 0).unwrap();
        assert_eq!(
            describe(&ev),
            "ARP reply 198.51.100.10 is-at 02:00:00:00:00:10 to 198.51.100.20 (02:00:00:00:00:20)"
        );
    }

    #[test]
    fn json_lines_are_one_object_per_line() {
        let buf = Shared::default();
        let mut sink = JsonSink::new(Output::new(Box::new(buf.clone())));
        let mut names = NetnsNames::with_dir("/nonexistent");
        sink.arp(&request(), &mut names).unwrap();
        sink.arp(&request(), &mut names).unwrap();
        sink.flush().unwrap();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["type"], "arp");
        assert_eq!(v["op"], "request");
        assert_eq!(v["netns_name"], serde_json::Value::Null);
        assert_eq!(v["unicast"], false);
    }
}
