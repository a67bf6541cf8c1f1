//! The packet a request is sent for: `fentry`/`kprobe` on `arp_solicit`, and the packets
//! `tp_btf/kfree_skb` sees dropped from a neighbour's queue. `emit_trigger` and `read_owner`
//! are also what the neighbour tracepoints use on the tracepoint path; this module keeps the
//! one way a `TriggerEvent` is filled, whichever hook saw the packet.

use core::ffi::c_void;

use arp_trace_common::{
    TriggerEvent, CONTEXT_UNKNOWN, EVENT_NEIGH_DROP, EVENT_TRIGGER, FAMILY_INET, FAMILY_INET6,
    HOOK_FENTRY, HOOK_KFREE_SKB, HOOK_KPROBE, IP_CAP, TRIGGER_HAS_SK, TRIGGER_NO_FILE,
    TRIGGER_ORPHAN, TRIGGER_REQUEST_SK,
};
use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel_buf},
    macros::{btf_tracepoint, fentry, kprobe},
    programs::{BtfTracePointContext, FEntryContext, ProbeContext},
};

use crate::context::{context, no_task, task_fields, ASK};
use crate::neighbour::family_index;
use crate::shared::{
    count_discarded, count_lost, key, off, offsets, read, wake_flags, Btf, Mem, Probe, CONFIG,
    EVENTS, SLOT,
};

/// `fentry/arp_solicit(neigh, skb)`: the exact packet the kernel solicits for, before the
/// request is built. `skb` is NULL for probes of an entry with nothing queued.
#[fentry(function = "arp_solicit")]
pub fn solicit_fentry(ctx: FEntryContext) -> i32 {
    let n: *const c_void = ctx.arg(0);
    let skb: *const c_void = ctx.arg(1);
    let _ = unsafe { solicit::<Btf>(n as *const u8, skb as *const u8, HOOK_FENTRY) };
    0
}

/// `kprobe/arp_solicit`: the same as the fentry program, for kernels that refuse fentry.
#[kprobe(function = "arp_solicit")]
pub fn solicit_kprobe(ctx: ProbeContext) -> i32 {
    let n: *const c_void = ctx.arg(0).unwrap_or(core::ptr::null());
    let skb: *const c_void = ctx.arg(1).unwrap_or(core::ptr::null());
    let _ = unsafe { solicit::<Probe>(n as *const u8, skb as *const u8, HOOK_KPROBE) };
    0
}

#[inline(always)]
unsafe fn solicit<M: Mem>(n: *const u8, skb: *const u8, hook: u32) -> Result<(), i64> {
    if n.is_null() || skb.is_null() {
        return Ok(());
    }
    let ptrs = SkbPtrs::of::<M>(skb);
    let mut target = [0u8; 16];
    let v4: [u8; 4] = read(n, offsets().neigh_key)?;
    target[..4].copy_from_slice(&v4);
    emit_trigger::<M>(skb, ptrs, EVENT_TRIGGER, 0, hook, target, 0).map(|_| ())
}

/// `skb:kfree_skb` filtered to the neighbour queue's drop reasons: the packets lost when
/// resolution fails or the queue overflows.
#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb(ctx: BtfTracePointContext) -> i32 {
    let skb: *const u8 = ctx.arg(0);
    // Before any branch: see `SkbPtrs`. Two loads, on every drop, of a cache line the free
    // has just touched.
    let ptrs = unsafe { SkbPtrs::of::<Btf>(skb) };
    let mut reason: u32 = ctx.arg::<u64>(2) as u32;
    // Both fields, not the whole struct: every dropped skb on the host passes here.
    let (failed, queuefull) = unsafe {
        (
            core::ptr::read_volatile(&CONFIG.drop_neigh_failed),
            core::ptr::read_volatile(&CONFIG.drop_neigh_queuefull),
        )
    };
    if reason == 0 || (reason != failed && reason != queuefull) {
        if !unsafe { ndisc_failed(&ctx, reason) } {
            return 0;
        }
        reason = failed;
    }
    let _ = unsafe {
        emit_trigger::<Btf>(
            skb,
            ptrs,
            EVENT_NEIGH_DROP,
            reason,
            HOOK_KFREE_SKB,
            [0; 16],
            0,
        )
    };
    0
}

/// A packet an IPv6 neighbour's failure drops: `ndisc_error_report()` frees each with a
/// plain `kfree_skb()`, so only the caller's address tells it from the host's other drops
/// (in `ndisc_error_report()`, or in its caller when the free was a tail call).
#[inline(always)]
unsafe fn ndisc_failed(ctx: &BtfTracePointContext, reason: u32) -> bool {
    if reason != core::ptr::read_volatile(&CONFIG.drop_not_specified) {
        return false;
    }
    let location: u64 = ctx.arg(1);
    let mut i = 0;
    while i < 3 {
        let start = core::ptr::read_volatile(&CONFIG.ndisc_drop_ranges[i][0]);
        let end = core::ptr::read_volatile(&CONFIG.ndisc_drop_ranges[i][1]);
        if start != 0 && location >= start && location < end {
            return true;
        }
        i += 1;
    }
    false
}

const ETH_P_IP_BE: u16 = 0x0800u16.to_be();
const ETH_P_IPV6_BE: u16 = 0x86DDu16.to_be();
pub(crate) const TCP_TIME_WAIT: u8 = 6;
pub(crate) const TCP_NEW_SYN_RECV: u8 = 12;

/// An skb's device and socket. Loaded from a trusted pointer (a `tp_btf` or `fentry`
/// argument), a pointer costs the verifier a search of the kernel's BTF by name each time it
/// walks the load (6.3+, btf_nested_type_is_trusted()), so the programs load these before
/// they branch.
#[derive(Clone, Copy)]
pub(crate) struct SkbPtrs {
    dev: *const u8,
    sk: *const u8,
}

impl SkbPtrs {
    #[inline(always)]
    pub(crate) unsafe fn of<M: Mem>(skb: *const u8) -> SkbPtrs {
        SkbPtrs {
            dev: M::get(skb, off!(skb_dev)),
            sk: M::get(skb, off!(skb_sk)),
        }
    }
}

/// Writes a `TriggerEvent` for `skb`, read through `M`. `req_seq` names its request for
/// `HOOK_NEIGH_QUEUE`; the solicit-entry hooks work it out here. Returns the packet's owner
/// as read (`sk`, inode, `TRIGGER_*` flags) when a record was written.
#[inline(always)]
pub(crate) unsafe fn emit_trigger<M: Mem>(
    skb: *const u8,
    ptrs: SkbPtrs,
    kind: u32,
    reason: u32,
    hook: u32,
    target: [u8; 16],
    req_seq: u64,
) -> Result<Option<(u64, u64, u32)>, i64> {
    let Some(family) = packet_family::<M>(skb) else {
        return Ok(None);
    };
    let Some(mut entry) = EVENTS.reserve::<TriggerEvent>(0) else {
        count_lost();
        return Ok(None);
    };
    if kind == EVENT_NEIGH_DROP && reason == core::ptr::read_volatile(&CONFIG.drop_neigh_failed) {
        if let Some(slot) = SLOT.get_ptr_mut(0) {
            let f = &mut (*slot).failed_drops[family_index(family)];
            *f = f.wrapping_add(1);
        }
    }
    let ev = &mut *entry.as_mut_ptr();
    match write_trigger::<M>(
        ev, skb, ptrs, kind, reason, hook, target, req_seq, family, ASK,
    ) {
        Ok(()) => {
            let owner = (ev.sk, ev.sk_ino, ev.flags);
            entry.submit(wake_flags(ev.ts_ns));
            Ok(Some(owner))
        }
        Err(e) => {
            entry.discard(0);
            count_discarded();
            Err(e)
        }
    }
}

/// `FAMILY_*` of an skb's packet by its protocol; `None` for anything but IPv4 and IPv6.
#[inline(always)]
pub(crate) unsafe fn packet_family<M: Mem>(skb: *const u8) -> Option<u32> {
    let proto: u16 = M::get(skb, off!(skb_protocol));
    if proto == ETH_P_IP_BE {
        Some(FAMILY_INET)
    } else if proto == ETH_P_IPV6_BE {
        Some(FAMILY_INET6)
    } else {
        None
    }
}

/// Fills `ev`, reserved by the caller, for `skb` of `family` ([`packet_family`]), made in
/// `known_context` (or [`ASK`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn write_trigger<M: Mem>(
    ev: &mut TriggerEvent,
    skb: *const u8,
    ptrs: SkbPtrs,
    kind: u32,
    reason: u32,
    hook: u32,
    target: [u8; 16],
    req_seq: u64,
    family: u32,
    known_context: u32,
) -> Result<(), i64> {
    ev.hook = hook;
    // As words, volatile: kfree_skb's all-zero target would otherwise be a memset call
    // (`zero_words`). `target` is 8-aligned in the record.
    let t = key(target);
    let w = ev.target.as_mut_ptr() as *mut u64;
    core::ptr::write_volatile(w, t[0]);
    core::ptr::write_volatile(w.add(1), t[1]);
    ev.family = family;
    ev.req_seq = req_seq;
    fill_trigger::<M>(ev, skb, ptrs, kind, reason, known_context)
}

#[inline(always)]
unsafe fn fill_trigger<M: Mem>(
    ev: &mut TriggerEvent,
    skb: *const u8,
    ptrs: SkbPtrs,
    kind: u32,
    reason: u32,
    known_context: u32,
) -> Result<(), i64> {
    ev.kind = kind;
    ev.cpu = aya_ebpf::helpers::bpf_get_smp_processor_id();
    ev.ts_ns = bpf_ktime_get_ns();
    ev.drop_reason = reason;
    ev.skb_len = M::get(skb, off!(skb_len));
    ev.mark = M::get(skb, off!(skb_mark));
    ev.iif = M::get(skb, off!(skb_iif));
    let dev = ptrs.dev;
    if dev.is_null() {
        ev.ifindex = 0;
        ev.netns = 0;
    } else {
        ev.ifindex = M::get(dev, off!(dev_ifindex));
        let net: *const u8 = M::get(dev, off!(dev_nd_net));
        ev.netns = if net.is_null() {
            0
        } else {
            M::get(net, off!(net_ns_inum))
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

    let head: *const u8 = M::get(skb, off!(skb_head));
    let nh: u16 = M::get(skb, off!(skb_network_header));
    if bpf_probe_read_kernel_buf(head.add(nh as usize), &mut ev.ip).is_err() {
        bpf_probe_read_kernel_buf(head.add(nh as usize), &mut ev.ip[..40]).map_err(|e| e as i64)?;
        let mut i = 40;
        while i < IP_CAP {
            ev.ip[i] = 0;
            i += 1;
        }
    }

    let sk = ptrs.sk;
    let (flags, ino) = read_owner::<M>(sk);
    ev.flags = flags;
    ev.sk_ino = ino;
    ev.sk = sk as u64;

    if kind == EVENT_NEIGH_DROP {
        // Whoever runs the drop (the failing timer, a sender overflowing the queue) is not
        // the packet's owner, and user space never names it: neither read.
        ev.context = CONTEXT_UNKNOWN;
        no_task(&mut ev.pid_tgid, &mut ev.comm);
    } else {
        ev.context = context(known_context);
        task_fields(ev.context, &mut ev.pid_tgid, &mut ev.comm);
    }
    Ok(())
}

/// Socket facts of a packet's owner: `TRIGGER_*` flags and the socket inode.
#[inline(always)]
pub(crate) unsafe fn read_owner<M: Mem>(sk: *const u8) -> (u32, u64) {
    let (flags, sock) = owner::<M>(sk);
    if sock.is_null() {
        return (flags, 0);
    }
    if M::DIRECT && flags & (TRIGGER_REQUEST_SK | TRIGGER_NO_FILE) == 0 {
        // The socket's file has the socket's own inode (sock_alloc_file()), and every
        // pointer on the way is BTF-typed from `sk`: three direct loads for a helper call.
        let sock: *const u8 = M::get(sk, off!(sk_socket));
        let file: *const u8 = M::get(sock, off!(socket_file));
        let inode: *const u8 = M::get(file, off!(file_inode));
        if !inode.is_null() {
            return (flags, M::get(inode, off!(inode_ino)));
        }
    }
    // SOCK_INODE(): the inode lies past `struct socket`, beyond what BTF lets a load reach.
    (flags, Probe::get(sock, off!(socket_ino)))
}

/// The `TRIGGER_*` flags of a packet's owner, and its `struct socket` (null when it has
/// none): [`read_owner`] without the inode, which takes the helper on every kernel.
#[inline(always)]
pub(crate) unsafe fn owner<M: Mem>(sk: *const u8) -> (u32, *const u8) {
    if sk.is_null() {
        return (0, core::ptr::null());
    }
    let state: u8 = M::get(sk, off!(sk_state));
    if state == TCP_TIME_WAIT {
        return (TRIGGER_HAS_SK | TRIGGER_NO_FILE, core::ptr::null());
    }
    if state == TCP_NEW_SYN_RECV {
        // `skc_listener` shares a union with an integer, which is how BTF types a direct load.
        let listener: *const u8 = Probe::get(sk, off!(rsk_listener));
        return socket_of::<Probe>(listener, TRIGGER_HAS_SK | TRIGGER_REQUEST_SK);
    }
    socket_of::<M>(sk, TRIGGER_HAS_SK)
}

/// Whether a full socket still has its `struct socket` and file; the socket.
#[inline(always)]
unsafe fn socket_of<M: Mem>(sk: *const u8, flags: u32) -> (u32, *const u8) {
    if sk.is_null() {
        return (flags | TRIGGER_NO_FILE, core::ptr::null());
    }
    let sock: *const u8 = M::get(sk, off!(sk_socket));
    if sock.is_null() {
        // close() orphans the sock but its queued skbs keep it alive: a user's packet.
        return (flags | TRIGGER_NO_FILE | TRIGGER_ORPHAN, core::ptr::null());
    }
    let file: *const u8 = M::get(sock, off!(socket_file));
    let flags = if file.is_null() {
        flags | TRIGGER_NO_FILE
    } else {
        flags
    };
    (flags, sock)
}
