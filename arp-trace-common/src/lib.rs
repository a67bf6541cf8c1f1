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

/// Hooks that produced an event (`ArpXmitEvent::hook`).
pub const HOOK_NET_DEV_QUEUE: u32 = 1;

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
    pub pid_tgid: u64,
    pub ifname: [u8; NAME_LEN],
    pub comm: [u8; NAME_LEN],
    pub frame: [u8; FRAME_CAP],
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: both are repr(C) structs of integers and byte arrays with no implicit padding
    // bytes that the kernel side leaves uninitialised.
    unsafe impl aya::Pod for Offsets {}
    unsafe impl aya::Pod for ArpXmitEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(size_of::<Offsets>(), 12 * 4);
        assert_eq!(align_of::<ArpXmitEvent>(), 8);
        assert_eq!(
            size_of::<ArpXmitEvent>(),
            8 + 8 + 6 * 4 + 2 + 2 + 4 + 8 + 16 + 16 + FRAME_CAP
        );
    }
}
