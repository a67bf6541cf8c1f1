//! IPv6 neighbour discovery on `tp_btf/net_dev_queue`: each neighbour solicitation and
//! advertisement a device queues, with the egress device's IPv6 addresses and their flags as
//! they stand while it leaves (what `ndisc_solicit()` chose the source from). Its own module
//! because every IPv6 frame the host sends reaches `ipv6_frame`, which must leave at once
//! for anything but ND.

use arp_trace_common::{
    NdiscXmitEvent, Offsets, EVENT_NDISC_XMIT, FRAME6_MIN, MAX_DEV6_ADDRS, TRIGGER_NO_FILE,
    XMIT_HAS_SK, XMIT_USER_SK,
};
use aya_ebpf::helpers::bpf_probe_read_kernel;

use crate::shared::{
    count_discarded, count_lost, off, offsets, read, wake_flags, Btf, Mem, EVENTS, OFFSETS, SLOT,
};
use crate::transmit::{copy_frame, pend, put_head, read_head};
use crate::trigger::{owner, TCP_NEW_SYN_RECV, TCP_TIME_WAIT};

const NEXTHDR_ICMP: u8 = 58;
/// RFC 4861 7.1: every ND message is sent, and accepted, with hop limit 255.
const ND_HOP_LIMIT: u8 = 255;
const NDISC_NEIGHBOUR_SOLICITATION: u8 = 135;
const NDISC_NEIGHBOUR_ADVERTISEMENT: u8 = 136;

const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;

/// Whether an IPv6 frame comes from a local TCP or UDP socket, so cannot be neighbour
/// discovery: the kernel sends that from its ndisc socket, a user from a raw ICMPv6 or a
/// packet socket. Three direct loads (6.12 on) spare most IPv6 frames the helper read of
/// their header in [`ipv6_frame`], ~30 ns a frame on a machine where a do-nothing program
/// costs 73 ns (BENCHMARKS.md, figure 1e). A mini socket (TIME_WAIT, a request) is TCP's;
/// its state comes first because `sk_protocol` lies beyond its end.
#[inline(always)]
pub(crate) unsafe fn transport_socket(skb: *const u8) -> bool {
    let (family_off, proto_off) = (off!(sk_family), off!(sk_protocol));
    if family_off == u32::MAX || proto_off == u32::MAX {
        return false;
    }
    let sk: *const u8 = Btf::get(skb, off!(skb_sk));
    if sk.is_null() || Btf::get::<u16>(sk, family_off) != AF_INET6 {
        return false;
    }
    let state: u8 = Btf::get(sk, off!(sk_state));
    if state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV {
        return true;
    }
    let proto: u16 = Btf::get(sk, proto_off);
    proto == IPPROTO_TCP || proto == IPPROTO_UDP
}

/// Called for every IPv6 frame: two loads the verifier checks against `struct sk_buff`
/// and one 2-byte read of the IPv6 header turn away everything but ICMPv6 with hop limit
/// 255; the ICMPv6 type then keeps solicitations and advertisements.
#[inline(always)]
pub(crate) unsafe fn ipv6_frame<M: Mem>(skb: *const u8) {
    let head = {
        let off = core::ptr::read_volatile(&OFFSETS.skb_head);
        core::ptr::read_volatile(skb.add(off as usize) as *const *const u8)
    };
    let nh = {
        let off = core::ptr::read_volatile(&OFFSETS.skb_network_header);
        core::ptr::read_volatile(skb.add(off as usize) as *const u16)
    };
    let ip6 = head.add(nh as usize);
    // next header (byte 6) and hop limit (byte 7) of the fixed header. ND never carries
    // extension headers (ndisc_send_skb() builds the header itself).
    let Ok(nh_hl) = bpf_probe_read_kernel(ip6.add(6) as *const [u8; 2]) else {
        return;
    };
    if nh_hl[0] != NEXTHDR_ICMP || nh_hl[1] != ND_HOP_LIMIT {
        return;
    }
    let Ok(ty) = bpf_probe_read_kernel(ip6.add(40)) else {
        return;
    };
    if ty != NDISC_NEIGHBOUR_SOLICITATION && ty != NDISC_NEIGHBOUR_ADVERTISEMENT {
        return;
    }
    // A failed read is counted as discarded (`count_discarded`); no log line here: the
    // logging code would double the program the verifier walks for every load.
    let _ = emit::<M>(skb, ty, ip6);
}

#[inline(always)]
unsafe fn emit<M: Mem>(skb: *const u8, ty: u8, ip6: *const u8) -> Result<(), i64> {
    let o = offsets();
    let Some(mut entry) = EVENTS.reserve::<NdiscXmitEvent>(0) else {
        count_lost();
        return Ok(());
    };
    let ev = &mut *entry.as_mut_ptr();
    match fill::<M>(ev, skb) {
        Ok(dev) => {
            remember(ev, ty, ip6);
            // Last: each way out of the address walk is verified with all that follows it.
            read_dev6_addrs(ev, dev, &o);
            entry.submit(wake_flags(ev.ts_ns));
            Ok(())
        }
        Err(e) => {
            entry.discard(0);
            count_discarded();
            Err(e)
        }
    }
}

/// Everything but the device's addresses; returns the device.
#[inline(always)]
unsafe fn fill<M: Mem>(ev: &mut NdiscXmitEvent, skb: *const u8) -> Result<*const u8, i64> {
    let h = read_head::<M>(skb)?;
    ev.kind = EVENT_NDISC_XMIT;
    put_head!(ev, h);
    if h.flags & XMIT_HAS_SK != 0 {
        let sk: *const u8 = M::try_get(skb, off!(skb_sk))?;
        // Only whether a file holds the socket: the ndisc socket has none, a user's raw
        // ICMPv6 socket does. Not the inode, which only the helper reaches.
        let (flags, _) = owner::<M>(sk);
        if flags & TRIGGER_NO_FILE == 0 {
            ev.flags |= XMIT_USER_SK;
        }
    }
    (ev.mac_len, ev.caplen) = copy_frame::<M, _>(skb, &mut ev.frame, FRAME6_MIN)?;
    Ok(h.dev)
}

/// The device's IPv6 addresses in `inet6_dev->addr_list` order: highest scope first and,
/// within a scope, newest first, so `ipv6_get_lladdr()`'s backward walk can be replayed in
/// user space. Unreadable entries are left zero rather than failing the event.
#[inline(always)]
unsafe fn read_dev6_addrs(ev: &mut NdiscXmitEvent, dev: *const u8, o: &Offsets) {
    // Entries past `n_addrs` are left as the ring buffer had them: user space reads the
    // first `n_addrs` only.
    ev.n_addrs = 0;
    ev.addrs_more = 0;
    ev.no_inet6 = 0;
    let idev: *const u8 = if o.dev_ip6_ptr == u32::MAX {
        core::ptr::null()
    } else {
        read(dev, o.dev_ip6_ptr).unwrap_or(core::ptr::null())
    };
    if idev.is_null() {
        ev.no_inet6 = 1;
        return;
    }
    let head = idev.add(o.in6_addr_list as usize);
    let mut node: *const u8 = read(head, 0).unwrap_or(core::ptr::null());
    let mut n = 0usize;
    while n < MAX_DEV6_ADDRS {
        if node.is_null() || node == head {
            break;
        }
        let ifp = node.sub(o.ifa6_if_list as usize);
        // One read of the entry's first bytes, where its address, prefix length, flags and
        // scope sit; a field beyond them is read alone.
        let head: [u64; IFA6_HEAD / 8] = read(ifp, 0).unwrap_or([0; IFA6_HEAD / 8]);
        // Field by field, the address as two words: a struct literal's zero-filled parts
        // become memset calls (`zero_words`).
        let a = &mut ev.addrs[n];
        let words: [u64; 2] = ifa6_field(&head, ifp, off!(ifa6_addr));
        a.addr = core::mem::transmute::<[u64; 2], [u8; 16]>(words);
        a.flags = ifa6_field(&head, ifp, off!(ifa6_flags));
        a.prefixlen = ifa6_field::<u32>(&head, ifp, off!(ifa6_prefix_len)) as u8;
        core::ptr::write_volatile(&mut a._pad, 0);
        a.scope = ifa6_field(&head, ifp, off!(ifa6_scope));
        n += 1;
        node = read(node, 0).unwrap_or(core::ptr::null());
    }
    ev.n_addrs = n as u16;
    ev.addrs_more = if !node.is_null() && node != head {
        1
    } else {
        0
    };
}

/// Bytes of an `inet6_ifaddr` read at once: `addr`, `prefix_len`, `flags` and `scope` lie in
/// its first 52 on 6.1 and 6.18 (a kernel with lock debugging has a larger `lock` before
/// `flags`, which is then read alone).
const IFA6_HEAD: usize = 64;

/// The `T` at `off` in an `inet6_ifaddr` whose first [`IFA6_HEAD`] bytes are `head`, or read
/// from `ifp` when it lies beyond them. `off` comes from [`off!`]: the verifier knows it, so
/// it walks one of the two ways, and the stack load it checks is aligned.
#[inline(always)]
unsafe fn ifa6_field<T: Copy + Default>(
    head: &[u64; IFA6_HEAD / 8],
    ifp: *const u8,
    off: u32,
) -> T {
    let off = off as usize;
    if off + core::mem::size_of::<T>() <= IFA6_HEAD
        && off.is_multiple_of(core::mem::align_of::<T>())
    {
        core::ptr::read((head.as_ptr() as *const u8).add(off) as *const T)
    } else {
        read(ifp, off as u32).unwrap_or_default()
    }
}

/// Numbers the event and keeps a resolution's solicitation as this CPU's pending request
/// for the neighbour record to claim. DAD (source `::`) resolves nothing and is not kept.
/// Source and target are read from the packet at fixed offsets, not searched in the copied
/// frame: a loop over bytes there made the verifier's work several times the whole ARP path.
#[inline(always)]
unsafe fn remember(ev: &mut NdiscXmitEvent, ty: u8, ip6: *const u8) {
    let Some(slot) = SLOT.get_ptr_mut(0) else {
        ev.seq = 0;
        return;
    };
    let slot = &mut *slot;
    slot.next_seq += 1;
    ev.seq = slot.next_seq;
    if ty != NDISC_NEIGHBOUR_SOLICITATION {
        return;
    }
    // IPv6 source at 8..24 and the solicitation's target at 48..64 (40 + 8): one read of
    // 8..64, as words (the target as the two `key()` makes of it).
    let Ok(w) = bpf_probe_read_kernel(ip6.add(8) as *const [u64; 7]) else {
        return;
    };
    if w[0] | w[1] == 0 {
        return;
    }
    pend(slot, ev.seq, ev.netns, ev.ifindex, [w[5], w[6]]);
}
