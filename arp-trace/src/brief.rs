//! The brief form of a trace's ARP event: only what the counters and the summary read. A
//! replay whose every sink is the summary (`-r FILE -q`) parses lines into it, borrowing
//! strings from the line and skipping the explanation, the frame and the facts, so reading a
//! trace costs no allocation per event; any line it cannot take whole goes to the full parse.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::attribution::Origin;
use crate::event::{ArpOp, Time};
use crate::explain::{Reason, Remedy};

/// A short string (interface names, comms, protocol names) kept inline when it fits, so
/// building a hash key or a brief event from one does not allocate.
#[derive(Clone)]
pub enum ShortStr {
    Inline { len: u8, buf: [u8; 22] },
    Heap(Box<str>),
}

impl ShortStr {
    pub fn new(s: &str) -> ShortStr {
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

    pub fn as_str(&self) -> &str {
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

/// What the counters and the summary read of an ARP event, borrowed from a full event or a
/// brief one.
#[derive(Debug, PartialEq)]
pub struct ArpView<'a> {
    pub op: ArpOp,
    pub time: Time,
    pub netns: u32,
    pub netns_name: Option<&'a str>,
    pub ifname: &'a str,
    pub sender_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
    /// `foreign_sender` and `reason` of the verdict, when the event has one.
    pub verdict: Option<(bool, Reason)>,
    pub remedy: Option<&'a Remedy>,
    pub trigger: Option<TriggerView<'a>>,
}

#[derive(Debug, PartialEq)]
pub struct TriggerView<'a> {
    pub proto: &'a str,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub dport: Option<u16>,
    pub icmp_type: Option<u8>,
    pub origin: Origin,
    pub pid: Option<u32>,
    pub comm: Option<&'a str>,
    pub in_ifname: Option<&'a str>,
}

impl crate::event::ArpEvent {
    pub fn view(&self) -> ArpView<'_> {
        ArpView {
            op: self.op,
            time: self.time,
            netns: self.netns,
            netns_name: self.netns_name.as_deref(),
            ifname: &self.ifname,
            sender_ip: self.sender_ip,
            target_ip: self.target_ip,
            verdict: self.verdict.as_ref().map(|v| (v.foreign_sender, v.reason)),
            remedy: self.verdict.as_ref().and_then(|v| v.remedy.as_ref()),
            trigger: self.trigger.as_ref().map(|t| TriggerView {
                proto: &t.proto,
                src: t.src,
                dst: t.dst,
                dport: t.dport,
                icmp_type: t.icmp_type,
                origin: t.origin,
                pid: t.pid,
                comm: t.comm.as_deref(),
                in_ifname: t.in_ifname.as_deref(),
            }),
        }
    }
}

/// An ARP event read for the summary only.
#[derive(Clone, Debug)]
pub struct BriefArp {
    pub op: ArpOp,
    pub time: Time,
    pub netns: u32,
    pub netns_name: Option<Arc<str>>,
    pub ifname: ShortStr,
    pub sender_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
    pub verdict: Option<(bool, Reason)>,
    pub remedy: Option<Arc<Remedy>>,
    pub trigger: Option<BriefTrigger>,
}

#[derive(Clone, Debug)]
pub struct BriefTrigger {
    pub proto: ShortStr,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub dport: Option<u16>,
    pub icmp_type: Option<u8>,
    pub origin: Origin,
    pub pid: Option<u32>,
    pub comm: Option<ShortStr>,
    pub in_ifname: Option<ShortStr>,
}

impl BriefArp {
    /// `netns_name` stands in for the event's own when it has none.
    pub fn view<'a>(&'a self, netns_name: Option<&'a str>) -> ArpView<'a> {
        ArpView {
            op: self.op,
            time: self.time,
            netns: self.netns,
            netns_name: self.netns_name.as_deref().or(netns_name),
            ifname: self.ifname.as_str(),
            sender_ip: self.sender_ip,
            target_ip: self.target_ip,
            verdict: self.verdict,
            remedy: self.remedy.as_deref(),
            trigger: self.trigger.as_ref().map(|t| TriggerView {
                proto: t.proto.as_str(),
                src: t.src,
                dst: t.dst,
                dport: t.dport,
                icmp_type: t.icmp_type,
                origin: t.origin,
                pid: t.pid,
                comm: t.comm.as_ref().map(ShortStr::as_str),
                in_ifname: t.in_ifname.as_ref().map(ShortStr::as_str),
            }),
        }
    }
}

/// The fields of `ArpEventWire` the summary reads; the rest are skipped unparsed. Strings are
/// borrowed: one with an escape fails this parse and takes the full one.
#[derive(Deserialize)]
struct Wire<'a> {
    op: ArpOp,
    time: Time,
    netns: u32,
    #[serde(borrow)]
    netns_name: Option<&'a str>,
    ifname: &'a str,
    sender_ip: Ipv4Addr,
    target_ip: Ipv4Addr,
    #[serde(default, borrow)]
    trigger: Option<TriggerWire<'a>>,
    #[serde(default)]
    foreign_sender: Option<bool>,
    #[serde(default)]
    reason: Option<Reason>,
    /// Only whether it is there: a verdict needs all three, as in `ArpEventWire`.
    #[serde(default)]
    explanation: Option<IgnoredAny>,
    #[serde(default, borrow)]
    remedy: Option<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct TriggerWire<'a> {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: &'a str,
    dport: Option<u16>,
    icmp_type: Option<u8>,
    origin: Origin,
    pid: Option<u32>,
    #[serde(borrow)]
    comm: Option<&'a str>,
    #[serde(borrow)]
    in_ifname: Option<&'a str>,
}

/// Entries a parser's caches hold before they are emptied (memory stays bounded).
const CACHE_MAX: usize = 1024;

/// Parses brief events; one per parsing thread. Namespace names and remedies repeat from
/// event to event, so each distinct one is allocated once and shared.
#[derive(Default)]
pub struct BriefParser {
    names: HashMap<Box<str>, Arc<str>>,
    remedies: HashMap<Box<str>, Arc<Remedy>>,
}

impl BriefParser {
    /// The brief event of an `{"type":"arp",...}` line; `None` when the line needs the full
    /// parse: a request without a verdict (the pipeline explains it from its facts), a
    /// string with escapes, or anything malformed (the full parse names the cause).
    pub fn parse(&mut self, line: &[u8]) -> Option<BriefArp> {
        // One UTF-8 check of the whole line is cheaper than serde_json's check of every key
        // and string a `from_slice` parse makes.
        let w: Wire = serde_json::from_str(std::str::from_utf8(line).ok()?).ok()?;
        let verdict = match (w.foreign_sender, w.reason, &w.explanation) {
            (Some(f), Some(r), Some(_)) => Some((f, r)),
            _ => None,
        };
        if w.op == ArpOp::Request && verdict.is_none() {
            return None;
        }
        let remedy = match w.remedy.map(|r| r.get()) {
            None | Some("null") => None,
            Some(raw) => Some(self.remedy(raw)?),
        };
        Some(BriefArp {
            op: w.op,
            time: w.time,
            netns: w.netns,
            netns_name: w.netns_name.map(|n| self.name(n)),
            ifname: ShortStr::new(w.ifname),
            sender_ip: w.sender_ip,
            target_ip: w.target_ip,
            // The full event drops the remedy with the rest of an incomplete verdict.
            remedy: remedy.filter(|_| verdict.is_some()),
            verdict,
            trigger: w.trigger.map(|t| BriefTrigger {
                proto: ShortStr::new(t.proto),
                src: t.src,
                dst: t.dst,
                dport: t.dport,
                icmp_type: t.icmp_type,
                origin: t.origin,
                pid: t.pid,
                comm: t.comm.map(ShortStr::new),
                in_ifname: t.in_ifname.map(ShortStr::new),
            }),
        })
    }

    fn name(&mut self, n: &str) -> Arc<str> {
        if let Some(a) = self.names.get(n) {
            return a.clone();
        }
        if self.names.len() >= CACHE_MAX {
            self.names.clear();
        }
        let a: Arc<str> = n.into();
        self.names.insert(n.into(), a.clone());
        a
    }

    fn remedy(&mut self, raw: &str) -> Option<Arc<Remedy>> {
        if let Some(r) = self.remedies.get(raw) {
            return Some(r.clone());
        }
        let r: Arc<Remedy> = Arc::new(serde_json::from_str(raw).ok()?);
        if self.remedies.len() >= CACHE_MAX {
            self.remedies.clear();
        }
        self.remedies.insert(raw.into(), r.clone());
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ArpEvent;

    fn explained(sender: &str, src: Option<&str>) -> ArpEvent {
        crate::summary::tests::explained(sender, "198.51.100.20", src, 0)
    }

    /// The brief parse of the JSON line of `ev`, checked against the full parse of it.
    fn brief_of(ev: &ArpEvent) -> Option<BriefArp> {
        let line = serde_json::to_string(ev).unwrap();
        let full: ArpEvent = serde_json::from_str(&line).unwrap();
        let brief = BriefParser::default().parse(line.as_bytes());
        if let Some(b) = &brief {
            assert_eq!(b.view(None), full.view(), "{line}");
        }
        brief
    }

    #[test]
    fn brief_events_read_what_full_events_read() {
        let foreign = explained("203.0.113.10", Some("203.0.113.10"));
        assert!(foreign.verdict.as_ref().unwrap().remedy.is_some());
        let b = brief_of(&foreign).expect("a foreign request with its remedy");
        assert!(b.remedy.is_some() && b.trigger.is_some());
        assert!(brief_of(&explained("198.51.100.10", None)).is_some());

        let mut reply = explained("198.51.100.10", None);
        reply.op = ArpOp::Reply;
        reply.verdict = None;
        assert!(brief_of(&reply).is_some());

        let mut long = foreign.clone();
        long.ifname = "an-interface-name-past-inline".into();
        long.netns_name = None;
        let t = long.trigger.as_mut().unwrap();
        (t.origin, t.pid, t.comm) = (Origin::Forwarded, None, None);
        t.in_ifname = Some("eth1".into());
        assert!(brief_of(&long).is_some());
    }

    #[test]
    fn lines_the_brief_parse_leaves_to_the_full_one() {
        // A request without a verdict: the pipeline explains it from its facts.
        let mut unexplained = explained("203.0.113.10", Some("203.0.113.10"));
        unexplained.verdict = None;
        assert!(brief_of(&unexplained).is_none());
        // Escaped strings cannot be borrowed.
        let mut escaped = explained("203.0.113.10", Some("203.0.113.10"));
        escaped.trigger.as_mut().unwrap().comm = Some("py\"thon".into());
        assert!(brief_of(&escaped).is_none());
        // Malformed lines get the full parse's error message.
        let mut p = BriefParser::default();
        let line = serde_json::to_string(&explained("198.51.100.10", None)).unwrap();
        let bad = line.replace("\"198.51.100.20\"", "\"198.51.100.999\"");
        assert_ne!(bad, line);
        assert!(p.parse(bad.as_bytes()).is_none());
        assert!(p.parse(&line.as_bytes()[..line.len() - 1]).is_none());
    }

    #[test]
    fn short_strings_inline_and_heap() {
        let a = ShortStr::new("eth3");
        assert!(matches!(a, ShortStr::Inline { len: 4, .. }));
        assert_eq!(a.as_str(), "eth3");
        let long = "a-name-longer-than-22-bytes";
        let b = ShortStr::new(long);
        assert!(matches!(b, ShortStr::Heap(_)));
        assert_eq!(b.as_str(), long);
        assert_eq!(ShortStr::new(""), ShortStr::new(""));
        assert_ne!(a, ShortStr::new("eth33"));
    }
}
