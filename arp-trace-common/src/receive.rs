//! The ARP frame as a device receives it (`ArpRecvEvent`). Its own record, smaller than the
//! transmitted one: nothing the kernel decides about a received frame's sender is read here,
//! and the program runs for every frame any device receives.

use crate::transmit::FRAME_CAP;
use crate::NAME_LEN;

/// One ARP frame entering the stack on a device (`tp_btf/netif_receive_skb`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ArpRecvEvent {
    /// Always `EVENT_ARP_RECV`.
    pub kind: u32,
    /// Always `HOOK_NETIF_RECEIVE_SKB`.
    pub hook: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC.
    pub ts_ns: u64,
    /// Inode of the receiving device's network namespace.
    pub netns: u32,
    pub ifindex: u32,
    /// `skb->len` with the link-layer header counted back in (eth_type_trans() pulled it).
    pub skb_len: u32,
    pub cpu: u32,
    /// Bytes from the start of `frame` to the ARP header, or `NO_MAC_HEADER`.
    pub mac_len: u16,
    /// Valid bytes in `frame`.
    pub caplen: u16,
    pub _pad: u32,
    pub ifname: [u8; NAME_LEN],
    pub frame: [u8; FRAME_CAP],
}
