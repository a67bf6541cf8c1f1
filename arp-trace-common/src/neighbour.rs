//! The neighbour entry after a solicit or at its failure (`NeighEvent`, `NEIGH_*` flags).
//! Apart because it is read from `struct neighbour` at the neighbour tracepoints, where the
//! resolution's state and retries are known, not from any packet.

use crate::{TriggerEvent, NAME_LEN};

/// `NeighEvent::flags`
pub const NEIGH_FAILED: u32 = 1;
/// The record comes from `neigh_event_send_done`: the first solicit of a resolution.
pub const NEIGH_FIRST: u32 = 2;
/// With `NEIGH_FAILED`: an update failed the entry (`__neigh_update()` to NUD_FAILED of an
/// INCOMPLETE or PROBE entry, e.g. `ip neigh del`), not its timer; `nlmsg_pid` is the
/// update's netlink port.
pub const NEIGH_UPDATE: u32 = 4;

/// `NeighEvent::ll_total`/`ll_usable` of IPv4 entries, or when the device's IPv6 state
/// could not be read.
pub const LL_UNREAD: u16 = u16::MAX;

/// A neighbour right after `neigh_probe()` (from `neigh_event_send_done` or
/// `neigh_timer_handler`), or when it failed.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NeighEvent {
    pub kind: u32,
    pub cpu: u32,
    pub ts_ns: u64,
    pub req_seq: u64,
    pub netns: u32,
    pub ifindex: u32,
    /// Address the entry resolves (`primary_key`): IPv4 in the first 4 bytes, or IPv6.
    pub target: [u8; 16],
    /// `FAMILY_INET` (`arp_tbl`) or `FAMILY_INET6` (`nd_tbl`).
    pub family: u32,
    pub nud_state: u32,
    /// `neigh->probes`: solicits sent for the current resolution.
    pub probes: u32,
    /// Packets waiting in `arp_queue`.
    pub qlen: u32,
    pub flags: u32,
    /// The entry's unicast probe budget: INCOMPLETE entries start counting `probes` from it.
    pub ucast_probes: u32,
    pub ifname: [u8; NAME_LEN],
    /// IPv6 entries: 1 if the device has a link-local address, and 1 if one of them is
    /// one `ipv6_get_lladdr()` may use (neither tentative nor optimistic), else 0;
    /// `LL_UNREAD` when not read.
    pub ll_total: u16,
    pub ll_usable: u16,
    /// `NEIGH_UPDATE` records: the netlink port of the update (0: not netlink).
    pub nlmsg_pid: u32,
    /// Owner of the queued packet that was solicited for (`skb_clone()` drops `skb->sk`, so
    /// the trigger's own record cannot carry it): read from the queue's tail.
    pub sk: u64,
    pub sk_ino: u64,
    pub pid_tgid: u64,
    /// `TRIGGER_*` flags of that packet's socket.
    pub owner_flags: u32,
    /// `CONTEXT_*` the program ran in: whether `pid_tgid` and `comm` can be the sender.
    pub context: u32,
    pub comm: [u8; NAME_LEN],
}

/// A first solicit's two records in one ring sample, when its program read the queued packet
/// itself (the tracepoint path): the packet's `TriggerEvent`, then the entry's `NeighEvent`,
/// in the order they were two samples before. One reservation and one submit instead of
/// two; a ring sample holds its records back to back, each as long as its kind says
/// ([`crate::record_len`]).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TriggeredNeigh {
    pub trigger: TriggerEvent,
    pub neigh: NeighEvent,
}
