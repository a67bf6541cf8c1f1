//! A change to an IPv4 neighbour entry (`NeighChangeEvent`): its link-layer address or whether
//! it is valid, before and after one `__neigh_update()`. Apart from `NeighEvent`, which follows
//! a solicit: this one follows whatever updated the entry (a received ARP, `ip neigh`, the
//! kernel), read at `neigh_update` and `neigh_update_done`.

use crate::NAME_LEN;

/// Bytes of `struct neighbour::ha` read: an Ethernet address, in a word.
pub const HA_LEN: usize = 8;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NeighChangeEvent {
    /// Always `EVENT_NEIGH_CHANGE`.
    pub kind: u32,
    pub cpu: u32,
    pub ts_ns: u64,
    pub netns: u32,
    pub ifindex: u32,
    /// `primary_key`, the IPv4 address.
    pub ip: [u8; 4],
    /// `nlmsg_pid` of the update: the netlink port of the `ip neigh` that asked, or 0.
    pub nlmsg_pid: u32,
    /// `NEIGH_UPDATE_F_*` flags of the update.
    pub flags: u32,
    /// What `__neigh_update()` returned.
    pub err: i32,
    /// `nud_state` before and after.
    pub old_state: u8,
    pub new_state: u8,
    /// `dev->addr_len`: how many bytes of the addresses are the address.
    pub addr_len: u8,
    pub _pad: u8,
    /// `CONTEXT_*` the update ran in: in a task, `pid_tgid` and `comm` made it.
    pub context: u32,
    pub old_ha: [u8; HA_LEN],
    pub new_ha: [u8; HA_LEN],
    pub pid_tgid: u64,
    pub comm: [u8; NAME_LEN],
    pub ifname: [u8; NAME_LEN],
}

/// What `neigh_update` keeps for `neigh_update_done` (per neighbour and task).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NeighBefore {
    pub old_ha: [u8; HA_LEN],
    pub nlmsg_pid: u32,
    pub flags: u32,
    pub old_state: u8,
    pub _pad: [u8; 7],
}
