//! The decoded ARP event: what the rest of the pipeline (filters, sinks, explanations) works
//! on, and its JSON Lines form. Field names and order are the public contract.

use std::fmt;
use std::net::Ipv4Addr;

use arp_trace_common::{ArpXmitEvent, NO_MAC_HEADER};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::attribution::Trigger;
use crate::explain::{IfAddr, NsFacts, Verdict};
use crate::timefmt;

/// A link-layer (Ethernet) address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The form every writer uses, parsed without splitting (replay is hot).
        let b = s.as_bytes();
        if b.len() == 17 && (0..5).all(|i| b[3 * i + 2] == b':') {
            let mut out = [0u8; 6];
            for (i, o) in out.iter_mut().enumerate() {
                match (hex_digit(b[3 * i]), hex_digit(b[3 * i + 1])) {
                    (Some(h), Some(l)) => *o = h << 4 | l,
                    _ => return Err(format!("bad MAC address {s:?}")),
                }
            }
            return Ok(Mac(out));
        }
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split(':') {
            if n == 6 || part.len() != 2 {
                return Err(format!("bad MAC address {s:?}"));
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| format!("bad MAC address {s:?}"))?;
            n += 1;
        }
        if n != 6 {
            return Err(format!("bad MAC address {s:?}"));
        }
        Ok(Mac(out))
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArpOp {
    Request,
    Reply,
}

/// Wall-clock time in nanoseconds since the Unix epoch, written as RFC 3339 with nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(pub i128);

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&timefmt::rfc3339_nanos(self.0))
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        timefmt::parse_rfc3339(&s)
            .map(Time)
            .ok_or_else(|| serde::de::Error::custom(format!("bad RFC 3339 time {s:?}")))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Byte-wise, since replay decodes a frame per event (see tracefile.rs).
fn hex_decode(s: &[u8]) -> Result<Vec<u8>, &'static str> {
    if !s.len().is_multiple_of(2) {
        return Err("odd-length hex string");
    }
    s.chunks_exact(2)
        .map(|p| Some(hex_digit(p[0])? << 4 | hex_digit(p[1])?))
        .collect::<Option<Vec<u8>>>()
        .ok_or("bad hex string")
}

/// Raw frame bytes, written as lowercase hex.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Hex(pub Vec<u8>);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(self.0.len() * 2);
        for b in &self.0 {
            use fmt::Write;
            let _ = write!(out, "{b:02x}");
        }
        s.serialize_str(&out)
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex_decode(s.as_bytes())
            .map(Hex)
            .map_err(serde::de::Error::custom)
    }
}

/// One ARP request or reply the host transmitted.
// Read through a flat mirror: serde's `flatten` buffers every object into a generic map
// first, which made replay several times slower. Written with `flatten`, field order kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "ArpEventWire")]
pub struct ArpEvent {
    #[serde(rename = "type")]
    pub kind: ArpType,
    pub op: ArpOp,
    pub time: Time,
    pub netns: u32,
    pub netns_name: Option<String>,
    pub ifindex: u32,
    pub ifname: String,
    pub sender_ip: Ipv4Addr,
    pub sender_mac: Mac,
    pub target_ip: Ipv4Addr,
    pub target_mac: Mac,
    /// Sent to one station rather than the broadcast address.
    pub unicast: bool,
    /// Link-layer destination, when the frame had a link-layer header.
    pub eth_dst: Option<Mac>,
    /// The frame as handed to the device, from the link-layer header on.
    pub frame: Hex,
    /// The packet the kernel passed to `arp_solicit()`; null for probes with no queued packet
    /// (and for replies).
    #[serde(default)]
    pub trigger: Option<Trigger>,
    /// Neighbour entry state at the solicit (`incomplete`, `probe`, ...).
    #[serde(default)]
    pub neigh_state: Option<String>,
    /// 1 for the first request of a resolution, 2.. for retransmits.
    #[serde(default)]
    pub attempt: Option<u32>,
    /// Packets waiting on the entry.
    #[serde(default)]
    pub queued: Option<u32>,
    /// The egress device's `arp_announce` and addresses as the kernel held them while the
    /// frame left (read by the BPF program). They override what `facts` read a moment later,
    /// and travel in JSON as `facts`.
    #[serde(skip)]
    pub egress: Option<crate::devfacts::DevFacts>,
    /// Requests only: why the kernel wrote this sender (`foreign_sender`, `reason`,
    /// `explanation`, `consequence`, `remedy`).
    #[serde(flatten, default)]
    pub verdict: Option<Verdict>,
    /// Requests only: the namespace facts the verdict was computed from, so it can be
    /// recomputed offline (`arp_announce`, `addrs`, `ns_addrs`).
    #[serde(flatten, default)]
    pub facts: Option<EventFacts>,
    /// Why a request has no verdict (its namespace's facts could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts_error: Option<String>,
}

/// `ArpEvent` as it appears in JSON, every field at the top level.
#[derive(Deserialize)]
struct ArpEventWire {
    #[serde(rename = "type")]
    kind: ArpType,
    op: ArpOp,
    time: Time,
    netns: u32,
    netns_name: Option<String>,
    ifindex: u32,
    ifname: String,
    sender_ip: Ipv4Addr,
    sender_mac: Mac,
    target_ip: Ipv4Addr,
    target_mac: Mac,
    unicast: bool,
    eth_dst: Option<Mac>,
    frame: Hex,
    #[serde(default)]
    trigger: Option<Trigger>,
    #[serde(default)]
    neigh_state: Option<String>,
    #[serde(default)]
    attempt: Option<u32>,
    #[serde(default)]
    queued: Option<u32>,
    #[serde(default)]
    foreign_sender: Option<bool>,
    #[serde(default)]
    reason: Option<crate::explain::Reason>,
    #[serde(default)]
    explanation: Option<String>,
    #[serde(default)]
    consequence: Option<String>,
    #[serde(default)]
    remedy: Option<crate::explain::Remedy>,
    #[serde(default)]
    arp_announce: Option<Announce>,
    #[serde(default)]
    addrs: Option<Vec<String>>,
    #[serde(default)]
    ns_addrs: Option<Vec<IfAddr>>,
    #[serde(default)]
    facts_error: Option<String>,
}

impl From<ArpEventWire> for ArpEvent {
    fn from(w: ArpEventWire) -> ArpEvent {
        let verdict = match (w.foreign_sender, w.reason, w.explanation) {
            (Some(foreign_sender), Some(reason), Some(explanation)) => Some(Verdict {
                foreign_sender,
                reason,
                explanation,
                consequence: w.consequence,
                remedy: w.remedy,
            }),
            _ => None,
        };
        let facts = w.arp_announce.map(|arp_announce| EventFacts {
            arp_announce,
            addrs: w.addrs.unwrap_or_default(),
            ns_addrs: w.ns_addrs.unwrap_or_default(),
        });
        ArpEvent {
            kind: w.kind,
            op: w.op,
            time: w.time,
            netns: w.netns,
            netns_name: w.netns_name,
            ifindex: w.ifindex,
            ifname: w.ifname,
            sender_ip: w.sender_ip,
            sender_mac: w.sender_mac,
            target_ip: w.target_ip,
            target_mac: w.target_mac,
            unicast: w.unicast,
            eth_dst: w.eth_dst,
            frame: w.frame,
            trigger: w.trigger,
            neigh_state: w.neigh_state,
            attempt: w.attempt,
            queued: w.queued,
            egress: None,
            verdict,
            facts,
            facts_error: w.facts_error,
        }
    }
}

/// net.ipv4.conf.{all,<ifname>}.arp_announce at the request, and the kernel's max of both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    pub all: u8,
    /// `null` when the interface had no conf entry to read (it was gone); taken as 0.
    pub dev: Option<u8>,
    pub effective: u8,
}

/// The facts of a request's namespace, as carried on the event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventFacts {
    pub arp_announce: Announce,
    /// The egress interface's IPv4 addresses as `198.51.100.10/24`.
    pub addrs: Vec<String>,
    /// Every IPv4 address of every interface of the namespace, in the kernel's order.
    pub ns_addrs: Vec<IfAddr>,
}

impl EventFacts {
    /// The facts an event carries about its egress interface `ifname`.
    pub fn from_ns(facts: &NsFacts, ifname: &str) -> EventFacts {
        let dev = facts.announce_dev.get(ifname).copied();
        EventFacts {
            arp_announce: Announce {
                all: facts.announce_all,
                dev,
                effective: facts.announce_all.max(dev.unwrap_or(0)),
            },
            addrs: facts
                .addrs
                .iter()
                .filter(|a| a.ifname == ifname)
                .map(|a| format!("{}/{}", a.addr, a.prefix_len))
                .collect(),
            ns_addrs: facts.addrs.clone(),
        }
    }

    /// Back to what explain() consumes, for replaying an event offline.
    pub fn to_ns(&self, ifname: &str) -> NsFacts {
        NsFacts {
            announce_all: self.arp_announce.all,
            announce_dev: self
                .arp_announce
                .dev
                .map(|d| (ifname.to_string(), d))
                .into_iter()
                .collect(),
            addrs: self.ns_addrs.clone(),
        }
    }
}

/// The `"type"` tag of an ARP event; a unit type so it can only ever be `"arp"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ArpType;

impl Serialize for ArpType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("arp")
    }
}

impl<'de> Deserialize<'de> for ArpType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if s == "arp" {
            Ok(ArpType)
        } else {
            Err(serde::de::Error::custom(format!(
                "expected type \"arp\", got {s:?}"
            )))
        }
    }
}

/// Why a raw record did not become an event. Each is counted, never dropped silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not Ethernet/IPv4 ARP (e.g. IPoIB's 20-byte addresses), or too short.
    NotIpv4Arp,
    /// RARP, InARP and other opcodes.
    OtherOpcode(u16),
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

impl ArpEvent {
    /// Decodes a raw transmit record. `clock_offset` converts its monotonic stamp to wall time.
    pub fn decode(raw: &ArpXmitEvent, clock_offset: i128) -> Result<ArpEvent, Skip> {
        let caplen = (raw.caplen as usize)
            .min(raw.frame.len())
            .min(raw.skb_len as usize);
        let frame = &raw.frame[..caplen];
        let (eth_dst, arp) = if raw.mac_len == NO_MAC_HEADER {
            (None, frame)
        } else {
            let l2 = raw.mac_len as usize;
            let dst = if l2 >= 6 && frame.len() >= 6 {
                let mut m = [0u8; 6];
                m.copy_from_slice(&frame[..6]);
                Some(Mac(m))
            } else {
                None
            };
            (dst, frame.get(l2..).unwrap_or(&[]))
        };
        // htype(2) ptype(2) hlen(1) plen(1) op(2) sha(6) spa(4) tha(6) tpa(4)
        if arp.len() < 28 || arp[2..4] != [0x08, 0x00] || arp[4] != 6 || arp[5] != 4 {
            return Err(Skip::NotIpv4Arp);
        }
        let op = match u16::from_be_bytes([arp[6], arp[7]]) {
            1 => ArpOp::Request,
            2 => ArpOp::Reply,
            other => return Err(Skip::OtherOpcode(other)),
        };
        let mac = |o: usize| {
            let mut m = [0u8; 6];
            m.copy_from_slice(&arp[o..o + 6]);
            Mac(m)
        };
        let ip = |o: usize| Ipv4Addr::new(arp[o], arp[o + 1], arp[o + 2], arp[o + 3]);
        let unicast = match eth_dst {
            Some(d) => d != Mac::BROADCAST && d.0[0] & 1 == 0,
            None => false,
        };
        Ok(ArpEvent {
            kind: ArpType,
            op,
            time: Time(raw.ts_ns as i128 + clock_offset),
            netns: raw.netns,
            netns_name: None,
            ifindex: raw.ifindex,
            ifname: cstr(&raw.ifname),
            sender_ip: ip(14),
            sender_mac: mac(8),
            target_ip: ip(24),
            target_mac: mac(18),
            unicast,
            eth_dst,
            frame: Hex(frame.to_vec()),
            trigger: None,
            neigh_state: None,
            attempt: None,
            queued: None,
            egress: Some(crate::devfacts::DevFacts::from_raw(raw)),
            verdict: None,
            facts: None,
            facts_error: None,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arp_trace_common::{EVENT_ARP_XMIT, FRAME_CAP, HOOK_NET_DEV_QUEUE};

    /// An Ethernet ARP frame as the kernel builds it in `arp_create()`.
    pub fn frame(
        op: u16,
        dst: [u8; 6],
        smac: [u8; 6],
        sip: [u8; 4],
        tmac: [u8; 6],
        tip: [u8; 4],
    ) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&smac);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4]);
        f.extend_from_slice(&op.to_be_bytes());
        f.extend_from_slice(&smac);
        f.extend_from_slice(&sip);
        f.extend_from_slice(&tmac);
        f.extend_from_slice(&tip);
        f
    }

    pub fn raw(frame_bytes: &[u8], mac_len: u16) -> ArpXmitEvent {
        let mut fr = [0u8; FRAME_CAP];
        fr[..frame_bytes.len()].copy_from_slice(frame_bytes);
        let mut ifname = [0u8; 16];
        ifname[..4].copy_from_slice(b"eth3");
        ArpXmitEvent {
            kind: EVENT_ARP_XMIT,
            hook: HOOK_NET_DEV_QUEUE,
            ts_ns: 5_000_000_000,
            netns: 4026532281,
            ifindex: 7,
            iif: 0,
            mark: 0,
            skb_len: frame_bytes.len() as u32,
            cpu: 1,
            mac_len,
            caplen: FRAME_CAP as u16,
            _pad: 0,
            seq: 0,
            pid_tgid: 0,
            ifname,
            comm: [0; 16],
            frame: fr,
            // As from a kernel whose device facts could not be read: tests give facts.
            announce_all: -1,
            announce_dev: -1,
            n_addrs: 0,
            addrs_more: 0,
            _pad2: 0,
            addrs: [Default::default(); arp_trace_common::MAX_DEV_ADDRS],
        }
    }

    const SMAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];

    /// A broadcast request on `ifname` as decoded from the kernel, for other modules' tests.
    pub fn request_event(ifname: &str, sender: &str, target: &str) -> ArpEvent {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap().octets();
        let f = frame(1, [0xff; 6], SMAC, ip(sender), [0; 6], ip(target));
        let mut ev = ArpEvent::decode(&raw(&f, 14), 0).unwrap();
        ev.ifname = ifname.to_string();
        ev
    }

    #[test]
    fn decodes_a_broadcast_request() {
        let f = frame(
            1,
            [0xff; 6],
            SMAC,
            [203, 0, 113, 10],
            [0; 6],
            [198, 51, 100, 20],
        );
        let ev = ArpEvent::decode(&raw(&f, 14), 1_000).unwrap();
        assert_eq!(ev.op, ArpOp::Request);
        assert_eq!(ev.sender_ip, Ipv4Addr::new(203, 0, 113, 10));
        assert_eq!(ev.target_ip, Ipv4Addr::new(198, 51, 100, 20));
        assert_eq!(ev.sender_mac.to_string(), "02:00:00:00:00:10");
        assert!(!ev.unicast);
        assert_eq!(ev.ifname, "eth3");
        assert_eq!(ev.time, Time(5_000_001_000));
        // skb_len bounds the copy: no trailing garbage in the frame.
        assert_eq!(ev.frame.0, f);
    }

    #[test]
    fn decodes_unicast_probe_and_reply() {
        let peer = [0x02, 0, 0, 0, 0, 0x20];
        let f = frame(1, peer, SMAC, [198, 51, 100, 10], peer, [198, 51, 100, 20]);
        assert!(ArpEvent::decode(&raw(&f, 14), 0).unwrap().unicast);
        let f = frame(2, peer, SMAC, [198, 51, 100, 10], peer, [198, 51, 100, 20]);
        assert_eq!(ArpEvent::decode(&raw(&f, 14), 0).unwrap().op, ArpOp::Reply);
    }

    #[test]
    fn skips_what_it_cannot_decode() {
        let f = frame(3, [0xff; 6], SMAC, [1, 2, 3, 4], [0; 6], [1, 2, 3, 5]);
        assert_eq!(ArpEvent::decode(&raw(&f, 14), 0), Err(Skip::OtherOpcode(3)));
        let mut r = raw(&f, 14);
        r.skb_len = 30;
        assert_eq!(ArpEvent::decode(&r, 0), Err(Skip::NotIpv4Arp));
        let mut ipoib = frame(1, [0xff; 6], SMAC, [1, 2, 3, 4], [0; 6], [1, 2, 3, 5]);
        ipoib[18] = 20;
        assert_eq!(ArpEvent::decode(&raw(&ipoib, 14), 0), Err(Skip::NotIpv4Arp));
    }

    #[test]
    fn decodes_without_link_header() {
        let f = frame(
            1,
            [0xff; 6],
            SMAC,
            [203, 0, 113, 10],
            [0; 6],
            [198, 51, 100, 20],
        );
        let ev = ArpEvent::decode(&raw(&f[14..], NO_MAC_HEADER), 0).unwrap();
        assert_eq!(ev.eth_dst, None);
        assert_eq!(ev.target_ip, Ipv4Addr::new(198, 51, 100, 20));
    }

    #[test]
    fn json_round_trips_with_contract_field_names() {
        let f = frame(
            1,
            [0xff; 6],
            SMAC,
            [203, 0, 113, 10],
            [0; 6],
            [198, 51, 100, 20],
        );
        let mut ev = ArpEvent::decode(&raw(&f, 14), 1_795_894_257_000_000_000).unwrap();
        ev.netns_name = Some("srv".into());
        let line = serde_json::to_string(&ev).unwrap();
        assert!(line.starts_with(r#"{"type":"arp","op":"request","time":"2026-11-28T19:31:02.000000000Z","netns":4026532281,"netns_name":"srv","ifindex":7,"ifname":"eth3","sender_ip":"203.0.113.10","sender_mac":"02:00:00:00:00:10","target_ip":"198.51.100.20","target_mac":"00:00:00:00:00:00","unicast":false"#), "{line}");
        let back: ArpEvent = serde_json::from_str(&line).unwrap();
        // `egress` is internal: its values travel as `facts`.
        ev.egress = None;
        assert_eq!(back, ev);
    }

    #[test]
    fn mac_parsing() {
        assert_eq!("02:00:00:00:00:10".parse::<Mac>().unwrap(), Mac(SMAC));
        for bad in [
            "",
            "02:00",
            "02:00:00:00:00:10:11",
            "zz:00:00:00:00:10",
            "2:00:00:00:00:10",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }
}
