//! The summary's table: ARP requests and neighbour solicitations folded into one row per
//! (namespace, interface, family, sender IP, reason) with counts, distinct targets, first/last seen, the top triggering flows and
//! processes and the latest remedy. It is capped by rows and by bytes, whatever the input
//! (a trace can hold a million groups, or long names and texts in every one); what a cap
//! folds is counted.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use arp_trace_model::{
    Conflict, ConflictKind, ConflictRow, Count, Family, Origin, Reason, Remedy, Row, Solicitation,
    Summary, Time, Trigger, MAX_ROW_MACS,
};

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

impl Weigh for ShortStr {
    fn heap(&self) -> usize {
        match self {
            ShortStr::Inline { .. } => 0,
            ShortStr::Heap(s) => s.len(),
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
/// Bytes the table may hold (estimated from what each row, target, flow, process and remedy
/// keeps): a row that does not fit is folded like one beyond `MAX_ROWS`, a target that does not
/// fit makes the count a lower bound, a flow or process goes to `other`.
pub const MAX_BYTES: usize = 32 << 20;
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
    family: Family,
    sender_ip: IpAddr,
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

impl<K: std::hash::Hash + Eq + Clone + fmt::Display + Weigh> Top<K> {
    fn add(&mut self, name: &K, bytes: &mut Bytes) {
        if let Some(c) = self.counts.get_mut(name) {
            *c += 1;
        } else if self.counts.len() < MAX_TOP
            && bytes.take(std::mem::size_of::<(K, u64)>() + 8 + name.heap())
        {
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

/// The bytes a table holds, against [`MAX_BYTES`].
#[derive(Debug, Default)]
struct Bytes(usize);

impl Bytes {
    /// Counts `n` more bytes if they fit.
    fn take(&mut self, n: usize) -> bool {
        if self.0 + n > MAX_BYTES {
            return false;
        }
        self.0 += n;
        true
    }
}

/// What a key or name keeps on the heap, beyond its own size.
trait Weigh {
    fn heap(&self) -> usize;
}

fn remedy_bytes(r: &Remedy<'_>) -> usize {
    r.command.len() + r.persistent.len() + r.tradeoff.len()
}

#[derive(Debug)]
struct Acc {
    netns_name: Option<String>,
    foreign_sender: Option<bool>,
    remedy: Option<Remedy<'static>>,
    requests: u64,
    targets: HashSet<IpAddr>,
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
    Ports(ShortStr, IpAddr, IpAddr, u16),
    Icmp(IpAddr, IpAddr, u8),
    Other(ShortStr, IpAddr, IpAddr),
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

impl Weigh for FlowKey {
    fn heap(&self) -> usize {
        match self {
            FlowKey::Ports(p, ..) | FlowKey::Other(p, ..) => p.heap(),
            FlowKey::NoQueuedPacket | FlowKey::Icmp(..) => 0,
        }
    }
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowKey::NoQueuedPacket => write!(f, "(no queued packet)"),
            FlowKey::Ports(p, src, dst, dp) => {
                let dst = std::net::SocketAddr::new(*dst, *dp);
                write!(f, "{} {src} > {dst}", p.as_str())
            }
            FlowKey::Icmp(src, dst, ty) => {
                let icmp = if src.is_ipv6() { "icmpv6" } else { "icmp" };
                write!(f, "{icmp} {src} > {dst} type {ty}")
            }
            FlowKey::Other(p, src, dst) => write!(f, "{} {src} > {dst}", p.as_str()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Process {
    KernelReprobe,
    KernelAnnounce,
    Named(ShortStr, u32),
    PacketSocket(ShortStr, u32),
    Gone,
    Kernel,
    Forwarded(Option<ShortStr>),
}

impl Process {
    fn of(ev: &Solicitation<'_, '_>) -> Process {
        match ev.trigger {
            None if ev.own_address => Process::KernelAnnounce,
            None => Process::KernelReprobe,
            Some(t) => match (t.origin, &t.comm, t.pid) {
                (Origin::Local, Some(c), Some(p)) => Process::Named(ShortStr::new(c), p),
                (Origin::PacketSocket, Some(c), Some(p)) => {
                    Process::PacketSocket(ShortStr::new(c), p)
                }
                (Origin::Local | Origin::PacketSocket, _, _) => Process::Gone,
                (Origin::Kernel, _, _) => Process::Kernel,
                (Origin::Forwarded, _, _) => {
                    Process::Forwarded(t.in_ifname.as_deref().map(ShortStr::new))
                }
            },
        }
    }
}

impl Weigh for Process {
    fn heap(&self) -> usize {
        match self {
            Process::Named(c, _) | Process::PacketSocket(c, _) | Process::Forwarded(Some(c)) => {
                c.heap()
            }
            _ => 0,
        }
    }
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::KernelReprobe => write!(f, "(kernel re-probe)"),
            Process::KernelAnnounce => write!(f, "(kernel announcement)"),
            Process::Named(c, p) => write!(f, "{}[{p}]", c.as_str()),
            Process::PacketSocket(c, p) => write!(f, "{}[{p}] (packet socket)", c.as_str()),
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
    /// Conflicts by (namespace, interface, address, kind), capped at [`MAX_ROWS`]; a
    /// conflict past the cap is counted in `folded_conflicts`.
    conflicts: BTreeMap<(u32, String, std::net::Ipv4Addr, ConflictKind), ConflictRow<'static>>,
    folded_conflicts: u64,
    folded_requests: u64,
    requests: u64,
    foreign: u64,
    bytes: Bytes,
}

impl Table {
    /// Counts a conflict record into its row.
    pub fn add_conflict(&mut self, c: &Conflict<'_>) {
        let key = (c.netns, c.ifname.to_string(), c.ip, c.kind);
        if !self.conflicts.contains_key(&key) && self.conflicts.len() >= MAX_ROWS {
            self.folded_conflicts += 1;
            return;
        }
        let row = self.conflicts.entry(key).or_insert_with(|| ConflictRow {
            netns: c.netns,
            netns_name: None,
            ifname: Cow::Owned(c.ifname.to_string()),
            ip: c.ip,
            kind: c.kind,
            reports: 0,
            macs: Vec::new(),
            first_seen: c.first_time,
            last_seen: c.time,
        });
        if row.netns_name.is_none() {
            row.netns_name = c.netns_name.as_deref().map(|n| Cow::Owned(n.to_string()));
        }
        row.reports += 1;
        row.first_seen = row.first_seen.min(c.first_time);
        row.last_seen = row.last_seen.max(c.time);
        if !row.macs.contains(&c.mac) && row.macs.len() < MAX_ROW_MACS {
            row.macs.push(c.mac);
        }
    }

    /// Counts a request or solicitation (ARP replies and advertisements are `None`).
    pub fn add(&mut self, ev: Option<Solicitation<'_, '_>>) {
        let Some(ev) = ev else {
            return;
        };
        self.requests += 1;
        let foreign = ev.verdict.map(|v| v.foreign_sender);
        self.foreign += (foreign == Some(true)) as u64;
        let key = Key {
            netns: ev.netns,
            ifname: ShortStr::new(ev.ifname),
            family: ev.family,
            sender_ip: ev.sender_ip,
            reason: ev.verdict.map(|v| v.reason),
        };
        let netns_name = ev.netns_name;
        // One lookup for the usual case, a row already there.
        if let Some(row) = self.rows.get_mut(&key) {
            Self::count(row, &ev, netns_name, &mut self.bytes);
            return;
        }
        // The row itself and its slot, with room for the table to grow.
        let cost = 2 * std::mem::size_of::<(Key, Acc)>()
            + key.ifname.heap()
            + netns_name.map_or(0, str::len);
        // A row is kept with its remedy or not at all.
        let remedy = ev.verdict.and_then(|v| v.remedy.as_ref());
        let fits = self.bytes.0 + cost + remedy.map_or(0, remedy_bytes) <= MAX_BYTES;
        if self.rows.len() >= MAX_ROWS || !fits || !self.bytes.take(cost) {
            self.folded_requests += 1;
            return;
        }
        let row = self.rows.entry(key).or_insert_with(|| Acc {
            netns_name: netns_name.map(str::to_owned),
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
        Self::count(row, &ev, netns_name, &mut self.bytes);
    }

    /// Counts a request in its row.
    fn count(
        row: &mut Acc,
        ev: &Solicitation<'_, '_>,
        netns_name: Option<&str>,
        bytes: &mut Bytes,
    ) {
        row.requests += 1;
        row.first = row.first.min(ev.time);
        row.last = row.last.max(ev.time);
        if row.netns_name.is_none() {
            if let Some(n) = netns_name.filter(|n| bytes.take(n.len())) {
                row.netns_name = Some(n.to_owned());
            }
        }
        // The latest remedy: it reflects the sysctls as they are now. One that does not fit
        // leaves the one before.
        if let Some(r) = ev.verdict.and_then(|v| v.remedy.as_ref()) {
            if row.remedy.as_ref() != Some(r) {
                let old = row.remedy.as_ref().map_or(0, remedy_bytes);
                bytes.0 -= old;
                if bytes.take(remedy_bytes(r)) {
                    row.remedy = Some(r.clone().into_owned());
                } else {
                    bytes.0 += old;
                }
            }
        }
        if !row.targets.contains(&ev.target_ip) {
            // The key and a control byte per slot, at most half of them empty.
            let slot = std::mem::size_of::<IpAddr>() + 1;
            if row.targets.len() < MAX_TARGETS && bytes.take(2 * slot) {
                row.targets.insert(ev.target_ip);
            } else {
                row.targets_capped = true;
            }
        }
        row.flows.add(&FlowKey::of(ev.trigger), bytes);
        row.processes.add(&Process::of(ev), bytes);
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
                family: k.family,
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
            conflicts: self.conflicts.values().cloned().collect(),
            folded_conflicts: self.folded_conflicts,
            counts: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::summary::tests::explained;
    use arp_trace_model::ArpOp;
    use std::net::Ipv4Addr;

    #[test]
    fn rows_fold_by_key_and_foreign_rows_come_first() {
        let mut s = Table::default();
        for i in 0..5 {
            s.add(Solicitation::of_arp(&explained(
                "198.51.100.10",
                "198.51.100.20",
                None,
                100 + i,
            )));
        }
        for (i, target) in ["198.51.100.20", "198.51.100.21", "198.51.100.20"]
            .iter()
            .enumerate()
        {
            s.add(Solicitation::of_arp(&explained(
                "203.0.113.10",
                target,
                Some("203.0.113.10"),
                50 + i as i128,
            )));
        }
        let mut reply = explained("198.51.100.10", "198.51.100.20", None, 1);
        reply.op = ArpOp::Reply;
        s.add(Solicitation::of_arp(&reply));
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
            s.add(Solicitation::of_arp(&explained(
                &sender,
                "198.51.100.20",
                None,
                i as i128,
            )));
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
            s.add(Solicitation::of_arp(&ev));
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

    /// Rows with the longest remedies a trace may carry: the table stops at its byte cap, not
    /// at 4096 rows of 24 KiB each, and counts the requests it folds.
    #[test]
    fn the_byte_cap_folds_rows_and_counts_them() {
        let text = "x".repeat(arp_trace_model::limits::TEXT);
        let mut s = Table::default();
        let n = MAX_ROWS as u64;
        for i in 0..n {
            let foreign = "203.0.113.10";
            let mut ev = explained(foreign, "198.51.100.20", Some(foreign), i as i128);
            ev.netns = i as u32;
            let r = ev.verdict.as_mut().unwrap().remedy.as_mut().unwrap();
            (r.command, r.persistent, r.tradeoff) = (
                text.clone().into(),
                text.clone().into(),
                text.clone().into(),
            );
            s.add(Solicitation::of_arp(&ev));
        }
        assert!(s.bytes.0 <= MAX_BYTES, "{} bytes", s.bytes.0);
        let out = s.snapshot(true);
        let held: usize = out
            .rows
            .iter()
            .map(|r| r.remedy.as_ref().map_or(0, remedy_bytes))
            .sum();
        assert!(held <= MAX_BYTES, "{held} bytes of remedies kept");
        assert!(out.rows.len() < MAX_ROWS, "{} rows", out.rows.len());
        assert_eq!(out.folded_requests + out.rows.len() as u64, n);
        assert!(out.rows.iter().all(|r| r.remedy.is_some()));
    }
}
