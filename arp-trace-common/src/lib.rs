//! Types shared by the eBPF programs and the user-space tracer: the raw events the kernel side
//! writes into the ring buffer and the configuration the user side hands to it as globals.
//!
//! Everything here is `#[repr(C)]` and plain-old-data so both sides agree byte for byte.
#![no_std]

/// Bytes of the transmitted frame copied into an event, from the link-layer header on.
/// An Ethernet ARP frame is 42 bytes; the rest leaves room for VLAN tags and padding.
pub const FRAME_CAP: usize = 64;

/// Length of `struct net_device::name` (IFNAMSIZ) and of a task's `comm`.
pub const NAME_LEN: usize = 16;

/// Event kinds, the first field of every record in the ring buffer.
pub const EVENT_ARP_XMIT: u32 = 1;
/// The packet `neigh_probe()` handed to `arp_solicit()` (`TriggerEvent`).
pub const EVENT_TRIGGER: u32 = 2;
/// A packet dropped from a neighbour's queue (`TriggerEvent` with `drop_reason` set).
pub const EVENT_NEIGH_DROP: u32 = 3;
/// Neighbour state after a solicit, or its failure (`NeighEvent`).
pub const EVENT_NEIGH: u32 = 4;

/// Bytes of the triggering packet copied from its IPv4 header on (header plus L4 ports/type).
pub const IP_CAP: usize = 64;
/// Kernel stack frames recorded with a trigger, to tell task context from softirq exactly.
pub const STACK_DEPTH: usize = 24;
/// `SETTINGS[0]` flag: the tracepoint path is in use, so the neighbour tracepoints read the
/// solicited packet from the neighbour's queue (no hook sees `arp_solicit()` itself).
pub const SETTING_QUEUE_TRIGGER: u32 = 1;

/// IPv4 addresses of the egress device copied with each ARP frame (`in_device->ifa_list`).
pub const MAX_DEV_ADDRS: usize = 8;
/// `DevAddr::flags`: `IFA_F_SECONDARY`.
pub const ADDR_SECONDARY: u8 = 1;

/// `NeighEvent::flags`
pub const NEIGH_FAILED: u32 = 1;
/// The record comes from `neigh_event_send_done`: the first solicit of a resolution.
pub const NEIGH_FIRST: u32 = 2;
/// `TriggerEvent::flags`
pub const TRIGGER_HAS_SK: u32 = 1;
/// The socket is a request socket (SYN-ACK); `sk_ino` is its listener's.
pub const TRIGGER_REQUEST_SK: u32 = 2;
/// The socket has no file (kernel socket, or TIME_WAIT).
pub const TRIGGER_NO_FILE: u32 = 4;
/// A full socket its process has closed (`sk_socket` is NULL): queued data of a local
/// sender outliving it, not a packet of the kernel's own.
pub const TRIGGER_ORPHAN: u32 = 8;

/// Hooks that produced an event (`ArpXmitEvent::hook`, `TriggerEvent::hook`).
pub const HOOK_NET_DEV_QUEUE: u32 = 1;
/// The newest packet on the neighbour's queue, read at the neighbour tracepoint that follows
/// the solicit (the tracepoint path): the trigger follows its request and names it.
pub const HOOK_NEIGH_QUEUE: u32 = 2;
/// `fentry/arp_solicit`: the trigger precedes its request, which takes the next sequence
/// number on the same CPU.
pub const HOOK_FENTRY: u32 = 3;
/// `kprobe/arp_solicit`: as `HOOK_FENTRY`.
pub const HOOK_KPROBE: u32 = 4;
/// `tp_btf/kfree_skb` (dropped from a neighbour queue).
pub const HOOK_KFREE_SKB: u32 = 5;

/// `mac_len` value when the skb had no link-layer header set.
pub const NO_MAC_HEADER: u16 = 0xffff;

/// Byte offsets of the kernel fields the programs read, taken from the running kernel's BTF
/// at start-up (Rust eBPF gets no CO-RE relocations, so layouts must not be compiled in).
///
/// An offset of `u32::MAX` marks a field the running kernel does not have.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offsets {
    pub skb_head: u32,
    pub skb_len: u32,
    pub skb_protocol: u32,
    pub skb_mac_header: u32,
    pub skb_network_header: u32,
    pub skb_dev: u32,
    pub skb_mark: u32,
    pub skb_iif: u32,
    pub dev_ifindex: u32,
    pub dev_name: u32,
    pub dev_nd_net: u32,
    pub net_ns_inum: u32,
    pub skb_sk: u32,
    pub sk_state: u32,
    pub sk_socket: u32,
    pub rsk_listener: u32,
    pub socket_file: u32,
    /// `socket_alloc.vfs_inode` (the socket itself is at offset 0) plus `inode.i_ino`.
    pub socket_ino: u32,
    pub neigh_nud_state: u32,
    pub neigh_probes: u32,
    pub neigh_qlen: u32,
    pub neigh_dev: u32,
    pub neigh_key: u32,
    pub neigh_tbl: u32,
    pub tbl_family: u32,
    /// `neighbour.arp_queue` and `neighbour.arp_queue.prev` (the queue's tail).
    pub neigh_queue: u32,
    pub neigh_queue_tail: u32,
    pub neigh_parms: u32,
    /// `neigh_parms.data[NEIGH_VAR_UCAST_PROBES]`
    pub parms_ucast_probes: u32,
    /// `net_device.ip_ptr` (the device's `struct in_device`).
    pub dev_ip_ptr: u32,
    /// `in_device.cnf.data[IPV4_DEVCONF_ARP_ANNOUNCE - 1]`
    pub indev_arp_announce: u32,
    pub indev_ifa_list: u32,
    pub ifa_next: u32,
    pub ifa_local: u32,
    pub ifa_prefixlen: u32,
    pub ifa_scope: u32,
    pub ifa_flags: u32,
    /// `net.ipv4.devconf_all` (pointer to the namespace's `all` settings).
    pub net_devconf_all: u32,
    /// `ipv4_devconf.data[IPV4_DEVCONF_ARP_ANNOUNCE - 1]`
    pub devconf_arp_announce: u32,
}

/// One IPv4 address of a device as the kernel held it when the frame left.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DevAddr {
    /// `ifa_local`, network byte order.
    pub addr: [u8; 4],
    pub prefixlen: u8,
    /// `ifa_scope` (RT_SCOPE_*: 0 universe, 253 link, 254 host).
    pub scope: u8,
    /// `ADDR_*`
    pub flags: u8,
    pub _pad: u8,
}

/// Everything else the loader decides from BTF before the programs are loaded.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// `enum skb_drop_reason` values of NEIGH_FAILED and NEIGH_QUEUEFULL on this kernel
    /// (0 when the kernel has no drop reasons).
    pub drop_neigh_failed: u32,
    pub drop_neigh_queuefull: u32,
}

impl Config {
    pub const UNSET: Config = Config {
        drop_neigh_failed: 0,
        drop_neigh_queuefull: 0,
    };
}

/// The packet the kernel passed to `arp_solicit()`, or one it dropped from a neighbour queue.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TriggerEvent {
    /// `EVENT_TRIGGER` or `EVENT_NEIGH_DROP`.
    pub kind: u32,
    pub cpu: u32,
    pub ts_ns: u64,
    /// `ArpXmitEvent::seq` of the request this trigger belongs to on the same CPU (0: none).
    pub req_seq: u64,
    pub pid_tgid: u64,
    /// Inode of the socket owning the packet (its listener's for a SYN-ACK); 0 if none.
    pub sk_ino: u64,
    /// The owning `struct sock` (identifies the socket after its process closed it).
    pub sk: u64,
    pub netns: u32,
    pub ifindex: u32,
    pub iif: u32,
    pub mark: u32,
    pub skb_len: u32,
    pub flags: u32,
    pub drop_reason: u32,
    pub stack_len: u32,
    /// `HOOK_*` that saw the packet.
    pub hook: u32,
    /// The neighbour being solicited (`primary_key`), when the hook knows it; else zero.
    pub target: [u8; 4],
    pub comm: [u8; NAME_LEN],
    pub ip: [u8; IP_CAP],
    pub stack: [u64; STACK_DEPTH],
}

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
    /// IPv4 address the entry resolves (`primary_key`), network byte order.
    pub target: [u8; 4],
    pub nud_state: u32,
    /// `neigh->probes`: solicits sent for the current resolution.
    pub probes: u32,
    /// Packets waiting in `arp_queue`.
    pub qlen: u32,
    pub flags: u32,
    /// The entry's unicast probe budget: INCOMPLETE entries start counting `probes` from it.
    pub ucast_probes: u32,
    pub ifname: [u8; NAME_LEN],
    /// Owner of the queued packet that was solicited for (`skb_clone()` drops `skb->sk`, so
    /// the trigger's own record cannot carry it): read from the queue's tail.
    pub sk: u64,
    pub sk_ino: u64,
    pub pid_tgid: u64,
    /// `TRIGGER_*` flags of that packet's socket.
    pub owner_flags: u32,
    pub stack_len: u32,
    pub comm: [u8; NAME_LEN],
    pub stack: [u64; STACK_DEPTH],
}

impl Offsets {
    pub const UNSET: Offsets = Offsets {
        skb_head: u32::MAX,
        skb_len: u32::MAX,
        skb_protocol: u32::MAX,
        skb_mac_header: u32::MAX,
        skb_network_header: u32::MAX,
        skb_dev: u32::MAX,
        skb_mark: u32::MAX,
        skb_iif: u32::MAX,
        dev_ifindex: u32::MAX,
        dev_name: u32::MAX,
        dev_nd_net: u32::MAX,
        net_ns_inum: u32::MAX,
        skb_sk: u32::MAX,
        sk_state: u32::MAX,
        sk_socket: u32::MAX,
        rsk_listener: u32::MAX,
        socket_file: u32::MAX,
        socket_ino: u32::MAX,
        neigh_nud_state: u32::MAX,
        neigh_probes: u32::MAX,
        neigh_qlen: u32::MAX,
        neigh_dev: u32::MAX,
        neigh_key: u32::MAX,
        neigh_tbl: u32::MAX,
        tbl_family: u32::MAX,
        neigh_queue: u32::MAX,
        neigh_queue_tail: u32::MAX,
        neigh_parms: u32::MAX,
        parms_ucast_probes: u32::MAX,
        dev_ip_ptr: u32::MAX,
        indev_arp_announce: u32::MAX,
        indev_ifa_list: u32::MAX,
        ifa_next: u32::MAX,
        ifa_local: u32::MAX,
        ifa_prefixlen: u32::MAX,
        ifa_scope: u32::MAX,
        ifa_flags: u32::MAX,
        net_devconf_all: u32::MAX,
        devconf_arp_announce: u32::MAX,
    };
}

/// One ARP frame handed to a device for transmission (`tp_btf/net_dev_queue`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ArpXmitEvent {
    /// Always `EVENT_ARP_XMIT`.
    pub kind: u32,
    /// Which hook saw it (`HOOK_*`).
    pub hook: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC.
    pub ts_ns: u64,
    /// Inode of the device's network namespace.
    pub netns: u32,
    pub ifindex: u32,
    /// `skb->skb_iif`: non-zero when the frame was received on another device (bridged).
    pub iif: u32,
    pub mark: u32,
    /// `skb->len` at transmit time (link-layer header included).
    pub skb_len: u32,
    pub cpu: u32,
    /// Bytes from the start of `frame` to the ARP header, or `NO_MAC_HEADER`.
    pub mac_len: u16,
    /// Valid bytes in `frame`.
    pub caplen: u16,
    pub _pad: u32,
    /// Per-CPU sequence number; triggers and neighbour events name it in `req_seq`.
    pub seq: u64,
    pub pid_tgid: u64,
    pub ifname: [u8; NAME_LEN],
    pub comm: [u8; NAME_LEN],
    pub frame: [u8; FRAME_CAP],
    /// `arp_announce` of the namespace's `all` and of the device when the frame left
    /// (-1: could not be read).
    pub announce_all: i32,
    pub announce_dev: i32,
    /// Valid entries in `addrs`; the device has more when `addrs_more` is set.
    pub n_addrs: u16,
    pub addrs_more: u16,
    pub _pad2: u32,
    pub addrs: [DevAddr; MAX_DEV_ADDRS],
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: both are repr(C) structs of integers and byte arrays with no implicit padding
    // bytes that the kernel side leaves uninitialised.
    unsafe impl aya::Pod for Offsets {}
    unsafe impl aya::Pod for ArpXmitEvent {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for TriggerEvent {}
    unsafe impl aya::Pod for NeighEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(size_of::<Offsets>(), 39 * 4);
        assert_eq!(align_of::<ArpXmitEvent>(), 8);
        assert_eq!(size_of::<DevAddr>(), 8);
        assert_eq!(
            size_of::<ArpXmitEvent>(),
            8 + 8 + 6 * 4 + 2 + 2 + 4 + 8 + 8 + 16 + 16 + FRAME_CAP + 16 + 8 * MAX_DEV_ADDRS
        );
        assert_eq!(size_of::<Config>(), 8);
        assert_eq!(
            size_of::<TriggerEvent>(),
            8 + 8 * 5 + 8 * 4 + 8 + 16 + IP_CAP + 8 * STACK_DEPTH
        );
        assert_eq!(
            size_of::<NeighEvent>(),
            8 + 8 + 8 + 8 + 4 * 4 + 8 + NAME_LEN + 8 * 3 + 8 + NAME_LEN + 8 * STACK_DEPTH
        );
    }
}
