//! The summary: ARP requests folded into one row per (namespace, interface, sender IP, reason)
//! with counts, distinct targets, first/last seen and the top triggering flows and processes,
//! foreign senders first with their remedy. Every table is capped; what a cap folds is counted.

use std::fmt;
use std::io::{self, Write};
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::attribution::Origin;
use crate::brief::{ArpView, ShortStr, TriggerView};
use crate::event::{ArpEvent, ArpOp, Time};
use crate::explain::{Reason, Remedy};
use crate::netns::NetnsNames;
use crate::output::label;
use crate::pipeline::{Counters, Output, Sink};
use crate::timefmt;

// Every request does several lookups here; SipHash's flooding resistance buys nothing for
// tables this small and capped.
type HashMap<K, V> = foldhash::HashMap<K, V>;
type HashSet<K> = foldhash::HashSet<K>;

/// Rows kept; requests for further rows are counted in `folded_requests`.
pub const MAX_ROWS: usize = 4096;
/// Distinct targets remembered per row; beyond it the count is a lower bound.
pub const MAX_TARGETS: usize = 1024;
/// Flows and processes counted per row; the rest go to `other`.
pub const MAX_TOP: usize = 32;
/// Flows and processes shown per row.
pub const SHOW_TOP: usize = 3;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    netns: u32,
    ifname: ShortStr,
    sender_ip: Ipv4Addr,
    /// None when the namespace's facts could not be read.
    reason: Option<Reason>,
}

/// Bounded counter of names: the first MAX_TOP names are counted exactly, later ones in `other`.
#[derive(Debug)]
struct Top<K> {
    counts: HashMap<K, u64>,
    other: u64,
}

impl<K> Default for Top<K> {
    fn default() -> Self {
        Top {
            counts: HashMap::default(),
            other: 0,
        }
    }
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Count {
    pub name: String,
    pub count: u64,
}

impl<K: std::hash::Hash + Eq + Clone + fmt::Display> Top<K> {
    fn add(&mut self, name: &K) {
        if let Some(c) = self.counts.get_mut(name) {
            *c += 1;
        } else if self.counts.len() < MAX_TOP {
            self.counts.insert(name.clone(), 1);
        } else {
            self.other += 1;
        }
    }

    fn top(&self) -> Vec<Count> {
        let mut v: Vec<Count> = self
            .counts
            .iter()
            .map(|(name, &count)| Count {
                name: name.to_string(),
                count,
            })
            .collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
        v.truncate(SHOW_TOP);
        v
    }

    /// Everything not in `top()`.
    fn rest(&self, total: u64) -> u64 {
        total - self.top().iter().map(|c| c.count).sum::<u64>()
    }
}

#[derive(Debug)]
struct Row {
    netns_name: Option<String>,
    foreign_sender: Option<bool>,
    remedy: Option<Remedy>,
    requests: u64,
    targets: HashSet<Ipv4Addr>,
    targets_capped: bool,
    first: Time,
    last: Time,
    flows: Top<Flow>,
    processes: Top<Process>,
}

/// One summary row as printed in JSON.
#[derive(Serialize, Debug)]
pub struct RowOut {
    pub netns: u32,
    pub netns_name: Option<String>,
    pub ifname: String,
    pub sender_ip: Ipv4Addr,
    pub reason: Option<Reason>,
    pub foreign_sender: Option<bool>,
    pub requests: u64,
    pub distinct_targets: usize,
    /// True when more targets were seen than remembered: `distinct_targets` is a lower bound.
    pub distinct_targets_capped: bool,
    pub first_seen: Time,
    pub last_seen: Time,
    pub top_flows: Vec<Count>,
    /// Requests whose flow is not in `top_flows`.
    pub other_flows: u64,
    pub top_processes: Vec<Count>,
    pub other_processes: u64,
    pub remedy: Option<Remedy>,
}

/// The `{"type":"summary", ...}` object.
#[derive(Serialize, Debug)]
pub struct SummaryOut {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// False for the periodic summaries of `--summary-interval`, true for the one on exit.
    #[serde(rename = "final")]
    pub last: bool,
    pub requests: u64,
    pub foreign_requests: u64,
    pub rows: Vec<RowOut>,
    /// Requests not in any row because the row table was full.
    pub folded_requests: u64,
}

/// `udp 203.0.113.10 > 198.51.100.20:9`: the trigger without the source port, which changes
/// with every connection and would split one flow into many. Named only when printed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Flow {
    NoQueuedPacket,
    Ports(ShortStr, Ipv4Addr, Ipv4Addr, u16),
    Icmp(Ipv4Addr, Ipv4Addr, u8),
    Other(ShortStr, Ipv4Addr, Ipv4Addr),
}

impl Flow {
    fn of(t: Option<&TriggerView<'_>>) -> Flow {
        match t {
            None => Flow::NoQueuedPacket,
            Some(t) => match (t.dport, t.icmp_type) {
                (Some(dp), _) => Flow::Ports(ShortStr::new(t.proto), t.src, t.dst, dp),
                (None, Some(ty)) => Flow::Icmp(t.src, t.dst, ty),
                _ => Flow::Other(ShortStr::new(t.proto), t.src, t.dst),
            },
        }
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flow::NoQueuedPacket => write!(f, "(no queued packet)"),
            Flow::Ports(p, src, dst, dp) => write!(f, "{} {src} > {dst}:{dp}", p.as_str()),
            Flow::Icmp(src, dst, ty) => write!(f, "icmp {src} > {dst} type {ty}"),
            Flow::Other(p, src, dst) => write!(f, "{} {src} > {dst}", p.as_str()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Process {
    KernelReprobe,
    Named(ShortStr, u32),
    Gone,
    Kernel,
    Forwarded(Option<ShortStr>),
}

impl Process {
    fn of(t: Option<&TriggerView<'_>>) -> Process {
        match t {
            None => Process::KernelReprobe,
            Some(t) => match (t.origin, t.comm, t.pid) {
                (Origin::Local, Some(c), Some(p)) => Process::Named(ShortStr::new(c), p),
                (Origin::Local, _, _) => Process::Gone,
                (Origin::Kernel, _, _) => Process::Kernel,
                (Origin::Forwarded, _, _) => Process::Forwarded(t.in_ifname.map(ShortStr::new)),
            },
        }
    }
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::KernelReprobe => write!(f, "(kernel re-probe)"),
            Process::Named(c, p) => write!(f, "{}[{p}]", c.as_str()),
            Process::Gone => write!(f, "(local socket, process gone)"),
            Process::Kernel => write!(f, "(kernel)"),
            Process::Forwarded(i) => write!(
                f,
                "(forwarded from {})",
                i.as_ref().map_or("another interface", ShortStr::as_str)
            ),
        }
    }
}

/// Folds requests into rows and prints them on exit and on each tick.
pub struct Summary {
    out: Output,
    json: bool,
    rows: HashMap<Key, Row>,
    folded_requests: u64,
    requests: u64,
    foreign: u64,
    own_netns: Option<u32>,
}

impl Summary {
    pub fn new(out: Output, json: bool) -> Self {
        Summary {
            out,
            json,
            rows: HashMap::default(),
            folded_requests: 0,
            requests: 0,
            foreign: 0,
            own_netns: None,
        }
    }

    pub fn add(&mut self, ev: &ArpView<'_>) {
        if ev.op != ArpOp::Request {
            return;
        }
        self.requests += 1;
        let foreign = ev.verdict.map(|v| v.0);
        self.foreign += (foreign == Some(true)) as u64;
        let key = Key {
            netns: ev.netns,
            ifname: ShortStr::new(ev.ifname),
            sender_ip: ev.sender_ip,
            reason: ev.verdict.map(|v| v.1),
        };
        if !self.rows.contains_key(&key) && self.rows.len() >= MAX_ROWS {
            self.folded_requests += 1;
            return;
        }
        let row = self.rows.entry(key).or_insert_with(|| Row {
            netns_name: ev.netns_name.map(str::to_owned),
            foreign_sender: foreign,
            remedy: None,
            requests: 0,
            targets: HashSet::default(),
            targets_capped: false,
            first: ev.time,
            last: ev.time,
            flows: Top::default(),
            processes: Top::default(),
        });
        row.requests += 1;
        row.first = row.first.min(ev.time);
        row.last = row.last.max(ev.time);
        if row.netns_name.is_none() {
            row.netns_name = ev.netns_name.map(str::to_owned);
        }
        // The latest remedy: it reflects the sysctls as they are now.
        if let Some(r) = ev.remedy {
            if row.remedy.as_ref() != Some(r) {
                row.remedy = Some(r.clone());
            }
        }
        if row.targets.len() < MAX_TARGETS {
            row.targets.insert(ev.target_ip);
        } else if !row.targets.contains(&ev.target_ip) {
            row.targets_capped = true;
        }
        row.flows.add(&Flow::of(ev.trigger.as_ref()));
        row.processes.add(&Process::of(ev.trigger.as_ref()));
    }

    /// Rows in print order: foreign senders first, then by request count.
    pub fn snapshot(&self, last: bool) -> SummaryOut {
        let mut rows: Vec<RowOut> = self
            .rows
            .iter()
            .map(|(k, r)| RowOut {
                netns: k.netns,
                netns_name: r.netns_name.clone(),
                ifname: k.ifname.as_str().to_owned(),
                sender_ip: k.sender_ip,
                reason: k.reason,
                foreign_sender: r.foreign_sender,
                requests: r.requests,
                distinct_targets: r.targets.len(),
                distinct_targets_capped: r.targets_capped,
                first_seen: r.first,
                last_seen: r.last,
                top_flows: r.flows.top(),
                other_flows: r.flows.rest(r.requests),
                top_processes: r.processes.top(),
                other_processes: r.processes.rest(r.requests),
                remedy: r.remedy.clone(),
            })
            .collect();
        rows.sort_by(|a, b| {
            (b.foreign_sender == Some(true))
                .cmp(&(a.foreign_sender == Some(true)))
                .then(b.requests.cmp(&a.requests))
                .then(a.first_seen.cmp(&b.first_seen))
        });
        SummaryOut {
            kind: "summary",
            last,
            requests: self.requests,
            foreign_requests: self.foreign,
            rows,
            folded_requests: self.folded_requests,
        }
    }

    fn text(&self, s: &SummaryOut) -> String {
        let mut t = format!(
            "Summary{}: {} ARP request{}, {} with a foreign sender, in {} row{}\n",
            if s.last { "" } else { " so far" },
            s.requests,
            if s.requests == 1 { "" } else { "s" },
            s.foreign_requests,
            s.rows.len(),
            if s.rows.len() == 1 { "" } else { "s" },
        );
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
            t.push_str(&format!(
                "{mark} {} tell {} {reason}: {} request{}, {targets}, {} .. {}\n",
                label(r.netns_name.as_deref(), r.netns, &r.ifname, self.own_netns),
                r.sender_ip,
                r.requests,
                if r.requests == 1 { "" } else { "s" },
                timefmt::local_clock_micros(r.first_seen.0),
                timefmt::local_clock_micros(r.last_seen.0),
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
            t.push_str(&format!(
                "    flows: {}\n    processes: {}\n",
                list(&r.top_flows, r.other_flows),
                list(&r.top_processes, r.other_processes)
            ));
            if let Some(rem) = &r.remedy {
                t.push_str(&format!(
                    "    fix: {}\n    persist: {}\n",
                    rem.command, rem.persistent
                ));
            }
        }
        if s.folded_requests > 0 {
            t.push_str(&format!(
                "  {} more requests in rows beyond the first {MAX_ROWS}\n",
                s.folded_requests
            ));
        }
        t
    }

    fn print(&mut self, last: bool) -> io::Result<()> {
        let s = self.snapshot(last);
        let bytes = if self.json {
            let mut b = serde_json::to_vec(&s).map_err(io::Error::other)?;
            b.push(b'\n');
            b
        } else {
            self.text(&s).into_bytes()
        };
        self.out.writer().write_all(&bytes)?;
        self.out.flush()
    }
}

impl Sink for Summary {
    fn arp(&mut self, ev: &ArpEvent, names: &mut NetnsNames) -> io::Result<()> {
        self.own_netns = names.own();
        self.add(&ev.view());
        Ok(())
    }
    fn reads_brief(&self) -> bool {
        true
    }
    fn arp_brief(&mut self, ev: &ArpView<'_>, names: &mut NetnsNames) -> io::Result<()> {
        self.own_netns = names.own();
        self.add(ev);
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
    use crate::output::tests::Shared;

    impl Summary {
        fn add_event(&mut self, ev: &ArpEvent) {
            self.add(&ev.view())
        }
    }

    /// A request from srv's eth3, explained against the seed host's facts.
    pub(crate) fn explained(sender: &str, target: &str, src: Option<&str>, t: i128) -> ArpEvent {
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
    fn rows_fold_by_key_and_foreign_rows_come_first() {
        let mut s = Summary::new(Output::new(Box::new(io::sink())), true);
        for i in 0..5 {
            s.add_event(&explained("198.51.100.10", "198.51.100.20", None, 100 + i));
        }
        for (i, target) in ["198.51.100.20", "198.51.100.21", "198.51.100.20"]
            .iter()
            .enumerate()
        {
            s.add_event(&explained(
                "203.0.113.10",
                target,
                Some("203.0.113.10"),
                50 + i as i128,
            ));
        }
        let mut reply = explained("198.51.100.10", "198.51.100.20", None, 1);
        reply.op = ArpOp::Reply;
        s.add_event(&reply);
        let out = s.snapshot(true);
        assert_eq!((out.requests, out.foreign_requests), (8, 3));
        assert_eq!(out.rows.len(), 2);
        let f = &out.rows[0];
        assert_eq!(f.foreign_sender, Some(true));
        assert_eq!(f.reason, Some(Reason::Announce0LocalSource));
        assert_eq!((f.requests, f.distinct_targets), (3, 2));
        assert_eq!((f.first_seen, f.last_seen), (Time(50), Time(52)));
        assert_eq!(
            f.top_processes,
            [Count {
                name: "python3[4242]".into(),
                count: 3
            }]
        );
        assert_eq!(f.top_flows[0].count, 2);
        assert_eq!(f.top_flows[0].name, "udp 203.0.113.10 > 198.51.100.20:9");
        assert!(f
            .remedy
            .as_ref()
            .unwrap()
            .command
            .contains("arp_announce=1"));
        let ok = &out.rows[1];
        assert_eq!(ok.foreign_sender, Some(false));
        assert_eq!((ok.requests, ok.distinct_targets), (5, 1));
        assert_eq!(ok.reason, Some(Reason::SelectNoTrigger));
        assert!(ok.remedy.is_none());
        assert_eq!(ok.top_processes[0].name, "(kernel re-probe)");
    }

    #[test]
    fn tables_stay_bounded_and_count_what_they_fold() {
        let mut s = Summary::new(Output::new(Box::new(io::sink())), true);
        let n = MAX_ROWS + 10;
        for i in 0..n {
            let sender = Ipv4Addr::from(0xC612_0000u32 + i as u32).to_string();
            s.add_event(&explained(&sender, "198.51.100.20", None, i as i128));
        }
        let out = s.snapshot(true);
        assert_eq!(out.rows.len(), MAX_ROWS);
        assert_eq!(out.folded_requests, 10);
        assert_eq!(out.requests, n as u64);

        let mut s = Summary::new(Output::new(Box::new(io::sink())), true);
        for i in 0..(MAX_TARGETS + 5) {
            let target = Ipv4Addr::from(0xC633_6400u32 + i as u32).to_string();
            let mut ev = explained("203.0.113.10", &target, Some("203.0.113.10"), 1);
            ev.trigger.as_mut().unwrap().dport = Some(i as u16);
            s.add_event(&ev);
        }
        let out = s.snapshot(true);
        let r = &out.rows[0];
        assert_eq!(r.distinct_targets, MAX_TARGETS);
        assert!(r.distinct_targets_capped);
        assert_eq!(r.top_flows.len(), SHOW_TOP);
        assert_eq!(
            r.other_flows + r.top_flows.iter().map(|c| c.count).sum::<u64>(),
            r.requests
        );
    }

    #[test]
    fn prints_json_object_and_text_table() {
        let buf = Shared::default();
        let mut s = Summary::new(Output::new(Box::new(buf.clone())), true);
        let mut names = NetnsNames::with_dir("/nonexistent");
        s.arp(
            &explained("203.0.113.10", "198.51.100.20", Some("203.0.113.10"), 1),
            &mut names,
        )
        .unwrap();
        s.tick().unwrap();
        s.finish(&Counters::default()).unwrap();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
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
        let mut s = Summary::new(Output::new(Box::new(buf.clone())), false);
        s.arp(
            &explained("203.0.113.10", "198.51.100.20", Some("203.0.113.10"), 1),
            &mut names,
        )
        .unwrap();
        s.finish(&Counters::default()).unwrap();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
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
}
