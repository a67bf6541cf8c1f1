//! [`Solicitation`]: an ARP request or an IPv6 neighbour solicitation seen the same way, by
//! what the summary, `diff` and the metrics count (namespace, interface, family, sender,
//! target, verdict, trigger). One view so that every consumer keys both families alike and a
//! third one would be added here once.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::arp::ArpEvent;
use crate::ndisc::NdiscEvent;
use crate::time::Time;
use crate::trigger::Trigger;
use crate::verdict::Verdict;

/// The address family of a record, a summary row or a `diff` group.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// ARP.
    #[default]
    Ipv4,
    /// Neighbour discovery.
    Ipv6,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }

    pub fn of(a: IpAddr) -> Family {
        match a {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }
}

/// A request for a link-layer address, whichever protocol asked.
#[derive(Clone, Copy, Debug)]
pub struct Solicitation<'r, 'a> {
    pub family: Family,
    pub time: Time,
    pub netns: u32,
    pub netns_name: Option<&'r str>,
    pub ifname: &'r str,
    pub sender_ip: IpAddr,
    pub target_ip: IpAddr,
    pub verdict: Option<&'r Verdict<'a>>,
    pub trigger: Option<&'r Trigger<'a>>,
    /// Asks for the sender's own address: an ARP announcement, or duplicate address detection.
    pub own_address: bool,
}

impl<'r, 'a> Solicitation<'r, 'a> {
    /// An ARP request; `None` for replies.
    pub fn of_arp(ev: &'r ArpEvent<'a>) -> Option<Self> {
        ev.is_sent_request().then(|| Solicitation {
            family: Family::Ipv4,
            time: ev.time,
            netns: ev.netns,
            netns_name: ev.netns_name.as_deref(),
            ifname: &ev.ifname,
            sender_ip: ev.sender_ip.into(),
            target_ip: ev.target_ip.into(),
            verdict: ev.verdict.as_ref(),
            trigger: ev.trigger.as_ref(),
            own_address: ev.is_gratuitous(),
        })
    }

    /// A neighbour solicitation; `None` for advertisements.
    pub fn of_ndisc(ev: &'r NdiscEvent<'a>) -> Option<Self> {
        ev.is_solicit().then(|| Solicitation {
            family: Family::Ipv6,
            time: ev.time,
            netns: ev.netns,
            netns_name: ev.netns_name.as_deref(),
            ifname: &ev.ifname,
            sender_ip: ev.sender_ip.into(),
            target_ip: ev.target_ip.into(),
            verdict: ev.verdict.as_ref(),
            trigger: ev.trigger.as_ref(),
            own_address: ev.is_dad(),
        })
    }

    pub fn foreign(&self) -> bool {
        self.verdict.is_some_and(|v| v.foreign_sender)
    }
}
