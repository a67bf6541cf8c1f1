//! Types shared by the eBPF programs and the user-space tracer: the raw events the kernel side
//! writes into the ring buffer and the configuration the user side hands to it as globals.
//!
//! Everything here is `#[repr(C)]` and plain-old-data so both sides agree byte for byte.
//!
//! Each record sits in a module named after the hook that writes it, as the programs do in
//! `arp-trace-ebpf`; what all records share (kinds, hooks, lengths) stays here.
#![no_std]

mod config;
mod ndisc;
mod neigh_change;
mod neighbour;
mod receive;
mod transmit;
mod trigger;

// The records live in their modules; every `arp_trace_common::NAME` path stays as it was.
pub use config::*;
pub use ndisc::*;
pub use neigh_change::*;
pub use neighbour::*;
pub use receive::*;
pub use transmit::*;
pub use trigger::*;

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
/// An IPv6 neighbour solicitation or advertisement (`NdiscXmitEvent`).
pub const EVENT_NDISC_XMIT: u32 = 5;
/// An ARP frame a device received (`ArpRecvEvent`).
pub const EVENT_ARP_RECV: u32 = 6;
/// An IPv4 neighbour entry's address or validity changed (`NeighChangeEvent`).
pub const EVENT_NEIGH_CHANGE: u32 = 7;

/// Bytes of a record of `kind` in a ring sample, where the next record of the sample (if
/// any) begins; `None` for a kind this build does not know. Every record's size is a
/// multiple of 8, so the next one stays aligned.
pub const fn record_len(kind: u32) -> Option<usize> {
    use core::mem::size_of;
    match kind {
        EVENT_ARP_XMIT => Some(size_of::<ArpXmitEvent>()),
        EVENT_TRIGGER | EVENT_NEIGH_DROP => Some(size_of::<TriggerEvent>()),
        EVENT_NEIGH => Some(size_of::<NeighEvent>()),
        EVENT_NDISC_XMIT => Some(size_of::<NdiscXmitEvent>()),
        EVENT_ARP_RECV => Some(size_of::<ArpRecvEvent>()),
        EVENT_NEIGH_CHANGE => Some(size_of::<NeighChangeEvent>()),
        _ => None,
    }
}

/// `NeighEvent::family`, `TriggerEvent::family`: the neighbour table's address family.
pub const FAMILY_INET: u32 = 2;
pub const FAMILY_INET6: u32 = 10;

/// Records committed within this long of the ring buffer's last wakeup do not wake its
/// reader again; the reader polls at this interval while records keep coming, and a lone
/// record after a quiet spell still wakes it at once.
pub const WAKE_GAP_NS: u64 = 5_000_000;

/// `NeighEvent::context`, `TriggerEvent::context`: where the program ran, from the preempt
/// count or the per-CPU flag the softirq tracepoints keep (`Config::ctx_preempt`). Only in task context is `current` the sender, so only
/// then are a record's `pid_tgid` and `comm` read; they are zero otherwise, and drops
/// (`EVENT_NEIGH_DROP`), whose `current` never owns the packet, read no context at all.
pub const CONTEXT_UNKNOWN: u32 = 0;
pub const CONTEXT_TASK: u32 = 1;
pub const CONTEXT_SOFTIRQ: u32 = 2;

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
/// `tp_btf/netif_receive_skb` (a frame entering the stack on a device).
pub const HOOK_NETIF_RECEIVE_SKB: u32 = 6;

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
    unsafe impl aya::Pod for NdiscXmitEvent {}
    unsafe impl aya::Pod for ArpRecvEvent {}
    unsafe impl aya::Pod for NeighChangeEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(size_of::<Offsets>(), 60 * 4);
        assert_eq!(
            size_of::<NeighChangeEvent>(),
            8 + 8 + 4 * 6 + 4 + 4 + 2 * HA_LEN + 8 + 2 * NAME_LEN
        );
        assert_eq!(size_of::<NeighBefore>(), 24);
        assert_eq!(
            size_of::<ArpRecvEvent>(),
            8 + 8 + 4 * 4 + 2 + 2 + 4 + NAME_LEN + FRAME_CAP
        );
        assert_eq!(size_of::<ArpRecvEvent>() % 8, 0);
        assert_eq!(align_of::<ArpXmitEvent>(), 8);
        assert_eq!(size_of::<DevAddr>(), 12);
        assert_eq!(
            size_of::<ArpXmitEvent>(),
            8 + 8
                + 6 * 4
                + 2
                + 2
                + 4
                + 8
                + 8
                + 16
                + 16
                + FRAME_CAP
                + 16
                + 12 * MAX_DEV_ADDRS
                + 4 * MAX_WALK
        );
        assert_eq!(size_of::<Config>(), 88);
        assert_eq!(
            size_of::<TriggerEvent>(),
            8 + 8 * 5 + 8 * 4 + 4 + 4 + 16 + 16 + IP_CAP
        );
        assert_eq!(size_of::<Dev6Addr>(), 24);
        assert_eq!(
            core::mem::offset_of!(TriggeredNeigh, neigh),
            record_len(EVENT_TRIGGER).unwrap()
        );
        for kind in 1..=7 {
            assert_eq!(record_len(kind).unwrap() % 8, 0, "kind {kind}");
        }
        assert_eq!(
            size_of::<NdiscXmitEvent>(),
            8 + 8 + 6 * 4 + 2 + 2 + 4 + 8 + 8 + 16 + 16 + FRAME6_CAP + 8 + 24 * MAX_DEV6_ADDRS
        );
        assert_eq!(
            size_of::<NeighEvent>(),
            8 + 8 + 8 + 8 + 16 + 4 + 4 * 4 + 4 + NAME_LEN + 8 + 8 * 3 + 8 + NAME_LEN
        );
    }
}
