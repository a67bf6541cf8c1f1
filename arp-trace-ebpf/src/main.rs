//! eBPF programs of arp-trace. They only copy what they see into the ring buffer; all
//! decoding and reasoning happens in user space where it can be tested without a kernel.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Built for the host only so `cargo clippy --workspace` works; the programs exist for BPF only.
#![cfg_attr(not(target_arch = "bpf"), allow(dead_code, unused_imports))]

use core::ffi::c_void;

use arp_trace_common::{
    ArpXmitEvent, Config, DevAddr, NeighEvent, Offsets, TriggerEvent, ADDR_SECONDARY,
    EVENT_ARP_XMIT, EVENT_NEIGH, EVENT_NEIGH_DROP, EVENT_TRIGGER, FRAME_CAP, HOOK_FENTRY,
    HOOK_KFREE_SKB, HOOK_KPROBE, HOOK_NEIGH_QUEUE, HOOK_NET_DEV_QUEUE, IP_CAP, MAX_DEV_ADDRS,
    NAME_LEN, NEIGH_FAILED, NEIGH_FIRST, NO_MAC_HEADER, SETTING_QUEUE_TRIGGER, STACK_DEPTH,
    TRIGGER_HAS_SK, TRIGGER_NO_FILE, TRIGGER_ORPHAN, TRIGGER_REQUEST_SK,
};
use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_kernel_buf,
    },
    macros::{btf_tracepoint, fentry, kprobe, map},
    maps::{Array, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, FEntryContext, ProbeContext},
    EbpfContext,
};

/// Set by the loader from the running kernel's BTF before the programs are loaded.
#[no_mangle]
static OFFSETS: Offsets = Offsets::UNSET;

#[no_mangle]
static CONFIG: Config = Config::UNSET;

/// An ARP request transmitted on this CPU that no neighbour record has claimed yet.
#[derive(Clone, Copy)]
#[repr(C)]
struct Req {
    seq: u64,
    /// Owner of the entry's newest queued packet, caught before a reply flushed the queue.
    sk: u64,
    sk_ino: u64,
    netns: u32,
    ifindex: u32,
    target: [u8; 4],
    /// `arp_queue.qlen` when the entry was first updated after the request (`NO_QLEN`: not yet).
    qlen: u32,
    owner_flags: u32,
    _pad: u32,
}

const NO_QLEN: u32 = u32::MAX;
/// Requests in flight per CPU. `neigh_probe()` runs `arp_solicit()`, which transmits the
/// request; the neighbour tracepoint follows once bottom halves are enabled again, and
/// softirqs run in between may send requests of their own (a peer resolving us back, on
/// veth), so one slot is not enough.
const PENDING: usize = 4;

#[derive(Clone, Copy)]
#[repr(C)]
struct Slot {
    next_seq: u64,
    next: u32,
    /// NEIGH_FAILED drops of IPv4 packets on this CPU since its last IPv4 neighbour record.
    failed_drops: u32,
    reqs: [Req; PENDING],
}

#[map]
static SLOT: PerCpuArray<Slot> = PerCpuArray::with_max_entries(1, 0);

/// Default size; the loader may resize it (`--buffer-size`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// `SETTING_*` flags, written by the loader once it has chosen the solicit path. A map, not
/// .rodata: the path is known only after the object is loaded and programs are tried.
#[map]
static SETTINGS: Array<u32> = Array::with_max_entries(1, 0);

#[inline(always)]
fn queue_trigger() -> bool {
    SETTINGS
        .get(0)
        .is_some_and(|s| s & SETTING_QUEUE_TRIGGER != 0)
}

/// Events that could not be delivered because the ring buffer was full, per CPU.
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

const ETH_P_ARP_BE: u16 = 0x0806u16.to_be();

#[inline(always)]
fn offsets() -> Offsets {
    // Volatile so the compiler cannot fold the placeholder values the loader overwrites.
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}

#[inline(always)]
unsafe fn read<T: Copy>(base: *const u8, off: u32) -> Result<T, i64> {
    bpf_probe_read_kernel(base.add(off as usize) as *const T).map_err(|e| e as i64)
}

fn count_lost() {
    if let Some(p) = LOST.get_ptr_mut(0) {
        unsafe { *p += 1 };
    }
}

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
    if proto != ETH_P_ARP_BE {
        return 0;
    }
    if let Err(e) = unsafe { try_net_dev_queue(skb) } {
        // Only a kernel whose layout the loader misread gets here; say so once per event.
        aya_log_ebpf::debug!(&ctx, "net_dev_queue: kernel read failed: {}", e);
    }
    0
}

unsafe fn try_net_dev_queue(skb: *const u8) -> Result<(), i64> {
    let o = offsets();
    let Some(mut entry) = EVENTS.reserve::<ArpXmitEvent>(0) else {
        count_lost();
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    match fill_xmit(&mut *ev, skb, &o) {
        Ok(()) => {
            remember_request(&mut *ev);
            entry.submit(0)
        }
        Err(e) => {
            entry.discard(0);
            return Err(e);
        }
    }
    Ok(())
}

#[inline(always)]
unsafe fn fill_xmit(ev: &mut ArpXmitEvent, skb: *const u8, o: &Offsets) -> Result<(), i64> {
    ev.kind = EVENT_ARP_XMIT;
    ev.hook = HOOK_NET_DEV_QUEUE;
    ev.ts_ns = bpf_ktime_get_ns();
    ev.cpu = aya_ebpf::helpers::bpf_get_smp_processor_id();
    ev.pid_tgid = bpf_get_current_pid_tgid();
    ev.comm = bpf_get_current_comm().unwrap_or([0; NAME_LEN]);
    ev._pad = 0;

    ev.skb_len = read(skb, o.skb_len)?;
    ev.mark = read(skb, o.skb_mark)?;
    ev.iif = read(skb, o.skb_iif)?;

    let dev: *const u8 = read(skb, o.skb_dev)?;
    ev.ifindex = read(dev, o.dev_ifindex)?;
    ev.ifname = read(dev, o.dev_name)?;
    let net: *const u8 = read(dev, o.dev_nd_net)?;
    ev.netns = if net.is_null() {
        0
    } else {
        read(net, o.net_ns_inum)?
    };
    read_dev_facts(ev, dev, net, o);

    let head: *const u8 = read(skb, o.skb_head)?;
    let mac: u16 = read(skb, o.skb_mac_header)?;
    let nh: u16 = read(skb, o.skb_network_header)?;
    let start = if mac != NO_MAC_HEADER && mac <= nh {
        ev.mac_len = nh - mac;
        head.add(mac as usize)
    } else {
        ev.mac_len = NO_MAC_HEADER;
        head.add(nh as usize)
    };
    // Copy a fixed size (the verifier wants constants); the frame may end before FRAME_CAP
    // inside a small allocation, so fall back to the bare Ethernet ARP size.
    if bpf_probe_read_kernel_buf(start, &mut ev.frame).is_ok() {
        ev.caplen = FRAME_CAP as u16;
    } else {
        bpf_probe_read_kernel_buf(start, &mut ev.frame[..42]).map_err(|e| e as i64)?;
        ev.caplen = 42;
    }
    Ok(())
}

const IFA_F_SECONDARY: u32 = 0x01;

/// What the kernel's sender choice depends on, as it stands while the frame leaves:
/// `arp_announce` (all and device) and the device's IPv4 addresses. Unreadable parts are
/// marked (-1, no addresses) rather than failing the event.
#[inline(always)]
unsafe fn read_dev_facts(ev: &mut ArpXmitEvent, dev: *const u8, net: *const u8, o: &Offsets) {
    ev.announce_all = -1;
    ev.announce_dev = -1;
    ev.n_addrs = 0;
    ev.addrs_more = 0;
    ev._pad2 = 0;
    let mut i = 0;
    while i < MAX_DEV_ADDRS {
        ev.addrs[i] = DevAddr::default();
        i += 1;
    }
    if !net.is_null() {
        if let Ok(all) = read::<*const u8>(net, o.net_devconf_all) {
            if !all.is_null() {
                ev.announce_all = read(all, o.devconf_arp_announce).unwrap_or(-1);
            }
        }
    }
    let Ok(indev) = read::<*const u8>(dev, o.dev_ip_ptr) else {
        return;
    };
    if indev.is_null() {
        return; // no IPv4 on this device
    }
    ev.announce_dev = read(indev, o.indev_arp_announce).unwrap_or(-1);
    let mut ifa: *const u8 = read(indev, o.indev_ifa_list).unwrap_or(core::ptr::null());
    let mut n = 0usize;
    while n < MAX_DEV_ADDRS {
        if ifa.is_null() {
            break;
        }
        let a = &mut ev.addrs[n];
        a.addr = read(ifa, o.ifa_local).unwrap_or([0; 4]);
        a.prefixlen = read(ifa, o.ifa_prefixlen).unwrap_or(0);
        a.scope = read(ifa, o.ifa_scope).unwrap_or(0);
        let flags: u32 = read(ifa, o.ifa_flags).unwrap_or(0);
        a.flags = if flags & IFA_F_SECONDARY != 0 {
            ADDR_SECONDARY
        } else {
            0
        };
        n += 1;
        ifa = read(ifa, o.ifa_next).unwrap_or(core::ptr::null());
    }
    ev.n_addrs = n as u16;
    ev.addrs_more = if ifa.is_null() { 0 } else { 1 };
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
        let r = &mut slot.reqs[(slot.next as usize) & (PENDING - 1)];
        slot.next = slot.next.wrapping_add(1);
        r.seq = ev.seq;
        r.netns = ev.netns;
        r.ifindex = ev.ifindex;
        r.target = [
            ev.frame[m + 24],
            ev.frame[m + 25],
            ev.frame[m + 26],
            ev.frame[m + 27],
        ];
        r.qlen = NO_QLEN;
        r.sk = 0;
        r.sk_ino = 0;
        r.owner_flags = 0;
    }
}

/// The pending request on this CPU for a neighbour (or, with no target, the newest on the
/// device): its index in `Slot::reqs`.
#[inline(always)]
fn find_req(slot: &Slot, netns: u32, ifindex: u32, target: Option<[u8; 4]>) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut best_seq = 0u64;
    let mut i = 0;
    while i < PENDING {
        let r = &slot.reqs[i];
        if r.seq > best_seq
            && r.netns == netns
            && r.ifindex == ifindex
            && target.map_or(true, |t| t == r.target)
        {
            best = Some(i);
            best_seq = r.seq;
        }
        i += 1;
    }
    best
}

/// `fentry/arp_solicit(neigh, skb)`: the exact packet the kernel solicits for, before the
/// request is built. `skb` is NULL for probes of an entry with nothing queued.
#[fentry(function = "arp_solicit")]
pub fn solicit_fentry(ctx: FEntryContext) -> i32 {
    let n: *const c_void = ctx.arg(0);
    let skb: *const c_void = ctx.arg(1);
    let _ = unsafe { solicit(n as *const u8, skb as *const u8, HOOK_FENTRY) };
    0
}

/// `kprobe/arp_solicit`: the same as the fentry program, for kernels that refuse fentry.
#[kprobe(function = "arp_solicit")]
pub fn solicit_kprobe(ctx: ProbeContext) -> i32 {
    let n: *const c_void = ctx.arg(0).unwrap_or(core::ptr::null());
    let skb: *const c_void = ctx.arg(1).unwrap_or(core::ptr::null());
    let _ = unsafe { solicit(n as *const u8, skb as *const u8, HOOK_KPROBE) };
    0
}

#[inline(always)]
unsafe fn solicit(n: *const u8, skb: *const u8, hook: u32) -> Result<(), i64> {
    if n.is_null() || skb.is_null() {
        return Ok(());
    }
    let target: [u8; 4] = read(n, offsets().neigh_key)?;
    emit_trigger(skb, EVENT_TRIGGER, 0, hook, target, 0)
}

/// `skb:kfree_skb` filtered to the neighbour queue's drop reasons: the packets lost when
/// resolution fails or the queue overflows.
#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb(ctx: BtfTracePointContext) -> i32 {
    let reason: u32 = ctx.arg::<u64>(2) as u32;
    // Both fields, not the whole struct: every dropped skb on the host passes here.
    let (failed, queuefull) = unsafe {
        (
            core::ptr::read_volatile(&CONFIG.drop_neigh_failed),
            core::ptr::read_volatile(&CONFIG.drop_neigh_queuefull),
        )
    };
    if reason == 0 || (reason != failed && reason != queuefull) {
        return 0;
    }
    let skb: *const c_void = ctx.arg(0);
    let _ = unsafe {
        emit_trigger(
            skb as *const u8,
            EVENT_NEIGH_DROP,
            reason,
            HOOK_KFREE_SKB,
            [0; 4],
            0,
        )
    };
    0
}

const ETH_P_IP_BE: u16 = 0x0800u16.to_be();
const TCP_TIME_WAIT: u8 = 6;
const TCP_NEW_SYN_RECV: u8 = 12;

/// Writes a `TriggerEvent` for `skb`. `req_seq` names its request for `HOOK_NEIGH_QUEUE`;
/// the solicit-entry hooks work it out here.
#[inline(always)]
unsafe fn emit_trigger(
    skb: *const u8,
    kind: u32,
    reason: u32,
    hook: u32,
    target: [u8; 4],
    req_seq: u64,
) -> Result<(), i64> {
    let o = offsets();
    let proto: u16 = read(skb, o.skb_protocol)?;
    if proto != ETH_P_IP_BE {
        return Ok(()); // IPv6 neighbour discovery shares this code
    }
    let Some(mut entry) = EVENTS.reserve::<TriggerEvent>(0) else {
        count_lost();
        return Ok(());
    };
    if kind == EVENT_NEIGH_DROP && reason == core::ptr::read_volatile(&CONFIG.drop_neigh_failed) {
        if let Some(slot) = SLOT.get_ptr_mut(0) {
            (*slot).failed_drops = (*slot).failed_drops.wrapping_add(1);
        }
    }
    let ev = &mut *entry.as_mut_ptr();
    ev.hook = hook;
    ev.target = target;
    ev.req_seq = req_seq;
    match fill_trigger(ev, skb, &o, kind, reason) {
        Ok(()) => entry.submit(0),
        Err(e) => {
            entry.discard(0);
            return Err(e);
        }
    }
    Ok(())
}

#[inline(always)]
unsafe fn fill_trigger(
    ev: &mut TriggerEvent,
    skb: *const u8,
    o: &Offsets,
    kind: u32,
    reason: u32,
) -> Result<(), i64> {
    ev.kind = kind;
    ev.cpu = aya_ebpf::helpers::bpf_get_smp_processor_id();
    ev.ts_ns = bpf_ktime_get_ns();
    ev.pid_tgid = bpf_get_current_pid_tgid();
    ev.comm = bpf_get_current_comm().unwrap_or([0; NAME_LEN]);
    ev.drop_reason = reason;
    ev.skb_len = read(skb, o.skb_len)?;
    ev.mark = read(skb, o.skb_mark)?;
    ev.iif = read(skb, o.skb_iif)?;
    let dev: *const u8 = read(skb, o.skb_dev)?;
    if dev.is_null() {
        ev.ifindex = 0;
        ev.netns = 0;
    } else {
        ev.ifindex = read(dev, o.dev_ifindex)?;
        let net: *const u8 = read(dev, o.dev_nd_net)?;
        ev.netns = if net.is_null() {
            0
        } else {
            read(net, o.net_ns_inum)?
        };
    }
    if kind == EVENT_TRIGGER && (ev.hook == HOOK_FENTRY || ev.hook == HOOK_KPROBE) {
        if let Some(slot) = SLOT.get_ptr(0) {
            // arp_solicit() transmits its request synchronously on this CPU (BHs are off
            // under the neighbour lock), so the request takes the next number; user space
            // checks the request's target against `ev.target` before joining.
            ev.req_seq = (*slot).next_seq + 1;
        }
    }

    let head: *const u8 = read(skb, o.skb_head)?;
    let nh: u16 = read(skb, o.skb_network_header)?;
    if bpf_probe_read_kernel_buf(head.add(nh as usize), &mut ev.ip).is_err() {
        bpf_probe_read_kernel_buf(head.add(nh as usize), &mut ev.ip[..40]).map_err(|e| e as i64)?;
        let mut i = 40;
        while i < IP_CAP {
            ev.ip[i] = 0;
            i += 1;
        }
    }

    let sk: *const u8 = read(skb, o.skb_sk)?;
    let (flags, ino) = read_owner(sk, o)?;
    ev.flags = flags;
    ev.sk_ino = ino;
    ev.sk = sk as u64;

    ev.stack_len = 0;
    Ok(())
}

/// Socket facts of a packet's owner: `TRIGGER_*` flags and the socket inode.
#[inline(always)]
unsafe fn read_owner(sk: *const u8, o: &Offsets) -> Result<(u32, u64), i64> {
    if sk.is_null() {
        return Ok((0, 0));
    }
    let mut flags = TRIGGER_HAS_SK;
    let state: u8 = read(sk, o.sk_state)?;
    let mut owner = sk;
    if state == TCP_NEW_SYN_RECV {
        flags |= TRIGGER_REQUEST_SK;
        owner = read(sk, o.rsk_listener)?;
    }
    if state == TCP_TIME_WAIT || owner.is_null() {
        return Ok((flags | TRIGGER_NO_FILE, 0));
    }
    let sock: *const u8 = read(owner, o.sk_socket)?;
    if sock.is_null() {
        // close() orphans the sock but its queued skbs keep it alive: a user's packet.
        return Ok((flags | TRIGGER_NO_FILE | TRIGGER_ORPHAN, 0));
    }
    let file: *const u8 = read(sock, o.socket_file)?;
    if file.is_null() {
        flags |= TRIGGER_NO_FILE;
    }
    Ok((flags, read(sock, o.socket_ino)?))
}

/// `neigh:neigh_event_send_done` (first solicit) and `neigh:neigh_timer_handler`
/// (retransmits, probes, failure) fire after `neigh_probe()` with the neighbour itself.
#[btf_tracepoint(function = "neigh_event_send_done")]
pub fn neigh_event_send_done(ctx: BtfTracePointContext) -> i32 {
    let n: *const c_void = ctx.arg(0);
    let _ = unsafe { emit_neigh(&ctx, n as *const u8, NEIGH_FIRST) };
    0
}

#[btf_tracepoint(function = "neigh_timer_handler")]
pub fn neigh_timer_handler(ctx: BtfTracePointContext) -> i32 {
    let n: *const c_void = ctx.arg(0);
    let _ = unsafe { emit_neigh(&ctx, n as *const u8, 0) };
    0
}

const AF_INET: u32 = 2;
const NUD_FAILED: u8 = 0x20;

#[inline(always)]
unsafe fn emit_neigh(ctx: &BtfTracePointContext, n: *const u8, first: u32) -> Result<(), i64> {
    let o = offsets();
    let Some((target, dev, ifindex, netns)) = ipv4_neigh(n, &o)? else {
        return Ok(());
    };
    let state: u8 = read(n, o.neigh_nud_state)?;

    let mut req_seq = 0u64;
    let mut dropped = 0u32;
    let mut seen = Req {
        seq: 0,
        sk: 0,
        sk_ino: 0,
        netns,
        ifindex,
        target,
        qlen: NO_QLEN,
        owner_flags: 0,
        _pad: 0,
    };
    if let Some(slot) = SLOT.get_ptr_mut(0) {
        let slot = &mut *slot;
        if let Some(i) = find_req(slot, netns, ifindex, Some(target)) {
            seen = slot.reqs[i & (PENDING - 1)];
            req_seq = seen.seq;
            slot.reqs[i & (PENDING - 1)].seq = 0;
        }
        dropped = slot.failed_drops;
        slot.failed_drops = 0;
    }
    // neigh_invalidate() drops the queue with the lock released per packet; a send on another
    // CPU meanwhile restarts the entry (INCOMPLETE again) and the timer's record no longer
    // shows FAILED. The drops just made on this CPU still say the entry failed.
    let failed = state == NUD_FAILED || dropped != 0;
    if req_seq == 0 && !failed {
        return Ok(()); // nothing was solicited in this call
    }
    if req_seq != 0 && seen.qlen == NO_QLEN && queue_trigger() {
        // No update since the solicit: the queue is as neigh_probe() found it, and its
        // newest packet is the one arp_solicit() was handed a clone of (unless another CPU
        // queued one to this entry in the microseconds since; the README names that).
        if let Some(skb) = queue_tail(n, &o) {
            let _ = emit_trigger(skb, EVENT_TRIGGER, 0, HOOK_NEIGH_QUEUE, target, req_seq);
        }
    }
    let Some(mut entry) = EVENTS.reserve::<NeighEvent>(0) else {
        count_lost();
        return Ok(());
    };
    let ev = &mut *entry.as_mut_ptr();
    ev.kind = EVENT_NEIGH;
    ev.cpu = aya_ebpf::helpers::bpf_get_smp_processor_id();
    ev.ts_ns = bpf_ktime_get_ns();
    ev.req_seq = req_seq;
    ev.netns = netns;
    ev.ifindex = ifindex;
    ev.target = target;
    ev.nud_state = state as u32;
    ev.probes = read(n, o.neigh_probes).unwrap_or(0);
    // A reply handled before this tracepoint (veth answers at once) flushed the queue; the
    // length and owner caught by neigh_update just before that are the ones of the solicit.
    ev.qlen = if seen.qlen != NO_QLEN {
        seen.qlen
    } else {
        read(n, o.neigh_qlen).unwrap_or(0)
    };
    ev.flags = if failed { NEIGH_FAILED } else { 0 } | if req_seq != 0 { first } else { 0 };
    let parms: *const u8 = read(n, o.neigh_parms).unwrap_or(core::ptr::null());
    ev.ucast_probes = if parms.is_null() {
        0
    } else {
        read(parms, o.parms_ucast_probes).unwrap_or(0)
    };
    ev.ifname = read(dev, o.dev_name).unwrap_or([0; NAME_LEN]);
    ev.pid_tgid = bpf_get_current_pid_tgid();
    ev.comm = bpf_get_current_comm().unwrap_or([0; NAME_LEN]);
    ev.sk = 0;
    ev.sk_ino = 0;
    ev.owner_flags = 0;
    ev.stack_len = 0;
    if req_seq != 0 {
        if seen.qlen != NO_QLEN {
            (ev.sk, ev.sk_ino, ev.owner_flags) = (seen.sk, seen.sk_ino, seen.owner_flags);
        } else if let Some((sk, ino, flags)) = queue_owner(n, &o) {
            (ev.sk, ev.sk_ino, ev.owner_flags) = (sk, ino, flags);
        }
        let got = aya_ebpf::helpers::bpf_get_stack(
            ctx.as_ptr(),
            ev.stack.as_mut_ptr() as *mut c_void,
            (STACK_DEPTH * 8) as u32,
            0,
        );
        ev.stack_len = if got > 0 { (got as u32) / 8 } else { 0 };
    }
    entry.submit(0);
    Ok(())
}

/// An IPv4 neighbour's identity: (target, device, ifindex, netns inode); `None` for other
/// families (IPv6 neighbour discovery shares these tracepoints).
#[inline(always)]
unsafe fn ipv4_neigh(
    n: *const u8,
    o: &Offsets,
) -> Result<Option<([u8; 4], *const u8, u32, u32)>, i64> {
    let tbl: *const u8 = read(n, o.neigh_tbl)?;
    let family: u32 = read(tbl, o.tbl_family)?;
    if family != AF_INET {
        return Ok(None);
    }
    let target: [u8; 4] = read(n, o.neigh_key)?;
    let dev: *const u8 = read(n, o.neigh_dev)?;
    let ifindex: u32 = read(dev, o.dev_ifindex)?;
    let net: *const u8 = read(dev, o.dev_nd_net)?;
    let netns: u32 = if net.is_null() {
        0
    } else {
        read(net, o.net_ns_inum)?
    };
    Ok(Some((target, dev, ifindex, netns)))
}

/// The newest packet queued on a neighbour: the one `neigh_probe()` clones for the solicit.
#[inline(always)]
unsafe fn queue_tail(n: *const u8, o: &Offsets) -> Option<*const u8> {
    let head = n.add(o.neigh_queue as usize);
    let tail: *const u8 = read(n, o.neigh_queue_tail).unwrap_or(head);
    if tail.is_null() || tail == head {
        return None;
    }
    Some(tail)
}

/// Owner of the newest packet queued on a neighbour: `skb_clone()` drops `skb->sk`, so the
/// solicited clone cannot tell, but the queued original can.
#[inline(always)]
unsafe fn queue_owner(n: *const u8, o: &Offsets) -> Option<(u64, u64, u32)> {
    let tail = queue_tail(n, o)?;
    let sk: *const u8 = read(tail, o.skb_sk).unwrap_or(core::ptr::null());
    let (flags, ino) = read_owner(sk, o).ok()?;
    Some((sk as u64, ino, flags))
}

/// `neigh:neigh_update`: the first update after a request (normally the reply) is about to
/// flush the entry's queue; keep its length and owner for the request's neighbour record.
#[btf_tracepoint(function = "neigh_update")]
pub fn neigh_update(ctx: BtfTracePointContext) -> i32 {
    let n: *const c_void = ctx.arg(0);
    let _ = unsafe { note_update(n as *const u8) };
    0
}

#[inline(always)]
unsafe fn note_update(n: *const u8) -> Result<(), i64> {
    let Some(slot) = SLOT.get_ptr_mut(0) else {
        return Ok(());
    };
    let slot = &mut *slot;
    let o = offsets();
    let Some((target, _, ifindex, netns)) = ipv4_neigh(n, &o)? else {
        return Ok(());
    };
    let Some(i) = find_req(slot, netns, ifindex, Some(target)) else {
        return Ok(());
    };
    let r = &mut slot.reqs[i & (PENDING - 1)];
    if r.qlen != NO_QLEN {
        return Ok(());
    }
    r.qlen = read(n, o.neigh_qlen).unwrap_or(0);
    if let Some((sk, ino, flags)) = queue_owner(n, &o) {
        (r.sk, r.sk_ino, r.owner_flags) = (sk, ino, flags);
    }
    let seq = r.seq;
    if queue_trigger() {
        // The update is about to send and flush the queue; read the packet while it is there.
        if let Some(skb) = queue_tail(n, &o) {
            emit_trigger(skb, EVENT_TRIGGER, 0, HOOK_NEIGH_QUEUE, target, seq)?;
        }
    }
    Ok(())
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
