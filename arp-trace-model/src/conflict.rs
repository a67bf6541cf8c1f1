//! `{"type":"conflict", ...}`: an address claimed in a way peers complain about, seen in the ARP
//! frames a namespace's devices received: one address at a new MAC on the same link
//! (`ip_moved`), at different MACs on two links (`ip_on_two_links`), a sender outside the
//! receiving interface's subnets (`foreign_sender_received`), or one of the namespace's own
//! addresses claimed by another MAC (`duplicate_address`). When this host sent the frame that
//! shows it, `cause` names that request and why the kernel wrote its sender.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::limits;
use crate::mac::Mac;
use crate::time::Time;
use crate::verdict::Reason;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// The address answered from a new MAC on the same link within the window (arpwatch's
    /// "flip flop"): a failover, a duplicated VM, or two hosts fighting over it.
    IpMoved,
    /// The address announced at different MACs on two interfaces of this namespace: the seed
    /// as its dual-homed peer sees it.
    IpOnTwoLinks,
    /// A received frame's sender address is in none of the receiving interface's subnets.
    ForeignSenderReceived,
    /// Another MAC claims one of this namespace's own addresses (or probes for it).
    DuplicateAddress,
}

impl ConflictKind {
    pub fn code(self) -> &'static str {
        match self {
            ConflictKind::IpMoved => "ip_moved",
            ConflictKind::IpOnTwoLinks => "ip_on_two_links",
            ConflictKind::ForeignSenderReceived => "foreign_sender_received",
            ConflictKind::DuplicateAddress => "duplicate_address",
        }
    }
}

impl std::fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// This host's own request that put the address on the wire at that MAC, with the verdict
/// on its sender address (when it was explained).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConflictCause<'a> {
    pub time: Time,
    pub netns: u32,
    #[serde(default, deserialize_with = "crate::opt_str")]
    pub netns_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub ifname: Cow<'a, str>,
    pub sender_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
    #[serde(default)]
    pub reason: Option<Reason>,
    #[serde(default)]
    pub foreign_sender: Option<bool>,
    #[serde(default, deserialize_with = "crate::opt_str")]
    pub explanation: Option<Cow<'a, str>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conflict<'a> {
    pub kind: ConflictKind,
    /// When the frame that showed it (again) arrived.
    pub time: Time,
    /// Where it was seen: the receiving namespace and interface.
    pub netns: u32,
    #[serde(default, deserialize_with = "crate::opt_str")]
    pub netns_name: Option<Cow<'a, str>>,
    pub ifindex: u32,
    #[serde(borrow)]
    pub ifname: Cow<'a, str>,
    /// The address in question.
    pub ip: Ipv4Addr,
    /// The MAC that claims it in the frame just received.
    pub mac: Mac,
    /// `ip_moved`: the MAC it had before on this link; `ip_on_two_links`: its MAC on the other
    /// link; `duplicate_address`: null (the address is this namespace's own).
    #[serde(default)]
    pub other_mac: Option<Mac>,
    /// `ip_on_two_links`: the other interface; `foreign_sender_received`: the interface of
    /// this namespace whose subnet holds the address, if any; `duplicate_address`: the
    /// interface that has the address.
    #[serde(default, deserialize_with = "crate::opt_str")]
    pub other_ifname: Option<Cow<'a, str>>,
    /// The frame was gratuitous (an announcement of its own sender, as a failover sends).
    pub gratuitous: bool,
    /// `duplicate_address` from a probe (sender 0.0.0.0, RFC 5227): someone is about to take it.
    pub probe: bool,
    /// The first and last frame that showed this conflict, and how many did, so far.
    pub first_time: Time,
    pub last_time: Time,
    pub frames: u64,
    /// This host's own request behind the frame, when one of its namespaces sent it.
    #[serde(default, borrow)]
    pub cause: Option<ConflictCause<'a>>,
    /// `ip_moved`: whether the frame made the kernel point the receiving device's entry for
    /// the address at the new MAC, replacing the old one (`neigh_change`); null otherwise.
    #[serde(default)]
    pub overwritten: Option<bool>,
}

impl Conflict<'_> {
    /// Whether every field read from a file is within [`crate::limits`].
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Some(n) = &self.netns_name {
            limits::netns_name("netns_name", n)?;
        }
        limits::ifname("ifname", &self.ifname)?;
        if let Some(o) = &self.other_ifname {
            limits::ifname("other_ifname", o)?;
        }
        if let Some(c) = &self.cause {
            if let Some(n) = &c.netns_name {
                limits::netns_name("cause.netns_name", n)?;
            }
            limits::ifname("cause.ifname", &c.ifname)?;
            if let Some(e) = &c.explanation {
                limits::text("cause.explanation", e)?;
            }
        }
        Ok(())
    }

    pub fn into_owned(self) -> Conflict<'static> {
        Conflict {
            kind: self.kind,
            time: self.time,
            netns: self.netns,
            netns_name: self.netns_name.map(crate::own),
            ifindex: self.ifindex,
            ifname: crate::own(self.ifname),
            ip: self.ip,
            mac: self.mac,
            other_mac: self.other_mac,
            other_ifname: self.other_ifname.map(crate::own),
            gratuitous: self.gratuitous,
            probe: self.probe,
            first_time: self.first_time,
            last_time: self.last_time,
            frames: self.frames,
            cause: self.cause.map(|c| ConflictCause {
                time: c.time,
                netns: c.netns,
                netns_name: c.netns_name.map(crate::own),
                ifname: crate::own(c.ifname),
                sender_ip: c.sender_ip,
                target_ip: c.target_ip,
                reason: c.reason,
                foreign_sender: c.foreign_sender,
                explanation: c.explanation.map(crate::own),
            }),
            overwritten: self.overwritten,
        }
    }
}
