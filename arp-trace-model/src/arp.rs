//! `{"type":"arp", ...}`: one ARP request or reply the host transmitted, with the packet that
//! triggered it, the neighbour's state, the verdict on its sender address and the facts the
//! verdict rests on. Field names and order are the public contract.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::facts::{Announce, EgressFacts, RequestFacts};
use crate::hex::Hex;
use crate::mac::Mac;
use crate::time::Time;
use crate::trigger::{Task, Trigger};
use crate::verdict::{Reason, Remedy, Verdict};
use crate::{limits, IfAddr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArpOp {
    Request,
    Reply,
}

/// Which way a frame crossed the device: sent by this host, or received from the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Received on the device (`netif_receive_skb`).
    In,
    /// Handed to the device for transmission (`net_dev_queue`). Traces before format 4 had
    /// only these, and carry no `direction`.
    #[default]
    Out,
}

// Read through a flat mirror (`Wire`): serde's `flatten` buffers every object into a generic
// map first, which made replay several times slower. Written with `flatten`, field order kept.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ArpEvent<'a> {
    pub op: ArpOp,
    pub direction: Direction,
    pub time: Time,
    pub netns: u32,
    pub netns_name: Option<Cow<'a, str>>,
    pub ifindex: u32,
    pub ifname: Cow<'a, str>,
    #[serde(serialize_with = "crate::addr::ser_ipv4")]
    pub sender_ip: Ipv4Addr,
    pub sender_mac: Mac,
    #[serde(serialize_with = "crate::addr::ser_ipv4")]
    pub target_ip: Ipv4Addr,
    pub target_mac: Mac,
    /// Sent to one station rather than the broadcast address.
    pub unicast: bool,
    /// Link-layer destination, when the frame had a link-layer header.
    pub eth_dst: Option<Mac>,
    /// The frame as handed to the device, from the link-layer header on.
    pub frame: Hex<'a>,
    /// The packet the kernel passed to `arp_solicit()`; null for probes with no queued packet
    /// (and for replies).
    pub trigger: Option<Trigger<'a>>,
    /// Gratuitous announcements the kernel sent on its own: the process they left in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task<'a>>,
    /// Neighbour entry state at the solicit (`incomplete`, `probe`, ...).
    pub neigh_state: Option<Cow<'a, str>>,
    /// 1 for the first request of a resolution, 2.. for retransmits.
    pub attempt: Option<u32>,
    /// Packets waiting on the entry.
    pub queued: Option<u32>,
    /// What the BPF program read from the egress device as the frame left. It overrides facts
    /// read a moment later, and travels in JSON as `facts`.
    #[serde(skip)]
    pub egress: Option<EgressFacts>,
    /// Requests only: why the kernel wrote this sender (`foreign_sender`, `reason`,
    /// `explanation`, `consequence`, `remedy`).
    #[serde(flatten)]
    pub verdict: Option<Verdict<'a>>,
    /// Requests only: the namespace facts the verdict was computed from, so it can be
    /// recomputed offline (`arp_announce`, `addrs`, `ns_addrs`).
    #[serde(flatten)]
    pub facts: Option<RequestFacts<'a>>,
    /// Why a request has no verdict (its namespace's facts could not be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts_error: Option<Cow<'a, str>>,
}

impl ArpEvent<'_> {
    pub fn is_request(&self) -> bool {
        self.op == ArpOp::Request
    }

    /// Received from the wire rather than sent by this host: no trigger, no verdict.
    pub fn received(&self) -> bool {
        self.direction == Direction::In
    }

    /// A request this host sent: what triggers, verdicts, summaries and `-c` are about.
    pub fn is_sent_request(&self) -> bool {
        self.is_request() && !self.received()
    }

    /// A request for the sender's own address: an announcement, not a resolution.
    pub fn is_gratuitous(&self) -> bool {
        self.is_request() && self.sender_ip == self.target_ip
    }

    /// Whether the verdict found the sender foreign to the egress interface.
    pub fn foreign(&self) -> bool {
        self.verdict.as_ref().is_some_and(|v| v.foreign_sender)
    }

    /// Whether every field read from a file is within [`crate::limits`].
    pub(crate) fn check(&self) -> Result<(), String> {
        limits::sent(
            self.netns_name.as_deref(),
            &self.ifname,
            &self.frame,
            self.trigger.as_ref(),
            self.neigh_state.as_deref(),
            self.verdict.as_ref(),
        )?;
        if let Some(t) = &self.task {
            limits::comm("task.comm", &t.comm)?;
        }
        if let Some(f) = &self.facts {
            f.check()?;
        }
        if let Some(e) = &self.facts_error {
            limits::text("facts_error", e)?;
        }
        Ok(())
    }

    pub fn into_owned(self) -> ArpEvent<'static> {
        ArpEvent {
            op: self.op,
            direction: self.direction,
            time: self.time,
            netns: self.netns,
            netns_name: self.netns_name.map(crate::own),
            ifindex: self.ifindex,
            ifname: crate::own(self.ifname),
            sender_ip: self.sender_ip,
            sender_mac: self.sender_mac,
            target_ip: self.target_ip,
            target_mac: self.target_mac,
            unicast: self.unicast,
            eth_dst: self.eth_dst,
            frame: self.frame.into_owned(),
            trigger: self.trigger.map(Trigger::into_owned),
            task: self.task.map(Task::into_owned),
            neigh_state: self.neigh_state.map(crate::own),
            attempt: self.attempt,
            queued: self.queued,
            egress: self.egress,
            verdict: self.verdict.map(Verdict::into_owned),
            facts: self.facts.map(RequestFacts::into_owned),
            facts_error: self.facts_error.map(crate::own),
        }
    }
}

fn addrs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<crate::Cidr>>, D::Error> {
    limits::opt_seq(d, limits::ADDRS, "addrs")
}

fn ns_addrs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<IfAddr<'de>>>, D::Error> {
    limits::opt_seq(d, limits::ADDRS, "ns_addrs")
}

fn links<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<crate::Link>>, D::Error> {
    limits::opt_seq(d, limits::INTERFACES, "links")
}

fn lenders<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<crate::Lender>>, D::Error> {
    limits::opt_seq(d, limits::INTERFACES, "lenders")
}

/// `ArpEvent` as it appears in JSON, every field at the top level.
#[derive(Deserialize)]
struct Wire<'a> {
    op: ArpOp,
    #[serde(default)]
    direction: Direction,
    time: Time,
    netns: u32,
    #[serde(default, deserialize_with = "crate::opt_str")]
    netns_name: Option<Cow<'a, str>>,
    ifindex: u32,
    #[serde(borrow)]
    ifname: Cow<'a, str>,
    sender_ip: Ipv4Addr,
    sender_mac: Mac,
    target_ip: Ipv4Addr,
    target_mac: Mac,
    unicast: bool,
    eth_dst: Option<Mac>,
    #[serde(borrow)]
    frame: Hex<'a>,
    #[serde(default, borrow)]
    trigger: Option<Trigger<'a>>,
    #[serde(default, borrow)]
    task: Option<Task<'a>>,
    #[serde(default, deserialize_with = "crate::opt_str")]
    neigh_state: Option<Cow<'a, str>>,
    #[serde(default)]
    attempt: Option<u32>,
    #[serde(default)]
    queued: Option<u32>,
    #[serde(default)]
    foreign_sender: Option<bool>,
    #[serde(default)]
    reason: Option<Reason>,
    #[serde(default, deserialize_with = "crate::opt_str")]
    explanation: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "crate::opt_str")]
    consequence: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    remedy: Option<Remedy<'a>>,
    #[serde(default)]
    arp_announce: Option<Announce>,
    #[serde(default, deserialize_with = "addrs")]
    addrs: Option<Vec<crate::Cidr>>,
    #[serde(default, borrow, deserialize_with = "ns_addrs")]
    ns_addrs: Option<Vec<IfAddr<'a>>>,
    #[serde(default)]
    route_localnet: Option<crate::Localnet>,
    #[serde(default, deserialize_with = "links")]
    links: Option<Vec<crate::Link>>,
    #[serde(default, deserialize_with = "lenders")]
    lenders: Option<Vec<crate::Lender>>,
    #[serde(default)]
    lenders_cut: bool,
    #[serde(default)]
    arp_notify: Option<bool>,
    #[serde(default, deserialize_with = "crate::opt_str")]
    facts_error: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for ArpEvent<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
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
        let facts = w.arp_announce.map(|arp_announce| RequestFacts {
            arp_announce,
            addrs: w.addrs.unwrap_or_default(),
            ns_addrs: w.ns_addrs.unwrap_or_default(),
            route_localnet: w.route_localnet,
            links: w.links,
            lenders: w.lenders,
            lenders_cut: w.lenders_cut,
            arp_notify: w.arp_notify,
        });
        Ok(ArpEvent {
            op: w.op,
            direction: w.direction,
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
            task: w.task,
            neigh_state: w.neigh_state,
            attempt: w.attempt,
            queued: w.queued,
            egress: None,
            verdict,
            facts,
            facts_error: w.facts_error,
        })
    }
}
