//! The ARP frame as a device queues it (`ArpXmitEvent`), with the egress device's addresses
//! and `arp_announce` (`DevAddr`). Its own module because it is the one record of what left
//! the host; the trigger and neighbour records only name it by `seq`.

use crate::NAME_LEN;

/// Bytes of the transmitted frame copied into an event, from the link-layer header on.
/// An Ethernet ARP frame is 42 bytes; the rest leaves room for VLAN tags and padding.
pub const FRAME_CAP: usize = 64;

/// IPv4 addresses of the egress device copied with each ARP frame (`in_device->ifa_list`).
pub const MAX_DEV_ADDRS: usize = 8;
/// Devices of the namespace listed, in its device-list order, when the egress device has no
/// address `inet_select_addr()` could use and the kernel borrows one from another device.
pub const MAX_WALK: usize = 32;
/// `DevAddr::flags`: `IFA_F_SECONDARY`.
pub const ADDR_SECONDARY: u8 = 1;
/// `ArpXmitEvent::conf_all`/`conf_dev`: the config was read (the other bits mean nothing
/// without it).
pub const CONF_READ: u8 = 0x80;
/// ... `route_localnet` is set.
pub const CONF_ROUTE_LOCALNET: u8 = 1;
/// ... `arp_notify` is set.
pub const CONF_ARP_NOTIFY: u8 = 2;

/// `mac_len` value when the skb had no link-layer header set.
pub const NO_MAC_HEADER: u16 = 0xffff;

/// `ArpXmitEvent::flags`: the frame belongs to a socket (`skb->sk` is set): a process wrote it
/// through a packet socket, where the kernel's own ARP (`arp_create()`) has none.
pub const XMIT_HAS_SK: u32 = 1;
/// `NdiscXmitEvent::flags`: the socket has a file: a process's raw ICMPv6 socket, not the
/// kernel's `ndisc_sk`.
pub const XMIT_USER_SK: u32 = 2;

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
    /// `ifa_address`: differs from `addr` for an address with a peer (`ip addr add A peer B`).
    pub peer: [u8; 4],
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
    /// `XMIT_*`
    pub flags: u32,
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
    /// `CONF_*` bits of `all` and of the device: `route_localnet`, `arp_notify`.
    pub conf_all: u8,
    pub conf_dev: u8,
    /// Valid entries in `walk` (only when the egress device has no usable address); the list
    /// went on past what the program looked at when `walk_more` is set.
    pub n_walk: u8,
    pub walk_more: u8,
    pub addrs: [DevAddr; MAX_DEV_ADDRS],
    /// The ifindex of each device, in the namespace's list order (`for_each_netdev_rcu()`):
    /// the order inet_select_addr() borrows in.
    pub walk: [u32; MAX_WALK],
}
