//! `{"type":"neigh_failed", ...}`: a neighbour entry that could not be resolved, and the
//! packets the kernel dropped with it.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::limits;
use crate::neigh_change::ChangeCause;
use crate::time::Time;
use crate::trigger::{Task, Trigger};
use crate::verdict::{Reason, Remedy};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeighFailed<'a> {
    pub time: Time,
    pub netns: u32,
    #[serde(default, deserialize_with = "crate::opt_str")]
    pub netns_name: Option<Cow<'a, str>>,
    pub ifindex: u32,
    #[serde(borrow)]
    pub ifname: Cow<'a, str>,
    /// IPv4 (`arp_tbl`) or IPv6 (`nd_tbl`).
    #[serde(serialize_with = "crate::addr::ser_ip")]
    pub target_ip: IpAddr,
    pub attempts: u32,
    #[serde(borrow, deserialize_with = "dropped")]
    pub dropped: Vec<Trigger<'a>>,
    /// Dropped packets not listed (the list is capped).
    pub dropped_omitted: u64,
    /// What failed the entry: `timer` (its solicitations went unanswered,
    /// `neigh_timer_handler()`), `netlink` (an update such as `ip neigh del` while it
    /// resolved), `task` (the `SIOCDARP` ioctl) or `kernel`. Absent in traces before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<ChangeCause>,
    /// `netlink`: the update's netlink port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nlmsg_pid: Option<u32>,
    /// `netlink`, `task`: the process that failed it.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub task: Option<Task<'a>>,
    /// IPv6 only, when the kernel never sent a solicitation: why (`ndisc_no_link_local`),
    /// in words, and how to change it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::opt_str"
    )]
    pub explanation: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub remedy: Option<Remedy<'a>>,
    /// With `ndisc_no_link_local`: 0 when the device had no link-local address at all, 1 when
    /// it had some but all tentative or optimistic; for the explanation, not written.
    #[serde(skip)]
    pub link_locals: Option<u32>,
}

fn dropped<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Trigger<'de>>, D::Error> {
    limits::seq(d, limits::DROPPED, "dropped")
}

impl NeighFailed<'_> {
    /// Whether every field read from a file is within [`crate::limits`].
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Some(n) = &self.netns_name {
            limits::netns_name("netns_name", n)?;
        }
        limits::ifname("ifname", &self.ifname)?;
        for (i, t) in self.dropped.iter().enumerate() {
            t.check(&format!("dropped[{i}]"))?;
        }
        if let Some(t) = &self.task {
            limits::comm("task.comm", &t.comm)?;
        }
        if let Some(e) = &self.explanation {
            limits::text("explanation", e)?;
        }
        if let Some(r) = &self.remedy {
            r.check("remedy")?;
        }
        Ok(())
    }

    pub fn into_owned(self) -> NeighFailed<'static> {
        NeighFailed {
            time: self.time,
            netns: self.netns,
            netns_name: self.netns_name.map(crate::own),
            ifindex: self.ifindex,
            ifname: crate::own(self.ifname),
            target_ip: self.target_ip,
            attempts: self.attempts,
            dropped: self.dropped.into_iter().map(Trigger::into_owned).collect(),
            dropped_omitted: self.dropped_omitted,
            cause: self.cause,
            nlmsg_pid: self.nlmsg_pid,
            task: self.task.map(Task::into_owned),
            reason: self.reason,
            explanation: self.explanation.map(crate::own),
            remedy: self.remedy.map(Remedy::into_owned),
            link_locals: self.link_locals,
        }
    }
}
