//! The neighbour tracepoints: `neigh_event_send_done` and `neigh_timer_handler` record the
//! entry after each solicit (and claim this CPU's pending request), `neigh_update` keeps the
//! queue's length and owner before a reply flushes it, and with `neigh_update_done` records
//! an entry an update failed (`ip neigh del` while it resolved). Apart because they read
//! `struct neighbour` and its queue, not a packet. `arp_tbl` and `nd_tbl` share them, so
//! one code serves ARP requests and IPv6 neighbour solicitations.

use core::ffi::c_void;

use arp_trace_common::{
    NeighEvent, Offsets, TriggerEvent, TriggeredNeigh, CONTEXT_SOFTIRQ, EVENT_NEIGH, EVENT_TRIGGER,
    FAMILY_INET, FAMILY_INET6, HOOK_NEIGH_QUEUE, LL_UNREAD, NEIGH_FAILED, NEIGH_FIRST,
    NEIGH_UPDATE,
};
use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::btf_tracepoint, programs::BtfTracePointContext};

use crate::context::{context, current_context, task_fields, ASK};
use crate::shared::{
    count_discarded, count_lost, key, off, offsets, queue_trigger, read, wake_flags, Btf, Mem, Req,
    Slot, EVENTS, NO_QLEN, PENDING, SLOT,
};
use crate::trigger::{emit_trigger, packet_family, read_owner, write_trigger, SkbPtrs};

/// The pending request on this CPU for a neighbour: its index in `Slot::reqs`.
#[inline(always)]
fn find_req(slot: &Slot, netns: u32, ifindex: u32, target: [u8; 16]) -> Option<usize> {
    let k = key(target);
    let mut best: Option<usize> = None;
    let mut best_seq = 0u64;
    let mut i = 0;
    while i < PENDING {
        let r = &slot.reqs[i];
        if r.seq > best_seq
            && r.netns == netns
            && r.ifindex == ifindex
            && r.target[0] == k[0]
            && r.target[1] == k[1]
        {
            best = Some(i);
            best_seq = r.seq;
        }
        i += 1;
    }
    best
}

/// `neigh:neigh_event_send_done` (first solicit) and `neigh:neigh_timer_handler`
/// (retransmits, probes, failure) fire after `neigh_probe()` with the neighbour itself.
#[btf_tracepoint(function = "neigh_event_send_done")]
pub fn neigh_event_send_done(ctx: BtfTracePointContext) -> i32 {
    let n: *const c_void = ctx.arg(0);
    let _ = unsafe { emit_neigh(n as *const u8, NEIGH_FIRST, ASK) };
    0
}

#[btf_tracepoint(function = "neigh_timer_handler")]
pub fn neigh_timer_handler(ctx: BtfTracePointContext) -> i32 {
    let n: *const c_void = ctx.arg(0);
    // A timer callback: always a softirq (a thread's on PREEMPT_RT, which counts as one too).
    let _ = unsafe { emit_neigh(n as *const u8, 0, CONTEXT_SOFTIRQ) };
    0
}

const NUD_FAILED: u8 = 0x20;

#[inline(always)]
unsafe fn emit_neigh(n: *const u8, first: u32, known_context: u32) -> Result<(), i64> {
    let Some(id) = neigh_id(n)? else {
        return Ok(());
    };
    let NeighId {
        family,
        target,
        dev,
        ifindex,
        netns,
        tail,
        ..
    } = id;
    let state: u8 = Btf::get(n, off!(neigh_nud_state));

    let mut req_seq = 0u64;
    let mut dropped = 0u32;
    let mut seen = Req::pending(0, netns, ifindex, target);
    if let Some(slot) = SLOT.get_ptr_mut(0) {
        let slot = &mut *slot;
        if let Some(i) = find_req(slot, netns, ifindex, target) {
            seen = slot.reqs[i & (PENDING - 1)];
            req_seq = seen.seq;
            slot.reqs[i & (PENDING - 1)].seq = 0;
        }
        let f = family_index(family);
        dropped = slot.failed_drops[f];
        slot.failed_drops[f] = 0;
    }
    // neigh_invalidate() drops the queue with the lock released per packet; a send on another
    // CPU meanwhile restarts the entry (INCOMPLETE again) and the timer's record no longer
    // shows FAILED. The drops just made on this CPU still say the entry failed.
    let failed = state == NUD_FAILED || dropped != 0;
    if req_seq == 0 && !failed {
        return Ok(()); // nothing was solicited in this call
    }
    // Before the trigger and owner reads, whose paths would each be verified with every way
    // out of the walk: 6.1's verifier walked 420,000 instructions (5.6 s under the VM suite's
    // emulation, on every start) with the walk last, 118,000 here, 185,000 at the top.
    let ll = if family == FAMILY_INET6 {
        link_locals(dev, &offsets())
    } else {
        (LL_UNREAD, LL_UNREAD)
    };
    let sol = Solicited {
        n,
        state,
        req_seq,
        seen,
        flags: if failed { NEIGH_FAILED } else { 0 } | if req_seq != 0 { first } else { 0 },
        context: known_context,
        ll,
    };
    if req_seq != 0 && seen.qlen == NO_QLEN && queue_trigger_for(family) {
        // No update since the solicit: the queue is as neigh_probe() found it, and its
        // newest packet is the one arp_solicit() was handed a clone of (unless another CPU
        // queued one to this entry in the microseconds since; the README names that).
        if let Some(skb) = tail {
            let ptrs = SkbPtrs::of::<Btf>(skb);
            if let Some(pf) = packet_family::<Btf>(skb) {
                // Its record and the entry's in one sample.
                let Some(mut entry) = EVENTS.reserve::<TriggeredNeigh>(0) else {
                    count_lost();
                    count_lost();
                    return Ok(());
                };
                let p = &mut *entry.as_mut_ptr();
                let t = &mut p.trigger;
                let hook = HOOK_NEIGH_QUEUE;
                if write_trigger::<Btf>(
                    t,
                    skb,
                    ptrs,
                    EVENT_TRIGGER,
                    0,
                    hook,
                    target,
                    req_seq,
                    pf,
                    sol.context,
                )
                .is_ok()
                {
                    write_neigh(&mut p.neigh, &id, &sol, Some(&p.trigger));
                    entry.submit(wake_flags(p.neigh.ts_ns));
                    return Ok(());
                }
                entry.discard(0);
                count_discarded();
            }
        }
    }
    let Some(mut entry) = EVENTS.reserve::<NeighEvent>(0) else {
        count_lost();
        return Ok(());
    };
    let ev = &mut *entry.as_mut_ptr();
    write_neigh(ev, &id, &sol, None);
    entry.submit(wake_flags(ev.ts_ns));
    Ok(())
}

/// What a solicit (or failure) record says beyond the entry's identity.
struct Solicited {
    /// `CONTEXT_*` of the hook when it only ever fires in one, else [`ASK`].
    context: u32,
    n: *const u8,
    state: u8,
    req_seq: u64,
    /// The pending request claimed (its owner and queue length if an update caught them).
    seen: Req,
    /// `NEIGH_*` flags.
    flags: u32,
    ll: (u16, u16),
}

/// Fills a neighbour record reserved by the caller. `trigger`: the record of the queue's
/// newest packet, when it was just written beside this one: its owner is the entry's, and
/// its moment, CPU, context and task are this record's (read once for both).
#[inline(always)]
unsafe fn write_neigh(
    ev: &mut NeighEvent,
    id: &NeighId,
    s: &Solicited,
    trigger: Option<&TriggerEvent>,
) {
    let n = s.n;
    let seen = &s.seen;
    ev.kind = EVENT_NEIGH;
    if let Some(t) = trigger {
        ev.cpu = t.cpu;
        ev.ts_ns = t.ts_ns;
        ev.context = t.context;
        ev.pid_tgid = t.pid_tgid;
        // As words: a 16-byte copy may become a call. Both records keep `comm` 8-aligned.
        let (from, to) = (
            t.comm.as_ptr() as *const u64,
            ev.comm.as_mut_ptr() as *mut u64,
        );
        core::ptr::write_volatile(to, core::ptr::read_volatile(from));
        core::ptr::write_volatile(to.add(1), core::ptr::read_volatile(from.add(1)));
    } else {
        ev.cpu = aya_ebpf::helpers::bpf_get_smp_processor_id();
        ev.ts_ns = bpf_ktime_get_ns();
        ev.context = context(s.context);
        task_fields(ev.context, &mut ev.pid_tgid, &mut ev.comm);
    }
    ev.req_seq = s.req_seq;
    ev.netns = id.netns;
    ev.ifindex = id.ifindex;
    ev.target = id.target;
    ev.family = id.family;
    ev.nud_state = s.state as u32;
    ev.probes = Btf::get(n, off!(neigh_probes));
    // A reply handled before this tracepoint (veth answers at once) flushed the queue; the
    // length and owner caught by neigh_update just before that are the ones of the solicit.
    ev.qlen = if seen.qlen != NO_QLEN {
        seen.qlen
    } else {
        Btf::get(n, off!(neigh_qlen))
    };
    ev.flags = s.flags;
    ev.ucast_probes = if id.parms.is_null() {
        0
    } else {
        Btf::get(id.parms, off!(parms_ucast_probes))
    };
    ev.ifname = Btf::get(id.dev, off!(dev_name));
    ev.nlmsg_pid = 0;
    // Volatile: plain zero stores side by side become a memset call (`zero_words`).
    core::ptr::write_volatile(&mut ev.sk, 0);
    core::ptr::write_volatile(&mut ev.sk_ino, 0);
    core::ptr::write_volatile(&mut ev.owner_flags, 0);
    let owner = trigger.map(|t| (t.sk, t.sk_ino, t.flags));
    if s.req_seq != 0 {
        if seen.qlen != NO_QLEN {
            (ev.sk, ev.sk_ino, ev.owner_flags) = (seen.sk, seen.sk_ino, seen.owner_flags);
        } else if let Some((sk, ino, flags)) = owner.or_else(|| queue_owner(id.tail)) {
            (ev.sk, ev.sk_ino, ev.owner_flags) = (sk, ino, flags);
        }
    }
    (ev.ll_total, ev.ll_usable) = s.ll;
}

const IFA_LINK: u16 = 0x20;
const IFA_F_OPTIMISTIC: u32 = 0x04;
const IFA_F_TENTATIVE: u32 = 0x40;
const MAX_ADDRS_WALKED: usize = 16;

/// Whether the device has a link-local address, and whether `ipv6_get_lladdr()` would take
/// one for a solicitation (banned: tentative, optimistic), as 0 or 1: whether
/// `ndisc_send_ns()` could send anything without a usable packet source.
#[inline(always)]
unsafe fn link_locals(dev: *const u8, o: &Offsets) -> (u16, u16) {
    if off!(dev_ip6_ptr) == u32::MAX {
        return (LL_UNREAD, LL_UNREAD);
    }
    let idev: *const u8 = Btf::get(dev, off!(dev_ip6_ptr));
    if idev.is_null() {
        return (0, 0);
    }
    let head = idev.add(off!(in6_addr_list) as usize);
    let mut node: *const u8 = read(head, 0).unwrap_or(core::ptr::null());
    // Whether one was seen, not how many: counts would be states the verifier cannot merge.
    let mut seen = 0u16;
    let mut n = 0usize;
    while n < MAX_ADDRS_WALKED {
        if node.is_null() || node == head {
            return (seen, 0);
        }
        let ifp = node.sub(o.ifa6_if_list as usize);
        let scope: u16 = read(ifp, o.ifa6_scope).unwrap_or(0);
        if scope == IFA_LINK {
            let flags: u32 = read(ifp, o.ifa6_flags).unwrap_or(IFA_F_TENTATIVE);
            if flags & (IFA_F_TENTATIVE | IFA_F_OPTIMISTIC) == 0 {
                return (1, 1);
            }
            seen = 1;
        }
        n += 1;
        node = read(node, 0).unwrap_or(core::ptr::null());
    }
    // More addresses than walked: the link-local ones sit at the list's end, unseen.
    (LL_UNREAD, LL_UNREAD)
}

/// Whether the solicited packet is read from the queue: always for IPv6, which no hook on
/// `ndisc_solicit()` sees; for ARP only on the tracepoint path.
#[inline(always)]
fn queue_trigger_for(family: u32) -> bool {
    family == FAMILY_INET6 || queue_trigger()
}

/// A neighbour entry's identity, and the pointers the programs follow from it. All are
/// loaded here, first: a pointer loaded from the tracepoint's (trusted) argument costs the
/// verifier a search of the kernel's BTF by name each time it walks the load (6.3+,
/// btf_nested_type_is_trusted()), and up here it walks each load once.
#[derive(Clone, Copy)]
struct NeighId {
    family: u32,
    /// IPv4 in the first 4 bytes, or IPv6.
    target: [u8; 16],
    dev: *const u8,
    ifindex: u32,
    netns: u32,
    parms: *const u8,
    /// The newest packet on the entry's queue, if any: the one `neigh_probe()` clones for
    /// the solicit.
    tail: Option<*const u8>,
}

/// Index into `Slot::failed_drops`.
#[inline(always)]
pub(crate) fn family_index(family: u32) -> usize {
    if family == FAMILY_INET6 {
        1
    } else {
        0
    }
}

/// `None` for tables other than `arp_tbl` and `nd_tbl` (DECnet's, CLIP's). `n` is the
/// tracepoint's own (BTF-typed) argument.
#[inline(always)]
unsafe fn neigh_id(n: *const u8) -> Result<Option<NeighId>, i64> {
    let tbl: *const u8 = Btf::get(n, off!(neigh_tbl));
    let family: u32 = Btf::get(tbl, off!(tbl_family));
    let mut target = [0u8; 16];
    // `primary_key` is a flexible array at the struct's end, which BTF lets a load reach.
    if family == FAMILY_INET {
        let v4: [u8; 4] = Btf::get(n, off!(neigh_key));
        target[..4].copy_from_slice(&v4);
    } else if family == FAMILY_INET6 {
        target = Btf::get(n, off!(neigh_key));
    } else {
        return Ok(None);
    }
    let dev: *const u8 = Btf::get(n, off!(neigh_dev));
    let parms: *const u8 = Btf::get(n, off!(neigh_parms));
    let head = n.add(off!(neigh_queue) as usize);
    let tail: *const u8 = Btf::get(n, off!(neigh_queue_tail));
    let tail = if tail.is_null() || tail == head {
        None
    } else {
        Some(tail)
    };
    let ifindex: u32 = Btf::get(dev, off!(dev_ifindex));
    let net: *const u8 = Btf::get(dev, off!(dev_nd_net));
    let netns: u32 = if net.is_null() {
        0
    } else {
        Btf::get(net, off!(net_ns_inum))
    };
    Ok(Some(NeighId {
        family,
        target,
        dev,
        ifindex,
        netns,
        parms,
        tail,
    }))
}

/// The trigger record of request `seq` for the packet at the queue's tail, and its owner.
#[inline(always)]
unsafe fn queued_trigger(
    skb: *const u8,
    target: [u8; 16],
    seq: u64,
) -> Result<Option<(u64, u64, u32)>, i64> {
    let ptrs = SkbPtrs::of::<Btf>(skb);
    emit_trigger::<Btf>(skb, ptrs, EVENT_TRIGGER, 0, HOOK_NEIGH_QUEUE, target, seq)
}

/// Owner of the newest packet queued on a neighbour: `skb_clone()` drops `skb->sk`, so the
/// solicited clone cannot tell, but the queued original can.
#[inline(always)]
unsafe fn queue_owner(tail: Option<*const u8>) -> Option<(u64, u64, u32)> {
    let sk: *const u8 = Btf::get(tail?, off!(skb_sk));
    let (flags, ino) = read_owner::<Btf>(sk);
    Some((sk as u64, ino, flags))
}

/// `neigh:neigh_update`: the first update after a request (normally the reply) is about to
/// flush the entry's queue; keep its length and owner for the request's neighbour record.
#[btf_tracepoint(function = "neigh_update")]
pub fn neigh_update(ctx: BtfTracePointContext) -> i32 {
    let n: *const c_void = ctx.arg(0);
    let new: u8 = ctx.arg(2);
    let flags: u32 = ctx.arg(3);
    let nlmsg_pid: u32 = ctx.arg(4);
    unsafe {
        note_failing(n as *const u8, new, flags, nlmsg_pid);
        let _ = note_update(n as *const u8);
    }
    0
}

const NUD_INCOMPLETE: u8 = 0x01;
const NUD_PROBE: u8 = 0x10;
/// `NEIGH_UPDATE_F_USE | NEIGH_UPDATE_F_MANAGED`: such an update changes no state.
const UPDATE_NO_STATE: u32 = 0x08 | 0x10;

/// `__neigh_update()` to NUD_FAILED of an INCOMPLETE or PROBE entry calls
/// `neigh_invalidate()`, which drops the queued packets (NEIGH_FAILED) as the timer does, but
/// no timer record follows: remember the entry for `neigh_update_done`.
#[inline(always)]
unsafe fn note_failing(n: *const u8, new: u8, flags: u32, nlmsg_pid: u32) {
    if new & NUD_FAILED == 0 || flags & UPDATE_NO_STATE != 0 {
        return;
    }
    let old: u8 = Btf::get(n, off!(neigh_nud_state));
    if old & (NUD_INCOMPLETE | NUD_PROBE) == 0 {
        return;
    }
    if let Some(slot) = SLOT.get_ptr_mut(0) {
        (*slot).failing = n as u64;
        (*slot).failing_pid = nlmsg_pid;
    }
}

/// `neigh:neigh_update_done`: the update `neigh_update` saw failing an entry has dropped its
/// queue. The failure is a record, and the drops it made are consumed here, or the next
/// neighbour record on this CPU (any entry) would read them as its own failure.
#[btf_tracepoint(function = "neigh_update_done")]
pub fn neigh_update_failed(ctx: BtfTracePointContext) -> i32 {
    let n: *const c_void = ctx.arg(0);
    let _ = unsafe { emit_update_failure(n as *const u8) };
    0
}

/// Writes its record's fields itself, as `emit_neigh` does: one writer shared by the two
/// made every tracer start on 6.1 slower (its whole auto VM row 437 s -> 653-703 s; on 6.18
/// the solicit programs verified 15,833 -> 17,857 instructions through a reference).
#[inline(always)]
unsafe fn emit_update_failure(n: *const u8) -> Result<(), i64> {
    let Some(slot) = SLOT.get_ptr_mut(0) else {
        return Ok(());
    };
    let slot = &mut *slot;
    if slot.failing != n as u64 {
        return Ok(());
    }
    slot.failing = 0;
    let state: u8 = Btf::get(n, off!(neigh_nud_state));
    if state != NUD_FAILED {
        return Ok(()); // a dead entry: the update changed nothing
    }
    let Some(NeighId {
        family,
        target,
        dev,
        ifindex,
        netns,
        parms,
        ..
    }) = neigh_id(n)?
    else {
        return Ok(());
    };
    slot.failed_drops[family_index(family)] = 0;
    let Some(mut entry) = EVENTS.reserve::<NeighEvent>(0) else {
        count_lost();
        return Ok(());
    };
    let ev = &mut *entry.as_mut_ptr();
    ev.kind = EVENT_NEIGH;
    ev.cpu = aya_ebpf::helpers::bpf_get_smp_processor_id();
    ev.ts_ns = bpf_ktime_get_ns();
    ev.req_seq = 0;
    ev.netns = netns;
    ev.ifindex = ifindex;
    ev.target = target;
    ev.family = family;
    ev.nud_state = state as u32;
    ev.probes = Btf::get(n, off!(neigh_probes));
    ev.qlen = Btf::get(n, off!(neigh_qlen));
    ev.flags = NEIGH_FAILED | NEIGH_UPDATE;
    ev.ucast_probes = if parms.is_null() {
        0
    } else {
        Btf::get(parms, off!(parms_ucast_probes))
    };
    ev.ifname = Btf::get(dev, off!(dev_name));
    ev.nlmsg_pid = slot.failing_pid;
    core::ptr::write_volatile(&mut ev.sk, 0);
    core::ptr::write_volatile(&mut ev.sk_ino, 0);
    core::ptr::write_volatile(&mut ev.owner_flags, 0);
    ev.context = current_context();
    task_fields(ev.context, &mut ev.pid_tgid, &mut ev.comm);
    (ev.ll_total, ev.ll_usable) = (LL_UNREAD, LL_UNREAD);
    entry.submit(wake_flags(ev.ts_ns));
    Ok(())
}

#[inline(always)]
unsafe fn note_update(n: *const u8) -> Result<(), i64> {
    let Some(slot) = SLOT.get_ptr_mut(0) else {
        return Ok(());
    };
    let slot = &mut *slot;
    let Some(NeighId {
        family,
        target,
        ifindex,
        netns,
        tail,
        ..
    }) = neigh_id(n)?
    else {
        return Ok(());
    };
    let Some(i) = find_req(slot, netns, ifindex, target) else {
        return Ok(());
    };
    let r = &mut slot.reqs[i & (PENDING - 1)];
    if r.qlen != NO_QLEN {
        return Ok(());
    }
    r.qlen = Btf::get(n, off!(neigh_qlen));
    let seq = r.seq;
    let mut owner = None;
    if queue_trigger_for(family) {
        // The update is about to send and flush the queue; read the packet while it is there.
        if let Some(skb) = tail {
            owner = queued_trigger(skb, target, seq)?;
        }
    }
    if let Some((sk, ino, flags)) = owner.or_else(|| queue_owner(tail)) {
        let r = &mut slot.reqs[i & (PENDING - 1)];
        (r.sk, r.sk_ino, r.owner_flags) = (sk, ino, flags);
    }
    Ok(())
}
