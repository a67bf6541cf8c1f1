//! `tp_btf/netif_receive_skb`: every ARP frame a device hands up to the stack, in every
//! namespace. The tracepoint fires in `__netif_receive_skb_core()` before
//! `skb_reset_network_header()`: the ARP header is at `skb->data` (eth_type_trans() pulled the
//! Ethernet header and set `mac_header`), while `network_header` may still be stale there.
//! It fires once per device a frame enters (a bridge port, then the bridge for frames passed
//! up), so each of those is a record.

use arp_trace_common::{
    ArpRecvEvent, EVENT_ARP_RECV, FRAME_CAP, HOOK_NETIF_RECEIVE_SKB, NO_MAC_HEADER,
};
use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel_buf},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use crate::shared::{
    count_discarded, count_lost, off, wake_flags, Btf, Mem, Probe, CONFIG, EVENTS, OFFSETS,
};

const ETH_P_ARP_BE: u16 = 0x0806u16.to_be();

/// Every frame any device receives passes here: everything but ARP leaves after one load and
/// one compare, as in `net_dev_queue`.
#[btf_tracepoint(function = "netif_receive_skb")]
pub fn netif_receive_skb(ctx: BtfTracePointContext) -> i32 {
    let skb: *const u8 = ctx.arg(0);
    let proto = unsafe {
        let off = core::ptr::read_volatile(&OFFSETS.skb_protocol);
        core::ptr::read_volatile(skb.add(off as usize) as *const u16)
    };
    if proto != ETH_P_ARP_BE {
        return 0;
    }
    let direct = unsafe { core::ptr::read_volatile(&CONFIG.xmit_direct) } != 0;
    let done = unsafe {
        if direct {
            try_receive::<Btf>(skb)
        } else {
            try_receive::<Probe>(skb)
        }
    };
    if let Err(e) = done {
        aya_log_ebpf::debug!(&ctx, "netif_receive_skb: kernel read failed: {}", e);
    }
    0
}

#[inline(always)]
unsafe fn try_receive<M: Mem>(skb: *const u8) -> Result<(), i64> {
    let Some(mut entry) = EVENTS.reserve::<ArpRecvEvent>(0) else {
        count_lost();
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    match fill_recv::<M>(&mut *ev, skb) {
        Ok(()) => entry.submit(wake_flags((*ev).ts_ns)),
        Err(e) => {
            entry.discard(0);
            count_discarded();
            return Err(e);
        }
    }
    Ok(())
}

#[inline(always)]
unsafe fn fill_recv<M: Mem>(ev: &mut ArpRecvEvent, skb: *const u8) -> Result<(), i64> {
    let dev: *const u8 = M::try_get(skb, off!(skb_dev))?;
    let net: *const u8 = M::try_get(dev, off!(dev_nd_net))?;
    ev.kind = EVENT_ARP_RECV;
    ev.hook = HOOK_NETIF_RECEIVE_SKB;
    ev.ts_ns = bpf_ktime_get_ns();
    ev.cpu = aya_ebpf::helpers::bpf_get_smp_processor_id();
    ev._pad = 0;
    ev.netns = if net.is_null() {
        0
    } else {
        M::try_get(net, off!(net_ns_inum))?
    };
    ev.ifindex = M::try_get(dev, off!(dev_ifindex))?;
    ev.ifname = M::try_get(dev, off!(dev_name))?;
    let head: u64 = M::try_get(skb, off!(skb_head))?;
    let data: u64 = M::try_get(skb, off!(skb_data))?;
    let mac: u16 = M::try_get(skb, off!(skb_mac_header))?;
    let len: u32 = M::try_get(skb, off!(skb_len))?;
    // The network header's offset from `head`, as skb_reset_network_header() will set it.
    let nh = data.wrapping_sub(head);
    let (mac_len, start) = if mac != NO_MAC_HEADER && (mac as u64) <= nh && nh < 0xffff {
        (nh as u16 - mac, head + mac as u64)
    } else {
        (NO_MAC_HEADER, data)
    };
    ev.mac_len = mac_len;
    ev.skb_len = if mac_len == NO_MAC_HEADER {
        len
    } else {
        len + mac_len as u32
    };
    let start = start as *const u8;
    // A fixed size for the verifier; a frame at the very end of a small allocation falls
    // back to the 42 bytes of an Ethernet ARP frame.
    if bpf_probe_read_kernel_buf(start, &mut ev.frame).is_ok() {
        ev.caplen = FRAME_CAP as u16;
        return Ok(());
    }
    bpf_probe_read_kernel_buf(start, &mut ev.frame[..42]).map_err(|e| e as i64)?;
    ev.caplen = 42;
    Ok(())
}
