//! Neighbour-table changes (`neigh_change`) and what caused each. The cause of an update in
//! `arp_process()` is the frame the device just received: `netif_receive_skb` recorded it on
//! the same CPU, in the same softirq, moments before `neigh_update`, so the newest frame each
//! CPU received is kept and an update of that frame's sender on that device joins it.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use arp_trace_common::{NeighChangeEvent, NeighEvent, CONTEXT_TASK, NEIGH_UPDATE};
use arp_trace_model::{ArpEvent, ChangeCause, ChangeFrame, Mac, NeighChange, NudState, Task, Time};

/// Entries sure to be remembered as being probed (PROBE state): the newest this many
/// (`Recent`).
pub const MAX_PROBING: usize = 4096;

/// How long after its frame an update may still join it: the two are microseconds apart on
/// one CPU, but an emulated guest can stretch that.
const FRAME_WINDOW_NS: i128 = 50_000_000;

struct Received {
    netns: u32,
    ifindex: u32,
    frame: ChangeFrame,
}

/// The newest ARP frame each CPU received.
#[derive(Default)]
pub struct RecentFrames {
    by_cpu: HashMap<u32, Received>,
}

impl RecentFrames {
    pub fn saw(&mut self, cpu: u32, ev: &ArpEvent<'_>) {
        self.by_cpu.insert(
            cpu,
            Received {
                netns: ev.netns,
                ifindex: ev.ifindex,
                frame: ChangeFrame {
                    time: ev.time,
                    op: ev.op,
                    sender_ip: ev.sender_ip,
                    sender_mac: ev.sender_mac,
                    target_ip: ev.target_ip,
                    gratuitous: ev.sender_ip == ev.target_ip,
                },
            },
        );
    }

    /// The change the kernel record describes, with its cause.
    pub fn change(&mut self, raw: &NeighChangeEvent, clock_offset: i128) -> NeighChange<'static> {
        let time = Time(raw.ts_ns as i128 + clock_offset);
        let ip = Ipv4Addr::from(raw.ip);
        let (old_state, new_state) = (
            NudState::from_bits(raw.old_state),
            NudState::from_bits(raw.new_state),
        );
        let mac = |ha: &[u8; 8], state: NudState| {
            (state.valid() && raw.addr_len == 6)
                .then(|| Mac::from_slice(&ha[..6]))
                .flatten()
        };
        let task = task_of(raw.context, raw.pid_tgid, &raw.comm);
        let frame = self
            .by_cpu
            .get(&raw.cpu)
            .filter(|r| {
                (r.netns, r.ifindex) == (raw.netns, raw.ifindex)
                    && r.frame.sender_ip == ip
                    && (0..=FRAME_WINDOW_NS).contains(&(time.0 - r.frame.time.0))
            })
            .map(|r| r.frame.clone());
        let cause = if raw.nlmsg_pid != 0 {
            ChangeCause::Netlink
        } else if frame.is_some() {
            ChangeCause::ReceivedArp
        } else if task.is_some() {
            ChangeCause::Task
        } else {
            ChangeCause::Kernel
        };
        NeighChange {
            time,
            netns: raw.netns,
            netns_name: None,
            ifindex: raw.ifindex,
            ifname: arp_trace_model::intern::kernel_name(&raw.ifname),
            ip,
            old_mac: mac(&raw.old_ha, old_state),
            new_mac: mac(&raw.new_ha, new_state),
            old_state,
            new_state,
            cause,
            frame: if cause == ChangeCause::ReceivedArp {
                frame
            } else {
                None
            },
            nlmsg_pid: (raw.nlmsg_pid != 0).then_some(raw.nlmsg_pid),
            task: if matches!(cause, ChangeCause::Netlink | ChangeCause::Task) {
                task
            } else {
                None
            },
        }
    }
}

/// The task a record's program ran in, when it ran in one (not a softirq).
fn task_of(context: u32, pid_tgid: u64, comm: &[u8]) -> Option<Task<'static>> {
    (context == CONTEXT_TASK).then(|| Task {
        pid: (pid_tgid >> 32) as u32,
        comm: arp_trace_model::kernel_name(comm).into(),
    })
}

/// What failed an entry, from its failure record: its timer, or an update (`ip neigh del`
/// while it resolved: `__neigh_update()` to NUD_FAILED calls `neigh_invalidate()` too), with
/// the update's netlink port and task.
pub fn failure_cause(n: &NeighEvent) -> (ChangeCause, Option<u32>, Option<Task<'static>>) {
    if n.flags & NEIGH_UPDATE == 0 {
        return (ChangeCause::Timer, None, None);
    }
    let task = task_of(n.context, n.pid_tgid, &n.comm);
    let cause = if n.nlmsg_pid != 0 {
        ChangeCause::Netlink
    } else if task.is_some() {
        ChangeCause::Task
    } else {
        ChangeCause::Kernel
    };
    (cause, (n.nlmsg_pid != 0).then_some(n.nlmsg_pid), task)
}

/// A valid entry lost by its timer: `neigh_timer_handler()` fails a PROBE entry whose unicast
/// probes went unanswered (INCOMPLETE -> FAILED changes nothing valid), without
/// `__neigh_update()`. `mac` is where those probes went: the entry's address.
pub fn probe_failed(
    n: &NeighEvent,
    mac: Mac,
    ifname: &str,
    clock_offset: i128,
) -> NeighChange<'static> {
    let mut ip = [0u8; 4];
    ip.copy_from_slice(&n.target[..4]);
    NeighChange {
        time: Time(n.ts_ns as i128 + clock_offset),
        netns: n.netns,
        netns_name: None,
        ifindex: n.ifindex,
        ifname: arp_trace_model::intern::name(ifname),
        ip: Ipv4Addr::from(ip),
        old_mac: Some(mac),
        new_mac: None,
        old_state: NudState::Probe,
        new_state: NudState::from_bits(n.nud_state as u8),
        cause: ChangeCause::Timer,
        frame: None,
        nlmsg_pid: None,
        task: None,
    }
}
