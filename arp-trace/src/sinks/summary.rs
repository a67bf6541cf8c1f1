//! The summary: ARP requests folded into one row per (namespace, interface, sender IP, reason)
//! with counts, distinct targets, first/last seen and the top triggering flows and processes,
//! foreign senders first with their remedy. Every table is capped; what a cap folds is counted.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};
use std::net::Ipv4Addr;

use arp_trace_model::{
    ArpEvent, Count, Origin, Reason, Record, Remedy, Row, Summary, Time, Trigger,
};

use super::text::{label, local_clock_micros};
use super::Output;
use crate::pipeline::{Counters, Sink};

/// A short string (interface names, comms, protocol names) kept inline when it fits, so
/// building a hash key from one does not allocate.
#[derive(Clone)]
enum ShortStr {
    Inline { len: u8, buf: [u8; 22] },
    Heap(Box<str>),
}

impl ShortStr {
    fn new(s: &str) -> ShortStr {
        let mut buf = [0u8; 22];
        match buf.get_mut(..s.len()) {
            Some(b) => {
                b.copy_from_slice(s.as_bytes());
                ShortStr::Inline {
                    len: s.len() as u8,
                    buf,
                }
            }
            None => ShortStr::Heap(s.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Always a whole copy of a str, so valid UTF-8.
            ShortStr::Inline { len, buf } => std::str::from_utf8(&buf[..*len as usize])
                .expect("inline ShortStr holds a copied str"),
            ShortStr::Heap(s) => s,
        }
    }
}

impl PartialEq for ShortStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}
impl Eq for ShortStr {}
impl std::hash::Hash for ShortStr {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}
impl fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

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
struct Acc {
    netns_name: Option<String>,
    foreign_sender: Option<bool>,
    remedy: Option<Remedy<'static>>,
    requests: u64,
    targets: HashSet<Ipv4Addr>,
    targets_capped: bool,
    first: Time,
    last: Time,
    flows: Top<FlowKey>,
    processes: Top<Process>,
}

/// `udp 203.0.113.10 > 198.51.100.20:9`: the trigger without the source port, which changes
/// with every connection and would split one flow into many. Named only when printed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum FlowKey {
    NoQueuedPacket,
    Ports(ShortStr, Ipv4Addr, Ipv4Addr, u16),
    Icmp(Ipv4Addr, Ipv4Addr, u8),
    Other(ShortStr, Ipv4Addr, Ipv4Addr),
}

impl FlowKey {
    fn of(t: Option<&Trigger<'_>>) -> FlowKey {
        match t {
            None => FlowKey::NoQueuedPacket,
            Some(t) => match (t.dport, t.icmp_type) {
                (Some(dp), _) => FlowKey::Ports(ShortStr::new(&t.proto), t.src, t.dst, dp),
                (None, Some(ty)) => FlowKey::Icmp(t.src, t.dst, ty),
                _ => FlowKey::Other(ShortStr::new(&t.proto), t.src, t.dst),
            },
        }
    }
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowKey::NoQueuedPacket => write!(f, "(no queued packet)"),
            FlowKey::Ports(p, src, dst, dp) => write!(f, "{} {src} > {dst}:{dp}", p.as_str()),
            FlowKey::Icmp(src, dst, ty) => write!(f, "icmp {src} > {dst} type {ty}"),
            FlowKey::Other(p, src, dst) => write!(f, "{} {src} > {dst}", p.as_str()),
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
    fn of(t: Option<&Trigger<'_>>) -> Process {
        match t {
            None => Process::KernelReprobe,
            Some(t) => match (t.origin, &t.comm, t.pid) {
                (Origin::Local, Some(c), Some(p)) => Process::Named(ShortStr::new(c), p),
                (Origin::Local, _, _) => Process::Gone,
                (Origin::Kernel, _, _) => Process::Kernel,
                (Origin::Forwarded, _, _) => {
                    Process::Forwarded(t.in_ifname.as_deref().map(ShortStr::new))
                }
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

/// Folds requests into rows: what the summary prints and a trace's trailer holds.
#[derive(Default)]
pub struct Table {
    rows: HashMap<Key, Acc>,
    folded_requests: u64,
    requests: u64,
    foreign: u64,
}

impl Table {
    pub fn add(&mut self, ev: &ArpEvent<'_>) {
        if !ev.is_request() {
            return;
        }
        self.requests += 1;
        let foreign = ev.verdict.as_ref().map(|v| v.foreign_sender);
        self.foreign += (foreign == Some(true)) as u64;
        let key = Key {
            netns: ev.netns,
            ifname: ShortStr::new(&ev.ifname),
            sender_ip: ev.sender_ip,
            reason: ev.verdict.as_ref().map(|v| v.reason),
        };
        if !self.rows.contains_key(&key) && self.rows.len() >= MAX_ROWS {
            self.folded_requests += 1;
            return;
        }
        let row = self.rows.entry(key).or_insert_with(|| Acc {
            netns_name: ev.netns_name.as_deref().map(str::to_owned),
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
            row.netns_name = ev.netns_name.as_deref().map(str::to_owned);
        }
        // The latest remedy: it reflects the sysctls as they are now.
        if let Some(r) = ev.verdict.as_ref().and_then(|v| v.remedy.as_ref()) {
            if row.remedy.as_ref() != Some(r) {
                row.remedy = Some(r.clone().into_owned());
            }
        }
        if row.targets.len() < MAX_TARGETS {
            row.targets.insert(ev.target_ip);
        } else if !row.targets.contains(&ev.target_ip) {
            row.targets_capped = true;
        }
        row.flows.add(&FlowKey::of(ev.trigger.as_ref()));
        row.processes.add(&Process::of(ev.trigger.as_ref()));
    }

    /// The `summary` record: rows in print order, foreign senders first, then by request count.
    pub fn snapshot(&self, last: bool) -> Summary<'static> {
        let mut rows: Vec<Row<'static>> = self
            .rows
            .iter()
            .map(|(k, r)| Row {
                netns: k.netns,
                netns_name: r.netns_name.clone().map(Cow::Owned),
                ifname: Cow::Owned(k.ifname.as_str().to_owned()),
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
        Summary {
            last,
            requests: self.requests,
            foreign_requests: self.foreign,
            rows,
            folded_requests: self.folded_requests,
            counts: None,
        }
    }
}

/// The summary as text: a header line, then each row with its flows, processes and remedy.
pub fn text(s: &Summary<'_>, own: Option<u32>) -> String {
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
            label(r.netns_name.as_deref(), r.netns, &r.ifname, own),
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
        self.out.flush()
    }
}

impl Sink for SummarySink {
    fn record(&mut self, rec: &Record<'_>) -> io::Result<()> {
        if let Record::Arp(ev) = rec {
            self.table.add(ev);
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
    use arp_trace_model::{ArpOp, Held};

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
    fn rows_fold_by_key_and_foreign_rows_come_first() {
        let mut s = Table::default();
        for i in 0..5 {
            s.add(&explained("198.51.100.10", "198.51.100.20", None, 100 + i));
        }
        for (i, target) in ["198.51.100.20", "198.51.100.21", "198.51.100.20"]
            .iter()
            .enumerate()
        {
            s.add(&explained(
                "203.0.113.10",
                target,
                Some("203.0.113.10"),
                50 + i as i128,
            ));
        }
        let mut reply = explained("198.51.100.10", "198.51.100.20", None, 1);
        reply.op = ArpOp::Reply;
        s.add(&reply);
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
        let mut s = Table::default();
        let n = MAX_ROWS + 10;
        for i in 0..n {
            let sender = Ipv4Addr::from(0xC612_0000u32 + i as u32).to_string();
            s.add(&explained(&sender, "198.51.100.20", None, i as i128));
        }
        let out = s.snapshot(true);
        assert_eq!(out.rows.len(), MAX_ROWS);
        assert_eq!(out.folded_requests, 10);
        assert_eq!(out.requests, n as u64);

        let mut s = Table::default();
        for i in 0..(MAX_TARGETS + 5) {
            let target = Ipv4Addr::from(0xC633_6400u32 + i as u32).to_string();
            let mut ev = explained("203.0.113.10", &target, Some("203.0.113.10"), 1);
            ev.trigger.as_mut().unwrap().dport = Some(i as u16);
            s.add(&ev);
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
}
