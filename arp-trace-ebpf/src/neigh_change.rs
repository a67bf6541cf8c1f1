//! `neigh_update` and `neigh_update_done` around each `__neigh_update()`: an IPv4 entry whose
//! link-layer address or validity the update changed is a record, with both addresses and
//! states and who asked (the netlink port, the task). The first tracepoint fires before the
//! entry's lock is taken and the second after it is released, so the entry as it was is kept
//! between them per (entry, task); whatever interleaves on another CPU, each update compares
//! the entry as its own caller found it and as it left it. Apart from the neighbour module's
//! programs: those follow a solicit, and 6.1's verifier pays for every branch added there.

use core::ffi::c_void;

use arp_trace_common::{NeighBefore, NeighChangeEvent, EVENT_NEIGH_CHANGE, FAMILY_INET, HA_LEN};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{btf_tracepoint, map},
    maps::LruHashMap,
    programs::BtfTracePointContext,
};

use crate::context::{current_context, task_fields};
use crate::shared::{count_lost, off, wake_flags, Btf, Mem, EVENTS};

/// NUD_PERMANENT | NUD_NOARP | NUD_REACHABLE | NUD_PROBE | NUD_STALE | NUD_DELAY
const NUD_VALID: u8 = 0x80 | 0x40 | 0x02 | 0x10 | 0x04 | 0x08;

/// The entry before each update under way, by (entry, task). LRU: an update whose second
/// tracepoint never ran (the programs attached between the two) is pushed out in time.
#[map]
static BEFORE: LruHashMap<[u64; 2], NeighBefore> = LruHashMap::with_max_entries(1024, 0);

/// IPv4 entries only (`arp_tbl`): the table's family, read from the entry.
#[inline(always)]
unsafe fn is_inet(n: *const u8) -> bool {
    let tbl: *const u8 = Btf::get(n, off!(neigh_tbl));
    !tbl.is_null() && Btf::get::<u32>(tbl, off!(tbl_family)) == FAMILY_INET
}

/// `neigh:neigh_update(n, lladdr, new, flags, nlmsg_pid)`: the entry as the update finds it.
#[btf_tracepoint(function = "neigh_update")]
pub fn neigh_change_before(ctx: BtfTracePointContext) -> i32 {
    let n: *const c_void = ctx.arg(0);
    let flags: u32 = ctx.arg(3);
    let nlmsg_pid: u32 = ctx.arg(4);
    unsafe {
        let n = n as *const u8;
        if !is_inet(n) {
            return 0;
        }
        let before = NeighBefore {
            old_ha: Btf::get(n, off!(neigh_ha)),
            nlmsg_pid,
            flags,
            old_state: Btf::get(n, off!(neigh_nud_state)),
            _pad: [0; 7],
        };
        let _ = BEFORE.insert([n as u64, bpf_get_current_pid_tgid()], before, 0);
    }
    0
}

/// `neigh:neigh_update_done(n, err)`: the entry as the update left it.
#[btf_tracepoint(function = "neigh_update_done")]
pub fn neigh_update_done(ctx: BtfTracePointContext) -> i32 {
    let n: *const c_void = ctx.arg(0);
    let err: i32 = ctx.arg(1);
    unsafe { emit_change(n as *const u8, err) };
    0
}

#[inline(always)]
unsafe fn emit_change(n: *const u8, err: i32) {
    let key = [n as u64, bpf_get_current_pid_tgid()];
    let Some(before) = BEFORE.get(key).copied() else {
        return;
    };
    let _ = BEFORE.remove(key);
    let new_state: u8 = Btf::get(n, off!(neigh_nud_state));
    let new_ha: [u8; HA_LEN] = Btf::get(n, off!(neigh_ha));
    let same_ha = u64::from_ne_bytes(new_ha) == u64::from_ne_bytes(before.old_ha);
    let same_validity = (new_state & NUD_VALID == 0) == (before.old_state & NUD_VALID == 0);
    if same_ha && same_validity {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<NeighChangeEvent>(0) else {
        count_lost();
        return;
    };
    let ev = &mut *entry.as_mut_ptr();
    let dev: *const u8 = Btf::get(n, off!(neigh_dev));
    let net: *const u8 = Btf::get(dev, off!(dev_nd_net));
    ev.kind = EVENT_NEIGH_CHANGE;
    ev.cpu = aya_ebpf::helpers::bpf_get_smp_processor_id();
    ev.ts_ns = bpf_ktime_get_ns();
    ev.netns = if net.is_null() {
        0
    } else {
        Btf::get(net, off!(net_ns_inum))
    };
    ev.ifindex = Btf::get(dev, off!(dev_ifindex));
    ev.ip = Btf::get(n, off!(neigh_key));
    ev.nlmsg_pid = before.nlmsg_pid;
    ev.flags = before.flags;
    ev.err = err;
    ev.old_state = before.old_state;
    ev.new_state = new_state;
    ev.addr_len = Btf::get(dev, off!(dev_addr_len));
    ev._pad = 0;
    ev.context = current_context();
    task_fields(ev.context, &mut ev.pid_tgid, &mut ev.comm);
    ev.old_ha = before.old_ha;
    ev.new_ha = new_ha;
    ev.ifname = Btf::get(dev, off!(dev_name));
    entry.submit(wake_flags(ev.ts_ns));
}
