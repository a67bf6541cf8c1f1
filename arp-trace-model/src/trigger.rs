//! The packet whose transmission made the kernel solicit (or that it dropped when the
//! resolution failed), and who sent it.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::limits;

/// Who sent the triggering packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A process's socket; pid and comm are known unless it exited before we looked.
    Local,
    /// No process: ICMP errors, TCP resets, kernel sockets, TIME_WAIT.
    Kernel,
    /// Routed through the host, received on `in_ifname`.
    Forwarded,
    /// The ARP frame itself, written by a process (pid, comm) through a packet socket.
    #[serde(rename = "packet_socket")]
    PacketSocket,
}

/// The process a frame left in when no packet asked for it: a gratuitous announcement runs in
/// the context of whatever raised the event (`ip link set eth3 up`, or a kworker).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task<'a> {
    pub pid: u32,
    #[serde(borrow)]
    pub comm: Cow<'a, str>,
}

impl Task<'_> {
    pub fn into_owned(self) -> Task<'static> {
        Task {
            pid: self.pid,
            comm: crate::own(self.comm),
        }
    }

    /// A kernel worker thread: the event came from the kernel itself (a bond's failover, a
    /// delayed notification), not from a command.
    pub fn is_kernel_thread(&self) -> bool {
        self.pid == 0 || self.comm.starts_with("kworker") || self.comm.starts_with("ksoftirqd")
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trigger<'a> {
    /// IPv4 for an ARP request's packet, IPv6 for a neighbour solicitation's.
    #[serde(serialize_with = "crate::addr::ser_ip")]
    pub src: IpAddr,
    #[serde(serialize_with = "crate::addr::ser_ip")]
    pub dst: IpAddr,
    /// `udp`, `tcp`, `icmp`, `icmpv6`, or the IP protocol (next header) number.
    #[serde(borrow)]
    pub proto: Cow<'a, str>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub icmp_type: Option<u8>,
    /// IP total length (IPv6: payload length plus the 40-byte header).
    pub len: u32,
    pub mark: u32,
    pub origin: Origin,
    pub pid: Option<u32>,
    #[serde(default, deserialize_with = "crate::opt_str")]
    pub comm: Option<Cow<'a, str>>,
    /// Input interface of forwarded packets.
    pub in_ifindex: Option<u32>,
    #[serde(default, deserialize_with = "crate::opt_str")]
    pub in_ifname: Option<Cow<'a, str>>,
    /// For dropped packets: `neigh_failed` or `neigh_queuefull`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::opt_str"
    )]
    pub drop_reason: Option<Cow<'a, str>>,
}

impl Trigger<'_> {
    /// The source when it is IPv4 (the packet of an ARP request).
    pub fn src_v4(&self) -> Option<std::net::Ipv4Addr> {
        match self.src {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }

    /// Whether every field read from a file is within [`crate::limits`]; `at` names the
    /// trigger in the record.
    pub(crate) fn check(&self, at: &str) -> Result<(), String> {
        limits::word("", &self.proto).map_err(|e| format!("{at}.proto{e}"))?;
        if let Some(c) = &self.comm {
            limits::comm("", c).map_err(|e| format!("{at}.comm{e}"))?;
        }
        if let Some(i) = &self.in_ifname {
            limits::ifname("", i).map_err(|e| format!("{at}.in_ifname{e}"))?;
        }
        if let Some(r) = &self.drop_reason {
            limits::word("", r).map_err(|e| format!("{at}.drop_reason{e}"))?;
        }
        Ok(())
    }

    pub fn into_owned(self) -> Trigger<'static> {
        Trigger {
            src: self.src,
            dst: self.dst,
            proto: crate::own(self.proto),
            sport: self.sport,
            dport: self.dport,
            icmp_type: self.icmp_type,
            len: self.len,
            mark: self.mark,
            origin: self.origin,
            pid: self.pid,
            comm: self.comm.map(crate::own),
            in_ifindex: self.in_ifindex,
            in_ifname: self.in_ifname.map(crate::own),
            drop_reason: self.drop_reason.map(crate::own),
        }
    }
}
