//! `{"type":"ndisc", ...}`: one IPv6 neighbour solicitation or advertisement the host
//! transmitted, with the packet that triggered it, the neighbour's state, the verdict on its
//! source address and the egress device's IPv6 addresses the verdict rests on. Its fields
//! match the ARP record's wherever they mean the same; field names and order are the public
//! contract.

use std::borrow::Cow;
use std::fmt;
use std::net::Ipv6Addr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hex::Hex;
use crate::limits;
use crate::mac::Mac;
use crate::time::Time;
use crate::trigger::Trigger;
use crate::verdict::{Reason, Remedy, Verdict};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NdiscOp {
    /// ICMPv6 type 135.
    Solicit,
    /// ICMPv6 type 136.
    Advert,
}

/// `inet6_ifaddr.flags` (`IFA_F_*`), written as the names `ip -6 addr` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags6(pub u32);

pub(crate) const FLAG_NAMES: [(u32, &str); 12] = [
    (0x01, "temporary"),
    (0x02, "nodad"),
    (0x04, "optimistic"),
    (0x08, "dadfailed"),
    (0x10, "homeaddress"),
    (0x20, "deprecated"),
    (0x40, "tentative"),
    (0x80, "permanent"),
    (0x100, "mngtmpaddr"),
    (0x200, "noprefixroute"),
    (0x400, "autojoin"),
    (0x800, "stable-privacy"),
];

impl Flags6 {
    pub const NODAD: u32 = 0x02;
    pub const OPTIMISTIC: u32 = 0x04;
    pub const DADFAILED: u32 = 0x08;
    pub const TENTATIVE: u32 = 0x40;

    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }

    /// The flags by name; bits without one as `0x...`.
    pub fn names(self) -> Vec<Cow<'static, str>> {
        let mut out: Vec<Cow<'static, str>> = FLAG_NAMES
            .iter()
            .filter(|(b, _)| self.0 & b != 0)
            .map(|(_, n)| Cow::Borrowed(*n))
            .collect();
        let known = FLAG_NAMES.iter().fold(0, |m, (b, _)| m | b);
        if self.0 & !known != 0 {
            out.push(format!("{:#x}", self.0 & !known).into());
        }
        out
    }
}

impl Serialize for Flags6 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

impl<'de> Deserialize<'de> for Flags6 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names: Vec<Cow<'de, str>> = limits::seq(d, FLAG_NAMES.len() + 1, "flags")?;
        let mut bits = 0;
        for n in names {
            bits |= match FLAG_NAMES.iter().find(|(_, name)| *name == n) {
                Some((b, _)) => *b,
                None => n
                    .strip_prefix("0x")
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        serde::de::Error::custom(format!(
                            "unknown address flag {:?}",
                            crate::text::clip(&n, limits::WORD)
                        ))
                    })?,
            };
        }
        Ok(Flags6(bits))
    }
}

/// `inet6_ifaddr.scope` (`IFA_*`), by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope6 {
    Global,
    Host,
    Link,
    Site,
    Other,
}

impl Scope6 {
    /// From the kernel's `IFA_*` value.
    pub fn from_kernel(scope: u16) -> Scope6 {
        match scope {
            0x00 => Scope6::Global,
            0x10 => Scope6::Host,
            0x20 => Scope6::Link,
            0x40 => Scope6::Site,
            _ => Scope6::Other,
        }
    }
}

/// One IPv6 address of the egress device as the kernel held it when the frame left, in the
/// device's list order (highest scope first; within a scope, newest first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct If6Addr {
    pub addr: Ipv6Addr,
    pub prefix_len: u8,
    pub scope: Scope6,
    pub flags: Flags6,
}

impl If6Addr {
    /// `ipv6_chk_addr_and_flags(..., IFA_F_TENTATIVE | IFA_F_OPTIMISTIC)`: an optimistic
    /// address counts as not tentative, and is then banned for being optimistic.
    pub fn usable_as_source(&self) -> bool {
        !self.flags.has(Flags6::TENTATIVE) && !self.flags.has(Flags6::OPTIMISTIC)
    }

    /// Whether `a` is within this address's prefix.
    pub fn contains(&self, a: Ipv6Addr) -> bool {
        let p = self.prefix_len.min(128) as u32;
        let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
        (u128::from(a) ^ u128::from(self.addr)) & mask == 0
    }
}

impl fmt::Display for If6Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// A neighbour advertisement's R, S and O flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvertFlags {
    pub router: bool,
    pub solicited: bool,
    #[serde(rename = "override")]
    pub override_: bool,
}

// Read through a flat mirror (`Wire`), as the ARP record is.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NdiscEvent<'a> {
    pub op: NdiscOp,
    /// Always `out` for now: only transmitted neighbour discovery is traced.
    pub direction: crate::arp::Direction,
    pub time: Time,
    pub netns: u32,
    pub netns_name: Option<Cow<'a, str>>,
    pub ifindex: u32,
    pub ifname: Cow<'a, str>,
    /// The IPv6 source.
    pub sender_ip: Ipv6Addr,
    /// The source link-layer option of a solicitation, the target link-layer option of an
    /// advertisement; null when absent (DAD sends none).
    pub sender_mac: Option<Mac>,
    pub target_ip: Ipv6Addr,
    /// The IPv6 destination: the target's solicited-node group, the target itself for a
    /// unicast probe, or the asker for an advertisement.
    pub dst_ip: Ipv6Addr,
    /// Sent to one station (a unicast IPv6 destination).
    pub unicast: bool,
    pub eth_dst: Option<Mac>,
    /// Advertisements only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advert: Option<AdvertFlags>,
    /// Duplicate address detection's nonce option is present (RFC 7527).
    pub nonce: bool,
    pub frame: Hex<'a>,
    /// The packet the kernel passed to `ndisc_solicit()`; null for probes with nothing queued,
    /// DAD and advertisements.
    pub trigger: Option<Trigger<'a>>,
    pub neigh_state: Option<Cow<'a, str>>,
    pub attempt: Option<u32>,
    pub queued: Option<u32>,
    /// Why the kernel wrote this source (`foreign_sender`, `reason`, `explanation`,
    /// `consequence`, `remedy`).
    #[serde(flatten)]
    pub verdict: Option<Verdict<'a>>,
    /// The egress device's IPv6 addresses as the frame left: what the verdict was computed
    /// from, so it can be recomputed offline.
    pub dev_addrs: Option<Vec<If6Addr>>,
    /// The device had more addresses than were read.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dev_addrs_cut: bool,
    /// Written by a process through a raw ICMPv6 socket, not by the kernel's ND code.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub user_socket: bool,
}

impl NdiscEvent<'_> {
    pub fn is_solicit(&self) -> bool {
        self.op == NdiscOp::Solicit
    }

    /// Duplicate address detection: a solicitation from the unspecified address.
    pub fn is_dad(&self) -> bool {
        self.is_solicit() && self.sender_ip.is_unspecified()
    }

    /// Whether the verdict found the source in none of the egress device's prefixes.
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
        )
    }

    pub fn into_owned(self) -> NdiscEvent<'static> {
        NdiscEvent {
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
            dst_ip: self.dst_ip,
            unicast: self.unicast,
            eth_dst: self.eth_dst,
            advert: self.advert,
            nonce: self.nonce,
            frame: self.frame.into_owned(),
            trigger: self.trigger.map(Trigger::into_owned),
            neigh_state: self.neigh_state.map(crate::own),
            attempt: self.attempt,
            queued: self.queued,
            verdict: self.verdict.map(Verdict::into_owned),
            dev_addrs: self.dev_addrs,
            dev_addrs_cut: self.dev_addrs_cut,
            user_socket: self.user_socket,
        }
    }
}

fn dev_addrs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<If6Addr>>, D::Error> {
    limits::opt_seq(d, limits::ADDRS, "dev_addrs")
}

/// `NdiscEvent` as it appears in JSON, every field at the top level.
#[derive(Deserialize)]
struct Wire<'a> {
    op: NdiscOp,
    #[serde(default)]
    direction: crate::arp::Direction,
    time: Time,
    netns: u32,
    #[serde(default, deserialize_with = "crate::opt_str")]
    netns_name: Option<Cow<'a, str>>,
    ifindex: u32,
    #[serde(borrow)]
    ifname: Cow<'a, str>,
    sender_ip: Ipv6Addr,
    sender_mac: Option<Mac>,
    target_ip: Ipv6Addr,
    dst_ip: Ipv6Addr,
    unicast: bool,
    eth_dst: Option<Mac>,
    #[serde(default)]
    advert: Option<AdvertFlags>,
    #[serde(default)]
    nonce: bool,
    #[serde(borrow)]
    frame: Hex<'a>,
    #[serde(default, borrow)]
    trigger: Option<Trigger<'a>>,
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
    #[serde(default, deserialize_with = "dev_addrs")]
    dev_addrs: Option<Vec<If6Addr>>,
    #[serde(default)]
    dev_addrs_cut: bool,
    #[serde(default)]
    user_socket: bool,
}

impl<'de: 'a, 'a> Deserialize<'de> for NdiscEvent<'a> {
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
        Ok(NdiscEvent {
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
            dst_ip: w.dst_ip,
            unicast: w.unicast,
            eth_dst: w.eth_dst,
            advert: w.advert,
            nonce: w.nonce,
            frame: w.frame,
            trigger: w.trigger,
            neigh_state: w.neigh_state,
            attempt: w.attempt,
            queued: w.queued,
            verdict,
            dev_addrs: w.dev_addrs,
            dev_addrs_cut: w.dev_addrs_cut,
            user_socket: w.user_socket,
        })
    }
}
