//! `{"type":"neigh_change", ...}`: one update that changed an IPv4 neighbour entry's
//! link-layer address or whether it is valid, with the entry before and after and what made
//! the kernel update it: a received ARP frame (joined, with its sender), a netlink request
//! (`ip neigh`, with the port and the task), another task (the `SIOCSARP` ioctl of `arp -s`),
//! the entry's timer (a probed entry that failed), or the kernel itself.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::arp::ArpOp;
use crate::limits;
use crate::mac::Mac;
use crate::time::Time;
use crate::trigger::Task;

/// `struct neighbour::nud_state`, one state at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NudState {
    None,
    Incomplete,
    Reachable,
    Stale,
    Delay,
    Probe,
    Failed,
    Noarp,
    Permanent,
    /// Bits no single state has (read while another CPU changed it).
    Unknown,
}

impl NudState {
    pub fn from_bits(state: u8) -> NudState {
        match state {
            0x00 => NudState::None,
            0x01 => NudState::Incomplete,
            0x02 => NudState::Reachable,
            0x04 => NudState::Stale,
            0x08 => NudState::Delay,
            0x10 => NudState::Probe,
            0x20 => NudState::Failed,
            0x40 => NudState::Noarp,
            0x80 => NudState::Permanent,
            _ => NudState::Unknown,
        }
    }

    /// NUD_VALID: the entry's address may be used to send.
    pub fn valid(self) -> bool {
        matches!(
            self,
            NudState::Reachable
                | NudState::Stale
                | NudState::Delay
                | NudState::Probe
                | NudState::Noarp
                | NudState::Permanent
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            NudState::None => "none",
            NudState::Incomplete => "incomplete",
            NudState::Reachable => "reachable",
            NudState::Stale => "stale",
            NudState::Delay => "delay",
            NudState::Probe => "probe",
            NudState::Failed => "failed",
            NudState::Noarp => "noarp",
            NudState::Permanent => "permanent",
            NudState::Unknown => "unknown",
        }
    }
}

/// What made the kernel update the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeCause {
    /// An ARP frame the device received (`arp_process()`): `frame` is that frame.
    ReceivedArp,
    /// A netlink request (`ip neigh add/replace/del`): `nlmsg_pid` is its port, `task` the
    /// process that sent it.
    Netlink,
    /// A task without netlink: the `SIOCSARP`/`SIOCDARP` ioctl (`arp -s`, `arp -d`).
    Task,
    /// The entry's timer: a PROBE entry whose unicast probes went unanswered failed
    /// (`neigh_timer_handler()`, not an update).
    Timer,
    /// The kernel, with no received frame joined and no task asking.
    Kernel,
}

impl ChangeCause {
    pub fn code(self) -> &'static str {
        match self {
            ChangeCause::ReceivedArp => "received_arp",
            ChangeCause::Netlink => "netlink",
            ChangeCause::Task => "task",
            ChangeCause::Timer => "timer",
            ChangeCause::Kernel => "kernel",
        }
    }
}

/// The received ARP frame an update joins with: on the same CPU, in the same namespace,
/// just before it, from the entry's address.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeFrame {
    pub time: Time,
    pub op: ArpOp,
    pub sender_ip: Ipv4Addr,
    pub sender_mac: Mac,
    pub target_ip: Ipv4Addr,
    /// Sender and target the same: an announcement.
    pub gratuitous: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeighChange<'a> {
    pub time: Time,
    pub netns: u32,
    #[serde(default, deserialize_with = "crate::opt_str")]
    pub netns_name: Option<Cow<'a, str>>,
    pub ifindex: u32,
    #[serde(borrow)]
    pub ifname: Cow<'a, str>,
    /// The entry's address.
    pub ip: Ipv4Addr,
    /// Its link-layer address before and after; null while the entry was not valid.
    pub old_mac: Option<Mac>,
    pub new_mac: Option<Mac>,
    pub old_state: NudState,
    pub new_state: NudState,
    pub cause: ChangeCause,
    /// `received_arp`: the frame.
    #[serde(default)]
    pub frame: Option<ChangeFrame>,
    /// `netlink`: the requesting socket's port (normally its process id).
    #[serde(default)]
    pub nlmsg_pid: Option<u32>,
    /// `netlink`, `task`: the process that made the change.
    #[serde(default, borrow)]
    pub task: Option<Task<'a>>,
}

impl NeighChange<'_> {
    /// The address changed from one valid MAC to another: the entry was overwritten.
    pub fn overwritten(&self) -> bool {
        matches!((self.old_mac, self.new_mac), (Some(a), Some(b)) if a != b)
    }

    /// Whether every field read from a file is within [`crate::limits`].
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Some(n) = &self.netns_name {
            limits::netns_name("netns_name", n)?;
        }
        limits::ifname("ifname", &self.ifname)?;
        if let Some(t) = &self.task {
            limits::comm("task.comm", &t.comm)?;
        }
        Ok(())
    }

    pub fn into_owned(self) -> NeighChange<'static> {
        NeighChange {
            time: self.time,
            netns: self.netns,
            netns_name: self.netns_name.map(crate::own),
            ifindex: self.ifindex,
            ifname: crate::own(self.ifname),
            ip: self.ip,
            old_mac: self.old_mac,
            new_mac: self.new_mac,
            old_state: self.old_state,
            new_state: self.new_state,
            cause: self.cause,
            frame: self.frame,
            nlmsg_pid: self.nlmsg_pid,
            task: self.task.map(Task::into_owned),
        }
    }
}
