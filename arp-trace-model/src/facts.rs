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

/// A namespace's facts at one moment: every IPv4 address, the sysctls arp_solicit() and
/// inet_select_addr() read, and the devices' VRF membership and list order.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct NsFacts<'a> {
    /// net.ipv4.conf.all.arp_announce (an int in the kernel: values above 2 act like 0)
    pub announce_all: i32,
    /// net.ipv4.conf.<ifname>.arp_announce; a missing interface is taken as the default 0.
    #[serde(default)]
    pub announce_dev: BTreeMap<String, i32>,
    /// Every IPv4 address of every interface, in the order the kernel lists them.
    #[serde(default, borrow)]
    pub addrs: Vec<IfAddr<'a>>,
    /// net.ipv4.conf.all.route_localnet
    #[serde(default)]
    pub localnet_all: bool,
    /// net.ipv4.conf.<ifname>.route_localnet, where set.
    #[serde(default)]
    pub localnet_dev: BTreeMap<String, bool>,
    /// The devices with a VRF role: VRF devices (their table) and their members (their master).
    #[serde(default)]
    pub links: Vec<Link>,
    /// The devices inet_select_addr() could borrow an address from, in the order the kernel
    /// walks its device list, as the BPF program read them while the frame left (only when
    /// the egress device had no address of its own to use). `lenders_cut`: the list went on.
    #[serde(default)]
    pub lenders: Option<Vec<Lender>>,
    #[serde(default)]
    pub lenders_cut: bool,
    /// IN_DEV_ARP_NOTIFY() of the egress device, when the BPF program read it.
    #[serde(default)]
    pub arp_notify: Option<bool>,
}

/// A device with an address inet_select_addr() may borrow: what in_dev_select_addr() finds
/// on it (its first primary address of universe or site scope).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Lender {
    pub ifname: String,
    pub addr: Ipv4Addr,
}

/// A device's place in the L3 (VRF) domains: a VRF device has a table, a member a master.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    pub ifname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifindex: Option<u32>,
    /// The VRF device this one is enslaved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// The FIB table of a VRF device (`IFLA_VRF_TABLE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrf_table: Option<u32>,
}

/// `route_localnet` as arp_solicit()'s device sees it: IN_DEV_ROUTE_LOCALNET() is
/// `all || dev`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Localnet {
    pub all: bool,
    pub dev: bool,
}

impl NsFacts<'_> {
    /// net.ipv4.conf.{all,<ifname>}.arp_announce and the value the kernel uses, max(all, dev).
    pub fn announce(&self, ifname: &str) -> (i32, i32, i32) {
        let all = self.announce_all;
        let dev = self.announce_dev.get(ifname).copied().unwrap_or(0);
        (all, dev, all.max(dev))
    }

    /// IN_DEV_ROUTE_LOCALNET() of `ifname`.
    pub fn localnet(&self, ifname: &str) -> bool {
        self.localnet_all || self.localnet_dev.get(ifname).copied().unwrap_or(false)
    }

    /// Whether the namespace has a VRF device (only then can any device belong to one).
    fn has_vrf(&self) -> bool {
        self.links.iter().any(|l| l.vrf_table.is_some())
    }

    /// The device's entry in `links`, if it has a VRF role.
    pub fn link(&self, ifname: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.ifname == ifname)
    }

    /// The VRF (L3 domain) a device belongs to: itself for a VRF device, its master for a
    /// member, none for the rest (the main tables). l3mdev_master_ifindex() by name.
    pub fn vrf_of(&self, ifname: &str) -> Option<&str> {
        // Most namespaces have no VRF: say so without comparing names.
        if !self.has_vrf() {
            return None;
        }
        let l = self.link(ifname)?;
        if l.vrf_table.is_some() {
            return Some(&l.ifname);
        }
        let m = l.master.as_deref()?;
        self.link(m)
            .filter(|v| v.vrf_table.is_some())
            .map(|v| v.ifname.as_str())
    }

    /// l3mdev_fib_table(): the FIB table of the device's VRF, `None` for the main tables.
    pub fn vrf_table_of(&self, ifname: &str) -> Option<u32> {
        self.vrf_of(ifname)
            .and_then(|v| self.link(v))
            .and_then(|l| l.vrf_table)
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
            localnet_all: self.localnet_all,
            localnet_dev: self.localnet_dev,
            links: self.links,
            lenders: self.lenders,
            lenders_cut: self.lenders_cut,
            arp_notify: self.arp_notify,
        }
    }

    /// The devices with a VRF role (a VRF, or a VRF's member): what a request record keeps.
    pub fn vrf_links(&self) -> Vec<Link> {
        if !self.has_vrf() {
            return Vec::new();
        }
        self.links
            .iter()
            .filter(|l| l.vrf_table.is_some() || self.vrf_of(&l.ifname).is_some())
            .map(|l| Link {
                ifindex: None,
                ..l.clone()
            })
            .collect()
    }

    /// The device with this ifindex, by its `links` entry.
    pub fn ifname_of(&self, ifindex: u32) -> Option<&str> {
        self.links
            .iter()
            .find(|l| l.ifindex == Some(ifindex))
            .map(|l| l.ifname.as_str())
    }
}

/// net.ipv4.conf.{all,<ifname>}.arp_announce at the request, and the kernel's max of both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    pub all: i32,
    /// `null` when the interface had no conf entry to read (it was gone); taken as 0.
    pub dev: Option<i32>,
    pub effective: i32,
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
    /// `route_localnet` of `all` and the egress device, when either is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_localnet: Option<Localnet>,
    /// VRF devices and members, when the namespace has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<Vec<Link>>,
    /// The devices the kernel could borrow an address from, in its order, when the egress
    /// device had none to use; `lenders_cut` when the program stopped before the list's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lenders: Option<Vec<Lender>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lenders_cut: bool,
    /// `arp_notify` of the egress device (all || dev), for gratuitous requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_notify: Option<bool>,
}

impl<'a> RequestFacts<'a> {
    /// The facts an event carries about its egress interface `ifname`; `gratuitous` keeps
    /// `arp_notify`, which only an announcement's explanation reads.
    pub fn from_ns(facts: &NsFacts<'a>, ifname: &str, gratuitous: bool) -> RequestFacts<'a> {
        let dev = facts.announce_dev.get(ifname).copied();
        RequestFacts {
            arp_announce: Announce {
                all: facts.announce_all,
                dev,
                effective: facts.announce_all.max(dev.unwrap_or(0)),
            },
            addrs: facts.addrs_of(ifname).map(IfAddr::cidr).collect(),
            ns_addrs: facts.addrs.clone(),
            route_localnet: facts.localnet(ifname).then(|| Localnet {
                all: facts.localnet_all,
                dev: facts.localnet_dev.get(ifname).copied().unwrap_or(false),
            }),
            links: Some(facts.vrf_links()).filter(|l| !l.is_empty()),
            lenders: facts.lenders.clone(),
            lenders_cut: facts.lenders_cut,
            arp_notify: facts.arp_notify.filter(|_| gratuitous),
        }
    }

    /// Whether every name read from a file is within [`crate::limits`]. The field's name is
    /// only formatted on failure: this runs for every address of every event replayed.
    pub(crate) fn check(&self) -> Result<(), String> {
        for (i, a) in self.ns_addrs.iter().enumerate() {
            limits::ifname("", &a.ifname).map_err(|e| format!("ns_addrs[{i}].ifname{e}"))?;
        }
        for (i, l) in self.links.iter().flatten().enumerate() {
            limits::ifname("", &l.ifname).map_err(|e| format!("links[{i}].ifname{e}"))?;
            if let Some(m) = &l.master {
                limits::ifname("", m).map_err(|e| format!("links[{i}].master{e}"))?;
            }
        }
        for (i, l) in self.lenders.iter().flatten().enumerate() {
            limits::ifname("", &l.ifname).map_err(|e| format!("lenders[{i}].ifname{e}"))?;
        }
        Ok(())
    }

    /// Back to the namespace's facts, for replaying an event offline.
    pub fn to_ns(&self, ifname: &str) -> NsFacts<'a> {
        let localnet = self.route_localnet;
        NsFacts {
            announce_all: self.arp_announce.all,
            announce_dev: self
                .arp_announce
                .dev
                .map(|d| (ifname.to_string(), d))
                .into_iter()
                .collect(),
            addrs: self.ns_addrs.clone(),
            localnet_all: localnet.is_some_and(|l| l.all),
            localnet_dev: localnet
                .map(|l| (ifname.to_string(), l.dev))
                .into_iter()
                .collect(),
            links: self.links.clone().unwrap_or_default(),
            lenders: self.lenders.clone(),
            lenders_cut: self.lenders_cut,
            arp_notify: self.arp_notify,
        }
    }

    pub fn into_owned(self) -> RequestFacts<'static> {
        RequestFacts {
            arp_announce: self.arp_announce,
            addrs: self.addrs,
            ns_addrs: self.ns_addrs.into_iter().map(IfAddr::into_owned).collect(),
            route_localnet: self.route_localnet,
            links: self.links,
            lenders: self.lenders,
            lenders_cut: self.lenders_cut,
            arp_notify: self.arp_notify,
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
    /// `route_localnet` and `arp_notify` of `all` and the device (`None`: not read).
    pub localnet_all: Option<bool>,
    pub localnet_dev: Option<bool>,
    pub notify_all: Option<bool>,
    pub notify_dev: Option<bool>,
    /// When the device had no address inet_select_addr() could use: the ifindex of every
    /// device of the namespace, in the kernel's list order (the order it borrows in);
    /// `walk_cut` when the list went on past what the program looked at.
    pub walk: Option<Vec<u32>>,
    pub walk_cut: bool,
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
    pub before: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i32>,
    /// `watched`: arp_announce of `all` and of every interface.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "announce_map"
    )]
    pub arp_announce: Option<BTreeMap<String, i32>>,
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
) -> Result<Option<BTreeMap<String, i32>>, D::Error> {
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
            limits::ifname("", &a.ifname).map_err(|e| format!("addrs[{i}].ifname{e}"))?;
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
        peer: None,
    }
}
