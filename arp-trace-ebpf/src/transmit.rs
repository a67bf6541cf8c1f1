//! `tp_btf/net_dev_queue`: the ARP frame as the device queues it, the egress device's
//! addresses and `arp_announce`, and the request's sequence number. On its own because it
//! runs for every frame the host sends and must stay the cheapest of the programs. The skb,
//! its device and the device's addresses and settings are read with direct loads where the
//! verifier takes them (6.12 on, `Config::xmit_direct`) and with the helper elsewhere: with
//! direct loads in `read_head` and `copy_frame` alone, the 6.1 verifier gives up on the
//! program (E2BIG after ~80 s). The walk over the namespace's devices (`container_of()`
//! arithmetic, out of BTF's reach) uses the helper on every kernel.

use arp_trace_common::{
    ArpXmitEvent, Offsets, ADDR_SECONDARY, CONF_ARP_NOTIFY, CONF_READ, CONF_ROUTE_LOCALNET,
    EVENT_ARP_XMIT, FRAME_CAP, MAX_DEV_ADDRS, MAX_WALK, NAME_LEN, NO_MAC_HEADER, XMIT_HAS_SK,
};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel_buf},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use crate::shared::{
    count_discarded, count_lost, current_comm, off, offsets, read, wake_flags, zero_words, Btf,
    Mem, Probe, Slot, CONFIG, EVENTS, OFFSETS, PENDING, SLOT,
};

const ETH_P_ARP_BE: u16 = 0x0806u16.to_be();
const ETH_P_IPV6_BE: u16 = 0x86DDu16.to_be();

/// Every frame any device queues passes here, so everything but ARP must leave at once.
#[btf_tracepoint(function = "net_dev_queue")]
pub fn net_dev_queue(ctx: BtfTracePointContext) -> i32 {
    let skb: *const u8 = ctx.arg(0);
    // A direct load instead of bpf_probe_read_kernel(): `skb` is a BTF pointer and the offset
    // comes from frozen .rodata, so the verifier knows it as a constant and checks it against
    // `struct sk_buff`. It halves the program's cost per frame (BENCHMARKS.md, figure 1).
    let proto = unsafe {
        let off = core::ptr::read_volatile(&OFFSETS.skb_protocol);
        core::ptr::read_volatile(skb.add(off as usize) as *const u16)
    };
    // Direct loads where the verifier can afford them (`Config::xmit_direct`): a constant in
    // frozen .rodata, so the verifier walks only the branch taken.
    let direct = unsafe { core::ptr::read_volatile(&CONFIG.xmit_direct) } != 0;
    if proto != ETH_P_ARP_BE {
        if proto == ETH_P_IPV6_BE {
            unsafe {
                if direct {
                    if crate::ndisc::transport_socket(skb) {
                        return 0;
                    }
                    crate::ndisc::ipv6_frame::<Btf>(skb)
                } else {
                    crate::ndisc::ipv6_frame::<Probe>(skb)
                }
            };
        }
        return 0;
    }
    let done = unsafe {
        if direct {
            try_net_dev_queue::<Btf>(skb)
        } else {
            try_net_dev_queue::<Probe>(skb)
        }
    };
    if let Err(e) = done {
        // Only a kernel whose layout the loader misread gets here; say so once per event.
        aya_log_ebpf::debug!(&ctx, "net_dev_queue: kernel read failed: {}", e);
    }
    0
}

#[inline(always)]
unsafe fn try_net_dev_queue<M: Mem>(skb: *const u8) -> Result<(), i64> {
    let o = offsets();
    let Some(mut entry) = EVENTS.reserve::<ArpXmitEvent>(0) else {
        count_lost();
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    match fill_xmit::<M>(&mut *ev, skb, &o) {
        Ok(()) => {
            remember_request(&mut *ev);
            entry.submit(wake_flags((*ev).ts_ns))
        }
        Err(e) => {
            entry.discard(0);
            count_discarded();
            return Err(e);
        }
    }
    Ok(())
}

/// Copies a [`Head`] into the fields of the same names that both transmitted records have.
macro_rules! put_head {
    ($ev:expr, $h:expr) => {
        $ev.hook = arp_trace_common::HOOK_NET_DEV_QUEUE;
        $ev.ts_ns = $h.ts_ns;
        $ev.cpu = $h.cpu;
        $ev.pid_tgid = $h.pid_tgid;
        $ev.comm = $h.comm;
        $ev.flags = $h.flags;
        $ev.skb_len = $h.skb_len;
        $ev.mark = $h.mark;
        $ev.iif = $h.iif;
        $ev.ifindex = $h.ifindex;
        $ev.ifname = $h.ifname;
        $ev.netns = $h.netns;
    };
}
pub(crate) use put_head;

/// What every transmitted record starts with, read from the skb and its device.
pub(crate) struct Head {
    pub(crate) ts_ns: u64,
    pub(crate) cpu: u32,
    pub(crate) pid_tgid: u64,
    pub(crate) comm: [u8; NAME_LEN],
    pub(crate) flags: u32,
    pub(crate) skb_len: u32,
    pub(crate) mark: u32,
    pub(crate) iif: u32,
    pub(crate) dev: *const u8,
    pub(crate) net: *const u8,
    pub(crate) ifindex: u32,
    pub(crate) ifname: [u8; NAME_LEN],
    pub(crate) netns: u32,
}

/// `skb` is the tracepoint's own (BTF-typed) argument; `M` reads it and its device.
#[inline(always)]
pub(crate) unsafe fn read_head<M: Mem>(skb: *const u8) -> Result<Head, i64> {
    let sk: *const u8 = M::try_get(skb, off!(skb_sk))?;
    let dev: *const u8 = M::try_get(skb, off!(skb_dev))?;
    let net: *const u8 = M::try_get(dev, off!(dev_nd_net))?;
    Ok(Head {
        ts_ns: bpf_ktime_get_ns(),
        cpu: aya_ebpf::helpers::bpf_get_smp_processor_id(),
        pid_tgid: bpf_get_current_pid_tgid(),
        comm: {
            let mut c = core::mem::MaybeUninit::<[u8; NAME_LEN]>::uninit();
            current_comm(c.as_mut_ptr());
            c.assume_init()
        },
        flags: if sk.is_null() { 0 } else { XMIT_HAS_SK },
        skb_len: M::try_get(skb, off!(skb_len))?,
        mark: M::try_get(skb, off!(skb_mark))?,
        iif: M::try_get(skb, off!(skb_iif))?,
        dev,
        net,
        ifindex: M::try_get(dev, off!(dev_ifindex))?,
        ifname: M::try_get(dev, off!(dev_name))?,
        netns: if net.is_null() {
            0
        } else {
            M::try_get(net, off!(net_ns_inum))?
        },
    })
}

/// Copies the frame from its link-layer header on into `frame`: `(mac_len, caplen)`. A fixed
/// size (the verifier wants constants); the frame may end before `N` inside a small
/// allocation, so it falls back to the first `min` bytes.
#[inline(always)]
pub(crate) unsafe fn copy_frame<M: Mem, const N: usize>(
    skb: *const u8,
    frame: &mut [u8; N],
    min: usize,
) -> Result<(u16, u16), i64> {
    let head: *const u8 = M::try_get(skb, off!(skb_head))?;
    let mac: u16 = M::try_get(skb, off!(skb_mac_header))?;
    let nh: u16 = M::try_get(skb, off!(skb_network_header))?;
    let (mac_len, start) = if mac != NO_MAC_HEADER && mac <= nh {
        (nh - mac, head.add(mac as usize))
    } else {
        (NO_MAC_HEADER, head.add(nh as usize))
    };
    if bpf_probe_read_kernel_buf(start, frame).is_ok() {
        return Ok((mac_len, N as u16));
    }
    bpf_probe_read_kernel_buf(start, &mut frame[..min]).map_err(|e| e as i64)?;
    Ok((mac_len, min as u16))
}

#[inline(always)]
unsafe fn fill_xmit<M: Mem>(ev: &mut ArpXmitEvent, skb: *const u8, o: &Offsets) -> Result<(), i64> {
    let h = read_head::<M>(skb)?;
    ev.kind = EVENT_ARP_XMIT;
    put_head!(ev, h);
    read_dev_facts::<M>(ev, h.dev, h.net, o);
    (ev.mac_len, ev.caplen) = copy_frame::<M, _>(skb, &mut ev.frame, 42)?;
    Ok(())
}

const IFA_F_SECONDARY: u32 = 0x01;
const RT_SCOPE_LINK: u8 = 253;
const RT_SCOPE_HOST: u8 = 254;

/// What the kernel's sender choice depends on, as it stands while the frame leaves:
/// `arp_announce`, `route_localnet` and `arp_notify` (all and device), the device's IPv4
/// addresses, and when the device has none inet_select_addr() could use, the devices the
/// kernel could borrow one from, in its order. Unreadable parts are marked (-1, conf bits
/// without CONF_READ, no addresses) rather than failing the event.
#[inline(always)]
unsafe fn read_dev_facts<M: Mem>(
    ev: &mut ArpXmitEvent,
    dev: *const u8,
    net: *const u8,
    o: &Offsets,
) {
    // Everything from `announce_all` to the end: counts, settings, `addrs` and `walk`
    // (`ArpXmitEvent` keeps them last and 8-aligned for this).
    const FROM: usize = core::mem::offset_of!(ArpXmitEvent, announce_all);
    const WORDS: usize = (core::mem::size_of::<ArpXmitEvent>() - FROM) / 8;
    const _: () = assert!(
        FROM.is_multiple_of(8) && (core::mem::size_of::<ArpXmitEvent>() - FROM).is_multiple_of(8)
    );
    zero_words((ev as *mut ArpXmitEvent as *mut u8).add(FROM), WORDS);
    ev.announce_all = -1;
    ev.announce_dev = -1;
    if !net.is_null() {
        if let Ok(all) = M::try_get::<*const u8>(net, off!(net_devconf_all)) {
            if !all.is_null() {
                ev.announce_all = M::try_get(all, off!(devconf_arp_announce)).unwrap_or(-1);
                ev.conf_all =
                    conf_bits::<M>(all, off!(devconf_route_localnet), off!(devconf_arp_notify));
            }
        }
    }
    let Ok(indev) = M::try_get::<*const u8>(dev, off!(dev_ip_ptr)) else {
        return;
    };
    if indev.is_null() {
        walk_devices(ev, net, o); // no IPv4 on this device: inet_select_addr() borrows
        return;
    }
    ev.announce_dev = M::try_get(indev, off!(indev_arp_announce)).unwrap_or(-1);
    ev.conf_dev = conf_bits::<M>(indev, off!(indev_route_localnet), off!(indev_arp_notify));
    // IN_DEV_ROUTE_LOCALNET(): host-scope addresses count as link scope.
    let localnet_scope = if (ev.conf_all | ev.conf_dev) & CONF_ROUTE_LOCALNET != 0 {
        RT_SCOPE_LINK
    } else {
        RT_SCOPE_HOST
    };
    let mut usable = false;
    let mut ifa: *const u8 = M::try_get(indev, off!(indev_ifa_list)).unwrap_or(core::ptr::null());
    let mut n = 0usize;
    while n < MAX_DEV_ADDRS {
        if ifa.is_null() {
            break;
        }
        let a = &mut ev.addrs[n];
        a.addr = M::try_get(ifa, off!(ifa_local)).unwrap_or([0; 4]);
        a.peer = M::try_get(ifa, off!(ifa_address)).unwrap_or(a.addr);
        a.prefixlen = M::try_get(ifa, off!(ifa_prefixlen)).unwrap_or(0);
        a.scope = M::try_get(ifa, off!(ifa_scope)).unwrap_or(0);
        let flags: u32 = M::try_get(ifa, off!(ifa_flags)).unwrap_or(0);
        a.flags = if flags & IFA_F_SECONDARY != 0 {
            ADDR_SECONDARY
        } else {
            0
        };
        // inet_select_addr() on the device itself: a primary within link scope.
        if flags & IFA_F_SECONDARY == 0 && core::cmp::min(a.scope, localnet_scope) <= RT_SCOPE_LINK
        {
            usable = true;
        }
        n += 1;
        ifa = M::try_get(ifa, off!(ifa_next)).unwrap_or(core::ptr::null());
    }
    ev.n_addrs = n as u16;
    ev.addrs_more = if ifa.is_null() { 0 } else { 1 };
    if !usable && ifa.is_null() {
        walk_devices(ev, net, o);
    }
}

/// `CONF_*` bits of one `ipv4_devconf`-shaped block (`all`'s, or an in_device's `cnf`).
#[inline(always)]
unsafe fn conf_bits<M: Mem>(base: *const u8, localnet: u32, notify: u32) -> u8 {
    let (Ok(l), Ok(n)) = (
        M::try_get::<i32>(base, localnet),
        M::try_get::<i32>(base, notify),
    ) else {
        return 0;
    };
    let mut bits = CONF_READ;
    if l != 0 {
        bits |= CONF_ROUTE_LOCALNET;
    }
    if n != 0 {
        bits |= CONF_ARP_NOTIFY;
    }
    bits
}

/// The namespace's devices in list order (`for_each_netdev_rcu()`, lo first), by ifindex:
/// the order inet_select_addr() borrows in. What each lends (in_dev_select_addr()) and which
/// L3 domain it is in are worked out in user space from the netlink facts; only the order has
/// to come from here, since netlink and /proc list devices by ifindex. One counter and no
/// reads of addresses keep the verifier's walk short: anything more was refused (E2BIG).
#[inline(always)]
unsafe fn walk_devices(ev: &mut ArpXmitEvent, net: *const u8, o: &Offsets) {
    if net.is_null() {
        return;
    }
    let head = net.add(o.net_dev_base_head as usize);
    let Ok(mut node) = read::<*const u8>(head, 0) else {
        return;
    };
    let mut n = 0usize;
    while n < MAX_WALK {
        if node.is_null() || node == head {
            break;
        }
        let dev = node.sub(o.dev_dev_list as usize);
        ev.walk[n] = read(dev, o.dev_ifindex).unwrap_or(0);
        n += 1;
        node = read(node, 0).unwrap_or(core::ptr::null());
    }
    ev.n_walk = n as u8;
    ev.walk_more = if !node.is_null() && node != head {
        1
    } else {
        0
    };
}

/// Numbers the event and, for an ARP request, keeps it as this CPU's pending request.
#[inline(always)]
unsafe fn remember_request(ev: &mut ArpXmitEvent) {
    let Some(slot) = SLOT.get_ptr_mut(0) else {
        ev.seq = 0;
        return;
    };
    let slot = &mut *slot;
    slot.next_seq += 1;
    ev.seq = slot.next_seq;
    let m = if ev.mac_len == NO_MAC_HEADER {
        0usize
    } else {
        ev.mac_len as usize
    };
    // ARP op (bytes 6..8) and target IP (24..28) inside the ARP header.
    if m > FRAME_CAP - 28 {
        return;
    }
    let is_request = ev.frame[m + 6] == 0 && ev.frame[m + 7] == 1;
    if is_request {
        // The neighbour key of an IPv4 target: its 4 bytes, then zeros (`key()`), built as
        // words so that no zeroed array becomes a memset call.
        let t = &ev.frame[m + 24..m + 28];
        let low = u64::from_ne_bytes([t[0], t[1], t[2], t[3], 0, 0, 0, 0]);
        pend(slot, ev.seq, ev.netns, ev.ifindex, [low, 0]);
    }
}

/// Keeps a request as this CPU's newest pending one, for the neighbour record to claim.
#[inline(always)]
pub(crate) fn pend(slot: &mut Slot, seq: u64, netns: u32, ifindex: u32, target: [u64; 2]) {
    slot.reqs[(slot.next as usize) & (PENDING - 1)].set_pending(seq, netns, ifindex, target);
    slot.next = slot.next.wrapping_add(1);
}
