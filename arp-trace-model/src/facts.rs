//! The facts `arp_solicit()` consults in a namespace, in the shapes they travel in: the whole
//! namespace ([`NsFacts`]), what a request record carries ([`RequestFacts`]), what the BPF
//! program read from the egress device as the frame left ([`EgressFacts`]), and the record of a
//! change ([`FactsChange`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::addr::{Cidr, IfAddr};
use crate::limits;
use crate::time::Time;

/// A namespace's facts at one moment: every IPv4 address and the arp_announce sysctls.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct NsFacts<'a> {
    /// net.ipv4.conf.all.arp_announce
    pub announce_all: u8,
    /// net.ipv4.conf.<ifname>.arp_announce; a missing interface is taken as the default 0.
    #[serde(default)]
    pub announce_dev: BTreeMap<String, u8>,
    /// Every IPv4 address of every interface, in the order the kernel lists them.
    #[serde(default, borrow)]
    pub addrs: Vec<IfAddr<'a>>,
}

impl NsFacts<'_> {
    /// net.ipv4.conf.{all,<ifname>}.arp_announce and the value the kernel uses, max(all, dev).
    pub fn announce(&self, ifname: &str) -> (u8, u8, u8) {
        let all = self.announce_all;
        let dev = self.announce_dev.get(ifname).copied().unwrap_or(0);
        (all, dev, all.max(dev))
    }

    /// The addresses of one interface, in the kernel's order.
    pub fn addrs_of<'s>(&'s self, ifname: &'s str) -> impl Iterator<Item = &'s IfAddr<'s>> + 's {
        self.addrs.iter().filter(move |a| a.ifname == ifname)
    }

    pub fn into_owned(self) -> NsFacts<'static> {
        NsFacts {
            announce_all: self.announce_all,
            announce_dev: self.announce_dev,
            addrs: self.addrs.into_iter().map(IfAddr::into_owned).collect(),
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

/// The facts a request record carries, so its verdict can be recomputed offline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestFacts<'a> {
    pub arp_announce: Announce,
    /// The egress interface's IPv4 addresses.
    pub addrs: Vec<Cidr>,
    /// Every IPv4 address of every interface of the namespace, in the kernel's order.
    #[serde(borrow)]
    pub ns_addrs: Vec<IfAddr<'a>>,
}

impl<'a> RequestFacts<'a> {
    /// The facts an event carries about its egress interface `ifname`.
    pub fn from_ns(facts: &NsFacts<'a>, ifname: &str) -> RequestFacts<'a> {
        let dev = facts.announce_dev.get(ifname).copied();
        RequestFacts {
            arp_announce: Announce {
                all: facts.announce_all,
                dev,
                effective: facts.announce_all.max(dev.unwrap_or(0)),
            },
            addrs: facts.addrs_of(ifname).map(IfAddr::cidr).collect(),
            ns_addrs: facts.addrs.clone(),
        }
    }

    /// Back to the namespace's facts, for replaying an event offline.
    pub fn to_ns(&self, ifname: &str) -> NsFacts<'a> {
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

    pub fn into_owned(self) -> RequestFacts<'static> {
        RequestFacts {
            arp_announce: self.arp_announce,
            addrs: self.addrs,
            ns_addrs: self.ns_addrs.into_iter().map(IfAddr::into_owned).collect(),
        }
    }
}

/// What the BPF program read from the egress device while the frame left: exact at the moment
/// of the request, unlike anything read later. Never written to a trace: its values travel as
/// the request's [`RequestFacts`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressFacts {
    /// `net.ipv4.conf.all.arp_announce` of the device's namespace.
    pub announce_all: Option<i32>,
    /// `net.ipv4.conf.<dev>.arp_announce`; `None` also when the device has no IPv4 config.
    pub announce_dev: Option<i32>,
    /// In the kernel's order: primary addresses first.
    pub addrs: Vec<IfAddr<'static>>,
    /// The device had more addresses than the program copies.
    pub truncated: bool,
}

/// What a [`FactsChange`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The tracer started watching the namespace: `arp_announce` and `addrs` hold its state.
    Watched,
    /// `ifname` gained `addr`/`prefix_len`.
    AddrAdded,
    /// `ifname` lost `addr`/`prefix_len`.
    AddrRemoved,
    /// `net.ipv4.conf.<conf>.arp_announce` went from `before` (absent: a new interface) to
    /// `after`.
    ArpAnnounce,
}

/// `{"type":"facts_change", ...}`: a change in the facts arp_solicit() consults, so a reader
/// can rebuild a namespace's state at any moment of a trace. Fields not used by a kind are
/// left out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FactsChange<'a> {
    /// When the tracer observed it (wall clock); the change itself may be a little older.
    pub time: Time,
    pub netns: u32,
    pub netns_name: Option<String>,
    pub change: ChangeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_len: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<bool>,
    /// `all` or an interface name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u8>,
    /// `watched`: arp_announce of `all` and of every interface.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "announce_map"
    )]
    pub arp_announce: Option<BTreeMap<String, u8>>,
    /// `watched`: every IPv4 address of the namespace.
    #[serde(
        default,
        borrow,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "watched_addrs"
    )]
    pub addrs: Option<Vec<IfAddr<'a>>>,
}

fn announce_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, u8>>, D::Error> {
    limits::opt_map(d, limits::INTERFACES, "arp_announce")
}

fn watched_addrs<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<IfAddr<'de>>>, D::Error> {
    limits::opt_seq(d, limits::ADDRS, "addrs")
}

impl<'a> FactsChange<'a> {
    /// Whether every field read from a file is within [`crate::limits`].
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Some(n) = &self.netns_name {
            limits::netns_name("netns_name", n)?;
        }
        if let Some(i) = &self.ifname {
            limits::ifname("ifname", i)?;
        }
        if let Some(c) = &self.conf {
            limits::ifname("conf", c)?;
        }
        for k in self.arp_announce.iter().flat_map(BTreeMap::keys) {
            limits::ifname("arp_announce", k)?;
        }
        for (i, a) in self.addrs.iter().flatten().enumerate() {
            limits::ifname(&format!("addrs[{i}].ifname"), &a.ifname)?;
        }
        Ok(())
    }

    /// A change of `netns` noticed now.
    pub fn new(netns: u32, change: ChangeKind) -> FactsChange<'a> {
        FactsChange {
            time: Time::now(),
            netns,
            netns_name: None,
            change,
            ifname: None,
            addr: None,
            prefix_len: None,
            scope: None,
            secondary: None,
            conf: None,
            before: None,
            after: None,
            arp_announce: None,
            addrs: None,
        }
    }

    /// An address added or removed.
    pub fn addr(netns: u32, change: ChangeKind, a: &IfAddr<'_>) -> FactsChange<'a> {
        FactsChange {
            ifname: Some(a.ifname.to_string()),
            addr: Some(a.addr),
            prefix_len: Some(a.prefix_len),
            scope: a.scope,
            secondary: a.secondary,
            ..FactsChange::new(netns, change)
        }
    }

    /// The interface (or `all`) the change is about; `None` for the whole namespace.
    pub fn subject(&self) -> Option<&str> {
        self.ifname.as_deref().or(self.conf.as_deref())
    }

    pub fn into_owned(self) -> FactsChange<'static> {
        FactsChange {
            time: self.time,
            netns: self.netns,
            netns_name: self.netns_name,
            change: self.change,
            ifname: self.ifname,
            addr: self.addr,
            prefix_len: self.prefix_len,
            scope: self.scope,
            secondary: self.secondary,
            conf: self.conf,
            before: self.before,
            after: self.after,
            arp_announce: self.arp_announce,
            addrs: self
                .addrs
                .map(|v| v.into_iter().map(IfAddr::into_owned).collect()),
        }
    }
}

/// Helps tests and callers build facts by hand.
pub fn if_addr(ifname: &str, addr: Ipv4Addr, prefix_len: u8) -> IfAddr<'static> {
    IfAddr {
        ifname: Cow::Owned(ifname.to_string()),
        addr,
        prefix_len,
        scope: None,
        secondary: None,
    }
}
