//! An IPv6 neighbour solicitation or advertisement as a device queues it
//! (`NdiscXmitEvent`), with the egress device's IPv6 addresses and their flags (`Dev6Addr`):
//! what `ndisc_solicit()` and `ndisc_send_ns()` chose the source from. Apart from the ARP
//! record because the frame, the addresses and the kernel's rule are all IPv6's own.

use crate::NAME_LEN;

/// Bytes of the frame copied, from the link-layer header on: Ethernet (14), IPv6 (40), a
/// solicitation (24), its link-layer option (8) and a DAD nonce (8) make 94.
pub const FRAME6_CAP: usize = 96;
/// The shortest copy the program falls back to: Ethernet, IPv6 and a bare solicitation.
pub const FRAME6_MIN: usize = 78;
/// IPv6 addresses of the egress device copied with each frame (`inet6_dev->addr_list`).
pub const MAX_DEV6_ADDRS: usize = 8;

/// One IPv6 address of a device as the kernel held it when the frame left.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dev6Addr {
    pub addr: [u8; 16],
    /// `inet6_ifaddr.flags` (`IFA_F_*`: tentative 0x40, optimistic 0x04, dadfailed 0x08,
    /// deprecated 0x20, nodad 0x02, permanent 0x80).
    pub flags: u32,
    pub prefixlen: u8,
    pub _pad: u8,
    /// `inet6_ifaddr.scope` (`IFA_*`: 0 global, 0x10 host, 0x20 link, 0x40 site).
    pub scope: u16,
}

/// One ICMPv6 neighbour solicitation or advertisement handed to a device
/// (`tp_btf/net_dev_queue`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NdiscXmitEvent {
    /// Always `EVENT_NDISC_XMIT`.
    pub kind: u32,
    pub hook: u32,
    pub ts_ns: u64,
    pub netns: u32,
    pub ifindex: u32,
    pub iif: u32,
    pub mark: u32,
    pub skb_len: u32,
    pub cpu: u32,
    /// Bytes from the start of `frame` to the IPv6 header, or `NO_MAC_HEADER`.
    pub mac_len: u16,
    pub caplen: u16,
    pub flags: u32,
    /// Shares the ARP requests' per-CPU numbering; neighbour records name it in `req_seq`.
    pub seq: u64,
    pub pid_tgid: u64,
    pub ifname: [u8; NAME_LEN],
    pub comm: [u8; NAME_LEN],
    pub frame: [u8; FRAME6_CAP],
    /// Valid entries in `addrs`, in the device's list order; it has more if `addrs_more`.
    pub n_addrs: u16,
    pub addrs_more: u16,
    /// 0: the device's IPv6 state was read; 1: it has none (`ip6_ptr` NULL).
    pub no_inet6: u32,
    pub addrs: [Dev6Addr; MAX_DEV6_ADDRS],
}
